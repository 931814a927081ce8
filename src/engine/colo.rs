//! The optional colo tier: a cache local to one data centre (on Workers, the Cache API's
//! `caches.default`), between L1 and the shared tier. Off by default (`colo.enabled`).
//!
//! The colo cache cannot be purged from another data centre, so the engine never trusts an
//! entry there without checking it against the shared tier's purge log ([`super::sync`]):
//!
//! - the key carries the shared tier's marker and purge-all epoch
//!   (`{prefix}m{marker}e{epoch}:obj:{cache key}`), so a purge-all or a shared tier that lost
//!   its data makes every older entry unreachable;
//! - the value is stamped with the purge-log sequence number its writer had applied
//!   ([`stamp`]); a reader uses it only once it has applied every purge after that number
//!   and none of them covers the entry ([`PurgeHistory::verdict`]). A soft purge that
//!   covers it makes it stale (served under stale-while-revalidate while refetched), a hard
//!   one a miss.
//!
//! So a purge reaches colo entries exactly as fast as it reaches other instances' L1
//! (`l2.purge_poll_ms`). Without a known marker and purge position (the shared tier absent
//! or down since the isolate started) the colo tier is skipped; an isolate that carried out
//! a purge it could not publish stops using the colo tier, since other isolates' copies
//! never learn of it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::{decode, CachedResponse, DecodeLimits};
use crate::headers::Headers;

use super::host::{ColoCache, Lock};
use super::l2::with_timeout;
use super::sync::PurgeRecord;
use super::{Engine, Host};

/// The first bytes of a colo value: "ECC" and the stamp format version.
const STAMP_MAGIC: [u8; 4] = *b"ECC\x01";
/// Magic plus the big-endian purge sequence number.
const STAMP_LEN: usize = STAMP_MAGIC.len() + 8;
/// Most purge records an isolate keeps for checking colo entries (older entries than the
/// kept records reach are checked against the shared tier's log, or missed).
const MAX_HISTORY: usize = 2_000;
/// Most purge-log entries fetched at once to check one old colo entry.
const MAX_BACKFILL: i64 = 500;

/// Prefixes an encoded entry with the purge sequence number its writer had applied.
pub fn stamp(seq: i64, encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAMP_LEN + encoded.len());
    out.extend_from_slice(&STAMP_MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(encoded);
    out
}

/// Splits a stamped value into its sequence number and encoded entry; `None` when it is
/// not a stamped value (corrupt or foreign).
pub fn unstamp(value: &[u8]) -> Option<(i64, &[u8])> {
    let (head, rest) = value.split_at_checked(STAMP_LEN)?;
    if head[..STAMP_MAGIC.len()] != STAMP_MAGIC {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[STAMP_MAGIC.len()..]);
    Some((i64::from_be_bytes(seq), rest))
}

/// What the purges an isolate knows of say about a colo entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No purge since it was written covers it.
    Usable,
    /// A soft purge covers it: usable only as stale (RFC 5861, like a soft-purged L1 entry).
    SoftPurged,
    /// A purge covers it, or it cannot be checked: a miss.
    Purged,
    /// Purges from `after + 1` to `through` are not known here; fetch them and ask again.
    Unknown {
        /// The entry's stamp.
        after: i64,
        /// The first purge this isolate's history is complete from, less one.
        through: i64,
    },
}

/// The purge records an isolate has applied, by sequence number, for checking colo entries.
/// Complete for every sequence number in `(floor, seen]` (`seen` being the sync state's).
#[derive(Clone, Debug, Default)]
pub struct PurgeHistory {
    records: BTreeMap<i64, PurgeRecord>,
    /// Records after this number are all present (up to the applied position).
    floor: Option<i64>,
    /// Set when this isolate purged something it could not publish: its colo tier is off.
    blocked: bool,
}

impl PurgeHistory {
    /// Forgets every record: nothing at or before `floor` can be checked any more.
    pub fn reset(&mut self, floor: i64) {
        self.records.clear();
        self.floor = Some(floor);
    }

    /// Keeps record `seq` (applied, or published by this isolate).
    pub fn record(&mut self, seq: i64, record: PurgeRecord) {
        self.records.insert(seq, record);
        while self.records.len() > MAX_HISTORY {
            if let Some((oldest, _)) = self.records.pop_first() {
                self.floor = Some(self.floor.map_or(oldest, |f| f.max(oldest)));
            }
        }
    }

