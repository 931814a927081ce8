//! The engine's configuration: one serde schema for every host (TOML natively, `[vars]` on
//! Workers), validated with errors that name the offending field.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::key::KeyConfig;
use crate::policy::PolicyConfig;

/// Everything the engine needs to know. Hosts add their own fields (listen address, origin
/// URL, Redis URL) around it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The name this cache uses in `Cache-Status` (RFC 9211 §2); tiers append `-l1`, `-l2`.
    pub cache_name: String,
    /// HTTP caching policy knobs.
    pub policy: PolicyConfig,
    /// Cache key normalisation.
    pub key: KeyConfig,
    /// In-process (L1) store bounds.
    pub l1: L1Config,
    /// Shared-tier (L2) layout.
    pub l2: L2Config,
    /// The optional colo tier (Workers Cache API), between L1 and L2.
    pub colo: ColoConfig,
    /// Probabilistic early refresh of hot entries (XFetch).
    pub refresh_ahead: RefreshAheadConfig,
    /// Size and time limits.
    pub limits: Limits,
    /// The admin API (purge, stats).
    pub admin: AdminConfig,
    /// Statistics: how often an instance adds its counters to the fleet's
    /// ([`super::fleet`]).
    pub stats: StatsConfig,
    /// Per-route overrides, first match wins.
    pub routes: Vec<RouteRule>,
    /// Which forwarding fields reach the origin ([`crate::policy::forwarding`]).
    pub forwarding: crate::policy::forwarding::ForwardingConfig,
    /// Write-behind: unsafe requests on these routes are queued in the shared tier and
    /// sent to the origin afterwards ([`super::write_behind`]).
    pub write_behind: WriteBehindConfig,
}

/// Write-behind ([`super::write_behind`]): an unsafe request (`POST`, `PUT`, `PATCH`,
/// `DELETE`, …) whose path starts with one of [`Self::routes`] is answered `202 Accepted`
/// once it is appended to a Redis Stream, and sent to the origin by a flush, retried until
/// the origin takes it. Needs the shared tier. Off (no routes) by default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteBehindConfig {
    /// Path prefixes (e.g. `/api/events/`), matched as route rules' prefixes are.
    pub routes: Vec<String>,
    /// Larger request bodies are refused with `413` (nothing queued, nothing forwarded).
    pub max_body_bytes: usize,
    /// Deliveries of one entry before it is moved to the dead-letter stream.
    pub max_attempts: u32,
    /// How long a delivered entry stays unacknowledged before it is retried (by any
    /// instance: a crashed instance's entries are taken over after this), in ms. Must be
    /// longer than `limits.origin_timeout_ms`, so an entry being sent never looks abandoned.
    pub retry_after_ms: u64,
    /// How often `edgecache serve` flushes, in ms (Workers flush after each append and on
    /// their cron trigger).
    pub flush_interval_ms: u64,
    /// Timeout of each Redis command that carries a queued request (the append, the reads
    /// and claims of the flush, the dead-letter append), in ms: up to `max_body_bytes`
    /// each way, where `l2.timeout_ms` is sized for cache lookups.
    pub timeout_ms: u64,
    /// At most this many requests wait in the queue (delivered or not); past it, requests
    /// are written through at once (nothing is lost, the origin answers). Bounds what the
    /// queue can hold in Redis: about this many times `max_body_bytes` at worst. Checked
    /// before each append, so concurrent appends can overshoot it by a few.
    pub max_queue_entries: u64,
    /// The dead-letter stream keeps this many entries, the oldest trimmed first
    /// (`XADD … MAXLEN`): a client whose writes the origin refuses cannot fill Redis with
    /// them. Trimmed entries are counted (`write_behind_dead_letters_trimmed`). Default
    /// 10,000.
    pub max_dead_letters: u64,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        WriteBehindConfig {
            routes: Vec::new(),
            max_body_bytes: 1 << 20,
            max_attempts: 10,
            retry_after_ms: 30_000,
            flush_interval_ms: 1_000,
            timeout_ms: 2_000,
            max_queue_entries: 10_000,
            max_dead_letters: 10_000,
        }
    }
}

