//! The L1 store: an LRU with TinyLFU admission, TTL and stale windows, tags, and entry + byte bounds.
//!
//! [`L1Store`] is the in-process tier of the cache. It is generic (`L1Store<String,
//! Arc<CachedResponse>>` in the engine, `L1Store<u64, u64>` in the benchmark), `no_std` +
//! `alloc`, and never reads a clock: every time-dependent method takes `now`.
//!
//! # Freshness and stale windows
//!
//! Each entry carries [`Windows`]: when it was stored, until when it is fresh (RFC 9111 §4.2:
//! the freshness lifetime has not yet been exceeded), and until when it may still be served
//! stale while it is revalidated in the background (RFC 5861 §3, `stale-while-revalidate`) or
//! when the origin fails (RFC 5861 §4, `stale-if-error`; RFC 9111 §4.2.4 allows serving stale
//! only where such an extension permits it). All windows are half-open: an entry is fresh while
//! `now < fresh_until`, inside a stale window while `now < *_until`, and *expired* from the
//! latest of the three onwards. An expired entry is never returned: [`L1Store::get`] removes
//! it, counts an expiration and reports a miss. Expired entries are also reclaimed when they
//! reach the LRU end (counted as expirations, not evictions) and by
//! [`L1Store::remove_expired`].
//!
//! # Bounds and eviction
//!
//! The store holds at most [`StoreConfig::max_entries`] entries whose sizes (as the caller
//! declares them in [`EntryMeta::size`]) add up to at most [`StoreConfig::max_bytes`], after
//! every operation. It evicts least-recently-used entries first (the recency list is the `lru`
//! crate's). An entry larger than `max_bytes` is refused ([`InsertOutcome::TooLarge`]).
//!
//! Bytes of entries still arriving (a body being received as it is served) count against
//! `max_bytes` too, from the time they arrive: the caller reserves them
//! ([`L1Store::reserve`], which evicts for them as an insert would, admission included) and
//! releases the reservation ([`L1Store::release`]) before it inserts the entry, or when the
//! entry will not be stored. Resident and reserved bytes together stay within `max_bytes`.
//!
//! With [`Admission::None`] the order is exact LRU: every hit moves the entry to the front.
//! With [`Admission::TinyLfu`] it is approximate: a hit skips the move for an entry that is
//! still in the front three quarters of the list (moved there fewer than
//! `3 * max_entries / 4` list moves ago), which saves most pointer updates on popular entries
//! without letting them drift to the eviction end.
//!
//! # Admission
//!
//! With [`Admission::TinyLfu`] (the default) every `get` and `insert` is recorded in a
//! frequency sketch ([`admission::FrequencySketch`]); when a *new* key would force an eviction,
//! it is stored only if it has been requested more often, recently, than every entry it would
//! evict ([`InsertOutcome::Rejected`] otherwise). Updates of resident keys are always accepted.
//! This keeps one-hit wonders and scans from flushing popular entries, and raises the hit ratio
//! well above plain LRU on skewed traffic (see `BENCHMARKS.md`). A `get` that misses followed
//! by the `insert` of the same key counts as one access, not two.
//!
//! The sketch only keeps the frequencies of keys that are *not* resident. A resident key's
//! frequency lives in its entry (`admission::Freq`): seeded from the sketch when the key is
//! admitted, counted there on every hit, compared there when the entry is an eviction
//! candidate, and merged back into the sketch when the entry leaves. So a hit never touches
//! the sketch (the entry's line is already loaded), and a victim's frequency costs no sketch
//! probe.
//!
//! # Tags and purges
//!
//! Entries may carry purge tags (`Surrogate-Key`, `Cache-Tag`). [`L1Store::purge_tag`] removes
//! every entry with a tag in O(entries with that tag); [`L1Store::soft_purge`] and
//! [`L1Store::soft_purge_tag`] mark entries stale instead (their freshness ends now, their stale
//! windows keep their lengths from now), so they can still be served stale while
//! revalidating, or on origin error, as far as their `stale-*` directives allow.
//!
//! # Cost
//!
//! A key is hashed once per operation; that hash is reused for the hash table, the admission
//! sketch, the tag index and eviction. The hit path does not allocate (it clones `V`, so use a
//! cheap-to-clone `V` such as `Arc<_>`). Untagged entries cost nothing in the tag index.

pub mod admission;
mod key;
mod tags;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::mem;
use core::num::NonZeroUsize;

use hashbrown::DefaultHashBuilder;
use lru::LruCache;

use crate::time::Timestamp;
use admission::{Freq, FrequencySketch};
use key::{HashedKey, KeyView, PassThrough, Probe};
use tags::TagIndex;

