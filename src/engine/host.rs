//! The small traits a host implements so the one engine can run on it: an origin fetcher, an
//! optional shared tier (Redis), an optional colo cache (the Workers Cache API), a
//! runtime (clock and timers) and a lock.
//!
//! The traits use `async fn` without `Send` bounds on purpose: JavaScript futures are
//! `!Send`. A native host whose implementations are `Send` gets `Send` engine futures, since
//! the compiler sees the concrete types where the host calls the engine.
#![allow(async_fn_in_trait)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;

use crate::headers::Headers;
use crate::time::Timestamp;

/// A request the engine sends to the origin.
#[derive(Debug)]
pub struct OriginRequest<B> {
    /// Method, as received (RFC 9110 §9.1: case-sensitive).
    pub method: String,
    /// `http` or `https`, as the client used.
    pub scheme: String,
    /// The `Host` to send: the client's authority, or empty for the origin's own (the
    /// cache key leaves the host out, [`crate::key::KeyConfig::include_host`]).
    pub host: String,
    /// Path and query, forwarded untouched.
    pub path_and_query: String,
    /// Header fields to send (hop-by-hop fields already removed).
    pub headers: Headers,
    /// The client's request body, if any, passed through untouched.
    pub body: Option<B>,
}

/// What the origin returned.
#[derive(Debug)]
pub struct OriginResponse<B> {
    /// Status code.
    pub status: u16,
    /// Header fields as received.
    pub headers: Headers,
    /// The content: buffered when it fit in the engine's limit, else still streaming.
    pub body: OriginBody<B>,
}

/// A response body from the origin.
#[derive(Debug)]
pub enum OriginBody<B> {
    /// The whole body, read because it was no larger than the buffer limit.
    Buffered(Vec<u8>),
    /// Larger than the limit (or of unknown length beyond it): the host's stream, with any
    /// prefix it already read put back in front. Passed through, never stored.
    Streaming(B),
}

/// Why an origin fetch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginError {
    /// No response within the configured origin timeout.
    Timeout,
    /// The origin could not be reached (DNS, connect, TLS).
    Unreachable(String),
    /// The connection failed mid-response, or the response was malformed.
    Broken(String),
    /// The client's request body, streamed to the origin, could not be read (malformed
    /// chunked encoding, cut short): the client's fault, not the origin's.
    RequestBody(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Timeout => f.write_str("origin timed out"),
            OriginError::Unreachable(why) => write!(f, "origin unreachable: {why}"),
            OriginError::Broken(why) => write!(f, "origin response broken: {why}"),
            OriginError::RequestBody(why) => write!(f, "request body unreadable: {why}"),
        }
    }
}

/// Fetches from the origin. The host owns connections, TLS and body streaming.
pub trait Origin {
    /// The host's streaming body type (request and response).
    type Body;

    /// Sends `request` and returns the response, buffering its body when it is at most
    /// `buffer_limit` bytes.
    async fn fetch(
        &self,
        request: OriginRequest<Self::Body>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<Self::Body>, OriginError>;

    /// The next bytes of a streaming response body ([`OriginBody::Streaming`]), `None` at
    /// its end. The engine reads bodies it stores while clients receive them this way
    /// ([`super::filling`]), bounding each wait by `limits.between_bytes_timeout_ms`.
    /// An origin that never streams need not implement it.
    async fn next_chunk(&self, body: &mut Self::Body) -> Result<Option<Vec<u8>>, OriginError> {
        let _ = body;
        Err(OriginError::Broken(String::from(
            "this host does not read streaming bodies",
        )))
    }

    /// Reads a client's request body whole, refusing it once it exceeds `limit` bytes
    /// (write-behind keeps request bodies in the shared tier, [`super::write_behind`]).
    async fn read_body(&self, body: Self::Body, limit: usize) -> Result<Vec<u8>, BodyError>;

    /// A request body holding `bytes`, for [`OriginRequest::body`].
    fn body_from_bytes(&self, bytes: Vec<u8>) -> Self::Body;
}

/// Why a request body could not be read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// It is larger than the limit.
    TooLarge,
    /// The client's stream failed.
    Broken(String),
}

/// One entry of a Redis Stream: its ID and its field-value pairs, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry ID (`<ms>-<seq>`).
    pub id: String,
    /// The fields.
    pub fields: Vec<(String, Vec<u8>)>,
}

/// An entry delivered to a consumer group and not yet acknowledged (`XPENDING`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry ID.
    pub id: String,
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
    /// How many times it has been delivered.
    pub deliveries: u64,
}

