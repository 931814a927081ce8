#!/usr/bin/env bash
# Builds the Worker (wrangler.toml's [build] command): worker-build with the `worker` feature,
# using the wasm-bindgen, esbuild and wasm-opt installed here instead of downloading them
# (see docs/TOOLCHAIN.md). Output: build/index.js + its wasm, which wrangler.toml's `main` names.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
command -v worker-build >/dev/null || { echo "worker-build is missing: run scripts/setup.sh" >&2; exit 1; }
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen || true)}"
want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' Cargo.lock)"
have="$("$WASM_BINDGEN_BIN" --version 2>/dev/null | awk '{print $2}' || true)"
[[ -n "$WASM_BINDGEN_BIN" && "$have" == "$want" ]] || {
    echo "wasm-bindgen $want is needed (Cargo.lock), found '${have:-none}': run scripts/setup.sh" >&2; exit 1; }
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
exec worker-build --release --features worker "$@"
