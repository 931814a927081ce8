#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Integration tests of `edgecache serve` with real parts, all on loopback:
//!
//! - a real `redis-server` per test (its own port, no persistence), killed on drop;
//! - a real HTTP origin (hyper) that counts requests per path and query and whose answers
//!   are driven by query parameters (`cc`, `tag`, `delay_ms`, `status`, `size`, `chunked`);
//! - real edgecache instances started in-process through `edgecache::native::server`
//!   (`build_engine`, `bind`, `run`, `spawn_purge_sync`), reached by a hyper client over TCP.
//!
//! Run with `cargo test --features server --test native`. Every wait is bounded; polling
//! uses short intervals up to a deadline.

mod support;
use support::cache::{config, Cache};
use support::*;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
// Tokio's clock: the tests measure real time on purpose (the core never reads a clock).
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------
// edgecache instances
// ---------------------------------------------------------------------------------------

/// Polls `cache` with GETs of `path_and_query` until a response is no longer the origin's
/// first answer (the purge reached it); every response before that must be a hit on it.
async fn await_refetch(cache: &Cache, path_and_query: &str, what: &str) -> Resp {
    let first = body_for(path_and_query, 1);
    eventually(what, WAIT, async || {
        let r = cache.get(path_and_query).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        if r.text() == first {
            assert!(
                r.cache_status().contains("hit"),
                "{what}: the old body may only come from the cache: {}",
                r.cache_status()
            );
            None
        } else {
            Some(r)
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 1. Miss, hit, L2 backfill
// ---------------------------------------------------------------------------------------

/// A miss is fetched and stored; the next request is an L1 hit with `Age`; a second
/// instance sharing Redis answers from L2 without going to the origin, then from its L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_then_l2_backfill() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    let path = url("/a", &[("cc", "max-age=60")]);

    let first = a.get(&path).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), body_for(&path, 1));
    let cs = first.cache_status();
    assert!(
        cs.contains("edgecache-l1; fwd=uri-miss; fwd-status=200") && cs.contains("stored"),
        "miss: {cs}"
    );

    let second = a.get(&path).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), body_for(&path, 1));
    assert!(
        second.cache_status().starts_with("edgecache-l1; hit"),
        "hit: {}",
        second.cache_status()
    );
    let age = second.header("age").expect("Age on a hit");
    assert!(age.parse::<u64>().is_ok(), "Age: {age:?}");
    assert_eq!(origin.count(&path), 1);

    // The L2 write happens in the background after the response: wait for it.
    let mut con = redis.conn().await;
    await_object(&mut con, "/a?").await;

    let from_l2 = b.get(&path).await;
    assert_eq!(from_l2.status, 200);
    assert_eq!(from_l2.text(), body_for(&path, 1));
    assert!(
        from_l2.cache_status().contains("edgecache-l2; hit"),
        "L2 hit on the second instance: {}",
        from_l2.cache_status()
    );
    assert!(from_l2.header("age").is_some(), "Age on an L2 hit");
    let backfilled = b.get(&path).await;
    assert!(
        backfilled.cache_status().starts_with("edgecache-l1; hit"),
        "L1 backfilled from L2: {}",
        backfilled.cache_status()
    );
    assert_eq!(backfilled.text(), body_for(&path, 1));
    assert_eq!(origin.count(&path), 1, "no extra origin fetch");
    let stats = b.stats().await;
    assert_eq!(stats["engine"]["l2_hits"], 1, "{stats}");
    assert_eq!(stats["engine"]["l1_hits"], 1, "{stats}");
    assert_eq!(stats["engine"]["origin_fetches"], 0, "{stats}");
}

/// Issue 14 point 3: two instances sharing Redis add their counts to the fleet's totals
/// (every `stats.report_secs`, here 1 s, on their timer), so `/stats` and `/metrics` on
/// either show the fleet's figures, the sum of both instances' own, beside its own figures,
/// each labelled; the fleet takes two Redis keys, both with a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_on_either_instance_show_the_fleet() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut config = config();
    config.stats.report_secs = 1;
    let a = Cache::start(config.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(config, &origin, Some(&redis)).await;
    let path = url("/fleet", &[("cc", "max-age=60")]);
    for _ in 0..3 {
        assert_eq!(a.get(&path).await.status, 200);
    }
    let mut con = redis.conn().await;
    await_object(&mut con, "/fleet?").await;
    for other in ["/fleet", "/fleet/b"] {
        assert_eq!(
            b.get(&url(other, &[("cc", "max-age=60")])).await.status,
            200
        );
    }
    let stats = assert_fleet_totals_are_the_sum(&[&a, &b], Duration::from_secs(10)).await;
    let fleet = &stats["fleet"];
    assert_eq!(fleet["engine"]["requests"], 5, "{stats}");
    assert_eq!(fleet["engine"]["origin_fetches"], 2, "{stats}");
    assert_eq!(fleet["engine"]["l2_hits"], 1, "{stats}");
    assert_eq!(
        stats["engine"]["requests"], 3,
        "a's own, as before: {stats}"
    );
    assert_eq!(fleet["instances"], 2, "{stats}");
    assert_eq!(fleet["report_secs"], 1, "{stats}");
    assert!(
        fleet["newest_report_age_ms"].as_u64().unwrap() < 3_000,
        "{stats}"
    );
    let from_b = b.stats().await;
    assert_ne!(from_b["instance"], stats["instance"]);
    assert_eq!(
        from_b["fleet"]["engine"], fleet["engine"],
        "the same fleet from b"
    );

    let keys: Vec<String> = bounded(
        "redis KEYS",
        WAIT,
        redis::cmd("KEYS")
            .arg("ec:v1:stats:*")
            .query_async(&mut con),
    )
    .await
    .expect("KEYS");
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "ec:v1:stats:{fleet}:instances",
            "ec:v1:stats:{fleet}:totals"
        ]
    );
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("PTTL");
        assert!(ttl > 0, "{key} has a TTL: {ttl}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. Coalescing
// ---------------------------------------------------------------------------------------

/// `n` concurrent GETs of `path_and_query` on each of `caches`, all started together.
/// 1,000 concurrent misses for one cold key on one instance make exactly one origin fetch,
/// and all 1,000 clients get 200 and the same body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_instance_make_one_origin_fetch() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    let hot = url("/hot", &[("cc", "max-age=60"), ("delay_ms", "200")]);
    let results = storm(&[&cache], &hot, 1000).await;
    assert_eq!(results.len(), 1000);
    assert_one_origin_fetch(&origin, &hot, &results, &[&cache]).await;
    assert_all_ok_same_body(&results, &body_for(&hot, 1));
    let stats = cache.stats().await;
    assert_eq!(stats["engine"]["origin_fetches"], 1, "{stats}");
    assert_eq!(
        stats["engine"]["coalesced"],
        999 - stats["engine"]["l1_hits"].as_u64().unwrap(),
        "{stats}"
    );
}

