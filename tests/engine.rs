//! Engine tests on a test host: an in-process origin that counts its fetches, a manual clock
//! and a single-threaded executor. They exercise the real engine code paths; the native
//! host's integration tests (real sockets, real Redis) come on top of these.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use edgecache::engine::config::EngineConfig;
use edgecache::engine::simulated::{SimClock, SimRuntime};
use edgecache::engine::{
    Body, BodyError, Engine, EngineState, Handled, Host, NoSharedTier, Origin, OriginBody,
    OriginError, OriginRequest, OriginResponse, Request,
};
use edgecache::headers::Headers;
use edgecache::time::{Clock, Timestamp};

const T0_MS: u64 = 1_700_000_000_000;

/// One scripted origin answer.
#[derive(Clone)]
enum Answer {
    Respond(u16, Vec<(&'static str, String)>, &'static str),
    Fail,
    Hang,
}

#[derive(Default)]
struct OriginLog {
    requests: RefCell<Vec<OriginRequest<()>>>,
}

struct TestOrigin {
    clock: Rc<SimClock>,
    script: Rc<RefCell<VecDeque<Answer>>>,
    default: Rc<RefCell<Answer>>,
    log: Rc<OriginLog>,
    /// How many times a fetch yields before answering (to let others pile up).
    yields: Rc<Cell<u32>>,
}

/// Yields `n` times, waking itself, then completes.
struct YieldN(u32);
impl Future for YieldN {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Origin for TestOrigin {
    type Body = ();
    async fn fetch(
        &self,
        request: OriginRequest<()>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<()>, OriginError> {
        self.log.requests.borrow_mut().push(OriginRequest {
            body: None,
            headers: request.headers.clone(),
            ..request
        });
        YieldN(self.yields.get()).await;
        let answer = self
            .script
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| self.default.borrow().clone());
        match answer {
            Answer::Respond(status, headers, body) => {
                let body = body.as_bytes().to_vec();
                Ok(OriginResponse {
                    status,
                    headers: Headers::from_pairs(headers.iter().map(|(n, v)| (*n, v.as_str()))),
                    body: if body.len() <= buffer_limit {
                        OriginBody::Buffered(body)
                    } else {
                        OriginBody::Streaming(())
                    },
                })
            }
            Answer::Fail => Err(OriginError::Unreachable("connection refused".into())),
            Answer::Hang => loop {
                // Time passes while the origin does not answer.
                self.clock.advance_secs(1);
                YieldN(1).await;
            },
        }
    }

    async fn read_body(&self, _body: (), _limit: usize) -> Result<Vec<u8>, BodyError> {
        Ok(Vec::new())
    }

    fn body_from_bytes(&self, _bytes: Vec<u8>) {}
}

struct TestHost;
impl Host for TestHost {
    type Body = ();
    type Origin = TestOrigin;
    type SharedTier = NoSharedTier;
    type Runtime = SimRuntime;
    type Colo = edgecache::engine::NoColo;
    type Lock = RefCell<EngineState>;
}

struct Harness {
    engine: Engine<TestHost>,
    clock: Rc<SimClock>,
    script: Rc<RefCell<VecDeque<Answer>>>,
    default: Rc<RefCell<Answer>>,
    log: Rc<OriginLog>,
    yields: Rc<Cell<u32>>,
}

const TOKEN: &str = "test-token-0123456789";

fn harness_with(config: EngineConfig) -> Harness {
    let clock = Rc::new(SimClock::new(Timestamp::from_millis(T0_MS)));
    let script = Rc::new(RefCell::new(VecDeque::new()));
    let default = Rc::new(RefCell::new(Answer::Respond(
        200,
        vec![("cache-control", "max-age=60".into())],
        "default body",
    )));
    let log = Rc::new(OriginLog::default());
    let yields = Rc::new(Cell::new(0));
    let origin = TestOrigin {
        clock: clock.clone(),
        script: script.clone(),
        default: default.clone(),
        log: log.clone(),
        yields: yields.clone(),
    };
    let runtime = SimRuntime::new(clock.clone());
    let engine = Engine::new(config, origin, None, runtime).expect("valid config");
    Harness {
        engine,
        clock,
        script,
        default,
        log,
        yields,
    }
}

fn harness() -> Harness {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.into());
    harness_with(config)
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<()> {
    request("GET", path, headers)
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut all = Headers::from_pairs([("host", "example.com")]);
    for (name, value) in headers {
        all.append(name, value);
    }
    Request {
        client: None,
        method: method.into(),
        scheme: "http".into(),
        target: path.into(),
        headers: all,
        body: None,
    }
}

fn body_of(handled: &Handled<()>) -> String {
    match &handled.response.body {
        Body::Empty => String::new(),
        Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Cached(c) => String::from_utf8_lossy(&c.body).into_owned(),
        Body::Slice(c, range) => String::from_utf8_lossy(&c.body[range.clone()]).into_owned(),
        Body::Filling(_) => "<filling>".into(),
        Body::Stream(()) => "<stream>".into(),
    }
}

fn status_header(handled: &Handled<()>) -> String {
    handled
        .response
        .headers
        .get_str("cache-status")
        .unwrap_or("")
        .to_string()
}

impl Harness {
    fn send(&self, req: Request<()>) -> Handled<()> {
        self.clock.block_on(self.engine.handle(req))
    }

    fn send_and_run_jobs(&self, req: Request<()>) -> Handled<()> {
        let mut handled = self.send(req);
        if let Some(job) = handled.job.take() {
            self.clock.block_on(self.engine.run_job(job));
        }
        handled
    }

