//! Finding a stored response for a request: L1, then the colo tier, then L2, each
//! following the stored response's `Vary` to the request's variant by one rule
//! ([`variant_to_follow`], RFC 9111 §4.1); and keeping a response in L1 under its keys (a
//! lookup backfills L1 with what the tiers behind it found, a fill stores what it fetched).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::{CachedResponse, Derived};
use crate::headers::Headers;
use crate::policy::partial;
use crate::policy::reuse::{evaluate, evaluate_with, Evaluation, Reuse, StoredFigures};
use crate::policy::storage::lifetimes;
use crate::policy::vary;
use crate::store::{EntryMeta, Windows};

use super::{url_tag, Candidate};
use crate::engine::host::{Lock, Runtime};
use crate::engine::status::Tier;
use crate::engine::{Engine, Host, RequestView};

/// The key of the variant to look up after finding `primary` under `key`, or `None` when
/// `primary` itself is the response for `request_headers` (RFC 9111 §4.1). A response that
/// varies is stored under both keys; [`variant_key`] names the second.
pub(in crate::engine) fn variant_to_follow(
    key: &str,
    primary: &CachedResponse,
    request_headers: &Headers,
) -> Option<String> {
    if vary::matches(&primary.headers, &primary.vary, request_headers) {
        return None;
    }
    Some(variant_key(key, primary, request_headers))
}

/// The variant key of `stored` for `request_headers`: `key` and the values of the fields
/// its `Vary` nominates.
fn variant_key(key: &str, stored: &CachedResponse, request_headers: &Headers) -> String {
    let names = vary::nominated_fields(&stored.headers);
    format!("{key}{}", vary::variant_suffix(&names, request_headers))
}

/// Looks `key` up with `read`, then follows `Vary` to this request's variant. Without one,
/// the primary response is returned: its verdict says it does not match.
pub(in crate::engine) async fn follow_vary<F, R>(
    key: &str,
    request_headers: &Headers,
    read: R,
) -> Option<Arc<CachedResponse>>
where
    R: Fn(String) -> F,
    F: core::future::Future<Output = Option<Arc<CachedResponse>>>,
{
    let primary = read(String::from(key)).await?;
    match variant_to_follow(key, &primary, request_headers) {
        None => Some(primary),
        Some(variant) => Some(read(variant).await.unwrap_or(primary)),
    }
}

impl<H: Host> Engine<H> {
    /// An entry ready to be kept: what every hit would otherwise derive from its fields
    /// alone is computed now, under this engine's policy.
    pub(crate) fn ready_to_keep(&self, mut entry: CachedResponse) -> Arc<CachedResponse> {
        entry.derived = Derived {
            figures: Some(StoredFigures::of(&entry, &self.config.policy)),
        };
        Arc::new(entry)
    }

    /// The verdict on `stored` for `head` (RFC 9111 §4): [`evaluate`] with the figures
    /// [`Self::ready_to_keep`] computed, if it did, limited by what an incomplete `stored`
    /// holds for this request (§3.3, [`partial::limit`]). Every use of a stored response
    /// for a request, in every tier and by every waiter, goes by it.
    pub(super) fn evaluate(
        &self,
        head: &RequestView,
        stored: &CachedResponse,
        now: crate::time::Timestamp,
    ) -> Evaluation {
        let request_headers = head.headers();
        let evaluation = match &stored.derived.figures {
            Some(figures) => evaluate_with(figures, request_headers, stored, now),
            None => evaluate(request_headers, stored, now, &self.config.policy),
        };
        partial::limit(evaluation, head.method(), request_headers, stored)
    }

    /// Looks `key` up in L1, following the stored response's `Vary` to the variant entry
    /// for this request ([`variant_to_follow`]). May return a response whose Vary does not
    /// match; [`Self::evaluate`] says so.
    pub(super) fn l1_find(
        &self,
        key: &str,
        request_headers: &Headers,
        now: crate::time::Timestamp,
    ) -> Option<Arc<CachedResponse>> {
        // Both reads under one lock: this is every hit's path.
        self.state.with(|s| {
            let primary = s.l1.get(key, now).into_value()?;
            match variant_to_follow(key, &primary, request_headers) {
                None => Some(primary),
                Some(variant) => Some(s.l1.get(&variant, now).into_value().unwrap_or(primary)),
            }
        })
    }

