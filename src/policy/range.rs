//! Byte ranges of a complete response (RFC 9110 §14): parsing `Range` (§14.1.1), evaluating
//! `If-Range` (§13.1.5), and the one decision of what a request gets: the whole response,
//! some ranges of it (`206`), or `416`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::{trim_ows, Headers};
use crate::http_date::parse_http_date;

/// At most this many ranges are served in one response; a request asking for more gets the
/// whole response (RFC 9110 §14.2 lets a server ignore many small ranges: each part costs
/// more than its bytes, and thousands of them are a known denial of service).
pub const MAX_RANGES: usize = 32;

/// A range as requested, before the representation's length is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-pos "-" [ last-pos ]`.
    From {
        /// The first byte's offset.
        first: u64,
        /// The last byte's offset, included; `None` for "to the end".
        last: Option<u64>,
    },
    /// `"-" suffix-length`: the last so many bytes.
    Suffix(u64),
}

/// Bytes `first..=last` of a representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub first: u64,
    /// Offset of the last byte (included).
    pub last: u64,
}

impl ByteRange {
    /// How many bytes it covers.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never empty (a range covers at least its first byte); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for this range of a `complete`-byte representation
    /// (RFC 9110 §14.4).
    pub fn content_range(&self, complete: u64) -> String {
        format!("bytes {}-{}/{}", self.first, self.last, complete)
    }
}

/// What a request gets of a complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranged {
    /// The whole response, as if no `Range` had been sent (none, an invalid one, a false
    /// `If-Range`, another unit, or a response ranges do not apply to).
    Whole,
    /// These ranges (one: a single-part `206`; more: `multipart/byteranges`), in the
    /// order asked for, or sorted and merged when some overlapped.
    Partial(Vec<ByteRange>),
    /// `416 Range Not Satisfiable` with `Content-Range: bytes */length` (§15.5.17).
    Unsatisfiable,
}

/// The `Content-Range` value of a `416` for a `complete`-byte representation.
pub fn unsatisfied_range(complete: u64) -> String {
    format!("bytes */{complete}")
}

/// Parses a `Range` value (RFC 9110 §14.1.1). `None` when it is not a valid `bytes`
/// ranges-specifier (which the server ignores, §14.2).
pub fn parse(value: &str) -> Option<Vec<RangeSpec>> {
    parse_bytes(value.as_bytes())
}

/// [`parse`] on the field's bytes. Every byte of a valid value is ASCII (`bytes`, `=`, `,`,
/// `-`, digits, SP and HTAB), so a value that is not UTF-8 is not valid either; and
/// splitting on ASCII bytes is splitting on those characters. Byte by byte rather than
/// with `str` patterns: a range hit parses its `Range` on every request.
pub fn parse_bytes(value: &[u8]) -> Option<Vec<RangeSpec>> {
    let eq = value.iter().position(|&b| b == b'=')?;
    if !trim_ows(&value[..eq]).eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // `1#range-spec`: empty list elements are allowed and skipped (RFC 9110 §5.6.1.2).
    for element in value[eq + 1..].split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        let dash = element.iter().position(|&b| b == b'-')?;
        let (first, last) = (&element[..dash], &element[dash + 1..]);
        let spec = if first.is_empty() {
            RangeSpec::Suffix(digits(last)?)
        } else {
            let first = digits(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(digits(last)?)
            };
            // §14.1.1: an int-range whose last-pos is below its first-pos is invalid.
            if last.is_some_and(|last| last < first) {
                return None;
            }
            RangeSpec::From { first, last }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// `1*DIGIT`; values beyond `u64` saturate (they are beyond any length).
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Resolves `specs` against a `complete`-byte representation (RFC 9110 §14.1.1–§14.1.2):
/// unsatisfiable ranges are dropped; none left is a `416`.
pub fn resolve(specs: &[RangeSpec], complete: u64) -> Ranged {
    if complete == 0 || specs.len() > MAX_RANGES {
        // An empty representation has no byte to serve (only a suffix-range would be
        // satisfiable, and it selects nothing): the whole, empty, response is the answer.
        return Ranged::Whole;
    }
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| match *spec {
            RangeSpec::From { first, .. } if first >= complete => None,
            RangeSpec::From { first, last } => Some(ByteRange {
                first,
                last: last.map_or(complete - 1, |last| last.min(complete - 1)),
            }),
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(length) => Some(ByteRange {
                first: complete.saturating_sub(length),
                last: complete - 1,
            }),
        })
        .collect();
    if ranges.is_empty() {
        return Ranged::Unsatisfiable;
    }
    if overlapping(&ranges) {
        // §14.2: a server MAY coalesce overlapping ranges; doing so bounds the response
        // by the representation's length whatever was asked.
        ranges.sort_by_key(|r| r.first);
        let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(previous) if range.first <= previous.last.saturating_add(1) => {
                    previous.last = previous.last.max(range.last);
                }
                _ => merged.push(range),
            }
        }
        ranges = merged;
    }
    Ranged::Partial(ranges)
}

