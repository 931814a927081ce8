//! The stored response and its versioned binary encoding, for bytes that leave the process
//! (the Redis tier). Decoding untrusted bytes never panics: an unknown version or a corrupt
//! entry is an [`DecodeError`] the caller turns into a miss.
//!
//! # Byte layout (version 1)
//!
//! All fixed-width integers are little-endian. `varint` is unsigned LEB128 (7 bits per
//! byte, low group first, at most 10 bytes, shortest form only). `bytes` is a `varint`
//! length followed by that many bytes; `str` is `bytes` holding UTF-8.
//!
//! | offset | size     | field                                                             |
//! |--------|----------|-------------------------------------------------------------------|
//! | 0      | 4        | magic `45 43 CA C4` (`"EC"`, 0xCA, 0xC4) — [`MAGIC`]              |
//! | 4      | 1        | version, `1` — [`VERSION`]                                        |
//! | 5      | 1        | flags: bit 0 body is raw deflate (RFC 1951), bit 1 invalidated; the other bits must be 0 |
//! | 6      | 2        | status (u16)                                                      |
//! | 8      | 8        | `request_time`, ms since the epoch (u64)                          |
//! | 16     | 8        | `response_time`, ms since the epoch (u64)                         |
//! | 24     | …        | headers: `varint` count, then count × (`str` name, `bytes` value) |
//! | …      | …        | vary: the same shape as headers                                   |
//! | …      | …        | tags: `varint` count, then count × `str`                          |
//! | …      | …        | body: `varint` length of the (uncompressed) body; if compressed, a `varint` length of the deflate stream; then the stored bytes |
//! | end−8  | 8        | FNV-1a 64 checksum of every preceding byte (u64)                  |
//!
//! # The head of a chunked body (version 2)
//!
//! A body too large for one value is stored in chunks under keys of their own, and its
//! entry is a *head* ([`encode_chunked_head`], [`decode_head`]): the version 1 layout with
//! version `2`, flag bit 0 clear, and the body field replaced by a [`ChunkManifest`]:
//! `varint` total length, `varint` chunk length (every chunk but the last has it), `u64`
//! write id (the chunks' keys carry it, so the chunks of two writes never mix), `varint`
//! chunk count, then each chunk's FNV-1a 64 checksum (`u64`). A chunk that is missing,
//! of the wrong length or fails its checksum makes the whole entry a miss
//! ([`ChunkManifest::assemble`]), never a corrupt body.
//!
//! # Incomplete responses (versions 3 and 4)
//!
//! An incomplete response (a `206` holding one range, RFC 9111 §3.3, see
//! [`crate::policy::partial`]) is written as version `3` (the version 1 layout) or, as the
//! head of a chunked body, version `4` (the version 2 layout); its range is its stored
//! `Content-Range`. Versions 1 and 2 never hold a `206`, and versions 3 and 4 nothing else
//! ([`DecodeError::Corrupt`] otherwise): versions that predate incomplete responses read
//! them as [`DecodeError::UnsupportedVersion`], a miss, and never serve a part of a
//! response as if it were the whole.
//!
//! Decoding checks, in order: the magic ([`DecodeError::BadMagic`]), the version
//! ([`DecodeError::UnsupportedVersion`]; a future version may change everything after the
//! version byte), the checksum ([`DecodeError::ChecksumMismatch`]), then parses, requiring
//! every byte to be used. The checksum detects corruption (every single-byte error,
//! hence every single-bit flip, is caught with certainty, since each FNV-1a step is a
//! bijection of the state); it is not a MAC and does not authenticate the writer.
//!
//! # Bounds
//!
//! A hostile entry cannot make the decoder allocate much more than its own size: every
//! length and count is checked against the remaining input and against [`DecodeLimits`]
//! before anything is allocated, and inflating a compressed body stops at the declared
//! length, itself at most [`DecodeLimits::max_body_bytes`] (no zip bombs).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::headers::Headers;
use crate::time::Timestamp;

/// A response as a cache stores it (RFC 9111 §3), with what the policy needs to judge it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResponse {
    /// Status code.
    pub status: u16,
    /// Response header fields as stored (hop-by-hop fields already removed).
    pub headers: Headers,
    /// Response content.
    pub body: Vec<u8>,
    /// When the request that produced this response was sent (RFC 9111 §4.2.3 `request_time`).
    pub request_time: Timestamp,
    /// When the response was received (RFC 9111 §4.2.3 `response_time`).
    pub response_time: Timestamp,
    /// The request's values of the fields nominated by `Vary`, normalised (RFC 9111 §4.1).
    pub vary: Headers,
    /// Purge tags (from `Surrogate-Key` / `Cache-Tag`).
    pub tags: Vec<String>,
    /// Marked stale by a soft purge or an invalidation: reusable only as a stale response.
    pub invalidated: bool,
    /// Computed from the fields above once, so hits need not; not encoded. Reset it
    /// (`Derived::default()`) when changing `status`, `headers` or the timestamps.
    pub derived: Derived,
}

