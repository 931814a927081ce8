//! The one request view: a client request normalised once, at the door, into the value every
//! later step uses (route rules, admin dispatch, the cache key, the origin request, warming,
//! purges, write-behind). Nothing after [`RequestView::parse`] reads the raw target again.
//!
//! The rules, each applied here and nowhere else:
//! - **Request target** (RFC 9112 §3.2): origin-form (`/path?query`) or absolute-form
//!   (`http://host/path?query`); asterisk-form (`*`) only for `OPTIONS`, which the cache
//!   answers itself; `CONNECT` (authority-form) is refused, since this is not a tunnel.
//!   Anything else is a `400`.
//! - **Authority** (RFC 9112 §3.2, §3.2.2): from an absolute-form target (any `Host` field is
//!   then ignored), else from the one `Host` field. No `Host`, more than one `Host` line, or
//!   a value that is not `uri-host [ ":" port ]` is a `400` (RFC 9112 §3.2 requires it for
//!   HTTP/1.1; edgecache asks it of HTTP/1.0 too, since its cache is keyed by host). Userinfo
//!   in an absolute target is an error (RFC 9110 §4.2.4). The authority is normalised as the
//!   cache key's host is (lowercase, default port dropped), and is the one `Host` the view's
//!   header fields carry.
//! - **Path** (RFC 3986 §6.2.2): percent-encoding normalised and dot-segments removed
//!   ([`crate::key::normalize_path`]), so `/a/../admin`, `/%61dmin` and `/admin` are one
//!   path for routes, the admin API, the key and the origin alike. The fragment is dropped.
//! - **Query**: kept as received (forwarded to the origin untouched); the cache key
//!   normalises its own copy ([`crate::key`]).

use alloc::string::{String, ToString};
use core::net::IpAddr;

use crate::headers::Headers;
use crate::key::{is_normal_host, is_normal_path, normalize_host, normalize_path};
use crate::policy::forwarding::{self, Trust};
use crate::policy::hop_by_hop;
use crate::policy::request::{classify, RequestClass};

/// A client request, normalised once (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestView {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    headers: Headers,
    client: Option<IpAddr>,
}

/// What a request target names.
#[derive(Debug)]
pub enum Target {
    /// A resource: the request, normalised.
    Resource(RequestView),
    /// `OPTIONS *`: the server itself (RFC 9110 §9.3.7), answered by the cache.
    Server,
}

/// Why a request cannot be taken. Each is answered with [`Self::status`] and named in
/// `Cache-Status` by [`Self::as_str`]; nothing reaches the origin or the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// No authority: no `Host` field and no absolute-form target (RFC 9112 §3.2).
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2).
    DuplicateHost,
    /// A `Host` (or target authority) that is not `uri-host [ ":" port ]`, or carries
    /// userinfo (RFC 9110 §4.2.4, §7.2).
    InvalidHost,
    /// A request target of no form this method may use (RFC 9112 §3.2).
    InvalidTarget,
    /// A path that origins resolve in different ways: a dot-segment hidden behind an
    /// encoded slash or backslash (`/a/..%2Fb`, `/a%5C..%5Cb`) or a `;` parameter
    /// (`/a/..;/b`). The cache would store the origin's answer for one path under another.
    AmbiguousPath,
    /// `CONNECT`: edgecache is a reverse proxy, not a tunnel (RFC 9110 §9.3.6).
    Connect,
}

impl RequestError {
    /// The status to answer with: `501` for `CONNECT`, `400` otherwise.
    pub fn status(self) -> u16 {
        match self {
            RequestError::Connect => 501,
            _ => 400,
        }
    }

    /// A short, stable name for `Cache-Status` details and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestError::MissingHost => "missing-host",
            RequestError::DuplicateHost => "duplicate-host",
            RequestError::InvalidHost => "invalid-host",
            RequestError::InvalidTarget => "invalid-target",
            RequestError::AmbiguousPath => "ambiguous-path",
            RequestError::Connect => "connect-unsupported",
        }
    }

    /// The text of the error response.
    pub fn message(self) -> &'static str {
        match self {
            RequestError::MissingHost => "bad request: no Host header field",
            RequestError::DuplicateHost => "bad request: more than one Host header field",
            RequestError::InvalidHost => "bad request: invalid Host",
            RequestError::InvalidTarget => "bad request: invalid request target",
            RequestError::AmbiguousPath => {
                "bad request: a dot-segment behind an encoded slash, backslash or ';'"
            }
            RequestError::Connect => "CONNECT is not supported: this is a reverse proxy",
        }
    }
}

