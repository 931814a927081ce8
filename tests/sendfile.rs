#![cfg(all(feature = "server", target_os = "linux", not(target_arch = "wasm32")))]
//! Zero-copy hits (src/native/sendfile.rs, src/native/zero_copy.rs) through `edgecache
//! serve` over real sockets: bodies of at least `sendfile::MIN_LEN` bytes are sent from a
//! sealed memfd with `sendfile`, smaller ones from memory, and every byte, response boundary
//! and slow reader comes out right either way.
use std::net::SocketAddr;
use std::time::Duration;

use edgecache::engine::EngineConfig;
use edgecache::native::{sendfile, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The origin's body for `/N`: N bytes that differ from those of other sizes.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ len as u8).collect()
}

/// The end of the header section in `buf`, if it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Serialises this file's tests, which count the process's body files (every running cache
/// adds to them): waits for the last test's cache to have closed its files (its runtime
/// drops it after the test has ended).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static FILES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = FILES.lock().await;
    for _ in 0..1000 {
        if body_files() == 0 {
            return guard;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} body files still open after the last test", body_files());
}

/// The `first-last` of a request's `Range: bytes=first-last`, if it has one.
fn asked_range(head: &str) -> Option<(usize, usize)> {
    let value = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("range: bytes=")
            .map(String::from)
    })?;
    let (first, last) = value.trim().split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// An origin answering `GET /N` with [`body`]`(N)`, cacheable for an hour, with a strong
/// `ETag`, and `Range: bytes=a-b` with a `206`; keep-alive.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
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
                    let path = head.split(' ').nth(1).unwrap_or("/0");
                    let whole = body(path[1..].parse().unwrap_or(0));
                    let len = whole.len();
                    let (status, extra, part) = match asked_range(&head) {
                        Some((first, last)) if first <= last && last < len => (
                            "206 Partial Content",
                            format!("Content-Range: bytes {first}-{last}/{len}\r\n"),
                            &whole[first..=last],
                        ),
                        _ => ("200 OK", String::new(), &whole[..]),
                    };
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\
                         ETag: \"v1\"\r\nAccept-Ranges: bytes\r\nCache-Control: public, max-age=3600\r\n\r\n",
                        part.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(part);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `edgecache serve` in front of a fresh [`origin`], with zero-copy sending on.
async fn cache() -> SocketAddr {
    cache_with(EngineConfig::default()).await
}

/// As [`cache`], with `config`.
async fn cache_with(config: EngineConfig) -> SocketAddr {
    cache_sending_files(config, true).await
}

/// As [`cache`], with `config`, and `sendfile` as `[connections] sendfile` says.
async fn cache_sending_files(config: EngineConfig, sendfile: bool) -> SocketAddr {
    let origin = format!("http://{}", origin().await);
    let engine = server::build_engine(config, &origin, None).unwrap();
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forever = std::future::pending();
    tokio::spawn(server::run(
        engine,
        listener,
        forever,
        Duration::from_secs(1),
        edgecache::native::connections::ConnectionLimits {
            sendfile,
            ..Default::default()
        }
        .resolve(edgecache::native::connections::open_file_limit()),
    ));
    addr
}

/// A client connection that reads responses one after another.
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
    /// Read this many bytes at a time, pausing between reads when `slow`.
    chunk: usize,
    slow: bool,
}

impl Client {
    async fn new(addr: SocketAddr) -> Client {
        Client {
            conn: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            chunk: 64 << 10,
            slow: false,
        }
    }