/// What a cache derives from a stored response once, when it stores it, rather than on
/// every hit. Not part of the encoding, and ignored by `==` (it is a function of the
/// entry's other fields).
#[derive(Clone, Debug, Default)]
pub struct Derived {
    /// The reuse figures, computed under the storing engine's policy configuration
    /// (`None`: not computed, so computed per use).
    pub figures: Option<crate::policy::reuse::StoredFigures>,
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl CachedResponse {
    /// A response with no Vary values, no tags, not invalidated.
    pub fn new(
        status: u16,
        headers: Headers,
        body: Vec<u8>,
        request_time: Timestamp,
        response_time: Timestamp,
    ) -> Self {
        CachedResponse {
            status,
            headers,
            body,
            request_time,
            response_time,
            vary: Headers::new(),
            tags: Vec::new(),
            invalidated: false,
            derived: Derived::default(),
        }
    }

    /// Approximate memory held by this entry in bytes: body, header and Vary fields, tags
    /// and a fixed overhead. Useful for byte-bounded stores.
    pub fn size_bytes(&self) -> usize {
        let tags: usize = self.tags.iter().map(|t| t.len() + 8).sum();
        self.body
            .len()
            .saturating_add(self.headers.size_bytes())
            .saturating_add(self.vary.size_bytes())
            .saturating_add(tags)
            .saturating_add(64)
    }
}

/// The first four bytes of every encoded entry.
pub const MAGIC: [u8; 4] = [b'E', b'C', 0xCA, 0xC4];
/// The format version [`encode`] writes and [`decode`] reads.
pub const VERSION: u8 = 1;
/// The format version of a chunked body's head ([`encode_chunked_head`]).
pub const CHUNKED_VERSION: u8 = 2;
/// The format version [`encode`] writes for an incomplete response (status `206`).
pub const PARTIAL_VERSION: u8 = 3;
/// The format version of a chunked body's head of an incomplete response.
pub const CHUNKED_PARTIAL_VERSION: u8 = 4;

/// How many bytes of an encoding say what it is ([`chunked_head`]): the magic and version.
pub const KIND_BYTES: usize = MAGIC.len() + 1;

/// What the encoding starting with `prefix` (at least [`KIND_BYTES`] of it) is: `Some(true)`
/// a chunked body's head, `Some(false)` an entry with its body, `None` none this version
/// reads (foreign bytes, a newer version, or too short to say).
pub fn chunked_head(prefix: &[u8]) -> Option<bool> {
    let version = *prefix.get(MAGIC.len())?;
    (prefix.get(..MAGIC.len()) == Some(&MAGIC[..])
        && (VERSION..=CHUNKED_PARTIAL_VERSION).contains(&version))
    .then(|| is_chunked(version))
}

/// Whether `version` is a chunked body's head.
fn is_chunked(version: u8) -> bool {
    matches!(version, CHUNKED_VERSION | CHUNKED_PARTIAL_VERSION)
}

/// Whether `version` holds an incomplete response.
fn is_partial(version: u8) -> bool {
    matches!(version, PARTIAL_VERSION | CHUNKED_PARTIAL_VERSION)
}

const FLAG_DEFLATE: u8 = 0x01;
const FLAG_INVALIDATED: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_DEFLATE | FLAG_INVALIDATED;
/// Magic, version, flags, status and the two timestamps.
const FIXED_LEN: usize = 24;
const CHECKSUM_LEN: usize = 8;

/// How [`encode`] writes an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Bodies at least this long are deflate-compressed, if that makes them smaller.
    /// Bodies whose `Content-Encoding` is anything but `identity` (already gzip, br, …)
    /// are never compressed again. `usize::MAX` turns compression off. Default: 1024.
    pub compress_min_bytes: usize,
    /// The deflate level, 0 (store) to 10 (slowest); values above 10 count as 10.
    /// Default: 6.
    pub compression_level: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            compress_min_bytes: 1024,
            compression_level: 6,
        }
    }
}

impl EncodeOptions {
    /// Options that never compress.
    pub const fn uncompressed() -> Self {
        EncodeOptions {
            compress_min_bytes: usize::MAX,
            compression_level: 0,
        }
    }
}

/// Bounds on what [`decode`] accepts; anything beyond is [`DecodeError::TooLarge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest body, after decompression. Default: 32 MiB.
    pub max_body_bytes: usize,
    /// Most header fields, and separately most Vary fields. Default: 512.
    pub max_headers: usize,
    /// Most bytes of field names and values, headers and Vary fields together.
    /// Default: 256 KiB.
    pub max_header_bytes: usize,
    /// Most tags. Default: 1024.
    pub max_tags: usize,
    /// Most bytes of tags together. Default: 64 KiB.
    pub max_tag_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_bytes: 32 << 20,
            max_headers: 512,
            max_header_bytes: 256 << 10,
            max_tags: 1024,
            max_tag_bytes: 64 << 10,
        }
    }
}

