//! Warnings about common header mistakes. These are advice about what the origin probably
//! meant, read from the parsed directives; the cache's decisions stay with
//! [`crate::policy`].

use crate::cache_control::{DirectiveSource, FieldScope, ResponseDirectives};
use crate::headers::Headers;
use crate::http_date::parse_http_date;
use crate::policy::freshness::{age_value, Freshness, FreshnessSource};
use crate::policy::storable::NotStorable;

use super::report::Warning;

/// What the lints look at.
pub(crate) struct LintInput<'a> {
    pub directives: &'a ResponseDirectives,
    pub source: &'a DirectiveSource,
    pub response: &'a Headers,
    pub request: &'a Headers,
    pub storable: Result<(), NotStorable>,
    pub freshness: Freshness,
    pub lookup: bool,
}

fn warn(code: &'static str, severity: &'static str, rfc: &'static str, text: String) -> Warning {
    Warning {
        code,
        severity,
        text,
        rfc,
    }
}

/// Every lint that applies, most serious first.
pub(crate) fn lint(i: &LintInput<'_>) -> Vec<Warning> {
    let d = i.directives;
    let mut out = Vec::new();
    let stored = i.storable.is_ok() && i.lookup;

    if d.private == Some(FieldScope::All) && (d.max_age.is_some() || d.s_maxage.is_some()) {
        let what = if d.s_maxage.is_some() {
            "s-maxage"
        } else {
            "max-age"
        };
        out.push(warn("private-with-max-age", "error", "RFC 9111 §5.2.2.7", format!(
            "private keeps this response out of every CDN and shared cache; {what} then only applies to browsers. \
             To cache it at the edge, drop private and use s-maxage (or CDN-Cache-Control)."
        )));
    }
    if d.no_cache == Some(FieldScope::All) && !d.no_store {
        out.push(warn("no-cache-is-not-no-store", "warning", "RFC 9111 §5.2.2.4, §5.2.2.5", String::from(
            "no-cache does not mean \"do not cache\": caches store the response and validate it with the origin on every use. \
             If it must not be stored at all (personal or sensitive data), use no-store.",
        )));
    }
    if d.no_store
        && !d.must_understand
        && (d.max_age.is_some()
            || d.s_maxage.is_some()
            || d.public
            || d.stale_while_revalidate.is_some())
    {
        out.push(warn("no-store-with-freshness", "warning", "RFC 9111 §5.2.2.5", String::from(
            "no-store wins: public, max-age, s-maxage and stale-* next to it have no effect. Pick one intent.",
        )));
    }
    let stale_ext = d.stale_while_revalidate.is_some() || d.stale_if_error.is_some();
    let forbids = if d.must_revalidate {
        Some("must-revalidate")
    } else if d.proxy_revalidate {
        Some("proxy-revalidate")
    } else if d.s_maxage.is_some() {
        Some("s-maxage (which implies proxy-revalidate for shared caches)")
    } else if d.no_cache == Some(FieldScope::All) {
        Some("no-cache")
    } else {
        None
    };
    if let (true, Some(why)) = (stale_ext, forbids) {
        out.push(warn("stale-directives-ignored", "warning", "RFC 9111 §4.2.4, §5.2.2.10", format!(
            "stale-while-revalidate / stale-if-error are ignored by shared caches here: {why} forbids serving stale responses. \
             Use max-age with CDN-Cache-Control instead of s-maxage if you want stale serving at the edge."
        )));
    }
    if i.response.contains("set-cookie")
        && d.private.is_none()
        && !d.no_store
        && (d.public || d.max_age.is_some() || d.s_maxage.is_some())
    {
        out.push(warn("set-cookie-cacheable", "warning", "RFC 9111 §7.3", String::from(
            "A cacheable response that sets a cookie: edgecache refuses to store it, but a cache configured to store it would hand this cookie to every visitor. \
             Set cookies on responses marked private or no-store.",
        )));
    }
    if *i.source == DirectiveSource::CacheControl {
        if let Some(expires) = i.response.get("expires") {
            if parse_http_date(expires).is_none() {
                out.push(warn("expires-invalid", "warning", "RFC 9111 §5.3", String::from(
                    "Expires is not a valid HTTP-date (e.g. 0 or -1): caches treat the response as already expired. Use Cache-Control: max-age.",
                )));
            } else if d.max_age.is_some() || d.s_maxage.is_some() {
                out.push(warn(
                    "expires-ignored",
                    "info",
                    "RFC 9111 §5.3",
                    String::from("Expires is ignored because max-age or s-maxage is present."),
                ));
            }
        }
    }
    if age_value(i.response).is_err() {
        out.push(warn("age-invalid", "warning", "RFC 9111 §5.1", String::from(
            "The Age header's first value is not a non-negative integer: caches ignore the field, as if it were absent (edgecache does). Send one Age line holding one integer.",
        )));
    }
    if i.response.contains("pragma") {
        out.push(warn(
            "pragma-in-response",
            "info",
            "RFC 9111 §5.4",
            String::from(
                "Pragma has no defined meaning in a response; caches follow Cache-Control.",
            ),
        ));
    }
    for item in i.response.list_items("vary") {
        let name = String::from_utf8_lossy(item).to_ascii_lowercase();
        let advice = match name.as_str() {
            "user-agent" => "Vary: User-Agent makes nearly every browser version its own variant: the hit ratio collapses. Vary on a normalised header (e.g. a device class) instead.",
            "cookie" => "Vary: Cookie makes every visitor with a cookie their own variant: effectively uncacheable for them. Strip irrelevant cookies or mark the response private.",
            "authorization" => "Vary: Authorization stores one copy per credential; check that sharing across users really is intended.",
            _ => continue,
        };
        out.push(warn(
            "vary-fragments-cache",
            "warning",
            "RFC 9111 §4.1",
            String::from(advice),
        ));
    }
    if stored && !i.response.contains("etag") && !i.response.contains("last-modified") {
        out.push(warn("missing-validator", "warning", "RFC 9111 §4.3.1", String::from(
            "No ETag or Last-Modified: once stale, the cache must download the whole body again instead of getting a cheap 304 Not Modified.",
        )));
    }
    if stored && i.request.contains("authorization") {
        out.push(warn("shared-despite-authorization", "warning", "RFC 9111 §3.5", String::from(
            "Stored although the request carried Authorization (public, s-maxage or must-revalidate allow it): every client of this cache gets this response. Make sure it is not per-user.",
        )));
    }
    match i.freshness.source {
        FreshnessSource::Heuristic if stored => out.push(warn("heuristic-freshness", "info", "RFC 9111 §4.2.2", String::from(
            "No explicit lifetime: caches guess one from Last-Modified, and different caches guess differently. State max-age explicitly.",
        ))),
        FreshnessSource::None if stored && d.no_cache.is_none() => out.push(warn("no-freshness", "warning", "RFC 9111 §4.2.1", String::from(
            "No freshness information: stored, but stale at once, so every request goes to the origin. Add Cache-Control: max-age (or no-store if it must not be cached).",
        ))),
        _ => {}
    }
    if let DirectiveSource::Targeted(name) = i.source {
        out.push(warn("targeted-field", "info", "RFC 9213 §2.1", format!(
            "{name} is obeyed by this cache instead of Cache-Control (and Expires); browsers and other caches still follow Cache-Control."
        )));
    }
    out
}
