//! A simulated host: simulated time ([`SimClock`], a discrete-event executor) and a
//! scripted origin that counts its fetches, so the engine runs without I/O,
//! deterministically, simulated seconds passing in no time (the read path's unit tests,
//! tests/engine.rs, and the browser simulator drive the real engine this way); and a
//! simulated Redis ([`SimRedis`]) that several engines can share, for what instances do
//! together (the fleet's statistics, [`super::fleet`]).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use crate::headers::Headers;
use crate::time::{Clock, ManualClock, Timestamp};

use super::host::{BodyError, ColoCache, NoSharedTier, Origin, OriginBody, OriginError};
use super::host::{OriginRequest, OriginResponse, Runtime, TierError};
use super::{ConfigError, Engine, EngineConfig, EngineState, Host};
use crate::shared_tier::{Command, RedisTier, Reply, Transport};

/// One scripted origin answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Status, fields and body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Status and fields, then a body sent in pieces over time, ending as `end` says.
    Stream(u16, Vec<(String, String)>, Vec<Piece>, StreamEnd),
    /// The origin cannot be reached.
    Unreachable,
}

/// Part of a streamed origin body: sent `after_ms` simulated milliseconds after the one
/// before it (or the head).
#[derive(Clone, Debug)]
pub struct Piece {
    /// The wait before it.
    pub after_ms: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// How a streamed origin body ends after its last piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Complete.
    Complete,
    /// The connection breaks.
    Abort,
    /// Nothing more is ever sent.
    Stall,
}

/// The simulated host's body: a client's request body or an origin body nobody reads
/// (`Opaque`), or the rest of a scripted origin body.
#[derive(Debug)]
pub enum SimBody {
    /// Nothing to read.
    Opaque,
    /// What a scripted origin still has to send.
    Origin(VecDeque<Piece>, StreamEnd),
}

impl Answer {
    /// A response with `fields` and a body sent in `pieces`, ending as `end` says.
    pub fn stream(
        status: u16,
        fields: &[(&str, &str)],
        pieces: &[(u64, &str)],
        end: StreamEnd,
    ) -> Self {
        let fields = fields
            .iter()
            .map(|(n, v)| (String::from(*n), String::from(*v)))
            .collect();
        let pieces = pieces
            .iter()
            .map(|(after_ms, bytes)| Piece {
                after_ms: *after_ms,
                bytes: bytes.as_bytes().to_vec(),
            })
            .collect();
        Answer::Stream(status, fields, pieces, end)
    }

    /// A response with `fields` and `body`.
    pub fn respond(status: u16, fields: &[(&str, &str)], body: &str) -> Self {
        let fields = fields
            .iter()
            .map(|(n, v)| (String::from(*n), String::from(*v)))
            .collect();
        Answer::Respond(status, fields, body.as_bytes().to_vec())
    }
}

/// Answers a request with an answer and how long it takes, in simulated milliseconds.
pub type Answerer = Box<dyn FnMut(&OriginRequest<SimBody>) -> (Answer, u64)>;

/// The origin's script and what it was asked, shared between the origin and the test.
pub struct Script {
    /// Answers given in order; when none is left, [`Self::default`] answers.
    pub queue: VecDeque<Answer>,
    /// The answer when the queue is empty.
    pub default: Answer,
    /// Every request the origin received (bodies left out), while [`Self::keep_requests`].
    pub requests: Vec<OriginRequest<SimBody>>,
    /// Whether to keep them (long simulations only count them).
    pub keep_requests: bool,
    /// How many requests the origin received.
    pub fetches: usize,
    /// How long the origin takes to answer, in simulated milliseconds.
    pub latency_ms: u64,
    /// When set, answers every request instead of the queue and the default.
    pub answerer: Option<Answerer>,
}

/// The simulated origin.
pub struct SimOrigin {
    script: Rc<RefCell<Script>>,
    clock: Rc<SimClock>,
}

impl Origin for SimOrigin {
    type Body = SimBody;

