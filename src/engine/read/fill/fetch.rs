//! One origin round trip for a read: the request sent (the cache's own validators when it
//! revalidates, RFC 9111 §4.3.1), the one response decision ([`decide`]), and the result:
//! stored and served, freshened by a `304` (§4.3.4), passed through, or a stale response
//! served because the origin failed (RFC 5861 §4, RFC 9111 §4.2.4).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::policy::cache_status::Forward;
use crate::policy::conditional::{conditional_headers, freshen, Freshened};
use crate::policy::decision::{decide, OriginHead, ResponseDecision};
use crate::policy::reuse::Reuse;
use crate::policy::vary;

use super::super::Candidate;
use crate::engine::filling::{FillJob, FillReader, Filling, InProgress};
use crate::engine::flight::Outcome;
use crate::engine::host::{Lock, Origin, OriginBody, OriginError, OriginRequest, Runtime};
use crate::engine::l2::with_timeout;
use crate::engine::read::{sliceable, SLICED_AT_FIELD, SLICES_FIELD, SLICES_KEPT_FIELD};
use crate::engine::status::Tier;
use crate::engine::{
    respond, Body, Engine, Handled, Host, Job, OriginResponse, RequestView, Source,
};

/// The body length a response declares (`Content-Length`, RFC 9110 §8.6), if valid.
fn declared_length(fields: &Headers) -> Option<u64> {
    fields.get_str("content-length")?.trim().parse().ok()
}

/// The statuses RFC 5861 §4 counts as an origin error for stale-if-error.
fn is_error_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// Request fields the cache answers itself from the complete response it fills the cache
/// with: the client's validators (forwarding them would fetch a `304` it could not store,
/// RFC 9111 §4.3.2) and its range (the range is cut from the complete response, RFC 9110
/// §14.2, which serves every later range too; an origin that answers with a `206` all the
/// same has it stored as an incomplete response, RFC 9111 §3.3).
pub(in crate::engine::read) const ANSWERED_BY_THE_CACHE: [&str; 4] =
    ["if-none-match", "if-modified-since", "range", "if-range"];

impl<H: Host> Engine<H> {
    /// Sends the request to the origin within the origin timeout. `HEAD` is fetched as
    /// `GET` so the response can be stored; the client's validators are replaced by the
    /// cache's own when it revalidates `conditional_for`.
    async fn origin_fetch(
        &self,
        head: &RequestView,
        conditional_for: Option<&CachedResponse>,
    ) -> Result<OriginResponse<H::Body>, OriginError> {
        let host_keyed = self.config.key.include_host;
        let mut headers = head.origin_headers(&self.trust, self.key_headers(head), host_keyed);
        for field in ANSWERED_BY_THE_CACHE {
            headers.remove(field);
        }
        if let Some(stored) = conditional_for {
            for (name, value) in conditional_headers(stored).iter() {
                headers.append(name, value);
            }
        }
        let request = OriginRequest {
            method: String::from("GET"),
            scheme: String::from(head.scheme()),
            host: head.origin_host(host_keyed),
            path_and_query: head.target(),
            headers,
            body: None,
        };
        self.count(|s| s.origin_fetches += 1);
        // Larger bodies are read as they arrive: stored as they pass when they may be.
        let limits = &self.config.limits;
        let limit = limits.stream_above_bytes.min(limits.max_object_bytes);
        let result = with_timeout(
            &self.runtime,
            self.config.limits.origin_timeout_ms,
            self.origin.fetch(request, limit),
        )
        .await
        .unwrap_or(Err(OriginError::Timeout));
        if result.is_err() {
            self.count(|s| s.origin_errors += 1);
        }
        result
    }