/// 500 concurrent misses on each of two instances sharing Redis make exactly one origin
/// fetch in total: each instance coalesces locally, and the Redis lease (`SET NX PX`)
/// makes the other instance wait for the object in L2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_two_instances_sharing_redis_make_one_origin_fetch() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    let hot = url("/hot2", &[("cc", "max-age=60"), ("delay_ms", "200")]);
    let results = storm(&[&a, &b], &hot, 500).await;
    assert_eq!(results.len(), 1000);
    assert_one_origin_fetch(&origin, &hot, &results, &[&a, &b]).await;
    assert_all_ok_same_body(&results, &body_for(&hot, 1));
    let fetches = a.stat("origin_fetches").await + b.stat("origin_fetches").await;
    assert_eq!(fetches, 1);
    assert_eq!(origin.total(), 1, "nothing else reached the origin");
}

/// The same defect without sockets or timing: a waiter of a finished flight must still
/// get the leader's stored response when another request joins the key before it has
/// read it (a request that missed L1 just before the leader stored the response).
#[test]
fn coalesced_waiter_keeps_the_leaders_response_when_a_late_request_joins() {
    use edgecache::engine::flight::{Flights, Outcome, Role};
    use edgecache::entry::CachedResponse;
    use edgecache::headers::Headers;
    use edgecache::time::Timestamp;
    use std::task::{Poll, Waker};

    let t = Timestamp::from_millis(1_700_000_000_000);
    let mut flights = Flights::default();
    let Role::Leader(leader) = flights.join("k", t, 20_000) else {
        panic!("the first request leads")
    };
    let Role::Waiter(waiter) = flights.join("k", t, 20_000) else {
        panic!("the second request waits")
    };
    let stored = Arc::new(CachedResponse::new(
        200,
        Headers::new(),
        b"body".to_vec(),
        t,
        t,
    ));
    flights.finish("k", leader, Outcome::Stored(stored));
    // A third request, which looked in L1 before the leader stored the response, joins now
    // (its waker has not run yet for the second).
    let _late = flights.join("k", t, 20_000);
    match flights.poll("k", waiter, Waker::noop()) {
        Poll::Ready(Outcome::Stored(r)) => assert_eq!(r.body, b"body"),
        other => panic!(
            "the waiter lost the leader's response and will go to the origin itself: {other:?}"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// 3. Stale-while-revalidate, stale-if-error
// ---------------------------------------------------------------------------------------

/// RFC 5861 §3: once stale, the old body is served at once with
/// `detail=stale-while-revalidate`, a background fetch follows, and later responses carry
/// the new body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_old_body_then_refreshes() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    assert_stale_while_revalidate(&cache, &origin, "").await;
}

/// RFC 5861 §4: when the origin answers 503, and then when it is gone altogether, a
/// response within stale-if-error is served with 200 and `detail=stale-if-error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_when_origin_fails_or_is_gone() {
    let mut origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    assert_stale_if_error(&cache, &mut origin, "").await;
}

// ---------------------------------------------------------------------------------------
// 4. Purges across instances
// ---------------------------------------------------------------------------------------

/// Two instances sharing Redis, both holding `paths` in L1 (fetched once, via L2).
async fn two_warm_instances(
    redis: &RedisServer,
    origin: &Origin,
    paths: &[&str],
) -> (Cache, Cache) {
    let a = Cache::start(config(), origin, Some(redis)).await;
    let b = Cache::start(config(), origin, Some(redis)).await;
    let mut con = redis.conn().await;
    for path in paths {
        assert_eq!(a.get(path).await.text(), body_for(path, 1));
        await_object(&mut con, path).await;
        let r = b.get(path).await;
        assert_eq!(r.text(), body_for(path, 1));
        assert!(
            r.cache_status().contains("edgecache-l2; hit"),
            "{}",
            r.cache_status()
        );
        assert_eq!(origin.count(path), 1);
    }
    (a, b)
}

/// The admin API refuses purges without the right token, and nothing is purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_without_token_is_refused() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url("/p", &[("cc", "max-age=300")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&path]).await;

    let purge = format!("/_edgecache/purge?url={}", enc(&path));
    let denied = a.admin("POST", &purge, None).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert!(denied.header("www-authenticate").is_some());
    let wrong = a
        .admin("POST", &purge, Some("wrong-token-wrong-token"))
        .await;
    assert_eq!(wrong.status, 401);
    let denied = b.admin("POST", "/_edgecache/purge?all=1", None).await;
    assert_eq!(denied.status, 401);
    assert_eq!(b.admin("GET", "/_edgecache/stats", None).await.status, 401);

    // Give a purge, had one been recorded, time to travel (3 poll intervals).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for cache in [&a, &b] {
        let r = cache.get(&path).await;
        assert_eq!(r.text(), body_for(&path, 1));
        assert!(
            r.cache_status().starts_with("edgecache-l1; hit"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count(&path), 1);
    assert_eq!(a.stat("admin_unauthorized").await, 2);
    assert_eq!(a.stat("purges").await, 0);
    let mut con = redis.conn().await;
    assert_eq!(
        object_keys(&mut con).await.len(),
        1,
        "the L2 copy is still there"
    );
}

/// Bodies above `l2.chunk_bytes` go to Redis as a head and chunks, and another instance
/// reads them whole; a missing chunk is a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_shared_through_redis() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    assert_chunked_bodies_are_shared_through_redis(&a, &b, &redis, &origin, "/n").await;
}

