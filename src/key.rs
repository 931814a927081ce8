//! Cache keys: method, scheme, host, normalised path and query.
//!
//! A key is a readable ASCII string, `METHOD scheme://host/path?query`, e.g.
//! `GET https://example.com/a?b=1&c=2`. It is the primary key of a stored response; the
//! request header values nominated by `Vary` (RFC 9111 §4.1) are matched separately
//! against [`CachedResponse::vary`](crate::entry::CachedResponse::vary).
//!
//! Normalisation (RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based):
//!
//! - **Method** is uppercased, and `HEAD` becomes `GET`: a cache may answer a HEAD request
//!   from a stored GET response (RFC 9110 §9.3.2), so both share one key. (RFC 9110 §9.1
//!   makes method names case-sensitive; uppercasing folds `get` into `GET`, which is what
//!   every origin in practice does too.)
//! - **Scheme** and **host** are lowercased; the default port is removed (`:80` for `http`,
//!   `:443` for `https`), as is an empty port (`example.com:`); leading zeros of a port
//!   are dropped. With [`KeyConfig::include_host`] off, the host is left out (`GET
//!   https:///a`).
//! - **Path**: percent-encoded unreserved characters are decoded and the hex digits of the
//!   other percent-encodings uppercased (§6.2.2.1–2); dot-segments are removed (§5.2.4,
//!   after decoding, so `%2E%2E` counts); an empty path becomes `/`, and a path not starting
//!   with `/` gets one.
//! - **Query**: split on `&` (an encoded `%26` is data, not a separator), each parameter
//!   normalised like the path, empty parameters dropped, ignored parameters removed (exact
//!   name, or a prefix pattern ending in `*` such as `utm_*`; one holding a `;` is kept,
//!   since origins that split on `;` would see another parameter in it), then (with
//!   [`KeyConfig::sort_query`]) stably sorted by name, keeping the order of the values of
//!   one name: origins commonly take the first (or last) of repeated parameters, so
//!   `?a=evil&a=good` and `?a=good&a=evil` are different requests. `a` and `a=` stay
//!   distinct; `+` is not equated with `%20`. A query left empty drops the `?`, so `/a?`,
//!   `/a?&` and `/a?utm_source=x` (with `utm_*` ignored) all key as `/a`.
//! - The **fragment** is dropped.
//!
//! Bytes that may not appear literally in a component (spaces, controls, non-ASCII,
//! `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`, brackets in the path or query, `/?#@`
//! in the host, separators in the method or scheme) are percent-encoded with uppercase
//! hex, and a `%` not followed by two hex digits becomes `%25`. An encoded unreserved
//! character is decoded only where it may appear literally (`%5F` stays encoded in a
//! scheme). So the key is printable ASCII with exactly one space, no host
//! can inject a path (`Host: a.com/x` keys as `a.com%2Fx`), and normalising a key's parts
//! again yields the same key (tested and fuzzed).
//!
//! Normalisation merges URLs that RFC 3986 calls equivalent. An origin that does not
//! treat them alike (say, serving `/a/../b` differently from `/b`) could get a response for
//! one stored under the other; hosts that want key and origin request in lock-step forward
//! [`normalize_path`] instead of the raw path.

use alloc::string::String;
use alloc::vec::Vec;

/// How cache keys are built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KeyConfig {
    /// Whether the host is part of the key (default `true`). Turn off only when a cache
    /// serves a single site under several names.
    pub include_host: bool,
    /// Query parameters left out of the key: exact names, or prefixes written with a
    /// trailing `*` (`utm_*`). A lone `*` ignores the whole query. Names are compared
    /// after normalisation, case-sensitively. Default: none (see [`TRACKING_PARAMS`]).
    pub ignored_query_params: Vec<String>,
    /// Whether query parameters are sorted (default `true`).
    pub sort_query: bool,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            include_host: true,
            ignored_query_params: Vec::new(),
            sort_query: true,
        }
    }
}

