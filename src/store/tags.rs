//! The tag index: purge tag (`Surrogate-Key`, `Cache-Tag`) to the keys that carry it.
//!
//! Only tagged entries are ever indexed, so untagged entries cost nothing here. Each entry keeps
//! its own tag list, which is how its index memberships are undone when it is evicted,
//! replaced, removed or expires: O(tags of that entry), never a scan.

use alloc::string::String;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use hashbrown::{HashMap, HashSet};

use super::key::{HashedKey, PassThrough, Probe};

/// The keys carrying one tag.
pub(crate) type TagSet<K> = HashSet<HashedKey<K>, PassThrough>;

/// Tag to keys.
#[derive(Clone, Debug)]
pub(crate) struct TagIndex<K, S> {
    map: HashMap<String, TagSet<K>, S>,
}

impl<K: Hash + Eq + Clone, S: BuildHasher> TagIndex<K, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        TagIndex {
            map: HashMap::with_hasher(hasher),
        }
    }

    /// Records that the entry `key` carries each of `tags`.
    pub(crate) fn add(&mut self, tags: &[String], key: &HashedKey<K>) {
        for tag in tags {
            match self.map.get_mut(tag.as_str()) {
                Some(set) => {
                    set.insert(key.clone());
                }
                None => {
                    let mut set = TagSet::with_hasher(PassThrough);
                    set.insert(key.clone());
                    self.map.insert(tag.clone(), set);
                }
            }
        }
    }

    /// Forgets that the entry `key` carries each of `tags`; drops tags left with no key.
    pub(crate) fn remove<Q>(&mut self, tags: &[String], hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
    {
        for tag in tags {
            if let Some(set) = self.map.get_mut(tag.as_str()) {
                set.remove(&Probe { hash, key });
                if set.is_empty() {
                    self.map.remove(tag.as_str());
                }
            }
        }
    }

    /// Removes the tag and returns the keys that carried it.
    pub(crate) fn take(&mut self, tag: &str) -> Option<TagSet<K>> {
        self.map.remove(tag)
    }

    /// The keys carrying `tag`.
    pub(crate) fn get(&self, tag: &str) -> Option<&TagSet<K>> {
        self.map.get(tag)
    }

    /// Number of distinct tags indexed.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}