    /// Looks the request up in the tiers behind L1 (colo, then L2) and backfills L1 with
    /// what it finds (unless its Vary does not match this request).
    pub(super) async fn shared_lookup(&self, head: &RequestView, key: &str) -> Option<Candidate> {
        if self.colo().is_some() {
            let found = self.colo_find(key, head.headers()).await;
            if let Some(c) = self.backfill(head, key, found, Tier::Colo) {
                return Some(c);
            }
        }
        self.shared.as_ref()?;
        let found = self.l2_find(key, head.headers()).await;
        self.backfill(head, key, found, Tier::L2)
    }

    /// What a tier behind L1 `found` for the request, evaluated, and kept in L1 too, unless
    /// its Vary does not match this request (it would then be no use to anyone asking).
    fn backfill(
        &self,
        head: &RequestView,
        key: &str,
        found: Option<Arc<CachedResponse>>,
        tier: Tier,
    ) -> Option<Candidate> {
        let stored = found?;
        let now = self.runtime.now();
        let evaluation = self.evaluate(head, &stored, now);
        if evaluation.reuse == Reuse::VaryMismatch {
            return None;
        }
        self.l1_insert(key, &stored, head.headers(), now);
        Some(Candidate {
            stored,
            evaluation,
            tier,
        })
    }

    /// Looks `key` up in L2, following `Vary` ([`follow_vary`]).
    pub(super) async fn l2_find(
        &self,
        key: &str,
        request_headers: &Headers,
    ) -> Option<Arc<CachedResponse>> {
        follow_vary(
            key,
            request_headers,
            |k| async move { self.l2_read(&k).await },
        )
        .await
    }

    /// The keys a response is stored under: the primary key, and the variant key when it
    /// varies (RFC 9111 §4.1).
    pub(super) fn store_keys(
        &self,
        key: &str,
        stored: &CachedResponse,
        request_headers: &Headers,
    ) -> Vec<String> {
        let mut keys = alloc::vec![String::from(key)];
        if !vary::nominated_fields(&stored.headers).is_empty() {
            keys.push(variant_key(key, stored, request_headers));
        }
        keys
    }

    /// Inserts `stored` into L1 under its keys; returns them.
    pub(crate) fn l1_insert(
        &self,
        key: &str,
        stored: &Arc<CachedResponse>,
        request_headers: &Headers,
        now: crate::time::Timestamp,
    ) -> Vec<String> {
        let keys = self.l1_insert_if(key, stored, request_headers, now, |_| true);
        keys.unwrap_or_default()
    }

