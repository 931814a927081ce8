#!/usr/bin/env bash
# Large objects (issue 13 point 6): edgecache vs nginx (proxy_cache, sendfile on) vs Varnish,
# all in front of one static origin (nginx serving 1 MiB, 10 MiB and 100 MiB objects of
# random bytes with `Cache-Control: public, max-age=3600`, a strong ETag, Last-Modified and
# `Accept-Ranges: bytes`, as nginx does for static files).
#
# In one run it measures:
#   1. hit throughput (wrk) for the 1 MiB and 10 MiB objects, and for random aligned 64 KiB
#      ranges of the 100 MiB object (benches/large/range.lua; every answer must be a 206 of
#      65536 bytes);
#   2. cold-miss time to first byte of the 100 MiB object (curl's time_starttransfer, a new
#      query string per run so each is a miss), with the origin reached directly as the floor;
#   3. peak RSS of each cache (VmRSS of its processes, summed, sampled every 100 ms by
#      benches/large/rss-sampler.py) while it is measured in each phase, and the size of the
#      memfd copies edgecache holds for sendfile (shared memory VmRSS does not count);
#   4. phase `cold20` (not in the default BENCH_PHASES; see below): 20 clients at once on a
#      cold miss of the 100 MiB object (issue 13: one origin fetch, identical bytes for all,
#      the first bytes reaching clients before the origin finishes). Each round and cache, a
#      new query string; the clients wait at a barrier (a shared flock the script holds
#      exclusively until all are ready) and are released together; each pipes its body into
#      sha256sum and records curl's time_starttransfer and time_total, and the wall-clock
#      time its first body byte came out of curl. The origin's access log has the Range
#      asked for, $request_time and $msec at the end of each line, so the end of the
#      origin's response for that URL is known, and each client's first byte is compared
#      with it. Reported per cache: origin requests for the URL (1 to pass), bodies equal
#      to the file, clients whose first byte came before the origin finished, TTFB
#      min/median/max, total time median, peak RSS during the phase.
# edgecache runs twice, side by side: `edgecache` with the default limits (objects above
# 8 MiB, so the 10 MiB and 100 MiB ones, cached in 1 MiB slices fetched by Range), and
# `edgecache-whole` with limits.max_object_bytes = 128 MiB and l1.max_bytes = 512 MiB (both
# stored whole).
#
# Before measuring, each cache is warmed and checked: the third GET of each object must be a
# hit (Cache-Status / X-Cache-Status / Age + X-Varnish) with the origin's bytes (sha256), and
# a 64 KiB range of the 100 MiB object a 206 hit with the right bytes. Every cold miss's body
# is hashed too, and a 1-byte range of it asked again to see whether it became a hit. Runs are
# interleaved (order rotated each round) so outside load hits every cache alike; the load
# (loadavg, CPU used by other work, and the top CPU users) is recorded next to each figure.
# Everything started is stopped by pid on exit.
#
# Usage: scripts/bench-large.sh   (about 8 minutes with the defaults, plus the cargo build)
#        BENCH_PHASES="1m 10m range cold20" scripts/bench-large.sh   (adds the cold20 phase)
#        BENCH_PHASES=cold20 BENCH_TTFB_RUNS=0 scripts/bench-large.sh   (cold20 alone: no wrk
#        phase, no single-client cold misses; about 1-2 minutes after the build)
# Knobs (environment):
#   BENCH_DURATION=8       seconds per wrk run
#   BENCH_RUNS=3           wrk runs per cache x phase (medians shown)
#   BENCH_TTFB_RUNS=7      cold misses per cache (and origin fetches for the floor); 0 skips them
#   BENCH_THREADS=2 BENCH_CONNECTIONS=16   wrk -t / -c
#   BENCH_PIN=1 BENCH_SERVER_CPUS=0 BENCH_CLIENT_CPUS=1   as in scripts/bench-http.sh
#   BENCH_CACHES="edgecache edgecache-whole nginx varnish"
#   BENCH_PHASES="1m 10m range"   wrk phases 1m 10m range, and cold20 (20 clients of one cold miss)
#   BENCH_COLD20_RUNS=2    cold20 rounds per cache (each a new URL; order rotated)
#   BENCH_COLD20_CLIENTS=20   concurrent clients per cold20 round
#   BENCH_COLD20_TIMEOUT=120  curl --max-time of a cold20 client (s)
#   BENCH_VARNISH_MEM=512m Varnish's -s malloc size
#   BENCH_EDGECACHE_SENDFILE=true  edgecache's [connections] sendfile (false: hits written
#                          from memory, as Varnish does)
#   BENCH_BUILD=1          run `cargo build --release --features server --bin edgecache` first
#   EDGECACHE_BIN=path     binary to run (default target/release/edgecache)
#   BENCH_OUT=file         also write the report to this file
#   BENCH_KEEP=1           keep the temp folder (configs, logs, raw output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HTTP_CONF=$ROOT/benches/http
LARGE=$ROOT/benches/large
DURATION=${BENCH_DURATION:-8}
RUNS=${BENCH_RUNS:-3}
TTFB_RUNS=${BENCH_TTFB_RUNS:-7}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
PIN=${BENCH_PIN:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
read -r -a CACHES <<<"${BENCH_CACHES:-edgecache edgecache-whole nginx varnish}"
read -r -a PHASES <<<"${BENCH_PHASES:-1m 10m range}"
# The wrk phases, and whether the cold20 phase (not a wrk phase) runs.
HIT_PHASES=()
COLD20=0
for phase in "${PHASES[@]}"; do
    case $phase in
    1m | 10m | range) HIT_PHASES+=("$phase") ;;
    cold20) COLD20=1 ;;
    *)
        printf '[bench-large] error: unknown phase %s (1m, 10m, range, cold20)\n' "$phase" >&2
        exit 1
        ;;
    esac
done
COLD20_RUNS=${BENCH_COLD20_RUNS:-2}
COLD20_CLIENTS=${BENCH_COLD20_CLIENTS:-20}
COLD20_TIMEOUT=${BENCH_COLD20_TIMEOUT:-120}
VARNISH_MEM=${BENCH_VARNISH_MEM:-512m}
BUILD=${BENCH_BUILD:-1}
BIN=${EDGECACHE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/edgecache}
KEEP=${BENCH_KEEP:-0}
OUT=${BENCH_OUT:-}
# edgecache's two configurations (bytes).
EC_L1=268435456            # the default l1.max_bytes (256 MiB)
EC_MAX_OBJECT=8388608      # the default limits.max_object_bytes (8 MiB)
EC_SENDFILE=${BENCH_EDGECACHE_SENDFILE:-true}   # edgecache's [connections] sendfile
WHOLE_L1=536870912         # 512 MiB
WHOLE_MAX_OBJECT=134217728 # 128 MiB
# The constant in the RSS target: RSS <= l1.max_bytes + RSS_CONST_MIB (stated before any run).
RSS_CONST_MIB=64
RANGE_BYTES=65536
BIG=100m