    fn respond(&self, status: u16, headers: &[(&'static str, &str)], body: &'static str) {
        self.script.borrow_mut().push_back(Answer::Respond(
            status,
            headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            body,
        ));
    }

    fn fetches(&self) -> usize {
        self.log.requests.borrow().len()
    }
}

/// RFC 9111 §4, RFC 9211: a miss is fetched, stored and reported; the next request hits.
#[test]
fn miss_then_hit_with_cache_status() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "hello");
    let first = h.send(get("/a", &[]));
    assert_eq!(first.response.status, 200);
    assert_eq!(body_of(&first), "hello");
    assert_eq!(
        status_header(&first),
        "edgecache-l1; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    );
    h.clock.advance_secs(10);
    let second = h.send(get("/a", &[]));
    assert_eq!(body_of(&second), "hello");
    assert_eq!(status_header(&second), "edgecache-l1; hit; ttl=50");
    assert_eq!(second.response.fields().get_str("age"), Some("10"));
    assert_eq!(h.fetches(), 1);
    let stats = h.engine.snapshot().engine;
    assert_eq!((stats.misses, stats.l1_hits, stats.stored), (1, 1, 1));
}

/// RFC 9111 §3: responses a shared cache must not store are passed through every time.
#[test]
fn private_and_no_store_are_not_cached() {
    let h = harness();
    h.respond(200, &[("cache-control", "private, max-age=60")], "mine");
    h.respond(200, &[("cache-control", "private, max-age=60")], "mine");
    let first = h.send(get("/p", &[]));
    assert!(
        status_header(&first).contains("detail=private"),
        "{}",
        status_header(&first)
    );
    h.send(get("/p", &[]));
    assert_eq!(h.fetches(), 2);
    h.respond(200, &[("cache-control", "max-age=60")], "auth");
    h.respond(200, &[("cache-control", "max-age=60")], "auth");
    h.send(get("/auth", &[("authorization", "Bearer x")]));
    h.send(get("/auth", &[("authorization", "Bearer x")]));
    assert_eq!(
        h.fetches(),
        4,
        "RFC 9111 §3.5: Authorization without public/s-maxage"
    );
}

/// RFC 5861 §3: stale within SWR is served at once and refreshed in the background.
#[test]
fn stale_while_revalidate_serves_stale_and_refreshes() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=10, stale-while-revalidate=60")],
        "v1",
    );
    h.send(get("/s", &[]));
    h.clock.advance_secs(15);
    h.respond(
        200,
        &[("cache-control", "max-age=10, stale-while-revalidate=60")],
        "v2",
    );
    let stale = h.send(get("/s", &[]));
    assert_eq!(body_of(&stale), "v1");
    assert!(status_header(&stale).contains("detail=stale-while-revalidate"));
    assert!(
        stale.job.is_some(),
        "a background revalidation is scheduled"
    );
    assert_eq!(h.fetches(), 1, "the client did not wait for the origin");
    h.clock.block_on(h.engine.run_job(stale.job.unwrap()));
    assert_eq!(h.fetches(), 2);
    let fresh = h.send(get("/s", &[]));
    assert_eq!(body_of(&fresh), "v2");
    assert!(status_header(&fresh).contains("hit"));
}

/// RFC 5861 §4: when the origin fails, a response within stale-if-error is served.
#[test]
fn stale_if_error_on_origin_failure_and_5xx() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=10, stale-if-error=300")],
        "good",
    );
    h.send(get("/e", &[]));
    h.clock.advance_secs(20);
    h.script.borrow_mut().push_back(Answer::Fail);
    let served = h.send(get("/e", &[]));
    assert_eq!(served.response.status, 200);
    assert_eq!(body_of(&served), "good");
    assert!(status_header(&served).contains("detail=stale-if-error"));
    h.respond(503, &[], "down");
    let served = h.send(get("/e", &[]));
    assert_eq!(body_of(&served), "good");
    assert!(status_header(&served).contains("fwd-status=503"));
    assert_eq!(h.engine.snapshot().engine.stale_if_error, 2);
}

/// RFC 9111 §4.2.4: without stale-if-error the origin's failure is passed on: a 5xx
/// always, and an unreachable origin once the disconnected window
/// (`policy.stale_if_unreachable_secs`) is off or past.
#[test]
fn origin_failure_without_stale_allowance_is_502() {
    let mut config = EngineConfig::default();
    config.policy.stale_if_unreachable_secs = 0;
    let h = harness_with(config);
    h.respond(200, &[("cache-control", "max-age=10")], "good");
    h.send(get("/f", &[]));
    h.clock.advance_secs(20);
    h.script.borrow_mut().push_back(Answer::Fail);
    let served = h.send(get("/f", &[]));
    assert_eq!(served.response.status, 502);
    assert!(status_header(&served).contains("detail=origin-unreachable"));
}

/// RFC 9111 §4.2.4: a disconnected cache may serve stale. While the origin cannot be
/// reached, a stale response stands in for `policy.stale_if_unreachable_secs` (60 s) past
/// its freshness, never when the response forbids stale serving, and never for an origin
/// that answers (a 503 is passed on: that is stale-if-error's business).
#[test]
fn an_unreachable_origin_is_covered_by_the_disconnected_window() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=10")], "good");
    h.send(get("/u", &[]));
    h.clock.advance_secs(30);
    h.script.borrow_mut().push_back(Answer::Fail);
    let served = h.send(get("/u", &[]));
    assert_eq!(served.response.status, 200);
    assert_eq!(body_of(&served), "good");
    assert!(
        status_header(&served).contains("detail=stale-if-unreachable"),
        "{}",
        status_header(&served)
    );
    h.respond(503, &[], "down");
    assert_eq!(
        h.send(get("/u", &[])).response.status,
        503,
        "an answer is passed on"
    );
    h.clock.advance_secs(41);
    h.script.borrow_mut().push_back(Answer::Fail);
    assert_eq!(
        h.send(get("/u", &[])).response.status,
        502,
        "past the window"
    );

    // Nor for a request that asked for validation or for fresher content.
    h.respond(200, &[("cache-control", "max-age=10")], "good");
    h.send(get("/u/req", &[]));
    h.clock.advance_secs(20);
    for asking in ["no-cache", "max-age=5", "min-fresh=5"] {
        h.script.borrow_mut().push_back(Answer::Fail);
        let r = h.send(get("/u/req", &[("cache-control", asking)]));
        assert_eq!(r.response.status, 502, "{asking}");
    }

    for forbidding in [
        "max-age=10, must-revalidate",
        "max-age=10, s-maxage=10",
        "max-age=10, proxy-revalidate",
    ] {
        let path = format!("/u/{}", forbidding.len());
        h.respond(200, &[("cache-control", forbidding)], "good");
        h.send(get(&path, &[]));
        h.clock.advance_secs(20);
        h.script.borrow_mut().push_back(Answer::Fail);
        assert_eq!(h.send(get(&path, &[])).response.status, 502, "{forbidding}");
    }
}

/// Limits: an origin that does not answer within the timeout yields 504.
#[test]
fn origin_timeout_is_504() {
    let h = harness();
    h.script.borrow_mut().push_back(Answer::Hang);
    let served = h.send(get("/slow", &[]));
    assert_eq!(served.response.status, 504);
    assert!(status_header(&served).contains("origin-timeout"));
    assert_eq!(h.engine.snapshot().engine.origin_errors, 1);
}

/// RFC 9111 §4.3.1, §4.3.4: a stale response with a validator is revalidated with a
/// conditional request, and a 304 freshens it.
#[test]
fn conditional_revalidation_with_304() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"v1\"")],
        "body-v1",
    );
    h.send(get("/c", &[]));
    h.clock.advance_secs(20);
    h.respond(
        304,
        &[("cache-control", "max-age=100"), ("etag", "\"v1\"")],
        "",
    );
    let served = h.send(get("/c", &[]));
    assert_eq!(served.response.status, 200);
    assert_eq!(body_of(&served), "body-v1");
    let sent = &h.log.requests.borrow()[1];
    assert_eq!(sent.headers.get_str("if-none-match"), Some("\"v1\""));
    assert!(status_header(&served).contains("fwd=stale; fwd-status=304"));
    assert_eq!(
        served.response.fields().get_str("cache-control"),
        Some("max-age=100")
    );
    h.clock.advance_secs(50);
    let again = h.send(get("/c", &[]));
    assert!(
        status_header(&again).contains("hit"),
        "freshened by the 304"
    );
    assert_eq!(h.engine.snapshot().engine.revalidated, 1);
}

