//! The read path for `GET` and `HEAD`: a request is looked up in the tiers ([`lookup`]: L1,
//! then the colo tier, then L2) and served from what is found when its verdict allows
//! (RFC 9111 §4); otherwise it is filled from the origin ([`fill`]: coalescing, leases,
//! revalidation, stale-if-error, RFC 5861). This module decides between the two; the
//! `Cache-Status` of each outcome comes from [`super::status`].

mod fill;
mod lookup;
#[cfg(test)]
mod partial_tests;
mod slices;

pub(in crate::engine) use lookup::variant_to_follow;
pub use slices::SliceJob;
pub(crate) use slices::{
    refused_head, sliceable, Slicing, SLICED_AT_FIELD, SLICES_FIELD, SLICES_KEPT_FIELD,
};

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::cache_control::RequestDirectives;
use crate::entry::CachedResponse;
use crate::key::cache_key;
use crate::policy::cache_status::{CacheStatusEntry, Forward};
use crate::policy::reuse::{Evaluation, Reuse};

use super::host::{Lock, Runtime};
use super::status::Tier;
use super::{respond, Body, Engine, Handled, Host, Job, RequestView};

/// A stored response found for a request, with its verdict.
struct Candidate {
    stored: Arc<CachedResponse>,
    evaluation: Evaluation,
    tier: Tier,
}

impl Candidate {
    /// Whether it may be served as it is, without the origin (RFC 9111 §4.2, §5.2.1).
    fn usable(&self) -> bool {
        usable(&self.evaluation)
    }
}

/// Whether a response with this verdict may be served without the origin: fresh, or stale
/// and accepted by the request (`max-stale`, RFC 9111 §5.2.1.2).
fn usable(evaluation: &Evaluation) -> bool {
    matches!(
        evaluation.reuse,
        Reuse::Fresh | Reuse::StaleAcceptedByRequest
    )
}

/// The internal L1 tag every entry stored for primary key `key` carries (its Vary variants
/// included), so a URL purge finds them all. Origin tags cannot contain U+001F.
pub(crate) fn url_tag(key: &str) -> String {
    format!("\u{1f}url {key}")
}

/// What a response served from a stored response counts ([`Engine::count_served`]),
/// once it is final: the response for an object in slices may still be refused
/// (`only-if-cached` when a slice is in no tier: a `504`, which serves nothing).
#[derive(Clone, Copy, Debug)]
pub(super) struct Served {
    hit: Hit,
    /// It started a refresh-ahead revalidation.
    refreshed_early: bool,
}

/// Which counter a response served from a stored one moves.
#[derive(Clone, Copy, Debug)]
enum Hit {
    /// An object in slices whose response needs slices from behind L1 (`partial_hits`).
    Partial,
    L1,
    Colo,
    L2,
    /// Served stale while it is revalidated (RFC 5861 §3).
    StaleWhileRevalidate,
}

impl<H: Host> Engine<H> {
    /// The request fields the route of `view` keys on ([`crate::engine::config::RouteRule::key_headers`]).
    pub(crate) fn key_headers(&self, view: &RequestView) -> &[String] {
        self.config
            .route_for(view.path())
            .map_or(&[][..], |route| route.key_headers.as_slice())
    }

    /// The key a request's response is stored under (RFC 9111 §2: the target URI; `HEAD`
    /// shares `GET`'s).
    pub(crate) fn key_for(&self, view: &RequestView) -> String {
        let key = |target: &str| {
            cache_key(
                "GET",
                view.scheme(),
                view.authority(),
                target,
                &self.config.key,
            )
        };
        match view.query() {
            None => key(view.path()),
            Some(_) => key(&view.target()),
        }
    }

    /// Serves a `GET` or `HEAD`: the complete response, with the request's `Range` applied
    /// to it (RFC 9110 §14, [`respond::ranged`]). A range request looks up, joins and fills
    /// the complete response like any other. The content of an object stored in slices is
    /// assembled from them ([`slices`]).
    pub(crate) async fn read(&self, head: RequestView) -> Handled<H::Body> {
        // The key, computed once: the lookup and an object in slices use it.
        let key = self.key_for(&head);
        let (mut handled, served) = self.read_whole(&head, &key).await;
        if let Body::Cached(stored) = &handled.response.body {
            if let Some(slicing) = Slicing::of(stored) {
                let stored = stored.clone();
                return self
                    .serve_slices(&head, &key, handled, stored, slicing, None, served)
                    .await;
            }
        }
        if let Some(served) = served {
            self.count_served(served);
        }
        // A first response assembled from slices was ranged already, when its assembly
        // was planned ([`Engine::serve_slices`]).
        if head.asks_for_a_range() && handled.response.source != crate::engine::Source::Slices {
            handled.response = respond::ranged("GET", head.headers(), handled.response, || {
                format!("edgecache-{:016x}", self.runtime.random_u64())
            });
        }
        handled
    }