    /// Adds records fetched from the shared tier's log for `(after, through]`; the history
    /// is then complete from `after`.
    pub fn backfill(&mut self, after: i64, through: i64, records: Vec<(i64, PurgeRecord)>) {
        if self.floor != Some(through) {
            return;
        }
        for (seq, record) in records {
            self.records.insert(seq, record);
        }
        self.floor = Some(after);
    }

    /// Stops the colo tier in this isolate (see the module documentation).
    pub fn block(&mut self) {
        self.blocked = true;
    }

    /// Whether the colo tier may be used at all.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Checks an entry stamped `stamp`, stored for primary cache key `primary` with purge
    /// tags `tags`, against every purge after its stamp up to `seen` (RFC 9111 §4.4 asks a
    /// cache to stop using invalidated responses; a purge is the operator's invalidation).
    pub fn verdict(&self, stamp: i64, seen: i64, primary: &str, tags: &[String]) -> Verdict {
        let Some(floor) = self.floor else {
            return Verdict::Purged;
        };
        if self.blocked || stamp > seen {
            // Written by an isolate further along the log than this one: purges between
            // are not known here yet.
            return Verdict::Purged;
        }
        if stamp < floor {
            return Verdict::Unknown {
                after: stamp,
                through: floor,
            };
        }
        let mut verdict = Verdict::Usable;
        if stamp == seen {
            return verdict;
        }
        for record in self.records.range(stamp + 1..=seen).map(|(_, r)| r) {
            let covers = match (&record.key, &record.tag) {
                (Some(key), _) => key == primary,
                (None, Some(tag)) => tags.iter().any(|t| t == tag),
                (None, None) => true,
            };
            if covers {
                if !record.soft {
                    return Verdict::Purged;
                }
                verdict = Verdict::SoftPurged;
            }
        }
        verdict
    }
}

/// Where the isolate stands in the shared purge state, when it knows.
#[derive(Clone, Copy)]
struct Position {
    marker: u64,
    epoch: i64,
    seen: i64,
}

impl<H: Host> Engine<H> {
    /// The colo cache, when configured and enabled.
    pub(crate) fn colo(&self) -> Option<&H::Colo> {
        self.colo
            .as_ref()
            .filter(|_| self.config.colo.enabled && self.shared.is_some())
    }

    fn colo_key(&self, position: Position, cache_key: &str) -> String {
        format!(
            "{}m{}e{}:obj:{cache_key}",
            self.config.l2.key_prefix, position.marker, position.epoch
        )
    }

    /// The isolate's purge position, synchronising with the shared tier first when it has
    /// never done so (an isolate's first miss). `None`: skip the colo tier.
    async fn colo_position(&self, sync_if_unknown: bool) -> Option<Position> {
        let known = |s: &super::EngineState| {
            if s.purge_history.is_blocked() {
                return None;
            }
            Some((s.sync.marker?, s.sync.seen?))
        };
        let mut found = self.state.with(|s| known(s));
        if found.is_none() && sync_if_unknown && self.state.with(|s| s.sync.seen.is_none()) {
            self.sync_purges().await;
            found = self.state.with(|s| known(s));
        }
        let (marker, seen) = found?;
        let epoch = self.l2_epoch().await?;
        Some(Position {
            marker,
            epoch,
            seen,
        })
    }

    /// Looks `key` up in the colo tier, following `Vary` to this request's variant like
    /// L1 and L2 do (RFC 9111 §4.1).
    pub(crate) async fn colo_find(
        &self,
        key: &str,
        request_headers: &Headers,
    ) -> Option<Arc<CachedResponse>> {
        self.colo()?;
        let position = self.colo_position(true).await?;
        super::read::follow_vary(key, request_headers, |k| async move {
            self.colo_read(position, key, &k).await
        })
        .await
    }

