#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! The colo tier in the engine, with a real `redis-server` as the shared tier and a real
//! HTTP origin on loopback. The colo cache itself is the Workers Cache API, which only runs
//! under workerd (tests/worker.rs covers it there); here it is an in-memory map shared by
//! several engines, each standing for one isolate of the same data centre.
//!
//! Run with `cargo test --features "server resp" --test colo`.

mod support;
use support::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgecache::engine::{
    Body, ColoCache, Engine, EngineConfig, EngineState, Host, Request, TierError,
};
use edgecache::headers::Headers;
use edgecache::native::runtime::TokioRuntime;
use edgecache::native::{body::ProxyBody, origin::HyperOrigin};
use edgecache::shared_tier::redis_rs::RedisRsTier;
// Tokio's clock: the colo map expires entries in real time, as the Cache API does.
use tokio::time::Instant;

/// A stored value and when it expires.
type Stored = (Vec<u8>, Instant);
/// The TTL and tags a value was put with.
type PutWith = (u64, Vec<String>);

/// One data centre's cache: bytes by key with an expiry, shared by the engines of a test.
#[derive(Clone, Default)]
struct MemoryColo {
    entries: Arc<Mutex<HashMap<String, Stored>>>,
    /// The TTL and tags of each `put`, by key.
    puts: Arc<Mutex<HashMap<String, PutWith>>>,
    /// With a purge API: the request bodies it was sent.
    api: Option<Arc<Mutex<Vec<String>>>>,
}

impl MemoryColo {
    /// A colo tier whose purges reach every data centre, recording what it is sent.
    fn with_api() -> Self {
        MemoryColo {
            api: Some(Arc::default()),
            ..MemoryColo::default()
        }
    }

    fn api_calls(&self) -> Vec<String> {
        self.api.as_ref().unwrap().lock().unwrap().clone()
    }

    fn put_of(&self, key: &str) -> PutWith {
        self.puts.lock().unwrap()[key].clone()
    }

    fn keys(&self) -> Vec<String> {
        self.entries.lock().unwrap().keys().cloned().collect()
    }

    fn overwrite_all(&self, value: &[u8]) {
        for (v, _) in self.entries.lock().unwrap().values_mut() {
            *v = value.to_vec();
        }
    }
}

impl ColoCache for MemoryColo {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        let entries = self.entries.lock().unwrap();
        Ok(entries
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(v, _)| v.clone()))
    }
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        _tags: &[String],
    ) -> Result<(), TierError> {
        let until = Instant::now() + Duration::from_millis(ttl_ms);
        self.puts
            .lock()
            .unwrap()
            .insert(key.to_string(), (ttl_ms, _tags.to_vec()));
        self.entries
            .lock()
            .unwrap()
            .insert(key.to_string(), (value.to_vec(), until));
        Ok(())
    }
    fn purges_everywhere(&self) -> bool {
        self.api.is_some()
    }
    async fn purge_everywhere(&self, body: &str) -> Result<(), TierError> {
        self.api
            .as_ref()
            .unwrap()
            .lock()
            .unwrap()
            .push(body.to_string());
        Ok(())
    }
}

struct ColoHost;
impl Host for ColoHost {
    type Body = ProxyBody;
    type Origin = HyperOrigin;
    type SharedTier = RedisRsTier;
    type Runtime = TokioRuntime;
    type Colo = MemoryColo;
    type Lock = Mutex<EngineState>;
}

/// One isolate: its own L1 and purge position, the shared Redis and colo cache.
fn isolate(origin: &Origin, redis: &RedisServer, colo: &MemoryColo) -> Engine<ColoHost> {
    let mut config = EngineConfig::default();
    config.colo.enabled = true;
    config.l2.purge_poll_ms = 50;
    config.admin.token = Some(TOKEN.to_string());
    let store = RedisRsTier::new(&redis.url(), Duration::from_secs(1)).unwrap();
    Engine::new(
        config,
        HyperOrigin::new(&origin.url()).unwrap(),
        Some(store),
        TokioRuntime,
    )
    .unwrap()
    .with_colo(Some(colo.clone()))
}

