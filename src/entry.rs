//! The stored response and its versioned binary encoding, for bytes that leave the process
//! (the Redis tier). Decoding untrusted bytes never panics: an unknown version or a corrupt
//! entry is an [`DecodeError`] the caller turns into a miss.

use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::Headers;
use crate::time::Timestamp;

/// A response as a cache stores it (RFC 9111 §3), with what the policy needs to judge it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResponse {
    /// Status code.
    pub status: u16,
    /// Response header fields as stored (hop-by-hop fields already removed).
    pub headers: Headers,
    /// Response content.
    pub body: Vec<u8>,
    /// When the request that produced this response was sent (RFC 9111 §4.2.3 `request_time`).
    pub request_time: Timestamp,
    /// When the response was received (RFC 9111 §4.2.3 `response_time`).
    pub response_time: Timestamp,
    /// The request's values of the fields nominated by `Vary`, normalised (RFC 9111 §4.1).
    pub vary: Headers,
    /// Purge tags (from `Surrogate-Key` / `Cache-Tag`).
    pub tags: Vec<String>,
    /// Marked stale by a soft purge or an invalidation: reusable only as a stale response.
    pub invalidated: bool,
}
