#![cfg(all(feature = "resp", feature = "server", not(target_arch = "wasm32")))]
//! The Redis over HTTP transport (`edgecache::shared_tier::rest`, what the Worker speaks
//! when its Redis URL is `https://`) against a real `redis-server` behind the test REST
//! server (`support::rest`, the Upstash REST protocol), here with hyper as its HTTP call:
//! every [`SharedTier`] command, transactions through `/multi-exec`, scripts, errors, a
//! wrong token, a dead server, the reply limit, and the engine's write-behind on it. And
//! the point of the binary-argument design: an instance on REST and one on RESP (the
//! Worker's socket client) store and read the very same bytes in Redis.

mod support;
use support::rest::{HyperPost, RestServer, REST_TOKEN};
use support::*;

use std::time::Duration;

use edgecache::engine::{SharedTier, TierError};
use edgecache::shared_tier::resp::{Connect, RedisUrl, RespTier};
use edgecache::shared_tier::rest::{RestTier, RestUrl};
use edgecache::shared_tier::{Reply, Transport};
use tokio::net::TcpStream;

/// Plain TCP, as `worker::Socket` is with TLS off.
struct Tcp;

impl Connect for Tcp {
    type Conn = TcpStream;
    async fn connect(&self, url: &RedisUrl) -> Result<TcpStream, TierError> {
        TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| TierError(format!("connect: {e}")))
    }
}

fn rest(server: &RestServer) -> RestTier<HyperPost> {
    RestTier::new(
        &RestUrl::parse(&server.url()).unwrap(),
        REST_TOKEN,
        HyperPost,
    )
}

fn resp(redis: &RedisServer) -> RespTier<Tcp> {
    RespTier::new(RedisUrl::parse(&redis.url()).unwrap(), Tcp)
}

/// Redis and a REST server in front of it.
async fn start() -> (RedisServer, RestServer) {
    let redis = RedisServer::start().await;
    let server = RestServer::start(redis.port).await;
    (redis, server)
}

