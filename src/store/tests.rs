//! Unit tests of the L1 store: windows, bounds, accounting, tags, purges, stats, admission.

use super::*;
use alloc::string::ToString;
use alloc::vec;
use core::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: a fixed-seed hasher, so admission decisions in these tests are reproducible.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // A final avalanche, since FNV's high bits are weak for small integer keys.
        let mut z = self.0 ^ 0xcbf2_9ce4_8422_2325;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

type Fixed = BuildHasherDefault<Fnv>;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn lru(max_entries: usize, max_bytes: usize) -> L1Store<u32, u32, Fixed> {
    L1Store::with_hasher(
        StoreConfig::new(max_entries, max_bytes).with_admission(Admission::None),
        Fixed::default(),
    )
}

fn tinylfu(max_entries: usize, max_bytes: usize) -> L1Store<u32, u32, Fixed> {
    L1Store::with_hasher(StoreConfig::new(max_entries, max_bytes), Fixed::default())
}

/// Fresh for a long time, stale windows of the same length after that.
fn meta(size: usize) -> EntryMeta {
    EntryMeta::new(Windows::from_lifetimes(t(0), 1_000_000, 1_000, 1_000), size)
}

fn keys(store: &L1Store<u32, u32, Fixed>) -> Vec<u32> {
    store.iter().map(|(k, _)| *k).collect()
}

fn check_accounting<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone>(
    store: &L1Store<K, V, S>,
) {
    let s = store.stats();
    assert_eq!(s.entries, store.len());
    assert_eq!(s.bytes, store.iter().map(|(_, e)| e.size).sum::<usize>());
    assert_eq!(
        s.inserts - s.evictions - s.expirations - s.purged,
        store.len() as u64,
        "{s:?}"
    );
    assert!(store.len() <= store.config().max_entries);
    assert!(store.bytes() <= store.config().max_bytes);
}

#[test]
fn classification_at_window_boundaries() {
    let mut s = lru(10, 1000);
    let w = Windows::new(t(100), t(1000), t(2000), t(3000));
    assert_eq!(
        s.insert(1, 10, EntryMeta::new(w, 1), t(100)),
        InsertOutcome::Inserted
    );
    let expect_hit = |l: Lookup<u32>| {
        let h = l.into_hit().expect("hit");
        assert_eq!((h.value, h.windows, h.size), (10, w, 1));
    };
    let fresh = s.get(&1, t(999));
    assert!(fresh.is_fresh());
    expect_hit(fresh);
    // RFC 9111 §4.2: fresh while age < lifetime, so stale exactly at fresh_until.
    let at_fresh_end = s.get(&1, t(1000));
    assert!(at_fresh_end.is_stale());
    assert_eq!(
        at_fresh_end.hit().unwrap().state(t(1000)),
        EntryState::StaleWhileRevalidate
    );
    expect_hit(at_fresh_end);
    let late = s.get(&1, t(1999));
    assert_eq!(
        late.hit().unwrap().state(t(1999)),
        EntryState::StaleWhileRevalidate
    );
    let sie = s.get(&1, t(2000));
    assert!(sie.is_stale());
    assert_eq!(sie.hit().unwrap().state(t(2000)), EntryState::StaleIfError);
    assert!(s.get(&1, t(2999)).is_stale());
    // Past every window: expired, removed, counted, a miss.
    assert!(s.get(&1, t(3000)).is_miss());
    assert_eq!(s.len(), 0);
    assert_eq!(s.bytes(), 0);
    let st = s.stats();
    assert_eq!(
        (st.hits, st.stale_hits, st.misses, st.expirations),
        (1, 4, 1, 1)
    );
    check_accounting(&s);
}

