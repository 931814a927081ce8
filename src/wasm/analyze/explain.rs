//! Plain words for the policy's answers: each enum the core returns gets a sentence and the
//! RFC section it comes from. No decision is made here.

use crate::cache_control::{FieldScope, ResponseDirectives};
use crate::policy::freshness::{Freshness, FreshnessSource};
use crate::policy::request::{BypassReason, RequestClass};
use crate::policy::reuse::{Reuse, RevalidateReason};
use crate::policy::storable::NotStorable;
use crate::policy::PolicyConfig;

/// A duration in seconds as people say it: `45 s`, `5 min`, `1 h 30 min`, `2 d`.
pub(crate) fn duration(secs: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;
    let parts = [
        (secs / DAY, "d"),
        (secs % DAY / HOUR, "h"),
        (secs % HOUR / MIN, "min"),
        (secs % MIN, "s"),
    ];
    let mut out: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .take(2)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if out.is_empty() {
        out.push(String::from("0 s"));
    }
    out.join(" ")
}

/// Why a response is not stored, in words.
pub(crate) fn not_storable(reason: NotStorable, method: &str, status: u16) -> String {
    match reason {
        NotStorable::Method => format!("Only GET responses are stored; this is a {method} request."),
        NotStorable::Status => format!(
            "Status {status} is not stored: it is not a final status, or is not understood while must-understand is present."
        ),
        NotStorable::ContentRange => String::from(
            "A 206 Partial Content is stored only as one range whose bytes are exactly those it claims: a single Content-Range of known complete length, and a Content-Length equal to the range's."
        ),
        NotStorable::RequestNoStore => String::from("The request says Cache-Control: no-store, so nothing about this exchange is stored."),
        NotStorable::ResponseNoStore => String::from("The response says no-store: no cache, shared or private, may keep a copy."),
        NotStorable::Private => String::from("The response says private: only the user's own browser may store it, never a shared cache or CDN."),
        NotStorable::Authorization => String::from(
            "The request carries Authorization and the response does not say public, must-revalidate or s-maxage, so a shared cache must not store it."
        ),
        NotStorable::SetCookie => String::from(
            "The response sets a cookie; edgecache does not store those (policy store_set_cookie = false), so one user's session is never handed to another."
        ),
        NotStorable::VaryStar => String::from("Vary: * says the response depends on things outside the request, so no later request can ever match it."),
        NotStorable::NoFreshnessInformation => format!(
            "Status {status} is not cacheable by default and the response gives no max-age, s-maxage, Expires or public."
        ),
    }
}

/// How a request is classified, in words, with its section.
pub(crate) fn request(class: RequestClass, method: &str) -> (&'static str, String, &'static str) {
    match class {
        RequestClass::Lookup => ("lookup", format!("A {method} request: looked up in the cache."), "RFC 9111 §4"),
        RequestClass::Bypass(BypassReason::Method) => (
            "bypass",
            format!("{method} requests go to the origin untouched; only GET responses are stored."),
            "RFC 9111 §3",
        ),
        RequestClass::Bypass(BypassReason::Upgrade) => (
            "bypass",
            String::from("A protocol upgrade (WebSocket and the like) bypasses the cache."),
            "RFC 9110 §7.8",
        ),
        RequestClass::Unsafe => (
            "unsafe",
            format!("{method} is an unsafe method: forwarded, and on success the cache invalidates the stored responses for the target URI."),
            "RFC 9111 §4.4",
        ),
    }
}

/// Where a freshness lifetime came from, in words.
pub(crate) fn freshness(
    f: &Freshness,
    config: &PolicyConfig,
) -> (&'static str, String, &'static str) {
    let n = duration(f.lifetime_secs);
    match f.source {
        FreshnessSource::SMaxAge => ("s-maxage", format!("s-maxage gives shared caches {n} of freshness (it overrides max-age and Expires for them)."), "RFC 9111 §5.2.2.10"),
        FreshnessSource::MaxAge => ("max-age", format!("max-age gives {n} of freshness."), "RFC 9111 §5.2.2.1"),
        FreshnessSource::Expires => ("expires", format!("Expires minus Date gives {n} of freshness."), "RFC 9111 §5.3"),
        FreshnessSource::Heuristic => (
            "heuristic",
            format!(
                "No explicit lifetime: the cache guesses {n} ({}% of the time since Last-Modified, at most {}).",
                config.heuristic_percent,
                duration(u64::from(config.heuristic_max_secs))
            ),
            "RFC 9111 §4.2.2",
        ),
        FreshnessSource::DefaultTtl => ("default-ttl", format!("No explicit lifetime: the configured default TTL gives {n}."), "RFC 9111 §4.2.2"),
        FreshnessSource::None => ("none", String::from("No freshness information: the response is stale as soon as it is stored."), "RFC 9111 §4.2.1"),
    }
}

