//! The colo tier on Workers: the data centre's Cache API (`caches.default`). The engine
//! decides what goes in, checks what comes out and decides what a purge removes
//! ([`crate::engine::colo`]); this only stores bytes under a URL and sends the purge
//! requests the engine builds to Cloudflare's purge API.
//!
//! Each engine key becomes the URL [`colo_url`]`({scheme}://{host}, admin path, key)` on the
//! request's own host: the Cache API is per zone, and Cloudflare's purge API (by URL, by
//! tag, purge everything) reaches Cache API entries under the zone's hostnames. The admin
//! path is never served from the cache, so no client request can reach these entries. The
//! value is the body of a `200` with `Cache-Control: max-age` set to the engine's TTL (the
//! Cache API does no stale serving; the engine does stale-while-revalidate and
//! stale-if-error itself) and `Cache-Tag` set to the engine's tags, which a purge by tag
//! matches.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::engine::colo::colo_url;
use crate::engine::{ColoCache, TierError};
use crate::shared_tier::rest::HttpPost;

use super::redis::FetchPost;

/// Keys whose URL would be longer than this are not stored (Cloudflare's URL limit is 16 KB).
const MAX_URL_BYTES: usize = 8 << 10;
/// How long one purge-API request may take.
const PURGE_API_TIMEOUT_MS: u64 = 5_000;
/// Cloudflare's API.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";

/// Cloudflare's purge API for one zone: `POST {base}/zones/{zone}/purge_cache` with the
/// token as `Authorization: Bearer` (a token with the zone's Cache Purge permission).
pub struct PurgeApi {
    /// The API base, [`CLOUDFLARE_API`] (another only for a loopback stand-in in local
    /// development).
    pub base: String,
    /// The zone id.
    pub zone: String,
    /// The API token (a secret: never logged or quoted in an error).
    pub token: String,
}

impl core::fmt::Debug for PurgeApi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PurgeApi")
            .field("base", &self.base)
            .field("zone", &self.zone)
            .field("token", &"<secret>")
            .finish()
    }
}

/// The Cache API as the engine's colo tier, for one request's host.
#[derive(Clone, Debug)]
pub struct CacheApiColo {
    origin: String,
    admin_path: String,
    api: Option<Rc<PurgeApi>>,
}

impl CacheApiColo {
    /// The colo tier for requests to `origin` (`scheme://host`), its entries under
    /// `admin_path`, purged everywhere through `api` when configured.
    pub fn new(origin: &str, admin_path: &str, api: Option<Rc<PurgeApi>>) -> Self {
        CacheApiColo {
            origin: origin.to_string(),
            admin_path: admin_path.to_string(),
            api,
        }
    }

    fn url(&self, key: &str) -> Result<String, TierError> {
        let url = colo_url(&self.origin, &self.admin_path, key);
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

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        tags: &[String],
    ) -> Result<(), TierError> {
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
        if !tags.is_empty() {
            headers.set("cache-tag", &tags.join(",")).map_err(failed)?;
        }
        let cache = worker::Cache::default();
        cache.put(url.to_string(), response).await.map_err(failed)
    }

    fn purges_everywhere(&self) -> bool {
        self.api.is_some()
    }

    async fn purge_everywhere(&self, body: &str) -> Result<(), TierError> {
        let Some(api) = &self.api else {
            return Err(TierError(String::from("purge API not configured")));
        };
        let url = format!("{}/zones/{}/purge_cache", api.base, api.zone);
        let authorization = format!("Bearer {}", api.token);
        let headers = [
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        let reply = FetchPost::new(PURGE_API_TIMEOUT_MS)
            .post(&url, &headers, body.as_bytes().to_vec(), 64 << 10)
            .await
            .map_err(|e| TierError(e.0.replace("REST: ", "")))?;
        // Cloudflare answers 200 with `"success": true`; anything else is a failure, quoted
        // by status and Cloudflare's own error messages (which never echo the token).
        let answer: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
        let success = answer
            .as_ref()
            .and_then(|v| v.get("success"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        if reply.status == 200 && success {
            return Ok(());
        }
        let errors = answer
            .as_ref()
            .and_then(|v| v.get("errors"))
            .map(|e| e.to_string())
            .unwrap_or_default();
        Err(TierError(format!(
            "Cloudflare answered {} {}",
            reply.status,
            errors.chars().take(300).collect::<String>()
        )))
    }
}