impl KeyConfig {
    /// The default configuration, ignoring the common [`TRACKING_PARAMS`].
    pub fn ignoring_tracking_params() -> Self {
        KeyConfig {
            ignored_query_params: TRACKING_PARAMS.iter().map(|p| String::from(*p)).collect(),
            ..KeyConfig::default()
        }
    }

    /// Whether the (normalised) query parameter `name` is left out of keys.
    pub fn ignores(&self, name: &str) -> bool {
        self.ignored_query_params
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

/// Marketing and click-tracking parameters that origins do not use to pick content. Not
/// ignored by default (a cache must not merge URLs the origin might distinguish); opt in
/// with [`KeyConfig::ignoring_tracking_params`].
pub const TRACKING_PARAMS: [&str; 8] = [
    "utm_*", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga",
];

/// The cache key of a request (see the module documentation for the normalisation).
///
/// `path_and_query` is the request target in origin form (`/path?query`); a fragment, if
/// any, is dropped. `HEAD` is keyed as `GET` (RFC 9110 §9.3.2). Never panics; the key is
/// at most about three times as long as the inputs.
pub fn cache_key(
    method: &str,
    scheme: &str,
    host: &str,
    path_and_query: &str,
    config: &KeyConfig,
) -> String {
    match already_normal_key(method, scheme, host, path_and_query, config) {
        Some(key) => key,
        None => normalized_key(method, scheme, host, path_and_query, config),
    }
}

/// The key of a request whose parts are already in normal form, as most are (`GET`, `http`,
/// a lowercase host, a plain path): built with one allocation and no normalisation passes.
/// `None` for anything that normalisation might change; [`normalized_key`] handles those.
/// Both give byte-identical keys (tested exhaustively and with random inputs).
fn already_normal_key(
    method: &str,
    scheme: &str,
    host: &str,
    path: &str,
    config: &KeyConfig,
) -> Option<String> {
    let method = match method {
        "GET" | "HEAD" => "GET",
        _ => return None,
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    if !config.include_host || !is_normal_host(host, default_port) || !is_normal_path(path) {
        return None;
    }
    let mut key = String::with_capacity(method.len() + scheme.len() + host.len() + path.len() + 4);
    key.push_str(method);
    key.push(' ');
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    key.push_str(path);
    Some(key)
}

/// A host [`normalize_host`] leaves unchanged: a non-empty lowercase name of unreserved
/// characters, optionally with a port that has no leading zero and is not `default_port`.
pub(crate) fn is_normal_host(host: &str, default_port: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| is_unreserved(b) && !b.is_ascii_uppercase());
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && !port.starts_with('0')
            && port.bytes().all(|b| b.is_ascii_digit())
            && port != default_port
    });
    name_ok && port_ok
}

/// A path and query [`normalize_path_and_query`] leaves unchanged: starts with `/`, only
/// literal path characters (so no `%`, query or fragment), and no `.` or `..` segment.
pub(crate) fn is_normal_path(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(is_path_char)
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// [`cache_key`] by full normalisation of every part.
fn normalized_key(
    method: &str,
    scheme: &str,
    host: &str,
    path_and_query: &str,
    config: &KeyConfig,
) -> String {
    let mut key =
        String::with_capacity(method.len() + scheme.len() + host.len() + path_and_query.len() + 8);
    let method = normalize_component(method, is_tchar, Case::Upper);
    key.push_str(if method == "HEAD" { "GET" } else { &method });
    key.push(' ');
    let scheme = normalize_component(scheme, is_scheme_char, Case::Lower);
    key.push_str(&scheme);
    key.push_str("://");
    if config.include_host {
        key.push_str(&normalize_host(host, &scheme));
    }
    key.push_str(&normalize_path_and_query(path_and_query, config));
    key
}

/// The path and query part of a key: the normalised path, then `?` and the kept query
/// parameters if there are any. The fragment is dropped.
pub fn normalize_path_and_query(path_and_query: &str, config: &KeyConfig) -> String {
    let without_fragment = path_and_query
        .split_once('#')
        .map_or(path_and_query, |(before, _)| before);
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    let mut out = normalize_path(path);
    if let Some(query) = query {
        let query = normalize_query(query, config);
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query);
        }
    }
    out
}

