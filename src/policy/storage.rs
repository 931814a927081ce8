//! Preparing a storable response for the cache: which fields to keep (RFC 9111 §3.1,
//! §5.2.2.4, §5.2.2.7), purge tags, and how long each tier keeps it.

use alloc::string::String;
use alloc::vec::Vec;

use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::time::Timestamp;

use super::conditional::has_validator;
use super::reuse::StoredFigures;
use super::PolicyConfig;

/// When a stored response stops being fresh, stops being servable stale, and can be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Fresh until this instant (freshness lifetime minus current age, from `now`).
    pub fresh_until: Timestamp,
    /// Servable stale while revalidating until this instant (RFC 5861 §3).
    pub stale_while_revalidate_until: Timestamp,
    /// Servable stale when the origin fails until this instant (RFC 5861 §4).
    pub stale_if_error_until: Timestamp,
    /// Worth keeping until this instant: the latest of the above, extended by
    /// [`PolicyConfig::validator_retention_secs`] when the response has a validator, so it
    /// can still be revalidated cheaply with a conditional request (RFC 9111 §4.3).
    pub keep_until: Timestamp,
}

impl Lifetimes {
    /// Seconds from `now` until [`Lifetimes::keep_until`]: the TTL to give a shared-tier key.
    pub fn keep_secs(&self, now: Timestamp) -> u64 {
        self.keep_until.secs_since(now)
    }
}

/// Computes the [`Lifetimes`] of `stored` as seen at `now` (RFC 9111 §4.2, RFC 5861), from
/// the figures it carries when it has them.
pub fn lifetimes(stored: &CachedResponse, now: Timestamp, config: &PolicyConfig) -> Lifetimes {
    let figures = StoredFigures::carried_or(stored, config).at(stored, now);
    let remaining = figures.effective_lifetime.saturating_sub(figures.age_secs);
    let windows = figures.windows;
    let fresh_until = now.plus_secs(remaining);
    let stale_while_revalidate_until = fresh_until.plus_secs(windows.while_revalidate_secs);
    let stale_if_error_until = fresh_until.plus_secs(windows.if_error_secs);
    let stale_if_unreachable_until = fresh_until.plus_secs(windows.if_unreachable_secs);
    let mut keep_until = stale_while_revalidate_until
        .max(stale_if_error_until)
        .max(stale_if_unreachable_until);
    if has_validator(&stored.headers) {
        keep_until =
            keep_until.max(fresh_until.plus_secs(u64::from(config.validator_retention_secs)));
    }
    Lifetimes {
        fresh_until,
        stale_while_revalidate_until,
        stale_if_error_until,
        keep_until,
    }
}

/// Builds the entry to store from a storable response (check
/// [`super::storable::storability`] first, or use [`super::decision::decide`], which does
/// both): what [`super::decision::Keep::into_entry`] stores, with its figures computed.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    request_headers: &Headers,
    status: u16,
    response_headers: &Headers,
    body: Vec<u8>,
    request_time: Timestamp,
    response_time: Timestamp,
    config: &PolicyConfig,
) -> CachedResponse {
    let origin = super::decision::OriginHead {
        status,
        headers: response_headers,
        request_time,
        response_time,
    };
    super::decision::Keep::unchecked(origin, config).into_entry(
        request_headers,
        origin,
        response_headers.clone(),
        body,
    )
}

/// Purge tags from `Surrogate-Key` (space-separated, Fastly convention) and `Cache-Tag`
/// (comma-separated, Cloudflare convention), deduplicated, in order. Tags with control
/// characters are dropped.
pub fn purge_tags(response_headers: &Headers) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let surrogate = response_headers
        .get_all("surrogate-key")
        .flat_map(|v| v.split(|b| *b == b' ' || *b == b'\t'));
    let cache_tag = response_headers.list_items("cache-tag");
    for tag in surrogate.chain(cache_tag) {
        let tag = crate::headers::trim_ows(tag);
        if tag.is_empty() || tag.iter().any(u8::is_ascii_control) {
            continue;
        }
        if let Ok(tag) = core::str::from_utf8(tag) {
            if !tags.iter().any(|t| t == tag) {
                tags.push(String::from(tag));
            }
        }
    }
    tags
}
