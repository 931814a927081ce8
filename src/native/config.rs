//! The native configuration: a TOML file with the server's own fields around the shared
//! engine schema, overridden by command-line flags, validated before anything starts.
//!
//! ```toml
//! listen = "127.0.0.1:8787"
//! origin = "http://127.0.0.1:8080"       # or https:// (TLS, certificate verified)
//! # redis = "redis://127.0.0.1:6379/0"   # optional shared tier; memory only without it
//! # origin_ca_file = "/etc/edgecache/origin-ca.pem"  # extra CAs for an https:// origin
//! # redis_ca_file = "/etc/edgecache/redis-ca.pem"    # extra CAs for a rediss:// tier
//!
//! [connections]                          # see native::connections
//! header_timeout_ms = 15000
//!
//! [cache.l1]
//! max_entries = 100000
//! max_bytes = 268435456
//!
//! [cache.admin]
//! # token: prefer the EDGECACHE_ADMIN_TOKEN environment variable
//!
//! [cache.stats]
//! report_secs = 10                       # with redis: report to the fleet's totals this often
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::connections::ConnectionLimits;
use super::tls::{CaFile, Trust};
use crate::engine::config::{ConfigError, EngineConfig};

/// Everything `edgecache serve` needs. Its `Debug` (what `check-config` prints) hides the
/// Redis password and the admin token.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Origin base URL (`http://host:port`).
    #[serde(default)]
    pub origin: String,
    /// Redis URL of the shared tier; none runs memory-only.
    #[serde(default)]
    pub redis: Option<String>,
    /// A PEM file of CA certificates an `https://` origin's certificate may also chain to
    /// (Mozilla's roots are always trusted); for private CAs.
    #[serde(default)]
    pub origin_ca_file: Option<PathBuf>,
    /// A PEM file of CA certificates a `rediss://` server's certificate may also chain to
    /// (Mozilla's roots are always trusted); for private CAs.
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// Client connection limits: header timeout, connection caps.
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// The cache engine's settings.
    #[serde(default)]
    pub cache: EngineConfig,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("origin", &self.origin)
            .field("redis", &self.redis.as_deref().map(redacted_redis_url))
            .field("origin_ca_file", &self.origin_ca_file)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("connections", &self.connections)
            .field("cache", &self.cache)
            .finish()
    }
}

/// `url` with the password (everything between the user name's `:` and the last `@`, as
/// [`crate::shared_tier::url::RedisUrl`] reads it) replaced by `<redacted>`.
fn redacted_redis_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted: not a URL>".into();
    };
    match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn invalid(field: &str, message: String) -> LoadError {
    LoadError::Invalid(ConfigError {
        field: field.to_string(),
        message,
    })
}

fn default_listen() -> String {
    "127.0.0.1:8787".to_string()
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            origin: String::new(),
            redis: None,
            origin_ca_file: None,
            redis_ca_file: None,
            connections: ConnectionLimits::default(),
            cache: EngineConfig::default(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read(String, std::io::Error),
    /// The file is not valid TOML for this schema (the message names the field).
    Parse(String, String),
    /// A value is out of range.
    Invalid(ConfigError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(path, e) => write!(f, "cannot read config file {path}: {e}"),
            LoadError::Parse(path, e) => write!(f, "config file {path}: {e}"),
            LoadError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl ServeConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read(name.clone(), e))?;
        Self::from_toml(&text).map_err(|e| match e {
            LoadError::Parse(_, msg) => LoadError::Parse(name, msg),
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        toml::from_str(text).map_err(|e| LoadError::Parse("<inline>".into(), e.to_string()))
    }

    /// Checks the server's own fields (reading the CA files) and the engine's.
    pub fn validate(&self) -> Result<SocketAddr, LoadError> {
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            invalid(
                "listen",
                format!("`{}` is not an address:port ({e})", self.listen),
            )
        })?;
        if self.origin.is_empty() {
            return Err(invalid(
                "origin",
                "is required (e.g. --origin http://127.0.0.1:8080)".into(),
            ));
        }
        super::origin::HyperOrigin::new(&self.origin).map_err(|m| invalid("origin", m))?;
        if let Some(redis) = &self.redis {
            crate::shared_tier::url::RedisUrl::parse(redis)
                .map_err(|m| invalid("redis", m.to_string()))?;
            // redis-rs reads this fragment as "skip certificate checks"; not offered.
            let after_credentials = redis.rsplit('@').next().unwrap_or("");
            if after_credentials.contains("#insecure") {
                return Err(invalid(
                    "redis",
                    "#insecure would turn certificate verification off, which edgecache does not do (trust a private CA with redis_ca_file)".into(),
                ));
            }
        }
        self.trust()?;
        self.connections
            .validate()
            .map_err(|(field, message)| invalid(field, message))?;
        self.cache.validate().map_err(LoadError::Invalid)?;
        self.cache
            .validate_shared_tier(self.redis.is_some())
            .map_err(LoadError::Invalid)?;
        // `cache.colo` configures the Workers Cache API tier; edgecache serve has none and
        // ignores it (its /stats say `"colo":"none on this host"`).
        Ok(listen)
    }

    /// Reads the CA files. A file set for an upstream that is not TLS is refused too: it
    /// would be silently unused, and the link it was meant to secure would be plaintext.
    pub fn trust(&self) -> Result<Trust, LoadError> {
        let origin_tls = self
            .origin
            .parse::<http::Uri>()
            .is_ok_and(|uri| uri.scheme_str() == Some("https"));
        let redis_tls = self
            .redis
            .as_deref()
            .and_then(|url| crate::shared_tier::url::RedisUrl::parse(url).ok())
            .is_some_and(|url| url.tls);
        Ok(Trust {
            origin: ca_file("origin_ca_file", self.origin_ca_file.as_deref(), origin_tls)?,
            redis: ca_file("redis_ca_file", self.redis_ca_file.as_deref(), redis_tls)?,
        })
    }
}

