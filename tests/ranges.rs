#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Range requests (RFC 9110 §14) through `edgecache serve` over real sockets, against a
//! real origin: the same assertions run on the Worker under wrangler dev (tests/worker.rs).

mod support;

use bytes::Bytes;

use support::cache::{config, Cache};
use support::{
    assert_large_objects_are_cached_in_slices,
    assert_partial_responses_answer_the_ranges_within_them,
    assert_ranges_are_served_from_the_complete_response, await_object, eventually, get_range,
    pattern, send, url, Frontend, Origin, RedisServer, WAIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_from_the_complete_response() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 64 * 1024;
    let cache = Cache::start(config, &origin, None).await;
    assert_ranges_are_served_from_the_complete_response(&cache, &origin).await;
}

/// RFC 9111 §3.3: an origin's `206` is stored as an incomplete response and answers the
/// ranges within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_responses_answer_the_ranges_within_them() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    assert_partial_responses_answer_the_ranges_within_them(&cache, &origin).await;
}

/// An incomplete response reaches Redis in a format of its own (entry version 3, which
/// versions before incomplete responses read as a miss), and another instance answers the
/// ranges within it from there without the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_responses_are_shared_through_redis_in_their_own_format() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    let path = "/shared-part?size=1000&part=700-999&cc=max-age%3D300";
    let first = get_range(&a, path, "bytes=700-709", None).await;
    assert_eq!(first.status, 206);
    let mut con = redis.conn().await;
    let key = await_object(&mut con, "/shared-part?").await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        stored.get(4),
        Some(&3),
        "entry version 3: an incomplete response"
    );
    let from_redis = get_range(&b, path, "bytes=900-", None).await;
    assert_eq!(from_redis.status, 206);
    assert_eq!(
        from_redis.header("content-range"),
        Some("bytes 900-999/1000")
    );
    assert_eq!(&from_redis.body[..], &pattern(1000)[900..]);
    assert!(
        from_redis.cache_status().contains("edgecache-l2; hit"),
        "{}",
        from_redis.cache_status()
    );
    assert_eq!(
        origin.count(path),
        1,
        "no origin request from the second instance"
    );
    let lacking = get_range(&b, path, "bytes=0-9", None).await;
    assert!(
        lacking.cache_status().contains("fwd=partial"),
        "{}",
        lacking.cache_status()
    );
    assert_eq!(origin.count(path), 2);
}