impl RequestView {
    /// Normalises a request as the host received it: `method` (case-sensitive), the
    /// connection's `scheme` (`http`/`https`; an absolute-form target's own scheme wins),
    /// the request `target` as sent, every header field line as received, and the address
    /// the request came from, if known.
    pub fn parse(
        method: &str,
        scheme: &str,
        target: &str,
        mut headers: Headers,
        client: Option<IpAddr>,
    ) -> Result<Target, RequestError> {
        if method == "CONNECT" {
            return Err(RequestError::Connect);
        }
        let host_lines = headers.get_all("host").take(2).count();
        if host_lines > 1 {
            return Err(RequestError::DuplicateHost);
        }
        if target == "*" {
            return if method == "OPTIONS" {
                Ok(Target::Server)
            } else {
                Err(RequestError::InvalidTarget)
            };
        }
        let target = target.split_once('#').map_or(target, |(before, _)| before);
        let (scheme, authority, path_and_query) = if target.starts_with('/') {
            let host = match headers.get("host") {
                Some(value) => {
                    core::str::from_utf8(value).map_err(|_| RequestError::InvalidHost)?
                }
                None => return Err(RequestError::MissingHost),
            };
            (scheme.to_ascii_lowercase(), host, target)
        } else {
            let (target_scheme, rest) = target
                .split_once("://")
                .ok_or(RequestError::InvalidTarget)?;
            let target_scheme = target_scheme.to_ascii_lowercase();
            if target_scheme != "http" && target_scheme != "https" {
                return Err(RequestError::InvalidTarget);
            }
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path_and_query) = rest.split_at(end);
            (target_scheme, authority, path_and_query)
        };
        if !is_valid_authority(authority) {
            return Err(RequestError::InvalidHost);
        }
        // Most hosts are already in normal form: taken as they are, without a pass.
        let default_port = if scheme == "https" { "443" } else { "80" };
        let authority = if is_normal_host(authority, default_port)
            && !authority.contains(".:")
            && !authority.ends_with('.')
        {
            authority.to_string()
        } else {
            normalize_host(&without_trailing_dot(authority), &scheme)
        };
        if authority.is_empty() || authority.starts_with(':') {
            return Err(RequestError::InvalidHost);
        }
        let (raw_path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (path_and_query, None),
        };
        let path = if is_normal_path(raw_path) && !raw_path.contains("//") {
            raw_path.to_string()
        } else {
            normalize_path(&merge_slashes(raw_path))
        };
        if is_ambiguous(&path) {
            return Err(RequestError::AmbiguousPath);
        }
        if headers.get("host") != Some(authority.as_bytes()) {
            headers.set("host", authority.as_str());
        }
        Ok(Target::Resource(RequestView {
            method: method.to_string(),
            scheme,
            authority,
            path,
            query,
            headers,
            client,
        }))
    }

    /// A `GET` of `url` (a path, or an `http(s)://` URL) as `self` would send it, without
    /// its header fields: what the admin API warms and purges. `None` if `url` is neither.
    pub fn get_of(&self, url: &str) -> Option<RequestView> {
        if !url.starts_with('/') && !url.contains("://") {
            return None;
        }
        let headers = Headers::from_pairs([("host", self.authority.as_str())]);
        match RequestView::parse("GET", &self.scheme, url, headers, None) {
            Ok(Target::Resource(view)) => Some(view),
            _ => None,
        }
    }

    /// The method, as received (case-sensitive, RFC 9110 §9.1).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The normalised authority (`host[:port]`, lowercase, no default port).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The normalised path (no query).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query as received, without the `?`, if there was one.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The header fields: as received, with the one `Host` set to [`Self::authority`].
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The target the origin is sent: the normalised path and the query as received.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => alloc::format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The address the request came from, if the host knew it.
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The client's end-to-end fields (hop-by-hop ones removed, RFC 9110 §7.6.1), without
    /// `Host`, which an origin request carries as its own authority.
    pub fn end_to_end_headers(&self) -> Headers {
        let mut headers = self.headers.clone();
        hop_by_hop::strip(&mut headers);
        headers.remove("host");
        headers
    }

    /// The header fields sent to the origin with this request: [`Self::end_to_end_headers`]
    /// under the forwarding policy ([`forwarding::apply`]); `keyed` are the route's key
    /// fields, passed as sent. When the cache key leaves the host out (`host_keyed` false),
    /// no host goes with it: not `Host` (the origin request then names the origin's own,
    /// [`Self::origin_host`]) nor any forwarding field's.
    pub fn origin_headers(&self, trust: &Trust, keyed: &[String], host_keyed: bool) -> Headers {
        let mut headers = self.end_to_end_headers();
        if !host_keyed {
            headers.remove("host");
        }
        let authority = host_keyed.then_some(self.authority.as_str());
        forwarding::apply(
            &mut headers,
            self.client,
            &self.scheme,
            authority,
            trust,
            keyed,
        );
        headers
    }

    /// The `Host` the origin is sent ([`crate::engine::OriginRequest::host`]): the client's,
    /// or, when the key leaves the host out, none (the host uses the origin's own).
    pub fn origin_host(&self, host_keyed: bool) -> String {
        match host_keyed {
            true => self.authority.clone(),
            false => String::new(),
        }
    }

    /// Whether it is a `GET` with a `Range` (RFC 9110 §14.2: ranges are defined for `GET`
    /// only), which [`crate::policy::range`] then decides on.
    pub fn asks_for_a_range(&self) -> bool {
        self.method == "GET" && self.headers.contains("range")
    }

    /// What the cache does with the request before any lookup ([`classify`]).
    pub fn class(&self) -> RequestClass {
        classify(&self.method, &self.headers)
    }

    /// The same request with other header fields (kept: the one `Host`).
    pub fn with_headers(mut self, mut headers: Headers) -> RequestView {
        headers.set("host", self.authority.as_str());
        self.headers = headers;
        self
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2–3): an IP literal in brackets or
/// a non-empty reg-name (unreserved, sub-delims, percent-encodings), then an optional port
/// of at most five digits. No userinfo, whitespace, `/`, `?`, `#`.
fn is_valid_authority(authority: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        let literal_ok = !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'));
        (literal_ok, port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        (is_reg_name(name), port)
    };
    host_ok && port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A host name: letters, digits, `-`, `.` and `_` (what DNS names, punycoded IDNs and
/// IPv4 addresses use), non-empty and at most 255 bytes. RFC 3986's `reg-name` also allows
/// sub-delims and percent-encodings; no real host needs them, and `a.com,evil.com` in a
/// `Host` is read as two hosts by some origins.
fn is_reg_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `example.com.` is `example.com` (the root label, RFC 1034 §3.1): one key, one `Host`.
fn without_trailing_dot(authority: &str) -> String {
    if authority.starts_with('[') {
        return authority.to_string();
    }
    match authority.split_once(':') {
        Some((name, port)) => alloc::format!("{}:{port}", name.trim_end_matches('.')),
        None => authority.trim_end_matches('.').to_string(),
    }
}

/// Runs of `/` as one, as origins (nginx's `merge_slashes`, most frameworks) read them:
/// `//api/me` must meet the `/api/` route it is served as.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Whether a normalised path still holds a dot-segment, which normalisation leaves only
/// where some origins see one and the cache does not: next to `%2F` or `%5C` (an encoded `/`
/// or `\`; a raw `\` is encoded so too), or before a `;` parameter (`/a/..;/b`).
fn is_ambiguous(path: &str) -> bool {
    // Normalisation removed every plain `/`-delimited dot-segment: one can only be left
    // beside an encoded separator or before a `;`.
    let suspect = path.contains(';') || path.contains("%2F") || path.contains("%5C");
    suspect
        && path
            .split('/')
            .flat_map(|part| part.split("%2F"))
            .flat_map(|part| part.split("%5C"))
            .map(|segment| segment.split(';').next().unwrap_or(segment))
            .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(method: &str, target: &str, hosts: &[&str]) -> Result<RequestView, RequestError> {
        let headers = Headers::from_pairs(hosts.iter().map(|h| ("host", *h)));
        match RequestView::parse(method, "http", target, headers, None)? {
            Target::Resource(view) => Ok(view),
            Target::Server => panic!("asterisk-form"),
        }
    }

    #[test]
    fn origin_form_takes_the_one_host() {
        let v = view("GET", "/a/b?x=1&y", &["Example.COM:80"]).unwrap();
        assert_eq!(v.scheme(), "http");
        assert_eq!(v.authority(), "example.com");
        assert_eq!(v.path(), "/a/b");
        assert_eq!(v.query(), Some("x=1&y"));
        assert_eq!(v.target(), "/a/b?x=1&y");
        assert_eq!(v.headers().get_str("host"), Some("example.com"));
        assert_eq!(v.headers().get_all("host").count(), 1);
    }

    #[test]
    fn paths_are_normalised_once_for_everyone() {
        for (raw, path) in [
            ("/static/../nostale/v", "/nostale/v"),
            ("/%6Cive/x", "/live/x"),
            ("/x/../_edgecache/stats", "/_edgecache/stats"),
            ("/%5Fedgecache/stats", "/_edgecache/stats"),
            ("/%2e%2e/%2E/a", "/a"),
            ("/a/./b/", "/a/b/"),
            ("/a#frag", "/a"),
            ("/a%2fb", "/a%2Fb"),
            ("//api//me", "/api/me"),
            ("/a/.//../b", "/b"),
            ("/a;v=1/b", "/a;v=1/b"),
        ] {
            assert_eq!(view("GET", raw, &["h"]).unwrap().path(), path, "{raw}");
        }
        let v = view("GET", "/a/../b?q=%2e#f", &["h"]).unwrap();
        assert_eq!(
            v.target(),
            "/b?q=%2e",
            "the query goes to the origin as received"
        );
    }

    #[test]
    fn paths_origins_resolve_otherwise_are_refused() {
        for path in [
            "/static/..%2Faccount",
            "/static/..%2faccount",
            "/static%2F..%2Faccount",
            "/static%5C..%5Caccount",
            "/static\\..\\account",
            "/static/..;/account",
            "/static/.;x/account",
            "/a/..;",
        ] {
            assert_eq!(
                view("GET", path, &["h"]).unwrap_err(),
                RequestError::AmbiguousPath,
                "{path}"
            );
        }
        for fine in ["/a%2Fb", "/a/b;c=..", "/a/...;/b", "/a/..x/b", "/%2E%2E"] {
            assert!(view("GET", fine, &["h"]).is_ok(), "{fine}");
        }
    }

    #[test]
    fn absolute_form_wins_over_host() {
        let v = view("GET", "https://Origin.example:443/p?q", &["other.example"]).unwrap();
        assert_eq!(v.scheme(), "https");
        assert_eq!(v.authority(), "origin.example");
        assert_eq!(v.path(), "/p");
        assert_eq!(v.query(), Some("q"));
        assert_eq!(v.headers().get_str("host"), Some("origin.example"));
        let v = view("GET", "http://h:8080", &[]).unwrap();
        assert_eq!((v.authority(), v.path()), ("h:8080", "/"));
        let v = view("GET", "http://h?q=1", &[]).unwrap();
        assert_eq!((v.path(), v.query()), ("/", Some("q=1")));
    }

    #[test]
    fn host_rules() {
        use RequestError::*;
        assert_eq!(view("GET", "/", &[]).unwrap_err(), MissingHost);
        assert_eq!(view("GET", "/", &["a", "b"]).unwrap_err(), DuplicateHost);
        assert_eq!(view("GET", "/", &["a", "a"]).unwrap_err(), DuplicateHost);
        assert_eq!(
            view("GET", "http://a/", &["a", "b"]).unwrap_err(),
            DuplicateHost,
            "two Host lines are an error whatever the target (RFC 9112 §3.2)"
        );
        for bad in [
            "", "a b", "a/b", "a?b", "a#b", "u@a", "a:x", "a:123456", "[::1", "[zz]", "a, b",
            ":80", "[]", "a,b", "a;b", "a%2eb", ".", "..:80",
        ] {
            assert_eq!(
                view("GET", "/", &[bad]).unwrap_err(),
                InvalidHost,
                "{bad:?}"
            );
        }
        assert_eq!(view("GET", "http://u:p@a/", &[]).unwrap_err(), InvalidHost);
        assert_eq!(view("GET", "http:///x", &[]).unwrap_err(), InvalidHost);
        for good in [
            "a",
            "a.b-c_d",
            "a:8080",
            "a:",
            "[::1]",
            "[::1]:8080",
            "1.2.3.4:1",
        ] {
            assert!(view("GET", "/", &[good]).is_ok(), "{good:?}");
        }
        let v = view("GET", "/", &["Example.com.:80"]).unwrap();
        assert_eq!(
            v.authority(),
            "example.com",
            "the root label's dot is dropped"
        );
    }

    #[test]
    fn target_forms() {
        use RequestError::*;
        assert_eq!(view("GET", "a/b", &["h"]).unwrap_err(), InvalidTarget);
        assert_eq!(view("GET", "ftp://h/x", &["h"]).unwrap_err(), InvalidTarget);
        assert_eq!(view("GET", "*", &["h"]).unwrap_err(), InvalidTarget);
        assert_eq!(view("CONNECT", "h:443", &["h"]).unwrap_err(), Connect);
        assert!(matches!(
            RequestView::parse(
                "OPTIONS",
                "http",
                "*",
                Headers::from_pairs([("host", "h")]),
                None
            ),
            Ok(Target::Server)
        ));
        assert_eq!(Connect.status(), 501);
        assert_eq!(MissingHost.status(), 400);
    }

    #[test]
    fn get_of_resolves_paths_and_urls_like_requests() {
        let admin = view("POST", "/_edgecache/warm", &["site.example"]).unwrap();
        let w = admin.get_of("/r/../_edgecache/stats").unwrap();
        assert_eq!(w.path(), "/_edgecache/stats");
        assert_eq!(w.authority(), "site.example");
        let w = admin.get_of("https://Other.example/a?b").unwrap();
        assert_eq!(
            (w.scheme(), w.authority(), w.target().as_str()),
            ("https", "other.example", "/a?b")
        );
        assert!(admin.get_of("relative").is_none());
        assert!(admin.get_of("ftp://x/y").is_none());
        assert!(admin.get_of("http://a b/").is_none());
    }
}
