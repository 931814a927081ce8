//! May this request use the cache at all? (RFC 9111 §4, §4.4; RFC 9110 §9.2, §14.2).

use crate::headers::Headers;

use super::is_safe_method;

/// What the cache does with an incoming request before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    /// `GET` or `HEAD`: look the response up (a `HEAD` is answered from a stored `GET`
    /// response, RFC 9110 §9.3.2). A `Range` is served from the complete response
    /// ([`super::range`]).
    Lookup,
    /// Forward untouched and do not store; the cache has no business with it.
    Bypass(BypassReason),
    /// An unsafe method (RFC 9110 §9.2.1): forward, and on a non-error response invalidate
    /// the target and its `Location` / `Content-Location` (RFC 9111 §4.4).
    Unsafe,
}

/// Why a request bypasses the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BypassReason {
    /// A safe method this cache does not store responses for (`OPTIONS`, `TRACE`, ...).
    Method,
    /// A protocol upgrade (WebSocket and the like).
    Upgrade,
}

impl BypassReason {
    /// A short, stable name for `Cache-Status` details and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::Method => "method",
            BypassReason::Upgrade => "upgrade",
        }
    }
}

/// Classifies a request by method and headers. `method` is case-sensitive (RFC 9110 §9.1).
pub fn classify(method: &str, headers: &Headers) -> RequestClass {
    if headers.contains("upgrade") {
        return RequestClass::Bypass(BypassReason::Upgrade);
    }
    match method {
        "GET" | "HEAD" => RequestClass::Lookup,
        m if is_safe_method(m) => RequestClass::Bypass(BypassReason::Method),
        _ => RequestClass::Unsafe,
    }
}