/// RFC 9111 §4.3.2: a client's own conditional request is answered 304 from the cache.
#[test]
fn client_conditional_answered_from_cache() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=60"), ("etag", "\"x\"")],
        "payload",
    );
    h.send(get("/n", &[]));
    let served = h.send(get("/n", &[("if-none-match", "\"x\"")]));
    assert_eq!(served.response.status, 304);
    assert!(matches!(served.response.body, Body::Empty));
    assert_eq!(h.fetches(), 1);
}

/// Coalescing: N concurrent misses for one key make exactly one origin fetch.
#[test]
fn concurrent_misses_coalesce_to_one_fetch() {
    let h = harness();
    h.yields.set(5);
    h.respond(200, &[("cache-control", "max-age=60")], "shared");
    let requests: Vec<_> = (0..200)
        .map(|_| h.engine.handle(get("/hot", &[])))
        .collect();
    let results = h.clock.block_on(futures::future::join_all(requests));
    assert_eq!(h.fetches(), 1);
    assert!(results
        .iter()
        .all(|r| body_of(r) == "shared" && r.response.status == 200));
    let collapsed = results
        .iter()
        .filter(|r| status_header(r).contains("collapsed"))
        .count();
    assert_eq!(collapsed, 199);
    assert_eq!(h.engine.snapshot().engine.coalesced, 199);
}

/// Coalescing: waiters on an uncacheable response go to the origin themselves rather than
/// receiving someone else's private response.
#[test]
fn waiters_do_not_share_uncacheable_responses() {
    let h = harness();
    h.yields.set(3);
    *h.default.borrow_mut() =
        Answer::Respond(200, vec![("cache-control", "private".into())], "private");
    let requests: Vec<_> = (0..5).map(|_| h.engine.handle(get("/priv", &[]))).collect();
    h.clock.block_on(futures::future::join_all(requests));
    assert_eq!(h.fetches(), 5);
}

/// RFC 9111 §4.1: Vary selects between stored variants.
#[test]
fn vary_variants_are_kept_apart() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        "english",
    );
    h.respond(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        "french",
    );
    assert_eq!(
        body_of(&h.send(get("/v", &[("accept-language", "en")]))),
        "english"
    );
    let fr = h.send(get("/v", &[("accept-language", "fr")]));
    assert_eq!(body_of(&fr), "french");
    assert!(status_header(&fr).contains("fwd=vary-miss"));
    assert_eq!(
        body_of(&h.send(get("/v", &[("accept-language", "en")]))),
        "english"
    );
    assert_eq!(
        body_of(&h.send(get("/v", &[("accept-language", "FR")]))),
        "french"
    );
    assert_eq!(h.fetches(), 2);
}

/// RFC 9111 §4.4: a successful POST invalidates the target; the next GET refetches.
#[test]
fn unsafe_method_invalidates() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "old");
    h.send(get("/item", &[]));
    h.respond(204, &[], "");
    let post = h.send(request("POST", "/item", &[]));
    assert_eq!(post.response.status, 204);
    assert!(status_header(&post).contains("fwd=method"));
    h.respond(200, &[("cache-control", "max-age=60")], "new");
    assert_eq!(body_of(&h.send(get("/item", &[]))), "new");
    assert_eq!(h.fetches(), 3);
    assert_eq!(h.log.requests.borrow()[1].method, "POST");
}

/// RFC 9111 §4.4: a failed POST invalidates nothing.
#[test]
fn failed_unsafe_method_keeps_cache() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "kept");
    h.send(get("/k", &[]));
    h.respond(500, &[], "");
    h.send(request("DELETE", "/k", &[]));
    assert_eq!(body_of(&h.send(get("/k", &[]))), "kept");
}

/// HEAD is answered from the stored GET response, without a body.
#[test]
fn head_uses_get_response() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "content");
    let head = h.send(request("HEAD", "/h", &[]));
    assert!(matches!(head.response.body, Body::Empty));
    assert_eq!(
        head.response.content_length,
        Some(7),
        "the GET's length, RFC 9110 §9.3.2"
    );
    assert_eq!(h.log.requests.borrow()[0].method, "GET");
    let head_hit = h.send(request("HEAD", "/h", &[]));
    assert_eq!(head_hit.response.content_length, Some(7));
    let get_after = h.send(get("/h", &[]));
    assert_eq!(body_of(&get_after), "content");
    assert_eq!(
        get_after.response.content_length, None,
        "a body says its own length"
    );
    assert_eq!(h.fetches(), 1);
    // Passed through: the origin's word for the length.
    h.respond(
        200,
        &[("cache-control", "no-store"), ("content-length", "12")],
        "",
    );
    let passed = h.send(request("HEAD", "/p", &[]));
    assert_eq!(passed.response.content_length, Some(12));
    // A 204 never declares a length (RFC 9110 §8.6).
    h.respond(204, &[("cache-control", "max-age=60")], "");
    h.send(get("/none", &[]));
    let head = h.send(request("HEAD", "/none", &[]));
    assert_eq!(head.response.status, 204);
    assert_eq!(head.response.content_length, None);
}

/// RFC 9111 §5.2.1.7: only-if-cached with nothing stored is a 504.
#[test]
fn only_if_cached_miss_is_504() {
    let h = harness();
    let r = h.send(get("/nothing", &[("cache-control", "only-if-cached")]));
    assert_eq!(r.response.status, 504);
    assert_eq!(h.fetches(), 0);
}

/// Limits: a response declared larger than the object limit streams through, uncached.
#[test]
fn oversized_response_streams_uncached() {
    let mut config = EngineConfig::default();
    config.limits.max_object_bytes = 4;
    let h = harness_with(config);
    let fields = [("cache-control", "max-age=60"), ("content-length", "7")];
    h.respond(200, &fields, "too big");
    h.respond(200, &fields, "too big");
    let r = h.send(get("/big", &[]));
    assert!(matches!(r.response.body, Body::Stream(())));
    assert!(status_header(&r).contains("detail=too-large"));
    h.send(get("/big", &[]));
    assert_eq!(h.fetches(), 2);
}

/// Limits: oversized request headers are refused with 431 and never forwarded.
#[test]
fn oversized_request_headers_are_431() {
    let h = harness();
    let big = "x".repeat(70_000);
    let r = h.send(get("/", &[("x-big", &big)]));
    assert_eq!(r.response.status, 431);
    assert_eq!(h.fetches(), 0);
}

