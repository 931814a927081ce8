//! The read path for `GET` and `HEAD`: L1, then the colo tier (if enabled), then L2, then
//! the origin, with coalescing, stale-while-revalidate, stale-if-error and conditional
//! revalidation (RFC 9111 §4, RFC 5861).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::cache_control::RequestDirectives;
use crate::entry::{CachedResponse, Derived};
use crate::headers::Headers;
use crate::key::cache_key;
use crate::policy::cache_status::{CacheStatusEntry, Forward};
use crate::policy::conditional::{conditional_headers, freshen, Freshened};
use crate::policy::decision::{decide, OriginHead, ResponseDecision};
use crate::policy::reuse::{evaluate, evaluate_with, Evaluation, Reuse, StoredFigures};
use crate::policy::storage::lifetimes;
use crate::policy::vary;
use crate::store::{EntryMeta, Windows};

use super::flight::{Outcome, Role};
use super::host::{Lock, Origin, OriginBody, OriginError, OriginRequest, Runtime};
use super::l2::with_timeout;
use super::status::Tier;
use super::{respond, Body, Engine, Handled, Host, Job, RequestView};

/// A stored response found for a request, with its verdict.
struct Candidate {
    stored: Arc<CachedResponse>,
    evaluation: Evaluation,
    tier: Tier,
}

/// The internal L1 tag every entry stored for primary key `key` carries (its Vary variants
/// included), so a URL purge finds them all. Origin tags cannot contain U+001F.
pub(crate) fn url_tag(key: &str) -> String {
    format!("\u{1f}url {key}")
}

/// The statuses RFC 5861 §4 counts as an origin error for stale-if-error.
fn is_error_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// Request fields the cache answers itself when it fills the cache: forwarding them would
/// fetch a `304` it could not store (RFC 9111 §4.3.2).
const CLIENT_VALIDATORS: [&str; 2] = ["if-none-match", "if-modified-since"];

impl<H: Host> Engine<H> {
    /// An entry ready to be kept: what every hit would otherwise derive from its fields
    /// alone is computed now, under this engine's policy.
    pub(crate) fn ready_to_keep(&self, mut entry: CachedResponse) -> Arc<CachedResponse> {
        entry.derived = Derived {
            figures: Some(StoredFigures::of(&entry, &self.config.policy)),
            ..Derived::default()
        };
        Arc::new(entry)
    }

    /// [`evaluate`] with the figures [`Self::ready_to_keep`] computed, if it did.
    fn evaluate(
        &self,
        request_headers: &Headers,
        stored: &CachedResponse,
        now: crate::time::Timestamp,
    ) -> Evaluation {
        match &stored.derived.figures {
            Some(figures) => evaluate_with(figures, request_headers, stored, now),
            None => evaluate(request_headers, stored, now, &self.config.policy),
        }
    }

    /// The request fields the route of `view` keys on ([`super::config::RouteRule::key_headers`]).
    pub(crate) fn key_headers(&self, view: &RequestView) -> &[String] {
        self.config
            .route_for(view.path())
            .map_or(&[][..], |route| route.key_headers.as_slice())
    }

    /// The key a request's response is stored under (RFC 9111 §2: the target URI; `HEAD`
    /// shares `GET`'s).
    pub(crate) fn key_for(&self, view: &RequestView) -> String {
        let key = |target: &str| {
            cache_key(
                "GET",
                view.scheme(),
                view.authority(),
                target,
                &self.config.key,
            )
        };
        match view.query() {
            None => key(view.path()),
            Some(_) => key(&view.target()),
        }
    }