/// How a new key gets into a full store.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Plain LRU: every new key is admitted and the least recently used entries make room.
    None,
    /// TinyLFU: a new key that needs room is admitted only if its estimated recent frequency
    /// is greater than that of every entry it would evict (see [`admission`]).
    #[default]
    TinyLfu,
}

/// Capacity and policy of an [`L1Store`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// Maximum number of entries. 0 makes a store that stores nothing.
    pub max_entries: usize,
    /// Maximum sum of [`EntryMeta::size`] over all entries.
    pub max_bytes: usize,
    /// Admission policy for new keys when the store is full.
    pub admission: Admission,
}

impl StoreConfig {
    /// A config with these bounds and TinyLFU admission.
    pub const fn new(max_entries: usize, max_bytes: usize) -> Self {
        StoreConfig {
            max_entries,
            max_bytes,
            admission: Admission::TinyLfu,
        }
    }

    /// The same config with another admission policy.
    pub const fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }
}

impl Default for StoreConfig {
    /// 10,000 entries, 64 MiB, TinyLFU.
    fn default() -> Self {
        StoreConfig::new(10_000, 64 << 20)
    }
}

/// The freshness and stale windows of a stored response, as absolute instants.
///
/// All windows are half-open (`now < until`). A stale window that ends before `fresh_until`
/// simply never applies.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Windows {
    /// When the entry was stored.
    pub stored_at: Timestamp,
    /// Fresh while `now < fresh_until` (RFC 9111 §4.2).
    pub fresh_until: Timestamp,
    /// May be served stale while revalidating until then (RFC 5861 §3).
    pub stale_while_revalidate_until: Timestamp,
    /// May be served stale when the origin errors until then (RFC 5861 §4).
    pub stale_if_error_until: Timestamp,
}

/// Where `now` falls in an entry's [`Windows`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// Fresh: may be served as is (RFC 9111 §4.2).
    Fresh,
    /// Stale, inside the `stale-while-revalidate` window (which may overlap the
    /// `stale-if-error` one): serve and revalidate in the background (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Stale, inside the `stale-if-error` window only: serve only if revalidation fails
    /// (RFC 5861 §4).
    StaleIfError,
    /// Past every window: never served.
    Expired,
}

impl Windows {
    /// Windows from absolute instants.
    pub const fn new(
        stored_at: Timestamp,
        fresh_until: Timestamp,
        stale_while_revalidate_until: Timestamp,
        stale_if_error_until: Timestamp,
    ) -> Self {
        Windows {
            stored_at,
            fresh_until,
            stale_while_revalidate_until,
            stale_if_error_until,
        }
    }

    /// Windows from durations in milliseconds: fresh for `fresh_ms` after `stored_at`, then
    /// the stale windows counted from the moment it becomes stale (as RFC 5861 counts them).
    pub const fn from_lifetimes(
        stored_at: Timestamp,
        fresh_ms: u64,
        stale_while_revalidate_ms: u64,
        stale_if_error_ms: u64,
    ) -> Self {
        let fresh_until = stored_at.plus_millis(fresh_ms);
        Windows {
            stored_at,
            fresh_until,
            stale_while_revalidate_until: fresh_until.plus_millis(stale_while_revalidate_ms),
            stale_if_error_until: fresh_until.plus_millis(stale_if_error_ms),
        }
    }

    /// Fresh for `ttl_ms` after `stored_at`, with no stale windows.
    pub const fn fresh_for(stored_at: Timestamp, ttl_ms: u64) -> Self {
        Windows::from_lifetimes(stored_at, ttl_ms, 0, 0)
    }

    /// The first instant at which the entry is expired: the end of the latest window.
    #[inline]
    pub fn expires_at(&self) -> Timestamp {
        self.fresh_until
            .max(self.stale_while_revalidate_until)
            .max(self.stale_if_error_until)
    }

