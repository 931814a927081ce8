//! Interim (1xx) responses from the origin, forwarded to the client as they arrive (a
//! `103 Early Hints` lets a browser fetch a page's style sheets while the origin still
//! builds the page). RFC 9110 §15.2: a proxy MUST forward 1xx responses unless it asked for
//! them itself. They are never stored: the engine never sees them (hyper's client reports
//! them to a callback and hands back only the final response, which alone is stored).
//!
//! Which, and what of them:
//!
//! - every 1xx but `100 Continue` and `101 Switching Protocols`. hyper's server answers a
//!   client's `Expect: 100-continue` itself when the request body is read, so the origin's
//!   `100` is for the cache's own request and forwarding it would send the client a second
//!   one; a `101` is never an interim response to hyper's client (it ends the exchange as
//!   an upgrade, and the cache sends no `Upgrade`: it is hop-by-hop).
//! - only to HTTP/1.1 clients (RFC 9110 §15.2: never to an HTTP/1.0 one), and only for
//!   requests the cache forwards live: a hit has no origin response, a background
//!   revalidation no client. On a coalesced miss only the client of the request that fetches
//!   (the flight's leader) gets them; the others wait for the final response (one that
//!   stops waiting and fetches itself gets its own).
//! - without hop-by-hop fields (RFC 9110 §7.6.1, what `Connection` names included) and
//!   without `Content-Length` (a 1xx has no content, §8.6).
//!
//! How, since hyper's HTTP/1 server cannot send a 1xx (a service returns one response, and
//! hyper 1.x's `proto/h1/role.rs` (`Server::encode`) turns a 1xx status into a `500`, "response
//! with 1xx status code not supported"; its only interim response is the automatic
//! `100 Continue`): the bytes are written on the client's socket beside hyper, through the
//! same [`Writer`] that hyper's writes go through ([`super::sendfile::HitStream`]). They must
//! never land inside one of hyper's messages, so they are written only between them: when
//! hyper's own buffer is empty, which is when it calls `poll_flush` (its
//! `Buffered::poll_flush`, `proto/h1/io.rs`, flushes the socket only once its buffer is all
//! written). Until hyper writes again, the next bytes on the wire start a new message, so a
//! whole interim response fits there. Otherwise (the socket is full) they wait in the
//! [`Writer`], at most [`MAX_QUEUED`] bytes, and go out before hyper's next write if its
//! previous message is out, or at its next flush. hyper 1.x reads a pipelined request only
//! once the previous response is flushed (`Conn::poll_flush` then `try_keep_alive`), so
//! while a request is served its buffer holds at most that `100 Continue`; the tracking does
//! not depend on it. The request's final response (written by hyper after the service
//! returns) comes after its interim responses: [`Forwarding::finish`] closes the request to
//! further ones and waits until those queued are written.
//!
//! The origin client learns where to forward from the task: the server runs the engine for
//! a request inside [`with_sink`], and [`super::origin::HyperOrigin`] asks for [`current`]
//! when it sends a request. Background jobs run on tasks of their own, so they have none.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{ready, Context, Poll, Waker};

use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

use super::origin::from_header_map;
use crate::policy::hop_by_hop;

/// The most interim bytes one connection queues while its client does not read: further
/// interim responses are dropped (they are hints; the final response still comes).
pub const MAX_QUEUED: usize = 64 * 1024;

/// The write side of one client connection, shared by hyper (through
/// [`super::sendfile::HitStream`]) and the interim responses of its requests.
pub struct Writer(Mutex<Inner>);

struct Inner {
    tcp: OwnedWriteHalf,
    /// hyper has written everything it gave us: it called `poll_flush` after its last
    /// write. True at the start.
    between_messages: bool,
    /// The request that may receive interim responses now (its number), if any.
    open: Option<u64>,
    /// The last request number handed out.
    last: u64,
    /// Interim responses not yet written, in order; `sent` of its bytes are out.
    queued: Vec<u8>,
    sent: usize,
    /// A [`Forwarding::finish`] waiting for `queued` to be written.
    finishing: Option<Waker>,
}