    /// Serves a `GET` or `HEAD` with the complete response; with what it counts when it is
    /// served from a stored response ([`Served`]), which the caller counts once it is final.
    async fn read_whole(
        &self,
        head: &RequestView,
        key: &str,
    ) -> (Handled<H::Body>, Option<Served>) {
        let now = self.runtime.now();
        let candidate = self
            .l1_find(key, head.headers(), now)
            .map(|stored| Candidate {
                evaluation: self.evaluate(head, &stored, now),
                stored,
                tier: Tier::L1,
            });
        let (candidate, fwd) = match candidate {
            Some(c) => match c.evaluation.reuse {
                Reuse::Revalidate(_) => {
                    let fwd = if RequestDirectives::from_headers(head.headers()).no_cache {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    (Some(c), fwd)
                }
                Reuse::VaryMismatch => (None, Forward::VaryMiss),
                // RFC 9111 §3.3: an incomplete response that does not hold what is asked
                // for; the origin's answer replaces it (RFC 9211 §2.2 `fwd=partial`).
                Reuse::Incomplete => (None, Forward::Partial),
                _ => {
                    let (handled, served) = self.serve_candidate(head, key, c);
                    return (handled, Some(served));
                }
            },
            None => (None, Forward::UriMiss),
        };
        // A response being stored as it arrives serves this request too, from its first byte.
        if let Some(handled) = self.join_fill(head, key, fwd) {
            return (handled, None);
        }
        if RequestDirectives::from_headers(head.headers()).only_if_cached {
            // RFC 9111 §5.2.1.7: use a stored response or answer 504, never the origin, not
            // even to revalidate a stale one (`candidate`, which the request did not accept).
            if let Some(c) = Box::pin(self.shared_lookup(head, key)).await {
                if c.usable() {
                    let (handled, served) = self.serve_candidate(head, key, c);
                    return (handled, Some(served));
                }
            }
            let entry = self.statuses.note(Some("only-if-cached"));
            let refused = respond::error(504, "not in cache (only-if-cached)", entry);
            return (Handled::now(refused), None);
        }
        // A miss, boxed: a hit's future need not carry room for a fetch.
        let handled = Box::pin(self.fetch_coalesced(head, String::from(key), candidate, fwd)).await;
        (handled, None)
    }

    /// Serves a stored response that needs no origin round trip first (fresh, accepted
    /// stale, or stale-while-revalidate with a background job), and says what it counts.
    fn serve_candidate(
        &self,
        head: &RequestView,
        key: &str,
        c: Candidate,
    ) -> (Handled<H::Body>, Served) {
        let revalidate = || {
            let already = self.state.with(|s| s.flights.in_flight(key));
            (!already).then(|| Job::Revalidate {
                head: head.clone(),
                key: String::from(key),
                stored: c.stored.clone(),
            })
        };
        // The head of an object in slices whose response needs slices L1 lacks: the rest
        // comes from behind it, perhaps the origin (RFC 9211 §2.2 `fwd=partial`).
        let partial = self.lacks_slices(head, key, &c.stored);
        let hit = match c.tier {
            _ if partial => Hit::Partial,
            Tier::L1 => Hit::L1,
            Tier::Colo => Hit::Colo,
            Tier::L2 => Hit::L2,
        };
        let (entries, job, served) = if c.evaluation.reuse == Reuse::StaleWhileRevalidate {
            let served = Served {
                hit: Hit::StaleWhileRevalidate,
                refreshed_early: false,
            };
            (
                self.hit_entries(&c, Some("stale-while-revalidate"), partial),
                revalidate(),
                served,
            )
        } else if c.tier == Tier::L1 && self.refresh_ahead_due(&c) {
            let job = revalidate();
            let served = Served {
                hit,
                refreshed_early: job.is_some(),
            };
            (self.hit_entries(&c, None, partial), job, served)
        } else {
            // Found in L2 with a colo tier in front: fill it too, after the response.
            let job = (c.tier == Tier::L2 && self.colo().is_some()).then(|| Job::WriteColo {
                keys: self.store_keys(key, &c.stored, head.headers()),
                stored: c.stored.clone(),
            });
            let served = Served {
                hit,
                refreshed_early: false,
            };
            (self.hit_entries(&c, None, partial), job, served)
        };
        let handled = Handled {
            response: respond::from_cache(
                head.method(),
                head.headers(),
                c.stored,
                c.evaluation.age_secs,
                &entries,
            ),
            job,
        };
        (handled, served)
    }

    /// Counts a response served from a stored one, once it is final.
    pub(super) fn count_served(&self, served: Served) {
        self.count(|s| {
            match served.hit {
                Hit::Partial => s.partial_hits += 1,
                Hit::L1 => s.l1_hits += 1,
                Hit::Colo => s.colo_hits += 1,
                Hit::L2 => s.l2_hits += 1,
                Hit::StaleWhileRevalidate => s.stale_while_revalidate += 1,
            }
            s.refreshed_early += u64::from(served.refreshed_early);
        });
    }

    /// Whether a fresh L1 hit should refresh its entry in the background now
    /// ([`super::refresh`]).
    fn refresh_ahead_due(&self, c: &Candidate) -> bool {
        let config = &self.config.refresh_ahead;
        if config.beta_percent == 0 || c.evaluation.reuse != Reuse::Fresh {
            return false;
        }
        let fetch_ms = c.stored.response_time.millis_since(c.stored.request_time);
        let delta_ms = fetch_ms.max(config.min_delta_ms);
        let bits = self.state.with(|s| s.rng.next_u64());
        crate::engine::refresh::refresh_early(
            c.evaluation.ttl_secs,
            delta_ms,
            config.beta_percent,
            bits,
        )
    }

    /// `Cache-Status` entries for a response served from a tier: a hit, or, when only part
    /// of its content is there (`partial`), a forward for the rest.
    fn hit_entries(
        &self,
        c: &Candidate,
        detail: Option<&str>,
        partial: bool,
    ) -> Vec<CacheStatusEntry> {
        let ttl = c.evaluation.ttl_secs;
        let served = match partial {
            false => self.statuses.hit(c.tier, ttl, detail),
            true => self.statuses.partial(c.tier, ttl, detail),
        };
        let mut entries = alloc::vec![served];
        entries.extend(
            self.statuses
                .backfilled(c.tier, Forward::UriMiss, self.colo().is_some()),
        );
        entries
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::simulated::{body_text, request, Answer, Simulation};
    use crate::engine::EngineConfig;
    use crate::time::Timestamp;
    use alloc::format;

    fn simulation() -> Simulation {
        Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &[("cache-control", "max-age=60")], "body"),
        )
    }

