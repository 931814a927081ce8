//! Fuzz target: `Range` / `If-Range` (RFC 9110 §14, §13.1.5) and the one range decision:
//! never a panic; every range served lies inside the representation, is non-empty, and
//! overlapping ones come out merged, so a response is never larger than the representation
//! plus its part headers; at most `MAX_RANGES` parts.
#![no_main]

use edgecache::headers::Headers;
use edgecache::policy::range::{decide, Ranged, MAX_RANGES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let complete = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40);
    let text = String::from_utf8_lossy(&data[8..]);
    let (range, if_range) = text.split_once('\n').unwrap_or((&text, ""));
    let mut request = Headers::from_pairs([("range", range)]);
    if !if_range.is_empty() {
        request.append("if-range", if_range);
    }
    let response = Headers::from_pairs([
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 07 Dec 2026 10:00:00 GMT"),
        ("date", "Mon, 07 Dec 2026 10:01:00 GMT"),
    ]);
    if let Ranged::Partial(parts) = decide("GET", &request, 200, &response, complete) {
        assert!(!parts.is_empty() && parts.len() <= MAX_RANGES);
        let mut total = 0u64;
        for part in &parts {
            assert!(part.first <= part.last && part.last < complete, "{part:?} of {complete}");
            total += part.len();
        }
        assert!(total <= complete, "overlaps are merged: {parts:?}");
    }
});