/// Counters to add to a hash in the shared tier, with the reporter's mark in a roster
/// ([`SharedTier::add_counters`]). The engine chooses every key, field and number
/// ([`super::fleet`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterReport<'a> {
    /// The hash of totals.
    pub hash: &'a str,
    /// `(field, amount)`: each added to its field (`HINCRBY`).
    pub increments: &'a [(&'a str, u64)],
    /// `(field, value)`: each set only where the field is absent (`HSETNX`).
    pub if_absent: &'a [(&'a str, u64)],
    /// How long the hash lives after this report, in ms.
    pub hash_ttl_ms: u64,
    /// The roster: a sorted set of reporters, each scored with the time of its last report.
    pub roster: &'a str,
    /// This reporter.
    pub member: &'a str,
    /// The time of this report, ms since the epoch.
    pub at_ms: u64,
    /// Reporters whose last report is older than this are dropped from the roster.
    pub forget_before_ms: u64,
    /// How long the roster lives after this report, in ms.
    pub roster_ttl_ms: u64,
}

/// What [`SharedTier::read_counters`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterTotals {
    /// Every field of the hash with its value, as stored (none when it does not exist).
    pub fields: Vec<(String, Vec<u8>)>,
    /// How many reporters the roster holds whose last report is at or after the time asked.
    pub reporters: u64,
    /// The newest of them (as many as asked, newest first): each with the time of its last
    /// report, ms since the epoch.
    pub newest: Vec<(String, u64)>,
}

/// A failure of the shared tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierError(pub String);

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared tier error: {}", self.0)
    }
}

