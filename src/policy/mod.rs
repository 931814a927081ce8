//! HTTP caching policy (RFC 9111, 5861, 9211) as pure functions returning enums hosts act on.