    /// Reads, decodes and checks one colo entry. Corrupt entries are counted misses.
    async fn colo_read(
        &self,
        position: Position,
        primary: &str,
        cache_key: &str,
    ) -> Option<Arc<CachedResponse>> {
        let colo = self.colo()?;
        let key = self.colo_key(position, cache_key);
        let timeout = self.config.colo.timeout_ms;
        let bytes = match with_timeout(&self.runtime, timeout, colo.get(&key)).await {
            Some(Ok(found)) => found?,
            Some(Err(_)) | None => {
                self.count(|s| s.colo_errors += 1);
                return None;
            }
        };
        let limits = DecodeLimits {
            max_body_bytes: self.config.colo.max_object_bytes,
            ..DecodeLimits::default()
        };
        let Some((seq, mut entry)) =
            unstamp(&bytes).and_then(|(seq, rest)| Some((seq, decode(rest, &limits).ok()?)))
        else {
            self.count(|s| s.colo_corrupt += 1);
            return None;
        };
        let mut verdict = self.colo_verdict(seq, position.seen, primary, &entry.tags);
        if let Verdict::Unknown { after, through } = verdict {
            self.colo_backfill(after, through).await;
            verdict = self.colo_verdict(seq, position.seen, primary, &entry.tags);
        }
        match verdict {
            Verdict::Usable => {}
            Verdict::SoftPurged => entry.invalidated = true,
            Verdict::Purged | Verdict::Unknown { .. } => return None,
        }
        Some(self.ready_to_keep(entry))
    }

    fn colo_verdict(&self, seq: i64, seen: i64, primary: &str, tags: &[String]) -> Verdict {
        self.state
            .with(|s| s.purge_history.verdict(seq, seen, primary, tags))
    }

    /// Fetches the purge-log entries `(after, through]` so an entry stamped `after` can be
    /// checked. Any entry missing (expired after ten minutes) leaves it unknown.
    async fn colo_backfill(&self, after: i64, through: i64) {
        if through.saturating_sub(after) > MAX_BACKFILL {
            return;
        }
        let Some(entries) = self.read_purge_log(after, through).await else {
            return;
        };
        let Some(records) = entries
            .into_iter()
            .map(|(seq, record)| Some((seq, record?)))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        self.state
            .with(|s| s.purge_history.backfill(after, through, records));
    }