    /// Whether the entry is fresh at `now`.
    #[inline]
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.fresh_until
    }

    /// Whether the entry is past every window at `now`.
    #[inline]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }

    /// Where `now` falls in these windows.
    pub fn state(&self, now: Timestamp) -> EntryState {
        if now < self.fresh_until {
            EntryState::Fresh
        } else if now < self.stale_while_revalidate_until {
            EntryState::StaleWhileRevalidate
        } else if now < self.stale_if_error_until {
            EntryState::StaleIfError
        } else {
            EntryState::Expired
        }
    }

    /// These windows for an entry made stale at `now` (a soft purge): freshness ends at
    /// `now` if it had not already, and each stale window keeps its length, counted from
    /// that moment, as RFC 5861 §3 and §4 count them from when the response becomes stale.
    /// Windows already stale at `now` are returned unchanged; nothing is ever extended.
    pub fn made_stale_at(&self, now: Timestamp) -> Windows {
        if now >= self.fresh_until {
            return *self;
        }
        let shifted = |until: Timestamp| now.plus_millis(until.millis_since(self.fresh_until));
        Windows {
            stored_at: self.stored_at,
            fresh_until: now,
            stale_while_revalidate_until: shifted(self.stale_while_revalidate_until),
            stale_if_error_until: shifted(self.stale_if_error_until),
        }
    }

    /// Remaining freshness in milliseconds, negative once stale (the RFC 9211 `ttl`
    /// parameter of `Cache-Status`, before rounding to seconds).
    pub fn ttl_millis(&self, now: Timestamp) -> i64 {
        let d = i128::from(self.fresh_until.as_millis()) - i128::from(now.as_millis());
        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// What the caller tells the store about an entry it inserts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Freshness and stale windows.
    pub windows: Windows,
    /// The entry's weight against [`StoreConfig::max_bytes`] (e.g. body + headers + key).
    pub size: usize,
    /// Purge tags (`Surrogate-Key`, `Cache-Tag`). Duplicates are harmless.
    pub tags: Vec<String>,
}

impl EntryMeta {
    /// Metadata with no tags.
    pub fn new(windows: Windows, size: usize) -> Self {
        EntryMeta {
            windows,
            size,
            tags: Vec::new(),
        }
    }

    /// The same metadata with these purge tags.
    pub fn with_tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// A value found by [`L1Store::get`], with its windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit<V> {
    /// The stored value (cloned out).
    pub value: V,
    /// Its freshness and stale windows (after any soft purge).
    pub windows: Windows,
    /// Its declared size.
    pub size: usize,
}

impl<V> Hit<V> {
    /// Where `now` falls in the hit's windows.
    pub fn state(&self, now: Timestamp) -> EntryState {
        self.windows.state(now)
    }
}

/// The result of [`L1Store::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Found and fresh (RFC 9111 §4.2).
    Fresh(Hit<V>),
    /// Found, stale, but inside a stale-while-revalidate or stale-if-error window
    /// (RFC 5861); [`Hit::state`] tells which.
    Stale(Hit<V>),
    /// Not found, or found expired (and then removed).
    Miss,
}

impl<V> Lookup<V> {
    /// The hit, fresh or stale.
    pub fn hit(&self) -> Option<&Hit<V>> {
        match self {
            Lookup::Fresh(h) | Lookup::Stale(h) => Some(h),
            Lookup::Miss => None,
        }
    }

    /// The hit, fresh or stale, by value.
    pub fn into_hit(self) -> Option<Hit<V>> {
        match self {
            Lookup::Fresh(h) | Lookup::Stale(h) => Some(h),
            Lookup::Miss => None,
        }
    }

    /// The value, fresh or stale.
    pub fn value(&self) -> Option<&V> {
        self.hit().map(|h| &h.value)
    }

    /// The value, fresh or stale, by value.
    pub fn into_value(self) -> Option<V> {
        self.into_hit().map(|h| h.value)
    }

    /// Whether this is [`Lookup::Fresh`].
    pub fn is_fresh(&self) -> bool {
        matches!(self, Lookup::Fresh(_))
    }

    /// Whether this is [`Lookup::Stale`].
    pub fn is_stale(&self) -> bool {
        matches!(self, Lookup::Stale(_))
    }

    /// Whether this is [`Lookup::Miss`].
    pub fn is_miss(&self) -> bool {
        matches!(self, Lookup::Miss)
    }
}

/// A resident entry seen without touching it ([`L1Store::peek`], [`L1Store::iter`]).
#[derive(Debug, PartialEq, Eq)]
pub struct EntryRef<'a, V> {
    /// The stored value.
    pub value: &'a V,
    /// Its windows (it may be expired: peeking does not judge).
    pub windows: Windows,
    /// Its declared size.
    pub size: usize,
    /// Its purge tags.
    pub tags: &'a [String],
}

impl<V> Clone for EntryRef<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for EntryRef<'_, V> {}

/// The result of [`L1Store::insert`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum InsertOutcome {
    /// A new key was stored (possibly evicting others).
    Inserted,
    /// A resident key's value and metadata were replaced (and it became most recently used).
    Replaced,
    /// A new key was refused by the admission policy: it is rarer than what it would evict.
    Rejected,
    /// The entry can never fit (`size > max_bytes`, or `max_entries == 0`). A resident entry
    /// under that key was removed, since it no longer holds the latest response.
    TooLarge,
}