impl Writer {
    /// The write side of a client connection.
    pub fn new(tcp: OwnedWriteHalf) -> Arc<Writer> {
        Arc::new(Writer(Mutex::new(Inner {
            tcp,
            between_messages: true,
            open: None,
            last: 0,
            queued: Vec::new(),
            sent: 0,
            finishing: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of hyper's: the queued interim responses first if hyper's previous message is
    /// all out, then `write` on the socket.
    pub fn poll_hyper_write(
        &self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut OwnedWriteHalf, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.lock();
        if inner.between_messages {
            ready!(inner.poll_drain(cx))?;
        }
        inner.between_messages = false;
        write(&mut inner.tcp, cx)
    }

    /// hyper's flush: its buffer is empty, so the queued interim responses go out now.
    pub fn poll_hyper_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        inner.between_messages = true;
        ready!(inner.poll_drain(cx))?;
        Pin::new(&mut inner.tcp).poll_flush(cx)
    }

    /// hyper's shutdown of the connection's write side.
    pub fn poll_hyper_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().tcp).poll_shutdown(cx)
    }

    /// Opens the next request of the connection to interim responses.
    pub fn begin(self: &Arc<Self>) -> Forwarding {
        let mut inner = self.lock();
        inner.last += 1;
        inner.open = Some(inner.last);
        Forwarding {
            writer: self.clone(),
            request: inner.last,
        }
    }

    /// Queues `bytes`, one whole interim response, for `request` if it is still open, and
    /// writes what it can at once when hyper is between messages.
    fn send(&self, request: u64, bytes: &[u8]) {
        let mut inner = self.lock();
        if inner.open != Some(request) {
            return;
        }
        if inner.queued.len() - inner.sent + bytes.len() > MAX_QUEUED {
            tracing::debug!(
                bytes = bytes.len(),
                "interim response dropped: the client is not reading"
            );
            return;
        }
        inner.queued.extend_from_slice(bytes);
        if inner.between_messages {
            inner.try_drain();
        }
    }
}

impl Inner {
    /// Writes the queued bytes, waking a waiting [`Forwarding::finish`] once all are out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.queued.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.queued[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.drained();
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes now without waiting (from the origin's task, which has
    /// no business waiting on the client); the rest goes at hyper's next write or flush.
    fn try_drain(&mut self) {
        while self.sent < self.queued.len() {
            match self.tcp.try_write(&self.queued[self.sent..]) {
                Ok(n) if n > 0 => self.sent += n,
                // Full (or broken: hyper's own next write will say so).
                _ => return,
            }
        }
        self.drained();
    }

    fn drained(&mut self) {
        self.queued.clear();
        self.sent = 0;
        if let Some(waker) = self.finishing.take() {
            waker.wake();
        }
    }
}

/// One request's permission to receive interim responses; closed by [`Forwarding::finish`]
/// or when dropped (the request was abandoned).
pub struct Forwarding {
    writer: Arc<Writer>,
    request: u64,
}

impl Forwarding {
    /// Where the origin client sends this request's interim responses.
    pub fn sink(&self) -> Sink {
        Sink {
            writer: Arc::downgrade(&self.writer),
            request: self.request,
        }
    }

    /// Closes the request to interim responses (a late one, from an origin request the
    /// engine gave up on, is dropped) and waits until those queued are written, so that the
    /// final response comes after them.
    pub async fn finish(self) {
        self.close();
        std::future::poll_fn(|cx| {
            let mut inner = self.writer.lock();
            if inner.sent == inner.queued.len() {
                return Poll::Ready(());
            }
            if !inner.between_messages {
                // hyper's flush of its previous message writes them and wakes us.
                inner.finishing = Some(cx.waker().clone());
                return Poll::Pending;
            }
            match inner.poll_drain(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(()),
                Poll::Ready(Err(_)) => {
                    // The connection is gone; hyper finds out when it writes.
                    inner.drained();
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
    }

    fn close(&self) {
        let mut inner = self.writer.lock();
        if inner.open == Some(self.request) {
            inner.open = None;
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where one request's interim responses go: the origin client's callback holds it. It
/// does not keep the connection open.
#[derive(Clone)]
pub struct Sink {
    writer: Weak<Writer>,
    request: u64,
}

impl Sink {
    /// Forwards an interim response from the origin, unless it is one the cache does not
    /// forward (see the module documentation) or the request is over.
    pub fn forward(&self, status: StatusCode, headers: &HeaderMap) {
        let Some(bytes) = encode(status, headers) else {
            return;
        };
        if let Some(writer) = self.writer.upgrade() {
            writer.send(self.request, &bytes);
        }
    }
}

/// The interim response to send the client for one received from the origin, or `None` for
/// a status that is not forwarded.
pub fn encode(status: StatusCode, headers: &HeaderMap) -> Option<Vec<u8>> {
    if !status.is_informational()
        || status == StatusCode::CONTINUE
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return None;
    }
    let mut fields = from_header_map(headers);
    hop_by_hop::strip(&mut fields);
    fields.remove("content-length");
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    // Names and values as hyper parsed them: tokens, and values without CR or LF.
    for (name, value) in fields.iter() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

tokio::task_local! {
    static SINK: Sink;
}

/// Runs `future` (the engine handling one request) with `sink` as the place its origin
/// requests forward interim responses to.
pub async fn with_sink<F: Future>(sink: Option<Sink>, future: F) -> F::Output {
    match sink {
        Some(sink) => SINK.scope(sink, future).await,
        None => future.await,
    }
}

/// The sink of the request this task is handling, if any.
pub fn current() -> Option<Sink> {
    SINK.try_with(Sink::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A [`Writer`] on one end of a loopback connection, and the other end.
    async fn pair() -> (Arc<Writer>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        (Writer::new(write), client)
    }

    /// A write of hyper's, all of it.
    async fn hyper_writes(writer: &Writer, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            at += std::future::poll_fn(|cx| {
                writer.poll_hyper_write(cx, |tcp, cx| Pin::new(tcp).poll_write(cx, &bytes[at..]))
            })
            .await
            .unwrap();
        }
    }

    async fn hyper_flushes(writer: &Writer) {
        std::future::poll_fn(|cx| writer.poll_hyper_flush(cx))
            .await
            .unwrap();
    }

    /// The next `len` bytes on the wire (within 10 s).
    async fn read_exactly(client: &mut TcpStream, len: usize) -> String {
        let mut buf = vec![0; len];
        let read = client.read_exact(&mut buf);
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the bytes within 10 s")
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn hints() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.append("link", "</style.css>; rel=preload".parse().unwrap());
        headers
    }

    const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n";

    #[test]
    fn only_forwarded_statuses_are_encoded_and_without_hop_by_hop_fields() {
        let mut headers = hints();
        headers.append("connection", "x-secret".parse().unwrap());
        headers.append("x-secret", "1".parse().unwrap());
        headers.append("keep-alive", "timeout=5".parse().unwrap());
        headers.append("content-length", "0".parse().unwrap());
        headers.append("x-other", "kept".parse().unwrap());
        let bytes = encode(StatusCode::EARLY_HINTS, &headers).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\nx-other: kept\r\n\r\n"
        );
        let processing = encode(StatusCode::PROCESSING, &HeaderMap::new()).unwrap();
        assert_eq!(processing, b"HTTP/1.1 102 Processing\r\n\r\n");
        let unknown = encode(StatusCode::from_u16(199).unwrap(), &HeaderMap::new()).unwrap();
        assert_eq!(unknown, b"HTTP/1.1 199 \r\n\r\n");
        for status in [100, 101, 200, 304] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(encode(status, &hints()).is_none(), "{status}");
        }
    }

    #[tokio::test]
    async fn an_interim_response_waits_for_the_end_of_a_message_hyper_is_writing() {
        let (writer, mut client) = pair().await;
        let previous = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde";
        // hyper has written part of the previous response when the next request's origin
        // sends a 103 (pipelining, with the client reading slowly).
        hyper_writes(&writer, &previous.as_bytes()[..40]).await;
        let request = writer.begin();
        request.sink().forward(StatusCode::EARLY_HINTS, &hints());
        hyper_writes(&writer, &previous.as_bytes()[40..]).await;
        hyper_flushes(&writer).await;
        request.finish().await;
        let next = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        hyper_writes(&writer, next.as_bytes()).await;
        let wire = read_exactly(&mut client, previous.len() + HINTS.len() + next.len()).await;
        assert_eq!(wire, format!("{previous}{HINTS}{next}"));
    }

    #[tokio::test]
    async fn the_final_response_waits_for_queued_interim_responses() {
        let (writer, mut client) = pair().await;
        hyper_writes(&writer, b"HTTP/1.1 204 No Content\r\n").await;
        let request = writer.begin();
        request.sink().forward(StatusCode::EARLY_HINTS, &hints());
        let mut finish = Box::pin(request.finish());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            finish.as_mut().poll(&mut cx).is_pending(),
            "the 103 is queued behind hyper's unfinished message"
        );
        hyper_writes(&writer, b"\r\n").await;
        hyper_flushes(&writer).await;
        assert!(finish.as_mut().poll(&mut cx).is_ready());
        let wire = read_exactly(&mut client, 27 + HINTS.len()).await;
        assert_eq!(wire, format!("HTTP/1.1 204 No Content\r\n\r\n{HINTS}"));
    }

    #[tokio::test]
    async fn closed_and_earlier_requests_forward_nothing() {
        let (writer, mut client) = pair().await;
        let first = writer.begin();
        let late = first.sink();
        first.finish().await;
        late.forward(StatusCode::EARLY_HINTS, &hints());
        let abandoned = writer.begin();
        let dropped = abandoned.sink();
        drop(abandoned);
        dropped.forward(StatusCode::EARLY_HINTS, &hints());
        let current = writer.begin();
        late.forward(StatusCode::EARLY_HINTS, &hints());
        dropped.forward(StatusCode::EARLY_HINTS, &hints());
        current.sink().forward(StatusCode::EARLY_HINTS, &hints());
        current.finish().await;
        hyper_writes(&writer, b"HTTP/1.1 204 No Content\r\n\r\n").await;
        // Only the open request's own 103 was written.
        let wire = read_exactly(&mut client, HINTS.len() + 27).await;
        assert_eq!(wire, format!("{HINTS}HTTP/1.1 204 No Content\r\n\r\n"));
        drop(writer);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_gets_at_most_max_queued_bytes() {
        let (writer, _client) = pair().await;
        // hyper is mid-message, so nothing is written and everything queues.
        hyper_writes(&writer, b"HTTP/1.1").await;
        let request = writer.begin();
        let mut big = HeaderMap::new();
        big.append("link", "x".repeat(1000).parse().unwrap());
        for _ in 0..200 {
            request.sink().forward(StatusCode::EARLY_HINTS, &big);
        }
        let queued = writer.lock().queued.len();
        assert!(
            queued <= MAX_QUEUED && queued > MAX_QUEUED - 2000,
            "{queued}"
        );
    }

    #[tokio::test]
    async fn the_sink_is_the_tasks() {
        let (writer, _client) = pair().await;
        assert!(current().is_none());
        let request = writer.begin();
        let seen = with_sink(Some(request.sink()), async { current().map(|s| s.request) }).await;
        assert_eq!(seen, Some(request.request));
        let spawned = with_sink(Some(request.sink()), async {
            tokio::spawn(async { current().is_some() }).await.unwrap()
        })
        .await;
        assert!(!spawned, "a spawned task (a background job) has none");
    }
}
