#!/usr/bin/env bash
# The Worker's own cost under workerd: an L1 hit through the edgecache Worker against a
# minimal Rust worker that returns a constant response (benches/worker/ceiling, the
# ceiling), in the same run, on two hosts:
#   wrangler: `wrangler dev` (the pinned wrangler and its real workerd), as the e2e tests and
#             the conformance run use it. Its request path is wrangler's proxy workerd, then
#             the worker's own workerd (with the inspector enabled).
#   workerd:  the same workerd binary serving the same build outputs directly (a generated
#             capnp config: the bundle, its wasm, the vars as text bindings, an outbound
#             network service allowing loopback), which is what a request costs in the
#             runtime without the dev harness.
#
# It builds both workers, starts a 1 KiB origin on loopback (`Cache-Control: max-age=3600`),
# per host one edgecache Worker in front of that origin (default engine configuration, no
# Redis) and one ceiling worker, warms the edgecache key and checks that the answer is
# `Cache-Status: edgecache-l1; hit` (else it fails), then runs wrk against each subject,
# interleaved round by round (the order rotating), and prints markdown tables of medians over
# the rounds with the edgecache / ceiling ratios. Every wrk run must have zero non-2xx
# responses and zero socket errors, and the origin must serve nothing while wrk runs (all
# hits), else it fails. Every server runs in its own process group (setsid) and is killed by
# group on exit, also on errors and Ctrl-C.
#
# Usage: benches/worker/run.sh       (about 3.5 minutes with the defaults, plus the builds)
# Knobs (environment):
#   BENCH_DURATION=10  seconds per wrk run     BENCH_RUNS=3  rounds (the tables show medians)
#   BENCH_THREADS=1 BENCH_CONNECTIONS=16       wrk -t / -c
#   BENCH_PIN=1        servers (each whole wrangler dev tree, each workerd) on
#                      BENCH_SERVER_CPUS, wrk on BENCH_CLIENT_CPUS (taskset)
#                      BENCH_SERVER_CPUS=0 BENCH_CLIENT_CPUS=1
#   BENCH_HOSTS="wrangler workerd"
#   BENCH_STATS=1      also measure GET /_edgecache/stats (the Worker's entry and exit with
#                      no cache lookup and no body copy), to see where a hit's time goes
#   BENCH_BUILD=1      build both workers first (0: use build/ and ceiling/build/ as they are)
#   BENCH_KEEP=1       keep the temp folder (configs, logs, raw wrk output)
#   BENCH_OUT=file     also write the report to this file
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
THREADS=${BENCH_THREADS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
PIN=${BENCH_PIN:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
read -r -a HOSTS <<<"${BENCH_HOSTS:-wrangler workerd}"
STATS=${BENCH_STATS:-1}
BUILD=${BENCH_BUILD:-1}
KEEP=${BENCH_KEEP:-0}
OUT=${BENCH_OUT:-/dev/null}
TOKEN=bench-admin-token-0123456789
WORKERD=$ROOT/node_modules/@cloudflare/workerd-linux-64/bin/workerd

log() { printf '[bench-worker] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in wrk curl node python3 awk setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$WORKERD" ] || die "no workerd at $WORKERD (npm ci)"
if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null || die "taskset is missing (util-linux); or run with BENCH_PIN=0"
    SERVER_PIN=(taskset -c "$SERVER_CPUS")
    CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
else
    SERVER_PIN=()
    CLIENT_PIN=()
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/edgecache-bench-worker.XXXXXX")
# ---------------------------------------------------------------------------------------
# Process bookkeeping: every child leads its own process group; PGIDS holds them all.
PGIDS=()
WRK_PID=
cleanup() {
    local rc=$? g
    trap - EXIT INT TERM
    if [ -n "$WRK_PID" ]; then kill -KILL "$WRK_PID" 2>/dev/null || true; fi
    # The whole group: wrangler (node), its esbuild and the workerd processes it started.
    for g in "${PGIDS[@]}"; do kill -s KILL -- "-$g" 2>/dev/null || true; done
    for g in "${PGIDS[@]}"; do wait "$g" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$BUILD" = 1 ]; then
    log "building the edgecache Worker (scripts/build-worker.sh)"
    bash "$ROOT/scripts/build-worker.sh" >"$TMP/build.log" 2>&1 ||
        { cat "$TMP/build.log" >&2; die "scripts/build-worker.sh failed"; }
    log "building the ceiling worker (benches/worker/build-ceiling.sh)"
    bash "$ROOT/benches/worker/build-ceiling.sh" >"$TMP/build.log" 2>&1 ||
        { cat "$TMP/build.log" >&2; die "build-ceiling.sh failed"; }
fi
# Private copies of the bundles: a rebuild of build/ by someone else during the run must not
# make wrangler dev reload the Worker (that would empty its L1).
for w in edgecache ceiling; do
    src=$ROOT/build
    [ "$w" = ceiling ] && src=$ROOT/benches/worker/ceiling/build
    [ -f "$src/index.js" ] && [ -f "$src/index_bg.wasm" ] || die "no $src/index.js (build it first)"
    mkdir -p "$TMP/dist-$w"
    cp "$src/index.js" "$src/index_bg.wasm" "$TMP/dist-$w/"
done


free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# The origin: 1 KiB with a long freshness lifetime; it counts what it serves.
ORIGIN_PORT=$(free_port)
setsid node -e '
const http = require("http");
const body = Buffer.alloc(1024, "x");
let served = 0;
http.createServer((req, res) => {
  if (req.url === "/_origin/count") { res.end(String(served)); return; }
  served++;
  res.writeHead(200, { "content-type": "application/octet-stream", "cache-control": "max-age=3600", "content-length": body.length });
  res.end(body);
}).listen(Number(process.argv[1]), "127.0.0.1");
' "$ORIGIN_PORT" >"$TMP/origin.log" 2>&1 &
PGIDS+=($!)
ORIGIN_PID=$!
ORIGIN=http://127.0.0.1:$ORIGIN_PORT

declare -A PORT PID
# wait_ready KEY LOG: until the server answers any HTTP request (90 s at most).
wait_ready() {
    for _ in $(seq 900); do
        if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:${PORT[$1]}/_bench/ready"; then return 0; fi
        kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited: $(cat "$2")"
        sleep 0.1
    done
    die "$1 did not answer within 90 s: $(cat "$2")"
}

# start_wrangler WORKER: wrangler dev with a generated config naming the private bundle.
start_wrangler() {
    local w=$1 key=wrangler:$1 dir=$TMP/wrangler-$1 vars=""
    [ "$w" = edgecache ] && vars="EDGECACHE_ORIGIN = \"$ORIGIN\"
EDGECACHE_ALLOW_PRIVATE_ORIGIN = \"1\"
EDGECACHE_ADMIN_TOKEN = \"$TOKEN\"
"
    PORT[$key]=$(free_port)
    mkdir -p "$dir"
    printf 'name = "edgecache-bench-%s"\nmain = "%s"\ncompatibility_date = "2026-11-01"\n\n[vars]\n%s' \
        "$w" "$TMP/dist-$w/index.js" "$vars" >"$dir/wrangler.toml"
    CI=true WRANGLER_SEND_METRICS=false "${SERVER_PIN[@]}" setsid bash "$ROOT/scripts/wrangler.sh" dev \
        --config "$dir/wrangler.toml" --ip 127.0.0.1 --port "${PORT[$key]}" --inspector-port "$(free_port)" \
        --persist-to "$dir/state" --log-level warn --show-interactive-dev-session=false \
        </dev/null >"$dir/wrangler.log" 2>&1 &
    PID[$key]=$!
    PGIDS+=("$!")
    wait_ready "$key" "$dir/wrangler.log"
}

# start_workerd WORKER: workerd serve with a generated capnp config.
start_workerd() {
    local w=$1 key=workerd:$1 dir=$TMP/workerd-$1 bindings=""
    [ "$w" = edgecache ] && bindings="(name = \"EDGECACHE_ORIGIN\", text = \"$ORIGIN\"), (name = \"EDGECACHE_ALLOW_PRIVATE_ORIGIN\", text = \"1\"), (name = \"EDGECACHE_ADMIN_TOKEN\", text = \"$TOKEN\")"
    PORT[$key]=$(free_port)
    mkdir -p "$dir"
    cp "$TMP/dist-$w/index.js" "$TMP/dist-$w/index_bg.wasm" "$dir/"
    cat >"$dir/config.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "outbound", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${PORT[$key]}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = "2026-11-01",
  globalOutbound = "outbound",
  bindings = [ $bindings ],
);
CAPNP
    "${SERVER_PIN[@]}" setsid "$WORKERD" serve --experimental "$dir/config.capnp" \
        </dev/null >"$dir/workerd.log" 2>&1 &
    PID[$key]=$!
    PGIDS+=("$!")
    wait_ready "$key" "$dir/workerd.log"
}

# One at a time: two servers starting together on two cores only slow each other down.
for h in "${HOSTS[@]}"; do
    for w in edgecache ceiling; do
        log "starting $h: $w"
        "start_$h" "$w"
    done
done

# ---------------------------------------------------------------------------------------
# Warm and check.
url() { # host subject
    case $2 in
    stats) echo "http://127.0.0.1:${PORT[$1:edgecache]}/_edgecache/stats" ;;
    *) echo "http://127.0.0.1:${PORT[$1:$2]}/bench/1k.bin" ;;
    esac
}
origin_served() { curl -s "$ORIGIN/_origin/count"; }
declare -A HIT_STATUS
for h in "${HOSTS[@]}"; do
    hit=$(url "$h" edgecache)
    curl -s -o /dev/null "$hit" || die "$h: warming request failed"
    headers=$(curl -s -D - -o "$TMP/hit.body" "$hit" | tr -d '\r')
    grep -qi '^cache-status: edgecache-l1; hit' <<<"$headers" ||
        { printf '%s\n' "$headers" >&2; die "$h: the second request is not an L1 hit"; }
    [ "$(wc -c <"$TMP/hit.body")" = 1024 ] || die "$h: the hit's body is not 1024 bytes"
    HIT_STATUS[$h]=$(grep -i '^cache-status:' <<<"$headers" | sed 's/^[^:]*: //')
    curl -s -o "$TMP/ceiling.body" "$(url "$h" ceiling)" || die "$h: ceiling request failed"
    [ "$(wc -c <"$TMP/ceiling.body")" = 1024 ] || die "$h: the ceiling's body is not 1024 bytes"
    code=$(curl -s -o "$TMP/stats.body" -w '%{http_code}' -H "authorization: Bearer $TOKEN" "$(url "$h" stats)")
    [ "$code" = 200 ] || die "$h: stats answered $code: $(cat "$TMP/stats.body")"
    log "$h: edgecache answers \`Cache-Status: ${HIT_STATUS[$h]}\`; stats body $(wc -c <"$TMP/stats.body") bytes"
done
ORIGIN_AFTER_WARM=$(origin_served)

# ---------------------------------------------------------------------------------------
# Measure.
descendants() {
    local p=$1 c
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
ticks() { sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | awk '{print $12 + $13}' || echo 0; }
# CPU ticks (user + system) of a process and its descendants.
tree_ticks() {
    local total=0 p t
    for p in "$1" $(descendants "$1"); do
        t=$(ticks "$p")
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# The worker's own workerd under wrangler dev (the one with the inspector; the other is
# wrangler's proxy in front of it).
worker_workerd() {
    local p
    for p in $(descendants "$1"); do
        if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'workerd serve.*--inspector-addr'; then
            echo "$p"
            return
        fi
    done
    echo "$1"
}
all_servers_ticks() {
    local total=$(($(tree_ticks "$ORIGIN_PID"))) k
    for k in "${!PID[@]}"; do total=$((total + $(tree_ticks "${PID[$k]}"))); done
    echo "$total"
}
children_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }
machine_jiffies() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
HZ=$(getconf CLK_TCK)

WORKERS=(edgecache ceiling)
[ "$STATS" = 1 ] && WORKERS+=(stats)
SUBJECTS=()
for h in "${HOSTS[@]}"; do for w in "${WORKERS[@]}"; do SUBJECTS+=("$h:$w"); done; done
server_of() { # subject -> pid of its server's group leader
    local h=${1%%:*} w=${1#*:}
    [ "$w" = stats ] && w=edgecache
    echo "${PID[$h:$w]}"
}

# run_wrk SUBJECT SECONDS OUTFILE (in the background so a signal stops it at once)
run_wrk() {
    local auth=() h=${1%%:*} w=${1#*:}
    [ "$w" = stats ] && auth=(-H "authorization: Bearer $TOKEN")
    "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2"s --latency "${auth[@]}" "$(url "$h" "$w")" \
        >"$3" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || die "wrk failed: $(cat "$3")"
    WRK_PID=
}

# parse_wrk FILE -> "rps p50_ms p99_ms requests socket_errors non2xx"
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
check_wrk() { # subject file
    local rps p50 p99 reqs errors bad
    read -r rps p50 p99 reqs errors bad <<<"$(parse_wrk "$2")"
    [ "$bad" = 0 ] || die "$1: $bad non-2xx responses: $(cat "$2")"
    [ "$errors" = 0 ] || die "$1: $errors socket errors: $(cat "$2")"
    [ "${reqs:-0}" -gt 0 ] 2>/dev/null || die "$1: no requests completed: $(cat "$2")"
}

RESULTS=$TMP/results.tsv
printf 'round\tsubject\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tworker_cpu_us_per_req\tserver_cpu_pct\tother_cpu_pct\tload1\n' >"$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date -u '+%Y-%m-%d %H:%M UTC')

log "wrk warm-up (3 s per subject: JIT tiers, the isolate's caches)"
for s in "${SUBJECTS[@]}"; do
    run_wrk "$s" 3 "$TMP/warmup-${s/:/-}.txt"
    check_wrk "$s warm-up" "$TMP/warmup-${s/:/-}.txt"
done

n=${#SUBJECTS[@]}
for round in $(seq "$RUNS"); do
    for ((k = 0; k < n; k++)); do
        # Rotate the order each round so no subject always goes first or last.
        s=${SUBJECTS[$(((k + round - 1) % n))]}
        out=$TMP/wrk-${s/:/-}-$round.txt
        server=$(server_of "$s")
        inner=$(worker_workerd "$server")
        load1=$(cut -d' ' -f1 /proc/loadavg)
        read -r busy0 total0 <<<"$(machine_jiffies)"
        t0_server=$(tree_ticks "$server")
        t0_inner=$(ticks "$inner")
        t0_ours=$(all_servers_ticks)
        t0_kids=$(children_ticks)
        t0=$(date +%s%N)
        run_wrk "$s" "$DURATION" "$out"
        t1=$(date +%s%N)
        t1_server=$(tree_ticks "$server")
        t1_inner=$(ticks "$inner")
        t1_ours=$(all_servers_ticks)
        t1_kids=$(children_ticks)
        read -r busy1 total1 <<<"$(machine_jiffies)"
        check_wrk "$s round $round" "$out"
        read -r rps p50 p99 reqs _ _ <<<"$(parse_wrk "$out")"
        awk -v round="$round" -v s="$s" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v reqs="$reqs" \
            -v t="$((t1_server - t0_server))" -v ti="$((t1_inner - t0_inner))" -v hz="$HZ" \
            -v d="$(((t1 - t0) / 1000000))" -v b="$((busy1 - busy0))" -v tot="$((total1 - total0))" \
            -v ours="$((t1_ours - t0_ours + t1_kids - t0_kids))" -v load1="$load1" 'BEGIN {
                cpu_s = t / hz; d = d / 1000
                other = (tot > 0 ? 100 * (b - ours) / tot : 0)
                printf "%s\t%s\t%.0f\t%.3f\t%.3f\t%.1f\t%.1f\t%.0f\t%.0f\t%s\n", round, s, rps, p50, p99,
                    (reqs > 0 ? cpu_s * 1e6 / reqs : 0), (reqs > 0 ? ti / hz * 1e6 / reqs : 0),
                    100 * cpu_s / d, (other > 0 ? other : 0), load1 }' >>"$RESULTS"
        log "$(tail -n1 "$RESULTS" | awk -F'\t' '{printf "round %s %-18s %6s req/s  p50 %s ms  p99 %s ms  %s us CPU/req (worker'"'"'s workerd %s; server %s%% of a core; other work %s%% of the machine; load %s)", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}')"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ORIGIN_DURING=$(($(origin_served) - ORIGIN_AFTER_WARM))
[ "$ORIGIN_DURING" = 0 ] || die "the origin served $ORIGIN_DURING requests during the measured runs (not all hits)"

# ---------------------------------------------------------------------------------------
# Report.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s { print $c }' "$RESULTS" | median; }
label() {
    case $1 in
    edgecache) echo "edgecache Worker, L1 hit (1 KiB)" ;;
    ceiling) echo "ceiling: constant 1 KiB response" ;;
    stats) echo "edgecache Worker, GET /_edgecache/stats" ;;
    esac
}
{
    echo "- $START_TIME; $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) cores; wrangler $(node -p "require('$ROOT/node_modules/wrangler/package.json').version"), workerd $(node -p "require('$ROOT/node_modules/@cloudflare/workerd-linux-64/package.json').version")"
    echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS interleaved rounds, medians$([ "$PIN" = 1 ] && echo "; servers on CPU $SERVER_CPUS, wrk on CPU $CLIENT_CPUS")"
    for h in "${HOSTS[@]}"; do echo "- $h: edgecache answered \`Cache-Status: ${HIT_STATUS[$h]}\`"; done
    echo "- the origin served 0 requests during the measured runs; every run 0 non-2xx, 0 socket errors"
    echo "- load average $LOAD_START at start, $LOAD_END at end (it counts the benchmark itself, 1–2); CPU used by other work during the runs: median $(awk -F'\t' 'NR > 1 { print $9 }' "$RESULTS" | median)% of the machine (max $(awk -F'\t' 'NR > 1 { print $9 }' "$RESULTS" | sort -g | tail -n1)%)"
    for h in "${HOSTS[@]}"; do
        echo
        case $h in
        wrangler) echo "**wrangler dev** (wrangler's proxy workerd, then the worker's workerd)" ;;
        workerd) echo "**workerd alone** (same binary and bundles, capnp config)" ;;
        esac
        echo
        echo "| subject | req/s | p50 ms | p99 ms | server CPU µs/req | of which the worker's workerd |"
        echo "|---|---:|---:|---:|---:|---:|"
        for w in "${WORKERS[@]}"; do
            s=$h:$w
            inner=$(col "$s" 7)
            [ "$h" = workerd ] && inner="(same)"
            printf '| %s | %.0f | %s | %s | %s | %s |\n' "$(label "$w")" "$(col "$s" 3)" "$(col "$s" 4)" "$(col "$s" 5)" "$(col "$s" 6)" "$inner"
        done
        echo
        awk -v a="$(col "$h:edgecache" 3)" -v b="$(col "$h:ceiling" 3)" -v c="$(col "$h:edgecache" 6)" -v d="$(col "$h:ceiling" 6)" \
            -v p="$(col "$h:edgecache" 4)" -v q="$(col "$h:ceiling" 4)" -v r="$(col "$h:edgecache" 5)" -v t="$(col "$h:ceiling" 5)" 'BEGIN {
            printf "edgecache / ceiling: req/s %.2f×, p50 %.2f×, p99 %.2f×, CPU per request %.2f× (%+.1f µs)\n", a / b, p / q, r / t, c / d, c - d }'
    done
    echo
    echo "Per round:"
    echo
    echo "| round | subject | req/s | p50 ms | p99 ms | server CPU µs/req | worker's workerd µs/req | server % of a core | other work % | load1 |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$RESULTS"
} | tee "$OUT"