log() { printf '[bench-large] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in wrk curl nginx varnishd python3 awk sha256sum top flock; do
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
WORKERS=$("${SERVER_PIN[@]}" nproc)

if [ "$BUILD" = 1 ] && [ -z "${EDGECACHE_BIN:-}" ]; then
    log "building edgecache (cargo build --release --features server --bin edgecache)"
    (cd "$ROOT" && cargo build --release --features server --bin edgecache) >&2 || die "cargo build failed"
fi
[ -x "$BIN" ] || die "no edgecache binary at $BIN (build it, or set EDGECACHE_BIN)"

# ---------------------------------------------------------------------------------------
# Process bookkeeping (as in bench-http.sh): everything started is stopped by pid on exit.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/edgecache-bench-large.XXXXXX")
chmod 755 "$TMP"
PIDS=()
WRK_PID=
CLIENT_PIDS=() # the cold20 clients of the round under way (each a subshell: curl | sha256sum)

# The shared process bookkeeping and helpers: descendants, cleanup (and its traps), start,
# wait_http, free_ports, render.
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
load1() { cut -d' ' -f1 /proc/loadavg; }
# The three processes using the most CPU right now (over half a second), as "name pct, …".
top_users() {
    top -b -n 2 -d 0.5 -w 200 2>/dev/null | awk '
        /^top -/ { frame++ ; body = 0; next }
        frame == 2 && /^ *PID/ { body = 1; next }
        frame == 2 && body && NF >= 12 && n < 3 { printf "%s%s %s%%", (n ? ", " : ""), $12, $9; n++ }'
}

# ---------------------------------------------------------------------------------------
# Origin and caches.
read -r ORIGIN_PORT EC_PORT ECW_PORT NGINX_PORT VARNISH_PORT <<<"$(free_ports 5)"
declare -A PORT=([origin]=$ORIGIN_PORT [edgecache]=$EC_PORT [edgecache-whole]=$ECW_PORT
    [nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT)

log "writing the objects (1, 10, 100 MiB of random bytes)"
mkdir -p "$TMP/www"
declare -A SHA
for size in 1m 10m 100m; do
    head -c $((${size%m} * 1024 * 1024)) /dev/urandom >"$TMP/www/$size.bin"
    SHA[$size]=$(sha256sum <"$TMP/www/$size.bin" | cut -d' ' -f1)
done

mkdir -p "$TMP/origin/tmp" "$TMP/nginx/tmp" "$TMP/nginx/cache" "$TMP/varnish"
render "$HTTP_CONF/origin.nginx.conf" "$TMP/origin/nginx.conf" "$TMP/origin" "$ORIGIN_PORT"
render "$HTTP_CONF/nginx-cache.conf" "$TMP/nginx/nginx.conf" "$TMP/nginx" "$NGINX_PORT"

ec_config() { # ec_config FILE PORT L1_BYTES MAX_OBJECT_BYTES
    # (sendfile only when turned off: builds before it was a setting refuse the field)
    cat >"$1" <<EOF
listen = "127.0.0.1:$2"
origin = "http://127.0.0.1:$ORIGIN_PORT"
$([ "$EC_SENDFILE" = true ] || printf '\n[connections]\nsendfile = %s\n' "$EC_SENDFILE")

[cache.l1]
max_bytes = $3

[cache.limits]
max_object_bytes = $4
EOF
}
declare -A L1_OF=([edgecache]=$EC_L1 [edgecache-whole]=$WHOLE_L1)

log "origin (nginx) on 127.0.0.1:$ORIGIN_PORT"
start origin "${CLIENT_PIN[@]}" nginx -p "$TMP/origin" -c "$TMP/origin/nginx.conf" \
    -e "$TMP/origin/error.log" -g 'daemon off;'
wait_http origin "http://127.0.0.1:$ORIGIN_PORT/1m.bin"

for cache in "${CACHES[@]}"; do
    port=${PORT[$cache]:-}
    { [ -n "$port" ] && [ "$cache" != origin ]; } || die "unknown cache '$cache' (edgecache, edgecache-whole, nginx, varnish)"
    log "$cache on 127.0.0.1:$port"
    case $cache in
    edgecache)
        ec_config "$TMP/edgecache.toml" "$port" "$EC_L1" "$EC_MAX_OBJECT"
        start "$cache" env RUST_LOG=info "${SERVER_PIN[@]}" "$BIN" serve --config "$TMP/edgecache.toml" --listen "127.0.0.1:$port" --origin "http://127.0.0.1:$ORIGIN_PORT" --grace-secs 1
        ;;
    edgecache-whole)
        ec_config "$TMP/edgecache-whole.toml" "$port" "$WHOLE_L1" "$WHOLE_MAX_OBJECT"
        start "$cache" env RUST_LOG=info "${SERVER_PIN[@]}" "$BIN" serve --config "$TMP/edgecache-whole.toml" --listen "127.0.0.1:$port" --origin "http://127.0.0.1:$ORIGIN_PORT" --grace-secs 1
        ;;
    nginx)
        start nginx "${SERVER_PIN[@]}" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
            -e "$TMP/nginx/error.log" -g 'daemon off;'
        ;;
    varnish)
        start varnish "${SERVER_PIN[@]}" varnishd -F -j none -n "$TMP/varnish" -T none \
            -a "127.0.0.1:$port" -b "127.0.0.1:$ORIGIN_PORT" -s "malloc,$VARNISH_MEM"
        ;;
    esac
done
for cache in "${CACHES[@]}"; do
    wait_http "$cache" "http://127.0.0.1:${PORT[$cache]}/"
done

# RSS of every cache, every 100 ms, for the whole run.
RSS_LOG=$TMP/rss.log
sampler_args=()
for cache in "${CACHES[@]}"; do sampler_args+=("$cache=${PID_OF[$cache]}"); done
start sampler "${CLIENT_PIN[@]}" python3 "$LARGE/rss-sampler.py" "$RSS_LOG" 0.1 "${sampler_args[@]}"
sleep 0.5
# Each measured window: phase cache run t0_ms t1_ms (the report takes each cache's peak RSS
# over its own windows in each phase).
WINDOWS=$TMP/windows.tsv
: >"$WINDOWS"
declare -A IDLE_RSS
for cache in "${CACHES[@]}"; do
    IDLE_RSS[$cache]=$(awk -v c="$cache" '$2 == c { v = $3 } END { printf "%.1f", v / 1024 }' "$RSS_LOG")
done

