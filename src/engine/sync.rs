//! Coordination between instances that share the Redis tier: the fetch lease, purge
//! propagation and the purge-all epoch.
//!
//! - **Lease** (`{prefix}lease:{cache key}`, `SET NX PX`): on a miss, the instance that wins
//!   the lease fetches from the origin; the others poll the shared tier for the object for
//!   up to the lease time, then fetch themselves if it has not appeared.
//! - **Purge log** (`{prefix}purge:seq` counter, `{prefix}purge:{n}` entries as JSON, kept
//!   ten minutes): every purge is appended; every instance applies the entries it has not
//!   seen to its L1, at most every `l2.purge_poll_ms` (natively on a timer, on Workers on
//!   the next request), so a purge reaches every instance within that interval.
//! - **Epoch** (`{prefix}epoch`): part of every object key; a purge-all moves it to a value
//!   never used before (the larger of the clock in ms and the old value + 1), which makes
//!   every stored object unreachable at once (they expire by their TTL).
//!
//! - **Marker** (`{prefix}marker`): a value set once; when it changes or disappears the
//!   shared tier has lost its data (restart without persistence, failover, `FLUSHALL`), so
//!   purge sequence numbers and epochs start over: every instance then clears its L1 and
//!   re-reads both.
//!
//! In the shared tier a soft purge deletes: instances' L1 copies are what stays servable
//! stale while refetched.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::time::Timestamp;

use super::host::{Lock, Runtime, SharedTier};
use super::{Engine, Host};

/// How long purge-log entries live, ms: an instance further behind than that clears its L1.
const PURGE_LOG_TTL_MS: u64 = 600_000;
/// The marker outlives any object (a year); it is only ever replaced by data loss.
const MARKER_TTL_MS: u64 = 365 * 24 * 3_600_000;
/// At most this many log entries are read in one sync; more, and L1 is cleared instead.
const MAX_PURGES_PER_SYNC: i64 = 500;

/// What an instance knows of the shared purge state.
#[derive(Clone, Debug, Default)]
pub struct SyncState {
    /// The purge-all epoch in use, once read.
    pub epoch: Option<i64>,
    /// The last purge-log sequence number applied, once read.
    pub seen: Option<i64>,
    /// When the log was last checked.
    pub last_sync: Option<Timestamp>,
    /// The shared tier's marker value as first seen: if it changes or vanishes, the tier
    /// lost its data (restart without persistence, failover, flush).
    pub marker: Option<u64>,
    /// Cache keys whose fetch lease this instance took for a request that was dropped
    /// before it could release it (its client went away): released at the next sync,
    /// so other instances need not wait out `l2.lease_ms`.
    pub orphaned_leases: Vec<String>,
}

/// The most orphaned leases kept for release; beyond, they expire on their own.
const MAX_ORPHANED_LEASES: usize = 1024;

/// The most orphaned leases one sync releases.
const ORPHANS_PER_SYNC: usize = 16;

impl SyncState {
    /// Notes the lease of `cache_key` as left behind by a dropped request.
    pub fn orphan_lease(&mut self, cache_key: &str) {
        if self.orphaned_leases.len() < MAX_ORPHANED_LEASES {
            self.orphaned_leases.push(String::from(cache_key));
        }
    }
}

/// What a purge covers, by cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One cache key and its Vary variants.
    Key(String),
    /// Every response with this tag.
    Tag(String),
    /// Everything.
    All,
}

/// One purge-log entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PurgeRecord {
    /// A cache key, a tag, or neither for everything.
    #[serde(default)]
    pub key: Option<String>,
    /// A tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Whether it was a soft purge.
    #[serde(default)]
    pub soft: bool,
    /// The epoch after the purge (changes only for purge-all).
    pub epoch: i64,
}

