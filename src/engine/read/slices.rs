//! Objects larger than `limits.max_object_bytes`, cached in aligned slices of
//! `limits.slice_bytes` fetched with `Range` requests (as nginx's `slice` module and
//! Fastly's segmented caching do), so video, downloads and software updates are cached
//! however large they are.
//!
//! The first response for such an object (a `200` declaring its length, with
//! `Accept-Ranges: bytes`, a validator, and no `Vary`) is stored as a *head*: its fields,
//! no body, and the internal field [`SLICES_FIELD`]. A response served from a head has its
//! content assembled by a [`SliceJob`] slice by slice, each from L1, the shared tier, a
//! fetch of the same slice in progress (coalesced), or the origin (`Range`, with `If-Range`
//! naming the head's validator), and each checked against the head: the slice's `206`, its
//! exact `Content-Range`, and the same validator (RFC 9110 §14.4, §13.1.5). A slice is
//! usable as long as it is the head's representation, whatever its own age. A mismatch means
//! the object changed at the origin: the head and its slices are invalidated everywhere and
//! the response is cut off (never bytes of two versions in one body).
//!
//! A client's `Range` is decided once on the complete length ([`respond::ranged`]) and only
//! the slices it covers are read; several ranges make one `multipart/byteranges` body
//! ([`respond::ranged_for_assembly`]) whose parts are read from their slices. Purges
//! reach the slices: they carry the head's purge tags and its URL's tag.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use crate::cache_control::RequestDirectives;
use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::policy::range::{self, strong_validator, ByteRange, Ranged};
use crate::policy::storage::lifetimes;
use crate::policy::vary;
use crate::store::{EntryMeta, Windows};

use super::fill::{FlightGuard, WaiterGuard};
use super::url_tag;
use crate::engine::filling::{FillReader, Filling, Room};
use crate::engine::flight::{Outcome, Role};
use crate::engine::host::{Lock, Origin, OriginBody, OriginError, OriginRequest, Runtime};
use crate::engine::l2::{with_timeout, KEYS_PER_CHECK};
use crate::engine::respond::Segment;
use crate::engine::{respond, Body, Engine, Handled, Host, Job, RequestView};

/// The internal field of a sliced object's head: `{slice length}/{object length}`. Never
/// sent to clients ([`respond`] removes it).
pub const SLICES_FIELD: &str = "edgecache-slices";

/// The internal field of a head that says when its representation was received from the
/// origin (ms since the epoch): unlike the head's `response_time`, a `304` that freshens
/// the head does not move it (the origin cannot set it: it is removed from origin
/// responses), so it tells slices of this representation from older ones.
pub const SLICED_AT_FIELD: &str = "edgecache-sliced-at";

/// The internal field of a head that says until when (ms since the epoch) its slices were
/// last kept, when a `304` freshened it ([`Engine::slices_to_keep`]). The origin cannot set
/// it either.
pub const SLICES_KEPT_FIELD: &str = "edgecache-slices-kept-until";

/// How an object is sliced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slicing {
    /// Every slice's length but the last one's.
    pub slice_bytes: u64,
    /// The object's length.
    pub length: u64,
}

impl Slicing {
    /// An object of `length` bytes in slices of `slice_bytes`, if it has at most
    /// [`MAX_SLICES`] of them.
    fn new(slice_bytes: u64, length: u64) -> Option<Slicing> {
        let slicing = Slicing {
            slice_bytes: Some(slice_bytes).filter(|&n| n > 0)?,
            length,
        };
        (slicing.count() <= MAX_SLICES).then_some(slicing)
    }

    /// How `stored` is sliced, if it is the head of a sliced object.
    pub fn of(stored: &CachedResponse) -> Option<Slicing> {
        if !stored.body.is_empty() || stored.status != 200 {
            return None;
        }
        let (slice, length) = stored.headers.get_str(SLICES_FIELD)?.split_once('/')?;
        Slicing::new(slice.trim().parse().ok()?, length.trim().parse().ok()?)
    }

    /// How many slices the object has.
    fn count(&self) -> u64 {
        self.length.div_ceil(self.slice_bytes)
    }

    /// When the representation `head` is the head of was received from the origin (ms):
    /// its [`SLICED_AT_FIELD`], or, for a head written before that field, its
    /// `response_time`.
    pub fn received_at(head: &CachedResponse) -> i64 {
        head.headers
            .get_str(SLICED_AT_FIELD)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(head.response_time.as_millis() as i64)
    }

    /// The value of [`SLICES_FIELD`] for it.
    pub fn field(&self) -> String {
        format!("{}/{}", self.slice_bytes, self.length)
    }

    /// The bytes of slice `index`.
    fn bytes_of(&self, index: u64) -> Range<u64> {
        let start = index.saturating_mul(self.slice_bytes).min(self.length);
        start..start.saturating_add(self.slice_bytes).min(self.length)
    }
}

/// How a response too large to store whole is sliced, if it may be: a `200` of declared
/// length whose origin takes byte ranges (`Accept-Ranges: bytes`), with a strong validator
/// to check every slice against ([`strong_validator`]), not varying (slices are keyed by
/// URL alone), not already partial, and in at most [`MAX_SLICES`] slices. `None` when
/// `slice_bytes` is 0 (off).
pub fn sliceable(status: u16, fields: &Headers, slice_bytes: usize) -> Option<Slicing> {
    let takes_ranges = fields
        .list_items("accept-ranges")
        .any(|unit| unit.eq_ignore_ascii_case(b"bytes"));
    let validated = strong_validator(fields).is_some();
    let plain = status == 200
        && !fields.contains("content-range")
        && vary::nominated_fields(fields).is_empty()
        && !fields.contains("vary");
    if slice_bytes == 0 || !takes_ranges || !validated || !plain {
        return None;
    }
    let length = fields.get_str("content-length")?.trim().parse().ok()?;
    Slicing::new(slice_bytes as u64, length)
}

/// The most slices an object is cut in (16 GiB in the default slices of 1 MiB): a larger
/// one is passed through, not cached. It bounds the work done per object: one key per
/// slice to look up, extend or purge, however long the length its origin declares.
pub const MAX_SLICES: u64 = 1 << 14;

/// Whether `slice` holds bytes of the representation `head` describes: the same strong
/// validator (the head has one: it was sliced for it).
fn same_representation(head: &Headers, slice: &Headers) -> bool {
    let validator = strong_validator(head);
    validator.is_some() && validator == strong_validator(slice)
}

/// Whether `slice` can be slice `index` of the object whose head is `head`: of its
/// representation, and of that slice's length.
fn fits(head: &CachedResponse, slicing: Slicing, index: u64, slice: &CachedResponse) -> bool {
    let expected = slicing.bytes_of(index);
    same_representation(&head.headers, &slice.headers)
        && slice.body.len() as u64 == expected.end - expected.start
}

/// The key the slice of `bytes` of the object under `key` is stored under: named by its
/// bytes, not its index, so objects sliced another way never read each other's (U+001F
/// never appears in a URL's key).
/// The key of the first slice of the object under `key`.
pub(in crate::engine::read) fn first_slice_key(key: &str, slicing: Slicing) -> String {
    slice_key(key, &slicing.bytes_of(0))
}

fn slice_key(key: &str, bytes: &Range<u64>) -> String {
    format!("{key}\u{1f}slice {}-{}", bytes.start, bytes.end)
}

/// The work of assembling a response's content from the slices of its object
/// ([`Job::Slices`]): what to assemble, and the origin's stream to read it from, if any.
pub struct SliceJob<B> {
    assembly: Assembly,
    /// The origin's whole response the head was stored from, still to be read, when this
    /// response is its first request's: its slices are read from it, in order, as it
    /// arrives, rather than asked for again by range.
    source: Option<B>,
    /// With a source, the flight of its first slice, which it leads already: taken before
    /// the head was stored, so that the requests that find the head, or were coalesced on
    /// the object, wait for that slice rather than fetch it by range themselves.
    first_flight: Option<u64>,
}

/// Where a slice a response sends came from, for the byte counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetched {
    /// A tier of the cache, or another request's fetch.
    Cached,
    /// The origin, fetched for this response.
    FromOrigin,
}

/// What a [`SliceJob`] assembles.
struct Assembly {
    /// The request (its fields go to the origin for the slices it fetches).
    head: RequestView,
    /// The object's key.
    key: String,
    /// The object's head.
    entry: Arc<CachedResponse>,
    slicing: Slicing,
    /// What to send: the object's bytes to send (one span, or the parts of a
    /// `multipart/byteranges` body between their framing).
    segments: Vec<Segment>,
    /// Where they go: the response's content.
    transit: Arc<Filling>,
    /// The request said `only-if-cached`: no slice may be fetched from the origin.
    cached_only: bool,
}

/// Where a [`SliceJob`] stands in its origin's whole response ([`SliceJob::source`]).
struct Source<B> {
    stream: B,
    /// The offset of the next byte it gives.
    at: u64,
    /// Bytes read past the slice being read: the start of the next one.
    carry: Vec<u8>,
    /// The flight of the next slice, which this source leads already: taken before the
    /// current slice's flight ends, so that its waiters, asking for the next slice at once,
    /// find it in flight and wait for it rather than fetch it by range themselves.
    next_flight: Option<u64>,
}

impl<B> core::fmt::Debug for SliceJob<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SliceJob")
            .field("key", &self.assembly.key)
            .field("segments", &self.assembly.segments.len())
            .finish_non_exhaustive()
    }
}

/// The first request for an object in slices: the origin's whole response, and the flight
/// of its first slice if it leads it (taken before the head was stored).
pub(in crate::engine::read) type FirstRequest<'a, H> = (
    <H as Host>::Body,
    Option<FlightGuard<'a, <H as Host>::Lock>>,
);