# ---------------------------------------------------------------------------------------
# Warm and verify.
hit_evidence() {
    local cache=$1 headers=$2
    case $cache in
    edgecache*) grep -iE '^cache-status:.*; *hit' <<<"$headers" ;;
    nginx) grep -iE '^x-cache-status: *HIT' <<<"$headers" ;;
    varnish)
        grep -qiE '^age: *[0-9]+' <<<"$headers" &&
            grep -iE '^x-varnish: *[0-9]+ +[0-9]+' <<<"$headers"
        ;;
    esac
}
# fetch URL [curl args...] -> sets HDRS (headers, CR stripped) and BODY_SHA
fetch() {
    local url=$1
    shift
    BODY_SHA=$(curl -s -D "$TMP/h.txt" "$@" -o - "$url" | sha256sum | cut -d' ' -f1)
    HDRS=$(tr -d '\r' <"$TMP/h.txt")
}

origin_requests() { wc -l <"$TMP/origin/access.log"; }
# Origin requests, and MiB the origin sent, for the URLs holding TOKEN (combined log format:
# field 7 is the path and query, field 10 the body bytes).
origin_for() { awk -v t="$1" 'index($7, t) { n++; b += $10 } END { printf "%d %.1f\n", n, b / 1048576 }' "$TMP/origin/access.log"; }

EVIDENCE=()
log "warming and checking every cache (3 GETs per object, then a 64 KiB range)"
RANGE_A=$((37 * RANGE_BYTES))
RANGE_SHA=$(dd if="$TMP/www/$BIG.bin" bs="$RANGE_BYTES" skip=37 count=1 status=none | sha256sum | cut -d' ' -f1)
for cache in "${CACHES[@]}"; do
    for size in 1m 10m "$BIG"; do
        url="http://127.0.0.1:${PORT[$cache]}/$size.bin"
        before=$(origin_requests)
        for i in 1 2 3; do
            fetch "$url"
            [ "$BODY_SHA" = "${SHA[$size]}" ] || die "$cache $size GET $i: body differs from the origin's (sha256 $BODY_SHA)"
            if [ "$i" = 1 ]; then first=$(grep -iE '^(cache-status|x-cache-status|x-varnish|age):' <<<"$HDRS" | tr '\n' ' ' || true); fi
        done
        head -n1 <<<"$HDRS" | grep -q ' 200' || die "$cache $size: not 200: $(head -n1 <<<"$HDRS")"
        evidence=$(hit_evidence "$cache" "$HDRS") || {
            printf '%s\n' "$HDRS" >&2
            die "$cache $size: third request is not a cache hit"
        }
        EVIDENCE+=("$cache $size: 1st GET \`$first\`, 3rd GET \`$(tr '\n' ' ' <<<"$evidence")\`, sha256 ok all 3, origin requests for the 3 GETs: $(($(origin_requests) - before))")
    done
    url="http://127.0.0.1:${PORT[$cache]}/$BIG.bin"
    fetch "$url" -H "Range: bytes=$RANGE_A-$((RANGE_A + RANGE_BYTES - 1))"
    head -n1 <<<"$HDRS" | grep -q ' 206' || die "$cache range: not 206: $(head -n1 <<<"$HDRS")"
    [ "$BODY_SHA" = "$RANGE_SHA" ] || die "$cache range: bytes differ from the origin's"
    evidence=$(hit_evidence "$cache" "$HDRS") || {
        printf '%s\n' "$HDRS" >&2
        die "$cache range: not a cache hit"
    }
    EVIDENCE+=("$cache $BIG range $RANGE_A+64 KiB: 206, bytes ok, \`$(tr '\n' ' ' <<<"$evidence")\`")
done

# ---------------------------------------------------------------------------------------
# Measure: CPU accounting as in bench-http.sh.
tree_ticks() {
    local total=0 p t
    for p in "$1" $(descendants "$1"); do
        t=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
children_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }
machine_jiffies() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
HZ=$(getconf CLK_TCK)

url_of() { # url_of CACHE PHASE
    case $2 in
    range) echo "http://127.0.0.1:${PORT[$1]}/$BIG.bin" ;;
    *) echo "http://127.0.0.1:${PORT[$1]}/$2.bin" ;;
    esac
}
run_wrk() { # run_wrk CACHE PHASE SECONDS OUTFILE
    local script=()
    [ "$2" = range ] && script=(-s "$LARGE/range.lua")
    RANGE_OBJECT_BYTES=$((100 * 1024 * 1024)) RANGE_BYTES=$RANGE_BYTES \
        "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$3"s --latency "${script[@]}" \
        "$(url_of "$1" "$2")" >"$4" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk failed: $(cat "$4")"
    WRK_PID=
}
parse_wrk() { # -> "rps p50_ms p99_ms requests errors non2xx mib_per_s range_bad"
    awk '
    function ms(v) {
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /s$/) return v * 1000
        if (v ~ /m$/) return v * 60000
        return v + 0
    }
    function mib(v) {
        if (v ~ /GB$/) return v * 1024
        if (v ~ /MB$/) return v + 0
        if (v ~ /KB$/) return v / 1024
        if (v ~ /B$/) return v / 1048576
        return v + 0
    }
    /^ *50%/ { p50 = ms($2) }
    /^ *99%/ { p99 = ms($2) }
    / requests in / { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    /^Transfer\/sec/ { tps = mib($2) }
    /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) err += $i }
    /Non-2xx/ { bad = $NF }
    /^range-check:/ { rbad = $(NF - 1) }
    END { printf "%s %s %s %s %d %d %.1f %d\n", rps, p50, p99, n, err, bad, tps, rbad }' "$1"
}

RESULTS=$TMP/results.tsv
printf 'run\tphase\tcache\trps\tMiB_s\tp50_ms\tp99_ms\tserver_cpu_pct\tcpu_ms_per_GiB\tmachine_busy_pct\tother_cpu_pct\tload1\terrors\n' >"$RESULTS"
TOPS=$TMP/top.txt
: >"$TOPS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
T_START=$(date +%s)

log "wrk warm-up (2 s per cache and phase)"
for phase in "${HIT_PHASES[@]}"; do
    for cache in "${CACHES[@]}"; do
        run_wrk "$cache" "$phase" 2 "$TMP/warmup.txt"
    done
done
ORIGIN_AFTER_WARM=$(origin_requests)

