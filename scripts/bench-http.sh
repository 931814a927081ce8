#!/usr/bin/env bash
# Cache-HIT throughput and latency on loopback: edgecache vs nginx (proxy_cache) vs Varnish,
# all in front of one static origin (nginx serving a 1 KiB and a 64 KiB object with
# `Cache-Control: public, max-age=3600`).
#
# It starts everything it needs on free loopback ports under a temp folder, warms each
# cache, checks that the answer really is a hit, runs `wrk --latency` against every
# cache x object size, interleaved round by round so that load from other work on the
# machine hits all three alike, and prints a markdown table of medians. Everything it
# started is stopped by pid on exit (also on Ctrl-C / SIGTERM / errors).
#
# Usage: scripts/bench-http.sh            (about 3.5 minutes with the defaults, plus the
#                                          cargo build when the tree changed)
# Knobs (environment):
#   BENCH_DURATION=10     seconds per wrk run
#   BENCH_RUNS=3          measured runs per cache x size (the table shows medians)
#   BENCH_THREADS=2 BENCH_CONNECTIONS=64   wrk -t / -c
#   BENCH_PIN=1           pin the cache under test to BENCH_SERVER_CPUS and wrk (and the
#                         origin) to BENCH_CLIENT_CPUS with taskset (same for all three)
#   BENCH_SERVER_CPUS=0 BENCH_CLIENT_CPUS=1
#   BENCH_CACHES="edgecache nginx varnish"  BENCH_SIZES="1k 64k"
#   BENCH_BUILD=1         run `cargo build --release --features server` first
#   EDGECACHE_BIN=path    binary to run (default target/release/edgecache)
#   BENCH_OUT=file        also write the report (environment + table) to this file
#   BENCH_KEEP=1          keep the temp folder (configs, logs, raw wrk output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF_DIR=$ROOT/benches/http
DURATION=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
PIN=${BENCH_PIN:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
read -r -a CACHES <<<"${BENCH_CACHES:-edgecache nginx varnish}"
read -r -a SIZES <<<"${BENCH_SIZES:-1k 64k}"
BUILD=${BENCH_BUILD:-1}
BIN=${EDGECACHE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/edgecache}
KEEP=${BENCH_KEEP:-0}
OUT=${BENCH_OUT:-}

log() { printf '[bench-http] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in wrk curl nginx varnishd python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y nginx-light varnish wrk curl)"
done
if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null || die "taskset is missing (util-linux); or run with BENCH_PIN=0"
    SERVER_PIN=(taskset -c "$SERVER_CPUS")
    CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
else
    SERVER_PIN=()
    CLIENT_PIN=()
fi
# nginx gets one worker per core the caches may use (edgecache's tokio runtime and Varnish
# size themselves from the same affinity mask).
WORKERS=$("${SERVER_PIN[@]}" nproc)

if [ "$BUILD" = 1 ] && [ -z "${EDGECACHE_BIN:-}" ]; then
    log "building edgecache (cargo build --release --features server)"
    (cd "$ROOT" && cargo build --release --features server) >&2 || die "cargo build failed"
fi
[ -x "$BIN" ] || die "no edgecache binary at $BIN (build it, or set EDGECACHE_BIN)"

# ---------------------------------------------------------------------------------------
# Process bookkeeping: everything started goes into PIDS and is stopped by pid on exit.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/edgecache-bench.XXXXXX")
# nginx workers run unprivileged (user nobody when started as root): let them in.
chmod 755 "$TMP"
PIDS=()
WRK_PID=

# The shared process bookkeeping and helpers: descendants, cleanup (and its traps), start,
# wait_http, free_ports, render.
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"

size_bytes() {
    case $1 in
    *k) echo $((${1%k} * 1024)) ;;
    *m) echo $((${1%m} * 1024 * 1024)) ;;
    *) echo "$1" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Origin and caches.
