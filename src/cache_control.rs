//! Cache-Control parsing: a byte tokenizer and the request / response directive sets
//! (RFC 9111 §5.2), plus the targeted fields a shared cache prefers (RFC 9213 CDN-Cache-Control,
//! Surrogate-Control).
//!
//! The tokenizer is total: any byte string yields a defined result. The rules for junk are:
//! - names are case-insensitive; a name containing whitespace or other non-token bytes
//!   (e.g. `max-age =3600`) is an unknown directive and ignored;
//! - values may be tokens or quoted strings (RFC 9111 §5.2: recipients accept the
//!   quoted-string form of delta-seconds); an unterminated quote runs to the end of the item;
//! - delta-seconds (§1.2.2) must be ASCII digits; values beyond 2^31 are capped at 2^31;
//!   anything else (`'3600'`, `a3600`, `3600a`, `-1`, empty) is invalid;
//! - an invalid `max-age` / `s-maxage` counts as 0, so the response is stale (§4.2.1 encourages
//!   treating invalid freshness information as stale); an invalid stale window is ignored;
//! - when a directive appears more than once, the first occurrence is used (§4.2.1).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::{split_list, Headers};
use crate::structured_fields::{parse_dictionary_lines, BareItem, Dictionary, MemberValue};

/// The cap on delta-seconds values: 2^31 (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_CAP: u32 = 1 << 31;

/// One directive as written: name (original case) and unquoted value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive<'a> {
    /// Directive name, trimmed; compare case-insensitively.
    pub name: &'a [u8],
    /// The value after `=`, with quotes and backslash escapes removed, if there was an `=`.
    pub value: Option<Cow<'a, [u8]>>,
}

impl Directive<'_> {
    /// Whether this directive's name is `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Splits a Cache-Control field value into directives (RFC 9111 §5.2:
/// `#( token [ "=" ( token / quoted-string ) ] )`). Never fails.
pub fn tokenize(value: &[u8]) -> impl Iterator<Item = Directive<'_>> {
    split_list(value).filter_map(|item| {
        let (name, value) = match item.iter().position(|&b| b == b'=') {
            Some(eq) => (&item[..eq], Some(unquote(&item[eq + 1..]))),
            None => (item, None),
        };
        // `item` is already trimmed at both ends; whitespace left inside the name (as in
        // `max-age =60`) makes it a non-token, ignored by the directive parsers.
        if name.is_empty() {
            None
        } else {
            Some(Directive { name, value })
        }
    })
}

/// Removes the quotes and backslash escapes of a quoted-string (RFC 9110 §5.6.4); tokens are
/// returned as they are. An unterminated quoted string runs to the end of the input.
fn unquote(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(inner) = raw.strip_prefix(b"\"") else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => {
                if let Some(&escaped) = bytes.next() {
                    out.push(escaped);
                }
            }
            b'"' => break,
            _ => out.push(b),
        }
    }
    Cow::Owned(out)
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `name` is a valid token (RFC 9110 §5.6.2).
fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b))
}

/// Parses delta-seconds (RFC 9111 §1.2.2): one or more ASCII digits, capped at 2^31.
/// Returns `None` for anything else.
pub fn parse_delta_seconds(value: &[u8]) -> Option<u32> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in value {
        n = n * 10 + u64::from(d - b'0');
        if n >= u64::from(DELTA_SECONDS_CAP) {
            return Some(DELTA_SECONDS_CAP);
        }
    }
    u32::try_from(n).ok()
}

/// A directive that may be qualified with a list of field names (`no-cache`, `private`,
/// RFC 9111 §5.2.2.4 and §5.2.2.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldScope {
    /// The unqualified form: applies to the whole response.
    All,
    /// The qualified form: applies only to these fields (lowercased).
    Fields(Vec<String>),
}

/// `max-stale` in a request (RFC 9111 §5.2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxStale {
    /// No value: any staleness is acceptable.
    Any,
    /// Staleness up to this many seconds is acceptable.
    Secs(u32),
}

