# Shared by scripts/bench-http.sh and scripts/bench-large.sh (sourced, not run): process
# bookkeeping (everything started goes into PIDS, and is stopped by pid on exit, children
# included), start-up waits, free ports and config templates.
# Expects from the sourcing script: ROOT, TMP, KEEP, PIDS, WRK_PID, ORIGIN_PORT, WORKERS
# (for render), CLIENT_PIDS (optional: client processes also stopped on exit), log, die.
# shellcheck shell=bash disable=SC2034
CLIENT_PIDS=("${CLIENT_PIDS[@]}")

descendants() {
    local p=$1 c
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    if [ -n "$WRK_PID" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    # Children of what we started (nginx workers, the Varnish child), to make sure none is
    # left behind if its parent does not take it down.
    local kids=()
    for pid in "${CLIENT_PIDS[@]}"; do
        # shellcheck disable=SC2207
        kids+=($(descendants "$pid") "$pid")
    done
    for pid in "${PIDS[@]}"; do
        # shellcheck disable=SC2207
        kids+=($(descendants "$pid"))
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${kids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, output to $TMP/NAME.out.
declare -A PID_OF
start() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
}

# wait_http NAME URL: until URL answers (30 s at most) or NAME exits.
wait_http() {
    local name=$1 url=$2
    for _ in $(seq 300); do
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
            tail -n 30 "$TMP/$name.out" >&2 || true
            die "$name exited during start-up"
        fi
        sleep 0.1
    done
    tail -n 30 "$TMP/$name.out" >&2 || true
    die "$name did not answer at $url within 30 s"
}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# render TEMPLATE OUT DIR PORT: fills in a config template from benches/http.
render() {
    sed -e "s#@DIR@#$3#g" -e "s#@PORT@#$4#g" -e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
        -e "s#@WWW@#$TMP/www#g" -e "s#@WORKERS@#$WORKERS#g" "$1" >"$2"
}
