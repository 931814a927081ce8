//! The JS facade (`src/wasm`, feature `wasm`) in headless Chromium:
//! `CHROMEDRIVER=/usr/bin/chromedriver wasm-pack test --headless --chrome --mode no-install --
//! --features wasm`. Same tests as `tests/wasm_node.rs` (`tests/wasm_facade/`).
#![cfg(all(target_arch = "wasm32", feature = "wasm"))]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod wasm_facade;
