//! May a stored response be reused for this request, and how? (RFC 9111 §4, §4.2.4, §5.2.1;
//! RFC 5861 §3–4).

use crate::cache_control::{FieldScope, MaxStale, RequestDirectives};
use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::time::Timestamp;

use super::freshness::{current_age, Freshness};
use super::storable::ResponseView;
use super::{vary, PolicyConfig};

/// What to do with a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh and acceptable to the request: serve it (§4.2).
    Fresh,
    /// Stale, but the request's `max-stale` accepts it (§5.2.1.2): serve it; no validation
    /// is required.
    StaleAcceptedByRequest,
    /// Stale within the `stale-while-revalidate` window (RFC 5861 §3): serve it now and
    /// revalidate in the background.
    StaleWhileRevalidate,
    /// Must be validated with the origin before use (§4.3); build the request with
    /// [`super::conditional::conditional_headers`]. If validation fails, the response may
    /// still be served when [`Evaluation::stale_if_error`] allows it.
    Revalidate(RevalidateReason),
    /// The request's selecting headers differ from the stored ones (§4.1): this stored
    /// response cannot be used at all.
    VaryMismatch,
    /// An incomplete stored response (§3.3) that does not hold what the request asks for:
    /// it cannot be used, and the request goes to the origin ([`super::partial::limit`]).
    Incomplete,
}

/// Why a stored response needs validation before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevalidateReason {
    /// Stale, and no rule allows serving it stale (§4.2.4).
    Stale,
    /// The response said `no-cache` (§5.2.2.4).
    ResponseNoCache,
    /// The request said `no-cache` or `Pragma: no-cache` (§5.2.1.4, §5.4).
    RequestNoCache,
    /// The request's `max-age` or `min-fresh` is stricter than the response's freshness
    /// (§5.2.1.1, §5.2.1.3).
    RequestFreshness,
    /// Marked stale by a purge or invalidation, with no stale window to serve it in.
    Invalidated,
}

/// The full verdict on a stored response, with the figures hosts report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// What to do.
    pub reuse: Reuse,
    /// Current age in seconds (§4.2.3), for the `Age` header (§5.1).
    pub age_secs: u64,
    /// Freshness lifetime and its source (§4.2.1).
    pub freshness: Freshness,
    /// Seconds of freshness left; negative once stale (RFC 9211 §2.5 `ttl`).
    pub ttl_secs: i64,
    /// Whether this response may be served stale if validation or the origin fails now
    /// (RFC 5861 §4, RFC 9111 §4.2.4).
    pub stale_if_error: bool,
    /// Whether this response may be served stale if the origin cannot be reached now
    /// (RFC 9111 §4.2.4, [`super::PolicyConfig::stale_if_unreachable_secs`]); implied by
    /// [`Self::stale_if_error`].
    pub stale_if_unreachable: bool,
}

/// Stale windows a stored response allows, in seconds past its freshness lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleWindows {
    /// `stale-while-revalidate` (RFC 5861 §3), or the configured default.
    pub while_revalidate_secs: u64,
    /// `stale-if-error` (RFC 5861 §4), or the configured default.
    pub if_error_secs: u64,
    /// While the origin cannot be reached (RFC 9111 §4.2.4), by configuration.
    pub if_unreachable_secs: u64,
}

/// The stale windows a response allows a shared cache. Zero when stale serving is prohibited
/// by `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies proxy-revalidate for a
/// shared cache, §5.2.2.10) or unqualified `no-cache` (§4.2.4).
pub fn stale_windows(view: &ResponseView, config: &PolicyConfig) -> StaleWindows {
    let d = &view.directives;
    if stale_prohibited(view) {
        return StaleWindows::default();
    }
    StaleWindows {
        while_revalidate_secs: u64::from(
            d.stale_while_revalidate
                .unwrap_or(config.default_stale_while_revalidate_secs),
        ),
        if_error_secs: u64::from(
            d.stale_if_error
                .unwrap_or(config.default_stale_if_error_secs),
        ),
        if_unreachable_secs: u64::from(config.stale_if_unreachable_secs),
    }
}

/// Whether the response forbids a shared cache from serving it stale (§4.2.4).
fn stale_prohibited(view: &ResponseView) -> bool {
    let d = &view.directives;
    d.must_revalidate
        || d.proxy_revalidate
        || d.s_maxage.is_some()
        || d.no_cache == Some(FieldScope::All)
}

/// What reuse decisions need from a stored response alone, with no request and no clock:
/// the same for every request it could serve, so a cache computes it once, when it stores
/// the response ([`crate::entry::Derived::figures`]), instead of re-parsing its fields on
/// every hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredFigures {
    /// Freshness lifetime and its source (§4.2.1).
    pub freshness: Freshness,
    /// The age the response had when it was received (`corrected_initial_age`, §4.2.3;
    /// an invalid `Age` field is ignored, §5.1).
    pub initial_age: u64,
    /// The stale windows the response allows.
    pub windows: StaleWindows,
    /// The response forbids serving it stale (§4.2.4).
    pub stale_prohibited: bool,
    /// Unqualified `no-cache` (§5.2.2.4): validate before every use.
    pub no_cache: bool,
}