    /// One origin round trip for a read, and what to tell coalesced waiters.
    pub(super) async fn fetch(
        &self,
        head: &RequestView,
        key: &str,
        candidate: Option<Candidate>,
        fwd: Forward,
    ) -> (Handled<H::Body>, Outcome) {
        let revalidating = candidate
            .as_ref()
            .filter(|c| matches!(c.evaluation.reuse, Reuse::Revalidate(_)))
            .map(|c| c.stored.clone());
        let request_time = self.runtime.now();
        let result = self.origin_fetch(head, revalidating.as_deref()).await;
        let response_time = self.runtime.now();
        let response = match result {
            Ok(response) if !is_error_status(response.status) => response,
            other => {
                // RFC 5861 §4 / RFC 9111 §4.2.4: serve stale on error when allowed, and
                // within the disconnected window when the origin cannot be reached at all.
                let unreachable = matches!(
                    &other,
                    Err(OriginError::Unreachable(_) | OriginError::Timeout)
                );
                let allowed = |c: &Candidate| {
                    c.evaluation.stale_if_error
                        || (unreachable && c.evaluation.stale_if_unreachable)
                };
                if let Some(c) = candidate.filter(allowed) {
                    let detail = if c.evaluation.stale_if_error {
                        "stale-if-error"
                    } else {
                        "stale-if-unreachable"
                    };
                    self.count(|s| s.stale_if_error += 1);
                    let age = crate::policy::freshness::current_age(
                        &c.stored.headers,
                        c.stored.request_time,
                        c.stored.response_time,
                        response_time,
                    );
                    let entry = self.statuses.stale_on_failure(
                        c.evaluation.ttl_secs,
                        other.as_ref().ok().map(|r| r.status),
                        detail,
                    );
                    let response =
                        respond::from_cache(head.method(), head.headers(), c.stored, age, &[entry]);
                    return (Handled::now(response), Outcome::NotShared);
                }
                match other {
                    Ok(response) => response,
                    Err(error) => {
                        return (
                            Handled::now(self.origin_failure(&error, fwd)),
                            Outcome::NotShared,
                        );
                    }
                }
            }
        };

        // The cache's own bookkeeping field is never the origin's to set, not even on a
        // `304` whose fields are merged into the stored ones.
        let mut response = response;
        response.headers.remove(SLICES_FIELD);
        response.headers.remove(SLICED_AT_FIELD);
        response.headers.remove(SLICES_KEPT_FIELD);

        // A 304 answering our own conditional request: freshen the stored response.
        if response.status == 304 {
            if let Some(stored) = revalidating.as_ref() {
                match freshen(stored, &response.headers, request_time, response_time) {
                    Freshened::Updated(updated) => {
                        self.count(|s| s.revalidated += 1);
                        return self.keep_freshened(head, key, updated, fwd);
                    }
                    Freshened::Mismatch => {
                        // RFC 9111 §4.3.4: not our representation; fetch it whole.
                        let (handled, outcome) = Box::pin(self.fetch(head, key, None, fwd)).await;
                        return (handled, outcome);
                    }
                }
            }
        }

        let status = response.status;
        let mut response = response;
        self.add_key_fields(head, &mut response.headers);
        let (decision, route_override) =
            self.decide_for(head, status, &response.headers, request_time, response_time);
        let origin = OriginHead {
            status,
            headers: &response.headers,
            request_time,
            response_time,
        };
        let declared = declared_length(&response.headers);
        let fits = declared.is_none_or(|n| n <= self.config.limits.max_object_bytes as u64);
        let limits = &self.config.limits;
        let slice_bytes = limits.slice_bytes.min(limits.max_object_bytes);
        let sliced = sliceable(status, &response.headers, slice_bytes);
        match (decision, response.body) {
            (ResponseDecision::Store(keep), OriginBody::Buffered(body)) => {
                let mut fields = response.headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                let entry = keep.into_entry(head.headers(), origin, fields, body);
                self.store_and_serve(head, key, entry, Some(response.headers), fwd, status)
            }
            (ResponseDecision::Store(keep), OriginBody::Streaming(stream))
                if !fits && sliced.is_some() =>
            {
                // Too large to hold whole: its head is stored, and its content is cut in
                // slices. This response reads them from this very stream as it arrives when
                // it is whole or a range starting in the first slice; other ranges' are
                // fetched by range, the stream dropped ([`Engine::serve_slices`]).
                let mut fields = response.headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                if let Some(slicing) = sliced {
                    fields.set(SLICES_FIELD, slicing.field());
                    let received = self.runtime.now().as_millis();
                    fields.set(SLICED_AT_FIELD, format!("{received}"));
                }
                self.count(|s| s.sliced_objects += 1);
                // The flight of the first slice, which this stream will bring, is taken before
                // the head is stored: a request finding the head then waits for it.
                let first_key = sliced
                    .map(|slicing| crate::engine::read::slices::first_slice_key(key, slicing));
                let first_flight = first_key
                    .as_deref()
                    .and_then(|first| self.lead_slice_flight(first));
                let entry = keep.into_entry(head.headers(), origin, fields, Vec::new());
                let (handled, outcome) =
                    self.store_and_serve(head, key, entry, Some(response.headers), fwd, status);
                let whole = match (&handled.response.body, sliced) {
                    (Body::Cached(stored), Some(slicing)) => Some((stored.clone(), slicing)),
                    _ => None,
                };
                let handled = match whole {
                    Some((stored, slicing)) => {
                        self.serve_slices(
                            head,
                            key,
                            handled,
                            stored,
                            slicing,
                            Some((stream, first_flight)),
                            None,
                        )
                        .await
                    }
                    None => handled,
                };
                (handled, outcome)
            }
            (ResponseDecision::Store(keep), OriginBody::Streaming(stream)) if fits => {
                let mut fields = response.headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                let entry = keep.into_entry(head.headers(), origin, fields, Vec::new());
                self.start_fill(head, key, entry, response.headers, fwd, stream)
            }
            (_, OriginBody::Streaming(_)) if head.asks_for_a_range() => {
                // Too large to hold whole, so no range can be cut from it here: the origin
                // is asked for the range itself (the stream is dropped unread).
                let handled = Box::pin(self.pass(head.clone(), None, fwd)).await;
                (handled, Outcome::NotShared)
            }
            (decision, body) => {
                self.count(|s| s.passes += 1);
                let detail = match (&decision, &body) {
                    (ResponseDecision::Pass(reason), _) => Some(reason.as_str()),
                    (ResponseDecision::Store(_), OriginBody::Streaming(_)) => Some("too-large"),
                    _ => None,
                };
                let entry = self.statuses.forwarded(fwd, Some(status), detail);
                let body = match body {
                    _ if head.method() == "HEAD" => Body::Empty,
                    OriginBody::Buffered(bytes) => Body::Bytes(bytes),
                    OriginBody::Streaming(stream) => Body::Stream(stream),
                };
                let response =
                    respond::from_origin(head.method(), status, response.headers, body, &[entry]);
                (Handled::now(response), Outcome::NotShared)
            }
        }
    }

