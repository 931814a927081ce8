#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! End-to-end tests of the Worker (`src/worker/`) under `wrangler dev`, i.e. the real
//! Workers runtime (workerd), with a real origin and a real `redis-server` on loopback.
//! The tests of what Workers share through Redis run over both transports ([`Via`]): RESP
//! over `connect()` sockets, and Redis over HTTP over `fetch` through the test REST server
//! (`support::rest`) in front of the same kind of `redis-server`.
//!
//! The Worker is built once (`scripts/build-worker.sh`, worker-build with the `worker`
//! feature); each test then starts its own `wrangler dev` instances from a generated config
//! naming that build, with the origin, Redis and admin token of the test as `[vars]`. Every
//! process is started in its own process group and killed by that group's id on drop.
//!
//! These tests are skipped (they print why and pass) only when `EDGECACHE_SKIP_WORKER=1`;
//! otherwise a missing tool is a failure, not a skip.

mod support;
use support::purge_api::{PurgeApi, PurgeCall};
use support::rest::{RestServer, REST_TOKEN};
use support::*;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's `compatibility_date` (wrangler.toml), so the tests run what ships.
fn compatibility_date() -> String {
    let toml = std::fs::read_to_string(root().join("wrangler.toml")).expect("wrangler.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("compatibility_date = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("compatibility_date in wrangler.toml")
}

fn skipped() -> bool {
    if std::env::var("EDGECACHE_SKIP_WORKER").as_deref() == Ok("1") {
        eprintln!("EDGECACHE_SKIP_WORKER=1: Worker end-to-end test skipped");
        return true;
    }
    false
}

/// Builds the Worker once per test binary; panics with the build log if it fails.
fn build_worker() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if std::env::var("EDGECACHE_WORKER_PREBUILT").as_deref() == Ok("1")
            && root().join("build/index.js").exists()
        {
            return Ok(());
        }
        let out = Command::new("bash")
            .arg(root().join("scripts/build-worker.sh"))
            .current_dir(root())
            .output()
            .map_err(|e| format!("cannot run scripts/build-worker.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-worker.sh failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The shared-tier settings a Worker is started with.
#[derive(Clone, Copy, Debug, Default)]
struct Redis<'a> {
    /// `EDGECACHE_REDIS_URL`.
    url: Option<&'a str>,
    /// `EDGECACHE_REDIS_TOKEN`.
    token: Option<&'a str>,
}

/// How the Workers of a test reach Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// RESP over `connect()` sockets (`redis://`).
    Sockets,
    /// Redis over HTTP over `fetch` (`http://` to the test REST server on loopback, with its
    /// token), the REST server speaking RESP to the Redis behind it.
    Rest,
}

/// A real `redis-server`, and the REST server in front of it when the Workers reach it over
/// REST. Derefs to the `redis-server`, which tests read, stop and restart directly.
struct SharedRedis {
    server: RedisServer,
    rest: Option<RestServer>,
}

impl SharedRedis {
    async fn start(via: Via) -> SharedRedis {
        let server = RedisServer::start().await;
        let rest = match via {
            Via::Sockets => None,
            Via::Rest => Some(RestServer::start(server.port).await),
        };
        SharedRedis { server, rest }
    }

    /// `EDGECACHE_REDIS_URL` and `EDGECACHE_REDIS_TOKEN` for a Worker.
    fn worker_settings(&self) -> (String, Option<&'static str>) {
        match &self.rest {
            None => (self.server.url(), None),
            Some(rest) => (rest.url(), Some(REST_TOKEN)),
        }
    }

    /// Over REST, asserts the Workers went through the REST server (at least `pipelines`
    /// pipelines and `transactions` transactions): the Worker can reach Redis no other way,
    /// so the test's assertions on Redis held over REST.
    fn assert_rest_used(&self, pipelines: usize, transactions: usize) {
        if let Some(rest) = &self.rest {
            let (p, t) = (rest.requests("/pipeline"), rest.requests("/multi-exec"));
            assert!(
                p >= pipelines && t >= transactions,
                "REST requests: {p} pipelines, {t} transactions"
            );
        }
    }
}

impl std::ops::Deref for SharedRedis {
    type Target = RedisServer;
    fn deref(&self) -> &RedisServer {
        &self.server
    }
}

impl std::ops::DerefMut for SharedRedis {
    fn deref_mut(&mut self) -> &mut RedisServer {
        &mut self.server
    }
}

/// Two tests of one body: `$sockets` over sockets, `$rest` over Redis over HTTP.
macro_rules! over_sockets_and_rest {
    ($body:ident: $sockets:ident, $rest:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sockets() {
            if skipped() {
                return;
            }
            $body(Via::Sockets).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rest() {
            if skipped() {
                return;
            }
            $body(Via::Rest).await
        }
    };
}

/// wrangler dev instances start one at a time (each runs workerd; starting several at once
/// on two cores only makes every one of them slower).
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One `wrangler dev` (and the workerd under it).
struct Worker {
    addr: std::net::SocketAddr,
    child: Option<Child>,
    dir: PathBuf,
}

impl Worker {
    /// Starts a Worker in front of `origin`, sharing `redis` if given (over the transport
    /// it was started for), with the engine configuration `cache` (JSON, the
    /// `EDGECACHE_CACHE` var).
    async fn start(origin: &Origin, redis: Option<&SharedRedis>, cache: &str) -> Worker {
        Worker::start_with_state(origin, redis, cache, None).await
    }

    /// Like [`Worker::start`], keeping the runtime's local state (the Cache API's data) in
    /// `state`, so Workers started one after another share a data centre's cache.
    async fn start_with_state(
        origin: &Origin,
        redis: Option<&SharedRedis>,
        cache: &str,
        state: Option<&std::path::Path>,
    ) -> Worker {
        let settings = redis.map(SharedRedis::worker_settings);
        let redis_url = settings.as_ref().map(|(url, _)| url.as_str());
        let token = settings.as_ref().and_then(|(_, token)| *token);
        Worker::start_at(origin, redis_url, token, cache, state).await
    }

    /// Like [`Worker::start`], with `EDGECACHE_REDIS_URL` exactly `redis_url` (e.g. carrying
    /// a wrong password) and `EDGECACHE_REDIS_TOKEN` `token`.
    async fn start_with_redis_url(
        origin: &Origin,
        redis_url: &str,
        token: Option<&str>,
        cache: &str,
    ) -> Worker {
        Worker::start_at(origin, Some(redis_url), token, cache, None).await
    }

    /// Like [`Worker::start_with_state`] without Redis, with the extra `[vars]` `extra`
    /// (e.g. the purge API's settings).
    async fn start_with_vars(
        origin: &Origin,
        cache: &str,
        state: Option<&std::path::Path>,
        extra: &[(&str, &str)],
    ) -> Worker {
        Worker::start_at_with(origin, None, None, cache, state, extra).await
    }

    async fn start_at(
        origin: &Origin,
        redis_url: Option<&str>,
        token: Option<&str>,
        cache: &str,
        state: Option<&std::path::Path>,
    ) -> Worker {
        Worker::start_at_with(origin, redis_url, token, cache, state, &[]).await
    }

    async fn start_at_with(
        origin: &Origin,
        redis_url: Option<&str>,
        token: Option<&str>,
        cache: &str,
        state: Option<&std::path::Path>,
        extra: &[(&str, &str)],
    ) -> Worker {
        build_worker();
        let mut errors = Vec::new();
        for _ in 0..3 {
            let redis = Redis {
                url: redis_url,
                token,
            };
            match Worker::start_once(&origin.url(), redis, cache, state, true, extra).await {
                Ok(w) => return w,
                Err(e) => errors.push(e),
            }
        }
        panic!("wrangler dev did not start: {errors:#?}");
    }

    /// One `wrangler dev` start; `local_origin` sets `EDGECACHE_ALLOW_PRIVATE_ORIGIN`, as
    /// `.dev.vars` does for local development (the test origin is on loopback).
    async fn start_once(
        origin: &str,
        redis: Redis<'_>,
        cache: &str,
        state: Option<&std::path::Path>,
        local_origin: bool,
        extra: &[(&str, &str)],
    ) -> Result<Worker, String> {
        let _one_at_a_time = STARTING.lock().await;
        let port = free_port();
        let inspector = free_port();
        let dir = std::env::temp_dir().join(format!("edgecache-worker-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let main = root().join("build/index.js");
        let mut vars = format!(
            "EDGECACHE_ORIGIN = {origin:?}\nEDGECACHE_ADMIN_TOKEN = {TOKEN:?}\nEDGECACHE_CACHE = {cache:?}\n"
        );
        if let Some(url) = redis.url {
            vars.push_str(&format!("EDGECACHE_REDIS_URL = {url:?}\n"));
        }
        if let Some(token) = redis.token {
            vars.push_str(&format!("EDGECACHE_REDIS_TOKEN = {token:?}\n"));
        }
        if local_origin {
            vars.push_str("EDGECACHE_ALLOW_PRIVATE_ORIGIN = \"1\"\n");
        }
        for (name, value) in extra {
            vars.push_str(&format!("{name} = {value:?}\n"));
        }
        let config = format!(
            "name = \"edgecache-test\"\nmain = {:?}\ncompatibility_date = {:?}\n\n[vars]\n{vars}",
            main.display().to_string(),
            compatibility_date()
        );
        let config_path = dir.join("wrangler.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("wrangler.log")).map_err(|e| e.to_string())?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("bash")
                .arg(root().join("scripts/wrangler.sh"))
                .args(["dev", "--config"])
                .arg(&config_path)
                .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(["--inspector-port", &inspector.to_string()])
                .arg("--persist-to")
                .arg(state.map_or_else(|| dir.join("state"), PathBuf::from))
                .args([
                    "--log-level",
                    "warn",
                    "--show-interactive-dev-session=false",
                    // GET /__scheduled runs the cron handler (write-behind retries).
                    "--test-scheduled",
                ])
                .current_dir(&dir)
                .env("WRANGLER_SEND_METRICS", "false")
                .env("CI", "true")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot run scripts/wrangler.sh: {e}"))?
        };
        let mut worker = Worker {
            addr: ([127, 0, 0, 1], port).into(),
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = send(
                worker.addr,
                "GET",
                "/_edgecache/stats",
                &[("authorization", &format!("Bearer {TOKEN}"))],
                Bytes::new(),
            )
            .await
            {
                if r.status == 200 {
                    return Ok(worker);
                }
                return Err(format!(
                    "stats answered {} {}: {}",
                    r.status,
                    r.text(),
                    worker.log()
                ));
            }
            if let Some(status) = worker
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("wrangler dev exited ({status}): {}", worker.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready within 90 s: {}", worker.log()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wrangler.log")).unwrap_or_default()
    }
}

impl Frontend for Worker {
    fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: wrangler (node) and the workerd it started.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The engine configuration of the tests: purges polled every 100 ms.
const CACHE: &str = r#"{"l2":{"purge_poll_ms":100}}"#;

/// [`CACHE`], the Workers reporting to the fleet's statistics every second.
const CACHE_REPORTING: &str = r#"{"l2":{"purge_poll_ms":100},"stats":{"report_secs":1}}"#;

// ---------------------------------------------------------------------------------------

over_sockets_and_rest!(l2_hits_and_purges_across_workers:
    miss_then_hit_then_l2_hit_on_a_second_worker,
    miss_then_hit_then_l2_hit_on_a_second_worker_over_rest);

/// A miss is fetched and stored (Cache-Status says so); the repeat is an L1 hit; a second
/// Worker (its own workerd, so its own isolate and L1) answers from Redis without going to
/// the origin; a purge at the first Worker reaches the second one's L1. Then the stats of
/// either Worker report the fleet: both isolates' counts added up (issue 14 point 3).
async fn l2_hits_and_purges_across_workers(via: Via) {
    let redis = SharedRedis::start(via).await;
    let origin = Origin::start().await;
    let a = Worker::start(&origin, Some(&redis), CACHE_REPORTING).await;
    let path = url("/e2e/hit", &[("cc", "max-age=60")]);
    let body = body_for(&path, 1);

    let miss = a.get(&path).await;
    assert_eq!((miss.status, miss.text()), (200, body.clone()));
    assert!(
        miss.cache_status().contains("fwd=uri-miss") && miss.cache_status().contains("stored"),
        "{}",
        miss.cache_status()
    );
    let hit = a.get(&path).await;
    assert_eq!(hit.text(), body);
    assert!(
        hit.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.count(&path), 1);

    let mut con = redis.conn().await;
    await_object(&mut con, "/e2e/hit").await;
    let b = Worker::start(&origin, Some(&redis), CACHE_REPORTING).await;
    let from_l2 = b.get(&path).await;
    assert_eq!(from_l2.text(), body);
    assert!(
        from_l2.cache_status().starts_with("edgecache-l2; hit"),
        "{}",
        from_l2.cache_status()
    );
    assert_eq!(
        origin.count(&path),
        1,
        "the second Worker did not ask the origin"
    );
    let again = b.get(&path).await;
    assert!(
        again.cache_status().starts_with("edgecache-l1; hit"),
        "backfilled: {}",
        again.cache_status()
    );

    let purged = a.purge(&format!("url={}", enc(&path))).await;
    assert_eq!(purged["purged"], 1, "{purged}");
    let refetched = eventually(
        "the purge at the first Worker to reach the second",
        WAIT,
        async || {
            let r = b.get(&path).await;
            (r.text() != body).then_some(r)
        },
    )
    .await;
    assert_eq!(
        refetched.text(),
        body_for(&path, 2),
        "{}",
        refetched.cache_status()
    );
    assert_eq!(origin.count(&path), 2);
    let stats = assert_fleet_totals_are_the_sum(&[&a, &b], Duration::from_secs(20)).await;
    assert_eq!(
        stats["fleet"]["engine"]["l2_hits"], 1,
        "b's, in the fleet: {stats}"
    );
    assert_eq!(stats["engine"]["l2_hits"], 0, "a's own: {stats}");
    redis.assert_rest_used(4, 1);
}

/// RFC 5861 §3 at the edge: a stale response within stale-while-revalidate is served at
/// once, and the refresh runs in `ctx.wait_until` after the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_then_refreshes_in_the_background() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let w = Worker::start(&origin, None, CACHE).await;
    assert_stale_while_revalidate(&w, &origin, "/e2e").await;
}

/// RFC 5861 §4 at the edge: origin errors (503) and an origin that is gone are answered
/// with the stale response, 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_when_the_origin_fails_or_is_gone() {
    if skipped() {
        return;
    }
    let mut origin = Origin::start().await;
    let w = Worker::start(&origin, None, CACHE).await;
    assert_stale_if_error(&w, &mut origin, "/e2e").await;
}

/// One request view at the edge: route rules, the admin API and warming see the path the
/// cache key sees however a client spells it, and repeated query parameters keep their
/// order, and client-sent forwarding fields never reach the origin (the same assertions as
/// `tests/hostile.rs` against `edgecache serve`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_queries_are_seen_as_the_key_sees_them() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let cache = format!(r#"{{"l2":{{"purge_poll_ms":100}},"routes":{VIEW_ROUTES_JSON}}}"#);
    let w = Worker::start(&origin, None, &cache).await;
    assert_paths_are_seen_as_the_key_sees_them(&w, &origin).await;
    assert_repeated_parameters_stay_apart(&w, &origin).await;
    assert_forwarding_fields_are_the_caches(&w, &origin).await;
}

/// Range requests (RFC 9110 §14) on the Worker: the same assertions as tests/ranges.rs
/// against `edgecache serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_from_the_complete_response() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let cache = r#"{"l2":{"purge_poll_ms":100},"limits":{"max_object_bytes":65536}}"#;
    let w = Worker::start(&origin, None, cache).await;
    assert_ranges_are_served_from_the_complete_response(&w, &origin).await;
}

/// RFC 9111 §3.3 on the Worker: the same assertions as tests/ranges.rs against
/// `edgecache serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_responses_answer_the_ranges_within_them() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let w = Worker::start(&origin, None, "{}").await;
    assert_partial_responses_answer_the_ranges_within_them(&w, &origin).await;
}