    async fn fill(&mut self) {
        let mut chunk = vec![0; self.chunk];
        let n = self.conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        self.buf.extend_from_slice(&chunk[..n]);
        if self.slow {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends requests for `(method, path)` back to back, without waiting for answers.
    async fn send(&mut self, requests: &[(&str, &str)]) {
        let mut out = String::new();
        for (method, path) in requests {
            out += &format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        }
        self.conn.write_all(out.as_bytes()).await.unwrap();
    }

    /// The next response: its head (lower-cased) and body (none for `HEAD`).
    async fn response(&mut self, head_request: bool) -> (String, Vec<u8>) {
        while head_end(&self.buf).is_none() {
            self.fill().await;
        }
        let end = head_end(&self.buf).unwrap();
        let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
        self.buf.drain(..end);
        if head_request {
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

    async fn get(&mut self, path: &str) -> (String, Vec<u8>) {
        self.send(&[("GET", path)]).await;
        self.response(false).await
    }
}

/// How many sealed body files this process has open.
fn body_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("edgecache-body"))
        .count()
}

#[tokio::test]
async fn hits_arrive_byte_for_byte_from_memory_and_from_files() {
    let _serial = serial().await;
    let addr = cache().await;
    let mut client = Client::new(addr).await;
    let sizes = [
        1024,
        sendfile::MIN_LEN - 1,
        sendfile::MIN_LEN,
        64 << 10,
        (1 << 20) + 3,
    ];
    for len in sizes {
        let path = format!("/{len}");
        for round in 0..3 {
            let (head, got) = client.get(&path).await;
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert_eq!(got.len(), len, "{len} bytes, round {round}");
            assert!(got == body(len), "{len} bytes differ, round {round}");
            if round > 0 {
                assert!(head.contains("edgecache-l1; hit"), "{head}");
            }
        }
    }
    // The three bodies of at least `MIN_LEN` bytes were hits with a file each.
    assert!(body_files() >= 3, "{} body files", body_files());
}

/// `[connections] sendfile = false`: every hit is written from memory, byte for byte, and
/// no body file is made.
#[tokio::test]
async fn with_sendfile_off_hits_are_written_from_memory() {
    let _serial = serial().await;
    let mut config = EngineConfig::default();
    config.limits.max_object_bytes = 1 << 20;
    config.limits.slice_bytes = 256 << 10;
    let addr = cache_sending_files(config, false).await;
    let mut client = Client::new(addr).await;
    for len in [64 << 10, (3 << 20) + 5] {
        let path = format!("/{len}");
        for round in 0..3 {
            let (head, got) = client.get(&path).await;
            assert!(got == body(len), "{len} bytes differ, round {round}");
            if round > 0 {
                assert!(head.contains("edgecache-l1; hit"), "{head}");
            }
        }
    }
    assert_eq!(body_files(), 0, "no file copies");
}

#[tokio::test]
async fn pipelined_requests_and_head_keep_their_framing() {
    let _serial = serial().await;
    let addr = cache().await;
    let mut client = Client::new(addr).await;
    // Cache both objects, so the batch below is all hits.
    client.get("/70000").await;
    client.get("/1000").await;
    let batch = [
        ("GET", "/70000"),
        ("HEAD", "/70000"),
        ("GET", "/1000"),
        ("GET", "/70000"),
        ("GET", "/70000"),
    ];
    client.send(&batch).await;
    for (method, path) in batch {
        let (head, got) = client.response(method == "HEAD").await;
        assert!(
            head.contains("edgecache-l1; hit"),
            "{method} {path}: {head}"
        );
        let len: usize = path[1..].parse().unwrap();
        if method == "GET" {
            assert!(got == body(len), "{method} {path}: body differs");
        }
    }
    // Nothing was sent beyond the five responses.
    assert!(client.buf.is_empty());
}

#[tokio::test]
async fn a_slow_reader_gets_every_byte() {
    let _serial = serial().await;
    let addr = cache().await;
    let len = 4 << 20;
    let path = format!("/{len}");
    Client::new(addr).await.get(&path).await;
    // A small receive window and small, paced reads: the socket fills, and `sendfile`
    // sends the body in many parts.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = Client {
        conn: socket.connect(addr).await.unwrap(),
        buf: Vec::new(),
        chunk: 16 << 10,
        slow: true,
    };
    for _ in 0..2 {
        let (head, got) = client.get(&path).await;
        assert!(head.contains("edgecache-l1; hit"), "{head}");
        assert!(got == body(len), "body differs");
    }
}

/// A range of a body that hits send from a file is sent from the same file at the range's
/// offset (RFC 9110 §14): the right bytes, with a pipelined whole response after it framed
/// right too.
#[tokio::test]
async fn ranges_of_file_backed_bodies_are_the_right_bytes() {
    let _serial = serial().await;
    let addr = cache().await;
    let mut client = Client::new(addr).await;
    let len = 300_000;
    let path = format!("/{len}");
    for _ in 0..2 {
        // The fill, then a hit, which makes the body's file.
        assert!(client.get(&path).await.1 == body(len));
    }
    let files = body_files();
    assert!(files >= 1, "a hit of {len} bytes made a file");
    for (range, first, last) in [
        ("0-0", 0, 0),
        ("123456-234567", 123_456, 234_567),
        ("-70000", 230_000, 299_999),
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nRange: bytes={range}\r\n\r\n\
             GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"
        );
        client.conn.write_all(request.as_bytes()).await.unwrap();
        let (head, got) = client.response(false).await;
        assert!(head.starts_with("http/1.1 206"), "{head}");
        assert!(
            head.contains(&format!("content-range: bytes {first}-{last}/{len}")),
            "{head}"
        );
        assert!(got == body(len)[first..=last], "bytes={range}: other bytes");
        let (head, got) = client.response(false).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(got == body(len), "the whole response after the range");
    }
    assert_eq!(body_files(), files, "the ranges used the hit's file");
}