/// A URL purge on one instance removes the URL from its L1, from Redis, and (within a
/// bounded wait) from the other instance's L1, which refetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_url_reaches_the_other_instance() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url("/p", &[("cc", "max-age=300")]);
    let other = url("/q", &[("cc", "max-age=300")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&path, &other]).await;

    let answer = a.purge(&format!("url={}", enc(&path))).await;
    assert_eq!(answer["purged"], 1, "{answer}");
    assert_eq!(answer["soft"], false);
    let mut con = redis.conn().await;
    let left = object_keys(&mut con).await;
    assert!(
        left.len() == 1 && left[0].contains("/q?"),
        "the purged URL left Redis, the other stayed: {left:?}"
    );
    let started = Instant::now();
    let r = await_refetch(&b, &path, "the URL purge on the other instance").await;
    assert_eq!(r.text(), body_for(&path, 2), "B refetched from the origin");
    assert!(
        r.cache_status().contains("fwd=uri-miss"),
        "{}",
        r.cache_status()
    );
    eprintln!(
        "URL purge reached the other instance in {:?}",
        started.elapsed()
    );
    let r = a.get(&path).await;
    assert_ne!(r.text(), body_for(&path, 1), "A's own copy is gone");
    assert!(
        !r.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        r.cache_status()
    );
    // The other URL is untouched on both.
    for cache in [&a, &b] {
        let r = cache.get(&other).await;
        assert!(
            r.cache_status().starts_with("edgecache-l1; hit"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count(&other), 1);
}

/// A tag purge (Surrogate-Key) removes every response with the tag on both instances and
/// leaves the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_tag_reaches_the_other_instance() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let t1 = url("/t1", &[("cc", "max-age=300"), ("tag", "grp x")]);
    let t2 = url("/t2", &[("cc", "max-age=300"), ("tag", "y grp")]);
    let t3 = url("/t3", &[("cc", "max-age=300"), ("tag", "other")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&t1, &t2, &t3]).await;

    // Purged through B this time; A must see it.
    let answer = b.purge("tag=grp").await;
    assert_eq!(answer["purged"], 2, "{answer}");
    let mut con = redis.conn().await;
    let left = object_keys(&mut con).await;
    assert!(
        left.len() == 1 && left[0].contains("/t3?"),
        "the tagged objects left Redis, the other stayed: {left:?}"
    );
    let r = await_refetch(&a, &t1, "the tag purge on the other instance").await;
    assert!(
        !r.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        r.cache_status()
    );
    let r = a.get(&t2).await;
    assert_ne!(r.text(), body_for(&t2, 1), "{}", r.cache_status());
    let r = b.get(&t1).await;
    assert_ne!(r.text(), body_for(&t1, 1));
    for cache in [&a, &b] {
        let r = cache.get(&t3).await;
        assert_eq!(r.text(), body_for(&t3, 1));
        assert!(
            r.cache_status().starts_with("edgecache-l1; hit"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count(&t3), 1);
    assert!(origin.count(&t1) >= 2 && origin.count(&t2) >= 2);
}

/// A soft purge marks the URL stale on both instances: with a stale-while-revalidate
/// window it is still served (old body, `detail=stale-while-revalidate`) while refetched,
/// then the new body is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_serves_stale_then_refreshes_on_both_instances() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url("/s", &[("cc", "max-age=300, stale-while-revalidate=30")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&path]).await;
    let old = body_for(&path, 1);

    let answer = a.purge(&format!("url={}&soft=1", enc(&path))).await;
    assert_eq!(answer["purged"], 1, "{answer}");
    assert_eq!(answer["soft"], true);

    let r = a.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), old, "soft-purged content is still served");
    assert!(
        r.cache_status().contains("detail=stale-while-revalidate"),
        "{}",
        r.cache_status()
    );
    let r = eventually("the soft purge on the other instance", WAIT, async || {
        let r = b.get(&path).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            old,
            "B serves the old body until it has refetched"
        );
        assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
        r.cache_status()
            .contains("detail=stale-while-revalidate")
            .then_some(r)
    })
    .await;
    assert_eq!(r.text(), old);
    for (name, cache) in [("A", &a), ("B", &b)] {
        let r = eventually(
            &format!("{name} to serve the refreshed body"),
            WAIT,
            async || {
                let r = cache.get(&path).await;
                (r.text() != old).then_some(r)
            },
        )
        .await;
        assert!(!r.cache_status().contains("stale"), "{}", r.cache_status());
    }
    assert!(origin.count(&path) >= 2);
}

