//! HTTP caching policy for a shared cache (RFC 9111, RFC 5861, RFC 9211), as pure functions
//! over headers and times that return enums the hosts act on. Nothing here performs I/O or
//! reads a clock.
//!
//! The read path asks, in order: [`request::classify`] (may this request use the cache?),
//! [`reuse::evaluate`] (may this stored response be reused, and how?), and on a fetch,
//! [`storable::storability`] then [`storage::prepare`] (what to store, and for how long);
//! [`partial`] keeps incomplete (`206`) responses to the requests they can answer.
//! [`conditional`] builds validation requests and merges `304` responses, [`invalidation`]
//! lists the URIs an unsafe method invalidates, and [`cache_status`] renders RFC 9211 entries.

pub mod cache_status;
pub mod conditional;
pub mod decision;
pub mod forwarding;
pub mod freshness;
pub mod hop_by_hop;
pub mod invalidation;
pub mod partial;
pub mod range;
pub mod request;
pub mod reuse;
pub mod storable;
pub mod storage;
pub mod vary;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::cache_control::DEFAULT_TARGETED_FIELDS;

/// The knobs of the shared-cache policy. [`PolicyConfig::default`] is RFC-conservative.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Targeted cache-control fields obeyed instead of `Cache-Control`, highest precedence
    /// first (RFC 9213 §2.1). Lowercase names.
    pub targeted_fields: Vec<String>,
    /// Store responses that carry `Set-Cookie` (default `false`: a shared cache that stores
    /// them risks handing one user's session to another; RFC 9111 §7.3).
    pub store_set_cookie: bool,
    /// Heuristic freshness as a percentage of the time since `Last-Modified`
    /// (RFC 9111 §4.2.2 suggests 10%).
    pub heuristic_percent: u8,
    /// Upper bound on a heuristic freshness lifetime, in seconds.
    pub heuristic_max_secs: u32,
    /// Freshness lifetime given to heuristically cacheable responses that have neither
    /// explicit freshness nor `Last-Modified` (an out-of-band default TTL; 0 = none).
    pub default_ttl_secs: u32,
    /// Stale-while-revalidate window applied when the response gives none (RFC 5861 §3 by
    /// configuration; 0 = only what the origin allows).
    pub default_stale_while_revalidate_secs: u32,
    /// Stale-if-error window applied when the response gives none (RFC 9111 §4.2.4 allows
    /// stale responses "in accordance with an out-of-band contract"; 0 = none).
    pub default_stale_if_error_secs: u32,
    /// How long past its freshness a stored response may stand in when the origin cannot be
    /// reached at all (connection refused, DNS, TLS, or no answer within the origin
    /// timeout): RFC 9111 §4.2.4 lets a disconnected cache serve stale. Never for responses
    /// with `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`, and not for an
    /// origin that answers 5xx (that is `stale-if-error`, RFC 5861 §4). Default 60 s: enough
    /// to ride out an origin restart or a network blip, short enough that nobody is served
    /// long-expired content without the origin having allowed it. 0 turns it off.
    pub stale_if_unreachable_secs: u32,
    /// How long a response that needs revalidation before every use (`no-cache`,
    /// `max-age=0`) and carries a validator is kept for conditional requests, in seconds.
    pub validator_retention_secs: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            targeted_fields: DEFAULT_TARGETED_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            store_set_cookie: false,
            heuristic_percent: 10,
            heuristic_max_secs: 86_400,
            default_ttl_secs: 0,
            default_stale_while_revalidate_secs: 0,
            default_stale_if_error_secs: 0,
            stale_if_unreachable_secs: 60,
            validator_retention_secs: 3_600,
        }
    }
}

/// Whether `status` is heuristically cacheable (RFC 9110 §15.1).
pub fn is_heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether this cache understands `status` well enough to honour `must-understand`
/// (RFC 9111 §5.2.2.3): the final status codes it implements caching for.
pub fn is_understood_status(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 451 | 501
    )
}

/// Whether `method` is safe (RFC 9110 §9.2.1); an unsafe method invalidates (RFC 9111 §4.4).
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}
