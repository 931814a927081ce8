//! The Cloudflare Worker host (feature `worker`): workers-rs glue around the shared engine.
//! It only translates types and runs I/O; every caching decision is the engine's.
//!
//! Per isolate: one [`Engine`] (configuration, L1, coalescing, counters, breaker), built on
//! the first request from the environment ([`settings`]). Per request: a copy of it with a
//! fresh Redis client ([`Engine::with_shared_tier`]), because a Worker's I/O belongs to the
//! request that started it: RESP over sockets or Redis over HTTP over `fetch`, by the URL's
//! scheme ([`redis`]); and the colo tier (the Cache API) when enabled ([`colo`]).
//! Background work (revalidation, L2 writes, purge sync, write-behind flushes) runs in
//! `ctx.wait_until`, after the response has gone; a cron trigger retries write-behind
//! deliveries (`#[event(scheduled)]`).

pub mod body;
pub mod colo;
pub mod context;
pub mod origin;
pub mod redis;
pub mod runtime;
pub mod settings;
pub mod socket;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use core::cell::RefCell;

use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::ext::ResponseInitExt;
use worker::{event, Context, Env};

use crate::engine::{Body, Engine, EngineState, Host, Request, Response};
use body::{from_js_headers, js_message, to_js_headers, WorkerBody};

/// The Worker's types.
pub struct WorkerHost;

impl Host for WorkerHost {
    type Body = WorkerBody;
    type Origin = origin::FetchOrigin;
    type SharedTier = redis::WorkerRedis;
    type Colo = colo::CacheApiColo;
    type Runtime = runtime::JsRuntime;
    type Lock = Rc<RefCell<EngineState>>;
}

/// What an isolate keeps between requests.
struct Isolate {
    engine: Engine<WorkerHost>,
    redis: Option<crate::shared_tier::url::SharedTierTarget>,
    purge_api: Option<Rc<colo::PurgeApi>>,
    /// Whether the colo tier's mode (bit 0) and its being inactive on workers.dev (bit 1)
    /// were logged: each once per isolate, when first seen.
    colo_logged: core::cell::Cell<u8>,
}

std::thread_local! {
    /// Built on the first request; a configuration error is kept and answered every time.
    static ISOLATE: RefCell<Option<Result<Rc<Isolate>, String>>> = const { RefCell::new(None) };
}

fn isolate(env: &Env) -> Result<Rc<Isolate>, String> {
    ISOLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let built = settings::Settings::from_env(env).and_then(|s| {
                let origin = origin::FetchOrigin::new(&s.origin)
                    .map_err(|m| format!("invalid config `EDGECACHE_ORIGIN`: {m}"))?;
                let engine = Engine::new(s.cache, origin, None, runtime::JsRuntime)
                    .map_err(|e| e.to_string())?;
                Ok(Rc::new(Isolate {
                    engine,
                    redis: s.redis,
                    purge_api: s.purge_api.map(Rc::new),
                    colo_logged: core::cell::Cell::new(0),
                }))
            });
            *slot = Some(built);
        }
        slot.clone()
            .unwrap_or_else(|| Err(String::from("not initialised")))
    })
}

/// The fetch handler. It takes and returns the runtime's own `Request` and `Response`
/// (workers-rs passes them through): `worker::Request` would parse the request's `cf`
/// object and a returned `worker::Response` would be rebuilt in JS, together about 16% of
/// an L1 hit's CPU time in a workerd profile (BENCHMARKS.md), for nothing the cache uses.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let isolate = match isolate(&env) {
        Ok(isolate) => isolate,
        Err(message) => {
            // The details (which may quote a configured value) go to the operator's log
            // only; the answer names the variable.
            worker::console_error!("edgecache: {message}");
            let variable = message.split('`').nth(1).unwrap_or("configuration");
            return plain(
                500,
                &format!(
                    "edgecache is misconfigured: {variable}; the Worker's log (wrangler tail) says why\n"
                ),
            );
        }
    };
    let store = shared_tier(&isolate);
    let request = to_engine_request(&req);
    let config = isolate.engine.config();
    let origin = url_origin(&request.target);
    let engine = isolate.engine.with_shared_tier(store);
    let engine = Rc::new(if config.colo.enabled && on_workers_dev(origin) {
        engine.with_colo_unavailable(WORKERS_DEV)
    } else {
        let colo = config.colo.enabled.then(|| {
            colo::CacheApiColo::new(origin, &config.admin.path, isolate.purge_api.clone())
        });
        engine.with_colo(colo)
    });
    log_colo_mode(&engine, &isolate.colo_logged);
    let handled = context::in_own_context(engine.handle(request)).await;
    if let Some(job) = handled.job {
        let engine = engine.clone();
        ctx.wait_until(async move { context::in_own_context(engine.run_job(job)).await });
    }
    match to_worker_response(handled.response) {
        Ok(response) => Ok(response),
        Err(e) => {
            let message = js_message(&e);
            worker::console_error!("edgecache: could not build the response: {message}");
            plain(
                502,
                &format!("edgecache could not build the response: {message}\n"),
            )
        }
    }
}

