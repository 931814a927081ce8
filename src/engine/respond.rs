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
use crate::policy::partial::{self, Coverage};
use crate::policy::range::{self, ByteRange, Ranged};

use super::filling::FillReader;

use super::{Body, Response, Source};

/// Fields meant for this cache only, removed before responses leave it: the surrogate
/// fields (Edge Architecture 1.0) and edgecache's own targeted field (RFC 9213 §2.1).
/// `CDN-Cache-Control` is left for caches further downstream.
const CACHE_ONLY_FIELDS: [&str; 6] = [
    "surrogate-control",
    "surrogate-key",
    "edgecache-cache-control",
    super::read::SLICES_FIELD,
    super::read::SLICED_AT_FIELD,
    super::read::SLICES_KEPT_FIELD,
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
///
/// The usual hit does not copy the stored fields: the response refers to them
/// ([`Response::stored_fields`]) and carries only `Age` and `Cache-Status` itself.
pub(crate) fn from_cache<B>(
    method: &str,
    request_headers: &Headers,
    stored: Arc<CachedResponse>,
    age_secs: u64,
    entries: &[CacheStatusEntry],
) -> Response<B> {
    let not_modified = client_not_modified(method, request_headers, stored.status, &stored.headers);
    // A 304 keeps only some fields, and an upstream `Cache-Status` is merged with ours:
    // both take the general path.
    if not_modified || stored.headers.contains("cache-status") {
        let fields = stored.headers.clone();
        return from_stored_body(
            method,
            request_headers,
            stored,
            fields,
            age_secs,
            entries,
            Source::Cache,
        );
    }
    let mut headers = Headers::new();
    headers.append("age", format!("{age_secs}"));
    set_cache_status(&mut headers, entries);
    let body = if method == "HEAD" {
        Body::Empty
    } else {
        Body::Cached(stored.clone())
    };
    let content_length =
        (method == "HEAD" && may_declare_length(stored.status)).then(|| content_length(&stored));
    Response {
        status: stored.status,
        headers,
        stored_fields: Some(stored),
        body,
        content_length,
        source: Source::Cache,
    }
}

/// The stored fields a response served from `stored` carries, in order: all but the
/// hop-by-hop (RFC 9110 §7.6.1) and cache-only ones and the `Age` and `Cache-Status` the
/// cache sets itself; then `Accept-Ranges: bytes` ([`advertises_ranges`]).
pub fn served_fields(stored: &CachedResponse) -> impl Iterator<Item = (&str, &[u8])> {
    let nominated = hop_by_hop::connection_nominated(&stored.headers);
    let ranges = advertises_ranges(stored.status, &stored.headers);
    stored
        .headers
        .iter()
        .filter(move |(name, _)| {
            !hop_by_hop::is_hop_by_hop(name, &nominated)
                && !CACHE_ONLY_FIELDS.contains(name)
                && !matches!(*name, "age" | "cache-status")
        })
        .chain(ranges.then_some(("accept-ranges", b"bytes".as_slice())))
}

/// Whether a `200` served from the cache says `Accept-Ranges: bytes` (RFC 9110 §14.3): the
/// cache holds the whole content and cuts any range from it ([`ranged`]), so clients (video
/// players, download managers) may ask for ranges, unless the origin said otherwise.
fn advertises_ranges(status: u16, fields: &Headers) -> bool {
    status == 200 && !fields.contains("accept-ranges")
}

/// Like [`from_cache`], but with the header fields given: the response that filled the
/// cache is sent with all of the origin's fields, including those the cache does not store
/// (qualified `private` / `no-cache`, RFC 9111 §5.2.2.4, §5.2.2.7). `source` says whether
/// its content just came from the origin.
pub(crate) fn from_stored_body<B>(
    method: &str,
    request_headers: &Headers,
    stored: Arc<CachedResponse>,
    mut fields: Headers,
    age_secs: u64,
    entries: &[CacheStatusEntry],
    source: Source,
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
    if !not_modified && advertises_ranges(stored.status, &headers) {
        headers.append("accept-ranges", "bytes");
    }
    headers.set("age", format!("{age_secs}"));
    set_cache_status(&mut headers, entries);
    let (status, body, content_length) = if not_modified {
        (304, Body::Empty, None)
    } else if method == "HEAD" {
        let length = may_declare_length(stored.status).then(|| content_length(&stored));
        (stored.status, Body::Empty, length)
    } else {
        (stored.status, Body::Cached(stored), None)
    };
    Response {
        status,
        headers,
        stored_fields: None,
        body,
        content_length,
        source,
    }
}

/// `response`, made by [`from_stored_body`] from a fill's entry (whose body is still
/// empty), with its content read from the fill as the origin sends it; a `HEAD`'s length is
/// the one the origin declared.
pub(crate) fn reading_fill<B>(mut response: Response<B>, reader: FillReader) -> Response<B> {
    match response.body {
        Body::Cached(_) => response.body = Body::Filling(reader),
        Body::Empty if response.content_length.is_some() => {
            response.content_length = reader.expected_length();
        }
        _ => {}
    }
    response
}

/// The response to a `Range` request (RFC 9110 §14): `response` (complete, about to be
/// sent) as the one range decision ([`range::decide`]) says: unchanged, a single-part
/// `206` with `Content-Range` (§14.4) whose body is a slice of the stored one, a
/// `multipart/byteranges` `206` (§14.6) separated by `boundary()`, or a `416` with
/// `Content-Range: bytes */length` (§15.5.17). Content the cache holds whole (stored, or
/// buffered from the origin) is ranged, and so is a fill of declared length, for a single
/// range (read from the fill as its bytes arrive); other streams, and several ranges of a
/// fill, are sent whole (a server may ignore `Range`, §14.2; several ranges of an object in
/// slices are assembled, [`ranged_for_assembly`]). An incomplete stored response
/// (RFC 9111 §3.3) is cut to the range asked for when it holds it ([`partial_of_partial`]),
/// and otherwise sent as it is (the origin's answer, when it filled the cache).
pub(crate) fn ranged<B>(
    method: &str,
    request_headers: &Headers,
    response: Response<B>,
    boundary: impl FnOnce() -> String,
) -> Response<B> {
    if let Body::Cached(stored) = &response.body {
        if stored.status == 206 {
            let stored = stored.clone();
            return partial_of_partial(method, request_headers, response, stored);
        }
    }
    // In `u64`: a fill (an object in slices) may be larger than a 32-bit `usize`.
    let complete = match &response.body {
        Body::Cached(stored) => stored.body.len() as u64,
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::Filling(reader) => match reader.expected_length() {
            Some(length) => length,
            None => return response,
        },
        Body::Empty | Body::Slice(..) | Body::Stream(_) => return response,
    };
    let decision = range_decision(method, request_headers, &response, complete);
    apply_range(response, decision, complete, boundary)
}

/// `response` (complete, `complete` bytes of content, about to be sent) as the range
/// `decision` made for it says ([`ranged`]).
fn apply_range<B>(
    mut response: Response<B>,
    decision: Ranged,
    complete: u64,
    boundary: impl FnOnce() -> String,
) -> Response<B> {
    let parts = match decision {
        Ranged::Whole => return response,
        Ranged::Unsatisfiable => {
            let mut fields = response.take_fields();
            for field in [
                "content-type",
                "content-encoding",
                "content-length",
                "expires",
                "accept-ranges",
            ] {
                fields.remove(field);
            }
            // Never stored downstream: a cache in front that kept this 416 under the stored
            // response's freshness would answer plain GETs with it.
            fields.set("cache-control", "no-store");
            fields.set("content-range", range::unsatisfied_range(complete));
            response.headers = fields;
            response.status = 416;
            response.body = Body::Empty;
            return response;
        }
        Ranged::Partial(parts) if parts.len() > 1 && matches!(response.body, Body::Filling(_)) => {
            return response;
        }
        Ranged::Partial(parts) => parts,
    };
    // Offsets into content held in memory: below its length, a `usize`, so they fit one.
    let span = |r: &ByteRange| r.first as usize..r.last as usize + 1;
    response.status = 206;
    if let [only] = parts.as_slice() {
        response
            .headers
            .append("content-range", only.content_range(complete));
        response.body = match core::mem::replace(&mut response.body, Body::Empty) {
            Body::Cached(stored) => Body::Slice(stored, span(only)),
            Body::Filling(reader) => Body::Filling(reader.range(only.first..only.last + 1)),
            Body::Bytes(mut bytes) => {
                bytes.truncate(span(only).end);
                bytes.drain(..span(only).start);
                Body::Bytes(bytes)
            }
            other => other,
        };
        return response;
    }
    let whole = core::mem::replace(&mut response.body, Body::Empty);
    let content = match &whole {
        Body::Cached(stored) => &stored.body[..],
        Body::Bytes(bytes) => &bytes[..],
        _ => &[][..],
    };
    let layout = multipart_response(&mut response, &parts, complete, &boundary());
    let mut body = Vec::new();
    for segment in layout {
        match segment {
            Segment::Framing(bytes) => body.extend_from_slice(&bytes),
            Segment::Content(part) => body.extend_from_slice(&content[span(&part)]),
        }
    }
    response.body = Body::Bytes(body);
    response
}

/// The one range decision ([`range::decide`]) for `response`, whose content is `complete`
/// bytes long: `If-Range` is checked against the stored fields when it has them.
fn range_decision<B>(
    method: &str,
    request_headers: &Headers,
    response: &Response<B>,
    complete: u64,
) -> Ranged {
    let validators = match &response.stored_fields {
        Some(stored) => &stored.headers,
        None => &response.headers,
    };
    range::decide(
        method,
        request_headers,
        response.status,
        validators,
        complete,
    )
}

/// One piece of a `multipart/byteranges` body: its framing (a boundary and a part's
/// fields, or the closing delimiter), or a part's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Bytes of the framing.
    Framing(Vec<u8>),
    /// These bytes of the content.
    Content(ByteRange),
}

