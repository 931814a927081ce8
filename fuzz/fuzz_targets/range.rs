//! Fuzz target: `Range` / `If-Range` (RFC 9110 §14, §13.1.5) and the one range decision:
//! never a panic; every range served lies inside the representation, is non-empty, and
//! overlapping ones come out merged, so a response is never larger than the representation
//! plus its part headers; at most `MAX_RANGES` parts. The `Range` line goes in as raw bytes
//! (not UTF-8 checked: the decision parses the field's bytes, `parse_bytes`), and a value
//! that is not UTF-8 is never valid, so it is ignored (the whole response).
#![no_main]

use edgecache::headers::Headers;
use edgecache::policy::range::{decide, parse, parse_bytes, Ranged, MAX_RANGES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let complete = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40);
    let rest = &data[8..];
    let (range, if_range) = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], &rest[nl + 1..]),
        None => (rest, &[][..]),
    };
    // The byte parser agrees with the UTF-8 gate `requested` used to apply before parsing:
    // a value that is not UTF-8 is refused, one that is parses as the `str` entry point.
    let specs = parse_bytes(range);
    match core::str::from_utf8(range) {
        Ok(text) => assert_eq!(specs, parse(text)),
        Err(_) => assert_eq!(specs, None, "not UTF-8 yet parsed: {range:?}"),
    }
    let mut request = Headers::default();
    request.append("range", range);
    let if_range = String::from_utf8_lossy(if_range);
    if !if_range.is_empty() {
        request.append("if-range", if_range.as_bytes());
    }
    let response = Headers::from_pairs([
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 07 Dec 2026 10:00:00 GMT"),
        ("date", "Mon, 07 Dec 2026 10:01:00 GMT"),
    ]);
    let decision = decide("GET", &request, 200, &response, complete);
    if specs.is_none() {
        assert!(matches!(decision, Ranged::Whole), "{range:?}: {decision:?}");
    }
    if let Ranged::Partial(parts) = decision {
        assert!(!parts.is_empty() && parts.len() <= MAX_RANGES);
        let mut total = 0u64;
        for part in &parts {
            assert!(
                part.first <= part.last && part.last < complete,
                "{part:?} of {complete}"
            );
            total += part.len();
        }
        assert!(total <= complete, "overlaps are merged: {parts:?}");
    }
});