/// The slices of an object too large to store whole are sent from file copies too, made
/// when a slice is read from the cache (a hit on it), not when it was fetched for the
/// response: the first response makes none, the second one a file per slice, and whole
/// responses, ranges across slices and a slow reader all get the right bytes.
#[tokio::test]
async fn slices_read_from_the_cache_are_sent_from_files() {
    let _serial = serial().await;
    let mut config = EngineConfig::default();
    config.limits.max_object_bytes = 1 << 20;
    config.limits.slice_bytes = 256 << 10;
    let addr = cache_with(config).await;
    let len: usize = (3 << 20) + 5;
    // Twelve slices of 256 KiB have a file; the last one, of 5 bytes, is too small for one.
    let slices = len / (256 << 10);
    let path = format!("/{len}");
    let mut client = Client::new(addr).await;
    let before = body_files();
    let (head, got) = client.get(&path).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(got == body(len), "the first response's bytes");
    assert_eq!(
        body_files(),
        before,
        "slices fetched for a response get no file"
    );
    let (head, got) = client.get(&path).await;
    assert!(head.contains("edgecache-l1; hit"), "{head}");
    assert!(got == body(len), "the second response's bytes");
    assert_eq!(
        body_files(),
        before + slices,
        "every slice read from the cache has a file"
    );
    // A range across three slices, then a whole response on the same connection.
    let (first, last) = (200_000, 700_000);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nRange: bytes={first}-{last}\r\n\r\n\
         GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"
    );
    client.conn.write_all(request.as_bytes()).await.unwrap();
    let (head, got) = client.response(false).await;
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(got == body(len)[first..=last], "the range's bytes");
    let (head, got) = client.response(false).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(got == body(len), "the whole response after the range");
    // A slow reader with a small window: `sendfile` sends each slice in many parts.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = Client {
        conn: socket.connect(addr).await.unwrap(),
        buf: Vec::new(),
        chunk: 16 << 10,
        slow: true,
    };
    let (head, got) = slow.get(&path).await;
    assert!(head.contains("edgecache-l1; hit"), "{head}");
    assert!(got == body(len), "the slow reader's bytes");
    assert_eq!(body_files(), before + slices, "the files were reused");
    // Another object, fetched once; then a range inside one of its slices, a hit on that
    // slice alone, which makes that slice's file and is sent from it.
    let other = (2 << 20) + 7;
    let path = format!("/{other}");
    assert!(client.get(&path).await.1 == body(other));
    assert_eq!(body_files(), before + slices);
    let (first, last) = (300_000, 310_000);
    for _ in 0..2 {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nRange: bytes={first}-{last}\r\n\r\n");
        client.conn.write_all(request.as_bytes()).await.unwrap();
        let (head, got) = client.response(false).await;
        assert!(head.starts_with("http/1.1 206"), "{head}");
        assert!(head.contains("edgecache-l1; hit"), "{head}");
        assert!(got == body(other)[first..=last], "the range's bytes");
        assert_eq!(
            body_files(),
            before + slices + 1,
            "one file, for that slice"
        );
    }
}
