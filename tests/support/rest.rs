//! Redis over HTTP for the tests: a small server speaking the Upstash REST protocol
//! (<https://upstash.com/docs/redis/features/restapi>) in front of a real `redis-server`, as
//! Upstash and serverless-redis-http (SRH) do, so the REST transport (`shared_tier::rest`)
//! is tested end to end against real Redis; and [`HyperPost`], that transport's HTTP call
//! natively (hyper over loopback).
//!
//! What the server implements, and holds clients to:
//! - `GET /` (a greeting), `POST /` (one command: `{"result"}` 200 or `{"error"}` 400),
//!   `POST /pipeline` (200 and one `{"result"}` / `{"error"}` per command, not atomic) and
//!   `POST /multi-exec` (the same, atomic: `MULTI` … `EXEC` on one connection; a transaction
//!   Redis discards is one `{"error"}`, 400); anything else 404;
//! - `Authorization: Bearer {token}`, else 401; `Content-Type: application/json`, else 400
//!   (SRH's rule); a body that is not arrays of strings and numbers, 400;
//! - `Upstash-Encoding: base64`: every string of a reply base64, but the status `OK`
//!   (Upstash's rule); without it, strings as UTF-8 with U+FFFD for what is not;
//! - commands that need a connection of their own (`MULTI`, `WATCH`, `SUBSCRIBE`,
//!   blocking reads) are refused per command, as a REST server must;
//! - Redis unreachable: 500 and an `{"error"}` (SRH's answer);
//! - on demand ([`RestServer::stall`]), no answer at all.
//!
//! Each request gets a connection to Redis of its own, so Redis stopped and started again
//! on its port is picked up at once.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use edgecache::engine::TierError;
use edgecache::shared_tier::rest::{HttpPost, HttpReply};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{bounded, AbortOnDrop, WAIT};

/// The token every test REST server takes.
pub const REST_TOKEN: &str = "rest-test-token-AXc0ffee0123456789";

/// Commands a REST server cannot run per request.
const REFUSED: &[&str] = &[
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "MONITOR",
    "BLPOP",
    "BRPOP",
    "BLMOVE",
    "BRPOPLPUSH",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
];

/// What the server saw.
#[derive(Default)]
pub struct RestState {
    /// `(path, status)` of every request, in order.
    pub requests: Mutex<Vec<(String, u16)>>,
    /// Every command name run, in order (`EVAL` for a script).
    pub commands: Mutex<Vec<String>>,
    /// While set, requests are accepted and never answered (a server that stalls).
    pub stalled: std::sync::atomic::AtomicBool,
}

/// A REST server on 127.0.0.1 in front of the Redis on `redis_port`.
pub struct RestServer {
    pub addr: std::net::SocketAddr,
    pub state: Arc<RestState>,
    task: JoinHandle<()>,
}

impl RestServer {
    /// Starts one in front of the `redis-server` on `redis_port`.
    pub async fn start(redis_port: u16) -> RestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("rest bind");
        let addr = listener.local_addr().expect("rest addr");
        let state = Arc::new(RestState::default());
        let redis_url = format!("redis://127.0.0.1:{redis_port}/");
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (state, redis_url) = (shared.clone(), redis_url.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let (state, redis_url) = (state.clone(), redis_url.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(&state, &redis_url, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        RestServer { addr, state, task }
    }

    /// The URL clients are given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests to `path` answered so far (with any status).
    pub fn requests(&self, path: &str) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().filter(|(p, _)| p == path).count()
    }

    /// Requests answered with `status` so far.
    pub fn answered(&self, status: u16) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().filter(|(_, s)| *s == status).count()
    }

    /// Commands named `name` run so far.
    pub fn commands(&self, name: &str) -> usize {
        let commands = self.state.commands.lock().unwrap();
        commands
            .iter()
            .filter(|c| c.eq_ignore_ascii_case(name))
            .count()
    }