#[test]
fn windows_helpers() {
    let w = Windows::from_lifetimes(t(1000), 500, 200, 700);
    assert_eq!(w.fresh_until, t(1500));
    assert_eq!(w.stale_while_revalidate_until, t(1700));
    assert_eq!(w.stale_if_error_until, t(2200));
    assert_eq!(w.expires_at(), t(2200));
    assert_eq!(w.state(t(1499)), EntryState::Fresh);
    assert_eq!(w.state(t(1500)), EntryState::StaleWhileRevalidate);
    assert_eq!(w.state(t(1700)), EntryState::StaleIfError);
    assert_eq!(w.state(t(2200)), EntryState::Expired);
    assert!(w.is_fresh(t(1499)) && !w.is_fresh(t(1500)));
    assert!(!w.is_expired(t(2199)) && w.is_expired(t(2200)));
    assert_eq!(w.ttl_millis(t(1000)), 500);
    assert_eq!(w.ttl_millis(t(2000)), -500);
    let none = Windows::fresh_for(t(0), 10);
    assert_eq!(none.expires_at(), t(10));
    assert_eq!(none.state(t(10)), EntryState::Expired);
    // Made stale: freshness ends now, stale windows keep their lengths from there.
    assert_eq!(
        w.made_stale_at(t(1200)),
        Windows::new(t(1000), t(1200), t(1400), t(1900))
    );
    assert_eq!(w.made_stale_at(t(1600)), w, "already stale: unchanged");
    // A stale-while-revalidate window that ends before freshness does never applies.
    let odd = Windows::new(t(0), t(100), t(50), t(150));
    assert_eq!(odd.state(t(100)), EntryState::StaleIfError);
}

#[test]
fn entry_bound_evicts_least_recently_used() {
    let mut s = lru(3, 1000);
    for k in 0..3 {
        assert_eq!(s.insert(k, k, meta(1), t(0)), InsertOutcome::Inserted);
    }
    assert_eq!(keys(&s), vec![2, 1, 0]);
    assert!(s.get(&0, t(1)).is_fresh()); // 0 becomes most recent
    assert_eq!(s.insert(3, 3, meta(1), t(1)), InsertOutcome::Inserted);
    assert_eq!(keys(&s), vec![3, 0, 2], "1 was least recently used");
    assert_eq!(s.len(), 3);
    assert_eq!(s.stats().evictions, 1);
    check_accounting(&s);
}

#[test]
fn byte_bound_evicts_until_it_fits() {
    let mut s = lru(100, 100);
    for k in 0..3 {
        s.insert(k, k, meta(40), t(0));
    }
    assert_eq!(keys(&s), vec![2, 1]);
    assert_eq!(s.bytes(), 80);
    // Needs 90 bytes free: evicts both others.
    assert_eq!(s.insert(9, 9, meta(90), t(0)), InsertOutcome::Inserted);
    assert_eq!(keys(&s), vec![9]);
    assert_eq!(s.bytes(), 90);
    assert_eq!(s.stats().evictions, 3);
    // Exactly max_bytes fits.
    assert_eq!(s.insert(10, 10, meta(100), t(0)), InsertOutcome::Inserted);
    assert_eq!(s.bytes(), 100);
    check_accounting(&s);
}

#[test]
fn too_large_is_refused_and_drops_the_old_entry() {
    let mut s = lru(10, 100);
    s.insert(1, 1, meta(10), t(0));
    s.insert(2, 2, meta(10), t(0));
    assert_eq!(s.insert(3, 3, meta(101), t(0)), InsertOutcome::TooLarge);
    assert_eq!(s.len(), 2);
    // Replacing with something too large removes the outdated entry.
    assert_eq!(s.insert(1, 11, meta(101), t(0)), InsertOutcome::TooLarge);
    assert!(!s.contains(&1));
    assert_eq!(s.bytes(), 10);
    let st = s.stats();
    assert_eq!((st.too_large, st.purged), (2, 1));
    check_accounting(&s);

    let mut zero = lru(0, 100);
    assert_eq!(zero.insert(1, 1, meta(1), t(0)), InsertOutcome::TooLarge);
    assert!(zero.is_empty());
}

#[test]
fn replacement_updates_bytes_and_recency() {
    let mut s = lru(10, 100);
    s.insert(1, 1, meta(10), t(0));
    s.insert(2, 2, meta(10), t(0));
    s.insert(3, 3, meta(10), t(0));
    assert_eq!(s.insert(1, 100, meta(30), t(0)), InsertOutcome::Replaced);
    assert_eq!(s.bytes(), 50);
    assert_eq!(keys(&s), vec![1, 3, 2]);
    assert_eq!(s.peek(&1).unwrap().value, &100);
    // Growing past max_bytes evicts others, least recent first, never the updated entry.
    assert_eq!(s.insert(1, 101, meta(85), t(0)), InsertOutcome::Replaced);
    assert_eq!(keys(&s), vec![1, 3]);
    assert_eq!(s.bytes(), 95);
    let st = s.stats();
    assert_eq!((st.inserts, st.updates, st.evictions), (3, 2, 1));
    // Shrinking frees bytes.
    s.insert(1, 102, meta(5), t(0));
    assert_eq!(s.bytes(), 15);
    check_accounting(&s);
}