/// One isolate without the shared tier: L1 and the colo tier only (the Worker's default).
fn isolate_without_redis(origin: &Origin, colo: &MemoryColo) -> Engine<ColoHost> {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.to_string());
    Engine::new(
        config,
        HyperOrigin::new(&origin.url()).unwrap(),
        None,
        TokioRuntime,
    )
    .unwrap()
    .with_colo(Some(colo.clone()))
}

struct Answer {
    status: u16,
    cache_status: String,
    body: Vec<u8>,
}

/// Sends a request through `engine` and runs its background job to completion, as a
/// Worker's `ctx.wait_until` would after the response.
async fn call(engine: &Engine<ColoHost>, method: &str, path: &str, auth: bool) -> Answer {
    call_with(engine, method, path, auth, &[]).await
}

async fn call_with(
    engine: &Engine<ColoHost>,
    method: &str,
    path: &str,
    auth: bool,
    fields: &[(&str, &str)],
) -> Answer {
    let mut headers = Headers::new();
    for (name, value) in fields {
        headers.append(name, *value);
    }
    if auth {
        headers.append("authorization", format!("Bearer {TOKEN}"));
    }
    let request = Request {
        client: None,
        method: method.to_string(),
        scheme: "http".to_string(),
        target: format!("http://{HOST}{path}"),
        headers,
        body: None,
    };
    let handled = bounded("engine.handle", WAIT, engine.handle(request)).await;
    let fields = handled.response.fields();
    let (body, reader) = match handled.response.body {
        Body::Empty | Body::Stream(_) => (Vec::new(), None),
        Body::Filling(reader) => (Vec::new(), Some(reader)),
        Body::Bytes(b) => (b, None),
        Body::Cached(stored) => (stored.body.to_vec(), None),
        Body::Slice(stored, range) => (stored.body[range].to_vec(), None),
    };
    // A body read as its job produces it (a fill, an object in slices): read it alongside.
    let read = async {
        let mut body = body;
        if let Some(mut reader) = reader {
            while let Some(part) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                body.extend_from_slice(part.expect("the body completes").as_ref());
            }
        }
        body
    };
    let job = async {
        if let Some(job) = handled.job {
            engine.run_job(job).await;
        }
    };
    let ((), body) = bounded("engine.run_job", WAIT, async { tokio::join!(job, read) }).await;
    Answer {
        status: handled.response.status,
        cache_status: fields.get_str("cache-status").unwrap_or("").to_string(),
        body,
    }
}

async fn get(engine: &Engine<ColoHost>, path: &str) -> Answer {
    call(engine, "GET", path, false).await
}

async fn purge(engine: &Engine<ColoHost>, query: &str) -> serde_json::Value {
    let answer = call(engine, "POST", &format!("/_edgecache/purge?{query}"), true).await;
    assert_eq!(answer.status, 200, "purge {query}");
    serde_json::from_slice(&answer.body).unwrap()
}

/// A miss at one isolate fills the colo tier; another isolate of the same data centre
/// (empty L1) is answered from it, without Redis or the origin, and says so in
/// `Cache-Status` (RFC 9211: the colo entry, then L1 storing what it missed).
#[tokio::test]
async fn a_second_isolate_is_answered_from_the_colo_tier() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url("/colo/hit", &[("cc", "max-age=60")]);

    let a = isolate(&origin, &redis, &colo);
    let miss = get(&a, &path).await;
    assert_eq!(miss.status, 200);
    assert!(
        miss.cache_status
            .contains("edgecache-colo; fwd=uri-miss; stored"),
        "{}",
        miss.cache_status
    );
    assert_eq!(colo.keys().len(), 1, "{:?}", colo.keys());
    assert!(colo.keys()[0].starts_with("ec:v1:m"), "{:?}", colo.keys());

    // Take the object out of Redis: only the colo tier can answer now.
    let mut con = redis.conn().await;
    let object = await_object(&mut con, "/colo/hit").await;
    let _: () = redis::cmd("DEL")
        .arg(&object)
        .query_async(&mut con)
        .await
        .unwrap();

    let b = isolate(&origin, &redis, &colo);
    let hit = get(&b, &path).await;
    assert_eq!((hit.status, hit.body.clone()), (200, miss.body.clone()));
    assert!(
        hit.cache_status.starts_with("edgecache-colo; hit; ttl="),
        "{}",
        hit.cache_status
    );
    assert!(
        hit.cache_status
            .ends_with("edgecache-l1; fwd=uri-miss; stored"),
        "{}",
        hit.cache_status
    );
    assert_eq!(origin.count(&path), 1);
    assert_eq!(b.snapshot().engine.colo_hits, 1);
    let again = get(&b, &path).await;
    assert!(
        again.cache_status.starts_with("edgecache-l1; hit"),
        "{}",
        again.cache_status
    );
}