/// A Redis-compatible shared tier, as a handful of commands. The engine decides every key
/// name and value ([`super::l2`]); implementations only run the commands.
pub trait SharedTier {
    /// `GET key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError>;
    /// `MGET keys…` (one round trip).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, TierError>;
    /// `EXISTS key` for each of `keys`, pipelined (one round trip): whether each exists,
    /// without reading its value. One command per key rather than one `EXISTS` of them
    /// all, whose count would not say which are missing.
    async fn exist(&self, keys: &[String]) -> Result<Vec<bool>, TierError>;
    /// `GETRANGE key 0 bytes-1` for each of `keys`, pipelined (one round trip): the first
    /// `bytes` of each value (empty for a missing key), to tell what a key holds without
    /// reading all of it.
    async fn get_prefixes(&self, keys: &[String], bytes: usize) -> Result<Vec<Vec<u8>>, TierError>;
    /// `PEXPIRE key ttl_ms GT` for each of `keys`, pipelined (one round trip): each key that
    /// exists is kept at least `ttl_ms` from now, never shortened; a missing key stays
    /// missing. How many were extended.
    async fn extend(&self, keys: &[String], ttl_ms: u64) -> Result<u64, TierError>;
    /// `SET key value PX ttl_ms`.
    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), TierError>;
    /// `SET key value NX PX ttl_ms`; whether it was set (the lease was won).
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<bool, TierError>;
    /// `DEL keys…`.
    async fn delete(&self, keys: &[String]) -> Result<(), TierError>;
    /// `INCR key`, returning the new value.
    async fn increment(&self, key: &str) -> Result<i64, TierError>;
    /// `SADD set member` and `PEXPIRE set ttl_ms GT` (extend only), pipelined.
    async fn add_to_set(&self, set: &str, member: &str, ttl_ms: u64) -> Result<(), TierError>;
    /// `SMEMBERS set` and `DEL set` atomically (`MULTI`/`EXEC`): the members, once.
    async fn take_set(&self, set: &str) -> Result<Vec<String>, TierError>;
    /// Deletes `key` only while it holds `value`, atomically ([`DELETE_IF_EQUALS_SCRIPT`]
    /// with `EVAL`); whether it did. Releases a lease only by the instance holding it, not
    /// one another instance took after this one's expired.
    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> Result<bool, TierError>;
    /// `INFO`: the server's `field:value` lines, for checks at start
    /// ([`super::Engine::check_shared_tier`]).
    async fn info(&self) -> Result<String, TierError>;
    /// `XADD stream [MAXLEN n] * field value…`: appends an entry, returning its ID; with
    /// `max_len`, the oldest entries beyond that many are trimmed (exactly: for small,
    /// rarely written streams such as the dead letters).
    async fn stream_add(
        &self,
        stream: &str,
        max_len: Option<u64>,
        fields: &[(&str, &[u8])],
    ) -> Result<String, TierError>;
    /// `XGROUP CREATE stream group 0 MKSTREAM`; a group that exists already (`BUSYGROUP`)
    /// is success.
    async fn stream_create_group(&self, stream: &str, group: &str) -> Result<(), TierError>;
    /// `XLEN stream`: its entries, delivered or not (0 when it does not exist).
    async fn stream_len(&self, stream: &str) -> Result<u64, TierError>;
    /// `XREADGROUP GROUP group consumer COUNT count STREAMS stream >`: entries never
    /// delivered to the group, oldest first, now pending for `consumer`.
    async fn stream_read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, TierError>;
    /// `XPENDING stream group - + count`: the oldest entries delivered and not acknowledged.
    async fn stream_pending(
        &self,
        stream: &str,
        group: &str,
        count: usize,
    ) -> Result<Vec<PendingEntry>, TierError>;
    /// `XCLAIM stream group consumer min_idle_ms ids…`: takes over the entries among `ids`
    /// idle at least `min_idle_ms` (counting one more delivery each) and returns those that
    /// still exist.
    async fn stream_claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        ids: &[String],
    ) -> Result<Vec<StreamEntry>, TierError>;
    /// `XACK stream group ids…` and `XDEL stream ids…` atomically (`MULTI`/`EXEC`).
    async fn stream_ack_delete(
        &self,
        stream: &str,
        group: &str,
        ids: &[String],
    ) -> Result<(), TierError>;
    /// In one transaction (`MULTI`/`EXEC`, one round trip): `HINCRBY hash field n` for each
    /// increment, `HSETNX hash field value` for each of `if_absent`, `PEXPIRE hash ttl`;
    /// `ZADD roster at member`, `ZREMRANGEBYSCORE roster -inf (forget_before`,
    /// `PEXPIRE roster ttl`. All of it or none: readers never see half a report.
    async fn add_counters(&self, report: &CounterReport<'_>) -> Result<(), TierError>;
    /// In one pipeline (one round trip): `HGETALL hash`, `ZCOUNT roster since_ms +inf` and
    /// `ZREVRANGEBYSCORE roster +inf since_ms WITHSCORES LIMIT 0 limit`.
    async fn read_counters(
        &self,
        hash: &str,
        roster: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<CounterTotals, TierError>;
}

/// A cache shared by the instances of one data centre only (on Workers, `caches.default`):
/// bytes under a key, kept at most `ttl_ms`. The engine decides every key and value
/// ([`super::colo`]); it never trusts what it reads without checking it.
pub trait ColoCache {
    /// The value stored under `key`, if any (and not expired).
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError>;
    /// Stores `value` under `key` for at most `ttl_ms`, labelled with purge `tags` (on
    /// Workers, the `Cache-Tag` that Cloudflare's purge API by tag matches).
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        tags: &[String],
    ) -> Result<(), TierError>;
    /// Whether [`Self::purge_everywhere`] can reach every data centre's copy (on Workers:
    /// Cloudflare's purge API, with a token and zone configured). Default: no.
    fn purges_everywhere(&self) -> bool {
        false
    }
    /// Sends one purge request, built by the engine ([`super::colo::purge_api_bodies`]), to
    /// the service that purges every data centre. Never called unless
    /// [`Self::purges_everywhere`]. The error never quotes a secret.
    async fn purge_everywhere(&self, body: &str) -> Result<(), TierError> {
        let _ = body;
        Err(TierError(String::from("no purge API on this host")))
    }
}

/// How much an engine event matters to an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Something recovered.
    Info,
    /// Something is failing; the cache is degrading gracefully.
    Warn,
}

/// The host's clock, timers and log.
pub trait Runtime {
    /// The current time (system clock natively, `Date.now()` in JS, manual in tests).
    fn now(&self) -> Timestamp;
    /// Completes after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// 64 unpredictable bits, different in every instance and on every call (the operating
    /// system's randomness natively, `Math.random` in JS): generated idempotency keys must
    /// never repeat across instances, which a clock-seeded generator cannot promise.
    fn random_u64(&self) -> u64;
    /// Records an event for the operator (`tracing` natively, the console on Workers). The
    /// engine logs state changes only (a tier starting or stopping to fail), never per
    /// request, and never a secret. Default: nowhere.
    fn log(&self, level: LogLevel, message: &str) {
        let _ = (level, message);
    }
}