    async fn fetch(
        &self,
        request: OriginRequest<SimBody>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<SimBody>, OriginError> {
        let (answer, latency_ms) = {
            let mut script = self.script.borrow_mut();
            let request = OriginRequest {
                body: None,
                ..request
            };
            let answered = match script.answerer.as_mut() {
                Some(answerer) => answerer(&request),
                None => {
                    let default = script.default.clone();
                    let latency_ms = script.latency_ms;
                    (script.queue.pop_front().unwrap_or(default), latency_ms)
                }
            };
            script.fetches += 1;
            if script.keep_requests {
                script.requests.push(request);
            }
            answered
        };
        self.clock.sleep(latency_ms).await;
        let headers = |fields: &[(String, String)]| {
            Headers::from_pairs(fields.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        };
        match answer {
            Answer::Respond(status, fields, body) => Ok(OriginResponse {
                status,
                headers: headers(&fields),
                body: if body.len() <= buffer_limit {
                    OriginBody::Buffered(body)
                } else {
                    // Larger than the host buffers: streamed, all of it at once.
                    let piece = Piece {
                        after_ms: 0,
                        bytes: body,
                    };
                    OriginBody::Streaming(SimBody::Origin([piece].into(), StreamEnd::Complete))
                },
            }),
            Answer::Stream(status, fields, pieces, end) => Ok(OriginResponse {
                status,
                headers: headers(&fields),
                body: OriginBody::Streaming(SimBody::Origin(pieces.into(), end)),
            }),
            Answer::Unreachable => Err(OriginError::Unreachable(String::from("refused"))),
        }
    }

    async fn next_chunk(&self, body: &mut SimBody) -> Result<Option<Vec<u8>>, OriginError> {
        let SimBody::Origin(pieces, end) = body else {
            return Ok(None);
        };
        if let Some(piece) = pieces.pop_front() {
            self.clock.sleep(piece.after_ms).await;
            return Ok(Some(piece.bytes));
        }
        match end {
            StreamEnd::Complete => Ok(None),
            StreamEnd::Abort => Err(OriginError::Broken(String::from("connection reset"))),
            StreamEnd::Stall => {
                core::future::pending::<()>().await;
                Ok(None)
            }
        }
    }

    async fn read_body(&self, _body: SimBody, _limit: usize) -> Result<Vec<u8>, BodyError> {
        Ok(Vec::new())
    }

    fn body_from_bytes(&self, _bytes: Vec<u8>) -> SimBody {
        SimBody::Opaque
    }
}

/// The simulated runtime: time from a [`SimClock`], and a deterministic random sequence.
pub struct SimRuntime {
    clock: Rc<SimClock>,
    draws: Cell<u64>,
}

impl SimRuntime {
    /// A runtime on `clock`.
    pub fn new(clock: Rc<SimClock>) -> Self {
        Self::seeded(clock, 0)
    }

    /// A runtime on `clock` whose random sequence starts at `seed`: engines of one
    /// simulation with other seeds draw other ids, as real instances do.
    pub fn seeded(clock: Rc<SimClock>, seed: u64) -> Self {
        SimRuntime {
            clock,
            draws: Cell::new(seed),
        }
    }
}

impl Runtime for SimRuntime {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn random_u64(&self) -> u64 {
        let n = self.draws.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.draws.set(n);
        n
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        self.clock.sleep(ms)
    }
}

/// Simulated time: a clock that moves only when told to or when everything waits, and the
/// timers of the futures waiting on it. [`SimClock::block_on`] and [`SimClock::block_on_all`]
/// run futures as a discrete-event simulation: they poll what was woken, and when nothing
/// is, move the clock to the earliest timer and wake it, so simulated seconds pass in no
/// time and every run is the same.
#[derive(Debug)]
pub struct SimClock {
    clock: ManualClock,
    /// Waiting timers by (deadline, id), each with the waker to wake at its deadline.
    timers: RefCell<BTreeMap<(Timestamp, u64), Waker>>,
    next_timer: Cell<u64>,
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

impl SimClock {
    /// A clock standing at `start`, with no timers.
    pub fn new(start: Timestamp) -> Self {
        SimClock {
            clock: ManualClock::new(start),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
        }
    }

    /// Moves the clock forward by `ms` (timers that fall due are woken).
    pub fn advance_millis(&self, ms: u64) {
        self.clock.advance_millis(ms);
        self.wake_due();
    }

    /// Moves the clock forward by `secs`.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs.saturating_mul(1000));
    }

    /// A future that completes once the clock has passed `now + ms`.
    pub fn sleep(self: &Rc<Self>, ms: u64) -> Sleep {
        Sleep {
            clock: self.clone(),
            deadline: self.now().plus_millis(ms),
            id: None,
        }
    }

    /// The earliest deadline of a waiting timer.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers
            .borrow()
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    /// Moves the clock to `to` if that is later, waking the timers that fall due.
    pub fn advance_to(&self, to: Timestamp) {
        if to > self.now() {
            self.clock.set(to);
        }
        self.wake_due();
    }

    /// Wakes (and forgets) every timer whose deadline has passed.
    fn wake_due(&self) {
        let now = self.now();
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let later = timers.split_off(&(now.plus_millis(1), 0));
            core::mem::replace(&mut *timers, later)
                .into_values()
                .collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Runs `future` to completion in simulated time.
    ///
    /// # Panics
    /// When it waits with no timer left to wake it (it would never complete).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut outputs = self.block_on_all(alloc::vec![future]);
        outputs.pop().expect("one output")
    }

    /// Runs `futures` side by side, as concurrent requests, until all are done; returns
    /// their outputs in order.
    ///
    /// # Panics
    /// When they all wait with no timer left to wake any of them.
    pub fn block_on_all<F: Future>(&self, futures: Vec<F>) -> Vec<F::Output> {
        let mut tasks: Vec<Task<F>> = futures.into_iter().map(Task::new).collect();
        loop {
            let mut polled = false;
            for task in tasks.iter_mut() {
                polled |= task.poll_if_woken();
            }
            if tasks.iter().all(|t| t.output.is_some()) {
                return tasks.into_iter().filter_map(|t| t.output).collect();
            }
            if !polled {
                let next = self
                    .next_deadline()
                    .expect("simulated futures wait with no timer to wake them");
                self.advance_to(next);
            }
        }
    }
}

/// Futures spawned over simulated time, as they arrive: a discrete-event simulation whose
/// events are requests (spawned at their arrival time) and timers (sleeps, origin latency).
pub struct Executor<'a> {
    clock: Rc<SimClock>,
    tasks: Vec<Task<dyn Future<Output = ()> + 'a>>,
}

impl<'a> Executor<'a> {
    /// An executor on `clock`, with nothing to run.
    pub fn new(clock: Rc<SimClock>) -> Self {
        Executor {
            clock,
            tasks: Vec::new(),
        }
    }