/// An object found in Redis by an isolate whose colo tier lacks it is written there too.
#[tokio::test]
async fn an_l2_hit_fills_the_colo_tier() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let path = url("/colo/l2", &[("cc", "max-age=60")]);
    let a = isolate(&origin, &redis, &MemoryColo::default());
    get(&a, &path).await;

    let other_colo = MemoryColo::default();
    let b = isolate(&origin, &redis, &other_colo);
    let from_l2 = get(&b, &path).await;
    assert!(
        from_l2.cache_status.starts_with("edgecache-l2; hit; ttl="),
        "{}",
        from_l2.cache_status
    );
    assert!(
        from_l2
            .cache_status
            .contains("edgecache-colo; fwd=uri-miss; stored, edgecache-l1"),
        "{}",
        from_l2.cache_status
    );
    assert_eq!(other_colo.keys().len(), 1);
    let c = isolate(&origin, &redis, &other_colo);
    assert!(get(&c, &path)
        .await
        .cache_status
        .starts_with("edgecache-colo; hit"));
    assert_eq!(origin.count(&path), 1);
}

/// A purge made at any isolate (of any data centre) keeps the colo copies it covers from
/// being served anywhere, though the colo cache still holds them: by URL, by tag and all.
#[tokio::test]
async fn purges_elsewhere_make_colo_copies_misses() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    for n in 0..3 {
        let path = url(
            &format!("/colo/p{n}"),
            &[("cc", "max-age=60"), ("tag", &format!("t{n}"))],
        );
        let query = match n {
            0 => format!("url={}", enc(&format!("http://{HOST}{path}"))),
            1 => "tag=t1".to_string(),
            _ => "all=1".to_string(),
        };
        let writer = isolate(&origin, &redis, &colo);
        get(&writer, &path).await;
        assert_eq!(origin.count(&path), 1);
        // Another data centre purges (its own colo cache; ours keeps the copy).
        let elsewhere = isolate(&origin, &redis, &MemoryColo::default());
        purge(&elsewhere, &query).await;
        // A reader that has applied the purge must not use the copy.
        let reader = isolate(&origin, &redis, &colo);
        let answer = get(&reader, &path).await;
        assert!(
            !answer.cache_status.contains("edgecache-colo; hit"),
            "{query}: {}",
            answer.cache_status
        );
        assert_eq!(origin.count(&path), 2, "{query}: fetched again");
        // What it fetched after the purge is usable by the next isolate.
        let next = isolate(&origin, &redis, &colo);
        let hit = get(&next, &path).await;
        assert!(
            hit.cache_status.starts_with("edgecache-colo; hit"),
            "{query}: {}",
            hit.cache_status
        );
        assert_eq!(origin.count(&path), 2);
    }
}

/// A purge of something else leaves colo copies usable: the check is per key and tag.
#[tokio::test]
async fn unrelated_purges_leave_colo_copies_usable() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url("/colo/kept", &[("cc", "max-age=60"), ("tag", "keep")]);
    get(&isolate(&origin, &redis, &colo), &path).await;
    let elsewhere = isolate(&origin, &redis, &MemoryColo::default());
    purge(&elsewhere, "tag=other").await;
    purge(&elsewhere, "url=http://edge.test/colo/other").await;
    let reader = isolate(&origin, &redis, &colo);
    let hit = get(&reader, &path).await;
    assert!(
        hit.cache_status.starts_with("edgecache-colo; hit"),
        "{}",
        hit.cache_status
    );
    assert_eq!(origin.count(&path), 1);
}

