//! The HTTP/1.1 server: accepts connections, turns each request into an engine request,
//! sends the engine's response, runs background jobs on spawned tasks, and shuts down
//! gracefully (stops accepting, lets in-flight requests finish) on SIGTERM / SIGINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::body::{boxed, empty, full, BetweenBytes, FillBody, ProxyBody};
use super::connections::{Resolved, Tracker};
use super::interim::{self, Writer};
use super::origin::{append_to_header_map, from_header_map, to_header_map, HyperOrigin};
use super::ready::{FileCopy, ReadyEntries};
use super::runtime::TokioRuntime;
use super::sendfile::{Bodies, FileCopies, HitStream};
use super::tls::Trust;
use super::NativeHost;
use crate::engine::{Body, Engine, EngineConfig, Request};
use crate::entry::CachedResponse;
use crate::shared_tier::redis_rs::RedisRsTier;

/// The engine as the native host runs it.
pub type NativeEngine = Engine<NativeHost>;

/// Builds the engine for `origin` with `config`, with the Redis tier at `redis` if given
/// (TLS upstreams trust Mozilla's roots only). `config` is one [`super::config::ServeConfig::validate`]
/// accepted: the rules that need the whole configuration (a shared tier for write-behind)
/// are checked there, once.
pub fn build_engine(
    config: EngineConfig,
    origin: &str,
    redis: Option<&str>,
) -> Result<Arc<NativeEngine>, StartError> {
    build_engine_with_trust(config, origin, redis, &Trust::default())
}

/// As [`build_engine`], with the extra CAs of `trust` for an `https://` origin and a
/// `rediss://` tier.
pub fn build_engine_with_trust(
    config: EngineConfig,
    origin: &str,
    redis: Option<&str>,
    trust: &Trust,
) -> Result<Arc<NativeEngine>, StartError> {
    let origin = HyperOrigin::with_ca_file(origin, trust.origin.as_ref())
        .map_err(StartError::Origin)?
        .with_between_bytes_timeout(Duration::from_millis(
            config.limits.between_bytes_timeout_ms,
        ));
    let timeout = Duration::from_millis(config.l2.timeout_ms);
    let shared = redis
        .map(|url| RedisRsTier::with_ca_file(url, timeout, trust.redis.as_ref()))
        .transpose()
        .map_err(StartError::SharedTier)?;
    Engine::new(config, origin, shared, TokioRuntime)
        .map(Arc::new)
        .map_err(StartError::Config)
}

