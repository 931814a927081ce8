//! The shared tier over RESP (the Redis protocol) for hosts without a Redis client library:
//! the Worker, whose only way out is a `connect()` socket. Frames are encoded and decoded by
//! the `redis-protocol` crate; this module only pools connections, pipelines commands and
//! maps replies onto [`SharedStore`]. Generic over the byte stream, so the same code runs on
//! `worker::Socket` at the edge and on a tokio `TcpStream` in the native tests.
//!
//! Timeouts are the engine's ([`crate::engine`] bounds every shared-tier call): a command
//! abandoned mid-reply drops its connection, since it was taken out of the pool for the call.
#![allow(async_fn_in_trait)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::{PendingEntry, SharedStore, StoreError, StreamEntry, DELETE_IF_EQUALS_SCRIPT};
pub use crate::redis_url::RedisUrl;

/// Largest reply accepted unless set with [`RespStore::with_reply_limit`].
const DEFAULT_MAX_REPLY_BYTES: usize = 64 << 20;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// Opens byte streams to the server.
pub trait Connect {
    /// The stream type.
    type Conn: AsyncRead + AsyncWrite + Unpin;
    /// Opens a new connection (TLS included when the URL asks for it).
    async fn connect(&self, url: &RedisUrl) -> Result<Self::Conn, StoreError>;
}

/// A Redis-compatible shared tier spoken to in RESP2 over connections from `C`.
pub struct RespStore<C: Connect> {
    url: RedisUrl,
    connector: C,
    max_reply_bytes: usize,
    idle: RefCell<Vec<C::Conn>>,
}

/// One command: its arguments, the name first.
type Command<'a> = Vec<&'a [u8]>;