n=${#CACHES[@]}
for run in $(seq "$RUNS"); do
    for phase in "${HIT_PHASES[@]}"; do
        printf 'hits %s run %s: load %s; top: %s\n' "$phase" "$run" "$(load1)" "$(top_users)" >>"$TOPS"
        for ((k = 0; k < n; k++)); do
            cache=${CACHES[$(((k + run - 1) % n))]}
            out=$TMP/wrk-$cache-$phase-$run.txt
            l1=$(load1)
            read -r busy0 total0 <<<"$(machine_jiffies)"
            ticks0=$(tree_ticks "${PID_OF[$cache]}")
            origin0=$(tree_ticks "${PID_OF[origin]}")
            sampler0=$(tree_ticks "${PID_OF[sampler]}")
            kids0=$(children_ticks)
            t0=$(now_ms)
            run_wrk "$cache" "$phase" "$DURATION" "$out"
            t1=$(now_ms)
            printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$cache" "$run" "$t0" "$t1" >>"$WINDOWS"
            ticks1=$(tree_ticks "${PID_OF[$cache]}")
            origin1=$(tree_ticks "${PID_OF[origin]}")
            sampler1=$(tree_ticks "${PID_OF[sampler]}")
            kids1=$(children_ticks)
            read -r busy1 total1 <<<"$(machine_jiffies)"
            read -r rps p50 p99 reqs errors bad tps rbad <<<"$(parse_wrk "$out")"
            [ "${bad:-0}" = 0 ] || die "$cache $phase run $run: $bad non-2xx responses"
            [ "${rbad:-0}" = 0 ] || die "$cache $phase run $run: $rbad range answers were not 206 with 64 KiB"
            if [ "$phase" = range ]; then grep -q '^range-check:' "$out" || die "$cache range run $run: no range check in wrk's output"; fi
            awk -v run="$run" -v phase="$phase" -v cache="$cache" -v rps="$rps" -v tps="$tps" -v p50="$p50" \
                -v p99="$p99" -v t="$((ticks1 - ticks0))" -v hz="$HZ" \
                -v d="$((t1 - t0))" -v b="$((busy1 - busy0))" -v tot="$((total1 - total0))" \
                -v ours="$((ticks1 - ticks0 + origin1 - origin0 + sampler1 - sampler0 + kids1 - kids0))" \
                -v load1="$l1" -v err="$errors" 'BEGIN {
                    other = (tot > 0 ? 100 * (b - ours) / tot : 0)
                    gib = tps * (d / 1000) / 1024
                    printf "%s\t%s\t%s\t%.0f\t%.1f\t%.3f\t%.3f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%d\n", run, phase, cache,
                        rps, tps, p50, p99, 100 * (t / hz) / (d / 1000), (gib > 0 ? 1000 * (t / hz) / gib : 0), (tot > 0 ? 100 * b / tot : 0),
                        (other > 0 ? other : 0), load1, err }' >>"$RESULTS"
            log "$(tail -n1 "$RESULTS" | awk -F'\t' '{printf "run %s %-5s %-15s %7s req/s %8s MiB/s p50 %s ms p99 %s ms (server %s%% of a core, %s CPU-ms/GiB; machine %s%% busy, %s%% other work; load %s)", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12}')"
        done
    done
done
ORIGIN_DURING=$(($(origin_requests) - ORIGIN_AFTER_WARM))

