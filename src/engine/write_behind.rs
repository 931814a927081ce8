//! Write-behind: unsafe requests on configured routes are acknowledged once they are
//! appended to a Redis Stream, and sent to the origin afterwards, with retries and
//! idempotency keys, so that nothing acknowledged is lost when an instance crashes.
//!
//! **Append** (request path). The body is read whole (up to `write_behind.max_body_bytes`,
//! else `413` and nothing is queued or forwarded). The request gets an `Idempotency-Key`
//! (draft-ietf-httpapi-idempotency-key-header): the client's when it sent a sane one, else a
//! random one. Method, target, end-to-end header fields (the key among them) and body are
//! appended (`XADD`) to `{prefix}wb:queue`; what the write changes is invalidated in every
//! tier as write-through does (RFC 9111 §4.4) and the client is answered `202 Accepted` with
//! the key. If the append fails (Redis down, circuit open, no answer in time) the request is
//! written through instead: forwarded at once, carrying the same key, so that an append that
//! did land after all is recognised by the origin as the same request.
//!
//! **Flush** (background). One instance at a time flushes (a lease, `{prefix}wb:flush`,
//! `SET NX PX`, held for one round), one entry at a time, oldest first, through the consumer group
//! `flush` (created with `XGROUP CREATE … 0 MKSTREAM`):
//! - the oldest entry delivered and not acknowledged (`XPENDING`) comes first: when it has
//!   been idle for its retry delay (its delivery failed, or the instance sending it died) it
//!   is taken over (`XCLAIM`) and sent again; until then nothing newer is sent, so writes
//!   reach the origin in the order they were accepted. The delay is `retry_after_ms` after
//!   the first attempt, doubled after each further one up to 8 times it
//!   ([`retry_delay_ms`]): an origin answering 5xx or 429 gets room to recover, and one
//!   failing entry holds the queue for at most `max_attempts` delays (with the defaults,
//!   30 s, 1, 2, then 4 min each: about half an hour) before it is dead-lettered and the
//!   queue moves on;
//! - with nothing pending, the next new entry is read (`XREADGROUP … >`) and sent;
//! - the origin's answer decides: below 400, delivered (`XACK` + `XDEL` in one transaction,
//!   and the invalidation is repeated with the origin's `Location` / `Content-Location`,
//!   since a reader may have cached the old state meanwhile); 5xx, 408, 425, 429 or no answer:
//!   left pending for a retry, and the flush stops; any other 4xx: refused, moved to the
//!   dead-letter stream `{prefix}wb:dead`;
//! - the dead-letter stream keeps the last `max_dead_letters` entries (`XADD MAXLEN`), so clients whose writes the origin refuses cannot fill Redis; entries pushed out
//!   are counted (`write_behind_dead_letters_trimmed`);
//! - an entry already delivered `max_attempts` times is moved to the dead-letter stream
//!   instead of being sent again. Nothing leaves the queue without reaching the origin or the
//!   dead-letter stream, and every dead-lettered entry is logged once (method and path, no
//!   header, body or query).
//!
//! Every delivery is one attempt: an entry is claimed or read just before it is sent, so
//! its delivery count (`XPENDING`) is the number of attempts made.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::headers::Headers;

use super::host::{BodyError, Lock, LogLevel, Origin, Runtime, SharedTier, StreamEntry};
use super::{respond, Engine, Handled, Host, Job, RequestView};

/// The consumer group every instance flushes through.
const GROUP: &str = "flush";
/// The longest client `Idempotency-Key` passed on.
const MAX_KEY_LEN: usize = 255;
/// The version of the entry layout, the `v` field.
const VERSION: &[u8] = b"1";

/// One queued request, as stored in a stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The request line, header fields (end-to-end only, `Idempotency-Key` included).
    pub head: RequestView,
    /// The request body.
    pub body: Vec<u8>,
    /// When it was accepted, ms since the epoch.
    pub appended_at: u64,
}