    /// Adds the route's key fields to a response's `Vary` (RFC 9111 §4.1), those it does
    /// not nominate already: each value is stored apart.
    fn add_key_fields(&self, head: &RequestView, headers: &mut Headers) {
        let nominated = vary::nominated_fields(headers);
        let missing: Vec<&str> = self
            .key_headers(head)
            .iter()
            .map(String::as_str)
            .filter(|name| !nominated.iter().any(|n| n == name))
            .collect();
        if !missing.is_empty() {
            headers.append("vary", missing.join(", "));
        }
    }

    /// The one response decision ([`decide`]) for a response to `head`, with its route's
    /// lifetime override, which is returned too (it travels with the stored fields).
    fn decide_for(
        &self,
        head: &RequestView,
        status: u16,
        headers: &Headers,
        request_time: crate::time::Timestamp,
        response_time: crate::time::Timestamp,
    ) -> (ResponseDecision, Option<String>) {
        // A route's TTL overrides travel with the stored response as this cache's own
        // targeted field (RFC 9213), so every instance and tier applies them alike.
        let route_override = self
            .config
            .route_for(head.path())
            .and_then(crate::engine::config::RouteRule::cache_control_override);
        let origin = OriginHead {
            status,
            headers,
            request_time,
            response_time,
        };
        let decision = decide(
            "GET",
            head.headers(),
            origin,
            route_override
                .as_deref()
                .map(|value| ("edgecache-cache-control", value)),
            &self.config.policy,
        );
        (decision, route_override)
    }

