//! An ordered, case-insensitive list of HTTP header fields for the `no_std` core.
//!
//! Names are stored lowercased (RFC 9110 §5.1: field names are case-insensitive); values are
//! raw bytes, since field values are not guaranteed to be UTF-8 (RFC 9110 §5.5). Hosts
//! convert their native header maps to and from [`Headers`].

use alloc::string::String;
use alloc::vec::Vec;

/// An ordered multimap of header fields. Repeated field lines are kept as separate entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty header list.
    pub const fn new() -> Self {
        Headers { fields: Vec::new() }
    }

    /// Builds a header list from `(name, value)` pairs, keeping their order.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.append(name.as_ref(), value.as_ref());
        }
        headers
    }

    /// Adds a field line, after any existing lines of the same name.
    pub fn append(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.fields
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
    }

    /// Replaces every line named `name` with one line holding `value`.
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every line named `name`; returns whether any was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before != self.fields.len()
    }

    /// The value of the first line named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of the first line named `name`, if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The values of every line named `name`, in order.
    pub fn get_all<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a line named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The members of a comma-separated list field across all its lines (RFC 9110 §5.6.1),
    /// trimmed of optional whitespace, empty members skipped. Commas inside quoted strings
    /// are respected.
    pub fn list_items<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        self.get_all(name).flat_map(split_list)
    }

    /// Every `(name, value)` line in order; names are lowercase.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of field lines.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no field lines.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Approximate size in bytes (names, values and a `": "` + CRLF per line).
    pub fn size_bytes(&self) -> usize {
        self.fields.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers::from_pairs(iter)
    }
}

/// Splits one field value into its comma-separated members (RFC 9110 §5.6.1), trimming
/// optional whitespace, skipping empty members and not splitting inside quoted strings.
pub fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    core::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = rest.len();
        for (i, &b) in rest.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b',' && !in_quotes {
                end = i;
                break;
            }
        }
        let item = trim_ows(&rest[..end]);
        rest = if end < rest.len() {
            &rest[end + 1..]
        } else {
            &[]
        };
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// Trims optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn names_are_case_insensitive_and_order_is_kept() {
        let mut h = Headers::from_pairs([("Vary", "a"), ("X-One", "1"), ("vary", "b")]);
        assert_eq!(h.get("VARY"), Some(&b"a"[..]));
        assert_eq!(h.get_all("vary").collect::<Vec<_>>(), vec![&b"a"[..], b"b"]);
        h.set("Vary", "c");
        assert_eq!(h.get_all("vary").collect::<Vec<_>>(), vec![&b"c"[..]]);
        assert!(h.remove("x-one"));
        assert!(!h.remove("x-one"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn list_items_split_across_lines_and_respect_quotes() {
        let h = Headers::from_pairs([("x", " a , ,b"), ("x", "\"c,d\" ,\te\t")]);
        let items: Vec<&[u8]> = h.list_items("x").collect();
        assert_eq!(items, vec![&b"a"[..], b"b", b"\"c,d\"", b"e"]);
    }

    #[test]
    fn trim_ows_handles_all_whitespace() {
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\tx y "), b"x y");
    }
}
