//! A TCP proxy that puts a network between a client and a server on loopback: every chunk
//! is forwarded half a round trip late in each direction (order kept, throughput not
//! limited), and a connection's first bytes from the client one more round trip late, for
//! the TCP handshake a remote server would cost before them (TLS is not modelled). The
//! round trip can be changed while it runs. For the benchmark of the Worker's Redis
//! transports (`benches/redis_transport.sh`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// A delaying proxy on 127.0.0.1 in front of `target`.
pub struct DelayProxy {
    pub addr: SocketAddr,
    rtt_ms: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DelayProxy {
    /// Starts one adding `rtt_ms` to each round trip to `target`.
    pub async fn start(target: SocketAddr, rtt_ms: u64) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let rtt = Arc::new(AtomicU64::new(rtt_ms));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rtt_c, count) = (rtt.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let rtt = rtt_c.clone();
                open.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let handshake = rtt.load(Ordering::SeqCst);
                    tokio::join!(
                        pipe(client_read, server_write, rtt.clone(), handshake),
                        pipe(server_read, client_write, rtt, 0),
                    );
                });
                while open.try_join_next().is_some() {}
            }
        });
        DelayProxy {
            addr,
            rtt_ms: rtt,
            connections,
            task,
        }
    }

    /// Sets the added round trip.
    pub fn set_rtt_ms(&self, rtt_ms: u64) {
        self.rtt_ms.store(rtt_ms, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk half a round trip after it was read (plus `first_extra_ms`
/// for the first one).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rtt_ms: Arc<AtomicU64>,
    first_extra_ms: u64,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut extra = first_extra_ms;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let delay = rtt_ms.load(Ordering::SeqCst) / 2 + std::mem::take(&mut extra);
            let due = Instant::now() + Duration::from_millis(delay);
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