impl WriteBehindConfig {
    /// Whether unsafe requests to `path` are written behind.
    pub fn covers(&self, path: &str) -> bool {
        self.routes.iter().any(|prefix| route_matches(prefix, path))
    }
}

/// The largest `write_behind.max_body_bytes`: a queued request is read back from Redis in
/// one reply, which the Worker's client bounds (32 MiB).
const MAX_QUEUED_BODY_BYTES: usize = 16 << 20;

/// Refuses a configured path that no request path could equal: requests are compared in
/// normal form ([`super::RequestView::path`]), so `/%7Euser/` or `/a/../b/` would never
/// match.
fn check_normal_path(field: &str, path: &str) -> Result<(), ConfigError> {
    let normal = crate::key::normalize_path(path);
    if normal == path {
        return Ok(());
    }
    Err(invalid(
        field,
        format!("must be written as requests are compared (normalised): use {normal:?}"),
    ))
}

/// Whether a route prefix applies to `path` (route rules and write-behind routes alike).
fn route_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
}

/// Bounds of the in-process store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L1Config {
    /// Most entries.
    pub max_entries: usize,
    /// Most bytes (bodies, headers, keys).
    pub max_bytes: usize,
    /// How a new key gets into a full L1.
    pub admission: L1Admission,
}

/// How a new key gets into a full L1 ([`crate::store::Admission`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L1Admission {
    /// TinyLFU (the default): a new key is admitted only when it is requested more often
    /// than what it would evict, so a scan of one-off URLs cannot flush the hot set.
    #[default]
    TinyLfu,
    /// Plain LRU: every new key is admitted.
    Lru,
}

impl L1Admission {
    /// The store's policy.
    pub fn policy(self) -> crate::store::Admission {
        match self {
            L1Admission::TinyLfu => crate::store::Admission::TinyLfu,
            L1Admission::Lru => crate::store::Admission::None,
        }
    }
}

/// Layout of the shared tier.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L2Config {
    /// Prefix of every key edgecache writes.
    pub key_prefix: String,
    /// Bodies larger than this are not written to the shared tier. 8 MiB, as
    /// `limits.max_object_bytes`: nothing larger is stored anywhere yet.
    pub max_object_bytes: usize,
    /// Bodies larger than this are stored as chunks of this size: a head under the object's
    /// key, and the chunks under keys of their own ([`super::l2`]), so no Redis value grows
    /// past it and a read takes a few chunks per round trip. 512 KiB: small enough that a
    /// batch of 8 stays well inside a Worker's memory, large enough that an 8 MiB object is
    /// 16 values.
    pub chunk_bytes: usize,
    /// Bodies at least this large are deflate-compressed in the shared tier (chunked
    /// bodies are stored as they are).
    pub compress_min_bytes: usize,
    /// How long one instance holds the fetch lease for a key (`SET NX PX`), in ms.
    pub lease_ms: u64,
    /// How long a shared-tier command may take before the engine gives up on it, in ms.
    pub timeout_ms: u64,
    /// After this many consecutive shared-tier failures the tier is skipped (circuit open).
    pub breaker_failures: u32,
    /// How long the circuit stays open before one probe is let through, in ms.
    pub breaker_cooldown_ms: u64,
    /// How often an instance checks the shared purge epoch, in ms.
    pub purge_poll_ms: u64,
}

/// The colo tier: on Workers, the Cache API of the data centre (`caches.default`), between
/// L1 and the shared tier. On by default; how purges reach it depends on what is configured
/// ([`super::colo::ColoMode`]): the shared tier's purge log, Cloudflare's purge API, or
/// neither (then entries live at most `max_ttl_secs`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColoConfig {
    /// Use it (on hosts that have one: the Worker). On by default.
    pub enabled: bool,
    /// With neither the shared tier nor the purge API configured, the longest a colo entry
    /// is kept, in seconds: a purge then reaches other isolates' and data centres' colo
    /// copies only by their expiry, within this bound (default 60). Ignored otherwise.
    pub max_ttl_secs: u64,
    /// Bodies larger than this are not written to it.
    pub max_object_bytes: usize,
    /// How long one colo read or write may take before the engine gives up on it, in ms.
    pub timeout_ms: u64,
}

