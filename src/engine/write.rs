//! Requests that do not read the cache: pass-through (bypass rules, uncacheable methods,
//! ranges) and write-through for unsafe methods, which invalidates what they change
//! (RFC 9111 §4.4).

use alloc::string::String;
use alloc::vec::Vec;

use crate::key::cache_key;
use crate::policy::cache_status::Forward;
use crate::policy::invalidation::invalidated_targets;

use super::host::{Origin, OriginBody, OriginError, OriginRequest, Runtime};
use super::l2::with_timeout;
use super::{respond, Body, Engine, Handled, Host, RequestView};

impl<H: Host> Engine<H> {
    /// Forwards a request untouched (but for hop-by-hop fields) and relays the response.
    pub(crate) async fn forward(
        &self,
        head: &RequestView,
        body: Option<H::Body>,
    ) -> Result<super::OriginResponse<H::Body>, OriginError> {
        let request = OriginRequest {
            method: String::from(head.method()),
            scheme: String::from(head.scheme()),
            host: head.origin_host(self.config.key.include_host),
            path_and_query: head.target(),
            // Key fields pass as sent only where they key a stored response (reads).
            headers: head.origin_headers(&self.trust, &[], self.config.key.include_host),
            body,
        };
        self.count(|s| s.origin_fetches += 1);
        let result = with_timeout(
            &self.runtime,
            self.config.limits.origin_timeout_ms,
            // Nothing forwarded here is stored: do not buffer it.
            self.origin.fetch(request, 0),
        )
        .await
        .unwrap_or(Err(OriginError::Timeout));
        // A request body the client could not send is not the origin's failure.
        if matches!(&result, Err(e) if !matches!(e, OriginError::RequestBody(_))) {
            self.count(|s| s.origin_errors += 1);
        }
        result
    }

    pub(crate) fn relay(
        &self,
        head: &RequestView,
        result: Result<super::OriginResponse<H::Body>, OriginError>,
        fwd: Forward,
    ) -> Handled<H::Body> {
        match result {
            Ok(response) => {
                let entry = self.statuses.forwarded(fwd, Some(response.status), None);
                let body = match response.body {
                    _ if head.method() == "HEAD" => Body::Empty,
                    OriginBody::Buffered(bytes) if bytes.is_empty() => Body::Empty,
                    OriginBody::Buffered(bytes) => Body::Bytes(bytes),
                    OriginBody::Streaming(stream) => Body::Stream(stream),
                };
                Handled::now(respond::from_origin(
                    head.method(),
                    response.status,
                    response.headers,
                    body,
                    &[entry],
                ))
            }
            Err(error) => Handled::now(self.origin_failure(&error, fwd)),
        }
    }

    /// The response when the origin could not be used and nothing stale may stand in, named
    /// by its cause in the status text and `Cache-Status`: 504 for a timeout, 502 for an
    /// origin that cannot be reached or answered brokenly, 400 when the client's own request
    /// body was what failed (RFC 9110 §15.5.1).
    pub(crate) fn origin_failure(
        &self,
        error: &OriginError,
        fwd: Forward,
    ) -> super::Response<H::Body> {
        let (status, text, detail) = match error {
            OriginError::Timeout => (504, "origin timed out", "origin-timeout"),
            OriginError::Unreachable(_) => (502, "origin unreachable", "origin-unreachable"),
            OriginError::Broken(_) => (502, "origin response broken or malformed", "origin-broken"),
            OriginError::RequestBody(_) => {
                (400, "the request body could not be read", "request-body")
            }
        };
        respond::error(
            status,
            text,
            self.statuses.forwarded(fwd, None, Some(detail)),
        )
    }

    /// Forwards without using or filling the cache.
    pub(crate) async fn pass(
        &self,
        head: RequestView,
        body: Option<H::Body>,
        fwd: Forward,
    ) -> Handled<H::Body> {
        self.count(|s| s.passes += 1);
        let result = self.forward(&head, body).await;
        self.relay(&head, result, fwd)
    }

    /// Forwards an unsafe request and, when the origin answers 2xx or 3xx, invalidates the
    /// target and same-origin `Location` / `Content-Location` in every tier (RFC 9111 §4.4).
    pub(crate) async fn write_through(
        &self,
        head: RequestView,
        body: Option<H::Body>,
    ) -> Handled<H::Body> {
        self.count(|s| s.passes += 1);
        let result = self.forward(&head, body).await;
        if let Ok(response) = &result {
            self.invalidate_after_write(&head, response.status, &response.headers)
                .await;
        }
        self.relay(&head, result, Forward::Method)
    }

    /// Invalidates, in every tier, what an unsafe request answered with `status` and
    /// `response_headers` changes: the target and same-origin `Location` /
    /// `Content-Location` after a 2xx or 3xx (RFC 9111 §4.4).
    pub(crate) async fn invalidate_after_write(
        &self,
        head: &RequestView,
        status: u16,
        response_headers: &crate::headers::Headers,
    ) {
        let targets = invalidated_targets(
            head.method(),
            status,
            response_headers,
            head.scheme(),
            head.authority(),
            &head.target(),
        );
        let keys: Vec<String> = targets
            .iter()
            .map(|path| {
                cache_key(
                    "GET",
                    head.scheme(),
                    head.authority(),
                    path,
                    &self.config.key,
                )
            })
            .collect();
        self.invalidate_keys(&keys).await;
    }

    /// Removes `keys` and their Vary variants from every tier and tells the other
    /// instances (RFC 9111 §4.4 invalidation is a purge of those URLs).
    pub(crate) async fn invalidate_keys(&self, keys: &[String]) {
        let now = self.runtime.now();
        for key in keys {
            self.l1_purge_key(key, false, now);
            self.publish_purge(super::sync::Scope::Key(key.clone()), false)
                .await;
        }
    }
}