    /// Starts `future` now (it is first polled by the next run).
    pub fn spawn(&mut self, future: impl Future<Output = ()> + 'a) {
        let future: Pin<Box<dyn Future<Output = ()> + 'a>> = Box::pin(future);
        self.tasks.push(Task::pinned(future));
    }

    /// Runs everything that can happen up to `until` (moving the clock from timer to timer),
    /// then sets the clock to `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            if self.poll_woken() {
                continue;
            }
            match self.clock.next_deadline() {
                Some(next) if next <= until => self.clock.advance_to(next),
                _ => break,
            }
        }
        self.clock.advance_to(until);
    }

    /// Runs until every task is done.
    ///
    /// # Panics
    /// When tasks wait with no timer left to wake them.
    pub fn run(&mut self) {
        while !self.tasks.is_empty() {
            if !self.poll_woken() {
                let next = self
                    .clock
                    .next_deadline()
                    .expect("simulated tasks wait with no timer to wake them");
                self.clock.advance_to(next);
            }
        }
    }

    /// Polls the woken tasks once each and drops the finished ones; whether any was woken.
    fn poll_woken(&mut self) -> bool {
        let mut polled = false;
        for task in self.tasks.iter_mut() {
            polled |= task.poll_if_woken();
        }
        self.tasks.retain(|task| task.output.is_none());
        polled
    }
}

/// A future being run, with the flag its waker sets.
struct Task<F: Future + ?Sized> {
    future: Pin<Box<F>>,
    woken: Arc<Woken>,
    output: Option<F::Output>,
}

impl<F: Future> Task<F> {
    fn new(future: F) -> Self {
        Task::pinned(Box::pin(future))
    }
}

impl<F: Future + ?Sized> Task<F> {
    fn pinned(future: Pin<Box<F>>) -> Self {
        Task {
            future,
            // Every future is polled once to start.
            woken: Arc::new(Woken(AtomicBool::new(true))),
            output: None,
        }
    }

    /// Polls it if it was woken since its last poll; whether it did.
    fn poll_if_woken(&mut self) -> bool {
        if self.output.is_some() || !self.woken.0.swap(false, Ordering::AcqRel) {
            return false;
        }
        let waker = Waker::from(self.woken.clone());
        if let Poll::Ready(output) = self.future.as_mut().poll(&mut Context::from_waker(&waker)) {
            self.output = Some(output);
        }
        true
    }
}

