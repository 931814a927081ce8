//! Fuzz target: the Cache-Control tokenizer and directive sets (RFC 9111 §5.2, RFC 9213)
//! on arbitrary bytes, both as one field value and as a header list built from the input.
#![no_main]

use edgecache::cache_control::{
    parse_delta_seconds, shared_cache_directives, tokenize, MaxStale, RequestDirectives,
    ResponseDirectives, DEFAULT_TARGETED_FIELDS, DELTA_SECONDS_CAP,
};
use edgecache::headers::Headers;
use libfuzzer_sys::fuzz_target;

/// Field names a line of input can pick with its first byte.
const NAMES: [&str; 8] = [
    "cache-control",
    "CDN-Cache-Control",
    "surrogate-control",
    "edgecache-cache-control",
    "pragma",
    "expires",
    "x-other",
    "Cache-Control",
];

fuzz_target!(|data: &[u8]| {
    for directive in tokenize(data) {
        assert!(!directive.name.is_empty());
    }
    if let Some(secs) = parse_delta_seconds(data) {
        assert!(secs <= DELTA_SECONDS_CAP);
    }
    check_response(&ResponseDirectives::parse(data));
    check_request(&RequestDirectives::parse(data));

    // Each line is one header field: the first byte picks the name, the rest is the value.
    let mut headers = Headers::new();
    for line in data.split(|&b| b == b'\n') {
        if let Some((&selector, value)) = line.split_first() {
            let name = NAMES
                .get(usize::from(selector) % NAMES.len())
                .copied()
                .unwrap_or("x");
            headers.append(name, value);
        }
    }
    check_response(&ResponseDirectives::from_headers(&headers));
    check_request(&RequestDirectives::from_headers(&headers));
    let (directives, _source) = shared_cache_directives(&headers, &DEFAULT_TARGETED_FIELDS);
    check_response(&directives);
    let none: [&str; 0] = [];
    let (plain, _) = shared_cache_directives(&headers, &none);
    assert_eq!(plain, ResponseDirectives::from_headers(&headers));
});

fn check_response(d: &ResponseDirectives) {
    for secs in [
        d.max_age,
        d.s_maxage,
        d.stale_while_revalidate,
        d.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(secs <= DELTA_SECONDS_CAP);
    }
}

fn check_request(d: &RequestDirectives) {
    let stale = match d.max_stale {
        Some(MaxStale::Secs(secs)) => Some(secs),
        _ => None,
    };
    for secs in [d.max_age, d.min_fresh, d.stale_if_error, stale]
        .into_iter()
        .flatten()
    {
        assert!(secs <= DELTA_SECONDS_CAP);
    }
}
