//! What the native host keeps to send a stored entry's hits fast, beside the engine's L1
//! rather than in the entry: the served fields as a header map (cloning it shares the values
//! instead of copying them) and, for bodies of at least [`sendfile::MIN_LEN`] bytes, a sealed
//! file copy to send with `sendfile` ([`sendfile`]). Built on an entry's first plain hit; a
//! body that found the copies' budget full then gets its copy on a later hit, once one fits.
//!
//! Records are keyed by the entry's address and hold a `Weak` to it: while the `Weak` lives
//! the address cannot be reused, and a record whose entry is gone is found dead and dropped
//! (with its file) when its shard is pruned, which happens as shards grow and whenever a new
//! file copy does not fit the budget.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use http::HeaderMap;

use super::origin::append_fields;
use super::sendfile::{self, Bodies, FileCopies, SealedBody};
use crate::engine::served_fields;
use crate::entry::CachedResponse;

/// Shards of the table (a hit locks one).
const SHARDS: usize = 16;

/// Hits of bodies without a file copy that found the budget full before one prunes the
/// records of gone entries, whose copies may hold it: a prune locks every shard.
const PRUNE_AFTER_FULL_HITS: usize = 1024;

/// What a hit of one entry sends.
pub struct Ready {
    /// The stored fields a hit sends, `Content-Length` left to hyper.
    pub fields: HeaderMap,
    /// The body in a sealed memfd, when it is large enough and the file could be made.
    pub file: Option<Arc<SealedBody>>,
}

/// Which file copy a stored body is sent from ([`ReadyEntries::body_part`]).
pub enum FileCopy {
    /// The one its hit's ready form has (or that it has none), looked up already.
    Known(Option<Arc<SealedBody>>),
    /// Its entry's, if a hit has made one.
    Find {
        /// Make it now if there is none: the entry is being reused, so the copy pays for
        /// itself. A response that stored the entry makes none: an object asked for once
        /// gets no file copy.
        make: bool,
    },
}

/// The ready forms of the entries that have been hit, and the file copies they hold.
pub struct ReadyEntries {
    shards: Vec<Mutex<Shard>>,
    files: Arc<FileCopies>,
    /// Hits of bodies without a file copy that found the budget full since the last prune
    /// they made.
    full_hits: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    records: HashMap<usize, Record>,
    /// Prune when the shard grows to this many records.
    prune_at: usize,
}

struct Record {
    entry: Weak<CachedResponse>,
    ready: Arc<Ready>,
}

impl ReadyEntries {
    /// An empty table whose file copies come from `files`.
    pub fn new(files: Arc<FileCopies>) -> Self {
        ReadyEntries {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            files,
            full_hits: AtomicUsize::new(0),
        }
    }

    /// The ready form of `stored`, built now if it has none. A form built without the file
    /// copy its body should have (the budget was full then) gets one as soon as a copy fits:
    /// otherwise a hot entry stored while the budget was full would be written from memory
    /// for as long as it lives, while colder ones kept their copies.
    pub fn get_or_build(&self, stored: &Arc<CachedResponse>) -> Arc<Ready> {
        let ready = match self.get(stored) {
            Some(ready) if ready.file.is_some() || !self.may_have_a_file(stored) => {
                return ready;
            }
            Some(ready) => match self.files.seal(&stored.body) {
                Some(file) => Arc::new(Ready {
                    fields: ready.fields.clone(),
                    file: Some(Arc::new(file)),
                }),
                None => return ready,
            },
            None => Arc::new(self.build(stored)),
        };
        let mut shard = self.shard(stored);
        if shard.records.len() >= shard.prune_at {
            shard.prune();
        }
        let record = Record {
            entry: Arc::downgrade(stored),
            ready: ready.clone(),
        };
        shard.records.insert(key(stored), record);
        ready
    }

    /// Whether `stored`'s body is one to send from a file copy, and one would fit now.
    /// Copies of entries that are gone (evicted from L1) hold the budget until their records
    /// are pruned, which otherwise only a new entry's first hit or a growing shard brings:
    /// one hit in [`PRUNE_AFTER_FULL_HITS`] that finds it full prunes first.
    fn may_have_a_file(&self, stored: &CachedResponse) -> bool {
        let len = stored.body.len();
        if len < sendfile::MIN_LEN {
            return false;
        }
        if self.files.has_room_for(len) {
            return true;
        }
        // No copy open (or none can be made): a prune would free nothing.
        if self.files.open_files() == 0
            || self.full_hits.fetch_add(1, Ordering::Relaxed) + 1 < PRUNE_AFTER_FULL_HITS
        {
            return false;
        }
        self.full_hits.store(0, Ordering::Relaxed);
        self.prune();
        self.files.has_room_for(len)
    }

