//! Request coalescing: one origin fetch per key however many concurrent requests want it.
//! The table is generic over what a leader tells its waiters, so the JS package's
//! `getOrInsert` coalesces its loader calls with the same code ([`FlightOutcome`]).
//!
//! The first request for a key becomes the leader and fetches; the others register as
//! waiters and are woken with the leader's outcome. The table lives in the engine's locked
//! state, so it works the same under a `RefCell` (Workers) and a `Mutex` (native). A leader
//! that is dropped mid-fetch (client gone, task cancelled) completes its flight as
//! abandoned, so waiters never hang. A leader that is never dropped nor polled again (a
//! Workers request the runtime cancelled: its future is simply forgotten) is presumed gone
//! once its flight is older than any live fetch can be, and the next request takes over.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::{Poll, Waker};

use hashbrown::HashMap;

use crate::entry::CachedResponse;
use crate::time::Timestamp;

/// What a leader tells its waiters: anything cloneable, with the value a waiter gets when
/// its flight is gone without an outcome (superseded after its leader was presumed lost).
pub trait FlightOutcome: Clone {
    /// The outcome of a flight that ended without one.
    fn superseded() -> Self;
}

/// What the engine's leaders tell their waiters.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The response now stored for the key: each waiter checks it against its own request.
    Stored(Arc<CachedResponse>),
    /// The response being stored as it arrives: each waiter checks it against its own
    /// request and reads it from the first byte.
    Filling(crate::engine::filling::InProgress),
    /// The response could not be shared (not storable, streamed, or an error the leader
    /// answered from stale): each waiter goes to the origin itself.
    NotShared,
}

impl FlightOutcome for Outcome {
    fn superseded() -> Self {
        Outcome::NotShared
    }
}

#[derive(Debug)]
struct Flight<O> {
    id: u64,
    started: Timestamp,
    outcome: Option<O>,
    waiters: Vec<Waker>,
    waiting: usize,
}

/// The table of fetches in progress.
#[derive(Debug)]
pub struct Flights<O = Outcome> {
    next_id: u64,
    flights: HashMap<String, Flight<O>>,
}

impl<O> Default for Flights<O> {
    fn default() -> Self {
        Flights {
            next_id: 0,
            flights: HashMap::new(),
        }
    }
}

/// The result of asking to fetch a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No fetch in progress: this caller fetches, and must call [`Flights::finish`].
    Leader(u64),
    /// A fetch is in progress: wait for flight `id`.
    Waiter(u64),
}

