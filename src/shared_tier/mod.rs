//! The shared tier speaks Redis, in one place: [`RedisTier`] builds the command for every
//! [`SharedTier`] operation and decodes its reply; a [`Transport`] only carries commands
//! to a Redis-compatible server and brings the replies back. Three transports exist, one per
//! way out: [`redis_rs`] natively (redis-rs's reconnecting multiplexed connection), [`resp`]
//! for hosts that only have a byte stream (the Worker's `connect()` sockets), and [`rest`]
//! for hosts that only have HTTP (Redis over HTTP, the Upstash REST protocol, over the
//! Worker's `fetch`). [`url`] reads their URLs.

#![allow(async_fn_in_trait)]

#[cfg(feature = "server")]
pub mod redis_rs;
#[cfg(feature = "resp")]
pub mod resp;
pub mod rest;
pub mod url;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::engine::{
    CounterReport, CounterTotals, PendingEntry, SharedTier, StreamEntry, TierError,
    DELETE_IF_EQUALS_SCRIPT,
};

/// One command: its arguments, the name first.
pub type Command<'a> = Vec<&'a [u8]>;

/// A reply, as either transport decodes it (RESP2's types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A null bulk string or array.
    Nil,
    /// `:n`.
    Integer(i64),
    /// A bulk or simple string.
    Bytes(Vec<u8>),
    /// `*n` items.
    Array(Vec<Reply>),
    /// `-message`: the server refused the command (the others in a pipeline still ran).
    Error(String),
}

/// Carries commands to the server.
pub trait Transport {
    /// Sends `commands` as one pipeline and returns one reply per command, in order. An
    /// error reply is a [`Reply::Error`] in its place; `Err` is for the transport itself
    /// (connection, timeout, protocol), after which no reply can be trusted.
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError>;

    /// Runs `commands` atomically and returns each one's result, in order (an error reply,
    /// which does not stop the others, as a [`Reply::Error`] in its place). `Err` when the
    /// transport failed or the server discarded the transaction as a whole (a command
    /// refused when queued: `EXECABORT`), in which case none of them ran.
    ///
    /// By default `MULTI`, the commands and `EXEC` in one [`Transport::pipeline`], as a
    /// connection-based client sends them ([Redis transactions]); a transport without
    /// connections of its own (Redis over HTTP) has its own endpoint for it.
    ///
    /// [Redis transactions]: https://redis.io/docs/latest/develop/interact/transactions/
    async fn transaction(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        let count = commands.len();
        let mut pipeline: Vec<Command<'_>> = Vec::with_capacity(count + 2);
        pipeline.push(alloc::vec![b"MULTI" as &[u8]]);
        pipeline.extend(commands.iter().cloned());
        pipeline.push(alloc::vec![b"EXEC"]);
        let mut replies = self.pipeline(&pipeline).await?;
        if replies.len() != count + 2 {
            return Err(TierError("one reply per command expected".to_string()));
        }
        let exec = replies.pop();
        // MULTI's `OK` and each `QUEUED`: an error here (a command refused when queued)
        // comes before EXEC's EXECABORT and names the cause.
        for reply in replies {
            reply_ok(reply)?;
        }
        match exec {
            Some(Reply::Array(results)) if results.len() == count => Ok(results),
            Some(other) => Err(unexpected("EXEC", &other)),
            None => Err(TierError("no reply to EXEC".to_string())),
        }
    }
}

/// The shared tier over a transport: every command and every reply decoded here.
pub struct RedisTier<T> {
    transport: T,
}

impl<T> RedisTier<T> {
    /// The tier reached through `transport`.
    pub fn over(transport: T) -> Self {
        RedisTier { transport }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, taken out.
    pub fn into_transport(self) -> T {
        self.transport
    }
}

impl<T: Clone> Clone for RedisTier<T> {
    fn clone(&self) -> Self {
        RedisTier {
            transport: self.transport.clone(),
        }
    }
}

impl<T: Transport> RedisTier<T> {
    /// One command's reply, an error reply as a [`TierError`].
    async fn one(&self, command: Command<'_>) -> Result<Reply, TierError> {
        let mut replies = self.transport.pipeline(&[command]).await?;
        match replies.pop() {
            Some(reply) if replies.is_empty() => reply_ok(reply),
            _ => Err(TierError("one reply expected".to_string())),
        }
    }