/// Concurrent misses for one cold key inside one isolate make one origin fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_make_one_origin_fetch() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let w = Worker::start(&origin, None, CACHE).await;
    let path = url("/e2e/storm", &[("cc", "max-age=60"), ("delay_ms", "500")]);
    let results = storm(&[&w], &path, 100).await;
    assert_eq!(results.len(), 100);
    assert_all_ok_same_body(&results, &body_for(&path, 1));
    assert_one_origin_fetch(&origin, &path, &results, &[&w]).await;
    assert!(w.stat("coalesced").await >= 1);
}

over_sockets_and_rest!(purges_need_the_token:
    purge_by_url_and_tag_needs_the_token,
    purge_by_url_and_tag_needs_the_token_over_rest);

/// The admin API refuses a missing or wrong token and changes nothing; with the token a
/// URL purge and a tag purge each make the next request go to the origin.
async fn purges_need_the_token(via: Via) {
    let redis = SharedRedis::start(via).await;
    let origin = Origin::start().await;
    let w = Worker::start(&origin, Some(&redis), CACHE).await;
    let by_url = url("/e2e/purge-url", &[("cc", "max-age=600")]);
    let by_tag = url(
        "/e2e/purge-tag",
        &[("cc", "max-age=600"), ("tag", "product-7 shelf")],
    );
    for p in [&by_url, &by_tag] {
        w.get(p).await;
        assert!(w.get(p).await.cache_status().contains("hit"));
    }

    for token in [None, Some("wrong-token-0123456789")] {
        let r = w.admin("POST", "/_edgecache/purge?all=1", token).await;
        assert_eq!(r.status, 401, "{token:?}: {}", r.text());
        let r = w.admin("GET", "/_edgecache/stats", token).await;
        assert_eq!(r.status, 401);
    }
    assert!(
        w.get(&by_url).await.cache_status().contains("hit"),
        "an unauthorised purge changed nothing"
    );
    assert_eq!(origin.count(&by_url), 1);

    let url_only = by_url.clone();
    let purged = w.purge(&format!("url={}", enc(&url_only))).await;
    assert_eq!(purged["purged"], 1, "{purged}");
    let r = w.get(&by_url).await;
    assert_eq!(
        r.text(),
        body_for(&by_url, 2),
        "refetched after the URL purge: {}",
        r.cache_status()
    );

    let purged = w.purge("tag=product-7").await;
    assert!(purged["purged"].as_u64().unwrap_or(0) >= 1, "{purged}");
    let r = w.get(&by_tag).await;
    assert_eq!(
        r.text(),
        body_for(&by_tag, 2),
        "refetched after the tag purge: {}",
        r.cache_status()
    );
    assert!(
        w.get(&by_url).await.cache_status().contains("hit"),
        "the tag purge left other keys alone"
    );
    // Over REST: the tag's key set is taken (SMEMBERS + DEL) in one /multi-exec.
    redis.assert_rest_used(4, 1);
}