impl<O: FlightOutcome> Flights<O> {
    /// Joins the flight for `key`, or starts one at `now`. A flight still in progress after
    /// `abandon_after_ms` has lost its leader: it is replaced, and its waiters are woken to
    /// find it superseded (they then fetch themselves).
    pub fn join(&mut self, key: &str, now: Timestamp, abandon_after_ms: u64) -> Role {
        if let Some(f) = self.flights.get_mut(key) {
            let abandoned = f.outcome.is_none() && now.millis_since(f.started) >= abandon_after_ms;
            if abandoned {
                for waker in f.waiters.drain(..) {
                    waker.wake();
                }
            } else if f.outcome.is_none() || f.waiting > 0 {
                // In progress, or finished with waiters still to read the outcome: join it
                // (a late joiner reads the outcome at once instead of fetching again).
                f.waiting += 1;
                return Role::Waiter(f.id);
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.flights.insert(
            String::from(key),
            Flight {
                id,
                started: now,
                outcome: None,
                waiters: Vec::new(),
                waiting: 0,
            },
        );
        Role::Leader(id)
    }

    /// Whether a fetch for `key` is in progress.
    pub fn in_flight(&self, key: &str) -> bool {
        self.flights.get(key).is_some_and(|f| f.outcome.is_none())
    }

    /// Completes flight `id` of `key` and wakes its waiters.
    pub fn finish(&mut self, key: &str, id: u64, outcome: O) {
        let Some(f) = self.flights.get_mut(key) else {
            return;
        };
        if f.id != id {
            return;
        }
        if f.waiting == 0 {
            self.flights.remove(key);
            return;
        }
        f.outcome = Some(outcome);
        for waker in f.waiters.drain(..) {
            waker.wake();
        }
    }

    /// Polls flight `id` of `key` for a waiter: the outcome once there is one,
    /// [`FlightOutcome::superseded`] if the flight is gone, else registers `waker`.
    pub fn poll(&mut self, key: &str, id: u64, waker: &Waker) -> Poll<O> {
        let Some(f) = self.flights.get_mut(key) else {
            return Poll::Ready(O::superseded());
        };
        if f.id != id {
            return Poll::Ready(O::superseded());
        }
        match &f.outcome {
            Some(outcome) => {
                let outcome = outcome.clone();
                f.waiting = f.waiting.saturating_sub(1);
                if f.waiting == 0 {
                    self.flights.remove(key);
                }
                Poll::Ready(outcome)
            }
            None => {
                if !f.waiters.iter().any(|w| w.will_wake(waker)) {
                    f.waiters.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    /// A waiter of flight `id` gives up (timed out or dropped) without reading the outcome.
    pub fn leave(&mut self, key: &str, id: u64) {
        if let Some(f) = self.flights.get_mut(key) {
            if f.id == id {
                f.waiting = f.waiting.saturating_sub(1);
                if f.waiting == 0 && f.outcome.is_some() {
                    self.flights.remove(key);
                }
            }
        }
    }

    /// Number of keys with a flight entry (in progress or being read).
    pub fn len(&self) -> usize {
        self.flights.len()
    }

    /// Whether there are no flight entries.
    pub fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_000);
    const LONG: u64 = 60_000;

    fn noop_waker() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn leader_then_waiters_then_cleanup() {
        let mut f = Flights::default();
        let Role::Leader(id) = f.join("k", T0, LONG) else {
            panic!()
        };
        assert_eq!(f.join("k", T0, LONG), Role::Waiter(id));
        assert_eq!(f.join("k", T0, LONG), Role::Waiter(id));
        let w = noop_waker();
        assert!(f.poll("k", id, &w).is_pending());
        f.finish("k", id, Outcome::NotShared);
        assert!(matches!(
            f.poll("k", id, &w),
            Poll::Ready(Outcome::NotShared)
        ));
        assert_eq!(f.len(), 1, "one waiter has not read the outcome yet");
        assert!(f.poll("k", id, &w).is_ready());
        assert!(f.is_empty());
        // a new flight for the same key starts afresh
        assert!(matches!(f.join("k", T0, LONG), Role::Leader(n) if n != id));
    }

    #[test]
    fn finish_without_waiters_removes_at_once() {
        let mut f = Flights::default();
        let Role::Leader(id) = f.join("k", T0, LONG) else {
            panic!()
        };
        f.finish("k", id, Outcome::NotShared);
        assert!(f.is_empty());
        assert!(!f.in_flight("k"));
    }

    #[test]
    fn stale_ids_are_ignored() {
        let mut f = Flights::default();
        let Role::Leader(old) = f.join("k", T0, LONG) else {
            panic!()
        };
        f.finish("k", old, Outcome::NotShared);
        let Role::Leader(new) = f.join("k", T0, LONG) else {
            panic!()
        };
        f.finish("k", old, Outcome::NotShared);
        assert!(f.in_flight("k"), "an old leader cannot finish a new flight");
        assert!(matches!(
            f.poll("k", old, &noop_waker()),
            Poll::Ready(Outcome::NotShared)
        ));
        f.leave("k", new);
    }

    #[test]
    fn a_flight_older_than_any_live_fetch_is_taken_over() {
        let mut f = Flights::default();
        let Role::Leader(lost) = f.join("k", T0, LONG) else {
            panic!()
        };
        assert_eq!(
            f.join("k", T0.plus_millis(LONG - 1), LONG),
            Role::Waiter(lost)
        );
        // The leader was forgotten (never finished, never dropped): the next request leads.
        let Role::Leader(new) = f.join("k", T0.plus_millis(LONG), LONG) else {
            panic!("an abandoned flight must not keep new requests waiting")
        };
        assert_ne!(new, lost);
        assert!(matches!(
            f.poll("k", lost, &noop_waker()),
            Poll::Ready(Outcome::NotShared)
        ));
        f.finish("k", lost, Outcome::NotShared);
        assert!(
            f.in_flight("k"),
            "the lost leader cannot finish the new flight"
        );
        f.finish("k", new, Outcome::NotShared);
        assert!(!f.in_flight("k"));
    }
}
