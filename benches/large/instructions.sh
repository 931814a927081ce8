#!/usr/bin/env bash
# User-space instructions per request of `edgecache serve` hits, counted with callgrind:
# repeatable to about 0.1% for the same binary and inputs, whatever else the machine does
# (wall-clock CPU per request on this VM moves 3-5 µs between identical runs). Kinds:
#   plain    a 64 KiB object, stored whole
#   range    random aligned 64 KiB ranges of a 100 MiB object cut in 1 MiB slices
#            (benches/large/range.lua, without its per-response check: no body is read)
# The kernel's share (sendfile, the page cache) is not counted; `perf record` sees it.
#
# Usage: benches/large/instructions.sh [KIND...]      (default: plain range; ~2 minutes)
#   EDGECACHE_BIN=path   binary (default target/release/edgecache; build it first:
#                        cargo build --release --features server --bin edgecache)
#   BENCH_SECONDS=8      seconds of wrk per kind (under callgrind: some thousands of requests)
#   BENCH_KEEP=1         keep the temp folder (configs, callgrind files, logs)
# Prints one line per kind: requests, instructions, instructions per request.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${EDGECACHE_BIN:-$ROOT/target/release/edgecache}
SECONDS_PER_KIND=${BENCH_SECONDS:-8}
KEEP=${BENCH_KEEP:-0}
KINDS=("$@")
((${#KINDS[@]})) || KINDS=(plain range)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/edgecache-instructions.XXXXXX")
PIDS=() WRK_PID="" WORKERS=1
log() { printf '[instructions] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"

for tool in valgrind callgrind_control wrk curl nginx python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y valgrind wrk curl nginx-light)"
done
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release --features server --bin edgecache)"

read -r ORIGIN_PORT EC_PORT <<<"$(free_ports 2)"
# nginx workers run unprivileged (user nobody when started as root): let them in.
chmod 755 "$TMP"
mkdir -p "$TMP/www" "$TMP/origin/tmp"
head -c 65536 /dev/urandom >"$TMP/www/64k.bin"
head -c 104857600 /dev/urandom >"$TMP/www/100m.bin"
render "$ROOT/benches/http/origin.nginx.conf" "$TMP/origin/nginx.conf" "$TMP/origin" "$ORIGIN_PORT"
start origin nginx -p "$TMP/origin" -c "$TMP/origin/nginx.conf" -e "$TMP/origin/error.log" \
    -g 'daemon off;'
wait_http origin "http://127.0.0.1:$ORIGIN_PORT/64k.bin"

# The defaults of `edgecache serve` but an L1 big enough for every slice (256 MiB).
cat >"$TMP/edgecache.toml" <<EOF
listen = "127.0.0.1:$EC_PORT"
origin = "http://127.0.0.1:$ORIGIN_PORT"

[cache.l1]
max_bytes = 268435456
EOF
start edgecache valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$TMP/callgrind.out.%p" "$BIN" serve --config "$TMP/edgecache.toml"
EC=http://127.0.0.1:$EC_PORT
wait_http edgecache "$EC/64k.bin"

log "warming: the 64 KiB object, the 100 MiB one, and every slice twice by range"
for _ in 1 2 3; do
    curl -sf -o /dev/null "$EC/64k.bin"
    curl -sf -o /dev/null "$EC/100m.bin"
done
for _ in 1 2; do
    for i in $(seq 0 99); do
        a=$((i * 1048576))
        curl -sf -o /dev/null -H "Range: bytes=$a-$((a + 65535))" "$EC/100m.bin"
    done
done
status=$(curl -s -o /dev/null -D - -H 'Range: bytes=65536-131071' "$EC/100m.bin" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" { print $2 }')
case $status in *hit*) ;; *) die "a warmed range is not a hit: Cache-Status: $status" ;; esac

status=$(curl -s -o /dev/null -D - "$EC/64k.bin" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" { print $2 }')
case $status in *hit*) ;; *) die "the warmed 64 KiB object is not a hit: Cache-Status: $status" ;; esac

# wrk's "N requests in Ts, X read": X in bytes (wrk prints 1024-based B, KB, MB, GB, TB).
bytes_read() {
    awk '/ requests in / {
        v = $(NF - 1); n = v + 0; u = v; gsub(/[0-9.]/, "", u)
        m = u == "KB" ? 1024 : u == "MB" ? 1048576 : u == "GB" ? 1073741824 : u == "TB" ? 1099511627776 : 1
        printf "%.0f\n", n * m
    }' <<<"$1"
}

PID=${PID_OF[edgecache]}
for kind in "${KINDS[@]}"; do
    case $kind in
        plain) script=() url=$EC/64k.bin ;;
        range)
            # range.lua's requests without its response() check (which reads every body).
            sed '/^function response/,/^end/d; /^function done/,/^end/d' \
                "$ROOT/benches/large/range.lua" >"$TMP/range.lua"
            script=(-s "$TMP/range.lua") url=$EC/100m.bin
            ;;
        *) die "unknown kind $kind (plain, range)" ;;
    esac
    origin_before=$(wc -l <"$TMP/origin/access.log")
    callgrind_control -z "$PID" >/dev/null 2>&1
    callgrind_control -i on "$PID" >/dev/null 2>&1
    out=$(wrk -t1 -c4 -d"${SECONDS_PER_KIND}s" "${script[@]}" "$url" 2>&1)
    callgrind_control -i off "$PID" >/dev/null 2>&1
    callgrind_control -d "$kind" "$PID" >/dev/null 2>&1
    requests=$(awk '/ requests in /{ print $1 }' <<<"$out")
    grep -q 'Non-2xx' <<<"$out" && die "$kind: wrk saw answers that were not 2xx: $out"
    grep -q 'Socket errors' <<<"$out" && die "$kind: wrk saw socket errors or timeouts: $out"
    [ -n "$requests" ] && [ "$requests" -gt 0 ] || die "$kind: no request counted: $out"
    # Without range.lua's response() nothing else checks the answers: a 200 of the whole
    # object, or a miss, would be counted as a request all the same.
    per_response=$(($(bytes_read "$out") / requests))
    ((per_response >= 65536 && per_response < 65536 + 2048)) ||
        die "$kind: $per_response bytes per response, not a 64 KiB body and its head: $out"
    origin_after=$(wc -l <"$TMP/origin/access.log")
    ((origin_after == origin_before)) ||
        die "$kind: $((origin_after - origin_before)) requests reached the origin: not all hits"
    file=$(ls -t "$TMP"/callgrind.out.* | head -1)
    instructions=$(awk '/^totals:/ { print $2; exit }' "$file")
    [ -n "$instructions" ] || die "$kind: no totals: line in $file"
    printf '%-6s requests=%d instructions=%d per_request=%d\n' "$kind" "$requests" \
        "$instructions" "$((instructions / requests))"
done