/// Redis stopped mid-test: every request still succeeds (L1 and origin), the failures are
/// counted, and the Worker keeps serving after Redis comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test_fails_no_request() {
    if skipped() {
        return;
    }
    let mut redis = SharedRedis::start(Via::Sockets).await;
    let port = redis.port;
    let origin = Origin::start().await;
    let w = Worker::start(&origin, Some(&redis), CACHE).await;
    let mut failures = Vec::new();
    for i in 0..60 {
        if i == 20 {
            redis.kill();
        }
        let path = url(
            &format!("/e2e/redis-down/{}", i % 15),
            &[("cc", "max-age=60")],
        );
        match w.try_get(&path).await {
            Ok(r) if r.status == 200 && r.text().starts_with(&path) => {}
            Ok(r) => failures.push(format!("{} {:?}", r.status, r.text())),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        w.stat("l2_errors").await >= 1,
        "the Redis failures were counted"
    );
    let _back = RedisServer::start_on(port)
        .await
        .expect("redis back on its port");
    for i in 0..10 {
        let r = w
            .get(&url(
                &format!("/e2e/redis-back/{i}"),
                &[("cc", "max-age=60")],
            ))
            .await;
        assert_eq!(r.status, 200);
    }
}

over_sockets_and_rest!(one_origin_fetch_across_workers:
    concurrent_cold_requests_at_two_workers_sharing_redis_make_one_origin_fetch,
    concurrent_cold_requests_at_two_workers_sharing_redis_make_one_origin_fetch_over_rest);

/// Concurrent cold requests at two Workers (two workerd processes, so two isolates) sharing
/// Redis make one origin fetch: the Redis lease (`SET NX PX`) lets one isolate fetch while
/// the other waits for its result in Redis.
async fn one_origin_fetch_across_workers(via: Via) {
    let redis = SharedRedis::start(via).await;
    let origin = Origin::start().await;
    let a = Worker::start(&origin, Some(&redis), CACHE).await;
    let b = Worker::start(&origin, Some(&redis), CACHE).await;
    let path = url("/e2e/lease", &[("cc", "max-age=60"), ("delay_ms", "700")]);
    let results = storm(&[&a, &b], &path, 30).await;
    assert_all_ok_same_body(&results, &body_for(&path, 1));
    assert_one_origin_fetch(&origin, &path, &results, &[&a, &b]).await;
    redis.assert_rest_used(2, 0);
    if let Some(rest) = &redis.rest {
        // The holder releases its lease by compare-and-delete, a script (EVAL) over REST too.
        eventually("the lease released with EVAL", WAIT, async || {
            (rest.commands("EVAL") >= 1).then_some(())
        })
        .await;
    }
}

