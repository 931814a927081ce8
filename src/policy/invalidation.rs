//! Invalidation after unsafe methods (RFC 9111 §4.4).

use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::Headers;

use super::is_safe_method;

/// The targets whose stored responses an unsafe request invalidates (RFC 9111 §4.4): after a
/// non-error (2xx or 3xx) response to an unsafe method, the target URI and the URIs in
/// `Location` and `Content-Location`, the latter two only when they have the same origin as
/// the target. Returns `path?query` strings on the request's own origin (`scheme` + `host`),
/// target first, deduplicated. Relative references are resolved against `target_path`
/// (RFC 3986 §5.2, for the common forms: absolute path, and relative path segments).
pub fn invalidated_targets(
    method: &str,
    status: u16,
    response_headers: &Headers,
    scheme: &str,
    host: &str,
    target_path: &str,
) -> Vec<String> {
    if is_safe_method(method) || !(200..400).contains(&status) {
        return Vec::new();
    }
    let mut targets = alloc::vec![String::from(target_path)];
    for field in ["location", "content-location"] {
        let Some(value) = response_headers.get_str(field) else {
            continue;
        };
        if let Some(path) = same_origin_path(value.trim(), scheme, host, target_path) {
            if !targets.contains(&path) {
                targets.push(path);
            }
        }
    }
    targets
}

/// Whether two authorities name one host once normalised as cache keys do (case, default
/// port: `Example.com:80` is `example.com` over `http`).
fn same_host(a: &str, b: &str, scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    crate::key::normalize_host(a, &scheme) == crate::key::normalize_host(b, &scheme)
}

/// Resolves a URI reference to a path on (`scheme`, `host`), or `None` for another origin.
fn same_origin_path(reference: &str, scheme: &str, host: &str, base_path: &str) -> Option<String> {
    if reference.is_empty() {
        return None;
    }
    if let Some((ref_scheme, rest)) = reference.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let same = ref_scheme.eq_ignore_ascii_case(scheme) && same_host(authority, host, scheme);
        return same.then(|| String::from(path));
    }
    if let Some(rest) = reference.strip_prefix("//") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        return same_host(authority, host, scheme).then(|| String::from(path));
    }
    if reference.starts_with('/') {
        return Some(String::from(reference));
    }
    // A relative path: replace the last segment of the base path (RFC 3986 §5.2.3).
    let base_dir = base_path
        .split('?')
        .next()
        .and_then(|p| p.rfind('/').map(|i| &p[..=i]))
        .unwrap_or("/");
    let mut path = String::from(base_dir);
    path.push_str(reference);
    Some(path)
}
