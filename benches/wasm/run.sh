#!/usr/bin/env bash
# L1 store operations in wasm (Node.js) against the same loop natively: builds the nodejs
# wasm package (release) and the native bench, runs both on benches/wasm/workloads.json and
# prints a markdown table of ns/op and the wasm/native ratio.
#
#   benches/wasm/run.sh            # WASM_BENCH_REPS=5 runs per cell, best kept
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
PKG="$ROOT/target/wasm-bench-pkg"
wasm-pack build --target nodejs --mode no-install --release --out-dir "$PKG" --out-name edgecache \
    --no-pack . --features wasm >&2
cargo bench --bench wasm_native --features wasm --no-run >&2
wasm_out="$(node benches/wasm/run.mjs "$PKG")"
native_out="$(cargo bench --bench wasm_native --features wasm 2>/dev/null | grep '^{')"
node - "$wasm_out" "$native_out" <<'JS'
const [wasmOut, nativeOut] = process.argv.slice(2).map((s) => s.trim().split('\n').map((l) => JSON.parse(l)));
console.log(`node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`);
console.log('| workload | native ns/op | wasm (node) ns/op | wasm / native | hits (native, wasm) |');
console.log('| --- | ---: | ---: | ---: | --- |');
for (const n of nativeOut) {
  const w = wasmOut.find((x) => x.name === n.name);
  console.log(`| ${n.name} | ${n.nsPerOp.toFixed(1)} | ${w.nsPerOp.toFixed(1)} | ${(w.nsPerOp / n.nsPerOp).toFixed(2)}x | ${n.hits}, ${w.hits} |`);
}
JS
