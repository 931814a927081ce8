#!/usr/bin/env bash
# Deploys the Worker safely: checks the origin it will sit in front of, builds and bundles it
# with `wrangler deploy --dry-run`, refuses a bundle over the size budget, then deploys.
#
#   EDGECACHE_ORIGIN=https://origin.example scripts/deploy.sh     # check, dry run, deploy
#   scripts/deploy.sh --dry-run                                   # check the bundle only (CI)
#
# EDGECACHE_ORIGIN (required to deploy) is passed to wrangler as a var; it must be an
# http(s) URL that a deployed Worker can reach (no loopback or private-network address).
# Secrets (EDGECACHE_ADMIN_TOKEN, EDGECACHE_REDIS_URL, EDGECACHE_REDIS_TOKEN,
# EDGECACHE_CF_API_TOKEN, EDGECACHE_CF_ZONE_ID; README "From nothing to a deployed cache") are
# set apart, once: `scripts/wrangler.sh secret put NAME`; this script checks none of them, nor
# the login. Other arguments go to `wrangler deploy`.
#
# The budget: EDGECACHE_BUNDLE_BUDGET_KIB (default 512) KiB of gzip. Cloudflare accepts
# 3 MB (Free) and 10 MB (Paid) compressed; the budget is far below, so growth is noticed
# (the bundle was 417 KiB on 2026-12-07, 14:00 UTC; what it is made of: BENCHMARKS.md "What the
# Worker bundle is made of") and cold starts stay short.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

budget_kib="${EDGECACHE_BUNDLE_BUDGET_KIB:-512}"
dry_run=0
args=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        *) args+=("$arg") ;;
    esac
done

fail() { echo "deploy: $*" >&2; exit 1; }

# The origin: required to deploy, and one a deployed Worker can reach.
origin="${EDGECACHE_ORIGIN:-}"
if [[ $dry_run -eq 0 ]]; then
    [[ -n "$origin" ]] || fail "set EDGECACHE_ORIGIN to the origin's public base URL (https://…)"
fi
if [[ -n "$origin" ]]; then
    [[ "$origin" =~ ^https?://[^/]+ ]] || fail "EDGECACHE_ORIGIN must be an http:// or https:// URL with a host, got '$origin'"
    # The Worker's own check (src/engine/config.rs `is_private_origin`), so they agree.
    check="$(cargo run --quiet --example check_origin -- "$origin" 2>&1)" \
        || fail "EDGECACHE_ORIGIN: $check"
fi

# Build and bundle without deploying; measure what would be uploaded.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
vars=()
[[ -n "$origin" ]] && vars=(--var "EDGECACHE_ORIGIN:$origin")
CI=true bash scripts/wrangler.sh deploy --dry-run --outdir "$out" "${vars[@]}" "${args[@]}" >"$out.log" 2>&1 \
    || { cat "$out.log" >&2; rm -f "$out.log"; fail "wrangler deploy --dry-run failed"; }
rm -f "$out.log"
gzip_bytes=0
for file in "$out"/*.js "$out"/*.wasm; do
    [[ -f "$file" ]] || continue
    gzip_bytes=$((gzip_bytes + $(gzip -9 -c "$file" | wc -c)))
done
[[ $gzip_bytes -gt 0 ]] || fail "the dry run produced no bundle in $out"
gzip_kib=$(( (gzip_bytes + 1023) / 1024 ))
echo "deploy: bundle ${gzip_kib} KiB gzip (budget ${budget_kib} KiB)"
[[ $gzip_kib -le $budget_kib ]] || fail "the bundle is over its budget: ${gzip_kib} KiB > ${budget_kib} KiB gzip (EDGECACHE_BUNDLE_BUDGET_KIB)"

if [[ $dry_run -eq 1 ]]; then
    echo "deploy: dry run only; nothing deployed"
    exit 0
fi
exec bash scripts/wrangler.sh deploy "${vars[@]}" "${args[@]}"
