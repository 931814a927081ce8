//! Model-based property tests of the L1 store.
//!
//! 1. With admission off, the store must behave *exactly* like a plain Vec-based LRU model:
//!    same lookups (value, windows, size, fresh/stale/miss), same insert outcomes, same
//!    contents in the same recency order, same tag-index answers, same statistics, after
//!    every operation of a random sequence (inserts, gets, removes, tag purges, soft purges,
//!    expiry sweeps, clears and clock advances).
//! 2. With TinyLFU admission on, exact equivalence is not expected (admission may refuse
//!    keys), so invariants are checked after every operation instead: bounds never exceeded,
//!    a hit is always the latest value stored under its key with its current windows, never
//!    an expired entry, tag purges remove exactly the tagged entries, statistics consistent
//!    with the contents.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use edgecache::store::{
    Admission, EntryMeta, EntryState, InsertOutcome, L1Store, Lookup, StoreConfig, StoreStats,
    Windows,
};
use edgecache::time::Timestamp;
use proptest::prelude::*;

const TAGS: [&str; 3] = ["red", "green", "blue"];

#[derive(Clone, Debug)]
enum Op {
    Insert {
        key: u8,
        value: u32,
        fresh: u64,
        swr: u64,
        sie: u64,
        size: usize,
        tags: Vec<usize>,
    },
    Get(u8),
    Peek(u8),
    Remove(u8),
    PurgeTag(usize),
    SoftPurge(u8),
    SoftPurgeTag(usize),
    RemoveExpired,
    Clear,
    Advance(u64),
}

fn op(keys: u8, max_size: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            0..keys,
            any::<u32>(),
            0u64..6,
            0u64..4,
            0u64..4,
            0..=max_size,
            proptest::collection::vec(0..TAGS.len(), 0..3)
        )
            .prop_map(|(key, value, fresh, swr, sie, size, tags)| Op::Insert {
                key,
                value,
                fresh,
                swr,
                sie,
                size,
                tags
            }),
        8 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Peek),
        2 => (0..keys).prop_map(Op::Remove),
        1 => (0..TAGS.len()).prop_map(Op::PurgeTag),
        2 => (0..keys).prop_map(Op::SoftPurge),
        1 => (0..TAGS.len()).prop_map(Op::SoftPurgeTag),
        1 => Just(Op::RemoveExpired),
        1 => (0..30u32).prop_map(|n| if n == 0 { Op::Clear } else { Op::Advance(1) }),
        3 => (0u64..3).prop_map(Op::Advance),
    ]
}

fn tags_of(indexes: &[usize]) -> Vec<String> {
    indexes.iter().map(|&i| TAGS[i].to_string()).collect()
}

/// The reference: a plain LRU over a Vec, most recently used first.
struct Model {
    entries: Vec<Entry>,
    max_entries: usize,
    max_bytes: usize,
    stats: StoreStats,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    key: u8,
    value: u32,
    windows: Windows,
    size: usize,
    tags: Vec<String>,
}

impl Model {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Model {
            entries: Vec::new(),
            max_entries,
            max_bytes,
            stats: StoreStats::default(),
        }
    }

    fn position(&self, key: u8) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.size).sum()
    }

    fn get(&mut self, key: u8, now: Timestamp) -> Lookup<u32> {
        let Some(i) = self.position(key) else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        let e = self.entries[i].clone();
        let hit = edgecache::store::Hit {
            value: e.value,
            windows: e.windows,
            size: e.size,
        };
        match e.windows.state(now) {
            EntryState::Expired => {
                self.entries.remove(i);
                self.stats.expirations += 1;
                self.stats.misses += 1;
                Lookup::Miss
            }
            state => {
                let e = self.entries.remove(i);
                self.entries.insert(0, e);
                if state == EntryState::Fresh {
                    self.stats.hits += 1;
                    Lookup::Fresh(hit)
                } else {
                    self.stats.stale_hits += 1;
                    Lookup::Stale(hit)
                }
            }
        }
    }

    fn evict_last(&mut self, now: Timestamp) {
        let e = self.entries.pop().expect("something to evict");
        if e.windows.is_expired(now) {
            self.stats.expirations += 1;
        } else {
            self.stats.evictions += 1;
        }
    }

    fn insert(&mut self, entry: Entry, now: Timestamp) -> InsertOutcome {
        if entry.size > self.max_bytes || self.max_entries == 0 {
            if let Some(i) = self.position(entry.key) {
                self.entries.remove(i);
                self.stats.purged += 1;
            }
            self.stats.too_large += 1;
            return InsertOutcome::TooLarge;
        }
        if let Some(i) = self.position(entry.key) {
            self.entries.remove(i);
            self.entries.insert(0, entry);
            self.stats.updates += 1;
            while self.bytes() > self.max_bytes {
                self.evict_last(now);
            }
            return InsertOutcome::Replaced;
        }
        while self.entries.len() >= self.max_entries || self.bytes() + entry.size > self.max_bytes {
            self.evict_last(now);
        }
        self.entries.insert(0, entry);
        self.stats.inserts += 1;
        InsertOutcome::Inserted
    }

    fn remove(&mut self, key: u8) -> bool {
        match self.position(key) {
            Some(i) => {
                self.entries.remove(i);
                self.stats.purged += 1;
                true
            }
            None => false,
        }
    }

    fn purge_tag(&mut self, tag: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !e.tags.iter().any(|t| t == tag));
        let n = before - self.entries.len();
        self.stats.purged += n as u64;
        n
    }

    fn soft_purge_where(&mut self, now: Timestamp, f: impl Fn(&Entry) -> bool) -> usize {
        let mut n = 0;
        for e in self.entries.iter_mut().filter(|e| f(e)) {
            e.windows = e.windows.made_stale_at(now);
            n += 1;
        }
        self.stats.soft_purged += n as u64;
        n
    }

    fn remove_expired(&mut self, now: Timestamp) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !e.windows.is_expired(now));
        let n = before - self.entries.len();
        self.stats.expirations += n as u64;
        n
    }

    fn clear(&mut self) {
        self.stats.purged += self.entries.len() as u64;
        self.entries.clear();
    }

    fn tag_count(&self) -> usize {
        let mut tags: Vec<&String> = self.entries.iter().flat_map(|e| &e.tags).collect();
        tags.sort();
        tags.dedup();
        tags.len()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.entries.len(),
            bytes: self.bytes(),
            ..self.stats
        }
    }
}