#[test]
fn purge_tag_removes_exactly_the_tagged_entries() {
    let mut s = lru(10, 1000);
    s.insert(1, 1, meta(1).with_tags(["a", "b"]), t(0));
    s.insert(2, 2, meta(1).with_tags(["b"]), t(0));
    s.insert(3, 3, meta(1), t(0));
    s.insert(4, 4, meta(1).with_tags(["c", "c"]), t(0));
    assert_eq!(s.tag_count(), 3);
    assert_eq!(s.purge_tag("b"), 2);
    assert_eq!(keys(&s), vec![4, 3]);
    // Entry 1's other tag is gone from the index too.
    assert_eq!(s.purge_tag("a"), 0);
    assert_eq!(s.tag_count(), 1);
    assert_eq!(s.purge_tag("missing"), 0);
    assert_eq!(
        s.purge_tag("c"),
        1,
        "a duplicated tag still names one entry"
    );
    assert_eq!(s.tag_count(), 0);
    assert_eq!(s.stats().purged, 3);
    check_accounting(&s);
}

#[test]
fn tag_index_follows_eviction_replacement_removal_and_expiry() {
    let mut s = lru(2, 1000);
    s.insert(1, 1, meta(1).with_tags(["x"]), t(0));
    s.insert(2, 2, meta(1).with_tags(["x"]), t(0));
    s.insert(3, 3, meta(1), t(0)); // evicts 1
    assert_eq!(s.purge_tag("x"), 1);
    assert!(!s.contains(&2) && s.contains(&3));

    // Replacement with other tags moves the key between tags.
    s.insert(3, 3, meta(1).with_tags(["y"]), t(0));
    s.insert(3, 4, meta(1).with_tags(["z"]), t(0));
    assert_eq!(s.purge_tag("y"), 0);
    assert_eq!(s.tag_count(), 1);
    s.insert(3, 5, meta(1), t(0));
    assert_eq!(s.tag_count(), 0);

    s.insert(5, 5, meta(1).with_tags(["r"]), t(0));
    assert!(s.remove(&5));
    assert!(!s.remove(&5));
    assert_eq!(s.tag_count(), 0);

    let short = EntryMeta::new(Windows::fresh_for(t(0), 10), 1).with_tags(["e"]);
    s.insert(6, 6, short, t(0));
    assert!(s.get(&6, t(10)).is_miss());
    assert_eq!(s.tag_count(), 0);
    assert_eq!(s.purge_tag("e"), 0);
    check_accounting(&s);
}

#[test]
fn soft_purge_marks_stale_and_keeps_stale_windows() {
    let mut s = lru(10, 1000);
    let w = Windows::new(t(0), t(1000), t(2000), t(500));
    s.insert(1, 1, EntryMeta::new(w, 1).with_tags(["t"]), t(0));
    s.insert(2, 2, EntryMeta::new(w, 1).with_tags(["t"]), t(0));
    s.insert(
        3,
        3,
        EntryMeta::new(Windows::fresh_for(t(0), 1000), 1),
        t(0),
    );
    let order = keys(&s);
    assert!(s.soft_purge(&1, t(100)));
    assert!(!s.soft_purge(&9, t(100)));
    assert_eq!(keys(&s), order, "soft purge does not touch recency");
    let hit = s.get(&1, t(100)).into_hit();
    let stale = s.get(&1, t(101));
    assert!(stale.is_stale());
    // Stale from now on; the stale windows keep their lengths (1000 ms of
    // stale-while-revalidate, none of stale-if-error), counted from now (RFC 5861 §3).
    assert_eq!(
        hit.unwrap().windows,
        Windows::new(t(0), t(100), t(1100), t(100))
    );
    assert_eq!(
        stale.hit().unwrap().state(t(101)),
        EntryState::StaleWhileRevalidate
    );

    assert_eq!(s.soft_purge_tag("t", t(200)), 2);
    assert!(s.get(&2, t(200)).is_stale());
    assert_eq!(s.soft_purge_tag("none", t(200)), 0);
    // With no stale window, a soft-purged entry is simply expired.
    assert!(s.get(&3, t(299)).is_fresh());
    s.soft_purge(&3, t(300));
    assert!(s.get(&3, t(300)).is_miss());
    // Soft purge never extends anything.
    s.soft_purge(&2, t(900));
    assert_eq!(
        s.peek(&2).unwrap().windows,
        Windows::new(t(0), t(200), t(1200), t(200))
    );
    assert_eq!(s.soft_purge_all(t(400)), 2);
    assert_eq!(s.stats().soft_purged, 7);
    assert!(s.get(&1, t(1099)).is_stale());
    assert!(s.get(&1, t(1100)).is_miss());
    check_accounting(&s);
}