impl Segment {
    /// How many bytes of the body it is.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Segment::Framing(bytes) => bytes.len() as u64,
            Segment::Content(part) => part.len(),
        }
    }
}

/// Makes `response` (about to send content `complete` bytes long) the head of a
/// `multipart/byteranges` `206` of `parts` separated by `boundary` (RFC 9110 §14.6), and
/// returns its body's layout, in order. The one place the framing is written.
fn multipart_response<B>(
    response: &mut Response<B>,
    parts: &[ByteRange],
    complete: u64,
    boundary: &str,
) -> Vec<Segment> {
    let mut fields = response.take_fields();
    let part_type = fields.get_str("content-type").map(String::from);
    let mut layout = Vec::with_capacity(parts.len() * 2 + 1);
    for (n, part) in parts.iter().enumerate() {
        let mut framing = Vec::new();
        if n > 0 {
            framing.extend_from_slice(b"\r\n");
        }
        framing.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if let Some(part_type) = &part_type {
            framing.extend_from_slice(format!("content-type: {part_type}\r\n").as_bytes());
        }
        let range = part.content_range(complete);
        framing.extend_from_slice(format!("content-range: {range}\r\n\r\n").as_bytes());
        layout.push(Segment::Framing(framing));
        layout.push(Segment::Content(*part));
    }
    layout.push(Segment::Framing(
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    ));
    fields.remove("content-length");
    fields.set(
        "content-type",
        format!("multipart/byteranges; boundary={boundary}"),
    );
    response.headers = fields;
    response.status = 206;
    layout
}

