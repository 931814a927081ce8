//! edgecache: a portable HTTP edge cache whose core is `no_std` + `alloc`.
//!
//! The core (everything not behind a host feature) does no I/O and never reads a clock:
//! every time-dependent function takes `now`. Hosts (native server, Cloudflare Worker,
//! browser WASM) are thin glue around it.
//!
//! Map of the core:
//! - [`time`]: millisecond [`time::Timestamp`] and the [`time::Clock`] trait.
//! - [`headers`]: a small, ordered, case-insensitive header list ([`headers::Headers`]).
//! - [`http_date`]: HTTP-date parsing and formatting (RFC 9110 §5.6.7).
//! - [`cache_control`]: the Cache-Control tokenizer and directive sets (RFC 9111 §5.2,
//!   RFC 9213 targeted fields).
//! - [`structured_fields`]: strict Structured Field dictionaries (RFC 8941), for targeted
//!   fields.
//! - [`policy`]: storability, freshness, age, stale serving, Vary, conditional requests,
//!   304 merge, invalidation and Cache-Status (RFC 9111, 5861, 9211).
//! - [`key`]: cache keys.
//! - [`entry`]: the stored response and its versioned binary encoding.
//! - [`store`]: the L1 store (LRU + admission, TTL, stale windows, tags, byte bounds).
//! - [`shared_tier`]: the Redis commands of the shared tier, decoded in one place, with
//!   `redis://` URLs and the two transports (redis-rs natively, RESP over a socket).
//!
//! Hosts: `native` (feature `server`), `worker` (feature `worker`, wasm32 only) and `wasm`
//! (feature `wasm`, the JS package).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod cache_control;
pub mod engine;
pub mod entry;
pub mod headers;
pub mod http_date;
pub mod key;
#[cfg(feature = "server")]
pub mod native;
pub mod policy;
pub mod shared_tier;
pub mod store;
pub mod structured_fields;
pub mod time;
#[cfg(feature = "wasm")]
pub mod wasm;
#[cfg(all(feature = "worker", target_arch = "wasm32"))]
pub mod worker;
