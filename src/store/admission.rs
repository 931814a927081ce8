//! TinyLFU admission: a small approximate frequency histogram that decides whether a new key
//! is worth the entry it would evict.
//!
//! After Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy"
//! (ACM Transactions on Storage 13(4), 2017), in the blocked layout Caffeine uses:
//!
//! - a count-min sketch with four rows of counters saturating at 15 (TinyLFU's 4-bit range,
//!   stored a byte each so they update without variable shifts);
//! - a *doorkeeper* Bloom filter in front of it: a key's first sighting in a sample period only
//!   sets doorkeeper bits, so one-hit wonders never reach the counters, and the estimate adds
//!   one when the doorkeeper holds the key;
//! - *aging*: after a sample period of recorded accesses (a multiple of the capacity) every
//!   counter is halved and the doorkeeper cleared, so the histogram follows a changing
//!   popularity.
//!
//! A key's four counters and its doorkeeper bits all live in one 64-byte block, so recording
//! or estimating an access touches exactly one cache line.
//!
//! The store records every `get` and `insert` here and, when a new key would force an eviction,
//! admits it only if its estimate is strictly greater than the victim's. Everything works on
//! the 64-bit hash the store already computed for the key: nothing here hashes a key again.
//!
//! An attacker who can pick keys that collide in the sketch could make a victim look popular;
//! the estimate is bounded (at most 16) and ages away, so the worst case is a lower hit ratio,
//! never an unbounded store or a wrong response.

use alloc::vec;
use alloc::vec::Vec;

/// One cache line holding everything a key touches: four rows of eight counters (one byte
/// each, saturating at [`COUNTER_MAX`]) and a 256-bit doorkeeper segment.
///
/// Byte counters cost more bits than Caffeine's nibbles but are read and written without
/// variable shifts, which the baseline x86-64 target turns into slow multi-uop instructions.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Block {
    counters: [u8; 32],
    door: [u64; 4],
}

/// Counters saturate here, as TinyLFU's 4-bit counters do.
const COUNTER_MAX: u8 = 15;

/// Entries of (power-of-two rounded) capacity per block: 16 counters (4 per row) and 128
/// doorkeeper bits per entry.
const ENTRIES_PER_BLOCK: usize = 2;

/// The sample period (accesses between agings) in multiples of the capacity. TinyLFU's
/// paper and Caffeine use 10; on the skewed traces an edge cache sees, keys near the
/// admission boundary are requested about once per 10 x capacity accesses, too rarely for
/// their counts to rise above noise. A longer period (measured in `BENCHMARKS.md`: about +6
/// hit-ratio points on Zipf 0.9) separates them; popularity still halves every period.
const SAMPLE_FACTOR: usize = 64;

/// Tiny stores still get a 4 KiB sketch, so their few keys rarely share counters.
const MIN_BLOCKS: usize = 64;

/// The largest capacity the sketch is sized for; bigger stores share counters (still correct,
/// just coarser) rather than allocating more.
const MAX_SIZED_CAPACITY: usize = 1 << 24;

/// An approximate, aging frequency histogram over 64-bit key hashes (TinyLFU).
#[derive(Clone, Debug)]
pub struct FrequencySketch {
    blocks: Vec<Block>,
    block_mask: usize,
    additions: u64,
    sample_size: u64,
    epoch: u32,
}

