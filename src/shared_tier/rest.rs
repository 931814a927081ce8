//! Redis over HTTP: the shared tier's transport for hosts whose way out is HTTP, such as the
//! Worker, whose `fetch` connections the runtime pools, so no request dials Redis. It speaks
//! the Upstash REST protocol ([Upstash: REST API]), which Upstash serves and self-hosted
//! servers such as serverless-redis-http ([SRH]) emulate:
//!
//! - a pipeline is one `POST {base}/pipeline` whose body is a JSON array of commands, each an
//!   array of strings; a transaction is the same body to `POST {base}/multi-exec` ([Upstash:
//!   Pipelining, Transactions]). A pipeline is not atomic, a transaction is; `MULTI`, `EXEC`
//!   and `WATCH` are never sent as commands ([`Transport::transaction`] goes to
//!   `/multi-exec`).
//! - Every request carries `Authorization: Bearer {token}` (a server answers 401 without it;
//!   the token is never logged, never part of an error) and `Upstash-Encoding: base64`
//!   ([Upstash: Base64 Encoded Responses]).
//! - A reply is 200 and one `{"result": x}` or `{"error": "…"}` per command, in order; `x` is
//!   `null`, an integer, a string or an array of those ([Upstash: Response]). With base64
//!   encoding every string is base64 except the status `OK`, which Upstash sends as it is
//!   (SRH encodes it too, as `T0s=`: both read as `OK`, and no base64 text is `OK`).
//!   A discarded transaction is one `{"error": "…"}`, status 400 (the Upstash docs); SRH
//!   answers 500 when a command fails inside one. Either fails the whole call.
//!
//! **Binary arguments.** JSON strings are Unicode, so an argument that is not UTF-8 cannot be
//! sent as one; Upstash's other form, the request body as a command's last argument
//! (`POST /set/key`, [Upstash: JSON or Binary Value]), takes one such argument per request,
//! outside pipelines, and SRH does not have it. So a command with an argument that is not
//! UTF-8 (an entry for `SET`, a queued request for `XADD`) is sent as `EVAL` of
//! [`BYTES_SCRIPT`] with its arguments as *byte strings*: each byte as the code point of the
//! same number (U+0000 to U+00FF, which JSON carries as UTF-8). The script turns them back
//! into the bytes and runs the command with them, so Redis holds exactly what a RESP client
//! writes, and every host reads the same entries. Measured in Redis 7.0 on the development
//! machine for 512 KiB of random bytes: this decoding 27 ms, hex 45 ms, pure-Lua base64 about
//! 100 ms (Redis has no base64 in Lua); on the wire, about 2 bytes per random byte against
//! 4/3 for base64, while ASCII (header fields, text bodies) costs nothing either way and is
//! never touched by the script. Arguments that are UTF-8 (keys, numbers, lease tokens,
//! text) go as they are, and every other command is sent unchanged.
//!
//! The host supplies the HTTP call ([`HttpPost`]): this module does no I/O, so it stays
//! `no_std` + `alloc` like the rest of the core, and each host chooses its timeouts and reads
//! the reply body only up to the limit it is given.
//!
//! [Upstash: REST API]: https://upstash.com/docs/redis/features/restapi
//! [Upstash: Pipelining, Transactions]: https://upstash.com/docs/redis/features/restapi#pipelining
//! [Upstash: Base64 Encoded Responses]: https://upstash.com/docs/redis/features/restapi#base64-encoded-responses
//! [Upstash: Response]: https://upstash.com/docs/redis/features/restapi#response
//! [Upstash: JSON or Binary Value]: https://upstash.com/docs/redis/features/restapi#json-or-binary-value
//! [SRH]: https://github.com/hiett/serverless-redis-http

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use super::url::RestUrl;
use super::{Command, RedisTier, Reply, Transport};
use crate::engine::TierError;

/// The Lua script a command with binary arguments runs in (`EVAL script 1 key command
/// args…`): `KEYS[1]` is the command's key and `ARGV[2…]` its other arguments, each a byte
/// string; `ARGV[1]` is the command's name. A byte string arrives in Redis as UTF-8, where
/// U+0080 to U+00FF are the two bytes `C2 80`…`C3 BF`: one `gsub` maps each such pair back
/// to its byte (a table lookup in C per pair; ASCII is not touched). `redis.pcall` hands a
/// command's error back as the command would have.
pub const BYTES_SCRIPT: &str = r"local t = {}
for i = 128, 191 do
  t['\194' .. string.char(i)] = string.char(i)
  t['\195' .. string.char(i)] = string.char(i + 64)