/// A task's "woken" flag, as a waker.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// A timer of a [`SimClock`] ([`SimClock::sleep`]).
pub struct Sleep {
    clock: Rc<SimClock>,
    deadline: Timestamp,
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            self.forget();
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.clock.next_timer.get();
                self.clock.next_timer.set(id + 1);
                self.id = Some(id);
                id
            }
        };
        let key = (self.deadline, id);
        self.clock
            .timers
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Sleep {
    fn forget(&mut self) {
        if let Some(id) = self.id.take() {
            self.clock.timers.borrow_mut().remove(&(self.deadline, id));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.forget();
    }
}

/// The simulated host's types.
pub struct SimHost;

impl Host for SimHost {
    type Body = SimBody;
    type Origin = SimOrigin;
    type SharedTier = NoSharedTier;
    type Colo = SimColo;
    type Runtime = SimRuntime;
    type Lock = RefCell<EngineState>;
}

/// The simulated host with a [`SimRedis`] as its shared tier.
pub struct SimRedisHost;

impl Host for SimRedisHost {
    type Body = SimBody;
    type Origin = SimOrigin;
    type SharedTier = RedisTier<SimRedis>;
    type Colo = SimColo;
    type Runtime = SimRuntime;
    type Lock = RefCell<EngineState>;
}

/// A colo cache in memory, on simulated time (the Workers Cache API as the engine uses
/// it): values under keys, each gone once its TTL has passed. Clones share one store. An
/// engine has it only when given it ([`Engine::with_colo`]).
#[derive(Clone)]
pub struct SimColo {
    /// Each key's value, and when it expires.
    entries: Rc<RefCell<BTreeMap<String, ColoValue>>>,
    clock: Rc<SimClock>,
    /// How long a `put` takes, in simulated ms (the Cache API's `put` is I/O: other
    /// requests of the isolate run meanwhile).
    put_ms: Rc<Cell<u64>>,
    /// Whether it stands for a colo tier with Cloudflare's purge API configured: a purge
    /// sent there empties every copy (here: the whole store).
    purge_api: bool,
}

type ColoValue = (Vec<u8>, Timestamp);

impl SimColo {
    /// An empty colo cache on `clock`.
    pub fn new(clock: Rc<SimClock>) -> Self {
        SimColo {
            entries: Rc::default(),
            clock,
            put_ms: Rc::default(),
            purge_api: false,
        }
    }

    /// This colo cache with the purge API ([`ColoCache::purges_everywhere`]).
    pub fn with_purge_api(mut self) -> Self {
        self.purge_api = true;
        self
    }

    /// Makes every `put` take `ms` simulated milliseconds.
    pub fn set_put_ms(&self, ms: u64) {
        self.put_ms.set(ms);
    }

    /// The keys it holds (not expired) that contain `part`, with when each expires.
    pub fn expiries(&self, part: &str) -> Vec<(String, Timestamp)> {
        let now = self.clock.now();
        self.entries
            .borrow()
            .iter()
            .filter(|(key, (_, until))| key.contains(part) && *until > now)
            .map(|(key, (_, until))| (key.clone(), *until))
            .collect()
    }
}

impl ColoCache for SimColo {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        let now = self.clock.now();
        let entries = self.entries.borrow();
        Ok(entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value.clone()))
    }

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        _tags: &[String],
    ) -> Result<(), TierError> {
        if self.put_ms.get() > 0 {
            self.clock.sleep(self.put_ms.get()).await;
        }
        let until = self.clock.now().plus_millis(ttl_ms);
        self.entries
            .borrow_mut()
            .insert(String::from(key), (value.to_vec(), until));
        Ok(())
    }

    fn purges_everywhere(&self) -> bool {
        self.purge_api
    }

    async fn purge_everywhere(&self, _body: &str) -> Result<(), TierError> {
        self.entries.borrow_mut().clear();
        Ok(())
    }
}

/// A Redis in memory, on simulated time: the commands the engine sends for the purge log,
/// leases, entries, tags and the fleet's statistics (strings, hashes, sets, sorted sets, TTLs,
/// `MULTI`/`EXEC`), answered as a RESP2 server would; any other command gets an error
/// reply. Clones share one server. It can be made unreachable ([`Self::set_down`]), and
/// it keeps the name of every command it was sent, answered or not ([`Self::commands`]).
#[derive(Clone)]
pub struct SimRedis {
    data: Rc<RefCell<SimRedisData>>,
    clock: Rc<SimClock>,
}

