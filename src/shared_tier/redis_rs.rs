//! The shared tier's transport natively: any Redis-compatible server through `redis-rs`'s
//! `ConnectionManager` (a multiplexed connection that reconnects by itself), chosen because
//! it is the maintained, widely used client with a tokio integration and keeps RESP parsing
//! out of this code. [`super::RedisTier`] builds the commands and reads the replies; this
//! only carries them.
//!
//! `rediss://` URLs connect over TLS (rustls): the server's certificate is verified against
//! Mozilla's roots and, when `redis_ca_file` is set, the CAs in it ([`super::tls`]), with
//! the host name checked. redis-rs's `#insecure` URL fragment is refused.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Command, RedisTier, Reply, Transport};
use crate::engine::TierError;
use crate::native::tls::{self, CaFile};

/// A Redis-compatible server, natively.
pub type RedisRsTier = RedisTier<RedisRs>;

/// redis-rs's connection manager, carrying commands.
#[derive(Clone)]
pub struct RedisRs {
    connection: ConnectionManager,
}

fn error(e: redis::RedisError) -> TierError {
    // Only the error kind and message: never the URL, which may hold a password. An I/O
    // error (a refused connection, a refused certificate) has no detail; its cause is the
    // socket's or rustls's own text, which never holds the URL either.
    let detail = match (e.detail(), std::error::Error::source(&e)) {
        (Some(detail), _) => detail.to_string(),
        (None, Some(cause)) if e.is_io_error() => tls::causes(cause),
        (None, _) => String::new(),
    };
    TierError(format!("{:?}: {detail}", e.kind()))
}

impl RedisTier<RedisRs> {
    /// Connects lazily to `url` (`redis://[user:pass@]host:port/db`, or `rediss://` for
    /// TLS): nothing is dialled until the first command, so a Redis that is down at start
    /// does not stop the cache.
    pub fn new(url: &str, command_timeout: Duration) -> Result<RedisRsTier, String> {
        Self::with_ca_file(url, command_timeout, None)
    }

    /// As [`RedisRsTier::new`]; a `rediss://` server may also present a certificate from a
    /// CA in `extra`.
    pub fn with_ca_file(
        url: &str,
        command_timeout: Duration,
        extra: Option<&CaFile>,
    ) -> Result<RedisRsTier, String> {
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
        Ok(RedisTier::over(RedisRs { connection }))
    }
}

impl Transport for RedisRs {
    async fn pipeline(&self, commands: &[Command<'_>]) -> Result<Vec<Reply>, TierError> {
        let mut pipe = redis::pipe();
        // Error replies come back in their place, as RESP's do, instead of failing it all.
        pipe.ignore_errors();
        for command in commands {
            let Some((name, args)) = command.split_first() else {
                continue;
            };
            let mut cmd = redis::cmd(&String::from_utf8_lossy(name));
            for arg in args {
                cmd.arg(*arg);
            }
            pipe.add_command(cmd);
        }
        let mut c = self.connection.clone();
        let values: Vec<redis::Value> = pipe.query_async(&mut c).await.map_err(error)?;
        Ok(values.into_iter().map(reply).collect())
    }
}

/// A redis-rs value as a [`Reply`]. A `?protocol=resp3` URL makes redis-rs speak RESP3,
/// whose richer types are read as RESP2 gives them: a set or a push as an array, a map as
/// an array of `[key, value]` pairs (as `XREADGROUP` answers in RESP2), a verbatim
/// string or a double as a string, a boolean as an integer.
fn reply(value: redis::Value) -> Reply {
    use redis::Value;
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Integer(n),
        Value::BulkString(b) => Reply::Bytes(b),
        Value::SimpleString(s) => Reply::Bytes(s.into_bytes()),
        Value::Okay => Reply::Bytes(b"OK".to_vec()),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            Reply::Array(items.into_iter().map(reply).collect())
        }
        Value::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .map(|(k, v)| Reply::Array(vec![reply(k), reply(v)]))
                .collect(),
        ),
        Value::Attribute { data, .. } => reply(*data),
        Value::VerbatimString { text, .. } => Reply::Bytes(text.into_bytes()),
        Value::Double(d) => Reply::Bytes(d.to_string().into_bytes()),
        Value::Boolean(b) => Reply::Integer(i64::from(b)),
        Value::ServerError(e) => Reply::Error(match e.details() {
            Some(details) => format!("{} {details}", e.code()),
            None => e.code().to_string(),
        }),
        other => Reply::Error(format!("unexpected reply {other:?}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    /// RESP3's types read as RESP2 gives them, so the one decoder in `super` serves both.
    #[test]
    fn resp3_values_read_as_their_resp2_shapes() {
        assert_eq!(
            reply(Value::Set(vec![Value::BulkString(b"a".to_vec())])),
            Reply::Array(vec![Reply::Bytes(b"a".to_vec())])
        );
        assert_eq!(
            reply(Value::Map(vec![(
                Value::BulkString(b"stream".to_vec()),
                Value::Array(vec![])
            )])),
            Reply::Array(vec![Reply::Array(vec![
                Reply::Bytes(b"stream".to_vec()),
                Reply::Array(vec![])
            ])])
        );
        assert_eq!(
            reply(Value::VerbatimString {
                format: redis::VerbatimFormat::Text,
                text: String::from("redis_version:7.2.4"),
            }),
            Reply::Bytes(b"redis_version:7.2.4".to_vec())
        );
        assert_eq!(reply(Value::Boolean(true)), Reply::Integer(1));
        assert_eq!(reply(Value::Okay), Reply::Bytes(b"OK".to_vec()));
    }
}
