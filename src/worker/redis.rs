//! The Worker's shared tier: one [`RedisTier`] (every command built and every reply decoded
//! in [`crate::shared_tier`]) over the transport `EDGECACHE_REDIS_URL`'s scheme chooses:
//!
//! - `redis://` / `rediss://`: RESP over `connect()` sockets ([`super::socket`]). A socket
//!   belongs to the request that opened it, so each request that reaches Redis dials it
//!   (TCP, TLS, `AUTH`) before its first command.
//! - `https://` (or `http://` to loopback, for local development): Redis over HTTP, the
//!   Upstash REST protocol ([`crate::shared_tier::rest`]), over `fetch` ([`FetchPost`]),
//!   whose connections are the runtime's to keep and reuse across requests: no request
//!   dials Redis itself. The token is the secret `EDGECACHE_REDIS_TOKEN`, sent as a bearer
//!   token and never logged.
//!
//! Either way the store is made per request ([`tier`]), as workerd binds I/O to the request
//! that started it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::body::{js_message, read_chunk};
use super::origin::AbortOnDrop;
use super::socket::SocketConnect;
use crate::engine::TierError;
use crate::shared_tier::resp::{Resp, RespTier};
use crate::shared_tier::rest::{HttpPost, HttpReply, Rest, RestTier};
use crate::shared_tier::url::SharedTierTarget;
use crate::shared_tier::{Command, RedisTier, Reply, Transport};

/// The Worker's shared tier.
pub type WorkerRedis = RedisTier<WorkerTransport>;

/// The transport a [`SharedTierTarget`] names.
pub enum WorkerTransport {
    /// RESP over `connect()` sockets.
    Sockets(Resp<SocketConnect>),
    /// Redis over HTTP over `fetch`.
    Rest(Rest<FetchPost>),
}

impl Transport for WorkerTransport {
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        match self {
            WorkerTransport::Sockets(resp) => resp.pipeline(commands).await,
            WorkerTransport::Rest(rest) => rest.pipeline(commands).await,
        }
    }

    async fn transaction(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        match self {
            WorkerTransport::Sockets(resp) => resp.transaction(commands).await,
            WorkerTransport::Rest(rest) => rest.transaction(commands).await,
        }
    }
}

/// A request's store for `target`, refusing replies above `reply_limit` bytes. A REST call
/// gives up after `timeout_ms` (the engine bounds each call itself, more tightly, and the
/// fetch is aborted when it does; this is the backstop).
pub fn tier(target: &SharedTierTarget, reply_limit: usize, timeout_ms: u64) -> WorkerRedis {
    let transport = match target {
        SharedTierTarget::Resp(url) => WorkerTransport::Sockets(
            RespTier::new(url.clone(), SocketConnect)
                .with_reply_limit(reply_limit)
                .into_transport(),
        ),
        SharedTierTarget::Rest { url, token } => WorkerTransport::Rest(
            RestTier::new(url, token, FetchPost { timeout_ms })
                .with_reply_limit(reply_limit)
                .into_transport(),
        ),
    };
    RedisTier::over(transport)
}

/// `fetch()` as the REST transport's HTTP call: redirects not followed (they would take the
/// token elsewhere), aborted when dropped (the engine's timeout) or after `timeout_ms`, the reply
/// read only up to its limit.
#[derive(Clone, Copy, Debug)]
pub struct FetchPost {
    timeout_ms: u64,
}

impl FetchPost {
    /// A `POST` over `fetch()` given up after `timeout_ms`.
    pub fn new(timeout_ms: u64) -> Self {
        FetchPost { timeout_ms }
    }
}

impl HttpPost for FetchPost {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        max_reply_bytes: usize,
    ) -> Result<HttpReply, TierError> {
        let exchange = core::pin::pin!(exchange(url, headers, body, max_reply_bytes));
        let timeout = core::pin::pin!(worker::Delay::from(Duration::from_millis(self.timeout_ms)));
        match select(exchange, timeout).await {
            Either::Left((result, _)) => result,
            // Dropping the exchange aborts the fetch.
            Either::Right(_) => Err(TierError(format!(
                "REST: no answer within {} ms",
                self.timeout_ms
            ))),
        }
    }
}

async fn exchange(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    max_reply_bytes: usize,
) -> Result<HttpReply, TierError> {
    let failed = |e: wasm_bindgen::JsValue| TierError(format!("REST: fetch: {}", js_message(&e)));
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    // Never followed: a redirect would take the token elsewhere. workerd has no "error"
    // mode; a 3xx is handed back as it is, and the transport refuses any status but 200,
    // 400 and 401.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let js_headers = web_sys::Headers::new().map_err(failed)?;
    for (name, value) in headers {
        js_headers.set(name, value).map_err(failed)?;
    }
    init.set_headers(&js_headers.into());
    init.set_body(&js_sys::Uint8Array::from(body.as_slice()));
    let abort = AbortOnDrop::new().map_err(failed)?;
    init.set_signal(Some(&abort.signal()));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_str_and_init(url, &init))
        .await
        .map_err(failed)?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| TierError(String::from("REST: fetch returned no Response")))?;
    let status = response.status();
    let declared = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_reply_bytes) {
        return Err(TierError(String::from("reply too large")));
    }
    let mut reply = Vec::new();
    if let Some(stream) = response.body() {
        let reader: web_sys::ReadableStreamDefaultReader = stream
            .get_reader()
            .dyn_into()
            .map_err(|_| TierError(String::from("REST: the reply has no reader")))?;
        while let Some(chunk) = read_chunk(&reader)
            .await
            .map_err(|e| TierError(format!("REST: reading the reply: {e}")))?
        {
            if reply.len() + chunk.len() > max_reply_bytes {
                // Dropping `abort` (armed) cancels the rest of the body.
                return Err(TierError(String::from("reply too large")));
            }
            reply.extend_from_slice(&chunk);
        }
    }
    abort.disarm();
    Ok(HttpReply {
        status,
        body: reply,
    })
}