/// Response directives (RFC 9111 §5.2.2, RFC 5861 §3–4, RFC 8246).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `max-age` (§5.2.2.1); an invalid value is recorded as 0.
    pub max_age: Option<u32>,
    /// `s-maxage` (§5.2.2.10); an invalid value is recorded as 0.
    pub s_maxage: Option<u32>,
    /// `no-store` (§5.2.2.5).
    pub no_store: bool,
    /// `no-cache`, unqualified or with field names (§5.2.2.4).
    pub no_cache: Option<FieldScope>,
    /// `private`, unqualified or with field names (§5.2.2.7).
    pub private: Option<FieldScope>,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `no-transform` (§5.2.2.6).
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861 §3); an invalid value is ignored.
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861 §4); an invalid value is ignored.
    pub stale_if_error: Option<u32>,
}

impl ResponseDirectives {
    /// Parses the directives of every `Cache-Control` line in `headers`.
    pub fn from_headers(headers: &Headers) -> Self {
        Self::from_field(headers, "cache-control")
    }

    /// Parses the directives of every line of the field `name` in `headers`.
    pub fn from_field(headers: &Headers, name: &str) -> Self {
        let mut d = ResponseDirectives::default();
        for line in headers.get_all(name) {
            d.absorb(line);
        }
        d
    }

    /// Parses one field value.
    pub fn parse(value: &[u8]) -> Self {
        let mut d = ResponseDirectives::default();
        d.absorb(value);
        d
    }

    fn absorb(&mut self, value: &[u8]) {
        for dir in tokenize(value) {
            if !is_token(dir.name) {
                continue;
            }
            let v = dir.value.as_deref();
            if dir.is("max-age") {
                first(&mut self.max_age, freshness_seconds(v));
            } else if dir.is("s-maxage") {
                first(&mut self.s_maxage, freshness_seconds(v));
            } else if dir.is("no-store") {
                self.no_store = true;
            } else if dir.is("no-cache") {
                merge_scope(&mut self.no_cache, v);
            } else if dir.is("private") {
                merge_scope(&mut self.private, v);
            } else if dir.is("public") {
                self.public = true;
            } else if dir.is("must-revalidate") {
                self.must_revalidate = true;
            } else if dir.is("proxy-revalidate") {
                self.proxy_revalidate = true;
            } else if dir.is("must-understand") {
                self.must_understand = true;
            } else if dir.is("no-transform") {
                self.no_transform = true;
            } else if dir.is("immutable") {
                self.immutable = true;
            } else if dir.is("stale-while-revalidate") {
                if let Some(secs) = v.and_then(parse_delta_seconds) {
                    first(&mut self.stale_while_revalidate, secs);
                }
            } else if dir.is("stale-if-error") {
                if let Some(secs) = v.and_then(parse_delta_seconds) {
                    first(&mut self.stale_if_error, secs);
                }
            }
        }
    }

    /// The directives of a targeted field parsed as a Structured Field dictionary (RFC 9213
    /// §2.1): each directive is taken only with the type it is defined with (an Integer for
    /// the lifetimes, a Boolean for the flags, a String of field names for qualified
    /// `private` and `no-cache`); a directive of another type is not consumed.
    pub fn from_dictionary(dictionary: &Dictionary) -> Self {
        let mut d = ResponseDirectives::default();
        for (name, value) in dictionary {
            let MemberValue::Item(item) = value else {
                continue;
            };
            let seconds = match item {
                BareItem::Integer(n) if *n >= 0 => Some(
                    u32::try_from(*n)
                        .unwrap_or(DELTA_SECONDS_CAP)
                        .min(DELTA_SECONDS_CAP),
                ),
                _ => None,
            };
            let flag = *item == BareItem::Boolean(true);
            match name.as_str() {
                "max-age" => d.max_age = seconds.or(d.max_age),
                "s-maxage" => d.s_maxage = seconds.or(d.s_maxage),
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = seconds.or(d.stale_while_revalidate)
                }
                "stale-if-error" => d.stale_if_error = seconds.or(d.stale_if_error),
                "no-store" => d.no_store |= flag,
                "public" => d.public |= flag,
                "must-revalidate" => d.must_revalidate |= flag,
                "proxy-revalidate" => d.proxy_revalidate |= flag,
                "must-understand" => d.must_understand |= flag,
                "no-transform" => d.no_transform |= flag,
                "immutable" => d.immutable |= flag,
                "no-cache" | "private" => {
                    let slot = if name == "private" {
                        &mut d.private
                    } else {
                        &mut d.no_cache
                    };
                    match item {
                        BareItem::Boolean(true) => merge_scope(slot, None),
                        BareItem::String(fields) => merge_scope(slot, Some(fields.as_bytes())),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        d
    }

    /// Whether any directive was recognised.
    pub fn is_empty(&self) -> bool {
        *self == ResponseDirectives::default()
    }
}

/// Request directives (RFC 9111 §5.2.1, RFC 5861 §4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age` (§5.2.1.1); an invalid value is ignored.
    pub max_age: Option<u32>,
    /// `max-stale` (§5.2.1.2); an invalid value is ignored.
    pub max_stale: Option<MaxStale>,
    /// `min-fresh` (§5.2.1.3); an invalid value is ignored.
    pub min_fresh: Option<u32>,
    /// `no-cache` (§5.2.1.4).
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5).
    pub no_store: bool,
    /// `no-transform` (§5.2.1.6).
    pub no_transform: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `stale-if-error` (RFC 5861 §4); an invalid value is ignored.
    pub stale_if_error: Option<u32>,
}

impl RequestDirectives {
    /// Parses the request's `Cache-Control` lines. With no `Cache-Control` field at all,
    /// `Pragma: no-cache` counts as `no-cache` (RFC 9111 §5.4 and RFC 7234 §5.4).
    pub fn from_headers(headers: &Headers) -> Self {
        let mut d = RequestDirectives::default();
        let mut any_cache_control = false;
        for line in headers.get_all("cache-control") {
            any_cache_control = true;
            d.absorb(line);
        }
        if !any_cache_control
            && headers
                .list_items("pragma")
                .any(|item| item.eq_ignore_ascii_case(b"no-cache"))
        {
            d.no_cache = true;
        }
        d
    }