/// Admin API: purge needs the bearer token; with it, URL, tag and all purges work.
#[test]
fn purge_requires_token_and_purges() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=60"), ("surrogate-key", "t1 t2")],
        "a",
    );
    h.respond(
        200,
        &[("cache-control", "max-age=60"), ("cache-tag", "t2")],
        "b",
    );
    h.send(get("/a", &[]));
    h.send(get("/b", &[]));
    let denied = h.send(request("POST", "/_edgecache/purge?tag=t2", &[]));
    assert_eq!(denied.response.status, 401);
    let wrong = h.send(request(
        "POST",
        "/_edgecache/purge?tag=t2",
        &[("authorization", "Bearer wrong-token-xxxxxxxx")],
    ));
    assert_eq!(wrong.response.status, 401);
    assert_eq!(h.engine.snapshot().engine.admin_unauthorized, 2);
    assert!(
        status_header(&h.send(get("/a", &[]))).contains("hit"),
        "nothing purged yet"
    );
    let auth = format!("Bearer {TOKEN}");
    let ok = h.send(request(
        "POST",
        "/_edgecache/purge?tag=t2",
        &[("authorization", &auth)],
    ));
    assert_eq!(ok.response.status, 200);
    assert_eq!(
        body_of(&ok),
        r#"{"colo":null,"purged":2,"reached":["l1 (this isolate)"],"soft":false}"#
    );
    h.respond(200, &[("cache-control", "max-age=60")], "a2");
    assert_eq!(body_of(&h.send(get("/a", &[]))), "a2");
    let ok = h.send(request(
        "POST",
        "/_edgecache/purge?url=/a",
        &[("authorization", &auth)],
    ));
    assert_eq!(
        body_of(&ok),
        r#"{"colo":null,"purged":1,"reached":["l1 (this isolate)"],"soft":false}"#
    );
    h.respond(200, &[("cache-control", "max-age=60")], "a3");
    assert_eq!(body_of(&h.send(get("/a", &[]))), "a3");
    let ok = h.send(request(
        "POST",
        "/_edgecache/purge?all=1",
        &[("authorization", &auth)],
    ));
    assert_eq!(ok.response.status, 200);
    assert_eq!(h.engine.snapshot().l1_entries, 0);
}

/// Soft purge: content is marked stale and served under SWR while refetched.
#[test]
fn soft_purge_serves_stale_while_refetching() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=600, stale-while-revalidate=60")],
        "old",
    );
    h.send(get("/sp", &[]));
    let auth = format!("Bearer {TOKEN}");
    let ok = h.send(request(
        "POST",
        "/_edgecache/purge?url=/sp&soft=1",
        &[("authorization", &auth)],
    ));
    assert_eq!(
        body_of(&ok),
        r#"{"colo":null,"purged":1,"reached":["l1 (this isolate)"],"soft":true}"#
    );
    h.respond(200, &[("cache-control", "max-age=600")], "new");
    let stale = h.send_and_run_jobs(get("/sp", &[]));
    assert_eq!(body_of(&stale), "old");
    assert!(status_header(&stale).contains("stale-while-revalidate"));
    assert_eq!(body_of(&h.send(get("/sp", &[]))), "new");
}

/// Admin API: disabled without a token; stats and metrics with it.
#[test]
fn admin_disabled_without_token_and_stats_with_it() {
    let h = harness_with(EngineConfig::default());
    assert_eq!(h.send(get("/_edgecache/stats", &[])).response.status, 404);
    let h = harness();
    let auth = format!("Bearer {TOKEN}");
    h.send(get("/x", &[]));
    let stats = h.send(get("/_edgecache/stats", &[("authorization", &auth)]));
    let json: serde_json::Value = serde_json::from_str(&body_of(&stats)).unwrap();
    assert_eq!(json["engine"]["misses"], 1);
    assert_eq!(
        json["engine"]["requests"], 1,
        "admin requests are not counted"
    );
    let metrics = h.send(get("/_edgecache/metrics", &[("authorization", &auth)]));
    assert!(body_of(&metrics).contains("edgecache_misses_total{scope=\"instance\"} 1\n"));
}

/// Config: bad values are refused with the field named.
#[test]
fn bad_config_names_the_field() {
    let mut config = EngineConfig::default();
    config.l1.max_entries = 0;
    let err = EngineConfig::validate(&config).unwrap_err();
    assert_eq!(err.field, "l1.max_entries");
    let mut config = EngineConfig::default();
    config.admin.token = Some("short".into());
    assert_eq!(config.validate().unwrap_err().field, "admin.token");
    assert!(
        !format!("{config:?}").contains("short"),
        "the token is never printed"
    );
}

/// Config: each bad write-behind value is refused, naming its field.
#[test]
fn bad_write_behind_config_names_the_field() {
    use edgecache::engine::config::WriteBehindConfig;
    type Spoil = fn(&mut WriteBehindConfig);
    let cases: [(&str, Spoil); 8] = [
        ("write_behind.routes[0]", |w| w.routes = vec!["api/".into()]),
        ("write_behind.max_body_bytes", |w| w.max_body_bytes = 0),
        ("write_behind.max_body_bytes", |w| {
            w.max_body_bytes = 17 << 20
        }),
        ("write_behind.max_attempts", |w| w.max_attempts = 0),
        ("write_behind.retry_after_ms", |w| w.retry_after_ms = 10_000),
        ("write_behind.flush_interval_ms", |w| {
            w.flush_interval_ms = 0
        }),
        ("write_behind.timeout_ms", |w| w.timeout_ms = 0),
        ("write_behind.max_queue_entries", |w| {
            w.max_queue_entries = 0
        }),
    ];
    for (field, spoil) in cases {
        let mut config = EngineConfig::default();
        config.write_behind.routes = vec!["/api/".into()];
        assert!(config.validate().is_ok());
        spoil(&mut config.write_behind);
        assert_eq!(config.validate().unwrap_err().field, field);
    }
}

/// Bypass route rules forward without caching.
#[test]
fn bypass_route() {
    let mut config = EngineConfig::default();
    config.routes.push(edgecache::engine::config::RouteRule {
        prefix: "/live/".into(),
        bypass: true,
        ..Default::default()
    });
    let h = harness_with(config);
    h.send(get("/live/feed", &[]));
    let r = h.send(get("/live/feed", &[]));
    assert!(status_header(&r).contains("fwd=bypass"));
    assert_eq!(h.fetches(), 2);
}

/// Hop-by-hop request fields are not forwarded (RFC 9110 §7.6.1).
#[test]
fn hop_by_hop_not_forwarded() {
    let h = harness();
    h.send(get(
        "/hop",
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-keep", "2"),
        ],
    ));
    let sent = &h.log.requests.borrow()[0];
    assert!(!sent.headers.contains("x-secret") && !sent.headers.contains("connection"));
    assert_eq!(sent.headers.get_str("x-keep"), Some("2"));
}

/// RFC 9111 §5.2.2.7: fields named by qualified private reach the client that caused the
/// fetch, but are never served from the cache.
#[test]
fn qualified_private_fields_only_on_the_filling_response() {
    let h = harness();
    h.respond(
        200,
        &[
            ("cache-control", "max-age=60, private=\"x-user\""),
            ("x-user", "alice"),
        ],
        "page",
    );
    let first = h.send(get("/q", &[]));
    assert_eq!(first.response.fields().get_str("x-user"), Some("alice"));
    let second = h.send(get("/q", &[]));
    assert!(status_header(&second).contains("hit"));
    assert!(!second.response.fields().contains("x-user"));
}

