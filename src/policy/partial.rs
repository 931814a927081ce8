//! Incomplete stored responses (RFC 9111 §3.3): a single-part `206 (Partial Content)` the
//! origin sent is stored with the range it holds, and answers a later request only when
//! that request asks for one range lying wholly within it (a `206` of that range, with its
//! own `Content-Range`, RFC 9110 §14.4). Every other request (the whole response, `HEAD`,
//! a range partly or wholly outside it, several ranges, an `If-Range` that does not hold)
//! goes to the origin, and what the origin answers replaces the stored response.
//!
//! Partial responses are never combined (§3.4), and a stored one is never completed with a
//! range request: §3.4 allows that only between responses sharing a strong validator, and
//! the origin requests of a fill carry no `Range` (the cache asks for complete responses;
//! objects too large to hold whole are cached in slices, which are combined that way).
//!
//! What may be stored is decided with the response ([`extent_to_store`], from
//! [`super::storable::storability`]); what a stored response may answer, when it is looked
//! up ([`limit`]) and when its response is cut ([`coverage`]), by the same function.

use core::ops::Range;

use crate::entry::CachedResponse;
use crate::headers::Headers;

use super::range::{requested, ByteRange, Ranged};
use super::reuse::{Evaluation, Reuse};

/// The bytes an incomplete response holds: `range` of a `complete`-byte representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The bytes held.
    pub range: ByteRange,
    /// The complete representation's length.
    pub complete: u64,
}

impl Extent {
    /// Whether it holds every byte of `range`.
    pub fn contains(&self, range: &ByteRange) -> bool {
        self.range.first <= range.first && range.last <= self.range.last
    }

    /// Where the bytes of `range`, which it contains, lie in the content it holds.
    pub fn offsets(&self, range: &ByteRange) -> Range<usize> {
        // Within content held in memory (its length is the extent's, checked when it was
        // looked up): below a `usize`.
        let start = (range.first - self.range.first) as usize;
        start..start + range.len() as usize
    }
}

/// Parses a `Content-Range` value of a single-part `206` (RFC 9110 §14.4): `bytes
/// first-last/complete`, the unit case-insensitive, `first <= last < complete`. `None`
/// for anything else: an unsatisfied range (`*/length`), an unknown complete length
/// (`/*`), another unit, a position beyond `u64`, or any other text.
pub fn parse_content_range(value: &str) -> Option<Extent> {
    let value = value.trim_matches([' ', '\t']);
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, complete) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, complete) = (number(first)?, number(last)?, number(complete)?);
    (first <= last && last < complete).then_some(Extent {
        range: ByteRange { first, last },
        complete,
    })
}

/// `1*DIGIT` within `u64` (no sign, no spaces, no overflow).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The extent of a `206` with `fields`, if it may be stored as an incomplete response
/// (RFC 9111 §3.3): one `Content-Range` field naming a single range of a representation of
/// known length ([`parse_content_range`]), not a `multipart/byteranges` response (§14.6:
/// several ranges), and one `Content-Length` equal to the range's length, so the content
/// is exactly the range it claims to be (a body of another length fails its transfer).
pub fn extent_to_store(fields: &Headers) -> Option<Extent> {
    let single = |name: &str| {
        let mut lines = fields.get_all(name);
        match (lines.next(), lines.next()) {
            (Some(value), None) => core::str::from_utf8(value).ok(),
            _ => None,
        }
    };
    let extent = parse_content_range(single("content-range")?)?;
    let multipart = fields.get("content-type").is_some_and(|t| {
        crate::headers::trim_ows(t)
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"multipart/"))
    });
    let length = number(single("content-length")?.trim_matches([' ', '\t']))?;
    (!multipart && length == extent.range.len()).then_some(extent)
}

/// The extent of `stored` if it is an incomplete response whose content is the range it
/// claims ([`extent_to_store`], and a body of that length). `None` for anything else,
/// including a `206` whose body is not (or not yet) its range: such a response answers no
/// request.
pub fn stored_extent(stored: &CachedResponse) -> Option<Extent> {
    if stored.status != 206 {
        return None;
    }
    let extent = extent_to_store(&stored.headers)?;
    (stored.body.len() as u64 == extent.range.len()).then_some(extent)
}