/// A soft purge makes colo copies stale, not gone: served under stale-while-revalidate
/// (RFC 5861 §3) while the background job refetches.
#[tokio::test]
async fn a_soft_purge_makes_colo_copies_stale() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url(
        "/colo/soft",
        &[
            ("cc", "max-age=60, stale-while-revalidate=60"),
            ("tag", "soft"),
        ],
    );
    get(&isolate(&origin, &redis, &colo), &path).await;
    let elsewhere = isolate(&origin, &redis, &MemoryColo::default());
    purge(&elsewhere, "tag=soft&soft=1").await;
    let reader = isolate(&origin, &redis, &colo);
    let stale = get(&reader, &path).await;
    assert_eq!(stale.status, 200);
    assert!(
        stale.cache_status.starts_with("edgecache-colo; hit; ttl=")
            && stale.cache_status.contains("stale-while-revalidate"),
        "{}",
        stale.cache_status
    );
    // `call` ran the background revalidation.
    assert_eq!(origin.count(&path), 2);
}

/// An isolate that purges while Redis is down cannot tell the others, and the colo copies
/// stay in the colo cache: it stops reading the colo tier rather than serve them.
#[tokio::test]
async fn a_purge_that_could_not_be_published_turns_the_colo_tier_off_there() {
    let mut redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url("/colo/down", &[("cc", "max-age=60"), ("tag", "down")]);
    let a = isolate(&origin, &redis, &colo);
    get(&a, &path).await;
    redis.kill();
    purge(&a, "tag=down").await;
    let answer = get(&a, &path).await;
    assert!(
        !answer.cache_status.contains("colo; hit"),
        "{}",
        answer.cache_status
    );
    assert_eq!(answer.status, 200);
    assert_eq!(origin.count(&path), 2);
}

/// A colo value that is not an edgecache entry (corrupt, foreign, truncated) is a counted
/// miss, never served.
#[tokio::test]
async fn a_corrupt_colo_value_is_a_counted_miss() {
    let redis = RedisServer::start().await;
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url("/colo/corrupt", &[("cc", "max-age=60")]);
    get(&isolate(&origin, &redis, &colo), &path).await;
    let mut con = redis.conn().await;
    let object = await_object(&mut con, "/colo/corrupt").await;
    let _: () = redis::cmd("DEL")
        .arg(&object)
        .query_async(&mut con)
        .await
        .unwrap();
    for junk in [
        &b"ECC\x01\0\0\0\0\0\0\0\0garbage"[..],
        b"",
        b"<html>not ours</html>",
    ] {
        colo.overwrite_all(junk);
        let reader = isolate(&origin, &redis, &colo);
        let answer = get(&reader, &path).await;
        assert_eq!(answer.status, 200);
        assert!(
            !answer.cache_status.contains("colo; hit"),
            "{}",
            answer.cache_status
        );
        assert_eq!(reader.snapshot().engine.colo_corrupt, 1);
    }
    // An entry in a format this version does not know (written by a newer one, beside it
    // during a deploy): a miss, not counted as corrupt.
    let mut newer = b"ECC\x01\0\0\0\0\0\0\0\0".to_vec();
    newer.extend_from_slice(&edgecache::entry::MAGIC);
    newer.extend_from_slice(&[200, 0, 0, 0]);
    colo.overwrite_all(&newer);
    let reader = isolate(&origin, &redis, &colo);
    let answer = get(&reader, &path).await;
    assert!(
        !answer.cache_status.contains("colo; hit"),
        "{}",
        answer.cache_status
    );
    assert_eq!(reader.snapshot().engine.colo_corrupt, 0);
}