impl StoredFigures {
    /// The figures `stored` carries ([`crate::entry::Derived::figures`], computed under the
    /// storing engine's `config` when it was stored), or, for an entry read from another
    /// tier, computed now from its fields.
    pub fn carried_or(stored: &CachedResponse, config: &PolicyConfig) -> Self {
        match stored.derived.figures {
            Some(figures) => figures,
            None => Self::of(stored, config),
        }
    }

    /// The figures of `stored`'s fields under `config` (ignoring any it carries).
    pub fn of(stored: &CachedResponse, config: &PolicyConfig) -> Self {
        let (view, freshness) = super::decision::directives_and_freshness(
            stored.status,
            &stored.headers,
            stored.response_time,
            config,
        );
        let head = super::decision::OriginHead {
            status: stored.status,
            headers: &stored.headers,
            request_time: stored.request_time,
            response_time: stored.response_time,
        };
        Self::from_view(&view, freshness, head, config)
    }

    /// The figures of a response whose directives `view` holds and whose freshness
    /// lifetime is `freshness` (the one response decision computes both once).
    pub fn from_view(
        view: &ResponseView,
        freshness: Freshness,
        head: super::decision::OriginHead<'_>,
        config: &PolicyConfig,
    ) -> Self {
        StoredFigures {
            freshness,
            // The current age as of the moment it was received.
            initial_age: current_age(
                head.headers,
                head.request_time,
                head.response_time,
                head.response_time,
            ),
            windows: stale_windows(view, config),
            stale_prohibited: stale_prohibited(view),
            no_cache: view.directives.no_cache == Some(FieldScope::All),
        }
    }

    /// Age and the lifetime that applies at `now`.
    pub fn at(&self, stored: &CachedResponse, now: Timestamp) -> EntryFigures {
        // Current age (§4.2.3) is the initial age plus the time resident in the cache.
        let age_secs = self
            .initial_age
            .saturating_add(now.secs_since(stored.response_time));
        let effective_lifetime = if stored.invalidated {
            self.freshness.lifetime_secs.min(age_secs)
        } else {
            self.freshness.lifetime_secs
        };
        EntryFigures {
            freshness: self.freshness,
            age_secs,
            effective_lifetime,
            windows: self.windows,
        }
    }
}

/// What every reuse and storage decision about a stored response starts from at a given
/// moment (RFC 9111 §4.2.1 freshness, §4.2.3 age, RFC 5861 windows).
#[derive(Clone, Copy, Debug)]
pub struct EntryFigures {
    /// Freshness lifetime and its source.
    pub freshness: Freshness,
    /// Current age in seconds (§4.2.3).
    pub age_secs: u64,
    /// The lifetime that applies now: the freshness lifetime, and no more than the age once
    /// soft-purged (the response has just become stale).
    pub effective_lifetime: u64,
    /// The stale windows the response allows.
    pub windows: StaleWindows,
}

/// Computes [`EntryFigures`] for `stored` at `now`.
pub fn entry_figures(
    stored: &CachedResponse,
    now: Timestamp,
    config: &PolicyConfig,
) -> EntryFigures {
    StoredFigures::of(stored, config).at(stored, now)
}

/// Evaluates whether `stored` can satisfy a request with `request_headers` at `now`
/// (RFC 9111 §4): Vary matching (§4.1), freshness (§4.2) against the request's `max-age`,
/// `min-fresh`, `max-stale` and `no-cache` (§5.2.1), `no-cache` in the response (§5.2.2.4),
/// stale serving (§4.2.4, RFC 5861) and soft-purge marks.
pub fn evaluate(
    request_headers: &Headers,
    stored: &CachedResponse,
    now: Timestamp,
    config: &PolicyConfig,
) -> Evaluation {
    evaluate_with(
        &StoredFigures::of(stored, config),
        request_headers,
        stored,
        now,
    )
}