/// RFC 5861 §3: many stale hits queue many jobs, but only one revalidation reaches the
/// origin.
#[test]
fn queued_revalidations_fetch_once() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=10, stale-while-revalidate=60")],
        "v1",
    );
    h.send(get("/once", &[]));
    h.clock.advance_secs(15);
    let jobs: Vec<_> = (0..5)
        .filter_map(|_| h.send(get("/once", &[])).job)
        .collect();
    assert_eq!(jobs.len(), 5);
    for job in jobs {
        h.clock.block_on(h.engine.run_job(job));
    }
    assert_eq!(h.fetches(), 2, "one initial fetch, one revalidation");
}

/// Refresh-ahead (XFetch): with it on, a hot entry is refreshed in the background shortly
/// before it expires, while the hit itself is served fresh at once; far from expiry, hits
/// never refresh. RFC 9111 §4.3.1: the refresh is a conditional request.
#[test]
fn refresh_ahead_refreshes_hot_entries_just_before_expiry() {
    let mut config = EngineConfig::default();
    config.refresh_ahead.beta_percent = 100;
    config.refresh_ahead.min_delta_ms = 10_000;
    let h = harness_with(config);
    let fresh = [("cache-control", "max-age=100"), ("etag", "\"v1\"")];
    h.respond(200, &fresh, "v1");
    h.send_and_run_jobs(get("/hot", &[]));
    // Far from expiry (90 s left, 9 x delta): P(refresh) = e^-9 per hit.
    h.clock.advance_secs(10);
    for _ in 0..20 {
        let hit = h.send_and_run_jobs(get("/hot", &[]));
        assert!(status_header(&hit).starts_with("edgecache-l1; hit"));
    }
    assert_eq!(h.fetches(), 1);
    assert_eq!(h.engine.snapshot().engine.refreshed_early, 0);
    // 1 s left (0.1 x delta): P = e^-0.1 = 0.9 per hit.
    h.clock.advance_secs(89);
    let date = edgecache::http_date::format_http_date(h.clock.now());
    h.respond(
        304,
        &[
            ("cache-control", "max-age=100"),
            ("etag", "\"v1\""),
            ("date", &date),
        ],
        "",
    );
    let mut refreshed_on = None;
    for n in 0..10 {
        let hit = h.send_and_run_jobs(get("/hot", &[]));
        assert_eq!(body_of(&hit), "v1");
        assert!(status_header(&hit).starts_with("edgecache-l1; hit; ttl=1"));
        if h.fetches() == 2 {
            refreshed_on = Some(n);
            break;
        }
    }
    assert!(refreshed_on.is_some(), "no refresh in 10 hits near expiry");
    assert_eq!(h.engine.snapshot().engine.refreshed_early, 1);
    let requests = h.log.requests.borrow();
    assert_eq!(
        requests[1].headers.get_str("if-none-match"),
        Some("\"v1\""),
        "a conditional refresh"
    );
    drop(requests);
    // The 304 made it fresh again for 100 s: no refresh, no fetch for a while.
    h.clock.advance_secs(5);
    let after = h.send_and_run_jobs(get("/hot", &[]));
    assert!(
        status_header(&after).contains("ttl=95"),
        "{}",
        status_header(&after)
    );
    assert_eq!(h.fetches(), 2);
}

/// Refresh-ahead is off by default: hits right before expiry do not refetch.
#[test]
fn refresh_ahead_is_off_by_default() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=100")], "v1");
    h.send_and_run_jobs(get("/cold", &[]));
    h.clock.advance_secs(99);
    for _ in 0..50 {
        h.send_and_run_jobs(get("/cold", &[]));
    }
    assert_eq!(h.fetches(), 1);
}

/// Route TTL overrides: responses under the route stay fresh (and servable stale) for the
/// configured times instead of the origin's, clients still get the origin's own
/// Cache-Control, other routes keep the origin's lifetimes, and nothing RFC 9111 §3 forbids
/// storing becomes storable.
#[test]
fn route_ttl_overrides_replace_the_origin_lifetimes_for_storable_responses() {
    let mut config = EngineConfig::default();
    config.routes.push(edgecache::engine::config::RouteRule {
        prefix: "/static/".into(),
        ttl_secs: Some(300),
        stale_while_revalidate_secs: Some(30),
        ..Default::default()
    });
    let h = harness_with(config);
    h.respond(200, &[("cache-control", "max-age=5")], "asset");
    let first = h.send(get("/static/app.js", &[]));
    let fields = first.response.fields();
    assert_eq!(fields.get_str("cache-control"), Some("max-age=5"));
    assert_eq!(
        fields.get_str("edgecache-cache-control"),
        None,
        "cache-only field"
    );
    assert!(
        status_header(&first).contains("ttl=300"),
        "{}",
        status_header(&first)
    );
    h.clock.advance_secs(60);
    let hit = h.send(get("/static/app.js", &[]));
    assert!(
        status_header(&hit).starts_with("edgecache-l1; hit; ttl=240"),
        "{}",
        status_header(&hit)
    );
    assert_eq!(
        hit.response.fields().get_str("edgecache-cache-control"),
        None
    );
    // Past the TTL, within the route's stale-while-revalidate window.
    h.clock.advance_secs(250);
    let stale = h.send(get("/static/app.js", &[]));
    assert!(
        status_header(&stale).contains("stale-while-revalidate"),
        "{}",
        status_header(&stale)
    );
    assert_eq!(h.fetches(), 1);

    // Another path keeps the origin's 5 s.
    h.respond(200, &[("cache-control", "max-age=5")], "page");
    h.send(get("/page", &[]));
    h.clock.advance_secs(10);
    h.respond(200, &[("cache-control", "max-age=5")], "page");
    h.send(get("/page", &[]));
    assert_eq!(h.fetches(), 3);

    // Private stays private, whatever the route says.
    h.respond(200, &[("cache-control", "private, max-age=60")], "mine");
    h.respond(200, &[("cache-control", "private, max-age=60")], "mine");
    let first = h.send(get("/static/private", &[]));
    assert!(status_header(&first).contains("detail=private"));
    h.send(get("/static/private", &[]));
    assert_eq!(h.fetches(), 5);
}

/// Route TTL settings that cannot work are refused, naming the field.
#[test]
fn route_ttl_settings_are_validated() {
    use edgecache::engine::config::RouteRule;
    let check = |route: RouteRule, targeted: Option<Vec<String>>| {
        let mut config = EngineConfig::default();
        config.routes.push(route);
        if let Some(fields) = targeted {
            config.policy.targeted_fields = fields;
        }
        config.validate().map_err(|e| e.to_string())
    };
    let swr_only = RouteRule {
        prefix: "/a/".into(),
        stale_while_revalidate_secs: Some(5),
        ..Default::default()
    };
    assert!(check(swr_only, None)
        .unwrap_err()
        .contains("routes[0].ttl_secs"));
    let bypass_ttl = RouteRule {
        prefix: "/a/".into(),
        bypass: true,
        ttl_secs: Some(5),
        ..Default::default()
    };
    assert!(check(bypass_ttl, None).unwrap_err().contains("bypass"));
    let ttl = RouteRule {
        prefix: "/a/".into(),
        ttl_secs: Some(5),
        ..Default::default()
    };
    assert!(check(ttl.clone(), Some(vec!["cdn-cache-control".into()]))
        .unwrap_err()
        .contains("targeted_fields"));
    assert_eq!(check(ttl, None), Ok(()));
}

