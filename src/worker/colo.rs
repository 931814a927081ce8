//! The colo tier on Workers: the data centre's Cache API (`caches.default`). The engine
//! decides what goes in and checks what comes out ([`crate::engine::colo`]); this only
//! stores bytes under a URL.
//!
//! Each engine key becomes the URL `{scheme}://{host}{admin path}/colo/{key, percent-encoded}`
//! on the request's own host (the Cache API is per zone; the admin path is never served
//! from the cache, so no client request can reach these entries). The value is the body of
//! a `200` with `Cache-Control: max-age` set to the engine's TTL: the Cache API itself does
//! no stale serving, so the engine asks for the whole time the entry may be of use and does
//! stale-while-revalidate and stale-if-error itself.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::engine::{ColoCache, TierError};

/// Keys whose URL would be longer than this are not stored (Cloudflare's URL limit is 16 KB).
const MAX_URL_BYTES: usize = 8 << 10;

/// The Cache API as the engine's colo tier, for one request's host.
#[derive(Clone, Debug)]
pub struct CacheApiColo {
    base: String,
}

impl CacheApiColo {
    /// The colo tier for requests to `origin` (`scheme://host`), its entries under
    /// `admin_path`.
    pub fn new(origin: &str, admin_path: &str) -> Self {
        CacheApiColo {
            base: format!("{origin}{admin_path}/colo/"),
        }
    }

    fn url(&self, key: &str) -> Result<String, TierError> {
        let mut url = self.base.clone();
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        if url.len() > MAX_URL_BYTES {
            return Err(TierError(String::from("key too long for the Cache API")));
        }
        Ok(url)
    }
}

fn failed(e: worker::Error) -> TierError {
    TierError(format!("cache API: {e}"))
}

impl ColoCache for CacheApiColo {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        let url = self.url(key)?;
        let cache = worker::Cache::default();
        match cache.get(url, false).await.map_err(failed)? {
            None => Ok(None),
            Some(mut response) if response.status_code() == 200 => {
                response.bytes().await.map(Some).map_err(failed)
            }
            Some(response) => Err(TierError(format!(
                "cache API answered {}",
                response.status_code()
            ))),
        }
    }

    async fn put(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), TierError> {
        let url = self.url(key)?;
        let response = worker::Response::from_bytes(value.to_vec()).map_err(failed)?;
        let headers = response.headers();
        let max_age = ttl_ms.div_ceil(1000).max(1);
        headers
            .set("cache-control", &format!("max-age={max_age}"))
            .map_err(failed)?;
        headers
            .set("content-type", "application/octet-stream")
            .map_err(failed)?;
        let cache = worker::Cache::default();
        cache.put(url.to_string(), response).await.map_err(failed)
    }
}