impl Record {
    /// The stream entry's fields: `v`, `method`, `scheme`, `host`, `target`, `client` (the
    /// client's address, for the forwarding fields of the delivery; may be empty), `headers`
    /// (`name:value` lines), `body`, `at`.
    pub fn to_fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut headers = Vec::new();
        for (name, value) in self.head.headers().iter() {
            let storable = !name.is_empty()
                && !name.bytes().any(|b| matches!(b, b':' | b'\n' | b'\r' | 0))
                && !value.iter().any(|b| matches!(b, b'\n' | b'\r' | 0));
            if storable {
                headers.extend_from_slice(name.as_bytes());
                headers.push(b':');
                headers.extend_from_slice(value);
                headers.push(b'\n');
            }
        }
        alloc::vec![
            ("v", VERSION.to_vec()),
            ("method", self.head.method().as_bytes().to_vec()),
            ("scheme", self.head.scheme().as_bytes().to_vec()),
            ("host", self.head.authority().as_bytes().to_vec()),
            ("target", self.head.target().into_bytes()),
            (
                "client",
                self.head
                    .client()
                    .map(|ip| ip.to_string().into_bytes())
                    .unwrap_or_default(),
            ),
            ("headers", headers),
            ("body", self.body.clone()),
            ("at", self.appended_at.to_string().into_bytes()),
        ]
    }

    /// Reads an entry written by [`Self::to_fields`]; `None` for anything else.
    pub fn from_fields(fields: &[(String, Vec<u8>)]) -> Option<Record> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        };
        let text = |name: &str| -> Option<String> {
            String::from_utf8(field(name)?.to_vec())
                .ok()
                .filter(|s| !s.is_empty())
        };
        if field("v")? != VERSION {
            return None;
        }
        let mut headers = Headers::new();
        for line in field("headers")?.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let colon = line.iter().position(|&b| b == b':')?;
            let name = core::str::from_utf8(&line[..colon]).ok()?;
            headers.append(name, &line[colon + 1..]);
        }
        // The `host` field is the authority; the lines carry it too, since the view's do.
        let host = text("host")?;
        if headers.get_all("host").count() != 1 || headers.get("host") != Some(host.as_bytes()) {
            headers.set("host", &host);
        }
        let target = text("target")?;
        if !target.starts_with('/') {
            return None;
        }
        // Optional: entries queued before it was recorded have none.
        let client = text("client").and_then(|ip| ip.parse().ok());
        let head = match RequestView::parse(
            &text("method")?,
            &text("scheme")?,
            &target,
            headers,
            client,
        ) {
            Ok(super::Target::Resource(view)) => view,
            _ => return None,
        };
        Some(Record {
            head,
            body: field("body")?.to_vec(),
            appended_at: core::str::from_utf8(field("at")?).ok()?.parse().ok()?,
        })
    }
}

/// Whether a client's `Idempotency-Key` value is passed on as it is: 1 to 255 visible
/// ASCII characters (spaces inside allowed), the draft's sf-string or a bare token.
pub fn sane_key(value: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&value.len())
        && value.iter().all(|b| (0x20..0x7f).contains(b))
        && value.first() != Some(&b' ')
        && value.last() != Some(&b' ')
}

/// A new `Idempotency-Key` value: a random (version 4) UUID as an sf-string, the
/// draft's form, from 128 random bits.
pub fn generated_key(high: u64, low: u64) -> String {
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0b11 << 62)) | (0b10 << 62);
    format!(
        "\"{:08x}-{:04x}-{:04x}-{:04x}-{:012x}\"",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// The oldest Redis write-behind runs on: 7.0. Before it, `XCLAIM` of an entry deleted
/// from the stream returns nothing and leaves it pending, which would stall the queue.
pub const MIN_REDIS_VERSION: (u32, u32) = (7, 0);

/// Checks what the shared tier says of itself (`INFO`) against what write-behind needs:
/// `Err` names a server too old to run it; `Ok(Some(warning))` a setting that puts the
/// queue at risk, an `allkeys-*` `maxmemory-policy`, which may evict requests already
/// answered `202`.
pub fn check_server_info(info: &str) -> Result<Option<String>, String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if let Some(version) = field("redis_version") {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        if let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) {
            if (major, minor) < MIN_REDIS_VERSION {
                return Err(format!(
                    "write-behind needs Redis {}.{} or later (its stream commands), and this server is {version}: upgrade it, or remove write_behind.routes",
                    MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
                ));
            }
        }
    }
    Ok(field("maxmemory_policy")
        .filter(|policy| policy.starts_with("allkeys-"))
        .map(|policy| {
            format!(
                "Redis evicts any key under memory pressure (maxmemory-policy {policy}), the write-behind queue included, whose requests were answered 202: use noeviction or a volatile-* policy"
            )
        }))
}

