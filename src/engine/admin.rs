//! The admin API under [`super::config::AdminConfig::path`]: purge by URL, by tag, soft, all;
//! stats as JSON and Prometheus text. Every endpoint requires `Authorization: Bearer
//! <token>`, compared in constant time; with no token configured the API is disabled.
//!
//! | method | path | effect |
//! |---|---|---|
//! | `POST` | `{admin}/purge?url=/path?q` (or an absolute URL) | remove that URL's responses |
//! | `POST` | `{admin}/purge?tag=T` | remove every response tagged `T` |
//! | `POST` | `{admin}/purge?all=1` | remove everything |
//! | | add `&soft=1` to any purge | mark stale instead: served within stale windows while refetched |
//! | `POST` | `{admin}/warm?url=/a&url=/b…` (up to 100, paths or absolute URLs) | fetch and store them in the background (`202`) |
//! | `GET` | `{admin}/stats` | counters as JSON: this instance's, and the fleet's ([`super::fleet`]) |
//! | `GET` | `{admin}/metrics` | the same as Prometheus text |

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::entry::CachedResponse;
use crate::headers::Headers;

use super::host::{Lock, Runtime};
use super::sync::Scope;
use super::{Body, Engine, Host, Job, RequestView, Response};

/// Most URLs one warm request may name.
pub const MAX_WARM_URLS: usize = 100;

/// Whether the normalised `path` ([`super::RequestView::path`]) is under the admin prefix
/// `admin_path`.
pub fn is_admin_path(admin_path: &str, path: &str) -> bool {
    path == admin_path
        || path
            .strip_prefix(admin_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Compares two byte strings in time that depends only on their lengths, not on where they
/// differ, so a token cannot be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>` for `token`.
pub fn authorized(headers: &Headers, token: &str) -> bool {
    let Some(value) = headers.get("authorization") else {
        return false;
    };
    let Some(scheme_end) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(scheme_end);
    scheme.eq_ignore_ascii_case(b"bearer")
        && constant_time_eq(crate::headers::trim_ows(rest), token.as_bytes())
}

/// Decodes `%XX` escapes and `+` in a query component; invalid escapes are kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every value of query parameter `name` in `query` (without the `?`), decoded, in order.
fn query_params<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The first value of query parameter `name` in `query`, decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_params(query, name).next()
}

fn text<B>(status: u16, message: &str) -> Response<B> {
    let mut headers = Headers::new();
    headers.set("content-type", "text/plain; charset=utf-8");
    headers.set("cache-control", "no-store");
    Response {
        status,
        headers,
        stored_fields: None,
        body: Body::Bytes(format!("{message}\n").into_bytes()),
        content_length: None,
        source: super::Source::Engine,
    }
}

fn json<B>(body: String) -> Response<B> {
    let mut headers = Headers::new();
    headers.set("content-type", "application/json");
    headers.set("cache-control", "no-store");
    Response {
        status: 200,
        headers,
        stored_fields: None,
        body: Body::Bytes(body.into_bytes()),
        content_length: None,
        source: super::Source::Engine,
    }
}

/// What a purge request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PurgeTarget {
    /// One URL's responses (and their Vary variants): its cache key.
    Url(String),
    /// Every response with this tag.
    Tag(String),
    /// Everything.
    All,
}

/// Which tiers a purge reached, as its answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeReport {
    /// L1 entries of this isolate affected.
    pub l1: usize,
    /// With the shared tier: whether the purge was published (to its entries, its purge
    /// log and so to every isolate).
    pub shared: Option<bool>,
    /// With a colo tier: what reached it.
    pub colo: Option<super::colo::ColoPurged>,
}

