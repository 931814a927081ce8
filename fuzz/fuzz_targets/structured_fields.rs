//! Fuzz target: strict Structured Field dictionaries (RFC 8941), which decide whether a
//! targeted cache-control field (RFC 9213) is used at all: never a panic, every key well
//! formed and unique, integers within 15 digits, and lines parse as their comma-joined
//! value does.
#![no_main]

use edgecache::structured_fields::{
    parse_dictionary, parse_dictionary_lines, BareItem, MemberValue,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dictionary) = parse_dictionary(data) {
        for (key, value) in &dictionary {
            let first = key.as_bytes()[0];
            assert!(first.is_ascii_lowercase() || first == b'*');
            assert!(key.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'.' | b'*')));
            let items: Vec<&BareItem> = match value {
                MemberValue::Item(item) => vec![item],
                MemberValue::InnerList(items) => items.iter().collect(),
            };
            for item in items {
                if let BareItem::Integer(n) = item {
                    assert!(n.unsigned_abs() < 1_000_000_000_000_000);
                }
            }
        }
        let keys: Vec<&String> = dictionary.iter().map(|(k, _)| k).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "a repeated key overwrites, never repeats");
    }
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let joined = lines.join(&b", "[..]);
    assert_eq!(
        parse_dictionary_lines(lines.iter().copied()).is_ok(),
        parse_dictionary(&joined).is_ok()
    );
});
