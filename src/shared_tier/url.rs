//! Shared-tier URLs, parsed once at start so a bad URL is a clear config error:
//! `redis://` / `rediss://` URLs (the IANA `redis` scheme:
//! `redis://[[user]:password@]host[:port][/db]`) for RESP, and `https://` URLs of a Redis over
//! HTTP server (the Upstash REST protocol, [`super::rest`]), whose token is kept apart from
//! the URL. [`SharedTierUrl`] tells them apart by scheme. Nothing here ever echoes a password:
//! error messages name the part that is wrong, not its value.

use alloc::string::{String, ToString};
use core::fmt;

/// Where and how to reach a Redis-compatible server.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (6379 unless given).
    pub port: u16,
    /// TLS (`rediss://`), as hosted services such as Upstash require.
    pub tls: bool,
    /// ACL user name (`AUTH user password`), if given.
    pub username: Option<String>,
    /// Password (`AUTH password`), if given. Never printed.
    pub password: Option<String>,
    /// Logical database (`SELECT db`), 0 unless given.
    pub db: u32,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

/// Why a Redis URL was refused. The messages are fixed text: nothing of the URL (which may
/// hold a password) can reach a log or a response through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisUrlError {
    /// Neither `redis://` nor `rediss://`.
    Scheme,
    /// No host.
    MissingHost,
    /// An IPv6 host without its closing `]`, or text after it.
    BadIpv6,
    /// A port that is not 1 to 65535.
    BadPort,
    /// A database that is not a number.
    BadDatabase,
    /// A malformed `%XX` escape, or one that is not UTF-8, in the user name or password.
    BadEscape,
}

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedisUrlError::Scheme => "must start with redis:// or rediss://",
            RedisUrlError::MissingHost => "the host is missing",
            RedisUrlError::BadIpv6 => {
                "the IPv6 host needs its closing `]` (and only `:port` after it)"
            }
            RedisUrlError::BadPort => "the port is not a number from 1 to 65535",
            RedisUrlError::BadDatabase => "the database (the path) is not a number",
            RedisUrlError::BadEscape => "the user name or password has a bad %-escape",
        })
    }
}

impl RedisUrl {
    /// Parses `url`. The credentials are split off at the *last* `@`, so a password with an
    /// unescaped `/`, `?` or `#` (common in generated tokens) still parses as a password.
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err(RedisUrlError::Scheme);
        };
        let (userinfo, rest) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (hostport, path) = (&rest[..end], &rest[end..]);
        let (username, password) = match userinfo {
            None => (None, None),
            // `user:password`, `:password`, or `user` alone (a user name and no password,
            // as redis-rs reads it natively: no AUTH is sent).
            Some(info) => {
                let (user, pass) = match info.find(':') {
                    Some(i) => (&info[..i], Some(&info[i + 1..])),
                    None => (info, None),
                };
                let user = percent_decode(user).ok_or(RedisUrlError::BadEscape)?;
                let pass = pass
                    .map(|p| percent_decode(p).ok_or(RedisUrlError::BadEscape))
                    .transpose()?;
                (
                    (!user.is_empty()).then_some(user),
                    pass.filter(|p| !p.is_empty()),
                )
            }
        };
        let (host, port) = split_host_port(hostport, 6379)?;
        let db_text = path
            .strip_prefix('/')
            .unwrap_or("")
            .split(['?', '#'])
            .next()
            .unwrap_or("");
        let db = if db_text.is_empty() {
            0
        } else {
            db_text
                .parse::<u32>()
                .map_err(|_| RedisUrlError::BadDatabase)?
        };
        Ok(RedisUrl {
            host,
            port,
            tls,
            username,
            password,
            db,
        })
    }
}