    /// Serves a `GET` or `HEAD`.
    pub(crate) async fn read(&self, head: RequestView) -> Handled<H::Body> {
        let key = self.key_for(&head);
        let now = self.runtime.now();
        let candidate = self
            .l1_find(&key, head.headers(), now)
            .map(|stored| Candidate {
                evaluation: self.evaluate(head.headers(), &stored, now),
                stored,
                tier: Tier::L1,
            });
        let (candidate, fwd) = match candidate {
            Some(c) => match c.evaluation.reuse {
                Reuse::Revalidate(_) => {
                    let fwd = if RequestDirectives::from_headers(head.headers()).no_cache {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    (Some(c), fwd)
                }
                Reuse::VaryMismatch => (None, Forward::VaryMiss),
                _ => return self.serve_candidate(&head, &key, c),
            },
            None => (None, Forward::UriMiss),
        };
        if candidate.is_none() && RequestDirectives::from_headers(head.headers()).only_if_cached {
            // RFC 9111 §5.2.1.7: use a stored response or answer 504, never the origin.
            if let Some(c) = Box::pin(self.shared_lookup(&head, &key)).await {
                if c.evaluation.reuse == Reuse::Fresh
                    || c.evaluation.reuse == Reuse::StaleAcceptedByRequest
                {
                    return self.serve_candidate(&head, &key, c);
                }
            }
            let entry = self.statuses.note(Some("only-if-cached"));
            return Handled::now(respond::error(504, "not in cache (only-if-cached)", entry));
        }
        // A miss, boxed: a hit's future need not carry room for a fetch.
        Box::pin(self.fetch_coalesced(head, key, candidate, fwd)).await
    }

    /// Serves a stored response that needs no origin round trip first (fresh, accepted
    /// stale, or stale-while-revalidate with a background job).
    fn serve_candidate(&self, head: &RequestView, key: &str, c: Candidate) -> Handled<H::Body> {
        let revalidate = || {
            let already = self.state.with(|s| s.flights.in_flight(key));
            (!already).then(|| Job::Revalidate {
                head: head.clone(),
                key: String::from(key),
                stored: c.stored.clone(),
            })
        };
        let (entries, job) = if c.evaluation.reuse == Reuse::StaleWhileRevalidate {
            self.count(|s| s.stale_while_revalidate += 1);
            (
                self.hit_entries(&c, Some("stale-while-revalidate")),
                revalidate(),
            )
        } else if c.tier == Tier::L1 && self.refresh_ahead_due(&c) {
            let job = revalidate();
            self.count(|s| {
                s.l1_hits += 1;
                s.refreshed_early += u64::from(job.is_some());
            });
            (self.hit_entries(&c, None), job)
        } else {
            self.count(|s| match c.tier {
                Tier::L1 => s.l1_hits += 1,
                Tier::Colo => s.colo_hits += 1,
                Tier::L2 => s.l2_hits += 1,
            });
            // Found in L2 with a colo tier in front: fill it too, after the response.
            let job = (c.tier == Tier::L2 && self.colo().is_some()).then(|| Job::WriteColo {
                keys: self.store_keys(key, &c.stored, head.headers()),
                stored: c.stored.clone(),
            });
            (self.hit_entries(&c, None), job)
        };
        Handled {
            response: respond::from_cache(
                head.method(),
                head.headers(),
                c.stored,
                c.evaluation.age_secs,
                &entries,
            ),
            job,
        }
    }

    /// Whether a fresh L1 hit should refresh its entry in the background now
    /// ([`super::refresh`]).
    fn refresh_ahead_due(&self, c: &Candidate) -> bool {
        let config = &self.config.refresh_ahead;
        if config.beta_percent == 0 || c.evaluation.reuse != Reuse::Fresh {
            return false;
        }
        let fetch_ms = c.stored.response_time.millis_since(c.stored.request_time);
        let delta_ms = fetch_ms.max(config.min_delta_ms);
        let bits = self.state.with(|s| s.rng.next_u64());
        super::refresh::refresh_early(c.evaluation.ttl_secs, delta_ms, config.beta_percent, bits)
    }

    /// Looks the request up in the tiers behind L1 (colo, then L2) and backfills L1 with
    /// what it finds (unless its Vary does not match this request).
    async fn shared_lookup(&self, head: &RequestView, key: &str) -> Option<Candidate> {
        if self.colo().is_some() {
            if let Some(stored) = self.colo_find(key, head.headers()).await {
                let now = self.runtime.now();
                let evaluation = self.evaluate(head.headers(), &stored, now);
                if evaluation.reuse != Reuse::VaryMismatch {
                    self.l1_insert(key, &stored, head.headers(), now);
                    return Some(Candidate {
                        stored,
                        evaluation,
                        tier: Tier::Colo,
                    });
                }
            }
        }
        self.l2_lookup(head, key).await
    }

    /// Looks the request up in L2 and backfills L1 with what it finds there (unless its
    /// Vary does not match this request).
    async fn l2_lookup(&self, head: &RequestView, key: &str) -> Option<Candidate> {
        self.store.as_ref()?;
        let stored = self.l2_find(key, head.headers()).await?;
        let now = self.runtime.now();
        let evaluation = self.evaluate(head.headers(), &stored, now);
        if evaluation.reuse == Reuse::VaryMismatch {
            return None;
        }
        self.l1_insert(key, &stored, head.headers(), now);
        Some(Candidate {
            stored,
            evaluation,
            tier: Tier::L2,
        })
    }

    /// `Cache-Status` entries for a response served from a tier.
    fn hit_entries(&self, c: &Candidate, detail: Option<&str>) -> Vec<CacheStatusEntry> {
        let mut entries = alloc::vec![self.statuses.hit(c.tier, c.evaluation.ttl_secs, detail)];
        entries.extend(
            self.statuses
                .backfilled(c.tier, Forward::UriMiss, self.colo().is_some()),
        );
        entries
    }

    /// Looks `key` up in L1, following the stored response's `Vary` to the variant entry
    /// for this request (RFC 9111 §4.1). May return a response whose Vary does not match;
    /// [`evaluate`] says so.
    fn l1_find(
        &self,
        key: &str,
        request_headers: &Headers,
        now: crate::time::Timestamp,
    ) -> Option<Arc<CachedResponse>> {
        self.state.with(|s| {
            let primary = s.l1.get(key, now).into_value()?;
            if vary::matches(&primary.headers, &primary.vary, request_headers) {
                return Some(primary);
            }
            let names = vary::nominated_fields(&primary.headers);
            let variant = format!("{key}{}", vary::variant_suffix(&names, request_headers));
            Some(s.l1.get(&variant, now).into_value().unwrap_or(primary))
        })
    }

    /// Looks `key` up in L2, following `Vary` like [`Self::l1_find`].
    async fn l2_find(&self, key: &str, request_headers: &Headers) -> Option<Arc<CachedResponse>> {
        let primary = self.l2_read(key).await?;
        if vary::matches(&primary.headers, &primary.vary, request_headers) {
            return Some(primary);
        }
        let names = vary::nominated_fields(&primary.headers);
        let variant = format!("{key}{}", vary::variant_suffix(&names, request_headers));
        Some(self.l2_read(&variant).await.unwrap_or(primary))
    }

    /// The keys a response is stored under: the primary key, and the variant key when it
    /// varies (RFC 9111 §4.1).
    fn store_keys(
        &self,
        key: &str,
        stored: &CachedResponse,
        request_headers: &Headers,
    ) -> Vec<String> {
        let names = vary::nominated_fields(&stored.headers);
        let mut keys = alloc::vec![String::from(key)];
        if !names.is_empty() {
            keys.push(format!(
                "{key}{}",
                vary::variant_suffix(&names, request_headers)
            ));
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
        });
        keys
    }

