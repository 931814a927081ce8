//! `edgecache serve` in-process for the tests that drive the native host over real sockets
//! (`tests/native.rs`, `tests/hostile.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use edgecache::engine::EngineConfig;
use edgecache::native::connections::{self, ConnectionLimits, Resolved};
use edgecache::native::server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Frontend, Origin, RedisServer, TOKEN};

/// The configuration every test starts from: admin enabled, purges polled every 100 ms.
pub fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.admin.token = Some(TOKEN.into());
    config.l2.purge_poll_ms = 100;
    config
}

/// One `edgecache serve` in-process, on 127.0.0.1:0.
pub struct Cache {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<()>>,
}

impl Cache {
    /// Builds the engine, binds, starts the purge sync and the stats reports when Redis is
    /// used (as `edgecache serve` does) and runs the server until [`Cache::begin_shutdown`] (grace: 5 s).
    pub async fn start(
        config: EngineConfig,
        origin: &Origin,
        redis: Option<&RedisServer>,
    ) -> Cache {
        // As `edgecache serve` does: the storms some tests send need more than 1,024 files.
        let limits = ConnectionLimits::default().resolve(connections::raise_open_file_limit());
        Cache::start_with_limits(config, origin, redis, limits).await
    }

    /// [`Cache::start`] with these client connection limits.
    pub async fn start_with_limits(
        config: EngineConfig,
        origin: &Origin,
        redis: Option<&RedisServer>,
        limits: Resolved,
    ) -> Cache {
        let redis_url = redis.map(RedisServer::url);
        let engine = server::build_engine(config, &origin.url(), redis_url.as_deref())
            .expect("build_engine");
        let listener = server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        if redis.is_some() {
            server::spawn_purge_sync(engine.clone());
            server::spawn_stats_report(engine.clone());
        }
        server::spawn_write_behind_flush(engine.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(
            engine,
            listener,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
            limits,
        ));
        Cache {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Fires the shutdown future.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Frontend for Cache {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
