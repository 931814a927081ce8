//! The `Cache-Status` response header (RFC 9211): one entry per cache tier that handled the
//! response, most recent (closest to the client) last.

use alloc::string::String;
use core::fmt::Write;

/// Why a tier forwarded the request (RFC 9211 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Configured to bypass the cache.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// No stored response for the URI.
    UriMiss,
    /// Stored responses exist, but the request's selecting headers differ (Vary).
    VaryMiss,
    /// Did not find a response (the cache cannot say why more precisely).
    Miss,
    /// The request asked for the origin (`no-cache` and the like).
    Request,
    /// A stored response was stale and needed validation.
    Stale,
    /// Only part of the response was stored.
    Partial,
}

impl Forward {
    /// The RFC 9211 token.
    pub fn as_str(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Miss => "miss",
            Forward::Request => "request",
            Forward::Stale => "stale",
            Forward::Partial => "partial",
        }
    }
}

/// One `Cache-Status` list member (RFC 9211 §2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStatusEntry {
    /// The cache's name, a token such as `edgecache-l1` (RFC 9211 §2).
    pub cache: String,
    /// `hit`: served from this cache without contacting the next hop (§2.1).
    pub hit: bool,
    /// `fwd`: why the request went on (§2.2).
    pub fwd: Option<Forward>,
    /// `fwd-status`: the status the next hop returned (§2.3).
    pub fwd_status: Option<u16>,
    /// `ttl`: remaining freshness in seconds, negative when stale (§2.4).
    pub ttl: Option<i64>,
    /// `stored`: the forwarded response was stored (§2.5).
    pub stored: bool,
    /// `collapsed`: the request was coalesced with another (§2.6).
    pub collapsed: bool,
    /// `detail`: implementation-specific detail (§2.8), rendered as a token when it is one and
    /// as a string otherwise. Never put secrets here.
    pub detail: Option<String>,
}

impl CacheStatusEntry {
    /// An entry for the cache named `cache`.
    pub fn new(cache: &str) -> Self {
        CacheStatusEntry {
            cache: String::from(cache),
            ..CacheStatusEntry::default()
        }
    }

    /// Renders the entry as an RFC 8941 list member, e.g.
    /// `edgecache-l1; fwd=uri-miss; fwd-status=200; stored`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.cache.len() + 32);
        self.render_into(&mut out);
        out
    }

    /// Appends [`Self::render`]'s text to `out`.
    fn render_into(&self, out: &mut String) {
        push_token_or_string(out, &self.cache);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(out, "; fwd={}", fwd.as_str());
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = &self.detail {
            out.push_str("; detail=");
            push_token_or_string(out, detail);
        }
    }
}

/// Renders a whole `Cache-Status` field value: entries in order, comma-separated. One
/// allocation (this runs on every cache hit).
pub fn render(entries: &[CacheStatusEntry]) -> String {
    let mut out = String::with_capacity(entries.len() * 48);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        entry.render_into(&mut out);
    }
    out
}

/// Writes `value` as an sf-token when it is one (RFC 8941 §3.3.4), else as an sf-string with
/// escapes (§3.3.3); bytes outside printable ASCII are replaced by `?`.
fn push_token_or_string(out: &mut String, value: &str) {
    let is_token = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/!#$%&'*+-.^_`|~".contains(&b));
    if is_token {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_entries_in_order() {
        let l2 = CacheStatusEntry {
            hit: true,
            ttl: Some(-5),
            detail: Some(String::from("two words")),
            ..CacheStatusEntry::new("edgecache-l2")
        };
        let l1 = CacheStatusEntry {
            fwd: Some(Forward::UriMiss),
            fwd_status: Some(200),
            stored: true,
            collapsed: true,
            ..CacheStatusEntry::new("edgecache-l1")
        };
        assert_eq!(render(&[]), "");
        assert_eq!(render(core::slice::from_ref(&l1)), l1.render());
        assert_eq!(
            render(&[l2, l1]),
            "edgecache-l2; hit; ttl=-5; detail=\"two words\", \
             edgecache-l1; fwd=uri-miss; fwd-status=200; stored; collapsed"
        );
    }
}
