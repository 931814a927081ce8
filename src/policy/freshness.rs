//! Freshness lifetime (RFC 9111 §4.2.1, heuristics §4.2.2) and current age (§4.2.3).

use crate::cache_control::{parse_delta_seconds, DirectiveSource, ResponseDirectives};
use crate::headers::Headers;
use crate::http_date::parse_http_date;
use crate::time::Timestamp;

use super::{is_heuristically_cacheable, PolicyConfig};

/// Where a freshness lifetime came from (RFC 9111 §4.2.1, in order of precedence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshnessSource {
    /// `s-maxage` (shared caches only, §5.2.2.10).
    SMaxAge,
    /// `max-age` (§5.2.2.1).
    MaxAge,
    /// `Expires` minus `Date` (§5.3).
    Expires,
    /// A heuristic from `Last-Modified` (§4.2.2).
    Heuristic,
    /// The configured default TTL for heuristically cacheable responses.
    DefaultTtl,
    /// No freshness information: the response is stale on arrival.
    None,
}

/// A freshness lifetime in seconds and its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime in seconds.
    pub lifetime_secs: u64,
    /// Which rule produced it.
    pub source: FreshnessSource,
}

impl Freshness {
    /// Whether the lifetime was given explicitly by the origin (§4.2.1), not guessed.
    pub fn is_explicit(&self) -> bool {
        matches!(
            self.source,
            FreshnessSource::SMaxAge | FreshnessSource::MaxAge | FreshnessSource::Expires
        )
    }
}

/// The freshness lifetime of a response for a shared cache (RFC 9111 §4.2.1): `s-maxage`,
/// else `max-age`, else `Expires` − `Date`, else a heuristic (§4.2.2) for heuristically
/// cacheable statuses or `public` responses. When the directives came from a targeted field
/// (RFC 9213), `Expires` is ignored. A missing `Date` counts as `response_time`; an invalid
/// `Expires` (e.g. `0`) is in the past (§5.3).
pub fn freshness_lifetime(
    status: u16,
    headers: &Headers,
    directives: &ResponseDirectives,
    source: &DirectiveSource,
    response_time: Timestamp,
    config: &PolicyConfig,
) -> Freshness {
    if let Some(secs) = directives.s_maxage {
        return Freshness {
            lifetime_secs: u64::from(secs),
            source: FreshnessSource::SMaxAge,
        };
    }
    if let Some(secs) = directives.max_age {
        return Freshness {
            lifetime_secs: u64::from(secs),
            source: FreshnessSource::MaxAge,
        };
    }
    if *source == DirectiveSource::CacheControl && headers.contains("expires") {
        let date = date_value(headers).unwrap_or(response_time);
        let lifetime_secs = expires_value(headers).map_or(0, |expires| expires.secs_since(date));
        return Freshness {
            lifetime_secs,
            source: FreshnessSource::Expires,
        };
    }
    if !(is_heuristically_cacheable(status) || directives.public) {
        return Freshness {
            lifetime_secs: 0,
            source: FreshnessSource::None,
        };
    }
    if let Some(last_modified) = headers.get("last-modified").and_then(parse_http_date) {
        let date = date_value(headers).unwrap_or(response_time);
        let since = date.secs_since(last_modified);
        let lifetime_secs = (since * u64::from(config.heuristic_percent) / 100)
            .min(u64::from(config.heuristic_max_secs));
        return Freshness {
            lifetime_secs,
            source: FreshnessSource::Heuristic,
        };
    }
    if config.default_ttl_secs > 0 {
        return Freshness {
            lifetime_secs: u64::from(config.default_ttl_secs),
            source: FreshnessSource::DefaultTtl,
        };
    }
    Freshness {
        lifetime_secs: 0,
        source: FreshnessSource::None,
    }
}

/// The `Date` header's value, if there is exactly one valid one (RFC 9110 §6.6.1).
pub fn date_value(headers: &Headers) -> Option<Timestamp> {
    single_line(headers, "date").and_then(parse_http_date)
}

/// The `Expires` header's value; `None` when invalid or repeated, which means "already
/// expired" (RFC 9111 §5.3).
fn expires_value(headers: &Headers) -> Option<Timestamp> {
    single_line(headers, "expires").and_then(parse_http_date)
}

fn single_line<'h>(headers: &'h Headers, name: &str) -> Option<&'h [u8]> {
    let mut lines = headers.get_all(name);
    let first = lines.next()?;
    lines.next().is_none().then_some(first)
}

/// The `Age` header's value in seconds (RFC 9111 §5.1). Returns `Ok(None)` when absent and
/// `Err(())` when invalid: not exactly one line holding exactly one delta-seconds (lists,
/// parameters, signs, decimals and repeated lines are all invalid). The caller treats an
/// invalid Age as making the response stale.
#[allow(clippy::result_unit_err)]
pub fn age_value(headers: &Headers) -> Result<Option<u64>, ()> {
    let mut lines = headers.get_all("age");
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(());
    }
    parse_delta_seconds(crate::headers::trim_ows(first))
        .map(|secs| Some(u64::from(secs)))
        .ok_or(())
}

/// The current age of a stored response in seconds (RFC 9111 §4.2.3):
///
/// ```text
/// apparent_age = max(0, response_time - date_value)
/// response_delay = response_time - request_time
/// corrected_age_value = age_value + response_delay
/// corrected_initial_age = max(apparent_age, corrected_age_value)
/// resident_time = now - response_time
/// current_age = corrected_initial_age + resident_time
/// ```
///
/// A missing `Date` gives an apparent age of 0. An invalid `Age` header (see [`age_value`])
/// yields `None`: the caller must treat the response as stale.
pub fn current_age(
    headers: &Headers,
    request_time: Timestamp,
    response_time: Timestamp,
    now: Timestamp,
) -> Option<u64> {
    let age = age_value(headers).ok()?.unwrap_or(0);
    let apparent_age = date_value(headers).map_or(0, |date| response_time.secs_since(date));
    let response_delay = response_time.secs_since(request_time);
    let corrected_age_value = age.saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.secs_since(response_time);
    Some(corrected_initial_age.saturating_add(resident_time))
}