end
local function bytes(s) return (string.gsub(s, '[\194\195][\128-\191]', t)) end
local args = {}
for i = 2, #ARGV do args[i - 1] = bytes(ARGV[i]) end
return redis.pcall(ARGV[1], bytes(KEYS[1]), unpack(args))";

/// Commands that may be sent with binary arguments, through [`BYTES_SCRIPT`]: those whose
/// first argument is their only key (the script declares it in `KEYS`, as Upstash and
/// Redis Cluster require of scripts). Any other command with a binary argument is refused
/// with an error, never sent mangled.
const BINARY_COMMANDS: &[&str] = &[
    "SET", "XADD", "SETEX", "PSETEX", "APPEND", "HSET", "LPUSH", "RPUSH", "SADD",
];

/// Commands that hold a connection's state between requests, which Redis over HTTP has not:
/// never sent (a transaction is one `/multi-exec` request).
const CONNECTION_COMMANDS: &[&str] = &["MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"];

/// Largest reply accepted unless set with [`RestTier::with_reply_limit`].
const DEFAULT_MAX_REPLY_BYTES: usize = 64 << 20;

/// Error messages from the server are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Base64 as Upstash and SRH send it (the standard alphabet, padded); unpadded is read too.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The answer to an HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body, whole.
    pub body: Vec<u8>,
}

/// The one thing a host gives this transport: an HTTP `POST`.
pub trait HttpPost {
    /// POSTs `body` to `url` with `headers` and returns the answer. The host reads at most
    /// `max_reply_bytes` of the answer's body (an answer declaring or sending more is an
    /// error, read no further), bounds the whole call in time, and never logs `headers`
    /// (one holds the token). Redirects must not be followed: they would take the token
    /// elsewhere.
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        max_reply_bytes: usize,
    ) -> Result<HttpReply, TierError>;
}

/// A Redis-compatible shared tier reached over HTTP through `P`.
pub type RestTier<P> = RedisTier<Rest<P>>;

/// Redis over HTTP: commands as JSON to one base URL, with a bearer token.
#[derive(Clone)]
pub struct Rest<P> {
    base: String,
    /// `Bearer {token}`.
    authorization: String,
    post: P,
    max_reply_bytes: usize,
}

impl<P> fmt::Debug for Rest<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

impl<P> RestTier<P> {
    /// The tier at `url`, authenticated with `token`, through `post`. Nothing is sent until
    /// the first command.
    pub fn new(url: &RestUrl, token: &str, post: P) -> Self {
        RedisTier::over(Rest {
            base: url.base.clone(),
            authorization: format!("Bearer {token}"),
            post,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        })
    }

    /// Refuses (as an error) replies whose values take more than `bytes`, as
    /// `RespTier::with_reply_limit` does: the host reads at most [`body_limit`]`(bytes)`
    /// of JSON, which allows for base64's third more.
    pub fn with_reply_limit(self, bytes: usize) -> Self {
        let mut rest = self.into_transport();
        rest.max_reply_bytes = bytes;
        RedisTier::over(rest)
    }
}

/// The most JSON read for replies whose values take `value_bytes`: base64 makes 4 bytes of
/// 3, and the JSON around them is allowed 64 KiB.
pub fn body_limit(value_bytes: usize) -> usize {
    value_bytes
        .saturating_add(value_bytes / 3 + 3)
        .saturating_add(64 << 10)
}

impl<P: HttpPost> Transport for Rest<P> {
    /// One `POST {base}/pipeline`.
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        self.send("/pipeline", commands).await
    }

    /// One `POST {base}/multi-exec`: the server wraps the commands in `MULTI` … `EXEC`.
    async fn transaction(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        self.send("/multi-exec", commands).await
    }
}

impl<P: HttpPost> Rest<P> {
    async fn send(&self, path: &str, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let body = encode_commands(commands)?;
        let url = format!("{}{path}", self.base);
        let headers = [
            ("authorization", self.authorization.as_str()),
            ("content-type", "application/json"),
            ("upstash-encoding", "base64"),
        ];
        let limit = body_limit(self.max_reply_bytes);
        let reply = self
            .post
            .post(&url, &headers, body, limit)
            .await
            .map_err(|e| self.redacted(e))?;
        if reply.body.len() > limit {
            return Err(TierError("reply too large".to_string()));
        }
        decode_replies(reply.status, &reply.body, commands.len()).map_err(|e| self.redacted(e))
    }

    /// `error` without the token, should a server or host ever quote it.
    fn redacted(&self, error: TierError) -> TierError {
        let token = self.authorization.trim_start_matches("Bearer ");
        if token.is_empty() || !error.0.contains(token) {
            return error;
        }
        TierError(error.0.replace(token, "<redacted>"))
    }
}