async fn raw_get(own: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(own).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn every_command_against_a_real_redis_over_rest() {
    let (redis, server) = start().await;
    let s = rest(&server);
    let mut own = redis.conn().await;

    assert_eq!(s.get("missing").await.unwrap(), None);
    s.set("k1", b"\x00binary\xffvalue\r\n", 60_000)
        .await
        .unwrap();
    assert_eq!(
        s.get("k1").await.unwrap().as_deref(),
        Some(&b"\x00binary\xffvalue\r\n"[..])
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("k1")
        .query_async(&mut own)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "PX applied: {ttl}");
    assert_eq!(
        server.commands("EVAL"),
        1,
        "the binary SET went through the script"
    );

    let many = s
        .get_many(&["k1".into(), "nope".into(), "k1".into()])
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    assert!(many[0].is_some() && many[1].is_none() && many[2].is_some());
    // Existence without the value, one EXISTS per key (a key is not counted twice).
    let found = s.exist(&["k1".into(), "nope".into(), "k1".into()]).await;
    assert_eq!(found.unwrap(), [true, false, true]);
    assert!(s.exist(&[]).await.unwrap().is_empty());
    // The first bytes of each value, and TTLs extended only (the same on both clients).
    check_prefixes_and_extend(&s, &mut own).await;

    assert!(s.set_if_absent("lease", b"a", 5_000).await.unwrap());
    assert!(!s.set_if_absent("lease", b"b", 5_000).await.unwrap());
    assert_eq!(s.get("lease").await.unwrap().as_deref(), Some(&b"a"[..]));
    // A status reply that is OK, and a value that is "OK": both read as what they are.
    s.set("ok", b"OK", 5_000).await.unwrap();
    assert_eq!(s.get("ok").await.unwrap().as_deref(), Some(&b"OK"[..]));

    assert_eq!(s.increment("n").await.unwrap(), 1);
    assert_eq!(s.increment("n").await.unwrap(), 2);

    s.add_to_set("tags", "obj:a", 10_000).await.unwrap();
    s.add_to_set("tags", "obj:b", 20_000).await.unwrap();
    s.add_to_set("tags", "obj:b", 1_000).await.unwrap(); // GT: never shortens
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tags")
        .query_async(&mut own)
        .await
        .unwrap();
    assert!(ttl > 15_000, "set TTL extended only: {ttl}");
    let before = server.requests("/multi-exec");
    let mut members = s.take_set("tags").await.unwrap();
    members.sort();
    assert_eq!(members, vec!["obj:a".to_string(), "obj:b".to_string()]);
    assert!(s.take_set("tags").await.unwrap().is_empty(), "taken once");
    assert_eq!(server.requests("/multi-exec"), before + 2);
    assert_eq!(server.commands("MULTI"), 0, "never sent as a command");

    let info = s.info().await.unwrap();
    assert!(info.contains("redis_version:"), "{info:.80}");

    s.delete(&["k1".into(), "lease".into()]).await.unwrap();
    assert_eq!(s.get("k1").await.unwrap(), None);

    // A large value: 3 MB of every byte value, there and back.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.set("big", &big, 60_000).await.unwrap();
    assert_eq!(raw_get(&mut own, "big").await.as_deref(), Some(&big[..]));
    assert_eq!(s.get("big").await.unwrap().as_deref(), Some(&big[..]));
    assert_eq!(
        server.answered(200),
        server.requests("/pipeline") + server.requests("/multi-exec")
    );
}

/// The point of sending binary arguments through the script: what an instance on REST
/// writes is byte for byte what one on RESP (the Worker's sockets) writes and reads, and
/// the other way round: entries (`SET`), keys with non-ASCII text, and queued requests
/// (`XADD` fields), with every byte value.
#[tokio::test(flavor = "current_thread")]
async fn a_rest_instance_and_a_resp_instance_store_and_read_the_same_bytes() {
    let (redis, server) = start().await;
    let (over_rest, over_resp) = (rest(&server), resp(&redis));
    let mut own = redis.conn().await;
    let every_byte: Vec<u8> = (0..=255u8)
        .chain((0..=255u8).rev())
        .cycle()
        .take(70_000)
        .collect();
    let values: [(&str, &[u8]); 5] = [
        ("ec:v1:e1:obj:binary", &every_byte),
        ("ec:v1:e1:obj:utf8", "café ✓ \u{0}\u{7f}".as_bytes()),
        (
            "ec:v1:e1:obj:lookalike",
            b"\xc3\xa9\xc2\x80 not a byte string",
        ),
        ("ec:v1:e1:obj:empty", b""),
        (
            "ec:v1:e1:obj:clé-\u{e9}",
            b"\x80\xff key with non-ASCII text",
        ),
    ];
    for (key, value) in values {
        let rest_key = format!("{key}:rest");
        over_rest.set(&rest_key, value, 60_000).await.unwrap();
        assert_eq!(
            raw_get(&mut own, &rest_key).await.as_deref(),
            Some(value),
            "{key}"
        );
        assert_eq!(
            over_resp.get(&rest_key).await.unwrap().as_deref(),
            Some(value),
            "{key}"
        );

        let resp_key = format!("{key}:resp");
        over_resp.set(&resp_key, value, 60_000).await.unwrap();
        assert_eq!(
            over_rest.get(&resp_key).await.unwrap().as_deref(),
            Some(value),
            "{key}"
        );
        let both = over_rest
            .get_many(&[rest_key.clone(), resp_key.clone()])
            .await
            .unwrap();
        assert_eq!(
            both,
            vec![Some(value.to_vec()), Some(value.to_vec())],
            "{key}"
        );
    }
    // A lease taken over one transport and released over the other.
    assert!(over_rest
        .set_if_absent("ec:v1:lease", b"token-1", 5_000)
        .await
        .unwrap());
    assert!(!over_resp
        .set_if_absent("ec:v1:lease", b"token-2", 5_000)
        .await
        .unwrap());
    assert!(over_resp
        .delete_if_equals("ec:v1:lease", b"token-1")
        .await
        .unwrap());

    // A queued request appended over REST, delivered over RESP, and the other way.
    queued_request_crosses(&over_rest, &over_resp, "ec:v1:wb:rest").await;
    queued_request_crosses(&over_resp, &over_rest, "ec:v1:wb:resp").await;
    // The two SETs and the XADD with bytes that are not UTF-8 (the UTF-8 look-alike of a
    // byte string went as it is, and came back unchanged).
    assert_eq!(server.commands("EVAL"), 3);
}

/// A write-behind entry with binary fields appended by `writer` reads the same at `reader`.
async fn queued_request_crosses(writer: &impl SharedTier, reader: &impl SharedTier, stream: &str) {
    let body: &[u8] = b"\x00\x01\xfe\xff\r\n body \xc3\xa9";
    writer.stream_create_group(stream, "g").await.unwrap();
    let fields: [(&str, &[u8]); 3] = [("method", b"PUT"), ("body", body), ("h", b"x-\xff")];
    let id = writer.stream_add(stream, Some(100), &fields).await.unwrap();
    let read = reader.stream_read_new(stream, "g", "c", 10).await.unwrap();
    assert_eq!(read.len(), 1, "{stream}");
    assert_eq!(read[0].id, id);
    assert_eq!(
        read[0].fields,
        vec![
            ("method".to_string(), b"PUT".to_vec()),
            ("body".to_string(), body.to_vec()),
            ("h".to_string(), b"x-\xff".to_vec()),
        ],
        "{stream}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stream_commands_over_rest() {
    let (redis, server) = start().await;
    let s = rest(&server);
    let mut own = redis.conn().await;

    assert!(
        s.stream_read_new("q", "g", "c", 1).await.is_err(),
        "reading through a group that does not exist is an error (NOGROUP)"
    );
    let first = s
        .stream_add("q", None, &[("method", b"POST"), ("body", b"\x00body\xff")])
        .await
        .unwrap();
    s.stream_create_group("q", "g").await.unwrap();
    s.stream_create_group("q", "g").await.unwrap();
    let second = s
        .stream_add("q", None, &[("method", b"PUT")])
        .await
        .unwrap();
    assert!(first < second, "{first} {second}");
    for _ in 0..4 {
        s.stream_add("capped", Some(3), &[("f", b"v")])
            .await
            .unwrap();
    }
    assert_eq!(
        s.stream_len("capped").await.unwrap(),
        3,
        "MAXLEN trims the oldest"
    );

    let read = s.stream_read_new("q", "g", "c", 1).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, first);
    let pending = s.stream_pending("q", "g", 10).await.unwrap();
    assert_eq!((pending.len(), pending[0].deliveries), (1, 1));
    let ids = [first.clone()];
    assert!(s
        .stream_claim("q", "g", "other", 60_000, &ids)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        s.stream_claim("q", "g", "other", 10, &ids).await.unwrap(),
        read
    );
    s.stream_ack_delete("q", "g", &ids).await.unwrap();
    assert!(s.stream_pending("q", "g", 10).await.unwrap().is_empty());
    let len: u64 = redis::cmd("XLEN")
        .arg("q")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(len, 1, "acknowledged and deleted in one /multi-exec");

    s.set("plain", b"v", 60_000).await.unwrap();
    let wrong = s
        .stream_add("plain", None, &[("f", b"v")])
        .await
        .unwrap_err();
    assert!(wrong.0.contains("WRONGTYPE"), "{wrong}");
    let wrong = s
        .stream_add("plain", None, &[("f", b"\xff")])
        .await
        .unwrap_err();
    assert!(
        wrong.0.contains("WRONGTYPE"),
        "through the script too: {wrong}"
    );
}

/// `/multi-exec` keeps Redis's transaction semantics: a command that fails when run is an
/// error of the call and the others still ran (as in Redis); a command refused when queued
/// makes Redis discard the whole transaction (one error, 400), and nothing in it ran.
#[tokio::test(flavor = "current_thread")]
async fn transactions_over_rest_keep_their_semantics() {
    let (redis, server) = start().await;
    let s = rest(&server);
    let mut own = redis.conn().await;
    s.set("plain", b"a string", 60_000).await.unwrap();
    let e = s.take_set("plain").await.unwrap_err();
    assert!(e.0.contains("WRONGTYPE"), "{e}");
    assert_eq!(
        raw_get(&mut own, "plain").await,
        None,
        "DEL after the failed SMEMBERS ran"
    );

    let e = s
        .transport()
        .transaction(&[vec![b"SADD", b"kept", b"m1"], vec![b"NOSUCHCOMMAND"]])
        .await
        .unwrap_err();
    assert!(e.0.starts_with("redis: EXECABORT"), "{e}");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("kept")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(exists, 0, "discarded: SADD did not run");
    assert_eq!(server.answered(400), 1);

    let results = s
        .transport()
        .transaction(&[vec![b"INCR", b"t"], vec![b"INCR", b"t"]])
        .await
        .unwrap();
    assert_eq!(results, vec![Reply::Integer(1), Reply::Integer(2)]);
}

/// Leases are released by compare-and-delete (`EVAL`, one script for every client): over
/// REST too, only the holder's token deletes the lease.
#[tokio::test(flavor = "current_thread")]
async fn leases_are_released_only_by_their_holder_over_rest() {
    let (redis, server) = start().await;
    let s = rest(&server);
    let mut own = redis.conn().await;
    assert!(s.set_if_absent("lease", b"holder-b", 60_000).await.unwrap());
    assert!(!s.delete_if_equals("lease", b"holder-a").await.unwrap());
    assert_eq!(
        raw_get(&mut own, "lease").await.as_deref(),
        Some(&b"holder-b"[..])
    );
    assert!(s.delete_if_equals("lease", b"holder-b").await.unwrap());
    assert_eq!(raw_get(&mut own, "lease").await, None);
    assert!(
        !s.delete_if_equals("lease", b"holder-b").await.unwrap(),
        "gone"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_token_is_refused_and_never_quoted() {
    let (_redis, server) = start().await;
    let url = RestUrl::parse(&server.url()).unwrap();
    let wrong = RestTier::new(&url, "wrong-token-9876543210", HyperPost);
    let e = wrong.get("k").await.unwrap_err();
    assert_eq!(e.0, "REST: the server refused the token (401 Unauthorized)");
    assert!(!e.to_string().contains("wrong-token"));
    assert_eq!(server.answered(401), 1);
    assert!(
        rest(&server).get("k").await.is_ok(),
        "the right token works"
    );
}

/// Redis gone behind the REST server (its 500), and the REST server itself gone (no
/// connection): errors of the call; both back, it works again with nothing to reset.
#[tokio::test(flavor = "current_thread")]
async fn a_dead_server_is_an_error_then_recovery_is_automatic() {
    let (mut redis, mut server) = start().await;
    let s = rest(&server);
    s.set("k", b"v", 60_000).await.unwrap();
    let port = redis.port;
    redis.kill();
    let e = s.get("k").await.unwrap_err();
    assert!(e.0.starts_with("REST: HTTP 500"), "{e}");
    let _back = RedisServer::start_on(port)
        .await
        .expect("redis back on its port");
    assert_eq!(s.get("k").await.unwrap(), None, "a new, empty Redis");
    server.stop().await;
    let e = s.get("k").await.unwrap_err();
    assert!(e.0.starts_with("connect"), "{e}");
}

/// A reply larger than the limit is refused by the host as it reads it, and the tier keeps
/// working.
#[tokio::test(flavor = "current_thread")]
async fn replies_above_the_limit_are_refused() {
    let (_redis, server) = start().await;
    let s = rest(&server).with_reply_limit(1_000);
    s.set("small", &[7u8; 500], 60_000).await.unwrap();
    assert_eq!(s.get("small").await.unwrap().map(|v| v.len()), Some(500));
    s.set("big", &vec![7u8; 200_000], 60_000).await.unwrap();
    let e = s.get("big").await.unwrap_err();
    assert_eq!(e.0, "reply too large");
    assert_eq!(s.increment("n").await.unwrap(), 1);
}

/// The engine's write-behind (XADD with the request's bytes, XREADGROUP, XPENDING, XCLAIM,
/// XACK + XDEL through `/multi-exec`) over REST: a PUT is queued and answered 202, a
/// delivery to an origin that is down stays pending, and after the retry time it reaches
/// the origin once, with its key and its bytes.
#[tokio::test(flavor = "current_thread")]
async fn write_behind_runs_over_the_rest_client() {
    use edgecache::engine::{Engine, EngineConfig, EngineState, Host, Request};
    use edgecache::headers::Headers;
    use edgecache::native::body::{full, ProxyBody};
    use edgecache::native::origin::HyperOrigin;
    use edgecache::native::runtime::TokioRuntime;

    struct RestHost;
    impl Host for RestHost {
        type Body = ProxyBody;
        type Origin = HyperOrigin;
        type SharedTier = RestTier<HyperPost>;
        type Runtime = TokioRuntime;
        type Colo = edgecache::engine::NoColo;
        type Lock = std::cell::RefCell<EngineState>;
    }

    let (_redis, server) = start().await;
    let mut origin = Origin::start().await;
    let mut config = EngineConfig::default();
    config.write_behind.routes = vec!["/w/".into()];
    config.write_behind.retry_after_ms = 1_100;
    config.limits.origin_timeout_ms = 1_000;
    let engine: Engine<RestHost> = Engine::new(
        config,
        HyperOrigin::new(&origin.url()).unwrap(),
        Some(rest(&server)),
        TokioRuntime,
    )
    .unwrap();
    origin.stop().await;

    let body: &[u8] = b"rest body \x00\xff\xc3";
    let request = Request {
        client: None,
        method: "PUT".into(),
        scheme: "http".into(),
        target: format!("http://{HOST}/w/1"),
        headers: Headers::from_pairs([("content-type", "application/octet-stream")]),
        body: Some(full(body.to_vec())),
    };
    let handled = bounded("handle", WAIT, engine.handle(request)).await;
    assert_eq!(handled.response.status, 202);
    let key = handled
        .response
        .headers
        .get_str("idempotency-key")
        .expect("a key")
        .to_string();
    bounded("flush", WAIT, engine.flush_write_behind()).await;
    assert_eq!(
        engine.snapshot().engine.write_behind_retried,
        1,
        "origin down"
    );

    origin.restart().await;
    eventually("the retry", Duration::from_secs(4), async || {
        bounded("flush", WAIT, engine.flush_write_behind()).await;
        (!origin.writes().is_empty()).then_some(())
    })
    .await;
    bounded("flush", WAIT, engine.flush_write_behind()).await;
    let writes = origin.writes();
    assert_eq!(writes.len(), 1, "once");
    assert_eq!(writes[0].method, "PUT");
    assert_eq!(writes[0].body, body);
    assert_eq!(writes[0].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(engine.snapshot().engine.write_behind_flushed, 1);
    assert!(
        server.requests("/multi-exec") >= 1,
        "acknowledged through /multi-exec"
    );
    assert!(server.commands("XADD") + server.commands("EVAL") >= 1);
}

/// The test REST server answers as the Upstash documentation says a server does, so the
/// tests above hold the transport to the protocol, not to this server's quirks: one
/// command at `/`, `{"result"}` or `{"error"}` (400); base64 only when asked for, with the
/// status `OK` as it is; 401 without the token; commands that need a connection of their own
/// refused per command in a pipeline.
#[tokio::test(flavor = "current_thread")]
async fn the_test_server_speaks_the_protocol_as_documented() {
    let (_redis, server) = start().await;
    let auth = format!("Bearer {REST_TOKEN}");
    let post = |path: &'static str, body: &'static str, base64: bool| {
        let auth = auth.clone();
        let addr = server.addr;
        async move {
            let mut headers = vec![
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            if base64 {
                headers.push(("upstash-encoding", "base64"));
            }
            let r = send(addr, "POST", path, &headers, bytes::Bytes::from(body))
                .await
                .unwrap();
            (r.status, r.json())
        }
    };
    let set = post("/", r#"["SET","k","vé"]"#, true).await;
    assert_eq!(set, (200, serde_json::json!({"result": "OK"})));
    let get = post("/", r#"["GET","k"]"#, true).await;
    assert_eq!(get, (200, serde_json::json!({"result": "dsOp"})));
    let plain = post("/", r#"["GET","k"]"#, false).await;
    assert_eq!(plain, (200, serde_json::json!({"result": "vé"})));
    let (status, wrong) = post("/", r#"["INCR","k"]"#, true).await;
    assert_eq!(status, 400);
    assert!(
        wrong["error"].as_str().unwrap().contains("not an integer"),
        "{wrong}"
    );
    let (status, items) = post("/pipeline", r#"[["MULTI"],["EXISTS","k"]]"#, true).await;
    assert_eq!(status, 200);
    assert!(items[0]["error"]
        .as_str()
        .unwrap()
        .contains("MULTI is not supported"));
    assert_eq!(items[1], serde_json::json!({"result": 1}));
    let unauthorised = send(server.addr, "POST", "/", &[], bytes::Bytes::from("[]"))
        .await
        .unwrap();
    assert_eq!(unauthorised.status, 401);
}
