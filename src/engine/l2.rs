//! The shared tier as the engine uses it: key layout, entry encoding, a circuit breaker and
//! bounded command timeouts. Any failure here degrades to L1 + origin, never to an error
//! response.
//!
//! Layout (every key under [`super::config::L2Config::key_prefix`], `ec:v1:` by default;
//! `{epoch}` is the purge-all generation, see [`super::sync`]):
//! - `{prefix}e{epoch}:obj:{cache key}`: an [`crate::entry`] encoding, with a TTL of the
//!   entry's freshness plus stale and validator-retention windows; for a body larger than
//!   `l2.chunk_bytes`, the head of a chunked body instead ([`crate::entry::encode_chunked_head`]);
//! - `{prefix}e{epoch}:chunk:{write id}:{n}`: chunk `n` of a chunked body, written before its
//!   head and kept [`CHUNK_TTL_MARGIN_MS`] longer. The write id comes from the key and the
//!   body ([`ChunkManifest::id_for`]): a rewrite of the same body reuses the chunks, another
//!   body under the same key gets other chunks, so two versions never mix; a head whose
//!   chunk is missing or damaged is a miss. A purge deletes the head; its chunks are then
//!   read by nothing and expire with the TTL they were written with;
//! - the head of an object stored in slices ([`super::read::Slicing`]) is written as a
//!   chunked head of no chunks, which versions before slicing do not read (they would take
//!   it for a complete, empty response); its slices are objects of their own, whose TTLs
//!   (and their chunks') are extended when a `304` freshens the head (`Engine::l2_extend`);
//! - an incomplete response (a `206`, RFC 9111 §3.3, [`crate::policy::partial`]) is written
//!   as entry version 3 (4 for a chunked head), which versions before incomplete responses
//!   read as a miss, never as the whole response ([`crate::entry`]);
//! - `{prefix}e{epoch}:tag:{tag}`: the set of object keys carrying a purge tag;
//! - `{prefix}epoch`, `{prefix}purge:seq`, `{prefix}purge:{n}`, `{prefix}lease:{cache key}`:
//!   see [`super::sync`];
//! - `{prefix}stats:{fleet}:totals`, `{prefix}stats:{fleet}:instances`: the fleet's
//!   statistics, see [`super::fleet`].

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::{
    chunked_head, decode_head, encode, encode_chunked_head, CachedResponse, ChunkError,
    ChunkManifest, DecodeError, DecodeLimits, EncodeOptions, KIND_BYTES,
};
use crate::policy::storage::lifetimes;
use crate::time::Timestamp;

use core::future::Future;

use super::host::{Lock, LogLevel, Runtime, SharedTier, TierError};
use super::{Engine, Host};

/// How much longer than its head a chunk is kept, so that a head never outlives its chunks.
pub const CHUNK_TTL_MARGIN_MS: u64 = 60_000;

/// How many chunks one read asks for (`MGET`): at 512 KiB, 4 MiB per round trip.
pub const CHUNKS_PER_READ: usize = 8;

/// How many keys one existence check asks about (`EXISTS` commands in one pipeline): an
/// object of 1 MiB slices up to 256 MiB in one round trip.
pub const KEYS_PER_CHECK: usize = 256;

/// Skips the shared tier after repeated failures, and lets one probe through after a
/// cool-down (closed → open → half-open → closed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Timestamp>,
}

impl Breaker {
    /// Whether calls should be skipped at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// Records a successful call: the circuit closes.
    pub fn success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
    }

    /// Records a failed call; opens the circuit for `cooldown_ms` once `threshold` failures
    /// in a row have been seen (a failed probe re-opens it at once). Returns whether this
    /// failure opened a closed circuit.
    pub fn failure(&mut self, now: Timestamp, threshold: u32, cooldown_ms: u64) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures >= threshold.max(1) {
            let was_closed = self.open_until.is_none();
            self.open_until = Some(now.plus_millis(cooldown_ms));
            return was_closed;
        }
        false
    }

    /// Whether the circuit has opened since the last success.
    pub fn has_opened(&self) -> bool {
        self.open_until.is_some()
    }
}