    /// Parses one field value.
    pub fn parse(value: &[u8]) -> Self {
        let mut d = RequestDirectives::default();
        d.absorb(value);
        d
    }

    fn absorb(&mut self, value: &[u8]) {
        for dir in tokenize(value) {
            if !is_token(dir.name) {
                continue;
            }
            let v = dir.value.as_deref();
            let secs = v.and_then(parse_delta_seconds);
            if dir.is("max-age") {
                if let Some(secs) = secs {
                    first(&mut self.max_age, secs);
                }
            } else if dir.is("max-stale") {
                let parsed = match v {
                    None => Some(MaxStale::Any),
                    Some(_) => secs.map(MaxStale::Secs),
                };
                if let Some(parsed) = parsed {
                    first(&mut self.max_stale, parsed);
                }
            } else if dir.is("min-fresh") {
                if let Some(secs) = secs {
                    first(&mut self.min_fresh, secs);
                }
            } else if dir.is("no-cache") {
                self.no_cache = true;
            } else if dir.is("no-store") {
                self.no_store = true;
            } else if dir.is("no-transform") {
                self.no_transform = true;
            } else if dir.is("only-if-cached") {
                self.only_if_cached = true;
            } else if dir.is("stale-if-error") {
                if let Some(secs) = secs {
                    first(&mut self.stale_if_error, secs);
                }
            }
        }
    }
}

/// Sets `slot` only if it is still empty: the first occurrence wins (RFC 9111 §4.2.1).
fn first<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A freshness delta (`max-age`, `s-maxage`): an invalid or missing value counts as 0 (stale).
fn freshness_seconds(value: Option<&[u8]>) -> u32 {
    value.and_then(parse_delta_seconds).unwrap_or(0)
}

/// Merges one occurrence of a field-scoped directive: the unqualified form wins over any
/// qualified one, and qualified lists accumulate.
fn merge_scope(slot: &mut Option<FieldScope>, value: Option<&[u8]>) {
    let fields: Vec<String> = value
        .map(|v| {
            split_list(v)
                .filter(|f| is_token(f))
                .filter_map(|f| core::str::from_utf8(f).ok())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        *slot = Some(FieldScope::All);
        return;
    }
    match slot {
        Some(FieldScope::All) => {}
        Some(FieldScope::Fields(existing)) => existing.extend(fields),
        None => *slot = Some(FieldScope::Fields(fields)),
    }
}

/// The field a shared cache took its response directives from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectiveSource {
    /// A targeted field (RFC 9213), by lowercase name; `Cache-Control` and `Expires` are then
    /// ignored by this cache.
    Targeted(String),
    /// Plain `Cache-Control` (and `Expires`).
    CacheControl,
}

#[cfg(feature = "std")]
std::thread_local! {
    static PARSES: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// How many times this thread has worked out a response's directives
/// ([`shared_cache_directives`]): for tests that hold the cache to one parse per response
/// (the one response decision, [`crate::policy::decision`]).
#[cfg(feature = "std")]
#[doc(hidden)]
pub fn response_directive_parses() -> u64 {
    PARSES.with(core::cell::Cell::get)
}

/// The targeted fields edgecache obeys by default, highest precedence first (RFC 9213 §2.1):
/// its own `Edgecache-Cache-Control`, then `CDN-Cache-Control`, then `Surrogate-Control`.
pub const DEFAULT_TARGETED_FIELDS: [&str; 3] = [
    "edgecache-cache-control",
    "cdn-cache-control",
    "surrogate-control",
];

/// The response directives a shared cache obeys: the first targeted field in `targeted`
/// (highest precedence first) with a valid, non-empty value, or else `Cache-Control`
/// (RFC 9213 §2.2). Targeted fields are Structured Field dictionaries (RFC 9213 §2.1): one
/// that fails to parse ([`crate::structured_fields`]) is ignored whole, so
/// `CDN-Cache-Control: max-age=10000, &&&` cannot override `Cache-Control: no-store`.
///
/// `Surrogate-Control` follows the Edge Architecture convention `max-age=N+M`, where `+M`
/// allows serving stale for M seconds when the origin fails (mapped to `stale-if-error`).
pub fn shared_cache_directives<S: AsRef<str>>(
    headers: &Headers,
    targeted: &[S],
) -> (ResponseDirectives, DirectiveSource) {
    #[cfg(feature = "std")]
    PARSES.with(|n| n.set(n.get() + 1));
    for name in targeted {
        let name = name.as_ref();
        if !headers.contains(name) {
            continue;
        }
        let directives = if name.eq_ignore_ascii_case("surrogate-control") {
            // Edge Architecture syntax, not a structured field: used when it says something.
            Some(surrogate_control(headers)).filter(|d| !d.is_empty())
        } else {
            parse_dictionary_lines(headers.get_all(name))
                .ok()
                .filter(|dictionary| !dictionary.is_empty())
                .map(|dictionary| ResponseDirectives::from_dictionary(&dictionary))
        };
        if let Some(directives) = directives {
            return (
                directives,
                DirectiveSource::Targeted(name.to_ascii_lowercase()),
            );
        }
    }
    (
        ResponseDirectives::from_headers(headers),
        DirectiveSource::CacheControl,
    )
}

/// Parses `Surrogate-Control`, including the `max-age=N+M` form and `;target` suffixes
/// (Edge Architecture 1.0). A directive targeted at a named surrogate is taken as applying
/// to this cache: edgecache does not advertise a `Surrogate-Capability` name to be
/// targeted by, so it is the surrogate the origin addresses.
fn surrogate_control(headers: &Headers) -> ResponseDirectives {
    fn untargeted(bytes: &[u8]) -> &[u8] {
        bytes.split(|&b| b == b';').next().unwrap_or_default()
    }
    let mut d = ResponseDirectives::default();
    for line in headers.get_all("surrogate-control") {
        for dir in tokenize(line) {
            let name = untargeted(dir.name);
            if name.eq_ignore_ascii_case(b"max-age") {
                let raw = untargeted(dir.value.as_deref().unwrap_or_default());
                let (fresh, stale) = match raw.iter().position(|&b| b == b'+') {
                    Some(plus) => (&raw[..plus], Some(&raw[plus + 1..])),
                    None => (raw, None),
                };
                first(&mut d.max_age, freshness_seconds(Some(fresh)));
                if let Some(secs) = stale.and_then(parse_delta_seconds) {
                    first(&mut d.stale_if_error, secs);
                }
            } else if name.eq_ignore_ascii_case(b"no-store") {
                d.no_store = true;
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn tokenizer_unquotes_and_keeps_commas_in_quotes() {
        let dirs: Vec<_> = tokenize(br#"a, B="x,\"y", c=tok , ,=v, d="open"#).collect();
        assert_eq!(dirs.len(), 4);
        assert!(dirs[1].is("b"));
        assert_eq!(dirs[1].value.as_deref(), Some(&br#"x,"y"#[..]));
        assert_eq!(dirs[2].value.as_deref(), Some(&b"tok"[..]));
        assert_eq!(dirs[3].value.as_deref(), Some(&b"open"[..]));
    }

    #[test]
    fn delta_seconds_rules() {
        assert_eq!(parse_delta_seconds(b"003600"), Some(3600));
        assert_eq!(
            parse_delta_seconds(b"99999999999999999999999"),
            Some(DELTA_SECONDS_CAP)
        );
        assert_eq!(parse_delta_seconds(b"2147483648"), Some(DELTA_SECONDS_CAP));
        assert_eq!(parse_delta_seconds(b"2147483647"), Some(2_147_483_647));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1.0",
            b"'1'",
            b" 1",
            b"1a",
            b"\xff",
        ] {
            assert_eq!(parse_delta_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn response_scopes_merge() {
        let d = ResponseDirectives::parse(br#"private="Set-Cookie, X-A", private="x-b""#);
        assert_eq!(
            d.private,
            Some(FieldScope::Fields(vec![
                "set-cookie".into(),
                "x-a".into(),
                "x-b".into()
            ]))
        );
        let d = ResponseDirectives::parse(br#"no-cache="x", no-cache"#);
        assert_eq!(d.no_cache, Some(FieldScope::All));
    }

    #[test]
    fn targeted_field_wins_and_empty_one_is_ignored() {
        let h = Headers::from_pairs([
            ("Cache-Control", "no-store"),
            ("CDN-Cache-Control", "max-age=60"),
        ]);
        let (d, src) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
        assert_eq!(d.max_age, Some(60));
        assert!(!d.no_store);
        assert_eq!(src, DirectiveSource::Targeted("cdn-cache-control".into()));

        // RFC 9213 §3.1's example: a valid field with no known directive still replaces
        // Cache-Control for this cache.
        let h = Headers::from_pairs([("Cache-Control", "no-store"), ("CDN-Cache-Control", "none")]);
        let (d, src) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
        assert!(!d.no_store);
        assert_eq!(src, DirectiveSource::Targeted("cdn-cache-control".into()));

        // Fields that are not Structured Field dictionaries are ignored whole (RFC 9213
        // §2.1): they must not override Cache-Control's no-store.
        for invalid in [
            "max-age=10000, &&&&&",
            "Max-Age=10000",
            "max-age=10000,",
            "junk junk",
            "",
        ] {
            let h = Headers::from_pairs([
                ("Cache-Control", "no-store, max-age=5"),
                ("CDN-Cache-Control", invalid),
            ]);
            let (d, src) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
            assert!(d.no_store, "{invalid:?}");
            assert_eq!((d.max_age, src), (Some(5), DirectiveSource::CacheControl));
        }
        // A directive of the wrong type is not consumed; the field is still the one used.
        let h = Headers::from_pairs([
            ("Cache-Control", "no-store"),
            ("CDN-Cache-Control", r#"max-age="10000", no-store=?0"#),
        ]);
        let (d, src) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
        assert_eq!((d.max_age, d.no_store), (None, false));
        assert_eq!(src, DirectiveSource::Targeted("cdn-cache-control".into()));
        let d = ResponseDirectives::from_dictionary(
            &crate::structured_fields::parse_dictionary(
                br#"s-maxage=9999999999, private="set-cookie, x-a", no-cache, public=?1, max-age=-1"#,
            )
            .unwrap(),
        );
        assert_eq!(d.s_maxage, Some(DELTA_SECONDS_CAP));
        assert_eq!(d.max_age, None, "negative");
        assert!(d.public);
        assert_eq!(d.no_cache, Some(FieldScope::All));
        assert_eq!(
            d.private,
            Some(FieldScope::Fields(alloc::vec![
                "set-cookie".into(),
                "x-a".into()
            ]))
        );
    }

    #[test]
    fn surrogate_control_targets() {
        let h = Headers::from_pairs([("Surrogate-Control", "max-age=100;edge1, no-store;edge2")]);
        let (d, _) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
        assert_eq!((d.max_age, d.no_store), (Some(100), true));
    }

    #[test]
    fn surrogate_control_plus_form() {
        let h = Headers::from_pairs([("Surrogate-Control", "max-age=30+600")]);
        let (d, _) = shared_cache_directives(&h, &DEFAULT_TARGETED_FIELDS);
        assert_eq!((d.max_age, d.stale_if_error), (Some(30), Some(600)));
    }
}