/// Purge-all through one instance empties both (and moves Redis to a new epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_reaches_the_other_instance() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let p1 = url("/all1", &[("cc", "max-age=300")]);
    let p2 = url("/all2", &[("cc", "max-age=300"), ("tag", "t")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&p1, &p2]).await;

    let answer = b.purge("all=1").await;
    assert_eq!(answer["purged"], 2, "{answer}");
    let mut con = redis.conn().await;
    let epoch: Option<String> = redis::cmd("GET")
        .arg("ec:v1:epoch")
        .query_async(&mut con)
        .await
        .unwrap();
    let epoch: i64 = epoch
        .as_deref()
        .and_then(|e| e.parse().ok())
        .expect("purge-all records an epoch");
    assert!(epoch > 0, "purge-all moves to a new epoch, got {epoch}");

    let r = await_refetch(&a, &p1, "the purge-all on the other instance").await;
    assert_eq!(r.text(), body_for(&p1, 2));
    let r = a.get(&p2).await;
    assert_eq!(r.text(), body_for(&p2, 2), "{}", r.cache_status());
    for p in [&p1, &p2] {
        let r = b.get(p).await;
        assert_ne!(r.text(), body_for(p, 1), "{}", r.cache_status());
    }
}

// ---------------------------------------------------------------------------------------
// 5. Redis killed mid-test
// ---------------------------------------------------------------------------------------

/// Killing Redis (SIGKILL) under load fails no client request; the failures are counted;
/// once Redis is back on the same port and the breaker has cooled down, new misses are
/// written to Redis again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_degrades_then_recovers() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let origin = Origin::start().await;
    let mut cfg = config();
    cfg.l2.breaker_cooldown_ms = 200;
    cfg.l2.timeout_ms = 200;
    let cache = Cache::start(cfg, &origin, Some(&redis)).await;
    let mut con = redis.conn().await;

    let keys: Vec<String> = (0..5)
        .map(|k| url(&format!("/k{k}"), &[("cc", "max-age=1")]))
        .collect();
    let total = 300;
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..total {
        if i == total / 2 {
            let stored = object_keys(&mut con).await;
            assert!(!stored.is_empty(), "Redis was in use before the kill");
            redis.kill();
            eprintln!("redis-server SIGKILLed after {i} requests");
        }
        // Mostly a handful of short-lived keys; every 5th request a brand-new key, so the
        // miss path (L2 read, lease, origin, L2 write) runs throughout.
        let path = if i % 5 == 4 {
            url(&format!("/u{i}"), &[("cc", "max-age=60")])
        } else {
            keys[i % keys.len()].clone()
        };
        let sent = Instant::now();
        let result = cache.try_get(&path).await;
        slowest = slowest.max(sent.elapsed());
        match result {
            Ok(r) if r.status == 200 && r.text().starts_with(&format!("{path} #")) => {}
            Ok(r) => failures.push(format!(
                "#{i} {path}: {} {:?} [{}]",
                r.status,
                r.text(),
                r.cache_status()
            )),
            Err(e) => failures.push(format!("#{i} {path}: {e}")),
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "{total} requests in {:?}, the slowest {slowest:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let stats = cache.stats().await;
    assert!(
        stats["engine"]["l2_errors"].as_u64().unwrap_or(0) > 0,
        "the Redis failures are counted: {stats}"
    );

    // Redis comes back, empty, on the same port.
    let redis = RedisServer::start_on(port)
        .await
        .expect("redis-server restarted on the same port");
    let mut con = redis.conn().await;
    assert!(object_keys(&mut con).await.is_empty());
    let mut n = 0;
    let recovered = Instant::now();
    eventually(
        "new misses written to Redis again",
        Duration::from_secs(10),
        async || {
            n += 1;
            let path = url(&format!("/after{n}"), &[("cc", "max-age=60")]);
            let r = cache.get(&path).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), body_for(&path, 1));
            // The write is in the background: give it a moment before looking.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let stored = object_keys(&mut con).await;
            (!stored.is_empty()).then_some(stored)
        },
    )
    .await;
    eprintln!(
        "L2 writes resumed {:?} after the restart ({n} misses)",
        recovered.elapsed()
    );
}