/// Where the check of the shared tier for write-behind stands ([`Engine::check_shared_tier`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedTierCheck {
    /// Not checked yet.
    Pending,
    /// Checked: write-behind may use it.
    Passed,
    /// Checked and refused (a server too old): writes on write-behind routes are sent
    /// through at once instead of queued.
    Refused,
    /// Asked, but no answer came (Redis down or slow): writes are sent through at once, and
    /// the first write-behind request from this time on asks again.
    Unanswered {
        /// When to ask again (`l2.breaker_cooldown_ms` after the last try).
        retry_at: crate::time::Timestamp,
    },
}

/// The most a retry is put off: `retry_after_ms` times this.
const MAX_BACKOFF_FACTOR: u64 = 8;

/// How long an entry delivered `deliveries` times waits before its next attempt:
/// `retry_after_ms`, doubled after each further failure, up to `MAX_BACKOFF_FACTOR` (8) times
/// it, so an origin answering 5xx or 429 is not hammered. Entries keep their order: while
/// the oldest waits, nothing newer is sent (head-of-line, see the module documentation).
pub fn retry_delay_ms(retry_after_ms: u64, deliveries: u64) -> u64 {
    let doublings = deliveries.saturating_sub(1).min(u64::from(u32::BITS));
    let factor = 1u64
        .checked_shl(u32::try_from(doublings).unwrap_or(u32::MAX))
        .unwrap_or(u64::MAX)
        .min(MAX_BACKOFF_FACTOR);
    retry_after_ms.saturating_mul(factor)
}

/// What the origin's answer to a delivery means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken (any status below 400): the entry leaves the queue.
    Delivered,
    /// Worth another try later (5xx, 408, 425, 429, no answer).
    Retry,
    /// Refused for good (any other 4xx): the entry goes to the dead-letter stream.
    Refused,
}

/// The outcome of a delivery answered with `status` (RFC 9110 §15: 408, 425 and 429 ask
/// the client to try again; 5xx are the server's failure, not the request's).
pub fn outcome(status: u16) -> Outcome {
    match status {
        ..400 => Outcome::Delivered,
        408 | 425 | 429 | 500.. => Outcome::Retry,
        _ => Outcome::Refused,
    }
}

/// What a flush round does after one entry.
enum Next {
    /// Go on with the next entry.
    Continue,
    /// Stop this round (nothing to do, an entry waits for its retry, or a failure).
    Stop,
}

impl<H: Host> Engine<H> {
    fn queue_key(&self) -> String {
        self.sync_key("wb:queue")
    }

    fn dead_letter_key(&self) -> String {
        self.sync_key("wb:dead")
    }

    /// The consumer name: one for every instance, since entries are taken over by idle
    /// time, never by owner (short-lived Worker requests would otherwise leave a consumer
    /// each in the group).
    fn consumer(&self) -> &str {
        &self.config.cache_name
    }

    /// Queues an unsafe request on a write-behind route and answers `202 Accepted`, or
    /// writes it through when it cannot be queued (see the module documentation).
    pub(crate) async fn write_behind(
        &self,
        head: RequestView,
        body: Option<H::Body>,
    ) -> Handled<H::Body> {
        let key = match head.headers().get("idempotency-key") {
            Some(value) if sane_key(value) => String::from_utf8_lossy(value).into_owned(),
            _ => generated_key(self.runtime.random_u64(), self.runtime.random_u64()),
        };
        if !self.write_behind_usable().await {
            // Nothing will be queued (the shared tier was refused, or has not answered its
            // check): the write streams through at once, whatever its size, with its key.
            let mut headers = head.headers().clone();
            headers.set("idempotency-key", &key);
            return self.write_through(head.with_headers(headers), body).await;
        }
        let limit = self.config.write_behind.max_body_bytes;
        let body = match body {
            None => Vec::new(),
            Some(body) => match self.origin.read_body(body, limit).await {
                Ok(bytes) => bytes,
                Err(BodyError::TooLarge) => {
                    return Handled::now(respond::error(
                        413,
                        &format!("request content larger than {limit} bytes"),
                        self.statuses.note(None),
                    ))
                }
                Err(BodyError::Broken(_)) => {
                    return Handled::now(respond::error(
                        400,
                        "the request content could not be read",
                        self.statuses.note(None),
                    ))
                }
            },
        };
        let mut headers = head.end_to_end_headers();
        // What may never reach the origin is not queued either (an older instance may be
        // the one that delivers it); the delivery adds edgecache's forwarding fields.
        crate::policy::forwarding::sanitize(&mut headers, head.client(), &self.trust, &[]);
        // The host sends the length of the bytes it is given, all at once: nothing to
        // expect (RFC 9110 §10.1.1).
        headers.remove("content-length");
        headers.remove("expect");
        headers.set("idempotency-key", &key);
        let head = head.with_headers(headers);
        let record = Record {
            head,
            body,
            appended_at: self.runtime.now().as_millis(),
        };
        let fields = record.to_fields();
        let borrowed: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let appended = match self.l2_tier() {
            Some(tier) => self.append_bounded(tier, &borrowed).await,
            None => None,
        };
        drop(borrowed);
        let Record { head, body, .. } = record;
        if appended.is_none() {
            // Not queued: nothing may be lost, so the origin gets it now.
            let body = self.origin.body_from_bytes(body);
            return self.write_through(head, Some(body)).await;
        }
        self.count(|s| s.write_behind_appended += 1);
        self.invalidate_after_write(&head, 202, &Headers::new())
            .await;
        let entry = self.statuses.note(Some("write-behind"));
        let mut response = respond::error(202, "accepted: queued for the origin", entry);
        response.headers.set("idempotency-key", &key);
        Handled {
            response,
            job: Some(Job::FlushWriteBehind),
        }
    }

