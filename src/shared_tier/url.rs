//! `redis://` / `rediss://` URLs (the IANA `redis` scheme: `redis://[[user]:password@]host[:port][/db]`),
//! parsed once at start so a bad URL is a clear config error. Nothing here ever echoes the
//! password: error messages name the part that is wrong, not its value.

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
        let (host, port) = split_host_port(hostport)?;
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

fn split_host_port(hostport: &str) -> Result<(String, u16), RedisUrlError> {
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
        None => 6379,
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
}
