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
        if let Some(password) = url.password.as_deref().filter(|p| p.len() >= 8) {
            let elsewhere = url.host.contains(password)
                || url.username.as_deref().is_some_and(|u| u.contains(password));
            assert!(elsewhere || !format!("{url:?}").contains(password), "{url:?}");
        }
    }
});
