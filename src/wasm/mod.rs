//! The JS / browser package (feature `wasm`): a wasm-bindgen facade over the core.
//!
//! Build it with `wasm-pack build --target web --mode no-install --features wasm` (or
//! `--target nodejs`). Everything here is glue: the decisions are the core's.
//!
//! - [`cache::EdgeCache`] (`new EdgeCache(options)`): the L1 store ([`crate::store`]) holding
//!   JS values, with TTL, `stale-while-revalidate` / `stale-if-error` windows (RFC 5861),
//!   tags, purges, statistics and a coalescing cache-aside `getOrInsert`.
//! - [`analyze::analyze_headers`] (`analyzeHeaders(input)`): what a shared cache does with a
//!   response, and why, by calling [`crate::policy`] (RFC 9111, 5861, 9211, 9213).
//! - [`sim::simulate`] (`simulate(options)`): a discrete-event simulation of a cache in front
//!   of a slow, failing origin, using the real L1 store and policy.
//! - [`bench::bench_l1`] (`benchL1(options)`): times L1 store operations inside wasm.
//!
//! Errors are thrown as JS `Error`s ([`wasm_bindgen::JsError`]) with a message naming the bad
//! input; no input makes the module trap. Time comes from `Date.now()` (std clocks panic on
//! `wasm32-unknown-unknown`) or from a clock function the caller supplies.

pub mod analyze;
pub mod bench;
pub mod cache;
mod clock;
pub mod headers_input;
mod js;
mod load;
pub mod sim;

use wasm_bindgen::prelude::*;

/// The package version (the crate's `CARGO_PKG_VERSION`).
#[wasm_bindgen]
pub fn version() -> String {
    String::from(env!("CARGO_PKG_VERSION"))
}
