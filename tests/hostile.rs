#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! What a hostile client sends to `edgecache serve`, over real sockets: requests a client
//! library would refuse to build (two `Host` fields, none, odd request targets), paths spelled
//! to slip past a rule, and queries ordered to share another request's entry. Each attack is
//! one test; add the next one here.

mod support;
use support::cache::{config, Cache};
use support::*;

use edgecache::engine::EngineConfig;
use edgecache::native::connections::{ConnectionLimits, Resolved};

fn with_view_routes() -> EngineConfig {
    let mut config = config();
    config.routes = serde_json::from_str(VIEW_ROUTES_JSON).expect("routes");
    config
}

/// RFC 9112 §3.2: two Host fields, none, or an invalid one get a 400, and reach neither the
/// origin nor the cache (an origin reading the last Host would otherwise get its page
/// stored under the first).
#[tokio::test]
async fn requests_without_exactly_one_valid_host_get_400() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    for (what, request) in [
        (
            "two Host fields",
            "GET /h?cc=max-age%3D60 HTTP/1.1\r\nHost: edge.test\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host (HTTP/1.1)",
            "GET /h?cc=max-age%3D60 HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host (HTTP/1.0)",
            "GET /h?cc=max-age%3D60 HTTP/1.0\r\n\r\n",
        ),
        (
            "a Host with a path",
            "GET /h?cc=max-age%3D60 HTTP/1.1\r\nHost: edge.test/evil\r\nConnection: close\r\n\r\n",
        ),
        (
            "a Host with userinfo",
            "GET /h?cc=max-age%3D60 HTTP/1.1\r\nHost: u@edge.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "an absolute target with userinfo",
            "GET http://u@edge.test/h HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let r = send_raw(cache.addr, request).await.unwrap();
        assert_eq!(r.status, 400, "{what}: {}", r.head);
        assert!(
            r.head.to_ascii_lowercase().contains("-host"),
            "{what}: Cache-Status names the cause: {}",
            r.head
        );
    }
    assert_eq!(origin.total(), 0);
    assert_eq!(cache.stat("bad_requests").await, 6);
    assert_eq!(cache.stat("stored").await, 0);
}

/// An absolute-form target names the authority; a Host field beside it is ignored (RFC 9112
/// §3.2.2), for the key and the origin alike.
#[tokio::test]
async fn an_absolute_target_wins_over_host() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    let r = send_raw(
        cache.addr,
        "GET http://EDGE.test:80/abs?cc=max-age%3D60 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    let hit = cache.get("/abs?cc=max-age%3D60").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(origin.total(), 1);
}

/// `OPTIONS *` is answered by the cache; `CONNECT` is refused with 501: neither is an
/// "origin unreachable" 502.
#[tokio::test]
async fn options_asterisk_and_connect_get_their_own_answers() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    let r = send_raw(
        cache.addr,
        "OPTIONS * HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.to_ascii_lowercase().contains("allow:"), "{}", r.head);
    let r = send_raw(
        cache.addr,
        "CONNECT edge.test:443 HTTP/1.1\r\nHost: edge.test:443\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 501, "{}", r.head);
    assert_eq!(origin.total(), 0);
}

/// Route rules, the admin API and warming see the normalised path.
#[tokio::test]
async fn paths_cannot_be_spelled_past_routes_or_the_admin_api() {
    let origin = Origin::start().await;
    let cache = Cache::start(with_view_routes(), &origin, None).await;
    assert_paths_are_seen_as_the_key_sees_them(&cache, &origin).await;
}

/// `?a=evil&a=good` and `?a=good&a=evil` do not share an entry.
#[tokio::test]
async fn repeated_query_parameters_do_not_share_an_entry() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    assert_repeated_parameters_stay_apart(&cache, &origin).await;
}

/// Client-sent forwarding, URL-override and method-override fields do not reach the
/// origin (each of them poisoned the entry for everyone before); edgecache's own do.
#[tokio::test]
async fn forwarding_fields_are_set_by_the_cache_not_the_client() {
    let origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    let seen = assert_forwarding_fields_are_the_caches(&cache, &origin).await;
    assert!(
        seen.contains(&format!("x-forwarded-host: {HOST}\n")),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains(&format!(
            "forwarded: for=127.0.0.1;host={HOST};proto=http\n"
        )),
        "{seen}"
    );
}

