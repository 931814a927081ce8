#!/usr/bin/env bash
# Builds the ceiling worker (benches/worker/ceiling) the way scripts/build-worker.sh builds
# the edgecache Worker: worker-build --release with the wasm-bindgen, esbuild and wasm-opt
# installed here instead of downloaded ones (TOOLCHAIN.md). Cargo output goes to
# target/worker-ceiling; the bundle to benches/worker/ceiling/build/index.js + its wasm.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT/benches/worker/ceiling"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
command -v worker-build >/dev/null || { echo "worker-build is missing: run scripts/setup.sh" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_CEILING:-$ROOT/target/worker-ceiling}"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
exec worker-build --release "$@"
