//! The L1 store: an LRU with admission, TTL and stale windows, tags, and entry + byte bounds.
