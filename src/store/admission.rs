//! TinyLFU admission: a small approximate frequency histogram that decides whether a new key
//! is worth the entry it would evict.
//!
//! After Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy"
//! (ACM Transactions on Storage 13(4), 2017), in the blocked layout Caffeine uses:
//!
//! - a count-min sketch with four rows of 4-bit counters saturating at 15 (TinyLFU's range),
//!   a key's four counters packed in one 64-bit word so that they update together with a few
//!   mask operations;
//! - a *doorkeeper* Bloom filter in front of it: a key's first sighting in a sample period only
//!   sets doorkeeper bits, so one-hit wonders never reach the counters, and the estimate adds
//!   one when the doorkeeper holds the key;
//! - *aging*: after a sample period of recorded accesses (a multiple of the capacity) every
//!   counter is halved and the doorkeeper cleared, so the histogram follows a changing
//!   popularity.
//!
//! A key's four counters and its doorkeeper bits all live in one 64-byte block, so recording
//! or estimating an access touches exactly one cache line, and the whole sketch takes 8 bytes
//! per entry of capacity (128 KiB for 10,000 entries), small enough to stay in a core's L2
//! cache next to the store's hash table.
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

/// One cache line holding everything of eight keys (of the power-of-two rounded capacity):
/// four words of counters and a 256-bit doorkeeper segment.
///
/// A key's four counters are four 4-bit nibbles of *one* counter word, one nibble in each
/// 16-bit lane (the lane is the count-min row, the nibble within it the row's hash). So an
/// update reads and writes one word with a handful of mask operations, and no variable
/// shifts (which the baseline x86-64 target turns into slow multi-uop instructions).
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Block {
    counters: [u64; 4],
    door: [u64; 4],
}

/// Counters saturate here, as TinyLFU's 4-bit counters do.
const COUNTER_MAX: u64 = 15;