impl<H: Host> Engine<H> {
    /// The response to `head` whose stored response is the head `entry` of an object cut in
    /// slices: `handled` (made from `entry` as from any stored response) with its `Range`
    /// decided on the object's length, and its content assembled by a [`SliceJob`]; or,
    /// for `only-if-cached` (RFC 9111 §5.2.1.7), a `504` when a slice it needs is in no
    /// tier ([`Self::slices_held`], decided here once, before any byte is sent). `served`:
    /// what it counts as served from the stored head, counted unless it is refused.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn serve_slices(
        &self,
        head: &RequestView,
        key: &str,
        handled: Handled<H::Body>,
        entry: Arc<CachedResponse>,
        slicing: Slicing,
        source: Option<FirstRequest<'_, H>>,
        served: Option<super::Served>,
    ) -> Handled<H::Body> {
        match self
            .plan_slices(head, key, handled, entry, slicing, source)
            .await
        {
            Ok(planned) => {
                if let Some(served) = served {
                    self.count_served(served);
                }
                planned
            }
            Err(refused) => refused,
        }
    }

    /// [`Self::serve_slices`]'s response: `Err` with the `504` when it is refused.
    async fn plan_slices(
        &self,
        head: &RequestView,
        key: &str,
        mut handled: Handled<H::Body>,
        entry: Arc<CachedResponse>,
        slicing: Slicing,
        source: Option<FirstRequest<'_, H>>,
    ) -> Result<Handled<H::Body>, Handled<H::Body>> {
        // A stand-in of the object's length, so the one range decision applies as to any
        // content of known length.
        let whole = Arc::new(Filling::new(Some(slicing.length), false));
        handled.response.body = Body::Filling(FillReader::new(whole));
        let boundary = || format!("edgecache-{:016x}", self.runtime.random_u64());
        let mut multipart = None;
        if head.asks_for_a_range() {
            // One range decision for both: several ranges, or one (or none) cut as any is.
            let response;
            (response, multipart) = respond::ranged_for_assembly(
                "GET",
                head.headers(),
                handled.response,
                slicing.length,
                boundary,
            );
            handled.response = response;
        }
        let segments = match multipart {
            Some(layout) => layout,
            None => {
                let Body::Filling(reader) = &handled.response.body else {
                    return Ok(handled);
                };
                let span = reader.span();
                if span.is_empty() {
                    Vec::new()
                } else {
                    alloc::vec![Segment::Content(ByteRange {
                        first: span.start,
                        last: span.end - 1,
                    })]
                }
            }
        };
        // RFC 9111 §5.2.1.7: only what is stored, or 504 — so every slice it needs must be
        // in a tier of this cache now, and none is fetched from the origin later.
        let cached_only = RequestDirectives::from_headers(head.headers()).only_if_cached;
        if cached_only && !self.slices_held(key, &entry, slicing, &segments).await {
            let entry = self.statuses.note(Some("only-if-cached"));
            let response = respond::error(504, "not in cache (only-if-cached)", entry);
            return Err(Handled::now(response));
        }
        if let Some(body) = self.within_one_slice_in_l1(key, &entry, slicing, &segments) {
            handled.response.body = body;
            handled.response.source = crate::engine::Source::Cache;
            return Ok(handled);
        }
        let length: u64 = segments.iter().map(Segment::len).sum();
        let transit = Arc::new(Filling::new(Some(length), false));
        handled.response.body = Body::Filling(FillReader::new(transit.clone()));
        handled.response.source = crate::engine::Source::Slices;
        // Its first request reads the object from the origin's whole response: all of it,
        // or a range starting in its first slice (`bytes=0-`, as media players first ask),
        // whose slices up to the range's end it stores on the way.
        let from_start = matches!(
            segments.as_slice(),
            [Segment::Content(part)] if part.first < slicing.slice_bytes
        );
        // (A source not used drops the flight of its first slice: finished, not shared.)
        let (source, first_flight) = match source.filter(|_| from_start) {
            Some((stream, flight)) => (Some(stream), flight.map(FlightGuard::keep)),
            None => (None, None),
        };
        let assembly = Assembly {
            head: head.clone(),
            key: String::from(key),
            entry,
            slicing,
            segments,
            transit,
            cached_only,
        };
        let job = Job::Slices(Box::new(SliceJob {
            assembly,
            source,
            first_flight,
        }));
        handled.job = Job::merge(handled.job, Some(job));
        Ok(handled)
    }

    /// Whether the response to `head` from `stored`, the head of an object in slices under
    /// `key`, needs a slice that is not in L1 now: its content then comes in part from
    /// Redis or the origin, and the cache had only part of the response (RFC 9211 §2.2
    /// `fwd=partial`), not a hit. The span is the one [`Self::serve_slices`] reads: the
    /// single range asked for, nothing for a `416`, else the whole object.
    pub(super) fn lacks_slices(
        &self,
        head: &RequestView,
        key: &str,
        stored: &CachedResponse,
    ) -> bool {
        let Some(slicing) = Slicing::of(stored).filter(|_| head.method() == "GET") else {
            return false;
        };
        let span = match range::decide("GET", head.headers(), 200, &stored.headers, slicing.length)
        {
            Ranged::Partial(parts) if parts.len() == 1 => parts[0].first..parts[0].last + 1,
            Ranged::Unsatisfiable => return false,
            Ranged::Partial(_) | Ranged::Whole => 0..slicing.length,
        };
        !self.slices_in_l1(key, slicing, &span)
    }

    /// Whether a tier of this cache (L1, the shared tier, the colo tier) holds every slice
    /// of the object under `key`, whose head is `entry`, that `segments` read: whether an
    /// `only-if-cached` request (RFC 9111 §5.2.1.7) is answered from what is stored or with
    /// `504`. [`Self::serve_slices`] asks once, before the response's head goes out; the
    /// origin is never asked.
    ///
    /// Cost, for the slices L1 lacks only (none more when L1 holds them all): one pipelined
    /// round trip to the shared tier per [`KEYS_PER_CHECK`] of them (`EXISTS`, no value
    /// read), then, for each the shared tier lacks, one read of the colo tier, checked
    /// against the head and dropped (the Cache API has no existence check, and a colo
    /// entry's purge stamp is inside its value). At most one slice is held at a time, never
    /// the object; slices are checked lazily, so an object's declared length does not size
    /// any allocation, and the first slice missing everywhere ends the check.
    ///
    /// A slice held now may be gone when it is sent (evicted, expired or purged meanwhile,
    /// or a shared-tier entry that does not decode or is of another representation): the
    /// job does not fetch it from the origin ([`Assembly::cached_only`]) but cuts the
    /// response off ([`Engine::run_slices`]), so its body ends short of its
    /// `Content-Length`, or before a multipart body's closing delimiter: it never looks
    /// complete.
    async fn slices_held(
        &self,
        key: &str,
        entry: &CachedResponse,
        slicing: Slicing,
        segments: &[Segment],
    ) -> bool {
        let indices = segments.iter().flat_map(|segment| match segment {
            Segment::Content(part) => {
                part.first / slicing.slice_bytes..part.last / slicing.slice_bytes + 1
            }
            Segment::Framing(_) => 0..0,
        });
        let mut lacking = Vec::new();
        let now = self.runtime.now();
        for index in indices {
            let slice = slice_key(key, &slicing.bytes_of(index));
            if !self.state.with(|s| live_in_l1(s, &slice, now)) {
                lacking.push((index, slice));
            }
            if lacking.len() == KEYS_PER_CHECK {
                if !self.held_behind_l1(key, entry, slicing, &lacking).await {
                    return false;
                }
                lacking.clear();
            }
        }
        self.held_behind_l1(key, entry, slicing, &lacking).await
    }

    /// Whether the shared tier or the colo tier holds each of `lacking`, slices `(index,
    /// key)` of the object under `key` that L1 lacks ([`Self::slices_held`]).
    async fn held_behind_l1(
        &self,
        key: &str,
        entry: &CachedResponse,
        slicing: Slicing,
        lacking: &[(u64, String)],
    ) -> bool {
        if lacking.is_empty() {
            return true;
        }
        let in_l2 = match self.shared.is_some() {
            true => {
                let keys: Vec<String> = lacking.iter().map(|(_, k)| k.clone()).collect();
                self.l2_holds(&keys).await
            }
            false => None,
        };
        for (n, (index, slice_key)) in lacking.iter().enumerate() {
            if in_l2.as_ref().and_then(|held| held.get(n)) == Some(&true) {
                continue;
            }
            if self.colo().is_none() {
                return false;
            }
            let found = self.colo_find_slice(key, slice_key, entry).await;
            if !found.is_some_and(|slice| fits(entry, slicing, *index, &slice)) {
                return false;
            }
        }
        true
    }

    /// The content of a response whose `segments` are one range inside one slice that L1
    /// holds (a player's or a downloader's range, as a rule): part of that slice, sent as
    /// any range of a stored body is, with no assembly job. `None` otherwise.
    fn within_one_slice_in_l1(
        &self,
        key: &str,
        entry: &CachedResponse,
        slicing: Slicing,
        segments: &[Segment],
    ) -> Option<Body<H::Body>> {
        let [Segment::Content(part)] = segments else {
            return None;
        };
        let index = part.first / slicing.slice_bytes;
        if part.last / slicing.slice_bytes != index {
            return None;
        }
        let bytes = slicing.bytes_of(index);
        let now = self.runtime.now();
        let slice = self
            .l1_find(&slice_key(key, &bytes), &Headers::new(), now)
            .filter(|slice| fits(entry, slicing, index, slice))?;
        // Within the slice, whose length was checked: fits a `usize`.
        let range = (part.first - bytes.start) as usize..(part.last + 1 - bytes.start) as usize;
        Some(Body::Slice(slice, range))
    }

    /// Whether every slice of `span` of the object under `key` is in L1.
    fn slices_in_l1(&self, key: &str, slicing: Slicing, span: &Range<u64>) -> bool {
        if span.is_empty() {
            return true;
        }
        let first = span.start / slicing.slice_bytes;
        let last = (span.end - 1) / slicing.slice_bytes;
        let now = self.runtime.now();
        self.state.with(|s| {
            (first..=last).all(|index| {
                let slice = slice_key(key, &slicing.bytes_of(index));
                live_in_l1(s, &slice, now)
            })
        })
    }

    /// Sends the bytes of a [`SliceJob`] into its response, slice by slice, as fast as its
    /// client reads them; a slice that cannot be had cuts the response off.
    pub(crate) async fn run_slices(&self, job: SliceJob<H::Body>) {
        let SliceJob {
            assembly: job,
            source,
            first_flight,
        } = job;
        let transit = job.transit.clone();
        let mut source = source.map(|stream| Source {
            stream,
            at: 0,
            carry: Vec::new(),
            next_flight: first_flight,
        });
        let unfinished = CutOffUnlessDone(&transit);
        for segment in &job.segments {
            let sent = match segment {
                Segment::Framing(bytes) => {
                    transit.append(bytes.clone());
                    self.room_in(&transit).await
                }
                Segment::Content(part) => {
                    self.send_span(&job, part.first..part.last + 1, &mut source)
                        .await
                }
            };
            if let Err(why) = sent {
                transit.fail(&why);
                unfinished.done();
                return;
            }
        }
        transit.complete();
        unfinished.done();
    }

    /// Sends `span` of the job's object into its response, slice by slice, as fast as its
    /// client reads them.
    async fn send_span(
        &self,
        job: &Assembly,
        span: Range<u64>,
        source: &mut Option<Source<H::Body>>,
    ) -> Result<(), String> {
        if span.is_empty() {
            return Ok(());
        }
        let first = span.start / job.slicing.slice_bytes;
        let last = (span.end - 1) / job.slicing.slice_bytes;
        for index in first..=last {
            if let Some(from_source) = source
                .as_mut()
                .filter(|s| s.at == index * job.slicing.slice_bytes)
            {
                let next = (index < last).then_some(index + 1);
                self.slice_from_source(job, index, next, &span, from_source)
                    .await?;
                continue;
            }
            let (slice, fetched) = self.slice(job, index).await?;
            let bytes = job.slicing.bytes_of(index);
            let from = span.start.max(bytes.start) - bytes.start;
            let to = span.end.min(bytes.end) - bytes.start;
            self.count_sent(fetched, to - from);
            // Within the slice, whose length was checked: fits a `usize`. Shared, not copied.
            job.transit.append_stored(
                slice,
                from as usize..to as usize,
                fetched == Fetched::Cached,
            );
            self.room_in(&job.transit).await?;
        }
        Ok(())
    }

    /// Counts `bytes` of content sent from a slice that came as `fetched` says.
    fn count_sent(&self, fetched: Fetched, bytes: u64) {
        self.count(|s| match fetched {
            Fetched::Cached => s.bytes_from_cache += bytes,
            Fetched::FromOrigin => s.bytes_from_origin += bytes,
        });
    }

    /// Waits until the client of `transit` has read enough for more to be sent.
    async fn room_in(&self, transit: &Filling) -> Result<(), String> {
        let wait = self.config.limits.between_bytes_timeout_ms;
        let room = core::future::poll_fn(|cx| transit.poll_room(cx));
        match with_timeout(&self.runtime, wait, room).await {
            Some(Room::Ready) => Ok(()),
            _ => Err(String::from(
                "its client left, or read nothing for too long",
            )),
        }
    }

    /// Reads slice `index` from the job's source into its response as the bytes arrive,
    /// and keeps it, leading the slice's flight so that other requests wait for it (and,
    /// before that flight ends, the flight of slice `next`, which the source reads next).
    async fn slice_from_source(
        &self,
        job: &Assembly,
        index: u64,
        next: Option<u64>,
        span: &Range<u64>,
        source: &mut Source<H::Body>,
    ) -> Result<(), String> {
        let bytes = job.slicing.bytes_of(index);
        let key = slice_key(&job.key, &bytes);
        let flight = match source.next_flight.take() {
            Some(id) => Some(FlightGuard::new(&self.state, &key, id)),
            None => self.lead_slice_flight(&key),
        };
        let request_time = self.runtime.now();
        // Within an object's slice: fits a `usize`.
        let want = (bytes.end - bytes.start) as usize;
        let mut body = Vec::with_capacity(want);
        let wait = self.config.limits.between_bytes_timeout_ms;
        while body.len() < want {
            let mut chunk = if source.carry.is_empty() {
                let next = self.origin.next_chunk(&mut source.stream);
                match with_timeout(&self.runtime, wait, next).await {
                    Some(Ok(Some(chunk))) => chunk,
                    Some(Ok(None)) => {
                        return Err(format!(
                            "the origin's body ended at byte {} of {}",
                            bytes.start + body.len() as u64,
                            job.slicing.length
                        ))
                    }
                    Some(Err(e)) => return Err(format!("{e}")),
                    None => return Err(format!("the origin sent nothing for {wait} ms")),
                }
            } else {
                core::mem::take(&mut source.carry)
            };
            let need = want - body.len();
            if chunk.len() > need {
                source.carry = chunk.split_off(need);
            }
            // The part of the chunk the response sends: all of it, but at the edges of a
            // range (the source is read from the object's first byte).
            let at = bytes.start + body.len() as u64;
            body.extend_from_slice(&chunk);
            let end = at + chunk.len() as u64;
            if span.start <= at && end <= span.end {
                self.count_sent(Fetched::FromOrigin, chunk.len() as u64);
                job.transit.append(chunk);
            } else if span.start < end && at < span.end {
                let from = (span.start.max(at) - at) as usize;
                let to = (span.end.min(end) - at) as usize;
                self.count_sent(Fetched::FromOrigin, (to - from) as u64);
                job.transit.append(chunk[from..to].to_vec());
            }
            let room = core::future::poll_fn(|cx| job.transit.poll_room(cx));
            if with_timeout(&self.runtime, wait, room).await != Some(Room::Ready) {
                return Err(String::from(
                    "its client left, or read nothing for too long",
                ));
            }
        }
        source.at = bytes.end;
        // The next slice's flight first: a request that finds this slice in L1 (another
        // thread, at once) and asks for the next then finds it in flight.
        if let Some(next) = next {
            let next_key = slice_key(&job.key, &job.slicing.bytes_of(next));
            source.next_flight = self.lead_slice_flight(&next_key).map(|guard| guard.keep());
        }
        let slice = self.keep_new_slice(job, &key, body, request_time);
        if let Some(flight) = flight {
            flight.finish(Outcome::Stored(slice.clone()));
        }
        // The tiers behind L1 after the waiters have the slice.
        self.share_slice(job, &key, &slice).await;
        Ok(())
    }

    /// Leads the flight of the slice under `key`; `None` when someone fetches it by range
    /// already (the caller reads it from its source all the same).
    pub(in crate::engine::read) fn lead_slice_flight<'a>(
        &'a self,
        key: &'a str,
    ) -> Option<FlightGuard<'a, H::Lock>> {
        let now = self.runtime.now();
        let abandon_after = self
            .config
            .limits
            .origin_timeout_ms
            .saturating_add(self.config.limits.coalesce_wait_ms);
        match self.state.with(|s| s.flights.join(key, now, abandon_after)) {
            Role::Leader(id) => Some(FlightGuard::new(&self.state, key, id)),
            Role::Waiter(id) => {
                self.state.with(|s| s.flights.leave(key, id));
                None
            }
        }
    }

    /// Slice `index` of the job's object: from L1, the colo tier, the shared tier, a fetch
    /// of it in progress, or the origin.
    async fn slice(
        &self,
        job: &Assembly,
        index: u64,
    ) -> Result<(Arc<CachedResponse>, Fetched), String> {
        let key = slice_key(&job.key, &job.slicing.bytes_of(index));
        let usable = |slice: &Arc<CachedResponse>| fits(&job.entry, job.slicing, index, slice);
        let now = self.runtime.now();
        if let Some(slice) = self.l1_find(&key, &Headers::new(), now).filter(usable) {
            return Ok((slice, Fetched::Cached));
        }
        if self.colo().is_some() {
            let found = self.colo_find_slice(&job.key, &key, &job.entry).await;
            if let Some(slice) = found.filter(usable) {
                self.keep_slice(job, &key, &slice);
                return Ok((slice, Fetched::Cached));
            }
        }
        if self.shared.is_some() {
            if let Some(slice) = self.l2_read(&key).await.filter(usable) {
                self.keep_slice(job, &key, &slice);
                return Ok((slice, Fetched::Cached));
            }
        }
        if job.cached_only {
            return Err(format!(
                "slice {index} is no longer cached (only-if-cached)"
            ));
        }
        let now = self.runtime.now();
        let abandon_after = self
            .config
            .limits
            .origin_timeout_ms
            .saturating_add(self.config.limits.coalesce_wait_ms);
        match self
            .state
            .with(|s| s.flights.join(&key, now, abandon_after))
        {
            Role::Waiter(id) => {
                // Leaves the flight if the wait ends without the outcome, or is dropped.
                let waiter = WaiterGuard::new(&self.state, &key, id);
                let wait = core::future::poll_fn(|cx| {
                    self.state.with(|s| s.flights.poll(&key, id, cx.waker()))
                });
                let waited = with_timeout(&self.runtime, self.config.limits.coalesce_wait_ms, wait);
                let waited = waited.await;
                waiter.done(waited.is_some());
                match waited {
                    Some(Outcome::Stored(slice)) if usable(&slice) => Ok((slice, Fetched::Cached)),
                    _ => Ok((
                        self.fetch_slice(job, index, &key).await?,
                        Fetched::FromOrigin,
                    )),
                }
            }
            Role::Leader(id) => {
                // Finishes the flight as not shared if this fetch is dropped midway.
                let flight = FlightGuard::new(&self.state, &key, id);
                // Looked for again: another request may have stored it and ended its flight
                // between the first look and this one (they store, then end the flight).
                let now = self.runtime.now();
                if let Some(slice) = self.l1_find(&key, &Headers::new(), now).filter(usable) {
                    flight.finish(Outcome::Stored(slice.clone()));
                    return Ok((slice, Fetched::Cached));
                }
                let fetched = self.fetch_slice(job, index, &key).await;
                let outcome = match &fetched {
                    Ok(slice) => Outcome::Stored(slice.clone()),
                    Err(_) => Outcome::NotShared,
                };
                flight.finish(outcome);
                Ok((fetched?, Fetched::FromOrigin))
            }
        }
    }

    /// Fetches slice `index` from the origin, checks it against the head and keeps it. A
    /// slice of another representation invalidates the object everywhere.
    async fn fetch_slice(
        &self,
        job: &Assembly,
        index: u64,
        key: &str,
    ) -> Result<Arc<CachedResponse>, String> {
        let bytes = job.slicing.bytes_of(index);
        let host_keyed = self.config.key.include_host;
        let mut headers = job.head.origin_headers(&self.trust, &[], host_keyed);
        for field in super::fill::ANSWERED_BY_THE_CACHE {
            headers.remove(field);
        }
        headers.set("range", format!("bytes={}-{}", bytes.start, bytes.end - 1));
        if let Some(validator) = strong_validator(&job.entry.headers) {
            headers.set("if-range", validator);
        }
        let request = OriginRequest {
            method: String::from("GET"),
            scheme: String::from(job.head.scheme()),
            host: job.head.origin_host(host_keyed),
            path_and_query: job.head.target(),
            headers,
            body: None,
        };
        self.count(|s| s.origin_fetches += 1);
        let request_time = self.runtime.now();
        let want = bytes.end - bytes.start;
        let fetched = with_timeout(
            &self.runtime,
            self.config.limits.origin_timeout_ms,
            self.origin.fetch(request, want as usize),
        )
        .await
        .unwrap_or(Err(OriginError::Timeout));
        let response = fetched.map_err(|e| {
            self.count(|s| s.origin_errors += 1);
            format!("slice {index}: {e}")
        })?;
        let expected_range = format!(
            "bytes {}-{}/{}",
            bytes.start,
            bytes.end - 1,
            job.slicing.length
        );
        let body = match response.body {
            OriginBody::Buffered(body) if body.len() as u64 == want => Some(body),
            _ => None,
        };
        let same = same_representation(&job.entry.headers, &response.headers);
        let content_range = response.headers.get_str("content-range").map(str::trim);
        let matches = response.status == 206 && same && content_range == Some(&*expected_range);
        let Some(body) = body.filter(|_| matches) else {
            // Only proof of a new representation (a whole `200`, the `If-Range` having
            // failed, or a `206` of another validator or length) makes the head and its
            // slices obsolete everywhere; any other answer (an error, a refusal) ends this
            // response, and the object stays cached.
            let length = format!("/{}", job.slicing.length);
            let other_length = content_range.is_some_and(|r| !r.ends_with(&*length));
            let renewed = matches!(response.status, 200 | 206) && (!same || other_length);
            if renewed {
                self.invalidate_keys(core::slice::from_ref(&job.key)).await;
            } else {
                self.count(|s| s.origin_errors += 1);
            }
            return Err(format!(
                "slice {index}: the origin's answer is not {expected_range} of the stored representation (status {})",
                response.status
            ));
        };
        Ok(self.store_slice(job, key, body, request_time).await)
    }

    /// Keeps `body`, a slice of the job's object fetched from `request_time`, in L1, the
    /// shared tier and the colo tier under `key`, as a response with its head's fields.
    async fn store_slice(
        &self,
        job: &Assembly,
        key: &str,
        body: Vec<u8>,
        request_time: crate::time::Timestamp,
    ) -> Arc<CachedResponse> {
        let slice = self.keep_new_slice(job, key, body, request_time);
        self.share_slice(job, key, &slice).await;
        slice
    }

    /// A slice of the job's object fetched from `request_time`, as a response with its
    /// head's fields, kept in L1 under `key`.
    fn keep_new_slice(
        &self,
        job: &Assembly,
        key: &str,
        body: Vec<u8>,
        request_time: crate::time::Timestamp,
    ) -> Arc<CachedResponse> {
        let mut slice = CachedResponse::new(
            200,
            job.entry.headers.clone(),
            body,
            request_time,
            self.runtime.now(),
        );
        slice.tags = job.entry.tags.clone();
        let slice = self.ready_to_keep(slice);
        self.count(|s| s.slice_fetches += 1);
        self.keep_slice(job, key, &slice);
        slice
    }

    /// Writes a new slice to the shared tier and the colo tier, kept at least as long as
    /// its head says its slices are ([`SLICES_KEPT_FIELD`]): a `304` that comes before it
    /// expires skips it with the others.
    async fn share_slice(&self, job: &Assembly, key: &str, slice: &CachedResponse) {
        let now = self.runtime.now();
        let at_least = slices_kept_until(&job.entry).map_or(0, |until| until.millis_since(now));
        if self.shared.is_some() {
            self.l2_write_tagged(key, slice, &url_tag(&job.key), at_least)
                .await;
        }
        self.colo_write(key, slice, at_least).await;
    }

    /// Keeps `slice` in L1 under `key` as long as its head: tagged with the head's tags and
    /// URL, so the purges of the object reach it.
    fn keep_slice(&self, job: &Assembly, key: &str, slice: &Arc<CachedResponse>) {
        let now = self.runtime.now();
        self.keep_slice_of(&job.key, &job.entry, key, slice, now);
    }

    /// Until when the slices of the object `entry` heads, just freshened by a `304` (RFC
    /// 9111 §4.3.4), are to be kept anew ([`Self::keep_slices`]), if they are. The
    /// representation is the same, so its slices are too: they live on with it rather
    /// than expire on the windows their head had when they were stored (and be fetched
    /// again by range, by every instance). They are kept an eighth of `entry`'s remaining
    /// life longer than it, so not again while that covers it ([`SLICES_KEPT_FIELD`],
    /// recorded once they are kept): a client that asks for a validation on every request
    /// (`no-cache`) costs the slices nothing, and they never expire before their head.
    /// `None` when `entry` is not sliced, or its slices are kept long enough.
    pub(in crate::engine::read) fn slices_to_keep(
        &self,
        entry: &CachedResponse,
    ) -> Option<crate::time::Timestamp> {
        Slicing::of(entry)?;
        let now = self.runtime.now();
        let keep_until = lifetimes(entry, now, &self.config.policy).keep_until;
        if slices_kept_until(entry).is_some_and(|until| until >= keep_until) {
            return None;
        }
        Some(keep_until.plus_millis(keep_until.millis_since(now) / 8))
    }

    /// The slices of the object under `head_key` (head `head`, sliced as `slicing`) that
    /// L1 holds, with their keys.
    fn slices_held_in_l1(
        &self,
        head_key: &str,
        head: &CachedResponse,
        slicing: Slicing,
    ) -> Vec<(String, Arc<CachedResponse>)> {
        let now = self.runtime.now();
        (0..slicing.count())
            .filter_map(|index| {
                let key = slice_key(head_key, &slicing.bytes_of(index));
                let slice = self
                    .l1_find(&key, &Headers::new(), now)
                    .filter(|slice| fits(head, slicing, index, slice))?;
                Some((key, slice))
            })
            .collect()
    }

    /// Keeps the slices of the object under `key` until `until`, as long as its freshened
    /// `head` and more ([`Self::slices_to_keep`]), in every tier: in L1 those it holds; in
    /// the shared tier every slice, by extending its TTL ([`Engine::l2_extend`]: no
    /// slice's content is read or written); in the colo tier, which cannot extend an entry,
    /// those L1 holds, written again ([`Engine::colo_rewrite`]; the others expire there
    /// and are read from the shared tier or fetched by range). Once the shared tier has
    /// answered (or there is none), the head in L1 records it ([`SLICES_KEPT_FIELD`]); a
    /// keep that failed is not recorded, so the next `304` keeps them again.
    pub(crate) async fn keep_slices(
        &self,
        key: &str,
        head: &Arc<CachedResponse>,
        until: crate::time::Timestamp,
    ) {
        let Some(slicing) = Slicing::of(head) else {
            return;
        };
        for (slice_key, slice) in self.slices_held_in_l1(key, head, slicing) {
            self.keep_slice_of(key, head, &slice_key, &slice, until);
        }
        let ttl_ms = until.millis_since(self.runtime.now());
        let mut kept = true;
        if self.shared.is_some() {
            let slices: Vec<String> = (0..slicing.count())
                .map(|index| slice_key(key, &slicing.bytes_of(index)))
                .collect();
            // The sets the slices are listed in: their URL's, and their head's tags'.
            let tags: Vec<String> = head
                .tags
                .iter()
                .cloned()
                .chain(core::iter::once(url_tag(key)))
                .collect();
            kept = self.l2_extend(&slices, &tags, ttl_ms).await.is_some();
        }
        // Read from L1 after the colo tier's purge position is taken: a purge applied
        // since then is after the slices' stamp.
        self.colo_rewrite(|| self.slices_held_in_l1(key, head, slicing), ttl_ms)
            .await;
        if kept {
            self.record_slices_kept(key, head, until);
        }
    }

    /// Marks the head `head` under `key` in L1, if L1 still holds that one, with `until`
    /// ([`SLICES_KEPT_FIELD`]): its next `304`s carry it on, and so do its later writes to
    /// the tiers behind L1.
    fn record_slices_kept(
        &self,
        key: &str,
        head: &Arc<CachedResponse>,
        until: crate::time::Timestamp,
    ) {
        let now = self.runtime.now();
        self.state.with(|s| {
            let Some(entry) = s.l1.peek(key).filter(|e| Arc::ptr_eq(e.value, head)) else {
                return;
            };
            let mut marked = CachedResponse::clone(head);
            marked
                .headers
                .set(SLICES_KEPT_FIELD, format!("{}", until.as_millis()));
            let meta =
                EntryMeta::new(entry.windows, entry.size).with_tags(entry.tags.iter().cloned());
            s.l1.insert_admitted(String::from(key), Arc::new(marked), meta, now);
        });
    }

    /// [`Self::keep_slice`] for the object under `head_key`, whose head is `head`.
    /// It is kept at least until `until`, and until its slices were last kept
    /// ([`SLICES_KEPT_FIELD`]), if that is later than the head's own windows.
    fn keep_slice_of(
        &self,
        head_key: &str,
        head: &CachedResponse,
        key: &str,
        slice: &Arc<CachedResponse>,
        until: crate::time::Timestamp,
    ) {
        let now = self.runtime.now();
        let l = lifetimes(head, now, &self.config.policy);
        let kept_until = slices_kept_until(head).map_or(until, |kept| kept.max(until));
        let windows = Windows {
            stored_at: now,
            fresh_until: l.fresh_until,
            stale_while_revalidate_until: l.stale_while_revalidate_until,
            stale_if_error_until: l.keep_until.max(kept_until),
        };
        let tags = head
            .tags
            .iter()
            .cloned()
            .chain(core::iter::once(url_tag(head_key)));
        let meta = EntryMeta::new(windows, slice.size_bytes() + key.len()).with_tags(tags);
        // Admission is the object's: each slice's key is new, however often the object is
        // asked for, so TinyLFU would refuse the slices of an admitted head in a full L1 and
        // every client reading behind the first would fetch them again by range.
        self.state.with(|s| {
            if s.l1.contains(head_key) {
                s.l1.insert_admitted(String::from(key), slice.clone(), meta, now);
            } else {
                s.l1.insert(String::from(key), slice.clone(), meta, now);
            }
        });
    }
}

