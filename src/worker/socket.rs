//! Redis connections for the Worker: `connect()` TCP sockets (`worker::Socket`), with TLS
//! when the URL is `rediss://`: the transport of `redis://` URLs ([`super::redis`]). Sockets
//! belong to the request that opened them, so the host makes one store per request (see
//! [`crate::engine::Engine::with_shared_tier`]).

use alloc::format;
use core::pin::Pin;
use core::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::engine::TierError;
use crate::shared_tier::resp::{Connect, RedisUrl};

/// Opens sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketConnect;

/// A socket that is closed when dropped. `worker::Socket` is not: a connection abandoned on
/// a timeout would otherwise stay open, holding one of the few simultaneous connections a
/// request may have, until the request ends.
pub struct ClosingSocket(Option<worker::Socket>);

impl Drop for ClosingSocket {
    fn drop(&mut self) {
        if let Some(mut socket) = self.0.take() {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = socket.close().await;
            });
        }
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "socket closed")
}

impl AsyncRead for ClosingSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(socket) => Pin::new(socket).poll_read(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for ClosingSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(socket) => Pin::new(socket).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(socket) => Pin::new(socket).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(socket) => Pin::new(socket).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Connect for SocketConnect {
    type Conn = ClosingSocket;

    async fn connect(&self, url: &RedisUrl) -> Result<ClosingSocket, TierError> {
        let transport = if url.tls {
            worker::SecureTransport::On
        } else {
            worker::SecureTransport::Off
        };
        let socket = worker::Socket::builder()
            .secure_transport(transport)
            .connect(url.host.as_str(), url.port)
            .map_err(|e| TierError(format!("connect: {e}")))?;
        let socket = ClosingSocket(Some(socket));
        // Surface a refused connection here, with its reason, not at the first write.
        if let Some(s) = &socket.0 {
            s.opened()
                .await
                .map_err(|e| TierError(format!("connect: {e}")))?;
        }
        Ok(socket)
    }
}
