//! Redis connections for the Worker: `connect()` TCP sockets (`worker::Socket`), with TLS
//! when the URL is `rediss://`. Sockets belong to the request that opened them, so the host
//! makes one [`WorkerRedis`] store per request (see [`crate::engine::Engine::with_store`]).

use alloc::format;

use crate::engine::StoreError;
use crate::resp::{Connect, RedisUrl, RespStore};

/// Opens `worker::Socket`s.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketConnect;

/// The Worker's shared tier.
pub type WorkerRedis = RespStore<SocketConnect>;

impl Connect for SocketConnect {
    type Conn = worker::Socket;

    async fn connect(&self, url: &RedisUrl) -> Result<worker::Socket, StoreError> {
        let transport = if url.tls {
            worker::SecureTransport::On
        } else {
            worker::SecureTransport::Off
        };
        let socket = worker::Socket::builder()
            .secure_transport(transport)
            .connect(url.host.as_str(), url.port)
            .map_err(|e| StoreError(format!("connect: {e}")))?;
        // Surface a refused connection here, with its reason, not at the first write.
        socket
            .opened()
            .await
            .map_err(|e| StoreError(format!("connect: {e}")))?;
        Ok(socket)
    }
}
