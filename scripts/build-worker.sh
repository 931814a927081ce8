#!/usr/bin/env bash
# Builds the Worker (wrangler.toml's [build] command): worker-build with the `worker` feature,
# using the wasm-bindgen, esbuild and wasm-opt installed here instead of downloading them
# (see docs/TOOLCHAIN.md). Output: build/index.js + its wasm, which wrangler.toml's `main` names.
#
# After worker-build, wasm-opt drops the wasm's name section (function names, which nothing
# uses at run time: over a tenth of the gzipped bundle; BENCHMARKS.md "What the Worker bundle
# is made of").
#   EDGECACHE_WORKER_NAMES=1                   keep the names (a CPU profile then shows Rust
#                                              functions; panics' stacks name them)
#   EDGECACHE_WORKER_PROFILE=worker-small      the Cargo profile at opt-level "z" instead of
#                                              release: smaller, more CPU per request
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
profile=(--release)
[[ -n "${EDGECACHE_WORKER_PROFILE:-}" ]] && profile=(--profile "$EDGECACHE_WORKER_PROFILE")
worker-build "${profile[@]}" --features worker "$@"

[[ "${EDGECACHE_WORKER_NAMES:-0}" == 1 ]] && exit 0
# Only the names go: no optimisation pass (wasm-opt -O/-Oz made the gzipped wasm larger).
# The features are those worker-build enables when it runs wasm-opt itself.
features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling)
wasm=build/index_bg.wasm
"$WASM_OPT_BIN" "$wasm" -o "$wasm.tmp" "${features[@]}" --strip-debug --strip-producers
mv "$wasm.tmp" "$wasm"
