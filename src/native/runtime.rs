//! The native runtime: the system clock and tokio timers.

use std::future::Future;

use crate::engine::{LogLevel, Runtime};
use crate::time::{Clock, SystemClock, Timestamp};

/// System clock + `tokio::time::sleep`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        tokio::time::sleep(std::time::Duration::from_millis(ms))
    }

    /// From the operating system's CSPRNG (`getrandom`): idempotency keys and lease tokens
    /// must not be guessable.
    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        if getrandom::getrandom(&mut bytes).is_ok() {
            return u64::from_le_bytes(bytes);
        }
        // The system's source failing is not something a request can fix: fall back to
        // std's per-process random keys rather than fail it.
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }

    fn log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Info => tracing::info!("{message}"),
            LogLevel::Warn => tracing::warn!("{message}"),
        }
    }
}