fn contents(store: &L1Store<u8, u32>) -> Vec<Entry> {
    store
        .iter()
        .map(|(k, e)| Entry {
            key: *k,
            value: *e.value,
            windows: e.windows,
            size: e.size,
            tags: e.tags.to_vec(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Admission off: the store is exactly an LRU bounded by entries and bytes.
    #[test]
    fn store_without_admission_matches_the_lru_model(
        max_entries in 0usize..6,
        max_bytes in 0usize..40,
        ops in proptest::collection::vec(op(8, 24), 1..120),
    ) {
        let config = StoreConfig::new(max_entries, max_bytes).with_admission(Admission::None);
        let mut store: L1Store<u8, u32> = L1Store::new(config);
        let mut model = Model::new(max_entries, max_bytes);
        let mut now = Timestamp::from_millis(1_000);
        for op in ops {
            match op {
                Op::Insert { key, value, fresh, swr, sie, size, tags } => {
                    let windows = Windows::from_lifetimes(now, fresh, swr, sie);
                    let tags = tags_of(&tags);
                    let meta = EntryMeta::new(windows, size).with_tags(tags.clone());
                    let got = store.insert(key, value, meta, now);
                    let want = model.insert(Entry { key, value, windows, size, tags }, now);
                    prop_assert_eq!(got, want);
                }
                Op::Get(key) => prop_assert_eq!(store.get(&key, now), model.get(key, now)),
                Op::Peek(key) => {
                    let got = store.peek(&key).map(|e| (*e.value, e.windows, e.size));
                    let want = model
                        .position(key)
                        .map(|i| &model.entries[i])
                        .map(|e| (e.value, e.windows, e.size));
                    prop_assert_eq!(got, want);
                }
                Op::Remove(key) => prop_assert_eq!(store.remove(&key), model.remove(key)),
                Op::PurgeTag(t) => prop_assert_eq!(store.purge_tag(TAGS[t]), model.purge_tag(TAGS[t])),
                Op::SoftPurge(key) => prop_assert_eq!(
                    store.soft_purge(&key, now),
                    model.soft_purge_where(now, |e| e.key == key) == 1
                ),
                Op::SoftPurgeTag(t) => prop_assert_eq!(
                    store.soft_purge_tag(TAGS[t], now),
                    model.soft_purge_where(now, |e| e.tags.iter().any(|x| x == TAGS[t]))
                ),
                Op::RemoveExpired => prop_assert_eq!(store.remove_expired(now), model.remove_expired(now)),
                Op::Clear => {
                    store.clear();
                    model.clear();
                }
                Op::Advance(ms) => now = now.plus_millis(ms),
            }
            prop_assert_eq!(contents(&store), model.entries.clone());
            prop_assert_eq!(store.stats(), model.stats());
            prop_assert_eq!(store.tag_count(), model.tag_count());
            prop_assert_eq!(store.len(), model.entries.len());
            prop_assert_eq!(store.bytes(), model.bytes());
        }
    }

    /// Admission on: invariants that hold whatever admission decides.
    #[test]
    fn store_with_admission_keeps_its_invariants(
        max_entries in 1usize..8,
        max_bytes in 1usize..60,
        ops in proptest::collection::vec(op(24, 20), 1..200),
    ) {
        let mut store: L1Store<u8, u32> = L1Store::new(StoreConfig::new(max_entries, max_bytes));
        // What the store may hold for each key: the latest stored value and its windows.
        let mut latest: HashMap<u8, (u32, Windows, Vec<String>)> = HashMap::new();
        let mut gets = 0u64;
        let mut now = Timestamp::from_millis(1_000);
        for op in ops {
            match op {
                Op::Insert { key, value, fresh, swr, sie, size, tags } => {
                    let windows = Windows::from_lifetimes(now, fresh, swr, sie);
                    let tags = tags_of(&tags);
                    let was_resident = store.contains(&key);
                    let meta = EntryMeta::new(windows, size).with_tags(tags.clone());
                    match store.insert(key, value, meta, now) {
                        InsertOutcome::Inserted => {
                            prop_assert!(!was_resident);
                            latest.insert(key, (value, windows, tags));
                        }
                        InsertOutcome::Replaced => {
                            prop_assert!(was_resident);
                            latest.insert(key, (value, windows, tags));
                        }
                        InsertOutcome::Rejected => {
                            prop_assert!(!was_resident, "updates are always accepted");
                            prop_assert!(!store.contains(&key));
                        }
                        InsertOutcome::TooLarge => {
                            prop_assert!(size > max_bytes);
                            prop_assert!(!store.contains(&key));
                            latest.remove(&key);
                        }
                    }
                }
                Op::Get(key) => {
                    gets += 1;
                    let lookup = store.get(&key, now);
                    if let Some(hit) = lookup.hit() {
                        let (value, windows, _) = latest.get(&key).expect("a hit was stored");
                        prop_assert_eq!(hit.value, *value);
                        prop_assert_eq!(hit.windows, *windows);
                        prop_assert!(!hit.windows.is_expired(now), "served an expired entry");
                        prop_assert_eq!(lookup.is_fresh(), hit.windows.is_fresh(now));
                    } else {
                        prop_assert!(!store.contains(&key));
                    }
                }
                Op::Peek(key) => {
                    if let Some(e) = store.peek(&key) {
                        let (value, windows, tags) = &latest[&key];
                        prop_assert_eq!((*e.value, e.windows), (*value, *windows));
                        prop_assert_eq!(e.tags, &tags[..]);
                    }
                }
                Op::Remove(key) => {
                    let resident = store.contains(&key);
                    prop_assert_eq!(store.remove(&key), resident);
                    prop_assert!(!store.contains(&key));
                    latest.remove(&key);
                }
                Op::PurgeTag(t) => {
                    let tagged: Vec<u8> = store
                        .iter()
                        .filter(|(_, e)| e.tags.iter().any(|x| x == TAGS[t]))
                        .map(|(k, _)| *k)
                        .collect();
                    let untagged = store.len() - tagged.len();
                    prop_assert_eq!(store.purge_tag(TAGS[t]), tagged.len());
                    prop_assert_eq!(store.len(), untagged);
                    prop_assert!(store.iter().all(|(_, e)| !e.tags.iter().any(|x| x == TAGS[t])));
                    for k in tagged {
                        latest.remove(&k);
                    }
                }
                Op::SoftPurge(key) => {
                    let resident = store.contains(&key);
                    prop_assert_eq!(store.soft_purge(&key, now), resident);
                    if resident {
                        let entry = latest.get_mut(&key).unwrap();
                        entry.1 = entry.1.made_stale_at(now);
                        prop_assert!(!store.peek(&key).unwrap().windows.is_fresh(now));
                    }
                }
                Op::SoftPurgeTag(t) => {
                    let tagged: Vec<u8> = store
                        .iter()
                        .filter(|(_, e)| e.tags.iter().any(|x| x == TAGS[t]))
                        .map(|(k, _)| *k)
                        .collect();
                    prop_assert_eq!(store.soft_purge_tag(TAGS[t], now), tagged.len());
                    for k in tagged {
                        let entry = latest.get_mut(&k).unwrap();
                        entry.1 = entry.1.made_stale_at(now);
                    }
                }
                Op::RemoveExpired => {
                    store.remove_expired(now);
                    prop_assert!(store.iter().all(|(_, e)| !e.windows.is_expired(now)));
                }
                Op::Clear => {
                    store.clear();
                    prop_assert!(store.is_empty());
                    latest.clear();
                }
                Op::Advance(ms) => now = now.plus_millis(ms),
            }
            let stats = store.stats();
            prop_assert!(store.len() <= max_entries);
            prop_assert!(store.bytes() <= max_bytes);
            prop_assert_eq!(stats.entries, store.len());
            prop_assert_eq!(stats.bytes, store.bytes());
            prop_assert_eq!(store.iter().count(), store.len());
            prop_assert_eq!(store.iter().map(|(_, e)| e.size).sum::<usize>(), store.bytes());
            prop_assert_eq!(
                stats.inserts - stats.evictions - stats.expirations - stats.purged,
                store.len() as u64
            );
            prop_assert_eq!(stats.hits + stats.stale_hits + stats.misses, gets);
            // Every resident entry is the latest stored for its key.
            for (k, e) in store.iter() {
                let (value, windows, tags) = &latest[k];
                prop_assert_eq!((*e.value, e.windows), (*value, *windows));
                prop_assert_eq!(e.tags, &tags[..]);
            }
        }
    }
}