/// An origin's compressed body is stored and sent exactly as the origin sent it, as
/// natively (the runtime neither decodes it on the way in nor encodes it on the way out),
/// and the entry in Redis is the same bytes another host would read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_origin_body_is_kept_as_sent() {
    if skipped() {
        return;
    }
    let redis = SharedRedis::start(Via::Sockets).await;
    let origin = Origin::start().await;
    let w = Worker::start(&origin, Some(&redis), CACHE).await;
    let path = url("/e2e/gzip", &[("cc", "max-age=60"), ("encoding", "gzip")]);
    let compressed = gzipped(&body_for(&path, 1));
    for expect in ["fwd=uri-miss", "hit"] {
        let r = w.get(&path).await;
        assert!(r.cache_status().contains(expect), "{}", r.cache_status());
        assert_eq!(
            r.headers.get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            r.body.as_ref(),
            &compressed[..],
            "{expect}: the origin's bytes"
        );
    }
    let mut con = redis.conn().await;
    let key = await_object(&mut con, "/e2e/gzip").await;
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let stored = edgecache::entry::decode(&raw, &Default::default()).expect("a valid entry");
    assert_eq!(
        stored.body, compressed,
        "L2 holds the encoded body, as native writes it"
    );
}

/// Responses larger than `limits.max_object_bytes` stream through uncached, whole and
/// intact, whether the origin declares their length or sends them chunked (then the Worker
/// reads up to the limit and streams the rest behind what it read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_stream_through_uncached() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let w = Worker::start(&origin, None, r#"{"limits":{"max_object_bytes":65536}}"#).await;
    assert_oversized_stream_through_uncached(&w, &origin, "/e2e/big").await;
}

over_sockets_and_rest!(chunked_bodies_shared_with_native:
    chunked_bodies_are_shared_between_the_worker_and_native_instances,
    chunked_bodies_are_shared_between_the_worker_and_native_instances_over_rest);

/// Bodies above `l2.chunk_bytes` go to Redis as a head and chunks: written by the Worker and
/// read whole by `edgecache serve`, and the other way round; a missing chunk is a miss. Over
/// REST, the binary entries and chunks the Worker writes go through the bytes script, and
/// native redis-rs reads them byte for byte (and the Worker what redis-rs wrote).
async fn chunked_bodies_shared_with_native(via: Via) {
    let redis = SharedRedis::start(via).await;
    let origin = Origin::start().await;
    // `l2.timeout_ms` as wrangler.toml ships it (1 s), not the engine's 250 ms: a read of
    // the chunks is one 2 MiB MGET, whose JSON the test REST server (a debug build) takes
    // about 100 ms to write, several times that while the other tests run.
    let cache = r#"{"l2":{"purge_poll_ms":100,"timeout_ms":1000}}"#;
    let worker = Worker::start(&origin, Some(&redis), cache).await;
    let native =
        support::cache::Cache::start(support::cache::config(), &origin, Some(&redis)).await;
    assert_chunked_bodies_are_shared_through_redis(&worker, &native, &redis, &origin, "/e2e/w")
        .await;
    assert_chunked_bodies_are_shared_through_redis(&native, &worker, &redis, &origin, "/e2e/n")
        .await;
    redis.assert_rest_used(4, 0);
    if let Some(rest) = &redis.rest {
        assert!(
            rest.commands("EVAL") >= 4,
            "head and chunks through the bytes script"
        );
    }
}

/// Objects above `limits.max_object_bytes` are cached in slices fetched by range on the
/// Worker too, served whole or by range from them, and purged with their URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_cached_in_slices() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let cache = r#"{"limits":{"max_object_bytes":262144,"slice_bytes":65536}}"#;
    let w = Worker::start(&origin, None, cache).await;
    assert_large_objects_are_cached_in_slices(&w, &origin, "/e2e/l").await;
}

/// Streaming fills on the Worker (real workerd): a cold miss streams to concurrent clients
/// from one origin fetch, each with its first bytes before the origin sends the rest, and an
/// origin that aborts or stalls mid-body cuts the client off and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_stream_to_their_clients_and_failed_bodies_cut_them_off() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let cache = r#"{"limits":{"max_object_bytes":4194304,"between_bytes_timeout_ms":500}}"#;
    let w = Worker::start(&origin, None, cache).await;
    assert_a_cold_miss_streams_to_concurrent_clients(&w, &origin, "/e2e/s", 2 << 20, 8).await;
    assert_an_origin_aborting_mid_body_cuts_the_client_off(&w, &origin, "/e2e/a").await;
    assert_an_origin_stalling_mid_body_cuts_the_client_off(&w, &origin, "/e2e/t").await;
}

/// Write-through at the edge (RFC 9111 §4.4): a POST reaches the origin with its body,
/// and its success invalidates the stored response for that URL; HEAD is answered from the
/// cache without a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_passes_through_and_invalidates_head_is_served_from_cache() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let w = Worker::start(&origin, None, CACHE).await;
    let path = url("/e2e/item", &[("cc", "max-age=600")]);
    assert_eq!(w.get(&path).await.text(), body_for(&path, 1));
    let head = send(w.addr, "HEAD", &path, &[], Bytes::new())
        .await
        .expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "no body for HEAD");
    let length = body_for(&path, 1).len().to_string();
    assert_eq!(
        head.header("content-length"),
        Some(length.as_str()),
        "the GET's length (RFC 9110 §9.3.2)"
    );
    assert!(
        head.cache_status().contains("hit"),
        "{}",
        head.cache_status()
    );

    let posted = send(
        w.addr,
        "POST",
        &path,
        &[("content-type", "application/json")],
        Bytes::from_static(b"{\"qty\":3}"),
    )
    .await
    .expect("POST");
    assert_eq!(
        (posted.status, posted.text()),
        (200, "POST ok 9".to_string())
    );
    let writes = origin.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].body, b"{\"qty\":3}");
    assert_eq!(writes[0].content_type.as_deref(), Some("application/json"));
    let after = w.get(&path).await;
    assert_eq!(
        after.text(),
        body_for(&path, 2),
        "invalidated: {}",
        after.cache_status()
    );
}

/// After Redis comes back the Worker uses it again by itself (the breaker closes after its
/// cool-down): a new response is written to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_tier_is_used_again_after_redis_returns() {
    if skipped() {
        return;
    }
    let mut redis = SharedRedis::start(Via::Sockets).await;
    let port = redis.port;
    let origin = Origin::start().await;
    let cache = r#"{"l2":{"purge_poll_ms":100,"breaker_cooldown_ms":300,"breaker_failures":1}}"#;
    let w = Worker::start(&origin, Some(&redis), cache).await;
    redis.kill();
    for i in 0..5 {
        let r = w
            .get(&url(&format!("/e2e/down/{i}"), &[("cc", "max-age=60")]))
            .await;
        assert_eq!(r.status, 200);
    }
    assert!(w.stat("l2_errors").await >= 1);
    let back = RedisServer::start_on(port)
        .await
        .expect("redis back on its port");
    let mut con = back.conn().await;
    let key = written_again(&w, &mut con, "/e2e/back").await;
    assert!(key.contains("obj:"), "{key}");
    // The operator's log says when the tier started failing (a warning; the recovery is
    // logged at info level, which `--log-level warn` hides), never with the Redis URL.
    let log = w.log();
    assert!(log.contains("shared tier (Redis) failing"), "{log}");
    assert!(!log.contains(&back.url()), "{log}");
}