    /// Keeps a stored response freshened by a `304` (RFC 9111 §4.3.4) as any response is
    /// kept: the same decision on its merged fields (a `304` can bring `no-store`, a
    /// qualified `private`, or a `Vary` without the route's key fields), then stored, or,
    /// when it may no longer be stored, removed (from L1 now, from the other tiers and
    /// instances by a [`Job::Invalidate`]) and served once.
    fn keep_freshened(
        &self,
        head: &RequestView,
        key: &str,
        updated: CachedResponse,
        fwd: Forward,
    ) -> (Handled<H::Body>, Outcome) {
        let CachedResponse {
            status,
            mut headers,
            body,
            request_time,
            response_time,
            ..
        } = updated;
        self.add_key_fields(head, &mut headers);
        let (decision, route_override) =
            self.decide_for(head, status, &headers, request_time, response_time);
        let origin = OriginHead {
            status,
            headers: &headers,
            request_time,
            response_time,
        };
        match decision {
            ResponseDecision::Store(keep) => {
                let mut fields = headers.clone();
                if let Some(value) = &route_override {
                    fields.set("edgecache-cache-control", value);
                }
                let entry = keep.into_entry(head.headers(), origin, fields, body);
                // The slices of an object in slices live on with their freshened head.
                let keep_slices = self.slices_to_keep(&entry);
                let (mut handled, outcome) = self.store_and_serve(head, key, entry, None, fwd, 304);
                if let (Some(until), Outcome::Stored(stored)) = (keep_slices, &outcome) {
                    // After the head's own writes (a batch runs last-first): the L2 write
                    // releases the fetch lease.
                    let kept = Job::KeepSlices {
                        key: String::from(key),
                        head: stored.clone(),
                        until,
                    };
                    handled.job = Job::merge(Some(kept), handled.job.take());
                }
                (handled, outcome)
            }
            ResponseDecision::Pass(reason) => {
                self.l1_purge_key(key, false, self.runtime.now());
                self.count(|s| s.passes += 1);
                let entry = self
                    .statuses
                    .forwarded(fwd, Some(304), Some(reason.as_str()));
                let stored = Arc::new(CachedResponse::new(
                    status,
                    headers.clone(),
                    body,
                    request_time,
                    response_time,
                ));
                // A `304`: the content is the cache's.
                let response = respond::from_stored_body(
                    head.method(),
                    head.headers(),
                    stored,
                    headers,
                    0,
                    &[entry],
                    Source::Cache,
                );
                // The other tiers and instances drop their copies too, after the response.
                let job = Some(Job::Invalidate(alloc::vec![String::from(key)]));
                (Handled { response, job }, Outcome::NotShared)
            }
        }
    }

    /// Starts storing a response whose body is still arriving, and serves it as it arrives
    /// ([`crate::engine::filling`]): the fill is registered for the requests that come
    /// meanwhile, and its job reads the body from the origin and stores it when complete.
    fn start_fill(
        &self,
        head: &RequestView,
        key: &str,
        entry: CachedResponse,
        origin_fields: Headers,
        fwd: Forward,
        stream: H::Body,
    ) -> (Handled<H::Body>, Outcome) {
        let now = self.runtime.now();
        let entry = Arc::new(entry);
        let filling = Arc::new(Filling::new(declared_length(&origin_fields), true));
        let fill = self.state.with(|s| {
            let id = s.fills.start(key, entry.clone(), filling.clone());
            s.stats.streamed_fills += 1;
            InProgress {
                id,
                entry: entry.clone(),
                filling: filling.clone(),
            }
        });
        let evaluation = self.evaluate(head, &entry, now);
        let entries = self.fill_entries(fwd, entry.status, evaluation.ttl_secs);
        let response = respond::from_stored_body(
            head.method(),
            head.headers(),
            entry,
            origin_fields,
            evaluation.age_secs,
            &entries,
            Source::Origin,
        );
        let response = respond::reading_fill(response, FillReader::new(filling));
        let job = Job::Fill(Box::new(FillJob {
            head: head.clone(),
            key: String::from(key),
            fill: fill.clone(),
            stream: Some(stream),
        }));
        let handled = Handled {
            response,
            job: Some(job),
        };
        (handled, Outcome::Filling(fill))
    }