/// With `key.include_host` off the host is not in the key, so no host the client chose
/// reaches the origin: it gets the origin's own `Host`, no `X-Forwarded-Host` and no
/// `Forwarded: host=`. Two hosts then share the entry, and neither could have poisoned it.
#[tokio::test]
async fn an_unkeyed_host_never_reaches_the_origin() {
    let origin = Origin::start().await;
    let mut unkeyed = config();
    unkeyed.key.include_host = false;
    let cache = Cache::start(unkeyed, &origin, None).await;
    let path = url(
        "/unkeyed",
        &[
            ("cc", "max-age=60"),
            ("echo", "host,x-forwarded-host,forwarded"),
        ],
    );
    let sent = [("x-forwarded-host", "evil.example")];
    let r = send(cache.addr, "GET", &path, &sent, bytes::Bytes::new())
        .await
        .expect("a response");
    let seen = r.text();
    assert!(seen.contains(&format!("host: {}\n", origin.addr)), "{seen}");
    assert!(!seen.contains(HOST) && !seen.contains("evil"), "{seen}");
    assert!(!seen.contains("x-forwarded-host"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http\n"),
        "{seen}"
    );
    let other = raw_get_with_host(cache.addr, &path, "other.example").await;
    assert!(
        other.contains(&seen),
        "the same entry for every host: {other}"
    );
    assert_eq!(origin.count(&path), 1);
}

/// From a trusted proxy (here: loopback) the client address chain is extended and its
/// `X-Forwarded-Proto` is the request's scheme, key included; its other claims are replaced
/// by the cache's own. A bad `trusted_proxies` entry stops the start naming it.
#[tokio::test]
async fn a_trusted_proxy_speaks_for_its_clients() {
    let origin = Origin::start().await;
    let mut trusting = config();
    trusting.forwarding.trusted_proxies = vec!["127.0.0.0/8".into()];
    let cache = Cache::start(trusting, &origin, None).await;
    let path = "/lb?cc=max-age%3D60&echo=x-forwarded-for,x-forwarded-host,x-forwarded-proto";
    let via_proxy = |proto: &'static str| {
        let addr = cache.addr;
        async move {
            send(
                addr,
                "GET",
                path,
                &[
                    ("x-forwarded-for", "198.51.100.9"),
                    ("x-forwarded-host", "public.example"),
                    ("x-forwarded-proto", proto),
                ],
                bytes::Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    let https = via_proxy("https").await;
    assert_eq!(
        https.text(),
        format!(
            "x-forwarded-for: 198.51.100.9, 127.0.0.1\nx-forwarded-host: {HOST}\nx-forwarded-proto: https\n"
        )
    );
    let http = via_proxy("http").await;
    assert!(
        http.text().contains("x-forwarded-proto: http\n"),
        "{}",
        http.text()
    );
    assert_eq!(origin.count(path), 2, "http and https are two keys");
    assert!(via_proxy("https").await.cache_status().contains("hit"));
    let mut bad = config();
    bad.forwarding.trusted_proxies = vec!["10.0.0.0/33".into()];
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("forwarding.trusted_proxies[0]"), "{e}");
}

/// Paths an origin may resolve to another resource than the cache sees (a dot-segment behind
/// an encoded slash or backslash, or a `;` parameter) get 400 rather than a `/static/` TTL
/// on whatever the origin answers (cache deception); `//live/x` meets the `/live/` bypass.
#[tokio::test]
async fn paths_an_origin_reads_otherwise_are_refused_or_merged() {
    let origin = Origin::start().await;
    let cache = Cache::start(with_view_routes(), &origin, None).await;
    for path in [
        "/static/..%2Faccount",
        "/static%2F..%2Faccount",
        "/static%5C..%5Caccount",
        "/static/..;/account",
    ] {
        let r = cache.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.cache_status().contains("ambiguous-path"), "{path}");
    }
    assert_eq!(origin.total(), 0);
    let r = cache.get("//live//x?cc=max-age%3D60").await;
    assert!(
        r.cache_status().contains("fwd=bypass"),
        "{}",
        r.cache_status()
    );
    assert_eq!(origin.count("/live/x?cc=max-age%3D60"), 1);
}

/// Reads `stream` to its end (the server closed it), within the usual bound; what was read.
async fn read_to_close(stream: &mut tokio::net::TcpStream, what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = bounded(what, WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await;
    String::from_utf8_lossy(&got).into_owned()
}

/// A connection from `local` (any 127.0.0.0/8 address) to `addr`.
async fn connect_from(local: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

fn limits(header_timeout_ms: u64, max: usize, max_per_client: usize) -> Resolved {
    ConnectionLimits {
        header_timeout_ms,
        max,
        max_per_client,
        ..ConnectionLimits::default()
    }
    .resolve(1024)
}

/// A connection that sends nothing, one that sends half a request head, and one that idles
/// after its response are all closed once the header timeout has passed (they held their
/// file descriptors forever before).
#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    let cache = Cache::start_with_limits(config(), &origin, None, limits(300, 0, 0)).await;
    let mut silent = tokio::net::TcpStream::connect(cache.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(cache.addr).await.unwrap();
    half.write_all(b"GET /slow HTTP/1.1\r\nHost: edge.test\r\nX-A: ")
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(cache.addr).await.unwrap();
    idle.write_all(b"GET /idle?cc=max-age%3D60 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        .await
        .unwrap();
    let answered = read_to_close(&mut idle, "the idle keep-alive connection to close").await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    read_to_close(&mut silent, "the silent connection to close").await;
    read_to_close(&mut half, "the half-sent head's connection to close").await;
    assert_eq!(origin.count("/slow"), 0);
}

/// One client address cannot hold more than its share: of 600 idle connections it opens,
/// those past its share are closed at once, another client is served, and the connections
/// it was allowed still work.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    let cache = Cache::start_with_limits(config(), &origin, None, limits(15_000, 1000, 100)).await;
    // Six hundred idle connections from one address: the first hundred are admitted.
    let mut held = Vec::new();
    for _ in 0..600 {
        held.push(connect_from("127.0.0.2", cache.addr).await);
    }
    for extra in [100, 350, 599] {
        read_to_close(
            &mut held[extra],
            "a connection past the address's share to be closed",
        )
        .await;
    }
    let r = cache.get("/other-client?cc=max-age%3D60").await;
    assert_eq!(r.status, 200, "another address is served");
    let first = &mut held[0];
    first
        .write_all(b"GET /held HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answered = read_to_close(first, "an admitted connection's answer").await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

/// At the total cap, new connections are closed at once; as connections end, their places
/// are given to new ones.
#[tokio::test]
async fn the_total_cap_refuses_then_frees_places() {
    let origin = Origin::start().await;
    let cache = Cache::start_with_limits(config(), &origin, None, limits(15_000, 8, 8)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from("127.0.0.3", cache.addr).await);
    }
    let mut refused = connect_from("127.0.0.1", cache.addr).await;
    read_to_close(&mut refused, "a connection over the cap to be closed").await;
    drop(held);
    let r = eventually("a freed place to be given out", WAIT, async || {
        cache.try_get("/after?cc=max-age%3D60").await.ok()
    })
    .await;
    assert_eq!(r.status, 200);
}

/// An origin that stalls mid-body: a body the cache reads to store fails as a timeout after
/// `limits.between_bytes_timeout_ms` (504, nothing stored), and one streamed through to the
/// client ends abnormally, never as a short body that looks whole. Both used to hang.
#[tokio::test]
async fn an_origin_stalling_mid_body_is_cut_off() {
    let origin = Origin::start().await;
    let mut config = config();
    config.limits.max_object_bytes = 10_000;
    config.limits.between_bytes_timeout_ms = 300;
    // Longer than a client waits (15 s): only the between-bytes timeout can answer in time.
    config.limits.origin_timeout_ms = 20_000;
    let cache = Cache::start(config, &origin, None).await;

    let r = cache
        .get("/stall/small?size=5000&stall_after=1000&cc=max-age%3D60")
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.cache_status().contains("origin-timeout"),
        "{}",
        r.cache_status()
    );

    let streamed = cache
        .try_get("/stall/large?size=50000&stall_after=20000&cc=max-age%3D60")
        .await;
    let error = streamed.expect_err("a cut stream must not look like a whole response");
    assert!(error.contains("body"), "{error}");
    assert_eq!(cache.stat("stored").await, 0);
}

/// Errors are named by their cause: a request body with an impossible chunk size is the
/// client's fault (400, `detail=request-body`), not an "origin unreachable" 502; an origin
/// that cannot be reached is `origin-unreachable`.
#[tokio::test]
async fn errors_name_their_cause() {
    let mut origin = Origin::start().await;
    let cache = Cache::start(config(), &origin, None).await;
    let r = send_raw(
        cache.addr,
        "POST /upload HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r.head.contains("detail=request-body"), "{}", r.head);
    origin.stop().await;
    let r = cache.get("/gone").await;
    assert_eq!(r.status, 502);
    assert!(
        r.cache_status().contains("detail=origin-unreachable"),
        "{}",
        r.cache_status()
    );
}

/// A request body trickled in and then stalled (slowloris on the body) is cut off after
/// `limits.between_bytes_timeout_ms`: the client gets `400` (`detail=request-body`) and the
/// connection is closed, instead of holding it (and an origin connection) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    let mut c = config();
    c.limits.between_bytes_timeout_ms = 300;
    let cache = Cache::start(c, &origin, None).await;
    let mut stream = tokio::net::TcpStream::connect(cache.addr).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, "the stalled body's connection to close").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("detail=request-body"), "{answer}");
    // A body that keeps coming, however slowly, is not cut.
    let mut stream = tokio::net::TcpStream::connect(cache.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for chunk in [b"ab", b"cd", b"ef"] {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stream.write_all(chunk).await.unwrap();
    }
    let answer = read_to_close(&mut stream, "the slow body's answer").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("POST ok 6"), "{answer}");
}

/// A GET of `path` with `Host: host` on a new connection; the raw response.
async fn raw_get_with_host(addr: std::net::SocketAddr, path: &str, host: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_to_close(&mut stream, "the response").await
}
