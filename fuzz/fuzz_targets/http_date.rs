//! Fuzz target: HTTP-date parsing (RFC 9110 §5.6.7) never panics, and a parsed date
//! formats to an IMF-fixdate that parses back to the same instant.
#![no_main]

use edgecache::http_date::{format_http_date, parse_http_date, parse_http_date_relative};
use edgecache::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = parse_http_date(data) {
        assert_eq!(t.as_millis() % 1000, 0);
        let formatted = format_http_date(t);
        assert_eq!(formatted.len(), 29, "{formatted}");
        assert_eq!(
            parse_http_date(formatted.as_bytes()),
            Some(t),
            "{formatted}"
        );
    }
    // The RFC 850 two-digit-year rule relative to a clock taken from the input.
    if let Some((head, rest)) = data.split_first_chunk::<8>() {
        let now = Timestamp::from_millis(u64::from_le_bytes(*head));
        if let Some(t) = parse_http_date_relative(rest, now) {
            let formatted = format_http_date(t);
            assert_eq!(
                parse_http_date(formatted.as_bytes()),
                Some(t),
                "{formatted}"
            );
        }
    }
    // Formatting any instant gives a date that parses back (saturating after year 9999).
    if let Some(head) = data.first_chunk::<8>() {
        let t = Timestamp::from_millis(u64::from_le_bytes(*head));
        let formatted = format_http_date(t);
        let parsed = parse_http_date(formatted.as_bytes());
        assert!(parsed.is_some_and(|p| p <= t), "{formatted}");
    }
});