    /// A fresh stored response is served without the origin; a stale one is not.
    #[test]
    fn a_usable_candidate_is_served_and_a_stale_one_filled() {
        let sim = simulation();
        let engine = sim.engine(EngineConfig::default()).unwrap();
        sim.clock.block_on(engine.handle(request("GET", "/r", &[])));
        let hit = sim.clock.block_on(engine.handle(request("GET", "/r", &[])));
        assert_eq!(body_text(&hit.response), "body");
        assert_eq!(sim.fetches(), 1);
        sim.clock.advance_secs(61);
        sim.clock.block_on(engine.handle(request("GET", "/r", &[])));
        assert_eq!(sim.fetches(), 2);
        // A request that accepts staleness is served from the cache (RFC 9111 §5.2.1.2).
        sim.clock.advance_secs(61);
        let stale = sim.clock.block_on(engine.handle(request(
            "GET",
            "/r",
            &[("cache-control", "max-stale")],
        )));
        assert_eq!(body_text(&stale.response), "body");
        assert_eq!(sim.fetches(), 2);
    }

    /// RFC 9111 §5.2.1.7: `only-if-cached` never reaches the origin: a miss is a 504.
    #[test]
    fn only_if_cached_misses_are_answered_504() {
        let sim = simulation();
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let only = [("cache-control", "only-if-cached")];
        let miss = sim
            .clock
            .block_on(engine.handle(request("GET", "/o", &only)));
        assert_eq!(miss.response.status, 504);
        assert_eq!(sim.fetches(), 0);
        sim.clock.block_on(engine.handle(request("GET", "/o", &[])));
        let hit = sim
            .clock
            .block_on(engine.handle(request("GET", "/o", &only)));
        assert_eq!(hit.response.status, 200);
        assert_eq!(sim.fetches(), 1);
    }

