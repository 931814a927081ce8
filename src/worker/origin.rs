//! The origin on the Worker: `fetch()` to the configured origin URL with redirects passed
//! through (a cache forwards a 3xx, it does not follow it). Bodies up to the engine's buffer
//! limit are read whole; larger ones stream through untouched.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::body::{from_js_headers, js_message, prefixed, read_chunk, to_js_headers, WorkerBody};
use crate::engine::{Origin, OriginBody, OriginError, OriginRequest, OriginResponse};

/// Fetches from one origin base URL (`http(s)://host[:port][/prefix]`).
#[derive(Clone, Debug)]
pub struct FetchOrigin {
    base: Rc<str>,
}

impl FetchOrigin {
    /// An origin at `base`, which must be an `http://` or `https://` URL with a host.
    pub fn new(base: &str) -> Result<Self, String> {
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or_else(|| format!("`{base}` must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("`{base}` has no host"));
        }
        Ok(FetchOrigin {
            base: Rc::from(base.trim_end_matches('/')),
        })
    }
}

impl Origin for FetchOrigin {
    type Body = WorkerBody;

    async fn fetch(
        &self,
        request: OriginRequest<WorkerBody>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<WorkerBody>, OriginError> {
        let url = format!("{}{}", self.base, request.path_and_query);
        let mut headers = request.headers;
        // The URL names the origin; the client's Host is the cache's, not the origin's.
        headers.remove("host");
        let broken = |e: JsValue| OriginError::Broken(js_message(&e));
        let init = web_sys::RequestInit::new();
        init.set_method(&request.method);
        // A cache forwards a 3xx; it does not follow it.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        // This engine is the cache: the subrequest must not be answered from Cloudflare's own
        // cache in front of the origin (it would outlive purges).
        init.set_cache(web_sys::RequestCache::NoStore);
        // Keep the body as the origin encoded it: stored and sent as received, as natively.
        js_sys::Reflect::set(&init, &"encodeResponseBody".into(), &"manual".into())
            .map_err(broken)?;
        init.set_headers(&to_js_headers(&headers).map_err(broken)?.into());
        let bodiless = matches!(request.method.as_str(), "GET" | "HEAD");
        match request.body {
            Some(WorkerBody::Js(stream)) if !bodiless => init.set_body(&stream),
            // Bytes, not a stream: the runtime sends their length.
            Some(WorkerBody::Bytes(bytes)) if !bodiless => {
                init.set_body(&js_sys::Uint8Array::from(bytes.as_slice()))
            }
            _ => {}
        }
        // Dropped before the response is in (the engine's origin timeout): cancel the fetch
        // rather than let it hold one of the request's few connections.
        let abort = AbortOnDrop::new().map_err(broken)?;
        init.set_signal(Some(&abort.signal()));
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let response = JsFuture::from(global.fetch_with_str_and_init(&url, &init))
            .await
            .map_err(|e| OriginError::Unreachable(js_message(&e)))?;
        let response: web_sys::Response = response
            .dyn_into()
            .map_err(|_| OriginError::Broken(String::from("fetch returned no Response")))?;
        let headers = from_js_headers(&response.headers());
        let status = response.status();
        let declared = headers
            .get_str("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body = match (response.body(), declared) {
            (None, _) => OriginBody::Buffered(Vec::new()),
            (Some(stream), Some(len)) if len > buffer_limit => {
                OriginBody::Streaming(WorkerBody::Js(stream))
            }
            (Some(stream), _) => read_up_to(stream, buffer_limit).await?,
        };
        // The response is in: a streamed remainder must keep flowing.
        abort.disarm();
        Ok(OriginResponse {
            status,
            headers,
            body,
        })
    }

    async fn next_chunk(&self, body: &mut WorkerBody) -> Result<Option<Vec<u8>>, OriginError> {
        super::body::next_chunk(body)
            .await
            .map_err(OriginError::Broken)
    }

    async fn read_body(
        &self,
        body: WorkerBody,
        limit: usize,
    ) -> Result<Vec<u8>, crate::engine::BodyError> {
        super::body::read_whole(body, limit).await
    }

    fn body_from_bytes(&self, bytes: Vec<u8>) -> WorkerBody {
        WorkerBody::Bytes(bytes)
    }
}

/// Aborts a fetch when dropped, unless disarmed (the origin's fetches, and the shared
/// tier's over REST).
pub(crate) struct AbortOnDrop {
    controller: web_sys::AbortController,
    armed: bool,
}

impl AbortOnDrop {
    pub(crate) fn new() -> Result<Self, JsValue> {
        Ok(AbortOnDrop {
            controller: web_sys::AbortController::new()?,
            armed: true,
        })
    }
    pub(crate) fn signal(&self) -> web_sys::AbortSignal {
        self.controller.signal()
    }
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.controller.abort();
        }
    }
}

/// Reads `stream` whole if it holds at most `limit` bytes; else hands back what was read
/// followed by the rest, unbuffered.
async fn read_up_to(
    stream: web_sys::ReadableStream,
    limit: usize,
) -> Result<OriginBody<WorkerBody>, OriginError> {
    let reader: web_sys::ReadableStreamDefaultReader = stream
        .get_reader()
        .dyn_into()
        .map_err(|_| OriginError::Broken(String::from("the body has no default reader")))?;
    let mut body = Vec::new();
    while let Some(chunk) = read_chunk(&reader).await.map_err(OriginError::Broken)? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Ok(OriginBody::Streaming(prefixed(body, reader)));
        }
    }
    Ok(OriginBody::Buffered(body))
}