    /// Joins (or leads) the flight for `key`. No live leader takes longer than the origin
    /// timeout plus the time a waiter waits; a flight older than that lost its leader.
    fn join_flight(&self, key: &str) -> Role {
        let now = self.runtime.now();
        let limits = &self.config.limits;
        let abandon_after = limits
            .origin_timeout_ms
            .saturating_add(limits.coalesce_wait_ms);
        self.state.with(|s| s.flights.join(key, now, abandon_after))
    }

    /// Fetches for `key`, coalescing with a fetch already in progress (RFC 9111 §4 allows
    /// one response to satisfy several waiting requests when it is storable and matches).
    async fn fetch_coalesced(
        &self,
        head: RequestView,
        key: String,
        candidate: Option<Candidate>,
        fwd: Forward,
    ) -> Handled<H::Body> {
        match self.join_flight(&key) {
            Role::Waiter(id) => {
                self.count(|s| s.coalesced += 1);
                let wait = core::future::poll_fn(|cx| {
                    self.state.with(|s| s.flights.poll(&key, id, cx.waker()))
                });
                let outcome =
                    with_timeout(&self.runtime, self.config.limits.coalesce_wait_ms, wait).await;
                if outcome.is_none() {
                    self.state.with(|s| s.flights.leave(&key, id));
                }
                if let Some(Outcome::Stored(stored)) = outcome {
                    let now = self.runtime.now();
                    let evaluation = self.evaluate(head.headers(), &stored, now);
                    if matches!(
                        evaluation.reuse,
                        Reuse::Fresh | Reuse::StaleAcceptedByRequest
                    ) {
                        let entry = self.statuses.collapsed(fwd, evaluation.ttl_secs);
                        return Handled::now(respond::from_cache(
                            head.method(),
                            head.headers(),
                            stored,
                            evaluation.age_secs,
                            &[entry],
                        ));
                    }
                }
                let (handled, _) = self.fetch(&head, &key, candidate, fwd).await;
                handled
            }
            Role::Leader(id) => {
                let guard = FlightGuard {
                    state: &self.state,
                    key: &key,
                    id,
                    finished: false,
                };
                let mut candidate = candidate;
                let mut fwd = fwd;
                if candidate.is_none() && self.store.is_some() {
                    // Only the leader reads the colo tier and L2: one Redis GET per key
                    // however many wait.
                    if let Some(found) = self.shared_lookup(&head, &key).await {
                        if matches!(found.evaluation.reuse, Reuse::Revalidate(_)) {
                            candidate = Some(found);
                            fwd = Forward::Stale;
                        } else {
                            guard.finish(Outcome::Stored(found.stored.clone()));
                            return self.serve_candidate(&head, &key, found);
                        }
                    }
                }
                let mut leased = false;
                if candidate.is_none() {
                    self.count(|s| s.misses += 1);
                    if self.store.is_some() {
                        match self.lease_or_wait(&head, &key, fwd).await {
                            LeaseOrWait::Served(handled, stored) => {
                                guard.finish(Outcome::Stored(stored));
                                return *handled;
                            }
                            LeaseOrWait::Fetch { leased: held } => leased = held,
                        }
                    }
                }
                let (handled, outcome) = self.fetch(&head, &key, candidate, fwd).await;
                let stored = matches!(outcome, Outcome::Stored(_));
                guard.finish(outcome);
                if leased && !stored {
                    // Nothing will reach the shared tier: let other instances fetch now
                    // rather than wait out the lease (the L2 write releases it otherwise).
                    self.release_lease(&key).await;
                }
                handled
            }
        }
    }

