//! The engine's own work per cache miss, without I/O: `N` misses for distinct URLs, each
//! fetched from an in-process origin (a typical response: ten fields, 1 KiB), decided, stored
//! in L1 and answered; then `N` hits of the same URLs. Run it under `perf stat -e
//! instructions:u` with `N` and with 0 and divide the difference (BENCHMARKS.md has the
//! command); it prints wall time per operation too.
//!
//! `cargo bench --bench miss -- 100000` (add `misses` to leave out the hits)

use std::cell::RefCell;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use edgecache::engine::config::EngineConfig;
use edgecache::engine::{
    BodyError, Engine, EngineState, Host, NoColo, NoSharedTier, Origin, OriginBody, OriginError,
    OriginRequest, OriginResponse, Request, Runtime,
};
use edgecache::headers::Headers;
use edgecache::time::Timestamp;

const NOW_MS: u64 = 1_765_000_000_000;

struct BenchOrigin {
    fields: Headers,
    body: Vec<u8>,
}

impl Origin for BenchOrigin {
    type Body = ();
    async fn fetch(
        &self,
        _request: OriginRequest<()>,
        _limit: usize,
    ) -> Result<OriginResponse<()>, OriginError> {
        Ok(OriginResponse {
            status: 200,
            headers: self.fields.clone(),
            body: OriginBody::Buffered(self.body.clone()),
        })
    }
    async fn read_body(&self, _body: (), _limit: usize) -> Result<Vec<u8>, BodyError> {
        Ok(Vec::new())
    }
    fn body_from_bytes(&self, _bytes: Vec<u8>) {}
}

struct BenchRuntime;

impl Runtime for BenchRuntime {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(NOW_MS)
    }
    fn sleep(&self, _ms: u64) -> impl Future<Output = ()> {
        std::future::pending()
    }
    fn random_u64(&self) -> u64 {
        0x9e37_79b9_7f4a_7c15
    }
}

struct BenchHost;

impl Host for BenchHost {
    type Body = ();
    type Origin = BenchOrigin;
    type SharedTier = NoSharedTier;
    type Colo = NoColo;
    type Runtime = BenchRuntime;
    type Lock = RefCell<EngineState>;
}

/// Polls a future that never waits (no I/O here) to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn get(path: &str) -> Request<()> {
    let headers = Headers::from_pairs([
        ("host", "bench.example"),
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, br"),
    ]);
    Request {
        method: "GET".into(),
        scheme: "http".into(),
        target: path.into(),
        headers,
        client: None,
        body: None,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let date = edgecache::http_date::format_http_date(Timestamp::from_millis(NOW_MS));
    let fields = Headers::from_pairs([
        ("date", date.as_str()),
        ("server", "origin/1.0"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "1024"),
        (
            "cache-control",
            "public, max-age=600, stale-while-revalidate=30",
        ),
        ("etag", "\"5f3a-1024\""),
        ("last-modified", "Mon, 01 Dec 2025 00:00:00 GMT"),
        ("vary", "accept-encoding"),
        ("surrogate-key", "page section-3"),
        ("x-request-id", "0123456789abcdef"),
    ]);
    let origin = BenchOrigin {
        fields,
        body: vec![b'x'; 1024],
    };
    let mut config = EngineConfig::default();
    config.l1.max_entries = n.max(1) * 2;
    config.l1.max_bytes = (n.max(1) * 2) << 12;
    let engine: Engine<BenchHost> =
        Engine::new(config, origin, None, BenchRuntime).expect("valid config");
    let paths: Vec<String> = (0..n).map(|i| format!("/section-3/page-{i}?v=2")).collect();

    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    for path in &paths {
        let handled = run(engine.handle(get(path)));
        assert_eq!(handled.response.status, 200);
    }
    let misses = started.elapsed();
    let with_hits = !std::env::args().any(|a| a == "misses");
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    for path in paths.iter().filter(|_| with_hits) {
        let handled = run(engine.handle(get(path)));
        assert!(handled.response.stored_fields.is_some(), "a hit");
    }
    let hits = started.elapsed();
    if n > 0 {
        println!(
            "{n} misses: {:.0} ns each; {n} hits: {:.0} ns each",
            misses.as_nanos() as f64 / n as f64,
            hits.as_nanos() as f64 / n as f64
        );
    }
}
