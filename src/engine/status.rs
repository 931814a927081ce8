//! The `Cache-Status` entries the engine sends (RFC 9211), one constructor per outcome, so
//! every response that ends the same way says so the same way. Entries are listed nearest
//! the origin first (§2): a tier behind L1 comes before L1.

use alloc::string::String;
use alloc::vec::Vec;

use crate::policy::cache_status::{CacheStatusEntry, Forward};

/// The tiers a response can be found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The in-process store.
    L1,
    /// The Workers Cache API, between L1 and Redis.
    Colo,
    /// Redis.
    L2,
}

/// The `Cache-Status` names of the tiers (RFC 9211 §2), derived from the configured cache
/// name once rather than on every response, and the entries built with them.
pub(crate) struct Statuses {
    l1: String,
    l2: String,
    colo: String,
}

impl Statuses {
    /// The names for a cache called `cache_name`: `{name}-l1`, `-l2`, `-colo`.
    pub(crate) fn new(cache_name: &str) -> Self {
        Statuses {
            l1: alloc::format!("{cache_name}-l1"),
            l2: alloc::format!("{cache_name}-l2"),
            colo: alloc::format!("{cache_name}-colo"),
        }
    }

    fn tier(&self, tier: Tier) -> CacheStatusEntry {
        CacheStatusEntry::new(match tier {
            Tier::L1 => &self.l1,
            Tier::Colo => &self.colo,
            Tier::L2 => &self.l2,
        })
    }

    /// L1, saying only `detail` (errors the cache answers itself, write-behind).
    pub(crate) fn note(&self, detail: Option<&str>) -> CacheStatusEntry {
        CacheStatusEntry {
            detail: detail.map(String::from),
            ..self.tier(Tier::L1)
        }
    }

    /// Served from `tier` with `ttl` seconds of freshness left (RFC 9211 §2.1, §2.5).
    pub(crate) fn hit(&self, tier: Tier, ttl: i64, detail: Option<&str>) -> CacheStatusEntry {
        CacheStatusEntry {
            hit: true,
            ttl: Some(ttl),
            detail: detail.map(String::from),
            ..self.tier(tier)
        }
    }

    /// Served from `tier`, which held only part of the response (§2.2 `fwd=partial`): the
    /// rest came from the tiers behind it or the origin.
    pub(crate) fn partial(&self, tier: Tier, ttl: i64, detail: Option<&str>) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd: Some(Forward::Partial),
            ttl: Some(ttl),
            detail: detail.map(String::from),
            ..self.tier(tier)
        }
    }

    /// Served from `tier` with the response another request's fetch brought (§2.6
    /// `collapsed`).
    pub(crate) fn collapsed_hit(&self, tier: Tier, ttl: i64) -> CacheStatusEntry {
        CacheStatusEntry {
            collapsed: true,
            ..self.hit(tier, ttl, None)
        }
    }

    /// L1 waited for another request's fetch (forwarded for `fwd`) and serves its result.
    pub(crate) fn collapsed(&self, fwd: Forward, ttl: i64) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd: Some(fwd),
            collapsed: true,
            ttl: Some(ttl),
            ..self.tier(Tier::L1)
        }
    }

    /// `tier` missed for `fwd` and stores what was found behind it (§2.4 `stored`).
    pub(crate) fn stored(&self, tier: Tier, fwd: Forward) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd: Some(fwd),
            stored: true,
            ..self.tier(tier)
        }
    }

    /// L1 went to the origin for `fwd`, got `status` and stored it with `ttl` left.
    pub(crate) fn filled(&self, fwd: Forward, status: u16, ttl: i64) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd_status: Some(status),
            ttl: Some(ttl),
            ..self.stored(Tier::L1, fwd)
        }
    }

    /// L1 went to the origin for `fwd`, got `status` (if it answered) and stored nothing,
    /// for the reason `detail` if there is one.
    pub(crate) fn forwarded(
        &self,
        fwd: Forward,
        status: Option<u16>,
        detail: Option<&str>,
    ) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd: Some(fwd),
            fwd_status: status,
            detail: detail.map(String::from),
            ..self.tier(Tier::L1)
        }
    }

    /// L1 served a stale response because the origin failed (`status`, if it answered at
    /// all), as `detail` allowed (`stale-if-error`, `stale-if-unreachable`).
    pub(crate) fn stale_on_failure(
        &self,
        ttl: i64,
        status: Option<u16>,
        detail: &str,
    ) -> CacheStatusEntry {
        CacheStatusEntry {
            fwd_status: status,
            ..self.hit(Tier::L1, ttl, Some(detail))
        }
    }

    /// The entries of the tiers between L1 and `answered`, each of which stored what it
    /// missed (the colo tier only when there is one).
    pub(crate) fn backfilled(
        &self,
        answered: Tier,
        fwd: Forward,
        colo: bool,
    ) -> Vec<CacheStatusEntry> {
        let mut entries = Vec::new();
        if answered == Tier::L2 && colo {
            entries.push(self.stored(Tier::Colo, fwd));
        }
        if answered != Tier::L1 {
            entries.push(self.stored(Tier::L1, fwd));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_as_rfc_9211_says() {
        let s = Statuses::new("edge");
        assert_eq!(s.hit(Tier::L1, 30, None).render(), "edge-l1; hit; ttl=30");
        assert_eq!(
            s.filled(Forward::UriMiss, 200, 60).render(),
            "edge-l1; fwd=uri-miss; fwd-status=200; ttl=60; stored"
        );
        assert_eq!(
            s.forwarded(Forward::Bypass, Some(200), None).render(),
            "edge-l1; fwd=bypass; fwd-status=200"
        );
        assert_eq!(
            s.stale_on_failure(-5, Some(503), "stale-if-error").render(),
            "edge-l1; hit; fwd-status=503; ttl=-5; detail=stale-if-error"
        );
        let behind: Vec<String> = s
            .backfilled(Tier::L2, Forward::UriMiss, true)
            .iter()
            .map(CacheStatusEntry::render)
            .collect();
        assert_eq!(
            behind,
            [
                "edge-colo; fwd=uri-miss; stored",
                "edge-l1; fwd=uri-miss; stored"
            ]
        );
        assert!(s.backfilled(Tier::L1, Forward::UriMiss, true).is_empty());
        assert_eq!(
            s.partial(Tier::L1, 30, None).render(),
            "edge-l1; fwd=partial; ttl=30"
        );
        assert_eq!(
            s.collapsed_hit(Tier::L2, 9).render(),
            "edge-l2; hit; ttl=9; collapsed"
        );
    }
}