read -r ORIGIN_PORT EC_PORT NGINX_PORT VARNISH_PORT <<<"$(free_ports 4)"
declare -A PORT=([edgecache]=$EC_PORT [nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT)

mkdir -p "$TMP/www"
for size in "${SIZES[@]}"; do
    head -c "$(size_bytes "$size")" /dev/urandom >"$TMP/www/$size.bin"
done

mkdir -p "$TMP/origin/tmp" "$TMP/nginx/tmp" "$TMP/nginx/cache" "$TMP/varnish"
render "$CONF_DIR/origin.nginx.conf" "$TMP/origin/nginx.conf" "$TMP/origin" "$ORIGIN_PORT"
render "$CONF_DIR/nginx-cache.conf" "$TMP/nginx/nginx.conf" "$TMP/nginx" "$NGINX_PORT"

log "origin (nginx) on 127.0.0.1:$ORIGIN_PORT"
start origin "${CLIENT_PIN[@]}" nginx -p "$TMP/origin" -c "$TMP/origin/nginx.conf" \
    -e "$TMP/origin/error.log" -g 'daemon off;'
wait_http origin "http://127.0.0.1:$ORIGIN_PORT/${SIZES[0]}.bin"

for cache in "${CACHES[@]}"; do
    port=${PORT[$cache]:-}
    [ -n "$port" ] || die "unknown cache '$cache' (edgecache, nginx, varnish)"
    log "$cache on 127.0.0.1:$port"
    case $cache in
    edgecache)
        start edgecache env RUST_LOG=info "${SERVER_PIN[@]}" "$BIN" serve \
            --origin "http://127.0.0.1:$ORIGIN_PORT" --listen "127.0.0.1:$port" --grace-secs 1
        ;;
    nginx)
        start nginx "${SERVER_PIN[@]}" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
            -e "$TMP/nginx/error.log" -g 'daemon off;'
        ;;
    varnish)
        start varnish "${SERVER_PIN[@]}" varnishd -F -j none -n "$TMP/varnish" -T none \
            -a "127.0.0.1:$port" -b "127.0.0.1:$ORIGIN_PORT" -s malloc,256m
        ;;
    esac
done
for cache in "${CACHES[@]}"; do
    wait_http "$cache" "http://127.0.0.1:${PORT[$cache]}/"
done

# ---------------------------------------------------------------------------------------
# Warm and verify: the third request for each object must be a hit.
hit_evidence() {
    local cache=$1 headers=$2
    case $cache in
    edgecache) grep -iE '^cache-status:.*edgecache-l1; *hit' <<<"$headers" ;;
    nginx) grep -iE '^x-cache-status: *HIT' <<<"$headers" ;;
    varnish)
        grep -qiE '^age: *[0-9]+' <<<"$headers" &&
            grep -iE '^x-varnish: *[0-9]+ +[0-9]+' <<<"$headers"
        ;;
    esac
}

EVIDENCE=()
for cache in "${CACHES[@]}"; do
    for size in "${SIZES[@]}"; do
        url="http://127.0.0.1:${PORT[$cache]}/$size.bin"
        curl -s -o /dev/null "$url"
        curl -s -o /dev/null "$url"
        headers=$(curl -s -D - -o "$TMP/check.bin" "$url" | tr -d '\r')
        head -n1 <<<"$headers" | grep -q ' 200' || die "$cache $size: not 200: $(head -n1 <<<"$headers")"
        cmp -s "$TMP/check.bin" "$TMP/www/$size.bin" || die "$cache $size: body differs from the origin's"
        evidence=$(hit_evidence "$cache" "$headers") || {
            printf '%s\n' "$headers" >&2
            die "$cache $size: third request is not a cache hit"
        }
        EVIDENCE+=("$cache $size: $(tr '\n' ' ' <<<"$evidence")")
    done
done
origin_requests() { wc -l <"$TMP/origin/access.log"; }
ORIGIN_AFTER_WARM=$(origin_requests)

# ---------------------------------------------------------------------------------------
# Measure.
# CPU ticks (user + system) of a process and its descendants.
tree_ticks() {
    local total=0 p t
    for p in "$1" $(descendants "$1"); do
        t=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# CPU ticks of this script's finished children (wrk runs are added when they end).
children_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }
# "busy total" jiffies of the whole machine.
machine_jiffies() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# run_wrk CACHE SIZE SECONDS OUTFILE: wrk in the background so a signal stops it at once.
run_wrk() {
    "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$3"s --latency \
        "http://127.0.0.1:${PORT[$1]}/$2.bin" >"$4" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk failed: $(cat "$4")"
    WRK_PID=
}

