// The L1 store's get-or-insert loop inside wasm under Node.js: loads the nodejs-target
// package built by benches/wasm/run.sh and calls benchL1 for each workload in
// workloads.json, best of WASM_BENCH_REPS runs (default 5). Prints one JSON line each.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.argv[2];
if (!pkg) throw new Error('usage: node run.mjs PKG_DIR');
const wasm = createRequire(import.meta.url)(join(pkg, 'edgecache.js'));
const workloads = JSON.parse(readFileSync(join(here, 'workloads.json'), 'utf8'));
const reps = Number(process.env.WASM_BENCH_REPS || 5);
for (const { name, ...options } of workloads) {
  let best = Infinity;
  let hits = 0;
  for (let i = 0; i < Math.max(1, reps); i++) {
    const r = wasm.benchL1(options);
    best = Math.min(best, r.nsPerOp);
    hits = r.hits;
  }
  console.log(JSON.stringify({ name, nsPerOp: best, hits }));
}