/// The response to a range request for content `complete` bytes long that is assembled
/// later (an object in slices), with the one range decision made once: for several ranges,
/// `response` made the head of its `multipart/byteranges` `206` and the layout of its body,
/// ([`multipart_response`]); otherwise `response` as [`ranged`] makes it, and no
/// layout. Its body is a fill of declared length `complete` (the stand-in of the object).
pub(crate) fn ranged_for_assembly<B>(
    method: &str,
    request_headers: &Headers,
    mut response: Response<B>,
    complete: u64,
    boundary: impl FnOnce() -> String,
) -> (Response<B>, Option<Vec<Segment>>) {
    match range_decision(method, request_headers, &response, complete) {
        Ranged::Partial(parts) if parts.len() > 1 => {
            let layout = multipart_response(&mut response, &parts, complete, &boundary());
            (response, Some(layout))
        }
        decision => (apply_range(response, decision, complete, boundary), None),
    }
}

/// `response`, about to send the incomplete stored response `stored` (RFC 9111 §3.3), cut
/// to the one range the request asks for when `stored` holds it ([`partial::coverage`]):
/// a `206` of those bytes with their own `Content-Range` (RFC 9110 §14.4). Otherwise
/// unchanged: the lookup never serves an incomplete response that does not hold the
/// request's range ([`partial::limit`]), so this is the origin's own `206` passed on.
fn partial_of_partial<B>(
    method: &str,
    request_headers: &Headers,
    mut response: Response<B>,
    stored: Arc<CachedResponse>,
) -> Response<B> {
    let Coverage::Within { range, extent } = partial::coverage(method, request_headers, &stored)
    else {
        return response;
    };
    let mut fields = response.take_fields();
    fields.remove("content-length");
    fields.set("content-range", range.content_range(extent.complete));
    response.headers = fields;
    response.body = Body::Slice(stored, extent.offsets(&range));
    response
}

/// A response passed through from the origin: hop-by-hop fields removed (RFC 9110 §7.6.1)
/// and `Cache-Status` added.
pub(crate) fn from_origin<B>(
    method: &str,
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
    // A HEAD's length is the origin's word for the GET's (RFC 9110 §9.3.2).
    let content_length = (method == "HEAD" && status != 304 && may_declare_length(status))
        .then(|| headers.get_str("content-length")?.trim().parse().ok())
        .flatten();
    Response {
        status,
        headers,
        stored_fields: None,
        body,
        content_length,
        source: Source::Origin,
    }
}

/// How long the content of `stored` is: its body's, or the object's of a sliced object's
/// head ([`super::read::Slicing`]).
fn content_length(stored: &CachedResponse) -> u64 {
    match super::read::Slicing::of(stored) {
        Some(slicing) => slicing.length,
        None => stored.body.len() as u64,
    }
}

