//! Conversions at the JS boundary: options in through JSON, plain objects out, and
//! validated numbers and strings, every failure a `JsError` naming the input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Reads an options object: `undefined` / `null` give the defaults, anything else must be
/// an object that JSON-serialises into `T` (unknown fields are refused by `T`).
pub(crate) fn from_js<T: DeserializeOwned + Default>(
    value: &JsValue,
    what: &str,
) -> Result<T, JsError> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    if !value.is_object() {
        return Err(JsError::new(&format!("{what} must be an object")));
    }
    let text = js_sys::JSON::stringify(value).map_err(|_| {
        JsError::new(&format!(
            "{what} cannot be converted to JSON (a cycle or a BigInt?)"
        ))
    })?;
    let text = String::from(text);
    serde_json::from_str(&text).map_err(|e| {
        let field = field_at(&text, e.column());
        let msg = e.to_string();
        // serde_json appends " at line 1 column N"; the field name says more.
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        match field {
            Some(f) => JsError::new(&format!("invalid {what}: {f}: {msg}")),
            None => JsError::new(&format!("invalid {what}: {msg}")),
        }
    })
}

/// The name of the innermost object key written before `column` (1-based) in one-line JSON,
/// to name the field a deserialisation error is about.
fn field_at(text: &str, column: usize) -> Option<String> {
    let before = text.get(..column.min(text.len()))?;
    let colon = before.rfind("\":")?;
    let start = before[..colon].rfind('"')?;
    Some(String::from(&before[start + 1..colon]))
}

/// Turns `value` into a plain JS object (through JSON, so numbers, strings, arrays, objects).
pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(value)
        .map_err(|e| JsError::new(&format!("internal error serialising a result: {e}")))?;
    js_sys::JSON::parse(&text)
        .map_err(|_| JsError::new("internal error: JSON.parse refused a result"))
}

/// A cache key: any JS string.
pub(crate) fn key_of(value: &JsValue) -> Result<String, JsError> {
    value
        .as_string()
        .ok_or_else(|| JsError::new("key must be a string"))
}

/// The longest duration accepted anywhere: 100 years in milliseconds.
pub(crate) const MAX_MILLIS: f64 = 100.0 * 365.25 * 86_400_000.0;

/// A duration in milliseconds: finite, >= 0, at most [`MAX_MILLIS`]; fractions are dropped.
pub(crate) fn millis(value: Option<f64>, default: u64, name: &str) -> Result<u64, JsError> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (0.0..=MAX_MILLIS).contains(&v) => Ok(v as u64),
        Some(v) => Err(JsError::new(&format!(
            "{name} must be a number of milliseconds between 0 and 100 years, got {v}"
        ))),
    }
}

/// A count: finite, >= 0, at most `max`; fractions are dropped.
pub(crate) fn count(
    value: Option<f64>,
    default: u64,
    max: u64,
    name: &str,
) -> Result<u64, JsError> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v >= 0.0 && v <= max as f64 => Ok(v as u64),
        Some(v) => Err(JsError::new(&format!(
            "{name} must be a whole number between 0 and {max}, got {v}"
        ))),
    }
}

/// An instant in milliseconds since the epoch, as JS dates count them.
pub(crate) fn instant(
    value: Option<f64>,
    name: &str,
) -> Result<Option<crate::time::Timestamp>, JsError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && (0.0..=8.64e15).contains(&v) => {
            Ok(Some(crate::time::Timestamp::from_millis(v as u64)))
        }
        Some(v) => Err(JsError::new(&format!(
            "{name} must be milliseconds since 1970 (like Date.now()), got {v}"
        ))),
    }
}
