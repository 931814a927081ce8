#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Range requests (RFC 9110 §14) through `edgecache serve` over real sockets, against a
//! real origin: the same assertions run on the Worker under wrangler dev (tests/worker.rs).

mod support;

use support::cache::{config, Cache};
use support::{
    assert_large_objects_are_cached_in_slices, assert_ranges_are_served_from_the_complete_response,
    await_object, eventually, pattern, url, Frontend, Origin, RedisServer, WAIT,
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

/// The head and slices of a large object reach Redis, and another instance serves the
/// object from there without the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_in_slices_are_shared_through_redis() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 256 * 1024;
    config.limits.slice_bytes = 64 * 1024;
    let a = Cache::start(config.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(config, &origin, Some(&redis)).await;
    let size: usize = (512 << 10) + 7;
    let path = url(
        "/shared-slices",
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    assert!(a.get(&path).await.body == pattern(size));
    let fetched = origin.count(&path);
    let mut con = redis.conn().await;
    await_object(&mut con, "/shared-slices?").await;
    eventually("the 9 slices in Redis", WAIT, async || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("ec:v1:*slice*")
            .query_async(&mut con)
            .await
            .ok()?;
        (keys.len() >= 9).then_some(())
    })
    .await;
    let from_redis = b.get(&path).await;
    assert!(
        from_redis.body == pattern(size),
        "whole and intact from Redis"
    );
    assert_eq!(
        origin.count(&path),
        fetched,
        "no origin request from the second instance"
    );
}

/// 20 clients of one cold object too large to store whole, at once: the object is fetched
/// once, its slices read from that one response (no slice is fetched by range), and every
/// client gets the same intact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_object_in_slices_is_fetched_once_for_concurrent_clients() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 256 * 1024;
    config.limits.slice_bytes = 64 * 1024;
    let cache = Cache::start(config, &origin, None).await;
    let size: usize = (2 << 20) + 11;
    let path = url(
        "/concurrent-slices",
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (addr, path) = (cache.addr(), path.clone());
        clients.spawn(
            async move { support::send(addr, "GET", &path, &[], bytes::Bytes::new()).await },
        );
    }
    let expected = pattern(size);
    while let Some(done) = clients.join_next().await {
        let r = done.unwrap().expect("a whole response");
        assert_eq!(r.status, 200);
        assert!(r.body == expected, "intact");
    }
    assert_eq!(origin.count(&path), 1, "ranges: {:?}", origin.ranges(&path));
}
