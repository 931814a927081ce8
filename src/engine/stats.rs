//! Engine counters, rendered as JSON (for the stats endpoint and the demo page) and as
//! Prometheus text exposition. These are one instance's figures (`"scope": "instance"`);
//! the fleet's, added up in the shared tier, are [`super::fleet`]'s.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::store::StoreStats;

/// What the engine counts. All counters only go up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineStats {
    /// Requests handled (admin requests excluded).
    pub requests: u64,
    /// Served fresh from L1.
    pub l1_hits: u64,
    /// Served fresh from L2 (and backfilled into L1).
    pub l2_hits: u64,
    /// Not in any tier.
    pub misses: u64,
    /// Responses from the stored head of an object in slices that needed slices from behind
    /// L1 (RFC 9211 §2.2 `fwd=partial`): counted here, not as hits.
    pub partial_hits: u64,
    /// Served stale while revalidating in the background (RFC 5861 §3).
    pub stale_while_revalidate: u64,
    /// Served stale because the origin failed (RFC 5861 §4).
    pub stale_if_error: u64,
    /// Fresh hits that started a background refresh ahead of expiry (refresh-ahead).
    pub refreshed_early: u64,
    /// Validations answered `304` and merged (RFC 9111 §4.3.4).
    pub revalidated: u64,
    /// Requests that waited for another request's origin fetch instead of making their own.
    pub coalesced: u64,
    /// Requests sent to the origin.
    pub origin_fetches: u64,
    /// Bytes of content served from the cache (hits, stale responses, those a `304`
    /// confirmed; ranges count the bytes sent; an object in slices, the bytes sent of the
    /// slices the cache had).
    pub bytes_from_cache: u64,
    /// Bytes of content served as the origin sent them in the same request (fills, passes;
    /// a stream counts the `Content-Length` it declares; an object in slices, the bytes sent
    /// of the slices fetched for the response).
    pub bytes_from_origin: u64,
    /// Origin fetches that failed (timeout, unreachable, broken).
    pub origin_errors: u64,
    /// Responses stored.
    pub stored: u64,
    /// Responses stored as they streamed to their clients (read-while-writer), started.
    pub streamed_fills: u64,
    /// Streamed fills that failed (the origin aborted, stalled, or sent another length
    /// than it declared): nothing was stored, and their clients' responses were cut off.
    pub failed_fills: u64,
    /// Objects above `limits.max_object_bytes` stored as a head, their content in slices.
    pub sliced_objects: u64,
    /// Slices of such objects fetched from the origin (by range) and stored.
    pub slice_fetches: u64,
    /// Requests forwarded without using the cache (method, range, route rule, not storable).
    pub passes: u64,
    /// Shared-tier commands that failed or timed out.
    pub l2_errors: u64,
    /// Shared-tier entries that could not be decoded (counted as misses, never served).
    pub l2_corrupt: u64,
    /// Times the shared tier was found to have lost its data (L1 cleared in response).
    pub l2_resets: u64,
    /// Fresh hits served from the colo tier (and backfilled into L1).
    pub colo_hits: u64,
    /// Responses written to the colo tier.
    pub colo_stored: u64,
    /// Colo-tier reads or writes that failed or timed out.
    pub colo_errors: u64,
    /// Colo-tier values that could not be decoded (counted as misses, never served).
    pub colo_corrupt: u64,
    /// Purge requests carried out.
    pub purges: u64,
    /// URLs fetched through the cache by warm requests.
    pub warmed: u64,
    /// Admin requests refused for a missing or wrong token.
    pub admin_unauthorized: u64,
    /// Requests refused before anything else (`400`/`501`: no, several or an invalid
    /// `Host`, an invalid request target, `CONNECT`), see [`super::request`].
    pub bad_requests: u64,
    /// Unsafe requests queued for the origin (answered `202`, write-behind).
    pub write_behind_appended: u64,
    /// Queued requests the origin took (any status below 400) and that left the queue.
    pub write_behind_flushed: u64,
    /// Queued requests whose delivery failed and will be retried (5xx, 408, 425, 429, no
    /// answer).
    pub write_behind_retried: u64,
    /// Queued requests moved to the dead-letter stream (refused by the origin with a 4xx,
    /// out of attempts, or unreadable).
    pub write_behind_dead_lettered: u64,
    /// Unsafe requests on write-behind routes written through at once because the queue
    /// held `write_behind.max_queue_entries` already.
    pub write_behind_queue_full: u64,
    /// Dead letters pushed out of the dead-letter stream by newer ones
    /// (`write_behind.max_dead_letters`).
    pub write_behind_dead_letters_trimmed: u64,
}

