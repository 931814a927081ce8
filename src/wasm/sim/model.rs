//! The discrete-event model: a Poisson stream of requests for Zipf-distributed keys is
//! served by the real engine ([`crate::engine::Engine`]) on the simulated host
//! ([`crate::engine::simulated`]): simulated time, and an origin with latency and errors
//! whose responses carry `Cache-Control: max-age=T, stale-while-revalidate=W,
//! stale-if-error=E`. So what the page shows is what edgecache does: its lookup, request
//! coalescing, stale-while-revalidate with background refreshes and stale-if-error (RFC 9111
//! §4, RFC 5861), each request classified by the `Cache-Status` the engine sent (RFC 9211).

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::config::{EngineConfig, L1Admission};
use crate::engine::simulated::{request, Answer, Executor, SimHost, Simulation};
use crate::engine::Engine;
use crate::headers::Headers;
use crate::policy::freshness::freshness_lifetime;
use crate::policy::reuse::stale_windows;
use crate::policy::storable::{storability, ResponseView};
use crate::policy::PolicyConfig;
use crate::store::Admission;
use crate::time::{Clock, Timestamp};

use super::workload::{Rng, Zipf};

/// When simulated time starts (any instant will do; this one is 2023-11-14).
const START_MS: u64 = 1_700_000_000_000;

/// A simulation's parameters (already validated).
#[derive(Clone, Debug)]
pub struct Params {
    /// Distinct keys.
    pub keys: usize,
    /// Zipf exponent.
    pub zipf: f64,
    /// Requests per simulated second.
    pub rate: f64,
    /// Simulated seconds.
    pub duration_secs: f64,
    /// L1 entry bound.
    pub capacity: usize,
    /// Bytes per object (the byte bound is `capacity * object_bytes`).
    pub object_bytes: usize,
    /// `max-age` the origin sends.
    pub ttl_secs: u32,
    /// `stale-while-revalidate` the origin sends.
    pub swr_secs: u32,
    /// `stale-if-error` the origin sends.
    pub sie_secs: u32,
    /// Mean origin latency in ms (each fetch takes 0.5x to 1.5x of it).
    pub origin_latency_ms: f64,
    /// Probability that an origin fetch fails.
    pub origin_error_rate: f64,
    /// Whether concurrent misses for a key share one origin fetch.
    pub coalescing: bool,
    /// Admission policy of the store.
    pub admission: Admission,
    /// Width of a reporting bucket in simulated seconds.
    pub bucket_secs: f64,
    /// RNG seed.
    pub seed: u64,
}

/// Per-bucket series and totals.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// Bucket start times in simulated seconds.
    pub t: Vec<f64>,
    /// Requests arriving in the bucket.
    pub requests: Vec<u64>,
    /// Served fresh from the cache.
    pub hits: Vec<u64>,
    /// Served stale while revalidating (RFC 5861 §3).
    pub stale_served: Vec<u64>,
    /// Served stale because the origin failed (RFC 5861 §4).
    pub stale_if_error: Vec<u64>,
    /// Requests that had to wait for the origin.
    pub misses: Vec<u64>,
    /// Of those, requests that joined a fetch already in flight.
    pub coalesced: Vec<u64>,
    /// Fetches sent to the origin (foreground and background).
    pub origin_requests: Vec<u64>,
    /// Requests answered with an error (origin failed, nothing stale to serve).
    pub errors: Vec<u64>,
    /// Sum of the latencies of requests completed in the bucket, ms.
    pub latency_ms_sum: Vec<f64>,
    /// Requests completed in the bucket.
    pub completed: Vec<u64>,
}

impl Series {
    fn with_buckets(n: usize, width: f64) -> Series {
        Series {
            t: (0..n).map(|i| i as f64 * width).collect(),
            requests: vec![0; n],
            hits: vec![0; n],
            stale_served: vec![0; n],
            stale_if_error: vec![0; n],
            misses: vec![0; n],
            coalesced: vec![0; n],
            origin_requests: vec![0; n],
            errors: vec![0; n],
            latency_ms_sum: vec![0.0; n],
            completed: vec![0; n],
        }
    }
}

