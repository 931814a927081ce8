//! The one cache engine every host runs: the tiered read path L1 → L2 → origin with request
//! coalescing, stale-while-revalidate, stale-if-error, conditional revalidation, write-through
//! invalidation, write-behind, purges and statistics. Generic over the [`host`] traits; no I/O of its own.
//!
//! A host turns its native request into a [`Request`], calls [`Engine::handle`], writes the
//! [`Response`] back, and runs the returned background [`Job`] (if any) with
//! [`Engine::run_job`] without making the client wait (`ctx.wait_until` on Workers, a spawned
//! task natively).

pub mod admin;
pub mod colo;
pub mod config;
pub mod filling;
pub mod fleet;
pub mod flight;
pub mod host;
pub mod join;
pub mod l2;
pub mod refresh;
pub mod stats;
pub mod sync;
pub mod write_behind;

pub mod request;

mod read;
mod respond;
#[cfg(target_has_atomic = "64")]
pub mod simulated;
mod status;
mod write;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::store::{L1Store, StoreConfig};

pub use config::{ConfigError, EngineConfig};
pub use fleet::FleetView;
pub use host::{
    BodyError, ColoCache, CounterReport, CounterTotals, Lock, LogLevel, NoColo, NoSharedTier,
    Origin, OriginBody, OriginError, OriginRequest, OriginResponse, PendingEntry, Runtime,
    SharedTier, StreamEntry, TierError, DELETE_IF_EQUALS_SCRIPT,
};
pub use request::{RequestError, RequestView, Target};
pub use respond::served_fields;
pub use stats::{Counters, EngineStats, InstanceId, Snapshot};

/// The types a host plugs into the engine.
pub trait Host {
    /// The host's streaming body type.
    type Body;
    /// Fetches from the origin.
    type Origin: Origin<Body = Self::Body>;
    /// The shared tier ([`NoSharedTier`] when there is none).
    type SharedTier: SharedTier;
    /// The colo tier ([`NoColo`] on every host but the Worker).
    type Colo: ColoCache;
    /// Clock and timers.
    type Runtime: Runtime;
    /// The lock around the engine's in-memory state.
    type Lock: Lock<EngineState>;
}

/// A client request, as the host received it: nothing in it is interpreted by the host.
/// The engine normalises it once into a [`RequestView`] ([`request`]).
#[derive(Debug)]
pub struct Request<B> {
    /// Method (case-sensitive).
    pub method: String,
    /// The scheme of the connection it came on: `http` or `https`.
    pub scheme: String,
    /// The request target exactly as received: origin-form (`/path?query`), absolute-form
    /// (`https://host/path?query`, as a Worker's URL always is), `*` or authority-form.
    pub target: String,
    /// Every header field line as received (`Host` included, however many there were).
    pub headers: Headers,
    /// The address the request came from (the peer natively, `CF-Connecting-IP` on a
    /// Worker), for the forwarding policy ([`crate::policy::forwarding`]).
    pub client: Option<core::net::IpAddr>,
    /// The request body, passed to the origin untouched (unsafe methods).
    pub body: Option<B>,
}

/// A response for the host to send.
#[derive(Debug)]
pub struct Response<B> {
    /// Status code.
    pub status: u16,
    /// Header fields (hop-by-hop fields removed; `Age` and `Cache-Status` set). When
    /// [`Self::stored_fields`] is set, only the fields sent after the stored ones.
    pub headers: Headers,
    /// A cache hit's stored response, whose [`served_fields`] are sent before
    /// [`Self::headers`]. Hosts that serve many hits can keep those fields ready to send
    /// beside the entry (the native host does, in `native::ready`); [`Self::take_fields`]
    /// gives the whole list.
    pub stored_fields: Option<Arc<CachedResponse>>,
    /// The content.
    pub body: Body<B>,
    /// For a response whose content the method leaves out (`HEAD`), how long the `GET`'s
    /// content is: the `Content-Length` to send (RFC 9110 §9.3.2, §8.6). `None` otherwise:
    /// hosts send the length of the body they send, whatever `Content-Length` the stored or
    /// origin fields carry.
    pub content_length: Option<u64>,
    /// Where the content came from, for the byte counters.
    pub source: Source,
}

