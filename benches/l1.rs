//! L1 store benchmark: edgecache's `L1Store` (with and without TinyLFU admission) against the
//! bare `lru` crate, `quick_cache::unsync::Cache` and `moka::sync::Cache`, on the same
//! pre-generated key traces. Prints a markdown table of ns/op and hit ratio.
//!
//! Run with `cargo bench --bench l1`. Environment knobs: `L1_BENCH_OPS` (measured operations
//! per run, default 5,000,000), `L1_BENCH_WARMUP` (default 1,000,000), `L1_BENCH_REPS` (runs per
//! cell, best time kept, default 3), `L1_BENCH_FILTER` (only workloads whose name contains it),
//! `L1_BENCH_SUBJECTS` (comma-separated column indexes to run, e.g. `0,3`).
//!
//! Every cache gets the same hasher family (foldhash, hashbrown's default) so the comparison is
//! about the cache structures, not the hash function. Each run builds a fresh cache, replays
//! the warm-up part of the trace untimed, then times the measured part; ns/op is the best of
//! the runs (the machine is shared), the hit ratio is over the measured part. Time is the
//! benchmark thread's CPU time where Linux reports it (`CLOCK_THREAD_CPUTIME_ID`), else
//! wall time, so that time slices given to other processes on a shared machine do not count.
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock to time itself
#![cfg(not(target_arch = "wasm32"))]

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Instant;

use edgecache::store::{Admission, EntryMeta, L1Store, StoreConfig, Windows};
use edgecache::time::Timestamp;
use hashbrown::DefaultHashBuilder;

const CAPACITY: usize = 10_000;
const ENTRY_SIZE: usize = 100;

/// A cache under test, driven as get-or-insert: get, and on a miss insert.
trait Subject {
    /// Returns whether the get hit. `i` is the operation's index (edgecache derives `now`).
    fn get_or_insert(&mut self, key: u64, i: u64) -> bool;
}

/// Fixed start of the benchmark's clock; `now` advances 1 ms every 1000 operations.
const T0: u64 = 1_700_000_000_000;

struct Edge(L1Store<u64, u64>);

impl Edge {
    fn new(admission: Admission) -> Self {
        let config =
            StoreConfig::new(CAPACITY, CAPACITY * ENTRY_SIZE * 4).with_admission(admission);
        Edge(L1Store::new(config))
    }
}

impl Subject for Edge {
    #[inline]
    fn get_or_insert(&mut self, key: u64, i: u64) -> bool {
        let now = Timestamp::from_millis(T0 + i / 1000);
        if let Some(v) = self.0.get(&key, now).into_value() {
            black_box(v);
            return true;
        }
        // A day of freshness and an hour of each stale window: TTL work without expiry.
        let windows = Windows::from_lifetimes(now, 86_400_000, 3_600_000, 3_600_000);
        black_box(
            self.0
                .insert(key, key, EntryMeta::new(windows, ENTRY_SIZE), now),
        );
        false
    }
}

struct BareLru(lru::LruCache<u64, u64, DefaultHashBuilder>);

impl Subject for BareLru {
    #[inline]
    fn get_or_insert(&mut self, key: u64, _: u64) -> bool {
        if let Some(v) = self.0.get(&key) {
            black_box(*v);
            return true;
        }
        self.0.put(key, key);
        false
    }
}

struct Quick(
    quick_cache::unsync::Cache<
        u64,
        u64,
        quick_cache::UnitWeighter,
        DefaultHashBuilder,
        quick_cache::unsync::DefaultLifecycle<u64, u64>,
    >,
);

impl Subject for Quick {
    #[inline]
    fn get_or_insert(&mut self, key: u64, _: u64) -> bool {
        if let Some(v) = self.0.get(&key) {
            black_box(*v);
            return true;
        }
        self.0.insert(key, key);
        false
    }
}

struct Moka(moka::sync::Cache<u64, u64, DefaultHashBuilder>);

impl Subject for Moka {
    #[inline]
    fn get_or_insert(&mut self, key: u64, _: u64) -> bool {
        if let Some(v) = self.0.get(&key) {
            black_box(v);
            return true;
        }
        self.0.insert(key, key);
        false
    }
}

const SUBJECTS: [&str; 5] = [
    "edgecache L1 (TinyLFU)",
    "edgecache L1 (no admission)",
    "lru",
    "quick_cache unsync",
    "moka sync",
];

/// Runs one fresh cache over a trace (warm-up, then timed part): (ns/op, hit ratio).
type Runner = Box<dyn FnMut(&[u64], usize) -> (f64, f64)>;

fn make_subject(index: usize) -> Runner {
    fn run<C: Subject>(mut make: impl FnMut() -> C + 'static) -> Runner {
        Box::new(move |trace: &[u64], warmup: usize| {
            let mut cache = make();
            for (i, &k) in trace[..warmup].iter().enumerate() {
                black_box(cache.get_or_insert(k, i as u64));
            }
            let measured = &trace[warmup..];
            let mut hits = 0u64;
            let cpu_start = thread_cpu_ns();
            let start = Instant::now();
            for (i, &k) in measured.iter().enumerate() {
                hits += u64::from(cache.get_or_insert(k, (warmup + i) as u64));
            }
            let elapsed = start.elapsed().as_nanos() as u64;
            // Prefer this thread's CPU time: on a shared machine, wall time also counts the
            // time slices other processes got.
            let spent = match (cpu_start, thread_cpu_ns()) {
                (Some(a), Some(b)) => b - a,
                _ => elapsed,
            };
            black_box(&cache);
            (
                spent as f64 / measured.len() as f64,
                hits as f64 / measured.len() as f64,
            )
        })
    }
    match index {
        0 => run(|| Edge::new(Admission::TinyLfu)),
        1 => run(|| Edge::new(Admission::None)),
        2 => run(|| {
            BareLru(lru::LruCache::with_hasher(
                NonZeroUsize::new(CAPACITY).unwrap(),
                DefaultHashBuilder::default(),
            ))
        }),
        3 => run(|| {
            Quick(quick_cache::unsync::Cache::with(
                CAPACITY,
                CAPACITY as u64,
                quick_cache::UnitWeighter,
                DefaultHashBuilder::default(),
                Default::default(),
            ))
        }),
        _ => run(|| {
            Moka(
                moka::sync::Cache::builder()
                    .max_capacity(CAPACITY as u64)
                    .build_with_hasher(DefaultHashBuilder::default()),
            )
        }),
    }
}

