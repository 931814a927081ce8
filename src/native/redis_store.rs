//! The shared tier natively: any Redis-compatible server through `redis-rs`'s
//! `ConnectionManager` (a multiplexed connection that reconnects by itself), chosen because
//! it is the maintained, widely used client with a tokio integration and keeps RESP parsing
//! out of this code. The engine decides keys and values; this only runs commands.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use crate::engine::{SharedStore, StoreError};

/// A Redis-compatible server.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
}

fn error(e: redis::RedisError) -> StoreError {
    // Only the error kind and message: never the URL, which may hold a password.
    StoreError(format!("{:?}: {}", e.kind(), e.detail().unwrap_or("")))
}

impl RedisStore {
    /// Connects lazily to `url` (`redis://[user:pass@]host:port/db`): nothing is dialled
    /// until the first command, so a Redis that is down at start does not stop the cache.
    pub fn new(url: &str, command_timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("invalid redis URL: {}", e.kind_description()))?;
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