impl Default for ColoConfig {
    fn default() -> Self {
        ColoConfig {
            enabled: true,
            max_ttl_secs: 60,
            max_object_bytes: 1 << 20,
            timeout_ms: 250,
        }
    }
}

/// Fleet statistics ([`super::fleet`]): with the shared tier, every instance adds what it
/// counted since its last report to the fleet's totals in Redis, and `/stats` and
/// `/metrics` report those totals beside the instance's own figures.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// How often an instance reports, in seconds (0: never; then there are no fleet
    /// figures). The fleet's totals lag each instance's own by at most about this much,
    /// and an instance that stops (an isolate evicted, a process killed) loses at most
    /// this much of its counts. Default 10, at most 3600.
    pub report_secs: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { report_secs: 10 }
    }
}

/// The largest `stats.report_secs`: an hour.
const MAX_REPORT_SECS: u64 = 3_600;

/// Refresh-ahead ([`super::refresh`]): fresh hits close to expiry refresh the entry in the
/// background, so hot keys never go stale. Off by default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshAheadConfig {
    /// Eagerness in percent of XFetch's beta (0 = off; 100 = beta 1, the paper's choice;
    /// larger refreshes earlier).
    pub beta_percent: u32,
    /// The least fetch time assumed, in ms: how far ahead of expiry refreshes begin for
    /// origins that answer quickly (with beta 1, a hit 1 × this before expiry refreshes with
    /// probability 1/e).
    pub min_delta_ms: u64,
}

impl Default for RefreshAheadConfig {
    fn default() -> Self {
        RefreshAheadConfig {
            beta_percent: 0,
            min_delta_ms: 1_000,
        }
    }
}

/// Size and time limits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Larger responses stream through uncached.
    pub max_object_bytes: usize,
    /// A response body larger than this (or of unknown length that grows past it) reaches
    /// the client as the origin sends it, and is stored as it passes when cacheable
    /// ([`super::filling`]); a smaller one is read whole first and sent in one write. 64 KiB
    /// by default: about what one socket read brings, so waiting for it costs a small
    /// object no round trip.
    pub stream_above_bytes: usize,
    /// A cacheable response larger than `max_object_bytes` is cached in slices of this
    /// many bytes, fetched with `Range` requests, when its origin takes ranges and names
    /// its representation with a validator ([`super::read::Slicing`]); 0 turns slicing off,
    /// and a value above `max_object_bytes` counts as `max_object_bytes`.
    /// 1 MiB (nginx's `slice` documentation's example, Fastly's block size): a seek costs at
    /// most one such fetch, and an object of a few GiB is a few thousand entries.
    pub slice_bytes: usize,
    /// Requests whose header section is larger are refused with 431.
    pub max_header_bytes: usize,
    /// An origin fetch that takes longer fails (and may be answered stale-if-error), in ms.
    pub origin_timeout_ms: u64,
    /// How long a coalesced request waits for the leader's fetch before fetching itself, ms.
    pub coalesce_wait_ms: u64,
    /// Longest wait for the next bytes of a body, in ms: an origin's once its head has
    /// arrived (Varnish `between_bytes_timeout`, nginx `proxy_read_timeout`: 60 s), and a
    /// client's request body (nginx `client_body_timeout`: 60 s). An origin body read to be
    /// stored fails as a timeout (stale-if-error applies, nothing is stored); one streamed
    /// through to the client ends abnormally, so the client never takes a cut response for
    /// a whole one; a stalled request body gets `400` (`detail=request-body`). The engine
    /// applies it to every body it stores as it streams ([`super::filling`]), on every
    /// host; natively it also bounds bodies passed through uncached and request bodies. On
    /// the Worker, bodies passed through uncached go to the runtime untouched (piping them
    /// through the Worker would cost CPU time per byte), and the runtime's limits apply.
    pub between_bytes_timeout_ms: u64,
}

/// The admin API.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Path prefix of the admin endpoints.
    pub path: String,
    /// Bearer token the admin endpoints require. No token: the admin API is disabled.
    /// Never logged or echoed.
    pub token: Option<String>,
    /// Origins allowed to read the stats endpoint from a browser (CORS). Empty: none.
    pub cors_allow_origins: Vec<String>,
}