impl PurgeReport {
    /// The JSON answer: `purged` (L1 entries here), `soft`, `reached` (the tiers, in words
    /// an operator can act on) and, with a colo tier, `colo` (its mode, the purge API's
    /// outcome, and without either, by when other copies have expired).
    pub fn to_json(&self, soft: bool) -> String {
        use super::colo::ColoMode;
        let mut reached = alloc::vec!["l1 (this isolate)"];
        match self.shared {
            Some(true) => reached.push("shared tier (every isolate's L1)"),
            Some(false) => reached.push("not the shared tier: publishing failed"),
            None => {}
        }
        let colo = self.colo.as_ref().map(|c| {
            let api = match &c.api {
                None => serde_json::Value::Null,
                Some(Ok(n)) => serde_json::json!({ "ok": true, "requests": n }),
                Some(Err(e)) => serde_json::json!({ "ok": false, "error": e }),
            };
            match (c.mode, &c.api) {
                (_, Some(Ok(_))) => reached.push("colo (every data centre, purge API)"),
                (ColoMode::PurgeLog, _) if self.shared == Some(true) => {
                    reached.push("colo (every data centre, purge log)")
                }
                (ColoMode::PurgeLog, _) => {}
                (ColoMode::PurgeApi | ColoMode::Expiry, _) => reached.push("colo (this isolate)"),
            }
            serde_json::json!({
                "mode": c.mode.as_str(),
                "api": api,
                "others_expire_by_ms": c.others_gone_by_ms,
            })
        });
        let answer = serde_json::json!({
            "purged": self.l1,
            "soft": soft,
            "reached": reached,
            "colo": colo,
        });
        alloc::string::ToString::to_string(&answer)
    }
}

impl<H: Host> Engine<H> {
    /// Answers an admin request; sets `job` to the background work it asks for (warming).
    pub(crate) async fn admin(
        &self,
        request: &RequestView,
        job: &mut Option<Job<H::Body>>,
    ) -> Response<H::Body> {
        let admin = &self.config.admin;
        let path = request.path();
        let sub = &path[admin.path.len().min(path.len())..];
        let cors = self.cors_origin(request.headers());
        if request.method() == "OPTIONS" && sub == "/stats" {
            let mut response = text::<H::Body>(204, "");
            response.body = Body::Empty;
            if let Some(origin) = cors {
                add_cors(&mut response.headers, &origin);
                response
                    .headers
                    .set("access-control-allow-methods", "GET, OPTIONS");
                response
                    .headers
                    .set("access-control-allow-headers", "authorization");
                response.headers.set("access-control-max-age", "600");
            }
            return response;
        }
        let Some(token) = admin.token.as_deref() else {
            return text(
                404,
                "admin API disabled: set admin.token to enable it (on the Worker, the EDGECACHE_ADMIN_TOKEN secret)",
            );
        };
        if !authorized(request.headers(), token) {
            self.count(|s| s.admin_unauthorized += 1);
            let mut response =
                text::<H::Body>(401, "unauthorized: send Authorization: Bearer <token>");
            response
                .headers
                .set("www-authenticate", "Bearer realm=\"edgecache-admin\"");
            if let Some(origin) = cors {
                add_cors(&mut response.headers, &origin);
            }
            return response;
        }
        match (request.method(), sub) {
            ("GET", "/stats") => {
                let mut response = json::<H::Body>(self.stats_json().await);
                if let Some(origin) = cors {
                    add_cors(&mut response.headers, &origin);
                }
                response
            }
            ("GET", "/metrics") => {
                let mut response = text::<H::Body>(200, "");
                response
                    .headers
                    .set("content-type", "text/plain; version=0.0.4");
                response.body = Body::Bytes(self.metrics_text().await.into_bytes());
                response
            }
            ("POST", "/purge") => {
                let query = request.query();
                let soft = query_param(query, "soft").is_some_and(|v| v == "1" || v == "true");
                let target = if let Some(url) = query_param(query, "url") {
                    request
                        .get_of(&url)
                        .map(|view| PurgeTarget::Url(self.key_for(&view)))
                } else if let Some(tag) = query_param(query, "tag") {
                    (!tag.is_empty()).then_some(PurgeTarget::Tag(tag))
                } else if query_param(query, "all").is_some() {
                    Some(PurgeTarget::All)
                } else {
                    None
                };
                let Some(target) = target else {
                    return text(400, "purge needs one of url=, tag= or all=1");
                };
                let site = match &target {
                    PurgeTarget::Url(_) => query_param(query, "url")
                        .and_then(|url| request.get_of(&url))
                        .map(|view| format!("{}://{}", view.scheme(), view.authority())),
                    _ => Some(format!("{}://{}", request.scheme(), request.authority())),
                };
                let report = self.purge_reporting(&target, soft, site.as_deref()).await;
                json(report.to_json(soft))
            }
            ("POST", "/warm") => match self.warm_requests(request) {
                Ok(heads) => {
                    let mut response = json::<H::Body>(format!("{{\"queued\":{}}}", heads.len()));
                    response.status = 202;
                    *job = Some(Job::Warm(heads));
                    response
                }
                Err(message) => text(400, &message),
            },
            (_, "/stats" | "/metrics" | "/purge" | "/warm") => text(405, "method not allowed"),
            _ => text(404, "no such admin endpoint"),
        }
    }