    /// The ready form of `stored`, if a hit has built one.
    pub fn get(&self, stored: &Arc<CachedResponse>) -> Option<Arc<Ready>> {
        let shard = self.shard(stored);
        let record = shard.records.get(&key(stored))?;
        // The address is this entry's while the record's `Weak` keeps it allocated.
        (record.entry.as_ptr() == Arc::as_ptr(stored)).then(|| record.ready.clone())
    }

    /// `range` of `stored`'s body as `Bytes` for a connection's hyper, never copied: sent from
    /// the entry's file copy (registered in the connection's `bodies`, [`sendfile`]) when it
    /// has one, else written from memory. A range outside the body is empty.
    pub fn body_part(
        &self,
        bodies: &Arc<Bodies>,
        stored: Arc<CachedResponse>,
        range: Range<usize>,
        file: FileCopy,
    ) -> Bytes {
        let file = match file {
            FileCopy::Known(file) => file,
            FileCopy::Find { make: true } => self.get_or_build(&stored).file.clone(),
            FileCopy::Find { make: false } => self.get(&stored).and_then(|r| r.file.clone()),
        };
        let whole = match file {
            Some(file) => bodies.body(stored, file),
            None => Bytes::from_owner(SharedBody(stored)),
        };
        match range {
            all if all == (0..whole.len()) => whole,
            part if part.start <= part.end && part.end <= whole.len() => whole.slice(part),
            _ => Bytes::new(),
        }
    }

    /// How many records the table holds (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).records.len()).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the records of entries that are gone, in every shard.
    pub fn prune(&self) {
        for shard in &self.shards {
            lock(shard).prune();
        }
    }

    fn build(&self, stored: &CachedResponse) -> Ready {
        let mut fields = HeaderMap::new();
        append_fields(&mut fields, served_fields(stored));
        fields.remove(hyper::header::CONTENT_LENGTH);
        let file = (stored.body.len() >= sendfile::MIN_LEN)
            .then(|| {
                self.files.seal(&stored.body).or_else(|| {
                    // Files of entries that are gone may hold the budget: free them, retry.
                    self.prune();
                    self.files.seal(&stored.body)
                })
            })
            .flatten()
            .map(Arc::new);
        Ready { fields, file }
    }

    fn shard(&self, stored: &Arc<CachedResponse>) -> std::sync::MutexGuard<'_, Shard> {
        // Entries are at least 8-byte aligned: skip the bits that are always zero.
        lock(&self.shards[(key(stored) >> 4) % SHARDS])
    }
}

impl Shard {
    fn prune(&mut self) {
        self.records.retain(|_, r| r.entry.strong_count() > 0);
        self.prune_at = (self.records.len() * 2).max(64);
    }
}