#[test]
fn stats_count_every_outcome() {
    let mut s = lru(2, 1000);
    assert!(s.get(&1, t(0)).is_miss());
    s.insert(
        1,
        1,
        EntryMeta::new(Windows::new(t(0), t(10), t(20), t(0)), 1),
        t(0),
    );
    s.insert(
        1,
        1,
        EntryMeta::new(Windows::new(t(0), t(10), t(20), t(0)), 1),
        t(0),
    );
    assert!(s.get(&1, t(5)).is_fresh());
    assert!(s.get(&1, t(15)).is_stale());
    assert!(s.get(&1, t(20)).is_miss());
    s.insert(2, 2, meta(1), t(20));
    s.insert(3, 3, meta(1), t(20));
    s.insert(4, 4, meta(1), t(20));
    assert!(s.remove(&4));
    s.clear();
    let st = s.stats();
    let expected = StoreStats {
        hits: 1,
        stale_hits: 1,
        misses: 2,
        inserts: 4,
        updates: 1,
        rejected: 0,
        too_large: 0,
        evictions: 1,
        expirations: 1,
        purged: 2,
        soft_purged: 0,
        entries: 0,
        bytes: 0,
    };
    assert_eq!(st, expected);
    assert!((st.hit_ratio() - 0.5).abs() < 1e-9);
    check_accounting(&s);
}

#[test]
fn expired_entries_at_the_lru_end_count_as_expirations() {
    let mut s = lru(2, 1000);
    s.insert(1, 1, EntryMeta::new(Windows::fresh_for(t(0), 10), 1), t(0));
    s.insert(2, 2, meta(1), t(0));
    s.insert(3, 3, meta(1), t(50));
    let st = s.stats();
    assert_eq!((st.evictions, st.expirations), (0, 1));
    s.insert(4, 4, EntryMeta::new(Windows::fresh_for(t(0), 60), 1), t(50));
    s.insert(5, 5, EntryMeta::new(Windows::fresh_for(t(0), 60), 1), t(50));
    assert_eq!(s.remove_expired(t(60)), 2);
    assert!(s.is_empty());
    assert_eq!(s.stats().expirations, 3);
    check_accounting(&s);
}

