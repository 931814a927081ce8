//! The origin fetcher: a pooled hyper HTTP/1.1 client, over TCP for an `http://` origin
//! and over TLS (rustls through hyper-rustls: the certificate verified against the roots of
//! [`super::tls`], SNI the origin's host, ALPN `http/1.1`) for an `https://` one. Bodies up
//! to the engine's buffer limit are read whole; larger ones are handed back as a stream
//! (with the part already read replayed first), so they pass through without being held in
//! memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::body::{boxed, empty, BetweenBytes, BoxError, Prefixed, ProxyBody, Stalled};
use super::tls::{self, CaFile};
use crate::engine::{Origin, OriginBody, OriginError, OriginRequest, OriginResponse};
use crate::headers::Headers;

/// Fetches from one origin base URL (`http://host:port` or `https://host:port`, optionally
/// with a path prefix).
#[derive(Clone)]
pub struct HyperOrigin {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    connect_log: Arc<ConnectLog>,
    /// See [`crate::engine::config::Limits::between_bytes_timeout_ms`].
    between_bytes: std::time::Duration,
}

/// Logs why connections to the origin fail (a refused certificate, a refused connection):
/// once per distinct reason while it lasts, and once when a request gets through again, so
/// an origin that is down does not write a line per request.
#[derive(Default)]
struct ConnectLog {
    failing: AtomicBool,
    last: Mutex<String>,
}

impl ConnectLog {
    /// A connection failed for `why`; true when that was logged.
    fn failed(&self, why: &str) -> bool {
        self.failing.store(true, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == why {
            return false;
        }
        why.clone_into(&mut last);
        tracing::warn!("edgecache: cannot connect to the origin: {why}");
        true
    }

    /// A request got an answer; true when that ended a failure (and was logged).
    fn succeeded(&self) -> bool {
        // A load first: every origin response passes here, and a plain read of a flag no
        // one writes keeps the cache line shared between threads.
        if !self.failing.load(Ordering::Relaxed) || !self.failing.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clear();
        tracing::info!("edgecache: the origin answers again");
        true
    }
}

impl HyperOrigin {
    /// A client for `base`, an `http://` or `https://` URL; `https://` trusts Mozilla's
    /// roots.
    pub fn new(base: &str) -> Result<Self, String> {
        Self::with_ca_file(base, None)
    }

    /// A client for `base` that, for `https://`, also trusts the CAs in `extra`.
    pub fn with_ca_file(base: &str, extra: Option<&CaFile>) -> Result<Self, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("origin `{base}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "origin scheme `{other}` is not supported; use http:// or https://"
                ))
            }
            None => return Err(format!("origin `{base}` needs a scheme, e.g. https://")),
        };
        if uri.host().is_none() {
            return Err(format!("origin `{base}` has no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        // Every request URI is this base's scheme and authority followed by a path, so an
        // `https://` origin is only ever reached over TLS.
        connector.enforce_http(!https);
        // Built from the parts rather than hyper-rustls's builder, which would clear the
        // ALPN list for an HTTP/1-only client; `http/1.1` is offered so servers that insist
        // on ALPN agree.
        let config = tls::origin_client_config(extra)?;
        let connector = HttpsConnector::from((connector, config));
        // Idle connections are dropped before 5 s, the keep-alive timeout of Node.js and
        // Apache: reusing one the origin is closing at that moment fails the request (a PUT
        // cannot be retried), which the conformance run met as 502s on its origin (Node).
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(4))
            .build(connector);
        Ok(HyperOrigin {
            base: base.trim_end_matches('/').to_string(),
            client,
            connect_log: Arc::default(),
            between_bytes: std::time::Duration::from_millis(
                crate::engine::config::Limits::default().between_bytes_timeout_ms,
            ),
        })
    }

    /// This client, failing origin bodies that send nothing for `timeout` (see
    /// [`crate::engine::config::Limits::between_bytes_timeout_ms`]).
    pub fn with_between_bytes_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.between_bytes = timeout;
        self
    }
}

/// Converts engine headers to an `http` header map, skipping fields `http` cannot carry.
pub fn to_header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    append_to_header_map(&mut map, headers);
    map
}

/// Appends engine headers to an `http` header map, skipping fields `http` cannot carry.
pub fn append_to_header_map(map: &mut HeaderMap, headers: &Headers) {
    append_fields(map, headers.iter());
}

/// Appends `(name, value)` fields to an `http` header map, skipping those `http` cannot
/// carry.
pub fn append_fields<'a>(map: &mut HeaderMap, fields: impl Iterator<Item = (&'a str, &'a [u8])>) {
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
}

/// Converts an `http` header map to engine headers.
pub fn from_header_map(map: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        headers.append(name.as_str(), value.as_bytes());
    }
    headers
}

impl Origin for HyperOrigin {
    type Body = ProxyBody;