/// A stored body shared with hyper without copying.
struct SharedBody(Arc<CachedResponse>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

fn key(stored: &Arc<CachedResponse>) -> usize {
    Arc::as_ptr(stored) as usize
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding it cannot leave a record half-made: keep serving.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;
    use crate::time::Timestamp;

    fn entry(len: usize) -> Arc<CachedResponse> {
        let t = Timestamp::from_secs(1);
        let fields = Headers::from_pairs([("content-type", "text/plain"), ("content-length", "9")]);
        Arc::new(CachedResponse::new(200, fields, vec![7; len], t, t))
    }

    #[test]
    fn a_hit_builds_the_form_once_and_finds_it_after() {
        let table = ReadyEntries::new(FileCopies::new(None, usize::MAX));
        let e = entry(10);
        assert!(table.get(&e).is_none());
        let first = table.get_or_build(&e);
        assert!(first.fields.get("content-type").is_some());
        assert!(
            first.fields.get("content-length").is_none(),
            "hyper's to say"
        );
        assert!(Arc::ptr_eq(&first, &table.get_or_build(&e)));
        assert!(Arc::ptr_eq(&first, &table.get(&e).unwrap()));
        assert!(
            first.file.is_none(),
            "no file copies without the system calls"
        );
    }

    /// A table whose file budget holds one copy, held by `first`'s; `second`, as large, has
    /// not been hit yet. `None` without the system calls (not Linux).
    fn one_copy_and_a_body_without(
    ) -> Option<(ReadyEntries, Arc<CachedResponse>, Arc<CachedResponse>)> {
        let syscalls = crate::native::zero_copy::syscalls()?;
        let len = sendfile::MIN_LEN;
        let table = ReadyEntries::new(FileCopies::new(Some(syscalls), len));
        let (first, second) = (entry(len), entry(len));
        assert!(table.get_or_build(&first).file.is_some());
        Some((table, first, second))
    }

    /// A body that found the file budget full is sent from memory until a copy fits, then
    /// gets one on its next hit (not only once its entry is stored again).
    #[test]
    fn a_body_without_a_file_copy_gets_one_once_the_budget_has_room() {
        let Some((table, first, second)) = one_copy_and_a_body_without() else {
            return;
        };
        let without = table.get_or_build(&second);
        assert!(without.file.is_none(), "the budget holds one copy");
        assert!(
            table.get_or_build(&second).file.is_none(),
            "still full: asked again, none made"
        );
        drop(first);
        table.prune();
        let with = table.get_or_build(&second);
        assert!(with.file.is_some(), "the freed budget is used");
        assert_eq!(with.fields, without.fields);
        assert!(Arc::ptr_eq(&with, &table.get_or_build(&second)), "kept");
    }

    /// The budget a gone entry's copy holds is freed for a body without a copy even when no
    /// new entry is hit: the records of entries evicted from L1 keep their files until a
    /// prune, and nothing but a new entry's first hit (or a shard growing) pruned them, so
    /// a hot body without a copy was written from memory for as long as the hot set stayed.
    #[test]
    fn budget_held_by_gone_entries_reaches_a_body_without_a_copy() {
        let Some((table, first, second)) = one_copy_and_a_body_without() else {
            return;
        };
        assert!(
            table.get_or_build(&second).file.is_none(),
            "the budget holds one copy"
        );
        // Evicted: its record, and its file, stay until a prune. No prune by hand here.
        drop(first);
        let hits_to_copy = (1..=4096).find(|_| table.get_or_build(&second).file.is_some());
        assert!(
            hits_to_copy.is_some(),
            "the gone entry's copy still holds the budget after 4096 hits"
        );
    }

    /// Files that could not be made: `sealed_file` fails, and counts its calls.
    static SEAL_CALLS: AtomicUsize = AtomicUsize::new(0);
    fn no_file(_: &[u8]) -> std::io::Result<std::fs::File> {
        SEAL_CALLS.fetch_add(1, Ordering::Relaxed);
        Err(std::io::Error::from_raw_os_error(24)) // EMFILE
    }

    /// While files cannot be made (the process out of descriptors), the hits of a body
    /// without a copy do not make a failing system call each: only a new entry's first hit
    /// tries, and one that succeeds lets the others ask again.
    #[test]
    fn a_failing_file_copy_is_not_retried_on_every_hit() {
        let Some(syscalls) = crate::native::zero_copy::syscalls() else {
            return;
        };
        let failing = sendfile::Syscalls {
            sealed_file: no_file,
            ..syscalls
        };
        let table = ReadyEntries::new(FileCopies::new(Some(failing), usize::MAX));
        let body = entry(sendfile::MIN_LEN);
        assert!(table.get_or_build(&body).file.is_none());
        let built = SEAL_CALLS.load(Ordering::Relaxed);
        assert!(built >= 1, "its first hit tried");
        for _ in 0..2048 {
            assert!(table.get_or_build(&body).file.is_none());
        }
        assert_eq!(
            SEAL_CALLS.load(Ordering::Relaxed),
            built,
            "not tried per hit"
        );
        let other = entry(sendfile::MIN_LEN);
        assert!(table.get_or_build(&other).file.is_none());
        assert!(
            SEAL_CALLS.load(Ordering::Relaxed) > built,
            "a new entry still tries"
        );
    }

    #[test]
    fn records_of_gone_entries_are_pruned_and_never_mistaken() {
        let table = ReadyEntries::new(FileCopies::new(None, usize::MAX));
        let kept = entry(1);
        table.get_or_build(&kept);
        for _ in 0..1000 {
            let gone = entry(1);
            table.get_or_build(&gone);
        }
        assert!(
            table.len() < 1000,
            "pruned as the shards grew: {}",
            table.len()
        );
        table.prune();
        assert_eq!(table.len(), 1, "only the live entry's record stays");
        assert!(table.get(&kept).is_some());
        let fresh = entry(1);
        assert!(table.get(&fresh).is_none(), "a new entry has no form yet");
    }
}
