//! What the integration tests that need real parts share: a real `redis-server` per test, a
//! real HTTP origin on loopback whose answers are driven by query parameters, a small HTTP
//! client, bounded waits, and Redis over HTTP in front of a real Redis ([`rest`]). Used by
//! `tests/native.rs` (edgecache serve), `tests/rest.rs` and `tests/worker.rs` (the Worker
//! under wrangler dev). Each file uses only part of it.
#![allow(dead_code)]

pub mod cache;
pub mod delay;
pub mod purge_api;
pub mod rest;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
// Tokio's clock: the tests measure real time on purpose (the core never reads a clock).
use tokio::time::Instant;

/// The admin token every instance is configured with.
pub const TOKEN: &str = "edgecache-test-token-0123456789";
/// The `Host` every client request carries (the host is part of the cache key, so two
/// instances share keys only when they see the same one).
pub const HOST: &str = "edge.test";
/// No single client request may take longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The usual bound for "eventually" checks.
pub const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept).
pub fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path?k1=v1&k2=v2` with the values percent-encoded.
pub fn url(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// The body the origin sends for the `n`th GET of `path_and_query`.
pub fn body_for(path_and_query: &str, n: u64) -> String {
    format!("{path_and_query} #{n}")
}

/// `text` as `Content-Encoding: gzip` sends it (RFC 1952: header, deflate data, CRC-32
/// and length), the coding runtimes decode on their own if let.
pub fn gzipped(text: &str) -> Vec<u8> {
    let data = text.as_bytes();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend(crc32(data).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE), bit by bit: test data only.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The deterministic content of a `size=` body.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Polls `check` every 25 ms until it yields a value; panics naming `what` after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Awaits `future` for at most `within`, panicking with `what` otherwise.
pub async fn bounded<F: Future>(what: &str, within: Duration, future: F) -> F::Output {
    match tokio::time::timeout(within, future).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {within:?}: {what}"),
    }
}

/// A free loopback port (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Aborts a task when dropped.
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A real redis-server
// ---------------------------------------------------------------------------------------

pub fn redis_binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// A `redis-server` child process on its own port; SIGKILLed on drop.
pub struct RedisServer {
    pub child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port (a few attempts, in case another test grabbed the port).
    pub async fn start() -> RedisServer {
        let mut errors = Vec::new();
        for _ in 0..5 {
            match RedisServer::start_on(free_port()).await {
                Ok(server) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!("could not start redis-server: {errors:?}");
    }

    /// Starts one on `port`; ready once it answers `PING` (within 5 s).
    pub async fn start_on(port: u16) -> Result<RedisServer, String> {
        let bin = redis_binary();
        assert!(
            bin.exists(),
            "redis-server not found at {}: these tests need a real Redis \
             (apt-get install redis-server, or set REDIS_SERVER=/path/to/redis-server)",
            bin.display()
        );
        let dir = std::env::temp_dir();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if ping(port).await {
                return Ok(server);
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within 5 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection of the test's own.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("redis URL");
        bounded(
            "connecting to redis",
            WAIT,
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.ok()?;
        (&buf == b"+PONG\r\n").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(()))
    )
}

/// The object keys edgecache stored (`{prefix}e{epoch}:obj:{cache key}`).
pub async fn object_keys(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = bounded(
        "redis KEYS",
        WAIT,
        redis::cmd("KEYS").arg("ec:v1:*obj:*").query_async(con),
    )
    .await
    .expect("KEYS");
    keys.sort();
    keys
}

/// Waits until an object key containing `needle` is in Redis; returns it.
pub async fn await_object(con: &mut redis::aio::MultiplexedConnection, needle: &str) -> String {
    eventually(
        &format!("an ec:v1: object key containing {needle:?} in redis"),
        WAIT,
        async || {
            object_keys(con)
                .await
                .into_iter()
                .find(|k| k.contains(needle))
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// A real origin
// ---------------------------------------------------------------------------------------

pub type OriginBody = BoxBody<Bytes, Infallible>;

/// A request with a body the origin received (any method but GET and HEAD).
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// The status the origin answered with.
    pub status: u16,
}

#[derive(Default)]
pub struct OriginState {
    /// GET/HEAD requests per path and query.
    pub counts: Mutex<HashMap<String, u64>>,
    /// Other requests, in order.
    pub writes: Mutex<Vec<Received>>,
    /// When set, every GET is answered with this status (an origin in trouble).
    pub forced_status: Mutex<Option<u16>>,
    /// When set, every other request is answered with this status (recorded all the same).
    pub forced_write_status: Mutex<Option<u16>>,
    /// GET/HEAD requests being answered now, and the most there were at once.
    pub in_flight: std::sync::atomic::AtomicUsize,
    pub max_in_flight: std::sync::atomic::AtomicUsize,
    /// The `Range` of every GET that carried one, with its path and query, in order.
    pub ranges: Mutex<Vec<(String, String)>>,
    /// Opened by the test ([`Origin::open_gate`]) for a `gate_after` body to go on.
    pub gate: tokio::sync::Notify,
    /// `304`s sent to `revalidate=1` requests.
    pub revalidations: std::sync::atomic::AtomicUsize,
}

/// Counts a GET/HEAD as being answered while it lives.
struct InFlight<'a>(&'a OriginState);

impl<'a> InFlight<'a> {
    fn new(state: &'a OriginState) -> Self {
        use std::sync::atomic::Ordering;
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An HTTP/1.1 origin on 127.0.0.1. Query parameters drive the answer:
/// `cc` (Cache-Control), `tag` (Surrogate-Key), `delay_ms`, `status`, `encoding=gzip`
/// (the default body, compressed, with `Content-Encoding: gzip`), `size` (a body of
/// that many pattern bytes instead of the default `"{path?query} #{n}"`), `chunked=1`
/// (stream the body without Content-Length), `stall_after=n` (with `size`: declare the size,
/// send `n` bytes, then stall forever), `gate_after=n` (with `size`: declare the size, send
/// `n` bytes, and the rest once the test calls [`Origin::open_gate`]), `abort_after=n` (with
/// `size`: declare the size, send `n` bytes, and close the connection once the test calls
/// [`Origin::open_gate`]), `echo=a,b` (the body lists the request's `a` and `b` fields), `etag` (an `ETag`), `ranges=1` (say `Accept-Ranges: bytes`; with `size`: answer a single-range `Range`
/// with its `206`).
pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    pub task: JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let task = Origin::serve(listener, state.clone());
        Origin { addr, state, task }
    }

    /// Starts again on the address of a stopped origin, keeping what it recorded.
    pub async fn restart(&mut self) {
        if !self.task.is_finished() {
            self.stop().await;
        }
        let listener = eventually("the origin's port to be free again", WAIT, async || {
            TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.task = Origin::serve(listener, self.state.clone());
    }

    /// Answers on `listener` with `state` until aborted.
    fn serve(listener: TcpListener, shared: Arc<OriginState>) -> JoinHandle<()> {
        tokio::spawn(async move {
            // Connections live in the set: aborting this task closes them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(origin_answer(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        })
    }

    /// Lets one `gate_after` body send the rest of its bytes.
    pub fn open_gate(&self) {
        self.state.gate.notify_one();
    }

    /// Answers every request but GET and HEAD with `status` (`None`: normally).
    pub fn force_write_status(&self, status: Option<u16>) {
        *self.state.forced_write_status.lock().unwrap() = status;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET/HEAD requests received for `path_and_query`.
    pub fn count(&self, path_and_query: &str) -> u64 {
        let counts = self.state.counts.lock().unwrap();
        counts.get(path_and_query).copied().unwrap_or(0)
    }

    /// The `Range` values GETs for `path_and_query` carried, in order.
    pub fn ranges(&self, path_and_query: &str) -> Vec<String> {
        let ranges = self.state.ranges.lock().unwrap();
        ranges
            .iter()
            .filter(|(p, _)| p == path_and_query)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// How many `304`s the origin sent.
    pub fn revalidations(&self) -> usize {
        self.state
            .revalidations
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most GET/HEAD requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// GET/HEAD requests received in all.
    pub fn total(&self) -> u64 {
        self.state.counts.lock().unwrap().values().sum()
    }

    pub fn writes(&self) -> Vec<Received> {
        self.state.writes.lock().unwrap().clone()
    }

    pub fn force_status(&self, status: Option<u16>) {
        *self.state.forced_status.lock().unwrap() = status;
    }

    /// Stops listening and closes every connection.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = bounded("origin stop", WAIT, &mut self.task).await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn origin_answer(
    state: Arc<OriginState>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<OriginBody> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let params: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect();
    let method = req.method().as_str().to_string();
    if method != "GET" && method != "HEAD" {
        let content_type = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let idempotency_key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = state.forced_write_status.lock().unwrap().unwrap_or(200);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        let len = body.len();
        state.writes.lock().unwrap().push(Received {
            method: method.clone(),
            path_and_query,
            content_type,
            body,
            idempotency_key,
            status,
        });
        return hyper::Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(full(format!("{method} ok {len}")))
            .unwrap();
    }
    let _in_flight = InFlight::new(&state);
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(range) = &range {
        let seen = (path_and_query.clone(), range.clone());
        state.ranges.lock().unwrap().push(seen);
    }
    let n = {
        let mut counts = state.counts.lock().unwrap();
        let n = counts.entry(path_and_query.clone()).or_default();
        *n += 1;
        *n
    };
    if let Some(ms) = params.get("delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = *state.forced_status.lock().unwrap() {
        return hyper::Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(full("origin in trouble"))
            .unwrap();
    }
    let status = params
        .get("status")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(200);
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    if params.get("ranges").is_some_and(|v| v == "1") {
        builder = builder.header("accept-ranges", "bytes");
    }
    if let Some(cc) = params.get("cc") {
        builder = builder.header("cache-control", cc.as_str());
    }
    if let Some(tag) = params.get("tag") {
        builder = builder.header("surrogate-key", tag.as_str());
    }
    if let Some(etag) = params.get("etag") {
        builder = builder.header("etag", etag.as_str());
    }
    if let Some(vary) = params.get("vary") {
        builder = builder.header("vary", vary.as_str());
    }
    // `revalidate=1`: a `304` to an `If-None-Match` naming the `etag` parameter.
    if params.get("revalidate").is_some_and(|v| v == "1") {
        let inm = req
            .headers()
            .get(hyper::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if let (Some(etag), Some(inm)) = (params.get("etag"), inm) {
            if inm.split(',').any(|tag| tag.trim() == etag) {
                state
                    .revalidations
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return builder.status(304).body(full(Bytes::new())).unwrap();
            }
        }
    }
    let size = params.get("size").and_then(|v| v.parse::<usize>().ok());
    // `part=first-last` (with `size`): a `206` of those bytes whatever was asked for, as an
    // origin that sends a part of its own accord does, for the first `part_times` requests
    // (all, without it); `content_range=…` is the `Content-Range` it claims instead (an
    // origin that lies about it).
    let part_times = params.get("part_times").and_then(|v| v.parse::<u64>().ok());
    if let (Some(size), Some(part)) = (size, params.get("part")) {
        if part_times.is_none_or(|times| n <= times) {
            let (first, last) = part
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .expect("part=first-last");
            let claimed = params
                .get("content_range")
                .cloned()
                .unwrap_or_else(|| format!("bytes {first}-{last}/{size}"));
            return builder
                .status(206)
                .header("content-range", claimed)
                .body(full(pattern(size)[first..=last].to_vec()))
                .unwrap();
        }
    }
    if let (Some(size), Some(range), Some("1")) =
        (size, &range, params.get("ranges").map(String::as_str))
    {
        // One `first-last` range, as an origin that serves ranges would.
        let (first, last) = range
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .expect("the test origin serves `bytes=first-last` ranges only");
        let last = last.min(size - 1);
        return builder
            .status(206)
            .header("content-range", format!("bytes {first}-{last}/{size}"))
            .body(full(pattern(size)[first..=last].to_vec()))
            .unwrap();
    }
    // `echo=a,b`: the body is the request's values of those fields, one `name: value` line
    // each (what an origin that builds pages from request fields would use).
    if let Some(names) = params.get("echo") {
        let mut echoed = String::new();
        for name in names.split(',') {
            for value in req.headers().get_all(name) {
                echoed.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
        }
        return builder.body(full(echoed)).unwrap();
    }
    let stall_after = params
        .get("stall_after")
        .and_then(|v| v.parse::<usize>().ok());
    let sent_first = |param: &str| params.get(param).and_then(|v| v.parse::<usize>().ok());
    let (gate_after, abort_after) = (sent_first("gate_after"), sent_first("abort_after"));
    let body = match params.get("size").and_then(|v| v.parse::<usize>().ok()) {
        Some(size) if gate_after.is_some() => {
            builder = builder.header("content-length", size);
            let all = Bytes::from(pattern(size));
            let split = gate_after.unwrap_or(0).min(size);
            let (head, rest) = (all.slice(..split), all.slice(split..));
            let first = futures::stream::iter([Ok::<_, Infallible>(Frame::data(head))]);
            let state = state.clone();
            let then = futures::stream::once(async move {
                state.gate.notified().await;
                Ok(Frame::data(rest))
            });
            StreamBody::new(futures::StreamExt::chain(first, then)).boxed()
        }
        Some(size) if abort_after.is_some() => {
            // Declares `size`; after the first bytes and the gate, the body ends short, and
            // hyper closes the connection (a body shorter than its Content-Length).
            builder = builder.header("content-length", size);
            let sent = pattern(size)[..abort_after.unwrap_or(0).min(size)].to_vec();
            let first =
                futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from(sent)))]);
            let state = state.clone();
            let gate = futures::stream::once(async move { state.gate.notified().await });
            let end = futures::StreamExt::filter_map(gate, |()| async { None });
            StreamBody::new(futures::StreamExt::chain(first, end)).boxed()
        }
        Some(size) if stall_after.is_some() => {
            // Declares `size` bytes, sends the first `stall_after`, then nothing, ever.
            builder = builder.header("content-length", size);
            let sent = pattern(size)[..stall_after.unwrap_or(0).min(size)].to_vec();
            let first =
                futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from(sent)))]);
            StreamBody::new(futures::StreamExt::chain(first, futures::stream::pending())).boxed()
        }
        Some(size) if params.get("chunked").is_some_and(|v| v == "1") => {
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = pattern(size)
                .chunks(16 * 1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            StreamBody::new(futures::stream::iter(chunks)).boxed()
        }
        Some(size) => full(pattern(size)),
        None if params.get("encoding").is_some_and(|v| v == "gzip") => {
            builder = builder.header("content-encoding", "gzip");
            full(gzipped(&body_for(&path_and_query, n)))
        }
        None => full(body_for(&path_and_query, n)),
    };
    builder.body(body).unwrap()
}

pub fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into()).boxed()
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a new TCP connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, HOST);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path_and_query}: {e}"))?;
        let (parts, incoming) = response.into_parts();
        let body = incoming
            .collect()
            .await
            .map_err(|e| format!("{method} {path_and_query}: body: {e}"))?
            .to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{method} {path_and_query}: no response within {REQUEST_TIMEOUT:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// A cache under test, and request storms against it
// ---------------------------------------------------------------------------------------

/// A cache under test reached over HTTP on loopback (an in-process `edgecache serve`, or a
/// Worker under `wrangler dev`), configured with [`TOKEN`] as its admin token.
#[allow(async_fn_in_trait)]
pub trait Frontend {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;

    async fn try_get(&self, path_and_query: &str) -> Result<Resp, String> {
        send(self.addr(), "GET", path_and_query, &[], Bytes::new()).await
    }

    async fn get(&self, path_and_query: &str) -> Resp {
        self.try_get(path_and_query)
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query} via {}: {e}", self.addr()))
    }

    async fn admin(&self, method: &str, path_and_query: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        send(self.addr(), method, path_and_query, &headers, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"))
    }

    /// A purge with the token; asserts it succeeded.
    async fn purge(&self, query: &str) -> serde_json::Value {
        let r = self
            .admin("POST", &format!("/_edgecache/purge?{query}"), Some(TOKEN))
            .await;
        assert_eq!(r.status, 200, "purge {query}: {}", r.text());
        r.json()
    }

    /// `GET /_edgecache/stats` with the token, as JSON.
    async fn stats(&self) -> serde_json::Value {
        let r = self.admin("GET", "/_edgecache/stats", Some(TOKEN)).await;
        assert_eq!(r.status, 200, "stats: {}", r.text());
        r.json()
    }

    async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats["engine"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no engine.{name} in {stats}"))
    }
}

/// `n` concurrent GETs of `path_and_query` at each of `caches`.
pub async fn storm<F: Frontend>(
    caches: &[&F],
    path_and_query: &str,
    n: usize,
) -> Vec<Result<Resp, String>> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        for cache in caches {
            let addr = cache.addr();
            let path = path_and_query.to_string();
            set.spawn(async move { send(addr, "GET", &path, &[], Bytes::new()).await });
        }
    }
    let mut results = Vec::with_capacity(n * caches.len());
    while let Some(joined) =
        bounded("a request storm", Duration::from_secs(60), set.join_next()).await
    {
        results.push(joined.expect("client task"));
    }
    results
}

/// Panics unless every result is a 200 with `expected` as its body.
pub fn assert_all_ok_same_body(results: &[Result<Resp, String>], expected: &str) {
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(r) if r.status == 200 && r.text() == expected => {}
            Ok(r) => failures.push(format!(
                "{} {:?} [{}]",
                r.status,
                r.text(),
                r.cache_status()
            )),
            Err(e) => failures.push(e.clone()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Panics unless exactly one request for `path` reached the origin, showing how the
/// responses were served (their `Cache-Status`) and the instances' counters.
pub async fn assert_one_origin_fetch<F: Frontend>(
    origin: &Origin,
    path: &str,
    results: &[Result<Resp, String>],
    caches: &[&F],
) {
    let fetches = origin.count(path);
    if fetches == 1 {
        return;
    }
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for r in results.iter().flatten() {
        *statuses.entry(r.cache_status().to_string()).or_default() += 1;
    }
    let mut stats = Vec::new();
    for cache in caches {
        stats.push(cache.stats().await["engine"].to_string());
    }
    panic!(
        "{} concurrent misses made {fetches} origin fetches instead of 1; \
         Cache-Status of the responses: {statuses:#?}; engine stats: {stats:#?}",
        results.len()
    );
}

/// With `limits.max_object_bytes` at 64 KiB on `cache`: a 1 MB response streams through
/// whole and intact and is not cached, with Content-Length and chunked (then the host reads
/// up to the limit and streams the rest behind what it read); one under the limit is cached.
pub async fn assert_oversized_stream_through_uncached<F: Frontend>(
    cache: &F,
    origin: &Origin,
    prefix: &str,
) {
    let size = 1_000_000;
    let expected = pattern(size);

    for chunked in ["0", "1"] {
        let path = url(
            &format!("{prefix}/over"),
            &[
                ("cc", "max-age=300"),
                ("size", &size.to_string()),
                ("chunked", chunked),
            ],
        );
        for round in 1..=2 {
            let r = cache.get(&path).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), size, "the full body (chunked={chunked})");
            assert!(r.body == expected, "the body is intact (chunked={chunked})");
            // A body of undeclared length is found too large only as it streams, after
            // its head (and Cache-Status) went out.
            assert!(
                chunked == "1" || r.cache_status().contains("detail=too-large"),
                "{}",
                r.cache_status()
            );
            assert_eq!(
                origin.count(&path),
                round,
                "fetched again, not cached (chunked={chunked})"
            );
        }
    }

    let small = url(
        &format!("{prefix}/under"),
        &[("cc", "max-age=300"), ("size", "32768"), ("chunked", "1")],
    );
    for _ in 0..2 {
        let r = cache.get(&small).await;
        assert_eq!(r.body.len(), 32768);
    }
    assert_eq!(origin.count(&small), 1, "under the limit, cached");
}

/// RFC 5861 §3 on `cache`: once stale, the old body is served at once with
/// `detail=stale-while-revalidate`, a background fetch follows, and later responses carry
/// the new body.
pub async fn assert_stale_while_revalidate<F: Frontend>(cache: &F, origin: &Origin, prefix: &str) {
    let path = url(
        &format!("{prefix}/swr"),
        &[("cc", "max-age=1, stale-while-revalidate=30")],
    );
    let old = body_for(&path, 1);

    let first = cache.get(&path).await;
    assert_eq!(first.text(), old);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stale = eventually("the response to go stale", WAIT, async || {
        let r = cache.get(&path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), old, "until revalidated, the old body: {r:?}");
        if r.cache_status().contains("detail=stale-while-revalidate") {
            Some(r)
        } else {
            assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
            None
        }
    })
    .await;
    assert_eq!(stale.text(), old);
    assert!(
        stale.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        stale.cache_status()
    );

    eventually("the background revalidation", WAIT, async || {
        (origin.count(&path) >= 2).then_some(())
    })
    .await;
    // The refreshed response is fresh for only a second: on a loaded machine it may have
    // been revalidated once more by the time it is read, hence "not the old body".
    let refreshed = eventually("the new body", WAIT, async || {
        let r = cache.get(&path).await;
        (r.text() != old).then_some(r)
    })
    .await;
    let n = origin.count(&path);
    assert!(
        refreshed.text() == body_for(&path, n) || refreshed.text() == body_for(&path, n - 1),
        "the newest body: {:?} after {n} fetches",
        refreshed.text()
    );
    assert!(
        refreshed.cache_status().contains("hit"),
        "{}",
        refreshed.cache_status()
    );
    assert!(cache.stat("stale_while_revalidate").await >= 1);
}

/// RFC 5861 §4 on `cache`: when the origin answers 503, and then when it is gone altogether,
/// a response within stale-if-error is served with 200 and `detail=stale-if-error`.
pub async fn assert_stale_if_error<F: Frontend>(cache: &F, origin: &mut Origin, prefix: &str) {
    let path = url(
        &format!("{prefix}/sie"),
        &[("cc", "max-age=1, stale-if-error=60")],
    );
    let old = body_for(&path, 1);
    assert_eq!(cache.get(&path).await.text(), old);

    origin.force_status(Some(503));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let served = eventually("stale-if-error on a 503", WAIT, async || {
        let r = cache.get(&path).await;
        assert_eq!(r.status, 200, "never the 503: {r:?}");
        assert_eq!(r.text(), old);
        r.cache_status()
            .contains("detail=stale-if-error")
            .then_some(r)
    })
    .await;
    assert!(
        served.cache_status().contains("fwd-status=503"),
        "{}",
        served.cache_status()
    );
    assert!(origin.count(&path) >= 2, "the origin was asked");

    origin.stop().await;
    let served = cache.get(&path).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(served.text(), old);
    assert!(
        served.cache_status().contains("detail=stale-if-error"),
        "{}",
        served.cache_status()
    );
    assert!(cache.stat("stale_if_error").await >= 2);
}

// ---------------------------------------------------------------------------------------
// Raw requests (what a well-behaved client library would refuse to send)
// ---------------------------------------------------------------------------------------

/// A response read off a raw connection: its status and its head as text.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub head: String,
}

/// Writes `request` (a whole request head, `\r\n` line ends, ending in an empty line) on a
/// new connection and reads the response head. The connection is closed after it.
pub async fn send_raw(addr: SocketAddr, request: &str) -> Result<RawResp, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {text:?}"))?;
        Ok(RawResp { status, head })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no response within {REQUEST_TIMEOUT:?} to {request:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// One request view, on any host
// ---------------------------------------------------------------------------------------

/// The route rules [`assert_paths_are_seen_as_the_key_sees_them`] expects: `/static/` with a
/// day's TTL, `/live/` bypassed.
pub const VIEW_ROUTES_JSON: &str =
    r#"[{"prefix":"/static/","ttl_secs":86400},{"prefix":"/live/","bypass":true}]"#;

/// Route rules, the admin API and warming see the path the cache key sees (RFC 3986 §6.2.2),
/// however a client spells it. `cache` has the routes of [`VIEW_ROUTES_JSON`] and no
/// Redis.
pub async fn assert_paths_are_seen_as_the_key_sees_them<F: Frontend>(cache: &F, origin: &Origin) {
    // `/static/../nostale/v` is `/nostale/v`: the origin's 2 s, not the route's day.
    let r = cache.get("/static/../nostale/v?cc=max-age%3D2").await;
    assert_eq!(r.status, 200);
    let status = r.cache_status();
    assert!(
        status.contains("stored") && status.contains("ttl=2") && !status.contains("ttl=86"),
        "{status}"
    );
    assert_eq!(origin.count("/nostale/v?cc=max-age%3D2"), 1);
    assert_eq!(origin.count("/static/../nostale/v?cc=max-age%3D2"), 0);

    // `/%6Cive/x` is `/live/x`: bypassed, never stored.
    for _ in 0..2 {
        let r = cache.get("/%6Cive/x?cc=max-age%3D600").await;
        assert!(
            r.cache_status().contains("fwd=bypass"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count("/live/x?cc=max-age%3D600"), 2);

    // The admin API under any spelling: refused without the token, never the origin's.
    for path in [
        "/x/../_edgecache/stats",
        "/%5Fedgecache/stats",
        "/%5fedgecache/stats",
    ] {
        let r = cache.admin("GET", path, None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        let r = cache.admin("GET", path, Some(TOKEN)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.json()["engine"].is_object(), "{path}");
    }
    assert_eq!(origin.count("/_edgecache/stats"), 0);

    // Warming cannot name the admin API either.
    for url in [
        "%2Fr%2F..%2F_edgecache%2Fstats",
        "%2F%255Fedgecache%2Fstats",
    ] {
        let r = cache
            .admin("POST", &format!("/_edgecache/warm?url={url}"), Some(TOKEN))
            .await;
        assert_eq!(r.status, 400, "warm {url}: {}", r.text());
    }
}

/// Repeated query parameters keep their order: two requests, two origin fetches.
pub async fn assert_repeated_parameters_stay_apart<F: Frontend>(cache: &F, origin: &Origin) {
    let a = cache.get("/q?a=evil&a=good&cc=max-age%3D60").await;
    let b = cache.get("/q?a=good&a=evil&cc=max-age%3D60").await;
    assert_ne!(a.text(), b.text());
    assert_eq!(origin.count("/q?a=evil&a=good&cc=max-age%3D60"), 1);
    assert_eq!(origin.count("/q?a=good&a=evil&cc=max-age%3D60"), 1);
    let again = cache.get("/q?a=evil&cc=max-age%3D60&a=good").await;
    assert_eq!(again.text(), a.text(), "other names still sort");
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
}

/// The forwarding policy on any host: what a client says about the host, scheme, its own
/// address or the URL and method to use never reaches the origin; the cache's own
/// `X-Forwarded-Host` / `Forwarded` do. Nothing one client sends changes what another is
/// served. Returns what the origin saw.
pub async fn assert_forwarding_fields_are_the_caches<F: Frontend>(
    cache: &F,
    origin: &Origin,
) -> String {
    let path = "/fwd?cc=max-age%3D60&echo=x-forwarded-host,x-host,x-forwarded-proto,x-forwarded-scheme,forwarded,x-original-url,x-rewrite-url,x-http-method-override,x-forwarded-server,x_forwarded_host,x-original-uri,true-client-ip";
    let attack = [
        ("x-forwarded-host", "evil.example"),
        ("x-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-scheme", "gopher"),
        ("x-forwarded-server", "evil.example"),
        ("forwarded", "host=evil.example;proto=gopher"),
        ("x-original-url", "/evil"),
        ("x-rewrite-url", "/evil"),
        ("x-http-method-override", "DELETE"),
        ("x_forwarded_host", "evil.example"),
        ("x-original-uri", "/evil"),
        ("true-client-ip", "evil"),
    ];
    let r = send(cache.addr(), "GET", path, &attack, Bytes::new())
        .await
        .expect("the attacking request");
    assert_eq!(r.status, 200);
    let seen = r.text();
    assert!(
        !seen.contains("evil") && !seen.contains("gopher") && !seen.contains("DELETE"),
        "{seen}"
    );
    assert!(
        seen.contains("x-forwarded-host: "),
        "the cache's own: {seen}"
    );
    assert!(seen.contains("forwarded: "), "the cache's own: {seen}");
    let other = cache.get(path).await;
    assert_eq!(other.text(), seen, "the next client gets the same page");
    assert_eq!(origin.count(path), 1);
    seen
}

/// A GET with `Range: range` (and `If-Range`, if given) through `cache`.
pub async fn get_range<F: Frontend>(
    cache: &F,
    path_and_query: &str,
    range: &str,
    if_range: Option<&str>,
) -> Resp {
    let mut fields = vec![("range", range)];
    fields.extend(if_range.map(|v| ("if-range", v)));
    send(cache.addr(), "GET", path_and_query, &fields, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path_and_query} with Range {range}: {e}"))
}

/// Each `(range, first, last)` of `path`, whose content is `bytes`, is a hit: a `206` of
/// `bytes[first..=last]` with its `Content-Range` and `Content-Length` (RFC 9110 §14.4).
async fn assert_range_hits<F: Frontend>(
    cache: &F,
    path: &str,
    bytes: &[u8],
    hits: &[(&str, usize, usize)],
) {
    for &(range, first, last) in hits {
        let hit = get_range(cache, path, range, None).await;
        assert_eq!(hit.status, 206, "{range}");
        assert!(
            hit.cache_status().contains("hit"),
            "{range}: {}",
            hit.cache_status()
        );
        let content_range = format!("bytes {first}-{last}/{}", bytes.len());
        assert_eq!(hit.header("content-range"), Some(content_range.as_str()));
        let length = (last + 1 - first).to_string();
        assert_eq!(
            hit.header("content-length"),
            Some(length.as_str()),
            "{range}"
        );
        assert_eq!(&hit.body[..], &bytes[first..=last], "{range}");
    }
}

/// RFC 9110 §14 through a host: a range miss fills the complete response (the origin is
/// not asked for a range), every range form is then cut from the stored response without
/// the origin, and a response larger than `max_object_bytes` (which `cache` must set to
/// 64 KiB) has its range asked of the origin instead.
pub async fn assert_ranges_are_served_from_the_complete_response<F: Frontend>(
    cache: &F,
    origin: &Origin,
) {
    const SIZE: usize = 40_000;
    let path = format!("/ranged?size={SIZE}&cc=max-age%3D600&etag=%22v1%22");
    let bytes = pattern(SIZE);
    let miss = get_range(cache, &path, "bytes=0-99", None).await;
    assert_eq!(miss.status, 206, "{}", miss.cache_status());
    assert_eq!(miss.header("content-range"), Some("bytes 0-99/40000"));
    assert_eq!(miss.header("content-length"), Some("100"));
    assert_eq!(&miss.body[..], &bytes[..100]);
    assert!(origin.ranges(&path).is_empty(), "the fill asked for it all");
    let hits = [
        ("bytes=-500", SIZE - 500, SIZE - 1),
        ("bytes=39000-", 39_000, SIZE - 1),
        ("bytes=100-199", 100, 199),
        ("bytes=39990-50000", 39_990, SIZE - 1),
    ];
    assert_range_hits(cache, &path, &bytes, &hits).await;
    // A whole response from the cache says ranges may be asked for (RFC 9110 §14.3).
    let whole = cache.get(&path).await;
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    // Several ranges: multipart/byteranges.
    let multi = get_range(cache, &path, "bytes=0-9, 20000-20009", None).await;
    assert_eq!(multi.status, 206);
    assert_multipart(
        &multi,
        &bytes,
        &[(0, 9), (20_000, 20_009)],
        Some("text/plain"),
    );
    // Not satisfiable; ignored when malformed; If-Range.
    let beyond = get_range(cache, &path, "bytes=40000-", None).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */40000"));
    assert_eq!(beyond.header("cache-control"), Some("no-store"));
    let malformed = get_range(cache, &path, "bytes=9-1", None).await;
    assert_eq!((malformed.status, malformed.body.len()), (200, SIZE));
    let current = get_range(cache, &path, "bytes=0-0", Some("\"v1\"")).await;
    assert_eq!((current.status, current.body.len()), (206, 1));
    let changed = get_range(cache, &path, "bytes=0-0", Some("\"v0\"")).await;
    assert_eq!((changed.status, changed.body.len()), (200, SIZE));
    assert_eq!(origin.count(&path), 1, "one fill served every range");

    // Too large to hold whole: the origin serves the range.
    let big = "/ranged-big?size=200000&ranges=1&cc=max-age%3D600";
    let part = get_range(cache, big, "bytes=1000-1999", None).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/200000"));
    assert_eq!(&part.body[..], &pattern(200_000)[1000..2000]);
    assert_eq!(origin.ranges(big), vec!["bytes=1000-1999".to_string()]);
}

/// RFC 9111 §3.3 through a host: an origin's single-part `206` (to a request the cache
/// sends without `Range`) is stored as an incomplete response; the ranges wholly within it
/// are hits cut from it with their own `Content-Range`; anything else goes to the origin
/// (`fwd=partial`), whose complete `200` then replaces it; a `206` whose `Content-Range`
/// is not exactly its content is passed on and not stored.
pub async fn assert_partial_responses_answer_the_ranges_within_them<F: Frontend>(
    cache: &F,
    origin: &Origin,
) {
    const SIZE: usize = 1000;
    let bytes = pattern(SIZE);
    let path = format!("/partial?size={SIZE}&part=700-999&part_times=2&cc=max-age%3D600");
    let first = get_range(cache, &path, "bytes=750-759", None).await;
    assert_eq!(first.status, 206, "{}", first.cache_status());
    assert_eq!(first.header("content-range"), Some("bytes 750-759/1000"));
    assert_eq!(&first.body[..], &bytes[750..760]);
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    assert!(
        origin.ranges(&path).is_empty(),
        "the origin was asked for it all"
    );
    let hits = [
        ("bytes=800-899", 800, 899),
        ("bytes=900-", 900, SIZE - 1),
        ("bytes=-50", SIZE - 50, SIZE - 1),
        ("bytes=700-999", 700, SIZE - 1),
    ];
    assert_range_hits(cache, &path, &bytes, &hits).await;
    assert_eq!(origin.count(&path), 1);
    // A range it lacks: the origin's answer (the same part) is passed on as it is.
    let outside = get_range(cache, &path, "bytes=0-9", None).await;
    assert_eq!(outside.header("content-range"), Some("bytes 700-999/1000"));
    assert!(
        outside.cache_status().contains("fwd=partial"),
        "{}",
        outside.cache_status()
    );
    assert_eq!(origin.count(&path), 2);
    // The whole response: the origin's complete 200 replaces the part, and serves ranges.
    let whole = cache.get(&path).await;
    assert_eq!((whole.status, &whole.body[..]), (200, &bytes[..]));
    assert!(
        whole.cache_status().contains("fwd=partial"),
        "{}",
        whole.cache_status()
    );
    let from_whole = get_range(cache, &path, "bytes=0-9", None).await;
    assert_eq!(
        (from_whole.status, &from_whole.body[..]),
        (206, &bytes[..10])
    );
    assert!(
        from_whole.cache_status().contains("hit"),
        "{}",
        from_whole.cache_status()
    );
    assert_eq!(origin.count(&path), 3);
    // Parts that are not exactly what they claim are passed on, never stored.
    for (why, claimed) in [
        ("a length that lies", "bytes%20700-998%2F1000"),
        ("an unsatisfied range", "bytes%20*%2F1000"),
        ("an unknown length", "bytes%20700-999%2F*"),
    ] {
        let path = format!(
            "/partial-bad?size={SIZE}&part=700-999&content_range={claimed}&cc=max-age%3D600"
        );
        for n in 1..=2 {
            let passed = get_range(cache, &path, "bytes=800-809", None).await;
            assert_eq!((passed.status, passed.body.len()), (206, 300), "{why}");
            assert!(
                !passed.cache_status().contains("hit"),
                "{why}: {}",
                passed.cache_status()
            );
            assert_eq!(origin.count(&path), n, "{why}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Streaming fills
// ---------------------------------------------------------------------------------------

/// A GET whose body is read as it arrives: `first_bytes` hears when its first bytes came.
/// The whole response, or how it failed (a body cut off is an error, as a client sees it).
pub async fn get_streaming(
    addr: SocketAddr,
    path_and_query: &str,
    first_bytes: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = hyper::Request::builder()
        .uri(path_and_query)
        .header(hyper::header::HOST, HOST)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path_and_query}: {e}"))?;
    let (parts, mut incoming) = response.into_parts();
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("GET {path_and_query}: body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if body.is_empty() && !data.is_empty() {
                let _ = first_bytes.send(());
            }
            body.extend_from_slice(&data);
        }
    }
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: Bytes::from(body),
    })
}

/// A cold miss for a `size`-byte object, asked by `clients` at once, streams to all of
/// them as the origin sends it: every client has its first bytes while the origin still
/// holds the rest back, the origin is asked once, every client gets the same intact bytes,
/// and the next request is a hit.
pub async fn assert_a_cold_miss_streams_to_concurrent_clients<F: Frontend + Sync>(
    cache: &F,
    origin: &Origin,
    prefix: &str,
    size: usize,
    clients: usize,
) {
    let path = url(
        &format!("{prefix}/stream"),
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("gate_after", &(size / 4).to_string()),
        ],
    );
    let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut readers = JoinSet::new();
    for _ in 0..clients {
        let (addr, path, first) = (cache.addr(), path.clone(), first_tx.clone());
        readers.spawn(async move { get_streaming(addr, &path, first).await });
    }
    for n in 0..clients {
        bounded(
            &format!("client {n} of {clients} to have its first bytes"),
            REQUEST_TIMEOUT,
            first_rx.recv(),
        )
        .await;
    }
    assert!(
        !readers.is_empty() && readers.try_join_next().is_none(),
        "no client can have finished: the origin holds the rest back"
    );
    origin.open_gate();
    let expected = pattern(size);
    let mut statuses = Vec::new();
    while let Some(read) = bounded(
        "the clients to finish",
        REQUEST_TIMEOUT,
        readers.join_next(),
    )
    .await
    {
        let r = read.expect("client task").expect("a whole response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), size);
        // Declared up front, so a response cut off is told from a whole one.
        assert_eq!(r.header("content-length"), Some(&*size.to_string()));
        assert!(
            r.body == expected,
            "every client gets the same intact bytes"
        );
        statuses.push(r.cache_status().to_string());
    }
    assert_eq!(origin.count(&path), 1, "one origin fetch: {statuses:?}");
    let hit = cache.get(&path).await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert!(hit.body == expected);
    assert_eq!(origin.count(&path), 1);
}

/// An origin that closes the connection mid-body: the client's response is cut off (an
/// error, never a short body that looks complete), nothing is stored, and the next request
/// goes to the origin again.
pub async fn assert_an_origin_aborting_mid_body_cuts_the_client_off<F: Frontend>(
    cache: &F,
    origin: &Origin,
    prefix: &str,
) {
    let size = 512 * 1024;
    let path = url(
        &format!("{prefix}/aborts"),
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("abort_after", &(size / 3).to_string()),
        ],
    );
    for round in 1..=2 {
        let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
        let (addr, p) = (cache.addr(), path.clone());
        let read = tokio::spawn(async move { get_streaming(addr, &p, first_tx).await });
        bounded("the first bytes", REQUEST_TIMEOUT, first_rx.recv()).await;
        origin.open_gate();
        match bounded("the response to end", REQUEST_TIMEOUT, read)
            .await
            .expect("task")
        {
            Err(e) => assert!(e.contains("body"), "cut off while reading the body: {e}"),
            Ok(r) => panic!(
                "a response that looks complete: {} with {} of {size} bytes ({})",
                r.status,
                r.body.len(),
                r.cache_status()
            ),
        }
        assert_eq!(origin.count(&path), round, "not stored: fetched again");
    }
}

/// An origin that stalls mid-body for longer than the between-bytes timeout: the client's
/// response is cut off, and nothing is stored.
pub async fn assert_an_origin_stalling_mid_body_cuts_the_client_off<F: Frontend>(
    cache: &F,
    origin: &Origin,
    prefix: &str,
) {
    let size = 512 * 1024;
    let path = url(
        &format!("{prefix}/stalls"),
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("stall_after", &(size / 3).to_string()),
        ],
    );
    for round in 1..=2 {
        let e = cache.try_get(&path).await.expect_err("cut off");
        assert!(e.contains("body"), "cut off while reading the body: {e}");
        assert_eq!(origin.count(&path), round, "not stored: fetched again");
    }
}

// ---------------------------------------------------------------------------------------
// Chunked bodies in the shared tier
// ---------------------------------------------------------------------------------------

/// The chunk keys in Redis.
pub async fn chunk_keys(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = bounded(
        "redis KEYS",
        WAIT,
        redis::cmd("KEYS").arg("ec:v1:*chunk:*").query_async(con),
    )
    .await
    .expect("KEYS");
    keys.sort();
    keys
}

/// The write a chunk key belongs to: `…:chunk:{write id}:{n}` without its `:{n}`.
fn write_id(key: &str) -> &str {
    key.rsplit_once(':').map_or(key, |(write, _)| write)
}

/// The writes that `keys` (chunk keys) belong to.
fn write_ids(keys: &[String]) -> std::collections::HashSet<String> {
    keys.iter().map(|k| String::from(write_id(k))).collect()
}

/// A body larger than `l2.chunk_bytes` (512 KiB) written by `a` is stored in Redis as a
/// head and chunks, and read whole by `b`; a chunk missing makes it a miss (fetched again,
/// never a corrupt body); a purge removes the head, so `b` no longer finds it.
pub async fn assert_chunked_bodies_are_shared_through_redis<A: Frontend, B: Frontend>(
    a: &A,
    b: &B,
    redis: &RedisServer,
    origin: &Origin,
    prefix: &str,
) {
    let mut con = redis.conn().await;
    let size = 3 * 512 * 1024 + 17;
    let expected = pattern(size);
    let path = url(
        &format!("{prefix}/chunked"),
        &[("cc", "max-age=300"), ("size", &size.to_string())],
    );
    // The writes already there: a write of theirs that lands later (the background write of
    // an object refetched just before, which restores a chunk deleted on purpose) is not
    // this object's.
    let before = write_ids(&chunk_keys(&mut con).await);
    let filled = a.get(&path).await;
    assert!(filled.body == expected, "the fill's body is intact");
    let head = await_object(&mut con, &format!("{prefix}/chunked?")).await;
    let chunks = eventually("the 4 chunks in Redis", WAIT, async || {
        let keys: Vec<String> = chunk_keys(&mut con)
            .await
            .into_iter()
            .filter(|k| !before.contains(write_id(k)))
            .collect();
        (keys.len() >= 4).then_some(keys)
    })
    .await;
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    let read = b.get(&path).await;
    assert!(
        read.cache_status().contains("edgecache-l2; hit"),
        "{}",
        read.cache_status()
    );
    assert!(read.body == expected, "read whole from its chunks");
    assert_eq!(origin.count(&path), 1);

    // A chunk gone: a miss, fetched again, never a body with a hole.
    let other = url(
        &format!("{prefix}/holed"),
        &[("cc", "max-age=300"), ("size", &size.to_string())],
    );
    a.get(&other).await;
    await_object(&mut con, &format!("{prefix}/holed?")).await;
    let holed = eventually("the other object's chunks", WAIT, async || {
        let keys: Vec<String> = chunk_keys(&mut con)
            .await
            .into_iter()
            .filter(|k| !chunks.contains(k) && !before.contains(write_id(k)))
            .collect();
        (keys.len() >= 4).then_some(keys)
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(&holed[2])
        .query_async(&mut con)
        .await
        .expect("DEL");
    let refetched = b.get(&other).await;
    assert!(refetched.body == expected);
    assert!(
        !refetched.cache_status().contains("hit"),
        "{}",
        refetched.cache_status()
    );
    assert_eq!(
        origin.count(&other),
        2,
        "a head with a chunk missing is a miss"
    );

    // A purge deletes the head: the chunks are read by nothing.
    a.purge(&format!("url={}", enc(&path))).await;
    let left = object_keys(&mut con).await;
    assert!(!left.contains(&head), "the head is gone: {left:?}");
}

// ---------------------------------------------------------------------------------------
// Objects in slices
// ---------------------------------------------------------------------------------------

/// An object larger than `limits.max_object_bytes` (the cache under test has 256 KiB, and
/// slices of 64 KiB) is served whole and cached in slices fetched by range; the next
/// request, and a range of it, are served from them; a purge of its URL reaches them.
/// `response` is the `multipart/byteranges` `206` (RFC 9110 §14.6) of `parts` (first and
/// last byte of each) of `content`, each part typed `part_type`, byte for byte.
pub fn assert_multipart(
    response: &Resp,
    content: &[u8],
    parts: &[(usize, usize)],
    part_type: Option<&str>,
) {
    assert_eq!(response.status, 206);
    let content_type = response.header("content-type").unwrap_or("").to_string();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("multipart type: {content_type}"));
    let mut expected = Vec::new();
    for &(first, last) in parts {
        expected.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if let Some(part_type) = part_type {
            expected.extend_from_slice(format!("content-type: {part_type}\r\n").as_bytes());
        }
        let size = content.len();
        expected.extend_from_slice(
            format!("content-range: bytes {first}-{last}/{size}\r\n\r\n").as_bytes(),
        );
        expected.extend_from_slice(&content[first..=last]);
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    assert!(
        response.body == expected,
        "{} bytes, expected {}",
        response.body.len(),
        expected.len()
    );
}

pub async fn assert_large_objects_are_cached_in_slices<F: Frontend>(
    cache: &F,
    origin: &Origin,
    prefix: &str,
) {
    let size: usize = (1 << 20) + 123;
    let slices = size.div_ceil(64 << 10) as u64;
    let expected = pattern(size);
    let path = url(
        &format!("{prefix}/sliced"),
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    let first = cache.get(&path).await;
    assert_eq!(first.status, 200, "{}", first.cache_status());
    assert!(
        first.body == expected,
        "whole and intact: {} bytes",
        first.body.len()
    );
    assert!(first.header("edgecache-slices").is_none(), "internal");
    assert!(
        origin.ranges(&path).is_empty(),
        "its slices read from its own response"
    );
    assert_eq!(origin.count(&path), 1, "one origin request");
    let again = cache.get(&path).await;
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
    assert!(again.body == expected);
    let range = [("range", "bytes=100000-200000")];
    let part = send(cache.addr(), "GET", &path, &range, Bytes::new())
        .await
        .expect("a range");
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(&*format!("bytes 100000-200000/{size}"))
    );
    assert!(part.body == expected[100000..=200000]);
    // Several ranges, across slices and out of order: one multipart/byteranges 206.
    let several = [("range", "bytes=1048570-1048580, 10-19, 65530-65545")];
    let multi = send(cache.addr(), "GET", &path, &several, Bytes::new())
        .await
        .expect("several ranges");
    let parts = [(1_048_570, 1_048_580), (10, 19), (65_530, 65_545)];
    assert_multipart(&multi, &expected, &parts, Some("text/plain"));
    assert_eq!(origin.count(&path), 1, "all from the cache");
    // After a purge of its URL, a range reads only the slices it covers, by range.
    cache.purge(&format!("url={}", enc(&path))).await;
    let part = send(cache.addr(), "GET", &path, &range, Bytes::new())
        .await
        .expect("a range");
    assert_eq!(part.status, 206);
    assert!(part.body == expected[100000..=200000]);
    assert_eq!(
        origin.ranges(&path),
        [
            "bytes=65536-131071",
            "bytes=131072-196607",
            "bytes=196608-262143"
        ],
        "the purge reached the slices"
    );
    let whole = cache.get(&path).await;
    assert!(whole.body == expected, "the rest by range");
    assert_eq!(origin.ranges(&path).len() as u64, slices);
}

/// The counters the fleet assertions compare: those the test's requests move, and no
/// stats request does.
pub const FLEET_COUNTERS: [&str; 6] = [
    "requests",
    "l1_hits",
    "l2_hits",
    "misses",
    "origin_fetches",
    "stored",
];

/// Issue 14 point 3: waits (at most `within`) until `/stats` on every one of `caches`
/// (instances sharing one Redis, reporting every second or so) shows the fleet's totals
/// equal to the sum of their own figures for [`FLEET_COUNTERS`], with every one of them
/// listed as reporting; then checks the first's `/metrics` says the same, the instance's
/// series labelled `scope="instance"`. Returns the first's stats. Asking for the stats
/// also makes an instance report when a report is due, so the Workers, which have no
/// timers, report as the test polls them.
pub async fn assert_fleet_totals_are_the_sum<F: Frontend>(
    caches: &[&F],
    within: Duration,
) -> serde_json::Value {
    let sum = |all: &[serde_json::Value], name: &str| -> u64 {
        all.iter()
            .map(|s| s["engine"][name].as_u64().unwrap_or_default())
            .sum()
    };
    let all = eventually(
        "the fleet's totals on every instance to be the sum of the instances' own",
        within,
        async || {
            let mut all = Vec::new();
            for cache in caches {
                all.push(cache.stats().await);
            }
            let ids: Vec<&str> = all.iter().filter_map(|s| s["instance"].as_str()).collect();
            let converged = all.iter().all(|stats| {
                let fleet = &stats["fleet"];
                let listed: Vec<&str> = fleet["reporting"]
                    .as_array()
                    .map(|l| l.iter().filter_map(|r| r["instance"].as_str()).collect())
                    .unwrap_or_default();
                FLEET_COUNTERS
                    .iter()
                    .all(|name| fleet["engine"][name].as_u64() == Some(sum(&all, name)))
                    && ids.iter().all(|id| listed.contains(id))
            });
            converged.then_some(all)
        },
    )
    .await;
    let first = all[0].clone();
    assert_eq!(first["scope"], "instance", "{first}");
    assert_eq!(first["fleet"]["scope"], "fleet", "{first}");
    assert!(
        first["fleet"]["instances"].as_u64() >= Some(caches.len() as u64),
        "{first}"
    );
    let metrics = caches[0]
        .admin("GET", "/_edgecache/metrics", Some(TOKEN))
        .await
        .text();
    let requests = sum(&all, "requests");
    let own = first["engine"]["requests"].as_u64().unwrap_or_default();
    for line in [
        format!("edgecache_fleet_requests_total {requests}\n"),
        format!("edgecache_requests_total{{scope=\"instance\"}} {own}\n"),
        String::from("edgecache_fleet_up 1\n"),
    ] {
        assert!(metrics.contains(&line), "{line:?} in:\n{metrics}");
    }
    first
}

/// What `SharedTier::get_prefixes` and `SharedTier::extend` do against a real Redis, for
/// every client of it (RESP and REST): `s` stores `k1` = `\x00binary\xffvalue\r\n` with a
/// TTL of about 60 s and has no key `nope`; `own` is a direct connection to the same Redis.
pub async fn check_prefixes_and_extend(
    s: &impl edgecache::engine::SharedTier,
    own: &mut redis::aio::MultiplexedConnection,
) {
    // The first bytes of each value; a missing key's are none.
    let prefixes = s
        .get_prefixes(&["k1".into(), "nope".into()], 4)
        .await
        .unwrap();
    assert_eq!(prefixes, [b"\x00bin".to_vec(), Vec::new()]);
    let whole = s.get_prefixes(&["k1".into()], 1 << 20).await.unwrap();
    assert_eq!(
        whole,
        [b"\x00binary\xffvalue\r\n".to_vec()],
        "a short value whole"
    );
    // Extended only (GT): a longer TTL applies, a shorter one and a missing key do not.
    let extended = s.extend(&["k1".into(), "nope".into()], 120_000).await;
    assert_eq!(extended.unwrap(), 1, "only the key that exists");
    assert_eq!(
        s.extend(&["k1".into()], 1_000).await.unwrap(),
        0,
        "never shortened"
    );
    let ttl: i64 = redis::cmd("PTTL").arg("k1").query_async(own).await.unwrap();
    assert!(ttl > 110_000 && ttl <= 120_000, "PEXPIRE GT applied: {ttl}");
    assert_eq!(
        s.exist(&["nope".into()]).await.unwrap(),
        [false],
        "not created"
    );
    assert_eq!(s.extend(&[], 1_000).await.unwrap(), 0);
}