    async fn fetch(
        &self,
        request: OriginRequest<ProxyBody>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<ProxyBody>, OriginError> {
        let uri: Uri = format!("{}{}", self.base, request.path_and_query)
            .parse()
            .map_err(|e| OriginError::Broken(format!("bad request target: {e}")))?;
        let request_method = request.method.clone();
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| OriginError::Broken("bad method".into()))?;
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = to_header_map(&request.headers);
            // No Host given: hyper names the origin's own authority, from the URI.
            if !headers.contains_key(hyper::header::HOST) && !request.host.is_empty() {
                if let Ok(host) = HeaderValue::from_str(&request.host) {
                    headers.insert(hyper::header::HOST, host);
                }
            }
        }
        let mut outgoing = builder
            .body(request.body.unwrap_or_else(empty))
            .map_err(|e| OriginError::Broken(e.to_string()))?;
        // A request made for a client (not a background job) forwards the origin's interim
        // responses to it as they arrive; hyper hands back only the final response, so the
        // engine never sees (or stores) a 1xx.
        if let Some(sink) = super::interim::current() {
            hyper::ext::on_informational(&mut outgoing, move |interim| {
                sink.forward(interim.status(), interim.headers());
            });
        }
        let safe = matches!(request_method.as_str(), "GET" | "HEAD");
        let response = self.client.request(outgoing).await.map_err(|e| {
            // The whole chain: a refused certificate is a few causes down.
            let why = tls::causes(&e);
            if e.is_connect() {
                self.connect_log.failed(&why);
                OriginError::Unreachable(why)
            } else if sending_the_body_failed(&e) {
                OriginError::RequestBody(why)
            } else if safe && closed_before_answering(&e) {
                // Nothing came back to a read: as unavailable as an origin that refuses
                // connections (RFC 9111 §4.2.4 "disconnected"), as the Worker's runtime
                // reports it too. (A write the origin may have carried out stays broken.)
                OriginError::Unreachable(why)
            } else {
                OriginError::Broken(why)
            }
        })?;
        self.connect_log.succeeded();
        let (parts, incoming) = response.into_parts();
        let headers = from_header_map(&parts.headers);
        let body = BetweenBytes::new(boxed(incoming), self.between_bytes);
        let body = read_up_to(boxed(body), buffer_limit).await?;
        Ok(OriginResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    async fn next_chunk(&self, body: &mut ProxyBody) -> Result<Option<Vec<u8>>, OriginError> {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(body_error)?;
            // Trailers are not kept.
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(Vec::from(data)));
                }
            }
        }
        Ok(None)
    }

    async fn read_body(
        &self,
        body: ProxyBody,
        limit: usize,
    ) -> Result<Vec<u8>, crate::engine::BodyError> {
        super::body::read_whole(body, limit).await
    }

    fn body_from_bytes(&self, bytes: Vec<u8>) -> ProxyBody {
        super::body::full(bytes)
    }
}

/// Whether the origin closed the connection before sending any of its response (hyper's
/// "connection closed before message completed").
fn closed_before_answering(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether a request failed because the body it was sending (the client's, streamed) failed:
/// hyper reports that as a user error in the chain.
fn sending_the_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// What a failed origin body read means: a stall past the between-bytes timeout, or a
/// broken body.
fn body_error(error: BoxError) -> OriginError {
    match error.downcast_ref::<Stalled>() {
        Some(_) => OriginError::Timeout,
        None => OriginError::Broken(error.to_string()),
    }
}

/// Reads `body` whole if it is at most `limit` bytes; otherwise returns it as a stream.
async fn read_up_to(
    mut body: ProxyBody,
    limit: usize,
) -> Result<OriginBody<ProxyBody>, OriginError> {
    if body.is_end_stream() {
        return Ok(OriginBody::Buffered(Vec::new()));
    }
    if body.size_hint().lower() > limit as u64 {
        return Ok(OriginBody::Streaming(body));
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            chunks.push(data);
            if total > limit {
                return Ok(OriginBody::Streaming(boxed(Prefixed::new(chunks, body))));
            }
        }
    }
    let mut bytes = Vec::with_capacity(total);
    for chunk in chunks {
        bytes.extend_from_slice(&chunk);
    }
    Ok(OriginBody::Buffered(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_are_logged_once_per_reason_and_recovery_once() {
        let log = ConnectLog::default();
        assert!(!log.succeeded(), "nothing to recover from");
        assert!(log.failed("invalid peer certificate: UnknownIssuer"));
        assert!(!log.failed("invalid peer certificate: UnknownIssuer"));
        assert!(log.failed("Connection refused (os error 111)"));
        assert!(log.succeeded());
        assert!(!log.succeeded());
        assert!(
            log.failed("Connection refused (os error 111)"),
            "a new failure"
        );
    }

    #[test]
    fn schemes_other_than_http_and_https_are_refused() {
        assert!(HyperOrigin::new("https://example.com").is_ok());
        assert!(HyperOrigin::new("http://example.com:8080/prefix").is_ok());
        let e = HyperOrigin::new("ftp://example.com").err().unwrap();
        assert!(e.contains("use http:// or https://"), "{e}");
        assert!(HyperOrigin::new("example.com").is_err());
    }
}
