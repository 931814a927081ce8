//! The native host (`edgecache serve`): tokio + hyper around the shared engine. It only
//! translates types and runs I/O; every caching decision is the engine's.

pub mod body;
pub mod config;
pub mod connections;
pub mod interim;
pub mod origin;
pub mod ready;
pub mod runtime;
pub mod sendfile;
pub mod server;
pub mod tls;
pub mod zero_copy;

use std::sync::Mutex;

use crate::engine::{EngineState, Host};

/// The native host's types.
pub struct NativeHost;

impl Host for NativeHost {
    type Body = body::ProxyBody;
    type Origin = origin::HyperOrigin;
    type SharedTier = crate::shared_tier::redis_rs::RedisRsTier;
    type Runtime = runtime::TokioRuntime;
    type Colo = crate::engine::NoColo;
    type Lock = Mutex<EngineState>;
}
