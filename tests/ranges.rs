#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Range requests (RFC 9110 §14) through `edgecache serve` over real sockets, against a
//! real origin: the same assertions run on the Worker under wrangler dev (tests/worker.rs).

mod support;

use support::cache::{config, Cache};
use support::{
    assert_large_objects_are_cached_in_slices, assert_ranges_are_served_from_the_complete_response,
    Origin,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_from_the_complete_response() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 64 * 1024;
    let cache = Cache::start(config, &origin, None).await;
    assert_ranges_are_served_from_the_complete_response(&cache, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_cached_in_slices() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 256 * 1024;
    config.limits.slice_bytes = 64 * 1024;
    let cache = Cache::start(config, &origin, None).await;
    assert_large_objects_are_cached_in_slices(&cache, &origin, "/s").await;
}