/// Normalises a path (no query): percent-encoding normalised, dot-segments removed
/// (RFC 3986 §5.2.4), `/` for an empty path.
pub fn normalize_path(path: &str) -> String {
    let encoded = normalize_component(path, is_path_char, Case::Keep);
    remove_dot_segments(&encoded)
}

/// Normalises a query (without the `?`): parameters normalised, empty and ignored ones
/// removed, sorted if configured, joined with `&`.
pub fn normalize_query(query: &str, config: &KeyConfig) -> String {
    let mut params: Vec<(String, Option<String>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((name, value)) => (
                normalize_component(name, is_query_char, Case::Keep),
                Some(normalize_component(value, is_query_char, Case::Keep)),
            ),
            None => (normalize_component(p, is_query_char, Case::Keep), None),
        })
        // An ignored parameter holding `;` is kept: origins that also split the query on `;`
        // would read `utm_x=1;lang=evil` as a `lang` the key did not see (parameter cloaking).
        .filter(|(name, value)| {
            let cloaks = name.contains(';') || value.as_deref().is_some_and(|v| v.contains(';'));
            cloaks || !config.ignores(name)
        })
        .collect();
    if config.sort_query {
        // Stable, by name only: repeated parameters keep their order (`?a=2&a=1` is not
        // `?a=1&a=2` to an origin that reads the first value).
        params.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut out = String::with_capacity(query.len());
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        if let Some(value) = value {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// Normalises a host (with optional port): percent-encoding and case normalised, then the
/// default port of `scheme` (already lowercase) and an empty port removed.
pub(crate) fn normalize_host(host: &str, scheme: &str) -> String {
    let host = normalize_component(host, is_host_char, Case::Lower);
    // Only a port after an IP literal or after a name without colons counts: `a:80:80`
    // is one (odd) name, not `a:80` on port 80.
    let split = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1)
    } else {
        host.find(':').filter(|&i| host.rfind(':') == Some(i))
    };
    let Some((name, port)) = split.and_then(|i| Some((host.get(..i)?, host.get(i + 1..)?))) else {
        return host;
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return host;
    }
    let port = port.trim_start_matches('0');
    let port = if port.is_empty() && !host.ends_with(':') {
        "0"
    } else {
        port
    };
    let default = match scheme {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    let mut out = String::from(name);
    if !port.is_empty() && Some(port) != default {
        out.push(':');
        out.push_str(port);
    }
    out
}

/// How a component's letters are cased (never the hex digits of percent-encodings).
#[derive(Clone, Copy)]
enum Case {
    Keep,
    Upper,
    Lower,
}

/// Percent-encoding normalisation (RFC 3986 §6.2.2.1–2): `%XX` of an unreserved character
/// that `allowed` accepts is decoded, other `%XX` get uppercase hex, a stray `%` becomes `%25`, and every byte
/// for which `allowed` is false is percent-encoded. Letters are then cased as asked.
fn normalize_component(input: &str, allowed: fn(u8) -> bool, case: Case) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1)
                .and_then(|&h| hex_value(h))
                .zip(bytes.get(i + 2).and_then(|&l| hex_value(l)));
            if let Some((high, low)) = hex {
                let decoded = high * 16 + low;
                // Decoded only where it may appear literally (not `_` in a scheme), so
                // normalising twice changes nothing.
                if is_unreserved(decoded) && allowed(decoded) {
                    out.push(char::from(apply_case(decoded, case)));
                } else {
                    push_encoded(&mut out, decoded);
                }
                i += 3;
                continue;
            }
            push_encoded(&mut out, b'%');
        } else if allowed(b) {
            out.push(char::from(apply_case(b, case)));
        } else {
            push_encoded(&mut out, b);
        }
        i += 1;
    }
    out
}