    /// The `Cache-Status` entries of a response that fills the cache: stored in each tier.
    fn fill_entries(
        &self,
        fwd: Forward,
        fwd_status: u16,
        ttl_secs: i64,
    ) -> Vec<crate::policy::cache_status::CacheStatusEntry> {
        let mut entries = Vec::new();
        if self.shared.is_some() {
            entries.push(self.statuses.stored(Tier::L2, fwd));
        }
        if self.colo().is_some() {
            entries.push(self.statuses.stored(Tier::Colo, fwd));
        }
        entries.push(self.statuses.filled(fwd, fwd_status, ttl_secs));
        entries
    }

    /// Stores a response in L1 (and L2 in the background) and serves it.
    fn store_and_serve(
        &self,
        head: &RequestView,
        key: &str,
        entry: CachedResponse,
        origin_fields: Option<Headers>,
        fwd: Forward,
        fwd_status: u16,
    ) -> (Handled<H::Body>, Outcome) {
        let now = self.runtime.now();
        // An entry the response decision made carries its figures; a freshened one (304)
        // gets them now.
        let stored = match entry.derived.figures {
            Some(_) => Arc::new(entry),
            None => self.ready_to_keep(entry),
        };
        let keys = self.l1_insert(key, &stored, head.headers(), now);
        self.count(|s| s.stored += 1);
        let evaluation = self.evaluate(head, &stored, now);
        let entries = self.fill_entries(fwd, fwd_status, evaluation.ttl_secs);
        let fields = origin_fields.unwrap_or_else(|| stored.headers.clone());
        // A `304` confirmed the cache's content; any other status brought it.
        let source = match fwd_status {
            304 => Source::Cache,
            _ => Source::Origin,
        };
        let response = respond::from_stored_body(
            head.method(),
            head.headers(),
            stored.clone(),
            fields,
            evaluation.age_secs,
            &entries,
            source,
        );
        let colo_job = self.colo().is_some().then(|| Job::WriteColo {
            keys: keys.clone(),
            stored: stored.clone(),
        });
        let l2_job = self.shared.is_some().then(|| Job::WriteL2 {
            keys,
            stored: stored.clone(),
        });
        // Batches run last-first: the L2 write (which releases the fetch lease) goes first.
        let job = Job::merge(colo_job, l2_job);
        (Handled { response, job }, Outcome::Stored(stored))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::simulated::{body_text, request, Answer, SimBody, Simulation};
    use crate::engine::EngineConfig;
    use crate::time::Timestamp;

    fn filled(
        cache_control: &str,
    ) -> (
        Simulation,
        crate::engine::Engine<crate::engine::simulated::SimHost>,
    ) {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(
                200,
                &[("cache-control", cache_control), ("etag", "\"v1\"")],
                "stored",
            ),
        );
        let engine = sim.engine(EngineConfig::default()).unwrap();
        sim.clock.block_on(engine.handle(request("GET", "/f", &[])));
        (sim, engine)
    }

    fn cache_status(handled: &crate::engine::Handled<SimBody>) -> &str {
        handled
            .response
            .headers
            .get_str("cache-status")
            .unwrap_or("")
    }

    /// RFC 5861 §4: an origin error within `stale-if-error` serves the stale response.
    #[test]
    fn an_origin_error_serves_stale_within_stale_if_error() {
        let (sim, engine) = filled("max-age=1, stale-if-error=60");
        sim.clock.advance_secs(5);
        sim.then(Answer::respond(503, &[], "down"));
        let handled = sim.clock.block_on(engine.handle(request("GET", "/f", &[])));
        assert_eq!(handled.response.status, 200);
        assert_eq!(body_text(&handled.response), "stored");
        assert!(
            cache_status(&handled).contains("stale-if-error"),
            "{}",
            cache_status(&handled)
        );
        // Past the window the error is passed on.
        sim.clock.advance_secs(120);
        sim.then(Answer::respond(503, &[], "down"));
        let handled = sim.clock.block_on(engine.handle(request("GET", "/f", &[])));
        assert_eq!(handled.response.status, 503);
    }