/// Why bytes are not a usable entry. Every variant means "treat as a miss".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes do not start with [`MAGIC`]: not an edgecache entry.
    BadMagic,
    /// An entry of a format version this build does not read.
    UnsupportedVersion(u8),
    /// The input ends before the entry does.
    Truncated,
    /// The checksum does not match: the bytes were damaged.
    ChecksumMismatch,
    /// The checksum matches but the contents are invalid (what is wrong).
    Corrupt(&'static str),
    /// A count or length exceeds a [`DecodeLimits`] bound or the address space (which).
    TooLarge(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic => f.write_str("not a cache entry (bad magic bytes)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported cache entry version {v} (expected {VERSION} to {CHUNKED_PARTIAL_VERSION})"
                )
            }
            DecodeError::Truncated => f.write_str("truncated cache entry"),
            DecodeError::ChecksumMismatch => f.write_str("cache entry checksum mismatch"),
            DecodeError::Corrupt(what) => write!(f, "corrupt cache entry: {what}"),
            DecodeError::TooLarge(what) => write!(f, "cache entry too large: {what}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Encodes `entry` in the current format (see the module documentation for the layout).
pub fn encode(entry: &CachedResponse, options: &EncodeOptions) -> Vec<u8> {
    let compressed = compress_body(entry, options);
    let version = if entry.status == 206 {
        PARTIAL_VERSION
    } else {
        VERSION
    };
    encode_as(
        entry,
        version,
        |out| {
            put_len(out, entry.body.len());
            if let Some(compressed) = &compressed {
                put_len(out, compressed.len());
            }
            out.extend_from_slice(compressed.as_deref().unwrap_or(&entry.body));
        },
        compressed.is_some(),
    )
}

/// Encodes the head of `entry`, whose body is stored in chunks as `manifest` describes
/// (`entry.body` is not written).
pub fn encode_chunked_head(entry: &CachedResponse, manifest: &ChunkManifest) -> Vec<u8> {
    let version = if entry.status == 206 {
        CHUNKED_PARTIAL_VERSION
    } else {
        CHUNKED_VERSION
    };
    encode_as(
        entry,
        version,
        |out| {
            put_len(out, manifest.total_bytes);
            put_len(out, manifest.chunk_bytes);
            out.extend_from_slice(&manifest.write_id.to_le_bytes());
            put_len(out, manifest.checksums.len());
            for checksum in &manifest.checksums {
                out.extend_from_slice(&checksum.to_le_bytes());
            }
        },
        false,
    )
}

/// The common layout: everything but the body field, which `body` writes.
fn encode_as(
    entry: &CachedResponse,
    version: u8,
    body: impl FnOnce(&mut Vec<u8>),
    deflated: bool,
) -> Vec<u8> {
    let stored_body = if is_chunked(version) {
        &[]
    } else {
        &entry.body[..]
    };
    let tag_bytes: usize = entry.tags.iter().map(|t| t.len() + 2).sum();
    let mut out = Vec::with_capacity(
        FIXED_LEN
            .saturating_add(entry.headers.size_bytes())
            .saturating_add(entry.vary.size_bytes())
            .saturating_add(tag_bytes)
            .saturating_add(stored_body.len())
            .saturating_add(40),
    );
    out.extend_from_slice(&MAGIC);
    out.push(version);
    let mut flags = 0;
    if deflated {
        flags |= FLAG_DEFLATE;
    }
    if entry.invalidated {
        flags |= FLAG_INVALIDATED;
    }
    out.push(flags);
    out.extend_from_slice(&entry.status.to_le_bytes());
    out.extend_from_slice(&entry.request_time.as_millis().to_le_bytes());
    out.extend_from_slice(&entry.response_time.as_millis().to_le_bytes());
    put_fields(&mut out, &entry.headers);
    put_fields(&mut out, &entry.vary);
    put_len(&mut out, entry.tags.len());
    for tag in &entry.tags {
        put_bytes(&mut out, tag.as_bytes());
    }
    body(&mut out);
    let checksum = fnv1a64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Decodes an entry written by [`encode`], within `limits`. Never panics, and never
/// allocates much more than `bytes.len()` plus a body of at most `limits.max_body_bytes`.
/// The head of a chunked body is not an entry: [`decode_head`] reads it.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<CachedResponse, DecodeError> {
    match decode_head(bytes, limits)? {
        (entry, None) => Ok(entry),
        (_, Some(_)) => Err(DecodeError::Corrupt(
            "a chunked body's head where an entry was expected",
        )),
    }
}

/// Decodes what [`encode`] or [`encode_chunked_head`] wrote: an entry, or the head of a
/// chunked body (an entry with an empty body) and its manifest.
pub fn decode_head(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(CachedResponse, Option<ChunkManifest>), DecodeError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes.get(..magic_len) != MAGIC.get(..magic_len) {
        return Err(DecodeError::BadMagic);
    }
    let version = *bytes.get(MAGIC.len()).ok_or(DecodeError::Truncated)?;
    if !matches!(
        version,
        VERSION | CHUNKED_VERSION | PARTIAL_VERSION | CHUNKED_PARTIAL_VERSION
    ) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let payload_len = bytes
        .len()
        .checked_sub(CHECKSUM_LEN)
        .filter(|&n| n >= FIXED_LEN)
        .ok_or(DecodeError::Truncated)?;
    let (payload, checksum) = bytes.split_at(payload_len);
    let mut stored = [0u8; CHECKSUM_LEN];
    stored.copy_from_slice(checksum);
    if fnv1a64(payload) != u64::from_le_bytes(stored) {
        return Err(DecodeError::ChecksumMismatch);
    }
    parse_payload(payload, limits, version)
}

/// Parses everything before the checksum (magic and version already checked).
fn parse_payload(
    payload: &[u8],
    limits: &DecodeLimits,
    version: u8,
) -> Result<(CachedResponse, Option<ChunkManifest>), DecodeError> {
    let mut r = Reader { rest: payload };
    r.take(MAGIC.len() + 1)?;
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::Corrupt("unknown flags"));
    }
    let status = u16::from_le_bytes(r.array()?);
    if (status == 206) != is_partial(version) {
        return Err(DecodeError::Corrupt(
            "a 206 is stored as an incomplete response, and only it",
        ));
    }
    let request_time = Timestamp::from_millis(u64::from_le_bytes(r.array()?));
    let response_time = Timestamp::from_millis(u64::from_le_bytes(r.array()?));
    let mut header_budget = limits.max_header_bytes;
    let headers = r.fields(limits.max_headers, &mut header_budget)?;
    let vary = r.fields(limits.max_headers, &mut header_budget)?;

    let tag_count = r.len()?;
    if tag_count > limits.max_tags {
        return Err(DecodeError::TooLarge("tag count"));
    }
    // Every tag takes at least its length byte.
    if tag_count > r.rest.len() {
        return Err(DecodeError::Truncated);
    }
    let mut tags = Vec::with_capacity(tag_count);
    let mut tag_budget = limits.max_tag_bytes;
    for _ in 0..tag_count {
        let tag = r.bytes()?;
        tag_budget = tag_budget
            .checked_sub(tag.len())
            .ok_or(DecodeError::TooLarge("tag bytes"))?;
        let tag = core::str::from_utf8(tag).map_err(|_| DecodeError::Corrupt("tag not UTF-8"))?;
        tags.push(String::from(tag));
    }

    let body_len = r.len()?;
    if body_len > limits.max_body_bytes {
        return Err(DecodeError::TooLarge("body"));
    }
    let mut manifest = None;
    let body = if is_chunked(version) {
        if flags & FLAG_DEFLATE != 0 {
            return Err(DecodeError::Corrupt("a chunked body is never deflated"));
        }
        manifest = Some(r.manifest(body_len)?);
        Vec::new()
    } else if flags & FLAG_DEFLATE != 0 {
        let deflated = r.bytes()?;
        // The limit stops inflation one byte past the declared length, so a stream that
        // inflates to more is caught without ever holding more than that.
        let body = miniz_oxide::inflate::decompress_to_vec_with_limit(
            deflated,
            body_len.saturating_add(1),
        )
        .map_err(|_| DecodeError::Corrupt("compressed body"))?;
        if body.len() != body_len {
            return Err(DecodeError::Corrupt("body length"));
        }
        body
    } else {
        r.take(body_len)?.to_vec()
    };
    if !r.rest.is_empty() {
        return Err(DecodeError::Corrupt("trailing bytes"));
    }
    let entry = CachedResponse {
        status,
        headers,
        body,
        request_time,
        response_time,
        vary,
        tags,
        invalidated: flags & FLAG_INVALIDATED != 0,
        derived: Derived::default(),
    };
    Ok((entry, manifest))
}

/// How a body stored in chunks is laid out ([`encode_chunked_head`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkManifest {
    /// The body's length.
    pub total_bytes: usize,
    /// Every chunk's length but the last one's (which holds the rest).
    pub chunk_bytes: usize,
    /// Which write the chunks belong to (their keys carry it).
    pub write_id: u64,
    /// Each chunk's FNV-1a 64 checksum, in order.
    pub checksums: Vec<u64>,
}

