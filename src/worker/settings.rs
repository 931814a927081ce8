//! The Worker's configuration, from its environment: `[vars]` and secrets in wrangler.toml
//! (or the dashboard). The cache itself uses the one engine schema ([`EngineConfig`]), as a
//! `[vars.EDGECACHE_CACHE]` table or a JSON string; the origin, the Redis URL and the admin
//! token sit beside it.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `EDGECACHE_ORIGIN` | var, required | origin base URL, `http(s)://host[:port]`; a loopback or private-network one is refused unless `EDGECACHE_ALLOW_PRIVATE_ORIGIN` is `1` (local development: a deployed Worker cannot reach it) |
//! | `EDGECACHE_ALLOW_PRIVATE_ORIGIN` | var, optional | `1` in `.dev.vars` for `wrangler dev` against a local origin |
//! | `EDGECACHE_CACHE` | var, optional | the engine configuration (same keys as native `[cache]`), over the Worker's defaults: the engine's, but `l1.max_bytes` 32 MiB (at most 80 MiB: an isolate has 128 MB) |
//! | `EDGECACHE_ADMIN_TOKEN` | secret, optional | bearer token of the admin API (16+ chars); no token, no admin API |
//! | `EDGECACHE_REDIS_URL` | secret, optional | the shared tier: `redis://` or `rediss://` (RESP over sockets, credentials in the URL) or `https://` (Redis over HTTP, the Upstash REST protocol, over `fetch`; `http://` only to loopback, for local development); none: L1 and the colo tier only |
//! | `EDGECACHE_REDIS_TOKEN` | secret, with an `https://` URL | the REST server's bearer token (Upstash: the database's REST token); refused with a `redis://` URL, whose password is in the URL |
//! | `EDGECACHE_CF_API_TOKEN` | secret, optional | a Cloudflare API token with the zone's Cache Purge permission: admin purges then also call Cloudflare's purge API, which reaches the colo tier (Cache API) in every data centre |
//! | `EDGECACHE_CF_ZONE_ID` | secret or var, with the token | the zone id the Worker's routes are on |
//! | `EDGECACHE_CF_API_BASE` | var, local development only | another base for the purge API than `https://api.cloudflare.com/client/v4`: only a loopback `http://` URL, and only with `EDGECACHE_ALLOW_PRIVATE_ORIGIN=1` (a test stand-in) |

use alloc::format;
use alloc::string::{String, ToString};

use wasm_bindgen::JsValue;
use worker::Env;

use crate::engine::EngineConfig;
use crate::shared_tier::url::{SharedTierTarget, TargetError};

/// L1's byte bound on the Worker unless `EDGECACHE_CACHE` sets one: an isolate has 128 MB
/// for everything (Cloudflare's limit, on every plan), its Wasm memory never shrinks, and
/// L1 counts bodies being filled too; the colo tier is the data centre's cache beyond it.
pub const WORKER_L1_MAX_BYTES: usize = 32 << 20;

/// The most `l1.max_bytes` may be on the Worker: past it, a busy isolate would outgrow its
/// 128 MB and be killed with the requests it serves.
pub const MAX_L1_BYTES: usize = 80 << 20;

/// The engine's defaults, with the Worker's own where its limits differ
/// ([`WORKER_L1_MAX_BYTES`]); `EDGECACHE_CACHE` is read over them.
pub fn worker_defaults() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.l1.max_bytes = WORKER_L1_MAX_BYTES;
    config
}

/// Everything the Worker reads from its environment, validated.
pub struct Settings {
    /// Origin base URL.
    pub origin: String,
    /// The engine configuration (with the admin token from its secret).
    pub cache: EngineConfig,
    /// The shared tier, if configured.
    pub redis: Option<SharedTierTarget>,
    /// Cloudflare's purge API, if configured.
    pub purge_api: Option<super::colo::PurgeApi>,
}

impl Settings {
    /// Reads and validates the environment; the error names the variable (never a secret's value).
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let origin = text(env, "EDGECACHE_ORIGIN")?
            .filter(|s| !s.trim().is_empty())
            .ok_or("invalid config `EDGECACHE_ORIGIN`: is required (the origin's base URL)")?;
        let allow_private = text(env, "EDGECACHE_ALLOW_PRIVATE_ORIGIN")?.as_deref() == Some("1");
        if !allow_private && crate::engine::config::is_private_origin(origin.trim()) {
            return Err(String::from(
                "invalid config `EDGECACHE_ORIGIN`: a loopback or private-network address, which a deployed Worker cannot reach (set the public origin; for wrangler dev against a local origin, EDGECACHE_ALLOW_PRIVATE_ORIGIN=1 in .dev.vars)",
            ));
        }
        let mut cache = match raw(env, "EDGECACHE_CACHE") {
            None => worker_defaults(),
            Some(value) => {
                let json = match value.as_string() {
                    Some(text) => text,
                    None => js_sys::JSON::stringify(&value)
                        .ok()
                        .and_then(|s| s.as_string())
                        .ok_or("invalid config `EDGECACHE_CACHE`: not JSON-serialisable")?,
                };
                EngineConfig::from_json_over(&worker_defaults(), &json)
                    .map_err(|e| format!("`EDGECACHE_CACHE`: {e}"))?
            }
        };
        if cache.admin.token.is_some() {
            return Err(
                "invalid config `EDGECACHE_CACHE.admin.token`: set the token as the secret EDGECACHE_ADMIN_TOKEN, not in [vars]"
                    .to_string(),
            );
        }
        if cache.l1.max_bytes > MAX_L1_BYTES {
            return Err(format!(
                "invalid config `EDGECACHE_CACHE.l1.max_bytes`: {} is more than an isolate can hold (at most {MAX_L1_BYTES}: the isolate has 128 MB for everything, the bodies in flight included)",
                cache.l1.max_bytes
            ));
        }
        cache.admin.token = text(env, "EDGECACHE_ADMIN_TOKEN")?.filter(|t| !t.is_empty());
        let redis = redis_target(
            text(env, "EDGECACHE_REDIS_URL")?,
            text(env, "EDGECACHE_REDIS_TOKEN")?,
        )?;
        // The engine's rules, named by the variables that set them here.
        cache
            .validate()
            .and_then(|()| cache.validate_shared_tier(redis.is_some()))
            .map_err(|e| match e.field.as_str() {
                "admin.token" => format!("invalid config `EDGECACHE_ADMIN_TOKEN`: {}", e.message),
                "colo.enabled" | "write_behind.routes" => {
                    format!("`EDGECACHE_CACHE`: {e} (set the secret EDGECACHE_REDIS_URL)")
                }
                _ => format!("`EDGECACHE_CACHE`: {e}"),
            })?;
        let purge_api = purge_api(
            text(env, "EDGECACHE_CF_API_TOKEN")?,
            text(env, "EDGECACHE_CF_ZONE_ID")?,
            text(env, "EDGECACHE_CF_API_BASE")?,
            allow_private,
        )?;
        Ok(Settings {
            origin: origin.trim().to_string(),
            cache,
            redis,
            purge_api,
        })
    }
}