impl<C: Connect> RespStore<C> {
    /// A store for `url`; nothing is dialled until the first command.
    pub fn new(url: RedisUrl, connector: C) -> Self {
        RespStore {
            url,
            connector,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// Refuses (as an error, dropping the connection) replies larger than `bytes`, so one
    /// oversized value cannot take a small host's memory.
    pub fn with_reply_limit(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// Runs `commands` as one pipeline (one write, one read loop) and returns one reply per
    /// command. A Redis error reply (`-ERR …`) becomes a [`StoreError`]; the connection stays
    /// usable and goes back to the pool. An I/O or protocol error drops the connection.
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<OwnedFrame>, StoreError> {
        let pooled = self.idle.borrow_mut().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.open().await?,
        };
        let replies = exchange(&mut conn, commands, self.max_reply_bytes).await?;
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        drop(idle);
        replies.into_iter().map(reply_ok).collect()
    }

    /// Dials and authenticates a new connection (`AUTH`, `SELECT` pipelined).
    async fn open(&self) -> Result<C::Conn, StoreError> {
        let mut conn = self.connector.connect(&self.url).await?;
        let db = self.url.db.to_string();
        let mut hello: Vec<Command<'_>> = Vec::new();
        match (&self.url.username, &self.url.password) {
            (Some(user), Some(pass)) => {
                hello.push(alloc::vec![b"AUTH", user.as_bytes(), pass.as_bytes()])
            }
            (None, Some(pass)) => hello.push(alloc::vec![b"AUTH", pass.as_bytes()]),
            _ => {}
        }
        if self.url.db != 0 {
            hello.push(alloc::vec![b"SELECT", db.as_bytes()]);
        }
        if !hello.is_empty() {
            for reply in exchange(&mut conn, &hello, self.max_reply_bytes).await? {
                // The reply to a failed AUTH names no secret; pass it on.
                reply_ok(reply).map_err(|e| StoreError(format!("handshake: {}", e.0)))?;
            }
        }
        Ok(conn)
    }

    async fn one(&self, command: Command<'_>) -> Result<OwnedFrame, StoreError> {
        let mut replies = self.pipeline(&[command]).await?;
        replies
            .pop()
            .ok_or_else(|| StoreError("no reply".to_string()))
    }
}

/// Writes `commands` and reads exactly one frame per command.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    commands: &[Command<'_>],
    max_reply_bytes: usize,
) -> Result<Vec<OwnedFrame>, StoreError> {
    let mut out = Vec::new();
    for command in commands {
        let frame = OwnedFrame::Array(
            command
                .iter()
                .map(|arg| OwnedFrame::BulkString(arg.to_vec()))
                .collect(),
        );
        let start = out.len();
        out.resize(start + frame.encode_len(false), 0);
        encode(&mut out[start..], &frame, false)
            .map_err(|e| StoreError(format!("encoding a command: {e:?}")))?;
    }
    conn.write_all(&out).await.map_err(io_error)?;
    conn.flush().await.map_err(io_error)?;

    let mut replies = Vec::with_capacity(commands.len());
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut consumed = 0;
    let mut chunk = alloc::vec![0u8; 16 * 1024];
    while replies.len() < commands.len() {
        match decode(&buf[consumed..]) {
            Ok(Some((frame, used))) => {
                replies.push(frame);
                consumed += used;
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(StoreError(format!("malformed reply: {e:?}"))),
        }
        if buf.len() - consumed > max_reply_bytes {
            return Err(StoreError("reply too large".to_string()));
        }
        let n = conn.read(&mut chunk).await.map_err(io_error)?;
        if n == 0 {
            return Err(StoreError("connection closed by the server".to_string()));
        }
        if consumed > 0 && consumed == buf.len() {
            buf.clear();
            consumed = 0;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if consumed != buf.len() {
        return Err(StoreError("unexpected extra reply data".to_string()));
    }
    Ok(replies)
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError(format!("i/o: {e}"))
}

fn reply_ok(frame: OwnedFrame) -> Result<OwnedFrame, StoreError> {
    match frame {
        OwnedFrame::Error(message) => Err(StoreError(format!("redis: {message}"))),
        other => Ok(other),
    }
}

/// A reply of the wrong shape; an error reply (e.g. inside `EXEC`'s results) keeps the
/// server's message.
fn unexpected(what: &str, frame: &OwnedFrame) -> StoreError {
    match frame {
        OwnedFrame::Error(message) => StoreError(format!("{what}: redis: {message}")),
        other => StoreError(format!("unexpected reply to {what}: {:?}", other.kind())),
    }
}

fn bulk(frame: OwnedFrame, what: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Ok(Some(b)),
        OwnedFrame::Null => Ok(None),
        other => Err(unexpected(what, &other)),
    }
}

fn ttl_arg(ttl_ms: u64) -> String {
    ttl_ms.max(1).to_string()
}

impl<C: Connect> SharedStore for RespStore<C> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        bulk(self.one(alloc::vec![b"GET", key.as_bytes()]).await?, "GET")
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command: Command<'_> = alloc::vec![b"MGET"];
        command.extend(keys.iter().map(|k| k.as_bytes()));
        match self.one(command).await? {
            OwnedFrame::Array(items) if items.len() == keys.len() => {
                items.into_iter().map(|f| bulk(f, "MGET")).collect()
            }
            other => Err(unexpected("MGET", &other)),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
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

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let ttl = ttl_arg(ttl_ms);
        let command = alloc::vec![
            b"SET" as &[u8],
            key.as_bytes(),
            value,
            b"NX",
            b"PX",
            ttl.as_bytes()
        ];
        Ok(!matches!(self.one(command).await?, OwnedFrame::Null))
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut command: Command<'_> = alloc::vec![b"DEL"];
        command.extend(keys.iter().map(|k| k.as_bytes()));
        self.one(command).await.map(|_| ())
    }

    async fn increment(&self, key: &str) -> Result<i64, StoreError> {
        match self.one(alloc::vec![b"INCR", key.as_bytes()]).await? {
            OwnedFrame::Integer(n) => Ok(n),
            other => Err(unexpected("INCR", &other)),
        }
    }

    async fn add_to_set(&self, set: &str, member: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let ttl = ttl_arg(ttl_ms);
        let (set, member, ttl) = (set.as_bytes(), member.as_bytes(), ttl.as_bytes());
        // Extend the set's TTL only (GT), or give it one when it has none (NX).
        self.pipeline(&[
            alloc::vec![b"SADD", set, member],
            alloc::vec![b"PEXPIRE", set, ttl, b"GT"],
            alloc::vec![b"PEXPIRE", set, ttl, b"NX"],
        ])
        .await
        .map(|_| ())
    }

    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let command = alloc::vec![
            b"EVAL".as_slice(),
            DELETE_IF_EQUALS_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            value,
        ];
        match self.one(command).await? {
            OwnedFrame::Integer(n) => Ok(n == 1),
            other => Err(unexpected("EVAL", &other)),
        }
    }

    async fn info(&self) -> Result<String, StoreError> {
        let text = bulk(self.one(alloc::vec![b"INFO".as_slice()]).await?, "INFO")?;
        Ok(String::from_utf8_lossy(&text.unwrap_or_default()).into_owned())
    }

    async fn take_set(&self, set: &str) -> Result<Vec<String>, StoreError> {
        let set = set.as_bytes();
        let mut replies = self
            .pipeline(&[
                alloc::vec![b"MULTI"],
                alloc::vec![b"SMEMBERS", set],
                alloc::vec![b"DEL", set],
                alloc::vec![b"EXEC"],
            ])
            .await?;
        let exec = replies
            .pop()
            .ok_or_else(|| StoreError("no reply to EXEC".to_string()))?;
        let members = match exec {
            OwnedFrame::Array(mut results) if results.len() == 2 => results.swap_remove(0),
            other => return Err(unexpected("EXEC", &other)),
        };
        match members {
            OwnedFrame::Array(items) => items
                .into_iter()
                .map(|f| match bulk(f, "SMEMBERS")? {
                    Some(b) => String::from_utf8(b)
                        .map_err(|_| StoreError("a set member is not UTF-8".to_string())),
                    None => Err(StoreError("null set member".to_string())),
                })
                .collect(),
            other => Err(unexpected("SMEMBERS", &other)),
        }
    }

    async fn stream_add(
        &self,
        stream: &str,
        max_len: Option<u64>,
        fields: &[(&str, &[u8])],
    ) -> Result<String, StoreError> {
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
        match bulk(self.one(command).await?, "XADD")? {
            Some(id) => String::from_utf8(id).map_err(|_| StoreError("XADD: bad ID".to_string())),
            None => Err(StoreError("XADD: no ID".to_string())),
        }
    }

    async fn stream_create_group(&self, stream: &str, group: &str) -> Result<(), StoreError> {
        let command = alloc::vec![
            b"XGROUP" as &[u8],
            b"CREATE",
            stream.as_bytes(),
            group.as_bytes(),
            b"0",
            b"MKSTREAM"
        ];
        match self.one(command).await {
            Err(e) if !e.0.starts_with("redis: BUSYGROUP") => Err(e),
            _ => Ok(()),
        }
    }

    async fn stream_len(&self, stream: &str) -> Result<u64, StoreError> {
        match self.one(alloc::vec![b"XLEN", stream.as_bytes()]).await? {
            OwnedFrame::Integer(n) => {
                u64::try_from(n).map_err(|_| unexpected("XLEN", &OwnedFrame::Integer(n)))
            }
            other => Err(unexpected("XLEN", &other)),
        }
    }

    async fn stream_read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
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
            OwnedFrame::Null => Ok(Vec::new()),
            OwnedFrame::Array(streams) => match streams.into_iter().next() {
                None => Ok(Vec::new()),
                Some(OwnedFrame::Array(pair)) if pair.len() == 2 => pair
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
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let count = count.max(1).to_string();
        let command = alloc::vec![
            b"XPENDING" as &[u8],
            stream.as_bytes(),
            group.as_bytes(),
            b"-",
            b"+",
            count.as_bytes()
        ];
        let OwnedFrame::Array(items) = self.one(command).await? else {
            return Err(StoreError("unexpected reply to XPENDING".to_string()));
        };
        items
            .into_iter()
            .map(|item| match item {
                OwnedFrame::Array(parts) if parts.len() == 4 => {
                    let mut parts = parts.into_iter();
                    let id = parts.next().map(|f| text(f, "XPENDING")).transpose()?;
                    let _consumer = parts.next();
                    let idle = parts.next().map(|f| count_of(f, "XPENDING")).transpose()?;
                    let deliveries = parts.next().map(|f| count_of(f, "XPENDING")).transpose()?;
                    match (id, idle, deliveries) {
                        (Some(id), Some(idle_ms), Some(deliveries)) => Ok(PendingEntry {
                            id,
                            idle_ms,
                            deliveries,
                        }),
                        _ => Err(StoreError("unexpected reply to XPENDING".to_string())),
                    }
                }
                other => Err(unexpected("XPENDING", &other)),
            })
            .collect()
    }

    async fn stream_claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        ids: &[String],
    ) -> Result<Vec<StreamEntry>, StoreError> {
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
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut ack: Command<'_> = alloc::vec![b"XACK", stream.as_bytes(), group.as_bytes()];
        ack.extend(ids.iter().map(|id| id.as_bytes()));
        let mut del: Command<'_> = alloc::vec![b"XDEL", stream.as_bytes()];
        del.extend(ids.iter().map(|id| id.as_bytes()));
        let mut replies = self
            .pipeline(&[alloc::vec![b"MULTI"], ack, del, alloc::vec![b"EXEC"]])
            .await?;
        match replies.pop() {
            Some(OwnedFrame::Array(results)) if results.len() == 2 => {
                for result in results {
                    reply_ok(result)?;
                }
                Ok(())
            }
            Some(other) => Err(unexpected("EXEC", &other)),
            None => Err(StoreError("no reply to EXEC".to_string())),
        }
    }
}

fn text(frame: OwnedFrame, what: &str) -> Result<String, StoreError> {
    match bulk(frame, what)? {
        Some(bytes) => {
            String::from_utf8(bytes).map_err(|_| StoreError(format!("{what}: not UTF-8")))
        }
        None => Err(StoreError(format!("{what}: unexpected null"))),
    }
}

fn count_of(frame: OwnedFrame, what: &str) -> Result<u64, StoreError> {
    match frame {
        OwnedFrame::Integer(n) => {
            u64::try_from(n).map_err(|_| StoreError(format!("{what}: negative count")))
        }
        other => Err(unexpected(what, &other)),
    }
}

/// Stream entries, `[[id, [field, value, …]], …]`; entries deleted meanwhile (a null in
/// place of the fields, before Redis 7) are left out.
fn stream_entries(frame: OwnedFrame) -> Result<Vec<StreamEntry>, StoreError> {
    let OwnedFrame::Array(items) = frame else {
        return Err(unexpected("a stream read", &frame));
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let OwnedFrame::Array(pair) = item else {
            continue;
        };
        let mut pair = pair.into_iter();
        let (Some(id), Some(OwnedFrame::Array(flat))) = (pair.next(), pair.next()) else {
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
