//! Policy tests: every case names the RFC section it checks in its doc comment. They run
//! natively and, through wasm-bindgen-test, on wasm32 under node.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use edgecache::cache_control::{
    shared_cache_directives, FieldScope, MaxStale, RequestDirectives, ResponseDirectives,
    DEFAULT_TARGETED_FIELDS, DELTA_SECONDS_CAP,
};
use edgecache::entry::CachedResponse;
use edgecache::headers::Headers;
use edgecache::http_date::format_http_date;
use edgecache::policy::cache_status::{render, CacheStatusEntry, Forward};
use edgecache::policy::conditional::{conditional_headers, freshen, Freshened};
use edgecache::policy::freshness::{current_age, freshness_lifetime, Freshness, FreshnessSource};
use edgecache::policy::invalidation::invalidated_targets;
use edgecache::policy::request::{classify, BypassReason, RequestClass};
use edgecache::policy::reuse::{evaluate, Evaluation, Reuse, RevalidateReason};
use edgecache::policy::storable::{storability, NotStorable, ResponseView};
use edgecache::policy::storage::{lifetimes, prepare, purge_tags};
use edgecache::policy::vary::{matches, select, variant_suffix};
use edgecache::policy::PolicyConfig;
use edgecache::time::Timestamp;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
const T0_SECS: u64 = 784_111_777;

fn t(secs_after_t0: u64) -> Timestamp {
    Timestamp::from_secs(T0_SECS + secs_after_t0)
}

fn date(secs_after_t0: i64) -> String {
    format_http_date(Timestamp::from_secs(
        (T0_SECS as i64 + secs_after_t0) as u64,
    ))
}

fn hdrs(pairs: &[(&str, &str)]) -> Headers {
    Headers::from_pairs(pairs.iter().copied())
}

fn cfg() -> PolicyConfig {
    PolicyConfig::default()
}

/// A response to `request`, received at T0 for a request sent at T0, prepared for storage.
fn stored_for(request: &[(&str, &str)], status: u16, response: &[(&str, &str)]) -> CachedResponse {
    prepare(
        &hdrs(request),
        status,
        &hdrs(response),
        b"body".to_vec(),
        t(0),
        t(0),
        &cfg(),
    )
}

fn stored(response: &[(&str, &str)]) -> CachedResponse {
    stored_for(&[], 200, response)
}

fn eval(entry: &CachedResponse, request: &[(&str, &str)], secs: u64) -> Evaluation {
    evaluate(&hdrs(request), entry, t(secs), &cfg())
}

fn reuse(response: &[(&str, &str)], request: &[(&str, &str)], secs: u64) -> Reuse {
    eval(&stored(response), request, secs).reuse
}

fn can_store(
    method: &str,
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
) -> Result<(), NotStorable> {
    can_store_with(method, request, status, response, &cfg())
}

fn can_store_with(
    method: &str,
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
    config: &PolicyConfig,
) -> Result<(), NotStorable> {
    let resp = hdrs(response);
    let view = ResponseView::new(&resp, config);
    let freshness = lifetime_with(status, response, config);
    storability(
        method,
        &hdrs(request),
        status,
        &resp,
        &view,
        freshness.source,
        config,
    )
}

fn lifetime_with(status: u16, response: &[(&str, &str)], config: &PolicyConfig) -> Freshness {
    let resp = hdrs(response);
    let view = ResponseView::new(&resp, config);
    freshness_lifetime(status, &resp, &view.directives, &view.source, t(0), config)
}

fn lifetime(status: u16, response: &[(&str, &str)]) -> Freshness {
    lifetime_with(status, response, &cfg())
}

fn lifetime_secs(response: &[(&str, &str)]) -> u64 {
    lifetime(200, response).lifetime_secs
}

fn age(response: &[(&str, &str)], request_time: u64, response_time: u64, now: u64) -> u64 {
    current_age(&hdrs(response), t(request_time), t(response_time), t(now))
}

fn cc(value: &str) -> ResponseDirectives {
    ResponseDirectives::parse(value.as_bytes())
}

fn req_cc(value: &str) -> RequestDirectives {
    RequestDirectives::parse(value.as_bytes())
}

// ---------------------------------------------------------------------------------------
// Cache-Control parsing (RFC 9111 §5.2, §1.2.2)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §5.2.2.1: max-age gives the freshness lifetime.
#[test]
fn cc_max_age_plain() {
    assert_eq!(cc("max-age=60").max_age, Some(60));
}

/// RFC 9111 §5.2: directive names are case-insensitive.
#[test]
fn cc_names_case_insensitive() {
    assert_eq!(cc("MAX-AGE=60, No-Store").max_age, Some(60));
    assert!(cc("MAX-AGE=60, No-Store").no_store);
}

/// RFC 9111 §5.2: recipients accept the quoted-string form of delta-seconds.
#[test]
fn cc_quoted_max_age_accepted() {
    assert_eq!(cc("max-age=\"3600\"").max_age, Some(3600));
}

/// RFC 9111 §4.2.1: a single-quoted value is invalid, so the response is treated as stale.
#[test]
fn cc_single_quoted_max_age_is_stale() {
    assert_eq!(cc("max-age='3600'").max_age, Some(0));
}

/// RFC 9111 §5.2: a directive inside another directive's quoted value is not a directive.
#[test]
fn cc_max_age_inside_quoted_extension_ignored() {
    assert_eq!(cc("extension=\"max-age=3600\", max-age=1").max_age, Some(1));
    assert_eq!(cc("max-age=1, extension=\"max-age=3600\"").max_age, Some(1));
}

/// RFC 9111 §1.2.2: delta-seconds with leading zeros is a valid integer.
#[test]
fn cc_leading_zeros() {
    assert_eq!(cc("max-age=003600").max_age, Some(3600));
}

/// RFC 9111 §1.2.2, §4.2.1: a decimal is not delta-seconds; invalid freshness is stale.
#[test]
fn cc_decimal_is_invalid() {
    assert_eq!(cc("max-age=3600.0").max_age, Some(0));
}

/// RFC 9111 §1.2.2: trailing and leading letters make the value invalid.
#[test]
fn cc_alpha_is_invalid() {
    assert_eq!(cc("max-age=3600a").max_age, Some(0));
    assert_eq!(cc("max-age=a3600").max_age, Some(0));
}

/// RFC 9111 §1.2.2: negative values are not delta-seconds.
#[test]
fn cc_negative_is_invalid() {
    assert_eq!(cc("max-age=-1").max_age, Some(0));
}

/// RFC 9111 §1.2.2: values beyond the representable range are capped at 2^31.
#[test]
fn cc_overflow_capped() {
    assert_eq!(
        cc("max-age=99999999999999999999").max_age,
        Some(DELTA_SECONDS_CAP)
    );
    assert_eq!(cc("s-maxage=2147483648").s_maxage, Some(DELTA_SECONDS_CAP));
}

/// RFC 9111 §5.2: whitespace before `=` makes the name a non-token: the directive is ignored.
#[test]
fn cc_space_before_equals_ignored() {
    assert_eq!(cc("max-age =3600").max_age, None);
}

/// RFC 9111 §5.2: whitespace after `=` is not part of delta-seconds: invalid, so stale.
#[test]
fn cc_space_after_equals_invalid() {
    assert_eq!(cc("max-age= 3600").max_age, Some(0));
}

/// RFC 9111 §4.2.1: with duplicate directives on one line, the first occurrence is used.
#[test]
fn cc_duplicate_first_wins_same_line() {
    assert_eq!(cc("max-age=1800, max-age=1").max_age, Some(1800));
    assert_eq!(cc("max-age=1, max-age=1800").max_age, Some(1));
}

/// RFC 9111 §4.2.1, RFC 9110 §5.3: across field lines, the first occurrence is used.
#[test]
fn cc_duplicate_first_wins_across_lines() {
    let h = hdrs(&[
        ("Cache-Control", "max-age=1800"),
        ("Cache-Control", "max-age=1"),
    ]);
    assert_eq!(ResponseDirectives::from_headers(&h).max_age, Some(1800));
}

/// RFC 9111 §5.2: an empty or comma-only field has no directives.
#[test]
fn cc_empty_and_commas() {
    assert!(cc("").is_empty());
    assert!(cc(" , ,, ").is_empty());
}

/// RFC 9111 §5.2.3: unknown extension directives are ignored.
#[test]
fn cc_unknown_directives_ignored() {
    let d = cc("foo, bar=baz, max-age=5, qux=\"a,b\"");
    assert_eq!(d.max_age, Some(5));
    assert!(!d.no_store && !d.public);
}

/// RFC 9111 §5.2.2.4: unqualified no-cache.
#[test]
fn cc_no_cache_unqualified() {
    assert_eq!(cc("no-cache").no_cache, Some(FieldScope::All));
}

/// RFC 9111 §5.2.2.4: qualified no-cache lists field names, lowercased.
#[test]
fn cc_no_cache_qualified() {
    assert_eq!(
        cc("no-cache=\"Set-Cookie, X-Foo\"").no_cache,
        Some(FieldScope::Fields(vec![
            "set-cookie".into(),
            "x-foo".into()
        ]))
    );
}