# parse_wrk FILE -> "rps p50_ms p99_ms requests errors non2xx"
parse_wrk() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /s$/) return v * 1000
        if (v ~ /m$/) return v * 60000
        return v + 0
    }
    /^ *50%/ { p50 = ms($2) }
    /^ *99%/ { p99 = ms($2) }
    / requests in / { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) err += $i }
    /Non-2xx/ { bad = $NF }
    END { printf "%s %s %s %s %d %d\n", rps, p50, p99, n, err, bad }' "$1"
}

RESULTS=$TMP/results.tsv
printf 'run\tsize\tcache\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tserver_cpu_pct\tmachine_busy_pct\tother_cpu_pct\tload1\terrors\n' >"$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

log "wrk warm-up (2 s per cache and size)"
for size in "${SIZES[@]}"; do
    for cache in "${CACHES[@]}"; do
        run_wrk "$cache" "$size" 2 "$TMP/warmup.txt"
    done
done

n=${#CACHES[@]}
for run in $(seq "$RUNS"); do
    for size in "${SIZES[@]}"; do
        # Rotate the order each run so no cache always goes first or last.
        for ((k = 0; k < n; k++)); do
            cache=${CACHES[$(((k + run - 1) % n))]}
            out=$TMP/wrk-$cache-$size-$run.txt
            load1=$(cut -d' ' -f1 /proc/loadavg)
            read -r busy0 total0 <<<"$(machine_jiffies)"
            ticks0=$(tree_ticks "${PID_OF[$cache]}")
            origin0=$(tree_ticks "${PID_OF[origin]}")
            kids0=$(children_ticks)
            t0=$(date +%s%N)
            run_wrk "$cache" "$size" "$DURATION" "$out"
            t1=$(date +%s%N)
            ticks1=$(tree_ticks "${PID_OF[$cache]}")
            origin1=$(tree_ticks "${PID_OF[origin]}")
            kids1=$(children_ticks)
            read -r busy1 total1 <<<"$(machine_jiffies)"
            read -r rps p50 p99 reqs errors bad <<<"$(parse_wrk "$out")"
            [ "${bad:-0}" = 0 ] || die "$cache $size run $run: $bad non-2xx responses"
            awk -v run="$run" -v size="$size" -v cache="$cache" -v rps="$rps" -v p50="$p50" \
                -v p99="$p99" -v reqs="$reqs" -v t="$((ticks1 - ticks0))" -v hz="$HZ" \
                -v d="$(((t1 - t0) / 1000000))" -v b="$((busy1 - busy0))" -v tot="$((total1 - total0))" \
                -v ours="$((ticks1 - ticks0 + origin1 - origin0 + kids1 - kids0))" \
                -v load1="$load1" -v err="$errors" 'BEGIN {
                    cpu_s = t / hz
                    d = d / 1000
                    other = (tot > 0 ? 100 * (b - ours) / tot : 0)
                    printf "%s\t%s\t%s\t%.0f\t%.3f\t%.3f\t%.1f\t%.0f\t%.0f\t%.0f\t%s\t%d\n", run, size, cache,
                        rps, p50, p99, (reqs > 0 ? cpu_s * 1e6 / reqs : 0), 100 * cpu_s / d,
                        (tot > 0 ? 100 * b / tot : 0), (other > 0 ? other : 0), load1, err }' >>"$RESULTS"
            log "$(tail -n1 "$RESULTS" | awk -F'\t' '{printf "run %s %-4s %-9s %8s req/s  p50 %s ms  p99 %s ms  %s us CPU/req  (server %s%% of a core; machine %s%% busy, %s%% by other work; load %s)", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}')"
        done
    done
done
ORIGIN_DURING=$(($(origin_requests) - ORIGIN_AFTER_WARM))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
# Report.
median() { sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }
col() { # col CACHE SIZE COLUMN -> the values of COLUMN over the runs
    awk -F'\t' -v c="$1" -v s="$2" -v k="$3" 'NR > 1 && $3 == c && $2 == s { print $k }' "$RESULTS"
}