/// Why chunks do not make up the body their manifest describes. Either way: a miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk is not there (expired or evicted before its head).
    Missing(usize),
    /// A chunk has the wrong length or fails its checksum.
    Corrupt(usize),
}

impl ChunkManifest {
    /// Splits `body` into chunks of `chunk_bytes` (at least 1) written as `write_id`: the
    /// manifest, and the chunks in order.
    pub fn split(body: &[u8], chunk_bytes: usize, write_id: u64) -> (Self, Vec<&[u8]>) {
        let chunks: Vec<&[u8]> = body.chunks(chunk_bytes.max(1)).collect();
        let manifest = ChunkManifest {
            total_bytes: body.len(),
            chunk_bytes: chunk_bytes.max(1),
            write_id,
            checksums: chunks.iter().map(|c| fnv1a64(c)).collect(),
        };
        (manifest, chunks)
    }

    /// The write id for these chunks stored under `key`: the same body under the same key
    /// always gets the same one (a rewrite, after a `304` say, reuses the chunk keys rather
    /// than leaving another set behind), and the key is part of it, so the chunks of two
    /// objects never mix whatever their bodies.
    pub fn id_for(&self, key: &str) -> u64 {
        let mut seed = Vec::with_capacity(key.len() + 24 + self.checksums.len() * 8);
        seed.extend_from_slice(key.as_bytes());
        seed.extend_from_slice(&(self.total_bytes as u64).to_le_bytes());
        seed.extend_from_slice(&(self.chunk_bytes as u64).to_le_bytes());
        for checksum in &self.checksums {
            seed.extend_from_slice(&checksum.to_le_bytes());
        }
        fnv1a64(&seed)
    }

    /// How long chunk `index` is.
    fn chunk_len(&self, index: usize) -> usize {
        let start = index.saturating_mul(self.chunk_bytes);
        self.total_bytes.saturating_sub(start).min(self.chunk_bytes)
    }

    /// Checks `chunk` as chunk `index`.
    pub fn check(&self, index: usize, chunk: &[u8]) -> Result<(), ChunkError> {
        let expected = self
            .checksums
            .get(index)
            .ok_or(ChunkError::Corrupt(index))?;
        if chunk.len() != self.chunk_len(index) || fnv1a64(chunk) != *expected {
            return Err(ChunkError::Corrupt(index));
        }
        Ok(())
    }

    /// The body, from its chunks in order (`None`: not found), each checked.
    pub fn assemble(&self, chunks: &[Option<Vec<u8>>]) -> Result<Vec<u8>, ChunkError> {
        if chunks.len() != self.checksums.len() {
            return Err(ChunkError::Corrupt(chunks.len().min(self.checksums.len())));
        }
        let mut body = Vec::with_capacity(self.total_bytes);
        for (index, chunk) in chunks.iter().enumerate() {
            let chunk = chunk.as_deref().ok_or(ChunkError::Missing(index))?;
            self.check(index, chunk)?;
            body.extend_from_slice(chunk);
        }
        Ok(body)
    }
}