    /// Every reply of a pipeline, none of them an error.
    async fn all(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        let replies = self.transport.pipeline(commands).await?;
        if replies.len() != commands.len() {
            return Err(TierError("one reply per command expected".to_string()));
        }
        replies.into_iter().map(reply_ok).collect()
    }

    /// Runs `commands` atomically ([`Transport::transaction`]) and returns their results,
    /// none of them an error.
    async fn transaction(&self, commands: Vec<Command<'_>>) -> Result<Vec<Reply>, TierError> {
        let count = commands.len();
        let results = self.transport.transaction(&commands).await?;
        if results.len() != count {
            return Err(TierError("one result per command expected".to_string()));
        }
        results.into_iter().map(reply_ok).collect()
    }
}

fn reply_ok(reply: Reply) -> Result<Reply, TierError> {
    match reply {
        Reply::Error(message) => Err(TierError(format!("redis: {message}"))),
        other => Ok(other),
    }
}

/// A reply of the wrong shape.
fn unexpected(what: &str, reply: &Reply) -> TierError {
    let kind = match reply {
        Reply::Nil => "null",
        Reply::Integer(_) => "integer",
        Reply::Bytes(_) => "string",
        Reply::Array(_) => "array",
        Reply::Error(message) => return TierError(format!("{what}: redis: {message}")),
    };
    TierError(format!("unexpected reply to {what}: {kind}"))
}

fn bulk(reply: Reply, what: &str) -> Result<Option<Vec<u8>>, TierError> {
    match reply {
        Reply::Bytes(b) => Ok(Some(b)),
        Reply::Nil => Ok(None),
        other => Err(unexpected(what, &other)),
    }
}

fn text(reply: Reply, what: &str) -> Result<String, TierError> {
    match bulk(reply, what)? {
        Some(bytes) => {
            String::from_utf8(bytes).map_err(|_| TierError(format!("{what}: not UTF-8")))
        }
        None => Err(TierError(format!("{what}: unexpected null"))),
    }
}

fn count_of(reply: Reply, what: &str) -> Result<u64, TierError> {
    match reply {
        Reply::Integer(n) => {
            u64::try_from(n).map_err(|_| TierError(format!("{what}: negative count")))
        }
        other => Err(unexpected(what, &other)),
    }
}

fn ttl_arg(ttl_ms: u64) -> String {
    ttl_ms.max(1).to_string()
}

/// Stream entries, `[[id, [field, value, …]], …]`; entries deleted meanwhile (a null in
/// place of the fields, before Redis 7) are left out.
fn stream_entries(reply: Reply) -> Result<Vec<StreamEntry>, TierError> {
    let Reply::Array(items) = reply else {
        return Err(unexpected("a stream read", &reply));
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Reply::Array(pair) = item else {
            continue;
        };
        let mut pair = pair.into_iter();
        let (Some(id), Some(Reply::Array(flat))) = (pair.next(), pair.next()) else {
            continue;
        };
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
            // Whatever another writer put there is returned, for the engine to judge.
            let name = bulk(name, "a stream read")?.unwrap_or_default();
            let value = bulk(value, "a stream read")?.unwrap_or_default();
            fields.push((String::from_utf8_lossy(&name).into_owned(), value));
        }
        entries.push(StreamEntry {
            id: text(id, "a stream read")?,
            fields,
        });
    }
    Ok(entries)
}