impl InsertOutcome {
    /// Whether the value is now in the store.
    pub fn is_stored(self) -> bool {
        matches!(self, InsertOutcome::Inserted | InsertOutcome::Replaced)
    }
}

/// Counters since the store was made, plus its current size.
///
/// Invariant: `entries == inserts - evictions - expirations - purged`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// `get`s that found a fresh entry.
    pub hits: u64,
    /// `get`s that found a stale entry inside a stale window.
    pub stale_hits: u64,
    /// `get`s that found nothing usable (absent or expired).
    pub misses: u64,
    /// New keys stored.
    pub inserts: u64,
    /// Resident keys whose entry was replaced.
    pub updates: u64,
    /// New keys refused by admission.
    pub rejected: u64,
    /// Inserts refused as larger than the store.
    pub too_large: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed because they were past every window (on `get`, at the LRU end, or by
    /// `remove_expired`).
    pub expirations: u64,
    /// Entries removed by `remove`, `purge_tag`, `clear`, or a too-large update.
    pub purged: u64,
    /// Entries marked stale by a soft purge.
    pub soft_purged: u64,
    /// Entries resident now.
    pub entries: usize,
    /// Sum of resident entries' sizes now.
    pub bytes: usize,
}

impl StoreStats {
    /// Fresh plus stale hits over all `get`s (0 when there were none).
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.hits + self.stale_hits;
        let total = hits + self.misses;
        if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        }
    }
}

/// What the recency list holds per key.
#[derive(Clone, Debug)]
struct Slot<V> {
    value: V,
    windows: Windows,
    size: usize,
    /// Boxed so that untagged entries pay one null pointer (8 bytes, against 24 for a `Vec`
    /// or 16 for a boxed slice) in every node of the recency list.
    #[allow(clippy::box_collection)]
    tags: Option<Box<Vec<String>>>,
    /// The store's `tick` when the entry was last put at the MRU end.
    touched: u32,
    /// With TinyLFU, the key's access frequency while it is resident (its hits are counted
    /// here, not in the sketch).
    freq: Freq,
}