/// Every counter of an instance: the engine's and its L1 store's. What an instance adds to
/// the fleet's totals ([`super::fleet`]), and what those totals hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Engine counters.
    pub engine: EngineStats,
    /// L1 evictions (capacity).
    pub l1_evictions: u64,
    /// L1 expirations (past every window).
    pub l1_expirations: u64,
    /// L1 inserts refused by the admission policy.
    pub l1_rejected: u64,
}

/// One counter: its name (the JSON field's; `edgecache_{name}_total` in Prometheus), what it
/// counts, and its value.
pub type Counter = (&'static str, &'static str, u64);

/// The counters of [`Counters`], each once: its field (and name), and what it counts.
/// [`Counters::table`] reads them, [`Counters::set`] writes them by name.
macro_rules! counters {
    (engine { $($e:ident: $e_help:literal,)* } l1 { $($l:ident: $l_help:literal,)* }) => {
        /// How many counters there are.
        pub const COUNTERS: usize = [$(stringify!($e),)* $(stringify!($l),)*].len();

        impl Counters {
            /// Every counter, named and described, engine counters first.
            pub fn table(&self) -> [Counter; COUNTERS] {
                [
                    $((stringify!($e), $e_help, self.engine.$e),)*
                    $((stringify!($l), $l_help, self.$l),)*
                ]
            }

            /// Sets the counter `name` to `value`; `false` for a name this version does
            /// not know.
            pub fn set(&mut self, name: &str, value: u64) -> bool {
                match name {
                    $(stringify!($e) => self.engine.$e = value,)*
                    $(stringify!($l) => self.$l = value,)*
                    _ => return false,
                }
                true
            }
        }
    };
}

counters! {
    engine {
        requests: "Requests handled",
        l1_hits: "Fresh hits served from L1",
        l2_hits: "Fresh hits served from L2",
        misses: "Requests found in no tier",
        partial_hits: "Responses from a stored object in slices that needed slices from behind L1",
        stale_while_revalidate: "Stale responses served while revalidating",
        stale_if_error: "Stale responses served because the origin failed",
        refreshed_early: "Fresh hits that refreshed the entry ahead of expiry",
        revalidated: "Validations answered 304 and merged",
        coalesced: "Requests that waited on another request's fetch",
        origin_fetches: "Requests sent to the origin",
        bytes_from_cache: "Bytes of content served from the cache",
        bytes_from_origin: "Bytes of content served as the origin sent them",
        origin_errors: "Origin fetches that failed",
        stored: "Responses stored",
        streamed_fills: "Responses stored as they streamed to clients",
        failed_fills: "Streamed fills that failed, storing nothing",
        sliced_objects: "Large objects stored as a head, their content in slices",
        slice_fetches: "Slices of large objects fetched from the origin and stored",
        passes: "Requests forwarded without the cache",
        l2_errors: "Shared-tier commands that failed",
        l2_corrupt: "Shared-tier entries that failed to decode",
        l2_resets: "Times the shared tier was found emptied",
        colo_hits: "Fresh hits served from the colo tier",
        colo_stored: "Responses written to the colo tier",
        colo_errors: "Colo-tier reads or writes that failed",
        colo_corrupt: "Colo-tier values that failed to decode",
        purges: "Purges carried out",
        warmed: "URLs fetched by warm requests",
        admin_unauthorized: "Admin requests refused",
        bad_requests: "Requests refused as malformed (Host, target, CONNECT)",
        write_behind_appended: "Unsafe requests queued for the origin (write-behind)",
        write_behind_flushed: "Queued requests the origin took",
        write_behind_retried: "Queued request deliveries that failed and will be retried",
        write_behind_dead_lettered: "Queued requests moved to the dead-letter stream",
        write_behind_queue_full: "Write-behind requests written through because the queue was full",
        write_behind_dead_letters_trimmed: "Dead letters pushed out of the bounded dead-letter stream",
    }
    l1 {
        l1_evictions: "L1 entries evicted for capacity",
        l1_expirations: "L1 entries expired",
        l1_rejected: "L1 inserts refused by admission",
    }
}

impl Counters {
    /// The counters of an instance whose engine counted `engine` and whose L1 store `l1`.
    pub fn new(engine: EngineStats, l1: &StoreStats) -> Counters {
        Counters {
            engine,
            l1_evictions: l1.evictions,
            l1_expirations: l1.expirations,
            l1_rejected: l1.rejected,
        }
    }