impl<H: Host> Engine<H> {
    pub(crate) fn sync_key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.config.l2.key_prefix)
    }

    /// The purge-all epoch, read once from the shared tier (absent = 0). `None` when the
    /// tier is absent or failing.
    pub(crate) async fn l2_epoch(&self) -> Option<i64> {
        if let Some(epoch) = self.state.with(|s| s.sync.epoch) {
            return Some(epoch);
        }
        let tier = self.l2_tier()?;
        let key = self.sync_key("epoch");
        let raw = self.l2_guarded(tier.get(&key)).await?;
        let epoch = raw
            .and_then(|b| core::str::from_utf8(&b).ok()?.parse::<i64>().ok())
            .unwrap_or(0);
        self.state.with(|s| {
            s.sync.epoch.get_or_insert(epoch);
        });
        Some(epoch)
    }

    /// Whether a purge-log check is due at `now`.
    pub(crate) fn purge_sync_due(&self, now: Timestamp) -> bool {
        self.shared.is_some()
            && self.state.with(|s| {
                !s.sync.orphaned_leases.is_empty()
                    || s.sync
                        .last_sync
                        .is_none_or(|t| now.millis_since(t) >= self.config.l2.purge_poll_ms)
            })
    }

    /// Applies the purges other instances recorded since the last check, and releases the
    /// leases dropped requests left behind.
    pub async fn sync_purges(&self) {
        let now = self.runtime.now();
        // A few orphaned leases per sync, so a burst of departed clients cannot hold up the
        // purge log behind one release after another; the rest wait for the next sync.
        let orphaned = self.state.with(|s| {
            s.sync.last_sync = Some(now);
            let n = s.sync.orphaned_leases.len().min(ORPHANS_PER_SYNC);
            s.sync.orphaned_leases.drain(..n).collect::<Vec<_>>()
        });
        for cache_key in &orphaned {
            self.release_lease(cache_key).await;
        }
        let Some(tier) = self.l2_tier() else {
            return;
        };
        let keys = [self.sync_key("purge:seq"), self.sync_key("marker")];
        let Some(values) = self.l2_guarded(tier.get_many(&keys)).await else {
            return;
        };
        let number = |v: Option<&Option<Vec<u8>>>| -> Option<u64> {
            core::str::from_utf8(v?.as_deref()?).ok()?.parse().ok()
        };
        let seq = number(values.first()).map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let marker = number(values.get(1));
        let known_marker = self.state.with(|s| s.sync.marker);
        match (known_marker, marker) {
            (Some(known), Some(current)) if known == current => {}
            (None, Some(current)) => self.state.with(|s| s.sync.marker = Some(current)),
            (None, None) => {
                // First instance to look: mark the tier (the first writer wins).
                let mine = now.as_millis().max(1);
                let value = format!("{mine}");
                let key = &keys[1];
                if self
                    .l2_guarded(tier.set_if_absent(key, value.as_bytes(), MARKER_TTL_MS))
                    .await
                    == Some(true)
                {
                    self.state.with(|s| s.sync.marker = Some(mine));
                }
                // else: another instance marked it; adopt it on the next sync.
            }
            (Some(_), _) => {
                // The tier lost its data: sequence numbers and epochs start over.
                // Every purge-log entry from now on is new to us: start reading at 1.
                self.state.with(|s| {
                    s.clear_l1();
                    s.sync = SyncState {
                        last_sync: Some(now),
                        seen: Some(0),
                        ..SyncState::default()
                    };
                    // Colo entries are keyed by the old marker: unreachable now.
                    s.purge_history.reset(0);
                });
                self.count(|s| s.l2_resets += 1);
                return;
            }
        }
        let Some(mut seen) = self.state.with(|s| s.sync.seen) else {
            // First look: L1 holds nothing older than now, so there is nothing to apply.
            // Colo entries stamped before now are checked against the log when read.
            self.state.with(|s| {
                s.sync.seen = Some(seq);
                s.purge_history.reset(seq);
            });
            return;
        };
        if seq < seen {
            // The counter went backwards: the tier was reset without our marker noticing.
            // Everything in the log now is new to us.
            self.state.with(|s| {
                s.clear_l1();
                s.sync.seen = Some(0);
                s.sync.epoch = None;
                // Sequence numbers are being reused: colo stamps mean nothing any more.
                s.purge_history.block();
            });
            self.count(|s| s.l2_resets += 1);
            seen = 0;
        }
        if seq <= seen {
            return;
        }
        if seq - seen > MAX_PURGES_PER_SYNC {
            self.state.with(|s| {
                s.clear_l1();
                s.sync.seen = Some(seq);
                s.sync.epoch = None;
                s.purge_history.reset(seq);
            });
            return;
        }
        let Some(entries) = self.read_purge_log(seen, seq).await else {
            return;
        };
        let now = self.runtime.now();
        let mut complete = true;
        for (n, record) in entries {
            match record {
                Some(record) => {
                    self.apply_locally(&record, now);
                    self.remember_purge(n, record);
                }
                // Expired or unreadable: be safe and drop everything.
                None => {
                    self.state.with(|s| s.clear_l1());
                    complete = false;
                }
            }
        }
        if !complete {
            self.state.with(|s| s.purge_history.reset(seq));
        }
        self.state.with(|s| {
            if s.sync.seen.is_none_or(|v| v < seq) {
                s.sync.seen = Some(seq);
            }
        });
    }

    /// Reads the purge-log entries `(after, through]` in one round trip: each sequence
    /// number with its record, `None` where it expired or cannot be read. `None` when the
    /// shared tier is absent or failing.
    pub(crate) async fn read_purge_log(
        &self,
        after: i64,
        through: i64,
    ) -> Option<Vec<(i64, Option<PurgeRecord>)>> {
        let tier = self.l2_tier()?;
        let keys: Vec<String> = (after + 1..=through)
            .map(|n| self.sync_key(&format!("purge:{n}")))
            .collect();
        let values = self.l2_guarded(tier.get_many(&keys)).await?;
        Some(
            (after + 1..=through)
                .zip(values)
                .map(|(n, v)| (n, v.and_then(|b| serde_json::from_slice(&b).ok())))
                .collect(),
        )
    }

    /// Applies one purge record to this instance's L1.
    fn apply_locally(&self, record: &PurgeRecord, now: Timestamp) {
        match (&record.key, &record.tag) {
            (Some(key), _) => {
                self.l1_purge_key(key, record.soft, now);
            }
            (None, Some(tag)) => {
                self.l1_purge_tag(tag, record.soft, now);
            }
            (None, None) => {
                self.l1_purge_all(record.soft, now);
                // Re-read the epoch from the tier, so concurrent purge-alls converge.
                self.state.with(|s| s.sync.epoch = None);
            }
        }
    }

    /// Keeps purge record `seq` for checking colo entries, when there is a colo tier.
    fn remember_purge(&self, seq: i64, record: PurgeRecord) {
        if self.colo().is_some() {
            self.state.with(|s| s.purge_history.record(seq, record));
        }
    }

    /// Records a purge in the shared tier: deletes the affected objects (a purge-all moves
    /// to a new epoch) and appends to the purge log for the other instances. Returns
    /// whether it was published.
    pub(crate) async fn publish_purge(&self, scope: Scope, soft: bool) -> bool {
        // Without the shared tier, the colo tier learns of the purge here only (admin purges
        // and write-through invalidations alike): this isolate stops using what it covers.
        self.colo_remember_purge(&scope, soft);
        let published = self.try_publish_purge(scope, soft).await;
        if !published && self.colo().is_some() {
            // The colo copies this purge covers stay there, and no isolate will learn of
            // it: this one stops reading the colo tier (see `colo`).
            self.state.with(|s| s.purge_history.block());
        }
        published
    }

    async fn try_publish_purge(&self, scope: Scope, soft: bool) -> bool {
        let Some(tier) = self.l2_tier() else {
            return false;
        };
        let Some(mut epoch) = self.l2_epoch().await else {
            return false;
        };
        let (key, tag) = match scope {
            Scope::Key(key) => {
                self.l2_delete(core::slice::from_ref(&key)).await;
                // Its Vary variants, listed under the URL's set when they were written.
                let set = self.l2_tag_key(epoch, &super::read::url_tag(&key));
                if let Some(members) = self.l2_guarded(tier.take_set(&set)).await {
                    if !members.is_empty() {
                        self.l2_guarded(tier.delete(&members)).await;
                    }
                }
                (Some(key), None)
            }
            Scope::Tag(tag) => {
                let set = self.l2_tag_key(epoch, &tag);
                if let Some(members) = self.l2_guarded(tier.take_set(&set)).await {
                    if !members.is_empty() {
                        self.l2_guarded(tier.delete(&members)).await;
                    }
                }
                (None, Some(tag))
            }
            Scope::All => {
                // A new epoch is never one used before, even if the tier lost its counter
                // while some instance still writes under an old epoch: take the larger of
                // the clock and what anyone used.
                let key = self.sync_key("epoch");
                let stored = self
                    .l2_guarded(tier.get(&key))
                    .await
                    .flatten()
                    .and_then(|b| core::str::from_utf8(&b).ok()?.parse::<i64>().ok())
                    .unwrap_or(0);
                let clock = i64::try_from(self.runtime.now().as_millis()).unwrap_or(i64::MAX);
                let next = clock
                    .max(stored.saturating_add(1))
                    .max(epoch.saturating_add(1));
                let value = format!("{next}");
                if self
                    .l2_guarded(tier.set(&key, value.as_bytes(), MARKER_TTL_MS))
                    .await
                    .is_some()
                {
                    epoch = next;
                    self.state.with(|s| s.sync.epoch = Some(next));
                }
                (None, None)
            }
        };
        let record = PurgeRecord {
            key,
            tag,
            soft,
            epoch,
        };
        let seq_key = self.sync_key("purge:seq");
        let Some(seq) = self.l2_guarded(tier.increment(&seq_key)).await else {
            return false;
        };
        let body = serde_json::to_vec(&record).unwrap_or_default();
        let entry_key = self.sync_key(&format!("purge:{seq}"));
        let logged = self
            .l2_guarded(tier.set(&entry_key, &body, PURGE_LOG_TTL_MS))
            .await
            .is_some();
        self.remember_purge(seq, record);
        // Our own purge is already applied; skip it when it is the next one we would read.
        self.state.with(|s| {
            if s.sync.seen == Some(seq - 1) {
                s.sync.seen = Some(seq);
            }
        });
        logged
    }

    /// Tries to take the fetch lease for `cache_key`. `true` when this instance should
    /// fetch (lease won, or the shared tier is absent or failing).
    pub(crate) async fn acquire_lease(&self, cache_key: &str) -> bool {
        let Some(tier) = self.l2_tier() else {
            return true;
        };
        let key = self.sync_key(&format!("lease:{cache_key}"));
        let token = self.lease_token.as_bytes();
        let acquired = match self
            .l2_guarded(tier.set_if_absent(&key, token, self.config.l2.lease_ms))
            .await
        {
            Some(true) | None => true,
            // Held with this instance's own token: its holder here is gone (a request whose
            // client left mid-fetch drops it without a release), since this instance lets
            // one request at a time lead a key. Take it over instead of waiting on it.
            Some(false) => matches!(
                self.l2_guarded(tier.get(&key)).await,
                Some(Some(held)) if held == token
            ),
        };
        if acquired {
            // Held again, for a live fetch: the next sync must not release it as orphaned.
            self.state.with(|s| {
                s.sync
                    .orphaned_leases
                    .retain(|orphaned| orphaned != cache_key)
            });
        }
        acquired
    }

    /// Whether some instance still holds the fetch lease for `cache_key`; `false` when the
    /// shared tier cannot say (absent or failing: nobody should wait on it then).
    pub(crate) async fn lease_held(&self, cache_key: &str) -> bool {
        let Some(tier) = self.l2_tier() else {
            return false;
        };
        let key = self.sync_key(&format!("lease:{cache_key}"));
        matches!(self.l2_guarded(tier.get(&key)).await, Some(Some(_)))
    }

    /// Releases the fetch lease for `cache_key` once the object is in the shared tier, if
    /// this instance still holds it (one that outlived `l2.lease_ms` may be another's now).
    pub(crate) async fn release_lease(&self, cache_key: &str) {
        let key = self.sync_key(&format!("lease:{cache_key}"));
        self.release_own_lease(&key).await;
    }

    /// Deletes the lease `key` if it holds this instance's token (see
    /// [`SharedTier::delete_if_equals`]); left to expire if that cannot be done. Best
    /// effort, outside the circuit breaker: a server without Lua scripting (`EVAL`) only
    /// makes leases last their whole time, it must not switch the shared tier off.
    pub(crate) async fn release_own_lease(&self, key: &str) {
        self.release_lease_holding(key, &self.lease_token).await;
    }

    /// Deletes the lease `key` if it still holds `token` (see [`Self::release_own_lease`]).
    pub(crate) async fn release_lease_holding(&self, key: &str, token: &str) {
        if let Some(tier) = self.l2_tier() {
            let release = tier.delete_if_equals(key, token.as_bytes());
            let _ =
                super::l2::with_timeout(&self.runtime, self.config.l2.timeout_ms, release).await;
        }
    }
}
