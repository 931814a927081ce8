//! The JS facade's test suite (`src/wasm`), shared by `tests/wasm_node.rs` (Node.js) and
//! `tests/wasm_browser.rs` (headless Chromium). Every test drives the exported API as JS
//! would: options objects, JS loader functions, promises, thrown errors.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use edgecache::wasm::analyze::analyze_headers;
use edgecache::wasm::bench::bench_l1;
use edgecache::wasm::cache::EdgeCache;
use edgecache::wasm::sim::simulate;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::wasm_bindgen_test;

// ---------------------------------------------------------------------------------------
// helpers

/// Parses a JS object literal (tests write options as JS would).
fn js(source: &str) -> JsValue {
    Function::new_no_args(&format!("return ({source});"))
        .call0(&JsValue::NULL)
        .expect("valid JS literal")
}

fn get(v: &JsValue, path: &str) -> JsValue {
    path.split('.').fold(v.clone(), |v, k| {
        Reflect::get(&v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
    })
}

fn num(v: &JsValue, path: &str) -> f64 {
    get(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {:?}", get(v, path)))
}

fn string(v: &JsValue, path: &str) -> String {
    get(v, path)
        .as_string()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", get(v, path)))
}

fn boolean(v: &JsValue, path: &str) -> bool {
    get(v, path)
        .as_bool()
        .unwrap_or_else(|| panic!("{path} is not a boolean: {:?}", get(v, path)))
}

/// The message of a thrown error, which must be a JS `Error`.
fn message(e: impl Into<JsValue>) -> String {
    let e: JsValue = e.into();
    assert!(e.is_instance_of::<js_sys::Error>(), "not an Error: {e:?}");
    string(&e, "message")
}

fn expect_err<T>(r: Result<T, JsError>, needle: &str) {
    match r {
        Ok(_) => panic!("expected an error mentioning {needle:?}"),
        Err(e) => {
            let m = message(e);
            assert!(
                m.contains(needle),
                "error {m:?} does not mention {needle:?}"
            );
        }
    }
}

/// A clock the test moves: `options.clock` for `EdgeCache`.
struct TestClock {
    now: Rc<Cell<f64>>,
    function: Closure<dyn FnMut() -> f64>,
}

impl TestClock {
    fn new() -> TestClock {
        let now = Rc::new(Cell::new(1_700_000_000_000.0));
        let n = now.clone();
        TestClock {
            now,
            function: Closure::new(move || n.get()),
        }
    }
    fn advance(&self, ms: f64) {
        self.now.set(self.now.get() + ms);
    }
    /// `options` with this clock added.
    fn options(&self, literal: &str) -> JsValue {
        let o = js(literal);
        Reflect::set(&o, &JsValue::from_str("clock"), self.function.as_ref()).unwrap();
        o
    }
}

/// Awaits a JS promise.
fn settle(p: &Promise) -> impl Future<Output = Result<JsValue, JsValue>> {
    type Slot = Rc<RefCell<(Option<Result<JsValue, JsValue>>, Option<Waker>)>>;
    let slot: Slot = Rc::new(RefCell::new((None, None)));
    let finish = |slot: Slot, ok: bool| {
        Closure::<dyn FnMut(JsValue)>::once_into_js(move |v: JsValue| {
            let waker = {
                let mut s = slot.borrow_mut();
                s.0 = Some(if ok { Ok(v) } else { Err(v) });
                s.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        })
    };
    let then: Function = Reflect::get(p, &JsValue::from_str("then"))
        .unwrap()
        .dyn_into()
        .unwrap();
    then.call2(p, &finish(slot.clone(), true), &finish(slot.clone(), false))
        .unwrap();
    std::future::poll_fn(move |cx| {
        let mut s = slot.borrow_mut();
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
}

/// A loader whose promises the test settles by hand: `calls` lists the keys it was called
/// with, `pending` holds `{res, rej}` per call.
struct Loader {
    state: JsValue,
    function: JsValue,
}

impl Loader {
    fn new() -> Loader {
        let state = js("{ calls: [], pending: [] }");
        let make = Function::new_with_args(
            "s",
            "return (key) => { s.calls.push(key); return new Promise((res, rej) => s.pending.push({ res, rej })); };",
        );
        let function = make.call1(&JsValue::NULL, &state).unwrap();
        Loader { state, function }
    }
    fn calls(&self) -> u32 {
        get(&self.state, "calls").unchecked_into::<Array>().length()
    }
    fn settle(&self, index: u32, ok: bool, value: &JsValue) {
        let pending: Array = get(&self.state, "pending").unchecked_into();
        let entry = pending.get(index);
        let f: Function = get(&entry, if ok { "res" } else { "rej" }).unchecked_into();
        f.call1(&JsValue::NULL, value).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// EdgeCache: synchronous API

#[wasm_bindgen_test]
fn version_is_the_crate_version() {
    assert_eq!(edgecache::wasm::version(), env!("CARGO_PKG_VERSION"));
}

#[wasm_bindgen_test]
fn set_get_delete_and_stats() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{ maxEntries: 100 }")).unwrap();
    assert!(cache.get(JsValue::from_str("a")).unwrap().is_undefined());
    assert!(cache
        .set("a".into(), js("{ n: 1 }"), JsValue::UNDEFINED)
        .unwrap());
    let v = cache.get("a".into()).unwrap();
    assert_eq!(num(&v, "n"), 1.0);
    assert!(cache.has("a".into()).unwrap());
    assert_eq!(cache.size(), 1);
    assert_eq!(cache.keys().length(), 1);
    let stats = cache.stats().unwrap();
    assert_eq!(num(&stats, "hits"), 1.0);
    assert_eq!(num(&stats, "misses"), 1.0);
    assert_eq!(num(&stats, "entries"), 1.0);
    assert_eq!(num(&stats, "hitRatio"), 0.5);
    assert!(num(&stats, "bytes") > 0.0);
    assert!(cache.delete("a".into()).unwrap());
    assert!(!cache.delete("a".into()).unwrap());
    assert!(cache.get("a".into()).unwrap().is_undefined());
}

#[wasm_bindgen_test]
fn ttl_and_stale_windows_follow_the_clock() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{}")).unwrap();
    let opts = js("{ ttlMs: 1000, staleWhileRevalidateMs: 1000, staleIfErrorMs: 5000 }");
    cache.set("k".into(), "v".into(), opts).unwrap();
    assert_eq!(string(&cache.lookup("k".into()).unwrap(), "state"), "fresh");
    clock.advance(999.0);
    assert_eq!(
        cache.get("k".into()).unwrap().as_string().as_deref(),
        Some("v")
    );
    clock.advance(1.0);
    // Stale, inside stale-while-revalidate: still served by get (RFC 5861 §3).
    let info = cache.lookup("k".into()).unwrap();
    assert_eq!(string(&info, "state"), "stale-while-revalidate");
    assert_eq!(num(&info, "ttlMs"), 0.0);
    assert_eq!(
        cache.get("k".into()).unwrap().as_string().as_deref(),
        Some("v")
    );
    clock.advance(1500.0);
    // Only inside stale-if-error: not served without an error.
    assert_eq!(
        string(&cache.lookup("k".into()).unwrap(), "state"),
        "stale-if-error"
    );
    assert!(cache.get("k".into()).unwrap().is_undefined());
    clock.advance(10_000.0);
    assert!(cache.get("k".into()).unwrap().is_undefined());
    assert!(!cache.has("k".into()).unwrap());
    assert_eq!(num(&cache.stats().unwrap(), "expirations"), 1.0);
}

#[wasm_bindgen_test]
fn default_ttl_comes_from_the_cache_options() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{ ttlMs: 50 }")).unwrap();
    cache.set("k".into(), "v".into(), JsValue::NULL).unwrap();
    clock.advance(49.0);
    assert!(!cache.get("k".into()).unwrap().is_undefined());
    clock.advance(1.0);
    assert!(cache.get("k".into()).unwrap().is_undefined());
}

#[wasm_bindgen_test]
fn tags_purges_and_soft_purges() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{ ttlMs: 60000 }")).unwrap();
    cache
        .set("p1".into(), "1".into(), js("{ tags: ['product', 'p1'] }"))
        .unwrap();
    cache
        .set(
            "p2".into(),
            "2".into(),
            js("{ tags: ['product'], staleWhileRevalidateMs: 1000 }"),
        )
        .unwrap();
    cache
        .set("home".into(), "h".into(), js("{ tags: ['page'] }"))
        .unwrap();
    assert_eq!(cache.soft_purge_tag("product".into()).unwrap(), 2);
    // p2 has a stale-while-revalidate window: still usable stale; p1 has none: gone.
    assert_eq!(
        string(&cache.lookup("p2".into()).unwrap(), "state"),
        "stale-while-revalidate"
    );
    assert!(cache.get("p1".into()).unwrap().is_undefined());
    assert_eq!(cache.purge_tag("product".into()).unwrap(), 1);
    assert_eq!(cache.purge_tag("nothing".into()).unwrap(), 0);
    assert_eq!(cache.size(), 1);
    assert!(cache.soft_purge("home".into()).unwrap());
    assert!(cache.get("home".into()).unwrap().is_undefined());
    cache
        .set("a".into(), "a".into(), JsValue::UNDEFINED)
        .unwrap();
    // "home" had no stale window: the soft purge expired it and the get above removed it.
    assert_eq!(cache.purge_all(), 1);
    assert_eq!(cache.size(), 0);
}

#[wasm_bindgen_test]
fn bounds_evict_and_refuse() {
    let cache = EdgeCache::new(js("{ maxEntries: 2, maxBytes: 1000, admission: 'lru' }")).unwrap();
    for k in ["a", "b", "c"] {
        assert!(cache.set(k.into(), k.into(), js("{ size: 10 }")).unwrap());
    }
    assert_eq!(cache.size(), 2);
    assert!(
        cache.get("a".into()).unwrap().is_undefined(),
        "least recently used goes first"
    );
    assert_eq!(num(&cache.stats().unwrap(), "evictions"), 1.0);
    assert!(!cache
        .set("big".into(), "x".into(), js("{ size: 5000 }"))
        .unwrap());
    assert_eq!(num(&cache.stats().unwrap(), "tooLarge"), 1.0);
    assert_eq!(num(&cache.stats().unwrap(), "maxEntries"), 2.0);
}

#[wasm_bindgen_test]
fn bad_input_throws_errors_with_clear_messages() {
    expect_err(EdgeCache::new(js("{ maxEntries: -1 }")), "maxEntries");
    expect_err(EdgeCache::new(js("{ maxEntrys: 10 }")), "maxEntrys");
    expect_err(EdgeCache::new(js("{ admission: 'fifo' }")), "admission");
    expect_err(EdgeCache::new(js("{ clock: 5 }")), "clock");
    expect_err(EdgeCache::new(JsValue::from_f64(5.0)), "must be an object");
    expect_err(EdgeCache::new(js("{ ttlMs: 'soon' }")), "ttlMs");
    expect_err(
        EdgeCache::new(js("{ ttlMs: Infinity, maxBytes: 1e300 }")),
        "maxBytes",
    );
    let cyclic = js("(() => { const o = {}; o.o = o; return o; })()");
    expect_err(EdgeCache::new(cyclic), "JSON");
    let cache = EdgeCache::new(JsValue::UNDEFINED).unwrap();
    expect_err(cache.get(JsValue::from_f64(42.0)), "key must be a string");
    expect_err(
        cache.set("k".into(), JsValue::UNDEFINED, JsValue::UNDEFINED),
        "undefined",
    );
    expect_err(
        cache.set("k".into(), "v".into(), js("{ ttlMs: -5 }")),
        "ttlMs",
    );
    expect_err(
        cache.set("k".into(), "v".into(), js("{ tags: 'x' }")),
        "entry options",
    );
    expect_err(cache.purge_tag(JsValue::NULL), "tag must be a string");
    expect_err(
        cache.get_or_insert("k".into(), "not a function".into(), JsValue::UNDEFINED),
        "loader",
    );
    let broken = EdgeCache::new(js("{ clock: () => 'noon' }")).unwrap();
    expect_err(broken.get("k".into()), "clock");
    let throwing = EdgeCache::new(js("{ clock: () => { throw new Error('x'); } }")).unwrap();
    expect_err(throwing.get("k".into()), "clock threw");
}

// ---------------------------------------------------------------------------------------
// EdgeCache: getOrInsert

#[wasm_bindgen_test]
async fn get_or_insert_coalesces_concurrent_loads() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{ ttlMs: 1000 }")).unwrap();
    let loader = Loader::new();
    let a = cache
        .get_or_insert("k".into(), loader.function.clone(), JsValue::UNDEFINED)
        .unwrap();
    let b = cache
        .get_or_insert("k".into(), loader.function.clone(), JsValue::UNDEFINED)
        .unwrap();
    let other = cache
        .get_or_insert("other".into(), loader.function.clone(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(loader.calls(), 2, "one call for k, one for other");
    assert_eq!(num(&cache.stats().unwrap(), "inflight"), 2.0);
    loader.settle(0, true, &"loaded".into());
    loader.settle(1, true, &"o".into());
    assert_eq!(
        settle(&a).await.unwrap().as_string().as_deref(),
        Some("loaded")
    );
    assert_eq!(
        settle(&b).await.unwrap().as_string().as_deref(),
        Some("loaded")
    );
    assert_eq!(
        settle(&other).await.unwrap().as_string().as_deref(),
        Some("o")
    );
    let stats = cache.stats().unwrap();
    assert_eq!(num(&stats, "coalesced"), 1.0);
    assert_eq!(num(&stats, "loads"), 2.0);
    assert_eq!(num(&stats, "inflight"), 0.0);
    // Now cached: no loader call.
    let c = cache
        .get_or_insert("k".into(), loader.function.clone(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(
        settle(&c).await.unwrap().as_string().as_deref(),
        Some("loaded")
    );
    assert_eq!(loader.calls(), 2);
}

#[wasm_bindgen_test]
async fn get_or_insert_serves_stale_while_revalidating() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{}")).unwrap();
    let loader = Loader::new();
    let opts = "{ ttlMs: 1000, staleWhileRevalidateMs: 5000 }";
    let first = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    loader.settle(0, true, &"v1".into());
    assert_eq!(
        settle(&first).await.unwrap().as_string().as_deref(),
        Some("v1")
    );
    clock.advance(2000.0);
    let stale = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    assert_eq!(
        settle(&stale).await.unwrap().as_string().as_deref(),
        Some("v1"),
        "stale at once"
    );
    assert_eq!(loader.calls(), 2, "refresh started in the background");
    let again = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    assert_eq!(
        settle(&again).await.unwrap().as_string().as_deref(),
        Some("v1")
    );
    assert_eq!(loader.calls(), 2, "one refresh however many stale hits");
    loader.settle(1, true, &"v2".into());
    // Let the refresh's handlers run.
    settle(&Promise::resolve(&JsValue::NULL)).await.unwrap();
    settle(&Promise::resolve(&JsValue::NULL)).await.unwrap();
    assert_eq!(
        cache.get("k".into()).unwrap().as_string().as_deref(),
        Some("v2")
    );
    assert_eq!(string(&cache.lookup("k".into()).unwrap(), "state"), "fresh");
    let stats = cache.stats().unwrap();
    assert_eq!(num(&stats, "staleWhileRevalidateServed"), 2.0);
    assert_eq!(num(&stats, "backgroundRefreshes"), 1.0);
}

#[wasm_bindgen_test]
async fn get_or_insert_serves_stale_if_the_loader_fails() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{}")).unwrap();
    let loader = Loader::new();
    let opts = "{ ttlMs: 1000, staleIfErrorMs: 10000 }";
    let first = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    loader.settle(0, true, &"v1".into());
    settle(&first).await.unwrap();
    clock.advance(5000.0);
    let p = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    loader.settle(1, false, &js("new Error('origin down')"));
    assert_eq!(settle(&p).await.unwrap().as_string().as_deref(), Some("v1"));
    assert_eq!(num(&cache.stats().unwrap(), "staleIfErrorServed"), 1.0);
    // Past the stale-if-error window, the loader's own error comes through.
    clock.advance(20_000.0);
    let p = cache
        .get_or_insert("k".into(), loader.function.clone(), js(opts))
        .unwrap();
    loader.settle(2, false, &js("new Error('origin down')"));
    let err = settle(&p).await.unwrap_err();
    assert_eq!(message(err), "origin down");
    assert_eq!(num(&cache.stats().unwrap(), "loadErrors"), 2.0);
}

/// Callers that waited for another's load get its outcome too, failure included: the
/// stale value inside `stale-if-error`, else the loader's own error; one loader call each
/// time.
#[wasm_bindgen_test]
async fn waiting_callers_share_the_loads_failure() {
    let clock = TestClock::new();
    let cache = EdgeCache::new(clock.options("{}")).unwrap();
    let loader = Loader::new();
    let opts = "{ ttlMs: 1000, staleIfErrorMs: 10000 }";
    let call = || {
        cache
            .get_or_insert("k".into(), loader.function.clone(), js(opts))
            .unwrap()
    };
    let first = call();
    loader.settle(0, true, &"v1".into());
    settle(&first).await.unwrap();
    clock.advance(5000.0);
    let (a, b) = (call(), call());
    assert_eq!(
        loader.calls(),
        2,
        "the second caller waits for the first's load"
    );
    loader.settle(1, false, &js("new Error('origin down')"));
    for p in [&a, &b] {
        assert_eq!(settle(p).await.unwrap().as_string().as_deref(), Some("v1"));
    }
    clock.advance(20_000.0);
    let (a, b) = (call(), call());
    assert_eq!(loader.calls(), 3);
    loader.settle(2, false, &js("new Error('origin down')"));
    for p in [a, b] {
        assert_eq!(message(settle(&p).await.unwrap_err()), "origin down");
    }
    assert_eq!(num(&cache.stats().unwrap(), "inflight"), 0.0);
}

#[wasm_bindgen_test]
async fn get_or_insert_handles_sync_loaders_throws_and_undefined() {
    let cache = EdgeCache::new(JsValue::UNDEFINED).unwrap();
    let plain = Function::new_with_args("key", "return key.toUpperCase();");
    let p = cache
        .get_or_insert("abc".into(), plain.into(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(
        settle(&p).await.unwrap().as_string().as_deref(),
        Some("ABC")
    );
    assert_eq!(
        cache.get("abc".into()).unwrap().as_string().as_deref(),
        Some("ABC")
    );
    let throws = Function::new_with_args("key", "throw new TypeError('boom ' + key);");
    let p = cache
        .get_or_insert("t".into(), throws.into(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(message(settle(&p).await.unwrap_err()), "boom t");
    let undef = Function::new_with_args("key", "return undefined;");
    let p = cache
        .get_or_insert("u".into(), undef.into(), JsValue::UNDEFINED)
        .unwrap();
    assert!(message(settle(&p).await.unwrap_err()).contains("undefined"));
    assert!(!cache.has("u".into()).unwrap());
}

// ---------------------------------------------------------------------------------------
// analyzeHeaders

fn analyze(input: &str) -> JsValue {
    analyze_headers(js(input)).unwrap_or_else(|e| panic!("analyze failed: {}", message(e)))
}

fn warning_codes(report: &JsValue) -> Vec<String> {
    get(report, "warnings")
        .unchecked_into::<Array>()
        .iter()
        .map(|w| string(&w, "code"))
        .collect()
}

fn timeline_decisions(report: &JsValue) -> Vec<(String, String)> {
    get(report, "timeline")
        .unchecked_into::<Array>()
        .iter()
        .map(|m| (string(&m, "decision"), string(&m, "cacheStatus")))
        .collect()
}

#[wasm_bindgen_test]
fn analyzer_explains_a_plain_max_age() {
    let r = analyze_headers("Cache-Control: public, max-age=3600\nETag: \"v1\"".into()).unwrap();
    assert!(boolean(&r, "storable"));
    assert_eq!(num(&r, "freshness.lifetimeSecs"), 3600.0);
    assert_eq!(string(&r, "freshness.source"), "max-age");
    assert_eq!(string(&r, "freshness.rfc"), "RFC 9111 §5.2.2.1");
    assert_eq!(
        string(&r, "cacheStatus.onFetch"),
        "edgecache-l1; fwd=uri-miss; fwd-status=200; ttl=3600; stored"
    );
    assert_eq!(
        string(&r, "cacheStatus.onRepeat"),
        "edgecache-l1; hit; ttl=3600"
    );
    assert!(string(&r, "verdict").contains("fresh for 1 h"));
    assert_eq!(string(&r, "now.decision"), "fresh");
    let cond = get(&r, "validators.conditionalRequest").unchecked_into::<Array>();
    assert_eq!(cond.length(), 1);
    assert!(!warning_codes(&r).contains(&String::from("missing-validator")));
    let decisions = timeline_decisions(&r);
    assert_eq!(decisions.first().map(|d| d.0.as_str()), Some("fresh"));
    let last = decisions.last().unwrap();
    assert_eq!(last.0, "revalidate");
    assert!(last.1.contains("fwd=stale; fwd-status=304"), "{}", last.1);
}

#[wasm_bindgen_test]
fn analyzer_flags_private_with_max_age() {
    let r = analyze("{ responseHeaders: 'Cache-Control: private, max-age=600' }");
    assert!(!boolean(&r, "storable"));
    assert_eq!(string(&r, "reasonCode"), "private");
    assert_eq!(string(&r, "reason.rfc"), "RFC 9111 §5.2.2.7");
    assert!(warning_codes(&r).contains(&String::from("private-with-max-age")));
    assert_eq!(
        string(&r, "cacheStatus.onFetch"),
        "edgecache-l1; fwd=uri-miss; fwd-status=200; detail=private"
    );
    assert!(string(&r, "verdict").starts_with("Not stored"));
}

#[wasm_bindgen_test]
fn analyzer_explains_no_cache_is_not_no_store() {
    let r = analyze("{ responseHeaders: { 'cache-control': 'no-cache', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' } }");
    assert!(boolean(&r, "storable"));
    assert_eq!(string(&r, "now.decision"), "revalidate");
    assert_eq!(string(&r, "now.revalidateReason"), "response-no-cache");
    assert!(warning_codes(&r).contains(&String::from("no-cache-is-not-no-store")));
    let r = analyze("{ responseHeaders: 'Cache-Control: no-store, max-age=60' }");
    assert_eq!(string(&r, "reasonCode"), "no-store");
    assert!(warning_codes(&r).contains(&String::from("no-store-with-freshness")));
}

#[wasm_bindgen_test]
fn analyzer_reports_stale_windows_and_their_cache_status() {
    let r = analyze("{ responseHeaders: 'Cache-Control: max-age=60, stale-while-revalidate=30, stale-if-error=600' }");
    assert_eq!(num(&r, "staleWhileRevalidateSecs"), 30.0);
    assert_eq!(num(&r, "staleIfErrorSecs"), 600.0);
    assert!(warning_codes(&r).contains(&String::from("missing-validator")));
    let decisions = timeline_decisions(&r);
    let swr: Vec<&String> = decisions
        .iter()
        .filter(|d| d.0 == "stale-while-revalidate")
        .map(|d| &d.1)
        .collect();
    assert_eq!(
        swr.len(),
        2,
        "freshness ends, end of the window: {decisions:?}"
    );
    assert_eq!(
        swr[0],
        "edgecache-l1; hit; ttl=0; detail=stale-while-revalidate"
    );
    assert_eq!(
        swr[1],
        "edgecache-l1; hit; ttl=-30; detail=stale-while-revalidate"
    );
    let on_error = get(&r, "timeline")
        .unchecked_into::<Array>()
        .iter()
        .filter_map(|m| get(&m, "cacheStatusOnError").as_string())
        .next()
        .expect("a moment served stale on error");
    assert!(on_error.contains("detail=stale-if-error"));
    // s-maxage implies proxy-revalidate: the stale directives are ignored (RFC 9111 §5.2.2.10).
    let r = analyze("{ responseHeaders: 'Cache-Control: s-maxage=60, stale-while-revalidate=30' }");
    assert_eq!(num(&r, "staleWhileRevalidateSecs"), 0.0);
    assert_eq!(string(&r, "freshness.source"), "s-maxage");
    assert!(warning_codes(&r).contains(&String::from("stale-directives-ignored")));
}

#[wasm_bindgen_test]
fn analyzer_handles_authorization_vary_and_targeted_fields() {
    let r = analyze("{ responseHeaders: 'Cache-Control: max-age=60', requestHeaders: 'Authorization: Bearer x' }");
    assert_eq!(string(&r, "reasonCode"), "authorization");
    assert_eq!(string(&r, "reason.rfc"), "RFC 9111 §3.5");
    let r = analyze("{ responseHeaders: 'Cache-Control: public, max-age=60', requestHeaders: 'Authorization: Bearer x' }");
    assert!(boolean(&r, "storable"));
    assert!(warning_codes(&r).contains(&String::from("shared-despite-authorization")));

    let r = analyze("{ responseHeaders: 'Cache-Control: max-age=60\\nVary: Accept-Encoding, User-Agent', requestHeaders: 'Accept-Encoding: GZIP, br' }");
    let fields = get(&r, "vary.fields").unchecked_into::<Array>();
    assert_eq!(fields.length(), 2);
    let selected = get(&r, "vary.selected").unchecked_into::<Array>();
    assert_eq!(selected.length(), 1);
    assert_eq!(
        selected
            .get(0)
            .unchecked_into::<Array>()
            .get(1)
            .as_string()
            .as_deref(),
        Some("gzip, br")
    );
    assert!(warning_codes(&r).contains(&String::from("vary-fragments-cache")));

    let r =
        analyze("{ responseHeaders: 'Cache-Control: no-store\\nCDN-Cache-Control: max-age=300' }");
    assert!(
        boolean(&r, "storable"),
        "CDN-Cache-Control takes precedence (RFC 9213)"
    );
    assert_eq!(string(&r, "directives.source"), "cdn-cache-control");
    assert_eq!(num(&r, "freshness.lifetimeSecs"), 300.0);

    let r = analyze("{ responseHeaders: 'Cache-Control: max-age=60\\nVary: *' }");
    assert_eq!(string(&r, "reasonCode"), "vary-star");
}

#[wasm_bindgen_test]
fn analyzer_reads_status_lines_dates_and_times() {
    let r = analyze_headers(
        "HTTP/1.1 404 Not Found\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nLast-Modified: Sun, 31 Dec 2023 00:00:00 GMT\r\n".into(),
    )
    .unwrap();
    assert_eq!(num(&r, "status"), 404.0);
    assert_eq!(string(&r, "freshness.source"), "heuristic");
    assert_eq!(num(&r, "freshness.lifetimeSecs"), 8640.0, "10% of a day");
    assert!(warning_codes(&r).contains(&String::from("heuristic-freshness")));

    let r = analyze(
        "{ responseHeaders: 'Cache-Control: max-age=100\\nAge: 30', responseTime: 1700000000000, now: 1700000050000 }",
    );
    assert_eq!(
        num(&r, "ageSecs"),
        80.0,
        "Age 30 + 50 s resident (RFC 9111 §4.2.3)"
    );
    assert_eq!(num(&r, "ttlSecs"), 20.0);
    assert_eq!(
        string(&r, "cacheStatus.onRepeat"),
        "edgecache-l1; hit; ttl=20"
    );

    let r =
        analyze("{ responseHeaders: ':status: 302\\ncache-control: max-age=5', method: 'POST' }");
    assert_eq!(num(&r, "status"), 302.0);
    assert_eq!(string(&r, "request.class"), "unsafe");
    assert!(!boolean(&r, "storable"));
}

#[wasm_bindgen_test]
fn analyzer_refuses_bad_input_with_messages() {
    expect_err(analyze_headers(JsValue::from_f64(1.0)), "must be an object");
    expect_err(analyze_headers(js("{}")), "responseHeaders is required");
    expect_err(
        analyze_headers("Cache-Control: max-age=1\nnot a header".into()),
        "line 2",
    );
    expect_err(
        analyze_headers("Bad Name: x".into()),
        "not a valid field name",
    );
    expect_err(
        analyze_headers(js("{ responseHeaders: 'a: b', status: 1000 }")),
        "status",
    );
    expect_err(
        analyze_headers(js("{ responseHeaders: 'a: b', bogus: 1 }")),
        "bogus",
    );
    expect_err(
        analyze_headers(js("{ responseHeaders: 'a: b', now: -1 }")),
        "now",
    );
    expect_err(
        analyze_headers(js("{ responseHeaders: 'a: b', method: 'G T' }")),
        "method",
    );
    expect_err(analyze_headers("\n\n".into()), "no header fields");
}

#[wasm_bindgen_test]
fn analyzer_never_traps_on_garbage() {
    // Deterministic garbage: every input either yields a report or throws an Error.
    let alphabet: Vec<char> = "ab:=,;\" \t\r\n-0123456789*HTTP/ÿ€\u{0}maxgestorvyncp"
        .chars()
        .collect();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let (mut ok, mut err) = (0, 0);
    for _ in 0..300 {
        let mut s = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 80) as usize;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        if seed % 2 == 0 {
            s = s.replace(['\n', '\r'], " ");
        }
        let input = Object::new();
        Reflect::set(
            &input,
            &"responseHeaders".into(),
            &format!("Cache-Control: {s}").into(),
        )
        .unwrap();
        Reflect::set(
            &input,
            &"requestHeaders".into(),
            &format!("X-Junk: {s}").into(),
        )
        .unwrap();
        match analyze_headers(input.into()) {
            Ok(r) => {
                assert!(get(&r, "storable").as_bool().is_some());
                ok += 1;
            }
            Err(e) => {
                assert!(!message(e).is_empty());
                err += 1;
            }
        }
    }
    assert!(
        ok > 10 && err > 10,
        "both paths exercised: {ok} ok, {err} errors"
    );
}

// ---------------------------------------------------------------------------------------
// simulate and benchL1

fn totals(options: &str) -> JsValue {
    let out = simulate(js(options)).unwrap_or_else(|e| panic!("simulate: {}", message(e)));
    let series_len = get(&out, "series.t").unchecked_into::<Array>().length();
    assert_eq!(
        get(&out, "series.requests")
            .unchecked_into::<Array>()
            .length(),
        series_len
    );
    get(&out, "totals")
}

#[wasm_bindgen_test]
fn simulation_shows_coalescing_and_stale_while_revalidate() {
    let base = "keys: 200, zipf: 1.1, rate: 2000, durationSecs: 20, capacity: 500, ttlSecs: 2, originLatencyMs: 300";
    let plain = totals(&format!("{{ {base}, coalescing: false, swrSecs: 0 }}"));
    let coalesced = totals(&format!("{{ {base}, coalescing: true, swrSecs: 0 }}"));
    let swr = totals(&format!("{{ {base}, coalescing: true, swrSecs: 10 }}"));
    assert_eq!(
        num(&plain, "requests"),
        num(&coalesced, "requests"),
        "same seed, same trace"
    );
    assert!(num(&plain, "requests") > 35_000.0);
    assert_eq!(num(&plain, "coalesced"), 0.0);
    assert!(num(&coalesced, "coalesced") > 1000.0);
    assert!(
        num(&coalesced, "originRequests") < 0.7 * num(&plain, "originRequests"),
        "coalescing cuts origin load: {} vs {}",
        num(&coalesced, "originRequests"),
        num(&plain, "originRequests")
    );
    assert_eq!(num(&plain, "staleServed"), 0.0);
    assert!(num(&swr, "staleServed") > 1000.0);
    assert!(num(&swr, "hitRatio") > num(&coalesced, "hitRatio") + 0.05);
    assert!(num(&swr, "meanLatencyMs") < num(&coalesced, "meanLatencyMs"));
    let again = totals(&format!("{{ {base}, coalescing: true, swrSecs: 10 }}"));
    assert_eq!(
        js_sys::JSON::stringify(&swr).unwrap(),
        js_sys::JSON::stringify(&again).unwrap(),
        "deterministic for a seed"
    );
    let windows = get(&swr, "policyWindowsSecs").unchecked_into::<Array>();
    assert_eq!(
        windows.get(1).as_f64(),
        Some(10.0),
        "windows come from the policy"
    );
}

#[wasm_bindgen_test]
fn simulation_serves_stale_on_origin_errors() {
    let base = "keys: 50, rate: 500, durationSecs: 30, ttlSecs: 1, originLatencyMs: 50, originErrorRate: 0.5";
    let without = totals(&format!("{{ {base} }}"));
    let with = totals(&format!("{{ {base}, sieSecs: 60 }}"));
    assert!(num(&without, "errors") > 100.0);
    assert!(num(&with, "staleIfError") > 100.0);
    assert!(num(&with, "errors") < num(&without, "errors") / 2.0);
}

#[wasm_bindgen_test]
fn simulation_refuses_bad_options() {
    expect_err(simulate(js("{ rate: 1e6, durationSecs: 3600 }")), "at most");
    expect_err(simulate(js("{ zipf: 5 }")), "zipf");
    expect_err(simulate(js("{ originErrorRate: 2 }")), "originErrorRate");
    expect_err(simulate(js("{ keyz: 1 }")), "keyz");
    expect_err(simulate(js("{ admission: 'x' }")), "admission");
}

#[wasm_bindgen_test]
fn bench_runs_and_reports() {
    let r = bench_l1(js(
        "{ ops: 20000, warmup: 1000, keys: 1000, capacity: 100 }",
    ))
    .unwrap();
    assert_eq!(num(&r, "ops"), 20000.0);
    assert!(num(&r, "nsPerOp") >= 0.0);
    assert!(num(&r, "hits") > 1000.0 && num(&r, "hits") < 20000.0);
    expect_err(bench_l1(js("{ zipf: -1 }")), "zipf");
}

#[wasm_bindgen_test]
async fn user_code_may_call_back_into_the_cache() {
    // toJSON (run to estimate sizes), byteLength getters and loaders are user code that may
    // use the cache while it is working: no RefCell re-borrow, no trap.
    let cache = JsValue::from(EdgeCache::new(JsValue::UNDEFINED).unwrap());
    let script = Function::new_with_args(
        "c",
        "c.set('a', 'x');
         const v = { toJSON() { return c.get('a') + c.size; } };
         const stored = c.set('b', v);
         const buf = { get byteLength() { c.delete('a'); return 8; } };
         c.set('c', buf);
         const p = c.getOrInsert('d', (k) => { c.set('e', 'from loader'); return c.get('e') + ':' + k; });
         return { stored, hasA: c.has('a'), p };",
    );
    let out = script.call1(&JsValue::NULL, &cache).unwrap();
    assert!(boolean(&out, "stored"));
    assert!(!boolean(&out, "hasA"), "the getter's delete ran");
    let p: Promise = get(&out, "p").unchecked_into();
    assert_eq!(
        settle(&p).await.unwrap().as_string().as_deref(),
        Some("from loader:d")
    );
}

// ---------------------------------------------------------------------------------------
// the analyser and the engine decide alike

/// The analyser (www's header analyser) and the engine decide a response the same way: the
/// same responses go to both, and what the analyser says a shared cache does (stored or
/// not, why, the `Cache-Status` of the fill and of a repeat) is what the engine, on the
/// simulated host, sends.
#[wasm_bindgen_test]
fn the_analyser_says_what_the_engine_does() {
    use edgecache::engine::simulated::{request, Answer, Simulation};
    use edgecache::engine::EngineConfig;
    use edgecache::http_date::format_http_date;
    use edgecache::time::Timestamp;
    use edgecache::wasm::analyze::{analyze, AnalyzeInput};
    use edgecache::wasm::headers_input::HeadersInput;

    let t0 = Timestamp::from_millis(1_765_000_000_000);
    let date = format_http_date(t0);
    let cases: &[(u16, &[(&str, &str)], &[(&str, &str)])] = &[
        (200, &[("cache-control", "max-age=60")], &[]),
        (200, &[("cache-control", "no-store")], &[]),
        (200, &[("cache-control", "private, max-age=60")], &[]),
        (200, &[("cache-control", "max-age=60, s-maxage=30")], &[]),
        (200, &[("cache-control", "max-age=0")], &[]),
        (
            200,
            &[("cache-control", "no-cache, max-age=60"), ("etag", "\"v\"")],
            &[],
        ),
        (
            200,
            &[("cache-control", "max-age=60, stale-while-revalidate=30")],
            &[],
        ),
        (
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
            &[],
        ),
        (200, &[("cache-control", "max-age=60"), ("vary", "*")], &[]),
        (200, &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")], &[]),
        (
            200,
            &[("last-modified", "Mon, 01 Dec 2025 00:00:00 GMT")],
            &[],
        ),
        (200, &[], &[]),
        (404, &[], &[]),
        (302, &[("location", "/x")], &[]),
        (
            200,
            &[
                ("cdn-cache-control", "max-age=10"),
                ("cache-control", "no-store"),
            ],
            &[],
        ),
        (
            200,
            &[("cache-control", "max-age=60")],
            &[("authorization", "Bearer t")],
        ),
        (
            200,
            &[("cache-control", "public, max-age=60")],
            &[("authorization", "Bearer t")],
        ),
        (
            200,
            &[("cache-control", "max-age=60")],
            &[("cache-control", "no-store")],
        ),
    ];
    for (i, (status, fields, request_fields)) in cases.iter().enumerate() {
        let mut response: Vec<(&str, &str)> = vec![("date", &date)];
        response.extend(fields.iter().copied());
        let text = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let report = analyze(
            &AnalyzeInput {
                response_headers: Some(HeadersInput::Text(text(&response))),
                request_headers: (!request_fields.is_empty())
                    .then(|| HeadersInput::Text(text(request_fields))),
                status: Some(*status),
                ..AnalyzeInput::default()
            },
            [Some(t0), Some(t0), Some(t0)],
            t0,
        )
        .unwrap_or_else(|e| panic!("case {i}: {e}"));

        // The origin answers the fill, then any revalidation as an origin does: `304` when
        // the response has a validator the cache can send.
        let revalidation = if fields.iter().any(|(n, _)| *n == "etag") {
            Answer::respond(304, &response, "")
        } else {
            Answer::respond(*status, &response, "body")
        };
        let sim = Simulation::new(t0, revalidation);
        sim.then(Answer::respond(*status, &response, "body"));
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let mut cache_status = || {
            let handled = sim
                .clock
                .block_on(engine.handle(request("GET", "/a", request_fields)));
            handled
                .response
                .fields()
                .get_str("cache-status")
                .unwrap_or("")
                .to_string()
        };
        let fill = cache_status();
        let repeat = cache_status();
        let case = format!("case {i}: {status} {fields:?} {request_fields:?}");
        assert_eq!(report.cache_status.on_fetch, fill, "{case}: the fill");
        assert_eq!(report.storable, fill.contains("stored"), "{case}");
        if let Some(code) = report.reason_code {
            assert!(fill.contains(&format!("detail={code}")), "{case}: {fill}");
        }
        assert_eq!(report.cache_status.on_repeat, repeat, "{case}: a repeat");
    }
}