/// The JSON body for `commands`: `[["NAME","arg",…],…]`. UTF-8 arguments go as they are; a
/// command with any other argument goes through [`BYTES_SCRIPT`]. Refused (an error,
/// nothing sent): an empty command, a connection-state command (`MULTI`, `WATCH`, …), and a
/// binary argument to a command not in the list [`BYTES_SCRIPT`] can run.
pub fn encode_commands(commands: &[Command<'_>]) -> Result<Vec<u8>, TierError> {
    let mut json: Vec<Vec<Cow<'_, str>>> = Vec::with_capacity(commands.len());
    for command in commands {
        json.push(encode_command(command)?);
    }
    serde_json::to_vec(&json).map_err(|e| TierError(format!("encoding a command: {e}")))
}

fn encode_command<'a>(command: &[&'a [u8]]) -> Result<Vec<Cow<'a, str>>, TierError> {
    let Some((&name, args)) = command.split_first() else {
        return Err(TierError("an empty command".to_string()));
    };
    let name = core::str::from_utf8(name)
        .ok()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        .ok_or_else(|| TierError("a command name that is not a word".to_string()))?;
    if CONNECTION_COMMANDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        return Err(TierError(format!(
            "{name} cannot be sent over REST (transactions go to /multi-exec)"
        )));
    }
    let text: Option<Vec<&'a str>> = args.iter().map(|a| core::str::from_utf8(a).ok()).collect();
    let mut out = Vec::with_capacity(args.len() + 4);
    match text {
        Some(args) => {
            out.push(Cow::Borrowed(name));
            out.extend(args.into_iter().map(Cow::Borrowed));
        }
        None => {
            let Some((key, rest)) = args.split_first() else {
                return Err(TierError("unreachable: no arguments".to_string()));
            };
            if !BINARY_COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                return Err(TierError(format!(
                    "{name} with an argument that is not UTF-8 cannot be sent over REST"
                )));
            }
            out.push(Cow::Borrowed("EVAL"));
            out.push(Cow::Borrowed(BYTES_SCRIPT));
            out.push(Cow::Borrowed("1"));
            out.push(Cow::Owned(byte_string(key)));
            out.push(Cow::Borrowed(name));
            out.extend(rest.iter().map(|a| Cow::Owned(byte_string(a))));
        }
    }
    Ok(out)
}

/// Each byte as the code point of the same number (what [`BYTES_SCRIPT`] reverses).
fn byte_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Decodes the answer to a pipeline or a transaction of `count` commands: one [`Reply`]
/// per command (an error reply as [`Reply::Error`] in its place), or an error for the
/// whole call. Never panics, whatever the bytes.
pub fn decode_replies(status: u16, body: &[u8], count: usize) -> Result<Vec<Reply>, TierError> {
    match status {
        200 => {
            let replies = parse_items(body)?;
            if replies.len() != count {
                return Err(TierError(format!(
                    "REST: {} replies to {count} commands",
                    replies.len()
                )));
            }
            Ok(replies)
        }
        // The token is wrong or missing; nothing else about the request matters.
        401 => Err(TierError(
            "REST: the server refused the token (401 Unauthorized)".to_string(),
        )),
        // A request refused as a whole: a discarded transaction, a malformed pipeline.
        400 => match error_message(body) {
            Some(message) => Err(TierError(format!("redis: {message}"))),
            None => Err(TierError("REST: HTTP 400".to_string())),
        },
        _ => match error_message(body) {
            Some(message) => Err(TierError(format!("REST: HTTP {status}: {message}"))),
            None => Err(TierError(format!("REST: HTTP {status}"))),
        },
    }
}

/// The `error` of a `{"error": "…"}` body, cut short and without control characters.
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Refusal<'a> {
        #[serde(borrow)]
        error: Cow<'a, str>,
    }
    let refusal: Refusal<'_> = serde_json::from_slice(body).ok()?;
    Some(clean(&refusal.error))
}

