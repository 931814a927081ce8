//! The forwarding policy: which request fields that describe the client, the original URL
//! or the method reach the origin. None of them is part of the cache key, so a client-sent
//! `X-Forwarded-Host` an origin builds links from would choose what everyone else is served
//! (cache poisoning). edgecache sets its own and drops the client's, unless the connection
//! comes from a proxy the operator trusts ([`ForwardingConfig::trusted_proxies`]).
//!
//! Sent to the origin for every request:
//! - `Forwarded: for=…;host=…;proto=…` (RFC 7239 §4), `X-Forwarded-For`, `X-Forwarded-Host`
//!   and `X-Forwarded-Proto`, from the client's address and the request view's authority and
//!   scheme. From a trusted proxy, its `Forwarded` and `X-Forwarded-For` are extended (its
//!   address appended) and its other forwarding fields kept.
//! - Never: the URL and method overrides some frameworks obey ([`OVERRIDE_FIELDS`]), which
//!   would make the origin answer another URL or method than the one the key names.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::headers::Headers;

/// Fields that tell the origin who the client is, or which host and scheme it asked for:
/// replaced by edgecache's own unless sent by a trusted proxy.
pub const FORWARDING_FIELDS: [&str; 10] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-host",
    "x-real-ip",
];

/// Fields that make frameworks answer another URL or method than the request line's: never
/// forwarded, whoever sends them.
pub const OVERRIDE_FIELDS: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Which clients may speak for others.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Addresses of proxies in front of edgecache whose forwarding fields are kept and
    /// extended: IP addresses or CIDR blocks (`10.0.0.0/8`, `::1/128`). Default: none, so
    /// what clients send about themselves never reaches the origin.
    pub trusted_proxies: Vec<String>,
}

/// An address block: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`.
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpBlock { addr, prefix })
    }

    /// Whether `ip` is in this block (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p)),
    };
    a & mask == b & mask
}

/// The trusted proxies, parsed once.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    blocks: Vec<IpBlock>,
}

impl Trust {
    /// Parses `config`; the error names the entry that is not an address or block.
    pub fn new(config: &ForwardingConfig) -> Result<Trust, (usize, String)> {
        let blocks = config
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| IpBlock::parse(text).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()?;
        Ok(Trust { blocks })
    }

    /// Whether a connection from `client` is a trusted proxy's.
    pub fn trusts(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.blocks.iter().any(|b| b.contains(ip)))
    }
}

/// Applies the policy to `headers` (the client's end-to-end fields) for a request from
/// `client` to `scheme://authority`: the result is what the origin receives.
pub fn apply(
    headers: &mut Headers,
    client: Option<IpAddr>,
    scheme: &str,
    authority: &str,
    trust: &Trust,
) {
    for name in OVERRIDE_FIELDS {
        headers.remove(name);
    }
    let trusted = trust.trusts(client);
    let (prior_forwarded, prior_for) = if trusted {
        (
            joined(headers, "forwarded"),
            joined(headers, "x-forwarded-for"),
        )
    } else {
        for name in FORWARDING_FIELDS {
            headers.remove(name);
        }
        (None, None)
    };
    let mut element = String::new();
    if let Some(ip) = client {
        element.push_str("for=");
        element.push_str(&node(ip));
        element.push(';');
    }
    element.push_str("host=");
    element.push_str(&quoted_if_needed(authority));
    element.push_str(";proto=");
    element.push_str(scheme);
    let forwarded = match prior_forwarded {
        Some(prior) => format!("{prior}, {element}"),
        None => element,
    };
    headers.set("forwarded", forwarded);
    if let Some(ip) = client {
        let value = match prior_for {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        headers.set("x-forwarded-for", value);
    }
    if !(trusted && headers.contains("x-forwarded-host")) {
        headers.set("x-forwarded-host", authority);
    }
    if !(trusted && headers.contains("x-forwarded-proto")) {
        headers.set("x-forwarded-proto", scheme);
    }
}

/// Every line of `name`, joined as one list, if there is any.
fn joined(headers: &Headers, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// A `node` of RFC 7239 §6: IPv4 as is, IPv6 bracketed and quoted.
fn node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// A `value` of RFC 7239 §4: a token, or a quoted string (an authority with `:` or `[`).
fn quoted_if_needed(value: &str) -> String {
    if value.bytes().all(crate::cache_control::is_tchar) {
        value.to_string()
    } else {
        format!("\"{value}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(blocks: &[&str]) -> Trust {
        Trust::new(&ForwardingConfig {
            trusted_proxies: blocks.iter().map(|b| b.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn blocks() {
        let b = IpBlock::parse("10.0.0.0/8").unwrap();
        assert!(b.contains("10.1.2.3".parse().unwrap()));
        assert!(!b.contains("11.0.0.1".parse().unwrap()));
        assert!(
            b.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        let b = IpBlock::parse("::1").unwrap();
        assert!(b.contains("::1".parse().unwrap()));
        assert!(!b.contains("::2".parse().unwrap()));
        assert!(!b.contains("127.0.0.1".parse().unwrap()));
        assert!(IpBlock::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpBlock::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "1.2.3",
        ] {
            assert!(IpBlock::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_fields_are_replaced_by_ours() {
        let mut h = Headers::from_pairs([
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6;host=evil.example"),
            ("x-host", "evil.example"),
            ("x-forwarded-scheme", "http"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("accept", "text/html"),
        ]);
        let client = Some("192.0.2.7".parse().unwrap());
        apply(&mut h, client, "https", "site.example", &Trust::default());
        assert_eq!(h.get_str("x-forwarded-host"), Some("site.example"));
        assert_eq!(h.get_str("x-forwarded-for"), Some("192.0.2.7"));
        assert_eq!(h.get_str("x-forwarded-proto"), Some("https"));
        assert_eq!(
            h.get_str("forwarded"),
            Some("for=192.0.2.7;host=site.example;proto=https")
        );
        for gone in [
            "x-host",
            "x-forwarded-scheme",
            "x-original-url",
            "x-http-method-override",
        ] {
            assert!(!h.contains(gone), "{gone}");
        }
        assert_eq!(h.get_str("accept"), Some("text/html"));
    }

    #[test]
    fn a_trusted_proxy_is_extended() {
        let mut h = Headers::from_pairs([
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-host", "public.example"),
            ("forwarded", "for=198.51.100.1"),
            ("x-original-url", "/admin"),
        ]);
        let proxy = Some("10.0.0.5".parse().unwrap());
        apply(&mut h, proxy, "http", "[::1]:8080", &trust(&["10.0.0.0/8"]));
        assert_eq!(h.get_str("x-forwarded-for"), Some("198.51.100.1, 10.0.0.5"));
        assert_eq!(h.get_str("x-forwarded-host"), Some("public.example"));
        assert_eq!(
            h.get_str("forwarded"),
            Some("for=198.51.100.1, for=10.0.0.5;host=\"[::1]:8080\";proto=http")
        );
        assert!(!h.contains("x-original-url"), "overrides never pass");
        let mut h = Headers::from_pairs([("x-forwarded-for", "198.51.100.1")]);
        let v6 = Some("2001:db8::1".parse().unwrap());
        apply(&mut h, v6, "http", "a", &trust(&["10.0.0.0/8"]));
        assert_eq!(
            h.get_str("x-forwarded-for"),
            Some("2001:db8::1"),
            "not trusted"
        );
        assert_eq!(
            h.get_str("forwarded"),
            Some("for=\"[2001:db8::1]\";host=a;proto=http")
        );
    }
}