    /// RFC 9111 §5.2.1.7: `only-if-cached` never reaches the origin, not even to revalidate
    /// a stale stored response: without `max-stale` accepting it, the answer is a 504.
    #[test]
    fn only_if_cached_does_not_revalidate_a_stale_response() {
        // A validator: the stale response is kept (validator retention) to revalidate.
        let sim = digits(&[("etag", "\"d\"")]);
        let engine = sim.engine(EngineConfig::default()).unwrap();
        sim.clock.block_on(engine.handle(request("GET", "/o", &[])));
        assert_eq!(sim.fetches(), 1);
        sim.clock.advance_secs(120);
        let only = [("cache-control", "only-if-cached")];
        let stale = sim
            .clock
            .block_on(engine.handle(request("GET", "/o", &only)));
        assert_eq!(sim.fetches(), 1, "the origin was asked");
        assert_eq!(stale.response.status, 504);
    }

    /// An origin answering `0123456789`, fresh for a minute, with `fields` too.
    fn digits(fields: &[(&str, &str)]) -> Simulation {
        let mut all = alloc::vec![("cache-control", "max-age=60")];
        all.extend_from_slice(fields);
        Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &all, "0123456789"),
        )
    }

    fn ranged(range: &str) -> [(&str, &str); 1] {
        [("range", range)]
    }

    /// RFC 9110 §14: a range miss fills the complete response (the origin is not asked for
    /// the range) and is answered with its range; later ranges are cut from the stored
    /// response without the origin.
    #[test]
    fn ranges_are_cut_from_the_complete_response() {
        let sim = digits(&[("content-type", "text/plain")]);
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let miss = sim
            .clock
            .block_on(engine.handle(request("GET", "/g", &ranged("bytes=2-4"))));
        assert_eq!(miss.response.status, 206);
        assert_eq!(body_text(&miss.response), "234");
        let fields = miss.response.fields();
        assert_eq!(fields.get_str("content-range"), Some("bytes 2-4/10"));
        assert!(sim.script.borrow().requests[0]
            .headers
            .get_str("range")
            .is_none());
        for (range, body, content_range) in [
            ("bytes=-3", "789", "bytes 7-9/10"),
            ("bytes=8-", "89", "bytes 8-9/10"),
            ("bytes=0-0", "0", "bytes 0-0/10"),
            ("bytes=5-500", "56789", "bytes 5-9/10"),
        ] {
            let hit = sim
                .clock
                .block_on(engine.handle(request("GET", "/g", &ranged(range))));
            assert_eq!(hit.response.status, 206, "{range}");
            assert_eq!(body_text(&hit.response), body, "{range}");
            let fields = hit.response.fields();
            assert_eq!(fields.get_str("content-range"), Some(content_range));
            assert!(fields.get_str("cache-status").unwrap().contains("hit"));
        }
        assert_eq!(sim.fetches(), 1);
        // Not satisfiable: 416 with the complete length.
        let beyond = sim
            .clock
            .block_on(engine.handle(request("GET", "/g", &ranged("bytes=10-"))));
        assert_eq!(beyond.response.status, 416);
        assert_eq!(
            beyond.response.fields().get_str("content-range"),
            Some("bytes */10")
        );
        assert_eq!(
            beyond.response.fields().get_str("cache-control"),
            Some("no-store"),
            "a 416 is never stored downstream"
        );
        assert_eq!(body_text(&beyond.response), "");
        // Ignored: malformed, another unit, HEAD.
        for (method, range) in [
            ("GET", "bytes=4-2"),
            ("GET", "lines=1-2"),
            ("HEAD", "bytes=0-1"),
        ] {
            let whole = sim
                .clock
                .block_on(engine.handle(request(method, "/g", &ranged(range))));
            assert_eq!(whole.response.status, 200, "{method} {range}");
            assert!(whole.response.fields().get_str("content-range").is_none());
        }
    }

    /// RFC 9110 §14.6: several ranges are sent as `multipart/byteranges`, each part with
    /// the representation's type and its `Content-Range`.
    #[test]
    fn several_ranges_are_sent_as_multipart_byteranges() {
        let sim = digits(&[("content-type", "text/plain")]);
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let handled =
            sim.clock
                .block_on(engine.handle(request("GET", "/m", &ranged("bytes=0-1, 8-"))));
        assert_eq!(handled.response.status, 206);
        let fields = handled.response.fields();
        let content_type = fields.get_str("content-type").unwrap();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .expect(content_type);
        let expected = format!(
            "--{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-1/10\r\n\r\n01\r\n\
             --{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 8-9/10\r\n\r\n89\r\n\
             --{boundary}--\r\n"
        );
        assert_eq!(body_text(&handled.response), expected);
        assert!(fields.get_str("content-range").is_none());
    }

    /// RFC 9110 §13.1.5: a range is served only while `If-Range` names the stored
    /// response (strongly); otherwise the whole response is.
    #[test]
    fn if_range_decides_between_the_range_and_the_whole() {
        let sim = digits(&[("etag", "\"v2\"")]);
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let current = [("range", "bytes=0-1"), ("if-range", "\"v2\"")];
        let old = [("range", "bytes=0-1"), ("if-range", "\"v1\"")];
        let part = sim
            .clock
            .block_on(engine.handle(request("GET", "/i", &current)));
        assert_eq!(
            (part.response.status, body_text(&part.response).as_str()),
            (206, "01")
        );
        let whole = sim
            .clock
            .block_on(engine.handle(request("GET", "/i", &old)));
        assert_eq!(
            (whole.response.status, body_text(&whole.response).as_str()),
            (200, "0123456789")
        );
    }

    /// Bytes served are counted by where they came from: the fill's from the origin, hits'
    /// (ranges: the bytes sent) from the cache; a `HEAD` and the engine's own answers count
    /// for neither.
    #[test]
    fn bytes_served_are_counted_by_source() {
        let sim = digits(&[]);
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let bytes = |engine: &crate::engine::Engine<_>| {
            let e = engine.snapshot().engine;
            (e.bytes_from_origin, e.bytes_from_cache)
        };
        sim.clock.block_on(engine.handle(request("GET", "/b", &[])));
        assert_eq!(bytes(&engine), (10, 0));
        sim.clock.block_on(engine.handle(request("GET", "/b", &[])));
        assert_eq!(bytes(&engine), (10, 10));
        sim.clock
            .block_on(engine.handle(request("GET", "/b", &ranged("bytes=0-2"))));
        assert_eq!(bytes(&engine), (10, 13));
        sim.clock
            .block_on(engine.handle(request("HEAD", "/b", &[])));
        sim.clock
            .block_on(engine.handle(request("GET", "/b", &[("host", "x y")])));
        assert_eq!(bytes(&engine), (10, 13));
        let metrics = engine.snapshot().to_prometheus();
        assert!(
            metrics.contains("edgecache_bytes_from_cache_total{scope=\"instance\"} 13\n"),
            "{metrics}"
        );
    }

    /// RFC 9110 §14.3: a `200` the cache holds whole says `Accept-Ranges: bytes`, on the
    /// fill and on hits, unless the origin said otherwise; other statuses do not.
    #[test]
    fn whole_responses_from_the_cache_accept_ranges() {
        let accept_ranges = |sim: &Simulation, path: &str| {
            let engine = sim.engine(EngineConfig::default()).unwrap();
            (0..2)
                .map(|_| {
                    let handled = sim.clock.block_on(engine.handle(request("GET", path, &[])));
                    let fields = handled.response.fields();
                    fields
                        .get_all("accept-ranges")
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect::<alloc::vec::Vec<_>>()
                })
                .collect::<alloc::vec::Vec<_>>()
        };
        assert_eq!(accept_ranges(&digits(&[]), "/a"), [["bytes"], ["bytes"]]);
        let none = digits(&[("accept-ranges", "none")]);
        assert_eq!(accept_ranges(&none, "/b"), [["none"], ["none"]]);
        let missing = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(404, &[("cache-control", "max-age=60")], "gone"),
        );
        let empty: [[&str; 0]; 2] = [[], []];
        assert_eq!(accept_ranges(&missing, "/c"), empty);
    }
}