/// Loads `path` for `field`, which applies only when its upstream uses TLS.
fn ca_file(field: &str, path: Option<&Path>, tls: bool) -> Result<Option<CaFile>, LoadError> {
    let Some(path) = path else {
        return Ok(None);
    };
    if !tls {
        let upstream = if field == "origin_ca_file" {
            "origin is not an https:// URL"
        } else {
            "redis is not a rediss:// URL"
        };
        return Err(invalid(
            field,
            format!("is set but {upstream}: the connection would not use TLS"),
        ));
    }
    CaFile::load(path).map(Some).map_err(|m| invalid(field, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = ServeConfig::from_toml("origin = \"http://a\"\n[cache.l1]\nmax_entriez = 5\n")
            .unwrap_err();
        assert!(err.to_string().contains("max_entriez"), "{err}");
    }

    #[test]
    fn validation_names_fields() {
        let c = ServeConfig::from_toml("origin = \"ftp://x\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("`origin`"));
        let c = ServeConfig::from_toml("origin = \"http://x\"\nlisten = \"nope\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("`listen`"));
        let c =
            ServeConfig::from_toml("origin = \"http://x\"\n[cache.limits]\norigin_timeout_ms = 0")
                .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.origin_timeout_ms"));
        let c = ServeConfig::from_toml("origin = \"http://127.0.0.1:1\"").unwrap();
        assert!(c.validate().is_ok());
        let c = ServeConfig::from_toml("origin = \"https://example.com\"").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn debug_output_hides_the_redis_password() {
        for (url, shown) in [
            (
                "rediss://default:hun@ter2@h:6380/0",
                "rediss://default:<redacted>@h:6380/0",
            ),
            ("redis://:hunter2@h", "redis://:<redacted>@h"),
            ("redis://someone@h:1", "redis://someone@h:1"),
            ("redis://h:1/2", "redis://h:1/2"),
            ("hunter2", "<redacted: not a URL>"),
        ] {
            let config = ServeConfig {
                redis: Some(url.into()),
                ..ServeConfig::default()
            };
            let debug = format!("{config:?}");
            assert!(debug.contains(shown), "{debug}");
            assert!(
                !debug.contains("hunter2") && !debug.contains("ter2"),
                "{debug}"
            );
        }
    }

    #[test]
    fn ca_files_are_read_at_validation_and_named_when_wrong() {
        let missing = "/nonexistent/edgecache-ca.pem";
        let cases = [
            (
                format!("origin = \"https://a\"\norigin_ca_file = \"{missing}\""),
                "`origin_ca_file`: cannot read /nonexistent/edgecache-ca.pem",
            ),
            (
                format!("origin = \"http://a\"\nredis = \"rediss://:pw@r\"\nredis_ca_file = \"{missing}\""),
                "`redis_ca_file`: cannot read",
            ),
            (
                format!("origin = \"http://a\"\norigin_ca_file = \"{missing}\""),
                "`origin_ca_file`: is set but origin is not an https:// URL",
            ),
            (
                format!("origin = \"http://a\"\nredis = \"redis://r\"\nredis_ca_file = \"{missing}\""),
                "`redis_ca_file`: is set but redis is not a rediss:// URL",
            ),
            (
                format!("origin = \"http://a\"\nredis_ca_file = \"{missing}\""),
                "`redis_ca_file`: is set but redis is not a rediss:// URL",
            ),
            (
                "origin = \"http://a\"\nredis = \"rediss://:pw@r:6380/0#insecure\"".to_string(),
                "`redis`: #insecure would turn certificate verification off",
            ),
        ];
        for (toml, expected) in cases {
            let c = ServeConfig::from_toml(&toml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{toml}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn write_behind_routes_need_redis() {
        let text = "origin = \"http://127.0.0.1:1\"\n[cache.write_behind]\nroutes = [\"/q/\"]\n";
        let c = ServeConfig::from_toml(text).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`write_behind.routes`"), "{err}");
        let with_redis = format!("redis = \"redis://127.0.0.1:6379\"\n{text}");
        assert!(ServeConfig::from_toml(&with_redis)
            .unwrap()
            .validate()
            .is_ok());
    }
}