/// Mutual exclusion for the engine's in-memory state: `RefCell` on single-threaded hosts
/// (Workers, browsers), `std::sync::Mutex` natively. Critical sections never span an await.
pub trait Lock<T> {
    /// Wraps `value`.
    fn new(value: T) -> Self;
    /// Runs `f` with exclusive access.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

impl<T> Lock<T> for core::cell::RefCell<T> {
    fn new(value: T) -> Self {
        core::cell::RefCell::new(value)
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

/// A lock shared by several engines of one single-threaded host (see
/// [`super::Engine::with_shared_tier`]).
impl<T> Lock<T> for alloc::rc::Rc<core::cell::RefCell<T>> {
    fn new(value: T) -> Self {
        alloc::rc::Rc::new(core::cell::RefCell::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

#[cfg(feature = "std")]
impl<T> Lock<T> for std::sync::Mutex<T> {
    fn new(value: T) -> Self {
        std::sync::Mutex::new(value)
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters more than availability: keep serving.
        let mut guard = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// The Lua script behind [`SharedTier::delete_if_equals`] (`EVAL script 1 key value`):
/// 1 when `key` held `value` and was deleted, else 0. One script for every client, so the
/// hosts cannot differ on it.
pub const DELETE_IF_EQUALS_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A shared tier that is not there: the engine runs L1 + origin only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSharedTier;

impl SharedTier for NoSharedTier {
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, TierError> {
        Ok(None)
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, TierError> {
        Ok(keys.iter().map(|_| None).collect())
    }
    async fn exist(&self, keys: &[String]) -> Result<Vec<bool>, TierError> {
        Ok(keys.iter().map(|_| false).collect())
    }
    async fn get_prefixes(
        &self,
        keys: &[String],
        _bytes: usize,
    ) -> Result<Vec<Vec<u8>>, TierError> {
        Ok(keys.iter().map(|_| Vec::new()).collect())
    }
    async fn extend(&self, _keys: &[String], _ttl_ms: u64) -> Result<u64, TierError> {
        Ok(0)
    }
    async fn set(&self, _key: &str, _value: &[u8], _ttl_ms: u64) -> Result<(), TierError> {
        Ok(())
    }
    async fn set_if_absent(&self, _k: &str, _v: &[u8], _ttl_ms: u64) -> Result<bool, TierError> {
        Ok(true)
    }
    async fn delete(&self, _keys: &[String]) -> Result<(), TierError> {
        Ok(())
    }
    async fn increment(&self, _key: &str) -> Result<i64, TierError> {
        Ok(0)
    }
    async fn add_to_set(&self, _set: &str, _member: &str, _ttl_ms: u64) -> Result<(), TierError> {
        Ok(())
    }
    async fn take_set(&self, _set: &str) -> Result<Vec<String>, TierError> {
        Ok(Vec::new())
    }
    async fn delete_if_equals(&self, _key: &str, _value: &[u8]) -> Result<bool, TierError> {
        Ok(false)
    }
    async fn info(&self) -> Result<String, TierError> {
        Ok(String::new())
    }
    async fn stream_add(
        &self,
        _s: &str,
        _max_len: Option<u64>,
        _f: &[(&str, &[u8])],
    ) -> Result<String, TierError> {
        // Nothing is kept: an append must not be acknowledged.
        Err(TierError(String::from("no shared tier")))
    }
    async fn stream_create_group(&self, _stream: &str, _group: &str) -> Result<(), TierError> {
        Ok(())
    }
    async fn stream_len(&self, _stream: &str) -> Result<u64, TierError> {
        Ok(0)
    }
    async fn stream_read_new(
        &self,
        _stream: &str,
        _group: &str,
        _consumer: &str,
        _count: usize,
    ) -> Result<Vec<StreamEntry>, TierError> {
        Ok(Vec::new())
    }
    async fn stream_pending(
        &self,
        _stream: &str,
        _group: &str,
        _count: usize,
    ) -> Result<Vec<PendingEntry>, TierError> {
        Ok(Vec::new())
    }
    async fn stream_claim(
        &self,
        _stream: &str,
        _group: &str,
        _consumer: &str,
        _min_idle_ms: u64,
        _ids: &[String],
    ) -> Result<Vec<StreamEntry>, TierError> {
        Ok(Vec::new())
    }
    async fn stream_ack_delete(
        &self,
        _stream: &str,
        _group: &str,
        _ids: &[String],
    ) -> Result<(), TierError> {
        Ok(())
    }
    async fn add_counters(&self, _report: &CounterReport<'_>) -> Result<(), TierError> {
        Ok(())
    }
    async fn read_counters(
        &self,
        _hash: &str,
        _roster: &str,
        _since_ms: u64,
        _limit: usize,
    ) -> Result<CounterTotals, TierError> {
        Ok(CounterTotals::default())
    }
}

/// A colo tier that is not there (every host but the Worker).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoColo;

impl ColoCache for NoColo {
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, TierError> {
        Ok(None)
    }
    async fn put(
        &self,
        _key: &str,
        _value: &[u8],
        _ttl_ms: u64,
        _tags: &[String],
    ) -> Result<(), TierError> {
        Ok(())
    }
}
