//! The L1 store's get-or-insert loop compiled natively: the counterpart of `benchL1` in the
//! wasm package (`src/wasm/bench.rs`, same trace generator, same loop). Reads the workloads
//! from `benches/wasm/workloads.json` and prints one JSON line per workload
//! (`{"name", "nsPerOp", "hits"}`), best of `WASM_BENCH_REPS` runs (default 5).
//!
//! Run through `benches/wasm/run.sh`, or alone:
//! `cargo bench --bench wasm_native --features wasm`.
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock to time itself
#![cfg(not(target_arch = "wasm32"))]

use std::time::Instant;

use edgecache::wasm::bench::{bench_store, replay, trace};

#[derive(serde::Deserialize)]
struct Workload {
    name: String,
    ops: usize,
    warmup: usize,
    keys: usize,
    capacity: usize,
    zipf: f64,
}

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/wasm/workloads.json");
    let text = std::fs::read_to_string(path).expect("benches/wasm/workloads.json");
    let workloads: Vec<Workload> = serde_json::from_str(&text).expect("valid workloads.json");
    let reps: usize = std::env::var("WASM_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for w in workloads {
        let keys = trace(w.warmup + w.ops, w.keys, w.zipf, 42);
        let mut best = f64::INFINITY;
        let mut hits = 0;
        for _ in 0..reps.max(1) {
            let mut store = bench_store(w.capacity);
            replay(&mut store, &keys[..w.warmup], 0);
            let t0 = Instant::now();
            hits = replay(&mut store, &keys[w.warmup..], w.warmup as u64);
            let ns = t0.elapsed().as_nanos() as f64 / w.ops as f64;
            best = best.min(ns);
        }
        println!(
            "{}",
            serde_json::json!({ "name": w.name, "nsPerOp": best, "hits": hits })
        );
    }
}
