//! Shared-tier URLs on arbitrary text: `RedisUrl::parse` never panics, accepts only usable
//! addresses, and its `Debug` never shows the password (its errors are a fixed-text enum, so
//! they cannot quote the URL at all); `SharedTierUrl::parse` never panics either, and a REST
//! URL it accepts has a host, no credentials, query or fragment, no trailing `/`, and is
//! `https://` unless its host is loopback.
#![no_main]

use edgecache::shared_tier::url::{RedisUrl, SharedTierUrl};
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
    if let Ok(SharedTierUrl::Rest(url)) = SharedTierUrl::parse(text) {
        assert!(!url.host.is_empty() && url.port != 0, "{url:?}");
        assert!(!url.base.ends_with('/') && !url.base.contains(['?', '#']), "{url:?}");
        let authority = url.base.split("://").nth(1).unwrap_or("").split('/').next();
        assert!(!authority.unwrap_or("").contains('@'), "{url:?}");
        let loopback = url.host.eq_ignore_ascii_case("localhost")
            || url.host == "::1"
            || url.host.starts_with("127.")
            || url.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        assert!(url.tls || loopback, "{url:?}");
    }
});