/// What a stored response holds for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// A complete response: the request's ranges are cut from it as from any
    /// ([`super::range::decide`]).
    Complete,
    /// An incomplete response holding the one range the request asks for: answered with a
    /// `206` of `range`.
    Within {
        /// The range asked for, resolved against the complete length.
        range: ByteRange,
        /// What the stored response holds.
        extent: Extent,
    },
    /// An incomplete response that does not hold what the request asks for (RFC 9111
    /// §3.3: it "MUST NOT" be used): the request goes to the origin.
    Lacking,
}

/// What `stored` holds for a `method` request with `request_headers` (RFC 9111 §3.3): a
/// complete response answers anything; an incomplete one only a `GET` asking for a single
/// range (a byte range, a suffix or an open-ended one, resolved against the complete
/// length, RFC 9110 §14.1.2) wholly within it, whose `If-Range`, if any, holds for it
/// (§13.1.5).
pub fn coverage(method: &str, request_headers: &Headers, stored: &CachedResponse) -> Coverage {
    if stored.status != 206 {
        return Coverage::Complete;
    }
    let Some(extent) = stored_extent(stored) else {
        return Coverage::Lacking;
    };
    match requested(method, request_headers, &stored.headers, extent.complete) {
        Ranged::Partial(ranges) => match ranges.as_slice() {
            [range] if extent.contains(range) => Coverage::Within {
                range: *range,
                extent,
            },
            _ => Coverage::Lacking,
        },
        Ranged::Whole | Ranged::Unsatisfiable => Coverage::Lacking,
    }
}