# Cold misses of the 100 MiB object: a new query string each time, the whole body read and
# hashed; the origin itself first as the floor. Then a 1-byte range of the same URL: did the
# miss become a hit?
TTFB=$TMP/ttfb.tsv
printf 'run\ttarget\tcode\tttfb_ms\ttotal_s\tbytes\tsha_ok\torigin_reqs\torigin_mib\tthen_hit\tload1\ttoken\n' >"$TTFB"
targets=(origin "${CACHES[@]}")
nt=${#targets[@]}
log "cold misses of the $BIG object ($TTFB_RUNS per cache, and the origin directly)"
for run in $(seq "$TTFB_RUNS"); do
    printf 'cold %s: load %s; top: %s\n' "$run" "$(load1)" "$(top_users)" >>"$TOPS"
    for ((k = 0; k < nt; k++)); do
        target=${targets[$(((k + run - 1) % nt))]}
        token="cold=$run-$RANDOM$RANDOM"
        url="http://127.0.0.1:${PORT[$target]}/$BIG.bin?$token"
        l1=$(load1)
        t0=$(now_ms)
        sha=$(curl -s -o - -w '%{stderr}%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n' \
            "$url" 2>"$TMP/curl.txt" | sha256sum | cut -d' ' -f1)
        t1=$(now_ms)
        [ "$target" = origin ] || printf 'cold\t%s\t%s\t%s\t%s\n' "$target" "$run" "$t0" "$t1" >>"$WINDOWS"
        read -r code ttfb total bytes <"$TMP/curl.txt"
        sleep 0.3 # let a fill or the origin's log catch up before counting
        read -r reqs omib <<<"$(origin_for "$token")"
        then_hit=-
        if [ "$target" != origin ]; then
            curl -s -D "$TMP/h.txt" -o /dev/null -H 'Range: bytes=0-0' "$url"
            if hit_evidence "$target" "$(tr -d '\r' <"$TMP/h.txt")" >/dev/null; then then_hit=yes; else then_hit=no; fi
        fi
        ok=no
        [ "$sha" = "${SHA[$BIG]}" ] && ok=yes
        awk -v r="$run" -v t="$target" -v c="$code" -v f="$ttfb" -v tt="$total" -v b="$bytes" -v ok="$ok" \
            -v q="$reqs" -v om="$omib" -v h="$then_hit" -v l="$l1" -v tok="$token" 'BEGIN {
            printf "%s\t%s\t%s\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, t, c, f * 1000, tt, b, ok, q, om, h, l, tok }' >>"$TTFB"
        log "$(tail -n1 "$TTFB" | awk -F'\t' '{printf "cold %s %-15s %s TTFB %s ms, all in %s s, sha256 %s, origin %s req %s MiB, then hit: %s (load %s)", $1, $2, $3, $4, $5, $7, $8, $9, $10, $11}')"
    done
done

# ---------------------------------------------------------------------------------------
# 20 cold clients (phase cold20): COLD20_CLIENTS clients at once on one cold miss of the
# 100 MiB object, per cache and round, a new query string each. Each client is a subshell
# running `curl | sha256sum` (both pinned to the client CPUs): the curl side writes
# ready.I, waits for a shared flock on DIR/lock (which the script holds exclusively until
# every client is ready, then releases: all start together), writes its start time and
# execs curl, whose -w figures go to curl.I. The reading side takes the body's first byte
# with dd (first.I), writes the time it had it (firstbyte.I), then execs sha256sum on the
# rest (sha.I): the first byte is compared with the file's, the rest's hash with that of
# the file past its first byte. So a client's first byte is timed where it is read, late
# rather than early when the CPU is contended (start + time_starttransfer would be early
# by however long curl took to start after the start time was written).
# shellcheck disable=SC2016 # expanded by the client's bash, from its arguments
COLD20_CLIENT='
: >"$1/ready.$2"
flock -s "$1/lock" true
printf "%s\n" "${EPOCHREALTIME/,/.}" >"$1/start.$2"
exec curl -sS -o - --max-time "$4" -w "%{stderr}%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n" "$3" 2>"$1/curl.$2"'
# shellcheck disable=SC2016 # expanded by the reader's bash, from its arguments
COLD20_READER='
dd bs=1 count=1 of="$1/first.$2" status=none
printf "%s\n" "${EPOCHREALTIME/,/.}" >"$1/firstbyte.$2"
exec sha256sum >"$1/sha.$2"'
FIRST_BYTE=$(od -An -tx1 -N1 "$TMP/www/$BIG.bin" | tr -d ' ')
REST_SHA=$(tail -c +2 "$TMP/www/$BIG.bin" | sha256sum | cut -d' ' -f1)
COLD20_ROUNDS=$TMP/cold20-rounds.tsv
printf 'run\tcache\ttoken\treleased_ms\tdone_ms\tstart_spread_ms\tload1\tmachine_busy_pct\tother_cpu_pct\n' >"$COLD20_ROUNDS"
COLD20_TSV=$TMP/cold20-clients.tsv
printf 'run\tcache\tclient\tcode\tttfb_ms\ttotal_s\tbytes\tbody_ok\tfirst_byte_ms\tstart_ms\ttoken\n' >"$COLD20_TSV"
# cold20_origin TOKEN -> "requests MiB end_ms fetch_s": origin requests and MiB for the URL
# holding TOKEN; when the first of them to start (the fill) ended, and how long it took
# ($msec and $request_time, the last two fields of the origin's log lines).
cold20_origin() {
    awk -v t="$1" '
        index($7, t) { n++; b += $10; e = $NF * 1000; d = $(NF - 1); s = e - 1000 * d
            if (n == 1 || s < fs) { fs = s; fe = e; fd = d } }
        END { if (n) printf "%d %.1f %.3f %.3f\n", n, b / 1048576, fe, fd; else print "0 0.0 - -" }' "$TMP/origin/access.log"
}
# cold20_before TOKEN END_MS -> clients of that round whose first byte came before END_MS
cold20_before() {
    awk -F'\t' -v t="$1" -v e="$2" '$11 == t && e != "-" && $9 != "-" && $9 < e { n++ } END { print n + 0 }' "$COLD20_TSV"
}
cold20_round() { # cold20_round CACHE RUN
    local cache=$1 run=$2 i token url dir t0 t1 l1 pid ready
    token="cold20=$run-$RANDOM$RANDOM"
    url="http://127.0.0.1:${PORT[$cache]}/$BIG.bin?$token"
    dir=$TMP/cold20/$cache-$run
    mkdir -p "$dir"
    exec 9>"$dir/lock"
    flock -x 9
    CLIENT_PIDS=()
    for ((i = 1; i <= COLD20_CLIENTS; i++)); do
        ("${CLIENT_PIN[@]}" bash -c "$COLD20_CLIENT" client "$dir" "$i" "$url" "$COLD20_TIMEOUT" |
            "${CLIENT_PIN[@]}" bash -c "$COLD20_READER" reader "$dir" "$i") 9>&- &
        CLIENT_PIDS+=("$!")
    done
    ready=0
    for _ in $(seq 300); do
        ready=$(find "$dir" -name 'ready.*' | wc -l)
        [ "$ready" -lt "$COLD20_CLIENTS" ] || break
        sleep 0.1
    done
    [ "$ready" -ge "$COLD20_CLIENTS" ] || die "cold20 $cache: only $ready of $COLD20_CLIENTS clients ready after 30 s"
    sleep 0.2 # the last ones to reach their flock (one still on its way starts at once)
    l1=$(load1)
    read -r busy0 total0 <<<"$(machine_jiffies)"
    ticks0=$(tree_ticks "${PID_OF[$cache]}")
    origin0=$(tree_ticks "${PID_OF[origin]}")
    sampler0=$(tree_ticks "${PID_OF[sampler]}")
    kids0=$(children_ticks)
    t0=$(now_ms)
    flock -u 9
    exec 9>&-
    for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" || true; done
    t1=$(now_ms)
    CLIENT_PIDS=()
    ticks1=$(tree_ticks "${PID_OF[$cache]}")
    origin1=$(tree_ticks "${PID_OF[origin]}")
    sampler1=$(tree_ticks "${PID_OF[sampler]}")
    kids1=$(children_ticks)
    read -r busy1 total1 <<<"$(machine_jiffies)"
    printf 'cold20\t%s\t%s\t%s\t%s\n' "$cache" "$run" "$t0" "$t1" >>"$WINDOWS"
    for ((i = 1; i <= COLD20_CLIENTS; i++)); do
        local code=000 ttfb=0 total=0 bytes=0 start=0 first=- fb=- sha=- ok=no
        if [ -s "$dir/curl.$i" ]; then read -r code ttfb total bytes < <(grep -E '^[0-9]{3} ' "$dir/curl.$i" | tail -n1) || true; fi
        if [ -s "$dir/start.$i" ]; then read -r start <"$dir/start.$i" || true; fi
        if [ -s "$dir/first.$i" ]; then
            first=$(od -An -tx1 -N1 "$dir/first.$i" | tr -d ' ')
            read -r fb <"$dir/firstbyte.$i" || true
        fi
        if [ -s "$dir/sha.$i" ]; then sha=$(cut -d' ' -f1 "$dir/sha.$i"); fi
        if [ "$first" = "$FIRST_BYTE" ] && [ "$sha" = "$REST_SHA" ]; then ok=yes; fi
        awk -v r="$run" -v c="$cache" -v i="$i" -v code="$code" -v f="$ttfb" -v tt="$total" -v b="$bytes" \
            -v ok="$ok" -v s="$start" -v fb="$fb" -v tok="$token" 'BEGIN {
            printf "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%s\t%s\t%s\t%.3f\t%s\n", r, c, i, code, f * 1000, tt, b, ok,
                (fb == "-" ? "-" : sprintf("%.3f", 1000 * fb)), 1000 * s, tok }' >>"$COLD20_TSV"
    done
    awk -F'\t' -v tok="$token" -v r="$run" -v c="$cache" -v t0="$t0" -v t1="$t1" -v l="$l1" \
        -v b="$((busy1 - busy0))" -v tot="$((total1 - total0))" \
        -v ours="$((ticks1 - ticks0 + origin1 - origin0 + sampler1 - sampler0 + kids1 - kids0))" '
        $11 == tok { s = $10; if (!n++ || s < lo) lo = s; if (s > hi) hi = s }
        END { other = (tot > 0 ? 100 * (b - ours) / tot : 0)
            printf "%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%.0f\t%.0f\n", r, c, tok, t0, t1, hi - lo, l,
                (tot > 0 ? 100 * b / tot : 0), (other > 0 ? other : 0) }' "$COLD20_TSV" >>"$COLD20_ROUNDS"
    sleep 0.5 # the origin's log line for the fill
    local reqs omib oend ofetch
    read -r reqs omib oend ofetch <<<"$(cold20_origin "$token")"
    log "$(awk -F'\t' -v r="$run" -v c="$cache" -v tok="$token" -v q="$reqs" -v om="$omib" -v of="$ofetch" -v oe="$oend" \
        -v before="$(cold20_before "$token" "$oend")" -v spread="$(tail -n1 "$COLD20_ROUNDS" | cut -f6)" '
        $11 == tok { n++; ok += ($8 == "yes" && $4 == 200); tt += $6
            if (n == 1 || $5 < lo) lo = $5; if ($5 > hi) hi = $5 }
        END { printf "cold20 %s %-15s %d/%d bodies ok; origin %s req %s MiB in %s s; first byte before the origin finished: %d/%d; TTFB %.1f-%.1f ms, mean total %.2f s; start spread %s ms",
            r, c, ok, n, q, om, of, before, n, lo, hi, tt / n, spread }' "$COLD20_TSV")"
}
if [ "$COLD20" = 1 ]; then
    log "cold20: $COLD20_CLIENTS clients at once on a cold miss of the $BIG object ($COLD20_RUNS rounds per cache)"
    for run in $(seq "$COLD20_RUNS"); do
        printf 'cold20 %s: load %s; top: %s\n' "$run" "$(load1)" "$(top_users)" >>"$TOPS"
        for ((k = 0; k < n; k++)); do
            cold20_round "${CACHES[$(((k + run - 1) % n))]}" "$run"
        done
    done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)