/// Runs `future`, giving up after `ms` milliseconds.
pub(crate) async fn with_timeout<R: Runtime, F: core::future::Future>(
    runtime: &R,
    ms: u64,
    future: F,
) -> Option<F::Output> {
    let mut future = alloc::boxed::Box::pin(future);
    let mut sleep = alloc::boxed::Box::pin(runtime.sleep(ms));
    core::future::poll_fn(move |cx| {
        if let core::task::Poll::Ready(v) = future.as_mut().poll(cx) {
            return core::task::Poll::Ready(Some(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return core::task::Poll::Ready(None);
        }
        core::task::Poll::Pending
    })
    .await
}

impl<H: Host> Engine<H> {
    /// The shared-tier key of a stored object in `epoch`.
    pub(crate) fn l2_object_key(&self, epoch: i64, cache_key: &str) -> String {
        format!("{}e{epoch}:obj:{cache_key}", self.config.l2.key_prefix)
    }

    /// The shared-tier keys of the stored objects `cache_keys` in `epoch`.
    fn l2_object_keys(&self, epoch: i64, cache_keys: &[String]) -> Vec<String> {
        cache_keys
            .iter()
            .map(|key| self.l2_object_key(epoch, key))
            .collect()
    }

    /// The shared-tier key of chunk `index` of write `write_id` in `epoch`.
    fn l2_chunk_key(&self, epoch: i64, write_id: u64, index: usize) -> String {
        format!(
            "{}e{epoch}:chunk:{write_id:016x}:{index}",
            self.config.l2.key_prefix
        )
    }

    /// The shared-tier set of object keys tagged `tag` in `epoch`.
    pub(crate) fn l2_tag_key(&self, epoch: i64, tag: &str) -> String {
        format!("{}e{epoch}:tag:{tag}", self.config.l2.key_prefix)
    }

    /// The shared tier, unless it is absent or its circuit is open.
    pub(crate) fn l2_tier(&self) -> Option<&H::SharedTier> {
        let tier = self.shared.as_ref()?;
        let now = self.runtime.now();
        (!self.state.with(|s| s.breaker.is_open(now))).then_some(tier)
    }

    /// Awaits one shared-tier command within `l2.timeout_ms`, recording the outcome in the
    /// breaker. `None` when it failed (the failure is counted).
    pub(crate) async fn l2_guarded<T>(
        &self,
        command: impl core::future::Future<Output = Result<T, TierError>>,
    ) -> Option<T> {
        self.l2_guarded_within(self.config.l2.timeout_ms, command)
            .await
    }

    /// [`Self::l2_guarded`] with another timeout (commands that carry whole requests).
    pub(crate) async fn l2_guarded_within<T>(
        &self,
        timeout_ms: u64,
        command: impl core::future::Future<Output = Result<T, TierError>>,
    ) -> Option<T> {
        let result = with_timeout(&self.runtime, timeout_ms, command).await;
        let l2 = &self.config.l2;
        match result {
            Some(Ok(value)) => {
                let recovered = self.state.with(|s| {
                    let was_open = s.breaker.has_opened();
                    s.breaker.success();
                    was_open
                });
                if recovered {
                    self.runtime
                        .log(LogLevel::Info, "edgecache: shared tier (Redis) is back");
                }
                Some(value)
            }
            failed => {
                let now = self.runtime.now();
                let opened = self.state.with(|s| {
                    s.stats.l2_errors += 1;
                    s.breaker
                        .failure(now, l2.breaker_failures, l2.breaker_cooldown_ms)
                });
                if opened {
                    let why = match failed {
                        Some(Err(e)) => e.0,
                        _ => format!("no answer within {timeout_ms} ms"),
                    };
                    self.runtime.log(
                        LogLevel::Warn,
                        &format!(
                            "edgecache: shared tier (Redis) failing, serving from L1 and the origin; retrying every {} ms: {why}",
                            l2.breaker_cooldown_ms
                        ),
                    );
                }
                None
            }
        }
    }

    /// Reads and decodes the object stored under `cache_key`, its chunks too when it has
    /// them. Corrupt entries are misses (counted, deleted, never served); so is a chunked
    /// body with a chunk missing (deleted, not counted: Redis evicted or expired it).
    pub(crate) async fn l2_read(&self, cache_key: &str) -> Option<Arc<CachedResponse>> {
        let epoch = self.l2_epoch().await?;
        let key = self.l2_object_key(epoch, cache_key);
        let tier = self.l2_tier()?;
        let bytes = self.l2_guarded(tier.get(&key)).await??;
        let limits = DecodeLimits {
            max_body_bytes: self.config.l2.max_object_bytes,
            ..DecodeLimits::default()
        };
        let read = match decode_head(&bytes, &limits) {
            Ok((entry, None)) => Ok(entry),
            Ok((head, Some(manifest))) => match self.l2_read_chunks(epoch, &manifest).await? {
                Ok(body) => Ok(CachedResponse { body, ..head }),
                Err(error) => Err(error),
            },
            // Written by a newer version: a miss for this one, left for those that read it.
            Err(DecodeError::UnsupportedVersion(_)) => return None,
            Err(_) => Err(ChunkError::Corrupt(0)),
        };
        match read {
            // The head of an object this version does not slice (more than `MAX_SLICES`
            // slices, from an earlier version): a miss, left for the versions that read it.
            Ok(entry) if super::read::refused_head(&entry) => None,
            Ok(entry) => Some(self.ready_to_keep(entry)),
            Err(error) => {
                if matches!(error, ChunkError::Corrupt(_)) {
                    self.count(|s| s.l2_corrupt += 1);
                }
                let keys = [key];
                self.l2_guarded(tier.delete(&keys)).await;
                None
            }
        }
    }

    /// The body `manifest` describes, read [`CHUNKS_PER_READ`] chunks per round trip and
    /// each checked as it comes; `None` when the shared tier failed.
    async fn l2_read_chunks(
        &self,
        epoch: i64,
        manifest: &ChunkManifest,
    ) -> Option<Result<Vec<u8>, ChunkError>> {
        let count = manifest.checksums.len();
        let mut body = Vec::with_capacity(manifest.total_bytes);
        let mut first = 0;
        while first < count {
            let batch = first..(first + CHUNKS_PER_READ).min(count);
            let keys: Vec<String> = batch
                .clone()
                .map(|n| self.l2_chunk_key(epoch, manifest.write_id, n))
                .collect();
            let tier = self.l2_tier()?;
            let chunks = self.l2_guarded(tier.get_many(&keys)).await?;
            for (n, chunk) in batch.clone().zip(chunks) {
                let Some(chunk) = chunk else {
                    return Some(Err(ChunkError::Missing(n)));
                };
                if let Err(error) = manifest.check(n, &chunk) {
                    return Some(Err(error));
                }
                body.extend_from_slice(&chunk);
            }
            first = batch.end;
        }
        Some(Ok(body))
    }

    /// Keeps the objects under `cache_keys` at least `ttl_ms` longer in the shared tier,
    /// with their chunks, and the sets of `tags` listing them ([`SharedTier::extend`]:
    /// never shortened; a missing object stays missing). What each key holds is read from
    /// Redis, not assumed from this instance's `l2.chunk_bytes` (the writer's may differ):
    /// its first [`KIND_BYTES`] bytes (`GETRANGE`), then, for a chunked head, the head
    /// itself (small: fields and checksums) for the names of its chunks, which are kept
    /// [`CHUNK_TTL_MARGIN_MS`] longer still and extended first, so a head never outlives
    /// them. A key holding what this version does not read, or a chunked head that does
    /// not decode, is left as it is (reading it is a miss). [`KEYS_PER_CHECK`] keys per
    /// round trip (three round trips each). Whether the tier answered.
    pub(crate) async fn l2_extend(
        &self,
        cache_keys: &[String],
        tags: &[String],
        ttl_ms: u64,
    ) -> Option<()> {
        let epoch = self.l2_epoch().await?;
        let limits = DecodeLimits {
            max_body_bytes: self.config.l2.max_object_bytes,
            ..DecodeLimits::default()
        };
        let chunk_ttl = ttl_ms.saturating_add(CHUNK_TTL_MARGIN_MS);
        for batch in cache_keys.chunks(KEYS_PER_CHECK) {
            let keys = self.l2_object_keys(epoch, batch);
            let tier = self.l2_tier()?;
            let kinds = self
                .l2_guarded(tier.get_prefixes(&keys, KIND_BYTES))
                .await?;
            let mut whole = Vec::new();
            let mut chunked = Vec::new();
            for (key, kind) in keys.into_iter().zip(kinds) {
                match chunked_head(&kind) {
                    Some(true) => chunked.push(key),
                    Some(false) => whole.push(key),
                    None => {}
                }
            }
            let mut chunks = Vec::new();
            if !chunked.is_empty() {
                let tier = self.l2_tier()?;
                let heads = self.l2_guarded(tier.get_many(&chunked)).await?;
                for (key, head) in chunked.into_iter().zip(heads) {
                    if let Some(Ok((_, Some(manifest)))) =
                        head.map(|bytes| decode_head(&bytes, &limits))
                    {
                        chunks.extend(
                            (0..manifest.checksums.len())
                                .map(|n| self.l2_chunk_key(epoch, manifest.write_id, n)),
                        );
                        whole.push(key);
                    }
                }
            }
            let tier = self.l2_tier()?;
            self.l2_guarded(tier.extend(&chunks, chunk_ttl)).await?;
            self.l2_guarded(tier.extend(&whole, ttl_ms)).await?;
        }
        let sets: Vec<String> = tags.iter().map(|tag| self.l2_tag_key(epoch, tag)).collect();
        let tier = self.l2_tier()?;
        self.l2_guarded(tier.extend(&sets, ttl_ms)).await?;
        Some(())
    }

    /// Whether the shared tier holds an object under each of `cache_keys`, asked with
    /// `EXISTS` ([`SharedTier::exist`]), [`KEYS_PER_CHECK`] keys per round trip, without
    /// reading a value: an object there is not decoded, so a corrupt one, or a chunked one
    /// whose chunk Redis evicted, counts as held (and is a miss when it is read). `None`
    /// when the tier is absent or failed.
    pub(crate) async fn l2_holds(&self, cache_keys: &[String]) -> Option<Vec<bool>> {
        let epoch = self.l2_epoch().await?;
        let mut held = Vec::with_capacity(cache_keys.len());
        for batch in cache_keys.chunks(KEYS_PER_CHECK) {
            let keys = self.l2_object_keys(epoch, batch);
            let tier = self.l2_tier()?;
            let answers = self.l2_guarded(tier.exist(&keys)).await?;
            if answers.len() != keys.len() {
                return None;
            }
            held.extend(answers);
        }
        Some(held)
    }

    /// Writes `stored` under `cache_key` with a TTL covering every window it may be served
    /// in. Bodies above the shared tier's size limit are not written.
    /// Writes `stored` to the shared tier under `keys` (its primary key, then its Vary
    /// variant's). A varying response's objects are also listed in the set of its URL
    /// (the L1 URL tag's), so a purge of the URL deletes every variant, not only the
    /// primary object.
    pub(crate) async fn l2_write_all(&self, keys: &[String], stored: &CachedResponse) {
        if self.shared.is_none() || stored.body.len() > self.config.l2.max_object_bytes {
            return;
        }
        let Some(epoch) = self.l2_epoch().await else {
            return;
        };
        let Some((ttl_ms, value)) = self.l2_value(epoch, &keys[0], stored, 0).await else {
            return;
        };
        let url = (keys.len() > 1).then(|| super::read::url_tag(&keys[0]));
        for key in keys {
            self.l2_write(epoch, key, (ttl_ms, &value), stored, url.as_deref())
                .await;
        }
    }

    /// Writes `stored` under `key` alone, kept at least `keep_at_least_ms`, listed in the
    /// set of `url_tag` as well as its own tags' (a slice of an object, which a purge of the
    /// object's URL deletes, kept as long as its head's slices are).
    pub(crate) async fn l2_write_tagged(
        &self,
        key: &str,
        stored: &CachedResponse,
        url_tag: &str,
        keep_at_least_ms: u64,
    ) {
        if self.shared.is_none() || stored.body.len() > self.config.l2.max_object_bytes {
            return;
        }
        let Some(epoch) = self.l2_epoch().await else {
            return;
        };
        let Some((ttl_ms, value)) = self.l2_value(epoch, key, stored, keep_at_least_ms).await
        else {
            return;
        };
        self.l2_write(epoch, key, (ttl_ms, &value), stored, Some(url_tag))
            .await;
    }

    /// What the object key of `stored` (under `cache_key`) holds, and for how long (its
    /// windows, and at least `keep_at_least_ms`): its encoding, or, for a body larger than
    /// `l2.chunk_bytes` or the head of an object in slices, a chunked head, whose chunks are
    /// written first (`None` when one could not be, or the entry is of no further use).
    async fn l2_value(
        &self,
        epoch: i64,
        cache_key: &str,
        stored: &CachedResponse,
        keep_at_least_ms: u64,
    ) -> Option<(u64, Vec<u8>)> {
        let chunk_bytes = self.config.l2.chunk_bytes;
        let ttl_ms = self.keep_ms(stored).max(keep_at_least_ms);
        if ttl_ms == 0 {
            return None;
        }
        if stored.body.len() <= chunk_bytes {
            return Some((ttl_ms, self.tier_encoding(stored)));
        }
        let (mut manifest, chunks) = ChunkManifest::split(&stored.body, chunk_bytes, 0);
        manifest.write_id = manifest.id_for(cache_key);
        for (n, chunk) in chunks.into_iter().enumerate() {
            let key = self.l2_chunk_key(epoch, manifest.write_id, n);
            let tier = self.l2_tier()?;
            let chunk_ttl = ttl_ms.saturating_add(CHUNK_TTL_MARGIN_MS);
            self.l2_guarded(tier.set(&key, chunk, chunk_ttl)).await?;
        }
        Some((ttl_ms, encode_chunked_head(stored, &manifest)))
    }

    /// Writes `value` (`ttl_ms`, bytes) under `cache_key`, tagged with the tags of
    /// `stored` and `url_tag` if any.
    async fn l2_write(
        &self,
        epoch: i64,
        cache_key: &str,
        (ttl_ms, bytes): (u64, &[u8]),
        stored: &CachedResponse,
        url_tag: Option<&str>,
    ) {
        let key = self.l2_object_key(epoch, cache_key);
        let Some(tier) = self.l2_tier() else {
            return;
        };
        if self
            .l2_guarded(tier.set(&key, bytes, ttl_ms))
            .await
            .is_none()
        {
            return;
        }
        for tag in stored.tags.iter().map(String::as_str).chain(url_tag) {
            let set = self.l2_tag_key(epoch, tag);
            self.l2_guarded(tier.add_to_set(&set, &key, ttl_ms)).await;
        }
    }

    /// How long a tier behind L1 keeps `stored`, in ms: every window it may be served in
    /// (RFC 9111 §4.2, RFC 5861, and the validator retention). 0: of no further use.
    pub(crate) fn keep_ms(&self, stored: &CachedResponse) -> u64 {
        let now = self.runtime.now();
        lifetimes(stored, now, &self.config.policy)
            .keep_until
            .millis_since(now)
    }

    /// The encoding of `stored` in a tier behind L1: for the head of an object in slices, a
    /// chunked head of no chunks, which versions before slicing do not read (they would
    /// take it for a complete, empty response).
    pub(crate) fn tier_encoding(&self, stored: &CachedResponse) -> Vec<u8> {
        if super::read::Slicing::of(stored).is_some() {
            let (manifest, _) = ChunkManifest::split(&[], 1, 0);
            return encode_chunked_head(stored, &manifest);
        }
        let options = EncodeOptions {
            compress_min_bytes: self.config.l2.compress_min_bytes,
            ..EncodeOptions::default()
        };
        encode(stored, &options)
    }

    /// Deletes the objects of `cache_keys` from the shared tier.
    pub(crate) async fn l2_delete(&self, cache_keys: &[String]) {
        if self.shared.is_none() || cache_keys.is_empty() {
            return;
        }
        let Some(epoch) = self.l2_epoch().await else {
            return;
        };
        let keys = self.l2_object_keys(epoch, cache_keys);
        if let Some(tier) = self.l2_tier() {
            self.l2_guarded(tier.delete(&keys)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_recovers() {
        let mut b = Breaker::default();
        let t = Timestamp::from_secs(100);
        assert!(!b.failure(t, 3, 1000));
        assert!(!b.failure(t, 3, 1000));
        assert!(!b.is_open(t) && !b.has_opened());
        assert!(b.failure(t, 3, 1000), "this failure opened it");
        assert!(b.is_open(t) && b.has_opened());
        assert!(b.is_open(t.plus_millis(999)));
        assert!(
            !b.is_open(t.plus_millis(1000)),
            "half-open: one probe may go"
        );
        assert!(
            !b.failure(t.plus_millis(1000), 3, 1000),
            "already open: not a new outage"
        );
        assert!(
            b.is_open(t.plus_millis(1001)),
            "a failed probe re-opens at once"
        );
        b.success();
        assert!(!b.is_open(t.plus_millis(1001)) && !b.has_opened());
    }
}
