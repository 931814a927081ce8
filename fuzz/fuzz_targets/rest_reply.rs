//! Fuzz target: Redis over HTTP (`edgecache::shared_tier::rest`) on arbitrary bytes. The
//! first byte picks the HTTP status and how many replies are expected; the rest is the
//! reply body, decoded as the Worker decodes whatever a REST server (or anything between)
//! answers: never a panic, a 200 decodes to exactly one reply per command or is an error,
//! any other status is an error, and an error quotes at most a short part of the body. The
//! same bytes, split at newlines, are also encoded as a command's arguments: never a panic,
//! and what encodes is JSON of strings only.
#![no_main]

use edgecache::shared_tier::rest::{decode_replies, encode_commands};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 6] = [200, 200, 400, 401, 500, 302];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(selector) % STATUSES.len()];
    let count = usize::from(selector >> 4);
    match decode_replies(status, body, count) {
        Ok(replies) => {
            assert_eq!(status, 200);
            assert_eq!(replies.len(), count);
        }
        Err(e) => assert!(e.0.chars().count() <= 400, "{}", e.0.len()),
    }

    let mut command: Vec<&[u8]> = vec![b"SET"];
    command.extend(body.split(|&b| b == b'\n'));
    if let Ok(json) = encode_commands(&[command]) {
        let text = core::str::from_utf8(&json).expect("JSON is UTF-8");
        assert!(text.starts_with("[[\"") && text.ends_with("\"]]"), "{text}");
    }
});
