#!/usr/bin/env bash
# Runs the public HTTP caching conformance suite (http-cache-tests) against `edgecache
# serve` in front of the suite's own origin server, summarises the results and enforces the
# ratchet in tests/conformance/baseline.json.
#   scripts/conformance.sh [--update]   (--update records the current counts as the baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
out=test-output/conformance
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { # port, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open within $2 s" >&2; return 1
}

cargo build --release --features server --bin edgecache >/dev/null
origin_port=$(free_port)
cache_port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

npm_config_protocol=http npm_config_port="$origin_port" npm_config_pidfile="$out/origin.pid" \
  node node_modules/http-cache-tests/server/server.mjs >"$out/origin.log" 2>&1 &
pids+=($!)
wait_port "$origin_port" 20

EDGECACHE_ADMIN_TOKEN= RUST_LOG=warn target/release/edgecache serve \
  --origin "http://127.0.0.1:$origin_port" --listen "127.0.0.1:$cache_port" >"$out/edgecache.log" 2>&1 &
pids+=($!)
wait_port "$cache_port" 20

npm_config_base="http://127.0.0.1:$cache_port" npm_config_id= npm_package_config_id= \
  timeout 600 node --no-warnings node_modules/http-cache-tests/cli.mjs >"$out/native.json"
node tests/conformance/summary.mjs "$out/native.json" native ${1:-}
