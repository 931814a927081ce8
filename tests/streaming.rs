#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Streaming fills through `edgecache serve` over real sockets, against a real origin: a
//! cacheable miss reaches its clients as the origin sends it and is stored as it passes
//! (read-while-writer), and an origin that fails mid-body cuts its clients off. The same
//! assertions run on the Worker under wrangler dev (tests/worker.rs).

mod support;

use support::cache::{config, Cache};
use support::{
    assert_a_cold_miss_streams_to_concurrent_clients,
    assert_an_origin_aborting_mid_body_cuts_the_client_off,
    assert_an_origin_stalling_mid_body_cuts_the_client_off, Origin,
};

/// 20 clients of one cold 16 MiB object: one origin fetch, the same bytes for all, each
/// with its first bytes before the origin sends the rest. (The 100 MiB figures are
/// benchmarks: BENCHMARKS.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_miss_streams_to_twenty_clients_from_one_fetch() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 32 << 20;
    config.l1.max_bytes = 64 << 20;
    let cache = Cache::start(config, &origin, None).await;
    assert_a_cold_miss_streams_to_concurrent_clients(&cache, &origin, "/s", 16 << 20, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_aborting_mid_body_cuts_the_client_off() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    assert_an_origin_aborting_mid_body_cuts_the_client_off(&cache, &origin, "/a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_stalling_mid_body_cuts_the_client_off() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.between_bytes_timeout_ms = 300;
    let cache = Cache::start(config, &origin, None).await;
    assert_an_origin_stalling_mid_body_cuts_the_client_off(&cache, &origin, "/t").await;
}
