//! The colo tier: a cache local to one data centre (on Workers, the Cache API's
//! `caches.default`), between L1 and the shared tier. On by default (`colo.enabled`).
//!
//! The colo cache cannot be purged from another data centre by the Worker itself, so how a
//! purge reaches colo copies depends on what is configured ([`ColoMode`]):
//!
//! - **purge log** (the shared tier configured): the engine never trusts an entry without
//!   checking it against the shared tier's purge log ([`super::sync`]). The key carries the
//!   shared tier's marker and purge-all epoch (`{prefix}m{marker}e{epoch}:obj:{cache key}`),
//!   so a purge-all or a shared tier that lost its data makes every older entry unreachable;
//!   the value is stamped with the purge-log sequence number its writer had applied
//!   ([`stamp`]), and a reader uses it only once it has applied every purge after that
//!   number and none of them covers the entry ([`PurgeHistory::verdict`]). A soft purge that
//!   covers it makes it stale, a hard one a miss. A purge reaches colo entries as fast as it
//!   reaches other instances' L1 (`l2.purge_poll_ms`). Without a known marker and purge
//!   position the colo tier is skipped; an isolate that carried out a purge it could not
//!   publish stops using it.
//! - **purge API** (no shared tier; the host can purge every data centre, on Workers
//!   Cloudflare's zone purge API): keys are `{prefix}colo:{cache key}`, values stamped with
//!   their writing time; a purge is remembered by the isolate that made it (it never uses an
//!   entry written before), and sent to the API: by URL the primary entry's colo URL
//!   ([`colo_url`]; variants older than their primary are never used), by tag the tag (every
//!   entry carries its tags as `Cache-Tag`), purge-all the tag every colo entry carries.
//! - **local plus expiry** (neither): as above without the API call, and entries are kept at
//!   most `colo.max_ttl_secs`; the purge answer says by when every other copy has expired.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::{decode_head, CachedResponse, DecodeError, DecodeLimits};
use crate::headers::Headers;

use super::host::{ColoCache, Lock, Runtime};
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

/// Decodes a colo entry: a whole entry, or the head of an object in slices (a chunked head
/// of no chunks, [`Engine::tier_encoding`]). A head with chunks is never written here,
/// so it is corrupt, like anything that does not decode; an entry of a newer format (a
/// newer version beside this one, during a deploy) is a miss, and not counted as corrupt.
fn decode_colo_entry(encoded: &[u8], limits: &DecodeLimits) -> Result<CachedResponse, Unread> {
    match decode_head(encoded, limits) {
        Ok((entry, None)) => Ok(entry),
        Ok((head, Some(manifest)))
            if manifest.checksums.is_empty() && super::read::Slicing::of(&head).is_some() =>
        {
            Ok(head)
        }
        // The head of an object this version does not slice (more than `MAX_SLICES`
        // slices, from an earlier version): not damaged, but of no use.
        Ok((head, Some(manifest)))
            if manifest.checksums.is_empty() && super::read::refused_head(&head) =>
        {
            Err(Unread::Newer)
        }
        Err(DecodeError::UnsupportedVersion(_)) => Err(Unread::Newer),
        Ok((_, Some(_))) | Err(_) => Err(Unread::Corrupt),
    }
}

/// Why a colo value was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unread {
    /// Written by a newer version, in a format this one does not know.
    Newer,
    /// Damaged, or foreign.
    Corrupt,
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

    /// A history for the colo tier without the shared tier: complete from the start (this
    /// isolate's own purges are all it can know), its sequence numbers times in ms.
    pub fn local() -> Self {
        let mut h = PurgeHistory::default();
        h.reset(i64::MIN);
        h
    }

    /// Keeps a purge made here at `now_ms`: it covers entries stamped at or before then.
    /// Numbers stay unique and increasing when several purges share a millisecond.
    pub fn record_local(&mut self, now_ms: i64, record: PurgeRecord) {
        let last = self.records.last_key_value().map_or(i64::MIN, |(k, _)| *k);
        let seq = now_ms.saturating_add(1).max(last.saturating_add(1));
        self.record(seq, record);
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

/// What a colo write is stamped with: the purge position it is written under (with the
/// purge log), and its sequence (the position's, or a time in ms).
#[derive(Clone, Copy)]
struct ColoStamp {
    position: Option<Position>,
    seq: i64,
}

/// How purges reach the colo tier, from what is configured (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColoMode {
    /// The shared tier is configured: entries are checked against its purge log.
    PurgeLog,
    /// No shared tier; Cloudflare's purge API removes entries in every data centre.
    PurgeApi,
    /// Neither: a purge reaches this isolate's view at once and every other copy by expiry,
    /// entries being kept at most `colo.max_ttl_secs`.
    Expiry,
}