/// Whether a response with `status` may carry `Content-Length` (RFC 9110 §8.6: not a 1xx
/// or a 204).
fn may_declare_length(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204
}

/// The answer to `OPTIONS *` (RFC 9110 §9.3.7): a request about the server itself, which
/// the cache answers rather than forward (its origin client sends only paths).
pub(crate) fn server_options<B>() -> Response<B> {
    let mut headers = Headers::new();
    headers.set("allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE");
    headers.set("cache-control", "no-store");
    Response {
        status: 200,
        headers,
        stored_fields: None,
        body: Body::Empty,
        content_length: None,
        source: Source::Engine,
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
        stored_fields: None,
        body: Body::Bytes(format!("{message}\n").into_bytes()),
        content_length: None,
        source: Source::Engine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn stored(fields: &[(&str, &str)]) -> Arc<CachedResponse> {
        Arc::new(CachedResponse::new(
            200,
            Headers::from_pairs(fields.iter().copied()),
            b"body".to_vec(),
            Timestamp::from_millis(0),
            Timestamp::from_millis(0),
        ))
    }

    /// The fields a hit sends without copying them are exactly those of the general path.
    #[test]
    fn hits_send_the_same_fields_as_the_general_path() {
        let entries = [
            CacheStatusEntry {
                hit: true,
                ttl: Some(60),
                ..CacheStatusEntry::new("edgecache-l2")
            },
            CacheStatusEntry {
                stored: true,
                ..CacheStatusEntry::new("edgecache-l1")
            },
        ];
        let field_sets: [&[(&str, &str)]; 4] = [
            &[
                ("content-type", "text/plain"),
                ("cache-control", "max-age=60"),
            ],
            &[
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "5"),
                ("surrogate-control", "max-age=9"),
                ("surrogate-key", "a b"),
                ("edgecache-cache-control", "max-age=9"),
                ("age", "3"),
                ("content-length", "4"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("etag", "\"v1\""),
            ],
            &[("cache-status", "upstream; hit"), ("etag", "\"v1\"")],
            &[],
        ];
        let requests: [&[(&str, &str)]; 3] = [
            &[],
            &[("if-none-match", "\"v1\"")],
            &[("if-none-match", "\"v2\"")],
        ];
        for fields in field_sets {
            for request in requests {
                let request = Headers::from_pairs(request.iter().copied());
                for method in ["GET", "HEAD"] {
                    let s = stored(fields);
                    let hit: Response<()> = from_cache(method, &request, s.clone(), 7, &entries);
                    let general: Response<()> = from_stored_body(
                        method,
                        &request,
                        s.clone(),
                        s.headers.clone(),
                        7,
                        &entries,
                        Source::Cache,
                    );
                    assert_eq!(hit.status, general.status, "{fields:?} {request:?}");
                    assert_eq!(hit.fields(), general.fields(), "{fields:?} {request:?}");
                    assert_eq!(
                        matches!(hit.body, Body::Empty),
                        matches!(general.body, Body::Empty)
                    );
                }
            }
        }
    }

    /// A range of content larger than 4 GiB (an object in slices) is cut where it was
    /// asked, also where `usize` has 32 bits (the Worker, the browser package).
    #[test]
    fn ranges_of_content_beyond_4_gib_are_cut() {
        use crate::engine::filling::{FillReader, Filling};
        let length: u64 = 5 << 30;
        let fill = Arc::new(Filling::new(Some(length), false));
        let response: Response<()> = Response {
            status: 200,
            headers: Headers::from_pairs([("etag", "\"v\"")]),
            stored_fields: None,
            body: Body::Filling(FillReader::new(fill)),
            content_length: None,
            source: Source::Cache,
        };
        let asked = Headers::from_pairs([("range", "bytes=4294967296-4294967305")]);
        let ranged = ranged("GET", &asked, response, || String::from("b"));
        assert_eq!(ranged.status, 206);
        assert_eq!(
            ranged.headers.get_str("content-range"),
            Some("bytes 4294967296-4294967305/5368709120")
        );
        let Body::Filling(reader) = &ranged.body else {
            panic!("a fill");
        };
        assert_eq!(reader.span(), 4294967296..4294967306);
    }

    #[test]
    fn a_plain_hit_refers_to_the_stored_fields() {
        let s = stored(&[("content-type", "text/plain")]);
        let hit: Response<()> = from_cache("GET", &Headers::new(), s, 0, &[]);
        assert!(hit.stored_fields.is_some());
        assert_eq!(hit.headers.len(), 1, "only Age");
        let mut hit = hit;
        let all = hit.take_fields();
        assert_eq!(all.get_str("content-type"), Some("text/plain"));
        assert_eq!(all.get_str("age"), Some("0"));
        assert!(hit.stored_fields.is_none() && hit.headers.is_empty());
    }
}