/// RFC 9111 §5.2.2.7: qualified private lists field names.
#[test]
fn cc_private_qualified() {
    assert_eq!(
        cc("private=\"x-user\"").private,
        Some(FieldScope::Fields(vec!["x-user".into()]))
    );
}

/// RFC 9111 §5.2.2.7, §4.2.1 (most restrictive wins): unqualified private overrides a
/// qualified one in either order.
#[test]
fn cc_private_unqualified_wins() {
    assert_eq!(cc("private=\"a\", private").private, Some(FieldScope::All));
    assert_eq!(cc("private, private=\"a\"").private, Some(FieldScope::All));
}

/// RFC 9111 §5.2.2.10: s-maxage parsed separately from max-age.
#[test]
fn cc_s_maxage() {
    let d = cc("max-age=10, s-maxage=20");
    assert_eq!((d.max_age, d.s_maxage), (Some(10), Some(20)));
}

/// RFC 5861 §3–4: stale-while-revalidate and stale-if-error take delta-seconds.
#[test]
fn cc_stale_extensions() {
    let d = cc("stale-while-revalidate=30, stale-if-error=600");
    assert_eq!(
        (d.stale_while_revalidate, d.stale_if_error),
        (Some(30), Some(600))
    );
}

/// RFC 5861 §3: an invalid stale window is ignored rather than treated as zero.
#[test]
fn cc_invalid_stale_window_ignored() {
    let d = cc("stale-while-revalidate=soon, stale-if-error");
    assert_eq!((d.stale_while_revalidate, d.stale_if_error), (None, None));
}

/// RFC 9111 §5.2.2.2–§5.2.2.9, RFC 8246: boolean directives are recognised.
#[test]
fn cc_boolean_directives() {
    let d =
        cc("public, must-revalidate, proxy-revalidate, must-understand, no-transform, immutable");
    assert!(d.public && d.must_revalidate && d.proxy_revalidate);
    assert!(d.must_understand && d.no_transform && d.immutable);
}

/// RFC 9111 §5.2: non-ASCII bytes in one member do not disturb the others.
#[test]
fn cc_non_ascii_bytes() {
    let d = ResponseDirectives::parse(b"\xff\xfe=\x80, max-age=7, caf\xc3\xa9");
    assert_eq!(d.max_age, Some(7));
}

/// RFC 9110 §5.6.4: an unterminated quoted string runs to the end without panicking.
#[test]
fn cc_unterminated_quote() {
    let d = cc("max-age=5, private=\"x-a, no-store");
    assert_eq!(d.max_age, Some(5));
    assert!(!d.no_store, "no-store is inside the open quoted string");
}

/// RFC 9111 §5.2.1.2: max-stale without a value accepts any staleness.
#[test]
fn req_max_stale_any() {
    assert_eq!(req_cc("max-stale").max_stale, Some(MaxStale::Any));
}

/// RFC 9111 §5.2.1.2: max-stale with a value bounds staleness.
#[test]
fn req_max_stale_secs() {
    assert_eq!(req_cc("max-stale=30").max_stale, Some(MaxStale::Secs(30)));
}

/// RFC 9111 §5.2.1.2: an invalid max-stale value is ignored.
#[test]
fn req_max_stale_invalid() {
    assert_eq!(req_cc("max-stale=x").max_stale, None);
}

/// RFC 9111 §5.2.1.1, §5.2.1.3: request max-age and min-fresh.
#[test]
fn req_max_age_and_min_fresh() {
    let d = req_cc("max-age=10, min-fresh=20");
    assert_eq!((d.max_age, d.min_fresh), (Some(10), Some(20)));
}

/// RFC 9111 §5.2.1.1: an invalid request max-age is ignored.
#[test]
fn req_max_age_invalid() {
    assert_eq!(req_cc("max-age=ten").max_age, None);
}

/// RFC 9111 §5.2.1.4–§5.2.1.7: request boolean directives.
#[test]
fn req_booleans() {
    let d = req_cc("no-cache, no-store, only-if-cached, no-transform");
    assert!(d.no_cache && d.no_store && d.only_if_cached && d.no_transform);
}

/// RFC 9111 §5.4: Pragma: no-cache counts as no-cache when there is no Cache-Control.
#[test]
fn req_pragma_no_cache() {
    let d = RequestDirectives::from_headers(&hdrs(&[("Pragma", "no-cache")]));
    assert!(d.no_cache);
}

/// RFC 9111 §5.4: Pragma is ignored when Cache-Control is present.
#[test]
fn req_pragma_ignored_with_cache_control() {
    let d = RequestDirectives::from_headers(&hdrs(&[
        ("Pragma", "no-cache"),
        ("Cache-Control", "max-age=5"),
    ]));
    assert!(!d.no_cache);
}

/// RFC 5861 §4: stale-if-error in a request.
#[test]
fn req_stale_if_error() {
    assert_eq!(req_cc("stale-if-error=60").stale_if_error, Some(60));
}

// ---------------------------------------------------------------------------------------
// Targeted fields (RFC 9213)
// ---------------------------------------------------------------------------------------

/// RFC 9213 §2.1: CDN-Cache-Control replaces Cache-Control for the CDN.
#[test]
fn targeted_cdn_cache_control_wins() {
    assert_eq!(
        lifetime_secs(&[
            ("Cache-Control", "max-age=10"),
            ("CDN-Cache-Control", "max-age=600")
        ]),
        600
    );
}

/// RFC 9213 §2.1: the cache's own targeted field outranks CDN-Cache-Control.
#[test]
fn targeted_own_field_outranks_cdn() {
    assert_eq!(
        lifetime_secs(&[
            ("CDN-Cache-Control", "max-age=600"),
            ("Edgecache-Cache-Control", "max-age=30"),
        ]),
        30
    );
}

/// RFC 9213 §2.1: with a valid targeted field, Expires is ignored too.
#[test]
fn targeted_field_ignores_expires() {
    let f = lifetime(
        200,
        &[
            ("Date", &date(0)),
            ("Expires", &date(1000)),
            ("CDN-Cache-Control", "public"),
        ],
    );
    assert_ne!(f.source, FreshnessSource::Expires);
}

/// RFC 9213 §2.1: an invalid targeted field is ignored and Cache-Control applies.
#[test]
fn targeted_invalid_field_falls_back() {
    assert_eq!(
        lifetime_secs(&[
            ("Cache-Control", "max-age=10"),
            ("CDN-Cache-Control", "%%%")
        ]),
        10
    );
}

/// RFC 9213 §2.1: no-store in the targeted field stops the CDN storing, whatever
/// Cache-Control says.
#[test]
fn targeted_no_store() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[
                ("Cache-Control", "max-age=60"),
                ("CDN-Cache-Control", "no-store")
            ]
        ),
        Err(NotStorable::ResponseNoStore)
    );
}

/// RFC 9213 §2.1 (example): `Cache-Control: no-store` with `CDN-Cache-Control: max-age`
/// is stored by the CDN only.
#[test]
fn targeted_allows_cdn_storage_of_downstream_no_store() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[
                ("Cache-Control", "no-store"),
                ("CDN-Cache-Control", "max-age=60")
            ]
        ),
        Ok(())
    );
}

/// Surrogate-Control (Edge Architecture 1.0): max-age=N+M gives freshness N and a stale
/// window M.
#[test]
fn targeted_surrogate_control_plus() {
    let (d, _) = shared_cache_directives(
        &hdrs(&[
            ("Surrogate-Control", "max-age=30+600"),
            ("Cache-Control", "no-cache"),
        ]),
        &DEFAULT_TARGETED_FIELDS,
    );
    assert_eq!(
        (d.max_age, d.stale_if_error, d.no_cache),
        (Some(30), Some(600), None)
    );
}

/// RFC 9213 §2.1: with no targeted list configured, only Cache-Control counts.
#[test]
fn targeted_none_configured() {
    let config = PolicyConfig {
        targeted_fields: vec![],
        ..cfg()
    };
    assert_eq!(
        lifetime_with(
            200,
            &[
                ("Cache-Control", "max-age=10"),
                ("CDN-Cache-Control", "max-age=600")
            ],
            &config
        )
        .lifetime_secs,
        10
    );
}

// ---------------------------------------------------------------------------------------
// Freshness lifetime (RFC 9111 §4.2.1, §4.2.2, §5.3)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4.2.1: s-maxage takes precedence over max-age in a shared cache.
#[test]
fn fresh_s_maxage_over_max_age() {
    let f = lifetime(200, &[("Cache-Control", "max-age=10, s-maxage=100")]);
    assert_eq!((f.lifetime_secs, f.source), (100, FreshnessSource::SMaxAge));
}

/// RFC 9111 §4.2.1: max-age takes precedence over Expires.
#[test]
fn fresh_max_age_over_expires() {
    let f = lifetime(
        200,
        &[
            ("Cache-Control", "max-age=10"),
            ("Date", &date(0)),
            ("Expires", &date(1000)),
        ],
    );
    assert_eq!((f.lifetime_secs, f.source), (10, FreshnessSource::MaxAge));
}

