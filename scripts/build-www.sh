#!/usr/bin/env bash
# Builds the wasm package the www/ demo page loads, into www/pkg (gitignored):
#   scripts/build-www.sh            # release build (what you want to open in a browser)
#   scripts/build-www.sh --dev      # faster debug build
# Then serve www/ with any static server, e.g. `python3 -m http.server -d www 8000`, and
# open http://127.0.0.1:8000/ (a file:// URL cannot load wasm modules).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
profile=--release
[[ "${1:-}" == "--dev" ]] && profile=--dev
# --mode no-install: use the wasm-bindgen on PATH (scripts/setup.sh installs the Cargo.lock
# version); wasm-opt is off in Cargo.toml because wasm-pack cannot download binaryen here.
wasm-pack build --target web --mode no-install "$profile" --out-dir www/pkg --out-name edgecache \
    --no-pack . --features wasm
test -f www/pkg/edgecache.js && test -f www/pkg/edgecache_bg.wasm
echo "built www/pkg ($(du -k www/pkg/edgecache_bg.wasm | cut -f1) KiB of wasm)"
