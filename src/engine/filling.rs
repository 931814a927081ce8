//! A response body being stored while clients read it (read-while-writer): the fill job
//! appends the origin's chunks as they arrive ([`Filling::append`]), and every client of
//! the fill reads them from its first byte at its own pace ([`FillReader`]), so a cold miss
//! reaches its clients as fast as the origin sends it, however many ask, with one origin
//! fetch.
//!
//! A fill ends complete (its bytes are then stored) or failed. A failed fill fails every
//! reader that has not read everything: hosts end those responses abnormally, so no client
//! takes a cut body for a whole one (Varnish #3560, pingora #932). A fill that may no longer
//! be stored (it grew past the object limit) keeps serving the readers it has, holding only
//! what the slowest of them has not read yet, and the origin is read no faster than they
//! read ([`TRANSIT_BYTES`]).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::task::{Context, Poll, Waker};

use hashbrown::HashMap;

use super::host::Lock;
use crate::entry::CachedResponse;

/// A fill's state is read from other threads natively (the clients' connections); the
/// portable `no_std` build has no threads.
#[cfg(feature = "std")]
type FillLock = std::sync::Mutex<FillState>;
#[cfg(not(feature = "std"))]
type FillLock = core::cell::RefCell<FillState>;

/// How far the origin may run ahead of the slowest reader of a fill that is not being kept
/// (Varnish's `transit_buffer`): beyond it, the fill waits for readers before reading on.
pub const TRANSIT_BYTES: u64 = 1 << 20;

/// One body being filled: shared by the fill job (the only writer) and its readers.
#[derive(Debug)]
pub struct Filling {
    state: FillLock,
    /// The length the origin declared (`Content-Length`), if it did.
    declared_length: Option<u64>,
}

#[derive(Debug)]
struct FillState {
    /// The chunks not yet released: all of them while the body is kept.
    chunks: VecDeque<Piece>,
    /// The index of `chunks[0]` among every chunk appended.
    first_chunk: usize,
    /// Bytes appended so far.
    received: u64,
    end: End,
    /// Whether the body will be stored when complete (every chunk is kept until then).
    keep: bool,
    /// The next chunk index of each live reader (`None`: a reader that has gone), for
    /// releasing what every reader has read when the body is not kept.
    readers: Vec<Option<usize>>,
    /// Readers waiting for the next chunk or the end.
    waiting_readers: Vec<Waker>,
    /// The writer, when it waits for readers to catch up.
    waiting_writer: Option<Waker>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed(String),
}

/// Why a fill failed, as its readers learn it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillError(pub String);

impl core::fmt::Display for FillError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the response could not be completed: {}", self.0)
    }
}

impl core::error::Error for FillError {}

/// A chunk a fill holds: bytes of its own (from the origin), or part of a stored response's
/// body (a slice of a large object), shared without copying.
#[derive(Clone, Debug)]
enum Piece {
    Owned(Arc<Vec<u8>>),
    Stored(Arc<CachedResponse>, Range<usize>),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Owned(bytes) => bytes,
            Piece::Stored(stored, range) => &stored.body[range.clone()],
        }
    }

    fn len(&self) -> usize {
        self.bytes().len()
    }
}

/// Part of a chunk, shared without copying.
#[derive(Clone, Debug)]
pub struct FillChunk {
    piece: Piece,
    range: Range<usize>,
}

impl AsRef<[u8]> for FillChunk {
    fn as_ref(&self) -> &[u8] {
        &self.piece.bytes()[self.range.clone()]
    }
}

/// Whether the writer may read on from the origin ([`Filling::poll_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Yes.
    Ready,
    /// The body is not kept and no reader is left: stop.
    NoReaders,
}

impl Filling {
    /// An empty fill whose body the origin declared `declared_length` bytes long, kept
    /// (to be stored) when `keep`.
    pub fn new(declared_length: Option<u64>, keep: bool) -> Self {
        Filling {
            state: FillLock::new(FillState {
                chunks: VecDeque::new(),
                first_chunk: 0,
                received: 0,
                end: End::Open,
                keep,
                readers: Vec::new(),
                waiting_readers: Vec::new(),
                waiting_writer: None,
            }),
            declared_length,
        }
    }