impl FrequencySketch {
    /// A sketch sized for a cache of `capacity` entries (32 to 64 bytes per entry).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_SIZED_CAPACITY);
        let blocks = (capacity.next_power_of_two() / ENTRIES_PER_BLOCK).max(MIN_BLOCKS);
        FrequencySketch {
            blocks: vec![Block::default(); blocks],
            block_mask: blocks - 1,
            additions: 0,
            sample_size: (SAMPLE_FACTOR * capacity) as u64,
            epoch: 0,
        }
    }

    /// Records one access to the key with this hash: the first in a sample period only
    /// enters the doorkeeper, later ones increment the key's four counters (saturating).
    ///
    /// Returns true if the key is now *saturated*: doorkeeper set and all four counters at
    /// their maximum, so that further increments change nothing until the next aging (see
    /// [`FrequencySketch::epoch`] and [`FrequencySketch::increment_saturated`]).
    #[inline]
    pub fn increment(&mut self, hash: u64) -> bool {
        let h = spread(hash);
        let block = &mut self.blocks[(h >> 40) as usize & self.block_mask];
        let (word, bits) = door_bits(h);
        // Branch-free: which way these go is data-dependent and would mispredict often.
        let seen = u8::from(block.door[word] & bits == bits);
        block.door[word] |= bits;
        let mut min = COUNTER_MAX;
        for row in 0..4 {
            let c = &mut block.counters[counter_index(h, row)];
            *c += seen & u8::from(*c < COUNTER_MAX);
            min = min.min(*c);
        }
        self.tick() & (seen == 1) & (min == COUNTER_MAX)
    }

    /// Records one access to a key known to be saturated in the current epoch: the same
    /// effect as [`FrequencySketch::increment`] (its counters cannot move), without touching
    /// its block. Only valid while [`FrequencySketch::epoch`] is the epoch in which
    /// `increment` reported that key saturated.
    #[inline]
    pub fn increment_saturated(&mut self) {
        self.tick();
    }

    /// The number of agings so far (wrapping). Saturation reported by
    /// [`FrequencySketch::increment`] holds until it changes.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Counts an access toward the sample period and ages at its end. Returns false if it
    /// aged.
    #[inline]
    fn tick(&mut self) -> bool {
        self.additions += 1;
        if self.additions >= self.sample_size {
            self.age();
            return false;
        }
        true
    }

    /// The estimated number of accesses to the key with this hash in the recent past
    /// (0 to 16): the smallest of its four counters, plus one if the doorkeeper holds it.
    #[inline]
    pub fn frequency(&self, hash: u64) -> u8 {
        let h = spread(hash);
        let block = &self.blocks[(h >> 40) as usize & self.block_mask];
        let c = &block.counters;
        let min = c[counter_index(h, 0)]
            .min(c[counter_index(h, 1)])
            .min(c[counter_index(h, 2)])
            .min(c[counter_index(h, 3)]);
        let (word, bits) = door_bits(h);
        min + u8::from(block.door[word] & bits == bits)
    }

    /// Accesses recorded since the last aging (halved by each aging).
    pub fn additions(&self) -> u64 {
        self.additions
    }

    /// How many accesses trigger an aging: halve every counter, clear the doorkeeper.
    pub fn sample_size(&self) -> u64 {
        self.sample_size
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.blocks.iter_mut().for_each(|b| *b = Block::default());
        self.additions = 0;
    }

    /// Halves every counter and clears the doorkeeper (the TinyLFU "reset" operation).
    fn age(&mut self) {
        for block in &mut self.blocks {
            block.counters.iter_mut().for_each(|c| *c >>= 1);
            block.door = [0; 4];
        }
        self.additions /= 2;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

/// Index of the key's counter in row `row` (hash bits 0..12, three per row).
#[inline]
fn counter_index(h: u64, row: usize) -> usize {
    row * 8 + ((h >> (row * 3)) & 7) as usize
}

/// The key's doorkeeper word in its block and its three bits there (hash bits 16..34): a
/// blocked Bloom filter, one word per key.
#[inline]
fn door_bits(h: u64) -> (usize, u64) {
    let word = ((h >> 16) & 3) as usize;
    let bits = (1u64 << ((h >> 18) & 63)) | (1u64 << ((h >> 24) & 63)) | (1u64 << ((h >> 30) & 63));
    (word, bits)
}

/// Remixes the store's key hash so every bit the sketch uses depends on every input bit
/// (the store's hasher is built for hash tables, which only need some of them).
#[inline]
fn spread(hash: u64) -> u64 {
    let h = (hash ^ (hash >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(i: u64) -> u64 {
        // splitmix64: stands in for the store's key hash.
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn doorkeeper_absorbs_first_sighting() {
        let mut s = FrequencySketch::new(1000);
        let h = mix(1);
        assert_eq!(s.frequency(h), 0);
        s.increment(h);
        assert_eq!(
            s.frequency(h),
            1,
            "first sighting lives in the doorkeeper only"
        );
        s.increment(h);
        assert_eq!(s.frequency(h), 2);
    }

    #[test]
    fn counters_saturate_at_fifteen_plus_doorkeeper() {
        let mut s = FrequencySketch::new(1000);
        let h = mix(7);
        for _ in 0..100 {
            s.increment(h);
        }
        assert_eq!(s.frequency(h), 16);
    }

    #[test]
    fn frequent_keys_outrank_rare_ones() {
        let mut s = FrequencySketch::new(1000);
        for round in 0..5 {
            for k in 0..50 {
                s.increment(mix(k));
            }
            for k in 0..200 {
                s.increment(mix(10_000 + round * 1000 + k));
            }
        }
        let hot = (0..50).map(|k| s.frequency(mix(k)) as u32).sum::<u32>() / 50;
        let cold = (0..200)
            .map(|k| s.frequency(mix(14_000 + k)) as u32)
            .sum::<u32>()
            / 200;
        assert!(hot >= 4, "hot estimate {hot}");
        assert!(cold <= 1, "cold estimate {cold}");
    }

    #[test]
    fn aging_halves_counters_and_clears_doorkeeper() {
        let mut s = FrequencySketch::new(1000);
        let (h, other) = (mix(3), mix(4));
        for _ in 0..9 {
            s.increment(h);
        }
        assert_eq!(s.frequency(h), 9);
        // Fill the rest of the sample period with another key: the last access ages.
        let before = s.additions();
        for _ in 0..(s.sample_size() - before) {
            s.increment(other);
        }
        assert_eq!(s.additions(), s.sample_size() / 2);
        // Counters were 8 (plus the doorkeeper's 1): now 4, and the doorkeeper is empty.
        assert_eq!(s.frequency(h), 4);
        assert_eq!(s.frequency(other), 7);
    }

    #[test]
    fn clear_forgets() {
        let mut s = FrequencySketch::new(100);
        for _ in 0..5 {
            s.increment(mix(9));
        }
        s.clear();
        assert_eq!(s.frequency(mix(9)), 0);
        assert_eq!(s.additions(), 0);
    }
}