fn split_host_port(hostport: &str, default_port: u16) -> Result<(String, u16), RedisUrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or(RedisUrlError::BadIpv6)?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(RedisUrlError::BadIpv6),
        };
        (&rest[..end], port)
    } else {
        match hostport.rfind(':') {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(RedisUrlError::MissingHost);
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(RedisUrlError::BadPort)?,
    };
    Ok((host.to_string(), port))
}

/// Decodes `%XX` escapes; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = alloc::vec::Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a Redis over HTTP server answers (Upstash's "REST URL", or a self-hosted
/// Upstash-compatible server such as serverless-redis-http): commands go to `{base}/pipeline`
/// and `{base}/multi-exec`. Its token is configured apart: a URL ends up in logs and
/// dashboards, a secret does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestUrl {
    /// `scheme://authority[/path]` with no trailing `/`.
    pub base: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (443 for `https://`, 80 for `http://`, unless given).
    pub port: u16,
    /// `https://` (always, but on loopback).
    pub tls: bool,
}

/// Why a REST URL was refused (fixed text, as [`RedisUrlError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestUrlError {
    /// Neither `https://` nor `http://`.
    Scheme,
    /// No host.
    MissingHost,
    /// `user:password@` in the URL.
    Credentials,
    /// A `?query` or `#fragment`.
    QueryOrFragment,
    /// An IPv6 host without its closing `]`, or text after it.
    BadIpv6,
    /// A port that is not 1 to 65535.
    BadPort,
    /// `http://` to a host that is not loopback: the token would cross the network in clear.
    PlainHttp,
}

impl fmt::Display for RestUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestUrlError::Scheme => "must start with https://",
            RestUrlError::MissingHost => "the host is missing",
            RestUrlError::Credentials => {
                "a REST URL carries no credentials: set the token as a secret of its own"
            }
            RestUrlError::QueryOrFragment => "a REST URL takes no ?query or #fragment",
            RestUrlError::BadIpv6 => {
                "the IPv6 host needs its closing `]` (and only `:port` after it)"
            }
            RestUrlError::BadPort => "the port is not a number from 1 to 65535",
            RestUrlError::PlainHttp => {
                "http:// would send the token in clear: use https:// (http:// is for a server on loopback, in local development)"
            }
        })
    }
}

impl RestUrl {
    /// Parses `url`: `https://host[:port][/path]`, or `http://` to a loopback host
    /// (`localhost`, `127.0.0.0/8`, `::1`) for local development.
    pub fn parse(url: &str) -> Result<Self, RestUrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(RestUrlError::Scheme);
        };
        if rest.contains(['?', '#']) {
            return Err(RestUrlError::QueryOrFragment);
        }
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = (&rest[..end], &rest[end..]);
        if authority.contains('@') {
            return Err(RestUrlError::Credentials);
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port).map_err(|e| match e {
            RedisUrlError::MissingHost => RestUrlError::MissingHost,
            RedisUrlError::BadIpv6 => RestUrlError::BadIpv6,
            _ => RestUrlError::BadPort,
        })?;
        if !tls && !is_loopback(&host) {
            return Err(RestUrlError::PlainHttp);
        }
        let scheme = if tls { "https" } else { "http" };
        let base = alloc::format!("{scheme}://{authority}{}", path.trim_end_matches('/'));
        Ok(RestUrl {
            base,
            host,
            port,
            tls,
        })
    }
}

/// `localhost`, an IPv4 address in `127.0.0.0/8`, or `::1`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<core::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host
            .parse::<core::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A shared tier's URL, its scheme choosing the transport: `redis://` / `rediss://` for
/// RESP over a connection, `https://` (or `http://` on loopback) for Redis over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedTierUrl {
    /// RESP (`redis://`, `rediss://`).
    Resp(RedisUrl),
    /// Redis over HTTP (`https://`).
    Rest(RestUrl),
}

/// Why a shared-tier URL was refused (fixed text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedTierUrlError {
    /// A scheme that names no transport.
    Scheme,
    /// A `redis://` / `rediss://` URL that is wrong.
    Resp(RedisUrlError),
    /// An `https://` URL that is wrong.
    Rest(RestUrlError),
}