/// The shared tier from `EDGECACHE_REDIS_URL` and `EDGECACHE_REDIS_TOKEN`
/// ([`SharedTierTarget::from_settings`]). Errors name the variable, never a value.
fn redis_target(
    url: Option<String>,
    token: Option<String>,
) -> Result<Option<SharedTierTarget>, String> {
    SharedTierTarget::from_settings(url.as_deref(), token.as_deref()).map_err(|e| match e {
        TargetError::Url(e) => format!("invalid config `EDGECACHE_REDIS_URL`: {e}"),
        TargetError::TokenWithoutUrl => String::from(
            "invalid config `EDGECACHE_REDIS_TOKEN`: set, but EDGECACHE_REDIS_URL (the REST URL it is for) is not",
        ),
        TargetError::TokenWithRespUrl => String::from(
            "invalid config `EDGECACHE_REDIS_TOKEN`: only for a REST (https://) EDGECACHE_REDIS_URL; a redis:// or rediss:// URL carries its password itself",
        ),
        TargetError::MissingToken => String::from(
            "invalid config `EDGECACHE_REDIS_TOKEN`: required with a REST (https://) EDGECACHE_REDIS_URL (Upstash: the database's REST token), as a secret",
        ),
        TargetError::BadToken => String::from(
            "invalid config `EDGECACHE_REDIS_TOKEN`: must be printable ASCII without spaces",
        ),
    })
}

/// Cloudflare's purge API from its token, zone and (local development only) base URL.
/// Errors name the variable, never a value.
pub fn purge_api(
    token: Option<String>,
    zone: Option<String>,
    base: Option<String>,
    local_development: bool,
) -> Result<Option<super::colo::PurgeApi>, String> {
    let token = token.filter(|t| !t.is_empty());
    let zone = zone.map(|z| z.trim().to_string()).filter(|z| !z.is_empty());
    let base = base
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty());
    let (token, zone) = match (token, zone) {
        (None, None) => {
            if base.is_some() {
                return Err(String::from(
                    "invalid config `EDGECACHE_CF_API_BASE`: set, but EDGECACHE_CF_API_TOKEN and EDGECACHE_CF_ZONE_ID are not",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(String::from(
                "invalid config `EDGECACHE_CF_ZONE_ID`: required with EDGECACHE_CF_API_TOKEN (the zone the Worker's routes are on)",
            ))
        }
        (None, Some(_)) => {
            return Err(String::from(
                "invalid config `EDGECACHE_CF_API_TOKEN`: required with EDGECACHE_CF_ZONE_ID, as a secret (a token with the zone's Cache Purge permission)",
            ))
        }
        (Some(token), Some(zone)) => (token, zone),
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(String::from(
            "invalid config `EDGECACHE_CF_API_TOKEN`: must be printable ASCII without spaces",
        ));
    }
    if !zone.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(String::from(
            "invalid config `EDGECACHE_CF_ZONE_ID`: must be the zone id (letters and digits)",
        ));
    }
    let base = match base {
        None => String::from(super::colo::CLOUDFLARE_API),
        Some(base) if local_development && is_loopback_http(&base) => base,
        Some(_) => {
            return Err(String::from(
                "invalid config `EDGECACHE_CF_API_BASE`: only a loopback http:// URL, and only in local development (EDGECACHE_ALLOW_PRIVATE_ORIGIN=1); leave it unset for Cloudflare's API",
            ))
        }
    };
    Ok(Some(super::colo::PurgeApi { base, zone, token }))
}

/// Whether `url` is `http://` to this machine (`127.0.0.1`, `localhost`, `[::1]`).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// A binding's raw value, if set.
fn raw(env: &Env, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// A binding that must be text (a plain var or a secret), if set.
fn text(env: &Env, name: &str) -> Result<Option<String>, String> {
    match raw(env, name) {
        None => Ok(None),
        Some(value) => value
            .as_string()
            .map(Some)
            .ok_or_else(|| format!("invalid config `{name}`: must be a string")),
    }
}
