//! Time for the core: a millisecond [`Timestamp`] and the [`Clock`] hosts provide.
//!
//! The core never reads a clock itself; every time-dependent function takes `now`.
//! Hosts own the clock: `SystemClock` natively (with `std`, not on wasm32), `Date.now()` on
//! Workers and in browsers (std clocks panic on `wasm32-unknown-unknown`), and
//! [`ManualClock`] in tests.

use core::fmt;

/// Milliseconds since the Unix epoch.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// A timestamp `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This instant plus `secs` seconds, saturating at [`Timestamp::MAX`].
    pub const fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// This instant plus `ms` milliseconds, saturating at [`Timestamp::MAX`].
    pub const fn plus_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole seconds from `earlier` to `self` (rounded down), or 0 if `earlier` is later.
    pub const fn secs_since(self, earlier: Timestamp) -> u64 {
        self.millis_since(earlier) / 1000
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A source of the current time, owned by the host.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// A clock that only moves when told to: tests advance it instead of sleeping.
#[cfg(target_has_atomic = "64")]
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: core::sync::atomic::AtomicU64,
}

#[cfg(target_has_atomic = "64")]
impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now_ms: core::sync::atomic::AtomicU64::new(start.as_millis()),
        }
    }

    /// Moves the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.now_ms
            .store(to.as_millis(), core::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: u64) {
        self.now_ms
            .fetch_add(ms, core::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs.saturating_mul(1000));
    }
}

#[cfg(target_has_atomic = "64")]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(core::sync::atomic::Ordering::SeqCst))
    }
}

/// The operating system's wall clock (native hosts only; wasm hosts use `Date.now()`).
#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the OS clock
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MAX.plus_secs(1), Timestamp::MAX);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::MAX);
        assert_eq!(
            Timestamp::from_secs(1).millis_since(Timestamp::from_secs(2)),
            0
        );
        assert_eq!(Timestamp::from_millis(2999).secs_since(Timestamp::EPOCH), 2);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_secs(10));
        assert_eq!(clock.now(), Timestamp::from_secs(10));
        clock.advance_secs(5);
        clock.advance_millis(250);
        assert_eq!(clock.now(), Timestamp::from_millis(15_250));
        clock.set(Timestamp::from_secs(1));
        assert_eq!(clock.now(), Timestamp::from_secs(1));
    }
}