/// RFC 9111 §4.2.1: Expires minus Date.
#[test]
fn fresh_expires_minus_date() {
    let f = lifetime(200, &[("Date", &date(0)), ("Expires", &date(300))]);
    assert_eq!((f.lifetime_secs, f.source), (300, FreshnessSource::Expires));
}

/// RFC 9111 §4.2.1: Expires relative to Date even when Date is not now.
#[test]
fn fresh_expires_uses_date_not_receipt() {
    assert_eq!(
        lifetime_secs(&[("Date", &date(-100)), ("Expires", &date(200))]),
        300
    );
}

/// RFC 9110 §6.6.1, RFC 9111 §4.2.1: without Date, the receipt time stands in for it.
#[test]
fn fresh_expires_without_date() {
    assert_eq!(lifetime_secs(&[("Expires", &date(120))]), 120);
}

/// RFC 9111 §5.3: an invalid Expires, especially `0`, is in the past.
#[test]
fn fresh_expires_zero_is_past() {
    let f = lifetime(200, &[("Date", &date(0)), ("Expires", "0")]);
    assert_eq!((f.lifetime_secs, f.source), (0, FreshnessSource::Expires));
}

/// RFC 9111 §5.3: an Expires before Date gives no freshness.
#[test]
fn fresh_expires_before_date() {
    assert_eq!(
        lifetime_secs(&[("Date", &date(0)), ("Expires", &date(-60))]),
        0
    );
}

/// RFC 9111 §4.2.1: two Expires lines are invalid freshness information: stale.
#[test]
fn fresh_expires_twice_is_stale() {
    assert_eq!(
        lifetime_secs(&[
            ("Date", &date(0)),
            ("Expires", &date(60)),
            ("Expires", &date(60))
        ]),
        0
    );
}

/// RFC 9111 §4.2.2: heuristic freshness is 10% of the time since Last-Modified.
#[test]
fn fresh_heuristic_ten_percent() {
    let f = lifetime(
        200,
        &[("Date", &date(0)), ("Last-Modified", &date(-10_000))],
    );
    assert_eq!(
        (f.lifetime_secs, f.source),
        (1_000, FreshnessSource::Heuristic)
    );
}

/// RFC 9111 §4.2.2: the heuristic is bounded by configuration.
#[test]
fn fresh_heuristic_capped() {
    let f = lifetime(
        200,
        &[("Date", &date(0)), ("Last-Modified", &date(-100_000_000))],
    );
    assert_eq!(f.lifetime_secs, u64::from(cfg().heuristic_max_secs));
}

/// RFC 9111 §4.2.2: no heuristic for a status that is not heuristically cacheable.
#[test]
fn fresh_no_heuristic_for_302() {
    let f = lifetime(
        302,
        &[("Date", &date(0)), ("Last-Modified", &date(-10_000))],
    );
    assert_eq!((f.lifetime_secs, f.source), (0, FreshnessSource::None));
}

/// RFC 9111 §4.2.2: no heuristic for 500 responses either.
#[test]
fn fresh_no_heuristic_for_500() {
    assert_eq!(
        lifetime(
            500,
            &[("Date", &date(0)), ("Last-Modified", &date(-10_000))]
        )
        .lifetime_secs,
        0
    );
}

/// RFC 9111 §4.2.2: `public` makes a response heuristically cacheable whatever its status.
#[test]
fn fresh_heuristic_with_public() {
    let f = lifetime(
        302,
        &[
            ("Cache-Control", "public"),
            ("Date", &date(0)),
            ("Last-Modified", &date(-10_000)),
        ],
    );
    assert_eq!(f.lifetime_secs, 1_000);
}

/// RFC 9111 §4.2.2: heuristically cacheable 404 gets heuristic freshness.
#[test]
fn fresh_heuristic_for_404() {
    assert_eq!(
        lifetime(404, &[("Date", &date(0)), ("Last-Modified", &date(-500))]).lifetime_secs,
        50
    );
}

/// RFC 9111 §4.2.2: a Last-Modified after Date gives no heuristic freshness.
#[test]
fn fresh_heuristic_future_last_modified() {
    assert_eq!(
        lifetime_secs(&[("Date", &date(0)), ("Last-Modified", &date(100))]),
        0
    );
}

/// RFC 9111 §4.2.2: without Last-Modified and with no default TTL, no freshness.
#[test]
fn fresh_nothing() {
    let f = lifetime(200, &[("Date", &date(0))]);
    assert_eq!((f.lifetime_secs, f.source), (0, FreshnessSource::None));
}

/// RFC 9111 §4.2.2 (out-of-band configuration): a default TTL for heuristically cacheable
/// responses.
#[test]
fn fresh_default_ttl() {
    let config = PolicyConfig {
        default_ttl_secs: 42,
        ..cfg()
    };
    let f = lifetime_with(200, &[("Date", &date(0))], &config);
    assert_eq!(
        (f.lifetime_secs, f.source),
        (42, FreshnessSource::DefaultTtl)
    );
    assert_eq!(lifetime_with(302, &[], &config).lifetime_secs, 0);
}

/// RFC 9111 §4.2.1: max-age=0 is explicit zero freshness.
#[test]
fn fresh_max_age_zero() {
    let f = lifetime(200, &[("Cache-Control", "max-age=0")]);
    assert!(f.is_explicit());
    assert_eq!(f.lifetime_secs, 0);
}

/// RFC 9111 §1.2.2: capped max-age does not overflow freshness arithmetic.
#[test]
fn fresh_max_age_huge_no_overflow() {
    let e = stored(&[("Cache-Control", "max-age=99999999999")]);
    let ev = eval(&e, &[], 1_000_000);
    assert_eq!(ev.reuse, Reuse::Fresh);
    assert!(ev.ttl_secs > 0);
}

// ---------------------------------------------------------------------------------------
// Age (RFC 9111 §4.2.3, §5.1)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4.2.3: with no Date or Age, age is the resident time.
#[test]
fn age_resident_time_only() {
    assert_eq!(age(&[], 0, 0, 25), 25);
}

/// RFC 9111 §4.2.3: the Age header adds to the age.
#[test]
fn age_header_added() {
    assert_eq!(age(&[("Age", "100")], 0, 0, 10), 110);
}

/// RFC 9111 §4.2.3: the apparent age from a Date in the past counts.
#[test]
fn age_apparent_from_date() {
    assert_eq!(age(&[("Date", &date(-50))], 0, 0, 0), 50);
}

/// RFC 9111 §4.2.3: a Date in the future (clock skew) gives apparent age 0, not negative.
#[test]
fn age_future_date_skew() {
    assert_eq!(age(&[("Date", &date(3600))], 0, 0, 5), 5);
}

/// RFC 9111 §4.2.3: the response delay is added to the Age value.
#[test]
fn age_response_delay() {
    assert_eq!(age(&[("Age", "10")], 0, 4, 4), 14);
}

/// RFC 9111 §4.2.3: corrected initial age is the larger of apparent and corrected Age.
#[test]
fn age_max_of_apparent_and_corrected() {
    assert_eq!(age(&[("Age", "10"), ("Date", &date(-100))], 0, 0, 0), 100);
    assert_eq!(age(&[("Age", "300"), ("Date", &date(-100))], 0, 0, 0), 300);
}

/// RFC 9111 §4.2.3 with skewed Date: a Date far ahead and a real Age still yields Age.
#[test]
fn age_skewed_date_with_age() {
    assert_eq!(age(&[("Age", "30"), ("Date", &date(600))], 0, 0, 10), 40);
}

/// RFC 9111 §5.1: an invalid Age (non-numeric, negative, decimal, with parameters) is
/// ignored: the age is as if there were no Age field.
#[test]
fn age_invalid_ignored() {
    for bad in ["abc", "-7200", "7200.0", "7200;foo=bar", "7200;foo=111"] {
        assert_eq!(age(&[("Age", bad)], 0, 0, 5), 5, "{bad:?}");
    }
}

/// RFC 9111 §5.1: a list-valued Age uses its first member.
#[test]
fn age_list_first_member() {
    assert_eq!(age(&[("Age", "0, 7200")], 0, 0, 0), 0);
    assert_eq!(age(&[("Age", "7200, 0")], 0, 0, 0), 7200);
    assert_eq!(age(&[("Age", "0, 0")], 0, 0, 0), 0);
}

/// RFC 9111 §5.1: several Age lines form one list: the first line counts.
#[test]
fn age_two_lines_first() {
    assert_eq!(age(&[("Age", "0"), ("Age", "7200")], 0, 0, 0), 0);
    assert_eq!(age(&[("Age", "7200"), ("Age", "0")], 0, 0, 0), 7200);
}

/// RFC 9111 §1.2.2: an enormous Age is capped, not overflowed.
#[test]
fn age_overflow_capped() {
    assert_eq!(
        age(&[("Age", "999999999999999999999")], 0, 0, 0),
        u64::from(DELTA_SECONDS_CAP)
    );
}