/// A per-route override, matched by path prefix.
///
/// The TTL overrides change how long a response this cache may store stays fresh and how
/// long it may be served stale, replacing what the origin said for this cache (as if it
/// had sent `Edgecache-Cache-Control`, RFC 9213); they never make a response storable that
/// RFC 9111 §3 or the policy would not store (`private`, `no-store`, `Authorization`,
/// `Set-Cookie`, …), and clients still receive the origin's own `Cache-Control`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path prefix this rule applies to (e.g. `/static/`).
    pub prefix: String,
    /// Never cache: forward untouched.
    #[serde(default)]
    pub bypass: bool,
    /// Freshness lifetime of stored responses, in seconds (replaces `s-maxage`, `max-age`,
    /// `Expires` and heuristics for this cache).
    #[serde(default)]
    pub ttl_secs: Option<u32>,
    /// Stale-while-revalidate window, in seconds (RFC 5861 §3).
    #[serde(default)]
    pub stale_while_revalidate_secs: Option<u32>,
    /// Stale-if-error window, in seconds (RFC 5861 §4).
    #[serde(default)]
    pub stale_if_error_secs: Option<u32>,
    /// Request fields the cache keys this route's responses on (lowercase names): added to
    /// each response's `Vary` (RFC 9111 §4.1), so every value gets its own entry. A
    /// forwarding field named here (`x-forwarded-host`, …, see [`crate::policy::forwarding`])
    /// then reaches the origin as the client sent it instead of being replaced: what would
    /// poison a shared entry is safe once it is part of the key. URL and method overrides
    /// cannot be named.
    #[serde(default)]
    pub key_headers: Vec<String>,
}

impl RouteRule {
    /// The `Edgecache-Cache-Control` value that carries this rule's TTL overrides, if it
    /// has any. Stored with the response, so every instance and tier reading it applies the
    /// same lifetimes.
    pub fn cache_control_override(&self) -> Option<String> {
        let ttl = self.ttl_secs?;
        let mut value = format!("max-age={ttl}");
        if let Some(swr) = self.stale_while_revalidate_secs {
            value.push_str(&format!(", stale-while-revalidate={swr}"));
        }
        if let Some(sie) = self.stale_if_error_secs {
            value.push_str(&format!(", stale-if-error={sie}"));
        }
        Some(value)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_name: "edgecache".to_string(),
            policy: PolicyConfig::default(),
            key: KeyConfig::default(),
            l1: L1Config::default(),
            l2: L2Config::default(),
            colo: ColoConfig::default(),
            refresh_ahead: RefreshAheadConfig::default(),
            limits: Limits::default(),
            admin: AdminConfig::default(),
            stats: StatsConfig::default(),
            routes: Vec::new(),
            forwarding: Default::default(),
            write_behind: WriteBehindConfig::default(),
        }
    }
}

impl Default for L1Config {
    fn default() -> Self {
        L1Config {
            max_entries: 100_000,
            max_bytes: 256 << 20,
            admission: L1Admission::TinyLfu,
        }
    }
}

impl Default for L2Config {
    fn default() -> Self {
        L2Config {
            key_prefix: "ec:v1:".to_string(),
            max_object_bytes: 8 << 20,
            chunk_bytes: 512 << 10,
            compress_min_bytes: 1024,
            lease_ms: 5_000,
            timeout_ms: 250,
            breaker_failures: 5,
            breaker_cooldown_ms: 5_000,
            purge_poll_ms: 1_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: 8 << 20,
            stream_above_bytes: 64 << 10,
            slice_bytes: 1 << 20,
            max_header_bytes: 64 << 10,
            origin_timeout_ms: 10_000,
            coalesce_wait_ms: 10_000,
            between_bytes_timeout_ms: 60_000,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            path: "/_edgecache".to_string(),
            token: None,
            cors_allow_origins: Vec::new(),
        }
    }
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("cache_name", &self.cache_name)
            .field("policy", &self.policy)
            .field("key", &self.key)
            .field("l1", &self.l1)
            .field("l2", &self.l2)
            .field("colo", &self.colo)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("limits", &self.limits)
            .field("admin", &self.admin)
            .field("stats", &self.stats)
            .field("routes", &self.routes)
            .field("write_behind", &self.write_behind)
            .finish()
    }
}