/// A wrong Redis password (the reviewer's case: an operator's typo in the secret): requests
/// are still served (L1 and the origin), and the operator's log says the shared tier is
/// failing and why (the server's WRONGPASS refusal of the AUTH handshake), never with the
/// password or the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redis_password_is_logged_without_the_password() {
    if skipped() {
        return;
    }
    let redis = SharedRedis::start(Via::Sockets).await;
    let mut con = redis.conn().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right-pass-123")
        .query_async(&mut con)
        .await
        .unwrap();
    let origin = Origin::start().await;
    let redis_url = format!("redis://:wrong-pass-456@127.0.0.1:{}/", redis.port);
    let w = Worker::start_with_redis_url(
        &origin,
        &redis_url,
        None,
        r#"{"l2":{"breaker_failures":1,"breaker_cooldown_ms":60000}}"#,
    )
    .await;
    let path = url("/e2e/wrong-pass", &[("cc", "max-age=60")]);
    let first = w.get(&path).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), body_for(&path, 1));
    assert!(w.stat("l2_errors").await >= 1);
    let log = eventually("the failure in the log", WAIT, async || {
        let log = w.log();
        log.contains("shared tier (Redis) failing").then_some(log)
    })
    .await;
    assert!(log.contains("WRONGPASS"), "{log}");
    assert!(!log.contains("wrong-pass-456"), "{log}");
    assert!(!log.contains(&redis_url), "{log}");
    // L1 still serves.
    assert!(w.get(&path).await.cache_status().contains("hit"));
}

/// Over REST, a wrong token (the operator's typo in `EDGECACHE_REDIS_TOKEN`): requests are
/// still served (L1 and the origin), and the log says the shared tier is failing and why
/// (the server's 401), never with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_rest_token_is_logged_without_the_token() {
    if skipped() {
        return;
    }
    let redis = SharedRedis::start(Via::Rest).await;
    let rest = redis.rest.as_ref().expect("a REST server");
    let origin = Origin::start().await;
    let w = Worker::start_with_redis_url(
        &origin,
        &rest.url(),
        Some("wrong-token-AX4567"),
        r#"{"l2":{"breaker_failures":1,"breaker_cooldown_ms":60000}}"#,
    )
    .await;
    let path = url("/e2e/wrong-token", &[("cc", "max-age=60")]);
    let first = w.get(&path).await;
    assert_eq!((first.status, first.text()), (200, body_for(&path, 1)));
    assert!(w.stat("l2_errors").await >= 1);
    assert!(rest.answered(401) >= 1, "the REST server refused the token");
    let log = eventually("the failure in the log", WAIT, async || {
        let log = w.log();
        log.contains("shared tier (Redis) failing").then_some(log)
    })
    .await;
    assert!(log.contains("401 Unauthorized"), "{log}");
    assert!(!log.contains("wrong-token-AX4567"), "{log}");
    assert!(
        w.get(&path).await.cache_status().contains("hit"),
        "L1 still serves"
    );
}

/// Over REST, a server that stops answering (it accepts requests and never replies) fails
/// no request: the engine gives up on each call after `l2.timeout_ms` (the fetch is
/// aborted), the breaker opens, and requests are served from L1 and the origin; once the
/// server answers again, responses are written to Redis again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_rest_server_fails_no_request() {
    if skipped() {
        return;
    }
    let redis = SharedRedis::start(Via::Rest).await;
    let rest = redis.rest.as_ref().expect("a REST server");
    let origin = Origin::start().await;
    let cache = r#"{"l2":{"purge_poll_ms":100,"timeout_ms":300,"breaker_failures":1,"breaker_cooldown_ms":300}}"#;
    let w = Worker::start(&origin, Some(&redis), cache).await;
    rest.stall(true);
    for i in 0..5 {
        let path = url(&format!("/e2e/stalled/{i}"), &[("cc", "max-age=60")]);
        let started = Instant::now();
        let r = w.get(&path).await;
        assert_eq!((r.status, r.text()), (200, body_for(&path, 1)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "served without waiting for Redis: {:?}",
            started.elapsed()
        );
    }
    assert!(w.stat("l2_errors").await >= 1);
    rest.stall(false);
    let mut con = redis.conn().await;
    written_again(&w, &mut con, "/e2e/unstalled").await;
}

/// A token with a `redis://` URL, or an `https://` URL without a token, is a configuration
/// error: every request is answered 500 naming `EDGECACHE_REDIS_TOKEN`, and nothing reaches
/// the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_url_and_token_that_do_not_go_together_are_refused() {
    if skipped() {
        return;
    }
    build_worker();
    let origin = Origin::start().await;
    for redis in [
        Redis {
            url: Some("redis://127.0.0.1:6379"),
            token: Some("a-token-for-rest-only"),
        },
        Redis {
            url: Some("https://eu1-example.upstash.io"),
            token: None,
        },
    ] {
        let refused = Worker::start_once(&origin.url(), redis, "{}", None, true, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{redis:?} is refused"));
        assert!(
            refused.contains("500 edgecache is misconfigured: EDGECACHE_REDIS_TOKEN"),
            "{redis:?}: {refused}"
        );
        assert!(!refused.contains("a-token-for-rest-only"), "{refused}");
    }
    assert_eq!(origin.total(), 0, "nothing reached the origin");
}

