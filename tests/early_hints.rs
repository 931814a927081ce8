#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! Interim responses (src/native/interim.rs) through `edgecache serve` over raw sockets: an
//! origin's `103 Early Hints` reaches the client as it arrives, before the final response
//! exists, without hop-by-hop fields; it is never stored (a hit has none and no `Link` from
//! it); HTTP/1.0 clients get none; pipelined responses keep their framing around it; and a
//! slow client gets whole interim responses and then its final response.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgecache::engine::EngineConfig;
use edgecache::native::connections::{open_file_limit, ConnectionLimits};
use edgecache::native::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, Notify};

/// No single wait in these tests may take longer than this.
const WAIT: Duration = Duration::from_secs(10);

/// The end of the header section in `buf`, if it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What the origin sends the cache before its final response.
const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\
                     Connection: X-Hop\r\nX-Hop: secret\r\n\r\n";

/// The origin's body for `/big`, larger than the socket buffers between cache and client.
fn big() -> Vec<u8> {
    (0..(4usize << 20)).map(|i| (i % 251) as u8).collect()
}

/// How many `103`s the origin sends for a `/many…` path, and the `Link` of each.
const MANY: usize = 40;
fn long_link() -> String {
    format!("</style.css>; rel=preload; x={}", "a".repeat(8000))
}

