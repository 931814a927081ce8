//! A constant response, the ceiling of a Rust worker under workerd: what the runtime, the
//! workers-rs glue and the JS<->wasm boundary cost when the worker itself does nothing.
//! The body and headers look like an edgecache L1 hit of the benchmark's 1 KiB object.
use worker::{event, Context, Env, Headers, Request, Response, Result};

static BODY: [u8; 1024] = [b'x'; 1024];

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("cache-control", "max-age=3600")?;
    headers.set("age", "0")?;
    headers.set("cache-status", "edgecache-l1; hit")?;
    Ok(Response::from_bytes(BODY.to_vec())?.with_headers(headers))
}