/// The decision code of a reuse verdict.
pub(crate) fn decision(reuse: Reuse) -> (&'static str, Option<&'static str>) {
    match reuse {
        Reuse::Fresh => ("fresh", None),
        Reuse::StaleAcceptedByRequest => ("stale-accepted-by-request", None),
        Reuse::StaleWhileRevalidate => ("stale-while-revalidate", None),
        Reuse::Revalidate(r) => ("revalidate", Some(revalidate_code(r))),
        Reuse::VaryMismatch => ("vary-mismatch", None),
        Reuse::Incomplete => ("incomplete", None),
    }
}

fn revalidate_code(r: RevalidateReason) -> &'static str {
    match r {
        RevalidateReason::Stale => "stale",
        RevalidateReason::ResponseNoCache => "response-no-cache",
        RevalidateReason::RequestNoCache => "request-no-cache",
        RevalidateReason::RequestFreshness => "request-freshness",
        RevalidateReason::Invalidated => "invalidated",
    }
}

/// A reuse verdict in words, with its section.
pub(crate) fn reuse(
    reuse: Reuse,
    ttl_secs: i64,
    has_validator: bool,
    stale_on_error: bool,
) -> (String, String) {
    let how = if has_validator {
        "with a conditional request (a 304 Not Modified costs no body)"
    } else {
        "and, with no ETag or Last-Modified, fetched again in full"
    };
    let (mut text, mut rfc) = match reuse {
        Reuse::Fresh => (format!("Served from the cache: fresh, {} left.", duration(ttl_secs.max(0) as u64)), String::from("RFC 9111 §4.2")),
        Reuse::StaleAcceptedByRequest => (String::from("Served stale: the request's max-stale accepts it."), String::from("RFC 9111 §5.2.1.2")),
        Reuse::StaleWhileRevalidate => (
            format!("Served stale at once ({} past freshness) and refreshed from the origin in the background.", duration(ttl_secs.unsigned_abs())),
            String::from("RFC 5861 §3"),
        ),
        Reuse::Revalidate(RevalidateReason::Stale) => (format!("Stale: validated with the origin before use, {how}."), String::from("RFC 9111 §4.2.4, §4.3")),
        Reuse::Revalidate(RevalidateReason::ResponseNoCache) => (
            format!("The response says no-cache: it is stored but validated with the origin on every use, {how}."),
            String::from("RFC 9111 §5.2.2.4"),
        ),
        Reuse::Revalidate(RevalidateReason::RequestNoCache) => (
            String::from("The request says no-cache (or Pragma: no-cache): the cache validates with the origin first."),
            String::from("RFC 9111 §5.2.1.4, §5.4"),
        ),
        Reuse::Revalidate(RevalidateReason::RequestFreshness) => (
            String::from("The request's max-age or min-fresh asks for fresher than what is left: validated first."),
            String::from("RFC 9111 §5.2.1.1, §5.2.1.3"),
        ),
        Reuse::Revalidate(RevalidateReason::Invalidated) => (String::from("Marked stale by a purge: validated before use."), String::from("RFC 9111 §4.4")),
        Reuse::VaryMismatch => (
            String::from("The request's Vary-nominated headers differ from the stored ones: this copy cannot be used."),
            String::from("RFC 9111 §4.1"),
        ),
        Reuse::Incomplete => (
            String::from("The stored copy is partial and does not hold what the request asks for (one range wholly within it): the request goes to the origin, whose answer replaces it."),
            String::from("RFC 9111 §3.3"),
        ),
    };
    if stale_on_error && !matches!(reuse, Reuse::Fresh | Reuse::StaleAcceptedByRequest) {
        text.push_str(" If the origin fails, the stale copy is served instead.");
        rfc.push_str("; RFC 5861 §4");
    }
    (text, rfc)
}

/// The recognised directives as written, e.g. `["public", "max-age=60"]`.
pub(crate) fn directive_list(d: &ResponseDirectives) -> Vec<String> {
    let mut out = Vec::new();
    let scope = |name: &str, s: &Option<FieldScope>, out: &mut Vec<String>| match s {
        Some(FieldScope::All) => out.push(String::from(name)),
        Some(FieldScope::Fields(f)) => out.push(format!("{name}=\"{}\"", f.join(", "))),
        None => {}
    };
    if d.public {
        out.push(String::from("public"));
    }
    scope("private", &d.private, &mut out);
    scope("no-cache", &d.no_cache, &mut out);
    if d.no_store {
        out.push(String::from("no-store"));
    }
    if let Some(n) = d.max_age {
        out.push(format!("max-age={n}"));
    }
    if let Some(n) = d.s_maxage {
        out.push(format!("s-maxage={n}"));
    }
    for (on, name) in [
        (d.must_revalidate, "must-revalidate"),
        (d.proxy_revalidate, "proxy-revalidate"),
        (d.must_understand, "must-understand"),
        (d.no_transform, "no-transform"),
        (d.immutable, "immutable"),
    ] {
        if on {
            out.push(String::from(name));
        }
    }
    if let Some(n) = d.stale_while_revalidate {
        out.push(format!("stale-while-revalidate={n}"));
    }
    if let Some(n) = d.stale_if_error {
        out.push(format!("stale-if-error={n}"));
    }
    out
}
