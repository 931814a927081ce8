//! The facade's clock: `Date.now()` (std clocks panic on `wasm32-unknown-unknown`), or a
//! function the caller supplies (tests and simulations move time by hand).

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::time::Timestamp;

/// Where the current time comes from.
#[derive(Clone, Debug, Default)]
pub(crate) enum JsClock {
    /// `Date.now()`.
    #[default]
    DateNow,
    /// A JS function returning milliseconds since the epoch.
    Function(js_sys::Function),
}

impl JsClock {
    /// The `clock` property of `options`, if it is a function; an error if it is something
    /// else; `Date.now()` when absent.
    pub(crate) fn from_options(options: &JsValue) -> Result<JsClock, JsError> {
        if !options.is_object() {
            return Ok(JsClock::DateNow);
        }
        let value = js_sys::Reflect::get(options, &JsValue::from_str("clock"))
            .map_err(|_| JsError::new("options.clock could not be read"))?;
        if value.is_undefined() || value.is_null() {
            return Ok(JsClock::DateNow);
        }
        value
            .dyn_into::<js_sys::Function>()
            .map(JsClock::Function)
            .map_err(|_| JsError::new("options.clock must be a function returning milliseconds"))
    }

    /// The current time. Call it while no cache state is borrowed: the function is user code.
    pub(crate) fn now(&self) -> Result<Timestamp, JsError> {
        let ms = match self {
            JsClock::DateNow => js_sys::Date::now(),
            JsClock::Function(f) => f
                .call0(&JsValue::NULL)
                .map_err(|_| JsError::new("options.clock threw"))?
                .as_f64()
                .ok_or_else(|| JsError::new("options.clock must return a number"))?,
        };
        if ms.is_finite() && ms >= 0.0 {
            Ok(Timestamp::from_millis(ms as u64))
        } else {
            Err(JsError::new(&format!(
                "the clock returned {ms}, not milliseconds since 1970"
            )))
        }
    }
}

/// A monotonic-ish high-resolution reading in milliseconds for timing: `performance.now()`
/// where the runtime has it, else `Date.now()`.
pub(crate) fn performance_now() -> f64 {
    let global = js_sys::global();
    let perf = js_sys::Reflect::get(&global, &JsValue::from_str("performance")).ok();
    let now_fn = perf.as_ref().and_then(|p| {
        js_sys::Reflect::get(p, &JsValue::from_str("now"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    });
    match (perf, now_fn) {
        (Some(p), Some(f)) => f
            .call0(&p)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}
