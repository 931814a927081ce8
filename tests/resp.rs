#![cfg(all(feature = "resp", feature = "server", not(target_arch = "wasm32")))]
//! The RESP shared-tier client (`edgecache::resp`, what the Worker speaks to Redis over its
//! `connect()` sockets) against a real `redis-server`, here over tokio TCP streams: every
//! [`SharedTier`] command, pipelining, AUTH/SELECT, error replies and a dead server.

mod support;
use support::*;

use edgecache::engine::{SharedTier, TierError};
use edgecache::shared_tier::resp::{Connect, RedisUrl, RespTier};
use std::time::Duration;

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

fn store(url: &str) -> RespTier<Tcp> {
    RespTier::new(RedisUrl::parse(url).expect("url"), Tcp)
}

#[tokio::test(flavor = "current_thread")]
async fn every_command_against_a_real_redis() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
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

    let many = s
        .get_many(&["k1".into(), "nope".into(), "k1".into()])
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    assert!(many[0].is_some() && many[1].is_none() && many[2].is_some());
    assert!(s.get_many(&[]).await.unwrap().is_empty());
    // Existence without the value, one EXISTS per key (a key is not counted twice).
    let found = s.exist(&["k1".into(), "nope".into(), "k1".into()]).await;
    assert_eq!(found.unwrap(), [true, false, true]);
    assert!(s.exist(&[]).await.unwrap().is_empty());
    // The first bytes of each value, and TTLs extended only (the same on both clients).
    check_prefixes_and_extend(&s, &mut own).await;

    assert!(s.set_if_absent("lease", b"a", 5_000).await.unwrap());
    assert!(!s.set_if_absent("lease", b"b", 5_000).await.unwrap());
    assert_eq!(s.get("lease").await.unwrap().as_deref(), Some(&b"a"[..]));

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
    let mut members = s.take_set("tags").await.unwrap();
    members.sort();
    assert_eq!(members, vec!["obj:a".to_string(), "obj:b".to_string()]);
    assert!(s.take_set("tags").await.unwrap().is_empty(), "taken once");

    s.delete(&["k1".into(), "lease".into()]).await.unwrap();
    assert_eq!(s.get("k1").await.unwrap(), None);
    s.delete(&[]).await.unwrap();

    // A large value crosses many reads.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.set("big", &big, 60_000).await.unwrap();
    assert_eq!(s.get("big").await.unwrap().as_deref(), Some(&big[..]));
}

#[tokio::test(flavor = "current_thread")]
async fn error_replies_are_errors_and_the_connection_survives() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
    s.set("text", b"not a number", 60_000).await.unwrap();
    let e = s.increment("text").await.unwrap_err();
    assert!(e.0.contains("not an integer"), "{e}");
    // The same pooled connection still answers in order.
    assert_eq!(s.increment("counter").await.unwrap(), 1);
    assert_eq!(
        s.get("text").await.unwrap().as_deref(),
        Some(&b"not a number"[..])
    );
}

/// Errors inside a pipeline or a MULTI/EXEC transaction (WRONGTYPE on a key that is not a
/// set) are errors of that call, and every reply of it is consumed: the pooled connection
/// answers the next command in order.
#[tokio::test(flavor = "current_thread")]
async fn errors_inside_pipelines_and_transactions_never_desync_the_connection() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
    s.set("plain", b"a string", 60_000).await.unwrap();
    // SADD fails, PEXPIRE (pipelined after it) succeeds.
    let e = s.add_to_set("plain", "member", 60_000).await.unwrap_err();
    assert!(e.0.contains("WRONGTYPE"), "{e}");
    assert_eq!(
        s.get("plain").await.unwrap().as_deref(),
        Some(&b"a string"[..])
    );
    // MULTI; SMEMBERS (fails at EXEC); DEL; EXEC.
    s.set("plain2", b"another", 60_000).await.unwrap();
    let e = s.take_set("plain2").await.unwrap_err();
    assert!(e.0.contains("WRONGTYPE"), "{e}");
    assert_eq!(s.increment("after").await.unwrap(), 1);
    s.add_to_set("real", "m1", 60_000).await.unwrap();
    assert_eq!(s.take_set("real").await.unwrap(), vec!["m1".to_string()]);
    assert_eq!(s.take_set("real").await.unwrap(), Vec::<String>::new());
}

