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

    /// From the runtime's CSPRNG (`crypto.getRandomValues`): idempotency keys and lease
    /// tokens must not be guessable.
    fn random_u64(&self) -> u64 {
        use wasm_bindgen::JsCast;
        let mut bytes = [0u8; 8];
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let filled = global
            .crypto()
            .and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes));
        if filled.is_ok() {
            return u64::from_le_bytes(bytes);
        }
        // Not reachable on Workers (crypto is always there); Math.random rather than a panic.
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
