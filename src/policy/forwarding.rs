//! The forwarding policy: which request fields that describe the client, the original URL
//! or the method reach the origin. None of them is part of the cache key, so a client-sent
//! `X-Forwarded-Host` an origin builds links from would choose what everyone else is served
//! (cache poisoning). edgecache sets its own and drops the client's.
//!
//! Sent to the origin for every request:
//! - `Forwarded: for=…;host=…;proto=…` (RFC 7239 §4), `X-Forwarded-For`, `X-Forwarded-Host`
//!   and `X-Forwarded-Proto`, from the client's address and the request view's authority and
//!   scheme: what the key is made of, so the origin answers for the URL the key names.
//! - From a proxy the operator trusts ([`ForwardingConfig::trusted_proxies`], a load balancer
//!   in front): its `Forwarded` and `X-Forwarded-For` chains, extended with its address, and
//!   its `X-Forwarded-Proto` becomes the request's scheme ([`proxy_scheme`]), key included.
//! - Never: any other forwarding field ([`FORWARDING_FIELDS`]), the URL and method overrides
//!   some frameworks obey ([`OVERRIDE_FIELDS`]), or either spelled with `_` for `-` (CGI-style
//!   servers read `X_Forwarded_Host` as `X-Forwarded-Host`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::headers::Headers;

/// Fields that tell the origin who the client is, or which host, scheme or path it asked
/// for: replaced by edgecache's own (a trusted proxy's `Forwarded` and `X-Forwarded-For`
/// chains are extended instead).
pub const FORWARDING_FIELDS: [&str; 22] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-protocol",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-host",
    "x-original-host",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-url-scheme",
    "x-scheme",
    "front-end-https",
];

/// Fields that make frameworks answer another URL or method than the request line's: never
/// forwarded, whoever sends them.
pub const OVERRIDE_FIELDS: [&str; 7] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// The fields a trusted proxy's chain is read from.
const CHAIN_FIELDS: [&str; 2] = ["forwarded", "x-forwarded-for"];

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
        // An IPv4-mapped block is its IPv4 block: client addresses are compared as IPv4.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(IpBlock {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
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

/// The scheme a trusted proxy says its client used (`X-Forwarded-Proto: http|https`): it
/// terminated the client's connection, so this, not the connection's, is the request's
/// scheme, key included. `None` from anyone else, or without a usable value.
pub fn proxy_scheme(
    headers: &Headers,
    client: Option<IpAddr>,
    trust: &Trust,
) -> Option<&'static str> {
    if !trust.trusts(client) {
        return None;
    }
    match headers.get_str("x-forwarded-proto").map(str::trim) {
        Some(proto) if proto.eq_ignore_ascii_case("https") => Some("https"),
        Some(proto) if proto.eq_ignore_ascii_case("http") => Some("http"),
        _ => None,
    }
}

/// Removes what may never reach the origin from `headers`: the override fields, and the
/// forwarding fields but a trusted proxy's chains. What write-behind queues is sanitised
/// with this, and [`apply`] adds edgecache's own fields at delivery.
pub fn sanitize(headers: &mut Headers, client: Option<IpAddr>, trust: &Trust, keyed: &[String]) {
    let keep_chains = trust.trusts(client);
    let listed = |list: &[&str], name: &str| list.iter().any(|f| same_with_dashes(name, f));
    // No allocation for the usual request, which has none of these fields.
    let doomed: Vec<String> = headers
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !keyed.iter().any(|k| k == name))
        .filter(|name| {
            listed(&OVERRIDE_FIELDS, name)
                || (listed(&FORWARDING_FIELDS, name)
                    && !(keep_chains && CHAIN_FIELDS.contains(name)))
        })
        .map(String::from)
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Whether the (lowercase) field `name` is `field` when its underscores are read as dashes
/// (`x_forwarded_host` is `x-forwarded-host` to servers that accept both spellings).
fn same_with_dashes(name: &str, field: &str) -> bool {
    name.len() == field.len()
        && name
            .bytes()
            .zip(field.bytes())
            .all(|(n, f)| n == f || (n == b'_' && f == b'-'))
}