impl fmt::Debug for AdminConfig {
    /// The token is a secret: shown only as set or unset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cors_allow_origins", &self.cors_allow_origins)
            .finish()
    }
}

/// A configuration value that cannot work, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `l1.max_entries`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`: {}", self.field, self.message)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Merges `given` into `base`: objects field by field, any other value replaces.
fn merge_json(base: &mut serde_json::Value, given: serde_json::Value) {
    match (base, given) {
        (serde_json::Value::Object(base), serde_json::Value::Object(given)) => {
            for (name, value) in given {
                match base.get_mut(&name) {
                    Some(slot) => merge_json(slot, value),
                    None => {
                        base.insert(name, value);
                    }
                }
            }
        }
        (base, given) => *base = given,
    }
}

impl EngineConfig {
    /// Reads a configuration from JSON (the Worker's `EDGECACHE_CACHE` variable; the same
    /// schema as the native TOML `[cache]` table) and validates it. Unknown fields are refused.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Self::from_json_over(&EngineConfig::default(), text)
    }

    /// Parses a JSON configuration whose absent fields take their values from `base` (a
    /// host's own defaults) rather than from [`EngineConfig::default`]; objects are merged
    /// field by field, any other value replaces the base's. Unknown fields are refused as
    /// in [`EngineConfig::from_json`].
    pub fn from_json_over(base: &EngineConfig, text: &str) -> Result<Self, ConfigError> {
        let given: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid("cache", e.to_string()))?;
        if !given.is_object() {
            return Err(invalid("cache", "must be a JSON object"));
        }
        // The text as a configuration first (every table has defaults): serde then names
        // an unknown field, locates a mistyped value, and refuses a field given twice,
        // which the merged value could no longer tell.
        serde_json::from_str::<EngineConfig>(text).map_err(|e| invalid("cache", e.to_string()))?;
        let mut merged = serde_json::to_value(base).map_err(|e| invalid("cache", e.to_string()))?;
        merge_json(&mut merged, given);
        // Read back from text, not with `from_value`: the configuration's Deserialize code
        // then exists once, for the text reader used just above, instead of a second time
        // for `Value` (17 KiB of the Worker's gzipped wasm, BENCHMARKS.md "What the
        // Worker bundle is made of"). The merged value has no floats (no field is one), so
        // its text reads back exactly.
        let merged = serde_json::to_string(&merged).map_err(|e| invalid("cache", e.to_string()))?;
        let config: EngineConfig = serde_json::from_str(&merged).map_err(|e| {
            // serde names the unknown or mistyped field in its message.
            invalid("cache", e.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that could make the engine misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let is_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !is_token(&self.cache_name) {
            return Err(invalid(
                "cache_name",
                "must be non-empty and use only letters, digits, '-', '_' and '.'",
            ));
        }
        if self.l1.max_entries == 0 {
            return Err(invalid("l1.max_entries", "must be at least 1"));
        }
        if self.l1.max_bytes < 1024 {
            return Err(invalid("l1.max_bytes", "must be at least 1024"));
        }
        if self.l2.key_prefix.is_empty()
            || self
                .l2
                .key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid(
                "l2.key_prefix",
                "must be non-empty, without whitespace or control characters",
            ));
        }
        if self.l2.lease_ms == 0 {
            return Err(invalid("l2.lease_ms", "must be at least 1"));
        }
        if self.l2.timeout_ms == 0 {
            return Err(invalid("l2.timeout_ms", "must be at least 1"));
        }
        if !(1024..=64 << 20).contains(&self.l2.chunk_bytes) {
            return Err(invalid(
                "l2.chunk_bytes",
                "must be 1024 to 67108864 (64 MiB)",
            ));
        }
        if self.refresh_ahead.beta_percent > 10_000 {
            return Err(invalid(
                "refresh_ahead.beta_percent",
                "must be 0 (off) to 10000 (beta 100)",
            ));
        }
        if self.colo.timeout_ms == 0 {
            return Err(invalid("colo.timeout_ms", "must be at least 1"));
        }
        if self.colo.max_ttl_secs == 0 {
            return Err(invalid(
                "colo.max_ttl_secs",
                "must be at least 1 (turn the tier off with colo.enabled = false)",
            ));
        }
        if self.limits.max_object_bytes == 0 {
            return Err(invalid("limits.max_object_bytes", "must be at least 1"));
        }
        if self.limits.slice_bytes != 0 && self.limits.slice_bytes < 1024 {
            return Err(invalid(
                "limits.slice_bytes",
                "must be 0 (no slicing) or at least 1024",
            ));
        }
        if self.limits.max_header_bytes < 1024 {
            return Err(invalid("limits.max_header_bytes", "must be at least 1024"));
        }
        if self.limits.origin_timeout_ms == 0 {
            return Err(invalid("limits.origin_timeout_ms", "must be at least 1"));
        }
        if self.limits.between_bytes_timeout_ms == 0 {
            return Err(invalid(
                "limits.between_bytes_timeout_ms",
                "must be at least 1",
            ));
        }
        if !self.admin.path.starts_with('/')
            || self.admin.path.len() < 2
            || self.admin.path.ends_with('/')
        {
            return Err(invalid(
                "admin.path",
                "must start with '/', not be '/' alone, and not end with '/'",
            ));
        }
        check_normal_path("admin.path", &self.admin.path)?;
        crate::policy::forwarding::Trust::new(&self.forwarding).map_err(|(i, message)| {
            invalid(&format!("forwarding.trusted_proxies[{i}]"), message)
        })?;
        if let Some(token) = &self.admin.token {
            if token.len() < 16 {
                return Err(invalid(
                    "admin.token",
                    "must be at least 16 characters (it guards purge and stats)",
                ));
            }
        }
        if self.stats.report_secs > MAX_REPORT_SECS {
            return Err(invalid(
                "stats.report_secs",
                format!("must be 0 (no fleet figures) to {MAX_REPORT_SECS} (an hour)"),
            ));
        }
        if self.policy.heuristic_percent > 100 {
            return Err(invalid("policy.heuristic_percent", "must be 0 to 100"));
        }
        self.validate_write_behind()?;
        for (i, route) in self.routes.iter().enumerate() {
            if !route.prefix.starts_with('/') {
                return Err(invalid(
                    &format!("routes[{i}].prefix"),
                    "must start with '/'",
                ));
            }
            check_normal_path(&format!("routes[{i}].prefix"), &route.prefix)?;
            for (j, name) in route.key_headers.iter().enumerate() {
                let field = || format!("routes[{i}].key_headers[{j}]");
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| crate::cache_control::is_tchar(b) && !b.is_ascii_uppercase());
                if !token {
                    return Err(invalid(&field(), "must be a lowercase header field name"));
                }
                // As CGI-style servers read it: `x_http_method_override` is the override.
                let dashed = name.replace('_', "-");
                if crate::policy::forwarding::OVERRIDE_FIELDS.contains(&dashed.as_str())
                    || dashed == "host"
                {
                    return Err(invalid(
                        &field(),
                        "URL and method overrides are never forwarded, and the host is in every key already",
                    ));
                }
            }
            let stale_without_ttl = route.ttl_secs.is_none()
                && (route.stale_while_revalidate_secs.is_some()
                    || route.stale_if_error_secs.is_some());
            if stale_without_ttl {
                return Err(invalid(
                    &format!("routes[{i}].ttl_secs"),
                    "is required when a stale window is set",
                ));
            }
            let obeyed = self
                .policy
                .targeted_fields
                .iter()
                .any(|f| f == "edgecache-cache-control");
            if route.ttl_secs.is_some() && !obeyed {
                return Err(invalid(
                    &format!("routes[{i}].ttl_secs"),
                    "needs `edgecache-cache-control` in policy.targeted_fields (it carries the override)",
                ));
            }
            if route.bypass && route.ttl_secs.is_some() {
                return Err(invalid(
                    &format!("routes[{i}].ttl_secs"),
                    "has no effect on a bypass route",
                ));
            }
        }
        Ok(())
    }

    fn validate_write_behind(&self) -> Result<(), ConfigError> {
        let wb = &self.write_behind;
        for (i, prefix) in wb.routes.iter().enumerate() {
            if !prefix.starts_with('/') {
                return Err(invalid(
                    &format!("write_behind.routes[{i}]"),
                    "must start with '/'",
                ));
            }
            check_normal_path(&format!("write_behind.routes[{i}]"), prefix)?;
        }
        if wb.max_body_bytes == 0 {
            return Err(invalid("write_behind.max_body_bytes", "must be at least 1"));
        }
        if wb.max_body_bytes > MAX_QUEUED_BODY_BYTES {
            return Err(invalid(
                "write_behind.max_body_bytes",
                format!(
                    "must be at most {MAX_QUEUED_BODY_BYTES} (16 MiB): queued bodies are kept in Redis and read back whole"
                ),
            ));
        }
        if wb.max_attempts == 0 {
            return Err(invalid("write_behind.max_attempts", "must be at least 1"));
        }
        if wb.retry_after_ms <= self.limits.origin_timeout_ms {
            return Err(invalid(
                "write_behind.retry_after_ms",
                format!(
                    "must be longer than limits.origin_timeout_ms ({} ms): an entry being sent must not look abandoned",
                    self.limits.origin_timeout_ms
                ),
            ));
        }
        if wb.flush_interval_ms == 0 {
            return Err(invalid(
                "write_behind.flush_interval_ms",
                "must be at least 1",
            ));
        }
        if wb.timeout_ms == 0 {
            return Err(invalid("write_behind.timeout_ms", "must be at least 1"));
        }
        if wb.max_dead_letters == 0 {
            return Err(invalid(
                "write_behind.max_dead_letters",
                "must be at least 1",
            ));
        }
        if wb.max_queue_entries == 0 {
            return Err(invalid(
                "write_behind.max_queue_entries",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Checks the settings that need the shared tier against whether the host has one
    /// (each host calls this at start, with its Redis setting).
    pub fn validate_shared_tier(&self, configured: bool) -> Result<(), ConfigError> {
        if !configured && !self.write_behind.routes.is_empty() {
            return Err(invalid(
                "write_behind.routes",
                "write-behind needs the shared tier (Redis), where requests wait for the origin; configure Redis or remove the routes",
            ));
        }
        Ok(())
    }

    /// The first route rule whose prefix matches `path`.
    pub fn route_for(&self, path: &str) -> Option<&RouteRule> {
        self.routes.iter().find(|r| route_matches(&r.prefix, path))
    }
}
/// Whether the origin URL names this machine or a private network (RFC 1918, loopback,
/// link-local, unique-local IPv6, `localhost`): reachable from `wrangler dev`, never from a
/// deployed Worker.
pub fn is_private_origin(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // `user:password@host`: the host is after the last `@`.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let all_numeric = !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if host.parse::<core::net::Ipv4Addr>().is_err() && (all_numeric || host.starts_with("0x")) {
        // `127.1`, `2130706433`, `0x7f000001`: forms a URL parser reads as an IPv4 address
        // (loopback, here) that are not a dotted quad. Refused whatever they name.
        return true;
    }
    match host.parse::<core::net::IpAddr>() {
        Ok(core::net::IpAddr::V4(ip)) => is_private_v4(ip),
        Ok(core::net::IpAddr::V6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
                // `::ffff:a.b.c.d` reaches a.b.c.d: the same ranges are refused.
                || ip.to_ipv4_mapped().is_some_and(is_private_v4)
        }
        Err(_) => false,
    }
}

/// Loopback, private (RFC 1918), link-local (the cloud metadata address among them),
/// `0.0.0.0/8`, or carrier-grade NAT's shared space (RFC 6598).
fn is_private_v4(ip: core::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || a == 0
        || (a == 100 && b & 0xc0 == 64)
}

#[cfg(test)]
mod tests {
    use super::{is_private_origin, EngineConfig};

    #[test]
    fn json_is_read_over_a_hosts_defaults() {
        let mut base = EngineConfig::default();
        base.l1.max_bytes = 32 << 20;
        let read = |text| EngineConfig::from_json_over(&base, text);
        assert_eq!(read("{}").unwrap(), base);
        let other = read(r#"{"l1":{"max_entries":5},"limits":{"slice_bytes":65536}}"#).unwrap();
        assert_eq!(
            (
                other.l1.max_bytes,
                other.l1.max_entries,
                other.limits.slice_bytes
            ),
            (32 << 20, 5, 65536),
            "a table given in part keeps the base's other fields"
        );
        assert_eq!(
            read(r#"{"l1":{"max_bytes":100000}}"#).unwrap().l1.max_bytes,
            100_000
        );
        let unknown = read(r#"{"l1":{"max_byte":1}}"#).unwrap_err();
        assert!(unknown.to_string().contains("max_byte"), "{unknown}");
        assert!(read(r#"{"l1":5}"#).is_err(), "a table given as a number");
        assert!(read("[]").is_err());
        assert_eq!(
            EngineConfig::from_json("{}").unwrap(),
            EngineConfig::default(),
            "from_json reads over the engine's defaults"
        );
    }

    /// Review finding 7: a mistyped value is located (parsing the merged value alone said
    /// `invalid type: string "32MiB", expected usize` and nothing else).
    #[test]
    fn a_mistyped_field_is_named_or_located() {
        let error = EngineConfig::from_json(r#"{"l1":{"max_bytes":"32MiB"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("max_bytes") || error.contains("column"),
            "{error}"
        );
    }

    /// Review finding 9: a table (or field) given twice is refused (`duplicate field`),
    /// not silently the last of them. (JSON.stringify of a `[vars]` table cannot produce
    /// duplicates; a hand-written `EDGECACHE_CACHE` string can.)
    #[test]
    fn a_table_given_twice_is_refused() {
        let read =
            EngineConfig::from_json(r#"{"l1":{"max_bytes":1048576},"l1":{"max_entries":5}}"#);
        assert!(read.is_err(), "{:?}", read.map(|c| c.l1));
    }

    /// Review finding 10: IPv4-mapped IPv6 addresses are checked as their IPv4 address
    /// (`http://[::ffff:169.254.169.254]` was let through, its IPv4 form refused).
    #[test]
    fn ipv4_mapped_addresses_are_checked_as_their_ipv4_address() {
        for private in [
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:100.64.0.1]/",
            "http://[::ffff:0.0.0.1]/",
        ] {
            let v4 = private.replace("[::ffff:", "").replace(']', "");
            assert!(is_private_origin(&v4), "{v4}");
            assert!(is_private_origin(private), "{private}");
        }
    }

    #[test]
    fn private_and_loopback_origins_are_recognised() {
        for private in [
            "http://127.0.0.1:8080",
            "http://localhost:3000/base",
            "https://LOCALHOST.",
            "http://app.localhost",
            "http://10.1.2.3",
            "http://172.16.0.1:80",
            "http://192.168.1.10/x",
            "http://169.254.169.254",
            "http://0.0.0.0",
            "http://[::1]:8080",
            "http://[fd00::1]",
            "http://[fe80::1]",
            "http://[::ffff:127.0.0.1]",
            "http://user@127.0.0.1",
            "http://a:b@localhost:8080",
            "http://127.1",
            "http://2130706433",
            "http://0x7f000001",
            "http://0177.0.0.1",
            "http://100.64.1.1",
            "http://0.1.2.3",
            // What scripts/deploy.sh's own copy of this check once let through.
            "http://[::1]/",
            "http://localhost./",
            "http://localhost?x",
            "http://[::]/",
        ] {
            assert!(is_private_origin(private), "{private}");
        }
        for public in [
            "https://origin.example.com",
            "https://example.com:8443/prefix",
            "http://93.184.216.34",
            "http://172.32.0.1",
            "http://[2606:4700::1111]",
            "https://localhost.example.com",
            "https://user@origin.example.com",
            "http://100.128.0.1",
            "https://1.example",
            "https://fcdn.example.com",
            "https://fd-origin.example.com",
        ] {
            assert!(!is_private_origin(public), "{public}");
        }
    }
}