impl ColoMode {
    /// The name `/stats` and purge answers use.
    pub fn as_str(self) -> &'static str {
        match self {
            ColoMode::PurgeLog => "purge-log",
            ColoMode::PurgeApi => "purge-api",
            ColoMode::Expiry => "local+expiry",
        }
    }
}

/// Most URLs or tags in one purge-API request (Cloudflare: 30 URLs per call on the Free, Pro
/// and Business plans; tags, hosts and prefixes up to 100; 30 fits every plan).
pub const MAX_PURGE_ITEMS: usize = 30;
/// Longest tag a `Cache-Tag` may carry (Cloudflare: 1,024 characters per tag).
const MAX_TAG_BYTES: usize = 1024;
/// Most bytes of `Cache-Tag` values on one colo entry (Cloudflare: 16 KB for the header).
const MAX_TAGS_BYTES: usize = 16 * 1024 - 64;

/// Whether `tag` can travel in a `Cache-Tag` header and a purge-by-tag request: printable
/// ASCII without spaces or commas (the separator), at most 1,024 bytes.
pub fn is_cache_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_BYTES
        && tag.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// The Cache API URL of colo key `key` for the site `origin` (`scheme://authority`):
/// `{origin}{admin path}/colo/{key, percent-encoded}`, on the zone's own host (the Cache API
/// is per zone, and Cloudflare's purge API matches these URLs); under the admin path, which
/// no client request can be answered from.
pub fn colo_url(origin: &str, admin_path: &str, key: &str) -> String {
    let mut url = format!("{origin}{admin_path}/colo/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The bodies of the requests to Cloudflare's `POST /zones/{zone}/purge_cache` that purge
/// `files` (absolute URLs) and `tags`: `{"files":[…]}` and `{"tags":[…]}`, at most
/// [`MAX_PURGE_ITEMS`] each (one request cannot mix kinds).
pub fn purge_api_bodies(files: &[String], tags: &[String]) -> Vec<String> {
    let mut bodies = Vec::new();
    for chunk in files.chunks(MAX_PURGE_ITEMS) {
        bodies.push(alloc::string::ToString::to_string(
            &serde_json::json!({ "files": chunk }),
        ));
    }
    for chunk in tags.chunks(MAX_PURGE_ITEMS) {
        bodies.push(alloc::string::ToString::to_string(
            &serde_json::json!({ "tags": chunk }),
        ));
    }
    bodies
}

/// What a purge did to the colo tier ([`super::admin::PurgeReport`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColoPurged {
    /// How purges reach the tier here.
    pub mode: ColoMode,
    /// The purge-API requests sent: `Ok(n)` all `n` accepted, `Err` why not (no secret);
    /// `None` when the API is not configured.
    pub api: Option<Result<usize, String>>,
    /// In [`ColoMode::Expiry`]: the time (ms since the epoch) by which every other copy has
    /// expired.
    pub others_gone_by_ms: Option<u64>,
}

impl<H: Host> Engine<H> {
    /// The colo cache, when configured and enabled.
    pub(crate) fn colo(&self) -> Option<&H::Colo> {
        self.colo.as_ref().filter(|_| self.config.colo.enabled)
    }

    /// How purges reach the colo tier, when there is one.
    pub fn colo_mode(&self) -> Option<ColoMode> {
        let colo = self.colo()?;
        Some(if self.shared.is_some() {
            ColoMode::PurgeLog
        } else if colo.purges_everywhere() {
            ColoMode::PurgeApi
        } else {
            ColoMode::Expiry
        })
    }

    /// The colo key of `cache_key`: with the shared tier, marked with its purge position;
    /// without, one fixed namespace (purges are checked by time, see [`Self::colo_read`]).
    fn colo_key(&self, position: Option<Position>, cache_key: &str) -> String {
        let prefix = &self.config.l2.key_prefix;
        match position {
            Some(p) => format!("{prefix}m{}e{}:obj:{cache_key}", p.marker, p.epoch),
            None => format!("{prefix}colo:{cache_key}"),
        }
    }

    /// The tag every colo entry carries, so a purge-all is one purge by tag.
    fn colo_all_tag(&self) -> String {
        let tag = format!("{}colo", self.config.l2.key_prefix);
        if is_cache_tag(&tag) {
            tag
        } else {
            String::from("edgecache-colo")
        }
    }

    /// The `Cache-Tag` values of a colo entry: the purge-all tag and every entry tag that
    /// a `Cache-Tag` can carry, within the header's size.
    fn colo_tags(&self, stored: &CachedResponse) -> Vec<String> {
        let mut tags = alloc::vec![self.colo_all_tag()];
        let mut bytes = tags[0].len();
        for tag in stored.tags.iter().filter(|t| is_cache_tag(t)) {
            if bytes + tag.len() + 1 > MAX_TAGS_BYTES {
                break;
            }
            bytes += tag.len() + 1;
            tags.push(tag.clone());
        }
        tags
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

    /// What colo reads are checked against: `Some(None)` without the purge log (purge API
    /// or expiry), `Some(Some(position))` with it, `None` when the tier is off or the
    /// position cannot be known (then nothing in the tier may be used).
    async fn colo_read_position(&self) -> Option<Option<Position>> {
        Some(match self.colo_mode()? {
            ColoMode::PurgeLog => Some(self.colo_position(true).await?),
            ColoMode::PurgeApi | ColoMode::Expiry => None,
        })
    }

    /// Looks `key` up in the colo tier, following `Vary` to this request's variant like
    /// L1 and L2 do (RFC 9111 §4.1). Without the shared tier, a variant older than its
    /// primary entry is not used: a purge by URL removes the primary everywhere, and the
    /// variants written before it must not come back with a new primary.
    pub(crate) async fn colo_find(
        &self,
        key: &str,
        request_headers: &Headers,
    ) -> Option<Arc<CachedResponse>> {
        let position = self.colo_read_position().await?;
        let (primary_stamp, primary) = self.colo_read(position, key, key).await?;
        let Some(variant) = super::read::variant_to_follow(key, &primary, request_headers) else {
            return Some(primary);
        };
        match self.colo_read(position, key, &variant).await {
            Some((stamp, found)) if position.is_some() || stamp >= primary_stamp => Some(found),
            _ => Some(primary),
        }
    }

    /// Looks slice `slice_key` of the object `object_key`, whose head is `head`, up in the
    /// colo tier. Purges of the object cover it (its URL and tags are checked, as for the
    /// head). Without the shared tier, a slice written before `head`'s representation was
    /// received ([`super::read::Slicing::received_at`], which a `304` does not move) is not
    /// used: a purge by URL through the purge API names only the head, so the slices of
    /// the object it replaced may still be there (as for `Vary` variants, [`Engine::colo_find`]).
    pub(crate) async fn colo_find_slice(
        &self,
        object_key: &str,
        slice_key: &str,
        head: &CachedResponse,
    ) -> Option<Arc<CachedResponse>> {
        let position = self.colo_read_position().await?;
        let (stamp, slice) = self.colo_read(position, object_key, slice_key).await?;
        let received = super::read::Slicing::received_at(head);
        (position.is_some() || stamp >= received).then_some(slice)
    }

    /// Reads, decodes and checks one colo entry, with its stamp. Corrupt entries are
    /// counted misses.
    async fn colo_read(
        &self,
        position: Option<Position>,
        primary: &str,
        cache_key: &str,
    ) -> Option<(i64, Arc<CachedResponse>)> {
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
        let read = unstamp(&bytes)
            .ok_or(Unread::Corrupt)
            .and_then(|(seq, rest)| Ok((seq, decode_colo_entry(rest, &limits)?)));
        let (seq, mut entry) = match read {
            Ok(read) => read,
            Err(Unread::Newer) => return None,
            Err(Unread::Corrupt) => {
                self.count(|s| s.colo_corrupt += 1);
                return None;
            }
        };
        let verdict = match position {
            Some(position) => {
                let mut verdict = self.colo_verdict(seq, position.seen, primary, &entry.tags);
                if let Verdict::Unknown { after, through } = verdict {
                    self.colo_backfill(after, through).await;
                    verdict = self.colo_verdict(seq, position.seen, primary, &entry.tags);
                }
                verdict
            }
            None => {
                // Stamped with its writing time: purges made here since then cover it; in
                // expiry mode, nothing older than the cap is used, whatever the store kept.
                let now = self.runtime.now().as_millis() as i64;
                let cap_ms = (self.config.colo.max_ttl_secs as i64).saturating_mul(1000);
                if self.colo_mode() == Some(ColoMode::Expiry) && seq < now.saturating_sub(cap_ms) {
                    return None;
                }
                self.state
                    .with(|s| s.colo_local.verdict(seq, i64::MAX, primary, &entry.tags))
            }
        };
        match verdict {
            Verdict::Usable => {}
            Verdict::SoftPurged => entry.invalidated = true,
            Verdict::Purged | Verdict::Unknown { .. } => return None,
        }
        Some((seq, self.ready_to_keep(entry)))
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
    /// purge position (or, without the shared tier, the time), for as long as any window
    /// of it lasts (capped at `colo.max_ttl_secs` in expiry mode), tagged for the purge
    /// API. Bodies above `colo.max_object_bytes` are not written.
    /// Kept at least `keep_at_least_ms` (a slice, as long as its head's slices are).
    pub(crate) async fn colo_write(
        &self,
        cache_key: &str,
        stored: &CachedResponse,
        keep_at_least_ms: u64,
    ) {
        let Some(mode) = self.colo_mode() else {
            return;
        };
        let ttl_ms = self.keep_ms(stored).max(keep_at_least_ms);
        if ttl_ms == 0 {
            return;
        }
        let Some(stamp) = self.colo_stamp(mode).await else {
            return;
        };
        self.colo_put(mode, stamp, cache_key, stored, ttl_ms).await;
    }

    /// Writes again to the colo tier the slices `held` reads from L1 (key and slice) of an
    /// object whose head a `304` freshened, kept `ttl_ms` (as long as that head: a slice
    /// carries its head's fields from before the `304`, whose own lifetime is shorter): the
    /// colo tier cannot extend an entry. Each is stamped as old as its content, so that a
    /// purge that content predates covers it: with the purge log, the position reached
    /// before L1 is read (a purge applied later is after the stamp); without it, the time
    /// its bytes were fetched. In expiry mode nothing is written: an entry older than
    /// `colo.max_ttl_secs` is never used there.
    pub(crate) async fn colo_rewrite(
        &self,
        held: impl FnOnce() -> Vec<(String, Arc<CachedResponse>)>,
        ttl_ms: u64,
    ) {
        let Some(mode) = self.colo_mode().filter(|&m| m != ColoMode::Expiry) else {
            return;
        };
        let Some(stamp) = self.colo_stamp(mode).await else {
            return;
        };
        for (key, slice) in held() {
            let stamp = match stamp.position {
                Some(_) => stamp,
                None => ColoStamp {
                    position: None,
                    seq: slice.response_time.as_millis() as i64,
                },
            };
            self.colo_put(mode, stamp, &key, &slice, ttl_ms).await;
        }
    }

    /// The stamp of a colo write made now: with the purge log, this isolate's position in
    /// it; otherwise the time. `None` when the position cannot be had.
    async fn colo_stamp(&self, mode: ColoMode) -> Option<ColoStamp> {
        Some(match mode {
            ColoMode::PurgeLog => {
                let position = self.colo_position(false).await?;
                ColoStamp {
                    position: Some(position),
                    seq: position.seen,
                }
            }
            ColoMode::PurgeApi | ColoMode::Expiry => ColoStamp {
                position: None,
                seq: self.runtime.now().as_millis() as i64,
            },
        })
    }

    /// Writes `stored` under `cache_key`, stamped `stamp`, kept `ttl_ms` (capped at
    /// `colo.max_ttl_secs` in expiry mode).
    async fn colo_put(
        &self,
        mode: ColoMode,
        stamp: ColoStamp,
        cache_key: &str,
        stored: &CachedResponse,
        mut ttl_ms: u64,
    ) {
        let Some(colo) = self.colo() else {
            return;
        };
        // The head of an object in slices is encoded so that versions before slicing do
        // not read it ([`Engine::tier_encoding`]); its slices are entries of their own. So
        // is an incomplete response: its entry version is one older versions do not read.
        if stored.body.len() > self.config.colo.max_object_bytes {
            return;
        }
        let encoded = self.tier_encoding(stored);
        if mode == ColoMode::Expiry {
            ttl_ms = ttl_ms.min(self.config.colo.max_ttl_secs.saturating_mul(1000));
        }
        let value = self::stamp(stamp.seq, &encoded);
        let key = self.colo_key(stamp.position, cache_key);
        let tags = self.colo_tags(stored);
        let timeout = self.config.colo.timeout_ms;
        match with_timeout(
            &self.runtime,
            timeout,
            colo.put(&key, &value, ttl_ms, &tags),
        )
        .await
        {
            Some(Ok(())) => self.count(|s| s.colo_stored += 1),
            Some(Err(_)) | None => self.count(|s| s.colo_errors += 1),
        }
    }

    /// Without the shared tier, remembers a purge (or a write-through invalidation) made
    /// here: this isolate never uses a colo entry written before it that it covers.
    pub(crate) fn colo_remember_purge(&self, scope: &super::sync::Scope, soft: bool) {
        if !matches!(
            self.colo_mode(),
            Some(ColoMode::PurgeApi | ColoMode::Expiry)
        ) {
            return;
        }
        let (key, tag) = match scope {
            super::sync::Scope::Key(key) => (Some(key.clone()), None),
            super::sync::Scope::Tag(tag) => (None, Some(tag.clone())),
            super::sync::Scope::All => (None, None),
        };
        let record = PurgeRecord {
            key,
            tag,
            soft,
            epoch: 0,
        };
        let now = self.runtime.now().as_millis() as i64;
        self.state.with(|s| s.colo_local.record_local(now, record));
    }

    /// Carries an admin purge (already applied to L1, published and remembered, see
    /// [`Self::colo_remember_purge`]) to the colo tier everywhere: sent to Cloudflare's
    /// purge API when configured. `origin` (`scheme://authority` of the
    /// purged URL's site) names the colo URL of a purge by URL. Never fails the purge.
    pub(crate) async fn colo_purge(
        &self,
        scope: &super::sync::Scope,
        origin: Option<&str>,
    ) -> Option<ColoPurged> {
        let mode = self.colo_mode()?;
        let colo = self.colo()?;
        let now = self.runtime.now().as_millis();
        let api = if colo.purges_everywhere() {
            Some(self.colo_purge_api(colo, scope, origin).await)
        } else {
            None
        };
        let others_gone_by_ms = (mode == ColoMode::Expiry)
            .then(|| now.saturating_add(self.config.colo.max_ttl_secs.saturating_mul(1000)));
        Some(ColoPurged {
            mode,
            api,
            others_gone_by_ms,
        })
    }

    /// What to ask Cloudflare's purge API for `scope` (the one place that decides it), then
    /// the requests, one after another. A failure is logged (never a secret) and reported.
    async fn colo_purge_api(
        &self,
        colo: &H::Colo,
        scope: &super::sync::Scope,
        origin: Option<&str>,
    ) -> Result<usize, String> {
        let (files, tags) = match scope {
            super::sync::Scope::Key(key) => {
                let origin = origin.ok_or("no site to name the colo URL of")?;
                let position = match self.colo_mode() {
                    Some(ColoMode::PurgeLog) => self.colo_position(false).await,
                    _ => None,
                };
                let url = colo_url(
                    origin,
                    &self.config.admin.path,
                    &self.colo_key(position, key),
                );
                (alloc::vec![url], Vec::new())
            }
            super::sync::Scope::Tag(tag) if is_cache_tag(tag) => {
                (Vec::new(), alloc::vec![tag.clone()])
            }
            super::sync::Scope::Tag(_) => {
                return Err(String::from(
                    "tag cannot be a Cache-Tag (printable ASCII without spaces or commas, at most 1024 bytes)",
                ))
            }
            super::sync::Scope::All => (Vec::new(), alloc::vec![self.colo_all_tag()]),
        };
        let bodies = purge_api_bodies(&files, &tags);
        for body in &bodies {
            if let Err(e) = colo.purge_everywhere(body).await {
                let message = format!("purge API: {}", e.0);
                self.runtime.log(
                    super::host::LogLevel::Warn,
                    &format!("edgecache: {message}"),
                );
                return Err(message);
            }
        }
        Ok(bodies.len())
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
    fn purge_api_bodies_are_cloudflares_json_in_chunks_of_thirty() {
        let files = vec![String::from(
            "https://a.example/_edgecache/colo/ec%3Av1%3Acolo%3A%2Fx",
        )];
        assert_eq!(
            purge_api_bodies(&files, &[]),
            vec![String::from(
                r#"{"files":["https://a.example/_edgecache/colo/ec%3Av1%3Acolo%3A%2Fx"]}"#
            )]
        );
        assert_eq!(
            purge_api_bodies(&[], &[String::from("t\"q")]),
            vec![String::from(r#"{"tags":["t\"q"]}"#)]
        );
        let many: Vec<String> = (0..61).map(|i| format!("t{i}")).collect();
        let bodies = purge_api_bodies(&[], &many);
        assert_eq!(bodies.len(), 3);
        let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(first["tags"].as_array().unwrap().len(), 30);
        assert_eq!(bodies[2], r#"{"tags":["t60"]}"#);
        assert!(purge_api_bodies(&[], &[]).is_empty());
    }

    #[test]
    fn colo_urls_escape_the_key_and_cache_tags_are_checked() {
        assert_eq!(
            colo_url("https://a.example", "/_edgecache", "ec:v1:colo:GET /p?q=1"),
            "https://a.example/_edgecache/colo/ec%3Av1%3Acolo%3AGET%20%2Fp%3Fq%3D1"
        );
        assert!(is_cache_tag("product-1:blue"));
        assert!(!is_cache_tag("a,b"));
        assert!(!is_cache_tag("a b"));
        assert!(!is_cache_tag(""));
        assert!(!is_cache_tag(&"x".repeat(1025)));
    }

    #[test]
    fn local_purges_cover_entries_written_up_to_their_time() {
        let mut h = PurgeHistory::local();
        // Nothing purged: any stamp is usable.
        assert_eq!(h.verdict(1_000, i64::MAX, "/p", &[]), Verdict::Usable);
        h.record_local(1_000, key("/p", false));
        h.record_local(1_000, tag("a", true));
        assert_eq!(h.verdict(1_000, i64::MAX, "/p", &[]), Verdict::Purged);
        assert_eq!(
            h.verdict(999, i64::MAX, "/q", &[String::from("a")]),
            Verdict::SoftPurged
        );
        // Two purges in one millisecond keep distinct numbers; later writes are usable.
        assert_eq!(h.records.len(), 2);
        assert_eq!(h.verdict(1_002, i64::MAX, "/p", &[]), Verdict::Usable);
        assert_eq!(h.verdict(i64::MAX, i64::MAX, "/p", &[]), Verdict::Usable);
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
