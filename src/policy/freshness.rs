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

/// The `Age` field's value in seconds, as RFC 9111 §5.1 says a cache reads it:
///
/// - Age is a singleton, but "a cache encountering a message with a list-based Age field
///   value SHOULD use the first member of the field value, discarding subsequent ones": with
///   several lines or a comma-separated list, the first (non-empty) member counts, so
///   `0, 7200` is 0 and `7200, 0` is 7200.
/// - "If the field value (after discarding additional members, as per above) is invalid
///   (e.g., it contains something other than a non-negative integer), a cache SHOULD ignore
///   the field": that member, trimmed of whitespace, must be delta-seconds (digits only;
///   RFC 9111 §1.2.2 caps it at 2147483648, see [`parse_delta_seconds`]).
///
/// Returns `Ok(None)` when there is no Age field, `Ok(Some(secs))` for the value to use, and
/// `Err(())` when the first member is invalid (a sign, a decimal point, a parameter such as
/// `7200;foo=bar`, letters, nothing): the field is then ignored, exactly as if it were
/// absent. An invalid Age never makes a response stale on its own.
#[allow(clippy::result_unit_err)]
pub fn age_value(headers: &Headers) -> Result<Option<u64>, ()> {
    if !headers.contains("age") {
        return Ok(None);
    }
    headers
        .list_items("age")
        .next()
        .and_then(parse_delta_seconds)
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
/// A missing `Date` gives an apparent age of 0. `age_value` is read as §5.1 says (see
/// [`age_value`]): the first member of a list, and 0 when the field is absent or invalid
/// (an invalid Age is ignored, not taken to mean stale).
pub fn current_age(
    headers: &Headers,
    request_time: Timestamp,
    response_time: Timestamp,
    now: Timestamp,
) -> u64 {
    let age = age_value(headers).ok().flatten().unwrap_or(0);
    let apparent_age = date_value(headers).map_or(0, |date| response_time.secs_since(date));
    let response_delay = response_time.secs_since(request_time);
    let corrected_age_value = age.saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.secs_since(response_time);
    corrected_initial_age.saturating_add(resident_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_control::DELTA_SECONDS_CAP;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(fields.iter().copied())
    }

    fn age(fields: &[(&str, &str)]) -> Result<Option<u64>, ()> {
        age_value(&headers(fields))
    }

    /// Whether a response with `max-age=3600` and `fields`, received just now, is still
    /// fresh (RFC 9111 §4.2: fresh while the lifetime exceeds the current age).
    fn fresh_with(fields: &[(&str, &str)]) -> bool {
        let now = Timestamp::from_secs(1_000_000);
        current_age(&headers(fields), now, now, now) < 3600
    }

    #[test]
    fn absent_and_plain_values() {
        assert_eq!(age(&[]), Ok(None));
        assert_eq!(age(&[("age", "0")]), Ok(Some(0)));
        assert_eq!(age(&[("age", " 7200 ")]), Ok(Some(7200)));
        assert_eq!(age(&[("age", "003600")]), Ok(Some(3600)));
        assert!(fresh_with(&[]));
        assert!(fresh_with(&[("age", "0")]));
        assert!(!fresh_with(&[("age", "7200")]));
    }

    /// §5.1: a list-valued Age uses its first member, discarding the rest.
    #[test]
    fn list_uses_the_first_member() {
        assert_eq!(age(&[("age", "0, 7200")]), Ok(Some(0)));
        assert!(fresh_with(&[("age", "0, 7200")]));
        assert_eq!(age(&[("age", "7200, 0")]), Ok(Some(7200)));
        assert!(!fresh_with(&[("age", "7200, 0")]));
        assert_eq!(age(&[("age", "7200,0")]), Ok(Some(7200)));
        assert_eq!(
            age(&[("age", ", 5")]),
            Ok(Some(5)),
            "empty members are skipped"
        );
        // The members after the first are discarded unread, valid or not.
        assert_eq!(age(&[("age", "10, abc")]), Ok(Some(10)));
    }

    /// §5.1: several Age lines are one list; the first line's value counts.
    #[test]
    fn several_lines_use_the_first() {
        assert_eq!(age(&[("age", "0"), ("age", "7200")]), Ok(Some(0)));
        assert!(fresh_with(&[("age", "0"), ("age", "7200")]));
        assert_eq!(age(&[("age", "7200"), ("age", "0")]), Ok(Some(7200)));
        assert!(!fresh_with(&[("age", "7200"), ("age", "0")]));
        assert!(fresh_with(&[("age", "0"), ("age", "0")]));
        assert!(fresh_with(&[("age", "0, 0")]));
        assert_eq!(age(&[("age", "3600"), ("age", "3600")]), Ok(Some(3600)));
    }

    /// §5.1: an invalid (first) member means the field is ignored: the response is as fresh
    /// as without it, not stale.
    #[test]
    fn invalid_is_ignored_not_stale() {
        for bad in [
            "abc",
            "-7200",
            "7200.0",
            "7200;foo=bar",
            "7200;foo=111",
            "+5",
            "0x10",
            "\"7200\"",
            "",
            ",",
            "abc, 0",
        ] {
            assert_eq!(age(&[("age", bad)]), Err(()), "{bad:?}");
            assert!(fresh_with(&[("age", bad)]), "{bad:?}");
            let now = Timestamp::from_secs(50);
            let with = current_age(
                &headers(&[("age", bad)]),
                now,
                now,
                Timestamp::from_secs(80),
            );
            assert_eq!(with, 30, "{bad:?}: counts as absent");
        }
        // An invalid first line is not rescued by a valid second one.
        assert_eq!(age(&[("age", "abc"), ("age", "7200")]), Err(()));
        assert!(fresh_with(&[("age", "abc"), ("age", "7200")]));
    }

    /// §1.2.2: delta-seconds beyond 2^31 are capped at 2147483648.
    #[test]
    fn large_values_are_capped() {
        assert_eq!(age(&[("age", "2147483647")]), Ok(Some(2_147_483_647)));
        assert_eq!(
            age(&[("age", "2147483648")]),
            Ok(Some(u64::from(DELTA_SECONDS_CAP)))
        );
        assert_eq!(
            age(&[("age", "99999999999999999999999")]),
            Ok(Some(u64::from(DELTA_SECONDS_CAP)))
        );
        assert!(!fresh_with(&[("age", "2147483649")]));
    }
}