    /// Makes the server stop answering (`true`) or answer again.
    pub fn stall(&self, stalled: bool) {
        self.state
            .stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops listening and closes every connection.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = bounded("rest server stop", WAIT, &mut self.task).await;
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: &RestState,
    redis_url: &str,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if state.stalled.load(std::sync::atomic::Ordering::SeqCst) {
        // Until the client gives up and closes the connection, which drops this.
        std::future::pending::<()>().await;
    }
    let (status, body) = handle(state, redis_url, req).await;
    state.requests.lock().unwrap().push((path, status));
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

fn refusal(status: u16, message: &str) -> (u16, Json) {
    (status, json!({ "error": message }))
}

async fn handle(state: &RestState, redis_url: &str, req: hyper::Request<Incoming>) -> (u16, Json) {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    if method == "GET" && path == "/" {
        return (200, json!("Welcome to the edgecache test REST server"));
    }
    if method != "POST" || !matches!(path.as_str(), "/" | "/pipeline" | "/multi-exec") {
        return refusal(404, "not found");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header("authorization").as_deref() != Some(format!("Bearer {REST_TOKEN}").as_str()) {
        return refusal(401, "Unauthorized");
    }
    if header("content-type").as_deref() != Some("application/json") {
        return refusal(400, "Content-Type must be application/json");
    }
    let base64 = header("upstash-encoding").as_deref() == Some("base64");
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return refusal(400, "unreadable body");
    };
    let Ok(parsed) = serde_json::from_slice::<Json>(&body) else {
        return refusal(400, "ERR malformed JSON");
    };
    let commands = match (&path[..], parsed) {
        ("/", Json::Array(command)) => vec![command],
        (_, Json::Array(commands)) if path != "/" => {
            let mut out = Vec::new();
            for command in commands {
                let Json::Array(command) = command else {
                    return refusal(400, "ERR expected an array of arrays");
                };
                out.push(command);
            }
            out
        }
        _ => return refusal(400, "ERR expected an array"),
    };
    let mut parsed = Vec::new();
    for command in commands {
        let Some(args) = command_args(command) else {
            return refusal(400, "ERR arguments must be strings or numbers");
        };
        parsed.push(args);
    }
    state.commands.lock().unwrap().extend(
        parsed
            .iter()
            .map(|c| String::from_utf8_lossy(&c[0]).to_uppercase()),
    );
    let client = redis::Client::open(redis_url).expect("redis url");
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return refusal(500, "Unable to connect to the Redis server");
    };
    match &path[..] {
        "/" => match run(&mut con, &parsed).await {
            Ok(mut items) => match items.pop() {
                Some(Err(message)) => refusal(400, &message),
                Some(Ok(value)) => (200, json!({ "result": encode(value, base64) })),
                None => refusal(500, "no reply"),
            },
            Err(message) => refusal(500, &message),
        },
        "/pipeline" => match run(&mut con, &parsed).await {
            Ok(items) => (200, Json::Array(items_json(items, base64))),
            Err(message) => refusal(500, &message),
        },
        _ => match transaction(&mut con, &parsed).await {
            Ok(Ok(items)) => (200, Json::Array(items_json(items, base64))),
            Ok(Err(discarded)) => refusal(400, &discarded),
            Err(message) => refusal(500, &message),
        },
    }
}

/// A command's arguments as bytes: strings as their UTF-8, numbers as their digits.
fn command_args(command: Vec<Json>) -> Option<Vec<Vec<u8>>> {
    if command.is_empty() {
        return None;
    }
    command
        .into_iter()
        .map(|arg| match arg {
            Json::String(s) => Some(s.into_bytes()),
            Json::Number(n) => Some(n.to_string().into_bytes()),
            _ => None,
        })
        .collect()
}

/// Why a command cannot run over REST, if it cannot.
fn refused(command: &[Vec<u8>]) -> Option<String> {
    let name = String::from_utf8_lossy(&command[0]).to_uppercase();
    let blocking_read = matches!(name.as_str(), "XREAD" | "XREADGROUP")
        && command[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"BLOCK"));
    (REFUSED.contains(&name.as_str()) || blocking_read)
        .then(|| format!("ERR {name} is not supported over REST"))
}

type Item = Result<redis::Value, String>;

/// Runs `commands` as a pipeline (not atomic); each one's reply or error.
async fn run(
    con: &mut redis::aio::MultiplexedConnection,
    commands: &[Vec<Vec<u8>>],
) -> Result<Vec<Item>, String> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut runnable = Vec::new();
    for command in commands {
        if refused(command).is_none() {
            pipe.add_command(redis_command(command));
            runnable.push(command);
        }
    }
    let mut values = if runnable.is_empty() {
        Vec::new()
    } else {
        pipe.query_async::<Vec<redis::Value>>(con)
            .await
            .map_err(|e| format!("redis: {e}"))?
    }
    .into_iter();
    Ok(commands
        .iter()
        .map(|command| match refused(command) {
            Some(why) => Err(why),
            None => item(values.next().unwrap_or(redis::Value::Nil)),
        })
        .collect())
}