    /// Inserts `stored` into L1 under its keys if `allowed` says so, decided under the same
    /// lock (a purge cannot come between); returns the keys when it was inserted.
    pub(crate) fn l1_insert_if(
        &self,
        key: &str,
        stored: &Arc<CachedResponse>,
        request_headers: &Headers,
        now: crate::time::Timestamp,
        allowed: impl FnOnce(&mut crate::engine::EngineState) -> bool,
    ) -> Option<Vec<String>> {
        let l = lifetimes(stored, now, &self.config.policy);
        let windows = Windows {
            stored_at: now,
            fresh_until: l.fresh_until,
            stale_while_revalidate_until: l.stale_while_revalidate_until,
            // L1 keeps the entry as long as the policy finds it useful (stale-if-error or
            // validator retention); `evaluate` decides how it may be used.
            stale_if_error_until: l.keep_until,
        };
        let keys = self.store_keys(key, stored, request_headers);
        self.state.with(|s| {
            if !allowed(s) {
                return None;
            }
            for k in &keys {
                let meta = EntryMeta::new(windows, stored.size_bytes() + k.len()).with_tags(
                    stored
                        .tags
                        .iter()
                        .cloned()
                        .chain(core::iter::once(url_tag(key))),
                );
                s.l1.insert(k.clone(), stored.clone(), meta, now);
            }
            Some(keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::simulated::{block_on, request, Answer, Simulation};
    use crate::engine::EngineConfig;
    use crate::time::{Clock, Timestamp};
    use alloc::collections::BTreeMap;

    fn stored(fields: &[(&str, &str)], sent: &[(&str, &str)]) -> CachedResponse {
        let mut entry = CachedResponse::new(
            200,
            Headers::from_pairs(fields.iter().copied()),
            b"x".to_vec(),
            Timestamp::from_millis(0),
            Timestamp::from_millis(0),
        );
        entry.vary = vary::select(&entry.headers, &Headers::from_pairs(sent.iter().copied()));
        entry
    }

    /// A response that varies is stored under the variant key the lookup follows for the
    /// same request, and under no key another request's lookup follows.
    #[test]
    fn lookups_follow_vary_to_the_key_the_variant_was_stored_under() {
        let gzip = Headers::from_pairs([("accept-encoding", "gzip")]);
        let br = Headers::from_pairs([("accept-encoding", "br")]);
        let primary = stored(
            &[("vary", "Accept-Encoding")],
            &[("accept-encoding", "gzip")],
        );
        assert_eq!(variant_to_follow("k", &primary, &gzip), None, "it matches");
        let followed = variant_to_follow("k", &primary, &br).expect("a variant to look at");
        let br_variant = stored(&[("vary", "Accept-Encoding")], &[("accept-encoding", "br")]);
        assert_eq!(variant_key("k", &br_variant, &br), followed);
        assert_ne!(variant_key("k", &primary, &gzip), followed);
        let plain = stored(&[("cache-control", "max-age=60")], &[]);
        assert_eq!(
            variant_to_follow("k", &plain, &br),
            None,
            "no Vary, no variant"
        );
    }

    /// The one helper every tier behind L1 uses: the primary, the variant when there is
    /// one for the request, and the primary (whose verdict is a mismatch) when there is not.
    #[test]
    fn follow_vary_reads_the_primary_then_the_variant() {
        let br = Headers::from_pairs([("accept-encoding", "br")]);
        let primary = Arc::new(stored(
            &[("vary", "Accept-Encoding")],
            &[("accept-encoding", "gzip")],
        ));
        let variant = Arc::new(stored(
            &[("vary", "Accept-Encoding")],
            &[("accept-encoding", "br")],
        ));
        let variant_k = variant_key("k", &variant, &br);
        let mut tier = BTreeMap::new();
        let read = |tier: &BTreeMap<String, Arc<CachedResponse>>| {
            let tier = tier.clone();
            block_on(follow_vary("k", &br, move |k| {
                let found = tier.get(&k).cloned();
                async move { found }
            }))
        };
        assert!(read(&tier).is_none(), "nothing under the primary key");
        tier.insert(String::from("k"), primary.clone());
        assert!(
            Arc::ptr_eq(&read(&tier).unwrap(), &primary),
            "no variant yet"
        );
        tier.insert(variant_k, variant.clone());
        assert!(Arc::ptr_eq(&read(&tier).unwrap(), &variant));
    }

    /// Through the engine: each variant stored in L1 is found by the request it answers,
    /// and a request no stored variant answers is a miss.
    #[test]
    fn l1_finds_each_stored_variant() {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept-encoding")],
                "v",
            ),
        );
        let engine = sim.engine(EngineConfig::default()).unwrap();
        for encoding in ["gzip", "br", "gzip", "br"] {
            let fields = [("accept-encoding", encoding)];
            sim.clock
                .block_on(engine.handle(request("GET", "/v", &fields)));
        }
        assert_eq!(sim.fetches(), 2, "one fetch per variant");
        let now = sim.clock.now();
        let view = |encoding| {
            let fields =
                Headers::from_pairs([("host", "example.com"), ("accept-encoding", encoding)]);
            match crate::engine::RequestView::parse("GET", "http", "/v", fields, None) {
                Ok(crate::engine::Target::Resource(view)) => view,
                _ => unreachable!(),
            }
        };
        for encoding in ["gzip", "br"] {
            let view = view(encoding);
            let key = engine.key_for(&view);
            let found = engine.l1_find(&key, view.headers(), now).expect("stored");
            let evaluation = engine.evaluate(&view, &found, now);
            assert_eq!(evaluation.reuse, Reuse::Fresh, "{encoding}");
        }
        let view = view("zstd");
        let key = engine.key_for(&view);
        let found = engine
            .l1_find(&key, view.headers(), now)
            .expect("the primary");
        let evaluation = engine.evaluate(&view, &found, now);
        assert_eq!(evaluation.reuse, Reuse::VaryMismatch);
    }
}
