//! The native body type: any `http_body::Body` of `Bytes`, boxed, plus a body that replays
//! an already-read prefix before the rest of a stream, one that fails when its source
//! stalls, and one that reads a fill.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

use super::ready::{FileCopy, ReadyEntries};
use super::sendfile::Bodies;
use crate::engine::BodyError;

/// A boxed error from any body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the native host passes through the engine (client request bodies, origin
/// response streams) and sends to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body into a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body with nothing in it.
pub fn empty() -> ProxyBody {
    boxed(http_body_util::Empty::<Bytes>::new())
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    boxed(http_body_util::Full::new(bytes.into()))
}

/// Reads `body` whole, refusing it as soon as it is known to exceed `limit` bytes (its
/// declared length, or what has arrived).
pub async fn read_whole(mut body: ProxyBody, limit: usize) -> Result<Vec<u8>, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// The error of a [`BetweenBytes`] body whose source sent nothing for too long.
#[derive(Debug)]
pub struct Stalled(pub Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the origin sent nothing for {} ms", self.0.as_millis())
    }
}

impl std::error::Error for Stalled {}

/// A body that fails with [`Stalled`] when its source takes longer than `timeout` to send
/// its next frame. The wait is counted from when the next frame is asked for, so a client
/// that reads slowly (and so stops the cache from reading) does not count against the
/// origin.
pub struct BetweenBytes {
    inner: ProxyBody,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
}

impl BetweenBytes {
    /// `inner`, failing when it stalls for `timeout`.
    pub fn new(inner: ProxyBody, timeout: Duration) -> Self {
        BetweenBytes {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let deadline = tokio::time::Instant::now() + this.timeout;
            this.deadline.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Replays `prefix` (frames already read while deciding whether to buffer) and then the
/// rest of the stream.
pub struct Prefixed {
    prefix: std::collections::VecDeque<Bytes>,
    rest: ProxyBody,
}

impl Prefixed {
    /// A body of `prefix` followed by `rest`.
    pub fn new(prefix: Vec<Bytes>, rest: ProxyBody) -> Self {
        Prefixed {
            prefix: prefix.into(),
            rest,
        }
    }
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let prefix: u64 = self.prefix.iter().map(|b| b.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + prefix);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

/// A client's response read from a fill in progress ([`crate::engine::filling`]): each
/// chunk is shared with the fill without copying. A failed fill fails the body, so hyper
/// ends the response abnormally (the connection is closed before the declared length, or
/// without the last chunk) and the client never takes it for complete.
pub struct FillBody {
    reader: crate::engine::filling::FillReader,
    /// The connection's registered bodies and the server's ready forms, when parts of
    /// stored bodies (slices read from the cache) are sent from their file copies.
    files: Option<(Arc<Bodies>, Arc<ReadyEntries>)>,
}

impl FillBody {
    /// The body of `reader`, every chunk written from memory.
    pub fn new(reader: crate::engine::filling::FillReader) -> Self {
        FillBody {
            reader,
            files: None,
        }
    }

    /// The body of `reader`, where the parts of stored bodies are sent from their entries'
    /// file copies ([`ReadyEntries::body_part`]), made for entries read from the cache.
    pub fn sending_files(
        reader: crate::engine::filling::FillReader,
        bodies: Arc<Bodies>,
        readies: Arc<ReadyEntries>,
    ) -> Self {
        FillBody {
            reader,
            files: Some((bodies, readies)),
        }
    }
}

impl Body for FillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.reader.poll_chunk(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(chunk))) => {
                let bytes = match (&self.files, chunk.stored_part()) {
                    (Some((bodies, readies)), Some(part)) => readies.body_part(
                        bodies,
                        part.stored.clone(),
                        part.range,
                        FileCopy::Find { make: part.reused },
                    ),
                    _ => Bytes::from_owner(chunk),
                };
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.expected_length() {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::new(),
        }
    }
}