    /// Appends `fields` to the queue unless it holds `write_behind.max_queue_entries`
    /// already (counted); the entry's ID, or `None` when it was not appended.
    async fn append_bounded(
        &self,
        tier: &H::SharedTier,
        fields: &[(&str, &[u8])],
    ) -> Option<String> {
        let wb = &self.config.write_behind;
        let queue = self.queue_key();
        let queued = self.l2_guarded(tier.stream_len(&queue)).await?;
        if queued >= wb.max_queue_entries {
            self.count(|s| s.write_behind_queue_full += 1);
            return None;
        }
        // Never trimmed: every entry was answered 202 (the bound is checked above instead).
        self.l2_guarded_within(wb.timeout_ms, tier.stream_add(&queue, None, fields))
            .await
    }

    /// Checks, at start, that the shared tier can hold the write-behind queue safely
    /// ([`check_server_info`]); nothing to check without write-behind routes. `Err` is a
    /// reason to refuse to start; the `Ok` lines are warnings to log (an unreachable Redis
    /// is one: requests then fall back to write-through).
    pub async fn check_shared_tier(&self) -> Result<Vec<String>, String> {
        let Some(tier) = self.shared.as_ref() else {
            return Ok(Vec::new());
        };
        if self.config.write_behind.routes.is_empty() {
            return Ok(Vec::new());
        }
        let info = super::l2::with_timeout(
            &self.runtime,
            self.config.write_behind.timeout_ms,
            tier.info(),
        )
        .await;
        let Some(Ok(info)) = info else {
            // Not answered: nothing is queued until a later check passes, and the warning
            // is logged once, not at every retry.
            let retry_at = self
                .runtime
                .now()
                .plus_millis(self.config.l2.breaker_cooldown_ms);
            let already = self.state.with(|s| {
                let already = matches!(s.shared_tier_check, SharedTierCheck::Unanswered { .. });
                s.shared_tier_check = SharedTierCheck::Unanswered { retry_at };
                already
            });
            if already {
                return Ok(Vec::new());
            }
            let why = match info {
                Some(Err(e)) => format!("{e}"),
                _ => String::from("no answer in time"),
            };
            return Ok(alloc::vec![format!(
                "could not check Redis for write-behind ({why}); until it answers, writes are sent through at once"
            )]);
        };
        let checked = check_server_info(&info);
        let outcome = match checked {
            Ok(_) => SharedTierCheck::Passed,
            Err(_) => SharedTierCheck::Refused,
        };
        self.state.with(|s| s.shared_tier_check = outcome);
        Ok(checked?.into_iter().collect())
    }

    /// Whether write-behind may queue this write: the shared tier was checked and passed.
    /// A host that checks nothing at start (the Worker has no start) checks here, on the
    /// first write-behind request, before anything is queued; a Redis too old turns
    /// write-behind off and the write is sent through at once. A check that got no answer
    /// is asked again once its retry time has come; until one passes, writes are sent
    /// through. Without a shared tier the write-behind path sends writes through by itself.
    pub(crate) async fn write_behind_usable(&self) -> bool {
        if self.shared.is_none() {
            return true;
        }
        let now = self.runtime.now();
        let cooldown = self.config.l2.breaker_cooldown_ms;
        let state = self.state.with(|s| {
            let state = s.shared_tier_check;
            if matches!(state, SharedTierCheck::Unanswered { retry_at } if now >= retry_at) {
                // This request asks again; the others meanwhile send their writes through.
                s.shared_tier_check = SharedTierCheck::Unanswered {
                    retry_at: now.plus_millis(cooldown),
                };
            }
            state
        });
        match state {
            SharedTierCheck::Passed => true,
            SharedTierCheck::Refused => false,
            SharedTierCheck::Unanswered { retry_at } if now < retry_at => false,
            SharedTierCheck::Pending | SharedTierCheck::Unanswered { .. } => {
                self.check_shared_tier_and_log().await;
                self.state
                    .with(|s| s.shared_tier_check == SharedTierCheck::Passed)
            }
        }
    }