/// Where a response's content came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cache: a hit, a stale response, or one a `304` confirmed.
    Cache,
    /// The origin, in this request (a fill, a pass).
    Origin,
    /// The engine itself (errors, the admin API).
    Engine,
    /// An object's slices, assembled as the response is sent: counted slice by slice, from
    /// the cache or from the origin, as each is sent ([`read::SliceJob`]).
    Slices,
}

impl<B> Response<B> {
    /// How many bytes of content it carries, when the engine knows (a stream's is the
    /// `Content-Length` it declares, if any).
    pub fn content_bytes(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Cached(stored) => stored.body.len() as u64,
            Body::Slice(_, range) => range.len() as u64,
            Body::Filling(reader) => reader.expected_length().unwrap_or(0),
            Body::Stream(_) => self
                .headers
                .get_str("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// Every header field to send, in order.
    pub fn fields(&self) -> Headers {
        let mut all = Headers::new();
        if let Some(stored) = &self.stored_fields {
            for (name, value) in served_fields(stored) {
                all.append(name, value);
            }
        }
        for (name, value) in self.headers.iter() {
            all.append(name, value);
        }
        all
    }

    /// Every header field to send, in order, taken out of the response.
    pub fn take_fields(&mut self) -> Headers {
        let all = match self.stored_fields {
            Some(_) => self.fields(),
            None => core::mem::take(&mut self.headers),
        };
        self.stored_fields = None;
        self.headers = Headers::new();
        all
    }
}

/// Response content.
#[derive(Debug)]
pub enum Body<B> {
    /// No content (HEAD, 304, 204).
    Empty,
    /// Content the engine produced (errors, admin answers).
    Bytes(Vec<u8>),
    /// A stored response's content, shared without copying.
    Cached(Arc<CachedResponse>),
    /// Part of a stored response's content (a single-part `206`), shared without copying.
    Slice(Arc<CachedResponse>, core::ops::Range<usize>),
    /// A response being stored while it is read from the origin ([`filling`]).
    Filling(filling::FillReader),
    /// The origin's stream, passed through.
    Stream(B),
}

/// Work to do besides sending the response: hosts start it at once (a fill's body is
/// read by the response it belongs to) and never make the client wait for it.
#[derive(Debug)]
pub enum Job<B> {
    /// Revalidate a stale response served under stale-while-revalidate (RFC 5861 §3).
    Revalidate {
        /// The request that found it stale.
        head: RequestView,
        /// The L1/L2 key it is stored under.
        key: String,
        /// The stale response.
        stored: Arc<CachedResponse>,
    },
    /// Write a freshly stored response to the shared tier.
    WriteL2 {
        /// The keys it is stored under (primary, and variant when it varies).
        keys: Vec<String>,
        /// The response.
        stored: Arc<CachedResponse>,
    },
    /// Write a response to the colo tier (fetched, or found in the shared tier).
    WriteColo {
        /// The keys it is stored under (primary, and variant when it varies).
        keys: Vec<String>,
        /// The response.
        stored: Arc<CachedResponse>,
    },
    /// Apply purges other instances made (see [`sync`]).
    SyncPurges,
    /// Add what this instance counted since its last report to the fleet's totals (see
    /// [`fleet`]).
    ReportStats,
    /// Remove these cache keys (and their Vary variants) from every tier and tell the other
    /// instances: a stored response that may no longer be stored (a `304` made it so).
    Invalidate(Vec<String>),
    /// Fetch and store these `GET`s, as if clients had asked (the admin API's warm).
    Warm(Vec<RequestView>),
    /// Send queued write-behind requests to the origin ([`write_behind`]).
    FlushWriteBehind,
    /// Read the rest of a response from the origin into its fill, then store it.
    Fill(Box<filling::FillJob<B>>),
    /// Assemble a response's content from the slices of its object ([`read::SliceJob`]).
    Slices(Box<read::SliceJob<B>>),
    /// Keep the slices of the object under `key` in every tier as long as its `head`,
    /// which a `304` freshened ([`read::Slicing`]).
    KeepSlices {
        /// The object's key.
        key: String,
        /// Its freshened head.
        head: Arc<CachedResponse>,
        /// Until when they are kept.
        until: crate::time::Timestamp,
    },
    /// Several jobs.
    Batch(Vec<Job<B>>),
}

impl<B> Job<B> {
    /// Combines two optional jobs.
    pub fn merge(a: Option<Job<B>>, b: Option<Job<B>>) -> Option<Job<B>> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(Job::Batch(mut v)), Some(b)) => {
                v.push(b);
                Some(Job::Batch(v))
            }
            (Some(a), Some(b)) => Some(Job::Batch(alloc::vec![a, b])),
        }
    }
}