/// [`evaluate`] with the stored response's [`StoredFigures`] already computed (under the
/// same [`PolicyConfig`]): what is left per request is arithmetic, the Vary check and the
/// request's own directives.
pub fn evaluate_with(
    figures: &StoredFigures,
    request_headers: &Headers,
    stored: &CachedResponse,
    now: Timestamp,
) -> Evaluation {
    let EntryFigures {
        freshness,
        age_secs,
        effective_lifetime,
        windows,
    } = figures.at(stored, now);
    let ttl_secs = signed(effective_lifetime) - signed(age_secs);
    let fresh = effective_lifetime > age_secs;
    let staleness = age_secs.saturating_sub(effective_lifetime);
    let req = RequestDirectives::from_headers(request_headers);
    let prohibited = figures.stale_prohibited;

    let reuse = if !vary::matches(&stored.headers, &stored.vary, request_headers) {
        Reuse::VaryMismatch
    } else if req.no_cache {
        Reuse::Revalidate(RevalidateReason::RequestNoCache)
    } else if figures.no_cache {
        Reuse::Revalidate(RevalidateReason::ResponseNoCache)
    } else if fresh && !request_freshness_ok(&req, effective_lifetime, age_secs) {
        Reuse::Revalidate(RevalidateReason::RequestFreshness)
    } else if fresh {
        Reuse::Fresh
    } else if prohibited {
        Reuse::Revalidate(RevalidateReason::Stale)
    } else if req_accepts_staleness(&req, staleness) {
        Reuse::StaleAcceptedByRequest
    } else if req.max_age.is_none()
        && req.min_fresh.is_none()
        && windows.while_revalidate_secs > 0
        && staleness <= windows.while_revalidate_secs
    {
        Reuse::StaleWhileRevalidate
    } else if stored.invalidated {
        Reuse::Revalidate(RevalidateReason::Invalidated)
    } else {
        Reuse::Revalidate(RevalidateReason::Stale)
    };
    let if_error_window = windows
        .if_error_secs
        .max(req.stale_if_error.map_or(0, u64::from));
    let within = |window: u64| {
        reuse != Reuse::VaryMismatch
            && !prohibited
            && (fresh || (window > 0 && staleness <= window))
    };
    Evaluation {
        reuse,
        age_secs,
        freshness,
        ttl_secs,
        stale_if_error: within(if_error_window),
        // The disconnected window is this cache's own allowance: not against a request that
        // asked for validation or for fresher content (§5.2.1.1, §5.2.1.3, §5.2.1.4).
        stale_if_unreachable: within(if_error_window)
            || (!req.no_cache
                && req.max_age.is_none()
                && req.min_fresh.is_none()
                && within(windows.if_unreachable_secs)),
    }
}

/// `max-age` (§5.2.1.1) and `min-fresh` (§5.2.1.3) in the request.
fn request_freshness_ok(req: &RequestDirectives, lifetime: u64, age: u64) -> bool {
    let max_age_ok = req.max_age.is_none_or(|max| age <= u64::from(max));
    let min_fresh_ok = req
        .min_fresh
        .is_none_or(|min| lifetime.saturating_sub(age) >= u64::from(min));
    max_age_ok && min_fresh_ok
}

/// `max-stale` (§5.2.1.2): any staleness, or up to N seconds.
fn req_accepts_staleness(req: &RequestDirectives, staleness: u64) -> bool {
    match req.max_stale {
        Some(MaxStale::Any) => true,
        Some(MaxStale::Secs(n)) => staleness <= u64::from(n),
        None => false,
    }
}

fn signed(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::conditional::{freshen, Freshened};

    fn stored(fields: &[(&str, &str)], request_secs: u64, response_secs: u64) -> CachedResponse {
        CachedResponse::new(
            200,
            Headers::from_pairs(fields.iter().copied()),
            alloc::vec::Vec::new(),
            Timestamp::from_secs(request_secs),
            Timestamp::from_secs(response_secs),
        )
    }

    /// The age from the figures kept at store time is the age computed afresh (§4.2.3).
    #[test]
    fn stored_figures_give_the_current_age() {
        let config = PolicyConfig::default();
        let date = "Thu, 01 Jan 1970 00:16:40 GMT"; // 1000 s
        for fields in [
            &[][..],
            &[("age", "30")],
            &[("age", "bogus"), ("cache-control", "max-age=60")],
            &[("age", "0, 7200"), ("cache-control", "max-age=60")],
            &[
                ("age", "7200"),
                ("age", "0"),
                ("cache-control", "max-age=60"),
            ],
            &[("date", date), ("cache-control", "max-age=600")],
            &[
                ("date", date),
                ("age", "5"),
                ("cache-control", "s-maxage=9"),
            ],
        ] {
            for (request, response) in [(1000, 1000), (990, 1010), (1200, 1300)] {
                let entry = stored(fields, request, response);
                let figures = StoredFigures::of(&entry, &config);
                for now in [response, response + 1, response + 599, response + 10_000] {
                    let now = Timestamp::from_secs(now);
                    let age =
                        current_age(&entry.headers, entry.request_time, entry.response_time, now);
                    let at = figures.at(&entry, now);
                    assert_eq!(at.age_secs, age, "{fields:?} {request} {response} {now:?}");
                    assert_eq!(at.effective_lifetime, at.freshness.lifetime_secs);
                }
            }
        }
    }

    /// A revalidated response has new fields, so it must not keep the old figures.
    #[test]
    fn freshening_drops_the_stored_figures() {
        let config = PolicyConfig::default();
        let mut entry = stored(&[("cache-control", "max-age=1"), ("etag", "\"v\"")], 0, 0);
        entry.derived.figures = Some(StoredFigures::of(&entry, &config));
        let not_modified =
            Headers::from_pairs([("cache-control", "max-age=99"), ("etag", "\"v\"")]);
        let Freshened::Updated(updated) = freshen(
            &entry,
            &not_modified,
            Timestamp::from_secs(5),
            Timestamp::from_secs(5),
        ) else {
            panic!("the 304 selects the stored response");
        };
        assert!(updated.derived.figures.is_none());
        assert_eq!(
            StoredFigures::of(&updated, &config).freshness.lifetime_secs,
            99
        );
    }
}