#[derive(Default)]
struct SimRedisData {
    strings: BTreeMap<Vec<u8>, Vec<u8>>,
    hashes: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
    zsets: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, u64>>,
    sets: BTreeMap<Vec<u8>, alloc::collections::BTreeSet<Vec<u8>>>,
    expires: BTreeMap<Vec<u8>, Timestamp>,
    down: bool,
    sent: Vec<String>,
}

/// A bound of a score range: `-inf`, `+inf`, `n` or `(n` (exclusive).
#[derive(Clone, Copy)]
enum Bound {
    NegInf,
    PosInf,
    Incl(u64),
    Excl(u64),
}

impl Bound {
    fn parse(arg: &[u8]) -> Option<Bound> {
        let number = |b: &[u8]| core::str::from_utf8(b).ok()?.parse::<u64>().ok();
        match arg {
            b"-inf" => Some(Bound::NegInf),
            b"+inf" | b"inf" => Some(Bound::PosInf),
            [b'(', rest @ ..] => number(rest).map(Bound::Excl),
            _ => number(arg).map(Bound::Incl),
        }
    }

    /// Whether `score` is at or above this bound as a minimum.
    fn below(self, score: u64) -> bool {
        match self {
            Bound::NegInf => true,
            Bound::PosInf => false,
            Bound::Incl(n) => score >= n,
            Bound::Excl(n) => score > n,
        }
    }

    /// Whether `score` is at or below this bound as a maximum.
    fn above(self, score: u64) -> bool {
        match self {
            Bound::NegInf => false,
            Bound::PosInf => true,
            Bound::Incl(n) => score <= n,
            Bound::Excl(n) => score < n,
        }
    }
}

impl SimRedis {
    /// An empty server on `clock`.
    pub fn new(clock: Rc<SimClock>) -> Self {
        SimRedis {
            data: Rc::new(RefCell::new(SimRedisData::default())),
            clock,
        }
    }

    /// Makes it unreachable (every pipeline fails as a refused connection) or reachable.
    pub fn set_down(&self, down: bool) {
        self.data.borrow_mut().down = down;
    }

    /// How many commands named `name` it was sent (answered or not).
    pub fn commands(&self, name: &str) -> usize {
        let data = self.data.borrow();
        data.sent
            .iter()
            .filter(|c| c.eq_ignore_ascii_case(name))
            .count()
    }

    /// The integer in `field` of hash `key`, if any.
    pub fn hash_field(&self, key: &str, field: &str) -> Option<i64> {
        self.expire_due();
        let data = self.data.borrow();
        let value = data.hashes.get(key.as_bytes())?.get(field.as_bytes())?;
        core::str::from_utf8(value).ok()?.parse().ok()
    }

    /// How many members sorted set `key` holds.
    pub fn roster_len(&self, key: &str) -> usize {
        self.expire_due();
        self.data
            .borrow()
            .zsets
            .get(key.as_bytes())
            .map_or(0, BTreeMap::len)
    }

    /// When `key` expires, if it exists and has a TTL.
    pub fn expiry_of(&self, key: &str) -> Option<Timestamp> {
        self.expire_due();
        self.data.borrow().expires.get(key.as_bytes()).copied()
    }

    fn expire_due(&self) {
        let now = self.clock.now();
        let mut data = self.data.borrow_mut();
        let gone: Vec<Vec<u8>> = data
            .expires
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            data.remove(&key);
        }
    }
}

impl SimRedisData {
    fn remove(&mut self, key: &[u8]) -> bool {
        self.expires.remove(key);
        let string = self.strings.remove(key).is_some();
        let hash = self.hashes.remove(key).is_some();
        let zset = self.zsets.remove(key).is_some();
        let set = self.sets.remove(key).is_some();
        string || hash || zset || set
    }

    fn exists(&self, key: &[u8]) -> bool {
        self.strings.contains_key(key)
            || self.hashes.contains_key(key)
            || self.zsets.contains_key(key)
            || self.sets.contains_key(key)
    }

