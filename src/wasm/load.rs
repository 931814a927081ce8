//! `EdgeCache.getOrInsert`: cache-aside with a JS loader, request coalescing (one loader
//! call per key however many callers wait: the engine's flight table,
//! [`crate::engine::flight`]), `stale-while-revalidate` (serve the stale value and refresh
//! in the background, RFC 5861 §3) and `stale-if-error` (serve the stale value when the
//! loader fails, RFC 5861 §4).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::cache::{EdgeCache, EntryOptions, Resolved, State};
use super::clock::JsClock;
use super::js::{from_js, key_of};
use crate::engine::flight::{FlightOutcome, Role};
use crate::store::{EntryState, Lookup};

/// A loader's settled result: what every caller waiting on the key gets.
#[derive(Clone, Debug)]
pub(crate) struct Loaded(Result<JsValue, JsValue>);

impl FlightOutcome for Loaded {
    fn superseded() -> Self {
        Loaded(Err(JsError::new(
            "the load this call waited for was abandoned",
        )
        .into()))
    }
}

/// A flight that no leader can lose track of: a JS loader's promise always settles (or the
/// page is gone), so a flight is never presumed abandoned.
const NEVER_ABANDONED: u64 = u64::MAX;

#[wasm_bindgen]
impl EdgeCache {
    /// Returns a `Promise` of the value under `key`, calling `loader(key)` (which returns a
    /// value or a `Promise` of one) when there is no usable entry, and storing its result with
    /// `options` (as in `set`).
    ///
    /// - fresh entry: resolves to it, no loader call;
    /// - stale inside `stale-while-revalidate`: resolves to the stale value now and calls the
    ///   loader in the background to refresh it (RFC 5861 §3);
    /// - absent, expired, or stale inside `stale-if-error` only: calls the loader; if the
    ///   loader throws or rejects and the entry is still inside its `stale-if-error` window,
    ///   resolves to the stale value (RFC 5861 §4), else rejects with the loader's error.
    ///
    /// Concurrent calls for one key share one loader call (and one promise).
    #[wasm_bindgen(js_name = getOrInsert)]
    pub fn get_or_insert(
        &self,
        key: JsValue,
        loader: JsValue,
        options: JsValue,
    ) -> Result<Promise, JsError> {
        let key = key_of(&key)?;
        let loader: Function = loader
            .dyn_into()
            .map_err(|_| JsError::new("loader must be a function (key) => value | Promise"))?;
        let options: EntryOptions = from_js(&options, "entry options")?;
        let now = self.clock.now()?;
        let resolved = {
            let defaults = self.state.borrow().defaults;
            Resolved::from_options(options, defaults)?
        };

        let mut s = self.state.borrow_mut();
        let usable = match s.store.get(key.as_str(), now) {
            Lookup::Fresh(hit) => return Ok(Promise::resolve(&hit.value)),
            Lookup::Stale(hit) if hit.state(now) == EntryState::StaleWhileRevalidate => {
                Some(hit.value)
            }
            _ => None,
        };
        if let Some(stale) = usable {
            s.stats.stale_while_revalidate_served += 1;
            let refresh = match s.inflight.in_flight(&key) {
                true => None,
                false => match s.inflight.join(&key, now, NEVER_ABANDONED) {
                    Role::Leader(id) => Some(id),
                    Role::Waiter(id) => {
                        s.inflight.leave(&key, id);
                        None
                    }
                },
            };
            if refresh.is_some() {
                s.stats.background_refreshes += 1;
            }
            drop(s);
            if let Some(id) = refresh {
                // The refresh's own promise never rejects unhandled: failures are counted.
                let refresh = start_load(&self.state, &self.clock, key, id, &loader, resolved);
                let ignore =
                    Closure::<dyn FnMut(JsValue) -> JsValue>::once_into_js(|_: JsValue| {
                        JsValue::UNDEFINED
                    });
                let _ = then(&refresh, &JsValue::UNDEFINED, &ignore);
            }
            return Ok(Promise::resolve(&stale));
        }
        match s.inflight.join(&key, now, NEVER_ABANDONED) {
            Role::Waiter(id) => {
                s.stats.coalesced += 1;
                drop(s);
                Ok(wait_for(self.state.clone(), key, id))
            }
            Role::Leader(id) => {
                drop(s);
                Ok(start_load(
                    &self.state,
                    &self.clock,
                    key,
                    id,
                    &loader,
                    resolved,
                ))
            }
        }
    }
}