fn apply_case(b: u8, case: Case) -> u8 {
    match case {
        Case::Keep => b,
        Case::Upper => b.to_ascii_uppercase(),
        Case::Lower => b.to_ascii_lowercase(),
    }
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims` (RFC 3986 §2.2).
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `pchar` without `%` (RFC 3986 §3.3), plus `/` for the path.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/')
}

/// Query characters without `%` (RFC 3986 §3.4); `&` and `=` arrive here only inside a
/// value after the first `=`, where they are literal data.
fn is_query_char(b: u8) -> bool {
    is_path_char(b) || b == b'?'
}

/// Host characters without `%`: reg-name, IP literals and the port (RFC 3986 §3.2.2–3).
fn is_host_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'[' | b']')
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// `tchar` (RFC 9110 §5.6.2), the characters of a method name, without `%`.
fn is_tchar(b: u8) -> bool {
    b != b'%' && crate::cache_control::is_tchar(b)
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4) from a path, which gets a leading `/`
/// if it has none. `..` never climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut iter = rest.split('/').peekable();
    while let Some(segment) = iter.next() {
        let last = iter.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => {
                segments.push(segment);
                continue;
            }
        }
        // A trailing `.` or `..` leaves the path ending in `/`.
        if last {
            segments.push("");
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    fn key(method: &str, scheme: &str, host: &str, pq: &str) -> String {
        cache_key(method, scheme, host, pq, &KeyConfig::default())
    }

    #[test]
    fn readable_key() {
        assert_eq!(
            key("GET", "https", "example.com", "/a?c=2&b=1"),
            "GET https://example.com/a?b=1&c=2"
        );
    }

    #[test]
    fn method_scheme_host_normalised() {
        assert_eq!(
            key("get", "HTTPS", "Example.COM:443", "/"),
            "GET https://example.com/"
        );
        assert_eq!(key("POST", "http", "a.com:80", "/"), "POST http://a.com/");
        assert_eq!(
            key("GET", "http", "a.com:443", "/"),
            "GET http://a.com:443/"
        );
        assert_eq!(
            key("GET", "https", "a.com:80", "/"),
            "GET https://a.com:80/"
        );
        assert_eq!(key("GET", "https", "a.com:0443", "/"), "GET https://a.com/");
        assert_eq!(
            key("GET", "https", "a.com:8080", "/"),
            "GET https://a.com:8080/"
        );
        assert_eq!(key("GET", "https", "a.com:", "/"), "GET https://a.com/");
        assert_eq!(key("GET", "https", "a.com:0", "/"), "GET https://a.com:0/");
        assert_eq!(
            key("GET", "https", "a.com:000", "/"),
            "GET https://a.com:0/"
        );
        assert_eq!(key("GET", "http", "[::1]:80", "/"), "GET http://[::1]/");
        assert_eq!(
            key("GET", "http", "[::1]:8080", "/"),
            "GET http://[::1]:8080/"
        );
        assert_eq!(key("GET", "http", "[::1]", "/"), "GET http://[::1]/");
        assert_eq!(key("GET", "http", "a:80:80", "/"), "GET http://a:80:80/");
        assert_eq!(
            key("GET", "http", "Ex%41mple.com", "/"),
            "GET http://example.com/"
        );
        assert_eq!(key("GET", "ftp", "a.com:21", "/"), "GET ftp://a.com:21/");
    }

    #[test]
    fn head_shares_the_get_key() {
        assert_eq!(
            key("HEAD", "https", "a.com", "/x?q=1"),
            key("GET", "https", "a.com", "/x?q=1")
        );
        assert_eq!(key("head", "https", "a.com", "/"), "GET https://a.com/");
        assert_eq!(key("HEADX", "https", "a.com", "/"), "HEADX https://a.com/");
    }

    #[test]
    fn host_can_be_left_out() {
        let config = KeyConfig {
            include_host: false,
            ..KeyConfig::default()
        };
        assert_eq!(
            cache_key("GET", "https", "a.com", "/x", &config),
            cache_key("GET", "https", "b.com", "/x", &config)
        );
        assert_eq!(
            cache_key("GET", "https", "a.com", "/x", &config),
            "GET https:///x"
        );
    }

    #[test]
    fn path_percent_encoding_and_dots() {
        assert_eq!(
            key("GET", "http", "h", "/%7euser/%41%62c"),
            "GET http://h/~user/Abc"
        );
        assert_eq!(
            key("GET", "http", "h", "/a%2fb%3A"),
            "GET http://h/a%2Fb%3A"
        );
        assert_eq!(key("GET", "http", "h", "/a/./b/../c"), "GET http://h/a/c");
        assert_eq!(key("GET", "http", "h", "/a/%2E%2E/c"), "GET http://h/c");
        assert_eq!(key("GET", "http", "h", "/../../x"), "GET http://h/x");
        assert_eq!(key("GET", "http", "h", "/a/b/.."), "GET http://h/a/");
        assert_eq!(key("GET", "http", "h", "/a/."), "GET http://h/a/");
        assert_eq!(key("GET", "http", "h", "/a//b"), "GET http://h/a//b");
        assert_eq!(
            key("GET", "http", "h", "/a/..b/.c"),
            "GET http://h/a/..b/.c"
        );
        assert_eq!(key("GET", "http", "h", "a/b"), "GET http://h/a/b");
        assert_eq!(
            key("GET", "http", "h", "/a b"),
            key("GET", "http", "h", "/a%20b")
        );
        assert_eq!(key("GET", "http", "h", "/100%"), "GET http://h/100%25");
        assert_eq!(key("GET", "http", "h", "/%zz%4"), "GET http://h/%25zz%254");
        assert_eq!(key("GET", "http", "h", "/[x]"), "GET http://h/%5Bx%5D");
    }

    #[test]
    fn rfc3986_dot_segment_examples() {
        // RFC 3986 §5.4 reference resolution results that exercise §5.2.4.
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/.", "/b/c/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/..", "/b/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/../../../g", "/g"),
            ("/./g", "/g"),
            ("/../g", "/g"),
            ("/g.", "/g."),
            ("/.g", "/.g"),
            ("/g..", "/g.."),
            ("/..g", "/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/./g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/a//..", "/a/"),
            (".", "/"),
            ("..", "/"),
            ("", "/"),
        ] {
            assert_eq!(normalize_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn empty_path_and_bare_question_mark() {
        assert_eq!(key("GET", "http", "h", ""), "GET http://h/");
        assert_eq!(key("GET", "http", "h", "?"), "GET http://h/");
        assert_eq!(key("GET", "http", "h", "/a?"), "GET http://h/a");
        assert_eq!(key("GET", "http", "h", "/a?&&"), "GET http://h/a");
        assert_eq!(key("GET", "http", "h", "?x=1"), "GET http://h/?x=1");
        assert_eq!(key("GET", "http", "h", "/a#frag?x=1"), "GET http://h/a");
        assert_eq!(key("GET", "http", "h", "/a?x=1#frag"), "GET http://h/a?x=1");
        assert_eq!(key("GET", "http", "h", "#"), "GET http://h/");
    }

    #[test]
    fn query_sorting_and_repeats() {
        assert_eq!(
            key("GET", "http", "h", "/?b=2&a=1&b=1&a"),
            "GET http://h/?a=1&a&b=2&b=1",
            "sorted by name; the values of one name keep their order"
        );
        assert_ne!(
            key("GET", "http", "h", "/?a=evil&a=good"),
            key("GET", "http", "h", "/?a=good&a=evil"),
            "an origin reading the first value answers these differently"
        );
        assert_eq!(
            key("GET", "http", "h", "/?b=1&a=evil&a=good"),
            key("GET", "http", "h", "/?a=evil&b=1&a=good")
        );
        assert_eq!(
            key("GET", "http", "h", "/?x=1&x=1"),
            "GET http://h/?x=1&x=1",
            "repeats are kept"
        );
        assert_eq!(key("GET", "http", "h", "/?a=&a"), "GET http://h/?a=&a");
        assert_eq!(key("GET", "http", "h", "/?a=1=2"), "GET http://h/?a=1=2");
        assert_eq!(key("GET", "http", "h", "/?=v"), "GET http://h/?=v");
        assert_eq!(key("GET", "http", "h", "/?q=a+b"), "GET http://h/?q=a+b");
        assert_eq!(
            key("GET", "http", "h", "/?q=%7e%2b"),
            "GET http://h/?q=~%2B"
        );
        let unsorted = KeyConfig {
            sort_query: false,
            ..KeyConfig::default()
        };
        assert_eq!(
            cache_key("GET", "http", "h", "/?b=2&&a=1", &unsorted),
            "GET http://h/?b=2&a=1"
        );
    }

    #[test]
    fn encoded_ampersand_is_data() {
        assert_eq!(
            key("GET", "http", "h", "/?q=a%26b=c&z"),
            "GET http://h/?q=a%26b=c&z"
        );
        assert_ne!(
            key("GET", "http", "h", "/?q=a%26b=c"),
            key("GET", "http", "h", "/?q=a&b=c")
        );
        assert_eq!(
            key("GET", "http", "h", "/?b%3D1=2&a=1"),
            "GET http://h/?a=1&b%3D1=2"
        );
    }

    #[test]
    fn ignored_params() {
        let config = KeyConfig {
            ignored_query_params: vec!["utm_*".into(), "fbclid".into()],
            ..KeyConfig::default()
        };
        let k = |pq: &str| cache_key("GET", "https", "a.com", pq, &config);
        assert_eq!(
            k("/p?utm_source=x&id=3&fbclid=abc&utm_medium=y"),
            "GET https://a.com/p?id=3"
        );
        assert_eq!(k("/p?utm_source=x"), "GET https://a.com/p");
        assert_eq!(
            k("/p?utm%5Fsource=x"),
            "GET https://a.com/p",
            "decoded name"
        );
        assert_eq!(k("/p?fbclid"), "GET https://a.com/p");
        assert_eq!(k("/p?fbclidx=1"), "GET https://a.com/p?fbclidx=1", "exact");
        assert_eq!(k("/p?UTM_source=1"), "GET https://a.com/p?UTM_source=1");
        assert_eq!(
            k("/p?utm_x=1;lang=evil"),
            "GET https://a.com/p?utm_x=1;lang=evil",
            "a `;` could hide a parameter from the key (parameter cloaking)"
        );
        assert_ne!(k("/p?utm_x=1;lang=evil"), k("/p"));
        let all = KeyConfig {
            ignored_query_params: vec!["*".into()],
            ..KeyConfig::default()
        };
        assert_eq!(
            cache_key("GET", "https", "a.com", "/p?a=1&b=2", &all),
            "GET https://a.com/p"
        );
        let tracking = KeyConfig::ignoring_tracking_params();
        assert!(tracking.ignores("utm_campaign") && tracking.ignores("gclid"));
        assert!(!KeyConfig::default().ignores("utm_campaign"));
    }

    #[test]
    fn hostile_inputs_cannot_forge_other_keys() {
        // A Host header cannot smuggle a path, query or second authority.
        assert_eq!(
            key("GET", "http", "a.com/evil", "/x"),
            "GET http://a.com%2Fevil/x"
        );
        assert_ne!(
            key("GET", "http", "a.com/evil", "/x"),
            key("GET", "http", "a.com", "/evil/x")
        );
        assert_eq!(
            key("GET", "http", "u@a.com?#", "/"),
            "GET http://u%40a.com%3F%23/"
        );
        // A method or scheme cannot contain the separators.
        assert_eq!(
            key("GET http://b.com/", "http", "a", "/"),
            "GET%20HTTP%3A%2F%2FB.COM%2F http://a/"
        );
        assert_eq!(key("GET", "http://b", "a", "/"), "GET http%3A%2F%2Fb://a/");
        assert_eq!(key("", "", "", ""), " :///");
    }

    #[test]
    fn non_ascii_and_controls_are_encoded() {
        assert_eq!(
            key("GET", "http", "h", "/caf\u{e9}"),
            "GET http://h/caf%C3%A9"
        );
        assert_eq!(
            key("GET", "http", "h", "/caf\u{e9}"),
            key("GET", "http", "h", "/caf%c3%a9")
        );
        assert_eq!(
            key("GET", "http", "h", "/\r\n\t\0"),
            "GET http://h/%0D%0A%09%00"
        );
        assert_eq!(
            key("GET", "http", "b\u{fc}cher.de", "/"),
            "GET http://b%C3%BCcher.de/"
        );
        assert_eq!(
            key("GET", "http", "h", "/?\u{1F600}=\u{1F600}"),
            "GET http://h/?%F0%9F%98%80=%F0%9F%98%80"
        );
        let k = key("G\u{c9}T", "h\u{0}", "h", "/");
        assert!(k.is_ascii());
    }

    #[test]
    fn very_long_inputs() {
        let long_path = "/a".repeat(200_000);
        let k = key("GET", "http", "h", &long_path);
        assert_eq!(k.len(), "GET http://h".len() + long_path.len());
        let dots = "/..".repeat(100_000);
        assert_eq!(key("GET", "http", "h", &dots), "GET http://h/");
        let query: String = (0..50_000).rev().map(|i| format!("p{i}={i}&")).collect();
        let k = key("GET", "http", "h", &format!("/?{query}"));
        assert!(k.starts_with("GET http://h/?p0=0&p1=1&p10=10&"));
        let weird = "\u{ff}%".repeat(100_000);
        let k = key(&weird, &weird, &weird, &weird);
        assert!(k.is_ascii());
    }

    #[test]
    fn keys_are_fixed_points() {
        // Normalising the parts of a key again gives the same key.
        let config = KeyConfig {
            ignored_query_params: vec!["utm_*".into()],
            ..KeyConfig::default()
        };
        for (m, s, h, pq) in [
            ("head", "HTTPS", "A.com:443", "/a/../b%7e?z=1&utm_x=2&a=%zz"),
            ("GET", "http", "[::1]:080", "/%2e%2E/x y/?q=a%26b#f"),
            ("g e t", "h\u{e9}", "a:80:80", "x/./y?"),
            ("GET", "http", "%", "%"),
            ("GET", "a_b~", "h", "/"),
            ("HE%41D", "%68ttp", "h", "/"),
        ] {
            let k = cache_key(m, s, h, pq, &config);
            let (m2, rest) = k.split_once(' ').unwrap_or_default();
            let (s2, rest) = rest.split_once("://").unwrap_or_default();
            let slash = rest.find('/').unwrap_or(rest.len());
            let (h2, pq2) = rest.split_at(slash);
            assert_eq!(cache_key(m2, s2, h2, pq2, &config), k, "{k}");
            assert_eq!(k.matches(' ').count(), 1);
            assert!(k.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{k}");
        }
    }

    #[test]
    fn config_serde_defaults() {
        let config: KeyConfig =
            serde_json::from_str(r#"{"ignored_query_params":["utm_*"]}"#).unwrap_or_default();
        assert!(config.include_host && config.sort_query);
        assert_eq!(config.ignored_query_params, vec!["utm_*".to_string()]);
    }

    /// The one-allocation path must give exactly the key full normalisation gives, for
    /// every input it accepts.
    fn assert_fast_path_agrees(m: &str, s: &str, h: &str, pq: &str, config: &KeyConfig) -> bool {
        let Some(fast) = already_normal_key(m, s, h, pq, config) else {
            return false;
        };
        assert_eq!(
            fast,
            normalized_key(m, s, h, pq, config),
            "{m:?} {s:?} {h:?} {pq:?}"
        );
        true
    }

    /// Every string of up to `max` symbols from `alphabet`.
    fn strings(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |a| format!("{prefix}{a}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Bytes that normalisation treats specially somewhere: case, percent-encodings,
    /// dots, separators, characters that get encoded, non-ASCII.
    const TRICKY: [&str; 22] = [
        "a", "Z", "0", "8", "-", ".", "_", "~", ":", "/", "%", "2", "e", "E", "?", "#", "@", "!",
        "[", " ", "\u{e9}", "..",
    ];

    #[test]
    fn fast_path_matches_full_normalisation_on_every_short_input() {
        let config = KeyConfig::default();
        let no_host = KeyConfig {
            include_host: false,
            ..KeyConfig::default()
        };
        let methods = [
            "GET", "HEAD", "get", "Get", "head", "POST", "GE%54", "", " GET",
        ];
        let schemes = [
            "http", "https", "HTTP", "Https", "ftp", "http:", "ht%74p", "",
        ];
        let hosts = [
            "a.com",
            "A.com",
            "a.com:80",
            "a.com:443",
            "a.com:8080",
            "a.com:080",
            "a.com:",
            "a.com:0",
            "[::1]:8080",
            "a:80:80",
            "",
            "a%2Ecom",
            "a_b~c-d.0",
        ];
        let paths = [
            "/", "/a", "", "a", "/a/./b", "/a/../b", "/%41", "/a?b=1", "/a#f", "//",
        ];
        for m in methods {
            for s in schemes {
                for h in hosts {
                    for pq in paths {
                        for config in [&config, &no_host] {
                            assert_fast_path_agrees(m, s, h, pq, config);
                        }
                    }
                }
            }
        }
        let mut fast = 0;
        for tail in strings(&TRICKY, 4) {
            let path = format!("/{tail}");
            for (h, pq) in [("a.com", path.as_str()), ("a.com", tail.as_str())] {
                fast += usize::from(assert_fast_path_agrees("GET", "http", h, pq, &config));
            }
            let host = tail.as_str();
            for s in ["http", "https"] {
                fast += usize::from(assert_fast_path_agrees("GET", s, host, "/", &config));
                let with_port = format!("{host}:443");
                assert_fast_path_agrees("GET", s, &with_port, "/", &config);
                let port = format!("a.com:{tail}");
                assert_fast_path_agrees("GET", s, &port, "/", &config);
            }
        }
        // The fast path is taken for plenty of inputs, not just rejected everywhere.
        assert!(fast > 10_000, "{fast}");
    }

    #[test]
    fn fast_path_taken_for_ordinary_requests() {
        let config = KeyConfig::default();
        for (m, s, h, pq) in [
            ("GET", "http", "127.0.0.1:8787", "/1k.bin"),
            ("HEAD", "https", "example.com", "/a/b-c_d~e/f.html"),
            ("GET", "http", "localhost", "/"),
        ] {
            assert!(assert_fast_path_agrees(m, s, h, pq, &config), "{h}{pq}");
        }
        assert_eq!(
            key("HEAD", "http", "a.com:8080", "/x"),
            "GET http://a.com:8080/x"
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Parts that are often already normal, often almost normal (one case, dot, `%` or
    /// port away) and sometimes anything at all.
    fn part(normal: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::string::string_regex(normal).expect("regex"),
            4 => proptest::string::string_regex("[a-zA-Z0-9./:%_~?#@!\\[\\] -]{0,16}").expect("regex"),
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn fast_path_matches_full_normalisation(
            method in prop_oneof![Just("GET".to_string()), Just("HEAD".to_string()), part("[A-Za-z]{1,5}")],
            scheme in prop_oneof![Just("http".to_string()), Just("https".to_string()), part("[a-zA-Z]{1,5}")],
            host in part("[a-z0-9.-]{1,12}(:[0-9]{1,5})?"),
            path in part("(/[a-z0-9._~!$&'()*+,;=:@-]{0,6}){1,4}"),
            include_host in any::<bool>(),
        ) {
            let config = KeyConfig { include_host, ..KeyConfig::default() };
            if let Some(fast) = already_normal_key(&method, &scheme, &host, &path, &config) {
                prop_assert_eq!(fast, normalized_key(&method, &scheme, &host, &path, &config));
            }
            prop_assert_eq!(
                cache_key(&method, &scheme, &host, &path, &config),
                normalized_key(&method, &scheme, &host, &path, &config)
            );
        }
    }
}