/// Warming: the admin API fetches the named URLs through the cache in the background (as
/// clients' GETs would: route rules apply), so the next client request is a hit; bad
/// requests are refused with a reason and change nothing.
#[test]
fn warm_fetches_and_stores_the_named_urls_in_the_background() {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.into());
    config.routes.push(edgecache::engine::config::RouteRule {
        prefix: "/live/".into(),
        bypass: true,
        ..Default::default()
    });
    let h = harness_with(config);
    let auth = format!("Bearer {TOKEN}");
    let admin = |path: &str, token: &str| request("POST", path, &[("authorization", token)]);

    let denied = h.send(admin(
        "/_edgecache/warm?url=/a",
        "Bearer wrong-token-000000",
    ));
    assert_eq!(denied.response.status, 401);
    assert!(denied.job.is_none());
    for bad in [
        "/_edgecache/warm".to_string(),
        "/_edgecache/warm?url=ftp://x/y".to_string(),
        "/_edgecache/warm?url=/_edgecache/stats".to_string(),
        format!("/_edgecache/warm?{}", vec!["url=/x"; 101].join("&")),
    ] {
        let r = h.send(admin(&bad, &auth));
        assert_eq!(r.response.status, 400, "{bad}: {}", body_of(&r));
        assert!(r.job.is_none(), "{bad}");
    }
    assert_eq!(h.fetches(), 0);

    let warm = h.send(admin(
        "/_edgecache/warm?url=/a&url=http%3A%2F%2Fexample.com%2Fb%3Fq%3D1&url=/live/feed",
        &auth,
    ));
    assert_eq!(warm.response.status, 202);
    assert_eq!(body_of(&warm), r#"{"queued":3}"#);
    assert_eq!(h.fetches(), 0, "nothing fetched before the response");
    h.clock
        .block_on(h.engine.run_job(warm.job.expect("a warm job")));
    assert_eq!(h.fetches(), 3);
    assert_eq!(h.engine.snapshot().engine.warmed, 3);
    for path in ["/a", "/b?q=1"] {
        let hit = h.send(get(path, &[]));
        assert!(
            status_header(&hit).starts_with("edgecache-l1; hit"),
            "{path}"
        );
    }
    // The bypass route was fetched but, as for a client, not stored.
    h.send(get("/live/feed", &[]));
    assert_eq!(h.fetches(), 4);
}

/// The origin is asked for the path the response is stored under (RFC 3986 §6.2.2
/// normalisation, as in the cache key), never for a raw path it might resolve differently;
/// the query goes as received.
#[test]
fn reads_forward_the_normalised_path_the_response_is_stored_under() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "b");
    h.send(get("/a/../b%7e/./c?z=1&a=%7e", &[]));
    let forwarded = h.log.requests.borrow()[0].path_and_query.clone();
    assert_eq!(forwarded, "/b~/c?z=1&a=%7e");
    let hit = h.send(get("/b~/c?z=1&a=%7e", &[]));
    assert!(
        status_header(&hit).starts_with("edgecache-l1; hit"),
        "{}",
        status_header(&hit)
    );
    assert_eq!(h.fetches(), 1);
}

// ---------------------------------------------------------------------------------------
// One request view (engine::request): every step sees the path, authority and query the
// cache key sees, so no rule can be dodged by spelling a path another way.
// ---------------------------------------------------------------------------------------

fn routes_config() -> EngineConfig {
    use edgecache::engine::config::RouteRule;
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.into());
    config.routes.push(RouteRule {
        prefix: "/static/".into(),
        ttl_secs: Some(86_400),
        ..Default::default()
    });
    config.routes.push(RouteRule {
        prefix: "/live/".into(),
        bypass: true,
        ..Default::default()
    });
    config
}

/// `/static/../nostale/v` is `/nostale/v`: it gets that path's lifetime (the origin's two
/// seconds), not the `/static/` route's day.
#[test]
fn route_rules_match_the_normalised_path() {
    let h = harness_with(routes_config());
    h.respond(200, &[("cache-control", "max-age=2")], "v1");
    let first = h.send(get("/static/../nostale/v", &[]));
    assert!(
        status_header(&first).contains("ttl=2"),
        "{}",
        status_header(&first)
    );
    assert_eq!(h.log.requests.borrow()[0].path_and_query, "/nostale/v");
    h.clock.advance_secs(3);
    h.respond(200, &[("cache-control", "max-age=2")], "v2");
    let later = h.send(get("/nostale/v", &[]));
    assert_eq!(body_of(&later), "v2", "stale after the origin's 2 s");
    assert_eq!(h.fetches(), 2);
}

/// `/%6Cive/x` is `/live/x`: the bypass route applies, nothing is stored.
#[test]
fn bypass_routes_cannot_be_dodged_by_percent_encoding() {
    let h = harness_with(routes_config());
    for path in ["/%6Cive/x", "/%6cive/x", "/a/../live/x", "/./live/x"] {
        let r = h.send(get(path, &[]));
        assert!(
            status_header(&r).contains("fwd=bypass"),
            "{path}: {}",
            status_header(&r)
        );
    }
    assert_eq!(h.fetches(), 4, "every one forwarded, none stored");
    assert!(h
        .log
        .requests
        .borrow()
        .iter()
        .all(|r| r.path_and_query == "/live/x"));
    assert_eq!(h.engine.snapshot().engine.stored, 0);
}

/// The admin API is found by the normalised path: never forwarded to the origin, never
/// cached, whatever the spelling.
#[test]
fn admin_paths_cannot_be_reached_through_the_origin() {
    let h = harness_with(routes_config());
    for path in [
        "/x/../_edgecache/stats",
        "/%5Fedgecache/stats",
        "/%5fedgecache/stats",
        "/_edgecache/./stats",
    ] {
        let r = h.send(get(path, &[]));
        assert_eq!(r.response.status, 401, "{path}: {}", body_of(&r));
        let r = h.send(get(path, &[("authorization", &format!("Bearer {TOKEN}"))]));
        assert_eq!(r.response.status, 200, "{path}");
        assert!(body_of(&r).contains("\"engine\""), "{path}: the stats");
    }
    assert_eq!(h.fetches(), 0);
    let auth = format!("Bearer {TOKEN}");
    for url in ["/r/../_edgecache/stats", "/%5Fedgecache/stats"] {
        let r = h.send(request(
            "POST",
            &format!("/_edgecache/warm?url={}", url.replace('%', "%25")),
            &[("authorization", &auth)],
        ));
        assert_eq!(r.response.status, 400, "warm {url}: {}", body_of(&r));
        assert!(r.job.is_none());
    }
}

