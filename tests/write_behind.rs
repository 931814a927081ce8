#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Write-behind (`edgecache::engine::write_behind`) with real parts on loopback: a real
//! `redis-server` holding the queue, a real HTTP origin, and the native host's engine
//! (`server::build_engine`: hyper origin client, Redis client, tokio runtime). The tests
//! call the engine directly so they decide when a flush runs; `tests/native.rs` covers the
//! same through `edgecache serve` over HTTP.
//!
//! Run with `cargo test --features server --test write_behind`.

mod support;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgecache::engine::{Body, EngineConfig, Job, Request};
use edgecache::headers::Headers;
use edgecache::native::body::{boxed, full};
use edgecache::native::server::{self, NativeEngine};

const QUEUE: &str = "ec:v1:wb:queue";
const DEAD: &str = "ec:v1:wb:dead";
/// How long a failed delivery waits before it is retried, in these tests.
const RETRY_MS: u64 = 1_200;

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.into());
    config.write_behind.routes = vec!["/orders/".into()];
    config.write_behind.max_body_bytes = 1_000;
    config.write_behind.retry_after_ms = RETRY_MS;
    config.limits.origin_timeout_ms = 1_000;
    config
}

fn engine(config: EngineConfig, origin: &Origin, redis: &RedisServer) -> Arc<NativeEngine> {
    server::build_engine(config, &origin.url(), Some(&redis.url())).expect("build_engine")
}

struct Answer {
    status: u16,
    headers: Headers,
    body: String,
}

impl Answer {
    fn key(&self) -> String {
        self.headers
            .get_str("idempotency-key")
            .unwrap_or_else(|| panic!("no Idempotency-Key: {:?}", self.headers))
            .to_string()
    }
}

/// `job` without its write-behind flushes (the tests decide when to flush).
fn without_flush<B>(job: Job<B>) -> Option<Job<B>> {
    match job {
        Job::FlushWriteBehind => None,
        Job::Batch(jobs) => Some(Job::Batch(
            jobs.into_iter().filter_map(without_flush).collect(),
        )),
        other => Some(other),
    }
}

/// One request through the engine, and its background work but flushes.
async fn call(
    engine: &NativeEngine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: edgecache::native::body::ProxyBody,
) -> Answer {
    let request = Request {
        client: None,
        method: method.to_string(),
        scheme: "http".to_string(),
        target: format!("http://{HOST}{path}"),
        headers: Headers::from_pairs(headers.iter().copied()),
        body: Some(body),
    };
    let handled = bounded("engine.handle", WAIT, engine.handle(request)).await;
    if let Some(job) = handled.job.and_then(without_flush) {
        bounded("engine.run_job", WAIT, engine.run_job(job)).await;
    }
    let mut response = handled.response;
    let headers = response.take_fields();
    let body = match response.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) => b,
        Body::Cached(stored) => stored.body.to_vec(),
        Body::Slice(stored, range) => stored.body[range].to_vec(),
        Body::Stream(stream) => {
            use http_body_util::BodyExt;
            stream.collect().await.expect("body").to_bytes().to_vec()
        }
        Body::Filling(reader) => {
            use http_body_util::BodyExt;
            let body = edgecache::native::body::FillBody::new(reader);
            body.collect().await.expect("body").to_bytes().to_vec()
        }
    };
    Answer {
        status: response.status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn post(engine: &NativeEngine, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    call(engine, "POST", path, headers, full(body.to_string())).await
}

async fn get(engine: &NativeEngine, path: &str) -> Answer {
    call(engine, "GET", path, &[], full(Bytes::new())).await
}

async fn flush(engine: &NativeEngine) {
    bounded("flush", WAIT, engine.flush_write_behind()).await;
}

async fn xlen(redis: &RedisServer, stream: &str) -> u64 {
    let mut con = redis.conn().await;
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut con)
        .await
        .expect("XLEN")
}

/// Entries delivered and not acknowledged.
async fn pending(redis: &RedisServer) -> u64 {
    let mut con = redis.conn().await;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(QUEUE)
        .arg("flush")
        .query_async(&mut con)
        .await
        .expect("XPENDING");
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            other => panic!("XPENDING summary: {other:?}"),
        },
        other => panic!("XPENDING summary: {other:?}"),
    }
}

/// Flushes until the origin has received `n` writes (a retry waits for `RETRY_MS`).
async fn flush_until_received(engine: &NativeEngine, origin: &Origin, n: usize, what: &str) {
    eventually(what, Duration::from_millis(RETRY_MS * 3), async || {
        flush(engine).await;
        (origin.writes().len() >= n).then_some(())
    })
    .await;
}