impl fmt::Display for SharedTierUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedTierUrlError::Scheme => f.write_str(
                "must start with redis:// or rediss:// (RESP over a socket) or https:// (Redis over HTTP, such as Upstash's REST URL)",
            ),
            SharedTierUrlError::Resp(e) => e.fmt(f),
            SharedTierUrlError::Rest(e) => e.fmt(f),
        }
    }
}

impl SharedTierUrl {
    /// Parses `url`, choosing the transport by its scheme.
    pub fn parse(url: &str) -> Result<Self, SharedTierUrlError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme == "redis" || scheme == "rediss" {
            RedisUrl::parse(url)
                .map(SharedTierUrl::Resp)
                .map_err(SharedTierUrlError::Resp)
        } else if scheme == "https" || scheme == "http" {
            RestUrl::parse(url)
                .map(SharedTierUrl::Rest)
                .map_err(SharedTierUrlError::Rest)
        } else {
            Err(SharedTierUrlError::Scheme)
        }
    }
}

/// A shared tier as a host is configured with it: a URL and, for Redis over HTTP, a token
/// kept apart from it (a secret of its own: URLs end up in logs and dashboards).
#[derive(Clone, PartialEq, Eq)]
pub enum SharedTierTarget {
    /// RESP (`redis://`, `rediss://`; credentials in the URL).
    Resp(RedisUrl),
    /// Redis over HTTP (`https://`), with its bearer token.
    Rest {
        /// The REST URL.
        url: RestUrl,
        /// The bearer token. Never printed.
        token: String,
    },
}

impl fmt::Debug for SharedTierTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedTierTarget::Resp(url) => f.debug_tuple("Resp").field(url).finish(),
            SharedTierTarget::Rest { url, .. } => f
                .debug_struct("Rest")
                .field("url", url)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Why a URL and token do not make a shared tier (fixed text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// The URL is wrong.
    Url(SharedTierUrlError),
    /// A token and no URL.
    TokenWithoutUrl,
    /// A token with a RESP URL, whose credentials are in the URL.
    TokenWithRespUrl,
    /// A REST URL and no token.
    MissingToken,
    /// A token that cannot go in a header (only visible ASCII can).
    BadToken,
}

impl SharedTierTarget {
    /// The shared tier `url` and `token` configure, if any: the URL's scheme chooses the
    /// transport, and a token goes with a REST URL only (required there). Blank values are
    /// unset, and white space around a token (a secret pasted with its newline) is dropped.
    pub fn from_settings(
        url: Option<&str>,
        token: Option<&str>,
    ) -> Result<Option<SharedTierTarget>, TargetError> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(url) = url else {
            return match token {
                Some(_) => Err(TargetError::TokenWithoutUrl),
                None => Ok(None),
            };
        };
        match (SharedTierUrl::parse(url).map_err(TargetError::Url)?, token) {
            (SharedTierUrl::Resp(url), None) => Ok(Some(SharedTierTarget::Resp(url))),
            (SharedTierUrl::Resp(_), Some(_)) => Err(TargetError::TokenWithRespUrl),
            (SharedTierUrl::Rest(_), None) => Err(TargetError::MissingToken),
            (SharedTierUrl::Rest(_), Some(t)) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(TargetError::BadToken)
            }
            (SharedTierUrl::Rest(url), Some(token)) => Ok(Some(SharedTierTarget::Rest {
                url,
                token: token.to_string(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_host_gets_default_port_and_db() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls, u.db),
            ("127.0.0.1", 6379, false, 0)
        );
        assert_eq!((u.username, u.password), (None, None));
    }

    #[test]
    fn full_url_with_user_password_db_and_tls() {
        let u = RedisUrl::parse("rediss://default:p%40ss%3Aw@eu1.upstash.io:6380/3").unwrap();
        assert_eq!(u.host, "eu1.upstash.io");
        assert_eq!((u.port, u.tls, u.db), (6380, true, 3));
        assert_eq!(u.username.as_deref(), Some("default"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w"));
    }

    #[test]
    fn password_only_and_user_only_forms() {
        let u = RedisUrl::parse("redis://:secret@h:1").unwrap();
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (None, Some("secret"))
        );
        // As redis-rs reads it natively: a user name alone, so no AUTH.
        let u = RedisUrl::parse("redis://someone@h:1").unwrap();
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("someone"), None)
        );
    }