    /// [`Self::check_shared_tier`], its warnings and refusal logged through the host.
    pub(crate) async fn check_shared_tier_and_log(&self) {
        match self.check_shared_tier().await {
            Ok(warnings) => {
                for warning in warnings {
                    self.runtime.log(LogLevel::Warn, &warning);
                }
            }
            Err(refusal) => self.runtime.log(
                LogLevel::Warn,
                &format!(
                    "{refusal}; until then, writes on write-behind routes are sent through at once"
                ),
            ),
        }
    }

    /// Sends queued requests to the origin until the queue is empty, the oldest queued
    /// request waits for its retry, a delivery fails, or the round's lease is about to
    /// run out. Does nothing without write-behind routes, without the shared tier, or while
    /// another instance flushes. Hosts call it every `write_behind.flush_interval_ms` (and
    /// at start); the engine also returns it as a job after each append.
    pub async fn flush_write_behind(&self) {
        let wb = &self.config.write_behind;
        if wb.routes.is_empty() {
            return;
        }
        let Some(tier) = self.l2_tier() else {
            return;
        };
        // A round starts entries for `retry_after_ms`; the lease also covers the last one's
        // send and its few commands.
        let lease_ms = wb
            .retry_after_ms
            .saturating_add(self.config.limits.origin_timeout_ms)
            .saturating_add(
                wb.timeout_ms
                    .max(self.config.l2.timeout_ms)
                    .saturating_mul(4),
            );
        let lease = self.sync_key("wb:flush");
        // A token of this round's own: a round of this instance that outlived its lease
        // must not release the next round's.
        let token = format!("{}-{:016x}", self.lease_token, self.runtime.random_u64());
        if self
            .l2_guarded(tier.set_if_absent(&lease, token.as_bytes(), lease_ms))
            .await
            != Some(true)
        {
            return;
        }
        let queue = self.queue_key();
        if self
            .l2_guarded(tier.stream_create_group(&queue, GROUP))
            .await
            .is_some()
        {
            let started = self.runtime.now();
            while self.runtime.now().millis_since(started) < wb.retry_after_ms {
                if let Next::Stop = self.flush_one(tier, &queue).await {
                    break;
                }
            }
        }
        self.release_lease_holding(&lease, &token).await;
    }