/// Whether any two ranges share or touch a byte.
fn overlapping(ranges: &[ByteRange]) -> bool {
    ranges.iter().enumerate().any(|(i, a)| {
        ranges[i + 1..]
            .iter()
            .any(|b| a.first <= b.last.saturating_add(1) && b.first <= a.last.saturating_add(1))
    })
}

/// The strong validator of a response with `headers`, as `If-Range` may name it (RFC 9110
/// §13.1.5): its strong `ETag`, else its `Last-Modified` if that is a strong validator
/// (at least 60 seconds before its `Date`, §8.8.2.2). What identifies a representation
/// well enough to put bytes of it together from several responses.
pub fn strong_validator(headers: &Headers) -> Option<&str> {
    if let Some(etag) = headers.get_str("etag").map(str::trim) {
        if etag.starts_with('"') {
            return Some(etag);
        }
    }
    let last_modified = headers.get_str("last-modified")?.trim();
    if_range_holds(last_modified, headers).then_some(last_modified)
}

/// Whether the `If-Range` condition holds for a response with `response_headers` (RFC 9110
/// §13.1.5): an entity-tag must be strong and equal to the response's strong `ETag`; a
/// date must equal its `Last-Modified`, and be a strong validator, which for a cache means
/// at least 60 seconds before the stored `Date` (§8.8.2.2).
pub fn if_range_holds(if_range: &str, response_headers: &Headers) -> bool {
    let if_range = if_range.trim_matches([' ', '\t']);
    if if_range.starts_with('"') || if_range.starts_with("W/") {
        let etag = response_headers.get_str("etag").map(|e| e.trim());
        return if_range.starts_with('"')
            && etag.is_some_and(|e| e.starts_with('"') && e == if_range);
    }
    let date = |name: &str| {
        response_headers
            .get_str(name)
            .and_then(|v| parse_http_date(v.trim().as_bytes()))
    };
    let (Some(asked), Some(last_modified), Some(sent)) = (
        parse_http_date(if_range.as_bytes()),
        date("last-modified"),
        date("date"),
    ) else {
        return false;
    };
    asked == last_modified && sent.millis_since(last_modified) >= 60_000
}

/// The one range decision: what a `method` request with `request_headers` gets of a
/// complete response with `status`, `response_headers` and `complete` bytes of content.
/// Ranges apply to `GET` only (§14.2) and to `200` responses; a request with more than one
/// `Range` line, an invalid one, or a false `If-Range` gets the whole response.
pub fn decide(
    method: &str,
    request_headers: &Headers,
    status: u16,
    response_headers: &Headers,
    complete: u64,
) -> Ranged {
    if status != 200 {
        return Ranged::Whole;
    }
    requested(method, request_headers, response_headers, complete)
}

