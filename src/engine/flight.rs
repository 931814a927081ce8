//! Request coalescing: one origin fetch per key however many concurrent requests want it.
//!
//! The first request for a key becomes the leader and fetches; the others register as
//! waiters and are woken with the leader's outcome. The table lives in the engine's locked
//! state, so it works the same under a `RefCell` (Workers) and a `Mutex` (native). A leader
//! that is dropped mid-fetch (client gone, task cancelled) completes its flight as
//! abandoned, so waiters never hang.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::{Poll, Waker};

use hashbrown::HashMap;

use crate::entry::CachedResponse;

/// What a leader tells its waiters.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The response now stored for the key: each waiter checks it against its own request.
    Stored(Arc<CachedResponse>),
    /// The response could not be shared (not storable, streamed, or an error the leader
    /// answered from stale): each waiter goes to the origin itself.
    NotShared,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    outcome: Option<Outcome>,
    waiters: Vec<Waker>,
    waiting: usize,
}

/// The table of fetches in progress.
#[derive(Debug, Default)]
pub struct Flights {
    next_id: u64,
    flights: HashMap<String, Flight>,
}

/// The result of asking to fetch a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No fetch in progress: this caller fetches, and must call [`Flights::finish`].
    Leader(u64),
    /// A fetch is in progress: wait for flight `id`.
    Waiter(u64),
}

impl Flights {
    /// Joins the flight for `key`, or starts one.
    pub fn join(&mut self, key: &str) -> Role {
        if let Some(f) = self.flights.get_mut(key) {
            // In progress, or finished with waiters still to read the outcome: join it
            // (a late joiner reads the outcome at once instead of fetching again).
            if f.outcome.is_none() || f.waiting > 0 {
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
    pub fn finish(&mut self, key: &str, id: u64, outcome: Outcome) {
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

    /// Polls flight `id` of `key` for a waiter: the outcome once there is one, `NotShared`
    /// if the flight is gone (superseded), else registers `waker`.
    pub fn poll(&mut self, key: &str, id: u64, waker: &Waker) -> Poll<Outcome> {
        let Some(f) = self.flights.get_mut(key) else {
            return Poll::Ready(Outcome::NotShared);
        };
        if f.id != id {
            return Poll::Ready(Outcome::NotShared);
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

    fn noop_waker() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn leader_then_waiters_then_cleanup() {
        let mut f = Flights::default();
        let Role::Leader(id) = f.join("k") else {
            panic!()
        };
        assert_eq!(f.join("k"), Role::Waiter(id));
        assert_eq!(f.join("k"), Role::Waiter(id));
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
        assert!(matches!(f.join("k"), Role::Leader(n) if n != id));
    }

    #[test]
    fn finish_without_waiters_removes_at_once() {
        let mut f = Flights::default();
        let Role::Leader(id) = f.join("k") else {
            panic!()
        };
        f.finish("k", id, Outcome::NotShared);
        assert!(f.is_empty());
        assert!(!f.in_flight("k"));
    }

    #[test]
    fn stale_ids_are_ignored() {
        let mut f = Flights::default();
        let Role::Leader(old) = f.join("k") else {
            panic!()
        };
        f.finish("k", old, Outcome::NotShared);
        let Role::Leader(new) = f.join("k") else {
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
}