/// Without Redis or the purge API (the default on a Worker): the colo tier is on, its
/// entries are kept at most `colo.max_ttl_secs` (60 s) whatever the response allows, a
/// second isolate is answered from it, and a purge makes the purging isolate stop using
/// what it covers at once, its answer saying the other copies expire within the cap.
#[tokio::test]
async fn without_redis_the_colo_tier_is_capped_and_purges_are_local_plus_expiry() {
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let path = url("/colo/expiry", &[("cc", "max-age=3600"), ("tag", "t1")]);

    let a = isolate_without_redis(&origin, &colo);
    assert_eq!(a.snapshot().colo, "local+expiry");
    assert_eq!(a.snapshot().colo_max_ttl_secs, Some(60));
    assert!(a
        .snapshot()
        .to_prometheus()
        .contains("edgecache_colo_info{scope=\"instance\",mode=\"local+expiry\"} 1\n"));
    let miss = get(&a, &path).await;
    assert!(
        miss.cache_status
            .contains("edgecache-colo; fwd=uri-miss; stored"),
        "{}",
        miss.cache_status
    );
    let keys = colo.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("ec:v1:colo:"), "{keys:?}");
    let (ttl_ms, tags) = colo.put_of(&keys[0]);
    assert_eq!(ttl_ms, 60_000, "capped at colo.max_ttl_secs");
    assert_eq!(tags, ["ec:v1:colo", "t1"]);

    let b = isolate_without_redis(&origin, &colo);
    let hit = get(&b, &path).await;
    assert!(
        hit.cache_status.starts_with("edgecache-colo; hit"),
        "{}",
        hit.cache_status
    );
    assert_eq!(origin.count(&path), 1);

    let before = edgecache::engine::Runtime::now(a.runtime()).as_millis();
    let answer = purge(&a, "tag=t1").await;
    assert_eq!(answer["colo"]["mode"], "local+expiry", "{answer}");
    assert_eq!(answer["colo"]["api"], serde_json::Value::Null, "{answer}");
    let by = answer["colo"]["others_expire_by_ms"].as_u64().unwrap();
    assert!((before + 60_000..before + 62_000).contains(&by), "{answer}");
    assert_eq!(
        answer["reached"],
        serde_json::json!(["l1 (this isolate)", "colo (this isolate)"]),
        "{answer}"
    );
    // The purging isolate no longer uses the colo copy, which is still stored.
    assert_eq!(colo.keys().len(), 1);
    let after = get(&a, &path).await;
    assert!(
        !after.cache_status.contains("colo; hit"),
        "{}",
        after.cache_status
    );
    assert_eq!(origin.count(&path), 2);
}

/// With the purge API and no Redis: entries are not capped, and a purge sends exactly the
/// requests the engine decides: by URL, the colo URL of the primary key; by tag, the tag;
/// purge-all, the tag every colo entry carries.
#[tokio::test]
async fn with_the_purge_api_purges_name_the_colo_urls_and_tags() {
    let origin = Origin::start().await;
    let colo = MemoryColo::with_api();
    let path = url("/colo/api", &[("cc", "max-age=3600"), ("tag", "t2")]);

    let a = isolate_without_redis(&origin, &colo);
    assert_eq!(a.snapshot().colo, "purge-api");
    assert_eq!(a.snapshot().colo_max_ttl_secs, None);
    get(&a, &path).await;
    let keys = colo.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(colo.put_of(&keys[0]).0 > 3_000_000, "not capped");

    let answer = purge(&a, &format!("url={}", enc(&path))).await;
    assert_eq!(answer["colo"]["mode"], "purge-api", "{answer}");
    assert_eq!(
        answer["colo"]["api"],
        serde_json::json!({"ok": true, "requests": 1}),
        "{answer}"
    );
    let expected_url =
        edgecache::engine::colo::colo_url(&format!("http://{HOST}"), "/_edgecache", &keys[0]);
    assert_eq!(
        colo.api_calls(),
        [format!("{{\"files\":[{expected_url:?}]}}")]
    );
    purge(&a, "tag=t2").await;
    purge(&a, "all=1").await;
    assert_eq!(
        colo.api_calls()[1..],
        [r#"{"tags":["t2"]}"#, r#"{"tags":["ec:v1:colo"]}"#]
    );
}

/// Without the shared tier, a `Vary` variant written before its primary entry is never
/// used: a purge by URL through the purge API removes the primary entry in every data
/// centre (the variants are not named), and the variants from before the purge must not
/// come back behind the primary a later fill writes.
#[tokio::test]
async fn without_redis_variants_older_than_their_primary_are_not_used() {
    let origin = Origin::start().await;
    let colo = MemoryColo::with_api();
    let path = url(
        "/colo/vary",
        &[
            ("cc", "max-age=3600"),
            ("vary", "Accept-Language"),
            ("echo", "accept-language"),
        ],
    );
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];

    let a = isolate_without_redis(&origin, &colo);
    let first = call_with(&a, "GET", &path, false, &en).await;
    assert_eq!(first.body, b"accept-language: en\n");
    // What Cloudflare's purge by URL does to the primary entry (named in the request), in
    // every data centre; the `en` variant stays.
    let primary = colo.keys().into_iter().min_by_key(String::len).unwrap();
    assert_eq!(colo.keys().len(), 2, "{:?}", colo.keys());
    colo.entries.lock().unwrap().remove(&primary);
    // Another isolate fills the primary again, for `fr`, a few milliseconds later.
    // (Stamps are milliseconds: wait for the clock to pass the first write's.)
    let written = edgecache::engine::Runtime::now(a.runtime()).as_millis();
    eventually("the clock to move on", WAIT, async || {
        (edgecache::engine::Runtime::now(a.runtime()).as_millis() > written + 1).then_some(())
    })
    .await;
    let b = isolate_without_redis(&origin, &colo);
    let fr_answer = call_with(&b, "GET", &path, false, &fr).await;
    assert_eq!(fr_answer.body, b"accept-language: fr\n");
    assert_eq!(origin.count(&path), 2);

    // A third isolate asking for `en`: the old `en` variant is older than the primary now
    // stored, so it is not served; the origin is asked again.
    let c = isolate_without_redis(&origin, &colo);
    let again = call_with(&c, "GET", &path, false, &en).await;
    assert_eq!(again.body, b"accept-language: en\n");
    assert!(
        !again.cache_status.contains("colo; hit"),
        "{}",
        again.cache_status
    );
    assert_eq!(origin.count(&path), 3);
}