    #[test]
    fn a_password_with_unescaped_slash_query_or_hash_still_parses() {
        let u = RedisUrl::parse("rediss://default:ab/cd?e#f@h.example:6380/2").unwrap();
        assert_eq!(u.password.as_deref(), Some("ab/cd?e#f"));
        assert_eq!((u.host.as_str(), u.port, u.db), ("h.example", 6380, 2));
    }

    #[test]
    fn a_query_after_the_port_or_path_is_ignored() {
        let u = RedisUrl::parse("redis://h:7000?protocol=resp2").unwrap();
        assert_eq!((u.port, u.db), (7000, 0));
        let u = RedisUrl::parse("redis://h/4?x=1").unwrap();
        assert_eq!(u.db, 4);
    }

    #[test]
    fn ipv6_host() {
        let u = RedisUrl::parse("redis://[::1]:7000/0").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
    }

    #[test]
    fn errors_are_fixed_text_that_never_quote_the_url() {
        for (url, expected) in [
            ("http://h", RedisUrlError::Scheme),
            ("redis://", RedisUrlError::MissingHost),
            ("redis://h:0", RedisUrlError::BadPort),
            ("redis://h:99999", RedisUrlError::BadPort),
            ("redis://u:s3cr3t-99999@h:s3cr3t", RedisUrlError::BadPort),
            ("redis://h/s3cr3t", RedisUrlError::BadDatabase),
            ("redis://u:s3cr%zz@h", RedisUrlError::BadEscape),
            ("redis://[::1", RedisUrlError::BadIpv6),
        ] {
            assert_eq!(RedisUrl::parse(url).unwrap_err(), expected, "{url}");
            assert!(!expected.to_string().contains("s3cr"));
        }
        let dbg = format!("{:?}", RedisUrl::parse("redis://:hunter2@h").unwrap());
        assert!(
            !dbg.contains("hunter2") && dbg.contains("redacted"),
            "{dbg}"
        );
    }
    #[test]
    fn the_scheme_chooses_the_transport() {
        let resp = SharedTierUrl::parse("rediss://:pw@eu1.upstash.io:6379").unwrap();
        assert!(matches!(resp, SharedTierUrl::Resp(ref u) if u.tls && u.port == 6379));
        let rest = SharedTierUrl::parse("https://eu1-sweet-cat-1234.upstash.io").unwrap();
        assert_eq!(
            rest,
            SharedTierUrl::Rest(RestUrl {
                base: "https://eu1-sweet-cat-1234.upstash.io".into(),
                host: "eu1-sweet-cat-1234.upstash.io".into(),
                port: 443,
                tls: true,
            })
        );
        for url in [
            "ftp://h",
            "h:6379",
            "",
            "REDIS://h",
            "unix:///tmp/redis.sock",
        ] {
            assert_eq!(
                SharedTierUrl::parse(url).unwrap_err(),
                SharedTierUrlError::Scheme,
                "{url}"
            );
        }
        assert_eq!(
            SharedTierUrl::parse("redis://h:0").unwrap_err(),
            SharedTierUrlError::Resp(RedisUrlError::BadPort)
        );
    }