    /// Takes the cross-instance fetch lease for a cold key, or, when another instance holds
    /// it, waits for that instance's response to appear in L2 and serves it. `None` means
    /// this instance should fetch.
    async fn lease_or_wait(
        &self,
        head: &RequestView,
        key: &str,
        fwd: Forward,
    ) -> LeaseOrWait<H::Body> {
        let mut leased = self.acquire_lease(key).await;
        let found = if leased {
            // Won. Another instance may have stored the object and released its lease
            // between our L2 miss and now: look once more before going to the origin.
            self.l2_find(key, head.headers()).await
        } else {
            match self.await_other_instance(head, key).await {
                Waited::Found(found) => Some(found),
                Waited::Leased => {
                    leased = true;
                    None
                }
                Waited::Gone => None,
            }
        };
        let Some(found) = found else {
            return LeaseOrWait::Fetch { leased };
        };
        let now = self.runtime.now();
        let evaluation = self.evaluate(head.headers(), &found, now);
        if !matches!(
            evaluation.reuse,
            Reuse::Fresh | Reuse::StaleAcceptedByRequest
        ) {
            return LeaseOrWait::Fetch { leased };
        }
        if leased {
            // Someone else stored it after all: the lease is not needed.
            self.release_lease(key).await;
        }
        self.l1_insert(key, &found, head.headers(), now);
        self.count(|s| s.coalesced += 1);
        let mut entries = alloc::vec![self.statuses.collapsed_hit(Tier::L2, evaluation.ttl_secs)];
        entries.extend(
            self.statuses
                .backfilled(Tier::L2, fwd, self.colo().is_some()),
        );
        let response = respond::from_cache(
            head.method(),
            head.headers(),
            found.clone(),
            evaluation.age_secs,
            &entries,
        );
        let job = self.colo().is_some().then(|| Job::WriteColo {
            keys: self.store_keys(key, &found, head.headers()),
            stored: found.clone(),
        });
        LeaseOrWait::Served(Box::new(Handled { response, job }), found)
    }

