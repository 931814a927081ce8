//! The shared tier natively: any Redis-compatible server through `redis-rs`'s
//! `ConnectionManager` (a multiplexed connection that reconnects by itself), chosen because
//! it is the maintained, widely used client with a tokio integration and keeps RESP parsing
//! out of this code. The engine decides keys and values; this only runs commands.
//!
//! `rediss://` URLs connect over TLS (rustls): the server's certificate is verified against
//! Mozilla's roots and, when `redis_ca_file` is set, the CAs in it ([`super::tls`]), with
//! the host name checked. redis-rs's `#insecure` URL fragment is refused.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::tls::{self, CaFile};
use crate::engine::{PendingEntry, SharedStore, StoreError, StreamEntry, DELETE_IF_EQUALS_SCRIPT};

/// A Redis-compatible server.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
}

fn error(e: redis::RedisError) -> StoreError {
    // Only the error kind and message: never the URL, which may hold a password. An I/O
    // error (a refused connection, a refused certificate) has no detail; its cause is the
    // socket's or rustls's own text, which never holds the URL either.
    let detail = match (e.detail(), std::error::Error::source(&e)) {
        (Some(detail), _) => detail.to_string(),
        (None, Some(cause)) if e.is_io_error() => tls::causes(cause),
        (None, _) => String::new(),
    };
    StoreError(format!("{:?}: {detail}", e.kind()))
}

impl RedisStore {
    /// Connects lazily to `url` (`redis://[user:pass@]host:port/db`, or `rediss://` for
    /// TLS): nothing is dialled until the first command, so a Redis that is down at start
    /// does not stop the cache.
    pub fn new(url: &str, command_timeout: Duration) -> Result<Self, String> {
        Self::with_ca_file(url, command_timeout, None)
    }

    /// As [`RedisStore::new`]; a `rediss://` server may also present a certificate from a
    /// CA in `extra`.
    pub fn with_ca_file(
        url: &str,
        command_timeout: Duration,
        extra: Option<&CaFile>,
    ) -> Result<Self, String> {
        let client = tls_client(url, extra)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(command_timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(command_timeout.max(Duration::from_millis(100))));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            format!(
                "cannot set up the redis connection: {}",
                e.kind_description()
            )
        })?;
        Ok(RedisStore { connection })
    }
}

/// The client for `url`: as redis-rs opens it for `redis://`; for `rediss://`, with the
/// ring provider installed (redis-rs takes the process default) and `extra`'s CAs added.
fn tls_client(url: &str, extra: Option<&CaFile>) -> Result<redis::Client, String> {
    let invalid = |e: redis::RedisError| format!("invalid redis URL: {}", e.kind_description());
    let client = redis::Client::open(url).map_err(invalid)?;
    let redis::ConnectionAddr::TcpTls { insecure, .. } = client.get_connection_info().addr() else {
        return match extra {
            Some(_) => Err("redis_ca_file is set but the URL is not rediss:// (TLS)".into()),
            None => Ok(client),
        };
    };
    if *insecure {
        return Err(
            "certificate verification cannot be turned off (#insecure in the redis URL)".into(),
        );
    }
    tls::install_default_provider();
    match extra {
        None => Ok(client),
        Some(file) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(tls::redis_roots_pem(file)),
            },
        )
        .map_err(|e| {
            format!(
                "cannot use {} for rediss://: {}",
                file.path().display(),
                e.kind_description()
            )
        }),
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl SharedStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.connection.clone();
        c.get(key).await.map_err(error)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.connection.clone();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut c)
            .await
            .map_err(error)
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
        let mut c = self.connection.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut c)
            .await
            .map_err(error)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut c = self.connection.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut c)
            .await
            .map_err(error)?;
        Ok(reply.is_some())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = self.connection.clone();
        redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .map_err(error)
    }

    async fn increment(&self, key: &str) -> Result<i64, StoreError> {
        let mut c = self.connection.clone();
        c.incr(key, 1).await.map_err(error)
    }

    async fn add_to_set(&self, set: &str, member: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let mut c = self.connection.clone();
        redis::pipe()
            .cmd("SADD")
            .arg(set)
            .arg(member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(set)
            .arg(ttl_ms.max(1))
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(set)
            .arg(ttl_ms.max(1))
            .arg("NX")
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(error)
    }

    async fn take_set(&self, set: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.connection.clone();
        let (members,): (Vec<String>,) = redis::pipe()
            .atomic()
            .cmd("SMEMBERS")
            .arg(set)
            .cmd("DEL")
            .arg(set)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(error)?;
        Ok(members)
    }

    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let mut c = self.connection.clone();
        let deleted: i64 = redis::cmd("EVAL")
            .arg(DELETE_IF_EQUALS_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(value)
            .query_async(&mut c)
            .await
            .map_err(error)?;
        Ok(deleted == 1)
    }

    async fn info(&self) -> Result<String, StoreError> {
        let mut c = self.connection.clone();
        redis::cmd("INFO").query_async(&mut c).await.map_err(error)
    }

    async fn stream_add(
        &self,
        stream: &str,
        max_len: Option<u64>,
        fields: &[(&str, &[u8])],
    ) -> Result<String, StoreError> {
        let mut c = self.connection.clone();
        let mut command = redis::cmd("XADD");
        command.arg(stream);
        if let Some(n) = max_len {
            command.arg("MAXLEN").arg(n);
        }
        command.arg("*");
        for (name, value) in fields {
            command.arg(*name).arg(*value);
        }
        command.query_async(&mut c).await.map_err(error)
    }

    async fn stream_create_group(&self, stream: &str, group: &str) -> Result<(), StoreError> {
        let mut c = self.connection.clone();
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(error(e)),
            _ => Ok(()),
        }
    }

    async fn stream_len(&self, stream: &str) -> Result<u64, StoreError> {
        let mut c = self.connection.clone();
        redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut c)
            .await
            .map_err(error)
    }

    async fn stream_read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let mut c = self.connection.clone();
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut c)
            .await
            .map_err(error)?;
        stream_value::read_reply(reply)
    }

    async fn stream_pending(
        &self,
        stream: &str,
        group: &str,
        count: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let mut c = self.connection.clone();
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(count.max(1))
            .query_async(&mut c)
            .await
            .map_err(error)?;
        stream_value::pending(reply)
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
        let mut c = self.connection.clone();
        let reply: redis::Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(ids)
            .query_async(&mut c)
            .await
            .map_err(error)?;
        stream_value::entries(reply)
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
        let mut c = self.connection.clone();
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(stream)
            .arg(ids)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(error)
    }
}