    #[test]
    fn rest_urls_keep_a_path_prefix_and_drop_a_trailing_slash() {
        let u = RestUrl::parse("https://redis.example:8443/srh/").unwrap();
        assert_eq!(u.base, "https://redis.example:8443/srh");
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("redis.example", 8443, true)
        );
        let u = RestUrl::parse("https://[2001:db8::1]/").unwrap();
        assert_eq!(
            (u.base.as_str(), u.host.as_str(), u.port),
            ("https://[2001:db8::1]", "2001:db8::1", 443)
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:8079",
            "http://localhost",
            "http://[::1]:80/x",
            "http://127.3.2.1",
        ] {
            let u = RestUrl::parse(url).unwrap();
            assert!(!u.tls, "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "http://redis.example",
            "http://[2001:db8::1]",
            "http://127.0.0.1.example",
        ] {
            assert_eq!(
                RestUrl::parse(url).unwrap_err(),
                RestUrlError::PlainHttp,
                "{url}"
            );
        }
    }

    #[test]
    fn rest_url_errors_never_quote_the_url() {
        for (url, expected) in [
            (
                "https://default:s3cr3t@h.upstash.io",
                RestUrlError::Credentials,
            ),
            (
                "https://h.upstash.io/?_token=s3cr3t",
                RestUrlError::QueryOrFragment,
            ),
            ("https://h.upstash.io#s3cr3t", RestUrlError::QueryOrFragment),
            ("https://", RestUrlError::MissingHost),
            ("https:///path", RestUrlError::MissingHost),
            ("https://h:99999", RestUrlError::BadPort),
            ("https://h:s3cr3t", RestUrlError::BadPort),
            ("https://[::1", RestUrlError::BadIpv6),
            ("redis://h", RestUrlError::Scheme),
        ] {
            assert_eq!(RestUrl::parse(url).unwrap_err(), expected, "{url}");
            assert!(!expected.to_string().contains("s3cr"));
            if let Err(whole) = SharedTierUrl::parse(url) {
                assert!(!whole.to_string().contains("s3cr3t"), "{whole}");
            }
        }
    }
    #[test]
    fn a_token_goes_with_a_rest_url_only() {
        let rest = SharedTierTarget::from_settings(
            Some(" https://eu1-cat.upstash.io "),
            Some("AXtoken=\n"),
        )
        .unwrap()
        .unwrap();
        assert!(
            matches!(&rest, SharedTierTarget::Rest { url, token } if url.base == "https://eu1-cat.upstash.io" && token == "AXtoken="),
            "{rest:?}"
        );
        let debug = format!("{rest:?}");
        assert!(
            !debug.contains("AXtoken") && debug.contains("redacted"),
            "{debug}"
        );
        assert!(matches!(
            SharedTierTarget::from_settings(Some("redis://h:1"), Some("  ")),
            Ok(Some(SharedTierTarget::Resp(_)))
        ));
        assert_eq!(SharedTierTarget::from_settings(None, None), Ok(None));
        assert_eq!(
            SharedTierTarget::from_settings(Some(" "), Some("")),
            Ok(None)
        );
        for (url, token, expected) in [
            (None, Some("t"), TargetError::TokenWithoutUrl),
            (
                Some("rediss://:pw@h"),
                Some("t"),
                TargetError::TokenWithRespUrl,
            ),
            (Some("https://h"), None, TargetError::MissingToken),
            (Some("https://h"), Some("two words"), TargetError::BadToken),
            (Some("https://h"), Some("t\u{e9}"), TargetError::BadToken),
            (
                Some("http://10.0.0.1"),
                Some("t"),
                TargetError::Url(SharedTierUrlError::Rest(RestUrlError::PlainHttp)),
            ),
            (
                Some("tcp://h"),
                None,
                TargetError::Url(SharedTierUrlError::Scheme),
            ),
        ] {
            assert_eq!(
                SharedTierTarget::from_settings(url, token),
                Err(expected),
                "{url:?}"
            );
        }
    }
}
