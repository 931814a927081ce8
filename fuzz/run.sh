#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 60), one after another, on the
# stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags), then
# prints each target's total executions and crash count.
#
#   fuzz/run.sh [seconds] [target...]
#
# Corpora grow in fuzz/corpus/<target>/ (gitignored), seeded from fuzz/seeds/<target>/;
# crashes land in fuzz/artifacts/<target>/. Exit status 1 if any target crashed.
set -uo pipefail

cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(cache_control entry_decode http_date cache_key redis_url write_behind_record structured_fields range rest_reply)
fi
export RUSTC_BOOTSTRAP=1
mkdir -p logs

summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="logs/$target.log"
    crashes_before=$(find "artifacts/$target" -type f | wc -l)
    echo "== $target: ${secs}s" >&2
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    crashes_after=$(find "artifacts/$target" -type f | wc -l)
    crashes=$((crashes_after - crashes_before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        # A failure that left no artifact (build error, sanitizer abort) still counts.
        crashes=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
    summary+=("$(printf '%-14s %8ss %14s execs %3s crashes' "$target" "$secs" "$execs" "$crashes")")
    if [ "$crashes" -ne 0 ]; then
        failed=1
        tail -n 30 "$log" >&2
    fi
done

printf '%s\n' "${summary[@]}"
exit "$failed"