declare -A HWM
for cache in "${CACHES[@]}"; do
    HWM[$cache]=$(for p in "${PID_OF[$cache]}" $(descendants "${PID_OF[$cache]}"); do
        awk '/^VmHWM:/ { print $2 }' /proc/"$p"/status 2>/dev/null
    done | awk '{ s += $1 } END { printf "%.0f", s / 1024 }')
done
sleep 2 # fills the last probes started in the background reach the origin's log

# ---------------------------------------------------------------------------------------
# Report.
median() { sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }
col() { # col CACHE PHASE COLUMN
    awk -F'\t' -v c="$1" -v s="$2" -v k="$3" 'NR > 1 && $3 == c && $2 == s { print $k }' "$RESULTS"
}
tcol() { # tcol TARGET COLUMN
    awk -F'\t' -v t="$1" -v k="$2" 'NR > 1 && $2 == t { print $k }' "$TTFB"
}
# peak CACHE PHASE -> "rss_mib memfd_mib" at the peak of VmRSS (+ memfd) within its windows
peak() {
    awk -v c="$1" -v p="$2" '
        FNR == NR { if ($1 == p && $2 == c) { a[++n] = $4; b[n] = $5 }; next }
        $2 == c { for (i = 1; i <= n; i++) if ($1 >= a[i] && $1 <= b[i]) {
            if ($3 > r) r = $3; if ($4 > m) m = $4; if ($3 + $4 > s) s = $3 + $4; break } }
        END { printf "%.0f %.0f %.0f\n", r / 1024, m / 1024, s / 1024 }' "$WINDOWS" "$RSS_LOG"
}
label() {
    case $1 in
    edgecache) echo "edgecache (defaults: >8 MiB sliced)" ;;
    edgecache-whole) echo "edgecache-whole (max_object 128 MiB, L1 512 MiB)" ;;
    nginx) echo "nginx proxy_cache" ;;
    varnish) echo "Varnish $(varnishd -V 2>&1 | head -n1 | sed 's/.*varnish-\([0-9.]*\).*/\1/')" ;;
    origin) echo "origin directly (floor)" ;;
    esac
}
phase_label() {
    case $1 in
    range) echo "64 KiB ranges of 100 MiB" ;;
    *) echo "${1%m} MiB" ;;
    esac
}

report() {
    echo "### Run of $START_TIME"
    echo
    echo "- command: \`${BENCH_CMD:-scripts/bench-large.sh}\` ($((T_END - T_START)) s measured, $(((T_END - T_START + 59) / 60)) min; plus start-up and warming)"
    echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB; kernel $(uname -r)"
    local v
    if [ -n "${EDGECACHE_BIN:-}" ]; then v="binary $BIN"; else
        v="$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')"
    fi
    echo "- versions: edgecache $v, $(nginx -v 2>&1 | sed 's/.*: //'), varnish $(varnishd -V 2>&1 | head -n1 | sed 's/.*varnish-\([0-9.]*\).*/\1/') (-s malloc,$VARNISH_MEM), $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}'), $(curl --version | head -n1 | awk '{print "curl " $2}')"
    if [ "$PIN" = 1 ]; then
        echo "- pinning: caches on CPU $SERVER_CPUS, wrk/curl, the origin and the RSS sampler on CPU $CLIENT_CPUS"
    else
        echo "- pinning: none"
    fi
    if [ "${#HIT_PHASES[@]}" -gt 0 ]; then
        echo "- hits: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $RUNS runs per cell, interleaved (order rotated), medians; origin requests during the measured hit runs: **$ORIGIN_DURING** (0 = all hits)"
    else echo "- hits: not measured (no wrk phase in BENCH_PHASES)"; fi
    if [ "$TTFB_RUNS" -gt 0 ]; then
        echo "- cold misses: $TTFB_RUNS per target, interleaved with the origin fetched directly; curl's time_starttransfer on a new connection; the whole body read and hashed"
    else echo "- cold misses (one client): not measured (BENCH_TTFB_RUNS=0)"; fi
    if [ "$COLD20" = 1 ]; then
        echo "- cold20: $COLD20_RUNS rounds per cache (order rotated), each $COLD20_CLIENTS curl clients released together on a new URL of the $BIG object, bodies piped into sha256sum"
    fi
    local other=""
    if [ "${#HIT_PHASES[@]}" -gt 0 ]; then
        other+="; CPU used by other work during the hit runs: median $(awk -F'\t' 'NR > 1 { print $11 }' "$RESULTS" | median)% of the machine (max $(awk -F'\t' 'NR > 1 { print $11 }' "$RESULTS" | sort -g | tail -n1)%)"
    fi
    if [ "$COLD20" = 1 ]; then
        other+="; CPU used by other work during the cold20 rounds: median $(awk -F'\t' 'NR > 1 { print $9 }' "$COLD20_ROUNDS" | median)% of the machine (max $(awk -F'\t' 'NR > 1 { print $9 }' "$COLD20_ROUNDS" | sort -g | tail -n1)%), machine busy median $(awk -F'\t' 'NR > 1 { print $8 }' "$COLD20_ROUNDS" | median)%"
    fi
    echo "- **load**: loadavg $LOAD_START at start, $LOAD_END at end$other. Top CPU users at each round:"
    sed 's/^/  - /' "$TOPS"
    echo "- idle RSS after start (MiB): $(for c in "${CACHES[@]}"; do printf '%s %s; ' "$c" "${IDLE_RSS[$c]}"; done)"
    echo "- warm-up checks:"
    for e in "${EVIDENCE[@]}"; do echo "  - $e"; done
    [ "$TTFB_RUNS" -gt 0 ] && report_cold
    [ "$COLD20" = 1 ] && report_cold20
    [ "${#HIT_PHASES[@]}" -gt 0 ] && report_hits
    report_targets
    echo
    echo "<details><summary>raw runs</summary>"
    echo
    echo '```'
    [ "${#HIT_PHASES[@]}" -gt 0 ] && { column -t -s $'\t' "$RESULTS" 2>/dev/null || cat "$RESULTS"; echo; }
    [ "$TTFB_RUNS" -gt 0 ] && { column -t -s $'\t' "$TTFB" 2>/dev/null || cat "$TTFB"; echo; }
    if [ "$COLD20" = 1 ]; then
        column -t -s $'\t' "$COLD20_ROUNDS" 2>/dev/null || cat "$COLD20_ROUNDS"
        echo
        column -t -s $'\t' "$COLD20_TSV" 2>/dev/null || cat "$COLD20_TSV"
    fi
    echo '```'
    echo
    echo "</details>"
}

