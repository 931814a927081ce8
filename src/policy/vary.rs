//! Secondary cache keys: `Vary` matching with header-value normalisation (RFC 9111 §4.1).

use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::Headers;

/// Whether the response's `Vary` lists `*`, which no request can match (RFC 9111 §4.1).
pub fn is_vary_star(response_headers: &Headers) -> bool {
    response_headers.list_items("vary").any(|item| item == b"*")
}

/// The field names nominated by `Vary`, lowercased, deduplicated, in order.
pub fn nominated_fields(response_headers: &Headers) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for item in response_headers.list_items("vary") {
        if let Ok(name) = core::str::from_utf8(item) {
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Fields whose values are case-insensitive lists of tokens (media types, codings, language
/// ranges, charsets), so their normalised form is lowercased too.
const CASE_INSENSITIVE_FIELDS: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];

/// Normalises a request field's value for Vary matching (RFC 9111 §4.1 allows normalisations
/// "known to have identical semantics"): every line is combined into one list (RFC 9110
/// §5.3), members are trimmed of whitespace, whitespace around `;` and `=` in parameters is
/// removed, empty members are dropped, and for token-list fields the value is lowercased.
/// `None` means the field is absent.
pub fn normalized_value(request_headers: &Headers, name: &str) -> Option<Vec<u8>> {
    if !request_headers.contains(name) {
        return None;
    }
    let lowercase = CASE_INSENSITIVE_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    for member in request_headers.list_items(name) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        let mut pending_space = false;
        for &b in member {
            match b {
                b' ' | b'\t' => pending_space = true,
                b';' | b'=' => {
                    pending_space = false;
                    out.push(b);
                    // swallow whitespace after a separator
                    continue;
                }
                _ => {
                    let prev = out.last().copied();
                    if pending_space && !matches!(prev, Some(b';' | b'=' | b' ') | None) {
                        out.push(b' ');
                    }
                    pending_space = false;
                    out.push(if lowercase { b.to_ascii_lowercase() } else { b });
                }
            }
        }
    }
    Some(out)
}

/// The normalised request values of the fields nominated by the response's `Vary`, to be
/// stored with the response ([`crate::entry::CachedResponse::vary`]). Absent fields are not
/// recorded.
pub fn select(response_headers: &Headers, request_headers: &Headers) -> Headers {
    let mut selected = Headers::new();
    for name in nominated_fields(response_headers) {
        if let Some(value) = normalized_value(request_headers, &name) {
            selected.append(&name, value);
        }
    }
    selected
}

/// Whether a request matches a stored response's secondary key (RFC 9111 §4.1): for every
/// field nominated by the stored `Vary`, the request's normalised value equals the stored
/// one, and a field absent in one is absent in the other. `Vary: *` never matches.
pub fn matches(stored_headers: &Headers, stored_vary: &Headers, request_headers: &Headers) -> bool {
    if is_vary_star(stored_headers) {
        return false;
    }
    nominated_fields(stored_headers)
        .iter()
        .all(|name| normalized_value(request_headers, name).as_deref() == stored_vary.get(name))
}

/// A variant suffix for the cache key: the nominated fields and the request's normalised
/// values, so each variant of a URL can be stored under its own key.
pub fn variant_suffix(nominated: &[String], request_headers: &Headers) -> String {
    let mut suffix = String::new();
    for name in nominated {
        suffix.push('\u{1f}');
        suffix.push_str(name);
        suffix.push('=');
        match normalized_value(request_headers, name) {
            Some(value) => suffix.push_str(&String::from_utf8_lossy(&value)),
            None => suffix.push('\u{0}'),
        }
    }
    suffix
}