/// What a `method` request with `request_headers` asks for of a `complete`-byte
/// representation whose validators `response_headers` carries (RFC 9110 §14.2, §13.1.5),
/// whatever response holds it: [`decide`] for a complete response, and
/// [`super::partial::coverage`] for an incomplete one (RFC 9111 §3.3), which must hold it.
pub fn requested(
    method: &str,
    request_headers: &Headers,
    response_headers: &Headers,
    complete: u64,
) -> Ranged {
    if method != "GET" {
        return Ranged::Whole;
    }
    let mut lines = request_headers.get_all("range");
    let (Some(value), None) = (lines.next(), lines.next()) else {
        return Ranged::Whole;
    };
    let Some(specs) = parse_bytes(value) else {
        return Ranged::Whole;
    };
    if let Some(if_range) = request_headers.get_str("if-range") {
        if !if_range_holds(if_range, response_headers) {
            return Ranged::Whole;
        }
    }
    resolve(&specs, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(first: u64, last: Option<u64>) -> RangeSpec {
        RangeSpec::From { first, last }
    }

    fn range(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    #[test]
    fn parses_every_form_of_range_spec() {
        assert_eq!(parse("bytes=0-499"), Some(alloc::vec![from(0, Some(499))]));
        assert_eq!(parse("bytes=9500-"), Some(alloc::vec![from(9500, None)]));
        assert_eq!(
            parse("bytes=-500"),
            Some(alloc::vec![RangeSpec::Suffix(500)])
        );
        assert_eq!(
            parse("Bytes = 0-0 , -1,,"),
            Some(alloc::vec![from(0, Some(0)), RangeSpec::Suffix(1)])
        );
        assert_eq!(
            parse("bytes=0-99999999999999999999999"),
            Some(alloc::vec![from(0, Some(u64::MAX))])
        );
    }

    /// The parser as it was written with `str` patterns, before it worked on bytes: the
    /// byte parser must agree with it on every value.
    fn parse_with_str_patterns(value: &str) -> Option<Vec<RangeSpec>> {
        fn digits(s: &str) -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(s.bytes().fold(0u64, |n, b| {
                n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
            }))
        }
        let (unit, set) = value.split_once('=')?;
        if !unit.trim_matches([' ', '\t']).eq_ignore_ascii_case("bytes") {
            return None;
        }
        let mut specs = Vec::new();
        for element in set.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() {
                continue;
            }
            let (first, last) = element.split_once('-')?;
            let spec = if first.is_empty() {
                RangeSpec::Suffix(digits(last)?)
            } else {
                let first = digits(first)?;
                let last = if last.is_empty() {
                    None
                } else {
                    Some(digits(last)?)
                };
                if last.is_some_and(|last| last < first) {
                    return None;
                }
                RangeSpec::From { first, last }
            };
            specs.push(spec);
        }
        (!specs.is_empty()).then_some(specs)
    }

    /// The byte parser agrees with the `str` one on many values made of the characters
    /// that matter (and some that do not, a multi-byte one among them), and refuses values
    /// that are not UTF-8, which `requested` used to refuse before parsing.
    #[test]
    fn the_byte_parser_agrees_with_the_str_parser() {
        let alphabet = [
            "b",
            "bytes",
            "BYTES",
            "=",
            "-",
            ",",
            " ",
            "\t",
            "0",
            "1",
            "7",
            "99",
            "x",
            "\u{e9}",
            "18446744073709551616",
            "0-1",
            "5-",
            "-3",
            "12-40",
            ", ",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = 0;
        for _ in 0..200_000 {
            let mut value = String::new();
            if next() % 2 == 0 {
                value.push_str("bytes=");
            }
            for _ in 0..next() % 9 {
                value.push_str(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let parsed = parse(&value);
            assert_eq!(parsed, parse_with_str_patterns(&value), "{value:?}");
            valid += usize::from(parsed.is_some());
        }
        assert!(valid > 5_000, "valid values too rare to compare: {valid}");
        assert_eq!(parse_bytes(b"bytes=0-1\xff"), None);
        assert_eq!(parse_bytes(b"bytes\xff=0-1"), None);
    }

    #[test]
    fn invalid_range_values_are_refused_whole() {
        for value in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=1-0",
            "bytes=a-1",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=0x1-2",
            "bytes=+1-2",
            "bytes=1 -2",
            "bytes=--1",
            "bytes=-1-",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_length() {
        let resolve_one = |value: &str, len| resolve(&parse(value).unwrap(), len);
        assert_eq!(
            resolve_one("bytes=0-1", 11),
            Ranged::Partial(alloc::vec![range(0, 1)])
        );
        assert_eq!(
            resolve_one("bytes=1-", 11),
            Ranged::Partial(alloc::vec![range(1, 10)])
        );
        assert_eq!(
            resolve_one("bytes=-1", 11),
            Ranged::Partial(alloc::vec![range(10, 10)])
        );
        assert_eq!(
            resolve_one("bytes=-100", 11),
            Ranged::Partial(alloc::vec![range(0, 10)])
        );
        assert_eq!(
            resolve_one("bytes=5-100", 11),
            Ranged::Partial(alloc::vec![range(5, 10)])
        );
        assert_eq!(resolve_one("bytes=11-", 11), Ranged::Unsatisfiable);
        assert_eq!(resolve_one("bytes=-0", 11), Ranged::Unsatisfiable);
        assert_eq!(
            resolve_one("bytes=20-30, 2-3", 11),
            Ranged::Partial(alloc::vec![range(2, 3)]),
            "the unsatisfiable one is dropped"
        );
        assert_eq!(
            resolve_one("bytes=8-9, 0-1", 11),
            Ranged::Partial(alloc::vec![range(8, 9), range(0, 1)]),
            "in the order asked for"
        );
        assert_eq!(resolve_one("bytes=0-1", 0), Ranged::Whole);
    }

    #[test]
    fn overlapping_ranges_are_merged_and_bounded_by_the_length() {
        let value = format!("bytes={}", alloc::vec!["0-"; 20].join(","));
        assert_eq!(
            resolve(&parse(&value).unwrap(), 1000),
            Ranged::Partial(alloc::vec![range(0, 999)])
        );
        assert_eq!(
            resolve(&parse("bytes=5-9,0-4,20-30").unwrap(), 100),
            Ranged::Partial(alloc::vec![range(0, 9), range(20, 30)])
        );
        let many: Vec<String> = (0..=MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 3, i * 3))
            .collect();
        let value = format!("bytes={}", many.join(","));
        assert_eq!(resolve(&parse(&value).unwrap(), 1000), Ranged::Whole);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let fields = Headers::from_pairs([
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 07 Dec 2026 10:00:00 GMT"),
            ("date", "Mon, 07 Dec 2026 10:01:00 GMT"),
        ]);
        assert!(if_range_holds("\"v1\"", &fields));
        assert!(!if_range_holds("\"v2\"", &fields));
        assert!(
            !if_range_holds("W/\"v1\"", &fields),
            "weak tags never match"
        );
        assert!(if_range_holds("Mon, 07 Dec 2026 10:00:00 GMT", &fields));
        assert!(!if_range_holds("Mon, 07 Dec 2026 10:00:01 GMT", &fields));
        assert!(!if_range_holds("yesterday", &fields));
        let weak_tag = Headers::from_pairs([("etag", "W/\"v1\"")]);
        assert!(!if_range_holds("W/\"v1\"", &weak_tag));
        let recent = Headers::from_pairs([
            ("last-modified", "Mon, 07 Dec 2026 10:00:00 GMT"),
            ("date", "Mon, 07 Dec 2026 10:00:30 GMT"),
        ]);
        assert!(
            !if_range_holds("Mon, 07 Dec 2026 10:00:00 GMT", &recent),
            "modified less than 60 s before Date: a weak validator"
        );
    }

    #[test]
    fn the_decision_applies_to_complete_get_responses_only() {
        let request = |fields: &[(&str, &str)]| Headers::from_pairs(fields.iter().copied());
        let ok = Headers::from_pairs([("etag", "\"v1\"")]);
        let ranged = request(&[("range", "bytes=0-1")]);
        assert_eq!(
            decide("GET", &ranged, 200, &ok, 10),
            Ranged::Partial(alloc::vec![range(0, 1)])
        );
        assert_eq!(decide("HEAD", &ranged, 200, &ok, 10), Ranged::Whole);
        assert_eq!(decide("GET", &ranged, 404, &ok, 10), Ranged::Whole);
        assert_eq!(decide("GET", &request(&[]), 200, &ok, 10), Ranged::Whole);
        let two_lines = request(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]);
        assert_eq!(decide("GET", &two_lines, 200, &ok, 10), Ranged::Whole);
        let stale_if_range = request(&[("range", "bytes=0-1"), ("if-range", "\"v0\"")]);
        assert_eq!(decide("GET", &stale_if_range, 200, &ok, 10), Ranged::Whole);
        let beyond = request(&[("range", "bytes=10-")]);
        assert_eq!(decide("GET", &beyond, 200, &ok, 10), Ranged::Unsatisfiable);
    }
}