report_cold() {
    echo
    echo "#### Cold miss, 100 MiB object: time to first byte"
    echo
    echo "Origin requests and MiB per miss: counted by the miss's own query string when its body"
    echo "has been read; \"by the end\": the same at the end of the run, so including what the"
    echo "1-byte range probe (\"then a hit\") made the cache fetch when it was a miss again."
    echo
    echo "| target | TTFB min ms | TTFB median ms | median − origin's ms | whole body median s | origin requests per miss | origin MiB per miss | origin requests by the end (sum over misses) | body sha256 ok | then a hit | peak RSS MiB (+memfd) | load1 |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |"
    local omed t
    omed=$(tcol origin 4 | median)
    for t in "${targets[@]}"; do
        local med rss="-"
        med=$(tcol "$t" 4 | median)
        if [ "$t" != origin ]; then
            read -r r m _ <<<"$(peak "$t" cold)"
            rss="$r (+$m)"
        fi
        local byend=0 tok
        for tok in $(tcol "$t" 12); do byend=$((byend + $(origin_for "$tok" | cut -d' ' -f1))); done
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s |\n' "$(label "$t")" \
            "$(tcol "$t" 4 | sort -g | head -n1)" "$med" \
            "$(awk -v a="$med" -v b="$omed" 'BEGIN { printf "%+.3f", a - b }')" \
            "$(tcol "$t" 5 | median)" "$(tcol "$t" 8 | median)" "$(tcol "$t" 9 | median)" "$byend" \
            "$(tcol "$t" 7 | grep -c yes)" "$TTFB_RUNS" \
            "$([ "$t" = origin ] && echo - || echo "$(tcol "$t" 10 | grep -c yes)/$TTFB_RUNS")" \
            "$rss" "$(tcol "$t" 11 | sort -g | sed -n '1p;$p' | paste -sd- -)"
    done
}

report_hits() {
    echo
    echo "#### Hits"
    echo
    echo "MiB/s depends on how much CPU the cache, wrk and the origin got from a shared machine;"
    echo "server CPU ms per GiB served (user + system time of the cache's processes) much less."
    echo
    echo "| cache | object | req/s | MiB/s | p50 ms | p99 ms | server CPU % | server CPU ms/GiB | peak RSS MiB | memfd MiB | MiB/s per run | load1 per run |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    local phase cache
    for phase in "${HIT_PHASES[@]}"; do
        for cache in "${CACHES[@]}"; do
            read -r r m _ <<<"$(peak "$cache" "$phase")"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$cache")" \
                "$(phase_label "$phase")" "$(col "$cache" "$phase" 4 | median)" \
                "$(col "$cache" "$phase" 5 | median)" "$(col "$cache" "$phase" 6 | median)" \
                "$(col "$cache" "$phase" 7 | median)" "$(col "$cache" "$phase" 8 | median)" \
                "$(col "$cache" "$phase" 9 | median)" \
                "$r" "$m" "$(col "$cache" "$phase" 5 | paste -sd/ -)" "$(col "$cache" "$phase" 12 | paste -sd/ -)"
        done
    done
}