/// A large object, cached in slices (RFC 9110 §14 ranges fetched from the origin), is
/// shared through the colo tier without Redis: its head and every slice are written
/// there, and another isolate of the data centre serves it whole, and any range of it,
/// without the origin.
#[tokio::test]
async fn objects_in_slices_are_shared_through_the_colo_tier() {
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let size: usize = (256 << 10) + 5;
    let path = sliced_object("/colo/sliced", size);
    let a = sliced_isolate(&origin, &colo);
    assert!(get(&a, &path).await.body == pattern(size));
    let fetched = origin.count(&path);
    assert_eq!(a.snapshot().engine.sliced_objects, 1);
    // The head and the five 64 KiB slices.
    assert_eq!(colo.keys().len(), 6, "{:?}", colo.keys());

    let b = sliced_isolate(&origin, &colo);
    let whole = get(&b, &path).await;
    assert!(whole.body == pattern(size), "whole, from the colo tier");
    let range = call_with(&b, "GET", &path, false, &[("range", "bytes=70000-140000")]).await;
    assert_eq!(range.status, 206);
    assert!(range.body == pattern(size)[70_000..=140_000]);
    let c = sliced_isolate(&origin, &colo);
    let range = call_with(&c, "GET", &path, false, &[("range", "bytes=-10")]).await;
    assert!(range.body == pattern(size)[size - 10..]);
    assert_eq!(
        origin.count(&path),
        fetched,
        "no origin request from b or c"
    );
}

/// RFC 9111 §5.2.1.7: the colo tier is part of the cache. Without Redis, `only-if-cached`
/// at an isolate whose L1 has none of an object's slices is answered from the colo tier,
/// byte for byte, without the origin; with one slice gone from it, a response that needs
/// that slice is a `504`, and one that does not is answered.
#[tokio::test]
async fn only_if_cached_objects_in_slices_are_answered_from_the_colo_tier() {
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let size: usize = (256 << 10) + 5;
    let path = sliced_object("/colo/only-if-cached", size);
    let a = sliced_isolate(&origin, &colo);
    assert!(get(&a, &path).await.body == pattern(size));
    let asked = (origin.count(&path), origin.ranges(&path).len());
    let only = [("cache-control", "only-if-cached")];
    let b = sliced_isolate(&origin, &colo);
    let whole = call_with(&b, "GET", &path, false, &only).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == pattern(size), "whole, from the colo tier");
    assert!(
        whole.cache_status.contains("fwd=partial"),
        "{}",
        whole.cache_status
    );
    // Slice 1 (bytes 65536-131071) leaves the colo tier.
    let second: Vec<String> = colo
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("slice 65536-131072"))
        .collect();
    assert_eq!(second.len(), 1, "{:?}", colo.keys());
    colo.entries.lock().unwrap().remove(&second[0]);
    let c = sliced_isolate(&origin, &colo);
    let lacking = call_with(&c, "GET", &path, false, &only).await;
    assert_eq!(lacking.status, 504);
    let range = [
        ("cache-control", "only-if-cached"),
        ("range", "bytes=131072-140000"),
    ];
    let held = call_with(&c, "GET", &path, false, &range).await;
    assert_eq!(held.status, 206);
    assert!(held.body == pattern(size)[131_072..=140_000]);
    assert_eq!(
        (origin.count(&path), origin.ranges(&path).len()),
        asked,
        "no origin request for only-if-cached"
    );
}

