//! The one response decision: what a shared cache does with an origin response, decided
//! once from the request, the response head, the times and the configuration (RFC 9111 §3,
//! §4.2, RFC 5861, RFC 9213), in the spirit of http-cache-semantics' `after_response` and
//! pingora's `RespCacheable`. The response's cache directives are parsed here, once; the
//! stored entry carries the figures computed from them ([`StoredFigures`]), which L1, the
//! shared tiers, reuse and `Cache-Status` all take instead of parsing again.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::cache_control::FieldScope;
use crate::entry::{CachedResponse, Derived};
use crate::headers::Headers;
use crate::http_date::format_http_date;
use crate::time::Timestamp;

use super::freshness::{freshness_lifetime, Freshness};
use super::reuse::StoredFigures;
use super::storable::{storability, NotStorable, ResponseView};
use super::storage::purge_tags;
use super::{hop_by_hop, vary, PolicyConfig};

/// What to do with an origin response.
#[derive(Debug)]
pub enum ResponseDecision {
    /// Store it: how, decided.
    Store(Box<Keep>),
    /// Pass it on without storing it, for this reason.
    Pass(NotStorable),
}

/// A storable response, decided: the figures it will be stored with, and which of its
/// fields may not be.
#[derive(Debug)]
pub struct Keep {
    /// Computed once, from the directives in force (the origin's, or a route's override).
    figures: StoredFigures,
    /// Fields a qualified `private` or `no-cache` names (RFC 9111 §5.2.2.7, §5.2.2.4): the
    /// origin's word, whatever decides the lifetimes.
    withheld: Vec<alloc::string::String>,
}

/// The response an origin sent, as the decision needs it.
#[derive(Clone, Copy, Debug)]
pub struct OriginHead<'a> {
    /// Status code.
    pub status: u16,
    /// Header fields as received.
    pub headers: &'a Headers,
    /// When the request was sent (RFC 9111 §4.2.3 `request_time`).
    pub request_time: Timestamp,
    /// When the response arrived (`response_time`).
    pub response_time: Timestamp,
}

/// The directives a shared cache obeys for `headers` and the freshness lifetime they give
/// (RFC 9111 §4.2.1): what every decision about a response starts from, parsed once.
pub fn directives_and_freshness(
    status: u16,
    headers: &Headers,
    response_time: Timestamp,
    config: &PolicyConfig,
) -> (ResponseView, Freshness) {
    let view = ResponseView::new(headers, config);
    let freshness = freshness_lifetime(
        status,
        headers,
        &view.directives,
        &view.source,
        response_time,
        config,
    );
    (view, freshness)
}

/// Decides what to do with `origin`, the answer to a `method` request carrying
/// `request_headers`. `lifetime_override` is this cache's own targeted field value for the
/// response (a route's TTLs, RFC 9213): it decides the lifetimes of a response the origin
/// lets this cache store, never whether it may be stored.
pub fn decide(
    method: &str,
    request_headers: &Headers,
    origin: OriginHead<'_>,
    lifetime_override: Option<(&str, &str)>,
    config: &PolicyConfig,
) -> ResponseDecision {
    let (view, freshness) =
        directives_and_freshness(origin.status, origin.headers, origin.response_time, config);
    if let Err(reason) = storability(
        method,
        request_headers,
        origin.status,
        origin.headers,
        &view,
        freshness.source,
        config,
    ) {
        return ResponseDecision::Pass(reason);
    }
    ResponseDecision::Store(Box::new(Keep::new(
        &view,
        freshness,
        origin,
        lifetime_override,
        config,
    )))
}

impl Keep {
    /// How `origin` would be kept, without asking whether it may be (for tools and tests
    /// that build entries; the engine goes through [`decide`]).
    pub fn unchecked(origin: OriginHead<'_>, config: &PolicyConfig) -> Keep {
        let (view, freshness) =
            directives_and_freshness(origin.status, origin.headers, origin.response_time, config);
        Keep::new(&view, freshness, origin, None, config)
    }

    fn new(
        view: &ResponseView,
        freshness: Freshness,
        origin: OriginHead<'_>,
        lifetime_override: Option<(&str, &str)>,
        config: &PolicyConfig,
    ) -> Keep {
        let mut withheld = Vec::new();
        for scope in [&view.directives.private, &view.directives.no_cache] {
            if let Some(FieldScope::Fields(fields)) = scope {
                withheld.extend(fields.iter().cloned());
            }
        }
        let figures = match lifetime_override {
            None => StoredFigures::from_view(view, freshness, origin, config),
            Some((name, value)) => {
                let mut overridden = origin.headers.clone();
                overridden.set(name, value);
                let (view, freshness) = directives_and_freshness(
                    origin.status,
                    &overridden,
                    origin.response_time,
                    config,
                );
                StoredFigures::from_view(&view, freshness, origin, config)
            }
        };
        Keep { figures, withheld }
    }

    /// The figures the entry will carry.
    pub fn figures(&self) -> &StoredFigures {
        &self.figures
    }

    /// The entry to store (RFC 9111 §3.1): `fields` (the origin's, with any lifetime
    /// override added) without hop-by-hop fields and those a qualified `private` or
    /// `no-cache` names, a `Date` if the origin sent none (RFC 9110 §6.6.1), the request's
    /// Vary-selected values (§4.1), purge tags, and the figures already computed.
    pub fn into_entry(
        self,
        request_headers: &Headers,
        origin: OriginHead<'_>,
        mut fields: Headers,
        body: Vec<u8>,
    ) -> CachedResponse {
        hop_by_hop::strip(&mut fields);
        for name in &self.withheld {
            fields.remove(name);
        }
        if !fields.contains("date") {
            fields.append("date", format_http_date(origin.response_time));
        }
        CachedResponse {
            status: origin.status,
            vary: vary::select(&fields, request_headers),
            tags: purge_tags(origin.headers),
            headers: fields,
            body,
            request_time: origin.request_time,
            response_time: origin.response_time,
            invalidated: false,
            derived: Derived {
                figures: Some(self.figures),
            },
        }
    }
}