    /// The counters named in `fields` (as [`Self::table`] names them); the others 0, and
    /// names this version does not know ignored (another version's, sharing the tier).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, u64)>) -> Counters {
        let mut counters = Counters::default();
        for (name, value) in fields {
            counters.set(name, value);
        }
        counters
    }

    /// What these counters added since `earlier`, counter by counter (none below 0).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters::from_fields(
            self.table()
                .into_iter()
                .zip(earlier.table())
                .map(|((name, _, now), (_, _, then))| (name, now.saturating_sub(then))),
        )
    }

    /// The counters that are not 0, by name.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        self.table()
            .into_iter()
            .filter(|(_, _, value)| *value > 0)
            .map(|(name, _, value)| (name, value))
            .collect()
    }
}

/// An instance's id: random, drawn at start, unrelated to any other value the engine keeps
/// (hash seeds, lease tokens), so showing it discloses nothing. Sixteen hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl core::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl serde::Serialize for InstanceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A point-in-time view of everything countable: engine counters plus the L1 store's.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// What these figures cover: `instance`, this instance (a process, an isolate) alone.
    pub scope: &'static str,
    /// Which instance ([`InstanceId`]), as it reports to the fleet.
    pub instance: InstanceId,
    /// Engine counters.
    pub engine: EngineStats,
    /// L1 entries now.
    pub l1_entries: usize,
    /// L1 bytes now.
    pub l1_bytes: usize,
    /// L1 evictions so far (capacity).
    pub l1_evictions: u64,
    /// L1 expirations so far (past every window).
    pub l1_expirations: u64,
    /// L1 inserts refused by the admission policy.
    pub l1_rejected: u64,
    /// Whether the shared tier is configured.
    pub l2_configured: bool,
    /// Whether the shared tier's circuit breaker is open now.
    pub l2_circuit_open: bool,
    /// The colo tier: `off`, how purges reach it (`purge-log`, `purge-api`,
    /// `local+expiry`), or why there is none here (`inactive on workers.dev`, `none on
    /// this host`).
    pub colo: &'static str,
    /// In `local+expiry` mode, the longest a colo entry is kept (`colo.max_ttl_secs`).
    pub colo_max_ttl_secs: Option<u64>,
}

impl Snapshot {
    /// Builds a snapshot.
    pub fn new(
        engine: EngineStats,
        l1: &StoreStats,
        l2_configured: bool,
        l2_circuit_open: bool,
    ) -> Self {
        Snapshot {
            scope: "instance",
            instance: InstanceId::default(),
            engine,
            l1_entries: l1.entries,
            l1_bytes: l1.bytes,
            l1_evictions: l1.evictions,
            l1_expirations: l1.expirations,
            l1_rejected: l1.rejected,
            l2_configured,
            l2_circuit_open,
            colo: "none on this host",
            colo_max_ttl_secs: None,
        }
    }

    /// Its counters (what it would add to the fleet's).
    pub fn counters(&self) -> Counters {
        Counters {
            engine: self.engine,
            l1_evictions: self.l1_evictions,
            l1_expirations: self.l1_expirations,
            l1_rejected: self.l1_rejected,
        }
    }

    /// The snapshot as a JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4). Every series
    /// carries `scope="instance"`: these are this instance's figures (the fleet's have
    /// names of their own, [`super::fleet::FleetView::to_prometheus`]).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in self.counters().table() {
            let _ = writeln!(out, "# HELP edgecache_{name}_total {help} (this instance).");
            let _ = writeln!(out, "# TYPE edgecache_{name}_total counter");
            let _ = writeln!(out, "edgecache_{name}_total{{scope=\"instance\"}} {value}");
        }
        let gauges: [(&str, &str, u64); 3] = [
            ("l1_entries", "L1 entries", self.l1_entries as u64),
            ("l1_bytes", "L1 bytes", self.l1_bytes as u64),
            (
                "l2_circuit_open",
                "1 when the shared tier is being skipped",
                u64::from(self.l2_circuit_open),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP edgecache_{name} {help} (this instance).");
            let _ = writeln!(out, "# TYPE edgecache_{name} gauge");
            let _ = writeln!(out, "edgecache_{name}{{scope=\"instance\"}} {value}");
        }
        let info = |out: &mut String,
                    name: &str,
                    help: &str,
                    label: &str,
                    value: &dyn core::fmt::Display| {
            let _ = writeln!(out, "# HELP edgecache_{name} {help}.");
            let _ = writeln!(out, "# TYPE edgecache_{name} gauge");
            let _ = writeln!(
                out,
                "edgecache_{name}{{scope=\"instance\",{label}=\"{value}\"}} 1"
            );
        };
        info(
            &mut out,
            "colo_info",
            "How the colo tier runs here (the mode label; /stats \"colo\")",
            "mode",
            &self.colo,
        );
        info(
            &mut out,
            "instance_info",
            "Which instance answered (the id label; /stats \"instance\")",
            "id",
            &self.instance,
        );
        out
    }
}