/// The cron trigger (`[triggers] crons` in wrangler.toml): sends queued write-behind
/// requests whose delivery failed once their retry time has come, and any an isolate left
/// behind (appends also flush at once, in `ctx.wait_until`).
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    let isolate = match isolate(&env) {
        Ok(isolate) => isolate,
        Err(message) => {
            worker::console_error!("edgecache: {message}");
            return;
        }
    };
    let config = isolate.engine.config();
    if config.write_behind.routes.is_empty() {
        return;
    }
    let engine = isolate.engine.with_shared_tier(shared_tier(&isolate));
    context::in_own_context(engine.flush_write_behind()).await;
}

/// A request's shared-tier client, if Redis is configured.
fn shared_tier(isolate: &Isolate) -> Option<redis::WorkerRedis> {
    let config = isolate.engine.config();
    // The engine bounds each call more tightly (l2.timeout_ms, write_behind.timeout_ms);
    // this only stops a REST call that outlives every one of them.
    let backstop_ms = config
        .l2
        .timeout_ms
        .max(config.write_behind.timeout_ms)
        .saturating_add(1_000);
    let reply_limit = redis_reply_limit(config);
    let target = isolate.redis.as_ref()?;
    Some(redis::tier(target, reply_limit, backstop_ms))
}

/// The largest Redis reply a request accepts: a batch of chunks, or a few of the largest
/// values the engine writes (an `MGET` of a key and its variants, or a queued write-behind
/// request), never most of an isolate's 128 MB. No value is larger than `l2.chunk_bytes`
/// but for its fields: bodies above it are chunked.
fn redis_reply_limit(config: &crate::engine::EngineConfig) -> usize {
    let l2 = &config.l2;
    let value = l2.chunk_bytes.min(l2.max_object_bytes);
    let batch = value.saturating_mul(crate::engine::l2::CHUNKS_PER_READ.max(4));
    batch
        .max(config.write_behind.max_body_bytes.saturating_mul(4))
        .saturating_add(256 << 10)
        .min(32 << 20)
}

/// A short text response (configuration and conversion errors, which are never cached).
fn plain(status: u16, text: &str) -> worker::Result<web_sys::Response> {
    let response = worker::Response::ok(text)?.with_status(status);
    response.headers().set("cache-control", "no-store")?;
    Ok(response.into())
}

/// The client's request as the engine takes it: the runtime's absolute URL as the target
/// (its authority is the request's; the engine normalises it, `engine::request`).
fn to_engine_request(inner: &web_sys::Request) -> Request<WorkerBody> {
    let target = inner.url();
    let headers = from_js_headers(&inner.headers());
    // Set by Cloudflare's edge to the connecting client's address; a client cannot send it.
    let client = headers
        .get_str("cf-connecting-ip")
        .and_then(|ip| ip.trim().parse().ok());
    Request {
        method: inner.method(),
        scheme: url_scheme(&target).to_string(),
        target,
        headers,
        client,
        body: inner.body().map(WorkerBody::Js),
    }
}

/// What `/stats` says of the colo tier on `*.workers.dev`.
const WORKERS_DEV: &str = "inactive on workers.dev";

/// Whether `origin` (`scheme://authority`) is on `*.workers.dev`, where the Cache API
/// stores nothing (Cloudflare: Cache API operations work for Workers on custom domains and
/// routes of a zone).
fn on_workers_dev(origin: &str) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "workers.dev" || host.ends_with(".workers.dev")
}