/// Whether `entry` is the head of an object in slices that this version does not slice (a
/// head an earlier version wrote, of more than [`MAX_SLICES`] slices): it must never be
/// served as the whole object, whose content it does not hold.
pub(crate) fn refused_head(entry: &CachedResponse) -> bool {
    entry.body.is_empty() && entry.headers.contains(SLICES_FIELD) && Slicing::of(entry).is_none()
}

/// Until when the slices of the object `head` heads were last kept, as it records
/// ([`SLICES_KEPT_FIELD`]).
fn slices_kept_until(head: &CachedResponse) -> Option<crate::time::Timestamp> {
    let until = head
        .headers
        .get_str(SLICES_KEPT_FIELD)?
        .trim()
        .parse()
        .ok()?;
    Some(crate::time::Timestamp::from_millis(until))
}

/// Whether L1 holds an entry under `key` that it would still serve at `now`: resident and
/// not expired. An expired entry stays resident until it is looked up (which drops it) or
/// evicted, so residence alone does not say a slice can be sent from L1; slices expire on
/// their own windows (their head's when kept, or when a `304` last freshened it while they
/// were in L1: [`Engine::keep_slices`]).
fn live_in_l1(s: &crate::engine::EngineState, key: &str, now: crate::time::Timestamp) -> bool {
    s.l1.peek(key)
        .is_some_and(|entry| now < entry.windows.expires_at())
}