    /// Writes `stored` to the colo tier under `cache_key`, stamped with this isolate's
    /// purge position, for as long as any window of it lasts. Bodies above
    /// `colo.max_object_bytes` are not written.
    pub(crate) async fn colo_write(&self, cache_key: &str, stored: &CachedResponse) {
        let Some(colo) = self.colo() else {
            return;
        };
        // The head of an object in slices stays out: an instance of an older version in the
        // same data centre would read it as a complete, empty response.
        let sliced = super::read::Slicing::of(stored).is_some();
        if stored.body.len() > self.config.colo.max_object_bytes || sliced {
            return;
        }
        let Some((ttl_ms, encoded)) = self.encode_for_tier(stored) else {
            return;
        };
        let Some(position) = self.colo_position(false).await else {
            return;
        };
        let value = stamp(position.seen, &encoded);
        let key = self.colo_key(position, cache_key);
        let timeout = self.config.colo.timeout_ms;
        match with_timeout(&self.runtime, timeout, colo.put(&key, &value, ttl_ms)).await {
            Some(Ok(())) => self.count(|s| s.colo_stored += 1),
            Some(Err(_)) | None => self.count(|s| s.colo_errors += 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn key(key: &str, soft: bool) -> PurgeRecord {
        PurgeRecord {
            key: Some(key.to_string()),
            tag: None,
            soft,
            epoch: 0,
        }
    }

    fn tag(tag: &str, soft: bool) -> PurgeRecord {
        PurgeRecord {
            key: None,
            tag: Some(tag.to_string()),
            soft,
            epoch: 0,
        }
    }

    fn history(floor: i64, records: Vec<(i64, PurgeRecord)>) -> PurgeHistory {
        let mut h = PurgeHistory::default();
        h.reset(floor);
        for (seq, r) in records {
            h.record(seq, r);
        }
        h
    }

    #[test]
    fn stamp_round_trips_and_rejects_foreign_bytes() {
        let value = stamp(42, b"entry");
        assert_eq!(unstamp(&value), Some((42, &b"entry"[..])));
        assert_eq!(unstamp(&stamp(-1, b"")), Some((-1, &b""[..])));
        assert_eq!(unstamp(b"ECC\x01short"), None, "too short for the number");
        assert_eq!(
            unstamp(b"ECC\x02\0\0\0\0\0\0\0\x01x"),
            None,
            "other version"
        );
        assert_eq!(unstamp(b""), None);
    }

    #[test]
    fn an_entry_no_later_purge_covers_is_usable() {
        let tags = vec!["a".to_string()];
        let h = history(10, vec![(11, key("/other", false)), (12, tag("b", false))]);
        assert_eq!(h.verdict(10, 12, "/page", &tags), Verdict::Usable);
        assert_eq!(h.verdict(12, 12, "/page", &tags), Verdict::Usable);
    }

    #[test]
    fn a_purge_after_the_stamp_by_key_tag_or_all_makes_it_a_miss() {
        let tags = vec!["a".to_string(), "b".to_string()];
        let all = PurgeRecord {
            key: None,
            tag: None,
            soft: false,
            epoch: 7,
        };
        for record in [key("/page", false), tag("b", false), all] {
            let h = history(10, vec![(11, record.clone())]);
            assert_eq!(
                h.verdict(10, 11, "/page", &tags),
                Verdict::Purged,
                "{record:?}"
            );
            // Written after the purge: usable.
            assert_eq!(
                h.verdict(11, 11, "/page", &tags),
                Verdict::Usable,
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_soft_purge_makes_it_stale_and_a_later_hard_purge_a_miss() {
        let tags = vec!["a".to_string()];
        let h = history(0, vec![(1, tag("a", true))]);
        assert_eq!(h.verdict(0, 1, "/p", &tags), Verdict::SoftPurged);
        let h = history(0, vec![(1, tag("a", true)), (2, key("/p", false))]);
        assert_eq!(h.verdict(0, 2, "/p", &tags), Verdict::Purged);
    }

    #[test]
    fn purges_not_yet_applied_are_not_consulted_and_later_stamps_are_misses() {
        let h = history(0, vec![(1, key("/p", false))]);
        // The reader has applied nothing after 0: record 1 is beyond what it has seen, and
        // an entry stamped 1 was written by an isolate further along: a miss, not a guess.
        assert_eq!(h.verdict(0, 0, "/p", &[]), Verdict::Usable);
        assert_eq!(h.verdict(1, 0, "/p", &[]), Verdict::Purged);
    }

    #[test]
    fn stamps_before_the_history_need_the_log_and_backfill_completes_it() {
        let mut h = history(10, vec![]);
        assert_eq!(
            h.verdict(7, 10, "/p", &[]),
            Verdict::Unknown {
                after: 7,
                through: 10
            }
        );
        h.backfill(
            7,
            10,
            vec![
                (8, key("/x", false)),
                (9, key("/p", false)),
                (10, key("/y", false)),
            ],
        );
        assert_eq!(h.verdict(7, 10, "/p", &[]), Verdict::Purged);
        assert_eq!(h.verdict(9, 10, "/p", &[]), Verdict::Usable);
        // A backfill for a range the history no longer ends at is ignored.
        let mut h = history(10, vec![]);
        h.backfill(7, 9, vec![]);
        assert!(matches!(
            h.verdict(7, 10, "/p", &[]),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn stamps_from_untrusted_bytes_at_the_extremes_do_not_panic() {
        let h = history(5, vec![(6, key("/p", false))]);
        assert_eq!(h.verdict(i64::MAX, 6, "/p", &[]), Verdict::Purged);
        assert!(matches!(
            h.verdict(i64::MIN, 6, "/p", &[]),
            Verdict::Unknown { .. }
        ));
        let h = history(i64::MAX, vec![]);
        assert_eq!(h.verdict(i64::MAX, i64::MAX, "/p", &[]), Verdict::Usable);
    }

    #[test]
    fn no_history_or_a_blocked_isolate_uses_nothing() {
        let h = PurgeHistory::default();
        assert_eq!(h.verdict(0, 0, "/p", &[]), Verdict::Purged);
        let mut h = history(0, vec![]);
        h.block();
        assert_eq!(h.verdict(0, 0, "/p", &[]), Verdict::Purged);
    }

    #[test]
    fn the_history_is_bounded_and_its_floor_rises_with_what_it_drops() {
        let mut h = history(0, vec![]);
        for seq in 1..=(MAX_HISTORY as i64 + 5) {
            h.record(seq, key("/x", false));
        }
        assert_eq!(h.records.len(), MAX_HISTORY);
        assert_eq!(h.floor, Some(5));
        assert!(matches!(
            h.verdict(4, 100, "/p", &[]),
            Verdict::Unknown { .. }
        ));
        assert_eq!(h.verdict(5, 100, "/p", &[]), Verdict::Usable);
    }
}