/// The pairs of a reply that lists them: flat in RESP2 (`HGETALL`'s `[field, value, …]`,
/// `WITHSCORES`' `[member, score, …]`), as `[key, value]` arrays in RESP3 (a map, or
/// members with their scores).
fn pairs(reply: Reply, what: &str) -> Result<Vec<(Reply, Reply)>, TierError> {
    let Reply::Array(items) = reply else {
        return Err(unexpected(what, &reply));
    };
    let nested = items
        .iter()
        .all(|item| matches!(item, Reply::Array(pair) if pair.len() == 2));
    if nested && !items.is_empty() {
        return Ok(items
            .into_iter()
            .filter_map(|item| match item {
                Reply::Array(pair) => {
                    let mut pair = pair.into_iter();
                    Some((pair.next()?, pair.next()?))
                }
                _ => None,
            })
            .collect());
    }
    if items.len() % 2 != 0 {
        return Err(TierError(format!("{what}: an odd number of items")));
    }
    let mut flat = items.into_iter();
    let mut out = Vec::with_capacity(flat.len() / 2);
    while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
        out.push((key, value));
    }
    Ok(out)
}

/// The pairs of `reply` ([`pairs`]), each a name and its value as `value` decodes it.
fn decode_pairs<T>(
    reply: Reply,
    what: &str,
    value: impl Fn(Reply, &str) -> Result<T, TierError>,
) -> Result<Vec<(String, T)>, TierError> {
    pairs(reply, what)?
        .into_iter()
        .map(|(name, v)| Ok((text(name, what)?, value(v, what)?)))
        .collect()
}

/// A sorted set's score as a whole number: an integer, or its text as servers write whole
/// scores (RESP2's bulk string and REST's `1733562000000`; a RESP3 double as redis-rs
/// gives it, which may end in a fraction, dropped). Scores here are times in ms, far
/// inside the range where a double holds whole numbers exactly; no float is parsed, which
/// would bring the float parser into the Worker's bundle for nothing.
fn score(reply: Reply, what: &str) -> Result<u64, TierError> {
    match reply {
        Reply::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        other => {
            let text = text(other, what)?;
            let whole = text
                .split_once('.')
                .map_or(text.as_str(), |(whole, _)| whole);
            whole
                .parse::<u64>()
                .map_err(|_| TierError(format!("{what}: not a score")))
        }
    }
}

/// One `XPENDING` item, `[id, consumer, idle, deliveries]`.
fn pending_entry(item: Reply) -> Result<PendingEntry, TierError> {
    let Reply::Array(parts) = item else {
        return Err(unexpected("XPENDING", &item));
    };
    let [id, _consumer, idle, deliveries]: [Reply; 4] = parts
        .try_into()
        .map_err(|_| TierError("unexpected reply to XPENDING".to_string()))?;
    Ok(PendingEntry {
        id: text(id, "XPENDING")?,
        idle_ms: count_of(idle, "XPENDING")?,
        deliveries: count_of(deliveries, "XPENDING")?,
    })
}