/// Entries of (power-of-two rounded) capacity per block: 8 counters and 32 doorkeeper bits
/// per entry, 8 bytes in all, as in Caffeine's sketch. Measured against 2 per block (32 bytes
/// per entry): the same hit ratios on the Zipf traces of `BENCHMARKS.md` within 0.1 point,
/// with a quarter of the memory, so the sketch stays in the L2 cache next to the table.
const ENTRIES_PER_BLOCK: usize = 8;

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
    /// A sketch sized for a cache of `capacity` entries (8 to 16 bytes per entry).
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
    #[inline(always)]
    pub fn increment(&mut self, hash: u64) -> bool {
        let h = spread(hash);
        let (seen, bumped) = self.bump(h);
        let mask = NIBBLE_MASKS[(h & 0xff) as usize];
        self.tick() & seen & (mask & !full_nibbles(bumped) == 0)
    }

    /// The access itself, for the spread hash `h`: the doorkeeper bit is set, and if it
    /// was set already the key's four counters go up by one (saturating). Returns whether
    /// the doorkeeper had seen the key, and the key's counter word after.
    #[inline(always)]
    fn bump(&mut self, h: u64) -> (bool, u64) {
        let block = &mut self.blocks[(h >> 40) as usize & self.block_mask];
        let (word, bits) = door_bits(h);
        // Branch-free: which way these go is data-dependent and would mispredict often.
        let seen = block.door[word] & bits == bits;
        block.door[word] |= bits;
        let mask = NIBBLE_MASKS[(h & 0xff) as usize];
        let w = &mut block.counters[counter_word(h)];
        // Adding 1 to each of the key's nibbles that is below the maximum never carries.
        let bumped = *w + (mask & !full_nibbles(*w) & 0u64.wrapping_sub(u64::from(seen)));
        *w = bumped;
        (seen, bumped)
    }

    /// Records one access to a key known to be saturated in the current epoch: the same
    /// effect as [`FrequencySketch::increment`] (its counters cannot move), without touching
    /// its block. Only valid while [`FrequencySketch::epoch`] is the epoch in which
    /// `increment` reported that key saturated.
    #[inline]
    pub fn increment_saturated(&mut self) {
        self.tick();
    }

    /// Records one access to a key that is not resident, as [`FrequencySketch::increment`]
    /// does, and returns the key's estimate after it (to judge its admission, and to seed the
    /// entry's own [`Freq`] if it is admitted).
    #[inline(always)]
    pub(crate) fn record_miss(&mut self, hash: u64) -> Freq {
        let h = spread(hash);
        let (_, bumped) = self.bump(h);
        // The estimate is taken before `tick` may age the sketch; `Freq` ages the same way.
        let freq = Freq::new(min_nibble(bumped, h), true, self.epoch);
        self.tick();
        freq
    }

    /// Counts one access to a resident key toward the sample period. The access itself is
    /// recorded in the entry's [`Freq`], not here: hits never touch the sketch's blocks.
    #[inline(always)]
    pub(crate) fn record_resident(&mut self) {
        self.tick();
    }

    /// The key's current estimate, as a [`Freq`] (see [`FrequencySketch::frequency`]).
    #[inline]
    pub(crate) fn estimate(&self, hash: u64) -> Freq {
        let h = spread(hash);
        let block = &self.blocks[(h >> 40) as usize & self.block_mask];
        let (word, bits) = door_bits(h);
        let door = block.door[word] & bits == bits;
        Freq::new(
            min_nibble(block.counters[counter_word(h)], h),
            door,
            self.epoch,
        )
    }

    /// Folds what a resident key's entry counted back into the sketch when the entry leaves
    /// (eviction, expiry, purge), so that its history survives it: each of the key's counters
    /// becomes at least the entry's count (a conservative update, so estimates stay upper
    /// bounds, as count-min estimates are), and the doorkeeper holds it if the entry's did.
    pub(crate) fn merge(&mut self, hash: u64, freq: Freq) {
        let (count, door) = freq.parts(self.epoch);
        let h = spread(hash);
        let block = &mut self.blocks[(h >> 40) as usize & self.block_mask];
        if door {
            let (word, bits) = door_bits(h);
            block.door[word] |= bits;
        }
        let w = &mut block.counters[counter_word(h)];
        for row in 0..4 {
            let shift = nibble_shift(h, row);
            let n = (*w >> shift) & COUNTER_MAX;
            if n < u64::from(count) {
                *w += (u64::from(count) - n) << shift;
            }
        }
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
        self.estimate(hash).estimate(self.epoch)
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
        // Saturation reported before no longer holds.
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Halves every counter and clears the doorkeeper (the TinyLFU "reset" operation).
    /// Out of line: it runs once per sample period, and inlined it would bloat `increment`.
    #[cold]
    #[inline(never)]
    fn age(&mut self) {
        for block in &mut self.blocks {
            block
                .counters
                .iter_mut()
                .for_each(|w| *w = (*w >> 1) & HALF_MASK);
            block.door = [0; 4];
        }
        self.additions /= 2;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

/// The key's counter word in its block (hash bits 8..10).
#[inline]
fn counter_word(h: u64) -> usize {
    ((h >> 8) & 3) as usize
}

/// Bit offset of the key's nibble in row (lane) `row` of its counter word: lane `row` is
/// bits `16 * row..16 * row + 16`, and hash bits `2 * row..2 * row + 2` pick one of its four
/// nibbles.
#[inline]
const fn nibble_shift(h: u64, row: usize) -> u64 {
    16 * row as u64 + 4 * ((h >> (2 * row)) & 3)
}

/// For each value of the hash's low byte, the key's four nibbles as a mask with the lowest
/// bit of each set: adding it increments the four counters at once.
const NIBBLE_MASKS: [u64; 256] = {
    let mut masks = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut row = 0;
        while row < 4 {
            masks[i] |= 1 << nibble_shift(i as u64, row);
            row += 1;
        }
        i += 1;
    }
    masks
};

/// The smallest of the key's four counters in its counter word `w`.
#[inline]
fn min_nibble(w: u64, h: u64) -> u8 {
    let mut min = COUNTER_MAX;
    for row in 0..4 {
        min = min.min((w >> nibble_shift(h, row)) & COUNTER_MAX);
    }
    min as u8
}

/// The lowest bit of every nibble.
const NIBBLE_LOW_BITS: u64 = 0x1111_1111_1111_1111;

/// The lowest bit of each nibble of `w` that is at [`COUNTER_MAX`] (all four bits set).
#[inline]
const fn full_nibbles(w: u64) -> u64 {
    w & (w >> 1) & (w >> 2) & (w >> 3) & NIBBLE_LOW_BITS
}

/// Clears the top bit of every nibble after a word is shifted right by one: halves all
/// sixteen counters at once.
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

/// The key's doorkeeper word in its block and its three bits there (hash bits 16..36): a
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

/// A resident key's frequency, kept in its entry rather than in the sketch: the same counter
/// (0 to 15) and doorkeeper bit the sketch would hold for it, and the epoch they are as of.
///
/// The store seeds it from the sketch when it admits the key, counts the entry's hits here
/// (so a hit touches no sketch block: the entry's cache line is already loaded) and
/// [`FrequencySketch::merge`]s it back when the entry leaves. Aging is lazy: a `Freq` read
/// in a later epoch is halved once per aging since, and loses its doorkeeper bit, exactly as
/// the sketch's counters were. Unlike the sketch's, the count is the key's own: no other key
/// shares it.
///
/// Layout: bits 0..4 the counter, bit 4 the doorkeeper, bits 5..32 the epoch (wrapping).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Freq(u32);

const FREQ_DOOR: u32 = 1 << 4;
const FREQ_EPOCH_SHIFT: u32 = 5;
const FREQ_EPOCH_MASK: u32 = u32::MAX >> FREQ_EPOCH_SHIFT;

impl Freq {
    #[inline]
    fn new(count: u8, door: bool, epoch: u32) -> Freq {
        Freq(epoch << FREQ_EPOCH_SHIFT | u32::from(door) << 4 | u32::from(count) & 15)
    }

    /// The same frequency as of `epoch`: halved once per aging since, doorkeeper cleared.
    #[inline]
    fn current(self, epoch: u32) -> Freq {
        let age = epoch.wrapping_sub(self.0 >> FREQ_EPOCH_SHIFT) & FREQ_EPOCH_MASK;
        if age == 0 {
            return self;
        }
        let count = if age >= 4 { 0 } else { (self.0 & 15) >> age };
        Freq(epoch << FREQ_EPOCH_SHIFT | count)
    }

    /// The counter and doorkeeper bit as of `epoch`.
    #[inline]
    fn parts(self, epoch: u32) -> (u8, bool) {
        let f = self.current(epoch).0;
        ((f & 15) as u8, f & FREQ_DOOR != 0)
    }

    /// The estimate as of `epoch`, on the sketch's scale (0 to 16; see
    /// [`FrequencySketch::frequency`]).
    #[inline]
    pub(crate) fn estimate(self, epoch: u32) -> u8 {
        let (count, door) = self.parts(epoch);
        count + u8::from(door)
    }

    /// One more access at `epoch`: the first in an epoch sets the doorkeeper bit, later ones
    /// increment the counter (saturating), as [`FrequencySketch::increment`] does.
    #[inline]
    pub(crate) fn recorded(self, epoch: u32) -> Freq {
        let f = self.current(epoch).0;
        let bump = (f >> 4) & u32::from(f & 15 < 15);
        Freq((f | FREQ_DOOR) + bump)
    }
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
    fn a_key_has_one_nibble_in_each_lane() {
        for (i, &mask) in NIBBLE_MASKS.iter().enumerate() {
            assert_eq!(mask & !NIBBLE_LOW_BITS, 0, "{i}: not nibble-aligned");
            for lane in 0..4 {
                assert_eq!(
                    (mask >> (16 * lane) & 0xffff).count_ones(),
                    1,
                    "{i}: lane {lane}"
                );
            }
        }
    }

    #[test]
    fn saturated_nibbles_do_not_carry_into_neighbours() {
        let mut s = FrequencySketch::new(8);
        let key = mix(5);
        for _ in 0..40 {
            s.increment(key);
        }
        assert_eq!(s.frequency(key), 16);
        let h = spread(key);
        let block = &s.blocks[(h >> 40) as usize & s.block_mask];
        // Exactly the key's four nibbles are set, each to 15; nothing spilled next to them.
        assert_eq!(
            block.counters[counter_word(h)],
            NIBBLE_MASKS[(h & 0xff) as usize] * COUNTER_MAX
        );
    }

    #[test]
    fn an_entry_freq_counts_and_ages_as_the_sketch_does() {
        let mut s = FrequencySketch::new(100);
        let h = mix(11);
        let mut f = Freq::default();
        for round in 0..8 {
            for _ in 0..(round * 5) % 23 {
                let epoch = s.epoch();
                s.increment(h);
                f = f.recorded(epoch);
                assert_eq!(f.estimate(s.epoch()), s.frequency(h), "round {round}");
            }
            // Age the sketch without touching h's block.
            let epoch = s.epoch();
            while s.epoch() == epoch {
                s.record_resident();
            }
            assert_eq!(f.estimate(s.epoch()), s.frequency(h), "aged, round {round}");
        }
    }

    #[test]
    fn merge_keeps_an_evicted_entry_history_as_an_upper_bound() {
        let mut s = FrequencySketch::new(100);
        let h = mix(12);
        let mut f = s.record_miss(h);
        assert_eq!(f.estimate(s.epoch()), 1, "doorkeeper only");
        for _ in 0..6 {
            f = f.recorded(s.epoch());
            s.record_resident();
        }
        assert_eq!(f.estimate(s.epoch()), 7);
        assert_eq!(
            s.frequency(h),
            1,
            "hits of a resident key stay in its entry"
        );
        s.merge(h, f);
        assert_eq!(s.frequency(h), 7);
        // Merging never lowers a counter.
        s.merge(h, Freq::default());
        assert_eq!(s.frequency(h), 7);
        assert_eq!(s.estimate(h).estimate(s.epoch()), 7);
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
