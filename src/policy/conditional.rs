//! Validation: conditional request construction (RFC 9111 §4.3.1) and freshening a stored
//! response from a `304 Not Modified` (§4.3.3–§4.3.4, header update rules §3.2).

use crate::entry::{CachedResponse, Derived};
use crate::headers::Headers;
use crate::time::Timestamp;

use super::hop_by_hop;

/// The precondition fields to add to a forwarded request to validate `stored`
/// (RFC 9111 §4.3.1): `If-None-Match` with its entity tag and `If-Modified-Since` with its
/// `Last-Modified`. Empty when the stored response has no validator.
pub fn conditional_headers(stored: &CachedResponse) -> Headers {
    let mut conditions = Headers::new();
    if let Some(etag) = stored.headers.get("etag") {
        conditions.append("if-none-match", etag);
    }
    if let Some(last_modified) = stored.headers.get("last-modified") {
        conditions.append("if-modified-since", last_modified);
    }
    conditions
}

/// Whether `stored` carries a validator a conditional request can use.
pub fn has_validator(stored_headers: &Headers) -> bool {
    stored_headers.contains("etag") || stored_headers.contains("last-modified")
}

/// The outcome of applying a `304` to a stored response.
// The updated response is moved straight into the store; boxing it would only add an
// allocation to every 304 (the other variant is rare and empty).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshened {
    /// The `304` selects the stored response, which is returned updated (§4.3.4).
    Updated(CachedResponse),
    /// The `304`'s validators identify a different representation than the stored one
    /// (§4.3.4): the stored response must not be used; fetch unconditionally.
    Mismatch,
}

/// Fields a `304` must not change in the stored response: those describing the stored
/// content itself (RFC 9111 §3.2 excepts `Content-Length`; the others describe the exact
/// bytes the cache holds, and the cache cannot change them without the content), and the
/// validator, which the selection already matched.
pub const NOT_UPDATED_BY_304: [&str; 6] = [
    "content-length",
    "content-encoding",
    "content-range",
    "content-md5",
    "etag",
    "transfer-encoding",
];

/// Freshens `stored` with a `304` response's fields (RFC 9111 §4.3.4): the `304` selects the
/// stored response when its strong `ETag` equals the stored one, or, without an `ETag`, when
/// its `Last-Modified` equals the stored one or it has no validator at all. The selected
/// response's fields are replaced by those in the `304` (§3.2), except hop-by-hop fields and
/// [`NOT_UPDATED_BY_304`]; request and response times become those of the validation, so
/// its age restarts (§4.2.3). A soft-purge mark is cleared.
pub fn freshen(
    stored: &CachedResponse,
    not_modified: &Headers,
    request_time: Timestamp,
    response_time: Timestamp,
) -> Freshened {
    if !selects(&stored.headers, not_modified) {
        return Freshened::Mismatch;
    }
    let nominated = hop_by_hop::connection_nominated(not_modified);
    let mut headers = stored.headers.clone();
    let mut replaced: alloc::vec::Vec<&str> = alloc::vec::Vec::new();
    for (name, _) in not_modified.iter() {
        if hop_by_hop::is_hop_by_hop(name, &nominated)
            || NOT_UPDATED_BY_304.contains(&name)
            || replaced.contains(&name)
        {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name, value);
        }
        replaced.push(name);
    }
    // RFC 9110 §6.6.1: a `304` without `Date` is dated when it was received, as any
    // response this cache stores (else the stored `Date` would stay, and with it the
    // stored response's age from before the validation).
    if !not_modified.contains("date") {
        headers.set("date", crate::http_date::format_http_date(response_time));
    }
    Freshened::Updated(CachedResponse {
        headers,
        request_time,
        response_time,
        invalidated: false,
        derived: Derived::default(),
        ..stored.clone()
    })
}

/// Whether a `304`'s validators select the stored response (RFC 9111 §4.3.4).
fn selects(stored: &Headers, not_modified: &Headers) -> bool {
    if let Some(new_etag) = not_modified.get("etag") {
        return !new_etag.starts_with(b"W/") && stored.get("etag") == Some(new_etag)
            || new_etag.starts_with(b"W/") && weak_eq(stored.get("etag"), new_etag);
    }
    match (
        not_modified.get("last-modified"),
        stored.get("last-modified"),
    ) {
        (Some(new_lm), Some(old_lm)) => new_lm == old_lm,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2): equal opaque tags, ignoring `W/`.
fn weak_eq(stored: Option<&[u8]>, new: &[u8]) -> bool {
    let strip = |t: &[u8]| -> alloc::vec::Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
    stored.is_some_and(|s| strip(s) == strip(new))
}

/// Whether a client's own preconditions are met by the response the cache is about to
/// serve, so it should answer `304 Not Modified` instead (RFC 9111 §4.3.2, RFC 9110
/// §13.1.2–§13.1.3, evaluation order §13.2.2): `If-None-Match` (weak comparison, `*` matches
/// any) takes precedence; otherwise `If-Modified-Since` is compared with `Last-Modified`
/// (or `Date` when there is none). Only for `GET` / `HEAD` and `200` responses, and the
/// `206` of an incomplete stored response: its validators are the representation's, and
/// these preconditions are evaluated before `Range` (§13.2.2).
pub fn client_not_modified(
    method: &str,
    request_headers: &Headers,
    status: u16,
    response_headers: &Headers,
) -> bool {
    if !matches!(method, "GET" | "HEAD") || !matches!(status, 200 | 206) {
        return false;
    }
    if request_headers.contains("if-none-match") {
        let Some(etag) = response_headers.get("etag") else {
            return false;
        };
        return request_headers
            .list_items("if-none-match")
            .any(|tag| tag == b"*" || weak_eq(Some(etag), tag));
    }
    let Some(since) = request_headers
        .get("if-modified-since")
        .and_then(crate::http_date::parse_http_date)
    else {
        return false;
    };
    let validator = response_headers
        .get("last-modified")
        .or_else(|| response_headers.get("date"))
        .and_then(crate::http_date::parse_http_date);
    validator.is_some_and(|modified| modified <= since)
}

/// The header fields a `304` generated from a stored response carries (RFC 9110 §15.4.5).
pub fn not_modified_headers(response_headers: &Headers) -> Headers {
    let mut headers = Headers::new();
    for name in [
        "cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "vary",
        "last-modified",
    ] {
        for value in response_headers.get_all(name) {
            headers.append(name, value);
        }
    }
    headers
}
