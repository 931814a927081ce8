//! `RedisUrl::parse` on arbitrary text: never panics, accepts only usable addresses, and its
//! `Debug` never shows the password. (Its errors are a fixed-text enum, so they cannot quote
//! the URL at all.)
#![no_main]

use edgecache::redis_url::RedisUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = RedisUrl::parse(text) {
        assert!(!url.host.is_empty() && url.port != 0, "{url:?}");
        assert!(url.password.as_deref() != Some(""), "an empty password is no password");
        // Debug must not depend on the password's value at all.
        let other = RedisUrl {
            password: url.password.as_ref().map(|_| "x".to_string()),
            ..url.clone()
        };
        assert_eq!(format!("{url:?}"), format!("{other:?}"));
    }
});