/// Redis restarted empty (no persistence, a failover, `FLUSHALL`) restarts the purge log
/// at sequence 1: purges made after that must still reach the other instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_still_reach_other_instances_after_redis_restarts_empty() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let origin = Origin::start().await;
    let mut cfg = config();
    cfg.l2.breaker_cooldown_ms = 200;
    let a = Cache::start(cfg.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(cfg, &origin, Some(&redis)).await;

    // A few purges before the restart, the last one seen by B.
    let before = url("/before", &[("cc", "max-age=300")]);
    a.get(&before).await;
    b.get(&before).await;
    for _ in 0..3 {
        a.purge("tag=unused").await;
    }
    a.purge(&format!("url={}", enc(&before))).await;
    await_refetch(&b, &before, "the purge before the restart").await;

    redis.kill();
    let redis = RedisServer::start_on(port)
        .await
        .expect("redis-server restarted on the same port");
    let mut con = redis.conn().await;

    // Both instances use the new Redis: A writes an object to it, B reads it from there.
    let path = url("/after", &[("cc", "max-age=300")]);
    let mut n = 0;
    eventually(
        "A writing to the restarted Redis",
        Duration::from_secs(10),
        async || {
            n += 1;
            let probe = url(&format!("/probe{n}"), &[("cc", "max-age=300")]);
            a.get(&probe).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            (!object_keys(&mut con).await.is_empty()).then_some(())
        },
    )
    .await;
    // B clears its L1 once it notices the reset (by design: its purge position means
    // nothing in the new log); wait for that, or it can clear the copy read below.
    let mut m = 0;
    eventually(
        "B noticing the reset",
        Duration::from_secs(10),
        async || {
            m += 1;
            b.get(&url(&format!("/b-probe{m}"), &[("cc", "max-age=300")]))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            (b.stat("l2_resets").await >= 1).then_some(())
        },
    )
    .await;
    let on_a = a.get(&path).await;
    await_object(&mut con, "/after?").await;
    let on_b = eventually(
        "B reading from the restarted Redis",
        Duration::from_secs(10),
        async || {
            let r = b.get(&path).await;
            r.cache_status().contains("edgecache-l2; hit").then_some(r)
        },
    )
    .await;
    assert_eq!(on_b.text(), on_a.text());
    let r = b.get(&path).await;
    assert!(
        r.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        r.cache_status()
    );

    // A purge through A must now reach B.
    a.purge(&format!("url={}", enc(&path))).await;
    let old = on_a.text();
    eventually(
        "the purge after the restart on the other instance",
        WAIT,
        async || {
            let r = b.get(&path).await;
            (r.text() != old).then_some(())
        },
    )
    .await;
}

/// The purge-all epoch after Redis restarted empty: a purge-all must still make what is in
/// Redis unreachable, even for an instance that used a higher epoch before the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_after_redis_restarts_empty_still_purges_l2() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let origin = Origin::start().await;
    let mut cfg = config();
    cfg.l2.breaker_cooldown_ms = 200;
    let a = Cache::start(cfg, &origin, Some(&redis)).await;
    a.get(&url("/warm", &[("cc", "max-age=300")])).await;
    a.purge("all=1").await;

    redis.kill();
    let redis = RedisServer::start_on(port)
        .await
        .expect("redis-server restarted on the same port");
    let mut con = redis.conn().await;
    let mut n = 0;
    eventually(
        "writes to the restarted Redis",
        Duration::from_secs(10),
        async || {
            n += 1;
            let probe = url(&format!("/probe{n}"), &[("cc", "max-age=300")]);
            a.get(&probe).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            (!object_keys(&mut con).await.is_empty()).then_some(())
        },
    )
    .await;
    let path = url("/x", &[("cc", "max-age=300")]);
    assert_eq!(a.get(&path).await.text(), body_for(&path, 1));
    await_object(&mut con, "/x?").await;

    a.purge("all=1").await;
    let r = a.get(&path).await;
    assert_eq!(
        r.text(),
        body_for(&path, 2),
        "purged content served again: {}",
        r.cache_status()
    );
}

// ---------------------------------------------------------------------------------------
// 6. Corrupt L2 entries
// ---------------------------------------------------------------------------------------

/// An object in Redis overwritten with garbage, or with one byte flipped, is a counted
/// miss on a fresh instance: it answers from the origin, never the corrupt bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_l2_entry_is_a_counted_miss() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let mut con = redis.conn().await;

    // Garbage.
    let path = url("/c", &[("cc", "max-age=300")]);
    assert_eq!(a.get(&path).await.text(), body_for(&path, 1));
    let key = await_object(&mut con, "/c?").await;
    assert_eq!(object_keys(&mut con).await, vec![key.clone()]);
    let garbage: &[u8] = b"\x00\xffthis is not an edgecache entry\x01\x02\x03";
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(garbage)
        .query_async(&mut con)
        .await
        .unwrap();
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    let r = b.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body_for(&path, 2), "from the origin");
    assert!(
        !r.cache_status().contains("edgecache-l2; hit"),
        "{}",
        r.cache_status()
    );
    assert_eq!(origin.count(&path), 2);
    assert_eq!(b.stat("l2_corrupt").await, 1);
    // The corrupt object was replaced by a good one.
    eventually("the corrupt object to be replaced", WAIT, async || {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        value.filter(|v| v != garbage).map(|_| ())
    })
    .await;

    // One flipped byte in an otherwise valid entry.
    let path = url("/c2", &[("cc", "max-age=300")]);
    assert_eq!(a.get(&path).await.text(), body_for(&path, 1));
    let key = await_object(&mut con, "/c2?").await;
    let mut bytes: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let body = body_for(&path, 1);
    let at = bytes
        .windows(body.len())
        .position(|w| w == body.as_bytes())
        .expect("the body is stored uncompressed")
        + body.len()
        - 1;
    bytes[at] ^= 0x01;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&bytes)
        .query_async(&mut con)
        .await
        .unwrap();
    let c = Cache::start(config(), &origin, Some(&redis)).await;
    let r = c.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body_for(&path, 2), "never the tampered body");
    assert_eq!(origin.count(&path), 2);
    assert_eq!(c.stat("l2_corrupt").await, 1);
}

// ---------------------------------------------------------------------------------------
// 7. Write-through
// ---------------------------------------------------------------------------------------