    /// Takes the next entry in order and delivers it (see the module documentation).
    async fn flush_one(&self, tier: &H::SharedTier, queue: &str) -> Next {
        let wb = &self.config.write_behind;
        let Some(pending) = self.l2_guarded(tier.stream_pending(queue, GROUP, 1)).await else {
            return Next::Stop;
        };
        let (entry, deliveries) = match pending.into_iter().next() {
            Some(oldest)
                if oldest.idle_ms < retry_delay_ms(wb.retry_after_ms, oldest.deliveries) =>
            {
                return Next::Stop
            }
            Some(oldest) => {
                let ids = [oldest.id];
                let min_idle = retry_delay_ms(wb.retry_after_ms, oldest.deliveries);
                let claim = tier.stream_claim(queue, GROUP, self.consumer(), min_idle, &ids);
                let Some(claimed) = self.l2_guarded_within(wb.timeout_ms, claim).await else {
                    return Next::Stop;
                };
                match claimed.into_iter().next() {
                    Some(entry) => (entry, oldest.deliveries),
                    // Taken over by another flush just now (its lease may have outlived
                    // ours): never acknowledge it here, its delivery may fail. Or deleted
                    // from the stream, which XCLAIM also drops from the pending list.
                    None => return Next::Stop,
                }
            }
            None => {
                let read = tier.stream_read_new(queue, GROUP, self.consumer(), 1);
                let Some(new) = self.l2_guarded_within(wb.timeout_ms, read).await else {
                    return Next::Stop;
                };
                match new.into_iter().next() {
                    Some(entry) => (entry, 0),
                    None => return Next::Stop,
                }
            }
        };
        let Some(record) = Record::from_fields(&entry.fields) else {
            return self
                .dead_letter(
                    tier,
                    queue,
                    &entry,
                    None,
                    deliveries + 1,
                    "unreadable entry",
                )
                .await;
        };
        if deliveries >= u64::from(wb.max_attempts) {
            let reason = format!("no success in {deliveries} attempts");
            return self
                .dead_letter(tier, queue, &entry, Some(&record.head), deliveries, &reason)
                .await;
        }
        let Record { head, body, .. } = record;
        let body = self.origin.body_from_bytes(body);
        // The answer's content is not needed: dropped with the response.
        let result = self
            .forward(&head, Some(body))
            .await
            .map(|r| (outcome(r.status), r.status, r.headers));
        match result {
            Ok((Outcome::Delivered, status, headers)) => {
                let ids = [entry.id];
                if self
                    .l2_guarded(tier.stream_ack_delete(queue, GROUP, &ids))
                    .await
                    .is_none()
                {
                    // Stays pending: delivered again later, under the same key.
                    return Next::Stop;
                }
                self.count(|s| s.write_behind_flushed += 1);
                self.invalidate_after_write(&head, status, &headers).await;
                Next::Continue
            }
            Ok((Outcome::Refused, status, _)) => {
                let reason = format!("the origin refused it with {status}");
                self.dead_letter(tier, queue, &entry, Some(&head), deliveries + 1, &reason)
                    .await
            }
            Ok((Outcome::Retry, _, _)) | Err(_) => {
                self.count(|s| s.write_behind_retried += 1);
                Next::Stop
            }
        }
    }