/// A POST is answered 202 with an Idempotency-Key and is queued, not sent; the flush sends
/// it once, with that key (the client's when it gave one), its body and content type; a
/// second flush sends nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_then_delivered_once_with_its_idempotency_key() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);

    let mine = "\"client-key-1\"";
    let a = post(
        &engine,
        "/orders/1",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", mine),
        ],
        "{\"n\":1}",
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.key(), mine, "the client's key is kept");
    assert!(
        a.headers
            .get_str("cache-status")
            .is_some_and(|v| v.contains("write-behind")),
        "{:?}",
        a.headers
    );
    let b = post(
        &engine,
        "/orders/2",
        &[("idempotency-key", "bad\tkey")],
        "two",
    )
    .await;
    assert_eq!(b.status, 202);
    let generated = b.key();
    assert!(
        generated.len() == 38 && generated.starts_with('"') && generated != "bad\tkey",
        "a fresh key replaces an unusable one: {generated}"
    );
    let c = post(&engine, "/orders/3", &[], "three").await;
    assert_ne!(c.key(), generated, "generated keys differ");

    assert!(
        origin.writes().is_empty(),
        "nothing is sent before the flush"
    );
    assert_eq!(xlen(&redis, QUEUE).await, 3, "three entries queued");

    flush(&engine).await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 3, "{writes:?}");
    let sent: Vec<(&str, &str, Option<&str>)> = writes
        .iter()
        .map(|w| {
            (
                w.path_and_query.as_str(),
                std::str::from_utf8(&w.body).unwrap(),
                w.idempotency_key.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("/orders/1", "{\"n\":1}", Some(mine)),
            ("/orders/2", "two", Some(generated.as_str())),
            ("/orders/3", "three", Some(c.key().as_str())),
        ],
        "in order, each with its key"
    );
    assert_eq!(writes[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        xlen(&redis, QUEUE).await,
        0,
        "delivered entries leave the stream"
    );
    assert_eq!(pending(&redis).await, 0);

    flush(&engine).await;
    assert_eq!(origin.writes().len(), 3, "sent once");
    let stats = engine.snapshot().engine;
    assert_eq!(
        (stats.write_behind_appended, stats.write_behind_flushed),
        (3, 3)
    );
    let prometheus = engine.snapshot().to_prometheus();
    assert!(prometheus.contains("edgecache_write_behind_flushed_total{scope=\"instance\"} 3"));
    assert!(engine
        .snapshot()
        .to_json()
        .contains("\"write_behind_appended\":3"));
}

/// RFC 9111 §4.4: the append invalidates the target at once, and the delivery again (a
/// reader may have cached the old state in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_get_of_the_written_url_is_invalidated() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    let path = url("/orders/7", &[("cc", "max-age=300")]);

    assert_eq!(get(&engine, &path).await.body, body_for(&path, 1));
    assert_eq!(get(&engine, &path).await.body, body_for(&path, 1), "a hit");
    assert_eq!(origin.count(&path), 1);

    assert_eq!(post(&engine, &path, &[], "update").await.status, 202);
    assert_eq!(
        get(&engine, &path).await.body,
        body_for(&path, 2),
        "invalidated"
    );
    assert_eq!(
        get(&engine, &path).await.body,
        body_for(&path, 2),
        "a hit again"
    );

    flush(&engine).await;
    assert_eq!(origin.writes().len(), 1);
    assert_eq!(
        get(&engine, &path).await.body,
        body_for(&path, 3),
        "invalidated again once the origin has the write"
    );
}

/// With the origin down, the entry stays pending (counted as a retry); once the origin is
/// back it is delivered, after the retry time and not before, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_keeps_the_entry_pending_until_it_is_back() {
    let redis = RedisServer::start().await;
    let mut origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    origin.stop().await;

    let a = post(&engine, "/orders/1", &[], "first").await;
    assert_eq!(a.status, 202);
    flush(&engine).await;
    assert_eq!(pending(&redis).await, 1, "delivered, not acknowledged");
    assert_eq!(engine.snapshot().engine.write_behind_retried, 1);
    let b = post(&engine, "/orders/2", &[], "second").await;
    assert_eq!(b.status, 202);

    origin.restart().await;
    flush(&engine).await;
    assert!(
        origin.writes().is_empty(),
        "nothing is sent before the failed entry's retry time, not even newer entries"
    );
    flush_until_received(&engine, &origin, 2, "the retry").await;
    let writes = origin.writes();
    let bodies: Vec<&[u8]> = writes.iter().map(|w| w.body.as_slice()).collect();
    assert_eq!(
        bodies,
        vec![&b"first"[..], &b"second"[..]],
        "in order, once"
    );
    assert_eq!(writes[0].idempotency_key, Some(a.key()));
    assert_eq!(xlen(&redis, QUEUE).await, 0);
    assert_eq!(pending(&redis).await, 0);
}