    /// Polls L2 for `key` while another instance holds its fetch lease, for at most the
    /// lease time (and the coalescing bound): [`Waited::Found`] once the object is there
    /// and usable for this request. When the lease is gone without it (its holder's fetch
    /// failed or was not storable), one waiter takes the lease and fetches
    /// ([`Waited::Leased`]) while the others go on waiting for it: an origin in trouble
    /// gets one request at a time, not one per waiting instance.
    async fn await_other_instance(&self, head: &RequestView, key: &str) -> Waited {
        let usable = |found: &Arc<CachedResponse>| {
            let evaluation = self.evaluate(head.headers(), found, self.runtime.now());
            matches!(
                evaluation.reuse,
                Reuse::Fresh | Reuse::StaleAcceptedByRequest
            )
        };
        let started = self.runtime.now();
        let bound = self
            .config
            .l2
            .lease_ms
            .min(self.config.limits.coalesce_wait_ms);
        let mut delay = 10;
        while self.runtime.now().millis_since(started) < bound {
            self.runtime.sleep(delay).await;
            delay = (delay * 2).min(100);
            if let Some(found) = self.l2_find(key, head.headers()).await {
                if usable(&found) {
                    return Waited::Found(found);
                }
            }
            if self.l2_store().is_none() {
                // The shared tier fails: the lease holder may be gone too.
                return Waited::Gone;
            }
            if !self.lease_held(key).await {
                // Released, perhaps just after storing the object: look once more, then
                // lead in the holder's place unless another waiter already does.
                if let Some(found) = self.l2_find(key, head.headers()).await {
                    if usable(&found) {
                        return Waited::Found(found);
                    }
                }
                if self.acquire_lease(key).await {
                    return Waited::Leased;
                }
            }
        }
        Waited::Gone
    }

    /// Revalidates a response served under stale-while-revalidate, unless another request
    /// is already fetching the key.
    pub(crate) async fn revalidate_in_background(
        &self,
        head: RequestView,
        key: String,
        stored: Arc<CachedResponse>,
    ) {
        // Jobs queued by several stale hits: only the first still finds the stale copy in
        // L1; once it has been replaced there is nothing left to revalidate.
        let still_stale = self.state.with(|s| {
            s.l1.peek(key.as_str())
                .is_none_or(|current| Arc::ptr_eq(current.value, &stored))
        });
        if !still_stale {
            return;
        }
        let id = match self.join_flight(&key) {
            Role::Leader(id) => id,
            Role::Waiter(id) => {
                // Someone else is already fetching it.
                self.state.with(|s| s.flights.leave(&key, id));
                return;
            }
        };
        let guard = FlightGuard {
            state: &self.state,
            key: &key,
            id,
            finished: false,
        };
        // Across instances too: one refresh per expiry, the others take its result from L2.
        let mut leased = self.store.is_some() && self.acquire_lease(&key).await;
        if self.store.is_some() && !leased {
            match self.await_other_instance(&head, &key).await {
                Waited::Found(fresh) => {
                    self.l1_insert(&key, &fresh, head.headers(), self.runtime.now());
                    self.count(|s| s.coalesced += 1);
                    guard.finish(Outcome::Stored(fresh));
                    return;
                }
                Waited::Leased => leased = true,
                Waited::Gone => {
                    guard.finish(Outcome::NotShared);
                    return;
                }
            }
        }
        let now = self.runtime.now();
        let evaluation = self.evaluate(head.headers(), &stored, now);
        let candidate = Candidate {
            stored,
            evaluation: Evaluation {
                reuse: Reuse::Revalidate(crate::policy::reuse::RevalidateReason::Stale),
                ..evaluation
            },
            tier: Tier::L1,
        };
        let (handled, outcome) = self
            .fetch(&head, &key, Some(candidate), Forward::Stale)
            .await;
        guard.finish(outcome);
        // Only tier writes come back from a fetch; run them now.
        let mut jobs: Vec<Job> = handled.job.into_iter().collect();
        while let Some(job) = jobs.pop() {
            match job {
                Job::WriteL2 { keys, stored } => self.l2_write_all(&keys, &stored).await,
                Job::WriteColo { keys, stored } => {
                    for k in keys {
                        self.colo_write(&k, &stored).await;
                    }
                }
                Job::Batch(more) => jobs.extend(more),
                Job::Invalidate(keys) => self.invalidate_keys(&keys).await,
                Job::Revalidate { .. } | Job::SyncPurges | Job::Warm(_) | Job::FlushWriteBehind => {
                }
            }
        }
        if leased {
            self.release_lease(&key).await;
        }
    }