/// A command refused when queued inside MULTI (here by an ACL that denies SMEMBERS) makes
/// the server discard the transaction: EXEC answers EXECABORT. That is an error of the call
/// naming the cause (the refused command's error, which comes first), nothing in it ran
/// (the set is still there), and every reply was consumed, so the pooled connection is not
/// left inside a transaction: the next commands answer in order.
#[tokio::test(flavor = "current_thread")]
async fn execabort_fails_the_transaction_and_the_connection_stays_in_step() {
    let redis = RedisServer::start().await;
    let mut own = redis.conn().await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nosmembers")
        .arg("on")
        .arg(">np-pass")
        .arg("~*")
        .arg("+@all")
        .arg("-smembers")
        .query_async(&mut own)
        .await
        .unwrap();
    let s = store(&format!(
        "redis://nosmembers:np-pass@127.0.0.1:{}",
        redis.port
    ));
    s.add_to_set("kept", "m1", 60_000).await.unwrap();
    let e = s.take_set("kept").await.unwrap_err();
    assert!(e.0.contains("NOPERM") && e.0.contains("smembers"), "{e}");
    // DEL was queued after the refused SMEMBERS: the abort discarded it too.
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("kept")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(members, vec!["m1".to_string()]);
    // Not stuck inside MULTI (a queued INCR would answer QUEUED, not a number).
    assert_eq!(s.increment("after-abort").await.unwrap(), 1);
    assert_eq!(s.increment("after-abort").await.unwrap(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn auth_and_select_from_the_url() {
    let redis = RedisServer::start().await;
    let mut own = redis.conn().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret-pass")
        .query_async(&mut own)
        .await
        .unwrap();
    let port = redis.port;

    let anonymous = store(&format!("redis://127.0.0.1:{port}"));
    let e = anonymous.get("x").await.unwrap_err();
    assert!(e.0.contains("NOAUTH"), "{e}");

    let wrong = store(&format!("redis://:badpass-xyz@127.0.0.1:{port}"));
    let e = wrong.get("x").await.unwrap_err();
    assert!(
        e.0.contains("handshake") && !e.0.contains("badpass-xyz"),
        "{e}"
    );

    let good = store(&format!("redis://default:s3cret-pass@127.0.0.1:{port}/5"));
    good.set("in-db-5", b"yes", 60_000).await.unwrap();
    let mut db5 = redis::Client::open(format!("redis://:s3cret-pass@127.0.0.1:{port}/5"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("in-db-5")
        .query_async(&mut db5)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("yes"), "SELECT 5 applied");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_server_is_an_error_then_recovery_is_automatic() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let s = store(&redis.url());
    s.set("a", b"1", 60_000).await.unwrap();
    redis.kill();
    assert!(
        s.get("a").await.is_err(),
        "pooled connection to a dead server"
    );
    assert!(s.get("a").await.is_err(), "no server to dial");
    let _again = RedisServer::start_on(port)
        .await
        .expect("restart on the same port");
    assert_eq!(
        s.get("a").await.unwrap(),
        None,
        "fresh server, fresh connection"
    );
}

/// Sequential commands reuse one pooled connection; a command abandoned mid-reply (its
/// future dropped, as the engine's timeout does) takes its connection with it, so the next
/// command gets its own reply, never the rest of the old one.
#[tokio::test(flavor = "current_thread")]
async fn connections_are_reused_and_an_abandoned_reply_never_desyncs_the_next() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
    let mut own = redis.conn().await;
    for i in 0..10 {
        s.set(&format!("k{i}"), b"v", 60_000).await.unwrap();
    }
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        2,
        "the test's own and one pooled: {clients}"
    );

    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    s.set("big", &big, 60_000).await.unwrap();
    let mut abandoned = 0;
    for _ in 0..5 {
        if tokio::time::timeout(Duration::from_micros(300), s.get("big"))
            .await
            .is_err()
        {
            abandoned += 1;
        }
        assert_eq!(s.get("k3").await.unwrap().as_deref(), Some(&b"v"[..]));
    }
    assert!(
        abandoned > 0,
        "the test must abandon at least one reply mid-way"
    );
    assert_eq!(
        s.get("big").await.unwrap().map(|b| b.len()),
        Some(big.len())
    );
}

/// The stream commands write-behind uses, against a real `redis-server`: entries keep
/// binary fields in order, the group is created once (`BUSYGROUP` is success), deliveries
/// are counted, claims respect the idle time, and ack + delete removes an entry for good.
#[tokio::test(flavor = "current_thread")]
async fn stream_commands_against_a_real_redis() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
    let mut own = redis.conn().await;

    assert!(
        s.stream_read_new("q", "g", "c", 1).await.is_err(),
        "reading through a group that does not exist is an error (NOGROUP)"
    );
    let body: &[u8] = b"\x00body\r\n\xff";
    let first = s
        .stream_add("q", None, &[("method", b"POST"), ("body", body)])
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
    assert_eq!(
        read.len(),
        1,
        "entries appended before the group are delivered"
    );
    assert_eq!(read[0].id, first);
    assert_eq!(
        read[0].fields,
        vec![
            ("method".to_string(), b"POST".to_vec()),
            ("body".to_string(), body.to_vec())
        ]
    );
    let pending = s.stream_pending("q", "g", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id.as_str(), pending[0].deliveries),
        (first.as_str(), 1)
    );
    assert!(pending[0].idle_ms < 5_000);

    let ids = [first.clone()];
    assert!(
        s.stream_claim("q", "g", "other", 60_000, &ids)
            .await
            .unwrap()
            .is_empty(),
        "not idle long enough"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = s.stream_claim("q", "g", "other", 10, &ids).await.unwrap();
    assert_eq!(claimed, read, "claimed with its fields");
    assert_eq!(
        s.stream_pending("q", "g", 10).await.unwrap()[0].deliveries,
        2
    );

    s.stream_ack_delete("q", "g", &ids).await.unwrap();
    assert!(s.stream_pending("q", "g", 10).await.unwrap().is_empty());
    let len: u64 = redis::cmd("XLEN")
        .arg("q")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(len, 1, "only the second entry is left");
    assert!(
        s.stream_claim("q", "g", "c", 0, &ids)
            .await
            .unwrap()
            .is_empty(),
        "a deleted entry cannot be claimed"
    );

    let read = s.stream_read_new("q", "g", "c", 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, second);
    assert!(s
        .stream_read_new("q", "g", "c", 10)
        .await
        .unwrap()
        .is_empty());
    s.stream_ack_delete("q", "g", &[second]).await.unwrap();
    s.stream_ack_delete("q", "g", &[]).await.unwrap();
    assert!(s.stream_pending("q", "g", 10).await.unwrap().is_empty());
    let len: u64 = redis::cmd("XLEN")
        .arg("q")
        .query_async(&mut own)
        .await
        .unwrap();
    assert_eq!(len, 0);

    s.set("plain", b"v", 60_000).await.unwrap();
    let wrong = s
        .stream_add("plain", None, &[("f", b"v")])
        .await
        .unwrap_err();
    assert!(wrong.0.contains("WRONGTYPE"), "{wrong}");
    assert_eq!(
        s.get("plain").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "still in step"
    );
}

/// The Worker's Redis client under the write-behind engine code (the Worker runs exactly
/// this over its sockets): a POST is queued and answered 202, a delivery to an origin that is
/// down stays pending, and after the retry time it reaches the origin once, with its key.
#[tokio::test(flavor = "current_thread")]
async fn write_behind_runs_over_the_resp_client() {
    use edgecache::engine::{Engine, EngineConfig, EngineState, Host, Request};
    use edgecache::headers::Headers;
    use edgecache::native::body::{full, ProxyBody};
    use edgecache::native::origin::HyperOrigin;
    use edgecache::native::runtime::TokioRuntime;

    struct RespHost;
    impl Host for RespHost {
        type Body = ProxyBody;
        type Origin = HyperOrigin;
        type SharedTier = RespTier<Tcp>;
        type Runtime = TokioRuntime;
        type Colo = edgecache::engine::NoColo;
        type Lock = std::cell::RefCell<EngineState>;
    }

    let redis = RedisServer::start().await;
    let mut origin = Origin::start().await;
    let mut config = EngineConfig::default();
    config.write_behind.routes = vec!["/w/".into()];
    config.write_behind.retry_after_ms = 1_100;
    config.limits.origin_timeout_ms = 1_000;
    let engine: Engine<RespHost> = Engine::new(
        config,
        HyperOrigin::new(&origin.url()).unwrap(),
        Some(store(&redis.url())),
        TokioRuntime,
    )
    .unwrap();
    origin.stop().await;

    let request = Request {
        client: None,
        method: "PUT".into(),
        scheme: "http".into(),
        target: format!("http://{HOST}/w/1"),
        headers: Headers::from_pairs([("content-type", "text/plain")]),
        body: Some(full("resp body")),
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
    assert_eq!(writes[0].body, b"resp body");
    assert_eq!(writes[0].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(engine.snapshot().engine.write_behind_flushed, 1);
}

/// Leases are released by compare-and-delete (`SharedTier::delete_if_equals`, one Lua
/// script for both clients): only the token that took the lease deletes it, so an
/// instance whose lease outlived its time cannot release the one another instance took
/// since. Both Redis clients, the Worker's and the native one, against a real redis-server.
#[tokio::test(flavor = "current_thread")]
async fn leases_are_released_only_by_their_holder_with_both_clients() {
    async fn check(s: &impl SharedTier, key: &str, own: &mut redis::aio::MultiplexedConnection) {
        assert!(s.set_if_absent(key, b"holder-b", 60_000).await.unwrap());
        // A's lease expired and B took it: A's release leaves B's lease alone.
        assert!(!s.delete_if_equals(key, b"holder-a").await.unwrap());
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(own).await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"holder-b"[..]));
        // B releases its own.
        assert!(s.delete_if_equals(key, b"holder-b").await.unwrap());
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(own).await.unwrap();
        assert_eq!(value, None);
        assert!(!s.delete_if_equals(key, b"holder-b").await.unwrap(), "gone");
        // A value that only starts with the token is not the token.
        assert!(s.set_if_absent(key, b"holder-bb", 60_000).await.unwrap());
        assert!(!s.delete_if_equals(key, b"holder-b").await.unwrap());
    }
    let redis = RedisServer::start().await;
    let mut own = redis.conn().await;
    check(&store(&redis.url()), "lease:resp", &mut own).await;
    let native =
        edgecache::shared_tier::redis_rs::RedisRsTier::new(&redis.url(), Duration::from_secs(1))
            .unwrap();
    check(&native, "lease:native", &mut own).await;
    // The RESP connection is still in step after the script replies.
    assert_eq!(
        store(&redis.url()).increment("after-eval").await.unwrap(),
        1
    );
}

/// Review (d59c389): `get_prefixes` fails as a whole when one of its keys holds another
/// type than a string (`GETRANGE` answers `WRONGTYPE`), where `MGET` (`get_many`) reads such
/// a key as missing and `EXISTS` as present. `l2_extend` then gives up on the batch (256
/// keys), every batch after it and the tag sets, and counts an error toward the breaker:
/// one foreign key under an object key stops every slice of the object being kept.
#[tokio::test(flavor = "current_thread")]
async fn a_key_of_another_type_does_not_fail_every_prefix() {
    let redis = RedisServer::start().await;
    let s = store(&redis.url());
    let mut own = redis.conn().await;
    s.set("k1", b"ECvalue", 60_000).await.unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg("aset")
        .arg("member")
        .query_async(&mut own)
        .await
        .unwrap();
    let many = s.get_many(&["k1".into(), "aset".into()]).await.unwrap();
    assert!(many[0].is_some() && many[1].is_none(), "MGET: a miss");
    let prefixes = s.get_prefixes(&["k1".into(), "aset".into()], 5).await;
    assert_eq!(
        prefixes.as_deref().ok(),
        Some(&[b"ECval".to_vec(), Vec::new()][..]),
        "{prefixes:?}"
    );
}