/// RFC 9111 §5.1: an invalid Age does not make an otherwise fresh response stale.
#[test]
fn age_invalid_stays_fresh() {
    for bad in ["abc", "-7200", "7200.0", "7200;foo=bar"] {
        assert_eq!(
            reuse(&[("Cache-Control", "max-age=3600"), ("Age", bad)], &[], 0),
            Reuse::Fresh,
            "{bad:?}"
        );
    }
}

/// RFC 9111 §4.2.3, §5.1: the first member of a list-valued Age decides freshness (the
/// suite's age-parse-prefix, -suffix, -prefix-twoline and -suffix-twoline).
#[test]
fn age_list_decides_freshness() {
    let stale = Reuse::Revalidate(RevalidateReason::Stale);
    let cc = ("Cache-Control", "max-age=3600");
    assert_eq!(reuse(&[cc, ("Age", "0, 7200")], &[], 0), Reuse::Fresh);
    assert_eq!(reuse(&[cc, ("Age", "7200, 0")], &[], 0), stale);
    assert_eq!(
        reuse(&[cc, ("Age", "0"), ("Age", "7200")], &[], 0),
        Reuse::Fresh
    );
    assert_eq!(reuse(&[cc, ("Age", "7200"), ("Age", "0")], &[], 0), stale);
}

/// RFC 9111 §4.2.3: an Age larger than max-age makes the response stale on arrival.
#[test]
fn age_older_than_max_age() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=3600"), ("Age", "7200")],
            &[],
            0
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

// ---------------------------------------------------------------------------------------
// Storing responses (RFC 9111 §3, §3.5)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §3: a GET 200 with max-age may be stored.
#[test]
fn store_get_200() {
    assert_eq!(
        can_store("GET", &[], 200, &[("Cache-Control", "max-age=60")]),
        Ok(())
    );
}

/// RFC 9111 §3: POST responses are not stored by this cache.
#[test]
fn store_post_refused() {
    assert_eq!(
        can_store("POST", &[], 200, &[("Cache-Control", "max-age=60")]),
        Err(NotStorable::Method)
    );
}

/// RFC 9111 §3, RFC 9110 §9.3.2: HEAD responses are not stored (GET ones answer HEAD).
#[test]
fn store_head_refused() {
    assert_eq!(
        can_store("HEAD", &[], 200, &[("Cache-Control", "max-age=60")]),
        Err(NotStorable::Method)
    );
}

/// RFC 9111 §3: only final responses; 1xx are never stored.
#[test]
fn store_1xx_refused() {
    assert_eq!(
        can_store("GET", &[], 103, &[("Cache-Control", "max-age=60")]),
        Err(NotStorable::Status)
    );
}

/// RFC 9111 §3.3: partial content is stored (as an incomplete response) only when it is
/// one range of known complete length whose `Content-Length` is the range's.
#[test]
fn store_206_only_as_one_exact_range() {
    let partial = |range: &str, length: &str| {
        can_store(
            "GET",
            &[],
            206,
            &[
                ("Cache-Control", "max-age=60"),
                ("Content-Range", range),
                ("Content-Length", length),
            ],
        )
    };
    assert_eq!(partial("bytes 4-9/10", "6"), Ok(()));
    assert_eq!(partial("bytes 4-9/10", "5"), Err(NotStorable::ContentRange));
    assert_eq!(partial("bytes */10", "0"), Err(NotStorable::ContentRange));
    assert_eq!(partial("bytes 4-9/*", "6"), Err(NotStorable::ContentRange));
    assert_eq!(
        can_store("GET", &[], 206, &[("Cache-Control", "max-age=60")]),
        Err(NotStorable::ContentRange)
    );
    assert_eq!(
        can_store(
            "GET",
            &[],
            206,
            &[
                ("Cache-Control", "max-age=60, no-store"),
                ("Content-Range", "bytes 4-9/10"),
                ("Content-Length", "6"),
            ],
        ),
        Err(NotStorable::ResponseNoStore),
        "and by every other rule"
    );
}

/// RFC 9111 §5.2.1.5: request no-store forbids storing the response.
#[test]
fn store_request_no_store() {
    assert_eq!(
        can_store(
            "GET",
            &[("Cache-Control", "no-store")],
            200,
            &[("Cache-Control", "max-age=60")]
        ),
        Err(NotStorable::RequestNoStore)
    );
}

/// RFC 9111 §5.2.2.5: response no-store forbids storing.
#[test]
fn store_response_no_store() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60, no-store")]
        ),
        Err(NotStorable::ResponseNoStore)
    );
}

/// RFC 9111 §5.2.2.3: must-understand with an understood status overrides no-store.
#[test]
fn store_must_understand_overrides_no_store() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60, no-store, must-understand")]
        ),
        Ok(())
    );
}

/// RFC 9111 §5.2.2.3: must-understand with a status the cache does not understand: not stored.
#[test]
fn store_must_understand_unknown_status() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            299,
            &[("Cache-Control", "max-age=60, no-store, must-understand")]
        ),
        Err(NotStorable::Status)
    );
}

/// RFC 9111 §5.2.2.7: unqualified private forbids a shared cache to store.
#[test]
fn store_private_refused() {
    assert_eq!(
        can_store("GET", &[], 200, &[("Cache-Control", "private, max-age=60")]),
        Err(NotStorable::Private)
    );
}

/// RFC 9111 §5.2.2.7: qualified private allows storing without the listed fields.
#[test]
fn store_private_qualified_strips_field() {
    let response = [
        ("Cache-Control", "private=\"x-user\", max-age=60"),
        ("X-User", "alice"),
    ];
    assert_eq!(can_store("GET", &[], 200, &response), Ok(()));
    let e = stored(&response);
    assert!(!e.headers.contains("x-user"));
}

/// RFC 9111 §3.5: a request with Authorization is not stored without an explicit allowance.
#[test]
fn store_authorization_refused() {
    assert_eq!(
        can_store(
            "GET",
            &[("Authorization", "Bearer x")],
            200,
            &[("Cache-Control", "max-age=60")]
        ),
        Err(NotStorable::Authorization)
    );
}

/// RFC 9111 §3.5: `public` allows storing an authorized response.
#[test]
fn store_authorization_public() {
    assert_eq!(
        can_store(
            "GET",
            &[("Authorization", "Bearer x")],
            200,
            &[("Cache-Control", "public, max-age=60")]
        ),
        Ok(())
    );
}

/// RFC 9111 §3.5: `must-revalidate` allows storing an authorized response.
#[test]
fn store_authorization_must_revalidate() {
    assert_eq!(
        can_store(
            "GET",
            &[("Authorization", "Bearer x")],
            200,
            &[("Cache-Control", "max-age=60, must-revalidate")]
        ),
        Ok(())
    );
}

/// RFC 9111 §3.5: `s-maxage` allows storing an authorized response.
#[test]
fn store_authorization_s_maxage() {
    assert_eq!(
        can_store(
            "GET",
            &[("Authorization", "Bearer x")],
            200,
            &[("Cache-Control", "s-maxage=60")]
        ),
        Ok(())
    );
}

/// RFC 9111 §3.5: the Authorization field name is case-insensitive.
#[test]
fn store_authorization_case_insensitive() {
    assert_eq!(
        can_store(
            "GET",
            &[("AUTHORIZATION", "Basic eA==")],
            200,
            &[("Cache-Control", "max-age=60")]
        ),
        Err(NotStorable::Authorization)
    );
}

/// RFC 9111 §7.3: Set-Cookie responses are not stored by default.
#[test]
fn store_set_cookie_refused_by_default() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")]
        ),
        Err(NotStorable::SetCookie)
    );
}

/// RFC 9111 §7.3: the obsolete Set-Cookie2 is treated the same way.
#[test]
fn store_set_cookie2_refused() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60"), ("Set-Cookie2", "a=b")]
        ),
        Err(NotStorable::SetCookie)
    );
}

/// RFC 9111 §3: Set-Cookie responses may be stored when configured to.
#[test]
fn store_set_cookie_when_configured() {
    let config = PolicyConfig {
        store_set_cookie: true,
        ..cfg()
    };
    assert_eq!(
        can_store_with(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")],
            &config
        ),
        Ok(())
    );
}

/// RFC 9111 §4.1: Vary: * can never be matched, so it is not stored.
#[test]
fn store_vary_star_refused() {
    assert_eq!(
        can_store(
            "GET",
            &[],
            200,
            &[("Cache-Control", "max-age=60"), ("Vary", "Accept, *")]
        ),
        Err(NotStorable::VaryStar)
    );
}

/// RFC 9111 §3: a 302 without explicit freshness is not cacheable.
#[test]
fn store_302_without_freshness() {
    assert_eq!(
        can_store("GET", &[], 302, &[]),
        Err(NotStorable::NoFreshnessInformation)
    );
}

/// RFC 9111 §3: any final status with explicit freshness may be stored.
#[test]
fn store_302_with_max_age() {
    assert_eq!(
        can_store("GET", &[], 302, &[("Cache-Control", "max-age=60")]),
        Ok(())
    );
}

