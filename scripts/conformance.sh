#!/usr/bin/env bash
# Runs the public HTTP caching conformance suite (http-cache-tests, vendored from upstream in
# tests/conformance/http-cache-tests/; see its README.md) against edgecache in front of the
# suite's own origin server, summarises the results and enforces the ratchet in
# tests/conformance/baseline.json.
#   scripts/conformance.sh [native|worker] [--update]
#     native (default): a release `edgecache serve`, memory only
#     worker: the Worker under `wrangler dev` (real workerd), L1 only
#   --update records the current counts as the baseline of that target.
set -euo pipefail
cd "$(dirname "$0")/.."
target=native
case "${1:-}" in native|worker) target="$1"; shift ;; esac
flag="${1:-}"
out="$PWD/test-output/conformance"
suite="$PWD/tests/conformance/http-cache-tests"
mkdir -p "$out"
# The suite's only npm dependency (undici, for the interim-response tests) comes from the root
# package.json; scripts/setup.sh installs it.
[[ -d node_modules/undici ]] || { echo "node_modules/undici is missing: run scripts/setup.sh (or npm ci)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { # port, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open within $2 s" >&2; return 1
}

origin_port=$(free_port)
cache_port=$(free_port)
pids=()
dirs=()
cleanup() {
  # Each child leads its own process group (setsid): kill the group, so wrangler's workerd goes too.
  for p in "${pids[@]}"; do kill -s KILL -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

# The origin is configured by npm_config_* variables (as `npm run server` would set them). It
# also serves files from its working directory (for upstream's browser harness): run it in the
# suite's directory, as upstream does, not at the repository root.
(cd "$suite" && npm_config_protocol=http npm_config_port="$origin_port" npm_config_pidfile="$out/origin.pid" \
  exec setsid node test-engine/server/server.mjs) >"$out/origin.log" 2>&1 &
pids+=($!)
wait_port "$origin_port" 20

case "$target" in
native)
  cargo build --release --features server --bin edgecache >/dev/null
  EDGECACHE_ADMIN_TOKEN= RUST_LOG=warn setsid "${CARGO_TARGET_DIR:-target}/release/edgecache" serve \
    --origin "http://127.0.0.1:$origin_port" --listen "127.0.0.1:$cache_port" >"$out/edgecache.log" 2>&1 &
  pids+=($!)
  wait_port "$cache_port" 20
  ;;
worker)
  bash scripts/build-worker.sh >"$out/worker-build.log" 2>&1 || { cat "$out/worker-build.log" >&2; exit 1; }
  dir="$(mktemp -d)"
  dirs+=("$dir")
  compat="$(sed -n 's/^compatibility_date = "\(.*\)"$/\1/p' wrangler.toml)"
  cat >"$dir/wrangler.toml" <<TOML
name = "edgecache-conformance"
main = "$PWD/build/index.js"
compatibility_date = "$compat"

[vars]
EDGECACHE_ORIGIN = "http://127.0.0.1:$origin_port"
EDGECACHE_ALLOW_PRIVATE_ORIGIN = "1"
TOML
  CI=true setsid bash scripts/wrangler.sh dev --config "$dir/wrangler.toml" \
    --ip 127.0.0.1 --port "$cache_port" --inspector-port "$(free_port)" --persist-to "$dir/state" \
    --log-level warn --show-interactive-dev-session=false >"$out/wrangler.log" 2>&1 &
  pids+=($!)
  wait_port "$cache_port" 90
  ;;
esac

# The client: npm_config_base is the cache (no trailing slash); an empty id runs every suite in
# tests/index.mjs (an unset one makes the cli look for a test named "undefined").
npm_config_base="http://127.0.0.1:$cache_port" npm_config_id= npm_package_config_id= \
  timeout 600 node --no-warnings "$suite/test-engine/cli.mjs" >"$out/$target.json"
node tests/conformance/summary.mjs "$out/$target.json" "$target" $flag
