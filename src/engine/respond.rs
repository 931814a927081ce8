//! Building the responses the engine sends: from a stored response (with `Age`, RFC 9111
//! §5.1, and `Cache-Status`, RFC 9211), from the origin's, and the engine's own errors.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::policy::cache_status::{render, CacheStatusEntry};
use crate::policy::conditional::{client_not_modified, not_modified_headers};
use crate::policy::hop_by_hop;

use super::{Body, Response};

/// Fields meant for this cache only, removed before responses leave it: the surrogate
/// fields (Edge Architecture 1.0) and edgecache's own targeted field (RFC 9213 §2.1).
/// `CDN-Cache-Control` is left for caches further downstream.
const CACHE_ONLY_FIELDS: [&str; 3] = [
    "surrogate-control",
    "surrogate-key",
    "edgecache-cache-control",
];

/// Sets `Cache-Status`, appending to any the origin or an upstream cache sent (RFC 9211 §2:
/// caches closer to the client add their entries last).
pub(crate) fn set_cache_status(headers: &mut Headers, entries: &[CacheStatusEntry]) {
    if entries.is_empty() {
        return;
    }
    let ours = render(entries);
    let upstream: Vec<String> = headers
        .get_all("cache-status")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let value = if upstream.is_empty() {
        ours
    } else {
        format!("{}, {}", upstream.join(", "), ours)
    };
    headers.set("cache-status", value);
}

/// A response served from the cache for a `method` request with `request_headers`: the
/// stored fields, `Age` (RFC 9111 §5.1), `Cache-Status`, and a `304` when the client's own
/// preconditions hold (RFC 9111 §4.3.2).
pub(crate) fn from_cache<B>(
    method: &str,
    request_headers: &Headers,
    stored: Arc<CachedResponse>,
    age_secs: u64,
    entries: &[CacheStatusEntry],
) -> Response<B> {
    let fields = stored.headers.clone();
    from_stored_body(method, request_headers, stored, fields, age_secs, entries)
}

/// Like [`from_cache`], but with the header fields given: the response that filled the
/// cache is sent with all of the origin's fields, including those the cache does not store
/// (qualified `private` / `no-cache`, RFC 9111 §5.2.2.4, §5.2.2.7).
pub(crate) fn from_stored_body<B>(
    method: &str,
    request_headers: &Headers,
    stored: Arc<CachedResponse>,
    mut fields: Headers,
    age_secs: u64,
    entries: &[CacheStatusEntry],
) -> Response<B> {
    hop_by_hop::strip(&mut fields);
    let not_modified = client_not_modified(method, request_headers, stored.status, &fields);
    let mut headers = if not_modified {
        not_modified_headers(&fields)
    } else {
        fields
    };
    for field in CACHE_ONLY_FIELDS {
        headers.remove(field);
    }
    headers.set("age", format!("{age_secs}"));
    set_cache_status(&mut headers, entries);
    let (status, body) = if not_modified {
        (304, Body::Empty)
    } else if method == "HEAD" {
        (stored.status, Body::Empty)
    } else {
        (stored.status, Body::Cached(stored))
    };
    Response {
        status,
        headers,
        body,
    }
}

/// A response passed through from the origin: hop-by-hop fields removed (RFC 9110 §7.6.1)
/// and `Cache-Status` added.
pub(crate) fn from_origin<B>(
    status: u16,
    mut headers: Headers,
    body: Body<B>,
    entries: &[CacheStatusEntry],
) -> Response<B> {
    hop_by_hop::strip(&mut headers);
    for field in CACHE_ONLY_FIELDS {
        headers.remove(field);
    }
    set_cache_status(&mut headers, entries);
    Response {
        status,
        headers,
        body,
    }
}

/// An error the cache generates itself, as plain text (never echoing secrets).
pub(crate) fn error<B>(status: u16, message: &str, entry: CacheStatusEntry) -> Response<B> {
    let mut headers = Headers::new();
    headers.set("content-type", "text/plain; charset=utf-8");
    headers.set("cache-control", "no-store");
    set_cache_status(&mut headers, &[entry]);
    Response {
        status,
        headers,
        body: Body::Bytes(format!("{message}\n").into_bytes()),
    }
}