    /// Runs one command (not `MULTI` or `EXEC`).
    fn run(&mut self, now: Timestamp, command: &[Vec<u8>]) -> Reply {
        let int = |b: &[u8]| core::str::from_utf8(b).ok()?.parse::<i64>().ok();
        let wrong = || Reply::Error(String::from("ERR syntax error"));
        let Some((name, args)) = command.split_first() else {
            return wrong();
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let key = args.first().cloned().unwrap_or_default();
        match (name.as_str(), args) {
            ("GETRANGE", [k, from, to]) => {
                let (Some(from), Some(to)) = (int(from), int(to)) else {
                    return wrong();
                };
                let value = self.strings.get(k).cloned().unwrap_or_default();
                // Non-negative offsets only (the engine sends no others), inclusive.
                let from = usize::try_from(from).unwrap_or(0).min(value.len());
                let to = usize::try_from(to.saturating_add(1))
                    .unwrap_or(0)
                    .clamp(from, value.len());
                Reply::Bytes(value[from..to].to_vec())
            }
            ("GET", [k]) => self
                .strings
                .get(k)
                .map_or(Reply::Nil, |v| Reply::Bytes(v.clone())),
            ("MGET", keys) => Reply::Array(
                keys.iter()
                    .map(|k| {
                        self.strings
                            .get(k)
                            .map_or(Reply::Nil, |v| Reply::Bytes(v.clone()))
                    })
                    .collect(),
            ),
            ("EXISTS", keys) if !keys.is_empty() => {
                let n = keys.iter().filter(|k| self.exists(k)).count();
                Reply::Integer(n as i64)
            }
            ("SET", [k, v, options @ ..]) => {
                let nx = options.iter().any(|o| o.eq_ignore_ascii_case(b"NX"));
                if nx && self.exists(k) {
                    return Reply::Nil;
                }
                self.remove(k);
                self.strings.insert(k.clone(), v.clone());
                let px = options
                    .iter()
                    .position(|o| o.eq_ignore_ascii_case(b"PX"))
                    .and_then(|i| options.get(i + 1))
                    .and_then(|ms| int(ms));
                if let Some(ms) = px {
                    let ms = u64::try_from(ms).unwrap_or(0);
                    self.expires.insert(k.clone(), now.plus_millis(ms));
                }
                Reply::Bytes(b"OK".to_vec())
            }
            ("SADD", [set, members @ ..]) if !members.is_empty() => {
                let set = self.sets.entry(set.clone()).or_default();
                let added = members.iter().filter(|m| set.insert((*m).clone())).count();
                Reply::Integer(added as i64)
            }
            ("SMEMBERS", [set]) => Reply::Array(
                self.sets
                    .get(set)
                    .into_iter()
                    .flatten()
                    .map(|m| Reply::Bytes(m.clone()))
                    .collect(),
            ),
            ("DEL", keys) => {
                let n = keys.iter().filter(|k| self.remove(k)).count();
                Reply::Integer(n as i64)
            }
            ("INCR", [k]) => {
                let n = self.strings.get(k).and_then(|v| int(v)).unwrap_or(0) + 1;
                self.strings.insert(k.clone(), format!("{n}").into_bytes());
                Reply::Integer(n)
            }
            ("HINCRBY", [h, f, by]) => {
                let Some(by) = int(by) else { return wrong() };
                let hash = self.hashes.entry(h.clone()).or_default();
                let n = hash.get(f).and_then(|v| int(v)).unwrap_or(0) + by;
                hash.insert(f.clone(), format!("{n}").into_bytes());
                Reply::Integer(n)
            }
            ("HSETNX", [h, f, v]) => {
                let hash = self.hashes.entry(h.clone()).or_default();
                if hash.contains_key(f) {
                    return Reply::Integer(0);
                }
                hash.insert(f.clone(), v.clone());
                Reply::Integer(1)
            }
            ("HGETALL", [h]) => Reply::Array(
                self.hashes
                    .get(h)
                    .into_iter()
                    .flatten()
                    .flat_map(|(f, v)| [Reply::Bytes(f.clone()), Reply::Bytes(v.clone())])
                    .collect(),
            ),
            ("PEXPIRE", [k, ms, options @ ..]) => {
                let Some(ms) = int(ms) else { return wrong() };
                if !self.exists(k) {
                    return Reply::Integer(0);
                }
                let at = now.plus_millis(u64::try_from(ms).unwrap_or(0));
                let current = self.expires.get(k).copied();
                // Redis 7: GT and LT count a key without a TTL as one that never expires.
                let applies = options.iter().all(|o| {
                    match String::from_utf8_lossy(o).to_ascii_uppercase().as_str() {
                        "NX" => current.is_none(),
                        "XX" => current.is_some(),
                        "GT" => current.is_some_and(|c| at > c),
                        "LT" => current.is_none_or(|c| at < c),
                        _ => false,
                    }
                });
                if !applies {
                    return Reply::Integer(0);
                }
                self.expires.insert(k.clone(), at);
                Reply::Integer(1)
            }
            ("ZADD", [z, score, member]) => {
                let Some(score) = int(score).and_then(|n| u64::try_from(n).ok()) else {
                    return wrong();
                };
                let set = self.zsets.entry(z.clone()).or_default();
                Reply::Integer(i64::from(set.insert(member.clone(), score).is_none()))
            }
            ("ZREMRANGEBYSCORE", [_, min, max]) => {
                let (Some(min), Some(max)) = (Bound::parse(min), Bound::parse(max)) else {
                    return wrong();
                };
                let Some(set) = self.zsets.get_mut(&key) else {
                    return Reply::Integer(0);
                };
                let before = set.len();
                set.retain(|_, score| !(min.below(*score) && max.above(*score)));
                let removed = before - set.len();
                if set.is_empty() {
                    self.remove(&key);
                }
                Reply::Integer(removed as i64)
            }
            ("ZCOUNT", [_, min, max]) => {
                let (Some(min), Some(max)) = (Bound::parse(min), Bound::parse(max)) else {
                    return wrong();
                };
                let n = self
                    .zsets
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|(_, score)| min.below(**score) && max.above(**score))
                    .count();
                Reply::Integer(n as i64)
            }
            ("ZREVRANGEBYSCORE", [_, max, min, options @ ..]) => {
                let (Some(min), Some(max)) = (Bound::parse(min), Bound::parse(max)) else {
                    return wrong();
                };
                let scores = options
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(b"WITHSCORES"));
                let limit = options
                    .iter()
                    .position(|o| o.eq_ignore_ascii_case(b"LIMIT"))
                    .and_then(|i| Some((int(options.get(i + 1)?)?, int(options.get(i + 2)?)?)));
                let mut members: Vec<(&Vec<u8>, u64)> = self
                    .zsets
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|(_, score)| min.below(**score) && max.above(**score))
                    .map(|(member, score)| (member, *score))
                    .collect();
                members.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
                let (skip, take) = limit.map_or((0, usize::MAX), |(offset, count)| {
                    (
                        usize::try_from(offset).unwrap_or(0),
                        usize::try_from(count).unwrap_or(usize::MAX),
                    )
                });
                Reply::Array(
                    members
                        .into_iter()
                        .skip(skip)
                        .take(take)
                        .flat_map(|(member, score)| {
                            let mut items = alloc::vec![Reply::Bytes(member.clone())];
                            if scores {
                                items.push(Reply::Bytes(format!("{score}").into_bytes()));
                            }
                            items
                        })
                        .collect(),
                )
            }
            _ => Reply::Error(format!("ERR unknown command '{name}'")),
        }
    }
}

