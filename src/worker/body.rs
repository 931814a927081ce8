//! Bodies on the Worker: a JS `ReadableStream` passed through untouched, or a Rust stream of
//! chunks (a prefix already read while deciding whether a response fits the buffer limit,
//! then the rest of the JS stream). Header values cross as ByteStrings (one char per byte).

use alloc::string::String;
use alloc::vec::Vec;
use core::pin::Pin;

use futures_util::Stream;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader};

use crate::engine::BodyError;
use crate::headers::Headers;

/// A streaming body on the Worker.
pub enum WorkerBody {
    /// A JS stream, handed on as it is (request bodies, large responses of known length).
    Js(ReadableStream),
    /// Chunks produced in Rust.
    Chunks(Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>),
    /// Bytes the engine holds whole (a queued write-behind request's body).
    Bytes(Vec<u8>),
}

impl core::fmt::Debug for WorkerBody {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WorkerBody::Js(_) => "WorkerBody::Js",
            WorkerBody::Chunks(_) => "WorkerBody::Chunks",
            WorkerBody::Bytes(_) => "WorkerBody::Bytes",
        })
    }
}

/// Bytes as a JS ByteString (each byte one code unit), as `Headers` expects.
pub fn byte_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// A JS ByteString back to bytes; code units above 0xFF (which `Headers` never holds) become `?`.
pub fn from_byte_string(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// Copies JS headers into engine headers, in order.
pub fn from_js_headers(js: &web_sys::Headers) -> Headers {
    let mut out = Headers::default();
    let Ok(Some(entries)) = js_sys::try_iter(js) else {
        return out;
    };
    for entry in entries.flatten() {
        let pair: js_sys::Array = entry.unchecked_into();
        if let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
            out.append(&name, from_byte_string(&value));
        }
    }
    out
}

/// Builds JS headers from engine headers, skipping any a JS `Headers` refuses (a name that is
/// not a token, a value with CR/LF/NUL), as the native host skips what `http` cannot carry.
pub fn to_js_headers(headers: &Headers) -> Result<web_sys::Headers, JsValue> {
    let js = web_sys::Headers::new()?;
    for (name, value) in headers.iter() {
        let _ = js.append(name, &byte_string(value));
    }
    Ok(js)
}

/// Reads the next chunk of `reader`; `None` at the end.
pub async fn read_chunk(reader: &ReadableStreamDefaultReader) -> Result<Option<Vec<u8>>, String> {
    let result = JsFuture::from(reader.read())
        .await
        .map_err(|e| js_message(&e))?;
    let done = js_sys::Reflect::get(&result, &JsValue::from_str("done"))
        .map(|d| d.is_truthy())
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value =
        js_sys::Reflect::get(&result, &JsValue::from_str("value")).map_err(|e| js_message(&e))?;
    Ok(Some(js_sys::Uint8Array::new(&value).to_vec()))
}

/// `prefix`, then whatever `reader` still has.
pub fn prefixed(prefix: Vec<u8>, reader: ReadableStreamDefaultReader) -> WorkerBody {
    let stream = futures_util::stream::unfold(
        (Some(prefix), Some(reader)),
        |(prefix, reader)| async move {
            if let Some(prefix) = prefix {
                return Some((Ok(prefix), (None, reader)));
            }
            let reader = reader?;
            match read_chunk(&reader).await {
                Ok(Some(chunk)) => Some((Ok(chunk), (None, Some(reader)))),
                Ok(None) => None,
                Err(e) => Some((Err(worker::Error::RustError(e)), (None, None))),
            }
        },
    );
    WorkerBody::Chunks(Box::pin(stream))
}

/// A fill's content as a stream of chunks (each copied once, into the JS response).
pub fn fill_stream(
    mut reader: crate::engine::filling::FillReader,
) -> Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>> {
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        reader.poll_chunk(cx).map(|next| {
            next.map(|chunk| {
                chunk
                    .map(|c| c.as_ref().to_vec())
                    .map_err(|e| worker::Error::RustError(e.to_string()))
            })
        })
    }))
}

/// The next chunk of an origin body being filled; a JS stream is given a reader on the
/// first call (and becomes a stream of chunks).
pub async fn next_chunk(body: &mut WorkerBody) -> Result<Option<Vec<u8>>, String> {
    use futures_util::StreamExt;
    if let WorkerBody::Js(stream) = body {
        let reader: ReadableStreamDefaultReader = stream
            .get_reader()
            .dyn_into()
            .map_err(|_| String::from("the body has no default reader"))?;
        *body = prefixed(Vec::new(), reader);
    }
    match body {
        WorkerBody::Chunks(chunks) => loop {
            match chunks.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => return Ok(Some(chunk)),
            }
        },
        WorkerBody::Bytes(bytes) if !bytes.is_empty() => Ok(Some(core::mem::take(bytes))),
        _ => Ok(None),
    }
}

/// Reads `body` whole, refusing it once more than `limit` bytes have arrived.
pub async fn read_whole(body: WorkerBody, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    let mut take = |chunk: &[u8]| {
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(chunk);
        Ok(())
    };
    match body {
        WorkerBody::Bytes(all) => take(&all)?,
        WorkerBody::Js(stream) => {
            let reader: ReadableStreamDefaultReader = stream
                .get_reader()
                .dyn_into()
                .map_err(|_| BodyError::Broken(String::from("the body has no default reader")))?;
            while let Some(chunk) = read_chunk(&reader).await.map_err(BodyError::Broken)? {
                take(&chunk)?;
            }
        }
        WorkerBody::Chunks(mut chunks) => {
            use futures_util::StreamExt;
            while let Some(chunk) = chunks.next().await {
                take(&chunk.map_err(|e| BodyError::Broken(e.to_string()))?)?;
            }
        }
    }
    Ok(bytes)
}

/// A readable message for a JS exception or rejection value.
pub fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value
        .as_string()
        .unwrap_or_else(|| String::from("unknown JavaScript error"))
}