/// A raw origin. `/page…` answers `103` (with [`HINTS`]) and then `200 page` cacheable for a
/// minute, and for a path with `wait` it sends the `200` only once the test releases it
/// ([`RawOrigin::release`]); `/many…` sends [`MANY`] `103`s of 8 kB first; `/big` answers
/// 4 MiB at once. It counts the requests per path and tells whoever waits in
/// [`RawOrigin::hinted`] when it has sent its `103`s.
struct RawOrigin {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    releases: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
    hinted: Arc<Notify>,
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = RawOrigin {
            addr: listener.local_addr().unwrap(),
            counts: Arc::default(),
            releases: Arc::default(),
            hinted: Arc::default(),
        };
        let (counts, releases, hinted) = (
            origin.counts.clone(),
            origin.releases.clone(),
            origin.hinted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (counts, releases, hinted) = (counts.clone(), releases.clone(), hinted.clone());
                tokio::spawn(Self::serve(conn, counts, releases, hinted));
            }
        });
        origin
    }

    async fn serve(
        mut conn: TcpStream,
        counts: Arc<Mutex<HashMap<String, usize>>>,
        releases: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
        hinted: Arc<Notify>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0; 4096];
        loop {
            while head_end(&buf).is_none() {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let end = head_end(&buf).unwrap();
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
            let out = if path == "/big" {
                let body = big();
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                out
            } else {
                let hints = if path.contains("many") {
                    format!("HTTP/1.1 103 Early Hints\r\nLink: {}\r\n\r\n", long_link())
                        .repeat(MANY)
                } else {
                    HINTS.to_string()
                };
                if conn.write_all(hints.as_bytes()).await.is_err() {
                    return;
                }
                hinted.notify_one();
                if path.contains("wait") {
                    let (tx, rx) = oneshot::channel();
                    releases.lock().unwrap().push(tx);
                    if rx.await.is_err() {
                        return;
                    }
                }
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=60\r\n\r\npage"
                    .to_vec()
            };
            if conn.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Lets every `wait` request sent so far have its final response.
    fn release(&self) {
        for tx in self.releases.lock().unwrap().drain(..) {
            let _ = tx.send(());
        }
    }

    /// Returns once the origin has sent a `103` (one not waited for before).
    async fn hinted(&self) {
        bounded("the origin to send its 103", self.hinted.notified()).await;
    }
}

/// `edgecache serve` in front of `origin`, default configuration.
async fn cache(origin: &RawOrigin) -> SocketAddr {
    let engine = server::build_engine(
        EngineConfig::default(),
        &format!("http://{}", origin.addr),
        None,
    )
    .unwrap();
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::run(
        engine,
        listener,
        std::future::pending(),
        Duration::from_secs(1),
        ConnectionLimits::default().resolve(open_file_limit()),
    ));
    addr
}

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A raw client connection that reads responses, interim ones included, one by one.
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn new(addr: SocketAddr) -> Client {
        Client {
            conn: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// A client whose receive buffer is small, so the cache's writes to it back up.
    async fn slow_reader(addr: SocketAddr) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        Client {
            conn: socket.connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, requests: &str) {
        self.conn.write_all(requests.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) {
        let mut chunk = vec![0; 64 << 10];
        let n = bounded("bytes from the cache", self.conn.read(&mut chunk))
            .await
            .unwrap();
        assert!(n > 0, "connection closed; got {:?}", self.text());
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The next message's head, lower-cased; its body (by `Content-Length`, none for a 1xx).
    async fn message(&mut self) -> (String, Vec<u8>) {
        while head_end(&self.buf).is_none() {
            self.fill().await;
        }
        let end = head_end(&self.buf).unwrap();
        let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
        self.buf.drain(..end);
        if head
            .split(' ')
            .nth(1)
            .is_some_and(|status| status.starts_with('1'))
        {
            return (head, Vec::new());
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        while self.buf.len() < len {
            self.fill().await;
        }
        (head, self.buf.drain(..len).collect())
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n")
}

/// The 103 the client gets: the origin's `Link`, none of its hop-by-hop fields.
fn assert_forwarded_hints(head: &str) {
    assert!(head.starts_with("http/1.1 103 "), "{head}");
    assert!(
        head.contains("link: </style.css>; rel=preload\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("x-hop") && !head.contains("connection"),
        "hop-by-hop fields are not forwarded: {head}"
    );
}

#[tokio::test]
async fn a_103_reaches_the_client_before_the_final_response_and_is_never_stored() {
    let origin = RawOrigin::start().await;
    let addr = cache(&origin).await;
    let mut client = Client::new(addr).await;
    client.send(&get("/page-wait")).await;
    // The origin sends its 200 only after this: the 103 was forwarded as it arrived.
    let (hints, _) = client.message().await;
    assert_forwarded_hints(&hints);
    origin.release();
    let (head, body) = client.message().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"page");
    assert!(!head.contains("link:"), "{head}");
    assert!(head.contains("stored"), "{head}");

    // A hit: no origin response, so no 103, and nothing of the 103 was stored.
    for mut client in [Client::new(addr).await, client] {
        client.send(&get("/page-wait")).await;
        let (head, body) = client.message().await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("hit"), "{head}");
        assert!(!head.contains("link:"), "{head}");
        assert_eq!(body, b"page");
    }
    assert_eq!(origin.count("/page-wait"), 1);
}

#[tokio::test]
async fn http_1_0_clients_get_no_interim_response() {
    let origin = RawOrigin::start().await;
    let addr = cache(&origin).await;
    let mut client = Client::new(addr).await;
    client
        .send("GET /page-old HTTP/1.0\r\nHost: edge.test\r\n\r\n")
        .await;
    let (head, body) = client.message().await;
    assert!(head.contains(" 200 ok\r\n"), "not a 103: {head}");
    assert_eq!(body, b"page");
    assert_eq!(origin.count("/page-old"), 1);
}

/// Two pipelined requests, the second answered with a 103 first: it comes out after the
/// whole first response (4 MiB to a client that reads slowly) and before the second one.
/// (hyper 1.x reads the next request only once the previous response is flushed; if that
/// changes, the 103 still waits for the end of the first response.)
#[tokio::test]
async fn pipelined_responses_keep_their_framing_around_a_103() {
    let origin = RawOrigin::start().await;
    let addr = cache(&origin).await;
    let mut client = Client::slow_reader(addr).await;
    client
        .send(&format!("{}{}", get("/big"), get("/page-wait-2")))
        .await;
    let (head, body) = client.message().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body == big(), "the first response arrives whole");
    let (hints, _) = client.message().await;
    assert_forwarded_hints(&hints);
    origin.release();
    let (head, body) = client.message().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"page");
}

/// A client that reads slowly, and only once the origin has sent 320 kB of 103s: each 103 it
/// gets is whole (the cache writes what the socket takes and queues the rest, up to
/// `interim::MAX_QUEUED` bytes, dropping what does not fit; how much queues depends on the
/// timing, the queue itself is tested in src/native/interim.rs), and the final response
/// follows the last one.
#[tokio::test]
async fn a_slow_client_gets_whole_103s_then_its_response() {
    let origin = RawOrigin::start().await;
    let addr = cache(&origin).await;
    let mut client = Client::slow_reader(addr).await;
    client.send(&get("/many")).await;
    origin.hinted().await;
    let expected = format!("http/1.1 103 early hints\r\nlink: {}\r\n\r\n", long_link());
    let mut interim = 0;
    let (head, body) = loop {
        let (head, body) = client.message().await;
        if !head.starts_with("http/1.1 103") {
            break (head, body);
        }
        assert!(head == expected, "a whole 103: {head:.200}");
        interim += 1;
    };
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"page");
    assert!((1..=MANY).contains(&interim), "{interim} 103s");
}
