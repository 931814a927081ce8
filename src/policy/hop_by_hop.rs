//! Hop-by-hop fields (RFC 9110 §7.6.1): not forwarded by intermediaries and never stored
//! (RFC 9111 §3.1).

use alloc::string::String;
use alloc::vec::Vec;

use crate::headers::Headers;

/// Fields that are always connection-specific (RFC 9110 §7.6.1, RFC 9111 §3.1), plus the
/// legacy `Proxy-Connection` and the proxy authentication fields, which apply to one hop.
pub const HOP_BY_HOP_FIELDS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "trailer",
];

/// The field names listed in `Connection` (lowercased), which are hop-by-hop too.
pub fn connection_nominated(headers: &Headers) -> Vec<String> {
    headers
        .list_items("connection")
        .filter_map(|item| core::str::from_utf8(item).ok())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Removes every hop-by-hop field: the fixed list and whatever `Connection` nominates.
pub fn strip(headers: &mut Headers) {
    for name in connection_nominated(headers) {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP_FIELDS {
        headers.remove(name);
    }
}

/// Whether `name` (lowercase) is hop-by-hop for a message whose `Connection` nominated
/// `nominated`.
pub fn is_hop_by_hop(name: &str, nominated: &[String]) -> bool {
    HOP_BY_HOP_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
        || nominated.iter().any(|n| n.eq_ignore_ascii_case(name))
}
