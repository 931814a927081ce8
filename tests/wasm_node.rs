//! The JS facade (`src/wasm`, feature `wasm`) under Node.js:
//! `wasm-pack test --node --mode no-install -- --features wasm`. The tests live in
//! `tests/wasm_facade/`, shared with `tests/wasm_browser.rs`.
#![cfg(all(target_arch = "wasm32", feature = "wasm"))]

mod wasm_facade;