/// Without Redis, after a purge by URL through the purge API (which names only the head),
/// the slices of the object it replaced are not used: they were written before the new head
/// was received, so they are fetched again.
#[tokio::test]
async fn without_redis_slices_older_than_their_head_are_not_used() {
    let origin = Origin::start().await;
    let colo = MemoryColo::with_api();
    let size: usize = (128 << 10) + 3;
    let path = sliced_object("/colo/sliced-purged", size);
    let a = sliced_isolate(&origin, &colo);
    assert!(get(&a, &path).await.body == pattern(size));
    let head = colo.keys().into_iter().min_by_key(String::len).unwrap();
    assert_eq!(colo.keys().len(), 4, "{:?}", colo.keys());
    // What Cloudflare's purge by URL does: the head goes, in every data centre.
    colo.entries.lock().unwrap().remove(&head);
    let written = edgecache::engine::Runtime::now(a.runtime()).as_millis();
    eventually("the clock to move on", WAIT, async || {
        (edgecache::engine::Runtime::now(a.runtime()).as_millis() > written + 1).then_some(())
    })
    .await;
    // A range in the second slice (one in the first would be read from the origin's whole
    // response along with the new head).
    let before = origin.ranges(&path).len();
    let b = sliced_isolate(&origin, &colo);
    let asked = [("range", "bytes=70000-70009")];
    let range = call_with(&b, "GET", &path, false, &asked).await;
    assert!(range.body == pattern(size)[70_000..70_010]);
    assert_eq!(
        origin.ranges(&path).len(),
        before + 1,
        "the second slice was fetched again, not taken from the colo tier: {:?}",
        origin.ranges(&path)
    );
    let refetched = origin.count(&path);
    // The same range at a third isolate: the slice b wrote is newer than the head.
    let c = sliced_isolate(&origin, &colo);
    let range = call_with(&c, "GET", &path, false, &asked).await;
    assert!(range.body == pattern(size)[70_000..70_010]);
    assert_eq!(origin.count(&path), refetched, "b's slices are used");
}

/// An object of `size` bytes at `path` that can be cached in slices: a strong validator and
/// ranges.
fn sliced_object(path: &str, size: usize) -> String {
    url(
        path,
        &[
            ("cc", "max-age=300"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    )
}

/// An isolate without Redis whose objects above 64 KiB are cached in 64 KiB slices.
fn sliced_isolate(origin: &Origin, colo: &MemoryColo) -> Engine<ColoHost> {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.to_string());
    config.limits.max_object_bytes = 64 * 1024;
    config.limits.slice_bytes = 64 * 1024;
    Engine::new(
        config,
        HyperOrigin::new(&origin.url()).unwrap(),
        None,
        TokioRuntime,
    )
    .unwrap()
    .with_colo(Some(colo.clone()))
}

/// Review finding 5: without Redis, a colo slice is used only if stamped at or after its
/// head's representation was received. A `304` revalidation moves the head's
/// `response_time` (`freshen`), not that time (`edgecache-sliced-at`): the slices of the
/// same representation stay usable after every revalidation, rather than being fetched
/// again by every isolate.
#[tokio::test]
async fn without_redis_a_revalidated_head_keeps_its_colo_slices() {
    let origin = Origin::start().await;
    let colo = MemoryColo::default();
    let size: usize = (128 << 10) + 3;
    let path = url(
        "/colo/sliced-revalidated",
        &[
            ("cc", "max-age=1"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
            ("revalidate", "1"),
        ],
    );
    let a = sliced_isolate(&origin, &colo);
    assert!(get(&a, &path).await.body == pattern(size));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Stale: `a` revalidates its head (a `304`) and serves the slices it holds.
    assert!(get(&a, &path).await.body == pattern(size));
    assert_eq!(origin.revalidations(), 1, "the head was revalidated");
    let before = origin.ranges(&path);
    let b = sliced_isolate(&origin, &colo);
    let whole = get(&b, &path).await;
    assert!(whole.body == pattern(size));
    assert_eq!(
        origin.ranges(&path),
        before,
        "b took the slices (same validator) from the colo tier"
    );
}