/// An instance that queued requests and died (its delivery had failed, and a later entry
/// was never read) leaves them in Redis: a new instance's flush at start delivers both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_delivers_what_a_crashed_one_left() {
    let redis = RedisServer::start().await;
    let mut origin = Origin::start().await;
    let first = engine(config(), &origin, &redis);
    origin.stop().await;
    let a = post(&first, "/orders/1", &[], "claimed").await;
    flush(&first).await;
    let b = post(&first, "/orders/2", &[], "never read").await;
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(pending(&redis).await, 1);
    drop(first);

    origin.restart().await;
    let second = engine(config(), &origin, &redis);
    server::spawn_write_behind_flush(second.clone());
    eventually("the new instance's deliveries", WAIT, async || {
        (origin.writes().len() >= 2).then_some(())
    })
    .await;
    let writes = origin.writes();
    let keys: Vec<Option<String>> = writes.iter().map(|w| w.idempotency_key.clone()).collect();
    assert_eq!(keys, vec![Some(a.key()), Some(b.key())]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.writes().len(), 2, "once each");
    assert_eq!(second.snapshot().engine.write_behind_flushed, 2);
}

/// A body over `write_behind.max_body_bytes` is refused with 413, whether its length is
/// declared or streamed: nothing is queued and nothing reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_and_nothing_queued() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);

    let r = post(&engine, "/orders/big", &[], &"x".repeat(1_001)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..3)
        .map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![b'y'; 400]))))
        .collect();
    let streamed = boxed(http_body_util::StreamBody::new(futures::stream::iter(
        chunks,
    )));
    let r = call(&engine, "PUT", "/orders/big", &[], streamed).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = post(&engine, "/orders/fits", &[], &"x".repeat(1_000)).await;
    assert_eq!(r.status, 202, "exactly the limit fits");

    assert_eq!(xlen(&redis, QUEUE).await, 1);
    flush(&engine).await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path_and_query, "/orders/fits");
}

/// With Redis down the request is written through: the origin has it when the client gets
/// the origin's answer, carrying the key it would have been queued with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_write_through() {
    let mut redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    redis.kill();

    let r = post(&engine, "/orders/1", &[("idempotency-key", "k-1")], "now").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "POST ok 3", "the origin's answer");
    let writes = origin.writes();
    assert_eq!(writes.len(), 1, "reached the origin at once");
    assert_eq!(writes[0].body, b"now");
    assert_eq!(writes[0].idempotency_key.as_deref(), Some("k-1"));
    let r = post(&engine, "/orders/2", &[], "again").await;
    assert_eq!(r.status, 200);
    assert!(
        origin.writes()[1].idempotency_key.is_some(),
        "a generated key goes along too"
    );
    assert_eq!(engine.snapshot().engine.write_behind_appended, 0);
}

/// A full queue (`max_queue_entries`) is not grown: the next request is written through at
/// once (the origin gets it now and answers the client), counted; once deliveries make
/// room, requests are queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_writes_through_instead_of_growing() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.write_behind.max_queue_entries = 2;
    let engine = engine(c, &origin, &redis);

    assert_eq!(post(&engine, "/orders/q1", &[], "one").await.status, 202);
    assert_eq!(post(&engine, "/orders/q2", &[], "two").await.status, 202);
    let third = post(&engine, "/orders/q3", &[], "three").await;
    assert_eq!(third.status, 200, "the origin's answer: {}", third.body);
    assert_eq!(xlen(&redis, QUEUE).await, 2, "not queued");
    let writes = origin.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path_and_query, "/orders/q3");
    assert_eq!(std::str::from_utf8(&writes[0].body).unwrap(), "three");
    assert!(
        writes[0].idempotency_key.is_some(),
        "written through with its key"
    );
    assert_eq!(engine.snapshot().engine.write_behind_queue_full, 1);

    flush(&engine).await;
    assert_eq!(origin.writes().len(), 3, "the queued two delivered");
    assert_eq!(post(&engine, "/orders/q4", &[], "four").await.status, 202);
    assert_eq!(xlen(&redis, QUEUE).await, 1);
    assert!(engine
        .snapshot()
        .to_prometheus()
        .contains("edgecache_write_behind_queue_full_total{scope=\"instance\"} 1"));
}

