//! The shared tier's transport over RESP (the Redis protocol) for hosts without a Redis client
//! library: the Worker, whose only way out is a `connect()` socket. Frames are encoded and
//! decoded by the `redis-protocol` crate; this module only pools connections and pipelines
//! commands ([`super::RedisTier`] builds them and reads the replies). Generic over the byte
//! stream, so the same code runs on `worker::Socket` at the edge and on a tokio `TcpStream`
//! in the native tests.
//!
//! Timeouts are the engine's ([`crate::engine`] bounds every shared-tier call): a command
//! abandoned mid-reply drops its connection, since it was taken out of the pool for the call.
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::RefCell;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use super::url::RedisUrl;
use super::{Command, RedisTier, Reply, Transport};
use crate::engine::TierError;

/// Largest reply accepted unless set with [`RespTier::with_reply_limit`].
const DEFAULT_MAX_REPLY_BYTES: usize = 64 << 20;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// Opens byte streams to the server.
pub trait Connect {
    /// The stream type.
    type Conn: AsyncRead + AsyncWrite + Unpin;
    /// Opens a new connection (TLS included when the URL asks for it).
    async fn connect(&self, url: &RedisUrl) -> Result<Self::Conn, TierError>;
}

/// A Redis-compatible shared tier spoken to in RESP2 over connections from `C`.
pub type RespTier<C> = RedisTier<Resp<C>>;

/// RESP2 over connections from `C`, pooled.
pub struct Resp<C: Connect> {
    url: RedisUrl,
    connector: C,
    max_reply_bytes: usize,
    idle: RefCell<Vec<C::Conn>>,
}

impl<C: Connect> RespTier<C> {
    /// A store for `url`; nothing is dialled until the first command.
    pub fn new(url: RedisUrl, connector: C) -> Self {
        RedisTier::over(Resp {
            url,
            connector,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            idle: RefCell::new(Vec::new()),
        })
    }

    /// Refuses (as an error, dropping the connection) replies larger than `bytes`, so one
    /// oversized value cannot take a small host's memory.
    pub fn with_reply_limit(self, bytes: usize) -> Self {
        let mut resp = self.into_transport();
        resp.max_reply_bytes = bytes;
        RedisTier::over(resp)
    }
}

impl<C: Connect> Transport for Resp<C> {
    /// Runs `commands` as one pipeline (one write, one read loop). After an error reply
    /// (`-ERR …`) the connection stays usable and goes back to the pool; an I/O or protocol
    /// error drops it.
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
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
        Ok(replies.into_iter().map(reply).collect())
    }
}

impl<C: Connect> Resp<C> {
    /// Dials and authenticates a new connection (`AUTH`, `SELECT` pipelined).
    async fn open(&self) -> Result<C::Conn, TierError> {
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
            for frame in exchange(&mut conn, &hello, self.max_reply_bytes).await? {
                // The reply to a failed AUTH names no secret; pass it on.
                if let OwnedFrame::Error(message) = frame {
                    return Err(TierError(format!("handshake: redis: {message}")));
                }
            }
        }
        Ok(conn)
    }
}

/// Writes `commands` and reads exactly one frame per command.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    commands: &[Command<'_>],
    max_reply_bytes: usize,
) -> Result<Vec<OwnedFrame>, TierError> {
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
            .map_err(|e| TierError(format!("encoding a command: {e:?}")))?;
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
            Err(e) => return Err(TierError(format!("malformed reply: {e:?}"))),
        }
        if buf.len() - consumed > max_reply_bytes {
            return Err(TierError("reply too large".to_string()));
        }
        let n = conn.read(&mut chunk).await.map_err(io_error)?;
        if n == 0 {
            return Err(TierError("connection closed by the server".to_string()));
        }
        if consumed > 0 && consumed == buf.len() {
            buf.clear();
            consumed = 0;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if consumed != buf.len() {
        return Err(TierError("unexpected extra reply data".to_string()));
    }
    Ok(replies)
}

fn io_error(e: std::io::Error) -> TierError {
    TierError(format!("i/o: {e}"))
}

/// A RESP2 frame as a [`Reply`].
fn reply(frame: OwnedFrame) -> Reply {
    match frame {
        OwnedFrame::Null => Reply::Nil,
        OwnedFrame::Integer(n) => Reply::Integer(n),
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Reply::Bytes(b),
        OwnedFrame::Array(items) => Reply::Array(items.into_iter().map(reply).collect()),
        OwnedFrame::Error(message) => Reply::Error(message.to_string()),
    }
}