/// A response and the work to do after sending it.
#[derive(Debug)]
pub struct Handled<B> {
    /// What to send to the client.
    pub response: Response<B>,
    /// What to run besides, if anything.
    pub job: Option<Job<B>>,
}

impl<B> Handled<B> {
    fn now(response: Response<B>) -> Self {
        Handled {
            response,
            job: None,
        }
    }
}

/// The engine's in-memory state, behind the host's [`Lock`].
pub struct EngineState {
    /// The L1 store: cache key (or variant key) → stored response. Its hasher is seeded
    /// from the host's CSPRNG, so clients cannot choose keys that collide (and a simulated
    /// host with a fixed seed gets the same admission decisions every run).
    pub l1: L1Store<String, Arc<CachedResponse>, foldhash::fast::FixedState>,
    /// Origin fetches in progress, for coalescing.
    pub flights: flight::Flights,
    /// Responses being stored as they arrive, for the requests that come meanwhile.
    pub fills: filling::Fills,
    /// Counters.
    pub stats: EngineStats,
    /// The shared tier's circuit breaker.
    pub breaker: l2::Breaker,
    /// Cross-instance purge state.
    pub sync: sync::SyncState,
    /// The purges applied, for checking colo entries (kept only with a colo tier).
    pub purge_history: colo::PurgeHistory,
    /// The purges made here, for checking colo entries without the shared tier.
    pub colo_local: colo::PurgeHistory,
    /// Random draws for refresh-ahead.
    pub rng: refresh::Rng,
    /// Whether the shared tier was checked for write-behind, and how it went.
    pub shared_tier_check: write_behind::SharedTierCheck,
    /// This instance's id and what it has reported to the fleet's totals.
    pub fleet: fleet::FleetState,
}

impl EngineState {
    /// Drops everything L1 holds, and every fill in progress (none of them is stored).
    pub fn clear_l1(&mut self) {
        self.l1.clear();
        self.fills.clear();
    }

    /// Fresh state for `config`, its hashes and random draws seeded with `seed`.
    pub fn new(config: &EngineConfig, seed: u64) -> Self {
        EngineState {
            l1: L1Store::with_hasher(
                StoreConfig::new(config.l1.max_entries, config.l1.max_bytes)
                    .with_admission(config.l1.admission.policy()),
                foldhash::fast::FixedState::with_seed(seed),
            ),
            flights: flight::Flights::default(),
            fills: filling::Fills::default(),
            stats: EngineStats::default(),
            breaker: l2::Breaker::default(),
            sync: sync::SyncState::default(),
            purge_history: colo::PurgeHistory::default(),
            colo_local: colo::PurgeHistory::local(),
            rng: refresh::Rng::new(seed),
            shared_tier_check: write_behind::SharedTierCheck::Pending,
            fleet: fleet::FleetState::default(),
        }
    }
}

/// The cache engine. Share it between requests (`Arc` natively, `Rc` on JS hosts).
pub struct Engine<H: Host> {
    config: Arc<EngineConfig>,
    statuses: Arc<status::Statuses>,
    origin: H::Origin,
    /// The shared tier (Redis), if the host has one.
    shared: Option<H::SharedTier>,
    colo: Option<H::Colo>,
    /// Why there is no colo tier, when the host says (`/stats`).
    colo_note: Option<&'static str>,
    runtime: H::Runtime,
    state: H::Lock,
    /// What this instance writes into the leases it takes in the shared tier (random per
    /// instance), so that it releases only its own ([`SharedTier::delete_if_equals`]).
    lease_token: Arc<str>,
    /// The proxies whose forwarding fields are kept, parsed once.
    trust: Arc<crate::policy::forwarding::Trust>,
}