/// At start the shared tier is checked for write-behind: a real Redis 7 passes, and one
/// that evicts any key (`allkeys-lru`) is warned about, since it could drop requests
/// already answered 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_tier_is_checked_at_start() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    assert_eq!(engine.check_shared_tier().await, Ok(Vec::new()));
    let mut con = redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut con)
        .await
        .unwrap();
    let warnings = engine.check_shared_tier().await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("allkeys-lru"), "{warnings:?}");
}

/// The dead-letter stream is bounded (`write_behind.max_dead_letters`): a client whose
/// writes the origin refuses cannot fill Redis through it; the oldest go, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_stream_keeps_only_the_newest() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.write_behind.max_dead_letters = 2;
    let engine = engine(c, &origin, &redis);
    origin.force_write_status(Some(422));
    for n in 0..5 {
        assert_eq!(
            post(&engine, &format!("/orders/bad{n}"), &[], "bad")
                .await
                .status,
            202
        );
        flush(&engine).await;
    }
    assert_eq!(origin.writes().len(), 5, "each refused once");
    assert_eq!(xlen(&redis, DEAD).await, 2, "the newest two kept");
    assert_eq!(xlen(&redis, QUEUE).await, 0, "nothing stuck in the queue");
    let stats = engine.snapshot().engine;
    assert_eq!(stats.write_behind_dead_lettered, 5);
    assert_eq!(stats.write_behind_dead_letters_trimmed, 3);
}

/// Retry times an entry being sent could outlast, and route prefixes not in normal form,
/// are refused at start, naming the field.
/// (Routes without Redis are refused by the configuration check, `ServeConfig::validate`:
/// src/native/config.rs `write_behind_routes_need_redis`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_times_shorter_than_a_send_are_refused_at_start() {
    let origin = Origin::start().await;
    let mut c = config();
    c.write_behind.retry_after_ms = c.limits.origin_timeout_ms;
    let error = server::build_engine(c, &origin.url(), Some("redis://127.0.0.1:1"))
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("`write_behind.retry_after_ms`"), "{error}");
    let mut c = config();
    c.write_behind.routes = vec!["orders/".into()];
    let error = server::build_engine(c, &origin.url(), Some("redis://127.0.0.1:1"))
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("`write_behind.routes[0]`"), "{error}");
}