# cold20_stats CACHE -> "met origin_requests origin_mib body_ok before ttfb_min ttfb_median
# ttfb_max total_median fetch_s latest_minus_end_ms spread_ms load1", over the cache's cold20
# rounds: origin requests, MiB and fetch seconds per round ("/"-joined), body_ok and before as "n/total",
# latest_minus_end_ms the latest first byte of a round minus the end of its origin fetch
# (the largest over rounds; negative: every client had bytes before the origin finished).
cold20_stats() {
    local c=$1 tok reqs omib oend ofetch q="" mib="" f="" before=0 late="" met=yes total ok ttfbs
    # shellcheck disable=SC2013 # one token (no blanks) per line
    for tok in $(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { print $3 }' "$COLD20_ROUNDS"); do
        read -r reqs omib oend ofetch <<<"$(cold20_origin "$tok")"
        q+="${q:+/}$reqs"
        mib+="${mib:+/}$omib"
        f+="${f:+/}$ofetch"
        [ "$reqs" = 1 ] || met=no
        before=$((before + $(cold20_before "$tok" "$oend")))
        late+="$(awk -F'\t' -v t="$tok" -v e="$oend" '$11 == t && $9 != "-" && (n++ == 0 || $9 > m) { m = $9 }
            END { if (e == "-") print "-"; else printf "%+.0f", m - e }' "$COLD20_TSV") "
    done
    total=$(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { n++ } END { print n + 0 }' "$COLD20_TSV")
    ok=$(awk -F'\t' -v c="$c" -v b="$((100 * 1024 * 1024))" 'NR > 1 && $2 == c && $4 == 200 && $7 == b && $8 == "yes" { n++ } END { print n + 0 }' "$COLD20_TSV")
    if [ "$total" = 0 ] || [ "$ok" != "$total" ] || [ "$before" != "$total" ]; then met=no; fi
    ttfbs=$(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { print $5 }' "$COLD20_TSV" | sort -g)
    printf '%s %s %s %s %s %s %s %s %s %s %s %s %s\n' "$met" "${q:--}" "${mib:--}" "$ok/$total" "$before/$total" \
        "$(head -n1 <<<"$ttfbs")" "$(median <<<"$ttfbs")" "$(tail -n1 <<<"$ttfbs")" \
        "$(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { print $6 }' "$COLD20_TSV" | median)" "${f:--}" \
        "$(tr ' ' '\n' <<<"$late" | grep -v '^$' | sort -g | tail -n1)" \
        "$(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { print $6 }' "$COLD20_ROUNDS" | sort -g | tail -n1)" \
        "$(awk -F'\t' -v c="$c" 'NR > 1 && $2 == c { print $7 }' "$COLD20_ROUNDS" | sort -g | sed -n '1p;$p' | paste -sd- -)"
}

report_cold20() {
    echo
    echo "#### $COLD20_CLIENTS cold clients of the 100 MiB object at once"
    echo
    echo "Per round: a new URL, $COLD20_CLIENTS curl clients released together (start spread: the"
    echo "first to the last client's start), each body piped out of curl into dd (its first byte)"
    echo "and sha256sum (the rest); body = file's: status 200, 100 MiB, that byte and that hash"
    echo "the file's. \"Origin finished\": the end of the first origin request for that URL"
    echo "(\`\$msec\` in the origin's log, when nginx had written the last byte to the socket); a"
    echo "client's first byte: when dd had it (late rather than early on a busy CPU). Origin"
    echo "requests, MiB and fetch seconds (of that first request) per round, \"/\"-joined."
    echo
    echo "| cache | origin requests per URL | origin MiB per URL | origin fetch s | body = file's | first byte before the origin finished | TTFB min / median / max ms | latest first byte − origin end ms | total median s | start spread ms (max) | peak RSS MiB (+memfd) | load1 |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    local c met q mib ok before lo med hi tmed f late spread l1 r m
    for c in "${CACHES[@]}"; do
        read -r met q mib ok before lo med hi tmed f late spread l1 <<<"$(cold20_stats "$c")"
        read -r r m _ <<<"$(peak "$c" cold20)"
        printf '| %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s (+%s) | %s |\n' "$(label "$c")" \
            "$q" "$mib" "$f" "$ok" "$before" "$lo" "$med" "$hi" "$late" "$tmed" "$spread" "$r" "$m" "$l1"
    done
}

report_targets() {
    echo
    echo "#### Targets"
    echo
    echo "| target | edgecache (defaults) | edgecache-whole |"
    echo "| --- | --- | --- |"
    local row ec omed
    if [ "$TTFB_RUNS" -gt 0 ]; then
        omed=$(tcol origin 4 | median)
        row="| cold-miss TTFB within 1 ms of the origin's (median) |"
        for ec in edgecache edgecache-whole; do
            if [[ " ${CACHES[*]} " == *" $ec "* ]]; then
                row+=" $(awk -v a="$(tcol "$ec" 4 | median)" -v b="$omed" 'BEGIN { d = a - b; printf "%s (%+.3f ms)", (d <= 1 ? "met" : "**missed**"), d }') |"
            else row+=" - |"; fi
        done
        echo "$row"
    fi
    for phase in "${HIT_PHASES[@]}"; do
        local best=0 best_name=- best_cpu=1e99 best_cpu_name=-
        for cache in nginx varnish; do
            [[ " ${CACHES[*]} " == *" $cache "* ]] || continue
            local m u
            m=$(col "$cache" "$phase" 5 | median)
            u=$(col "$cache" "$phase" 9 | median)
            if awk -v a="$m" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$m best_name=$cache; fi
            if awk -v a="$u" -v b="$best_cpu" 'BEGIN { exit !(a < b) }'; then best_cpu=$u best_cpu_name=$cache; fi
        done
        row="| hits, $(phase_label "$phase"): ≥ 1.5× the better of nginx and Varnish ($best_name, $best MiB/s) |"
        for ec in edgecache edgecache-whole; do
            if [[ " ${CACHES[*]} " == *" $ec "* ]] && [ "$best_name" != - ]; then
                row+=" $(awk -v a="$(col "$ec" "$phase" 5 | median)" -v b="$best" -v c="$(col "$ec" "$phase" 9 | median)" -v bc="$best_cpu" -v bn="$best_cpu_name" 'BEGIN { x = a / b; printf "%s (%.2f× MiB/s; per CPU-second %.2f× %s)", (x >= 1.5 ? "met" : "**missed**"), x, bc / c, bn }') |"
            else row+=" - |"; fi
        done
        echo "$row"
    done
    row="| RSS ≤ l1.max_bytes + $RSS_CONST_MIB MiB over the whole run (peak sampled; VmHWM) |"
    for ec in edgecache edgecache-whole; do
        if [[ " ${CACHES[*]} " == *" $ec "* ]]; then
            local maxrss maxmem bound
            maxrss=$(awk -v c="$ec" '$2 == c && $3 > m { m = $3 } END { printf "%.0f", m / 1024 }' "$RSS_LOG")
            maxmem=$(awk -v c="$ec" '$2 == c && $4 > m { m = $4 } END { printf "%.0f", m / 1024 }' "$RSS_LOG")
            bound=$((L1_OF[$ec] / 1048576 + RSS_CONST_MIB))
            row+=" $(awk -v r="$maxrss" -v h="${HWM[$ec]}" -v b="$bound" -v m="$maxmem" 'BEGIN {
                printf "%s (peak %s MiB, VmHWM %s MiB, bound %s MiB; memfd copies up to %s MiB more)", ((h > r ? h : r) <= b ? "met" : "**missed**"), r, h, b, m }') |"
        else row+=" - |"; fi
    done
    echo "$row"
    if [ "$COLD20" = 1 ]; then
        echo
        local c head="| target |" sep="| --- |"
        for c in "${CACHES[@]}"; do
            head+=" $(label "$c") |"
            sep+=" --- |"
        done
        echo "$head"
        echo "$sep"
        row="| $COLD20_CLIENTS cold clients of 100 MiB: one origin fetch, identical bytes, first bytes before the origin finished (every round) |"
        for c in "${CACHES[@]}"; do
            row+=" $(cold20_stats "$c" | awk '{ printf "%s (origin requests %s; bodies ok %s; before %s)", ($1 == "yes" ? "met" : "**missed**"), $2, $4, $5 }') |"
        done
        echo "$row"
    fi
    echo
    echo "VmHWM over the run (MiB, all processes summed): $(for c in "${CACHES[@]}"; do printf '%s %s; ' "$c" "${HWM[$c]}"; done)"
}

report | tee "${OUT:-/dev/null}"