/// Purge and warm resolve their URLs as requests are resolved: a purge of
/// `/a/../b` removes what `/b` stored.
#[test]
fn purge_urls_are_normalised_like_requests() {
    let h = harness();
    h.send(get("/b?x=1", &[]));
    let auth = format!("Bearer {TOKEN}");
    let r = h.send(request(
        "POST",
        "/_edgecache/purge?url=%2Fa%2F..%2F%2562%3Fx%3D1",
        &[("authorization", &auth)],
    ));
    assert_eq!(
        body_of(&r),
        r#"{"colo":null,"purged":1,"reached":["l1 (this isolate)"],"soft":false}"#
    );
    let r = h.send(request(
        "POST",
        "/_edgecache/purge?url=http%3A%2F%2FEXAMPLE.com%3A80%2Fb%3Fx%3D1",
        &[("authorization", &auth)],
    ));
    assert_eq!(
        body_of(&r),
        r#"{"colo":null,"purged":0,"reached":["l1 (this isolate)"],"soft":false}"#,
        "already gone"
    );
}

fn raw(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
    Request {
        client: None,
        method: method.into(),
        scheme: "http".into(),
        target: target.into(),
        headers: Headers::from_pairs(headers.iter().copied()),
        body: None,
    }
}

/// RFC 9112 §3.2: one Host, valid, or 400; nothing reaches the origin or the cache.
#[test]
fn requests_without_exactly_one_valid_host_are_refused() {
    let h = harness();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 8] = [
        ("GET", "/a", &[], 400, "missing-host"),
        (
            "GET",
            "/a",
            &[("host", "example.com"), ("host", "evil.example")],
            400,
            "duplicate-host",
        ),
        (
            "GET",
            "/a",
            &[("host", "example.com/evil")],
            400,
            "invalid-host",
        ),
        ("GET", "/a", &[("host", "a b")], 400, "invalid-host"),
        (
            "GET",
            "/a",
            &[("host", "user@example.com")],
            400,
            "invalid-host",
        ),
        ("GET", "http://u@example.com/a", &[], 400, "invalid-host"),
        (
            "GET",
            "a/b",
            &[("host", "example.com")],
            400,
            "invalid-target",
        ),
        (
            "CONNECT",
            "example.com:443",
            &[("host", "example.com:443")],
            501,
            "connect-unsupported",
        ),
    ];
    for (method, target, headers, status, detail) in cases {
        let r = h.send(raw(method, target, headers));
        assert_eq!(r.response.status, status, "{method} {target} {headers:?}");
        assert!(
            status_header(&r).contains(&format!("detail={detail}")),
            "{method} {target}: {}",
            status_header(&r)
        );
    }
    assert_eq!(h.fetches(), 0);
    let stats = h.engine.snapshot().engine;
    assert_eq!(stats.bad_requests, cases.len() as u64);
    assert_eq!(stats.requests, 0);
    let options = h.send(raw("OPTIONS", "*", &[("host", "example.com")]));
    assert_eq!(options.response.status, 200);
    assert!(options.response.headers.contains("allow"));
    assert_eq!(h.fetches(), 0, "OPTIONS * is the cache's to answer");
}

/// An absolute-form target names the authority (RFC 9112 §3.2.2); a Host field beside it is
/// ignored, for the key and for the origin alike.
#[test]
fn an_absolute_target_decides_the_authority() {
    let h = harness();
    h.send(raw(
        "GET",
        "http://Example.COM:80/p?q",
        &[("host", "evil.example")],
    ));
    let sent = &h.log.requests.borrow()[0];
    assert_eq!(sent.host, "example.com");
    assert_eq!(sent.path_and_query, "/p?q");
    assert!(
        !sent.headers.contains("host"),
        "the origin request carries it"
    );
    drop(h.log.requests.borrow());
    let hit = h.send(get("/p?q", &[]));
    assert!(
        status_header(&hit).starts_with("edgecache-l1; hit"),
        "{}",
        status_header(&hit)
    );
}

/// Repeated query parameters keep their order in the key: an origin reading the first
/// value answers `?a=evil&a=good` and `?a=good&a=evil` differently.
#[test]
fn repeated_query_parameters_are_distinct_requests() {
    let h = harness();
    h.respond(200, &[("cache-control", "max-age=60")], "evil");
    h.respond(200, &[("cache-control", "max-age=60")], "good");
    assert_eq!(body_of(&h.send(get("/s?a=evil&a=good", &[]))), "evil");
    assert_eq!(body_of(&h.send(get("/s?a=good&a=evil", &[]))), "good");
    assert_eq!(h.fetches(), 2);
    assert_eq!(
        body_of(&h.send(get("/s?a=good&z=1&a=evil", &[]))),
        "default body"
    );
    assert_eq!(
        body_of(&h.send(get("/s?z=1&a=good&a=evil", &[]))),
        "default body"
    );
    assert_eq!(h.fetches(), 3, "other names still sort");
}

/// Configured paths are compared with normalised request paths, so one no request could
/// equal is refused at start, naming the field and the form to write.
#[test]
fn configured_paths_must_be_in_normal_form() {
    use edgecache::engine::config::RouteRule;
    let mut config = EngineConfig::default();
    config.routes.push(RouteRule {
        prefix: "/%7Euser/".into(),
        bypass: true,
        ..Default::default()
    });
    let e = config.validate().unwrap_err().to_string();
    assert!(
        e.contains("routes[0].prefix") && e.contains("/~user/"),
        "{e}"
    );
    let mut config = EngineConfig::default();
    config.admin.path = "/a/../_admin".into();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("admin.path") && e.contains("/_admin"), "{e}");
    let mut config = EngineConfig::default();
    config.write_behind.routes = vec!["/api/./v1/".into()];
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("write_behind.routes[0]"), "{e}");
    let mut config = EngineConfig::default();
    config.routes.push(RouteRule {
        prefix: "/static/".into(),
        ttl_secs: Some(60),
        ..Default::default()
    });
    assert!(config.validate().is_ok());
}

/// The colo tier is on by default and works without the shared tier (purges then reach
/// other colos through Cloudflare's purge API, or by expiry within `colo.max_ttl_secs`);
/// a zero cap is refused.
#[test]
fn the_colo_tier_is_on_by_default_without_the_shared_tier() {
    let mut config = EngineConfig::default();
    assert!(config.colo.enabled);
    assert_eq!(config.colo.max_ttl_secs, 60);
    assert!(config.validate_shared_tier(false).is_ok());
    config.colo.max_ttl_secs = 0;
    assert_eq!(config.validate().unwrap_err().field, "colo.max_ttl_secs");
}

/// RFC 9111 §5.2.2.7: fields named by a qualified `private` are never served from the
/// cache, also when a route's TTL override decides the lifetime (the override is this
/// cache's own targeted field; what may be stored is still the origin's to say).
#[test]
fn qualified_private_fields_are_stripped_under_a_route_override() {
    use edgecache::engine::config::RouteRule;
    let mut config = EngineConfig::default();
    config.routes.push(RouteRule {
        prefix: "/static/".into(),
        ttl_secs: Some(300),
        ..Default::default()
    });
    let h = harness_with(config);
    h.respond(
        200,
        &[
            ("cache-control", "private=\"x-user\", max-age=5"),
            ("x-user", "alice"),
        ],
        "asset",
    );
    let first = h.send(get("/static/app.js", &[]));
    assert_eq!(
        first.response.fields().get_str("x-user"),
        Some("alice"),
        "the filling response carries it"
    );
    let hit = h.send(get("/static/app.js", &[]));
    assert!(
        status_header(&hit).starts_with("edgecache-l1; hit"),
        "{}",
        status_header(&hit)
    );
    assert_eq!(
        hit.response.fields().get_str("x-user"),
        None,
        "never from the cache"
    );
}