/// What one run produced.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The per-bucket series.
    pub series: Series,
    /// Totals over the run.
    pub totals: Totals,
    /// Share of all requests that went to the hottest key.
    pub hottest_key_share: f64,
}

/// Totals over a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Fresh hits.
    pub hits: u64,
    /// Stale served while revalidating.
    pub stale_served: u64,
    /// Stale served on origin error.
    pub stale_if_error: u64,
    /// Requests that waited for the origin.
    pub misses: u64,
    /// Requests that joined an in-flight fetch.
    pub coalesced: u64,
    /// Origin fetches.
    pub origin_requests: u64,
    /// Error responses.
    pub errors: u64,
    /// (hits + stale served) / requests.
    pub hit_ratio: f64,
    /// Mean request latency, ms.
    pub mean_latency_ms: f64,
    /// Evictions in the store.
    pub evictions: u64,
    /// Inserts refused by admission.
    pub rejected: u64,
    /// The windows the policy derived from the origin's Cache-Control, seconds:
    /// `[fresh, stale-while-revalidate, stale-if-error]`.
    pub policy_windows_secs: [u64; 3],
}

/// Derives the store windows from the origin's `Cache-Control` through the policy.
fn policy_windows(p: &Params) -> Result<(u64, u64, u64), String> {
    let config = PolicyConfig::default();
    let headers = Headers::from_pairs([(
        "cache-control",
        format!(
            "max-age={}, stale-while-revalidate={}, stale-if-error={}",
            p.ttl_secs, p.swr_secs, p.sie_secs
        ),
    )]);
    let view = ResponseView::new(&headers, &config);
    let freshness = freshness_lifetime(
        200,
        &headers,
        &view.directives,
        &view.source,
        Timestamp::EPOCH,
        &config,
    );
    storability(
        "GET",
        &Headers::new(),
        200,
        &headers,
        &view,
        freshness.source,
        &config,
    )
    .map_err(|e| format!("the simulated response is not storable: {}", e.as_str()))?;
    let w = stale_windows(&view, &config);
    Ok((
        freshness.lifetime_secs,
        w.while_revalidate_secs,
        w.if_error_secs,
    ))
}

/// How one request ended, from the response the engine sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// From the cache, fresh.
    Hit,
    /// From the cache, stale, while it is refreshed in the background (RFC 5861 §3).
    StaleWhileRevalidate,
    /// After another request's fetch, which this one waited for (RFC 9211 `collapsed`).
    Collapsed,
    /// After its own origin fetch.
    Fetched,
    /// Stale, because the origin failed (RFC 5861 §4).
    StaleIfError,
    /// An error: the origin failed and nothing stale could stand in.
    Error,
}

impl Served {
    /// Reads the outcome off the response's status and `Cache-Status`.
    fn of(status: u16, cache_status: &str) -> Served {
        if cache_status.contains("detail=stale-while-revalidate") {
            Served::StaleWhileRevalidate
        } else if cache_status.contains("detail=stale-if-error") {
            Served::StaleIfError
        } else if status >= 500 {
            Served::Error
        } else if cache_status.contains("collapsed") {
            Served::Collapsed
        } else if cache_status.contains("; hit") {
            Served::Hit
        } else {
            Served::Fetched
        }
    }
}

/// The configuration the simulated edgecache runs with.
fn engine_config(p: &Params) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.l1.max_entries = p.capacity.max(1);
    // Entries are bounded by count: the simulated bodies are a byte each, and `object_bytes`
    // only scales the byte bound the count stands for.
    config.l1.max_bytes = p.capacity.max(1).saturating_mul(64 << 10);
    config.l1.admission = match p.admission {
        Admission::TinyLfu => L1Admission::TinyLfu,
        Admission::None => L1Admission::Lru,
    };
    // No fetch is cut short; without coalescing a request never waits for another's.
    let slowest_ms = (p.origin_latency_ms * 1.5) as u64 + 1_000;
    config.limits.origin_timeout_ms = slowest_ms;
    config.limits.coalesce_wait_ms = if p.coalescing { slowest_ms } else { 0 };
    config
}