    /// Sends the request to the origin within the origin timeout. `HEAD` is fetched as
    /// `GET` so the response can be stored; the client's validators are replaced by the
    /// cache's own when it revalidates `conditional_for`.
    async fn origin_fetch(
        &self,
        head: &RequestView,
        conditional_for: Option<&CachedResponse>,
    ) -> Result<super::OriginResponse<H::Body>, OriginError> {
        let mut headers = head.origin_headers(&self.trust, self.key_headers(head));
        for field in CLIENT_VALIDATORS {
            headers.remove(field);
        }
        if let Some(stored) = conditional_for {
            for (name, value) in conditional_headers(stored).iter() {
                headers.append(name, value);
            }
        }
        let request = OriginRequest {
            method: String::from("GET"),
            scheme: String::from(head.scheme()),
            host: String::from(head.authority()),
            path_and_query: head.target(),
            headers,
            body: None,
        };
        self.count(|s| s.origin_fetches += 1);
        let limit = self.config.limits.max_object_bytes;
        let result = with_timeout(
            &self.runtime,
            self.config.limits.origin_timeout_ms,
            self.origin.fetch(request, limit),
        )
        .await
        .unwrap_or(Err(OriginError::Timeout));
        if result.is_err() {
            self.count(|s| s.origin_errors += 1);
        }
        result
    }

    /// One origin round trip for a read, and what to tell coalesced waiters.
    async fn fetch(
        &self,
        head: &RequestView,
        key: &str,
        candidate: Option<Candidate>,
        fwd: Forward,
    ) -> (Handled<H::Body>, Outcome) {
        let revalidating = candidate
            .as_ref()
            .filter(|c| matches!(c.evaluation.reuse, Reuse::Revalidate(_)))
            .map(|c| c.stored.clone());
        let request_time = self.runtime.now();
        let result = self.origin_fetch(head, revalidating.as_deref()).await;
        let response_time = self.runtime.now();
        let response = match result {
            Ok(response) if !is_error_status(response.status) => response,
            other => {
                // RFC 5861 §4 / RFC 9111 §4.2.4: serve stale on error when allowed, and
                // within the disconnected window when the origin cannot be reached at all.
                let unreachable = matches!(
                    &other,
                    Err(OriginError::Unreachable(_) | OriginError::Timeout)
                );
                let allowed = |c: &Candidate| {
                    c.evaluation.stale_if_error
                        || (unreachable && c.evaluation.stale_if_unreachable)
                };
                if let Some(c) = candidate.filter(allowed) {
                    let detail = if c.evaluation.stale_if_error {
                        "stale-if-error"
                    } else {
                        "stale-if-unreachable"
                    };
                    self.count(|s| s.stale_if_error += 1);
                    let age = crate::policy::freshness::current_age(
                        &c.stored.headers,
                        c.stored.request_time,
                        c.stored.response_time,
                        response_time,
                    )
                    .unwrap_or(c.evaluation.age_secs);
                    let entry = self.statuses.stale_on_failure(
                        c.evaluation.ttl_secs,
                        other.as_ref().ok().map(|r| r.status),
                        detail,
                    );
                    let response =
                        respond::from_cache(head.method(), head.headers(), c.stored, age, &[entry]);
                    return (Handled::now(response), Outcome::NotShared);
                }
                match other {
                    Ok(response) => response,
                    Err(error) => {
                        return (
                            Handled::now(self.origin_failure(&error, fwd)),
                            Outcome::NotShared,
                        );
                    }
                }
            }
        };

        // A 304 answering our own conditional request: freshen the stored response.
        if response.status == 304 {
            if let Some(stored) = revalidating.as_ref() {
                match freshen(stored, &response.headers, request_time, response_time) {
                    Freshened::Updated(updated) => {
                        self.count(|s| s.revalidated += 1);
                        return self.keep_freshened(head, key, updated, fwd);
                    }
                    Freshened::Mismatch => {
                        // RFC 9111 §4.3.4: not our representation; fetch it whole.
                        let (handled, outcome) = Box::pin(self.fetch(head, key, None, fwd)).await;
                        return (handled, outcome);
                    }
                }
            }
        }

        let status = response.status;
        let mut response = response;
        self.add_key_fields(head, &mut response.headers);
        let (decision, route_override) =
            self.decide_for(head, status, &response.headers, request_time, response_time);
        let origin = OriginHead {
            status,
            headers: &response.headers,
            request_time,
            response_time,
        };
        match (decision, response.body) {
            (ResponseDecision::Store(keep), OriginBody::Buffered(body)) => {
                let mut fields = response.headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                let entry = keep.into_entry(head.headers(), origin, fields, body);
                self.store_and_serve(head, key, entry, Some(response.headers), fwd, status)
            }
            (decision, body) => {
                self.count(|s| s.passes += 1);
                let detail = match (&decision, &body) {
                    (ResponseDecision::Pass(reason), _) => Some(reason.as_str()),
                    (ResponseDecision::Store(_), OriginBody::Streaming(_)) => Some("too-large"),
                    _ => None,
                };
                let entry = self.statuses.forwarded(fwd, Some(status), detail);
                let body = match body {
                    _ if head.method() == "HEAD" => Body::Empty,
                    OriginBody::Buffered(bytes) => Body::Bytes(bytes),
                    OriginBody::Streaming(stream) => Body::Stream(stream),
                };
                let response =
                    respond::from_origin(head.method(), status, response.headers, body, &[entry]);
                (Handled::now(response), Outcome::NotShared)
            }
        }
    }