/// RFC 9111 §4.4: a POST goes to the origin with its body intact, and afterwards the
/// target is refetched on this instance and on the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_reaches_origin_and_invalidates_everywhere() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url("/item", &[("cc", "max-age=300")]);
    let (a, b) = two_warm_instances(&redis, &origin, &[&path]).await;

    let payload: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(7) % 256) as u8)
        .collect();
    let r = send(
        a.addr,
        "POST",
        &path,
        &[("content-type", "application/octet-stream")],
        Bytes::from(payload.clone()),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), format!("POST ok {}", payload.len()));
    assert!(
        r.cache_status().contains("fwd=method"),
        "{}",
        r.cache_status()
    );
    let writes = origin.writes();
    assert_eq!(writes.len(), 1, "the POST reached the origin once");
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path_and_query, path);
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert!(
        writes[0].body == payload,
        "the body arrived intact ({} bytes)",
        writes[0].body.len()
    );
    let mut con = redis.conn().await;
    assert_eq!(
        object_keys(&mut con).await,
        Vec::<String>::new(),
        "the invalidated object left Redis"
    );

    let r = await_refetch(&b, &path, "the invalidation on the other instance").await;
    assert_eq!(r.text(), body_for(&path, 2));
    let r = a.get(&path).await;
    assert_ne!(r.text(), body_for(&path, 1));
    assert!(
        !r.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        r.cache_status()
    );
}

// ---------------------------------------------------------------------------------------
// 8. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// A request in flight when the shutdown future fires completes with 200; new
/// connections are refused from then on; `run` returns once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let origin = Origin::start().await;
    let mut cache = Cache::start(config(), &origin, None).await;
    let addr = cache.addr;
    let path = url("/slow", &[("cc", "max-age=60"), ("delay_ms", "500")]);
    let in_flight = tokio::spawn({
        let path = path.clone();
        async move { send(addr, "GET", &path, &[], Bytes::new()).await }
    });
    eventually("the request to reach the origin", WAIT, async || {
        (origin.count(&path) == 1).then_some(())
    })
    .await;
    cache.begin_shutdown();
    assert!(
        !in_flight.is_finished(),
        "the request must still be in flight when the shutdown fires"
    );
    eventually(
        "new connections to be refused",
        WAIT,
        async || match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            // A connect racing the listener's close may be reset instead: try again.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => None,
        },
    )
    .await;
    let r = bounded("the in-flight request", WAIT, in_flight)
        .await
        .expect("client task")
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body_for(&path, 1));
    let task = cache.task.take().unwrap();
    bounded("run() to return", WAIT, task).await.expect("run");
    assert!(TcpStream::connect(addr).await.is_err(), "still refused");
}

// ---------------------------------------------------------------------------------------
// 9. Limits
// ---------------------------------------------------------------------------------------

/// A response larger than `limits.max_object_bytes` streams through complete and is not
/// cached (with and without Content-Length); one under the limit is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_stream_through_uncached() {
    let origin = Origin::start().await;
    let mut cfg = config();
    cfg.limits.max_object_bytes = 64 * 1024;
    let cache = Cache::start(cfg, &origin, None).await;
    assert_oversized_stream_through_uncached(&cache, &origin, "/big").await;
}

// ---------------------------------------------------------------------------------------
// Hit fields
// ---------------------------------------------------------------------------------------

/// A hit sends what the miss that stored it sent, each field once: the stored
/// fields come from a header map kept with the entry (built on the first hit), so the
/// second hit must look like the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_send_the_stored_fields_once_with_age_and_cache_status() {
    let origin = Origin::start().await;
    let a = Cache::start(config(), &origin, None).await;
    let path = url("/fields", &[("cc", "max-age=60"), ("tag", "t1")]);
    let miss = a.get(&path).await;
    let hits = [a.get(&path).await, a.get(&path).await];
    let names = |r: &Resp| {
        let mut names: Vec<String> = r.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&miss),
        [
            "accept-ranges",
            "age",
            "cache-control",
            "cache-status",
            "content-length",
            "content-type",
            "date"
        ]
    );
    for hit in &hits {
        assert!(
            hit.cache_status().starts_with("edgecache-l1; hit"),
            "{hit:?}"
        );
        assert_eq!(
            names(hit),
            [
                "accept-ranges",
                "age",
                "cache-control",
                "cache-status",
                "content-length",
                "content-type",
                "date"
            ]
        );
        for name in names(hit) {
            assert_eq!(
                hit.headers.get_all(&name).iter().count(),
                1,
                "{name}: {hit:?}"
            );
        }
        for same in [
            "accept-ranges",
            "cache-control",
            "content-type",
            "date",
            "content-length",
        ] {
            assert_eq!(hit.header(same), miss.header(same), "{same}");
        }
        assert_eq!(hit.body, miss.body);
    }
    assert_eq!(origin.count(&path), 1);
}