impl<T: Transport> SharedTier for RedisTier<T> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        bulk(self.one(alloc::vec![b"GET", key.as_bytes()]).await?, "GET")
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, TierError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command: Command<'_> = alloc::vec![b"MGET"];
        command.extend(keys.iter().map(|k| k.as_bytes()));
        match self.one(command).await? {
            Reply::Array(items) if items.len() == keys.len() => {
                items.into_iter().map(|r| bulk(r, "MGET")).collect()
            }
            other => Err(unexpected("MGET", &other)),
        }
    }

    async fn exist(&self, keys: &[String]) -> Result<Vec<bool>, TierError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Command<'_>> = keys
            .iter()
            .map(|k| alloc::vec![b"EXISTS" as &[u8], k.as_bytes()])
            .collect();
        self.all(&commands)
            .await?
            .into_iter()
            .map(|reply| Ok(count_of(reply, "EXISTS")? > 0))
            .collect()
    }

    async fn get_prefixes(&self, keys: &[String], bytes: usize) -> Result<Vec<Vec<u8>>, TierError> {
        if keys.is_empty() || bytes == 0 {
            return Ok(keys.iter().map(|_| Vec::new()).collect());
        }
        let end = (bytes - 1).to_string();
        let commands: Vec<Command<'_>> = keys
            .iter()
            .map(|k| alloc::vec![b"GETRANGE" as &[u8], k.as_bytes(), b"0", end.as_bytes()])
            .collect();
        let replies = self.transport.pipeline(&commands).await?;
        if replies.len() != commands.len() {
            return Err(TierError("one reply per command expected".to_string()));
        }
        // A key holding another type (`WRONGTYPE`) has no string prefix: it is reported as
        // holding none, rather than failing every other key's answer.
        replies
            .into_iter()
            .map(|reply| match reply {
                Reply::Error(_) => Ok(Vec::new()),
                other => Ok(bulk(other, "GETRANGE")?.unwrap_or_default()),
            })
            .collect()
    }

    async fn extend(&self, keys: &[String], ttl_ms: u64) -> Result<u64, TierError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let ttl = ttl_arg(ttl_ms);
        let commands: Vec<Command<'_>> = keys
            .iter()
            .map(|k| alloc::vec![b"PEXPIRE" as &[u8], k.as_bytes(), ttl.as_bytes(), b"GT"])
            .collect();
        let mut extended = 0;
        for reply in self.all(&commands).await? {
            extended += count_of(reply, "PEXPIRE")?;
        }
        Ok(extended)
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), TierError> {
        let ttl = ttl_arg(ttl_ms);
        let command = alloc::vec![
            b"SET" as &[u8],
            key.as_bytes(),
            value,
            b"PX",
            ttl.as_bytes()
        ];
        self.one(command).await.map(|_| ())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<bool, TierError> {
        let ttl = ttl_arg(ttl_ms);
        let command = alloc::vec![
            b"SET" as &[u8],
            key.as_bytes(),
            value,
            b"NX",
            b"PX",
            ttl.as_bytes()
        ];
        Ok(self.one(command).await? != Reply::Nil)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), TierError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut command: Command<'_> = alloc::vec![b"DEL"];
        command.extend(keys.iter().map(|k| k.as_bytes()));
        self.one(command).await.map(|_| ())
    }

    async fn increment(&self, key: &str) -> Result<i64, TierError> {
        match self.one(alloc::vec![b"INCR", key.as_bytes()]).await? {
            Reply::Integer(n) => Ok(n),
            other => Err(unexpected("INCR", &other)),
        }
    }

    async fn add_to_set(&self, set: &str, member: &str, ttl_ms: u64) -> Result<(), TierError> {
        let ttl = ttl_arg(ttl_ms);
        let (set, member, ttl) = (set.as_bytes(), member.as_bytes(), ttl.as_bytes());
        // Extend the set's TTL only (GT), or give it one when it has none (NX).
        self.all(&[
            alloc::vec![b"SADD", set, member],
            alloc::vec![b"PEXPIRE", set, ttl, b"GT"],
            alloc::vec![b"PEXPIRE", set, ttl, b"NX"],
        ])
        .await
        .map(|_| ())
    }

    async fn take_set(&self, set: &str) -> Result<Vec<String>, TierError> {
        let set = set.as_bytes();
        let mut results = self
            .transaction(alloc::vec![
                alloc::vec![b"SMEMBERS" as &[u8], set],
                alloc::vec![b"DEL", set],
            ])
            .await?;
        match results.swap_remove(0) {
            Reply::Array(items) => items
                .into_iter()
                .map(|member| match bulk(member, "SMEMBERS")? {
                    Some(b) => String::from_utf8(b)
                        .map_err(|_| TierError("a set member is not UTF-8".to_string())),
                    None => Err(TierError("null set member".to_string())),
                })
                .collect(),
            other => Err(unexpected("SMEMBERS", &other)),
        }
    }

    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> Result<bool, TierError> {
        let command = alloc::vec![
            b"EVAL".as_slice(),
            DELETE_IF_EQUALS_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            value,
        ];
        match self.one(command).await? {
            Reply::Integer(n) => Ok(n == 1),
            other => Err(unexpected("EVAL", &other)),
        }
    }

    async fn info(&self) -> Result<String, TierError> {
        let text = bulk(self.one(alloc::vec![b"INFO".as_slice()]).await?, "INFO")?;
        Ok(String::from_utf8_lossy(&text.unwrap_or_default()).into_owned())
    }

    async fn stream_add(
        &self,
        stream: &str,
        max_len: Option<u64>,
        fields: &[(&str, &[u8])],
    ) -> Result<String, TierError> {
        let max_len = max_len.map(|n| n.to_string());
        let mut command: Command<'_> = alloc::vec![b"XADD", stream.as_bytes()];
        if let Some(n) = &max_len {
            command.extend([b"MAXLEN" as &[u8], n.as_bytes()]);
        }
        command.push(b"*");
        for (name, value) in fields {
            command.push(name.as_bytes());
            command.push(value);
        }
        text(self.one(command).await?, "XADD")
    }

    async fn stream_create_group(&self, stream: &str, group: &str) -> Result<(), TierError> {
        let command = alloc::vec![
            b"XGROUP" as &[u8],
            b"CREATE",
            stream.as_bytes(),
            group.as_bytes(),
            b"0",
            b"MKSTREAM"
        ];
        match self.transport.pipeline(&[command]).await?.pop() {
            // The group exists already: what this asked for.
            Some(Reply::Error(message)) if message.starts_with("BUSYGROUP") => Ok(()),
            Some(reply) => reply_ok(reply).map(|_| ()),
            None => Err(TierError("no reply to XGROUP".to_string())),
        }
    }

    async fn stream_len(&self, stream: &str) -> Result<u64, TierError> {
        count_of(
            self.one(alloc::vec![b"XLEN", stream.as_bytes()]).await?,
            "XLEN",
        )
    }

    async fn stream_read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, TierError> {
        let count = count.max(1).to_string();
        let command = alloc::vec![
            b"XREADGROUP" as &[u8],
            b"GROUP",
            group.as_bytes(),
            consumer.as_bytes(),
            b"COUNT",
            count.as_bytes(),
            b"STREAMS",
            stream.as_bytes(),
            b">"
        ];
        match self.one(command).await? {
            Reply::Nil => Ok(Vec::new()),
            Reply::Array(streams) => match streams.into_iter().next() {
                None => Ok(Vec::new()),
                Some(Reply::Array(pair)) if pair.len() == 2 => pair
                    .into_iter()
                    .nth(1)
                    .map_or(Ok(Vec::new()), stream_entries),
                Some(other) => Err(unexpected("XREADGROUP", &other)),
            },
            other => Err(unexpected("XREADGROUP", &other)),
        }
    }

    async fn stream_pending(
        &self,
        stream: &str,
        group: &str,
        count: usize,
    ) -> Result<Vec<PendingEntry>, TierError> {
        let count = count.max(1).to_string();
        let command = alloc::vec![
            b"XPENDING" as &[u8],
            stream.as_bytes(),
            group.as_bytes(),
            b"-",
            b"+",
            count.as_bytes()
        ];
        match self.one(command).await? {
            Reply::Array(items) => items.into_iter().map(pending_entry).collect(),
            other => Err(unexpected("XPENDING", &other)),
        }
    }

    async fn stream_claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        ids: &[String],
    ) -> Result<Vec<StreamEntry>, TierError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let idle = min_idle_ms.to_string();
        let mut command: Command<'_> = alloc::vec![
            b"XCLAIM",
            stream.as_bytes(),
            group.as_bytes(),
            consumer.as_bytes(),
            idle.as_bytes()
        ];
        command.extend(ids.iter().map(|id| id.as_bytes()));
        stream_entries(self.one(command).await?)
    }

    async fn stream_ack_delete(
        &self,
        stream: &str,
        group: &str,
        ids: &[String],
    ) -> Result<(), TierError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut ack: Command<'_> = alloc::vec![b"XACK", stream.as_bytes(), group.as_bytes()];
        ack.extend(ids.iter().map(|id| id.as_bytes()));
        let mut del: Command<'_> = alloc::vec![b"XDEL", stream.as_bytes()];
        del.extend(ids.iter().map(|id| id.as_bytes()));
        self.transaction(alloc::vec![ack, del]).await.map(|_| ())
    }

    async fn add_counters(&self, report: &CounterReport<'_>) -> Result<(), TierError> {
        let hash = report.hash.as_bytes();
        let roster = report.roster.as_bytes();
        // Each number as text first, so the commands can borrow it: `HINCRBY` per increment
        // (at most i64::MAX, Redis's range), then `HSETNX` per field set if absent.
        let amount = |n: u64| i64::try_from(n).unwrap_or(i64::MAX).to_string();
        let fields: Vec<(&[u8], &str, String)> = report
            .increments
            .iter()
            .map(|(field, n)| (b"HINCRBY" as &[u8], *field, amount(*n)))
            .chain(
                report
                    .if_absent
                    .iter()
                    .map(|(field, n)| (b"HSETNX" as &[u8], *field, n.to_string())),
            )
            .collect();
        let hash_ttl = ttl_arg(report.hash_ttl_ms);
        let roster_ttl = ttl_arg(report.roster_ttl_ms);
        let at = report.at_ms.to_string();
        let before = format!("({}", report.forget_before_ms);
        let mut commands: Vec<Command<'_>> = Vec::with_capacity(fields.len() + 4);
        for (name, field, n) in &fields {
            commands.push(alloc::vec![*name, hash, field.as_bytes(), n.as_bytes()]);
        }
        commands.push(alloc::vec![b"PEXPIRE", hash, hash_ttl.as_bytes()]);
        commands.push(alloc::vec![
            b"ZADD",
            roster,
            at.as_bytes(),
            report.member.as_bytes()
        ]);
        commands.push(alloc::vec![
            b"ZREMRANGEBYSCORE",
            roster,
            b"-inf",
            before.as_bytes()
        ]);
        commands.push(alloc::vec![b"PEXPIRE", roster, roster_ttl.as_bytes()]);
        self.transaction(commands).await.map(|_| ())
    }

    async fn read_counters(
        &self,
        hash: &str,
        roster: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<CounterTotals, TierError> {
        let (hash, roster) = (hash.as_bytes(), roster.as_bytes());
        let since = since_ms.to_string();
        let limit = limit.to_string();
        let mut replies = self
            .all(&[
                alloc::vec![b"HGETALL" as &[u8], hash],
                alloc::vec![b"ZCOUNT", roster, since.as_bytes(), b"+inf"],
                alloc::vec![
                    b"ZREVRANGEBYSCORE",
                    roster,
                    b"+inf",
                    since.as_bytes(),
                    b"WITHSCORES",
                    b"LIMIT",
                    b"0",
                    limit.as_bytes()
                ],
            ])
            .await?
            .into_iter();
        let (Some(fields), Some(count), Some(newest)) =
            (replies.next(), replies.next(), replies.next())
        else {
            return Err(TierError("three replies expected".to_string()));
        };
        Ok(CounterTotals {
            fields: decode_pairs(fields, "HGETALL", |value, what| {
                Ok(bulk(value, what)?.unwrap_or_default())
            })?,
            reporters: count_of(count, "ZCOUNT")?,
            newest: decode_pairs(newest, "ZREVRANGEBYSCORE", score)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::simulated::block_on;
    use core::cell::RefCell;

    /// A transport that records the commands and answers from a script.
    struct Scripted {
        sent: RefCell<Vec<Vec<Vec<u8>>>>,
        replies: RefCell<Vec<Vec<Reply>>>,
    }

    impl Transport for Scripted {
        async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
            for command in commands {
                self.sent
                    .borrow_mut()
                    .push(command.iter().map(|a| a.to_vec()).collect());
            }
            Ok(self.replies.borrow_mut().remove(0))
        }
    }

    fn tier(replies: Vec<Vec<Reply>>) -> RedisTier<Scripted> {
        RedisTier::over(Scripted {
            sent: RefCell::new(Vec::new()),
            replies: RefCell::new(replies),
        })
    }

    fn sent(tier: &RedisTier<Scripted>) -> Vec<String> {
        tier.transport()
            .sent
            .borrow()
            .iter()
            .map(|c| {
                let args: Vec<String> = c
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                args.join(" ")
            })
            .collect()
    }

    #[test]
    fn leases_are_taken_with_set_nx_px() {
        let t = tier(alloc::vec![
            alloc::vec![Reply::Bytes(b"OK".to_vec())],
            alloc::vec![Reply::Nil]
        ]);
        assert!(block_on(t.set_if_absent("lease", b"me", 0)).unwrap());
        assert!(!block_on(t.set_if_absent("lease", b"me", 5000)).unwrap());
        assert_eq!(
            sent(&t),
            ["SET lease me NX PX 1", "SET lease me NX PX 5000"],
            "a TTL of 0 would be refused: at least 1 ms"
        );
    }

    #[test]
    fn error_replies_are_errors_except_an_existing_group() {
        let t = tier(alloc::vec![
            alloc::vec![Reply::Error("WRONGTYPE Operation".into())],
            alloc::vec![Reply::Error(
                "BUSYGROUP Consumer Group name already exists".into()
            )],
            alloc::vec![Reply::Error("NOGROUP".into())]
        ]);
        let e = block_on(t.get("k")).unwrap_err();
        assert_eq!(e.0, "redis: WRONGTYPE Operation");
        assert!(block_on(t.stream_create_group("s", "g")).is_ok());
        assert!(block_on(t.stream_create_group("s", "g")).is_err());
    }

    #[test]
    fn transactions_unwrap_exec_and_fail_on_an_error_inside() {
        let queued = || Reply::Bytes(b"QUEUED".to_vec());
        let ok = || Reply::Bytes(b"OK".to_vec());
        let t = tier(alloc::vec![
            alloc::vec![
                ok(),
                queued(),
                queued(),
                Reply::Array(alloc::vec![
                    Reply::Array(alloc::vec![Reply::Bytes(b"a".to_vec())]),
                    Reply::Integer(1)
                ])
            ],
            alloc::vec![
                ok(),
                queued(),
                queued(),
                Reply::Array(alloc::vec![
                    Reply::Integer(1),
                    Reply::Error("ERR no".into())
                ])
            ]
        ]);
        assert_eq!(block_on(t.take_set("s")).unwrap(), ["a"]);
        assert_eq!(sent(&t), ["MULTI", "SMEMBERS s", "DEL s", "EXEC"]);
        let ids = [String::from("1-0")];
        let e = block_on(t.stream_ack_delete("s", "g", &ids)).unwrap_err();
        assert_eq!(e.0, "redis: ERR no");
    }

    #[test]
    fn replies_of_the_wrong_shape_are_errors_not_panics() {
        let t = tier(alloc::vec![
            alloc::vec![Reply::Integer(3)],
            alloc::vec![Reply::Array(alloc::vec![Reply::Nil])],
            alloc::vec![Reply::Array(alloc::vec![Reply::Array(alloc::vec![
                Reply::Nil
            ])])],
            alloc::vec![Reply::Integer(-1)],
            alloc::vec![]
        ]);
        assert!(block_on(t.get("k")).is_err());
        assert!(block_on(t.get_many(&[String::from("a"), String::from("b")])).is_err());
        assert!(block_on(t.stream_pending("s", "g", 10)).is_err());
        assert!(block_on(t.stream_len("s")).is_err());
        assert!(block_on(t.info()).is_err(), "no reply at all");
    }

    fn bytes(s: &str) -> Reply {
        Reply::Bytes(s.as_bytes().to_vec())
    }

    /// A report is one transaction: the increments, the start time if absent, the hash's
    /// TTL, then the reporter's mark, the pruning of those gone and the roster's TTL.
    #[test]
    fn counters_are_added_in_one_transaction() {
        let queued = || bytes("QUEUED");
        let mut replies = alloc::vec![bytes("OK")];
        replies.extend((0..7).map(|_| queued()));
        replies.push(Reply::Array(alloc::vec![
            Reply::Integer(5),
            Reply::Integer(2),
            Reply::Integer(0),
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::Integer(0),
            Reply::Integer(1)
        ]));
        let t = tier(alloc::vec![replies]);
        let report = CounterReport {
            hash: "p:stats:{fleet}:totals",
            increments: &[("requests", 5), ("misses", 2)],
            if_absent: &[("since_ms", 1000)],
            hash_ttl_ms: 7_000,
            roster: "p:stats:{fleet}:instances",
            member: "00000000000000ab",
            at_ms: 1000,
            forget_before_ms: 400,
            roster_ttl_ms: 600,
        };
        block_on(t.add_counters(&report)).unwrap();
        assert_eq!(
            sent(&t),
            [
                "MULTI",
                "HINCRBY p:stats:{fleet}:totals requests 5",
                "HINCRBY p:stats:{fleet}:totals misses 2",
                "HSETNX p:stats:{fleet}:totals since_ms 1000",
                "PEXPIRE p:stats:{fleet}:totals 7000",
                "ZADD p:stats:{fleet}:instances 1000 00000000000000ab",
                "ZREMRANGEBYSCORE p:stats:{fleet}:instances -inf (400",
                "PEXPIRE p:stats:{fleet}:instances 600",
                "EXEC"
            ]
        );
    }

    /// The totals read back in one pipeline, whether the server answers in RESP2 (flat
    /// lists, scores as text) or RESP3 as redis-rs gives it (pairs, scores as doubles).
    #[test]
    fn counters_are_read_in_one_pipeline_in_resp2_and_resp3() {
        let pair = |a: Reply, b: Reply| Reply::Array(alloc::vec![a, b]);
        let t = tier(alloc::vec![
            alloc::vec![
                Reply::Array(alloc::vec![
                    bytes("requests"),
                    bytes("7"),
                    bytes("since_ms"),
                    bytes("10")
                ]),
                Reply::Integer(2),
                Reply::Array(alloc::vec![
                    bytes("b"),
                    bytes("2000"),
                    bytes("a"),
                    bytes("1500")
                ]),
            ],
            alloc::vec![
                Reply::Array(alloc::vec![pair(bytes("requests"), bytes("7"))]),
                Reply::Integer(1),
                Reply::Array(alloc::vec![pair(bytes("b"), bytes("2000.0"))]),
            ],
            alloc::vec![
                Reply::Array(alloc::vec![]),
                Reply::Integer(0),
                Reply::Array(alloc::vec![])
            ],
            alloc::vec![
                Reply::Array(alloc::vec![bytes("requests")]),
                Reply::Integer(0),
                Reply::Array(alloc::vec![])
            ],
        ]);
        let read = block_on(t.read_counters("h", "r", 1000, 100)).unwrap();
        assert_eq!(
            sent(&t),
            [
                "HGETALL h",
                "ZCOUNT r 1000 +inf",
                "ZREVRANGEBYSCORE r +inf 1000 WITHSCORES LIMIT 0 100"
            ]
        );
        assert_eq!(read.reporters, 2);
        assert_eq!(
            read.fields,
            [
                (String::from("requests"), b"7".to_vec()),
                (String::from("since_ms"), b"10".to_vec())
            ]
        );
        assert_eq!(
            read.newest,
            [(String::from("b"), 2000), (String::from("a"), 1500)]
        );
        let read = block_on(t.read_counters("h", "r", 1000, 100)).unwrap();
        assert_eq!(read.fields, [(String::from("requests"), b"7".to_vec())]);
        assert_eq!(read.newest, [(String::from("b"), 2000)]);
        let read = block_on(t.read_counters("h", "r", 1000, 100)).unwrap();
        assert_eq!(read, CounterTotals::default(), "nothing reported yet");
        assert!(
            block_on(t.read_counters("h", "r", 1000, 100)).is_err(),
            "a field without its value"
        );
    }

    #[test]
    fn stream_entries_skip_deleted_ones() {
        let entry = |id: &str, fields: Reply| {
            Reply::Array(alloc::vec![Reply::Bytes(id.as_bytes().to_vec()), fields])
        };
        let reply = Reply::Array(alloc::vec![
            entry(
                "1-0",
                Reply::Array(alloc::vec![
                    Reply::Bytes(b"method".to_vec()),
                    Reply::Bytes(b"PUT".to_vec())
                ])
            ),
            entry("2-0", Reply::Nil),
        ]);
        let entries = stream_entries(reply).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(
            entries[0].fields,
            [(String::from("method"), b"PUT".to_vec())]
        );
    }
}