    /// Moves `entry` to the dead-letter stream (with why, and how often it was tried) and
    /// out of the queue, and tells the operator once.
    async fn dead_letter(
        &self,
        tier: &H::SharedTier,
        queue: &str,
        entry: &StreamEntry,
        head: Option<&RequestView>,
        attempts: u64,
        reason: &str,
    ) -> Next {
        let attempts_text = attempts.to_string();
        let mut fields: Vec<(&str, &[u8])> = entry
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        fields.push(("queued_id", entry.id.as_bytes()));
        fields.push(("attempts", attempts_text.as_bytes()));
        fields.push(("reason", reason.as_bytes()));
        let dead = self.dead_letter_key();
        let wb = &self.config.write_behind;
        // Bounded: clients whose writes the origin refuses must not be able to fill Redis.
        // The oldest go first (MAXLEN), counted when the stream is full.
        let max_dead = wb.max_dead_letters;
        if let Some(len) = self.l2_guarded(tier.stream_len(&dead)).await {
            if len >= max_dead {
                self.count(|s| s.write_behind_dead_letters_trimmed += 1);
            }
        }
        if self
            .l2_guarded_within(
                wb.timeout_ms,
                tier.stream_add(&dead, Some(max_dead), &fields),
            )
            .await
            .is_none()
        {
            return Next::Stop;
        }
        let ids = [entry.id.clone()];
        if self
            .l2_guarded(tier.stream_ack_delete(queue, GROUP, &ids))
            .await
            .is_none()
        {
            return Next::Stop;
        }
        self.count(|s| s.write_behind_dead_lettered += 1);
        // Method and path only: headers and bodies may hold credentials, queries tokens.
        let what = head.map_or_else(
            || String::from("an unreadable request"),
            |h| format!("{} {}", h.method(), h.path()),
        );
        self.runtime.log(
            LogLevel::Warn,
            &format!(
                "edgecache: write-behind gave up on {what} (queued as {}): {reason}; moved to the stream {dead}",
                entry.id
            ),
        );
        Next::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            head: match RequestView::parse(
                "PUT",
                "https",
                "/a/b?c=d",
                Headers::from_pairs([
                    ("host", "example.com"),
                    ("content-type", "application/json"),
                    ("authorization", "Bearer x:y"),
                    ("idempotency-key", "\"k\""),
                ]),
                Some("192.0.2.1".parse().unwrap()),
            ) {
                Ok(crate::engine::Target::Resource(view)) => view,
                other => panic!("{other:?}"),
            },
            body: b"\x00{\"a\":1}\r\n\xff".to_vec(),
            appended_at: 1_700_000_000_123,
        }
    }

    fn owned(fields: Vec<(&'static str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        fields
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    #[test]
    fn records_round_trip_through_stream_fields() {
        let r = record();
        assert_eq!(Record::from_fields(&owned(r.to_fields())), Some(r));
    }

    #[test]
    fn unreadable_entries_are_none_never_a_panic() {
        let good = owned(record().to_fields());
        for drop in 0..good.len() {
            let mut f = good.clone();
            f.remove(drop);
            let optional = good[drop].0 == "client";
            assert_eq!(
                Record::from_fields(&f).is_some(),
                optional,
                "without {}",
                good[drop].0
            );
        }
        let mut f = good.clone();
        f[0].1 = b"2".to_vec();
        assert_eq!(Record::from_fields(&f), None, "unknown version");
        let mut f = good.clone();
        f[6].1 = b"no colon\n".to_vec();
        assert_eq!(Record::from_fields(&f), None);
        let mut f = good;
        f[4].1 = b"http://elsewhere/".to_vec();
        assert_eq!(Record::from_fields(&f), None, "targets are paths");
        assert_eq!(Record::from_fields(&[]), None);
    }

    #[test]
    fn header_values_that_cannot_be_sent_are_not_stored() {
        let mut r = record();
        let mut headers = r.head.headers().clone();
        headers.append("x-bad", b"a\nb:c".as_slice());
        r.head = r.head.with_headers(headers);
        let back = Record::from_fields(&owned(r.to_fields())).unwrap();
        assert!(!back.head.headers().contains("x-bad"));
        assert!(!back.head.headers().contains("b"));
    }

    #[test]
    fn the_server_is_checked_for_version_and_eviction() {
        let info = |version: &str, policy: &str| {
            format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n# Memory\r\nmaxmemory_policy:{policy}\r\n")
        };
        assert_eq!(check_server_info(&info("7.0.15", "noeviction")), Ok(None));
        assert_eq!(check_server_info(&info("7.2.4", "volatile-lru")), Ok(None));
        let old = check_server_info(&info("6.2.14", "noeviction")).unwrap_err();
        assert!(old.contains("7.0") && old.contains("6.2.14"), "{old}");
        let warned = check_server_info(&info("7.0.0", "allkeys-lru"))
            .unwrap()
            .unwrap();
        assert!(warned.contains("allkeys-lru"), "{warned}");
        assert_eq!(
            check_server_info(""),
            Ok(None),
            "nothing said, nothing refused"
        );
    }

    #[test]
    fn retries_back_off_up_to_eight_times_the_delay() {
        let delays: Vec<u64> = (0..=12).map(|n| retry_delay_ms(30_000, n)).collect();
        assert_eq!(
            delays,
            [
                30_000, 30_000, 60_000, 120_000, 240_000, 240_000, 240_000, 240_000, 240_000,
                240_000, 240_000, 240_000, 240_000
            ]
        );
        assert_eq!(retry_delay_ms(u64::MAX, 3), u64::MAX);
        assert_eq!(retry_delay_ms(1, u64::MAX), 8);
    }

    #[test]
    fn keys() {
        assert!(sane_key(b"\"8e03978e-40d5-43e8-bc93-6894a57f9324\""));
        assert!(sane_key(b"abc"));
        assert!(!sane_key(b""));
        assert!(!sane_key(b" a"));
        assert!(!sane_key(b"a\tb"));
        assert!(!sane_key(&[b'a'; 256]));
        let k = generated_key(0, u64::MAX);
        assert_eq!(k, "\"00000000-0000-4000-bfff-ffffffffffff\"");
        assert!(sane_key(k.as_bytes()));
        assert_ne!(generated_key(1, 2), generated_key(1, 3));
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(200), Outcome::Delivered);
        assert_eq!(outcome(201), Outcome::Delivered);
        assert_eq!(outcome(303), Outcome::Delivered);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(outcome(s), Outcome::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(outcome(s), Outcome::Refused, "{s}");
        }
    }

    /// A Redis 6.2 that does not answer its first `n` `INFO`s: a shared tier for the
    /// simulated host, and how many `INFO`s it was asked.
    struct OldRedis {
        down_for: u32,
        infos: alloc::rc::Rc<core::cell::Cell<u32>>,
    }

    impl crate::shared_tier::Transport for OldRedis {
        async fn pipeline(
            &self,
            commands: &[crate::shared_tier::Command<'_>],
        ) -> Result<Vec<crate::shared_tier::Reply>, crate::engine::TierError> {
            use crate::shared_tier::Reply;
            let info = |c: &crate::shared_tier::Command<'_>| {
                c.first().is_some_and(|n| n.eq_ignore_ascii_case(b"INFO"))
            };
            if commands.iter().any(info) {
                self.infos.set(self.infos.get() + 1);
                if self.infos.get() <= self.down_for {
                    return Err(crate::engine::TierError(String::from("connection refused")));
                }
            }
            Ok(commands
                .iter()
                .map(|c| match info(c) {
                    true => Reply::Bytes(b"# Server\r\nredis_version:6.2.14\r\n".to_vec()),
                    false => Reply::Error(String::from("ERR unknown command")),
                })
                .collect())
        }
    }

    /// The simulated host with [`OldRedis`] as its shared tier.
    struct OldRedisHost;

    impl Host for OldRedisHost {
        type Body = crate::engine::simulated::SimBody;
        type Origin = crate::engine::simulated::SimOrigin;
        type SharedTier = crate::shared_tier::RedisTier<OldRedis>;
        type Colo = crate::engine::NoColo;
        type Runtime = crate::engine::simulated::SimRuntime;
        type Lock = core::cell::RefCell<crate::engine::EngineState>;
    }

    /// An origin answering writes `201`, and an engine with write-behind on `/q/` over an
    /// [`OldRedis`] down for its first `down_for` `INFO`s (counted in the returned cell).
    fn over_old_redis(
        down_for: u32,
    ) -> (
        crate::engine::simulated::Simulation,
        Engine<OldRedisHost>,
        alloc::rc::Rc<core::cell::Cell<u32>>,
    ) {
        use crate::engine::simulated::{Answer, Simulation};
        let sim = Simulation::new(
            crate::time::Timestamp::from_millis(1_000_000),
            Answer::respond(201, &[], "written"),
        );
        let (origin, runtime) = sim.parts();
        let mut config = crate::engine::EngineConfig::default();
        config.write_behind.routes = alloc::vec![String::from("/q/")];
        let infos = alloc::rc::Rc::new(core::cell::Cell::new(0));
        let tier = crate::shared_tier::RedisTier::over(OldRedis {
            down_for,
            infos: infos.clone(),
        });
        let engine = Engine::new(config, origin, Some(tier), runtime).unwrap();
        (sim, engine, infos)
    }

    fn post() -> crate::engine::Request<crate::engine::simulated::SimBody> {
        crate::engine::simulated::request("POST", "/q/1", &[("content-type", "text/plain")])
    }

    /// A Redis too old for write-behind, met by a host that checks nothing at start (the
    /// Worker): the first write-behind request checks it before queuing anything, which
    /// turns write-behind off; that write and later ones go through to the origin at once.
    #[test]
    fn a_shared_tier_too_old_turns_write_behind_off_on_hosts_without_a_start() {
        let (sim, engine, _) = over_old_redis(0);
        let first = sim.clock.block_on(engine.handle(post()));
        assert_eq!(
            first.response.status, 201,
            "written through, not queued (202)"
        );
        assert_eq!(sim.fetches(), 1);
        assert_eq!(
            engine.state.with(|s| s.shared_tier_check),
            SharedTierCheck::Refused
        );
        let second = sim.clock.block_on(engine.handle(post()));
        assert_eq!(second.response.status, 201);
        assert_eq!(sim.fetches(), 2);
    }

    /// A check of the shared tier that gets no answer does not count as passed: writes go
    /// through at once, and the first write-behind request after `l2.breaker_cooldown_ms`
    /// asks again (here finding a Redis too old).
    #[test]
    fn an_unanswered_check_is_asked_again_and_queues_nothing_meanwhile() {
        let (sim, engine, infos) = over_old_redis(1);
        for _ in 0..2 {
            let through = sim.clock.block_on(engine.handle(post()));
            assert_eq!(through.response.status, 201, "sent through, not queued");
        }
        assert_eq!(infos.get(), 1, "not asked again before the retry time");
        assert!(matches!(
            engine.state.with(|s| s.shared_tier_check),
            SharedTierCheck::Unanswered { .. }
        ));
        sim.clock
            .advance_millis(engine.config().l2.breaker_cooldown_ms);
        let later = sim.clock.block_on(engine.handle(post()));
        assert_eq!(later.response.status, 201);
        assert_eq!(infos.get(), 2, "asked again");
        assert_eq!(
            engine.state.with(|s| s.shared_tier_check),
            SharedTierCheck::Refused
        );
    }
}
