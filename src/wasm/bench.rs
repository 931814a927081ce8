//! `benchL1(options)`: times the L1 store's get-or-insert loop inside wasm, for comparison
//! with the same loop compiled natively (`benches/wasm/`, `BENCHMARKS.md`).

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::clock::performance_now;
use super::js::{count, from_js, to_js};
use super::sim::workload::{Rng, Zipf};
use crate::store::{EntryMeta, L1Store, StoreConfig, Windows};
use crate::time::Timestamp;

/// Options of `benchL1`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct BenchOptions {
    /// Timed operations (default 2,000,000).
    pub ops: Option<f64>,
    /// Untimed warm-up operations (default 500,000).
    pub warmup: Option<f64>,
    /// Distinct keys (default 100,000).
    pub keys: Option<f64>,
    /// Store capacity in entries (default 10,000).
    pub capacity: Option<f64>,
    /// Zipf exponent (default 0.99).
    pub zipf: Option<f64>,
}

/// The result of a benchmark run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchResult {
    /// Timed operations.
    pub ops: u64,
    /// Nanoseconds per operation.
    pub ns_per_op: f64,
    /// Hits among the timed operations.
    pub hits: u64,
}

/// A pre-generated key trace (generation is not timed).
pub fn trace(n: usize, keys: usize, zipf: f64, seed: u64) -> Vec<u64> {
    let z = Zipf::new(keys, zipf);
    let mut rng = Rng::new(seed);
    (0..n).map(|_| z.sample(&mut rng)).collect()
}

/// Replays `trace` as get-or-insert against `store`: get, and on a miss insert with a day of
/// freshness and an hour of each stale window. `now` advances 1 ms every 1000 operations.
/// Returns the hits.
pub fn replay(store: &mut L1Store<u64, u64>, trace: &[u64], start: u64) -> u64 {
    let mut hits = 0;
    for (i, &key) in trace.iter().enumerate() {
        let now = Timestamp::from_millis(1_700_000_000_000 + (start + i as u64) / 1000);
        if store.get(&key, now).into_value().is_some() {
            hits += 1;
            continue;
        }
        let windows = Windows::from_lifetimes(now, 86_400_000, 3_600_000, 3_600_000);
        store.insert(key, key, EntryMeta::new(windows, 100), now);
    }
    hits
}

/// A store like the benchmark's: `capacity` entries of 100 bytes, TinyLFU.
pub fn bench_store(capacity: usize) -> L1Store<u64, u64> {
    L1Store::new(StoreConfig::new(capacity, capacity * 400))
}

/// Runs the benchmark in wasm, timed with `performance.now()`.
#[wasm_bindgen(js_name = benchL1)]
pub fn bench_l1(options: JsValue) -> Result<JsValue, JsError> {
    let o: BenchOptions = from_js(&options, "benchmark options")?;
    let ops = count(o.ops, 2_000_000, 50_000_000, "ops")? as usize;
    let warmup = count(o.warmup, 500_000, 50_000_000, "warmup")? as usize;
    let keys = count(o.keys, 100_000, 10_000_000, "keys")?.max(1) as usize;
    let capacity = count(o.capacity, 10_000, 1 << 22, "capacity")? as usize;
    let zipf = o.zipf.unwrap_or(0.99);
    if !(zipf.is_finite() && (0.0..=3.0).contains(&zipf)) {
        return Err(JsError::new("zipf must be between 0 and 3"));
    }
    let keys_trace = trace(warmup + ops, keys, zipf, 42);
    let mut store = bench_store(capacity);
    replay(&mut store, &keys_trace[..warmup], 0);
    let t0 = performance_now();
    let hits = replay(&mut store, &keys_trace[warmup..], warmup as u64);
    let elapsed_ms = performance_now() - t0;
    to_js(&BenchResult {
        ops: ops as u64,
        ns_per_op: if ops == 0 {
            0.0
        } else {
            elapsed_ms * 1e6 / ops as f64
        },
        hits,
    })
}