/// RFC 9111 §3: Expires counts as explicit freshness.
#[test]
fn store_500_with_expires() {
    assert_eq!(
        can_store("GET", &[], 500, &[("Expires", &date(60))]),
        Ok(())
    );
}

/// RFC 9111 §3: a heuristically cacheable status needs no explicit freshness.
#[test]
fn store_200_without_freshness() {
    assert_eq!(can_store("GET", &[], 200, &[]), Ok(()));
}

/// RFC 9111 §3: 201 is not heuristically cacheable.
#[test]
fn store_201_without_freshness() {
    assert_eq!(
        can_store("GET", &[], 201, &[]),
        Err(NotStorable::NoFreshnessInformation)
    );
}

/// RFC 9111 §3, RFC 9110 §15.1: 404, 410 and 501 are heuristically cacheable.
#[test]
fn store_heuristic_error_statuses() {
    for status in [404, 405, 410, 414, 501] {
        assert_eq!(can_store("GET", &[], status, &[]), Ok(()), "{status}");
    }
}

/// RFC 9111 §3: `public` alone makes a response cacheable.
#[test]
fn store_public_only() {
    assert_eq!(
        can_store("GET", &[], 307, &[("Cache-Control", "public")]),
        Ok(())
    );
}

/// RFC 9111 §3 (reasons): every refusal names its RFC section.
#[test]
fn store_reasons_cite_sections() {
    assert_eq!(NotStorable::Authorization.rfc_section(), "RFC 9111 §3.5");
    assert_eq!(NotStorable::Private.as_str(), "private");
}

// ---------------------------------------------------------------------------------------
// Reuse: freshness and stale serving (RFC 9111 §4, §4.2.4, §5.2; RFC 5861)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4.2: a fresh response is reused.
#[test]
fn reuse_fresh() {
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60")], &[], 30),
        Reuse::Fresh
    );
}

/// RFC 9111 §4.2: a stale response without stale allowances needs validation.
#[test]
fn reuse_stale_needs_validation() {
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60")], &[], 61),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §4.2: fresh means freshness_lifetime > current_age; equal is stale.
#[test]
fn reuse_boundary_is_stale() {
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60")], &[], 59),
        Reuse::Fresh
    );
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60")], &[], 60),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 5861 §3: stale within stale-while-revalidate is served while revalidating.
#[test]
fn reuse_swr_inside_window() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60, stale-while-revalidate=30")],
            &[],
            80
        ),
        Reuse::StaleWhileRevalidate
    );
}

/// RFC 5861 §3: the window includes its last second.
#[test]
fn reuse_swr_window_edge() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60, stale-while-revalidate=30")],
            &[],
            90
        ),
        Reuse::StaleWhileRevalidate
    );
}

/// RFC 5861 §3: past the window, validation is required.
#[test]
fn reuse_swr_past_window() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60, stale-while-revalidate=30")],
            &[],
            91
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §5.2.2.2: must-revalidate forbids serving stale, SWR included.
#[test]
fn reuse_must_revalidate_blocks_swr() {
    assert_eq!(
        reuse(
            &[(
                "Cache-Control",
                "max-age=60, stale-while-revalidate=30, must-revalidate"
            )],
            &[],
            70
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §5.2.2.8: proxy-revalidate forbids a shared cache to serve stale.
#[test]
fn reuse_proxy_revalidate_blocks_swr() {
    assert_eq!(
        reuse(
            &[(
                "Cache-Control",
                "max-age=60, stale-while-revalidate=30, proxy-revalidate"
            )],
            &[],
            70
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §5.2.2.10: s-maxage implies proxy-revalidate for a shared cache.
#[test]
fn reuse_s_maxage_implies_proxy_revalidate() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "s-maxage=60, stale-while-revalidate=30")],
            &[],
            70
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
    let e = stored(&[("Cache-Control", "s-maxage=60, stale-if-error=300")]);
    assert!(!eval(&e, &[], 70).stale_if_error);
}

/// RFC 9111 §5.2.2.4: response no-cache requires validation even when fresh.
#[test]
fn reuse_response_no_cache() {
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60, no-cache")], &[], 1),
        Reuse::Revalidate(RevalidateReason::ResponseNoCache)
    );
}

/// RFC 9111 §5.2.2.4: qualified no-cache only removes the named fields; the rest is reused.
#[test]
fn reuse_qualified_no_cache_reused_without_field() {
    let e = stored(&[
        ("Cache-Control", "max-age=60, no-cache=\"x-secret\""),
        ("X-Secret", "1"),
    ]);
    assert_eq!(eval(&e, &[], 1).reuse, Reuse::Fresh);
    assert!(!e.headers.contains("x-secret"));
}

/// RFC 9111 §5.2.1.4: request no-cache requires validation.
#[test]
fn reuse_request_no_cache() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "no-cache")],
            1
        ),
        Reuse::Revalidate(RevalidateReason::RequestNoCache)
    );
}

/// RFC 9111 §5.4: Pragma: no-cache in a request without Cache-Control.
#[test]
fn reuse_request_pragma() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Pragma", "no-cache")],
            1
        ),
        Reuse::Revalidate(RevalidateReason::RequestNoCache)
    );
}

/// RFC 9111 §5.2.1.1: request max-age=0 forces validation.
#[test]
fn reuse_request_max_age_zero() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "max-age=0")],
            1
        ),
        Reuse::Revalidate(RevalidateReason::RequestFreshness)
    );
}

/// RFC 9111 §5.2.1.1: a request max-age larger than the age accepts the response.
#[test]
fn reuse_request_max_age_ok() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "max-age=30")],
            10
        ),
        Reuse::Fresh
    );
}

/// RFC 9111 §5.2.1.3: min-fresh beyond the remaining freshness forces validation.
#[test]
fn reuse_request_min_fresh_too_much() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "min-fresh=40")],
            30
        ),
        Reuse::Revalidate(RevalidateReason::RequestFreshness)
    );
}

/// RFC 9111 §5.2.1.3: min-fresh within the remaining freshness is fine.
#[test]
fn reuse_request_min_fresh_ok() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "min-fresh=20")],
            30
        ),
        Reuse::Fresh
    );
}

/// RFC 9111 §5.2.1.2: max-stale without a value accepts any stale response.
#[test]
fn reuse_max_stale_any() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60")],
            &[("Cache-Control", "max-stale")],
            10_000
        ),
        Reuse::StaleAcceptedByRequest
    );
}