/// Runs the simulation.
pub fn run(p: &Params) -> Result<Outcome, String> {
    let (fresh_s, swr_s, sie_s) = policy_windows(p)?;
    let zipf = Zipf::new(p.keys, p.zipf);
    // Separate streams: the request trace is the same whatever the origin does.
    let mut rng = Rng::new(p.seed);
    let origin_rng = RefCell::new(Rng::new(p.seed.wrapping_add(0x5EED)));

    let end_us = (p.duration_secs * 1e6) as u64;
    let bucket_us = (p.bucket_secs * 1e6).max(1.0) as u64;
    let buckets = end_us.div_ceil(bucket_us).max(1) as usize;
    let series = Rc::new(RefCell::new(Series::with_buckets(buckets, p.bucket_secs)));
    let start = Timestamp::from_millis(START_MS);
    let bucket = move |at: Timestamp| {
        let us = at.millis_since(start).saturating_mul(1000);
        ((us / bucket_us) as usize).min(buckets - 1)
    };

    let sim = Simulation::new(start, Answer::respond(200, &[], ""));
    let cache_control = format!(
        "max-age={}, stale-while-revalidate={}, stale-if-error={}",
        p.ttl_secs, p.swr_secs, p.sie_secs
    );
    {
        let mut script = sim.script.borrow_mut();
        script.keep_requests = false;
        let (clock, series, latency_ms, error_rate) = (
            sim.clock.clone(),
            series.clone(),
            p.origin_latency_ms,
            p.origin_error_rate,
        );
        script.answerer = Some(Box::new(move |_request| {
            series.borrow_mut().origin_requests[bucket(clock.now())] += 1;
            let mut rng = origin_rng.borrow_mut();
            let latency = (latency_ms * (0.5 + rng.unit())) as u64;
            let answer = if rng.unit() >= error_rate {
                Answer::respond(200, &[("cache-control", &cache_control)], "x")
            } else {
                Answer::respond(503, &[("cache-control", "no-store")], "origin error")
            };
            (answer, latency.max(1))
        }));
    }
    let engine: Engine<SimHost> = sim
        .engine(engine_config(p))
        .map_err(|e| format!("the simulated cache's configuration: {e}"))?;

    let mut executor = Executor::new(sim.clock.clone());
    let mean_gap_us = 1e6 / p.rate;
    let mut t = rng.exponential(mean_gap_us);
    while t < end_us as f64 {
        let arrival = start.plus_millis(t as u64 / 1000);
        executor.run_until(arrival);
        let key = zipf.sample(&mut rng);
        let b = bucket(arrival);
        series.borrow_mut().requests[b] += 1;
        let (engine, clock, series) = (&engine, sim.clock.clone(), series.clone());
        executor.spawn(async move {
            let handled = engine
                .handle(request("GET", &format!("/k{key}"), &[]))
                .await;
            let latency_ms = clock.now().millis_since(arrival) as f64;
            let cache_status = handled
                .response
                .headers
                .get_str("cache-status")
                .unwrap_or("");
            record(
                &mut series.borrow_mut(),
                b,
                Served::of(handled.response.status, cache_status),
                latency_ms,
            );
            // Background work (a stale-while-revalidate refresh) runs after the response, as
            // a host runs it.
            if let Some(job) = handled.job {
                engine.run_job(job).await;
            }
        });
        t += rng.exponential(mean_gap_us);
    }
    executor.run_until(start.plus_millis(end_us / 1000));
    // Requests still waiting at the end finish (their latency counts where they arrived).
    executor.run();

    let snapshot = engine.snapshot();
    let s = series.borrow().clone();
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    let requests = sum(&s.requests);
    let completed = sum(&s.completed);
    let latency: f64 = s.latency_ms_sum.iter().sum();
    let totals = Totals {
        requests,
        hits: sum(&s.hits),
        stale_served: sum(&s.stale_served),
        stale_if_error: sum(&s.stale_if_error),
        misses: sum(&s.misses),
        coalesced: sum(&s.coalesced),
        origin_requests: sum(&s.origin_requests),
        errors: sum(&s.errors),
        hit_ratio: if requests == 0 {
            0.0
        } else {
            (sum(&s.hits) + sum(&s.stale_served)) as f64 / requests as f64
        },
        mean_latency_ms: if completed == 0 {
            0.0
        } else {
            latency / completed as f64
        },
        evictions: snapshot.l1_evictions,
        rejected: snapshot.l1_rejected,
        policy_windows_secs: [fresh_s, swr_s, sie_s],
    };
    Ok(Outcome {
        series: s,
        totals,
        hottest_key_share: zipf.probability(0),
    })
}

