//! Keeps each request's work in its own Workers request context.
//!
//! workerd binds every I/O object (a `Response`, a body stream, a socket) to the request
//! whose code created it, and the code that runs is whichever request's event woke the
//! isolate. wasm-bindgen's executor runs every woken Rust task in one microtask queue, so a
//! task woken by *another* request (a coalesced waiter woken by its leader's fetch) would
//! run, and create its response, in the leader's context ("Cannot perform I/O on behalf of
//! a different request").
//!
//! [`in_own_context`] fixes that without touching the engine: it polls the future itself and,
//! whenever the future is pending, parks on a JS promise created in the current (own)
//! context. The future's waker only resolves that promise. workerd runs a promise's
//! continuation in the context that created it, so the future is always polled, and its I/O
//! objects always created, in its own request's context, whoever woke it.

use alloc::sync::Arc;
use alloc::task::Wake;
use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::collections::HashMap;

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

std::thread_local! {
    /// Resolvers of the promises parked tasks wait on, by waker id (the isolate is one
    /// thread; wakers must be `Send + Sync`, JS functions are not, hence the indirection).
    static PARKED: RefCell<HashMap<u64, js_sys::Function>> = RefCell::new(HashMap::new());
    static NEXT_ID: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Wakes a parked task by resolving its promise (from any context).
struct PromiseWaker(u64);

impl Wake for PromiseWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(resolve) = PARKED.with(|p| p.borrow_mut().remove(&self.0)) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

/// Removes a task's resolver when the task ends, however it ends.
struct Unpark(u64);

impl Drop for Unpark {
    fn drop(&mut self) {
        PARKED.with(|p| p.borrow_mut().remove(&self.0));
    }
}

/// Runs `future` so that it is only ever polled in the request context that awaits this.
pub async fn in_own_context<F: Future>(future: F) -> F::Output {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id.wrapping_add(1));
        id
    });
    let waker = Waker::from(Arc::new(PromiseWaker(id)));
    // If this future is dropped while parked, forget its resolver.
    let _unpark = Unpark(id);
    let mut future = pin!(future);
    loop {
        // Park first, so a wake during the poll below resolves this round's promise.
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            PARKED.with(|p| p.borrow_mut().insert(id, resolve));
        });
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return output;
        }
        // Resolved by the waker; never rejected.
        let _ = JsFuture::from(promise).await;
    }
}
