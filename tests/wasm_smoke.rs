//! Smoke tests of the portable core that run twice: natively under `cargo test`, and on
//! wasm32-unknown-unknown under Node.js through wasm-bindgen-test-runner (see tests/README.md).
//! They prove the wasm test pipeline end to end; the real coverage lives in the modules' own
//! tests and in the other files here.

// The convention: on wasm32, `#[test]` means `#[wasm_bindgen_test]`.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use edgecache::cache_control::{
    parse_delta_seconds, shared_cache_directives, DirectiveSource, FieldScope, MaxStale,
    RequestDirectives, ResponseDirectives, DEFAULT_TARGETED_FIELDS, DELTA_SECONDS_CAP,
};
use edgecache::headers::Headers;

#[test]
fn response_directives_parse_common_values() {
    let d = ResponseDirectives::parse(
        b"public, max-age=3600, s-maxage=\"60\", stale-while-revalidate=30",
    );
    assert!(d.public);
    assert_eq!(d.max_age, Some(3600));
    assert_eq!(d.s_maxage, Some(60));
    assert_eq!(d.stale_while_revalidate, Some(30));
    assert_eq!(d.stale_if_error, None);
    assert!(!d.no_store);
}

#[test]
fn response_directives_tolerate_junk() {
    // Names are case-insensitive; the first occurrence wins; an invalid max-age counts as 0.
    let d = ResponseDirectives::parse(b"MAX-AGE=10, max-age=20, No-Store");
    assert_eq!(d.max_age, Some(10));
    assert!(d.no_store);
    assert_eq!(ResponseDirectives::parse(b"max-age=abc").max_age, Some(0));
    // A name with whitespace inside is not a directive at all.
    assert!(ResponseDirectives::parse(b"max age=5").is_empty());
    // Overflow is capped at 2^31 (u32 arithmetic on wasm32 must not wrap).
    assert_eq!(
        ResponseDirectives::parse(b"max-age=99999999999999999999").max_age,
        Some(DELTA_SECONDS_CAP)
    );
    assert_eq!(parse_delta_seconds(b"-1"), None);
    let d = ResponseDirectives::parse(br#"private="Set-Cookie", no-cache"#);
    assert_eq!(
        d.private,
        Some(FieldScope::Fields(vec!["set-cookie".into()]))
    );
    assert_eq!(d.no_cache, Some(FieldScope::All));
}

#[test]
fn request_directives_and_pragma() {
    let d = RequestDirectives::parse(b"max-stale, min-fresh=5, only-if-cached");
    assert_eq!(d.max_stale, Some(MaxStale::Any));
    assert_eq!(d.min_fresh, Some(5));
    assert!(d.only_if_cached);
    let h = Headers::from_pairs([("Pragma", "no-cache")]);
    assert!(RequestDirectives::from_headers(&h).no_cache);
}

#[test]
fn headers_list_items_span_lines_and_respect_quotes() {
    let h = Headers::from_pairs([
        ("Vary", "Accept-Encoding, ,Origin"),
        ("vary", " \"a,b\" ,\tCookie\t"),
        ("X-Other", "z"),
    ]);
    let items: Vec<&[u8]> = h.list_items("VARY").collect();
    assert_eq!(
        items,
        vec![&b"Accept-Encoding"[..], b"Origin", b"\"a,b\"", b"Cookie"]
    );
    assert_eq!(h.get_str("x-other"), Some("z"));
    assert_eq!(h.list_items("missing").count(), 0);
}

#[test]
fn cdn_cache_control_takes_precedence() {
    let h = Headers::from_pairs([
        ("Cache-Control", "no-store"),
        ("CDN-Cache-Control", "max-age=60"),
    ]);
    let (d, source) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
    assert_eq!(d.max_age, Some(60));
    assert!(!d.no_store);
    assert_eq!(
        source,
        DirectiveSource::Targeted("cdn-cache-control".into())
    );
}
