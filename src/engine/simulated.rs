//! A simulated host: a manual clock and a scripted origin that counts its fetches, so the
//! engine runs without I/O, deterministically (the read path's unit tests; the browser
//! simulator can drive the engine the same way).

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll};

use crate::headers::Headers;
use crate::time::{Clock, ManualClock, Timestamp};

use super::host::{BodyError, NoColo, NoSharedStore, Origin, OriginBody, OriginError};
use super::host::{OriginRequest, OriginResponse, Runtime};
use super::{ConfigError, Engine, EngineConfig, EngineState, Host};

/// One scripted origin answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Status, fields and body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// The origin cannot be reached.
    Unreachable,
}

impl Answer {
    /// A response with `fields` and `body`.
    pub fn respond(status: u16, fields: &[(&str, &str)], body: &str) -> Self {
        let fields = fields
            .iter()
            .map(|(n, v)| (String::from(*n), String::from(*v)))
            .collect();
        Answer::Respond(status, fields, body.as_bytes().to_vec())
    }
}

/// The origin's script and what it was asked, shared between the origin and the test.
#[derive(Debug)]
pub struct Script {
    /// Answers given in order; when none is left, [`Self::default`] answers.
    pub queue: VecDeque<Answer>,
    /// The answer when the queue is empty.
    pub default: Answer,
    /// Every request the origin received (bodies left out).
    pub requests: Vec<OriginRequest<()>>,
    /// How long the origin takes to answer, in simulated milliseconds.
    pub latency_ms: u64,
}

/// The simulated origin.
pub struct SimOrigin {
    script: Rc<RefCell<Script>>,
    clock: Rc<ManualClock>,
}

impl Origin for SimOrigin {
    type Body = ();

    async fn fetch(
        &self,
        request: OriginRequest<()>,
        buffer_limit: usize,
    ) -> Result<OriginResponse<()>, OriginError> {
        let (answer, latency_ms) = {
            let mut script = self.script.borrow_mut();
            script.requests.push(OriginRequest {
                body: None,
                ..request
            });
            let default = script.default.clone();
            (
                script.queue.pop_front().unwrap_or(default),
                script.latency_ms,
            )
        };
        elapse(&self.clock, latency_ms).await;
        match answer {
            Answer::Respond(status, fields, body) => Ok(OriginResponse {
                status,
                headers: Headers::from_pairs(fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                body: if body.len() <= buffer_limit {
                    OriginBody::Buffered(body)
                } else {
                    OriginBody::Streaming(())
                },
            }),
            Answer::Unreachable => Err(OriginError::Unreachable(String::from("refused"))),
        }
    }

    async fn read_body(&self, _body: (), _limit: usize) -> Result<Vec<u8>, BodyError> {
        Ok(Vec::new())
    }

    fn body_from_bytes(&self, _bytes: Vec<u8>) {}
}

/// The simulated clock and timers: a sleep completes once the clock has been moved past
/// its deadline (by the test, or by [`block_on`] when nothing else can run).
pub struct SimRuntime {
    clock: Rc<ManualClock>,
    draws: Cell<u64>,
}

impl SimRuntime {
    /// A runtime on `clock`.
    pub fn new(clock: Rc<ManualClock>) -> Self {
        SimRuntime {
            clock,
            draws: Cell::new(0),
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
        elapse(&self.clock, ms)
    }
}

/// Completes once `ms` simulated milliseconds have passed. Waiting moves the clock: each
/// poll that finds the deadline ahead advances it by one millisecond.
fn elapse(clock: &Rc<ManualClock>, ms: u64) -> impl Future<Output = ()> {
    let clock = clock.clone();
    let deadline = clock.now().plus_millis(ms);
    core::future::poll_fn(move |cx| {
        if clock.now() >= deadline {
            Poll::Ready(())
        } else {
            clock.advance_millis(1);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// The simulated host's types.
pub struct SimHost;

impl Host for SimHost {
    type Body = ();
    type Origin = SimOrigin;
    type Store = NoSharedStore;
    type Colo = NoColo;
    type Runtime = SimRuntime;
    type Lock = RefCell<EngineState>;
}

/// A simulated origin and clock, and the handles to script and move them.
pub struct Simulation {
    /// The origin's script and log.
    pub script: Rc<RefCell<Script>>,
    /// The clock.
    pub clock: Rc<ManualClock>,
}

impl Simulation {
    /// A simulation starting at `start`, whose origin answers `default` unless scripted.
    pub fn new(start: Timestamp, default: Answer) -> Self {
        Simulation {
            script: Rc::new(RefCell::new(Script {
                queue: VecDeque::new(),
                default,
                requests: Vec::new(),
                latency_ms: 0,
            })),
            clock: Rc::new(ManualClock::new(start)),
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
        self.script.borrow().requests.len()
    }
}

/// Runs a future of the simulated host to completion. Its futures make progress on every
/// poll (sleeps move the clock), so polling in a loop is enough.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(core::task::Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Runs futures of the simulated host side by side until all are done, polling them in
/// turn (as concurrent requests would be), and returns their outputs in order.
pub fn block_on_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(alloc::boxed::Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(core::task::Waker::noop());
    while outputs.iter().any(Option::is_none) {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                if let Poll::Ready(done) = future.as_mut().poll(&mut cx) {
                    *output = Some(done);
                }
            }
        }
    }
    outputs.into_iter().flatten().collect()
}

/// A client request for `target` on `example.com` with `fields` besides `Host`.
pub fn request(method: &str, target: &str, fields: &[(&str, &str)]) -> super::Request<()> {
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
/// through unbuffered).
pub fn body_text(response: &super::Response<()>) -> String {
    match &response.body {
        super::Body::Empty => String::new(),
        super::Body::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        super::Body::Cached(stored) => String::from_utf8_lossy(&stored.body).into_owned(),
        super::Body::Slice(stored, range) => {
            String::from_utf8_lossy(&stored.body[range.clone()]).into_owned()
        }
        super::Body::Stream(()) => String::from("<stream>"),
    }
}