    /// Adds the route's key fields to a response's `Vary` (RFC 9111 §4.1), those it does
    /// not nominate already: each value is stored apart.
    fn add_key_fields(&self, head: &RequestView, headers: &mut Headers) {
        let nominated = vary::nominated_fields(headers);
        let missing: Vec<&str> = self
            .key_headers(head)
            .iter()
            .map(String::as_str)
            .filter(|name| !nominated.iter().any(|n| n == name))
            .collect();
        if !missing.is_empty() {
            headers.append("vary", missing.join(", "));
        }
    }

    /// The one response decision ([`decide`]) for a response to `head`, with its route's
    /// lifetime override, which is returned too (it travels with the stored fields).
    fn decide_for(
        &self,
        head: &RequestView,
        status: u16,
        headers: &Headers,
        request_time: crate::time::Timestamp,
        response_time: crate::time::Timestamp,
    ) -> (ResponseDecision, Option<String>) {
        // A route's TTL overrides travel with the stored response as this cache's own
        // targeted field (RFC 9213), so every instance and tier applies them alike.
        let route_override = self
            .config
            .route_for(head.path())
            .and_then(super::config::RouteRule::cache_control_override);
        let origin = OriginHead {
            status,
            headers,
            request_time,
            response_time,
        };
        let decision = decide(
            "GET",
            head.headers(),
            origin,
            route_override
                .as_deref()
                .map(|value| ("edgecache-cache-control", value)),
            &self.config.policy,
        );
        (decision, route_override)
    }