    /// The length the origin declared, if it did.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared_length
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.state.with(|s| s.received)
    }

    /// Appends the next chunk from the origin and wakes the readers.
    pub fn append(&self, bytes: Vec<u8>) {
        self.push(Piece::Owned(Arc::new(bytes)));
    }

    /// Appends `range` of the body of `stored` (a slice), shared rather than copied.
    pub fn append_stored(&self, stored: Arc<CachedResponse>, range: Range<usize>) {
        if range.end <= stored.body.len() {
            self.push(Piece::Stored(stored, range));
        }
    }

    fn push(&self, piece: Piece) {
        if piece.len() == 0 {
            return;
        }
        let wake = self.state.with(|s| {
            s.received += piece.len() as u64;
            s.chunks.push_back(piece);
            core::mem::take(&mut s.waiting_readers)
        });
        wake.into_iter().for_each(Waker::wake);
    }

    /// From now on the body is not stored: chunks every reader has read are released, and
    /// no reader joins any more (the caller unregisters the fill).
    pub fn stop_keeping(&self) {
        self.state.with(|s| {
            s.keep = false;
            s.release_read();
        });
    }

    /// Whether the body is still to be stored.
    pub fn keeps(&self) -> bool {
        self.state.with(|s| s.keep)
    }

    /// Whether the writer may read on: always while the body is kept; otherwise once the
    /// slowest reader is within [`TRANSIT_BYTES`] of the end ([`Room::NoReaders`] when
    /// none is left).
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Room> {
        self.state.with(|s| {
            if s.keep {
                return Poll::Ready(Room::Ready);
            }
            if s.readers.iter().all(Option::is_none) {
                return Poll::Ready(Room::NoReaders);
            }
            let held: u64 = s.chunks.iter().map(|c| c.len() as u64).sum();
            if held <= TRANSIT_BYTES {
                return Poll::Ready(Room::Ready);
            }
            s.waiting_writer = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Ends the fill complete and returns its body whole, for storing (`None` when the
    /// body was not kept). Readers go on reading the chunks they have not read.
    pub fn complete(&self) -> Option<Vec<u8>> {
        let (body, wake) = self.state.with(|s| {
            s.end = End::Complete;
            let body = s.keep.then(|| {
                let mut body = Vec::with_capacity(s.received as usize);
                for chunk in &s.chunks {
                    body.extend_from_slice(chunk.bytes());
                }
                body
            });
            (body, core::mem::take(&mut s.waiting_readers))
        });
        wake.into_iter().for_each(Waker::wake);
        body
    }

    /// Ends the fill failed: every reader that has not read everything gets `why`.
    pub fn fail(&self, why: &str) {
        let wake = self.state.with(|s| {
            if s.end == End::Open {
                s.end = End::Failed(String::from(why));
            }
            s.keep = false;
            core::mem::take(&mut s.waiting_readers)
        });
        wake.into_iter().for_each(Waker::wake);
    }

    /// Whether the fill ended, complete or failed.
    pub fn ended(&self) -> bool {
        self.state.with(|s| s.end != End::Open)
    }

    /// Whether the fill failed.
    pub fn failed(&self) -> bool {
        self.state.with(|s| matches!(s.end, End::Failed(_)))
    }
}

impl FillState {
    /// A new reader's slot, reading from the first chunk.
    fn add_reader(&mut self) -> usize {
        match self.readers.iter().position(Option::is_none) {
            Some(free) => {
                self.readers[free] = Some(0);
                free
            }
            None => {
                self.readers.push(Some(0));
                self.readers.len() - 1
            }
        }
    }

    /// Releases the chunks every reader has read (only when the body is not kept).
    fn release_read(&mut self) {
        if self.keep {
            return;
        }
        let slowest = self
            .readers
            .iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or(self.first_chunk + self.chunks.len());
        while self.first_chunk < slowest && !self.chunks.is_empty() {
            self.chunks.pop_front();
            self.first_chunk += 1;
        }
    }
}

/// A client's view of a fill: its bytes from the first, or the range `skip..skip + take`.
#[derive(Debug)]
pub struct FillReader {
    fill: Arc<Filling>,
    /// This reader's slot in the fill's reader table.
    slot: usize,
    /// The index of the next chunk to read.
    next_chunk: usize,
    /// Bytes still to skip before the first one this reader sends.
    skip: u64,
    /// Bytes still to send, when the reader wants a range.
    take: Option<u64>,
}

impl FillReader {
    /// The first reader of `fill`, which its creator has just made.
    pub fn new(fill: Arc<Filling>) -> Self {
        let slot = fill.state.with(FillState::add_reader);
        FillReader {
            fill,
            slot,
            next_chunk: 0,
            skip: 0,
            take: None,
        }
    }

    /// A reader of `fill` from its first byte, joining it while it runs: `None` when that
    /// first byte is gone (a fill not kept releases what its readers have read) or the fill
    /// failed. The one check of whether a request may read a fill it did not start.
    pub fn join(fill: Arc<Filling>) -> Option<Self> {
        let slot = fill.state.with(|s| {
            let whole = s.first_chunk == 0 && !matches!(s.end, End::Failed(_));
            whole.then(|| s.add_reader())
        })?;
        Some(FillReader {
            fill,
            slot,
            next_chunk: 0,
            skip: 0,
            take: None,
        })
    }

    /// This reader, sending only `range` of the body (a single-part `206`).
    pub fn range(mut self, range: Range<u64>) -> Self {
        self.skip = range.start;
        self.take = Some(range.end.saturating_sub(range.start));
        self
    }

    /// The bytes of the body this reader sends: its range, or all of the declared length
    /// (from 0 to the declared length, or to the end when the length is unknown).
    pub fn span(&self) -> core::ops::Range<u64> {
        let end = match self.take {
            Some(take) => self.skip.saturating_add(take),
            None => self.fill.declared_length.unwrap_or(u64::MAX),
        };
        self.skip..end
    }

    /// How many bytes this reader will send, when known (the declared length, or the
    /// range's).
    pub fn expected_length(&self) -> Option<u64> {
        self.take.or(self.fill.declared_length)
    }

    /// The next part of the body: `None` at the end, an error when the fill failed before
    /// this reader read everything (the chunks before the failure are read first).
    pub fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<FillChunk, FillError>>> {
        loop {
            if self.take == Some(0) {
                return Poll::Ready(None);
            }
            let step = self.fill.state.with(|s| {
                let index = self.next_chunk.max(s.first_chunk);
                if let Some(chunk) = s.chunks.get(index - s.first_chunk) {
                    let chunk = chunk.clone();
                    self.next_chunk = index + 1;
                    s.readers[self.slot] = Some(self.next_chunk);
                    s.release_read();
                    return Step::Chunk(chunk, s.waiting_writer.take());
                }
                match &s.end {
                    End::Open => {
                        if !s.waiting_readers.iter().any(|w| w.will_wake(cx.waker())) {
                            s.waiting_readers.push(cx.waker().clone());
                        }
                        Step::Wait
                    }
                    End::Complete => Step::End,
                    End::Failed(why) => Step::Failed(why.clone()),
                }
            });
            let chunk = match step {
                Step::Wait => return Poll::Pending,
                Step::End => return Poll::Ready(None),
                Step::Failed(why) => return Poll::Ready(Some(Err(FillError(why)))),
                Step::Chunk(chunk, writer) => {
                    if let Some(writer) = writer {
                        writer.wake();
                    }
                    chunk
                }
            };
            let len = chunk.len() as u64;
            if self.skip >= len {
                self.skip -= len;
                continue;
            }
            // Below `len`, a chunk's length: fits a `usize`.
            let start = self.skip as usize;
            self.skip = 0;
            let end = match self.take {
                Some(take) => {
                    let end = (start as u64).saturating_add(take).min(len);
                    self.take = Some(take - (end - start as u64));
                    end as usize
                }
                None => chunk.len(),
            };
            return Poll::Ready(Some(Ok(FillChunk {
                piece: chunk,
                range: start..end,
            })));
        }
    }
}

/// What a reader's poll found, decided under the lock and acted on outside it.
enum Step {
    Chunk(Piece, Option<Waker>),
    Wait,
    End,
    Failed(String),
}

impl Drop for FillReader {
    fn drop(&mut self) {
        let writer = self.fill.state.with(|s| {
            if let Some(slot) = s.readers.get_mut(self.slot) {
                *slot = None;
            }
            s.release_read();
            s.waiting_writer.take()
        });
        if let Some(writer) = writer {
            writer.wake();
        }
    }
}

/// A fill in progress, as requests that arrive while it runs find it.
#[derive(Clone, Debug)]
pub struct InProgress {
    /// Which fill of its key this is.
    pub id: u64,
    /// The response being stored, without its body: what a request is checked against
    /// (freshness, `Vary`) and answered with.
    pub entry: Arc<CachedResponse>,
    /// Its body.
    pub filling: Arc<Filling>,
}

/// The fills in progress, by cache key. A key can have several at once: one per `Vary`
/// variant (a request that cannot use the fill in progress starts its own). A purge takes
/// the fills it covers out of the table: they are neither joined nor stored, since what
/// they bring may predate it (their readers read on).
#[derive(Debug, Default)]
pub struct Fills {
    next_id: u64,
    by_key: HashMap<String, Vec<InProgress>>,
}

impl Fills {
    /// Registers a fill of `key`; returns its id.
    pub fn start(&mut self, key: &str, entry: Arc<CachedResponse>, filling: Arc<Filling>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let fill = InProgress { id, entry, filling };
        self.by_key.entry_ref(key).or_default().push(fill);
        id
    }

    /// The fills of `key` in progress (only fills to be stored are registered). The
    /// caller checks each against its request, and joins it with [`FillReader::join`].
    pub fn find(&self, key: &str) -> Vec<InProgress> {
        self.by_key.get(key).cloned().unwrap_or_default()
    }

    /// Takes the fills of `key` (a URL purge) out of the table.
    pub fn purge_key(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    /// Takes the fills tagged `tag` out of the table.
    pub fn purge_tag(&mut self, tag: &str) {
        for fills in self.by_key.values_mut() {
            fills.retain(|f| !f.entry.tags.iter().any(|t| t == tag));
        }
        self.by_key.retain(|_, fills| !fills.is_empty());
    }

    /// Takes every fill out of the table.
    pub fn clear(&mut self) {
        self.by_key.clear();
    }

    /// Unregisters fill `id` of `key`; whether it was still registered.
    pub fn end(&mut self, key: &str, id: u64) -> bool {
        let Some(fills) = self.by_key.get_mut(key) else {
            return false;
        };
        let before = fills.len();
        fills.retain(|f| f.id != id);
        let ended = fills.len() < before;
        if fills.is_empty() {
            self.by_key.remove(key);
        }
        ended
    }

    /// How many fills are in progress.
    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The work of reading a fill's body from the origin and storing it ([`super::Job::Fill`],
/// run by [`super::Engine::run_job`]).
pub struct FillJob<B> {
    /// The request that started the fill (its fields choose the `Vary` variant key).
    pub(crate) head: super::RequestView,
    /// The cache key it is stored under.
    pub(crate) key: String,
    /// The fill, as registered.
    pub(crate) fill: InProgress,
    /// The rest of the origin's body.
    pub(crate) stream: B,
}

impl<B> core::fmt::Debug for FillJob<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FillJob")
            .field("key", &self.key)
            .field("id", &self.fill.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    /// A slice appended from a stored response reaches its reader as the stored bytes
    /// themselves, not a copy; owned chunks follow it in order, and the fill completes.
    #[test]
    fn stored_bytes_are_shared_with_readers() {
        let stored = Arc::new(CachedResponse::new(
            200,
            crate::headers::Headers::new(),
            b"0123456789".to_vec(),
            Timestamp::EPOCH,
            Timestamp::EPOCH,
        ));
        let fill = Arc::new(Filling::new(Some(5), false));
        let mut reader = FillReader::new(fill.clone());
        fill.append_stored(stored.clone(), 2..5);
        fill.append(b"ab".to_vec());
        fill.complete();
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Some(Ok(first))) = reader.poll_chunk(&mut cx) else {
            panic!("a chunk");
        };
        assert_eq!(first.as_ref(), b"234");
        assert_eq!(first.as_ref().as_ptr(), stored.body[2..].as_ptr(), "shared");
        let Poll::Ready(Some(Ok(second))) = reader.poll_chunk(&mut cx) else {
            panic!("a chunk");
        };
        assert_eq!(second.as_ref(), b"ab");
        assert!(matches!(reader.poll_chunk(&mut cx), Poll::Ready(None)));
        fill.append_stored(stored, 8..11);
        assert_eq!(fill.received(), 5, "a range past the body is refused");
    }
}