/// The test configuration with objects above 256 KiB cached in slices of 64 KiB.
fn sliced_config() -> edgecache::engine::EngineConfig {
    let mut config = config();
    config.limits.max_object_bytes = 256 * 1024;
    config.limits.slice_bytes = 64 * 1024;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_cached_in_slices() {
    let origin = Origin::start().await;
    let config = sliced_config();
    let cache = Cache::start(config, &origin, None).await;
    assert_large_objects_are_cached_in_slices(&cache, &origin, "/s").await;
}

/// The head and slices of a large object reach Redis, and another instance serves the
/// object from there without the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_in_slices_are_shared_through_redis() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let config = sliced_config();
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

/// RFC 9111 §5.2.1.7: Redis is part of the cache. `only-if-cached` at an instance whose
/// L1 has none of an object's slices is answered from those another instance stored in
/// Redis, byte for byte, without the origin; with one slice gone from Redis, a response
/// that needs it is a `504`, and one that does not is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_objects_in_slices_are_answered_from_redis() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let config = sliced_config();
    let a = Cache::start(config.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(config.clone(), &origin, Some(&redis)).await;
    let c = Cache::start(config, &origin, Some(&redis)).await;
    let size: usize = (512 << 10) + 7;
    let path = url(
        "/only-if-cached-slices",
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    assert!(a.get(&path).await.body == pattern(size));
    let mut con = redis.conn().await;
    await_object(&mut con, "/only-if-cached-slices?").await;
    let slices = async |con: &mut redis::aio::MultiplexedConnection| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("ec:v1:*only-if-cached-slices*slice*")
            .query_async(con)
            .await
            .unwrap_or_default()
    };
    eventually("the 9 slices in Redis", WAIT, async || {
        (slices(&mut con).await.len() >= 9).then_some(())
    })
    .await;
    let asked = (origin.count(&path), origin.ranges(&path).len());
    let only = async |cache: &Cache, range: Option<&str>| {
        let mut fields = vec![("cache-control", "only-if-cached")];
        fields.extend(range.map(|r| ("range", r)));
        send(cache.addr(), "GET", &path, &fields, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path} only-if-cached {range:?}: {e}"))
    };

    let from_redis = only(&b, None).await;
    assert_eq!(from_redis.status, 200);
    assert!(
        from_redis.body == pattern(size),
        "whole and intact from Redis"
    );
    assert!(
        from_redis.cache_status().contains("fwd=partial"),
        "{}",
        from_redis.cache_status()
    );

    // Slice 3 (bytes 196608-262143) leaves Redis; c has nothing in L1.
    let third: Vec<String> = slices(&mut con)
        .await
        .into_iter()
        .filter(|k| k.ends_with("slice 196608-262144"))
        .collect();
    assert_eq!(third.len(), 1, "{third:?}");
    let _: i64 = redis::cmd("DEL")
        .arg(&third[0])
        .query_async(&mut con)
        .await
        .unwrap();
    let lacking = only(&c, None).await;
    assert_eq!(lacking.status, 504, "{}", lacking.text());
    let lacking = only(&c, Some("bytes=200000-200009")).await;
    assert_eq!(lacking.status, 504);
    let held = only(&c, Some("bytes=0-196607")).await;
    assert_eq!(held.status, 206);
    assert!(held.body == pattern(size)[..196_608]);
    let held = only(&c, Some("bytes=-10")).await;
    assert_eq!(held.status, 206);
    assert!(held.body == pattern(size)[size - 10..]);
    assert_eq!(
        (origin.count(&path), origin.ranges(&path).len()),
        asked,
        "no origin request for only-if-cached"
    );
}

/// 20 clients of one cold object too large to store whole, at once: the object is fetched
/// once, its slices read from that one response (no slice is fetched by range), and every
/// client gets the same intact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_object_in_slices_is_fetched_once_for_concurrent_clients() {
    let origin = Origin::start().await;
    let config = sliced_config();
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

/// With L1 full of popular entries (TinyLFU admission), a popular large object's slices
/// are kept as its head is: admission is the object's, not each slice key's (each is new).
/// Otherwise clients reading behind the first would fetch every slice again by range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popular_object_keeps_its_slices_in_a_full_l1() {
    let origin = Origin::start().await;
    let mut config = sliced_config();
    config.l1.max_bytes = 2 << 20;
    let cache = Cache::start(config, &origin, None).await;
    // Popular small objects filling L1: each asked for several times.
    let hot: Vec<String> = (0..24)
        .map(|n| {
            url(
                &format!("/hot/{n}"),
                &[("cc", "max-age=300"), ("size", "81920")],
            )
        })
        .collect();
    for _ in 0..4 {
        for path in &hot {
            cache.get(path).await;
        }
    }
    let size: usize = (1 << 20) + 3;
    let path = url(
        "/popular-slices",
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    let _ = cache.get(&path).await;
    let fetched = origin.count(&path);
    for _ in 0..3 {
        let again = cache.get(&path).await;
        assert!(again.body == pattern(size));
    }
    assert_eq!(
        origin.count(&path),
        fetched,
        "every slice from L1: ranges {:?}",
        origin.ranges(&path)
    );
}

/// A cold object too large to store whole, first asked for with a range starting in its
/// first slice (`bytes=0-`, as media players first ask): its slices are read from the
/// origin's one response up to the range's end, stored on the way, and the range is sent
/// as they arrive; no slice is fetched again by range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_range_from_the_start_reads_the_origins_response() {
    let origin = Origin::start().await;
    let config = sliced_config();
    let cache = Cache::start(config, &origin, None).await;
    let size: usize = (512 << 10) + 9;
    let expected = pattern(size);
    for (name, range, first, last) in [
        ("from-zero", "bytes=0-", 0, size - 1),
        ("in-first-slice", "bytes=100-70000", 100, 70_000),
    ] {
        let path = url(
            &format!("/first-range/{name}"),
            &[
                ("cc", "max-age=300"),
                ("size", &size.to_string()),
                ("ranges", "1"),
                ("etag", "\"v1\""),
            ],
        );
        let part = support::send(
            cache.addr(),
            "GET",
            &path,
            &[("range", range)],
            bytes::Bytes::new(),
        )
        .await
        .expect("a range");
        assert_eq!(part.status, 206, "{name}");
        assert_eq!(
            part.header("content-range"),
            Some(&*format!("bytes {first}-{last}/{size}")),
            "{name}"
        );
        assert!(part.body == expected[first..=last], "{name}");
        assert_eq!(origin.count(&path), 1, "{name}: one origin request");
        assert!(origin.ranges(&path).is_empty(), "{name}: no slice by range");
        // The slices the range covered were stored on the way.
        let again = support::send(
            cache.addr(),
            "GET",
            &path,
            &[("range", &*format!("bytes={first}-{last}"))],
            bytes::Bytes::new(),
        )
        .await
        .expect("the range again");
        assert!(again.body == expected[first..=last], "{name}");
        assert_eq!(origin.count(&path), 1, "{name}: from the cache");
    }
}