impl<H: Host> Engine<H> {
    /// Builds an engine after validating `config`.
    pub fn new(
        config: EngineConfig,
        origin: H::Origin,
        shared: Option<H::SharedTier>,
        runtime: H::Runtime,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let state = H::Lock::new(EngineState::new(&config, runtime.random_u64()));
        let statuses = Arc::new(status::Statuses::new(&config.cache_name));
        let lease_token = Arc::from(alloc::format!(
            "{:016x}{:016x}",
            runtime.random_u64(),
            runtime.random_u64()
        ));
        // A draw of its own: the id is shown in `/stats`, the seed and the token never.
        let instance = stats::InstanceId(runtime.random_u64());
        state.with(|s| s.fleet.instance = instance);
        let trust = crate::policy::forwarding::Trust::new(&config.forwarding).unwrap_or_default();
        Ok(Engine {
            trust: Arc::new(trust),
            config: Arc::new(config),
            statuses,
            origin,
            shared,
            colo: None,
            colo_note: None,
            runtime,
            state,
            lease_token,
        })
    }

    /// This engine with another shared-tier client and no colo tier, sharing its
    /// configuration and its in-memory state (L1, coalescing, counters, breaker, purge
    /// position). For hosts whose I/O objects are bound to one request (a Worker's sockets):
    /// they keep one engine per isolate and make one of these per request, adding the
    /// request's colo cache with [`Self::with_colo`]. Cheap: nothing is copied but handles.
    pub fn with_shared_tier(&self, shared: Option<H::SharedTier>) -> Self
    where
        H::Origin: Clone,
        H::Runtime: Clone,
        H::Lock: Clone,
    {
        Engine {
            config: self.config.clone(),
            statuses: self.statuses.clone(),
            origin: self.origin.clone(),
            shared,
            colo: None,
            colo_note: None,
            runtime: self.runtime.clone(),
            state: self.state.clone(),
            lease_token: self.lease_token.clone(),
            trust: self.trust.clone(),
        }
    }

    /// This engine with a colo tier, used when `colo.enabled` is set (how purges reach it
    /// depends on what else is configured, see [`colo::ColoMode`]).
    pub fn with_colo(mut self, colo: Option<H::Colo>) -> Self {
        self.colo = colo;
        self
    }

    /// This engine without a colo tier for the reason `note` (e.g. `inactive on
    /// workers.dev`, where the Cache API stores nothing), which `/stats` reports.
    pub fn with_colo_unavailable(mut self, note: &'static str) -> Self {
        self.colo = None;
        self.colo_note = Some(note);
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The host's runtime.
    pub fn runtime(&self) -> &H::Runtime {
        &self.runtime
    }

    /// Counters and store figures now.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.runtime.now();
        let store_configured = self.shared.is_some();
        let mut snapshot = self.state.with(|s| {
            let mut snapshot = Snapshot::new(
                s.stats,
                &s.l1.stats(),
                store_configured,
                s.breaker.is_open(now),
            );
            snapshot.instance = s.fleet.instance;
            snapshot
        });
        let mode = self.colo_mode();
        snapshot.colo = match (self.config.colo.enabled, mode) {
            (false, _) => "off",
            (true, Some(mode)) => mode.as_str(),
            (true, None) => self.colo_note.unwrap_or("none on this host"),
        };
        snapshot.colo_max_ttl_secs =
            (mode == Some(colo::ColoMode::Expiry)).then_some(self.config.colo.max_ttl_secs);
        snapshot
    }

    /// Handles one client request: normalises it ([`RequestView::parse`]), then the admin
    /// API, pass-through, write-through or cached read.
    pub async fn handle(&self, request: Request<H::Body>) -> Handled<H::Body> {
        let header_bytes = request.headers.size_bytes() + request.target.len();
        let scheme =
            crate::policy::forwarding::proxy_scheme(&request.headers, request.client, &self.trust)
                .unwrap_or(&request.scheme);
        let view = match RequestView::parse(
            &request.method,
            scheme,
            &request.target,
            request.headers,
            request.client,
        ) {
            Ok(Target::Resource(view)) => view,
            Ok(Target::Server) => return Handled::now(respond::server_options()),
            Err(error) => {
                self.count(|s| s.bad_requests += 1);
                let entry = self.statuses.note(Some(error.as_str()));
                return Handled::now(respond::error(error.status(), error.message(), entry));
            }
        };
        if admin::is_admin_path(&self.config.admin.path, view.path()) {
            let mut job = None;
            let response = Box::pin(self.admin(&view, &mut job)).await;
            return Handled { response, job };
        }
        self.count(|s| s.requests += 1);
        if header_bytes > self.config.limits.max_header_bytes {
            return Handled::now(respond::error(
                431,
                "request header fields too large",
                self.statuses.note(None),
            ));
        }
        let mut handled = self.dispatch(view, request.body).await;
        let bytes = handled.response.content_bytes();
        match handled.response.source {
            Source::Cache => self.count(|s| s.bytes_from_cache += bytes),
            Source::Origin => self.count(|s| s.bytes_from_origin += bytes),
            Source::Engine | Source::Slices => {}
        }
        let now = self.runtime.now();
        if self.purge_sync_due(now) {
            handled.job = Job::merge(handled.job, Some(Job::SyncPurges));
        }
        if self.stats_report_due(now) {
            handled.job = Job::merge(handled.job, Some(Job::ReportStats));
        }
        handled
    }

