//! A local stand-in for Cloudflare's purge API (`POST /client/v4/zones/{zone}/purge_cache`):
//! it records every request exactly (method, path, `Authorization`, `Content-Type`, body)
//! and answers as Cloudflare does on success (`{"success":true,…}`). The real API cannot be
//! reached from here; the tests assert the requests a Worker sends to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request the stand-in received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeCall {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// The stand-in, on a free loopback port; stopped when dropped.
pub struct PurgeApi {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<PurgeCall>>>,
    /// When set, every call is refused as Cloudflare refuses a bad token (`403`).
    refuse: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl PurgeApi {
    pub async fn start() -> PurgeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("purge API bind");
        let addr = listener.local_addr().expect("purge API addr");
        let calls: Arc<Mutex<Vec<PurgeCall>>> = Arc::default();
        let recorded = calls.clone();
        let refuse: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let refusing = refuse.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let calls = recorded.clone();
                let refusing = refusing.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let calls = calls.clone();
                        let refusing = refusing.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            let mut call = PurgeCall {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                authorization: header("authorization"),
                                content_type: header("content-type"),
                                body: String::new(),
                            };
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            call.body = String::from_utf8_lossy(&body.unwrap_or_default()).into();
                            calls.lock().unwrap().push(call);
                            let refused = refusing.load(std::sync::atomic::Ordering::SeqCst);
                            let (status, answer) = if refused {
                                (
                                    403,
                                    r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#,
                                )
                            } else {
                                (
                                    200,
                                    r#"{"success":true,"errors":[],"messages":[],"result":{"id":"purge-id"}}"#,
                                )
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        PurgeApi {
            addr,
            calls,
            refuse,
            task,
        }
    }

    /// Refuses every call from now on (`403`, as for a token without the permission).
    pub fn refuse(&self) {
        self.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The base URL a Worker is given (`EDGECACHE_CF_API_BASE`).
    pub fn base(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<PurgeCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for PurgeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