impl<V> Slot<V> {
    fn as_ref(&self) -> EntryRef<'_, V> {
        EntryRef {
            value: &self.value,
            windows: self.windows,
            size: self.size,
            tags: self.tags(),
        }
    }

    #[inline]
    fn tags(&self) -> &[String] {
        self.tags.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// Boxes a non-empty tag list.
#[inline]
#[allow(clippy::box_collection)]
fn box_tags(tags: Vec<String>) -> Option<Box<Vec<String>>> {
    if tags.is_empty() {
        None
    } else {
        Some(Box::new(tags))
    }
}

/// A `get` that missed: the key's hash and its estimate right after the access was recorded.
#[derive(Copy, Clone, Debug)]
struct LastMiss {
    hash: u64,
    freq: Freq,
    /// The sketch's position ([`FrequencySketch::additions`], [`FrequencySketch::epoch`])
    /// then: while it has not moved, no access was recorded since and `freq` is current.
    additions: u64,
    epoch: u32,
}

/// With TinyLFU, a hit skips the relink for entries already in the first
/// `PROMOTE_AFTER.0 / PROMOTE_AFTER.1` of the recency list. Three quarters rather than a half:
/// about half as many relinks (each a second table probe and writes to two neighbouring
/// nodes, which are cache misses), for 0.1 to 0.4 hit-ratio points on the Zipf traces of
/// `BENCHMARKS.md`.
const PROMOTE_AFTER: (usize, usize) = (3, 4);

/// Up to this many entries, the hash table is allocated up front.
const PREALLOCATE_ENTRIES: usize = 1 << 16;

/// The L1 store: bounded by entries and bytes, LRU with optional TinyLFU admission, with
/// freshness and stale windows and purge tags. See the [module docs](self).
pub struct L1Store<K, V, S = DefaultHashBuilder> {
    lru: LruCache<HashedKey<K>, Slot<V>, PassThrough>,
    hasher: S,
    tags: TagIndex<K, S>,
    sketch: Option<FrequencySketch>,
    /// The last `get` that missed, so that the `insert` that follows it (get-or-insert) is
    /// not recorded as a second access, and need not look its estimate up again.
    last_miss: Option<LastMiss>,
    config: StoreConfig,
    bytes: usize,
    /// Bytes reserved for entries still arriving ([`L1Store::reserve`]).
    reserved: usize,
    stats: StoreStats,
    /// Counts moves to the MRU end (inserts and relinks): an entry moved at tick `t` is at
    /// most `tick - t` places from that end.
    tick: u32,
    /// A hit relinks an entry only if it was moved at least this many ticks ago (0: always,
    /// exact LRU).
    promote_after: u32,
}

impl<K: Hash + Eq + Clone, V: Clone> L1Store<K, V> {
    /// An empty store with this configuration and a randomly seeded hasher.
    pub fn new(config: StoreConfig) -> Self {
        L1Store::with_hasher(config, DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone> L1Store<K, V, S> {
    /// An empty store with this configuration and hasher (a fixed-seed hasher makes
    /// admission decisions reproducible).
    pub fn with_hasher(config: StoreConfig, hasher: S) -> Self {
        let cap = NonZeroUsize::new(config.max_entries).unwrap_or(NonZeroUsize::MIN);
        let lru = if cap.get() <= PREALLOCATE_ENTRIES {
            LruCache::with_hasher(cap, PassThrough)
        } else {
            let mut lru = LruCache::unbounded_with_hasher(PassThrough);
            lru.resize(cap);
            lru
        };
        let sketch = match config.admission {
            Admission::TinyLfu => Some(FrequencySketch::new(config.max_entries)),
            Admission::None => None,
        };
        L1Store {
            lru,
            tags: TagIndex::with_hasher(hasher.clone()),
            hasher,
            sketch,
            last_miss: None,
            config,
            bytes: 0,
            reserved: 0,
            stats: StoreStats::default(),
            tick: 0,
            promote_after: match config.admission {
                Admission::TinyLfu => {
                    (config.max_entries / PROMOTE_AFTER.1 * PROMOTE_AFTER.0).min(1 << 30) as u32
                }
                Admission::None => 0,
            },
        }
    }

    /// Looks `key` up at `now`, making it the most recently used entry if found.
    ///
    /// Fresh entries are [`Lookup::Fresh`]; stale ones inside a stale window are
    /// [`Lookup::Stale`]; expired ones are removed (counted in
    /// [`StoreStats::expirations`]) and, like absent ones, are a [`Lookup::Miss`].
    /// The access is recorded for admission either way.
    pub fn get<Q>(&mut self, key: &Q, now: Timestamp) -> Lookup<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let hash = self.hasher.hash_one(key);
        let probe = Probe { hash, key };
        let view: &dyn KeyView<Q> = &probe;
        let Some(slot) = self.lru.peek_mut(view) else {
            self.stats.misses += 1;
            if let Some(sketch) = &mut self.sketch {
                let freq = sketch.record_miss(hash);
                self.last_miss = Some(LastMiss {
                    hash,
                    freq,
                    additions: sketch.additions(),
                    epoch: sketch.epoch(),
                });
            }
            return Lookup::Miss;
        };
        if let Some(sketch) = &mut self.sketch {
            // Counted in the entry, whose line the lookup just loaded: no sketch block.
            slot.freq = slot.freq.recorded(sketch.epoch());
            sketch.record_resident();
        }
        let windows = slot.windows;
        let found = if now < windows.fresh_until {
            self.stats.hits += 1;
            Some(true)
        } else if now < windows.expires_at() {
            self.stats.stale_hits += 1;
            Some(false)
        } else {
            None
        };
        if let Some(fresh) = found {
            let hit = Hit {
                value: slot.value.clone(),
                windows,
                size: slot.size,
            };
            // Relink to the MRU end, unless (approximate mode) it was put there so recently
            // that it is still in the front part of the list.
            let relink = self.tick.wrapping_sub(slot.touched) >= self.promote_after;
            if relink {
                slot.touched = self.tick;
                self.tick = self.tick.wrapping_add(1);
                self.lru.promote(view);
            }
            return if fresh {
                Lookup::Fresh(hit)
            } else {
                Lookup::Stale(hit)
            };
        }
        if let Some((k, slot)) = self.lru.pop_entry(view) {
            self.unlink(&k, &slot);
        }
        self.stats.expirations += 1;
        self.stats.misses += 1;
        if let Some(sketch) = &self.sketch {
            // The access was counted in the entry, which `unlink` merged into the sketch.
            self.last_miss = Some(LastMiss {
                hash,
                freq: sketch.estimate(hash),
                additions: sketch.additions(),
                epoch: sketch.epoch(),
            });
        }
        Lookup::Miss
    }

    /// The resident entry under `key`, expired or not, without recording an access or
    /// changing recency (for inspection, or to revalidate an entry `get` would not serve).
    pub fn peek<Q>(&self, key: &Q) -> Option<EntryRef<'_, V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let hash = self.hasher.hash_one(key);
        let probe = Probe { hash, key };
        let view: &dyn KeyView<Q> = &probe;
        self.lru.peek(view).map(Slot::as_ref)
    }

    /// Whether an entry (expired or not) is resident under `key`; no access is recorded.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.peek(key).is_some()
    }

    /// Stores `value` under `key` at `now`.
    ///
    /// A resident key is always updated in place and becomes most recently used. A new key
    /// is stored if there is room; otherwise least-recently-used entries are evicted for it,
    /// unless admission is on and the key is rarer than one of them
    /// ([`InsertOutcome::Rejected`]). An entry with `size > max_bytes` is never stored and
    /// removes any resident entry under that key ([`InsertOutcome::TooLarge`]).
    pub fn insert(&mut self, key: K, value: V, meta: EntryMeta, now: Timestamp) -> InsertOutcome {
        self.insert_as(key, value, meta, now, true)
    }

    /// Stores `value` under `key` as [`L1Store::insert`] does, but without the admission
    /// check: for an entry that is part of one already admitted (a slice of a large object
    /// whose head is resident), whose own key is new however popular the object is, and
    /// which TinyLFU would otherwise refuse in a full store.
    pub fn insert_admitted(
        &mut self,
        key: K,
        value: V,
        meta: EntryMeta,
        now: Timestamp,
    ) -> InsertOutcome {
        self.insert_as(key, value, meta, now, false)
    }

    fn insert_as(
        &mut self,
        key: K,
        value: V,
        meta: EntryMeta,
        now: Timestamp,
        check_admission: bool,
    ) -> InsertOutcome {
        let hash = self.hasher.hash_one(&key);
        // The get that just missed this key already recorded this access.
        let noted = match self.last_miss {
            Some(miss) if miss.hash == hash => self.last_miss.take(),
            _ => None,
        };
        let EntryMeta {
            windows,
            size,
            tags,
        } = meta;

        if size > self.config.max_bytes || self.config.max_entries == 0 {
            let probe = Probe { hash, key: &key };
            if let Some((k, slot)) = self.lru.pop_entry(&probe as &dyn KeyView<K>) {
                self.unlink(&k, &slot);
                self.stats.purged += 1;
            }
            if let (Some(sketch), None) = (&mut self.sketch, noted) {
                sketch.record_miss(hash);
            }
            self.stats.too_large += 1;
            return InsertOutcome::TooLarge;
        }

        let probe = Probe { hash, key: &key };
        if let Some(slot) = self.lru.get_mut(&probe as &dyn KeyView<K>) {
            if let (Some(sketch), None) = (&mut self.sketch, noted) {
                slot.freq = slot.freq.recorded(sketch.epoch());
                sketch.record_resident();
            }
            let old_size = mem::replace(&mut slot.size, size);
            slot.value = value;
            slot.windows = windows;
            slot.touched = self.tick;
            self.tick = self.tick.wrapping_add(1);
            if slot.tags() != tags.as_slice() {
                let old_tags = mem::replace(&mut slot.tags, box_tags(tags));
                if let Some(old) = old_tags {
                    self.tags.remove(&old, hash, &key);
                }
                if let Some(new) = &slot.tags {
                    self.tags.add(new, &HashedKey { hash, key });
                }
            }
            self.bytes = self.bytes - old_size + size;
            self.stats.updates += 1;
            while self.used() > self.config.max_bytes && self.evict_lru(now) {}
            return InsertOutcome::Replaced;
        }

        // The new key's estimate: noted by the get that missed it if nothing was recorded
        // since, else recorded (or, if the get recorded it, looked up) now.
        let freq = match (&mut self.sketch, noted) {
            (None, _) => Freq::default(),
            (Some(sketch), Some(miss))
                if miss.additions == sketch.additions() && miss.epoch == sketch.epoch() =>
            {
                miss.freq
            }
            (Some(sketch), Some(_)) => sketch.estimate(hash),
            (Some(sketch), None) => sketch.record_miss(hash),
        };
        let room_needed = self.lru.len() >= self.config.max_entries
            || self.used().saturating_add(size) > self.config.max_bytes;
        if room_needed {
            if let (Some(sketch), true) = (&self.sketch, check_admission) {
                if !self.admit(freq.estimate(sketch.epoch()), sketch.epoch(), size, now) {
                    self.stats.rejected += 1;
                    return InsertOutcome::Rejected;
                }
            }
            // Make room for the bytes; the last eviction for the entry count is left to
            // `push`, which then reuses the victim's node instead of allocating.
            while self.used() + size > self.config.max_bytes {
                if self.lru.len() >= self.config.max_entries {
                    let lru_size = self.lru.peek_lru().map_or(0, |(_, s)| s.size);
                    if self.used() - lru_size + size <= self.config.max_bytes {
                        break;
                    }
                }
                if !self.evict_lru(now) {
                    break;
                }
            }
        }

        let hk = HashedKey { hash, key };
        if !tags.is_empty() {
            self.tags.add(&tags, &hk);
        }
        let tags = box_tags(tags);
        self.bytes += size;
        let slot = Slot {
            value,
            windows,
            size,
            tags,
            touched: self.tick,
            freq,
        };
        self.tick = self.tick.wrapping_add(1);
        if let Some((k, victim)) = self.lru.push(hk, slot) {
            // The key was not resident, so this is the LRU entry evicted for the count bound.
            self.account_eviction(&k, &victim, now);
        }
        self.stats.inserts += 1;
        InsertOutcome::Inserted
    }

    /// Removes the entry under `key`; returns whether there was one.
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let hash = self.hasher.hash_one(key);
        let probe = Probe { hash, key };
        match self.lru.pop_entry(&probe as &dyn KeyView<Q>) {
            Some((k, slot)) => {
                self.unlink(&k, &slot);
                self.stats.purged += 1;
                true
            }
            None => false,
        }
    }

    /// Removes every entry tagged `tag`; returns how many.
    pub fn purge_tag(&mut self, tag: &str) -> usize {
        let Some(keys) = self.tags.take(tag) else {
            return 0;
        };
        let mut n = 0;
        for hk in keys {
            if let Some((k, slot)) = self.lru.pop_entry(&hk) {
                self.unlink(&k, &slot);
                n += 1;
            }
        }
        self.stats.purged += n as u64;
        n
    }

    /// Marks the entry under `key` stale at `now` ([`Windows::made_stale_at`]: freshness
    /// ends now, the stale windows keep their lengths from now), without changing recency.
    /// Returns whether it is resident.
    ///
    /// This is a "soft purge": the entry may still be served stale while revalidating, or on
    /// origin error, within its windows (RFC 5861); with no stale window it is simply
    /// expired.
    pub fn soft_purge<Q>(&mut self, key: &Q, now: Timestamp) -> bool
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let hash = self.hasher.hash_one(key);
        let probe = Probe { hash, key };
        match self.lru.peek_mut(&probe as &dyn KeyView<Q>) {
            Some(slot) => {
                slot.windows = slot.windows.made_stale_at(now);
                self.stats.soft_purged += 1;
                true
            }
            None => false,
        }
    }

    /// Soft-purges (see [`L1Store::soft_purge`]) every entry tagged `tag`; returns how many.
    pub fn soft_purge_tag(&mut self, tag: &str, now: Timestamp) -> usize {
        let Some(keys) = self.tags.get(tag) else {
            return 0;
        };
        let mut n = 0;
        for hk in keys {
            if let Some(slot) = self.lru.peek_mut(hk) {
                slot.windows = slot.windows.made_stale_at(now);
                n += 1;
            }
        }
        self.stats.soft_purged += n as u64;
        n
    }

    /// Soft-purges every entry; returns how many.
    pub fn soft_purge_all(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        for (_, slot) in self.lru.iter_mut() {
            slot.windows = slot.windows.made_stale_at(now);
            n += 1;
        }
        self.stats.soft_purged += n as u64;
        n
    }

    /// Removes every entry past all its windows at `now`; returns how many. O(entries).
    pub fn remove_expired(&mut self, now: Timestamp) -> usize {
        let expired: Vec<HashedKey<K>> = self
            .lru
            .iter()
            .filter(|(_, slot)| slot.windows.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for hk in &expired {
            if let Some((k, slot)) = self.lru.pop_entry(hk) {
                self.unlink(&k, &slot);
            }
        }
        self.stats.expirations += expired.len() as u64;
        expired.len()
    }

    /// Removes every entry (counted as purged). Statistics and admission history are kept.
    pub fn clear(&mut self) {
        self.stats.purged += self.lru.len() as u64;
        if let Some(sketch) = &mut self.sketch {
            for (k, slot) in self.lru.iter() {
                sketch.merge(k.hash, slot.freq);
            }
        }
        self.lru.clear();
        self.tags.clear();
        self.bytes = 0;
        self.last_miss = None;
    }

    /// Number of resident entries.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether no entry is resident.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// Sum of the resident entries' declared sizes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of distinct purge tags carried by resident entries.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// The configuration the store was made with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Counters and current size.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.lru.len(),
            bytes: self.bytes,
            ..self.stats
        }
    }

    /// Resident entries, most recently used first, without recording accesses.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, EntryRef<'_, V>)> + '_ {
        self.lru.iter().map(|(k, slot)| (&k.key, slot.as_ref()))
    }

    /// Whether TinyLFU would admit a new key with this estimate (`candidate`, on the sketch's
    /// scale at `epoch`) and size now: it must exceed the frequency of each live entry that
    /// would have to be evicted for it.
    /// Expired victims never block admission.
    ///
    /// A victim that wins stays where it is: moving it away from the eviction end (a
    /// frequency-aware second chance) was measured at +0.3 to +0.5 hit-ratio points on the
    /// Zipf traces but cost a hash probe and a relink on every rejection, 1.3x to 1.7x the
    /// time per operation when most misses are rejected (`BENCHMARKS.md`).
    fn admit(&self, candidate: u8, epoch: u32, size: usize, now: Timestamp) -> bool {
        let mut entries_needed = (self.lru.len() + 1).saturating_sub(self.config.max_entries);
        let mut bytes_needed = (self.used() + size).saturating_sub(self.config.max_bytes);
        for (_, slot) in self.lru.iter().rev() {
            if entries_needed == 0 && bytes_needed == 0 {
                break;
            }
            if !slot.windows.is_expired(now) && slot.freq.estimate(epoch) >= candidate {
                return false;
            }
            entries_needed = entries_needed.saturating_sub(1);
            bytes_needed = bytes_needed.saturating_sub(slot.size);
        }
        true
    }

    /// Reserves `bytes` of the byte bound for the entry of `key` while it arrives (a body
    /// received as it is served), evicting least-recently-used entries for them as
    /// [`L1Store::insert`] would for a new key: with TinyLFU, only if `key` has been
    /// requested more often than every entry it would evict (a resident key's new version
    /// always is, as its insert would be). Returns whether the bytes
    /// were reserved; when not (they could never fit, or admission refused), nothing
    /// changed, and the entry should not be kept. The access was recorded by the `get`
    /// that missed `key`; this records none.
    pub fn reserve<Q>(&mut self, key: &Q, bytes: usize, now: Timestamp) -> bool
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        if self.reserved.saturating_add(bytes) > self.config.max_bytes {
            return false;
        }
        if self.used().saturating_add(bytes) > self.config.max_bytes {
            // A resident key's new version is not subject to admission, as its insert is
            // not; its hits are counted in its entry, not in the sketch.
            let resident = self.contains(key);
            if let (Some(sketch), false) = (&self.sketch, resident) {
                let candidate = sketch.estimate(self.hasher.hash_one(key));
                if !self.admit(
                    candidate.estimate(sketch.epoch()),
                    sketch.epoch(),
                    bytes,
                    now,
                ) {
                    self.stats.rejected += 1;
                    return false;
                }
            }
            while self.used() + bytes > self.config.max_bytes && self.evict_lru(now) {}
        }
        self.reserved += bytes;
        true
    }

    /// Gives back `bytes` reserved with [`L1Store::reserve`].
    pub fn release(&mut self, bytes: usize) {
        self.reserved = self.reserved.saturating_sub(bytes);
    }

    /// Bytes reserved for entries still arriving.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Resident and reserved bytes: what counts against `max_bytes`.
    #[inline]
    fn used(&self) -> usize {
        self.bytes + self.reserved
    }

    /// Evicts the least recently used entry; returns false if the store is empty.
    fn evict_lru(&mut self, now: Timestamp) -> bool {
        match self.lru.pop_lru() {
            Some((k, slot)) => {
                self.account_eviction(&k, &slot, now);
                true
            }
            None => false,
        }
    }

    /// Bookkeeping for an entry leaving to make room: expired ones count as expirations.
    fn account_eviction(&mut self, k: &HashedKey<K>, slot: &Slot<V>, now: Timestamp) {
        self.unlink(k, slot);
        if slot.windows.is_expired(now) {
            self.stats.expirations += 1;
        } else {
            self.stats.evictions += 1;
        }
    }

    /// Byte and tag bookkeeping for an entry that left the recency list.
    #[inline]
    fn unlink(&mut self, k: &HashedKey<K>, slot: &Slot<V>) {
        self.bytes -= slot.size;
        if let Some(sketch) = &mut self.sketch {
            sketch.merge(k.hash, slot.freq);
        }
        if let Some(tags) = &slot.tags {
            self.tags.remove(tags, k.hash, &k.key);
        }
    }
}

impl<K: Hash + Eq, V, S> fmt::Debug for L1Store<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L1Store")
            .field("config", &self.config)
            .field("entries", &self.lru.len())
            .field("bytes", &self.bytes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