    /// RFC 9111 §4.3.1, §4.3.4: a stale response is revalidated with the cache's own
    /// validators (never the client's), and a `304` freshens it without a body transfer.
    #[test]
    fn a_stale_response_is_revalidated_with_the_caches_own_validators() {
        let (sim, engine) = filled("max-age=1");
        sim.clock.advance_secs(5);
        sim.then(Answer::respond(304, &[("cache-control", "max-age=60")], ""));
        let client = [("if-none-match", "\"client\"")];
        let handled = sim
            .clock
            .block_on(engine.handle(request("GET", "/f", &client)));
        let sent = &sim.script.borrow().requests[1];
        assert_eq!(sent.headers.get_str("if-none-match"), Some("\"v1\""));
        assert_eq!(
            handled.response.status, 200,
            "the client's validator does not match"
        );
        assert_eq!(body_text(&handled.response), "stored");
        let hit = sim.clock.block_on(engine.handle(request("GET", "/f", &[])));
        assert!(
            cache_status(&hit).contains("hit"),
            "fresh again: {}",
            cache_status(&hit)
        );
        assert_eq!(sim.fetches(), 2);
    }

    /// A `HEAD` miss is fetched as `GET`, so its response can be stored for both.
    #[test]
    fn a_head_miss_is_fetched_as_get_and_stored() {
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &[("cache-control", "max-age=60")], "12345"),
        );
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let head = sim
            .clock
            .block_on(engine.handle(request("HEAD", "/h", &[])));
        assert_eq!(sim.script.borrow().requests[0].method, "GET");
        assert_eq!(head.response.content_length, Some(5));
        assert_eq!(body_text(&head.response), "");
        let get = sim.clock.block_on(engine.handle(request("GET", "/h", &[])));
        assert_eq!(body_text(&get.response), "12345");
        assert_eq!(sim.fetches(), 1);
    }

    /// A response the decision passes is served with its reason and not stored.
    #[test]
    fn a_passed_response_says_why_and_is_not_stored() {
        let (sim, engine) = filled("no-store");
        let again = sim.clock.block_on(engine.handle(request("GET", "/f", &[])));
        assert!(
            cache_status(&again).contains("detail=no-store"),
            "{}",
            cache_status(&again)
        );
        assert_eq!(sim.fetches(), 2);
    }
    /// A range of a response too large to hold whole cannot be cut here: the origin is
    /// asked for the range itself, and its answer passed on.
    #[test]
    fn a_range_of_a_response_too_large_to_hold_is_asked_of_the_origin() {
        let fields = [("cache-control", "max-age=60"), ("content-length", "10")];
        let sim = Simulation::new(
            Timestamp::from_millis(1_000_000),
            Answer::respond(200, &fields, "0123456789"),
        );
        let mut config = EngineConfig::default();
        config.limits.max_object_bytes = 4;
        let engine = sim.engine(config).unwrap();
        sim.then(Answer::respond(200, &fields, "0123456789"));
        sim.then(Answer::respond(
            206,
            &[("content-range", "bytes 0-1/10")],
            "01",
        ));
        let handled =
            sim.clock
                .block_on(engine.handle(request("GET", "/big", &[("range", "bytes=0-1")])));
        let requests = &sim.script.borrow().requests;
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].headers.get_str("range"),
            None,
            "the fill asks for it all"
        );
        assert_eq!(requests[1].headers.get_str("range"), Some("bytes=0-1"));
        assert_eq!(handled.response.status, 206);
        let fields = handled.response.fields();
        assert_eq!(fields.get_str("content-range"), Some("bytes 0-1/10"));
        assert_eq!(
            body_text(&handled.response),
            "<stream>",
            "the origin's, passed on"
        );
    }
}