    async fn dispatch(&self, view: RequestView, body: Option<H::Body>) -> Handled<H::Body> {
        use crate::policy::cache_status::Forward;
        use crate::policy::request::{BypassReason, RequestClass};
        let route_bypass = self.config.route_for(view.path()).is_some_and(|r| r.bypass);
        let class = view.class();
        if class == RequestClass::Unsafe && self.config.write_behind.covers(view.path()) {
            // Write-behind routes are configured for their writes: route rules govern reads.
            return Box::pin(self.write_behind(view, body)).await;
        }
        // Only the read is on the hit path: the others are boxed, so the future every
        // request carries stays the size a hit needs (it is moved, whole, into the host's
        // task).
        match class {
            _ if route_bypass => Box::pin(self.pass(view, body, Forward::Bypass)).await,
            RequestClass::Bypass(BypassReason::Method) => {
                Box::pin(self.pass(view, body, Forward::Method)).await
            }
            RequestClass::Bypass(_) => Box::pin(self.pass(view, body, Forward::Bypass)).await,
            RequestClass::Unsafe => Box::pin(self.write_through(view, body)).await,
            RequestClass::Lookup => self.read(view).await,
        }
    }

    /// Runs background work returned by [`Engine::handle`].
    pub async fn run_job(&self, job: Job<H::Body>) {
        // What clients are reading (fills, slice assemblies) runs beside the rest, so a
        // purge sync or a tier write never holds up their bytes, nor they the lease release.
        let mut streams = Vec::new();
        let mut rest = Vec::new();
        let mut batch = alloc::vec![job];
        while let Some(job) = batch.pop() {
            match job {
                Job::Batch(jobs) => batch.extend(jobs),
                Job::Fill(_) | Job::Slices(_) => streams.push(job),
                other => rest.push(other),
            }
        }
        // Taken in the order they run; `run_in_turn` takes from the end.
        streams.reverse();
        rest.reverse();
        join::join(self.run_in_turn(streams), self.run_in_turn(rest)).await;
    }

    /// Runs `jobs` one after the other (those they lead to included).
    async fn run_in_turn(&self, jobs: Vec<Job<H::Body>>) {
        let mut queue = jobs;
        while let Some(job) = queue.pop() {
            match job {
                Job::Batch(jobs) => queue.extend(jobs),
                Job::Revalidate { head, key, stored } => {
                    self.revalidate_in_background(head, key, stored).await
                }
                Job::WriteL2 { keys, stored } => {
                    self.l2_write_all(&keys, &stored).await;
                    self.release_lease(&keys[0]).await;
                }
                Job::WriteColo { keys, stored } => {
                    for key in &keys {
                        self.colo_write(key, &stored, 0).await;
                    }
                }
                Job::SyncPurges => self.sync_purges().await,
                Job::ReportStats => self.report_stats().await,
                Job::FlushWriteBehind => self.flush_write_behind().await,
                Job::Fill(fill) => queue.extend(self.run_fill(*fill).await),
                Job::Slices(slices) => self.run_slices(*slices).await,
                Job::Invalidate(keys) => self.invalidate_keys(&keys).await,
                Job::KeepSlices { key, head, until } => self.keep_slices(&key, &head, until).await,
                Job::Warm(heads) => {
                    for head in heads {
                        // As a client's GET: route rules, coalescing and every tier apply.
                        let handled = self.dispatch(head, None).await;
                        self.count(|s| s.warmed += 1);
                        queue.extend(handled.job);
                    }
                }
            }
        }
    }

    fn count(&self, f: impl FnOnce(&mut EngineStats)) {
        self.state.with(|s| f(&mut s.stats));
    }
}