/// One decision per response: a miss works out the response's cache directives once (the
/// storage decision, the stored figures, L1's windows and Cache-Status all take that), and
/// a hit not at all.
#[test]
fn a_miss_parses_the_response_directives_once_and_a_hit_never() {
    use edgecache::cache_control::response_directive_parses;
    let h = harness();
    h.respond(
        200,
        &[
            ("cache-control", "max-age=60, stale-while-revalidate=30"),
            ("etag", "\"v1\""),
        ],
        "body",
    );
    let before = response_directive_parses();
    let miss = h.send(get("/once", &[]));
    assert!(
        status_header(&miss).contains("stored"),
        "{}",
        status_header(&miss)
    );
    assert_eq!(
        response_directive_parses() - before,
        1,
        "one parse for the miss"
    );
    let before = response_directive_parses();
    let hit = h.send(get("/once", &[]));
    assert!(status_header(&hit).starts_with("edgecache-l1; hit"));
    assert_eq!(response_directive_parses() - before, 0, "none for the hit");
}

/// A route that keys on request fields (`key_headers`) stores one entry per value (they are
/// added to the response's Vary), and a forwarding field it keys on reaches the origin as
/// the client sent it; elsewhere the cache's own replaces it.
#[test]
fn a_route_can_key_on_a_forwarding_field() {
    use edgecache::engine::config::RouteRule;
    let mut config = EngineConfig::default();
    config.routes.push(RouteRule {
        prefix: "/sites/".into(),
        key_headers: vec!["x-forwarded-host".into()],
        ..Default::default()
    });
    let h = harness_with(config);
    let sent_host = |i: usize| {
        h.log.requests.borrow()[i]
            .headers
            .get_str("x-forwarded-host")
            .map(String::from)
    };
    h.respond(200, &[("cache-control", "max-age=60")], "for a");
    let a = h.send(get("/sites/home", &[("x-forwarded-host", "a.example")]));
    assert_eq!(body_of(&a), "for a");
    assert_eq!(sent_host(0).as_deref(), Some("a.example"));
    assert!(a
        .response
        .fields()
        .get_str("vary")
        .unwrap_or("")
        .contains("x-forwarded-host"));
    h.respond(200, &[("cache-control", "max-age=60")], "for b");
    let b = h.send(get("/sites/home", &[("x-forwarded-host", "b.example")]));
    assert_eq!(body_of(&b), "for b", "another value, another entry");
    let a_again = h.send(get("/sites/home", &[("x-forwarded-host", "a.example")]));
    assert_eq!(body_of(&a_again), "for a");
    assert!(status_header(&a_again).starts_with("edgecache-l1; hit"));
    assert_eq!(h.fetches(), 2);

    h.send(get("/other", &[("x-forwarded-host", "evil.example")]));
    assert_eq!(
        sent_host(2).as_deref(),
        Some("example.com"),
        "not keyed: replaced"
    );

    let mut bad = EngineConfig::default();
    bad.routes.push(RouteRule {
        prefix: "/x/".into(),
        key_headers: vec!["x-http-method-override".into()],
        ..Default::default()
    });
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("routes[0].key_headers[0]"), "{e}");
    bad.routes[0].key_headers = vec!["x_http_method_override".into()];
    assert!(bad.validate().is_err(), "the CGI spelling of an override");

    // Where nothing is stored, nothing keys on the field: a write carries the cache's own.
    h.send(request(
        "POST",
        "/sites/home",
        &[("x-forwarded-host", "evil.example")],
    ));
    assert_eq!(sent_host(3).as_deref(), Some("example.com"));
}

/// A 304 is kept like any response (RFC 9111 §4.3.4 merges its fields): a `Vary` it brings
/// does not drop the route's key fields, and a field a qualified `private` names, arriving
/// with the 304, is not stored either.
#[test]
fn a_freshened_response_goes_through_the_same_decision() {
    use edgecache::engine::config::RouteRule;
    let mut config = EngineConfig::default();
    config.routes.push(RouteRule {
        prefix: "/sites/".into(),
        key_headers: vec!["x-forwarded-host".into()],
        ..Default::default()
    });
    let h = harness_with(config);
    let a = [("x-forwarded-host", "a.example")];
    let b = [("x-forwarded-host", "b.example")];
    h.respond(
        200,
        &[
            ("cache-control", "max-age=1, private=\"x-user\""),
            ("etag", "\"a1\""),
        ],
        "site a",
    );
    assert_eq!(body_of(&h.send(get("/sites/p", &a))), "site a");
    h.clock.advance_secs(5);
    h.respond(
        304,
        &[
            ("cache-control", "max-age=60, private=\"x-user\""),
            ("etag", "\"a1\""),
            ("vary", "accept-encoding"),
            ("x-user", "bob"),
        ],
        "",
    );
    let revalidated = h.send(get("/sites/p", &a));
    assert_eq!(body_of(&revalidated), "site a");
    assert_eq!(h.fetches(), 2, "revalidated");
    let hit = h.send(get("/sites/p", &a));
    assert!(
        status_header(&hit).starts_with("edgecache-l1; hit"),
        "{}",
        status_header(&hit)
    );
    assert_eq!(
        hit.response.fields().get_str("x-user"),
        None,
        "withheld after the 304 too"
    );
    h.respond(200, &[("cache-control", "max-age=60")], "site b");
    let other_site = h.send(get("/sites/p", &b));
    assert_eq!(
        body_of(&other_site),
        "site b",
        "still keyed on the host after the 304"
    );
    assert_eq!(h.fetches(), 3);
}

/// A 304 that makes a stored response unstorable (it brings `no-store`) removes it: this
/// request is answered from it once, the next one goes to the origin, and the job the
/// response carries removes it from the other tiers and instances too.
#[test]
fn a_304_that_forbids_storing_removes_the_stored_response() {
    let h = harness();
    h.respond(
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"v\"")],
        "old",
    );
    h.send(get("/gone", &[]));
    h.clock.advance_secs(5);
    h.respond(304, &[("cache-control", "no-store"), ("etag", "\"v\"")], "");
    let answered = h.send(get("/gone", &[]));
    assert_eq!(body_of(&answered), "old");
    assert!(
        status_header(&answered).contains("detail=no-store"),
        "{}",
        status_header(&answered)
    );
    assert!(
        matches!(answered.job, Some(edgecache::engine::Job::Invalidate(_))),
        "{:?}",
        answered.job
    );
    h.respond(200, &[("cache-control", "max-age=60")], "new");
    assert_eq!(body_of(&h.send(get("/gone", &[]))), "new");
    assert_eq!(h.fetches(), 3);
}
