//! The discrete-event model: a Poisson stream of requests for Zipf-distributed keys hits an
//! L1 store ([`crate::store::L1Store`]) in front of an origin with latency and errors.
//! Responses carry `Cache-Control: max-age=T, stale-while-revalidate=W, stale-if-error=E`;
//! the core's policy turns that into freshness and stale windows (RFC 9111 §4.2.1,
//! RFC 5861), so the store's windows are the policy's. Origin fetches complete later, as
//! events: while one is in flight, other misses for the key either wait for it (coalescing)
//! or make their own fetch, and stale hits inside `stale-while-revalidate` are served at once
//! while the key is refreshed in the background.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;

use crate::headers::Headers;
use crate::policy::freshness::freshness_lifetime;
use crate::policy::reuse::stale_windows;
use crate::policy::storable::{storability, ResponseView};
use crate::policy::PolicyConfig;
use crate::store::{Admission, EntryMeta, EntryState, L1Store, Lookup, StoreConfig, Windows};
use crate::time::Timestamp;

use super::workload::{Rng, Zipf};

/// The simulated L1 store: values carry nothing, the key is all that matters.
type Store = L1Store<u64, (), BuildHasherDefault<DefaultHasher>>;

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

/// An origin fetch in progress.
struct Fetch {
    key: u64,
    ok: bool,
    /// Arrival times (µs) of the requests waiting for it.
    waiters: Vec<u64>,
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

/// Runs the simulation.
pub fn run(p: &Params) -> Result<Outcome, String> {
    let (fresh_s, swr_s, sie_s) = policy_windows(p)?;
    let zipf = Zipf::new(p.keys, p.zipf);
    // Separate streams: the request trace is the same whatever the origin does.
    let mut rng = Rng::new(p.seed);
    let mut origin_rng = Rng::new(p.seed.wrapping_add(0x5EED));
    let config = StoreConfig::new(p.capacity, p.capacity.saturating_mul(p.object_bytes).max(1))
        .with_admission(p.admission);
    // A fixed-key hasher: admission decisions, hence the whole run, depend only on the seed.
    let mut store: Store = L1Store::with_hasher(config, BuildHasherDefault::default());

    let end_us = (p.duration_secs * 1e6) as u64;
    let bucket_us = (p.bucket_secs * 1e6).max(1.0) as u64;
    let buckets = end_us.div_ceil(bucket_us).max(1) as usize;
    let mut s = Series::with_buckets(buckets, p.bucket_secs);
    let bucket = |t: u64| ((t / bucket_us) as usize).min(buckets - 1);

    let mut fetches: HashMap<u64, Fetch> = HashMap::new();
    let mut inflight: HashMap<u64, u64> = HashMap::new(); // key -> fetch id (coalescing)
    let mut done: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new(); // (completion µs, fetch id)
    let mut next_id = 0u64;
    let mean_gap_us = 1e6 / p.rate;
    let mut t = rng.exponential(mean_gap_us);
    let to_ts = |us: u64| Timestamp::from_millis(us / 1000);
    let windows_at =
        |us: u64| Windows::from_lifetimes(to_ts(us), fresh_s * 1000, swr_s * 1000, sie_s * 1000);

    loop {
        let arrival = (t < end_us as f64).then_some(t as u64);
        let next_done = done.peek().map(|Reverse((at, _))| *at);
        match (arrival, next_done) {
            (_, Some(d)) if arrival.is_none_or(|a| d <= a) => {
                let Some(Reverse((_, id))) = done.pop() else {
                    break;
                };
                let Some(fetch) = fetches.remove(&id) else {
                    continue;
                };
                if inflight.get(&fetch.key) == Some(&id) {
                    inflight.remove(&fetch.key);
                }
                complete(
                    d,
                    fetch,
                    &mut store,
                    &mut s,
                    bucket(d),
                    windows_at(d),
                    p.object_bytes,
                );
            }
            (Some(a), _) => {
                t += rng.exponential(mean_gap_us);
                let key = zipf.sample(&mut rng);
                let b = bucket(a);
                s.requests[b] += 1;
                let now = to_ts(a);
                let (needs_fetch, background) = match store.get(&key, now) {
                    Lookup::Fresh(_) => {
                        s.hits[b] += 1;
                        s.completed[b] += 1;
                        (false, false)
                    }
                    Lookup::Stale(hit) if hit.state(now) == EntryState::StaleWhileRevalidate => {
                        s.stale_served[b] += 1;
                        s.completed[b] += 1;
                        (true, true)
                    }
                    _ => {
                        s.misses[b] += 1;
                        (true, false)
                    }
                };
                if !needs_fetch {
                    continue;
                }
                let waiter = (!background).then_some(a);
                match inflight.get(&key).copied().filter(|_| p.coalescing) {
                    Some(id) => {
                        if let (Some(w), Some(f)) = (waiter, fetches.get_mut(&id)) {
                            f.waiters.push(w);
                            s.coalesced[b] += 1;
                        }
                    }
                    None => {
                        let id = next_id;
                        next_id += 1;
                        let latency_us =
                            (p.origin_latency_ms * 1000.0 * (0.5 + origin_rng.unit())) as u64;
                        let ok = origin_rng.unit() >= p.origin_error_rate;
                        fetches.insert(
                            id,
                            Fetch {
                                key,
                                ok,
                                waiters: waiter.into_iter().collect(),
                            },
                        );
                        done.push(Reverse((a + latency_us.max(1), id)));
                        s.origin_requests[b] += 1;
                        if p.coalescing {
                            inflight.insert(key, id);
                        }
                    }
                }
            }
            _ => break,
        }
    }

    let st = store.stats();
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
        evictions: st.evictions,
        rejected: st.rejected,
        policy_windows_secs: [fresh_s, swr_s, sie_s],
    };
    Ok(Outcome {
        series: s,
        totals,
        hottest_key_share: zipf.probability(0),
    })
}

/// An origin fetch completes at `at` µs: store the response (or, on failure, serve what
/// `stale-if-error` allows) and answer its waiters.
fn complete(
    at: u64,
    fetch: Fetch,
    store: &mut Store,
    s: &mut Series,
    b: usize,
    windows: Windows,
    object_bytes: usize,
) {
    let now = windows.stored_at;
    if fetch.ok {
        store.insert(fetch.key, (), EntryMeta::new(windows, object_bytes), now);
    }
    // RFC 5861 §4: on an origin error, a stale copy inside its stale-if-error window is served.
    let stale_ok = !fetch.ok
        && store
            .peek(&fetch.key)
            .is_some_and(|e| now >= e.windows.fresh_until && now < e.windows.stale_if_error_until);
    for arrived in fetch.waiters {
        let latency = at.saturating_sub(arrived) as f64 / 1000.0;
        if fetch.ok {
            s.completed[b] += 1;
            s.latency_ms_sum[b] += latency;
        } else if stale_ok {
            s.stale_if_error[b] += 1;
            s.completed[b] += 1;
            s.latency_ms_sum[b] += latency;
        } else {
            s.errors[b] += 1;
        }
    }
}