/// Fails a response whose slice job is dropped before it is done (the host shut down).
struct CutOffUnlessDone<'a>(&'a Filling);

impl CutOffUnlessDone<'_> {
    fn done(self) {
        core::mem::forget(self);
    }
}

impl Drop for CutOffUnlessDone<'_> {
    fn drop(&mut self) {
        self.0.fail("the response was abandoned");
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::rc::Rc;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::cell::RefCell;

    use crate::engine::admin::PurgeTarget;
    use crate::engine::host::Lock;
    use crate::engine::simulated::{receive, request, serve, Answer, SimRedisHost, Simulation};
    use crate::engine::{Engine, EngineConfig, SharedTier};
    use crate::time::Timestamp;

    const SIZE: usize = 5000;

    fn content() -> String {
        (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect()
    }

    /// An origin serving [`content`] (`ETag` from `etag`, which the test may change), and
    /// single byte ranges of it as `206`, honouring `If-Range`; it records every `Range`.
    fn origin(
        etag: Rc<RefCell<&'static str>>,
        ranges: bool,
    ) -> (Simulation, Rc<RefCell<Vec<String>>>) {
        origin_in_trouble(etag, ranges, Rc::new(RefCell::new(None)))
    }

    /// [`origin`], answering ranges with the status `trouble` holds while it holds one.
    fn origin_in_trouble(
        etag: Rc<RefCell<&'static str>>,
        ranges: bool,
        trouble: Rc<RefCell<Option<u16>>>,
    ) -> (Simulation, Rc<RefCell<Vec<String>>>) {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &[], ""),
        );
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        sim.script.borrow_mut().answerer = Some(Box::new(move |req| {
            let tag = *etag.borrow();
            let body = content();
            let mut fields = alloc::vec![
                ("cache-control", String::from("max-age=60")),
                ("etag", String::from(tag)),
            ];
            if ranges {
                fields.push(("accept-ranges", String::from("bytes")));
            }
            let range = req.headers.get_str("range").map(String::from);
            let if_range_holds = req.headers.get_str("if-range").is_none_or(|v| v == tag);
            let answer = match range {
                Some(_) if trouble.borrow().is_some() => {
                    let status = trouble.borrow().unwrap_or(503);
                    return (Answer::respond(status, &[], "trouble"), 0);
                }
                Some(range) if ranges && if_range_holds => {
                    log.borrow_mut().push(range.clone());
                    let (a, b) = range
                        .strip_prefix("bytes=")
                        .and_then(|r| r.split_once('-'))
                        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                        .unwrap();
                    fields.push(("content-range", alloc::format!("bytes {a}-{b}/{SIZE}")));
                    (206, body[a..=b].to_string())
                }
                _ => {
                    fields.push(("content-length", SIZE.to_string()));
                    (200, body)
                }
            };
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            (Answer::respond(answer.0, &pairs, &answer.1), 0)
        }));
        (sim, seen)
    }

    fn config() -> EngineConfig {
        let mut config = EngineConfig::default();
        config.limits.max_object_bytes = 4096;
        config.limits.slice_bytes = 1024;
        config
    }

    fn status(r: &crate::engine::simulated::Received) -> String {
        String::from(r.fields.get_str("cache-status").unwrap_or(""))
    }

    /// An object too large to hold whole is served whole and cached in slices fetched by
    /// range; the next request is served from them without the origin.
    #[test]
    fn an_object_too_large_to_hold_is_served_and_cached_in_slices() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let first = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/big", &[])));
        assert_eq!(first.status, 200);
        assert_eq!(first.body.as_deref(), Ok(content().as_str()));
        assert_eq!(first.fields.get_str("edgecache-slices"), None, "internal");
        assert!(
            ranges.borrow().is_empty(),
            "its slices read from its own stream"
        );
        assert_eq!(sim.fetches(), 1, "one origin request");
        let fetches = sim.fetches();
        let again = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/big", &[])));
        assert_eq!(again.body.as_deref(), Ok(content().as_str()));
        assert!(status(&again).contains("hit"), "{}", status(&again));
        assert_eq!(sim.fetches(), fetches, "every slice from L1");
        let stats = engine.snapshot().engine;
        assert_eq!((stats.sliced_objects, stats.slice_fetches), (1, 5));
        let head = sim
            .clock
            .block_on(engine.handle(request("HEAD", "/big", &[])));
        assert_eq!(head.response.content_length, Some(SIZE as u64));
    }

    /// The first request for an object in slices reads them from its own response as it
    /// arrives: its first bytes come with the origin's, not after a whole slice, and the
    /// origin is asked once.
    #[test]
    fn the_first_request_reads_its_slices_as_the_origin_sends_them() {
        use crate::engine::simulated::StreamEnd;
        let (head, tail) = (content()[..1000].to_string(), content()[1000..].to_string());
        let fields = [
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("accept-ranges", "bytes"),
            ("content-length", "5000"),
        ];
        let pieces = [(0, head.as_str()), (100, tail.as_str())];
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::stream(200, &fields, &pieces, StreamEnd::Complete),
        );
        let engine = sim.engine(config()).unwrap();
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/f", &[])));
        assert_eq!(r.body.as_deref(), Ok(content().as_str()));
        assert_eq!(r.first_byte_at, Some(Timestamp::from_millis(1_000_000)));
        assert_eq!(sim.fetches(), 1);
        let hit = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/f", &[])));
        assert_eq!(hit.body.as_deref(), Ok(content().as_str()));
        assert_eq!(sim.fetches(), 1, "its five slices were stored on the way");
    }

    /// A range reads only the slices it covers, and is cut from them.
    #[test]
    fn a_range_reads_only_the_slices_it_covers() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let asked = [("range", "bytes=2000-2100")];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/r", &asked)));
        assert_eq!(r.status, 206);
        assert_eq!(r.body.as_deref(), Ok(&content()[2000..=2100]));
        assert_eq!(
            r.fields.get_str("content-range"),
            Some("bytes 2000-2100/5000")
        );
        assert_eq!(*ranges.borrow(), ["bytes=1024-2047", "bytes=2048-3071"]);
        let suffix = [("range", "bytes=-10")];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/r", &suffix)));
        assert_eq!(r.body.as_deref(), Ok(&content()[SIZE - 10..]));
        assert_eq!(
            ranges.borrow().last().map(String::as_str),
            Some("bytes=4096-4999")
        );
        let beyond = [("range", "bytes=6000-")];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/r", &beyond)));
        assert_eq!(r.status, 416);
        assert_eq!(r.fields.get_str("content-range"), Some("bytes */5000"));
    }

    /// The one range decision for an object in slices (`ranged_for_assembly`) answers as
    /// the decision for the same object stored whole does, on a miss and on a hit: status,
    /// `Content-Range`, `Content-Type` and content (a multipart body's boundary aside), for
    /// single ranges, suffixes, several ranges, overlaps, `416`, invalid values and `If-Range`.
    #[test]
    fn ranges_of_an_object_in_slices_answer_as_those_of_one_stored_whole() {
        fn answer(r: &crate::engine::simulated::Received) -> (u16, String, String, String) {
            let field = |name| String::from(r.fields.get_str(name).unwrap_or("-"));
            let mut body = r
                .body
                .clone()
                .unwrap_or_else(|e| alloc::format!("cut: {e:?}"));
            let mut content_type = field("content-type");
            if let Some((_, boundary)) = content_type.split_once("boundary=") {
                body = body.replace(boundary, "B");
                content_type = content_type.replace(boundary, "B");
            }
            (r.status, field("content-range"), content_type, body)
        }
        let cases: &[&[(&str, &str)]] = &[
            &[("range", "bytes=0-0")],
            &[("range", "bytes=2000-2100")],
            &[("range", "bytes=-10")],
            &[("range", "bytes=4990-")],
            &[("range", "bytes=0-")],
            &[("range", "bytes=6000-")],
            &[("range", "bytes=-0")],
            &[("range", "bytes=0-1,3000-3010")],
            &[("range", "bytes=0-10,5-20")],
            &[("range", "bytes=100-199,1000-1099,-5")],
            &[("range", "Bytes = 0-0 , -1,,")],
            &[("range", "bytes=x")],
            &[("range", "items=0-1")],
            &[("range", "bytes=0-1"), ("if-range", "\"v1\"")],
            &[("range", "bytes=0-1"), ("if-range", "\"v2\"")],
            &[("range", "bytes=0-1,10-20"), ("if-range", "\"v2\"")],
            &[("range", "bytes=0-1"), ("range", "bytes=2-3")],
        ];
        let mut statuses = Vec::new();
        for &asked in cases {
            let etag = || Rc::new(RefCell::new("\"v1\""));
            let (sim, _) = origin(etag(), true);
            let whole = sim.engine(EngineConfig::default()).unwrap();
            sim.clock
                .block_on(serve(&whole, &sim.clock, request("GET", "/o", &[])));
            let expected =
                sim.clock
                    .block_on(serve(&whole, &sim.clock, request("GET", "/o", asked)));
            assert!(status(&expected).contains("hit"), "{}", status(&expected));
            let multipart = expected
                .fields
                .get_str("content-type")
                .is_some_and(|t| t.starts_with("multipart/byteranges"));
            statuses.push((expected.status, multipart));
            let (sim, _) = origin(etag(), true);
            let sliced = sim.engine(config()).unwrap();
            for attempt in ["miss", "hit"] {
                let got =
                    sim.clock
                        .block_on(serve(&sliced, &sim.clock, request("GET", "/o", asked)));
                assert_eq!(answer(&got), answer(&expected), "{attempt}: {asked:?}");
            }
        }
        for kind in [(200, false), (206, false), (206, true), (416, false)] {
            assert!(statuses.contains(&kind), "{kind:?} among {statuses:?}");
        }
    }

    /// A range inside one slice that L1 holds is sent from that slice as any range of a
    /// stored body (no assembly job, counted as cache bytes); a range across two slices is
    /// still assembled. Both are the right bytes.
    #[test]
    fn a_range_inside_one_slice_in_l1_is_sent_from_it() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let whole = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/r", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        let asked = ranges.borrow().len();
        let before = engine.snapshot().engine.bytes_from_cache;
        let inside = sim.clock.block_on(engine.handle(request(
            "GET",
            "/r",
            &[("range", "bytes=2100-2199")],
        )));
        assert!(inside.job.is_none(), "no assembly job");
        let crate::engine::Body::Slice(slice, range) = &inside.response.body else {
            panic!("part of one slice");
        };
        assert_eq!(inside.response.status, 206);
        assert_eq!(
            &slice.body[range.clone()],
            &content().as_bytes()[2100..2200]
        );
        assert!(
            inside
                .response
                .headers
                .get_str("cache-status")
                .is_some_and(|s| s.contains("hit")),
            "{:?}",
            inside.response.headers
        );
        assert_eq!(engine.snapshot().engine.bytes_from_cache, before + 100);
        let across = sim.clock.block_on(serve(
            &engine,
            &sim.clock,
            request("GET", "/r", &[("range", "bytes=2000-2100")]),
        ));
        assert_eq!(across.status, 206);
        assert_eq!(across.body.as_deref(), Ok(&content()[2000..=2100]));
        assert_eq!(ranges.borrow().len(), asked, "no origin request");
    }

    /// A slice of another representation (the object changed at the origin): the response
    /// is cut off, never a body of two versions, and the object is fetched anew next time.
    #[test]
    fn a_changed_object_cuts_the_response_off_and_is_fetched_anew() {
        let etag = Rc::new(RefCell::new("\"v1\""));
        let (sim, ranges) = origin(etag.clone(), true);
        let engine = sim.engine(config()).unwrap();
        let asked = [("range", "bytes=0-10")];
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/c", &asked)));
        *etag.borrow_mut() = "\"v2\"";
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/c", &[])));
        let why = r.body.expect_err("cut off");
        assert!(why.0.contains("not bytes 1024-2047/5000"), "{why}");
        let before = (ranges.borrow().len(), sim.fetches());
        let fresh = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/c", &[])));
        assert_eq!(fresh.body.as_deref(), Ok(content().as_str()));
        assert!(
            status(&fresh).contains("fwd=uri-miss"),
            "{}",
            status(&fresh)
        );
        let after = (ranges.borrow().len(), sim.fetches());
        assert_eq!(
            after,
            (before.0, before.1 + 1),
            "fetched anew, whole, slices and all"
        );
        let hit = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/c", &[])));
        assert!(status(&hit).contains("hit"), "{}", status(&hit));
        assert_eq!(sim.fetches(), before.1 + 1, "the slices of v2 were stored");
    }

    /// An error answering a slice (a 503, a refusal) cuts that response off but proves
    /// nothing about the object: it stays cached, and the next request is served from it.
    #[test]
    fn an_error_answering_a_slice_keeps_the_object() {
        let trouble = Rc::new(RefCell::new(None));
        let etag = Rc::new(RefCell::new("\"v1\""));
        let (sim, ranges) = origin_in_trouble(etag, true, trouble.clone());
        let engine = sim.engine(config()).unwrap();
        let asked = [("range", "bytes=0-10")];
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/e", &asked)));
        *trouble.borrow_mut() = Some(503);
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/e", &[])));
        assert!(r.body.is_err(), "cut off");
        *trouble.borrow_mut() = None;
        let before = sim.fetches();
        let again = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/e", &[])));
        assert_eq!(again.body.as_deref(), Ok(content().as_str()));
        assert_eq!(
            status(&again),
            "edgecache-l1; fwd=partial; ttl=60",
            "the object, but not all of its content: no hit"
        );
        assert_eq!(
            sim.fetches() - before,
            4,
            "the four slices it lacked, not the object again"
        );
        // The first request's slice came with the origin's whole response, not by range.
        assert_eq!(ranges.borrow().len(), 4);
    }

    /// The bytes of an object in slices are counted where each slice came from, as they
    /// are sent: from the origin for the first request (its slices read from the origin's
    /// response) and for slices fetched by range, from the cache for those it had.
    #[test]
    fn bytes_sent_from_slices_are_counted_where_they_came_from() {
        let (sim, _) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let bytes = |engine: &crate::engine::Engine<crate::engine::simulated::SimHost>| {
            let stats = engine.snapshot().engine;
            (stats.bytes_from_cache, stats.bytes_from_origin)
        };
        let get = |target: &str, fields: &[(&str, &str)]| {
            sim.clock
                .block_on(serve(&engine, &sim.clock, request("GET", target, fields)))
        };
        let size = SIZE as u64;
        get("/b", &[]);
        assert_eq!(
            bytes(&engine),
            (0, size),
            "the first request: all from the origin"
        );
        get("/b", &[]);
        assert_eq!(bytes(&engine), (size, size), "then all from the cache");
        // Slice 1 gone from L1: a range over slices 0 to 2 fetches it by range.
        let parsed = crate::engine::RequestView::parse(
            "GET",
            "http",
            "/b",
            request("GET", "/b", &[]).headers,
            None,
        );
        let Ok(crate::engine::Target::Resource(view)) = parsed else {
            panic!("a resource");
        };
        let key = engine.key_for(&view);
        let slicing = super::Slicing {
            slice_bytes: 1024,
            length: size,
        };
        engine.state.with(|s| {
            s.l1.remove(super::slice_key(&key, &slicing.bytes_of(1)).as_str())
        });
        get("/b", &[("range", "bytes=1000-2100")]);
        // 24 bytes of slice 0 and 53 of slice 2 from the cache, 1024 of slice 1 fetched.
        assert_eq!(bytes(&engine), (size + 24 + 53, size + 1024));
    }

    /// RFC 9211 §2.2: a response from an object in slices is a hit only when every slice
    /// it needs is in L1; one whose slices came from the origin says `fwd=partial`.
    #[test]
    fn a_response_is_a_hit_only_when_its_slices_are_stored() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let asked = |range: &'static str| request("GET", "/h", &[("range", range)]);
        let first = sim
            .clock
            .block_on(serve(&engine, &sim.clock, asked("bytes=0-10")));
        assert!(
            status(&first).contains("fwd=uri-miss"),
            "{}",
            status(&first)
        );
        // The first range, in the first slice, was read from the origin's whole response.
        for (range, cache_status, fetched) in [
            ("bytes=0-10", "edgecache-l1; hit; ttl=60", 0),
            ("bytes=2000-2100", "edgecache-l1; fwd=partial; ttl=60", 2),
            ("bytes=1500-2100", "edgecache-l1; hit; ttl=60", 2),
            ("bytes=6000-", "edgecache-l1; hit; ttl=60", 2),
        ] {
            let r = sim.clock.block_on(serve(&engine, &sim.clock, asked(range)));
            assert_eq!(status(&r), cache_status, "{range}");
            assert_eq!(ranges.borrow().len(), fetched, "{range}");
        }
        let whole = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/h", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        assert!(status(&whole).contains("fwd=partial"), "{}", status(&whole));
        let again = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/h", &[])));
        assert_eq!(status(&again), "edgecache-l1; hit; ttl=60");
        let head = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("HEAD", "/h", &[])));
        assert_eq!(status(&head), "edgecache-l1; hit; ttl=60", "no content");
        let stats = engine.snapshot().engine;
        assert_eq!(
            (stats.partial_hits, stats.l1_hits),
            (2, 5),
            "the two fwd=partial responses are not counted as hits"
        );
    }

    /// A `Last-Modified` too close to the response's `Date` is a weak validator (RFC 9110
    /// §8.8.2.2): it cannot vouch for bytes put together from several responses, so the
    /// object is not sliced.
    #[test]
    fn a_weak_last_modified_is_not_enough_to_slice() {
        let fields = |lm: &str| {
            crate::headers::Headers::from_pairs([
                ("accept-ranges", "bytes"),
                ("content-length", "5000"),
                ("date", "Mon, 07 Dec 2026 08:00:00 GMT"),
                ("last-modified", lm),
            ])
        };
        let weak = fields("Mon, 07 Dec 2026 07:59:30 GMT");
        assert!(super::sliceable(200, &weak, 1024).is_none());
        let strong = fields("Mon, 07 Dec 2026 07:00:00 GMT");
        assert!(super::sliceable(200, &strong, 1024).is_some());
    }

    /// RFC 9111 §5.2.1.7: `only-if-cached` on an object in slices is answered only when
    /// every slice it needs is stored; otherwise `504`, and the origin is not asked.
    #[test]
    fn only_if_cached_reads_only_stored_slices() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let first = [("range", "bytes=0-10")];
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/o", &first)));
        let asked = ranges.borrow().len();
        let stored = [("range", "bytes=0-10"), ("cache-control", "only-if-cached")];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/o", &stored)));
        assert_eq!((r.status, r.body.as_deref()), (206, Ok(&content()[..=10])));
        let missing = [
            ("range", "bytes=2000-2100"),
            ("cache-control", "only-if-cached"),
        ];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/o", &missing)));
        assert_eq!(r.status, 504);
        assert_eq!(ranges.borrow().len(), asked, "the origin was not asked");
    }

    /// An origin as [`origin`], answering `304` to an `If-None-Match` naming `"v1"`.
    fn origin_revalidating() -> (Simulation, Rc<RefCell<Vec<String>>>) {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let mut inner = sim.script.borrow_mut().answerer.take().unwrap();
        let clock = sim.clock.clone();
        sim.script.borrow_mut().answerer = Some(Box::new(move |req| {
            if req.headers.get_str("if-none-match") == Some("\"v1\"") {
                let date = crate::http_date::format_http_date(crate::time::Clock::now(&*clock));
                let fields = [
                    ("cache-control", "max-age=60"),
                    ("etag", "\"v1\""),
                    ("date", date.as_str()),
                ];
                return (Answer::respond(304, &fields, ""), 0);
            }
            inner(req)
        }));
        (sim, ranges)
    }

    /// RFC 9111 §4.3.4: a `304` that freshens the head of an object in slices keeps its
    /// slices as long as the head (the representation is the same). Before, they kept the
    /// windows their head had when they were stored, expired an hour later while the head
    /// was fresh, and were fetched again by range: `only-if-cached` got a `504` and every
    /// other request sent the origin a range.
    #[test]
    fn slices_live_on_with_their_freshened_head() {
        let (sim, ranges) = origin_revalidating();
        let engine = sim.engine(config()).unwrap();
        let whole = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        // Past the head's freshness, within its validator retention (one hour): a HEAD
        // revalidates the head, which is fresh again; its slices are not read.
        sim.clock.advance_secs(3_650);
        let head = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("HEAD", "/x", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        // Past the windows the slices had when stored (60 s + 1 h); the head, revalidated
        // 15 s ago, is fresh, and so are its slices.
        sim.clock.advance_secs(15);
        let asked = ranges.borrow().len();
        let only = [
            ("range", "bytes=2100-2199"),
            ("cache-control", "only-if-cached"),
        ];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.status, 206, "{} {:?}", status(&r), r.body);
        assert_eq!(r.body.as_deref(), Ok(&content()[2100..2200]));
        assert!(status(&r).contains("hit"), "{}", status(&r));
        let again = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(again.body.as_deref(), Ok(content().as_str()));
        assert!(status(&again).contains("hit"), "{}", status(&again));
        assert_eq!(ranges.borrow().len(), asked, "no slice fetched again");
        // Once the head itself is past its windows, its slices go with it.
        sim.clock.advance_secs(3_700);
        let gone = sim.clock.block_on(serve(
            &engine,
            &sim.clock,
            request("GET", "/x", &[("cache-control", "only-if-cached")]),
        ));
        assert_eq!(gone.status, 504, "{}", status(&gone));
    }

    /// RFC 9111 §4.3.4 behind L1: a `304` that freshens the head of an object in slices
    /// keeps its slices as long as the head in Redis (every slice, its chunks too: here
    /// slices of 2048 bytes are stored as chunks of 1024) and in the colo tier (those L1
    /// holds, written again). Before, they expired there on the windows they were written
    /// with while the head was fresh, and every other instance fetched them again by range.
    #[test]
    fn slices_live_on_behind_l1_with_their_freshened_head() {
        let (sim, ranges) = origin_revalidating();
        let shared = Shared::new(&sim);
        let mut chunked = config();
        chunked.limits.slice_bytes = 2048;
        chunked.l2.chunk_bytes = 1024;
        let colo = crate::engine::simulated::SimColo::new(sim.clock.clone());
        let a = shared
            .instance_with(&sim, chunked.clone())
            .with_colo(Some(colo.clone()));
        let whole = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        let slices_in_colo = colo.expiries("slice");
        assert_eq!(slices_in_colo.len(), 3, "{slices_in_colo:?}");
        // Past the head's freshness, within its validator retention: a HEAD at `a`
        // revalidates the head (`304`), which is fresh again.
        sim.clock.advance_secs(3_650);
        let asked = ranges.borrow().len();
        let fetches = sim.fetches();
        let head = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/x", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        assert_eq!(sim.fetches(), fetches + 1, "revalidated");
        // Kept as long as the freshened head (fresh 60 s, then its validator retention), and
        // an eighth of that longer.
        let kept_until = crate::time::Clock::now(&*sim.clock).plus_millis(3_660_000 * 9 / 8);
        // So is the URL's set that lists them in Redis (a purge of the URL deletes them).
        let epoch = sim.clock.block_on(a.l2_epoch()).unwrap();
        let url_set = a.l2_tag_key(epoch, &super::url_tag(&key_of(&a, "/x")));
        assert_eq!(shared.redis.expiry_of(&url_set), Some(kept_until));
        // Again, asked to (`no-cache`), past the windows the slices were written with (60 s
        // + 1 h, and a minute more for their chunks).
        sim.clock.advance_secs(50);
        let no_cache = [("cache-control", "no-cache")];
        let head = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/x", &no_cache)));
        assert_eq!(head.status, 200, "{}", status(&head));
        assert_eq!(sim.fetches(), fetches + 2, "revalidated");
        sim.clock.advance_secs(30);
        // In the colo tier, the slices L1 holds were written again to expire with their
        // head as the first `304` freshened it (a slice's own fields are its head's from
        // before that `304`, whose lifetime is shorter); the second `304`, within the
        // windows the slices were kept for, kept them no longer.
        let in_colo = colo.expiries("slice");
        assert_eq!(in_colo.len(), 3, "{in_colo:?}");
        assert!(
            in_colo.iter().all(|(_, until)| *until == kept_until),
            "{in_colo:?}"
        );
        // Another instance, its L1 empty: every slice from Redis, none from the origin.
        let only = [("cache-control", "only-if-cached")];
        let b = shared.instance_with(&sim, chunked.clone());
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.status, 200, "{}", status(&r));
        assert_eq!(r.body.as_deref(), Ok(content().as_str()));
        // And one with the colo tier and without Redis's slices: every slice from the colo.
        for index in 0..3 {
            shared.forget_slice_of(&sim, &a, "/x", 2048, index);
        }
        let c = shared
            .instance_with(&sim, chunked.clone())
            .with_colo(Some(colo.clone()));
        let r = sim
            .clock
            .block_on(serve(&c, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.status, 200, "{}", status(&r));
        assert_eq!(r.body.as_deref(), Ok(content().as_str()));
        assert_eq!(ranges.borrow().len(), asked, "no slice fetched again");
        // Once the head is past its own windows, no tier serves its slices.
        sim.clock.advance_secs(3_700);
        let d = shared.instance_with(&sim, chunked);
        let gone = sim
            .clock
            .block_on(serve(&d, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(gone.status, 504, "{}", status(&gone));
    }

    /// A slice fetched after its slices were kept on for a freshened head (here: the first
    /// time it is asked for) is written to Redis and the colo tier kept as long as the
    /// others, not on its own windows (shorter): the next `304`s skip the keep while that
    /// lasts, so it would expire first and be fetched again by range.
    #[test]
    fn a_slice_stored_after_a_keep_lives_as_long_as_the_kept_ones() {
        let (sim, ranges) = origin_revalidating();
        let shared = Shared::new(&sim);
        let colo = crate::engine::simulated::SimColo::new(sim.clock.clone());
        let a = shared.instance(&sim).with_colo(Some(colo.clone()));
        let first = [("range", "bytes=0-99")];
        let r = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/k", &first)));
        assert_eq!(r.status, 206, "{}", status(&r));
        sim.clock.advance_secs(3_650);
        let head = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/k", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        let kept_until = crate::time::Clock::now(&*sim.clock).plus_millis(3_660_000 * 9 / 8);
        // Slice 2, asked for the first time.
        let asked = ranges.borrow().len();
        let later = [("range", "bytes=2100-2199")];
        let r = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/k", &later)));
        assert_eq!(r.body.as_deref(), Ok(&content()[2100..2200]));
        assert_eq!(ranges.borrow().len(), asked + 1, "fetched by range");
        let key = shared.slice_key_in_redis(&sim, &a, "/k", 1024, 2);
        assert_eq!(shared.redis.expiry_of(&key), Some(kept_until));
        let in_colo = colo.expiries("slice 2048-3072");
        assert_eq!(in_colo.len(), 1, "{in_colo:?}");
        assert_eq!(in_colo[0].1, kept_until);
    }

    /// An origin cannot say the slices are kept already: `edgecache-slices-kept-until` on
    /// its `200` and its `304`s is dropped, so a `304` keeps the slices on, and no client
    /// ever sees the field.
    #[test]
    fn an_origin_cannot_set_until_when_slices_are_kept() {
        let (sim, ranges) = origin_revalidating();
        let mut inner = sim.script.borrow_mut().answerer.take().unwrap();
        sim.script.borrow_mut().answerer = Some(Box::new(move |req| match inner(req) {
            (Answer::Respond(status, mut fields, body), delay) => {
                let forged = (
                    String::from(super::SLICES_KEPT_FIELD),
                    String::from("99999999999999"),
                );
                fields.push(forged);
                (Answer::Respond(status, fields, body), delay)
            }
            other => other,
        }));
        let engine = sim.engine(config()).unwrap();
        let whole = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/f", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        sim.clock.advance_secs(3_650);
        let head = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("HEAD", "/f", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        sim.clock.advance_secs(15);
        let asked = ranges.borrow().len();
        let only = [
            ("range", "bytes=2100-2199"),
            ("cache-control", "only-if-cached"),
        ];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/f", &only)));
        assert_eq!(r.status, 206, "{} {:?}", status(&r), r.body);
        assert_eq!(ranges.borrow().len(), asked, "no slice fetched again");
        // Kept as long as the head (an eighth longer), not until the origin's made-up time.
        let key = key_of(&engine, "/f");
        let slicing = super::Slicing {
            slice_bytes: 1024,
            length: SIZE as u64,
        };
        let slice = super::slice_key(&key, &slicing.bytes_of(2));
        let until = engine
            .state
            .with(|s| s.l1.peek(&slice).map(|e| e.windows.expires_at()));
        let day = crate::time::Clock::now(&*sim.clock).plus_secs(86_400);
        assert!(until.is_some_and(|u| u < day), "{until:?}");
        for response in [&whole, &head, &r] {
            assert!(response.fields.get_str(super::SLICES_KEPT_FIELD).is_none());
        }
    }

    /// A `504` for `only-if-cached` (a slice it needs is in no tier) is not a hit: the
    /// head found in L1 is not counted as served (neither `l1_hits` nor `partial_hits`).
    #[test]
    fn an_only_if_cached_504_is_not_counted_as_a_hit() {
        let (sim, _) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        let first = [("range", "bytes=0-10")];
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/h", &first)));
        let hits = || {
            let stats = engine.snapshot().engine;
            (stats.l1_hits, stats.partial_hits)
        };
        let before = hits();
        let missing = [
            ("range", "bytes=2000-2100"),
            ("cache-control", "only-if-cached"),
        ];
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/h", &missing)));
        assert_eq!(r.status, 504);
        assert_eq!(hits(), before, "a 504 counted as a hit");
    }

    /// Instances of `sim` (with [`config`]) sharing one simulated Redis, and that Redis.
    struct Shared {
        redis: crate::engine::simulated::SimRedis,
        seed: core::cell::Cell<u64>,
    }

    impl Shared {
        fn new(sim: &Simulation) -> Self {
            Shared {
                redis: crate::engine::simulated::SimRedis::new(sim.clock.clone()),
                seed: core::cell::Cell::new(1),
            }
        }

        /// A new instance: its own L1, the shared Redis.
        fn instance(&self, sim: &Simulation) -> Engine<SimRedisHost> {
            self.instance_with(sim, config())
        }

        /// [`Self::instance`] with `config`.
        fn instance_with(&self, sim: &Simulation, config: EngineConfig) -> Engine<SimRedisHost> {
            let (origin, _) = sim.parts();
            self.seed.set(self.seed.get() + 1);
            let runtime = crate::engine::simulated::SimRuntime::seeded(
                sim.clock.clone(),
                self.seed.get() << 32,
            );
            let tier = crate::shared_tier::RedisTier::over(self.redis.clone());
            Engine::new(config, origin, Some(tier), runtime).unwrap()
        }

        /// Deletes from Redis slice `index` (of 1024 bytes) of the object at `target`.
        fn forget_slice(
            &self,
            sim: &Simulation,
            engine: &Engine<SimRedisHost>,
            target: &str,
            index: u64,
        ) {
            self.forget_slice_of(sim, engine, target, 1024, index);
        }

        /// Deletes from Redis slice `index` (of `slice_bytes`) of the object at `target`.
        fn forget_slice_of(
            &self,
            sim: &Simulation,
            engine: &Engine<SimRedisHost>,
            target: &str,
            slice_bytes: u64,
            index: u64,
        ) {
            let keys = [self.slice_key_in_redis(sim, engine, target, slice_bytes, index)];
            let tier = crate::shared_tier::RedisTier::over(self.redis.clone());
            assert!(self.holds(sim, &keys[0]), "slice {index} was in Redis");
            sim.clock
                .block_on(SharedTier::delete(&tier, &keys))
                .unwrap();
            assert!(!self.holds(sim, &keys[0]));
        }

        /// The Redis key of slice `index` (of `slice_bytes`) of the object at `target`.
        fn slice_key_in_redis(
            &self,
            sim: &Simulation,
            engine: &Engine<SimRedisHost>,
            target: &str,
            slice_bytes: u64,
            index: u64,
        ) -> String {
            let slicing = super::Slicing {
                slice_bytes,
                length: SIZE as u64,
            };
            let slice = super::slice_key(&key_of(engine, target), &slicing.bytes_of(index));
            let epoch = sim.clock.block_on(engine.l2_epoch()).unwrap();
            engine.l2_object_key(epoch, &slice)
        }

        /// Whether Redis holds `key`.
        fn holds(&self, sim: &Simulation, key: &str) -> bool {
            let tier = crate::shared_tier::RedisTier::over(self.redis.clone());
            let keys = [String::from(key)];
            sim.clock.block_on(SharedTier::exist(&tier, &keys)).unwrap() == [true]
        }
    }

    /// The cache key of `target` at `engine`.
    fn key_of<H: crate::engine::Host>(engine: &Engine<H>, target: &str) -> String {
        let r = request("GET", target, &[]);
        let parsed = crate::engine::RequestView::parse("GET", "http", target, r.headers, None);
        let Ok(crate::engine::Target::Resource(view)) = parsed else {
            panic!("a resource");
        };
        engine.key_for(&view)
    }

    /// RFC 9111 §5.2.1.7: the shared tier is part of the cache. `only-if-cached` at an
    /// instance whose L1 has none of an object's slices is answered from those another
    /// instance stored in Redis, byte for byte, without the origin; the response says
    /// `fwd=partial` (RFC 9211 §2.2: L1 had only part of it), the next one, from the slices
    /// it kept, `hit`.
    #[test]
    fn only_if_cached_is_answered_from_slices_in_the_shared_tier() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let shared = Shared::new(&sim);
        let (a, b) = (shared.instance(&sim), shared.instance(&sim));
        let filled = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/t", &[])));
        assert_eq!(filled.body.as_deref(), Ok(content().as_str()));
        let asked = (sim.fetches(), ranges.borrow().len());
        let only = [("cache-control", "only-if-cached")];
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/t", &only)));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_deref(), Ok(content().as_str()));
        assert!(
            status(&r).starts_with("edgecache-l2; fwd=partial"),
            "{}",
            status(&r)
        );
        let stats = b.snapshot().engine;
        assert_eq!(
            (stats.partial_hits, stats.l1_hits, stats.l2_hits),
            (1, 0, 0)
        );
        let ranged = [
            ("cache-control", "only-if-cached"),
            ("range", "bytes=2000-2100"),
        ];
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/t", &ranged)));
        assert_eq!(
            (r.status, r.body.as_deref()),
            (206, Ok(&content()[2000..=2100]))
        );
        assert_eq!(status(&r), "edgecache-l1; hit; ttl=60", "the slices b kept");
        assert_eq!(
            (sim.fetches(), ranges.borrow().len()),
            asked,
            "the origin was not asked"
        );
    }

    /// RFC 9111 §5.2.1.7: `504` only when a slice the response needs is in no tier; what
    /// needs only slices some tier holds is answered, the origin never asked.
    #[test]
    fn only_if_cached_is_504_only_when_a_slice_is_in_no_tier() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let shared = Shared::new(&sim);
        let (a, c) = (shared.instance(&sim), shared.instance(&sim));
        sim.clock
            .block_on(serve(&a, &sim.clock, request("GET", "/m", &[])));
        // Slice 2 (bytes 2048-3071) leaves Redis; a still holds it in L1.
        shared.forget_slice(&sim, &a, "/m", 2);
        let asked = (sim.fetches(), ranges.borrow().len());
        let only = |range: Option<&'static str>| {
            let mut fields = alloc::vec![("cache-control", "only-if-cached")];
            fields.extend(range.map(|r| ("range", r)));
            request("GET", "/m", &fields)
        };
        let at = |engine: &Engine<SimRedisHost>, range| {
            sim.clock.block_on(serve(engine, &sim.clock, only(range)))
        };
        for range in [None, Some("bytes=2047-2048"), Some("bytes=0-10,2100-2110")] {
            let r = at(&c, range);
            assert_eq!(r.status, 504, "{range:?}");
        }
        let r = at(&c, Some("bytes=0-2047"));
        assert_eq!((r.status, r.body.as_deref()), (206, Ok(&content()[..2048])));
        let r = at(&c, Some("bytes=3072-"));
        assert_eq!((r.status, r.body.as_deref()), (206, Ok(&content()[3072..])));
        let r = at(&c, Some("bytes=0-10,4000-4010"));
        assert_eq!(r.status, 206);
        let body = r.body.unwrap();
        assert!(
            body.contains(&content()[..=10]) && body.contains(&content()[4000..=4010]),
            "{body}"
        );
        let r = at(&a, None);
        assert_eq!((r.status, r.body.as_deref()), (200, Ok(content().as_str())));
        assert_eq!(status(&r), "edgecache-l1; hit; ttl=60");
        assert_eq!(
            (sim.fetches(), ranges.borrow().len()),
            asked,
            "the origin was not asked"
        );
    }

    /// A slice held when `only-if-cached` was decided and gone when it is to be sent: the
    /// response, its status sent already, is cut off (never complete-looking), and the
    /// origin is not asked for the slice.
    #[test]
    fn a_slice_gone_after_the_decision_cuts_the_response_off() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let shared = Shared::new(&sim);
        let (a, c) = (shared.instance(&sim), shared.instance(&sim));
        sim.clock
            .block_on(serve(&a, &sim.clock, request("GET", "/g", &[])));
        let asked = (sim.fetches(), ranges.borrow().len());
        let only = [("cache-control", "only-if-cached")];
        let handled = sim.clock.block_on(c.handle(request("GET", "/g", &only)));
        assert_eq!(handled.response.status, 200);
        shared.forget_slice(&sim, &a, "/g", 3);
        let r = sim.clock.block_on(receive(&c, &sim.clock, handled));
        let why = r.body.expect_err("cut off");
        assert!(why.0.contains("slice 3 is no longer cached"), "{why}");
        assert_eq!(
            (sim.fetches(), ranges.borrow().len()),
            asked,
            "the origin was not asked"
        );
    }

    /// An origin that does not take ranges: the object streams through uncached.
    #[test]
    fn without_ranges_a_large_object_passes_through() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), false);
        let engine = sim.engine(config()).unwrap();
        let r = sim
            .clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/p", &[])));
        assert!(status(&r).contains("detail=too-large"), "{}", status(&r));
        assert!(ranges.borrow().is_empty());
    }

    /// An origin cannot make an ordinary response look like the head of a sliced object:
    /// the internal field it sends is dropped, so its empty `200` is served as it is.
    #[test]
    fn an_origin_cannot_set_the_internal_slices_field() {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("edgecache-slices", "1024/1000000"),
                ],
                "",
            ),
        );
        let engine = sim.engine(config()).unwrap();
        for _ in 0..2 {
            let r = sim
                .clock
                .block_on(serve(&engine, &sim.clock, request("GET", "/i", &[])));
            assert_eq!(r.body.as_deref(), Ok(""));
        }
        assert_eq!(sim.fetches(), 1, "stored, and no slice fetched");
    }

    /// An origin of one object of `length` bytes, whose byte `i` is `byte_at(i)` when asked:
    /// `ETag: "v1"`, `Cache-Control: max-age={max_age}`, `Date` of the moment,
    /// `Accept-Ranges: bytes`; `304` to `If-None-Match: "v1"`, a single byte range as a
    /// `206`, anything else as a `200` of at most `whole_bytes` of its bytes (a large object
    /// is never produced whole; the response is dropped before the rest). It records
    /// every `Range` it answers.
    fn object_origin(
        length: usize,
        max_age: u64,
        whole_bytes: usize,
        byte_at: impl Fn(usize) -> u8 + 'static,
    ) -> (Simulation, Rc<RefCell<Vec<String>>>) {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &[], ""),
        );
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let clock = sim.clock.clone();
        let bytes = move |from: usize, to: usize| -> String {
            (from..to).map(|i| char::from(byte_at(i))).collect()
        };
        sim.script.borrow_mut().answerer = Some(Box::new(move |req| {
            let date = crate::http_date::format_http_date(crate::time::Clock::now(&*clock));
            let mut fields = alloc::vec![
                ("cache-control", alloc::format!("max-age={max_age}")),
                ("etag", String::from("\"v1\"")),
                ("accept-ranges", String::from("bytes")),
                ("date", date),
            ];
            let (status, body) = if req.headers.get_str("if-none-match") == Some("\"v1\"") {
                (304, String::new())
            } else if let Some(range) = req.headers.get_str("range") {
                log.borrow_mut().push(String::from(range));
                let (a, b) = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                    .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                    .unwrap();
                fields.push(("content-range", alloc::format!("bytes {a}-{b}/{length}")));
                (206, bytes(a, b + 1))
            } else {
                fields.push(("content-length", length.to_string()));
                (200, bytes(0, length.min(whole_bytes)))
            };
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            (Answer::respond(status, &pairs, &body), 0)
        }));
        (sim, seen)
    }

    /// An origin of an object that declares `length` bytes, all `z` ([`object_origin`],
    /// `max-age=60`).
    fn origin_declaring(length: u64) -> Simulation {
        object_origin(length as usize, 60, 8192, |_| b'z').0
    }

    /// The cost of a `304` that freshens a sliced head follows what is stored, not the
    /// length the origin declared. One slice of an 8 MiB object in 1 KiB slices (the
    /// minimum `limits.slice_bytes`) is stored; the first `no-cache` `304` keeps the slices
    /// (one key asked about per slice), the next ones do nothing while that lasts; an
    /// object of more than [`super::MAX_SLICES`] slices (64 MiB here) is passed through.
    /// (A review of 120d6b0 found 8,192 `PEXPIRE`s sent for every such `304`.)
    #[test]
    fn a_freshened_head_costs_what_is_stored_not_what_is_declared() {
        let sim = origin_declaring(8 << 20);
        let shared = Shared::new(&sim);
        let a = shared.instance(&sim);
        let first = sim.clock.block_on(serve(
            &a,
            &sim.clock,
            request("GET", "/big", &[("range", "bytes=0-99")]),
        ));
        assert_eq!(first.status, 206, "{}", status(&first));
        assert!(status(&first).contains("stored"), "{}", status(&first));
        sim.clock.advance_secs(61);
        // The first `304` keeps the slices on (one key asked about per slice; the one stored
        // slice and its URL's set extended); those right after it, nothing.
        let mut per_request = Vec::new();
        for _ in 0..3 {
            let before = (
                shared.redis.commands("GETRANGE"),
                shared.redis.commands("PEXPIRE"),
            );
            let no_cache = [("cache-control", "no-cache")];
            let r = sim
                .clock
                .block_on(serve(&a, &sim.clock, request("HEAD", "/big", &no_cache)));
            assert_eq!(r.status, 200, "{}", status(&r));
            per_request.push((
                shared.redis.commands("GETRANGE") - before.0,
                shared.redis.commands("PEXPIRE") - before.1,
            ));
            sim.clock.advance_secs(60);
        }
        // (Each `304` writes the head again, whose tag sets take 2 `PEXPIRE`s.)
        assert_eq!(
            per_request,
            [(8192, 4), (0, 2), (0, 2)],
            "per no-cache HEAD"
        );
        // Further on, a `304` keeps them on again: every slice key is asked about (what
        // Redis holds decides what is extended).
        sim.clock.advance_secs(3_000);
        let before = shared.redis.commands("GETRANGE");
        let r = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/big", &[])));
        assert_eq!(r.status, 200, "{}", status(&r));
        assert_eq!(shared.redis.commands("GETRANGE") - before, 8192);
        // 65,536 slices: more than an object is cut in; passed through, not stored.
        let huge = origin_declaring(64 << 20);
        let engine = huge.engine(config()).unwrap();
        let r = huge.clock.block_on(serve(
            &engine,
            &huge.clock,
            request("GET", "/huge", &[("range", "bytes=0-99")]),
        ));
        assert!(!status(&r).contains("stored"), "{}", status(&r));
        assert!(
            super::sliceable(200, &first_fields(64 << 20), 1024).is_none()
                && super::sliceable(200, &first_fields(8 << 20), 1024).is_some()
        );
    }

    /// The fields of a sliceable `200` of `length` bytes.
    fn first_fields(length: u64) -> crate::headers::Headers {
        let mut fields = crate::headers::Headers::new();
        fields.set("accept-ranges", "bytes");
        fields.set("etag", "\"v1\"");
        fields.set("content-length", length.to_string());
        fields
    }

    /// The colo tier without the shared tier (`local+expiry`): a slice written again for a
    /// freshened head is stamped with when its bytes were fetched, so a purge made since
    /// covers it. Here the origin's bytes change under the same `ETag` (an nginx
    /// `mtime-size` ETag of a file rewritten within a second: what a purge is for); isolate
    /// `b` purges the URL; isolate `a`, whose L1 still holds the old slices (other
    /// isolates' L1 learn of a purge only by expiry), revalidates its head (`304`); `b` then
    /// fetches slice 2 anew. (A review of 120d6b0 found the rewrite stamped with its own
    /// time, which passed every check, and `b` served the old bytes.)
    #[test]
    fn a_rewritten_slice_does_not_outlive_a_purge_in_the_colo_tier() {
        rewritten_slice_after_a_purge(false);
    }

    /// [`a_rewritten_slice_does_not_outlive_a_purge_in_the_colo_tier`] with Cloudflare's
    /// purge API: `b`'s purge empties the colo tier, and `a`, whose L1 still holds the old
    /// slices, writes them back stamped as old as their bytes, which `b`'s own record of the
    /// purge covers (stamped with the time of the rewrite, they were served).
    #[test]
    fn with_the_purge_api_a_rewritten_slice_does_not_outlive_a_purge() {
        rewritten_slice_after_a_purge(true);
    }

    fn rewritten_slice_after_a_purge(purge_api: bool) {
        let fill = Rc::new(core::cell::Cell::new(b'a'));
        let fill_at_origin = fill.clone();
        let (sim, _) = object_origin(SIZE, 60, SIZE, move |_| fill_at_origin.get());
        let mut colo = crate::engine::simulated::SimColo::new(sim.clock.clone());
        let mode = if purge_api {
            colo = colo.with_purge_api();
            crate::engine::colo::ColoMode::PurgeApi
        } else {
            crate::engine::colo::ColoMode::Expiry
        };
        let a = sim.engine(config()).unwrap().with_colo(Some(colo.clone()));
        let b = sim.engine(config()).unwrap().with_colo(Some(colo.clone()));
        assert_eq!(a.colo_mode(), Some(mode));
        let whole = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok("a".repeat(SIZE).as_str()));
        // The origin's bytes change under the same validator; `b` purges the URL.
        sim.clock.advance_secs(30);
        fill.set(b'b');
        sim.clock
            .block_on(b.purge(&PurgeTarget::Url(key_of(&b, "/x")), false));
        // `a`'s head is stale: revalidated, `304`.
        sim.clock.advance_secs(31);
        let head = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/x", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        // `b`, which purged, reads slice 2.
        sim.clock.advance_secs(1);
        let range = [("range", "bytes=2100-2199")];
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/x", &range)));
        assert_eq!(r.status, 206, "{}", status(&r));
        assert_eq!(
            r.body.as_deref(),
            Ok("b".repeat(100).as_str()),
            "bytes from before the purge: {}",
            status(&r)
        );
    }

    /// What `l2_extend` extends is what Redis holds, not what this instance's
    /// `l2.chunk_bytes` would have written: an instance with larger chunks than the writer's
    /// (a rolling change of `l2.chunk_bytes`) still extends the slices' chunks with their
    /// heads, so no head outlives its chunks. (A review of 120d6b0 found it chose by its own
    /// configuration.)
    #[test]
    fn slices_live_on_whatever_chunk_size_the_extender_has() {
        let (sim, _ranges) = origin_revalidating();
        let shared = Shared::new(&sim);
        let mut writer = config();
        writer.limits.slice_bytes = 2048;
        writer.l2.chunk_bytes = 1024;
        let mut extender = writer.clone();
        extender.l2.chunk_bytes = 4096;
        let a = shared.instance_with(&sim, writer.clone());
        let whole = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        let only = [("cache-control", "only-if-cached")];
        let b = shared.instance_with(&sim, extender);
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.body.as_deref(), Ok(content().as_str()), "{}", status(&r));
        // `b` revalidates the head (`304`) and extends the slices.
        sim.clock.advance_secs(3_650);
        let fetches = sim.fetches();
        let head = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("HEAD", "/x", &[])));
        assert_eq!(head.status, 200, "{}", status(&head));
        assert_eq!(sim.fetches(), fetches + 1, "revalidated");
        // Past the windows the slices and their chunks were written with (60 s + 1 h, and a
        // minute more for the chunks); the head is fresh.
        sim.clock.advance_secs(80);
        let head = sim.clock.block_on(serve(
            &b,
            &sim.clock,
            request("HEAD", "/x", &[("cache-control", "no-cache")]),
        ));
        assert_eq!(head.status, 200, "{}", status(&head));
        let c = shared.instance_with(&sim, writer);
        let r = sim
            .clock
            .block_on(serve(&c, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.status, 200, "{}", status(&r));
        // Today: a `200` cut off ("slice 0 is no longer cached"): `EXISTS` found the
        // extended heads, their chunks had expired.
        assert!(
            r.body.as_deref() == Ok(content().as_str()),
            "{:?} {}",
            r.body.as_ref().err(),
            status(&r)
        );
    }

    /// Purge-log mode: the colo rewrite stamps every slice with the purge position reached
    /// before L1 is read, so a purge this isolate applies while the rewrite awaits its
    /// `put`s (another request's sync) is after their stamp and covers them. (A review of
    /// 120d6b0 found each stamped at its own write, after the purge: a purged slice back in
    /// the colo tier.)
    #[test]
    fn a_purge_applied_during_the_colo_rewrite_is_not_undone() {
        let (sim, ranges) = origin_revalidating();
        let shared = Shared::new(&sim);
        let colo = crate::engine::simulated::SimColo::new(sim.clock.clone());
        let a = shared.instance(&sim).with_colo(Some(colo.clone()));
        let whole = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        sim.clock.advance_secs(3_650);
        // `a` revalidates its head (`304`); its job rewrites the five slices, 10 ms a put.
        colo.set_put_ms(10);
        let handled = sim.clock.block_on(a.handle(request("HEAD", "/x", &[])));
        assert_eq!(handled.response.status, 200);
        let job = handled.job.expect("a job");
        // Meanwhile another instance purges the URL, and `a` applies it (its next sync).
        let b = shared.instance(&sim);
        let key = key_of(&a, "/x");
        let clock = sim.clock.clone();
        let jobs: Vec<core::pin::Pin<Box<dyn core::future::Future<Output = ()> + '_>>> = alloc::vec![
            Box::pin(a.run_job(job)),
            Box::pin(async {
                clock.sleep(25).await;
                b.purge(&PurgeTarget::Url(key.clone()), false).await;
                a.sync_purges().await;
            }),
        ];
        sim.clock.block_on_all(jobs);
        assert_eq!(a.state.with(|s| s.l1.len()), 0, "the purge reached a's L1");
        colo.set_put_ms(0);
        // The purge deleted the slices from Redis too: they are listed in the URL's set.
        for index in 0..5 {
            let key = shared.slice_key_in_redis(&sim, &a, "/x", 1024, index);
            assert!(!shared.holds(&sim, &key), "slice {index} is still in Redis");
        }
        // A new instance in the same colo: the head is fetched anew (purged everywhere),
        // and slice 2 must be too.
        let c = shared.instance(&sim).with_colo(Some(colo.clone()));
        let asked = ranges.borrow().len();
        let r = sim.clock.block_on(serve(
            &c,
            &sim.clock,
            request("GET", "/x", &[("range", "bytes=2100-2199")]),
        ));
        assert_eq!(r.body.as_deref(), Ok(&content()[2100..2200]));
        assert_eq!(
            ranges.borrow().len(),
            asked + 1,
            "slice 2 came from a purged copy: {}",
            status(&r)
        );
    }

    /// An origin as [`origin_revalidating`], with `Cache-Control: max-age={max_age}` on its
    /// `200`s, `206`s and `304`s.
    fn origin_revalidating_for(max_age: u64) -> (Simulation, Rc<RefCell<Vec<String>>>) {
        let body = content().into_bytes();
        object_origin(SIZE, max_age, SIZE, move |i| body[i])
    }

    /// Slices kept on never expire before their fresh head, whatever its `max-age` and
    /// validator retention: they are kept an eighth of its remaining life longer, and a
    /// `304` skips the keep only while that covers its new keep time. (A review of d59c389
    /// found a skip rule that let them fall up to an eighth short: with the default 1 h
    /// retention and `max-age=86400`, a `no-cache` `304` 11,000 s after a keep was skipped
    /// and at +95,000 s the fresh head's slices were fetched by range; with
    /// `validator_retention_secs = 0`, the same with `max-age=60`.)
    #[test]
    fn a_skipped_keep_never_leaves_a_fresh_head_without_its_slices() {
        for (max_age, retention, later) in [(86_400, 3_600, 11_000), (60, 0, 7)] {
            let (sim, ranges) = origin_revalidating_for(max_age);
            let mut config = config();
            config.policy.validator_retention_secs = retention;
            let engine = sim.engine(config).unwrap();
            let whole = sim
                .clock
                .block_on(serve(&engine, &sim.clock, request("GET", "/x", &[])));
            assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
            // Stale: revalidated (`304`), its slices kept as long as the freshened head.
            sim.clock.advance_secs(max_age + 1);
            let first_304 = crate::time::Clock::now(&*sim.clock);
            let head = sim
                .clock
                .block_on(serve(&engine, &sim.clock, request("HEAD", "/x", &[])));
            assert_eq!(head.status, 200, "{}", status(&head));
            // A client asks for a validation (`no-cache`): `304`, fresh `max_age` more.
            sim.clock.advance_secs(later);
            let fetches = sim.fetches();
            let no_cache = [("cache-control", "no-cache")];
            let head =
                sim.clock
                    .block_on(serve(&engine, &sim.clock, request("HEAD", "/x", &no_cache)));
            assert_eq!(head.status, 200, "{}", status(&head));
            assert_eq!(sim.fetches(), fetches + 1, "revalidated");
            let fresh_until = crate::time::Clock::now(&*sim.clock).plus_secs(max_age);
            // Past what the first `304` kept the slices for, the head still fresh.
            let kept_until = first_304.plus_secs(max_age + u64::from(retention));
            sim.clock.advance_to(kept_until.plus_millis(1_000));
            assert!(crate::time::Clock::now(&*sim.clock) < fresh_until);
            let asked = ranges.borrow().len();
            let r = sim.clock.block_on(serve(
                &engine,
                &sim.clock,
                request("GET", "/x", &[("range", "bytes=2100-2199")]),
            ));
            assert_eq!(r.body.as_deref(), Ok(&content()[2100..2200]));
            assert_eq!(
                ranges.borrow().len(),
                asked,
                "max-age={max_age}, retention {retention}: a slice of a fresh head fetched again: {}",
                status(&r)
            );
        }
    }

    /// A keep that failed (Redis down while the job runs) is not recorded on the head, so
    /// the next `304` (a client's `no-cache`, 30 s later) keeps the slices again, and
    /// another instance finds them in Redis. (A review of d59c389 found the head marked
    /// before the job ran: the next `304` skipped, and the slices expired under a fresh
    /// head.)
    #[test]
    fn a_failed_keep_is_not_recorded_as_kept() {
        let (sim, ranges) = origin_revalidating();
        let shared = Shared::new(&sim);
        let a = shared.instance(&sim);
        let whole = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/x", &[])));
        assert_eq!(whole.body.as_deref(), Ok(content().as_str()));
        // Stale, within the validator retention: a `304`, whose job runs with Redis down.
        sim.clock.advance_secs(3_600);
        let handled = sim.clock.block_on(a.handle(request("HEAD", "/x", &[])));
        assert_eq!(handled.response.status, 200);
        let job = handled.job.expect("a job");
        shared.redis.set_down(true);
        sim.clock.block_on(a.run_job(job));
        shared.redis.set_down(false);
        // Redis is back (past the breaker's cooldown): a client's `no-cache`, a `304`.
        sim.clock.advance_secs(30);
        let no_cache = [("cache-control", "no-cache")];
        let head = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("HEAD", "/x", &no_cache)));
        assert_eq!(head.status, 200, "{}", status(&head));
        // Past the windows the slices were written to Redis with (60 s + 1 h); the head
        // there, written by the second `304`, is fresh.
        sim.clock.advance_secs(40);
        let b = shared.instance(&sim);
        let asked = ranges.borrow().len();
        let only = [("cache-control", "only-if-cached")];
        let r = sim
            .clock
            .block_on(serve(&b, &sim.clock, request("GET", "/x", &only)));
        assert_eq!(r.status, 200, "{}", status(&r));
        assert_eq!(r.body.as_deref(), Ok(content().as_str()), "{}", status(&r));
        assert_eq!(ranges.borrow().len(), asked);
    }

    /// A head of more than [`super::MAX_SLICES`] slices, as every version from 3ec4620 to
    /// 120d6b0 wrote it (and older versions still do during a deploy), is a miss: never
    /// served as the object, whose content it does not hold. Here the head of a 64 MiB
    /// object in 1 KiB slices (65,536). (A review of d59c389 found it read as a chunked body
    /// of no chunks and served as an empty `200`.)
    #[test]
    fn a_head_of_too_many_slices_from_an_earlier_version_is_not_an_empty_object() {
        const LENGTH: u64 = 64 << 20;
        let sim = origin_declaring(LENGTH);
        let shared = Shared::new(&sim);
        let a = shared.instance(&sim);
        let now = crate::time::Clock::now(&*sim.clock);
        let mut fields = first_fields(LENGTH);
        fields.set("cache-control", "max-age=60");
        fields.set("date", crate::http_date::format_http_date(now));
        fields.set(super::SLICES_FIELD, alloc::format!("1024/{LENGTH}"));
        fields.set(
            super::SLICED_AT_FIELD,
            alloc::format!("{}", now.as_millis()),
        );
        let head = crate::entry::CachedResponse::new(200, fields, Vec::new(), now, now);
        let (manifest, _) = crate::entry::ChunkManifest::split(&[], 1, 0);
        let encoded = crate::entry::encode_chunked_head(&head, &manifest);
        let epoch = sim.clock.block_on(a.l2_epoch()).unwrap();
        let key = a.l2_object_key(epoch, &key_of(&a, "/huge"));
        let tier = crate::shared_tier::RedisTier::over(shared.redis.clone());
        sim.clock
            .block_on(SharedTier::set(&tier, &key, &encoded, 3_660_000))
            .unwrap();
        let fetches = sim.fetches();
        let range = [("range", "bytes=0-99")];
        let r = sim
            .clock
            .block_on(serve(&a, &sim.clock, request("GET", "/huge", &range)));
        assert_eq!(
            (r.status, r.fields.get_str("content-range")),
            (206, Some(alloc::format!("bytes 0-99/{LENGTH}").as_str())),
            "bytes 0-99 of a {LENGTH}-byte object: {} (origin asked {} times)",
            status(&r),
            sim.fetches() - fetches
        );
    }

    /// A purge of the object's URL reaches its slices.
    #[test]
    fn a_purge_reaches_the_slices() {
        let (sim, ranges) = origin(Rc::new(RefCell::new("\"v1\"")), true);
        let engine = sim.engine(config()).unwrap();
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/u", &[])));
        let r = request("GET", "/u", &[]);
        let parsed = crate::engine::RequestView::parse("GET", "http", "/u", r.headers, None);
        let Ok(crate::engine::Target::Resource(view)) = parsed else {
            panic!("a resource");
        };
        let key = engine.key_for(&view);
        let l1_len = || engine.state.with(|s| s.l1.len());
        assert_eq!(l1_len(), 6, "the head and five slices");
        sim.clock
            .block_on(engine.purge(&PurgeTarget::Url(key), false));
        assert_eq!(l1_len(), 0);
        let before = sim.fetches();
        sim.clock
            .block_on(serve(&engine, &sim.clock, request("GET", "/u", &[])));
        assert_eq!(sim.fetches(), before + 1, "fetched anew");
        assert_eq!(l1_len(), 6, "and stored again, slices and all");
        assert!(ranges.borrow().is_empty());
    }
}