fn clean(message: &str) -> String {
    message
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[{"result": …} | {"error": "…"}, …]`, nothing after it.
fn parse_items(body: &[u8]) -> Result<Vec<Reply>, TierError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = Items
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| TierError(format!("REST: malformed reply: {}", clean(&e.to_string()))))?;
    Ok(items)
}

/// The array of per-command items.
struct Items;

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Vec<Reply>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Reply>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items {
    type Value = Vec<Reply>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {\"result\"} or {\"error\"} objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Reply>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Item)? {
            items.push(item);
        }
        Ok(items)
    }
}

/// One `{"result": …}` or `{"error": "…"}` (other keys are ignored; both, or neither, is
/// malformed).
struct Item;

impl<'de> DeserializeSeed<'de> for Item {
    type Value = Reply;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Reply, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Item {
    type Value = Reply;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a {\"result\"} or {\"error\"} object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reply, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value = match key.as_ref() {
                "result" => map.next_value_seed(Value)?,
                "error" => Reply::Error(clean(&map.next_value::<Cow<'de, str>>()?)),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            if found.replace(value).is_some() {
                return Err(de::Error::custom("more than one result or error"));
            }
        }
        found.ok_or_else(|| de::Error::custom("neither a result nor an error"))
    }
}

/// A result: `null`, an integer, a base64 string (or `OK`), or an array of these. Depth is
/// bounded by serde_json (128 levels: an error beyond, not a stack overflow).
struct Value;

impl<'de> DeserializeSeed<'de> for Value {
    type Value = Reply;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Reply, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value {
    type Value = Reply;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, an integer, a base64 string or an array")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Reply, E> {
        Ok(Reply::Nil)
    }
    fn visit_none<E: de::Error>(self) -> Result<Reply, E> {
        Ok(Reply::Nil)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Reply, E> {
        Ok(Reply::Integer(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Reply, E> {
        i64::try_from(n)
            .map(Reply::Integer)
            .map_err(|_| E::custom("an integer out of range"))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Reply, E> {
        decode_string(s).map(Reply::Bytes).map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Reply, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Value)? {
            items.push(item);
        }
        Ok(Reply::Array(items))
    }
}

/// A string of a base64-encoded reply: the status `OK` as it is (Upstash), anything else
/// base64 (`OK` encoded by SRH included).
fn decode_string(s: &str) -> Result<Vec<u8>, &'static str> {
    if s == "OK" {
        return Ok(b"OK".to_vec());
    }
    BASE64
        .decode(s)
        .map_err(|_| "a string that is not base64 (was Upstash-Encoding: base64 ignored?)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::simulated::block_on;
    use crate::engine::SharedTier;
    use core::cell::RefCell;

    /// One request as the host was given it: URL, headers, body, reply limit.
    type Sent = (String, Vec<(String, String)>, Vec<u8>, usize);

    /// A host that records each request and answers from a script.
    #[derive(Default)]
    struct Scripted {
        sent: RefCell<Vec<Sent>>,
        answers: RefCell<Vec<Result<HttpReply, TierError>>>,
    }

    impl HttpPost for &Scripted {
        async fn post(
            &self,
            url: &str,
            headers: &[(&str, &str)],
            body: Vec<u8>,
            max_reply_bytes: usize,
        ) -> Result<HttpReply, TierError> {
            let headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.sent
                .borrow_mut()
                .push((url.to_string(), headers, body, max_reply_bytes));
            self.answers.borrow_mut().remove(0)
        }
    }

    fn answering(answers: &[(u16, &str)]) -> Scripted {
        Scripted {
            sent: RefCell::new(Vec::new()),
            answers: RefCell::new(
                answers
                    .iter()
                    .map(|(status, body)| {
                        Ok(HttpReply {
                            status: *status,
                            body: body.as_bytes().to_vec(),
                        })
                    })
                    .collect(),
            ),
        }
    }

    const TOKEN: &str = "AX-secret-token-0123";

    fn tier(host: &Scripted) -> RestTier<&Scripted> {
        let url = RestUrl::parse("https://eu1-cat.upstash.io/").unwrap();
        RestTier::new(&url, TOKEN, host)
    }

    /// The JSON a request carried, as a server reads it.
    fn sent_json(host: &Scripted, i: usize) -> serde_json::Value {
        serde_json::from_slice(&host.sent.borrow()[i].2).unwrap()
    }

    /// What Redis receives for a byte string, turned back as [`BYTES_SCRIPT`] does.
    pub(super) fn as_script_decodes(utf8: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < utf8.len() {
            match (utf8[i], utf8.get(i + 1)) {
                (0xC2, Some(&b @ 0x80..=0xBF)) => {
                    out.push(b);
                    i += 2;
                }
                (0xC3, Some(&b @ 0x80..=0xBF)) => {
                    out.push(b + 64);
                    i += 2;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn a_pipeline_is_one_post_with_the_token_and_base64_replies_asked_for() {
        let host = answering(&[(200, r#"[{"result":"YQ=="},{"result":null}]"#)]);
        let t = tier(&host);
        let got = block_on(t.get_many(&["k1".into(), "k2".into()])).unwrap_err();
        // MGET is one command: two replies to it are a protocol error.
        assert!(got.0.contains("2 replies to 1 commands"), "{got}");
        let sent = host.sent.borrow();
        let (url, headers, _, limit) = &sent[0];
        assert_eq!(url, "https://eu1-cat.upstash.io/pipeline");
        assert_eq!(
            headers,
            &[
                ("authorization".to_string(), format!("Bearer {TOKEN}")),
                ("content-type".to_string(), "application/json".to_string()),
                ("upstash-encoding".to_string(), "base64".to_string()),
            ]
        );
        assert_eq!(*limit, body_limit(DEFAULT_MAX_REPLY_BYTES));
        drop(sent);
        assert_eq!(
            sent_json(&host, 0),
            serde_json::json!([["MGET", "k1", "k2"]])
        );
    }

    #[test]
    fn replies_decode_base64_the_ok_rule_integers_nulls_arrays_and_errors() {
        let body = r#"[{"result":"OK"},{"result":"T0s="},{"result":"AP8="},{"result":"AP8"},
            {"result":42},{"result":-7},{"result":null},{"result":""},
            {"result":["YQ==",null,[1,"Yg=="],[]]},{"error":"WRONGTYPE Operation\r\nagainst"},
            {"result":1,"sync-token":"x"}]"#;
        let replies = decode_replies(200, body.as_bytes(), 11).unwrap();
        assert_eq!(
            replies,
            [
                Reply::Bytes(b"OK".to_vec()),
                Reply::Bytes(b"OK".to_vec()),
                Reply::Bytes(vec![0, 255]),
                Reply::Bytes(vec![0, 255]),
                Reply::Integer(42),
                Reply::Integer(-7),
                Reply::Nil,
                Reply::Bytes(Vec::new()),
                Reply::Array(vec![
                    Reply::Bytes(b"a".to_vec()),
                    Reply::Nil,
                    Reply::Array(vec![Reply::Integer(1), Reply::Bytes(b"b".to_vec())]),
                    Reply::Array(Vec::new()),
                ]),
                Reply::Error("WRONGTYPE Operation  against".into()),
                Reply::Integer(1),
            ]
        );
    }

    #[test]
    fn every_command_of_the_tier_decodes_over_rest() {
        let host = answering(&[
            (200, r#"[{"result":"AAEC"}]"#),
            (200, r#"[{"result":"OK"}]"#),
            (200, r#"[{"result":null}]"#),
            (200, r#"[{"result":3}]"#),
            (200, r#"[{"result":1},{"result":0},{"result":1}]"#),
            (200, r#"[{"result":1}]"#),
            (200, r#"[{"result":"MTctMA=="}]"#),
        ]);
        let t = tier(&host);
        assert_eq!(block_on(t.get("k")).unwrap(), Some(vec![0, 1, 2]));
        block_on(t.set("k", b"v", 1000)).unwrap();
        assert!(!block_on(t.set_if_absent("lease", b"me", 5000)).unwrap());
        assert_eq!(block_on(t.increment("n")).unwrap(), 3);
        block_on(t.add_to_set("tags", "obj", 1000)).unwrap();
        assert!(block_on(t.delete_if_equals("lease", b"me")).unwrap());
        assert_eq!(
            block_on(t.stream_add("q", None, &[("m", b"PUT")])).unwrap(),
            "17-0"
        );
        let bodies: Vec<serde_json::Value> = (0..7).map(|i| sent_json(&host, i)).collect();
        assert_eq!(
            bodies[1],
            serde_json::json!([["SET", "k", "v", "PX", "1000"]])
        );
        assert_eq!(
            bodies[2],
            serde_json::json!([["SET", "lease", "me", "NX", "PX", "5000"]])
        );
        assert_eq!(
            bodies[4],
            serde_json::json!([
                ["SADD", "tags", "obj"],
                ["PEXPIRE", "tags", "1000", "GT"],
                ["PEXPIRE", "tags", "1000", "NX"]
            ])
        );
        assert_eq!(
            bodies[5],
            serde_json::json!([[
                "EVAL",
                crate::engine::DELETE_IF_EQUALS_SCRIPT,
                "1",
                "lease",
                "me"
            ]])
        );
    }

    #[test]
    fn transactions_go_to_multi_exec_and_a_discarded_one_fails_whole() {
        let host = answering(&[
            (200, r#"[{"result":["YQ==","Yg=="]},{"result":1}]"#),
            (
                400,
                r#"{"error":"EXECABORT Transaction discarded because of previous errors."}"#,
            ),
            (
                200,
                r#"[{"error":"WRONGTYPE Operation against a key"},{"result":1}]"#,
            ),
            (500, r#"{"error":"SRH: An error occurred internally"}"#),
        ]);
        let t = tier(&host);
        assert_eq!(block_on(t.take_set("s")).unwrap(), ["a", "b"]);
        assert_eq!(
            host.sent.borrow()[0].0,
            "https://eu1-cat.upstash.io/multi-exec"
        );
        assert_eq!(
            sent_json(&host, 0),
            serde_json::json!([["SMEMBERS", "s"], ["DEL", "s"]]),
            "no MULTI or EXEC in the body: the endpoint is the transaction"
        );
        let e = block_on(t.take_set("s")).unwrap_err();
        assert!(e.0.starts_with("redis: EXECABORT"), "{e}");
        let e = block_on(t.take_set("s")).unwrap_err();
        assert_eq!(e.0, "redis: WRONGTYPE Operation against a key");
        let ids = [String::from("1-0")];
        let e = block_on(t.stream_ack_delete("q", "g", &ids)).unwrap_err();
        assert_eq!(e.0, "REST: HTTP 500: SRH: An error occurred internally");
        assert_eq!(
            sent_json(&host, 3),
            serde_json::json!([["XACK", "q", "g", "1-0"], ["XDEL", "q", "1-0"]])
        );
    }

    #[test]
    fn connection_commands_are_never_sent() {
        let host = Scripted::default();
        let t = tier(&host);
        for name in ["MULTI", "exec", "WATCH", "DISCARD", "UNWATCH"] {
            let e = block_on(t.transport().pipeline(&[vec![name.as_bytes()]])).unwrap_err();
            assert!(e.0.contains("cannot be sent over REST"), "{e}");
            let e = block_on(t.transport().transaction(&[vec![name.as_bytes()]])).unwrap_err();
            assert!(e.0.contains("cannot be sent over REST"), "{e}");
        }
        let e = block_on(t.transport().pipeline(&[vec![]])).unwrap_err();
        assert_eq!(e.0, "an empty command");
        let e = block_on(
            t.transport()
                .pipeline(&[vec![b"GET\"], [\"FLUSHALL" as &[u8]]]),
        )
        .unwrap_err();
        assert!(e.0.contains("not a word"), "{e}");
        assert!(host.sent.borrow().is_empty(), "nothing sent");
        assert!(block_on(t.transport().pipeline(&[])).unwrap().is_empty());
    }

    #[test]
    fn utf8_arguments_go_as_they_are() {
        let host = answering(&[(200, r#"[{"result":"OK"}]"#)]);
        let t = tier(&host);
        block_on(t.set("k", "café \"quoted\" \\ \n".as_bytes(), 1000)).unwrap();
        assert_eq!(
            sent_json(&host, 0),
            serde_json::json!([["SET", "k", "café \"quoted\" \\ \n", "PX", "1000"]])
        );
    }

    /// Every byte value, as the server's JSON parser and then the script see it, comes back
    /// as itself; the key and the other arguments of the command too.
    #[test]
    fn binary_arguments_reach_redis_as_the_same_bytes_through_the_script() {
        let host = answering(&[
            (200, r#"[{"result":"OK"}]"#),
            (200, r#"[{"result":"MS0x"}]"#),
        ]);
        let t = tier(&host);
        let value: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        block_on(t.set("ec:v1:obj:é", &value, 1000)).unwrap();
        let json = sent_json(&host, 0);
        let command: Vec<&str> = json[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&command[..3], ["EVAL", BYTES_SCRIPT, "1"]);
        assert_eq!(command[4], "SET");
        let decoded: Vec<Vec<u8>> = [command[3], command[5], command[6], command[7]]
            .iter()
            .map(|a| as_script_decodes(a.as_bytes()))
            .collect();
        assert_eq!(decoded[0], "ec:v1:obj:é".as_bytes());
        assert_eq!(decoded[1], value);
        assert_eq!(
            (&decoded[2][..], &decoded[3][..]),
            (&b"PX"[..], &b"1000"[..])
        );
        // XADD: every field of the queued request.
        let body: &[u8] = b"\x00\xff\xc3\xa9 body";
        block_on(t.stream_add("q", Some(10), &[("method", b"POST"), ("body", body)])).unwrap();
        let json = sent_json(&host, 1);
        let args: Vec<Vec<u8>> = json[0].as_array().unwrap()[5..]
            .iter()
            .map(|a| as_script_decodes(a.as_str().unwrap().as_bytes()))
            .collect();
        assert_eq!(json[0][4], "XADD");
        let expected: [&[u8]; 7] = [b"MAXLEN", b"10", b"*", b"method", b"POST", b"body", body];
        assert_eq!(args, expected);
    }

    #[test]
    fn binary_arguments_to_other_commands_are_refused_not_mangled() {
        let host = Scripted::default();
        let t = tier(&host);
        let e = block_on(t.transport().pipeline(&[vec![b"MGET", b"\xffkey"]])).unwrap_err();
        assert_eq!(
            e.0,
            "MGET with an argument that is not UTF-8 cannot be sent over REST"
        );
        let e = block_on(t.delete_if_equals("lease", b"\xff")).unwrap_err();
        assert!(e.0.starts_with("EVAL with an argument"), "{e}");
        assert!(host.sent.borrow().is_empty());
    }

    #[test]
    fn statuses_other_than_200_are_errors_that_never_hold_the_token() {
        let quoting = format!(r#"{{"error":"bad token {TOKEN}"}}"#);
        let host = answering(&[
            (401, r#"{"error":"Unauthorized"}"#),
            (400, r#"{"error":"ERR max request size exceeded"}"#),
            (502, "<html>Bad gateway</html>"),
            (429, r#"{"error":"ERR max daily request limit exceeded"}"#),
            (500, &quoting),
        ]);
        let t = tier(&host);
        let errors: Vec<String> = (0..5)
            .map(|_| block_on(t.get("k")).unwrap_err().0)
            .collect();
        assert_eq!(
            errors,
            [
                "REST: the server refused the token (401 Unauthorized)",
                "redis: ERR max request size exceeded",
                "REST: HTTP 502",
                "REST: HTTP 429: ERR max daily request limit exceeded",
                "REST: HTTP 500: bad token <redacted>",
            ]
        );
        let debug = format!("{:?}", t.transport());
        assert!(
            !debug.contains(TOKEN) && debug.contains("redacted"),
            "{debug}"
        );
    }

    #[test]
    fn a_host_failure_is_an_error_without_the_token() {
        let host = Scripted {
            sent: RefCell::new(Vec::new()),
            answers: RefCell::new(vec![Err(TierError(format!("fetch failed for {TOKEN}")))]),
        };
        let e = block_on(tier(&host).get("k")).unwrap_err();
        assert_eq!(e.0, "fetch failed for <redacted>");
    }

    #[test]
    fn replies_above_the_limit_are_refused() {
        let big = format!(r#"[{{"result":"{}"}}]"#, "QUFB".repeat(100_000));
        let host = answering(&[(200, &big), (200, &big)]);
        let t = tier(&host).with_reply_limit(1 << 20);
        assert_eq!(
            block_on(t.get("k")).unwrap().map(|v| v.len()),
            Some(300_000)
        );
        assert_eq!(host.sent.borrow()[0].3, body_limit(1 << 20));
        // A host that ignored the limit it was given: refused all the same.
        let t = tier(&host).with_reply_limit(200_000);
        let e = block_on(t.get("k")).unwrap_err();
        assert_eq!(e.0, "reply too large");
        assert!(body_limit(usize::MAX) == usize::MAX, "no overflow");
    }

    #[test]
    fn malformed_replies_and_wrong_shapes_are_errors() {
        let deep = format!("[{{\"result\":{}1{}}}]", "[".repeat(5000), "]".repeat(5000));
        let cases: &[(&str, &str)] = &[
            ("", "EOF"),
            ("[", "EOF"),
            ("{\"result\":1}", "an array"),
            ("[1]", "object"),
            ("[{}]", "neither"),
            ("[{\"result\":1,\"error\":\"x\"}]", "more than one"),
            ("[{\"result\":1,\"result\":2}]", "more than one"),
            ("[{\"result\":1.5}]", "floating point"),
            ("[{\"result\":true}]", "boolean"),
            ("[{\"result\":{}}]", "map"),
            ("[{\"result\":\"not base64!\"}]", "not base64"),
            ("[{\"result\":\"T0s=x\"}]", "not base64"),
            ("[{\"error\":5}]", "integer"),
            ("[{\"result\":18446744073709551615}]", "out of range"),
            ("[{\"result\":1}] [", "trailing"),
            ("[{\"result\":\"\\ud800\"}]", "hex escape"),
            (&deep, "recursion limit"),
        ];
        for (body, why) in cases {
            let e = decode_replies(200, body.as_bytes(), 1).unwrap_err();
            assert!(e.0.starts_with("REST: malformed reply"), "{body:.40}: {e}");
            assert!(e.0.contains(why), "{body:.40}: {e}");
        }
        assert!(decode_replies(200, b"[]", 1).is_err(), "too few");
        assert!(decode_replies(400, b"not json", 1).unwrap_err().0 == "REST: HTTP 400");
    }

    /// Decoding never panics, whatever the bytes: every prefix of real replies, and each
    /// byte of them replaced by the characters that change JSON's structure.
    #[test]
    fn the_decoder_never_panics_on_damaged_replies() {
        let samples = [
            r#"[{"result":"OK"},{"result":["YQ==",null,[1,"Yg=="]]},{"error":"ERR x"},{"result":-1}]"#,
            r#"{"error":"EXECABORT Transaction discarded"}"#,
            r#"[{"result":[["MTctMA==",["bWV0aG9k","UE9TVA=="]]]}]"#,
        ];
        for sample in samples {
            let bytes = sample.as_bytes();
            for end in 0..=bytes.len() {
                for status in [200, 400, 401, 500] {
                    let _ = decode_replies(status, &bytes[..end], 4);
                }
            }
            for i in 0..bytes.len() {
                for b in [
                    b'[', b']', b'{', b'}', b'"', b',', b':', b'\\', 0, 0xff, b'9', b'-',
                ] {
                    let mut damaged = bytes.to_vec();
                    damaged[i] = b;
                    let _ = decode_replies(200, &damaged, 4);
                }
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A reply as a REST server with base64 encoding writes it.
    fn reply_json(reply: &Reply) -> serde_json::Value {
        match reply {
            Reply::Nil => serde_json::Value::Null,
            Reply::Integer(n) => (*n).into(),
            Reply::Bytes(b) => BASE64.encode(b).into(),
            Reply::Array(items) => items.iter().map(reply_json).collect(),
            Reply::Error(_) => unreachable!("not generated"),
        }
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            Just(Reply::Nil),
            any::<i64>().prop_map(Reply::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            proptest::collection::vec(inner, 0..8).prop_map(Reply::Array)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any bytes: a result or an error, never a panic.
        #[test]
        fn any_bytes_decode_without_panicking(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            status in 0u16..600,
            count in 0usize..4,
        ) {
            let _ = decode_replies(status, &body, count);
        }

        /// What a server sends for any replies decodes to exactly those replies.
        #[test]
        fn replies_round_trip(replies in proptest::collection::vec(any_reply(), 0..6)) {
            let body: Vec<serde_json::Value> = replies
                .iter()
                .map(|r| serde_json::json!({ "result": reply_json(r) }))
                .collect();
            let body = serde_json::to_vec(&body).unwrap();
            prop_assert_eq!(decode_replies(200, &body, replies.len()).unwrap(), replies);
        }

        /// Any arguments encode to JSON a server parses into strings that are the arguments
        /// (UTF-8 ones), or that the script turns back into them (any other).
        #[test]
        fn any_arguments_reach_redis_as_themselves(args in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..20),
                ".{0,8}".prop_map(String::into_bytes),
            ],
            1..5,
        )) {
            let mut command: Command<'_> = vec![b"SET" as &[u8]];
            command.extend(args.iter().map(|a| a.as_slice()));
            let body = encode_commands(&[command]).unwrap();
            let parsed: Vec<Vec<String>> = serde_json::from_slice(&body).unwrap();
            let sent = &parsed[0];
            let received: Vec<Vec<u8>> = if sent[0] == "EVAL" {
                prop_assert_eq!(
                    (sent[1].as_str(), sent[2].as_str(), sent[4].as_str()),
                    (BYTES_SCRIPT, "1", "SET")
                );
                core::iter::once(&sent[3])
                    .chain(&sent[5..])
                    .map(|a| super::tests::as_script_decodes(a.as_bytes()))
                    .collect()
            } else {
                prop_assert_eq!(sent[0].as_str(), "SET");
                sent[1..].iter().map(|a| a.as_bytes().to_vec()).collect()
            };
            prop_assert_eq!(received, args);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any JSON-looking text made of the reply grammar's pieces (fewer cases: each
        /// draws many pieces).
        #[test]
        fn any_reply_shaped_text_decodes_without_panicking(parts in proptest::collection::vec(
            prop_oneof![
                Just("["), Just("]"), Just("{"), Just("}"), Just(","), Just(":"),
                Just("\"result\""), Just("\"error\""), Just("null"), Just("1"),
                Just("-9223372036854775809"), Just("\"OK\""), Just("\"YQ==\""), Just("\"x\""),
                Just("1e5"), Just("true"),
            ],
            0..40,
        )) {
            let _ = decode_replies(200, parts.concat().as_bytes(), 1);
        }
    }
}
