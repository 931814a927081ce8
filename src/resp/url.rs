//! `redis://` / `rediss://` URLs (the IANA `redis` scheme: `redis://[[user]:password@]host[:port][/db]`),
//! parsed once at start so a bad URL is a clear config error. Nothing here ever echoes the
//! password: error messages name the part that is wrong, not its value.

use alloc::format;
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

impl RedisUrl {
    /// Parses `url`; the error says which part is wrong (never quoting credentials).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err("must start with redis:// or rediss://".to_string());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.find(':') {
                    Some(i) => (&info[..i], Some(&info[i + 1..])),
                    None => (info, None),
                };
                let user = percent_decode(user).ok_or("the user name has a bad %-escape")?;
                let pass = pass
                    .map(|p| percent_decode(p).ok_or("the password has a bad %-escape"))
                    .transpose()?;
                // `redis://secret@host` means a password with no user (as redis-cli reads it).
                match pass {
                    Some(p) => ((!user.is_empty()).then_some(user), Some(p)),
                    None if user.is_empty() => (None, None),
                    None => (None, Some(user)),
                }
            }
        };
        let (host, port) = split_host_port(hostport)?;
        let db_text = path.split(['?', '#']).next().unwrap_or("");
        let db = if db_text.is_empty() {
            0
        } else {
            db_text
                .parse::<u32>()
                .map_err(|_| format!("database `{db_text}` is not a number"))?
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

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or("an IPv6 host needs a closing `]`")?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the IPv6 host".to_string()),
        };
        (&rest[..end], port)
    } else {
        match hostport.rfind(':') {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))?,
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
    fn password_only_forms() {
        let a = RedisUrl::parse("redis://:secret@h:1").unwrap();
        let b = RedisUrl::parse("redis://secret@h:1").unwrap();
        for u in [a, b] {
            assert_eq!(
                (u.username.as_deref(), u.password.as_deref()),
                (None, Some("secret"))
            );
        }
    }

    #[test]
    fn ipv6_host() {
        let u = RedisUrl::parse("redis://[::1]:7000/0").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
    }

    #[test]
    fn errors_name_the_part_and_never_the_password() {
        for (url, needle) in [
            ("http://h", "redis://"),
            ("redis://", "host"),
            ("redis://h:0", "port"),
            ("redis://h:99999", "port"),
            ("redis://h/x", "database"),
            ("redis://u:s3cr%zz@h", "password"),
            ("redis://[::1", "`]`"),
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("s3cr"), "{url}: {e}");
        }
        let dbg = format!("{:?}", RedisUrl::parse("redis://:hunter2@h").unwrap());
        assert!(
            !dbg.contains("hunter2") && dbg.contains("redacted"),
            "{dbg}"
        );
    }
}