/// Applies the policy to `headers` (the client's end-to-end fields) for a request from
/// `client` to `scheme://authority`: the result is what the origin receives. Fields in
/// `keyed` (a route's `key_headers`, part of its cache key) pass as the client sent them.
///
/// `authority` is `None` when the cache key leaves the host out (`key.include_host` off):
/// then no host reaches the origin at all, neither `Host` (the caller drops it; the origin
/// request names the origin's own) nor `X-Forwarded-Host` nor `Forwarded: host=`, since an
/// input the key ignores must not choose what is stored.
pub fn apply(
    headers: &mut Headers,
    client: Option<IpAddr>,
    scheme: &str,
    authority: Option<&str>,
    trust: &Trust,
    keyed: &[String],
) {
    sanitize(headers, client, trust, keyed);
    let ours = |name: &str, headers: &Headers| {
        !(keyed.iter().any(|k| k == name) && headers.contains(name))
    };
    let prior_forwarded = joined(headers, "forwarded");
    let prior_for = joined(headers, "x-forwarded-for");
    let mut element = String::new();
    if let Some(ip) = client {
        element.push_str("for=");
        element.push_str(&node(ip));
        element.push(';');
    }
    if let Some(authority) = authority {
        element.push_str("host=");
        element.push_str(&quoted_if_needed(authority));
        element.push(';');
    }
    element.push_str("proto=");
    element.push_str(scheme);
    let forwarded = match prior_forwarded {
        Some(prior) => format!("{prior}, {element}"),
        None => element,
    };
    if ours("forwarded", headers) {
        headers.set("forwarded", forwarded);
    }
    if ours("x-forwarded-for", headers) {
        match (client, prior_for) {
            (Some(ip), Some(prior)) => headers.set("x-forwarded-for", format!("{prior}, {ip}")),
            (Some(ip), None) => headers.set("x-forwarded-for", ip.to_string()),
            (None, _) => {}
        }
    }
    match authority {
        Some(authority) if ours("x-forwarded-host", headers) => {
            headers.set("x-forwarded-host", authority);
        }
        Some(_) => {}
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    if ours("x-forwarded-proto", headers) {
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
        apply(
            &mut h,
            client,
            "https",
            Some("site.example"),
            &Trust::default(),
            &[],
        );
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

    /// With the host left out of the key, no host reaches the origin: not the client's
    /// `X-Forwarded-Host`, not ours, not `Forwarded: host=`.
    #[test]
    fn an_unkeyed_host_is_not_forwarded() {
        let mut h = Headers::from_pairs([("x-forwarded-host", "evil.example")]);
        let client = Some("192.0.2.7".parse().unwrap());
        let t = trust(&["192.0.2.0/24"]);
        apply(&mut h, client, "https", None, &t, &[]);
        assert!(!h.contains("x-forwarded-host"));
        assert_eq!(h.get_str("forwarded"), Some("for=192.0.2.7;proto=https"));
    }

    #[test]
    fn a_trusted_proxy_extends_the_chains_and_names_the_scheme() {
        let mut h = Headers::from_pairs([
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-host", "public.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.1"),
            ("x-original-url", "/admin"),
            ("X_Forwarded_Host", "evil.example"),
        ]);
        let proxy = Some("10.0.0.5".parse().unwrap());
        let t = trust(&["10.0.0.0/8"]);
        assert_eq!(proxy_scheme(&h, proxy, &t), Some("https"));
        assert_eq!(
            proxy_scheme(&h, Some("192.0.2.1".parse().unwrap()), &t),
            None
        );
        apply(&mut h, proxy, "https", Some("[::1]:8080"), &t, &[]);
        assert_eq!(h.get_str("x-forwarded-for"), Some("198.51.100.1, 10.0.0.5"));
        assert_eq!(
            h.get_str("x-forwarded-host"),
            Some("[::1]:8080"),
            "the key's host, not the proxy's claim"
        );
        assert_eq!(h.get_str("x-forwarded-proto"), Some("https"));
        assert_eq!(
            h.get_str("forwarded"),
            Some("for=198.51.100.1, for=10.0.0.5;host=\"[::1]:8080\";proto=https")
        );
        assert!(!h.contains("x-original-url"), "overrides never pass");
        assert!(!h.contains("x_forwarded_host"), "nor underscore spellings");
        let mut h = Headers::from_pairs([("x-forwarded-for", "198.51.100.1")]);
        let v6 = Some("2001:db8::1".parse().unwrap());
        apply(&mut h, v6, "http", Some("a"), &t, &[]);
        assert_eq!(
            h.get_str("x-forwarded-for"),
            Some("2001:db8::1"),
            "not trusted"
        );
        assert_eq!(
            h.get_str("forwarded"),
            Some("for=\"[2001:db8::1]\";host=a;proto=http")
        );
        let mapped = trust(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.trusts(Some("10.1.1.1".parse().unwrap())));
    }

    #[test]
    fn sanitising_keeps_only_a_trusted_proxys_chains() {
        let fields = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-host", "evil.example"),
            ("x-http-method-override", "DELETE"),
            ("true-client-ip", "6.6.6.6"),
            ("accept", "*/*"),
        ];
        let mut h = Headers::from_pairs(fields);
        sanitize(
            &mut h,
            Some("10.0.0.5".parse().unwrap()),
            &trust(&["10.0.0.0/8"]),
            &[],
        );
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["x-forwarded-for", "accept"]);
        let mut h = Headers::from_pairs(fields);
        sanitize(&mut h, None, &trust(&["10.0.0.0/8"]), &[]);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["accept"]);
    }
}