/// Counts one request that arrived in bucket `b`.
fn record(s: &mut Series, b: usize, served: Served, latency_ms: f64) {
    let completed = match served {
        Served::Hit => {
            s.hits[b] += 1;
            true
        }
        Served::StaleWhileRevalidate => {
            s.stale_served[b] += 1;
            true
        }
        Served::Collapsed => {
            s.misses[b] += 1;
            s.coalesced[b] += 1;
            true
        }
        Served::Fetched => {
            s.misses[b] += 1;
            true
        }
        Served::StaleIfError => {
            s.misses[b] += 1;
            s.stale_if_error[b] += 1;
            true
        }
        Served::Error => {
            s.misses[b] += 1;
            s.errors[b] += 1;
            false
        }
    };
    if completed {
        s.completed[b] += 1;
        s.latency_ms_sum[b] += latency_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::sim::SimOptions;

    fn run_with(options: SimOptions) -> Outcome {
        run(&options.params().unwrap()).unwrap()
    }

    /// The www page's defaults: the engine serves every request, coalescing and
    /// stale-while-revalidate show as the engine does them, and a run is repeatable.
    #[test]
    fn the_engine_serves_the_simulated_trace() {
        let options = |swr: f64, coalescing: bool| SimOptions {
            keys: Some(2000.0),
            rate: Some(2000.0),
            duration_secs: Some(20.0),
            capacity: Some(500.0),
            ttl_secs: Some(5.0),
            swr_secs: Some(swr),
            sie_secs: Some(60.0),
            origin_latency_ms: Some(250.0),
            origin_error_rate: Some(0.05),
            coalescing: Some(coalescing),
            ..SimOptions::default()
        };
        let started = std::time::Instant::now();
        let a = run_with(options(30.0, true));
        let elapsed = started.elapsed();
        let b = run_with(options(0.0, false));
        let t = &a.totals;
        eprintln!(
            "{t:?} in {elapsed:?}; without SWR and coalescing: {:?}",
            b.totals
        );
        assert!(t.requests > 30_000);
        assert_eq!(
            t.requests,
            t.hits + t.stale_served + t.misses,
            "every request is classified once"
        );
        assert!(t.stale_served > 0 && t.coalesced > 0);
        assert!(
            b.totals.stale_if_error > 0,
            "without SWR, stale entries meet origin errors"
        );
        assert_eq!(b.totals.stale_served, 0);
        assert_eq!(b.totals.coalesced, 0);
        assert!(t.hit_ratio > b.totals.hit_ratio);
        assert!(
            a.totals.evictions > 0,
            "the L1 is smaller than the key space"
        );
        let again = run_with(options(30.0, true));
        assert_eq!(
            serde_json::to_string(&again.totals).unwrap(),
            serde_json::to_string(&a.totals).unwrap(),
            "deterministic for a seed"
        );
    }
}