    /// The `GET` requests a warm request names: paths on its own host or absolute URLs,
    /// none under the admin path.
    fn warm_requests(&self, request: &RequestView) -> Result<Vec<RequestView>, String> {
        let urls: Vec<String> = query_params(request.query(), "url").collect();
        if urls.is_empty() {
            return Err(String::from("warm needs one or more url= parameters"));
        }
        if urls.len() > MAX_WARM_URLS {
            return Err(format!(
                "warm takes at most {MAX_WARM_URLS} urls per request"
            ));
        }
        urls.iter()
            .map(|url| match request.get_of(url) {
                Some(view) if !is_admin_path(&self.config.admin.path, view.path()) => Ok(view),
                _ => Err(format!(
                    "not a URL to warm (a path or http(s) URL outside the admin path): {url}"
                )),
            })
            .collect()
    }

    /// The allowed CORS origin matching the request's `Origin`, if any.
    fn cors_origin(&self, headers: &Headers) -> Option<String> {
        let origin = headers.get_str("origin")?;
        let allowed = &self.config.admin.cors_allow_origins;
        allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
            .then(|| String::from(origin))
    }

    /// Purges `target` from every tier and tells the other instances; `soft` marks L1
    /// copies stale instead of removing them. Returns how many L1 entries were affected.
    pub async fn purge(&self, target: &PurgeTarget, soft: bool) -> usize {
        self.purge_reporting(target, soft, None).await.l1
    }

    /// [`Self::purge`], saying which tiers it reached. `site` (`scheme://authority` of the
    /// purged URL's site) lets a purge by URL name the colo URL for Cloudflare's purge API.
    pub async fn purge_reporting(
        &self,
        target: &PurgeTarget,
        soft: bool,
        site: Option<&str>,
    ) -> PurgeReport {
        self.count(|s| s.purges += 1);
        let now = self.runtime.now();
        let (affected, scope) = match target {
            PurgeTarget::Url(key) => (self.l1_purge_key(key, soft, now), Scope::Key(key.clone())),
            PurgeTarget::Tag(tag) => (self.l1_purge_tag(tag, soft, now), Scope::Tag(tag.clone())),
            PurgeTarget::All => (self.l1_purge_all(soft, now), Scope::All),
        };
        let published = self.publish_purge(scope.clone(), soft).await;
        let colo = self.colo_purge(&scope, site).await;
        // Requests that read a lower tier while the purge was being published may have
        // put what it removes back into L1: remove it again.
        let now = self.runtime.now();
        match &scope {
            Scope::Key(key) => self.l1_purge_key(key, soft, now),
            Scope::Tag(tag) => self.l1_purge_tag(tag, soft, now),
            Scope::All => self.l1_purge_all(soft, now),
        };
        PurgeReport {
            l1: affected,
            shared: self.shared.is_some().then_some(published),
            colo,
        }
    }