/// HEAD is answered like GET without the content (RFC 9110 §9.3.2): a HEAD hit says how long
/// the content is, as the GET hit does, and carries no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_hits_carry_the_content_length_of_the_get() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    for size in ["100", "70000"] {
        let path = url("/head", &[("cc", "max-age=60"), ("size", size)]);
        let get = cache.get(&path).await;
        let get_hit = cache.get(&path).await;
        assert!(get_hit.cache_status().starts_with("edgecache-l1; hit"));
        let head = send(cache.addr(), "HEAD", &path, &[], Bytes::new())
            .await
            .expect("HEAD");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert!(
            head.cache_status().starts_with("edgecache-l1; hit"),
            "{}",
            head.cache_status()
        );
        assert_eq!(head.header("content-length"), Some(size), "size {size}");
        assert_eq!(get.body.len().to_string(), size);
        assert_eq!(origin.count(&path), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Write-behind through edgecache serve (tests/write_behind.rs has the details)
// ---------------------------------------------------------------------------------------

/// A POST on a write-behind route is answered 202 with an Idempotency-Key, reaches the
/// origin once with that key soon after (the flush an append starts, or the timer), and the
/// counters say so in both stats formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_accepts_then_delivers_once() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.write_behind.routes = vec!["/queued/".into()];
    c.write_behind.flush_interval_ms = 100;
    c.write_behind.retry_after_ms = 15_000;
    let cache = Cache::start(c, &origin, Some(&redis)).await;

    let r = send(
        cache.addr,
        "POST",
        "/queued/order",
        &[("content-type", "text/plain")],
        Bytes::from_static(b"one order"),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 202, "{r:?}");
    let key = r.header("idempotency-key").expect("a key").to_string();
    eventually("the delivery", WAIT, async || {
        (!origin.writes().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 1, "once: {writes:?}");
    assert_eq!(writes[0].body, b"one order");
    assert_eq!(writes[0].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(cache.stat("write_behind_appended").await, 1);
    assert_eq!(cache.stat("write_behind_flushed").await, 1);
    let metrics = cache
        .admin("GET", "/_edgecache/metrics", Some(TOKEN))
        .await
        .text();
    assert!(
        metrics.contains("edgecache_write_behind_flushed_total{scope=\"instance\"} 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------
// Leases: released at once when a fetch fails, taken by background refreshes too
// ---------------------------------------------------------------------------------------

/// Every fetch lease in Redis now.
async fn leases(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    bounded(
        "redis KEYS",
        WAIT,
        redis::cmd("KEYS").arg("ec:v1:*lease:*").query_async(con),
    )
    .await
    .expect("KEYS")
}

/// A fetch that fails (origin errors, origin gone) or is not storable releases its Redis
/// lease before the client is answered: the next request, here or on another instance,
/// goes to the origin at once instead of waiting out `l2.lease_ms` (5 s) for an object
/// that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetches_release_their_lease_at_once() {
    let redis = RedisServer::start().await;
    let mut origin = Origin::start().await;
    let a = Cache::start(config(), &origin, Some(&redis)).await;
    let b = Cache::start(config(), &origin, Some(&redis)).await;
    let mut con = redis.conn().await;

    origin.force_status(Some(503));
    let r = a.get("/lease/503").await;
    assert_eq!(r.status, 503);
    assert_eq!(leases(&mut con).await, Vec::<String>::new(), "after a 503");

    origin.force_status(None);
    let r = a.get("/lease/nostore?cc=no-store").await;
    assert_eq!(r.status, 200);
    assert_eq!(leases(&mut con).await, Vec::<String>::new(), "after a pass");

    origin.stop().await;
    let r = a.get("/lease/gone").await;
    assert_eq!(r.status, 502);
    assert_eq!(leases(&mut con).await, Vec::<String>::new(), "after 502");
    let r = b.get("/lease/gone").await;
    assert_eq!(r.status, 502);
    assert!(
        !r.cache_status().contains("collapsed"),
        "b did not wait for a's lease: {}",
        r.cache_status()
    );
    assert_eq!(leases(&mut con).await, Vec::<String>::new());
}

/// RFC 5861 §3 across instances: when an entry both instances hold goes stale (here: a
/// soft purge), the background refreshes coalesce through the Redis lease, so one expiry is
/// one origin fetch, and both instances then serve the new body. The origin takes 3 s, so
/// the second instance's refresh starts while the first holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refreshes_coalesce_across_instances() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url(
        "/swr-shared",
        &[
            ("cc", "max-age=300, stale-while-revalidate=60"),
            ("delay_ms", "3000"),
        ],
    );
    let (a, b) = two_warm_instances(&redis, &origin, &[&path]).await;
    let old = body_for(&path, 1);
    a.purge(&format!("url={}&soft=1", enc(&path))).await;
    let r = a.get(&path).await;
    assert!(
        r.cache_status().contains("stale-while-revalidate"),
        "{}",
        r.cache_status()
    );
    eventually("b to see the soft purge and refresh", WAIT, async || {
        let r = b.get(&path).await;
        assert_eq!(r.text(), old, "b serves the old body until the refresh");
        r.cache_status()
            .contains("stale-while-revalidate")
            .then_some(())
    })
    .await;
    for cache in [&a, &b] {
        eventually("the refreshed body", WAIT, async || {
            let r = cache.get(&path).await;
            (r.text() != old).then_some(())
        })
        .await;
    }
    assert_eq!(origin.count(&path), 2, "one refresh for both instances");
    assert_eq!(b.get(&path).await.text(), body_for(&path, 2));
    assert!(b.stat("coalesced").await >= 1, "b took a's refresh from L2");
}

/// A request whose client leaves mid-fetch drops its lease without releasing it (nothing
/// runs after the drop): the next request to the same instance takes its own lease over
/// instead of waiting `l2.lease_ms` (here 20 s, longer than a client waits) for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_by_a_client_that_went_away_is_taken_over() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.l2.lease_ms = 20_000;
    c.limits.coalesce_wait_ms = 20_000;
    let cache = Cache::start(c, &origin, Some(&redis)).await;
    let path = url("/abandoned", &[("cc", "max-age=60"), ("delay_ms", "1000")]);
    let leaving = {
        let addr = cache.addr;
        let path = path.clone();
        tokio::spawn(async move { send(addr, "GET", &path, &[], Bytes::new()).await })
    };
    eventually("the first fetch to reach the origin", WAIT, async || {
        (origin.count(&path) == 1).then_some(())
    })
    .await;
    leaving.abort();
    let _ = leaving.await;
    let mut con = redis.conn().await;
    assert_eq!(leases(&mut con).await.len(), 1, "the lease was left behind");
    let r = cache.get(&path).await;
    assert_eq!(r.status, 200);
    assert!(origin.count(&path) >= 2, "fetched again, not waited out");
}

/// A URL purge deletes every Vary variant of the URL in Redis, not only its primary object:
/// otherwise, once one variant is fetched again and stored as the primary, another
/// instance asked for another variant reads the old one from Redis as if never purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_purge_reaches_every_variant_in_redis() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.routes = serde_json::from_str(r#"[{"prefix":"/v/","key_headers":["x-variant"]}]"#).unwrap();
    let a = Cache::start(c.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(c, &origin, Some(&redis)).await;
    let path = url("/v/page", &[("cc", "max-age=600")]);
    let variant = |cache: &Cache, v: &'static str| {
        let addr = cache.addr;
        let path = path.clone();
        async move {
            send(addr, "GET", &path, &[("x-variant", v)], Bytes::new())
                .await
                .expect("GET")
        }
    };
    let mut con = redis.conn().await;
    assert_eq!(variant(&a, "1").await.text(), body_for(&path, 1));
    assert_eq!(variant(&a, "2").await.text(), body_for(&path, 2));
    eventually("the primary and both variants in Redis", WAIT, async || {
        (object_keys(&mut con).await.len() == 3).then_some(())
    })
    .await;

    a.purge(&format!("url={}", enc(&path))).await;
    assert_eq!(
        object_keys(&mut con).await,
        Vec::<String>::new(),
        "all gone"
    );
    assert_eq!(variant(&a, "1").await.text(), body_for(&path, 3));
    eventually("the new primary in Redis", WAIT, async || {
        (object_keys(&mut con).await.len() == 2).then_some(())
    })
    .await;
    let r = variant(&b, "2").await;
    assert_eq!(r.text(), body_for(&path, 4), "{}", r.cache_status());
    assert_eq!(origin.count(&path), 4);
}

/// When the instance holding a fetch lease fails (the origin answers 503), the instances
/// waiting on it do not all go to the origin at once: one takes the lease, the others wait
/// on it in turn, so a struggling origin gets one request for the URL at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_failed_lease_take_turns() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let caches = [
        Cache::start(config(), &origin, Some(&redis)).await,
        Cache::start(config(), &origin, Some(&redis)).await,
        Cache::start(config(), &origin, Some(&redis)).await,
    ];
    origin.force_status(Some(503));
    let path = url("/turns", &[("cc", "max-age=60"), ("delay_ms", "300")]);
    let mut set = tokio::task::JoinSet::new();
    for cache in &caches {
        let addr = cache.addr;
        let path = path.clone();
        set.spawn(async move { send(addr, "GET", &path, &[], Bytes::new()).await });
    }
    while let Some(result) = set.join_next().await {
        let r = result.unwrap().expect("an answer");
        assert_eq!(r.status, 503);
    }
    assert_eq!(origin.count(&path), 3, "each instance asked once");
    assert_eq!(origin.max_in_flight(), 1, "one at a time");
}