/// CPU time this thread has run, in ns, if the platform tells (Linux).
///
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` rather than `/proc/thread-self/schedstat`: the
/// latter is only brought up to date at scheduler ticks (4 ms here, i.e. 0.8 ns/op over 5M
/// operations), the clock reads the running thread's time to the nanosecond.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout: two i64s) for the
    // duration of the call, which writes nothing else.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// splitmix64: the trace's random source, and the rank -> key scrambler.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` keys drawn from a Zipf(s) distribution over `n` ranks (exact, by inverting the CDF).
/// Rank r maps to the key `mix(r)`, so popular keys are scattered over the key space.
fn zipf_trace(n: usize, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for r in 1..=n {
        total += 1.0 / (r as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = SplitMix(seed);
    (0..len)
        .map(|_| {
            let u = rng.next_f64() * total;
            let rank = cdf.partition_point(|&c| c < u).min(n - 1);
            mix(rank as u64 + 1)
        })
        .collect()
}

/// Keys drawn uniformly from `n` keys, after one pass over all of them (so, with
/// `n <= CAPACITY`, every key is resident after the warm-up).
fn resident_trace(n: usize, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = SplitMix(seed);
    (0..n as u64)
        .map(|r| mix(r + 1))
        .chain((n..len).map(|_| mix(rng.next() % n as u64 + 1)))
        .collect()
}

/// Distinct keys only: every get misses, every access inserts.
fn churn_trace(len: usize) -> Vec<u64> {
    (0..len as u64).map(|i| mix(i + 1)).collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let ops = env_usize("L1_BENCH_OPS", 5_000_000);
    let warmup = env_usize("L1_BENCH_WARMUP", 1_000_000);
    let reps = env_usize("L1_BENCH_REPS", 3).max(1);
    let filter = std::env::var("L1_BENCH_FILTER").unwrap_or_default();
    let only: Vec<usize> = std::env::var("L1_BENCH_SUBJECTS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| (0..SUBJECTS.len()).collect());
    let len = warmup + ops;

    type Gen = Box<dyn Fn() -> Vec<u64>>;
    let workloads: Vec<(&str, Gen)> = vec![
        (
            "Zipf 0.9, 100k keys (10x)",
            Box::new(move || zipf_trace(100_000, 0.9, len, 1)),
        ),
        (
            "Zipf 0.9, 1M keys (100x)",
            Box::new(move || zipf_trace(1_000_000, 0.9, len, 2)),
        ),
        (
            "Zipf 1.1, 100k keys (10x)",
            Box::new(move || zipf_trace(100_000, 1.1, len, 3)),
        ),
        (
            "Zipf 1.1, 1M keys (100x)",
            Box::new(move || zipf_trace(1_000_000, 1.1, len, 4)),
        ),
        (
            "pure hits (5k keys resident)",
            Box::new(move || resident_trace(CAPACITY / 2, len, 5)),
        ),
        (
            "churn (all distinct keys)",
            Box::new(move || churn_trace(len)),
        ),
    ];

    let clock = if thread_cpu_ns().is_some() {
        "thread CPU time"
    } else {
        "wall time"
    };
    println!(
        "capacity {CAPACITY} entries; {ops} measured get-or-insert ops after {warmup} warm-up; \
         best of {reps} runs; cells are ns/op ({clock}), hit ratio\n"
    );
    print!("| workload |");
    for s in SUBJECTS {
        print!(" {s} |");
    }
    println!(" TinyLFU / quick_cache ns |");
    print!("|---|");
    for _ in SUBJECTS {
        print!("---:|");
    }
    println!("---:|");

    for (name, gen) in &workloads {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let trace = gen();
        // Runs are interleaved (every subject once, then again...) so that a burst of load
        // from other processes does not land on one subject's runs only.
        let mut cells = vec![(f64::INFINITY, f64::NAN); SUBJECTS.len()];
        let mut benches: Vec<_> = (0..SUBJECTS.len()).map(make_subject).collect();
        for _ in 0..reps {
            for (index, bench) in benches.iter_mut().enumerate() {
                if !only.contains(&index) {
                    continue;
                }
                let (ns, hit) = bench(&trace, warmup);
                cells[index] = (cells[index].0.min(ns), hit);
            }
        }
        for (index, cell) in cells.iter_mut().enumerate() {
            if !only.contains(&index) {
                *cell = (f64::NAN, f64::NAN);
            }
        }
        print!("| {name} |");
        for (ns, hit) in &cells {
            if ns.is_nan() {
                print!(" not run |");
            } else {
                print!(" {ns:.1} ns, {:.1}% |", hit * 100.0);
            }
        }
        let ratio = cells[0].0 / cells[3].0;
        if ratio.is_nan() {
            println!(" |");
        } else {
            println!(" {ratio:.2}x |");
        }
    }
}
