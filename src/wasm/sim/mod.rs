//! `simulate(options)`: a discrete-event simulation of an edge cache in front of a slow,
//! failing origin, run with the real L1 store and policy, for comparing hit ratio, origin
//! load and stale serving with and without `stale-while-revalidate` (RFC 5861 §3) and
//! request coalescing.

pub mod model;
pub mod workload;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::js::{from_js, to_js};
use crate::store::Admission;
use model::Params;

/// Most requests one run may simulate (`rate * durationSecs`).
pub const MAX_REQUESTS: f64 = 2_000_000.0;
/// Most distinct keys.
pub const MAX_KEYS: f64 = 1_000_000.0;

/// The options of `simulate`; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SimOptions {
    /// Distinct keys (default 10,000).
    pub keys: Option<f64>,
    /// Zipf exponent, 0 (uniform) to 3 (default 1.0).
    pub zipf: Option<f64>,
    /// Requests per simulated second (default 1,000).
    pub rate: Option<f64>,
    /// Simulated seconds (default 120).
    pub duration_secs: Option<f64>,
    /// L1 capacity in entries (default 1,000).
    pub capacity: Option<f64>,
    /// Bytes per object (default 10,000).
    pub object_bytes: Option<f64>,
    /// `max-age` in seconds (default 10).
    pub ttl_secs: Option<f64>,
    /// `stale-while-revalidate` in seconds (default 0).
    pub swr_secs: Option<f64>,
    /// `stale-if-error` in seconds (default 0).
    pub sie_secs: Option<f64>,
    /// Mean origin latency in ms (default 200).
    pub origin_latency_ms: Option<f64>,
    /// Origin error probability, 0 to 1 (default 0).
    pub origin_error_rate: Option<f64>,
    /// Coalesce concurrent misses (default true).
    pub coalescing: Option<bool>,
    /// `"tinylfu"` (default) or `"lru"`.
    pub admission: Option<String>,
    /// Reporting bucket in seconds (default: the duration / 60).
    pub bucket_secs: Option<f64>,
    /// RNG seed (default 1).
    pub seed: Option<f64>,
}

fn number(v: Option<f64>, default: f64, min: f64, max: f64, name: &str) -> Result<f64, String> {
    let x = v.unwrap_or(default);
    if x.is_finite() && x >= min && x <= max {
        Ok(x)
    } else {
        Err(format!("{name} must be between {min} and {max}, got {x}"))
    }
}

impl SimOptions {
    /// Validates the options into model parameters.
    pub fn params(&self) -> Result<Params, String> {
        let duration_secs = number(self.duration_secs, 120.0, 1.0, 86_400.0, "durationSecs")?;
        let rate = number(self.rate, 1000.0, 0.01, 1_000_000.0, "rate")?;
        if rate * duration_secs > MAX_REQUESTS {
            return Err(format!(
                "rate x durationSecs is {:.0} requests; at most {MAX_REQUESTS:.0} per run",
                rate * duration_secs
            ));
        }
        let bucket_secs = number(
            self.bucket_secs,
            duration_secs / 60.0,
            duration_secs / 10_000.0,
            duration_secs,
            "bucketSecs",
        )?;
        Ok(Params {
            keys: number(self.keys, 10_000.0, 1.0, MAX_KEYS, "keys")? as usize,
            zipf: number(self.zipf, 1.0, 0.0, 3.0, "zipf")?,
            rate,
            duration_secs,
            capacity: number(self.capacity, 1000.0, 1.0, MAX_KEYS, "capacity")? as usize,
            object_bytes: number(self.object_bytes, 10_000.0, 1.0, 1e8, "objectBytes")? as usize,
            ttl_secs: number(self.ttl_secs, 10.0, 0.0, 31_536_000.0, "ttlSecs")? as u32,
            swr_secs: number(self.swr_secs, 0.0, 0.0, 31_536_000.0, "swrSecs")? as u32,
            sie_secs: number(self.sie_secs, 0.0, 0.0, 31_536_000.0, "sieSecs")? as u32,
            origin_latency_ms: number(
                self.origin_latency_ms,
                200.0,
                0.0,
                600_000.0,
                "originLatencyMs",
            )?,
            origin_error_rate: number(self.origin_error_rate, 0.0, 0.0, 1.0, "originErrorRate")?,
            coalescing: self.coalescing.unwrap_or(true),
            admission: match self.admission.as_deref() {
                None | Some("tinylfu") => Admission::TinyLfu,
                Some("lru") => Admission::None,
                Some(other) => {
                    return Err(format!(
                        "admission must be \"tinylfu\" or \"lru\", got {other:?}"
                    ))
                }
            },
            bucket_secs,
            seed: number(self.seed, 1.0, 0.0, 9.007e15, "seed")? as u64,
        })
    }
}

/// Runs one simulation and returns `{series: {t, requests, hits, staleServed, staleIfError,
/// misses, coalesced, originRequests, errors, latencyMsSum, completed}, totals: {...},
/// hottestKeyShare}`. Deterministic for a seed. Throws on invalid options.
#[wasm_bindgen]
pub fn simulate(options: JsValue) -> Result<JsValue, JsError> {
    let options: SimOptions = from_js(&options, "simulation options")?;
    let params = options.params().map_err(|e| JsError::new(&e))?;
    let outcome = model::run(&params).map_err(|e| JsError::new(&e))?;
    to_js(&outcome)
}
