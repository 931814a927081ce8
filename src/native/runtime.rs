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

    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // Keyed from the operating system's randomness once per thread, then a new key
        // per call: unpredictable, and different in every process.
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