/// An entry the origin keeps failing (503) is tried `max_attempts` times and then moved to
/// the dead-letter stream; one the origin refuses (422) goes there at once. Neither stays
/// in the queue, and both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_after_max_attempts_or_a_refusal() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let mut c = config();
    c.write_behind.max_attempts = 2;
    let engine = engine(c, &origin, &redis);

    origin.force_write_status(Some(422));
    let refused = post(&engine, "/orders/refused", &[], "bad").await;
    flush(&engine).await;
    assert_eq!(origin.writes().len(), 1);
    assert_eq!(
        xlen(&redis, DEAD).await,
        1,
        "refused: dead-lettered at once"
    );

    origin.force_write_status(Some(503));
    post(&engine, "/orders/failing", &[], "again and again").await;
    flush_until_received(&engine, &origin, 3, "two attempts").await;
    assert_eq!(
        pending(&redis).await,
        1,
        "still queued after the second failure"
    );
    eventually(
        "the dead letter",
        Duration::from_millis(RETRY_MS * 3),
        async || {
            flush(&engine).await;
            (xlen(&redis, DEAD).await == 2).then_some(())
        },
    )
    .await;
    assert_eq!(origin.writes().len(), 3, "no third attempt");
    assert_eq!(xlen(&redis, QUEUE).await, 0);
    assert_eq!(pending(&redis).await, 0);
    let stats = engine.snapshot().engine;
    assert_eq!(
        (
            stats.write_behind_dead_lettered,
            stats.write_behind_retried,
            stats.write_behind_flushed
        ),
        (2, 2, 0)
    );

    let mut con = redis.conn().await;
    let dead: redis::Value = redis::cmd("XRANGE")
        .arg(DEAD)
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut text = String::new();
    strings(&dead, &mut text);
    for needle in [
        "the origin refused it with 422",
        "no success in 2 attempts",
        "/orders/failing",
        refused.key().as_str(),
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

/// Every string in a reply, one per line.
fn strings(value: &redis::Value, out: &mut String) {
    match value {
        redis::Value::BulkString(b) => {
            out.push_str(&String::from_utf8_lossy(b));
            out.push('\n');
        }
        redis::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// An entry the cache cannot read (written by something else, binary field names and all)
/// is moved to the dead-letter stream instead of blocking the queue; the request queued
/// after it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_entry_is_dead_lettered_not_stuck() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    let mut con = redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(QUEUE)
        .arg("*")
        .arg(&b"\xff\x00name"[..])
        .arg("value")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(post(&engine, "/orders/after", &[], "ok").await.status, 202);

    flush(&engine).await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path_and_query, "/orders/after");
    assert_eq!(xlen(&redis, DEAD).await, 1);
    assert_eq!(xlen(&redis, QUEUE).await, 0);
    assert_eq!(engine.snapshot().engine.write_behind_dead_lettered, 1);
}

/// The operator hears of a dead-lettered request once, by method and path: never its
/// credentials, body or query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_logged_once_without_secrets() {
    use edgecache::engine::{Engine, EngineState, Host, LogLevel, Runtime};
    use edgecache::native::origin::HyperOrigin;
    use edgecache::native::runtime::TokioRuntime;
    use edgecache::shared_tier::redis_rs::RedisRsTier;
    use std::sync::Mutex;

    /// The native runtime, keeping what the engine logs.
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Vec<String>>>);
    impl Runtime for Recording {
        fn now(&self) -> edgecache::time::Timestamp {
            TokioRuntime.now()
        }
        fn sleep(&self, ms: u64) -> impl std::future::Future<Output = ()> {
            TokioRuntime.sleep(ms)
        }
        fn random_u64(&self) -> u64 {
            TokioRuntime.random_u64()
        }
        fn log(&self, _level: LogLevel, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }
    struct RecordingHost;
    impl Host for RecordingHost {
        type Body = edgecache::native::body::ProxyBody;
        type Origin = HyperOrigin;
        type SharedTier = RedisRsTier;
        type Runtime = Recording;
        type Colo = edgecache::engine::NoColo;
        type Lock = Mutex<EngineState>;
    }

    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let logs = Recording::default();
    let engine: Engine<RecordingHost> = Engine::new(
        config(),
        HyperOrigin::new(&origin.url()).unwrap(),
        Some(RedisRsTier::new(&redis.url(), Duration::from_secs(1)).unwrap()),
        logs.clone(),
    )
    .unwrap();
    origin.force_write_status(Some(403));
    let request = Request {
        client: None,
        method: "POST".into(),
        scheme: "http".into(),
        target: format!("http://{HOST}/orders/secret?token=query-secret"),
        headers: Headers::from_pairs([
            ("authorization", "Bearer header-secret"),
            ("cookie", "session=cookie-secret"),
        ]),
        body: Some(full("body-secret")),
    };
    let handled = bounded("handle", WAIT, engine.handle(request)).await;
    assert_eq!(handled.response.status, 202);
    bounded("flush", WAIT, engine.flush_write_behind()).await;
    bounded("flush", WAIT, engine.flush_write_behind()).await;

    assert_eq!(origin.writes().len(), 1);
    let logged = logs.0.lock().unwrap().clone();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].contains("POST /orders/secret") && logged[0].contains("403"),
        "{}",
        logged[0]
    );
    for secret in [
        "query-secret",
        "header-secret",
        "cookie-secret",
        "body-secret",
    ] {
        assert!(!logged[0].contains(secret), "{}", logged[0]);
    }
}

/// An operator deleting a pending entry (`XDEL`) does not block the queue: the claim finds
/// nothing, the pending list forgets it, and the entries after it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_entry_deleted_by_hand_does_not_block_the_queue() {
    let redis = RedisServer::start().await;
    let mut origin = Origin::start().await;
    let engine = engine(config(), &origin, &redis);
    origin.stop().await;
    post(&engine, "/orders/deleted", &[], "gone").await;
    flush(&engine).await;
    post(&engine, "/orders/kept", &[], "kept").await;
    let mut con = redis.conn().await;
    let range: redis::Value = redis::cmd("XRANGE")
        .arg(QUEUE)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut ids = String::new();
    strings(&range, &mut ids);
    let first = ids.lines().next().expect("an entry").to_string();
    let _: u64 = redis::cmd("XDEL")
        .arg(QUEUE)
        .arg(&first)
        .query_async(&mut con)
        .await
        .unwrap();

    origin.restart().await;
    flush_until_received(&engine, &origin, 1, "the entry after the deleted one").await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].body, b"kept");
    assert_eq!(pending(&redis).await, 0);
}
