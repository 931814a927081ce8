//! Filling the cache for a request no tier could answer: one fetch per key however many
//! ask, in this instance (a flight, [`super::super::flight`]) and across instances (a lease
//! in the shared tier), including the background revalidation of stale-while-revalidate
//! (RFC 5861 §3). The origin round trip itself is [`fetch`].

mod fetch;
pub(super) use fetch::ANSWERED_BY_THE_CACHE;
mod streaming;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use crate::entry::CachedResponse;
use crate::policy::cache_status::Forward;
use crate::policy::reuse::{Evaluation, Reuse};

use super::{usable, Candidate};
use crate::engine::filling::{FillReader, InProgress};
use crate::engine::flight::{Outcome, Role};
use crate::engine::host::{Lock, Runtime};
use crate::engine::l2::with_timeout;
use crate::engine::status::Tier;
use crate::engine::{respond, Engine, EngineState, Handled, Host, Job, RequestView};

impl<H: Host> Engine<H> {
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
    pub(super) async fn fetch_coalesced(
        &self,
        head: &RequestView,
        key: String,
        candidate: Option<Candidate>,
        fwd: Forward,
    ) -> Handled<H::Body> {
        match self.join_flight(&key) {
            Role::Waiter(id) => {
                self.count(|s| s.coalesced += 1);
                // Leaves the flight unless the outcome is read: on a timeout, and when this
                // request is dropped while it waits (its client went away). A waiter that
                // never leaves would keep a finished flight, and its outcome, for good.
                let waiter = WaiterGuard::new(&self.state, &key, id);
                let wait = core::future::poll_fn(|cx| {
                    self.state.with(|s| s.flights.poll(&key, id, cx.waker()))
                });
                let outcome =
                    with_timeout(&self.runtime, self.config.limits.coalesce_wait_ms, wait).await;
                waiter.done(outcome.is_some());
                if let Some(Outcome::Filling(fill)) = outcome {
                    if let Some(handled) = self.serve_fill(head, fill, fwd) {
                        return handled;
                    }
                } else if let Some(Outcome::Stored(stored)) = outcome {
                    let now = self.runtime.now();
                    let evaluation = self.evaluate(head, &stored, now);
                    if usable(&evaluation) {
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
                let (handled, _) = self.fetch(head, &key, candidate, fwd).await;
                handled
            }
            Role::Leader(id) => {
                let guard = FlightGuard::new(&self.state, &key, id);
                let mut candidate = candidate;
                let mut fwd = fwd;
                if candidate.is_none() && (self.shared.is_some() || self.colo().is_some()) {
                    // Only the leader reads the colo tier and L2: one Redis GET per key
                    // however many wait.
                    if let Some(found) = self.shared_lookup(head, &key).await {
                        match found.evaluation.reuse {
                            Reuse::Revalidate(_) => {
                                candidate = Some(found);
                                fwd = Forward::Stale;
                            }
                            // RFC 9111 §3.3: a part that does not hold what is asked for.
                            Reuse::Incomplete => fwd = Forward::Partial,
                            _ => {
                                guard.finish(Outcome::Stored(found.stored.clone()));
                                // Counted now: only an `only-if-cached` request (which
                                // never comes here) could still be refused.
                                let (handled, served) = self.serve_candidate(head, &key, found);
                                self.count_served(served);
                                return handled;
                            }
                        }
                    }
                }
                let mut leased = false;
                if candidate.is_none() {
                    self.count(|s| s.misses += 1);
                    if self.shared.is_some() {
                        match self.lease_or_wait(head, &key, fwd).await {
                            LeaseOrWait::Served(handled, stored) => {
                                guard.finish(Outcome::Stored(stored));
                                return *handled;
                            }
                            LeaseOrWait::Fetch { leased: held } => leased = held,
                        }
                    }
                }
                let lease = LeaseGuard::new(&self.state, &key, leased);
                let (handled, outcome) = self.fetch(head, &key, candidate, fwd).await;
                lease.disarm();
                // A fill in progress holds the lease until its L2 write, or releases it if it fails.
                let stored = matches!(outcome, Outcome::Stored(_) | Outcome::Filling(_));
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

    /// Serves `head` from the fill in progress for `key` (a response being stored as it
    /// arrives), if there is one it may use: the request is coalesced on it.
    pub(super) fn join_fill(
        &self,
        head: &RequestView,
        key: &str,
        fwd: Forward,
    ) -> Option<Handled<H::Body>> {
        let fills = self.state.with(|s| s.fills.find(key));
        let handled = fills
            .into_iter()
            .find_map(|fill| self.serve_fill(head, fill, fwd))?;
        self.count(|s| s.coalesced += 1);
        Some(handled)
    }

    /// Serves `head` from `fill`, read from its first byte, when its response is usable
    /// for the request (fresh for it, and the same `Vary` variant) and has not failed.
    fn serve_fill(
        &self,
        head: &RequestView,
        fill: InProgress,
        fwd: Forward,
    ) -> Option<Handled<H::Body>> {
        let evaluation = self.evaluate(head, &fill.entry, self.runtime.now());
        if !usable(&evaluation) {
            return None;
        }
        let entry = self.statuses.collapsed(fwd, evaluation.ttl_secs);
        let fields = fill.entry.headers.clone();
        let response = respond::from_stored_body(
            head.method(),
            head.headers(),
            fill.entry,
            fields,
            evaluation.age_secs,
            &[entry],
            crate::engine::Source::Cache,
        );
        let reader = FillReader::join(fill.filling)?;
        Some(Handled::now(respond::reading_fill(response, reader)))
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
        let evaluation = self.evaluate(head, &found, now);
        if !usable(&evaluation) {
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
        let usable =
            |found: &Arc<CachedResponse>| usable(&self.evaluate(head, found, self.runtime.now()));
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
            if self.l2_tier().is_none() {
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
        let guard = FlightGuard::new(&self.state, &key, id);
        // Across instances too: one refresh per expiry, the others take its result from L2.
        let mut leased = self.shared.is_some() && self.acquire_lease(&key).await;
        if self.shared.is_some() && !leased {
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
        let evaluation = self.evaluate(&head, &stored, now);
        let candidate = Candidate {
            stored,
            evaluation: Evaluation {
                reuse: Reuse::Revalidate(crate::policy::reuse::RevalidateReason::Stale),
                ..evaluation
            },
            tier: Tier::L1,
        };
        let lease = LeaseGuard::new(&self.state, &key, leased);
        let (handled, outcome) = self
            .fetch(&head, &key, Some(candidate), Forward::Stale)
            .await;
        lease.disarm();
        // A fill in progress holds the lease until its L2 write, or releases it if it fails.
        let stored = matches!(outcome, Outcome::Stored(_) | Outcome::Filling(_));
        guard.finish(outcome);
        // What the fetch leaves to do (a fill, tier writes, an invalidation) runs now, as
        // after any response; the L2 write releases the lease. Nobody reads this response:
        // dropped first, so a fill does not wait for a reader that never comes.
        let Handled { response, job } = handled;
        drop(response);
        if let Some(job) = job {
            Box::pin(self.run_job(job)).await;
        }
        if leased && !stored {
            self.release_lease(&key).await;
        }
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

/// A waiter's place in a flight, given up ([`super::super::flight::Flights::leave`]) when
/// it is dropped without having read the outcome.
pub(in crate::engine::read) struct WaiterGuard<'a, L: Lock<EngineState>> {
    state: &'a L,
    key: &'a str,
    id: u64,
    read: bool,
}

impl<'a, L: Lock<EngineState>> WaiterGuard<'a, L> {
    /// The place of waiter `id` in the flight of `key`.
    pub(in crate::engine::read) fn new(state: &'a L, key: &'a str, id: u64) -> Self {
        WaiterGuard {
            state,
            key,
            id,
            read: false,
        }
    }

    /// The wait ended; `read` when the outcome was taken.
    pub(in crate::engine::read) fn done(mut self, read: bool) {
        self.read = read;
    }
}

impl<L: Lock<EngineState>> Drop for WaiterGuard<'_, L> {
    fn drop(&mut self) {
        if !self.read {
            self.state.with(|s| s.flights.leave(self.key, self.id));
        }
    }
}

/// Notes a fetch lease this instance holds as orphaned if the request holding it is dropped
/// before the fetch ends (its client went away), so the next purge sync releases it
/// ([`crate::engine::sync::SyncState::orphaned_leases`]) instead of other instances waiting
/// out `l2.lease_ms`.
struct LeaseGuard<'a, L: Lock<EngineState>> {
    state: &'a L,
    key: &'a str,
    armed: bool,
}

impl<'a, L: Lock<EngineState>> LeaseGuard<'a, L> {
    fn new(state: &'a L, key: &'a str, held: bool) -> Self {
        LeaseGuard {
            state,
            key,
            armed: held,
        }
    }

    /// The fetch ended: whoever holds the lease now releases it.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<L: Lock<EngineState>> Drop for LeaseGuard<'_, L> {
    fn drop(&mut self) {
        if self.armed {
            self.state.with(|s| s.sync.orphan_lease(self.key));
        }
    }
}

/// Completes a flight when the leader finishes, or as not shared if the leader is dropped
/// mid-fetch, so waiters never hang.
pub(in crate::engine::read) struct FlightGuard<'a, L: Lock<EngineState>> {
    state: &'a L,
    key: &'a str,
    id: u64,
    finished: bool,
}

impl<'a, L: Lock<EngineState>> FlightGuard<'a, L> {
    /// The flight `id` of `key`, led by its holder.
    pub(in crate::engine::read) fn new(state: &'a L, key: &'a str, id: u64) -> Self {
        FlightGuard {
            state,
            key,
            id,
            finished: false,
        }
    }

    /// Gives the guard up, the flight still led: its id, for the caller to lead it on (a
    /// flight left unfinished is abandoned after its time, as a dropped leader's would be
    /// were it not for this guard).
    pub(in crate::engine::read) fn keep(mut self) -> u64 {
        self.finished = true;
        self.id
    }

    /// Completes the flight with `outcome`, waking its waiters.
    pub(in crate::engine::read) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.state
            .with(|s| s.flights.finish(self.key, self.id, outcome));
    }
}

impl<L: Lock<EngineState>> Drop for FlightGuard<'_, L> {
    fn drop(&mut self) {
        if !self.finished {
            self.state
                .with(|s| s.flights.finish(self.key, self.id, Outcome::NotShared));
        }
    }
}

#[cfg(test)]
mod tests {
    use core::future::Future;

    use crate::engine::simulated::{body_text, request, Answer, Simulation};
    use crate::engine::{EngineConfig, Job};
    use crate::time::Timestamp;

    fn simulation(cache_control: &str) -> Simulation {
        Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &[("cache-control", cache_control)], "fresh"),
        )
    }

    /// Concurrent misses for one key make one origin fetch; every request gets its body,
    /// and the waiters are told so (`collapsed`).
    #[test]
    fn concurrent_misses_share_one_fetch() {
        let sim = simulation("max-age=60");
        sim.script.borrow_mut().latency_ms = 50;
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let handled = sim.clock.block_on_all(
            (0..5)
                .map(|_| engine.handle(request("GET", "/c", &[])))
                .collect(),
        );
        assert_eq!(sim.fetches(), 1);
        let collapsed = handled
            .iter()
            .filter(|h| {
                let status = h.response.headers.get_str("cache-status").unwrap_or("");
                status.contains("collapsed")
            })
            .count();
        assert_eq!(collapsed, 4, "all but the leader waited for it");
        assert!(handled.iter().all(|h| body_text(&h.response) == "fresh"));
    }

    /// A leader that is dropped mid-fetch (its client went away) does not leave waiters
    /// hanging: one of them fetches instead.
    #[test]
    fn a_dropped_leader_does_not_strand_its_waiters() {
        let sim = simulation("max-age=60");
        sim.script.borrow_mut().latency_ms = 50;
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let mut leader = Box::pin(engine.handle(request("GET", "/d", &[])));
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        assert!(leader.as_mut().poll(&mut cx).is_pending(), "fetching");
        let mut waiter = Box::pin(engine.handle(request("GET", "/d", &[])));
        assert!(
            waiter.as_mut().poll(&mut cx).is_pending(),
            "waiting for the leader"
        );
        drop(leader);
        let handled = sim.clock.block_on(waiter);
        assert_eq!(body_text(&handled.response), "fresh");
        assert_eq!(sim.fetches(), 2, "the waiter fetched in the leader's place");
    }

    /// Several stale-while-revalidate hits queue revalidations; one reaches the origin,
    /// and the refreshed response then serves as a fresh hit.
    #[test]
    fn stale_hits_revalidate_once() {
        let sim = simulation("max-age=1, stale-while-revalidate=60");
        let engine = sim.engine(EngineConfig::default()).unwrap();
        sim.clock.block_on(engine.handle(request("GET", "/s", &[])));
        sim.clock.advance_secs(5);
        sim.then(Answer::respond(
            200,
            &[("cache-control", "max-age=60")],
            "refreshed",
        ));
        let jobs: Vec<Job<crate::engine::simulated::SimBody>> = (0..3)
            .filter_map(|_| {
                sim.clock
                    .block_on(engine.handle(request("GET", "/s", &[])))
                    .job
            })
            .collect();
        assert_eq!(jobs.len(), 3, "each stale hit asks for a refresh");
        for job in jobs {
            sim.clock.block_on(engine.run_job(job));
        }
        assert_eq!(sim.fetches(), 2, "the first fill and one refresh");
        let hit = sim.clock.block_on(engine.handle(request("GET", "/s", &[])));
        assert_eq!(body_text(&hit.response), "refreshed");
        assert!(hit.job.is_none(), "fresh: nothing to refresh");
    }

    /// A waiter dropped while it waits (its client went away) leaves the flight: once the
    /// leader finishes, nothing of the flight is kept, so a later miss (after a purge, say)
    /// is never handed the old outcome.
    #[test]
    fn a_dropped_waiter_leaves_no_flight_behind() {
        let sim = simulation("max-age=60");
        sim.script.borrow_mut().latency_ms = 50;
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        let mut waiter = Box::pin(engine.handle(request("GET", "/w", &[])));
        let leader = Box::pin(engine.handle(request("GET", "/w", &[])));
        // The first poll makes the first request the leader; the second joins as a waiter.
        let mut leader = leader;
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        drop(waiter);
        sim.clock.block_on(leader);
        use crate::engine::host::Lock;
        assert_eq!(engine.state.with(|s| s.flights.len()), 0);
    }
}