/// RFC 9111 §5.2.1.2: max-stale=N accepts staleness up to N seconds.
#[test]
fn reuse_max_stale_bounded() {
    let response = [("Cache-Control", "max-age=60")];
    assert_eq!(
        reuse(&response, &[("Cache-Control", "max-stale=30")], 90),
        Reuse::StaleAcceptedByRequest
    );
    assert_eq!(
        reuse(&response, &[("Cache-Control", "max-stale=30")], 91),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §5.2.2.2: must-revalidate overrides a client's max-stale.
#[test]
fn reuse_max_stale_vs_must_revalidate() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60, must-revalidate")],
            &[("Cache-Control", "max-stale")],
            70
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 5861 §3 with RFC 9111 §5.2.1.1: a request max-age the response exceeds is not served
/// from the SWR window (the client asked for something fresher).
#[test]
fn reuse_swr_not_for_request_max_age() {
    assert_eq!(
        reuse(
            &[("Cache-Control", "max-age=60, stale-while-revalidate=30")],
            &[("Cache-Control", "max-age=10")],
            70
        ),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 5861 §4: within stale-if-error, a failed validation may serve the stale response.
#[test]
fn reuse_stale_if_error_inside() {
    let e = stored(&[("Cache-Control", "max-age=60, stale-if-error=300")]);
    let ev = eval(&e, &[], 200);
    assert_eq!(ev.reuse, Reuse::Revalidate(RevalidateReason::Stale));
    assert!(ev.stale_if_error);
}

/// RFC 5861 §4: past stale-if-error, errors are passed on.
#[test]
fn reuse_stale_if_error_outside() {
    let e = stored(&[("Cache-Control", "max-age=60, stale-if-error=300")]);
    assert!(!eval(&e, &[], 361).stale_if_error);
}

/// RFC 9111 §4.2.4: without any allowance, stale responses are not served on error.
#[test]
fn reuse_no_stale_if_error_by_default() {
    let e = stored(&[("Cache-Control", "max-age=60")]);
    assert!(!eval(&e, &[], 60).stale_if_error);
    assert!(!eval(&e, &[], 61).stale_if_error);
}

/// RFC 9111 §5.2.2.2: must-revalidate forbids stale-if-error.
#[test]
fn reuse_stale_if_error_vs_must_revalidate() {
    let e = stored(&[(
        "Cache-Control",
        "max-age=60, stale-if-error=300, must-revalidate",
    )]);
    assert!(!eval(&e, &[], 100).stale_if_error);
}

/// RFC 5861 §4: a request's stale-if-error allows serving stale on error.
#[test]
fn reuse_request_stale_if_error() {
    let e = stored(&[("Cache-Control", "max-age=60")]);
    assert!(eval(&e, &[("Cache-Control", "stale-if-error=100")], 150).stale_if_error);
    assert!(!eval(&e, &[("Cache-Control", "stale-if-error=100")], 170).stale_if_error);
}

/// RFC 9111 §4.2.4 (out-of-band configuration): a default stale-if-error window.
#[test]
fn reuse_default_stale_if_error() {
    let config = PolicyConfig {
        default_stale_if_error_secs: 3600,
        ..cfg()
    };
    let e = stored(&[("Cache-Control", "max-age=60")]);
    assert!(evaluate(&Headers::new(), &e, t(1000), &config).stale_if_error);
}

/// RFC 5861 §3 (configured default): a default SWR window applies when the origin sets none.
#[test]
fn reuse_default_swr() {
    let config = PolicyConfig {
        default_stale_while_revalidate_secs: 30,
        ..cfg()
    };
    let e = stored(&[("Cache-Control", "max-age=60")]);
    assert_eq!(
        evaluate(&Headers::new(), &e, t(70), &config).reuse,
        Reuse::StaleWhileRevalidate
    );
}

/// RFC 5861 §3: the origin's own SWR window wins over the configured default.
#[test]
fn reuse_origin_swr_overrides_default() {
    let config = PolicyConfig {
        default_stale_while_revalidate_secs: 300,
        ..cfg()
    };
    let e = stored(&[("Cache-Control", "max-age=60, stale-while-revalidate=5")]);
    assert_eq!(
        evaluate(&Headers::new(), &e, t(70), &config).reuse,
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §4.2.4 (soft purge): an invalidated entry is never fresh.
#[test]
fn reuse_invalidated_not_fresh() {
    let mut e = stored(&[("Cache-Control", "max-age=600")]);
    e.invalidated = true;
    assert_eq!(
        eval(&e, &[], 10).reuse,
        Reuse::Revalidate(RevalidateReason::Invalidated)
    );
}

/// RFC 5861 §3 (soft purge): an invalidated entry with SWR is served while revalidating.
#[test]
fn reuse_invalidated_with_swr() {
    let mut e = stored(&[("Cache-Control", "max-age=600, stale-while-revalidate=60")]);
    e.invalidated = true;
    assert_eq!(eval(&e, &[], 10).reuse, Reuse::StaleWhileRevalidate);
}

/// RFC 9211 §2.4: ttl is remaining freshness, negative once stale.
#[test]
fn reuse_ttl_sign() {
    let e = stored(&[("Cache-Control", "max-age=60")]);
    assert_eq!(eval(&e, &[], 10).ttl_secs, 50);
    assert_eq!(eval(&e, &[], 75).ttl_secs, -15);
}

/// RFC 9111 §5.1: the age reported is the current age.
#[test]
fn reuse_age_reported() {
    let e = stored(&[("Cache-Control", "max-age=60"), ("Age", "5")]);
    assert_eq!(eval(&e, &[], 10).age_secs, 15);
}

/// RFC 8246: immutable does not extend freshness for a shared cache.
#[test]
fn reuse_immutable_still_expires() {
    assert_eq!(
        reuse(&[("Cache-Control", "max-age=60, immutable")], &[], 61),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §4.2.2: heuristic freshness is honoured on reuse.
#[test]
fn reuse_heuristic() {
    let response = [("Date", &*date(0)), ("Last-Modified", &*date(-1000))];
    assert_eq!(reuse(&response, &[], 50), Reuse::Fresh);
    assert_eq!(
        reuse(&response, &[], 150),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

/// RFC 9111 §4.2.1: Expires-based freshness is honoured on reuse.
#[test]
fn reuse_expires() {
    let response = [("Date", &*date(0)), ("Expires", &*date(100))];
    assert_eq!(reuse(&response, &[], 99), Reuse::Fresh);
    assert_eq!(
        reuse(&response, &[], 100),
        Reuse::Revalidate(RevalidateReason::Stale)
    );
}

// ---------------------------------------------------------------------------------------
// Vary (RFC 9111 §4.1)
// ---------------------------------------------------------------------------------------

fn vary_entry(vary: &str, request: &[(&str, &str)]) -> CachedResponse {
    stored_for(
        request,
        200,
        &[("Cache-Control", "max-age=60"), ("Vary", vary)],
    )
}

fn vary_ok(entry: &CachedResponse, request: &[(&str, &str)]) -> bool {
    matches(&entry.headers, &entry.vary, &hdrs(request))
}

/// RFC 9111 §4.1: identical selecting header values match.
#[test]
fn vary_same_value_matches() {
    let e = vary_entry("Accept-Encoding", &[("Accept-Encoding", "gzip")]);
    assert!(vary_ok(&e, &[("Accept-Encoding", "gzip")]));
    assert_eq!(
        eval(&e, &[("Accept-Encoding", "gzip")], 1).reuse,
        Reuse::Fresh
    );
}

/// RFC 9111 §4.1: different values do not match.
#[test]
fn vary_different_value_mismatch() {
    let e = vary_entry("Accept-Encoding", &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        eval(&e, &[("Accept-Encoding", "br")], 1).reuse,
        Reuse::VaryMismatch
    );
}

/// RFC 9111 §4.1 (normalisation), RFC 9110 §8.4.1: content codings are case-insensitive.
#[test]
fn vary_case_insensitive_tokens() {
    let e = vary_entry("Accept-Encoding", &[("Accept-Encoding", "GZIP, Deflate")]);
    assert!(vary_ok(&e, &[("Accept-Encoding", "gzip, deflate")]));
}

/// RFC 9111 §4.1 (normalisation), RFC 9110 §5.6.1: whitespace around list members.
#[test]
fn vary_whitespace_normalised() {
    let e = vary_entry("Accept-Language", &[("Accept-Language", "en-US,fr;q=0.5")]);
    assert!(vary_ok(
        &e,
        &[("Accept-Language", "  en-US ,   fr ; q=0.5 ")]
    ));
}

/// RFC 9111 §4.1, RFC 9110 §5.3: several field lines equal one combined line.
#[test]
fn vary_multiple_lines_combined() {
    let e = vary_entry("Accept", &[("Accept", "text/html, application/json")]);
    assert!(vary_ok(
        &e,
        &[("Accept", "text/html"), ("Accept", "application/json")]
    ));
}

/// RFC 9111 §4.1: a field absent from both requests matches.
#[test]
fn vary_absent_in_both() {
    let e = vary_entry("X-Flavour", &[]);
    assert!(vary_ok(&e, &[]));
}

/// RFC 9111 §4.1: absent in one and present in the other does not match.
#[test]
fn vary_absent_vs_present() {
    let e = vary_entry("X-Flavour", &[]);
    assert!(!vary_ok(&e, &[("X-Flavour", "mint")]));
    let e = vary_entry("X-Flavour", &[("X-Flavour", "mint")]);
    assert!(!vary_ok(&e, &[]));
}

/// RFC 9111 §4.1: an empty value is present, not absent.
#[test]
fn vary_empty_vs_absent() {
    let e = vary_entry("X-Flavour", &[("X-Flavour", "")]);
    assert!(!vary_ok(&e, &[]));
    assert!(vary_ok(&e, &[("X-Flavour", " ")]));
}

/// RFC 9111 §4.1: values of unknown fields are case-sensitive.
#[test]
fn vary_custom_field_case_sensitive() {
    let e = vary_entry("X-Flavour", &[("X-Flavour", "Mint")]);
    assert!(!vary_ok(&e, &[("X-Flavour", "mint")]));
}

/// RFC 9111 §4.1, RFC 9110 §5.1: Vary field names are case-insensitive.
#[test]
fn vary_names_case_insensitive() {
    let e = vary_entry("ACCEPT-ENCODING", &[("accept-encoding", "gzip")]);
    assert!(vary_ok(&e, &[("Accept-Encoding", "gzip")]));
}

/// RFC 9111 §4.1: all nominated fields must match.
#[test]
fn vary_several_fields() {
    let e = vary_entry(
        "Accept-Encoding, X-Flavour",
        &[("Accept-Encoding", "gzip"), ("X-Flavour", "a")],
    );
    assert!(vary_ok(
        &e,
        &[("Accept-Encoding", "gzip"), ("X-Flavour", "a")]
    ));
    assert!(!vary_ok(
        &e,
        &[("Accept-Encoding", "gzip"), ("X-Flavour", "b")]
    ));
}

/// RFC 9111 §4.1: Vary: * never matches.
#[test]
fn vary_star_never_matches() {
    let mut e = stored(&[("Cache-Control", "max-age=60")]);
    e.headers.append("vary", "*");
    assert!(!vary_ok(&e, &[]));
}

/// RFC 9111 §4.1: the stored selection records normalised request values.
#[test]
fn vary_select_records_values() {
    let sel = select(
        &hdrs(&[("Vary", "Accept-Encoding, X-None")]),
        &hdrs(&[("Accept-Encoding", " GZIP ")]),
    );
    assert_eq!(sel.get("accept-encoding"), Some(&b"gzip"[..]));
    assert!(!sel.contains("x-none"));
}

/// RFC 9111 §4.1: variant keys are equal for equivalent requests and differ otherwise.
#[test]
fn vary_variant_suffix() {
    let names = vec!["accept-encoding".to_string()];
    let a = variant_suffix(&names, &hdrs(&[("Accept-Encoding", "gzip, br")]));
    let b = variant_suffix(&names, &hdrs(&[("Accept-Encoding", "GZIP,br")]));
    let c = variant_suffix(&names, &hdrs(&[("Accept-Encoding", "br")]));
    let d = variant_suffix(&names, &hdrs(&[]));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(c, d);
}

// ---------------------------------------------------------------------------------------
// Validation (RFC 9111 §4.3)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4.3.1: an ETag becomes If-None-Match.
#[test]
fn cond_etag() {
    let e = stored(&[("ETag", "\"v1\"")]);
    let c = conditional_headers(&e);
    assert_eq!(c.get("if-none-match"), Some(&b"\"v1\""[..]));
    assert!(!c.contains("if-modified-since"));
}

/// RFC 9111 §4.3.1: Last-Modified becomes If-Modified-Since.
#[test]
fn cond_last_modified() {
    let lm = date(-100);
    let e = stored(&[("Last-Modified", &lm)]);
    assert_eq!(
        conditional_headers(&e).get_str("if-modified-since"),
        Some(lm.as_str())
    );
}

/// RFC 9111 §4.3.1: both validators are sent when both exist.
#[test]
fn cond_both() {
    let e = stored(&[("ETag", "W/\"x\""), ("Last-Modified", &date(-100))]);
    let c = conditional_headers(&e);
    assert!(c.contains("if-none-match") && c.contains("if-modified-since"));
}

/// RFC 9111 §4.3.1: no validator, no preconditions.
#[test]
fn cond_none() {
    assert!(conditional_headers(&stored(&[("Cache-Control", "max-age=1")])).is_empty());
}

fn freshened(entry: &CachedResponse, not_modified: &[(&str, &str)], at: u64) -> Freshened {
    freshen(entry, &hdrs(not_modified), t(at), t(at))
}

/// RFC 9111 §4.3.4, §3.2: a 304 updates the stored header fields it carries.
#[test]
fn merge304_updates_fields() {
    let e = stored(&[
        ("Cache-Control", "max-age=1"),
        ("ETag", "\"a\""),
        ("Content-Type", "text/plain"),
    ]);
    let Freshened::Updated(u) = freshened(
        &e,
        &[
            ("ETag", "\"a\""),
            ("Cache-Control", "max-age=3600"),
            ("Content-Type", "text/plain;charset=utf-8"),
        ],
        10,
    ) else {
        panic!("304 should select the stored response");
    };
    assert_eq!(u.headers.get_str("cache-control"), Some("max-age=3600"));
    assert_eq!(
        u.headers.get_str("content-type"),
        Some("text/plain;charset=utf-8")
    );
    assert_eq!(u.body, e.body);
}

/// RFC 9111 §4.3.4: fields the 304 omits keep their stored values.
#[test]
fn merge304_keeps_omitted_fields() {
    let e = stored(&[("ETag", "\"a\""), ("Test-Header", "A")]);
    let Freshened::Updated(u) = freshened(&e, &[("ETag", "\"a\"")], 10) else {
        panic!()
    };
    assert_eq!(u.headers.get_str("test-header"), Some("A"));
}

/// RFC 9111 §3.2: Content-Length (and the fields describing the stored bytes) are not
/// updated by a 304.
#[test]
fn merge304_does_not_update_content_fields() {
    let e = stored(&[
        ("ETag", "\"a\""),
        ("Content-Length", "4"),
        ("Content-Encoding", "gzip"),
    ]);
    let Freshened::Updated(u) = freshened(
        &e,
        &[
            ("ETag", "\"a\""),
            ("Content-Length", "10"),
            ("Content-Encoding", "br"),
        ],
        10,
    ) else {
        panic!()
    };
    assert_eq!(u.headers.get_str("content-length"), Some("4"));
    assert_eq!(u.headers.get_str("content-encoding"), Some("gzip"));
}

/// RFC 9111 §3.1, §3.2: hop-by-hop fields in a 304 are not stored.
#[test]
fn merge304_ignores_hop_by_hop() {
    let e = stored(&[("ETag", "\"a\"")]);
    let Freshened::Updated(u) = freshened(
        &e,
        &[
            ("ETag", "\"a\""),
            ("Connection", "x-hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
        ],
        10,
    ) else {
        panic!()
    };
    assert!(
        !u.headers.contains("x-hop")
            && !u.headers.contains("keep-alive")
            && !u.headers.contains("connection")
    );
}

/// RFC 9111 §4.3.4: a 304 with a different strong validator does not select the response.
#[test]
fn merge304_etag_mismatch() {
    let e = stored(&[("ETag", "\"a\"")]);
    assert_eq!(freshened(&e, &[("ETag", "\"b\"")], 10), Freshened::Mismatch);
}

/// RFC 9111 §4.3.4, RFC 9110 §8.8.3.2: weak validators compare weakly.
#[test]
fn merge304_weak_etag() {
    let e = stored(&[("ETag", "W/\"a\"")]);
    assert!(matches!(
        freshened(&e, &[("ETag", "W/\"a\"")], 10),
        Freshened::Updated(_)
    ));
}

/// RFC 9111 §4.3.4: a different Last-Modified does not select the response.
#[test]
fn merge304_last_modified_mismatch() {
    let e = stored(&[("Last-Modified", &date(-100))]);
    assert_eq!(
        freshened(&e, &[("Last-Modified", &date(-50))], 10),
        Freshened::Mismatch
    );
}

/// RFC 9111 §4.3.4, §4.2.3: freshening restarts the age: the response is fresh again.
#[test]
fn merge304_restarts_age() {
    let e = stored(&[("Cache-Control", "max-age=60"), ("ETag", "\"a\"")]);
    assert_ne!(eval(&e, &[], 100).reuse, Reuse::Fresh);
    let Freshened::Updated(u) = freshened(&e, &[("ETag", "\"a\""), ("Date", &date(100))], 100)
    else {
        panic!()
    };
    assert_eq!(
        evaluate(&Headers::new(), &u, t(110), &cfg()).reuse,
        Reuse::Fresh
    );
}

/// RFC 9110 §6.6.1, RFC 9111 §4.3.4: a `304` without `Date` is dated when it was
/// received, so the freshened response's age restarts (else the stored `Date` stays, and the
/// response is as old as before its validation).
#[test]
fn merge304_without_date_is_dated_on_receipt() {
    let e = stored(&[
        ("Cache-Control", "max-age=60"),
        ("ETag", "\"a\""),
        ("Date", &date(0)),
    ]);
    assert_ne!(eval(&e, &[], 100).reuse, Reuse::Fresh);
    let Freshened::Updated(u) = freshened(&e, &[("ETag", "\"a\"")], 100) else {
        panic!()
    };
    assert_eq!(u.headers.get_str("date"), Some(date(100).as_str()));
    assert_eq!(
        evaluate(&Headers::new(), &u, t(110), &cfg()).reuse,
        Reuse::Fresh
    );
}

/// RFC 9111 §4.3.4 (soft purge): successful validation clears the invalidation mark.
#[test]
fn merge304_clears_invalidation() {
    let mut e = stored(&[("Cache-Control", "max-age=60"), ("ETag", "\"a\"")]);
    e.invalidated = true;
    let Freshened::Updated(u) = freshened(&e, &[("ETag", "\"a\"")], 5) else {
        panic!()
    };
    assert!(!u.invalidated);
}

// ---------------------------------------------------------------------------------------
// Invalidation (RFC 9111 §4.4)
// ---------------------------------------------------------------------------------------

fn invalidated(method: &str, status: u16, response: &[(&str, &str)]) -> Vec<String> {
    invalidated_targets(
        method,
        status,
        &hdrs(response),
        "https",
        "example.com",
        "/a/b?x=1",
    )
}

/// RFC 9111 §4.4: a successful unsafe request invalidates its target.
#[test]
fn invalidate_target() {
    assert_eq!(invalidated("POST", 200, &[]), vec!["/a/b?x=1".to_string()]);
}

/// RFC 9111 §4.4: error responses invalidate nothing.
#[test]
fn invalidate_not_on_error() {
    assert!(invalidated("POST", 500, &[]).is_empty());
    assert!(invalidated("DELETE", 404, &[]).is_empty());
}

/// RFC 9111 §4.4: safe methods invalidate nothing.
#[test]
fn invalidate_not_for_safe() {
    assert!(invalidated("GET", 200, &[]).is_empty());
}

/// RFC 9111 §4.4: a 3xx counts as non-error.
#[test]
fn invalidate_on_redirect() {
    assert_eq!(invalidated("PUT", 303, &[]).len(), 1);
}

/// RFC 9111 §4.4: same-origin Location is invalidated too.
#[test]
fn invalidate_location_same_origin() {
    let t = invalidated("POST", 201, &[("Location", "https://example.com/items/7")]);
    assert_eq!(t, vec!["/a/b?x=1".to_string(), "/items/7".to_string()]);
}

/// RFC 9111 §4.4: another origin's Location is not invalidated.
#[test]
fn invalidate_location_other_origin() {
    assert_eq!(
        invalidated("POST", 201, &[("Location", "https://evil.example/items/7")]).len(),
        1
    );
    assert_eq!(
        invalidated("POST", 201, &[("Location", "http://example.com/items/7")]).len(),
        1
    );
}

/// RFC 9111 §4.4, RFC 3986 §5.2: relative Content-Location resolves against the target.
#[test]
fn invalidate_relative_content_location() {
    let t = invalidated("PATCH", 200, &[("Content-Location", "c")]);
    assert_eq!(t, vec!["/a/b?x=1".to_string(), "/a/c".to_string()]);
}

/// RFC 9111 §4.4: duplicate targets are listed once.
#[test]
fn invalidate_dedup() {
    let t = invalidated(
        "DELETE",
        204,
        &[("Location", "/a/b?x=1"), ("Content-Location", "/a/b?x=1")],
    );
    assert_eq!(t.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Preparing stored responses (RFC 9111 §3.1) and lifetimes
// ---------------------------------------------------------------------------------------

/// RFC 9111 §3.1, RFC 9110 §7.6.1: Connection and the fields it nominates are not stored.
#[test]
fn prepare_strips_connection_nominated() {
    let e = stored(&[("Connection", "x-a, close"), ("X-A", "1"), ("X-B", "2")]);
    assert!(!e.headers.contains("connection") && !e.headers.contains("x-a"));
    assert!(e.headers.contains("x-b"));
}

/// RFC 9111 §3.1: fixed hop-by-hop fields are not stored.
#[test]
fn prepare_strips_hop_by_hop() {
    let e = stored(&[
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authenticate", "Basic"),
        ("Proxy-Connection", "keep-alive"),
    ]);
    for f in [
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-connection",
    ] {
        assert!(!e.headers.contains(f), "{f}");
    }
}

/// RFC 9110 §6.6.1: a cache adds Date when the origin sent none.
#[test]
fn prepare_adds_date() {
    let e = stored(&[]);
    assert_eq!(e.headers.get_str("date"), Some(date(0).as_str()));
}

/// RFC 9110 §6.6.1: an origin's Date is kept.
#[test]
fn prepare_keeps_date() {
    let e = stored(&[("Date", &date(-5))]);
    assert_eq!(e.headers.get_str("date"), Some(date(-5).as_str()));
}

/// Purge tags come from Surrogate-Key (spaces) and Cache-Tag (commas).
#[test]
fn prepare_tags() {
    let tags = purge_tags(&hdrs(&[
        ("Surrogate-Key", "a  b"),
        ("Cache-Tag", "b, c"),
        ("Cache-Tag", "d"),
    ]));
    assert_eq!(tags, vec!["a", "b", "c", "d"]);
}

/// RFC 9111 §4.1: the Vary selection is recorded at store time.
#[test]
fn prepare_records_vary() {
    let e = stored_for(
        &[("Accept-Encoding", "gzip")],
        200,
        &[("Vary", "accept-encoding")],
    );
    assert_eq!(e.vary.get_str("accept-encoding"), Some("gzip"));
}

/// RFC 9111 §4.2, RFC 5861: lifetimes count from now, with stale windows after freshness.
#[test]
fn lifetimes_windows() {
    let e = stored(&[(
        "Cache-Control",
        "max-age=60, stale-while-revalidate=30, stale-if-error=300",
    )]);
    let l = lifetimes(&e, t(10), &cfg());
    assert_eq!(l.fresh_until, t(60));
    assert_eq!(l.stale_while_revalidate_until, t(90));
    assert_eq!(l.stale_if_error_until, t(360));
    assert_eq!(l.keep_until, t(360));
    assert_eq!(l.keep_secs(t(10)), 350);
}

/// RFC 9111 §4.3: a response with a validator is kept for later conditional requests.
#[test]
fn lifetimes_validator_retention() {
    let e = stored(&[("Cache-Control", "no-cache"), ("ETag", "\"x\"")]);
    let l = lifetimes(&e, t(0), &cfg());
    assert_eq!(l.fresh_until, t(0));
    assert_eq!(l.keep_until, t(u64::from(cfg().validator_retention_secs)));
}

/// RFC 9111 §4.2.4: must-revalidate leaves no stale windows.
#[test]
fn lifetimes_no_windows_with_must_revalidate() {
    let e = stored(&[(
        "Cache-Control",
        "max-age=60, stale-if-error=300, must-revalidate",
    )]);
    let l = lifetimes(&e, t(0), &cfg());
    assert_eq!(l.stale_if_error_until, t(60));
}

// ---------------------------------------------------------------------------------------
// Request classification (RFC 9110 §9, RFC 9111 §4.4)
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4: GET and HEAD are looked up.
#[test]
fn classify_get_head() {
    assert_eq!(classify("GET", &Headers::new()), RequestClass::Lookup);
    assert_eq!(classify("HEAD", &Headers::new()), RequestClass::Lookup);
}

/// RFC 9111 §4.4, RFC 9110 §9.2.1: unsafe methods.
#[test]
fn classify_unsafe() {
    for m in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(classify(m, &Headers::new()), RequestClass::Unsafe, "{m}");
    }
}

/// RFC 9110 §9.1: methods are case-sensitive; an unknown method is treated as unsafe.
#[test]
fn classify_method_case_sensitive() {
    assert_eq!(classify("get", &Headers::new()), RequestClass::Unsafe);
}

/// RFC 9110 §9.2.1: other safe methods bypass.
#[test]
fn classify_safe_bypass() {
    assert_eq!(
        classify("OPTIONS", &Headers::new()),
        RequestClass::Bypass(BypassReason::Method)
    );
}

/// RFC 9110 §14.2: range requests are looked up (ranges are served from the complete
/// response).
#[test]
fn classify_range_lookup() {
    for method in ["GET", "HEAD"] {
        assert_eq!(
            classify(method, &hdrs(&[("Range", "bytes=0-10")])),
            RequestClass::Lookup
        );
    }
}

/// RFC 9110 §7.8: upgrades bypass.
#[test]
fn classify_upgrade_bypass() {
    assert_eq!(
        classify("GET", &hdrs(&[("Upgrade", "websocket")])),
        RequestClass::Bypass(BypassReason::Upgrade)
    );
}

// ---------------------------------------------------------------------------------------
// Cache-Status (RFC 9211)
// ---------------------------------------------------------------------------------------

/// RFC 9211 §2.1, §2.4: a hit with its ttl.
#[test]
fn status_hit() {
    let e = CacheStatusEntry {
        hit: true,
        ttl: Some(42),
        ..CacheStatusEntry::new("edgecache-l1")
    };
    assert_eq!(e.render(), "edgecache-l1; hit; ttl=42");
}

/// RFC 9211 §2.2, §2.3, §2.5: a forwarded, stored miss.
#[test]
fn status_miss_stored() {
    let e = CacheStatusEntry {
        fwd: Some(Forward::UriMiss),
        fwd_status: Some(200),
        stored: true,
        ..CacheStatusEntry::new("edgecache-l2")
    };
    assert_eq!(
        e.render(),
        "edgecache-l2; fwd=uri-miss; fwd-status=200; stored"
    );
}

/// RFC 9211 §2.4: a negative ttl for stale responses.
#[test]
fn status_negative_ttl() {
    let e = CacheStatusEntry {
        hit: true,
        ttl: Some(-5),
        ..CacheStatusEntry::new("edgecache-l1")
    };
    assert_eq!(e.render(), "edgecache-l1; hit; ttl=-5");
}

/// RFC 9211 §2.6, §2.8, RFC 8941 §3.3.3: collapsed, and a detail that is not a token is
/// an escaped string.
#[test]
fn status_collapsed_and_detail_string() {
    let e = CacheStatusEntry {
        fwd: Some(Forward::Stale),
        collapsed: true,
        detail: Some("origin \"timeout\"".into()),
        ..CacheStatusEntry::new("edgecache-l1")
    };
    assert_eq!(
        e.render(),
        "edgecache-l1; fwd=stale; collapsed; detail=\"origin \\\"timeout\\\"\""
    );
}

/// RFC 9211 §2: entries are listed in order, comma-separated.
#[test]
fn status_list() {
    let entries = [
        CacheStatusEntry {
            fwd: Some(Forward::Miss),
            ..CacheStatusEntry::new("edgecache-l2")
        },
        CacheStatusEntry {
            fwd: Some(Forward::Request),
            ..CacheStatusEntry::new("edgecache-l1")
        },
    ];
    assert_eq!(
        render(&entries),
        "edgecache-l2; fwd=miss, edgecache-l1; fwd=request"
    );
}

/// RFC 9211 §2, RFC 8941 §3.3.4: a cache name that is not a token is rendered as a string.
#[test]
fn status_name_not_token() {
    assert_eq!(CacheStatusEntry::new("my cache").render(), "\"my cache\"");
    assert_eq!(CacheStatusEntry::new("caf\u{e9}").render(), "\"caf?\"");
}
