//! Keys that carry their own hash, so the store hashes a key once per operation.
//!
//! The store hashes a caller's key once with its `BuildHasher` and then uses that 64-bit value
//! everywhere: for the LRU's hash table (through [`PassThrough`], which hands the stored value
//! to hashbrown untouched), for the admission sketch, for the tag index, and when it evicts a
//! victim (whose key is never rehashed). Lookups by a borrowed form of the key (`&str` for a
//! `String` key) go through the `dyn KeyView` probe below, which is how a map keyed by
//! [`HashedKey<K>`] can be searched without building (cloning) an owned key.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash, Hasher};

/// A key together with the hash the store computed for it.
#[derive(Clone, Debug)]
pub(crate) struct HashedKey<K> {
    pub(crate) hash: u64,
    pub(crate) key: K,
}

impl<K> Hash for HashedKey<K> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: PartialEq> PartialEq for HashedKey<K> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for HashedKey<K> {}

/// What a lookup needs from a key: its precomputed hash and a borrowed form to compare.
pub(crate) trait KeyView<Q: ?Sized> {
    fn hash(&self) -> u64;
    fn key(&self) -> &Q;
}

impl<K: Borrow<Q>, Q: ?Sized> KeyView<Q> for HashedKey<K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &Q {
        self.key.borrow()
    }
}

/// A borrowed key and its hash, used to search without owning a key.
pub(crate) struct Probe<'q, Q: ?Sized> {
    pub(crate) hash: u64,
    pub(crate) key: &'q Q,
}

impl<Q: ?Sized> KeyView<Q> for Probe<'_, Q> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn key(&self) -> &Q {
        self.key
    }
}

impl<Q: ?Sized> Hash for Probe<'_, Q> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<Q: ?Sized + Eq, K: Borrow<Q>> hashbrown::Equivalent<HashedKey<K>> for Probe<'_, Q> {
    #[inline]
    fn equivalent(&self, other: &HashedKey<K>) -> bool {
        self.hash == other.hash && self.key == other.key.borrow()
    }
}

impl<'a, Q: ?Sized + Eq> PartialEq for dyn KeyView<Q> + 'a {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash() == other.hash() && self.key() == other.key()
    }
}

impl<'a, Q: ?Sized + Eq> Eq for dyn KeyView<Q> + 'a {}

impl<'a, Q: ?Sized> Hash for dyn KeyView<Q> + 'a {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(KeyView::hash(self));
    }
}

impl<'a, K: Borrow<Q> + 'a, Q: ?Sized + 'a> Borrow<dyn KeyView<Q> + 'a> for HashedKey<K> {
    #[inline]
    fn borrow(&self) -> &(dyn KeyView<Q> + 'a) {
        self
    }
}

/// A `BuildHasher` for tables keyed by [`HashedKey`]: the hash is already computed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    #[inline]
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// Returns the last `u64` written to it. Only [`HashedKey`] and [`Probe`] are hashed with it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by the store's own key types; fold anything else in so it still works.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}