impl Transport for SimRedis {
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        self.expire_due();
        let now = self.clock.now();
        let mut data = self.data.borrow_mut();
        for command in commands {
            let name = command.first().copied().unwrap_or_default();
            data.sent.push(String::from_utf8_lossy(name).into_owned());
        }
        if data.down {
            return Err(TierError(String::from("connection refused")));
        }
        // A transaction's commands run as they come (nothing else runs meanwhile here);
        // their results are EXEC's answer.
        let mut queued: Option<Vec<Reply>> = None;
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let command: Vec<Vec<u8>> = command.iter().map(|a| a.to_vec()).collect();
            let name = command.first().map(|n| n.to_ascii_uppercase());
            match (name.as_deref(), &mut queued) {
                (Some(b"MULTI"), None) => {
                    queued = Some(Vec::new());
                    replies.push(Reply::Bytes(b"OK".to_vec()));
                }
                (Some(b"EXEC"), Some(_)) => {
                    replies.push(Reply::Array(queued.take().unwrap_or_default()));
                }
                (_, Some(results)) => {
                    results.push(data.run(now, &command));
                    replies.push(Reply::Bytes(b"QUEUED".to_vec()));
                }
                (_, None) => replies.push(data.run(now, &command)),
            }
        }
        Ok(replies)
    }
}

/// A simulated origin and clock, and the handles to script and move them.
pub struct Simulation {
    /// The origin's script and log.
    pub script: Rc<RefCell<Script>>,
    /// The clock, and the executor of simulated time.
    pub clock: Rc<SimClock>,
}

impl Simulation {
    /// A simulation starting at `start`, whose origin answers `default` unless scripted.
    pub fn new(start: Timestamp, default: Answer) -> Self {
        Simulation {
            script: Rc::new(RefCell::new(Script {
                queue: VecDeque::new(),
                default,
                requests: Vec::new(),
                keep_requests: true,
                fetches: 0,
                latency_ms: 0,
                answerer: None,
            })),
            clock: Rc::new(SimClock::new(start)),
        }
    }