/// The native host says which part of its setup failed: the origin, the shared tier or the
/// engine's configuration (`server::StartError`), never quoting a password.
#[test]
fn a_failed_start_names_its_part() {
    use edgecache::native::server::{build_engine, StartError};
    let bad_origin = build_engine(config(), "not a url", None).err();
    assert!(
        matches!(bad_origin, Some(StartError::Origin(_))),
        "{bad_origin:?}"
    );
    let bad_redis = build_engine(
        config(),
        "http://127.0.0.1:1",
        Some("redis://u:s3cret@[::1"),
    )
    .err();
    match bad_redis {
        Some(e @ StartError::SharedTier(_)) => assert!(!e.to_string().contains("s3cret"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut c = config();
    c.l1.max_entries = 0;
    let bad_config = build_engine(c, "http://127.0.0.1:1", None).err();
    match bad_config {
        Some(e @ StartError::Config(_)) => assert!(e.to_string().contains("l1.max_entries"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A lease left by a request whose client went away is released by its instance at the
/// next purge sync, so another instance sharing Redis fetches at once instead of waiting
/// out `l2.lease_ms` (20 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_does_not_wait_out_a_lease_whose_client_left() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.l2.lease_ms = 20_000;
    c.limits.coalesce_wait_ms = 20_000;
    let a = Cache::start(c.clone(), &origin, Some(&redis)).await;
    let b = Cache::start(c, &origin, Some(&redis)).await;
    let path = url("/left", &[("cc", "max-age=60"), ("delay_ms", "1000")]);
    let leaving = {
        let addr = a.addr;
        let path = path.clone();
        tokio::spawn(async move { send(addr, "GET", &path, &[], Bytes::new()).await })
    };
    eventually("the first fetch to reach the origin", WAIT, async || {
        (origin.count(&path) == 1).then_some(())
    })
    .await;
    let mut con = redis.conn().await;
    assert_eq!(
        leases(&mut con).await.len(),
        1,
        "instance a holds the lease"
    );
    leaving.abort();
    let _ = leaving.await;
    eventually("the abandoned lease to be released", WAIT, async || {
        leases(&mut con).await.is_empty().then_some(())
    })
    .await;
    let r = b.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(origin.count(&path), 2, "instance b fetched it itself");
}