report() {
    echo "## HTTP cache-hit benchmark"
    echo
    echo "- date: $START_TIME; machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores; kernel $(uname -r)"
    local edgecache_version
    if [ -n "${EDGECACHE_BIN:-}" ]; then
        # Another binary: the tree here need not be what it was built from.
        edgecache_version="binary $BIN (EDGECACHE_BIN)"
    else
        edgecache_version="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')"
    fi
    echo "- versions: edgecache $edgecache_version, $(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | head -n1 | sed 's/ revision.*//;s/^varnishd (//'), $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}')"
    if [ "$PIN" = 1 ]; then
        echo "- pinning: caches on CPU $SERVER_CPUS ($WORKERS core: nginx worker_processes $WORKERS, tokio and Varnish threads on it), wrk and origin on CPU $CLIENT_CPUS"
    else
        echo "- pinning: none (nginx worker_processes $WORKERS)"
    fi
    echo "- load: loadavg $LOAD_START at start, $LOAD_END at end (it counts the benchmark's own threads too: Varnish runs ~200); CPU used by other work during the measured runs: median $(awk -F'\t' 'NR > 1 { print $10 }' "$RESULTS" | median)% of the machine (max $(awk -F'\t' 'NR > 1 { print $10 }' "$RESULTS" | sort -g | tail -n1)%); per run in the raw table"
    echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS runs per cell, interleaved; medians shown"
    echo "- origin requests during the measured runs: $ORIGIN_DURING (0 = every measured request was a cache hit)"
    echo "- hit evidence (third request after warming):"
    for e in "${EVIDENCE[@]}"; do echo "  - $e"; done
    echo
    echo "req/s and latency depend on how much of its core each server got from the scheduler"
    echo "(see server CPU %); server CPU µs/req (user + system time of the cache's processes"
    echo "divided by requests served) and req per CPU-s (its inverse) do not."
    echo
    echo "| cache | object | req/s | p50 ms | p99 ms | server CPU µs/req | req per CPU-s | server CPU % | req/s per run |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    local size cache
    for size in "${SIZES[@]}"; do
        for cache in "${CACHES[@]}"; do
            local us
            us=$(col "$cache" "$size" 7 | median)
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$cache" "$size" \
                "$(col "$cache" "$size" 4 | median)" "$(col "$cache" "$size" 5 | median)" \
                "$(col "$cache" "$size" 6 | median)" "$us" \
                "$(awk -v u="$us" 'BEGIN { if (u > 0) printf "%.0f", 1e6 / u; else print "-" }')" \
                "$(col "$cache" "$size" 8 | median)" "$(col "$cache" "$size" 4 | paste -sd/ -)"
        done
    done
    if [[ " ${CACHES[*]} " == *" edgecache "* ]] && [ "${#CACHES[@]}" -gt 1 ]; then
        echo
        echo "| object | edgecache req/s ÷ best other's | best other (req/s) | edgecache req per CPU-s ÷ best other's | best other (per CPU-s) |"
        echo "| --- | ---: | --- | ---: | --- |"
        for size in "${SIZES[@]}"; do
            local ec cpu best=0 best_name='' best_cpu=1e99 best_cpu_name=''
            ec=$(col edgecache "$size" 4 | median)
            cpu=$(col edgecache "$size" 7 | median)
            for cache in "${CACHES[@]}"; do
                [ "$cache" = edgecache ] && continue
                local r u
                r=$(col "$cache" "$size" 4 | median)
                u=$(col "$cache" "$size" 7 | median)
                if awk -v a="$r" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                    best=$r
                    best_name=$cache
                fi
                if awk -v a="$u" -v b="$best_cpu" 'BEGIN { exit !(a < b) }'; then
                    best_cpu=$u
                    best_cpu_name=$cache
                fi
            done
            awk -v e="$ec" -v b="$best" -v n="$best_name" -v c="$cpu" -v bc="$best_cpu" \
                -v bn="$best_cpu_name" -v s="$size" \
                'BEGIN { printf "| %s | %.2f | %s | %.2f | %s |\n", s, e / b, n, bc / c, bn }'
        done
    fi
    echo
    echo "<details><summary>raw runs</summary>"
    echo
    echo '```'
    column -t -s $'\t' "$RESULTS" 2>/dev/null || cat "$RESULTS"
    echo '```'
    echo
    echo "</details>"
}

report | tee "${OUT:-/dev/null}"