/// The deflated body, if compression applies and pays off.
fn compress_body(entry: &CachedResponse, options: &EncodeOptions) -> Option<Vec<u8>> {
    let body = &entry.body;
    if body.is_empty() || body.len() < options.compress_min_bytes {
        return None;
    }
    let already_encoded = entry
        .headers
        .list_items("content-encoding")
        .any(|coding| !coding.eq_ignore_ascii_case(b"identity"));
    if already_encoded {
        return None;
    }
    let compressed = miniz_oxide::deflate::compress_to_vec(body, options.compression_level.min(10));
    (compressed.len() < body.len()).then_some(compressed)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation to the low 7 bits is the point.
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // usize is at most 64 bits on every supported target.
    put_varint(out, u64::try_from(len).unwrap_or(u64::MAX));
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_fields(out: &mut Vec<u8>, fields: &Headers) {
    put_len(out, fields.len());
    for (name, value) in fields.iter() {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
    }
}

/// FNV-1a, 64-bit.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A bounds-checked reader over the payload.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        self.rest = tail;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Unsigned LEB128, shortest form only, at most 64 bits.
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(DecodeError::Corrupt("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(DecodeError::Corrupt("varint not in shortest form"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Corrupt("varint too long"))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?).map_err(|_| DecodeError::TooLarge("length"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    /// A chunk manifest for a body of `total_bytes` (already checked against the limits).
    fn manifest(&mut self, total_bytes: usize) -> Result<ChunkManifest, DecodeError> {
        let chunk_bytes = self.len()?;
        if chunk_bytes == 0 {
            return Err(DecodeError::Corrupt("chunk length 0"));
        }
        let write_id = u64::from_le_bytes(self.array()?);
        let count = self.len()?;
        if count != total_bytes.div_ceil(chunk_bytes) {
            return Err(DecodeError::Corrupt("chunk count"));
        }
        if count > self.rest.len() / 8 {
            return Err(DecodeError::Truncated);
        }
        let checksums = (0..count)
            .map(|_| self.array().map(u64::from_le_bytes))
            .collect::<Result<Vec<u64>, DecodeError>>()?;
        Ok(ChunkManifest {
            total_bytes,
            chunk_bytes,
            write_id,
            checksums,
        })
    }

    /// A field list: count, then (name, value) pairs, charged to `budget`.
    fn fields(&mut self, max_count: usize, budget: &mut usize) -> Result<Headers, DecodeError> {
        let count = self.len()?;
        if count > max_count {
            return Err(DecodeError::TooLarge("field count"));
        }
        // Every field takes at least its two length bytes.
        if count > self.rest.len() / 2 {
            return Err(DecodeError::Truncated);
        }
        let mut fields = Headers::new();
        for _ in 0..count {
            let name = self.bytes()?;
            let value = self.bytes()?;
            *budget = budget
                .checked_sub(name.len())
                .and_then(|b| b.checked_sub(value.len()))
                .ok_or(DecodeError::TooLarge("field bytes"))?;
            let name = core::str::from_utf8(name)
                .map_err(|_| DecodeError::Corrupt("field name not UTF-8"))?;
            fields.append(name, value);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> CachedResponse {
        let mut r = CachedResponse::new(
            200,
            Headers::from_pairs([
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "max-age=60, stale-while-revalidate=30"),
                ("ETag", "\"abc\""),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ]),
            b"<html>hello</html>".to_vec(),
            Timestamp::from_millis(1_700_000_000_123),
            Timestamp::from_millis(1_700_000_000_456),
        );
        r.vary = Headers::from_pairs([("accept-encoding", "gzip")]);
        r.tags = vec!["product-1".into(), "caf\u{e9}".into()];
        r
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    /// Appends a valid checksum to a hand-built payload.
    fn seal(mut payload: Vec<u8>) -> Vec<u8> {
        let sum = fnv1a64(&payload);
        payload.extend_from_slice(&sum.to_le_bytes());
        payload
    }

    /// Magic, version, flags, status 200 and zero timestamps.
    fn fixed(flags: u8) -> Vec<u8> {
        let mut p = MAGIC.to_vec();
        p.push(VERSION);
        p.push(flags);
        p.extend_from_slice(&200u16.to_le_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn round_trip_uncompressed() {
        let entry = sample();
        let bytes = encode(&entry, &EncodeOptions::default());
        assert_eq!(bytes.get(..4), Some(&MAGIC[..]));
        assert_eq!(bytes.get(4), Some(&VERSION));
        assert_eq!(bytes.get(5), Some(&0), "small body is not compressed");
        assert_eq!(decode(&bytes, &limits()), Ok(entry));
    }

    #[test]
    fn round_trip_compressed() {
        let mut entry = sample();
        entry.body = "<p>hello, compressible world</p>\n"
            .repeat(500)
            .into_bytes();
        entry.invalidated = true;
        let bytes = encode(&entry, &EncodeOptions::default());
        assert_eq!(bytes.get(5), Some(&(FLAG_DEFLATE | FLAG_INVALIDATED)));
        assert!(bytes.len() < entry.body.len() / 10, "{}", bytes.len());
        assert_eq!(decode(&bytes, &limits()), Ok(entry.clone()));

        let plain = encode(&entry, &EncodeOptions::uncompressed());
        assert_eq!(plain.get(5), Some(&FLAG_INVALIDATED));
        assert_eq!(decode(&plain, &limits()), Ok(entry));
    }

    #[test]
    fn compression_only_when_it_pays() {
        // Incompressible bytes (an LCG) stay stored as they are.
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let mut entry = sample();
        entry.body = noise;
        let bytes = encode(&entry, &EncodeOptions::default());
        assert_eq!(bytes.get(5), Some(&0));
        assert_eq!(decode(&bytes, &limits()), Ok(entry.clone()));

        // An already encoded body is not compressed again.
        entry.body = vec![b'a'; 4096];
        entry.headers.set("content-encoding", "gzip");
        assert_eq!(encode(&entry, &EncodeOptions::default()).get(5), Some(&0));
        entry.headers.set("content-encoding", "identity");
        assert_eq!(
            encode(&entry, &EncodeOptions::default()).get(5),
            Some(&FLAG_DEFLATE)
        );

        // Below the threshold, no compression.
        let opts = EncodeOptions {
            compress_min_bytes: 4097,
            ..EncodeOptions::default()
        };
        assert_eq!(encode(&entry, &opts).get(5), Some(&0));
        let opts = EncodeOptions {
            compress_min_bytes: 0,
            compression_level: 200,
        };
        let bytes = encode(&entry, &opts);
        assert_eq!(bytes.get(5), Some(&FLAG_DEFLATE));
        assert_eq!(decode(&bytes, &limits()), Ok(entry));
    }

    #[test]
    fn round_trip_edge_values() {
        let mut entry = CachedResponse::new(
            0,
            Headers::new(),
            Vec::new(),
            Timestamp::EPOCH,
            Timestamp::MAX,
        );
        let opts = EncodeOptions {
            compress_min_bytes: 0,
            ..EncodeOptions::default()
        };
        for options in [&EncodeOptions::default(), &opts] {
            let bytes = encode(&entry, options);
            assert_eq!(bytes.len(), FIXED_LEN + 4 + CHECKSUM_LEN, "minimal entry");
            assert_eq!(decode(&bytes, &limits()), Ok(entry.clone()));
        }

        // Binary header values (every byte value), empty names and values, many tags.
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        entry.status = u16::MAX;
        entry.headers = Headers::from_pairs([
            ("x-binary", all_bytes.as_slice()),
            ("", b"".as_slice()),
            ("x-empty", b"".as_slice()),
        ]);
        entry.vary = Headers::from_pairs([("accept", &b"\xff\x00"[..])]);
        entry.tags = (0..1000).map(|i| format!("tag-{i}")).collect();
        entry.tags.push(String::new());
        entry.body = all_bytes.repeat(10);
        for options in [&EncodeOptions::default(), &opts] {
            let bytes = encode(&entry, options);
            assert_eq!(decode(&bytes, &limits()), Ok(entry.clone()));
        }
    }

    #[test]
    fn compressed_sizes_round_trip_exactly() {
        // Bodies whose inflated size sits exactly on buffer-growth boundaries.
        for len in [
            1usize, 2, 63, 64, 65, 127, 128, 1023, 1024, 1025, 4096, 65_536, 65_537,
        ] {
            let mut entry = sample();
            entry.body = (0..len).map(|i| b"abcab"[i % 5]).collect();
            let opts = EncodeOptions {
                compress_min_bytes: 0,
                ..EncodeOptions::default()
            };
            let bytes = encode(&entry, &opts);
            let tight = DecodeLimits {
                max_body_bytes: len,
                ..limits()
            };
            assert_eq!(decode(&bytes, &tight), Ok(entry.clone()), "{len}");
            let too_tight = DecodeLimits {
                max_body_bytes: len - 1,
                ..limits()
            };
            assert_eq!(
                decode(&bytes, &too_tight),
                Err(DecodeError::TooLarge("body"))
            );
        }
    }

    /// A chunk missing, shortened, lengthened or changed makes the body a miss; a chunked
    /// head is never taken for a whole entry, nor an entry for a head.
    #[test]
    fn chunks_that_do_not_match_their_manifest_are_refused() {
        let entry = sample();
        let body = b"0123456789abcdefghij".to_vec();
        let (manifest, chunks) = ChunkManifest::split(&body, 8, 7);
        assert_eq!(chunks.len(), 3);
        let good: Vec<Option<Vec<u8>>> = chunks.iter().map(|c| Some(c.to_vec())).collect();
        assert_eq!(manifest.assemble(&good), Ok(body.clone()));
        let mut missing = good.clone();
        missing[1] = None;
        assert_eq!(manifest.assemble(&missing), Err(ChunkError::Missing(1)));
        let mut changed = good.clone();
        changed[2] = Some(b"ghiJ".to_vec());
        assert_eq!(manifest.assemble(&changed), Err(ChunkError::Corrupt(2)));
        let mut short = good.clone();
        short[0] = Some(b"0123456".to_vec());
        assert_eq!(manifest.assemble(&short), Err(ChunkError::Corrupt(0)));
        assert_eq!(manifest.assemble(&good[..2]), Err(ChunkError::Corrupt(2)));
        let head = encode_chunked_head(&entry, &manifest);
        assert!(matches!(
            decode(&head, &limits()),
            Err(DecodeError::Corrupt(_))
        ));
        let whole = encode(&entry, &EncodeOptions::default());
        assert_eq!(decode_head(&whole, &limits()), Ok((entry.clone(), None)));
        // A head declaring more than the limit allows is refused before anything else.
        let small = DecodeLimits {
            max_body_bytes: 19,
            ..limits()
        };
        assert_eq!(
            decode_head(&head, &small),
            Err(DecodeError::TooLarge("body"))
        );
    }

    /// The same body under the same key gets the same write id (a rewrite reuses its
    /// chunks); another key or another body gets another.
    #[test]
    fn write_ids_follow_the_key_and_the_body() {
        let (a, _) = ChunkManifest::split(b"0123456789", 4, 0);
        let (b, _) = ChunkManifest::split(b"0123456789", 4, 0);
        let (c, _) = ChunkManifest::split(b"0123456788", 4, 0);
        assert_eq!(a.id_for("k"), b.id_for("k"));
        assert_ne!(a.id_for("k"), a.id_for("l"));
        assert_ne!(a.id_for("k"), c.id_for("k"));
    }

    /// A head whose chunk count does not follow from its lengths is corrupt, as is one
    /// claiming chunks of length 0 or a deflated chunked body.
    #[test]
    fn inconsistent_manifests_are_corrupt() {
        let entry = sample();
        let (manifest, _) = ChunkManifest::split(b"0123456789", 4, 1);
        for (what, bad) in [
            (
                "count",
                ChunkManifest {
                    checksums: alloc::vec![1, 2],
                    ..manifest.clone()
                },
            ),
            (
                "zero",
                ChunkManifest {
                    chunk_bytes: 0,
                    ..manifest.clone()
                },
            ),
        ] {
            let head = encode_chunked_head(&entry, &bad);
            assert!(
                matches!(decode_head(&head, &limits()), Err(DecodeError::Corrupt(_))),
                "{what}"
            );
        }
        let mut head = encode_chunked_head(&entry, &manifest);
        head[5] |= FLAG_DEFLATE;
        let payload_len = head.len() - CHECKSUM_LEN;
        let sum = fnv1a64(&head[..payload_len]).to_le_bytes();
        head[payload_len..].copy_from_slice(&sum);
        assert_eq!(
            decode_head(&head, &limits()),
            Err(DecodeError::Corrupt("a chunked body is never deflated"))
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut entry = sample();
        entry.body = "compress me ".repeat(200).into_bytes();
        for options in [EncodeOptions::default(), EncodeOptions::uncompressed()] {
            let bytes = encode(&entry, &options);
            for cut in 0..bytes.len() {
                let prefix = bytes.get(..cut).unwrap_or_default();
                assert!(decode(prefix, &limits()).is_err(), "cut at {cut}");
            }
            // The parser itself, past the checksum, also rejects every prefix.
            let payload = bytes.get(..bytes.len() - CHECKSUM_LEN).unwrap_or_default();
            assert_eq!(
                parse_payload(payload, &limits(), VERSION),
                Ok((entry.clone(), None))
            );
            for cut in 0..payload.len() {
                let prefix = payload.get(..cut).unwrap_or_default();
                assert!(
                    parse_payload(prefix, &limits(), VERSION).is_err(),
                    "cut at {cut}"
                );
            }
        }
        assert_eq!(decode(b"", &limits()), Err(DecodeError::Truncated));
        assert_eq!(decode(b"EC", &limits()), Err(DecodeError::Truncated));
        assert_eq!(
            decode(b"EC\xCA\xC4", &limits()),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(b"EC\xCA\xC4\x01", &limits()),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut entry = sample();
        entry.body = "flip ".repeat(300).into_bytes();
        for options in [EncodeOptions::default(), EncodeOptions::uncompressed()] {
            let bytes = encode(&entry, &options);
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut damaged = bytes.clone();
                    if let Some(b) = damaged.get_mut(i) {
                        *b ^= 1 << bit;
                    }
                    let result = decode(&damaged, &limits());
                    assert!(result.is_err(), "byte {i} bit {bit}");
                    if i > MAGIC.len() {
                        assert_eq!(result, Err(DecodeError::ChecksumMismatch));
                    }
                }
            }
        }
    }

    #[test]
    fn magic_and_version() {
        let bytes = encode(&sample(), &EncodeOptions::default());
        let mut other = bytes.clone();
        other[0] = b'X';
        assert_eq!(decode(&other, &limits()), Err(DecodeError::BadMagic));
        assert_eq!(
            decode(b"{\"json\":1}", &limits()),
            Err(DecodeError::BadMagic)
        );
        assert_eq!(decode(b"E", &limits()), Err(DecodeError::Truncated));
        assert_eq!(decode(b"X", &limits()), Err(DecodeError::BadMagic));
        for v in [0u8, 5, 255] {
            let mut other = bytes.clone();
            other[4] = v;
            assert_eq!(
                decode(&other, &limits()),
                Err(DecodeError::UnsupportedVersion(v))
            );
            // A future version is recognised even when it is short.
            assert_eq!(
                decode(&[b'E', b'C', 0xCA, 0xC4, v], &limits()),
                Err(DecodeError::UnsupportedVersion(v))
            );
        }
    }

    /// RFC 9111 §3.3: an incomplete response is written in versions that predate it do
    /// not read (they would serve a part as the whole), and round-trips in this one; the
    /// status and the version must agree.
    #[test]
    fn incomplete_responses_have_versions_of_their_own() {
        let mut partial = sample();
        partial.status = 206;
        partial.headers.append("content-range", "bytes 4-21/100");
        let bytes = encode(&partial, &EncodeOptions::default());
        assert_eq!(bytes.get(4), Some(&PARTIAL_VERSION));
        assert_eq!(decode(&bytes, &limits()), Ok(partial.clone()));
        let (manifest, _) = ChunkManifest::split(&partial.body, 4, 7);
        let head = encode_chunked_head(&partial, &manifest);
        assert_eq!(head.get(4), Some(&CHUNKED_PARTIAL_VERSION));
        let (decoded, read) = decode_head(&head, &limits()).unwrap();
        assert_eq!((decoded.status, read), (206, Some(manifest)));
        for version in [PARTIAL_VERSION, CHUNKED_PARTIAL_VERSION] {
            assert!(
                ![VERSION, CHUNKED_VERSION].contains(&version),
                "an older version reads it as unsupported"
            );
        }
        // Re-sealed with the version and status disagreeing: corrupt both ways.
        let mut as_whole = bytes[..bytes.len() - 8].to_vec();
        as_whole[4] = VERSION;
        assert!(matches!(
            decode(&seal(as_whole), &limits()),
            Err(DecodeError::Corrupt(_))
        ));
        let whole = encode(&sample(), &EncodeOptions::default());
        let mut as_partial = whole[..whole.len() - 8].to_vec();
        as_partial[4] = PARTIAL_VERSION;
        assert!(matches!(
            decode(&seal(as_partial), &limits()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn structural_corruption_with_a_valid_checksum() {
        // Unknown flag bits.
        let mut p = fixed(0x04);
        p.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("unknown flags"))
        );
        // Trailing bytes after the body.
        let mut p = fixed(0);
        p.extend_from_slice(&[0, 0, 0, 0, 0xAA]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("trailing bytes"))
        );
        // Overlong and overflowing varints.
        let mut p = fixed(0);
        p.extend_from_slice(&[0x80, 0x00, 0, 0, 0]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("varint not in shortest form"))
        );
        let mut p = fixed(0);
        p.extend_from_slice(&[0xff; 9]);
        p.push(0x02);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("varint overflows 64 bits"))
        );
        let mut p = fixed(0);
        p.extend_from_slice(&[0xff; 12]);
        assert!(matches!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt(_))
        ));
        // Invalid UTF-8 in a header name and a tag.
        let mut p = fixed(0);
        p.extend_from_slice(&[1, 1, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("field name not UTF-8"))
        );
        let mut p = fixed(0);
        p.extend_from_slice(&[0, 0, 1, 1, 0xc3, 0]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("tag not UTF-8"))
        );
        // A deflate flag over bytes that are not deflate.
        let mut p = fixed(FLAG_DEFLATE);
        p.extend_from_slice(&[0, 0, 0, 10, 3, 0xff, 0xff, 0xff]);
        assert_eq!(
            decode(&seal(p), &limits()),
            Err(DecodeError::Corrupt("compressed body"))
        );
    }

    #[test]
    fn oversized_declared_lengths_fail_before_allocating() {
        let huge = varint(u64::MAX);
        let generous = DecodeLimits {
            max_body_bytes: usize::MAX,
            max_headers: usize::MAX,
            max_header_bytes: usize::MAX,
            max_tags: usize::MAX,
            max_tag_bytes: usize::MAX,
        };
        // A header count of 2^64 - 1.
        let mut p = fixed(0);
        p.extend_from_slice(&huge);
        let sealed = seal(p);
        assert_eq!(
            decode(&sealed, &limits()),
            Err(DecodeError::TooLarge("field count"))
        );
        assert!(matches!(
            decode(&sealed, &generous),
            Err(DecodeError::Truncated | DecodeError::TooLarge("length"))
        ));
        // A header name of 2^40 bytes.
        let mut p = fixed(0);
        p.push(1);
        p.extend_from_slice(&varint(1 << 40));
        assert!(decode(&seal(p), &generous).is_err());
        // A tag count of 2^31 and a tag of 2^31 bytes.
        let mut p = fixed(0);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&varint(1 << 31));
        let sealed = seal(p);
        assert_eq!(
            decode(&sealed, &limits()),
            Err(DecodeError::TooLarge("tag count"))
        );
        assert_eq!(decode(&sealed, &generous), Err(DecodeError::Truncated));
        let mut p = fixed(0);
        p.extend_from_slice(&[0, 0, 1]);
        p.extend_from_slice(&varint(1 << 31));
        assert_eq!(decode(&seal(p), &generous), Err(DecodeError::Truncated));
        // A body of 2^40 bytes, declared plainly and as deflate.
        for flags in [0, FLAG_DEFLATE] {
            let mut p = fixed(flags);
            p.extend_from_slice(&[0, 0, 0]);
            p.extend_from_slice(&varint(1 << 40));
            p.extend_from_slice(&[3, 0x03, 0x00, 0x00]);
            let sealed = seal(p);
            assert_eq!(
                decode(&sealed, &limits()),
                Err(DecodeError::TooLarge("body"))
            );
            assert!(decode(&sealed, &generous).is_err());
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut entry = sample();
        entry.tags = (0..10).map(|i| i.to_string()).collect();
        let bytes = encode(&entry, &EncodeOptions::default());
        let check = |limits: DecodeLimits, want: &'static str| {
            assert_eq!(decode(&bytes, &limits), Err(DecodeError::TooLarge(want)));
        };
        check(
            DecodeLimits {
                max_headers: 4,
                ..limits()
            },
            "field count",
        );
        check(
            DecodeLimits {
                max_header_bytes: entry.headers.iter().map(|(n, v)| n.len() + v.len()).sum(),
                ..limits()
            },
            "field bytes",
        );
        check(
            DecodeLimits {
                max_tags: 9,
                ..limits()
            },
            "tag count",
        );
        check(
            DecodeLimits {
                max_tag_bytes: 9,
                ..limits()
            },
            "tag bytes",
        );
        check(
            DecodeLimits {
                max_body_bytes: entry.body.len() - 1,
                ..limits()
            },
            "body",
        );
        let exact = DecodeLimits {
            max_body_bytes: entry.body.len(),
            max_headers: 5,
            max_header_bytes: entry
                .headers
                .iter()
                .chain(entry.vary.iter())
                .map(|(n, v)| n.len() + v.len())
                .sum(),
            max_tags: 10,
            max_tag_bytes: 10,
        };
        assert_eq!(decode(&bytes, &exact), Ok(entry));
    }

    #[test]
    fn zip_bombs_are_bounded() {
        // 16 MiB of zeros deflate to a small fraction of that.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 16 << 20], 1);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let small = DecodeLimits {
            max_body_bytes: 1 << 20,
            ..limits()
        };
        for declared in [16u64 << 20, 100, 0] {
            let mut p = fixed(FLAG_DEFLATE);
            p.extend_from_slice(&[0, 0, 0]);
            p.extend_from_slice(&varint(declared));
            p.extend_from_slice(&varint(bomb.len() as u64));
            p.extend_from_slice(&bomb);
            let result = decode(&seal(p), &small);
            assert!(
                matches!(
                    result,
                    Err(DecodeError::TooLarge("body") | DecodeError::Corrupt(_))
                ),
                "{declared}: {result:?}"
            );
        }
    }

    #[test]
    fn reads_entries_written_by_an_independent_encoder() {
        // The fuzz seeds were written by a separate (Python) implementation of the layout
        // documented above, so this pins the documentation to the code.
        let html = decode(
            include_bytes!("../fuzz/seeds/entry_decode/html.bin"),
            &limits(),
        );
        let html = html.as_ref().map_err(|e| *e);
        assert_eq!(html.map(|e| e.status), Ok(200));
        assert_eq!(
            html.map(|e| e.headers.get("etag")),
            Ok(Some(&b"\"v1\""[..]))
        );
        assert_eq!(
            html.map(|e| e.tags.clone()),
            Ok(vec!["home".to_string(), "page:1".to_string()])
        );
        let compressed = decode(
            include_bytes!("../fuzz/seeds/entry_decode/compressed.bin"),
            &limits(),
        );
        assert_eq!(
            compressed.map(|e| e.body),
            Ok(b"<li>item</li>\n".repeat(300))
        );
        let gone = decode(
            include_bytes!("../fuzz/seeds/entry_decode/invalidated_404.bin"),
            &limits(),
        );
        assert_eq!(gone.map(|e| (e.status, e.invalidated)), Ok((404, true)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            DecodeError::UnsupportedVersion(9).to_string(),
            "unsupported cache entry version 9 (expected 1 to 4)"
        );
        assert_eq!(
            DecodeError::Corrupt("x").to_string(),
            "corrupt cache entry: x"
        );
        assert_eq!(
            DecodeError::TooLarge("body").to_string(),
            "cache entry too large: body"
        );
        for e in [
            DecodeError::BadMagic,
            DecodeError::Truncated,
            DecodeError::ChecksumMismatch,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn varints() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX.into(),
            u64::MAX,
        ] {
            let bytes = varint(v);
            let mut r = Reader { rest: &bytes };
            assert_eq!(r.varint(), Ok(v));
            assert!(r.rest.is_empty());
        }
        assert_eq!(varint(u64::MAX).len(), 10);
    }

    #[test]
    fn size_bytes_counts_everything() {
        let entry = sample();
        assert!(entry.size_bytes() > entry.body.len() + entry.headers.size_bytes());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn fields() -> impl Strategy<Value = Headers> {
        proptest::collection::vec(
            (".{0,12}", proptest::collection::vec(any::<u8>(), 0..40)),
            0..8,
        )
        .prop_map(Headers::from_pairs)
    }

    fn entry() -> impl Strategy<Value = CachedResponse> {
        (
            any::<u16>(),
            fields(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..3000),
                (any::<u8>(), 0usize..5000).prop_map(|(b, n)| vec![b; n]),
                ("[ab]{0,100}", 0usize..40).prop_map(|(s, n)| s.repeat(n).into_bytes()),
            ],
            any::<u64>(),
            any::<u64>(),
            fields(),
            proptest::collection::vec(".{0,20}", 0..20),
            any::<bool>(),
        )
            .prop_map(
                |(status, headers, body, req, resp, vary, tags, invalidated)| CachedResponse {
                    status,
                    headers,
                    body,
                    request_time: Timestamp::from_millis(req),
                    response_time: Timestamp::from_millis(resp),
                    vary,
                    tags,
                    invalidated,
                    derived: Derived::default(),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(entry in entry(), min in prop_oneof![Just(0usize), Just(1024), Just(usize::MAX)], level in 0u8..=10) {
            let options = EncodeOptions { compress_min_bytes: min, compression_level: level };
            let bytes = encode(&entry, &options);
            prop_assert_eq!(decode(&bytes, &DecodeLimits::default()), Ok(entry));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &DecodeLimits::default());
            let _ = parse_payload(&bytes, &DecodeLimits::default(), VERSION);
            let _ = parse_payload(&bytes, &DecodeLimits::default(), CHUNKED_VERSION);
        }

        #[test]
        fn chunked_bodies_round_trip(
            entry in entry(),
            chunk_bytes in 1usize..64,
            write_id in any::<u64>(),
        ) {
            let (manifest, chunks) = ChunkManifest::split(&entry.body, chunk_bytes, write_id);
            let head = encode_chunked_head(&entry, &manifest);
            let (decoded, read) = decode_head(&head, &DecodeLimits::default()).unwrap();
            prop_assert_eq!(read.as_ref(), Some(&manifest));
            prop_assert!(decoded.body.is_empty());
            let owned: Vec<Option<Vec<u8>>> = chunks.iter().map(|c| Some(c.to_vec())).collect();
            prop_assert_eq!(manifest.assemble(&owned), Ok(entry.body.clone()));
            prop_assert_eq!(CachedResponse { body: entry.body.clone(), ..decoded }, entry);
        }

        #[test]
        fn damaged_entries_are_rejected(entry in entry(), pos in any::<usize>(), xor in 1u8..=255) {
            let mut bytes = encode(&entry, &EncodeOptions::default());
            let i = pos % bytes.len();
            if let Some(b) = bytes.get_mut(i) {
                *b ^= xor;
            }
            prop_assert!(decode(&bytes, &DecodeLimits::default()).is_err());
        }
    }
}