#[test]
fn peek_and_iter_do_not_record_accesses() {
    let mut s = lru(3, 1000);
    s.insert(1, 1, meta(1).with_tags(["a"]), t(0));
    s.insert(2, 2, meta(2), t(0));
    let before = s.stats();
    let e = s.peek(&1).unwrap();
    assert_eq!((e.value, e.size, e.tags), (&1, 1, &["a".to_string()][..]));
    assert_eq!(keys(&s), vec![2, 1]);
    assert_eq!(
        s.iter().rev().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(s.stats(), before);
    assert!(s.peek(&7).is_none());
}

#[test]
fn string_keys_are_looked_up_by_str() {
    let mut s: L1Store<String, u32> = L1Store::new(StoreConfig::new(10, 1000));
    s.insert("https://a/x".to_string(), 1, meta(1).with_tags(["p"]), t(0));
    assert_eq!(s.get("https://a/x", t(1)).into_value(), Some(1));
    assert!(s.soft_purge("https://a/x", t(2)));
    assert!(s.peek("https://a/x").is_some());
    assert!(s.remove("https://a/x"));
    assert!(s.get("https://a/x", t(3)).is_miss());
}

#[test]
fn admission_rejects_a_one_hit_wonder_over_frequent_keys() {
    let mut s = tinylfu(4, 1000);
    for k in 0..4 {
        s.insert(k, k, meta(1), t(0));
    }
    for _ in 0..5 {
        for k in 0..4 {
            assert!(s.get(&k, t(1)).is_fresh());
        }
    }
    // A key seen once (get-then-insert is one access) would evict a frequent one: refused.
    assert!(s.get(&100, t(2)).is_miss());
    assert_eq!(s.insert(100, 100, meta(1), t(2)), InsertOutcome::Rejected);
    assert!(!s.contains(&100));
    assert_eq!(s.len(), 4);
    assert!((0..4).all(|k| s.contains(&k)));
    assert_eq!(s.stats().rejected, 1);
    // Once it is requested more often than the least frequent resident, it gets in.
    let mut admitted = false;
    for _ in 0..20 {
        if hit_or_insert(&mut s, 100) {
            admitted = true;
            break;
        }
    }
    assert!(
        admitted,
        "a key requested often must eventually be admitted"
    );
    assert!(s.contains(&100));
    assert_eq!(s.len(), 4);
    check_accounting(&s);
}

/// get-or-insert in one call; whether the key is resident afterwards.
fn hit_or_insert(s: &mut L1Store<u32, u32, Fixed>, key: u32) -> bool {
    !s.get(&key, t(3)).is_miss() || s.insert(key, key, meta(1), t(3)).is_stored()
}

#[test]
fn admission_always_accepts_updates_and_fills_free_space() {
    let mut s = tinylfu(2, 1000);
    for _ in 0..10 {
        s.get(&1, t(0));
    }
    // Not full: a never-seen key is stored.
    assert_eq!(s.insert(7, 7, meta(1), t(0)), InsertOutcome::Inserted);
    assert_eq!(s.insert(1, 1, meta(1), t(0)), InsertOutcome::Inserted);
    // Full, and 7 is rare, but updating it is always accepted.
    assert_eq!(s.insert(7, 70, meta(1), t(0)), InsertOutcome::Replaced);
    assert_eq!(s.peek(&7).unwrap().value, &70);
    check_accounting(&s);
}

#[test]
fn admission_lets_expired_victims_go() {
    let mut s = tinylfu(2, 1000);
    let short = EntryMeta::new(Windows::fresh_for(t(0), 10), 1);
    s.insert(1, 1, short.clone(), t(0));
    s.insert(2, 2, short, t(0));
    for _ in 0..10 {
        s.get(&1, t(1));
        s.get(&2, t(1));
    }
    // Both residents are popular but expired: a brand-new key replaces one.
    assert_eq!(s.insert(3, 3, meta(1), t(100)), InsertOutcome::Inserted);
    assert_eq!(s.stats().expirations, 1);
    check_accounting(&s);
}

#[test]
fn get_then_insert_counts_one_access() {
    let mut s = tinylfu(8, 1000);
    let hash = s.hasher.hash_one(42u32);
    assert!(s.get(&42, t(0)).is_miss());
    s.insert(42, 42, meta(1), t(0));
    let sketch = s.sketch.as_ref().unwrap();
    assert_eq!(sketch.frequency(hash), 1, "doorkeeper only: one access");
    assert_eq!(sketch.additions(), 1);
    // An insert with no get before it is an access of its own.
    s.insert(42, 43, meta(1), t(0));
    assert_eq!(s.sketch.as_ref().unwrap().additions(), 2);
}

#[test]
fn approximate_recency_still_evicts_cold_entries() {
    // With TinyLFU, hits near the MRU end skip the relink; the store must still evict the
    // entries nobody asks for.
    let mut s = tinylfu(8, 1000);
    for k in 0..8 {
        s.insert(k, k, meta(1), t(0));
    }
    for _ in 0..20 {
        for k in 0..4 {
            s.get(&k, t(1));
        }
    }
    for k in 100..104 {
        let admitted =
            (0..10).any(|_| s.get(&k, t(1)).is_miss() && s.insert(k, k, meta(1), t(1)).is_stored());
        assert!(admitted, "{k} never admitted: {:?}", keys(&s));
    }
    assert!((0..4).all(|k| s.contains(&k)), "{:?}", keys(&s));
    assert!((4..8).all(|k| !s.contains(&k)), "{:?}", keys(&s));
    check_accounting(&s);
}

#[test]
fn clear_empties_but_keeps_counters() {
    let mut s = lru(4, 100);
    s.insert(1, 1, meta(10).with_tags(["a"]), t(0));
    s.get(&1, t(0));
    s.clear();
    assert!(s.is_empty());
    assert_eq!((s.bytes(), s.tag_count()), (0, 0));
    assert_eq!(s.stats().hits, 1);
    assert_eq!(s.stats().purged, 1);
    assert_eq!(s.insert(1, 1, meta(10), t(0)), InsertOutcome::Inserted);
    check_accounting(&s);
}

/// Bytes reserved for an entry still arriving count against `max_bytes`: reserving
/// evicts least-recently-used entries for them, inserts respect them, and releasing them
/// makes room again. A reservation that can never fit is refused and changes nothing.
#[test]
fn reserved_bytes_count_against_the_bound() {
    let mut s = lru(10, 100);
    for k in 0..4 {
        s.insert(k, k, meta(20), t(0));
    }
    assert!(s.reserve(&9, 30, t(1)));
    assert_eq!((s.reserved(), s.bytes()), (30, 60), "the LRU entry left");
    assert_eq!(keys(&s), vec![3, 2, 1]);
    s.insert(5, 5, meta(20), t(2));
    assert_eq!(s.bytes() + s.reserved(), 90);
    s.insert(6, 6, meta(20), t(2));
    assert!(s.bytes() + s.reserved() <= 100);
    assert!(
        !s.contains(&1),
        "evicted for the insert, around the reservation"
    );
    assert!(!s.reserve(&9, 71, t(3)), "30 + 71 can never fit in 100");
    assert_eq!(s.reserved(), 30);
    s.release(30);
    assert_eq!(s.reserved(), 0);
    assert_eq!(s.insert(9, 9, meta(60), t(4)), InsertOutcome::Inserted);
    assert!(s.bytes() <= 100);
    s.release(5);
    assert_eq!(s.reserved(), 0, "releasing more than is held holds nothing");
    check_accounting(&s);
}

/// With TinyLFU, a reservation for a key rarer than what it would evict is refused, as
/// its insert would be: a scan of large cold objects cannot flush the hot set while they
/// arrive.
#[test]
fn admission_refuses_a_reservation_for_a_rare_key() {
    let mut s = tinylfu(4, 40);
    for k in 0..4 {
        s.insert(k, k, meta(10), t(0));
    }
    for _ in 0..5 {
        for k in 0..4 {
            assert!(s.get(&k, t(1)).is_fresh());
        }
    }
    assert!(s.get(&100, t(2)).is_miss());
    assert!(!s.reserve(&100, 10, t(2)));
    assert_eq!((s.reserved(), s.len(), s.stats().rejected), (0, 4, 1));
    let mut roomy = tinylfu(4, 100);
    roomy.insert(1, 1, meta(10), t(0));
    assert!(
        roomy.reserve(&100, 50, t(1)),
        "room to spare: no admission check"
    );
    check_accounting(&s);
}

/// `insert_admitted` stores a key TinyLFU would refuse (a part of an entry already
/// admitted), evicting least-recently-used entries for it; `insert` still refuses it.
#[test]
fn insert_admitted_skips_admission() {
    let mut s = tinylfu(4, 1000);
    for k in 0..4 {
        s.insert(k, k, meta(1), t(0));
    }
    for _ in 0..5 {
        for k in 0..4 {
            assert!(s.get(&k, t(1)).is_fresh());
        }
    }
    assert_eq!(s.insert(100, 100, meta(1), t(2)), InsertOutcome::Rejected);
    assert_eq!(
        s.insert_admitted(100, 100, meta(1), t(2)),
        InsertOutcome::Inserted
    );
    assert!(s.contains(&100));
    assert_eq!(s.len(), 4, "the least recently used entry made room");
    check_accounting(&s);
}

/// Review finding 8: `reserve` judged the key by the sketch's estimate, but a resident
/// key's hits are counted in its entry (`Slot::freq`), not in the sketch, so the hottest
/// resident key looked as rare as a one-off URL. A resident key's new version (a
/// revalidation answered `200`, streamed as a fill) was then refused room whenever L1 was
/// full, though `insert` of a resident key is never subject to admission (`Replaced`).
#[test]
fn a_reservation_for_a_resident_hot_key_is_not_refused() {
    let mut s = tinylfu(10, 40);
    for k in 0..4 {
        s.insert(k, k, meta(10), t(0));
    }
    for _ in 0..5 {
        for k in 0..4 {
            assert!(s.get(&k, t(1)).is_fresh());
        }
    }
    assert!(
        s.reserve(&0, 10, t(2)),
        "the new version of resident key 0, as hot as any, was refused room"
    );
    check_accounting(&s);
}
