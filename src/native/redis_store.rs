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
use crate::engine::{SharedStore, StoreError};

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
}