/// Stream replies as `redis::Value`s, read into the engine's types.
mod stream_value {
    use redis::Value;

    use crate::engine::{PendingEntry, StoreError, StreamEntry};

    fn unexpected(what: &str) -> StoreError {
        StoreError(format!("unexpected reply to {what}"))
    }

    fn text(value: Value, what: &str) -> Result<String, StoreError> {
        match value {
            Value::BulkString(b) => String::from_utf8(b).map_err(|_| unexpected(what)),
            Value::SimpleString(s) => Ok(s),
            _ => Err(unexpected(what)),
        }
    }

    fn number(value: Value, what: &str) -> Result<u64, StoreError> {
        match value {
            Value::Int(n) => u64::try_from(n).map_err(|_| unexpected(what)),
            _ => Err(unexpected(what)),
        }
    }

    /// `[[id, [field, value, …]], …]`; entries deleted meanwhile (a nil in place of the
    /// fields, before Redis 7) are left out.
    pub fn entries(value: Value) -> Result<Vec<StreamEntry>, StoreError> {
        let Value::Array(items) = value else {
            return Err(unexpected("a stream read"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Value::Array(pair) = item else {
                continue;
            };
            let mut pair = pair.into_iter();
            let (Some(id), Some(Value::Array(flat))) = (pair.next(), pair.next()) else {
                continue;
            };
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                // Whatever another writer put there is returned, for the engine to judge.
                let bytes = |v: Value| match v {
                    Value::BulkString(b) => Ok(b),
                    Value::SimpleString(s) => Ok(s.into_bytes()),
                    _ => Err(unexpected("a stream read")),
                };
                let name = String::from_utf8_lossy(&bytes(name)?).into_owned();
                fields.push((name, bytes(value)?));
            }
            out.push(StreamEntry {
                id: text(id, "a stream read")?,
                fields,
            });
        }
        Ok(out)
    }

    /// `XREADGROUP`: nil when nothing is new, else `[[stream, entries]]`.
    pub fn read_reply(value: Value) -> Result<Vec<StreamEntry>, StoreError> {
        match value {
            Value::Nil => Ok(Vec::new()),
            Value::Array(streams) => match streams.into_iter().next() {
                None => Ok(Vec::new()),
                Some(Value::Array(pair)) => match pair.into_iter().nth(1) {
                    Some(list) => entries(list),
                    None => Err(unexpected("XREADGROUP")),
                },
                Some(_) => Err(unexpected("XREADGROUP")),
            },
            // RESP3 servers answer with a map of stream name to entries.
            Value::Map(streams) => match streams.into_iter().next() {
                None => Ok(Vec::new()),
                Some((_, list)) => entries(list),
            },
            _ => Err(unexpected("XREADGROUP")),
        }
    }

    /// `XPENDING` (extended form): `[[id, consumer, idle ms, deliveries], …]`.
    pub fn pending(value: Value) -> Result<Vec<PendingEntry>, StoreError> {
        let Value::Array(items) = value else {
            return Err(unexpected("XPENDING"));
        };
        items
            .into_iter()
            .map(|item| {
                let Value::Array(parts) = item else {
                    return Err(unexpected("XPENDING"));
                };
                let mut parts = parts.into_iter();
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(id), Some(_consumer), Some(idle), Some(deliveries)) => Ok(PendingEntry {
                        id: text(id, "XPENDING")?,
                        idle_ms: number(idle, "XPENDING")?,
                        deliveries: number(deliveries, "XPENDING")?,
                    }),
                    _ => Err(unexpected("XPENDING")),
                }
            })
            .collect()
    }
}