/// Logs, once per isolate, how the colo tier works here (the "start log" of a Worker: its
/// isolate's first request), and, once, that it is inactive when a request comes on
/// `*.workers.dev`. Without Redis or the purge API, a warning: purges are local plus expiry.
fn log_colo_mode(engine: &Engine<WorkerHost>, logged: &core::cell::Cell<u8>) {
    let snapshot = engine.snapshot();
    let bit = if snapshot.colo == WORKERS_DEV { 2 } else { 1 };
    if logged.get() & bit != 0 {
        return;
    }
    logged.set(logged.get() | bit);
    match snapshot.colo {
        WORKERS_DEV => worker::console_warn!(
            "edgecache: colo tier inactive on workers.dev: the Cache API stores nothing there; serve the Worker on a route or custom domain of a zone to use it"
        ),
        "local+expiry" => worker::console_warn!(
            "edgecache: colo tier local+expiry: neither Redis nor Cloudflare's purge API is configured, so a purge reaches this isolate at once and other isolates and colos only by expiry (colo entries kept at most {} s); set EDGECACHE_CF_API_TOKEN and EDGECACHE_CF_ZONE_ID, or EDGECACHE_REDIS_URL",
            snapshot.colo_max_ttl_secs.unwrap_or_default()
        ),
        mode => worker::console_log!("edgecache: colo tier: {mode}"),
    }
}

/// The scheme of the runtime's absolute request URL.
fn url_scheme(url: &str) -> &str {
    url.split_once("://").map_or("https", |(scheme, _)| scheme)
}

/// The origin (`scheme://authority`) of the runtime's absolute request URL: where the colo
/// tier keeps its entries, on the Worker's own host.
fn url_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The engine's response as a JS `Response` (one copy of a cached body into JS memory).
fn to_worker_response(mut response: Response<WorkerBody>) -> Result<web_sys::Response, JsValue> {
    if !(200..=599).contains(&response.status) {
        // JS `Response` cannot carry these (natively they pass through).
        return Err(JsValue::from_str(&format!(
            "the origin's status {} cannot be sent from a Worker (200 to 599 only)",
            response.status
        )));
    }
    let mut headers = response.take_fields();
    // The runtime computes the length of what it sends; a HEAD's is the engine's to say.
    headers.remove("content-length");
    if let Some(length) = response.content_length {
        headers.set("content-length", length.to_string());
    }
    let mut init = web_sys::ResponseInit::new();
    init.set_status(response.status);
    init.set_headers(&to_js_headers(&headers)?.into());
    // The body goes out exactly as stored: compressed if the origin compressed it (the origin
    // fetch keeps its encoding too), as natively. The runtime must not encode it again.
    init.encode_body("manual")?;
    let null_body = matches!(response.status, 101 | 204 | 205 | 304);
    let js = match response.body {
        _ if null_body => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        Body::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        Body::Bytes(bytes) => with_bytes(&bytes, &init)?,
        Body::Cached(stored) => with_bytes(&stored.body, &init)?,
        Body::Slice(stored, range) => with_bytes(&stored.body[range], &init)?,
        Body::Stream(WorkerBody::Js(stream)) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)?
        }
        Body::Stream(WorkerBody::Bytes(bytes)) => with_bytes(&bytes, &init)?,
        // A fill's chunks as they arrive; a failed fill errors the stream, which cuts the
        // response off. Of known length, through a fixed-length stream: the runtime sends
        // its Content-Length, so a client can tell a cut response from a whole one.
        Body::Filling(reader) => match reader.expected_length() {
            Some(length) => {
                let chunks = body::fill_stream(reader);
                let fixed: worker::worker_sys::FixedLengthStream =
                    worker::FixedLengthStream::wrap(chunks, length).into();
                let readable = fixed.unchecked_ref::<web_sys::TransformStream>().readable();
                web_sys::Response::new_with_opt_readable_stream_and_init(Some(&readable), &init)?
            }
            None => streamed(body::fill_stream(reader), &init)?,
        },
        Body::Stream(WorkerBody::Chunks(chunks)) => streamed(chunks, &init)?,
    };
    Ok(js)
}

/// A JS response whose body is `chunks`, as they come.
fn streamed(
    chunks: core::pin::Pin<Box<dyn futures_util::Stream<Item = worker::Result<Vec<u8>>>>>,
    init: &web_sys::ResponseInit,
) -> Result<web_sys::Response, JsValue> {
    let built =
        worker::Response::from_stream(chunks).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let stream = match built.body() {
        worker::ResponseBody::Stream(s) => s.clone(),
        _ => return Err(JsValue::from_str("stream body expected")),
    };
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), init)
}

fn with_bytes(bytes: &[u8], init: &web_sys::ResponseInit) -> Result<web_sys::Response, JsValue> {
    let array = js_sys::Uint8Array::from(bytes);
    web_sys::Response::new_with_opt_buffer_source_and_init(Some(&array), init)
}