/// Runs `commands` in `MULTI` … `EXEC`: each one's reply or error, or why Redis discarded
/// the whole transaction.
async fn transaction(
    con: &mut redis::aio::MultiplexedConnection,
    commands: &[Vec<Vec<u8>>],
) -> Result<Result<Vec<Item>, String>, String> {
    if let Some(why) = commands.iter().find_map(|c| refused(c)) {
        return Ok(Err(why));
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.add_command(redis::cmd("MULTI"));
    for command in commands {
        pipe.add_command(redis_command(command));
    }
    pipe.add_command(redis::cmd("EXEC"));
    let mut values: Vec<redis::Value> = pipe
        .query_async(con)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    match values.pop() {
        Some(redis::Value::Array(results)) if results.len() == commands.len() => {
            Ok(Ok(results.into_iter().map(item).collect()))
        }
        Some(redis::Value::ServerError(e)) => Ok(Err(message(&e))),
        other => Ok(Err(format!("EXECABORT unexpected EXEC reply {other:?}"))),
    }
}

fn redis_command(command: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::cmd(&String::from_utf8_lossy(&command[0]));
    for arg in &command[1..] {
        cmd.arg(&arg[..]);
    }
    cmd
}

fn item(value: redis::Value) -> Item {
    match value {
        redis::Value::ServerError(e) => Err(message(&e)),
        other => Ok(other),
    }
}

fn message(e: &redis::ServerError) -> String {
    match e.details() {
        Some(details) => format!("{} {details}", e.code()),
        None => e.code().to_string(),
    }
}

fn items_json(items: Vec<Item>, base64: bool) -> Vec<Json> {
    items
        .into_iter()
        .map(|item| match item {
            Ok(value) => json!({ "result": encode(value, base64) }),
            Err(message) => json!({ "error": message }),
        })
        .collect()
}

/// A reply as JSON: with base64 on, every string base64 but the status `OK`.
fn encode(value: redis::Value, base64: bool) -> Json {
    use redis::Value;
    let string = |bytes: &[u8]| -> Json {
        if base64 {
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Json::String(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => json!(n),
        Value::Okay => json!("OK"),
        Value::SimpleString(s) if s == "OK" => json!("OK"),
        Value::SimpleString(s) => string(s.as_bytes()),
        Value::BulkString(b) => string(&b),
        Value::Array(items) | Value::Set(items) => {
            Json::Array(items.into_iter().map(|v| encode(v, base64)).collect())
        }
        Value::Map(pairs) => Json::Array(
            pairs
                .into_iter()
                .map(|(k, v)| Json::Array(vec![encode(k, base64), encode(v, base64)]))
                .collect(),
        ),
        Value::ServerError(e) => json!({ "error": message(&e) }),
        other => string(format!("{other:?}").as_bytes()),
    }
}

// ---------------------------------------------------------------------------------------
// The REST transport's HTTP call, natively
// ---------------------------------------------------------------------------------------

/// `POST` over hyper on a new loopback connection (`http://` only: tests), reading at most
/// the reply limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperPost;

impl HttpPost for HyperPost {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        max_reply_bytes: usize,
    ) -> Result<HttpReply, TierError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| TierError(format!("{what}: {e}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TierError("http:// only".into()))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| fail("connect", &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| fail("handshake", &e))?;
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let mut request = hyper::Request::post(if path.is_empty() { "/" } else { path })
            .header("host", authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("request", &e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail("send", &e))?;
        let status = response.status().as_u16();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max_reply_bytes) {
            return Err(TierError("reply too large".into()));
        }
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| fail("body", &e))?;
            if let Some(data) = frame.data_ref() {
                if body.len() + data.len() > max_reply_bytes {
                    return Err(TierError("reply too large".into()));
                }
                body.extend_from_slice(data);
            }
        }
        Ok(HttpReply { status, body })
    }
}