/// Why the native host could not build its engine: which part, and why (the message
/// names the setting; it never holds a password).
#[derive(Debug)]
pub enum StartError {
    /// The origin URL or the TLS settings for it.
    Origin(String),
    /// The shared tier's (Redis) URL or the TLS settings for it.
    SharedTier(String),
    /// The engine's configuration.
    Config(crate::engine::ConfigError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Origin(why) | StartError::SharedTier(why) => f.write_str(why),
            StartError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A client's request body for the engine: one that sends nothing for
/// `limits.between_bytes_timeout_ms` fails (a body trickled in a byte at a time would
/// otherwise hold its connection, and the origin connection it is streamed to, forever),
/// and the engine answers `400` (`detail=request-body`). A request without a body gets no
/// timer.
fn client_body(incoming: Incoming, engine: &NativeEngine) -> ProxyBody {
    if http_body::Body::is_end_stream(&incoming) {
        return boxed(incoming);
    }
    let timeout = Duration::from_millis(engine.config().limits.between_bytes_timeout_ms);
    boxed(BetweenBytes::new(boxed(incoming), timeout))
}

/// Converts a hyper request, runs it through the engine, converts the response back. A hit
/// is sent in its ready form (`readies`, the server's); a cached body with a file copy is
/// registered in `bodies`, the connection's, so that it is sent from the file (see
/// [`super::sendfile`]). The origin's interim responses (`103 Early Hints`) to an HTTP/1.1
/// request are written on the connection's `writer` before the final response (see
/// [`super::interim`]).
pub async fn serve_one(
    engine: Arc<NativeEngine>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    bodies: &Arc<Bodies>,
    readies: &Arc<ReadyEntries>,
    writer: &Arc<Writer>,
) -> hyper::Response<ProxyBody> {
    let (parts, incoming) = request.into_parts();
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let forwarding = (parts.version == hyper::Version::HTTP_11).then(|| writer.begin());
    // Access-log timing only, and only when the access log is on; no cache decision reads it.
    #[allow(clippy::disallowed_methods)]
    let started = tracing::enabled!(tracing::Level::DEBUG).then(std::time::Instant::now);
    let request = Request {
        method: parts.method.as_str().to_string(),
        scheme: "http".to_string(),
        // As received: origin-form, absolute-form, `*` or authority-form. The engine takes
        // the authority from it or from the one Host field (engine::request).
        target: match (parts.uri.scheme(), parts.uri.path_and_query()) {
            // Origin-form, by far the most common: copied as it is.
            (None, Some(origin_form)) if parts.uri.authority().is_none() => {
                origin_form.as_str().to_string()
            }
            _ => parts.uri.to_string(),
        },
        headers: from_header_map(&parts.headers),
        client: Some(peer.ip()),
        body: Some(client_body(incoming, &engine)),
    };
    let sink = forwarding.as_ref().map(interim::Forwarding::sink);
    let handled = interim::with_sink(sink, engine.handle(request)).await;
    if let Some(forwarding) = forwarding {
        forwarding.finish().await;
    }
    if let Some(job) = handled.job {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_job(job).await });
    }
    let response = handled.response;
    if let Some(started) = started {
        // Access log: path only (queries may carry tokens), never request headers.
        tracing::debug!(
            method = %parts.method,
            path = %parts.uri.path(),
            status = response.status,
            cache = response.headers.get_str("cache-status").unwrap_or(""),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    let (mut headers, file) = match &response.stored_fields {
        Some(stored) => {
            let ready = readies.get_or_build(stored);
            let mut map = ready.fields.clone();
            append_to_header_map(&mut map, &response.headers);
            (map, ready.file.clone())
        }
        None => (to_header_map(&response.headers), None),
    };
    // A hit's file copy is in its ready form, at hand, when the body is the entry whose
    // fields it sends; another entry's body in a hit (a range within one slice of an
    // object) is reused too, so its copy is made if it has none; other responses (the one
    // that stored the entry) use the entry's file if a hit has made one, but do not make it.
    let hit_fields = response.stored_fields.as_ref();
    let file_for = |stored: &Arc<CachedResponse>| match &hit_fields {
        Some(fields) if Arc::ptr_eq(fields, stored) => FileCopy::Known(file.clone()),
        Some(_) => FileCopy::Find { make: true },
        None => FileCopy::Find { make: false },
    };
    // hyper computes the length of the body we send; a HEAD's is the engine's to say.
    headers.remove(hyper::header::CONTENT_LENGTH);
    if let Some(length) = response.content_length {
        headers.insert(hyper::header::CONTENT_LENGTH, length.into());
    }
    let body = match response.body {
        Body::Empty => empty(),
        Body::Bytes(bytes) => full(bytes),
        Body::Cached(stored) => {
            let all = 0..stored.body.len();
            let file = file_for(&stored);
            full(readies.body_part(bodies, stored, all, file))
        }
        // A range of a body with a file is sent from the file too: its bytes lie inside the
        // registered body, which is what `HitStream` looks for.
        Body::Slice(stored, range) => {
            let file = file_for(&stored);
            full(readies.body_part(bodies, stored, range, file))
        }
        // So are the parts of stored bodies a fill's reader reads (slices of an object).
        Body::Filling(reader) => boxed(FillBody::sending_files(
            reader,
            bodies.clone(),
            readies.clone(),
        )),
        Body::Stream(stream) => stream,
    };
    let mut out = hyper::Response::new(body);
    *out.status_mut() =
        hyper::StatusCode::from_u16(response.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    out
}

/// Serves on `listener` until `shutdown` completes, then waits up to `grace` for in-flight
/// requests to finish. Connections beyond `limits` are closed as they are accepted, and a
/// client that does not send a whole request head within its timeout is disconnected
/// ([`super::connections`]).
pub async fn run(
    engine: Arc<NativeEngine>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    limits: Resolved,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Zero-copy hits where the platform has the calls, unless turned off; file copies of
    // large bodies add at most a quarter to L1's memory.
    let syscalls = super::zero_copy::syscalls().filter(|_| limits.sendfile);
    let files = FileCopies::new(syscalls, engine.config().l1.max_bytes / 4);
    let readies = Arc::new(ReadyEntries::new(files));
    let tracker = Tracker::new(limits);
    let mut refusals = RateLimitedLog::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        refusals.warn(|| format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = match tracker.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        // Closed at once: the client sees a reset, the slot stays free.
                        drop(stream);
                        refusals.warn(|| format!(
                            "refusing connections ({refusal:?}: {} open, at most {} in all and {} per client address; {} refused so far)",
                            tracker.open(), limits.max, limits.max_per_client, tracker.refused()
                        ));
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let engine = engine.clone();
                let bodies = Arc::new(Bodies::default());
                let stream = HitStream::new(stream, bodies.clone());
                let service = service_fn({
                    let readies = readies.clone();
                    let writer = stream.writer().clone();
                    move |req| {
                        let engine = engine.clone();
                        let bodies = bodies.clone();
                        let readies = readies.clone();
                        let writer = writer.clone();
                        async move {
                            Ok::<_, Infallible>(
                                serve_one(engine, req, peer, &bodies, &readies, &writer).await,
                            )
                        }
                    }
                });
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .max_buf_size(engine_header_limit())
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down: no new connections, finishing in-flight requests");
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// A warning logged at most every ten seconds, however often it happens: under a flood of
/// connections the log must not become the next thing to fill up.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<tokio::time::Instant>,
}

impl RateLimitedLog {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
        {
            self.last = Some(now);
            tracing::warn!("{}", message());
        }
    }
}

/// Applies other instances' purges every `l2.purge_poll_ms` while the shared tier is
/// configured (requests also trigger a check when one is due).
pub fn spawn_purge_sync(engine: Arc<NativeEngine>) {
    let every = Duration::from_millis(engine.config().l2.purge_poll_ms.max(50));
    spawn_ticker(
        engine,
        every,
        |engine| async move { engine.sync_purges().await },
    );
}

/// Runs `tick` with `engine` at once and then every `every`, forever (a tick that runs late
/// delays the next rather than bunching them).
fn spawn_ticker<F, Fut>(engine: Arc<NativeEngine>, every: Duration, tick: F)
where
    F: Fn(Arc<NativeEngine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            tick(engine.clone()).await;
        }
    });
}