    /// Keeps a stored response freshened by a `304` (RFC 9111 §4.3.4) as any response is
    /// kept: the same decision on its merged fields (a `304` can bring `no-store`, a
    /// qualified `private`, or a `Vary` without the route's key fields), then stored, or,
    /// when it may no longer be stored, removed (from L1 now, from the other tiers and
    /// instances by a [`Job::Invalidate`]) and served once.
    fn keep_freshened(
        &self,
        head: &RequestView,
        key: &str,
        updated: CachedResponse,
        fwd: Forward,
    ) -> (Handled<H::Body>, Outcome) {
        let CachedResponse {
            status,
            mut headers,
            body,
            request_time,
            response_time,
            ..
        } = updated;
        self.add_key_fields(head, &mut headers);
        let (decision, route_override) =
            self.decide_for(head, status, &headers, request_time, response_time);
        let origin = OriginHead {
            status,
            headers: &headers,
            request_time,
            response_time,
        };
        match decision {
            ResponseDecision::Store(keep) => {
                let mut fields = headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                let entry = keep.into_entry(head.headers(), origin, fields, body);
                self.store_and_serve(head, key, entry, None, fwd, 304)
            }
            ResponseDecision::Pass(reason) => {
                self.l1_purge_key(key, false, self.runtime.now());
                self.count(|s| s.passes += 1);
                let entry = self
                    .statuses
                    .forwarded(fwd, Some(304), Some(reason.as_str()));
                let stored = Arc::new(CachedResponse::new(
                    status,
                    headers.clone(),
                    body,
                    request_time,
                    response_time,
                ));
                let response = respond::from_stored_body(
                    head.method(),
                    head.headers(),
                    stored,
                    headers,
                    0,
                    &[entry],
                );
                // The other tiers and instances drop their copies too, after the response.
                let job = Some(Job::Invalidate(alloc::vec![String::from(key)]));
                (Handled { response, job }, Outcome::NotShared)
            }
        }
    }

    /// Stores a response in L1 (and L2 in the background) and serves it.
    fn store_and_serve(
        &self,
        head: &RequestView,
        key: &str,
        entry: CachedResponse,
        origin_fields: Option<Headers>,
        fwd: Forward,
        fwd_status: u16,
    ) -> (Handled<H::Body>, Outcome) {
        let now = self.runtime.now();
        // An entry the response decision made carries its figures; a freshened one (304)
        // gets them now.
        let stored = match entry.derived.figures {
            Some(_) => Arc::new(entry),
            None => self.ready_to_keep(entry),
        };
        let keys = self.l1_insert(key, &stored, head.headers(), now);
        self.count(|s| s.stored += 1);
        let evaluation = self.evaluate(head.headers(), &stored, now);
        let mut entries = Vec::new();
        if self.store.is_some() {
            entries.push(self.statuses.stored(Tier::L2, fwd));
        }
        if self.colo().is_some() {
            entries.push(self.statuses.stored(Tier::Colo, fwd));
        }
        entries.push(self.statuses.filled(fwd, fwd_status, evaluation.ttl_secs));
        let fields = origin_fields.unwrap_or_else(|| stored.headers.clone());
        let response = respond::from_stored_body(
            head.method(),
            head.headers(),
            stored.clone(),
            fields,
            evaluation.age_secs,
            &entries,
        );
        let colo_job = self.colo().is_some().then(|| Job::WriteColo {
            keys: keys.clone(),
            stored: stored.clone(),
        });
        let l2_job = self.store.is_some().then(|| Job::WriteL2 {
            keys,
            stored: stored.clone(),
        });
        // Batches run last-first: the L2 write (which releases the fetch lease) goes first.
        let job = Job::merge(colo_job, l2_job);
        (Handled { response, job }, Outcome::Stored(stored))
    }
}

/// How waiting on another instance's lease ended ([`Engine::await_other_instance`]).
enum Waited {
    /// Its object, usable for this request.
    Found(Arc<CachedResponse>),
    /// Its lease went without the object, and this instance took it: fetch.
    Leased,
    /// Neither, within the bound (or the shared tier failed).
    Gone,
}

/// What [`Engine::lease_or_wait`] found.
enum LeaseOrWait<B> {
    /// Another instance's response, from L2.
    Served(Box<Handled<B>>, Arc<CachedResponse>),
    /// Fetch from the origin; `leased` when this instance holds the lease (to release).
    Fetch { leased: bool },
}

/// Completes a flight when the leader finishes, or as not shared if the leader is dropped
/// mid-fetch, so waiters never hang.
struct FlightGuard<'a, L: Lock<super::EngineState>> {
    state: &'a L,
    key: &'a str,
    id: u64,
    finished: bool,
}

impl<L: Lock<super::EngineState>> FlightGuard<'_, L> {
    fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.state
            .with(|s| s.flights.finish(self.key, self.id, outcome));
    }
}

impl<L: Lock<super::EngineState>> Drop for FlightGuard<'_, L> {
    fn drop(&mut self) {
        if !self.finished {
            self.state
                .with(|s| s.flights.finish(self.key, self.id, Outcome::NotShared));
        }
    }
}
