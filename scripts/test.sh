#!/usr/bin/env bash
# THE test command for edgecache: installs what is missing (scripts/setup.sh), then runs every
# check in order and stops at the first failure, naming the step. CI runs it via .ci/run.
#
#   scripts/test.sh                  # everything
#   scripts/test.sh clippy test      # only the steps whose names start with these words
#   EDGECACHE_SKIP_SETUP=1 scripts/test.sh   # skip the install checks
#
# Adding a step is one line in the STEPS section at the bottom:
#   step      NAME COMMAND...   a check (build, lint)
#   test_step NAME COMMAND...   a test run: its output is scanned for `test result:` lines
#                               (cargo test / wasm-bindgen-test-runner format), the counts are
#                               added to the closing line, and a run that executed no test fails.
# COMMAND may be a shell function defined above the STEPS section.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export WRANGLER_SEND_METRICS=false
# CI builds once from clean: incremental caches would only take disk (3+ GB of a ~10 GB target
# directory once filled a CI machine). A developer's runs keep them.
if [[ "${CI:-}" == true ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# Feature sets. Each entry is one run; "" means default features. A feature is added
# automatically once src/ has code behind it (`feature = "NAME"`), or list it here by hand.
NATIVE_FEATURE_CANDIDATES=(server resp)         # native clippy + cargo test run with these
WASM_FEATURE_CANDIDATES=(wasm worker)       # wasm32 clippy runs once per feature
has_code_for() { grep -rqE "feature *= *\"$1\"" src; }
NATIVE_FEATURES=()
for f in "${NATIVE_FEATURE_CANDIDATES[@]}"; do has_code_for "$f" && NATIVE_FEATURES+=("$f"); done
NATIVE_FEATURE_ARGS=()
((${#NATIVE_FEATURES[@]})) && NATIVE_FEATURE_ARGS=(--features "${NATIVE_FEATURES[*]}")
WASM_FEATURE_SETS=("")
for f in "${WASM_FEATURE_CANDIDATES[@]}"; do has_code_for "$f" && WASM_FEATURE_SETS+=("$f"); done

# ---------------------------------------------------------------------------------------------
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/edgecache-test.XXXXXX")"
SUMMARY=()          # "status|seconds|name"
PASSED=0 FAILED=0 IGNORED=0
START_ALL=$SECONDS
SELECTED=("$@")

# Free space where the build writes: a full disk fails a step with a misleading compile error.
free_disk() {
    local d="$TARGET_DIR"
    while [[ ! -e "$d" ]]; do d="$(dirname "$d")"; done
    df -h --output=avail "$d" 2>/dev/null | tail -1 | tr -d ' '
}
banner() { printf '\n==> [%s] %s (disk free: %s)\n' "$(date +%H:%M:%S)" "$*" "$(free_disk)"; }

selected() {
    ((${#SELECTED[@]} == 0)) && return 0
    local s
    for s in "${SELECTED[@]}"; do [[ "$1" == "$s"* ]] && return 0; done
    return 1
}

finish() {
    local rc=$?
    printf '\n==================== edgecache test summary ====================\n'
    local line status secs name
    for line in "${SUMMARY[@]}"; do
        IFS='|' read -r status secs name <<<"$line"
        printf '  %-6s %5ss  %s\n' "$status" "$secs" "$name"
    done
    printf '  total %ss; logs in %s\n' "$((SECONDS - START_ALL))" "$LOG_DIR"
    printf '  disk: %s in %s; %s free there\n' "$(du -sh "$TARGET_DIR" 2>/dev/null | cut -f1)" \
        "$TARGET_DIR" "$(free_disk)"
    if ((rc == 0)); then
        printf 'ALL STEPS PASSED\n'
    else
        printf 'FAILED (exit %s)\n' "$rc"
    fi
    # The closing line CI reads: every `test result:` line of every test step, added up.
    printf 'tests: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$IGNORED"
    exit "$rc"
}
trap finish EXIT

# step NAME COMMAND... : run a check; stop everything on failure.
step() {
    local name="$1"; shift
    selected "$name" || return 0
    banner "$name: $*"
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    if ((rc != 0)); then
        SUMMARY+=("FAIL|$((SECONDS - t0))|$name")
        printf '\n*** step "%s" FAILED (exit %s): %s\n' "$name" "$rc" "$*" >&2
        exit "$rc"
    fi
    SUMMARY+=("ok|$((SECONDS - t0))|$name")
}

# test_step NAME COMMAND... : like step, and count the tests it ran (it must run at least one).
test_step() {
    local name="$1"; shift
    selected "$name" || return 0
    banner "$name: $*"
    local t0=$SECONDS rc=0 log="$LOG_DIR/${name//[^A-Za-z0-9_.-]/_}.log"
    "$@" 2>&1 | tee "$log" || rc=$?
    local p f i
    read -r p f i < <(awk '/^test result:/ {
            for (k = 1; k <= NF; k++) {
                if ($(k+1) ~ /^passed/) p += $k;
                if ($(k+1) ~ /^failed/) f += $k;
                if ($(k+1) ~ /^ignored/) i += $k;
            }
        } END { printf "%d %d %d\n", p, f, i }' "$log")
    PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) IGNORED=$((IGNORED + i))
    local detail="$p passed, $f failed, $i ignored"
    if ((rc == 0 && p == 0)); then
        SUMMARY+=("FAIL|$((SECONDS - t0))|$name (ran no test)")
        printf '\n*** step "%s" FAILED: it ran no test (%s)\n' "$name" "$*" >&2
        exit 1
    fi
    if ((rc != 0)); then
        SUMMARY+=("FAIL|$((SECONDS - t0))|$name ($detail)")
        printf '\n*** step "%s" FAILED (exit %s): %s\n' "$name" "$rc" "$*" >&2
        exit "$rc"
    fi
    SUMMARY+=("ok|$((SECONDS - t0))|$name ($detail)")
}

# --- commands used by the steps ------------------------------------------------------------

setup() {
    if [[ "${EDGECACHE_SKIP_SETUP:-0}" == 1 ]]; then echo "skipped (EDGECACHE_SKIP_SETUP=1)"; return 0; fi
    bash scripts/setup.sh
}

clippy_wasm32() {
    local features="$1"
    cargo clippy --lib --target wasm32-unknown-unknown ${features:+--features "$features"} -- -D warnings
}

# The integration tests in tests/ compiled for wasm32 and run under Node.js by
# wasm-bindgen-test-runner (files gated `#![cfg(not(target_arch = "wasm32"))]` compile to
# nothing and print "no tests to run!"). Unit tests in src/ stay native: libtest `#[test]`
# functions do not run on wasm32.
test_wasm32_node() {
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --no-fail-fast --target wasm32-unknown-unknown --test '*'
}

# The JS facade's wasm-bindgen tests (src/wasm, tests/wasm_facade/) through wasm-pack: under
# Node.js (tests/wasm_node.rs) and in headless Chromium (tests/wasm_browser.rs). The other
# tests/*.rs already run on wasm32 in test-wasm32-node.
test_wasm_pack_node() {
    wasm-pack test --node --mode no-install -- --features wasm --test wasm_node
}

test_wasm_pack_chrome() {
    CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}" \
        wasm-pack test --headless --chrome --mode no-install -- --features wasm --test wasm_browser
}

# The www/ demo page driven in headless Chromium by Playwright (tests/browser/www.test.mjs),
# with the live view against a real release `edgecache serve` the test starts.
test_browser_www() {
    bash scripts/build-www.sh
    cargo build --release --features server
    node tests/browser/www.test.mjs
}

# --- STEPS (in order; one line each) --------------------------------------------------------
step      setup            setup
step      fmt              cargo fmt --check
step      clippy-native    cargo clippy --all-targets "${NATIVE_FEATURE_ARGS[@]}" -- -D warnings
for fs in "${WASM_FEATURE_SETS[@]}"; do
step      "clippy-wasm32${fs:+-$fs}" clippy_wasm32 "$fs"
done
step      no_std-thumbv7m  cargo rustc --lib --crate-type rlib --no-default-features --target thumbv7m-none-eabi
test_step test-native      cargo test --no-fail-fast "${NATIVE_FEATURE_ARGS[@]}"
test_step test-wasm32-node test_wasm32_node
test_step test-wasm-pack-node   test_wasm_pack_node
test_step test-wasm-pack-chrome test_wasm_pack_chrome
test_step browser-www      test_browser_www
step      conformance-native bash scripts/conformance.sh native
step      conformance-worker bash scripts/conformance.sh worker
step      worker-bundle    bash scripts/deploy.sh --dry-run
