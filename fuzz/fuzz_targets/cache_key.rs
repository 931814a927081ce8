//! Fuzz target: cache keys from arbitrary method, scheme, host, path and configuration
//! never panic, are printable ASCII with one space, and are fixed points: normalising a
//! key's own parts again gives the same key.
//!
//! Input: newline-separated `method`, `scheme`, `host`, `path_and_query`, a flags line
//! (`H` leaves the host out, `S` turns sorting off), then one ignored parameter per line.
#![no_main]

use edgecache::key::{cache_key, KeyConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let method = parts.next().unwrap_or_default();
    let scheme = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let path_and_query = parts.next().unwrap_or_default();
    let flags = parts.next().unwrap_or_default();
    let config = KeyConfig {
        include_host: !flags.contains('H'),
        sort_query: !flags.contains('S'),
        ignored_query_params: parts.map(String::from).collect(),
    };
    let key = cache_key(method, scheme, host, path_and_query, &config);
    assert!(
        key.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
        "{key:?}"
    );
    assert_eq!(key.matches(' ').count(), 1, "{key:?}");

    let (method2, rest) = key.split_once(' ').expect("one space");
    let (scheme2, rest) = rest.split_once("://").expect("scheme separator");
    let slash = rest.find('/').expect("a path");
    let (host2, path2) = rest.split_at(slash);
    assert!(config.include_host || host2.is_empty());
    assert_eq!(
        cache_key(method2, scheme2, host2, path2, &config),
        key,
        "not a fixed point"
    );
});
