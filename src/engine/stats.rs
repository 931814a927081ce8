//! Engine counters, rendered as JSON (for the stats endpoint and the demo page) and as
//! Prometheus text exposition.

use alloc::string::String;
use core::fmt::Write;

use crate::store::StoreStats;

/// What the engine counts. All counters only go up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Requests handled (admin requests excluded).
    pub requests: u64,
    /// Served fresh from L1.
    pub l1_hits: u64,
    /// Served fresh from L2 (and backfilled into L1).
    pub l2_hits: u64,
    /// Not in any tier.
    pub misses: u64,
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
    /// confirmed; ranges count the bytes sent).
    pub bytes_from_cache: u64,
    /// Bytes of content served as the origin sent them in the same request (fills, passes;
    /// a stream counts the `Content-Length` it declares).
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

/// A point-in-time view of everything countable: engine counters plus the L1 store's.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Snapshot {
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

    /// The snapshot as a JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let e = &self.engine;
        let mut out = String::new();
        let counters: [(&str, &str, u64); 36] = [
            ("requests_total", "Requests handled", e.requests),
            ("l1_hits_total", "Fresh hits served from L1", e.l1_hits),
            ("l2_hits_total", "Fresh hits served from L2", e.l2_hits),
            ("misses_total", "Requests found in no tier", e.misses),
            (
                "stale_while_revalidate_total",
                "Stale responses served while revalidating",
                e.stale_while_revalidate,
            ),
            (
                "stale_if_error_total",
                "Stale responses served because the origin failed",
                e.stale_if_error,
            ),
            (
                "refreshed_early_total",
                "Fresh hits that refreshed the entry ahead of expiry",
                e.refreshed_early,
            ),
            (
                "revalidated_total",
                "Validations answered 304 and merged",
                e.revalidated,
            ),
            (
                "coalesced_total",
                "Requests that waited on another request's fetch",
                e.coalesced,
            ),
            (
                "origin_fetches_total",
                "Requests sent to the origin",
                e.origin_fetches,
            ),
            (
                "bytes_from_cache_total",
                "Bytes of content served from the cache",
                e.bytes_from_cache,
            ),
            (
                "bytes_from_origin_total",
                "Bytes of content served as the origin sent them",
                e.bytes_from_origin,
            ),
            (
                "origin_errors_total",
                "Origin fetches that failed",
                e.origin_errors,
            ),
            ("stored_total", "Responses stored", e.stored),
            (
                "streamed_fills_total",
                "Responses stored as they streamed to clients",
                e.streamed_fills,
            ),
            (
                "failed_fills_total",
                "Streamed fills that failed, storing nothing",
                e.failed_fills,
            ),
            (
                "sliced_objects_total",
                "Large objects stored as a head, their content in slices",
                e.sliced_objects,
            ),
            (
                "slice_fetches_total",
                "Slices of large objects fetched from the origin and stored",
                e.slice_fetches,
            ),
            (
                "passes_total",
                "Requests forwarded without the cache",
                e.passes,
            ),
            (
                "l2_errors_total",
                "Shared-tier commands that failed",
                e.l2_errors,
            ),
            (
                "l2_corrupt_total",
                "Shared-tier entries that failed to decode",
                e.l2_corrupt,
            ),
            (
                "l2_resets_total",
                "Times the shared tier was found emptied",
                e.l2_resets,
            ),
            (
                "colo_hits_total",
                "Fresh hits served from the colo tier",
                e.colo_hits,
            ),
            (
                "colo_stored_total",
                "Responses written to the colo tier",
                e.colo_stored,
            ),
            (
                "colo_errors_total",
                "Colo-tier reads or writes that failed",
                e.colo_errors,
            ),
            (
                "colo_corrupt_total",
                "Colo-tier values that failed to decode",
                e.colo_corrupt,
            ),
            ("purges_total", "Purges carried out", e.purges),
            ("warmed_total", "URLs fetched by warm requests", e.warmed),
            (
                "admin_unauthorized_total",
                "Admin requests refused",
                e.admin_unauthorized,
            ),
            (
                "bad_requests_total",
                "Requests refused as malformed (Host, target, CONNECT)",
                e.bad_requests,
            ),
            (
                "write_behind_appended_total",
                "Unsafe requests queued for the origin (write-behind)",
                e.write_behind_appended,
            ),
            (
                "write_behind_flushed_total",
                "Queued requests the origin took",
                e.write_behind_flushed,
            ),
            (
                "write_behind_retried_total",
                "Queued request deliveries that failed and will be retried",
                e.write_behind_retried,
            ),
            (
                "write_behind_dead_lettered_total",
                "Queued requests moved to the dead-letter stream",
                e.write_behind_dead_lettered,
            ),
            (
                "write_behind_queue_full_total",
                "Write-behind requests written through because the queue was full",
                e.write_behind_queue_full,
            ),
            (
                "write_behind_dead_letters_trimmed_total",
                "Dead letters pushed out of the bounded dead-letter stream",
                e.write_behind_dead_letters_trimmed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP edgecache_{name} {help}.");
            let _ = writeln!(out, "# TYPE edgecache_{name} counter");
            let _ = writeln!(out, "edgecache_{name} {value}");
        }
        let l1_counters: [(&str, &str, u64); 3] = [
            (
                "l1_evictions_total",
                "L1 entries evicted for capacity",
                self.l1_evictions,
            ),
            (
                "l1_expirations_total",
                "L1 entries expired",
                self.l1_expirations,
            ),
            (
                "l1_rejected_total",
                "L1 inserts refused by admission",
                self.l1_rejected,
            ),
        ];
        for (name, help, value) in l1_counters {
            let _ = writeln!(out, "# HELP edgecache_{name} {help}.");
            let _ = writeln!(out, "# TYPE edgecache_{name} counter");
            let _ = writeln!(out, "edgecache_{name} {value}");
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
            let _ = writeln!(out, "# HELP edgecache_{name} {help}.");
            let _ = writeln!(out, "# TYPE edgecache_{name} gauge");
            let _ = writeln!(out, "edgecache_{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP edgecache_colo_info How the colo tier runs here (the mode label; /stats \"colo\")."
        );
        let _ = writeln!(out, "# TYPE edgecache_colo_info gauge");
        let _ = writeln!(out, "edgecache_colo_info{{mode=\"{}\"}} 1", self.colo);
        out
    }
}