    /// The origin and runtime to build an engine with.
    pub fn parts(&self) -> (SimOrigin, SimRuntime) {
        (
            SimOrigin {
                script: self.script.clone(),
                clock: self.clock.clone(),
            },
            SimRuntime::new(self.clock.clone()),
        )
    }

    /// An engine on this simulation's origin and clock, without a shared tier.
    pub fn engine(&self, config: EngineConfig) -> Result<Engine<SimHost>, ConfigError> {
        let (origin, runtime) = self.parts();
        Engine::new(config, origin, None, runtime)
    }

    /// Queues the origin's next answer.
    pub fn then(&self, answer: Answer) {
        self.script.borrow_mut().queue.push_back(answer);
    }

    /// How many requests the origin received.
    pub fn fetches(&self) -> usize {
        self.script.borrow().fetches
    }
}

/// Runs a future that needs no simulated time (it never sleeps) to completion.
///
/// # Panics
/// When it waits for a timer.
pub fn block_on<F: Future>(future: F) -> F::Output {
    SimClock::new(Timestamp::EPOCH).block_on(future)
}

/// A client request for `target` on `example.com` with `fields` besides `Host`.
pub fn request(method: &str, target: &str, fields: &[(&str, &str)]) -> super::Request<SimBody> {
    let mut headers = Headers::from_pairs([("host", "example.com")]);
    for (name, value) in fields {
        headers.append(name, value);
    }
    super::Request {
        method: String::from(method),
        scheme: String::from("http"),
        target: String::from(target),
        headers,
        client: None,
        body: None,
    }
}

/// The content of a response of the simulated host, as text (`<stream>` for a body passed
/// through unbuffered, `<filling>` for one read from a fill: see [`serve`]).
pub fn body_text<B>(response: &super::Response<B>) -> String {
    match &response.body {
        super::Body::Empty => String::new(),
        super::Body::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        super::Body::Cached(stored) => String::from_utf8_lossy(&stored.body).into_owned(),
        super::Body::Slice(stored, range) => {
            String::from_utf8_lossy(&stored.body[range.clone()]).into_owned()
        }
        super::Body::Filling(_) => String::from("<filling>"),
        super::Body::Stream(_) => String::from("<stream>"),
    }
}

pub use super::join::join;

/// What a client of the simulated host received: status, fields, and the content read to
/// its end (or why it was cut off), with the simulated time its first byte came.
#[derive(Debug)]
pub struct Received {
    /// The status.
    pub status: u16,
    /// Every field sent.
    pub fields: Headers,
    /// The content, or why it was cut off.
    pub body: Result<String, super::filling::FillError>,
    /// When its first byte came (when it had one).
    pub first_byte_at: Option<Timestamp>,
}

/// Sends `request` to `engine` as the simulated host does: the job it returns runs while
/// the client reads the response.
pub async fn serve<H: Host<Body = SimBody>>(
    engine: &Engine<H>,
    clock: &SimClock,
    request: super::Request<SimBody>,
) -> Received {
    let handled = engine.handle(request).await;
    receive(engine, clock, handled).await
}

/// What the client of `handled`, a response of `engine`, receives as the simulated host
/// sends it: its job runs while the client reads it. ([`serve`] without the request, for
/// tests that act between the response's head and its content.)
pub async fn receive<H: Host<Body = SimBody>>(
    engine: &Engine<H>,
    clock: &SimClock,
    handled: super::Handled<SimBody>,
) -> Received {
    let mut response = handled.response;
    let fields = response.fields();
    let job = async {
        if let Some(job) = handled.job {
            engine.run_job(job).await;
        }
    };
    let read = async {
        let mut first_byte_at = None;
        let body = match &mut response.body {
            super::Body::Filling(reader) => {
                let mut bytes = Vec::new();
                let mut cut = None;
                while let Some(chunk) = core::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                    match chunk {
                        Ok(chunk) => {
                            first_byte_at.get_or_insert(clock.now());
                            bytes.extend_from_slice(chunk.as_ref());
                        }
                        Err(e) => {
                            cut = Some(e);
                            break;
                        }
                    }
                }
                match cut {
                    Some(e) => Err(e),
                    None => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                }
            }
            _ => {
                first_byte_at = Some(clock.now());
                Ok(body_text(&response))
            }
        };
        (body, first_byte_at)
    };
    let ((), (body, first_byte_at)) = join(job, read).await;
    Received {
        status: response.status,
        fields,
        body,
        first_byte_at,
    }
}