/// `evaluation` of `stored` for a `method` request with `request_headers`, limited by what
/// an incomplete `stored` holds ([`coverage`]): [`Reuse::Incomplete`] when it cannot answer
/// this request, and then no stale use either (RFC 9111 §4.2.4 lets a cache serve a stale
/// response, never the part of one it lacks). A complete response's verdict is unchanged.
pub fn limit(
    evaluation: Evaluation,
    method: &str,
    request_headers: &Headers,
    stored: &CachedResponse,
) -> Evaluation {
    if stored.status != 206 || evaluation.reuse == Reuse::VaryMismatch {
        return evaluation;
    }
    match coverage(method, request_headers, stored) {
        Coverage::Lacking => Evaluation {
            reuse: Reuse::Incomplete,
            stale_if_error: false,
            stale_if_unreachable: false,
            ..evaluation
        },
        Coverage::Complete | Coverage::Within { .. } => evaluation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use alloc::string::String;

    fn extent(first: u64, last: u64, complete: u64) -> Extent {
        Extent {
            range: ByteRange { first, last },
            complete,
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().copied())
    }

    /// A `206` the origin sent: `content_range`, a `Content-Length` of `body`, `more`.
    fn partial(content_range: &str, body: &str, more: &[(&str, &str)]) -> CachedResponse {
        let length = alloc::format!("{}", body.len());
        let mut headers = fields(&[
            ("content-range", content_range),
            ("content-length", &length),
            ("cache-control", "max-age=60"),
        ]);
        for (name, value) in more {
            headers.append(name, value);
        }
        CachedResponse::new(
            206,
            headers,
            body.as_bytes().to_vec(),
            Timestamp::from_secs(0),
            Timestamp::from_secs(0),
        )
    }

    /// RFC 9110 §14.4: `bytes first-last/complete`, nothing else.
    #[test]
    fn content_range_is_parsed_strictly() {
        assert_eq!(parse_content_range("bytes 4-9/10"), Some(extent(4, 9, 10)));
        assert_eq!(parse_content_range(" Bytes 0-0/1 "), Some(extent(0, 0, 1)));
        assert_eq!(
            parse_content_range("bytes 0-4/18446744073709551615"),
            Some(extent(0, 4, u64::MAX)),
            "an enormous complete length is a length like any"
        );
        for value in [
            "",
            "bytes",
            "bytes */10",
            "bytes 0-4/*",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 10-10/10",
            "bytes 0-4/0",
            "items 0-4/10",
            "bytes=0-4/10",
            "bytes  0-4/10",
            "bytes 0 -4/10",
            "bytes +0-4/10",
            "bytes 0-4/10, 5-9/10",
            "bytes 0-4/18446744073709551616",
            "bytes 0-18446744073709551616/18446744073709551617",
            "bytes -1-4/10",
        ] {
            assert_eq!(parse_content_range(value), None, "{value:?}");
        }
    }

    /// RFC 9111 §3.3: a single-part `206` whose content is exactly the range it claims.
    #[test]
    fn only_a_consistent_single_part_206_is_stored() {
        let ok = fields(&[("content-range", "bytes 4-9/10"), ("content-length", "6")]);
        assert_eq!(extent_to_store(&ok), Some(extent(4, 9, 10)));
        for (why, pairs) in [
            ("no Content-Range", &[("content-length", "6")][..]),
            (
                "an unsatisfied range",
                &[("content-range", "bytes */10"), ("content-length", "0")],
            ),
            (
                "an unknown complete length",
                &[("content-range", "bytes 4-9/*"), ("content-length", "6")],
            ),
            (
                "a length that lies about the range",
                &[("content-range", "bytes 4-9/10"), ("content-length", "5")],
            ),
            ("no Content-Length", &[("content-range", "bytes 4-9/10")]),
            (
                "a signed Content-Length",
                &[("content-range", "bytes 4-9/10"), ("content-length", "+6")],
            ),
            (
                "two Content-Range fields",
                &[
                    ("content-range", "bytes 4-9/10"),
                    ("content-range", "bytes 4-9/10"),
                    ("content-length", "6"),
                ],
            ),
            (
                "two Content-Length fields",
                &[
                    ("content-range", "bytes 4-9/10"),
                    ("content-length", "6"),
                    ("content-length", "6"),
                ],
            ),
            (
                "multipart",
                &[
                    ("content-range", "bytes 4-9/10"),
                    ("content-length", "6"),
                    ("content-type", "Multipart/ByteRanges; boundary=x"),
                ],
            ),
        ] {
            assert_eq!(extent_to_store(&fields(pairs)), None, "{why}");
        }
    }

    /// The one response decision (RFC 9111 §3, §3.3): a part is kept only as one exact
    /// range, and only when the usual rules let it be stored at all.
    #[test]
    fn the_response_decision_keeps_exact_parts_by_the_usual_rules() {
        use crate::policy::decision::{decide, OriginHead, ResponseDecision};
        use crate::policy::storable::NotStorable;
        use crate::policy::PolicyConfig;
        let decided = |more: &[(&str, &str)], length: &str| {
            let mut headers = fields(&[
                ("content-range", "bytes 4-9/10"),
                ("content-length", length),
            ]);
            for (name, value) in more {
                headers.append(name, value);
            }
            let origin = OriginHead {
                status: 206,
                headers: &headers,
                request_time: Timestamp::from_secs(0),
                response_time: Timestamp::from_secs(0),
            };
            match decide(
                "GET",
                &Headers::new(),
                origin,
                None,
                &PolicyConfig::default(),
            ) {
                ResponseDecision::Store(_) => Ok(()),
                ResponseDecision::Pass(reason) => Err(reason),
            }
        };
        let fresh = [("cache-control", "max-age=60")];
        assert_eq!(decided(&fresh, "6"), Ok(()));
        assert_eq!(decided(&fresh, "5"), Err(NotStorable::ContentRange));
        assert_eq!(
            decided(&[("cache-control", "no-store")], "6"),
            Err(NotStorable::ResponseNoStore)
        );
        assert_eq!(
            decided(&[("cache-control", "private, max-age=60")], "6"),
            Err(NotStorable::Private)
        );
        assert_eq!(
            decided(
                &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
                "6"
            ),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(
            decided(&[("cache-control", "max-age=60"), ("vary", "*")], "6"),
            Err(NotStorable::VaryStar)
        );
        assert_eq!(
            decided(
                &[("cache-control", "max-age=60, must-understand, no-store")],
                "6"
            ),
            Err(NotStorable::Status),
            "must-understand: 206 is not among the statuses it stores regardless"
        );
    }

    /// A stored `206` is usable only while its body is the range it claims.
    #[test]
    fn a_stored_206_whose_body_is_not_its_range_holds_nothing() {
        assert_eq!(
            stored_extent(&partial("bytes 4-9/10", "456789", &[])),
            Some(extent(4, 9, 10))
        );
        let mut short = partial("bytes 4-9/10", "456789", &[]);
        short.body.truncate(5);
        assert_eq!(stored_extent(&short), None);
        let mut complete = partial("bytes 4-9/10", "456789", &[]);
        complete.status = 200;
        assert_eq!(stored_extent(&complete), None);
        assert_eq!(
            coverage("GET", &fields(&[("range", "bytes=5-6")]), &short),
            Coverage::Lacking
        );
    }

    /// RFC 9111 §3.3: one range wholly within the stored one, however it is written.
    #[test]
    fn a_range_is_answered_only_when_wholly_within() {
        let stored = partial("bytes 4-9/10", "456789", &[("etag", "\"v1\"")]);
        let asks = |method: &str, pairs: &[(&str, &str)]| coverage(method, &fields(pairs), &stored);
        let within = |first, last| Coverage::Within {
            range: ByteRange { first, last },
            extent: extent(4, 9, 10),
        };
        assert_eq!(asks("GET", &[("range", "bytes=6-8")]), within(6, 8));
        assert_eq!(asks("GET", &[("range", "bytes=4-9")]), within(4, 9));
        assert_eq!(asks("GET", &[("range", "bytes=6-")]), within(6, 9));
        assert_eq!(asks("GET", &[("range", "bytes=6-500")]), within(6, 9));
        assert_eq!(asks("GET", &[("range", "bytes=-1")]), within(9, 9));
        assert_eq!(asks("GET", &[("range", "bytes=-6")]), within(4, 9));
        assert_eq!(
            asks("GET", &[("range", "bytes=6-7, 7-8")]),
            within(6, 8),
            "overlapping ranges are merged first"
        );
        assert_eq!(
            asks("GET", &[("range", "bytes=6-8"), ("if-range", "\"v1\"")]),
            within(6, 8)
        );
        for (why, method, pairs) in [
            ("the whole response", "GET", &[][..]),
            ("HEAD", "HEAD", &[("range", "bytes=6-8")]),
            ("partly before it", "GET", &[("range", "bytes=3-8")]),
            ("a suffix longer than it", "GET", &[("range", "bytes=-7")]),
            ("wholly before it", "GET", &[("range", "bytes=0-1")]),
            ("unsatisfiable", "GET", &[("range", "bytes=10-")]),
            ("several ranges", "GET", &[("range", "bytes=4-5, 8-9")]),
            ("an invalid range", "GET", &[("range", "bytes=8-6")]),
            ("another unit", "GET", &[("range", "items=6-8")]),
            (
                "a false If-Range",
                "GET",
                &[("range", "bytes=6-8"), ("if-range", "\"v0\"")],
            ),
            (
                "two Range lines",
                "GET",
                &[("range", "bytes=6-8"), ("range", "bytes=6-8")],
            ),
        ] {
            assert_eq!(asks(method, pairs), Coverage::Lacking, "{why}");
        }
        let whole = CachedResponse {
            status: 200,
            ..stored.clone()
        };
        assert_eq!(coverage("HEAD", &fields(&[]), &whole), Coverage::Complete);
    }

    /// An enormous claimed length is harmless: ranges are resolved against it and must
    /// still lie within the bytes held.
    #[test]
    fn an_enormous_complete_length_is_resolved_like_any() {
        let stored = partial("bytes 0-4/18446744073709551615", "01234", &[]);
        let asks = |range: &str| coverage("GET", &fields(&[("range", range)]), &stored);
        assert!(matches!(asks("bytes=1-3"), Coverage::Within { .. }));
        assert_eq!(asks("bytes=-5"), Coverage::Lacking);
        assert_eq!(asks("bytes=3-"), Coverage::Lacking);
    }

    /// The stored bytes of a range within: offsets into the content held.
    #[test]
    fn offsets_are_relative_to_the_bytes_held() {
        let held = extent(4, 9, 10);
        assert_eq!(held.offsets(&ByteRange { first: 6, last: 8 }), 2..5);
        assert_eq!(held.offsets(&ByteRange { first: 4, last: 9 }), 0..6);
        let text = String::from("456789");
        assert_eq!(&text[held.offsets(&ByteRange { first: 9, last: 9 })], "9");
    }
}