    /// Purges one cache key and its Vary variants from L1, and from the fills in progress
    /// (which are then neither joined nor stored: what they bring may predate the purge).
    pub(crate) fn l1_purge_key(&self, key: &str, soft: bool, now: crate::time::Timestamp) -> usize {
        let tag = super::read::url_tag(key);
        self.state.with(|s| s.fills.purge_key(key));
        if soft {
            self.soft_purge_where(now, |_| true, Some(&tag))
        } else {
            self.state
                .with(|s| s.l1.purge_tag(&tag) + usize::from(s.l1.remove(key)))
        }
    }

    /// Purges every L1 entry tagged `tag`, and the fills in progress tagged so.
    pub(crate) fn l1_purge_tag(&self, tag: &str, soft: bool, now: crate::time::Timestamp) -> usize {
        self.state.with(|s| s.fills.purge_tag(tag));
        if soft {
            self.soft_purge_where(now, |e| e.tags.iter().any(|t| t == tag), None)
        } else {
            self.state.with(|s| s.l1.purge_tag(tag))
        }
    }

    /// Purges all of L1, and every fill in progress.
    pub(crate) fn l1_purge_all(&self, soft: bool, now: crate::time::Timestamp) -> usize {
        if soft {
            self.state.with(|s| s.fills.clear());
            self.soft_purge_where(now, |_| true, None)
        } else {
            self.state.with(|s| {
                let n = s.l1.len();
                s.clear_l1();
                n
            })
        }
    }

    /// Marks matching L1 entries invalidated (soft purge): they stay servable within their
    /// stale windows while a refetch happens (RFC 5861), and are never fresh again.
    fn soft_purge_where(
        &self,
        now: crate::time::Timestamp,
        matches: impl Fn(&CachedResponse) -> bool,
        tag: Option<&str>,
    ) -> usize {
        self.state.with(|s| {
            let targets: Vec<(String, Arc<CachedResponse>)> =
                s.l1.iter()
                    .filter(|(_, e)| match tag {
                        Some(tag) => e.tags.iter().any(|t| t == tag),
                        None => matches(e.value),
                    })
                    .map(|(k, e)| (k.clone(), e.value.clone()))
                    .collect();
            for (key, stored) in &targets {
                let mut marked = CachedResponse::clone(stored);
                marked.invalidated = true;
                s.l1.soft_purge(key.as_str(), now);
                if let Some(entry) = s.l1.peek(key.as_str()) {
                    let meta = crate::store::EntryMeta {
                        windows: entry.windows,
                        size: entry.size,
                        tags: entry.tags.to_vec(),
                    };
                    s.l1.insert(key.clone(), Arc::new(marked), meta, now);
                }
            }
            targets.len()
        })
    }
}

fn add_cors(headers: &mut Headers, origin: &str) {
    headers.set("access-control-allow-origin", origin);
    headers.set("vary", "Origin");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }

    #[test]
    fn bearer_auth() {
        let h = Headers::from_pairs([("Authorization", "Bearer 0123456789abcdef")]);
        assert!(authorized(&h, "0123456789abcdef"));
        assert!(!authorized(&h, "0123456789abcdeX"));
        let h = Headers::from_pairs([("Authorization", "Basic 0123456789abcdef")]);
        assert!(!authorized(&h, "0123456789abcdef"));
        assert!(!authorized(&Headers::new(), "0123456789abcdef"));
    }

    #[test]
    fn admin_paths() {
        assert!(is_admin_path("/_edgecache", "/_edgecache/stats"));
        assert!(!is_admin_path("/_edgecache", "/_edgecachex/stats"));
        assert!(!is_admin_path("/_edgecache", "/a/_edgecache/stats"));
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(
            query_param(Some("url=%2Fa%3Fb%3D1&soft=1"), "url").as_deref(),
            Some("/a?b=1")
        );
        assert_eq!(query_param(Some("tag=a+b"), "tag").as_deref(), Some("a b"));
        assert_eq!(query_param(Some("x=%zz%"), "x").as_deref(), Some("%zz%"));
        assert_eq!(query_param(None, "x"), None);
    }
}
