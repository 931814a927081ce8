//! The Worker's clock and timers: `Date.now()` and `setTimeout` (std clocks panic on
//! wasm32-unknown-unknown). Workers advance `Date.now()` only across I/O, which is all the
//! engine needs: it reads the time once per decision.

use core::future::Future;
use core::time::Duration;

use crate::engine::{LogLevel, Runtime};
use crate::time::Timestamp;

/// `Date.now()` and `worker::Delay`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsRuntime;

impl Runtime for JsRuntime {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(js_sys::Date::now().max(0.0) as u64)
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        worker::Delay::from(Duration::from_millis(ms))
    }

    fn random_u64(&self) -> u64 {
        // Two draws of 32 bits each (Math.random has at least 52 random bits; the isolate's
        // generator is seeded randomly).
        let draw = || (js_sys::Math::random() * 4_294_967_296.0) as u64 & 0xffff_ffff;
        (draw() << 32) | draw()
    }

    fn log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Info => worker::console_log!("{message}"),
            LogLevel::Warn => worker::console_warn!("{message}"),
        }
    }
}
