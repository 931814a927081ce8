//! Header fields as people paste them: raw text (`Name: value` lines, optionally after a
//! status or request line, HTTP/2 pseudo-fields included), a `{name: value}` object or a
//! list of `[name, value]` pairs (RFC 9110 §5: field names are tokens, case-insensitive).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache_control::is_tchar;
use crate::headers::Headers;

/// The most header text accepted in one input (bytes).
pub const MAX_HEADER_TEXT: usize = 256 * 1024;

/// One field value as JSON gives it.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A string value.
    Text(String),
    /// A number (`{"age": 5}`).
    Number(f64),
    /// A boolean, written as `true` / `false`.
    Bool(bool),
}

impl FieldValue {
    fn render(&self) -> String {
        match self {
            FieldValue::Text(s) => s.clone(),
            FieldValue::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            FieldValue::Number(n) => format!("{n}"),
            FieldValue::Bool(b) => format!("{b}"),
        }
    }
}

/// One or several values for a field name in an object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FieldValues {
    /// One value.
    One(FieldValue),
    /// Several lines of the same field.
    Many(Vec<FieldValue>),
}

/// Header fields in any of the accepted shapes.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum HeadersInput {
    /// Raw text, one `Name: value` per line.
    Text(String),
    /// `[name, value]` pairs, in order.
    Pairs(Vec<(String, FieldValue)>),
    /// `{name: value}` or `{name: [value, ...]}`.
    Map(BTreeMap<String, FieldValues>),
}

/// Parsed header fields, with what a start line or pseudo-fields said.
#[derive(Clone, Debug, Default)]
pub struct ParsedHeaders {
    /// The fields.
    pub headers: Headers,
    /// The status from `HTTP/1.1 200 OK` or `:status: 200`.
    pub status: Option<u16>,
    /// The method from `GET /path HTTP/1.1` or `:method: GET`.
    pub method: Option<String>,
}

impl HeadersInput {
    /// Parses the input; `what` names it in error messages ("response headers").
    pub fn parse(&self, what: &str) -> Result<ParsedHeaders, String> {
        match self {
            HeadersInput::Text(text) => parse_text(text, what),
            HeadersInput::Pairs(pairs) => {
                let mut parsed = ParsedHeaders::default();
                for (name, value) in pairs {
                    add_field(&mut parsed, name, &value.render(), what)?;
                }
                Ok(parsed)
            }
            HeadersInput::Map(map) => {
                let mut parsed = ParsedHeaders::default();
                for (name, values) in map {
                    match values {
                        FieldValues::One(v) => add_field(&mut parsed, name, &v.render(), what)?,
                        FieldValues::Many(vs) => {
                            for v in vs {
                                add_field(&mut parsed, name, &v.render(), what)?;
                            }
                        }
                    }
                }
                Ok(parsed)
            }
        }
    }
}

/// Parses pasted header text. Blank lines are skipped, a first line `HTTP/x 200 ...` gives
/// the status and `METHOD target HTTP/x` the method, lines starting with whitespace continue
/// the previous field (obsolete line folding, RFC 9112 §5.2), and any other line must be
/// `Name: value`.
pub fn parse_text(text: &str, what: &str) -> Result<ParsedHeaders, String> {
    if text.len() > MAX_HEADER_TEXT {
        return Err(format!(
            "{what}: {} bytes is more than the {MAX_HEADER_TEXT} accepted",
            text.len()
        ));
    }
    let mut parsed = ParsedHeaders::default();
    let mut pending: Option<(String, String)> = None;
    let mut seen_field = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match pending.as_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                None => {
                    return Err(format!(
                        "{what}, line {number}: starts with whitespace but no field precedes it"
                    ))
                }
            }
        }
        if !seen_field && pending.is_none() {
            if let Some(status) = status_line(line) {
                parsed.status = Some(status);
                continue;
            }
            if let Some(method) = request_line(line) {
                parsed.method = Some(method);
                continue;
            }
        }
        if let Some((name, value)) = pending.take() {
            add_field(&mut parsed, &name, &value, what)?;
        }
        // HTTP/2 and HTTP/3 pseudo-fields as browser dev tools show them: `:status: 200`.
        let (name, value) = match line.strip_prefix(':') {
            Some(rest) => match rest.split_once(':') {
                Some((n, v)) => (format!(":{n}"), v),
                None => {
                    return Err(format!(
                        "{what}, line {number}: expected `Name: value`, got `{}`",
                        shorten(line)
                    ))
                }
            },
            None => match line.split_once(':') {
                Some((n, v)) => (String::from(n), v),
                None => {
                    return Err(format!(
                        "{what}, line {number}: expected `Name: value`, got `{}`",
                        shorten(line)
                    ))
                }
            },
        };
        if name.ends_with([' ', '\t']) {
            return Err(format!(
                "{what}, line {number}: whitespace before the colon in `{}` is not allowed (RFC 9112 §5.1)",
                shorten(&name)
            ));
        }
        seen_field = true;
        pending = Some((name, String::from(value.trim())));
    }
    if let Some((name, value)) = pending.take() {
        add_field(&mut parsed, &name, &value, what)?;
    }
    Ok(parsed)
}

fn add_field(
    parsed: &mut ParsedHeaders,
    name: &str,
    value: &str,
    what: &str,
) -> Result<(), String> {
    let name = name.trim();
    match name {
        ":status" => {
            parsed.status = Some(parse_status(value.trim()).ok_or_else(|| {
                format!("{what}: `:status: {}` is not a status code", shorten(value))
            })?);
            return Ok(());
        }
        ":method" => {
            parsed.method = Some(String::from(value.trim()));
            return Ok(());
        }
        n if n.starts_with(':') => return Ok(()), // :path, :authority, :scheme
        _ => {}
    }
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!(
            "{what}: `{}` is not a valid field name (letters, digits and !#$%&'*+-.^_`|~ only)",
            shorten(name)
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "{what}: the value of `{name}` contains CR, LF or NUL"
        ));
    }
    parsed.headers.append(name, value.trim().as_bytes());
    Ok(())
}

/// `HTTP/1.1 200 OK`, `HTTP/2 304`.
fn status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/")?;
    let mut parts = rest.split_whitespace();
    parts.next()?;
    parse_status(parts.next()?)
}

/// `GET /path HTTP/1.1`.
fn request_line(line: &str) -> Option<String> {
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let _target = parts.next()?;
    let version = parts.next()?;
    (version.starts_with("HTTP/") && parts.next().is_none() && method.bytes().all(is_tchar))
        .then(|| String::from(method))
}

fn parse_status(s: &str) -> Option<u16> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
        .filter(|&n| (100..=999).contains(&n))
}

/// At most 60 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}
