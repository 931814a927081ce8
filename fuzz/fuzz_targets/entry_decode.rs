//! Fuzz target: decoding stored entries and chunked heads from arbitrary bytes never
//! panics, and whatever decodes survives a re-encode (compressed or not) unchanged.
//!
//! Random bytes almost never carry a valid checksum, so each input is also decoded with
//! its last eight bytes replaced by the right FNV-1a 64 checksum, to reach the parser.
#![no_main]

use edgecache::entry::{decode, decode_head, encode, encode_chunked_head, DecodeLimits, EncodeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(payload_len) = data.len().checked_sub(8) {
        let mut sealed = data[..payload_len].to_vec();
        let checksum = fnv1a64(&sealed);
        sealed.extend_from_slice(&checksum.to_le_bytes());
        check(&sealed);
    }
});

fn check(data: &[u8]) {
    let limits = DecodeLimits {
        max_body_bytes: 1 << 20,
        ..DecodeLimits::default()
    };
    let _ = decode(data, &DecodeLimits::default());
    if let Ok((head, Some(manifest))) = decode_head(data, &limits) {
        let bytes = encode_chunked_head(&head, &manifest);
        assert_eq!(decode_head(&bytes, &limits), Ok((head, Some(manifest))));
    }
    if let Ok(entry) = decode(data, &limits) {
        for options in [
            EncodeOptions::default(),
            EncodeOptions::uncompressed(),
            EncodeOptions {
                compress_min_bytes: 0,
                compression_level: 1,
            },
        ] {
            let bytes = encode(&entry, &options);
            assert_eq!(decode(&bytes, &limits).as_ref(), Ok(&entry));
        }
    }
}

/// FNV-1a 64, as the entry format's checksum (written out independently).
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