/// Reports this instance's counts to the fleet's totals ([`crate::engine::fleet`]) when a
/// report is due, checking every second (or every `stats.report_secs`, if shorter), so an
/// idle instance keeps its place among those reporting; requests also report when one is
/// due. Nothing to do without a shared tier or with `stats.report_secs = 0`.
pub fn spawn_stats_report(engine: Arc<NativeEngine>) {
    let report_ms = engine.config().stats.report_secs.saturating_mul(1000);
    if report_ms == 0 {
        return;
    }
    let every = Duration::from_millis(report_ms.min(1000));
    spawn_ticker(engine, every, |engine| async move {
        engine.report_stats().await
    });
}

/// Sends queued write-behind requests to the origin at start (what an instance that
/// stopped left behind) and then every `write_behind.flush_interval_ms`, when write-behind
/// routes are configured (appends also start a flush at once).
pub fn spawn_write_behind_flush(engine: Arc<NativeEngine>) {
    if engine.config().write_behind.routes.is_empty() {
        return;
    }
    let every = Duration::from_millis(engine.config().write_behind.flush_interval_ms.max(10));
    spawn_ticker(engine, every, |engine| async move {
        engine.flush_write_behind().await
    });
}

/// hyper's read buffer bounds the request head; the engine enforces its own header limit.
fn engine_header_limit() -> usize {
    1 << 20
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