/// A promise of the outcome of flight `id` of `key`, which another call leads.
fn wait_for(state: Rc<RefCell<State>>, key: String, id: u64) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let loaded =
            core::future::poll_fn(|cx| state.borrow_mut().inflight.poll(&key, id, cx.waker()));
        loaded.await.0
    })
}

/// Calls the loader (with no state borrowed: it is user code) as the leader of flight `id`,
/// and returns the leader's promise; the flight's waiters get the same result when it
/// settles.
fn start_load(
    state: &Rc<RefCell<State>>,
    clock: &JsClock,
    key: String,
    id: u64,
    loader: &Function,
    options: Resolved,
) -> Promise {
    state.borrow_mut().stats.loads += 1;
    let started = match loader.call1(&JsValue::NULL, &JsValue::from_str(&key)) {
        Ok(value) => Promise::resolve(&value),
        Err(error) => Promise::reject(&error),
    };

    let ok_state = state.clone();
    let ok_clock = clock.clone();
    let ok_key = key.clone();
    let on_ok = Closure::<dyn FnMut(JsValue) -> Result<JsValue, JsValue>>::once_into_js(
        move |value: JsValue| -> Result<JsValue, JsValue> {
            let now = ok_clock.now();
            let size = options
                .size
                .unwrap_or_else(|| super::cache::estimate_size(&ok_key, &value));
            let mut s = ok_state.borrow_mut();
            let result = if value.is_undefined() {
                s.stats.load_errors += 1;
                Err(JsError::new(&format!(
                    "the loader for key {ok_key:?} resolved to undefined; return a value or throw"
                ))
                .into())
            } else {
                now.map_err(JsValue::from).map(|now| {
                    s.insert(ok_key.clone(), value.clone(), size, &options, now);
                    value
                })
            };
            s.inflight.finish(&ok_key, id, Loaded(result.clone()));
            result
        },
    );

    let err_state = state.clone();
    let err_clock = clock.clone();
    let err_key = key.clone();
    let on_err = Closure::<dyn FnMut(JsValue) -> Result<JsValue, JsValue>>::once_into_js(
        move |error: JsValue| -> Result<JsValue, JsValue> {
            let now = err_clock.now();
            let mut s = err_state.borrow_mut();
            s.stats.load_errors += 1;
            let result = now.map_err(JsValue::from).and_then(|now| {
                // RFC 5861 §4: a stale response may be used when the origin (here: the
                // loader) fails.
                let stale = s.store.peek(err_key.as_str()).and_then(|e| {
                    (now >= e.windows.fresh_until && now < e.windows.stale_if_error_until)
                        .then(|| e.value.clone())
                });
                match stale {
                    Some(value) => {
                        s.stats.stale_if_error_served += 1;
                        Ok(value)
                    }
                    None => Err(error),
                }
            });
            s.inflight.finish(&err_key, id, Loaded(result.clone()));
            result
        },
    );

    then(&started, &on_ok, &on_err)
}

/// `promise.then(on_ok, on_err)` with handlers that are plain JS functions (they may return
/// a value or throw, which settles the returned promise). Falls back to a rejected promise
/// if `then` is somehow unavailable.
fn then(promise: &Promise, on_ok: &JsValue, on_err: &JsValue) -> Promise {
    let then_fn = js_sys::Reflect::get(promise, &JsValue::from_str("then"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok());
    match then_fn.map(|f| f.call2(promise, on_ok, on_err)) {
        Some(Ok(p)) => p
            .dyn_into::<Promise>()
            .unwrap_or_else(|v| Promise::resolve(&v)),
        Some(Err(e)) => Promise::reject(&e),
        None => Promise::reject(&JsError::new("Promise.prototype.then is not available").into()),
    }
}