/// The colo tier (`colo.enabled`: the Cache API of workerd, between L1 and Redis). A
/// Worker's miss fills it; a new isolate (a Worker started on the same local state, with
/// the object gone from Redis) is answered from it without the origin; after a tag purge
/// made at another Worker, a new isolate does not serve the colo copy, though the Cache
/// API still holds it, and fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_colo_tier_answers_new_isolates_and_purges_reach_it() {
    if skipped() {
        return;
    }
    const COLO: &str = r#"{"l2":{"purge_poll_ms":100},"colo":{"enabled":true}}"#;
    let redis = SharedRedis::start(Via::Sockets).await;
    let origin = Origin::start().await;
    let state = std::env::temp_dir().join(format!("edgecache-colo-{}", free_port()));
    let _ = std::fs::remove_dir_all(&state);
    let path = url("/e2e/colo", &[("cc", "max-age=600"), ("tag", "colo-tag")]);

    let a = Worker::start_with_state(&origin, Some(&redis), COLO, Some(&state)).await;
    let miss = a.get(&path).await;
    assert_eq!(miss.text(), body_for(&path, 1));
    assert!(
        miss.cache_status()
            .contains("edgecache-colo; fwd=uri-miss; stored"),
        "{}",
        miss.cache_status()
    );
    eventually("the colo write", WAIT, async || {
        (a.stat("colo_stored").await >= 1).then_some(())
    })
    .await;
    drop(a);
    let mut con = redis.conn().await;
    let object = await_object(&mut con, "/e2e/colo").await;
    let _: () = redis::cmd("DEL")
        .arg(&object)
        .query_async(&mut con)
        .await
        .unwrap();

    let b = Worker::start_with_state(&origin, Some(&redis), COLO, Some(&state)).await;
    let hit = b.get(&path).await;
    assert_eq!(hit.text(), body_for(&path, 1));
    assert!(
        hit.cache_status().starts_with("edgecache-colo; hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.count(&path), 1, "answered without the origin");
    assert_eq!(b.stat("colo_hits").await, 1);
    drop(b);

    let elsewhere = Worker::start(&origin, Some(&redis), COLO).await;
    let purged = elsewhere.purge("tag=colo-tag").await;
    assert!(purged.get("purged").is_some(), "{purged}");
    drop(elsewhere);

    let c = Worker::start_with_state(&origin, Some(&redis), COLO, Some(&state)).await;
    let after = c.get(&path).await;
    assert_eq!(
        after.text(),
        body_for(&path, 2),
        "refetched after the purge: {}",
        after.cache_status()
    );
    assert!(
        !after.cache_status().contains("colo; hit"),
        "{}",
        after.cache_status()
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&state);
}

/// The colo tier is on by default and works without Redis ("local+expiry"): `/stats` says
/// so (and, asked on a `*.workers.dev` host, that it is inactive there, with one warning in
/// the log); a Worker's miss fills it; a new isolate (a Worker started on the same local
/// state) is answered from it without the origin; a purge there answers which tiers it
/// reached and by when other colos' copies expire (the 60 s cap), and that isolate stops
/// using the colo copy at once and fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_colo_tier_is_on_by_default_without_redis() {
    if skipped() {
        return;
    }
    let origin = Origin::start().await;
    let state = std::env::temp_dir().join(format!("edgecache-colo-default-{}", free_port()));
    let _ = std::fs::remove_dir_all(&state);
    let path = url(
        "/e2e/colo-default",
        &[("cc", "max-age=600"), ("tag", "cd-tag")],
    );

    // Objects above 256 KiB are cached in 64 KiB slices: those go through the colo tier too.
    let cache = r#"{"limits":{"max_object_bytes":262144,"slice_bytes":65536}}"#;
    let size: usize = (512 << 10) + 7;
    let sliced = url(
        "/e2e/colo-sliced",
        &[
            ("cc", "max-age=600"),
            ("size", &size.to_string()),
            ("ranges", "1"),
            ("etag", "\"v1\""),
        ],
    );
    let a = Worker::start_with_vars(&origin, cache, Some(&state), &[]).await;
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(a.addr).await.unwrap();
        let head = format!(
            "GET /_edgecache/stats HTTP/1.1\r\nHost: edgecache-test.example.workers.dev\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut answer))
            .await
            .expect("stats on a workers.dev host")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(raw.contains(r#""colo":"inactive on workers.dev""#), "{raw}");
    eventually("the workers.dev warning", WAIT, async || {
        a.log()
            .contains("colo tier inactive on workers.dev")
            .then_some(())
    })
    .await;
    let stats = a.stats().await;
    assert_eq!(stats["colo"], "local+expiry", "{stats}");
    assert_eq!(stats["colo_max_ttl_secs"], 60, "{stats}");
    let miss = a.get(&path).await;
    assert!(
        miss.cache_status()
            .contains("edgecache-colo; fwd=uri-miss; stored"),
        "{}",
        miss.cache_status()
    );
    assert!(a.get(&sliced).await.body == pattern(size));
    let sliced_fetches = origin.count(&sliced);
    // The small object, the sliced one's head and its 9 slices.
    eventually("the colo writes", WAIT, async || {
        (a.stat("colo_stored").await >= 11).then_some(())
    })
    .await;
    drop(a);

    let b = Worker::start_with_vars(&origin, cache, Some(&state), &[]).await;
    let whole = b.get(&sliced).await;
    assert!(whole.body == pattern(size), "{}", whole.cache_status());
    let range = send(
        b.addr(),
        "GET",
        &sliced,
        &[("range", "bytes=100000-200000")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(range.status, 206);
    assert!(range.body == pattern(size)[100_000..=200_000]);
    assert_eq!(
        origin.count(&sliced),
        sliced_fetches,
        "the object in slices came from the colo tier"
    );
    let hit = b.get(&path).await;
    assert_eq!(hit.text(), body_for(&path, 1));
    assert!(
        hit.cache_status().starts_with("edgecache-colo; hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.count(&path), 1, "answered without the origin");
    eventually("the local+expiry warning", WAIT, async || {
        b.log().contains("colo tier local+expiry").then_some(())
    })
    .await;

    let before = edgecache::time::Clock::now(&edgecache::time::SystemClock).as_millis();
    let purged = b.purge("tag=cd-tag").await;
    assert_eq!(purged["colo"]["mode"], "local+expiry", "{purged}");
    assert_eq!(purged["colo"]["api"], serde_json::Value::Null, "{purged}");
    let by = purged["colo"]["others_expire_by_ms"].as_u64().unwrap();
    assert!(
        (before + 59_000..before + 65_000).contains(&by),
        "{purged}, sent at {before}"
    );
    assert_eq!(
        purged["reached"],
        serde_json::json!(["l1 (this isolate)", "colo (this isolate)"]),
        "{purged}"
    );
    let after = b.get(&path).await;
    assert_eq!(after.text(), body_for(&path, 2), "{}", after.cache_status());
    assert!(
        !after.cache_status().contains("colo; hit"),
        "{}",
        after.cache_status()
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&state);
}

/// With Cloudflare's purge API configured (secrets pointing at a local stand-in that
/// records what it receives): a purge by URL sends exactly one `POST
/// /client/v4/zones/{zone}/purge_cache` with the bearer token and `{"files":[the colo URL]}`,
/// by tag `{"tags":[tag]}`; the purging Worker then misses the colo copy; the token is in
/// no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_the_colo_tier_through_the_purge_api() {
    if skipped() {
        return;
    }
    const CF_TOKEN: &str = "cf-test-token-0123456789abcdef";
    const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
    let origin = Origin::start().await;
    let api = PurgeApi::start().await;
    let base = api.base();
    let vars = [
        ("EDGECACHE_CF_API_TOKEN", CF_TOKEN),
        ("EDGECACHE_CF_ZONE_ID", ZONE),
        ("EDGECACHE_CF_API_BASE", base.as_str()),
    ];
    let path = url(
        "/e2e/colo-api",
        &[("cc", "max-age=600"), ("tag", "api-tag")],
    );
    let w = Worker::start_with_vars(&origin, "{}", None, &vars).await;
    assert_eq!(w.stats().await["colo"], "purge-api");
    w.get(&path).await;
    eventually("the colo write", WAIT, async || {
        (w.stat("colo_stored").await >= 1).then_some(())
    })
    .await;
    // Only the colo tier can answer now: L1 purged by URL, which also goes to the API.
    let purged = w.purge(&format!("url={}", enc(&path))).await;
    assert_eq!(
        purged["colo"]["api"],
        serde_json::json!({"ok": true, "requests": 1}),
        "{purged}"
    );
    assert!(
        purged["reached"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("colo (every data centre, purge API)")),
        "{purged}"
    );
    let key = edgecache::key::cache_key(
        "GET",
        "http",
        HOST,
        &path,
        &edgecache::engine::EngineConfig::default().key,
    );
    let colo_url = edgecache::engine::colo::colo_url(
        &format!("http://{HOST}"),
        "/_edgecache",
        &format!("ec:v1:colo:{key}"),
    );
    let expected = |body: String| PurgeCall {
        method: String::from("POST"),
        path: format!("/client/v4/zones/{ZONE}/purge_cache"),
        authorization: Some(format!("Bearer {CF_TOKEN}")),
        content_type: Some(String::from("application/json")),
        body,
    };
    assert_eq!(
        api.calls(),
        [expected(
            serde_json::json!({ "files": [colo_url] }).to_string()
        )]
    );
    let after = w.get(&path).await;
    assert!(
        !after.cache_status().contains("colo; hit"),
        "{}",
        after.cache_status()
    );
    assert_eq!(after.text(), body_for(&path, 2));

    w.purge("tag=api-tag").await;
    assert_eq!(
        api.calls()[1..],
        [expected(String::from(r#"{"tags":["api-tag"]}"#))]
    );
    assert!(!w.log().contains(CF_TOKEN), "the token is never logged");
}

/// A purge-API call that fails (Cloudflare refusing the token) never fails the purge: the
/// answer is `200`, says the API was not reached and why, the purging Worker stops using
/// the colo copy all the same, and the log has the failure without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_purge_api_is_reported_and_does_not_fail_the_purge() {
    if skipped() {
        return;
    }
    const CF_TOKEN: &str = "cf-refused-token-0123456789abcdef";
    let origin = Origin::start().await;
    let api = PurgeApi::start().await;
    api.refuse();
    let base = api.base();
    let vars = [
        ("EDGECACHE_CF_API_TOKEN", CF_TOKEN),
        ("EDGECACHE_CF_ZONE_ID", "023e105f4ecef8ad9ca31a8372d0c353"),
        ("EDGECACHE_CF_API_BASE", base.as_str()),
    ];
    let path = url(
        "/e2e/colo-api-down",
        &[("cc", "max-age=600"), ("tag", "down")],
    );
    let w = Worker::start_with_vars(&origin, "{}", None, &vars).await;
    w.get(&path).await;
    eventually("the colo write", WAIT, async || {
        (w.stat("colo_stored").await >= 1).then_some(())
    })
    .await;
    let purged = w.purge("tag=down").await;
    assert_eq!(purged["colo"]["api"]["ok"], false, "{purged}");
    let error = purged["colo"]["api"]["error"].as_str().unwrap();
    assert!(
        error.contains("403") && error.contains("Authentication error"),
        "{purged}"
    );
    assert_eq!(
        purged["reached"],
        serde_json::json!(["l1 (this isolate)", "colo (this isolate)"]),
        "{purged}"
    );
    assert_eq!(api.calls().len(), 1);
    let after = w.get(&path).await;
    assert!(
        !after.cache_status().contains("colo; hit"),
        "{}",
        after.cache_status()
    );
    eventually("the failure in the log", WAIT, async || {
        w.log()
            .contains("purge API: Cloudflare answered 403")
            .then_some(())
    })
    .await;
    assert!(!w.log().contains(CF_TOKEN), "the token is never logged");
    assert!(!purged.to_string().contains(CF_TOKEN));
}

/// The purge API's settings are checked at start, each error naming its variable and never
/// quoting the token: a token without a zone, a zone without a token, and a base URL that
/// is not loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_api_settings_that_do_not_go_together_are_refused() {
    if skipped() {
        return;
    }
    build_worker();
    const CF_TOKEN: &str = "cf-test-token-0123456789abcdef";
    let origin = Origin::start().await;
    let zone = ("EDGECACHE_CF_ZONE_ID", "023e105f4ecef8ad9ca31a8372d0c353");
    let token = ("EDGECACHE_CF_API_TOKEN", CF_TOKEN);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[token], "EDGECACHE_CF_ZONE_ID"),
        (&[zone], "EDGECACHE_CF_API_TOKEN"),
        (
            &[
                token,
                zone,
                ("EDGECACHE_CF_API_BASE", "https://api.example.com/client/v4"),
            ],
            "EDGECACHE_CF_API_BASE",
        ),
    ];
    for (vars, named) in cases {
        let refused = Worker::start_once(&origin.url(), Redis::default(), "{}", None, true, vars)
            .await
            .err()
            .unwrap_or_else(|| panic!("{vars:?} is refused"));
        assert!(
            refused.contains(&format!("500 edgecache is misconfigured: {named}")),
            "{vars:?}: {refused}"
        );
        assert!(!refused.contains(CF_TOKEN), "{refused}");
    }
    assert_eq!(origin.total(), 0, "nothing reached the origin");
}

/// An L1 larger than an isolate can hold (128 MB for everything) is refused with a 500
/// naming the field, rather than left to grow until the runtime kills the isolate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l1_larger_than_an_isolate_is_refused() {
    if skipped() {
        return;
    }
    build_worker();
    let origin = Origin::start().await;
    let cache = r#"{"l1":{"max_bytes":268435456}}"#;
    let refused = Worker::start_once(&origin.url(), Redis::default(), cache, None, true, &[])
        .await
        .err()
        .expect("an L1 of 256 MiB is refused on the Worker");
    assert!(
        refused.contains("500 edgecache is misconfigured: EDGECACHE_CACHE.l1.max_bytes"),
        "{refused}"
    );
    assert_eq!(origin.total(), 0, "nothing reached the origin");
}

over_sockets_and_rest!(write_behind_at_the_edge:
    write_behind_queues_delivers_and_the_cron_retries,
    write_behind_queues_delivers_and_the_cron_retries_over_rest);

/// Write-behind at the edge: a POST on a write-behind route is answered 202 with its
/// Idempotency-Key and delivered after the response (`ctx.wait_until`); with the origin
/// down the delivery stays pending and the cron trigger delivers it once the origin is back
/// and the retry time has passed; with Redis gone, a POST is written through at once. Routes
/// without Redis make the Worker refuse to start.
async fn write_behind_at_the_edge(via: Via) {
    const WB: &str = r#"{"l2":{"purge_poll_ms":100},"limits":{"origin_timeout_ms":1000},"write_behind":{"routes":["/queued/"],"retry_after_ms":1500}}"#;
    let mut redis = SharedRedis::start(via).await;
    let mut origin = Origin::start().await;
    let w = Worker::start(&origin, Some(&redis), WB).await;

    let r = send(
        w.addr,
        "POST",
        "/queued/a",
        &[
            ("idempotency-key", "\"edge-key-a\""),
            ("content-type", "text/plain"),
        ],
        Bytes::from_static(b"edge write"),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("idempotency-key"), Some("\"edge-key-a\""));
    eventually("the delivery after the response", WAIT, async || {
        (!origin.writes().is_empty()).then_some(())
    })
    .await;
    let first = &origin.writes()[0];
    assert_eq!(first.body, b"edge write");
    assert_eq!(first.idempotency_key.as_deref(), Some("\"edge-key-a\""));

    origin.stop().await;
    let r = send(
        w.addr,
        "PUT",
        "/queued/b",
        &[],
        Bytes::from_static(b"later"),
    )
    .await
    .expect("PUT");
    assert_eq!(r.status, 202, "{r:?}");
    let key = r
        .header("idempotency-key")
        .expect("a generated key")
        .to_string();
    eventually("the failed delivery", WAIT, async || {
        (w.stat("write_behind_retried").await >= 1).then_some(())
    })
    .await;
    origin.restart().await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let cron = send(
        w.addr,
        "GET",
        "/__scheduled?cron=*+*+*+*+*",
        &[],
        Bytes::new(),
    )
    .await
    .expect("scheduled");
    assert_eq!(cron.status, 200, "{}", cron.text());
    eventually("the cron's delivery", WAIT, async || {
        (origin.writes().len() >= 2).then_some(())
    })
    .await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 2, "once each: {writes:?}");
    // Over REST: queued with XADD, acknowledged with XACK + XDEL in one /multi-exec.
    redis.assert_rest_used(4, 1);
    assert_eq!(writes[1].method, "PUT");
    assert_eq!(writes[1].body, b"later");
    assert_eq!(writes[1].idempotency_key.as_deref(), Some(key.as_str()));

    redis.kill();
    let r = send(
        w.addr,
        "POST",
        "/queued/c",
        &[],
        Bytes::from_static(b"no redis"),
    )
    .await
    .expect("POST");
    assert_eq!(
        (r.status, r.text()),
        (200, "POST ok 8".to_string()),
        "written through"
    );
    let writes = origin.writes();
    assert_eq!(writes.len(), 3);
    assert_eq!(writes[2].body, b"no redis");
    assert!(writes[2].idempotency_key.is_some());
    drop(w);
    if via == Via::Rest {
        // What follows does not depend on the transport.
        return;
    }

    let refused = Worker::start_once(&origin.url(), Redis::default(), WB, None, true, &[])
        .await
        .err()
        .expect("write-behind routes without Redis are refused");
    // Why is in the Worker's console (`wrangler tail`), below this log level; the same
    // configuration without routes starts without Redis in the other tests.
    assert!(
        refused.contains("500 edgecache is misconfigured"),
        "{refused}"
    );
}

/// A Worker whose origin is on loopback or a private network, which a deployed Worker cannot
/// reach, answers every request with a 500 naming `EDGECACHE_ORIGIN` (unless local
/// development says otherwise, as every other test here does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_origin_outside_local_development_is_refused() {
    if skipped() {
        return;
    }
    build_worker();
    let origin = Origin::start().await;
    let refused = Worker::start_once(&origin.url(), Redis::default(), "{}", None, false, &[])
        .await
        .err()
        .expect("a loopback origin is refused");
    assert!(
        refused.contains("500 edgecache is misconfigured: EDGECACHE_ORIGIN"),
        "{refused}"
    );
    assert_eq!(origin.total(), 0, "nothing reached the origin");
}

// ---------------------------------------------------------------------------------------
// Benchmark (ignored in test runs)
// ---------------------------------------------------------------------------------------

/// The benchmark of issue 14 (`benches/redis_transport.sh`): the latency of an L2 hit in a
/// warm isolate, one Worker reaching Redis over sockets and one over REST (the test REST
/// server, next to Redis as Upstash's is), each through a proxy adding a round trip (and one
/// more per new connection, for its TCP handshake), first with none added, then with
/// `EDGECACHE_BENCH_RTT_MS` (20). Objects are stored by `edgecache serve` first, so every
/// measured request is an L1 miss and an L2 hit (asserted), requests alternate between the
/// two Workers, one at a time. Prints a markdown table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: benches/redis_transport.sh runs it"]
async fn bench_l2_hit_latency_over_sockets_and_rest() {
    use support::delay::DelayProxy;
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rtt = env("EDGECACHE_BENCH_RTT_MS", 20);
    let hits = env("EDGECACHE_BENCH_HITS", 30) as usize;
    let redis = RedisServer::start().await;
    let rest = RestServer::start(redis.port).await;
    let to_redis = DelayProxy::start(([127, 0, 0, 1], redis.port).into(), 0).await;
    let to_rest = DelayProxy::start(rest.addr, 0).await;
    let origin = Origin::start().await;
    let native =
        support::cache::Cache::start(support::cache::config(), &origin, Some(&redis)).await;
    let phases = [0, rtt];
    let path = |phase: usize, name: &str| {
        url(&format!("/bench/{phase}/{name}"), &[("cc", "max-age=3600")])
    };
    let mut all = Vec::new();
    for phase in 0..phases.len() {
        for name in (0..hits)
            .map(|i| i.to_string())
            .chain((0..5).map(|k| format!("warm{k}")))
        {
            all.push(path(phase, &name));
        }
    }
    for p in &all {
        assert_eq!(native.get(p).await.status, 200);
    }
    let mut con = redis.conn().await;
    eventually(
        "every object in Redis",
        Duration::from_secs(30),
        async || (object_keys(&mut con).await.len() >= all.len()).then_some(()),
    )
    .await;
    let cache = r#"{"l2":{"timeout_ms":5000}}"#;
    let sockets_url = format!("redis://127.0.0.1:{}", to_redis.addr.port());
    let rest_url = format!("http://{}", to_rest.addr);
    let sockets = Worker::start_at(&origin, Some(&sockets_url), None, cache, None).await;
    let over_rest = Worker::start_at(&origin, Some(&rest_url), Some(REST_TOKEN), cache, None).await;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rows = Vec::new();
    let mut p50s = Vec::new();
    for (phase, &rtt_ms) in phases.iter().enumerate() {
        to_redis.set_rtt_ms(rtt_ms);
        to_rest.set_rtt_ms(rtt_ms);
        for w in [&sockets, &over_rest] {
            for k in 0..5 {
                let r = w.get(&path(phase, &format!("warm{k}"))).await;
                assert!(
                    r.cache_status().starts_with("edgecache-l2; hit"),
                    "{}",
                    r.cache_status()
                );
            }
        }
        let connections = [to_redis.connections(), to_rest.connections()];
        let rest_requests = rest.requests("/pipeline") + rest.requests("/multi-exec");
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for i in 0..hits {
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let w = [&sockets, &over_rest][which];
                let p = path(phase, &i.to_string());
                let started = Instant::now();
                let r = w.get(&p).await;
                times[which].push(ms(started.elapsed()));
                assert_eq!(r.status, 200);
                assert!(
                    r.cache_status().starts_with("edgecache-l2; hit"),
                    "{}",
                    r.cache_status()
                );
                assert_eq!(
                    origin.count(&p),
                    1,
                    "never the origin: only edgecache serve's fill"
                );
            }
        }
        let rest_per_hit = (rest.requests("/pipeline") + rest.requests("/multi-exec")
            - rest_requests) as f64
            / hits as f64;
        for (which, name) in ["sockets", "REST"].iter().enumerate() {
            let t = &mut times[which];
            t.sort_by(f64::total_cmp);
            let pct = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
            let mean = t.iter().sum::<f64>() / t.len() as f64;
            let proxy = [&to_redis, &to_rest][which];
            let dials = (proxy.connections() - connections[which]) as f64 / hits as f64;
            let requests = if which == 1 {
                format!("{rest_per_hit:.2}")
            } else {
                "-".into()
            };
            p50s.push((rtt_ms, *name, pct(0.5)));
            rows.push(format!(
                "| {name} | {rtt_ms} | {:.1} | {:.1} | {:.1} | {:.1} | {dials:.2} | {requests} |",
                pct(0.5),
                pct(0.9),
                mean,
                t[0]
            ));
        }
    }
    println!("\n| transport | added RTT ms | p50 ms | p90 ms | mean ms | min ms | new connections per hit | REST requests per hit |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!("{row}");
    }
    if rtt > 0 {
        for name in ["sockets", "REST"] {
            let at = |r: u64| {
                p50s.iter()
                    .find(|(x, n, _)| *x == r && *n == name)
                    .map(|(_, _, v)| *v)
                    .unwrap_or(0.0)
            };
            println!(
                "{name}: p50 {:+.1} ms with {rtt} ms added per round trip = {:.2} round trips per L2 hit",
                at(rtt) - at(0),
                (at(rtt) - at(0)) / rtt as f64
            );
        }
    }
}

/// Requests fresh URLs under `prefix` from `w` until one of them reaches Redis again (the
/// tier is back); its object key.
async fn written_again(
    w: &Worker,
    con: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> String {
    eventually(
        "a response written to Redis again",
        Duration::from_secs(15),
        async || {
            let path = url(
                prefix,
                &[
                    ("cc", "max-age=60"),
                    ("t", &format!("{:?}", Instant::now())),
                ],
            );
            w.get(&path).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            object_keys(con)
                .await
                .into_iter()
                .find(|k| k.contains(prefix))
        },
    )
    .await
}
