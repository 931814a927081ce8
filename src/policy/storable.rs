//! May a shared cache store this response? (RFC 9111 §3, with §3.5 for `Authorization`).

use crate::cache_control::{DirectiveSource, FieldScope, RequestDirectives, ResponseDirectives};
use crate::headers::Headers;

use super::freshness::FreshnessSource;
use super::{is_heuristically_cacheable, is_understood_status, vary, PolicyConfig};

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStorable {
    /// Only `GET` responses are stored (RFC 9111 §3: the method must be understood and
    /// defined as cacheable; `HEAD` is answered from `GET` responses instead).
    Method,
    /// The status is not final, or is not understood while `must-understand` is present
    /// (§3, §5.2.2.3).
    Status,
    /// A `206` that is not one range the cache can vouch for: no valid single
    /// `Content-Range` of known complete length, several ranges, or a `Content-Length`
    /// other than the range's (§3.3, [`super::partial::extent_to_store`]).
    ContentRange,
    /// The request carried `no-store` (§5.2.1.5).
    RequestNoStore,
    /// The response carried `no-store` (§5.2.2.5).
    ResponseNoStore,
    /// The response carried unqualified `private` (§5.2.2.7).
    Private,
    /// The request carried `Authorization` and the response did not explicitly allow a
    /// shared cache to store it with `public`, `must-revalidate` or `s-maxage` (§3.5).
    Authorization,
    /// The response sets a cookie and the configuration does not store those (§7.3).
    SetCookie,
    /// `Vary: *`: no later request can ever match (§4.1).
    VaryStar,
    /// No explicit freshness, no validator-free heuristic allowed: not cacheable (§3, last
    /// bullet).
    NoFreshnessInformation,
}

impl NotStorable {
    /// A short, stable name for logs and `Cache-Status` details.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::ContentRange => "content-range",
            NotStorable::RequestNoStore => "request-no-store",
            NotStorable::ResponseNoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NoFreshnessInformation => "no-freshness",
        }
    }

    /// The RFC section behind this verdict.
    pub fn rfc_section(self) -> &'static str {
        match self {
            NotStorable::Method => "RFC 9111 §3",
            NotStorable::Status => "RFC 9111 §3, §5.2.2.3",
            NotStorable::ContentRange => "RFC 9111 §3.3, RFC 9110 §14.4",
            NotStorable::RequestNoStore => "RFC 9111 §5.2.1.5",
            NotStorable::ResponseNoStore => "RFC 9111 §5.2.2.5",
            NotStorable::Private => "RFC 9111 §5.2.2.7",
            NotStorable::Authorization => "RFC 9111 §3.5",
            NotStorable::SetCookie => "RFC 9111 §7.3",
            NotStorable::VaryStar => "RFC 9111 §4.1",
            NotStorable::NoFreshnessInformation => "RFC 9111 §3",
        }
    }
}

/// What the response's own fields say, parsed once and shared by the storage decisions.
#[derive(Clone, Debug)]
pub struct ResponseView {
    /// The directives this shared cache obeys (targeted field or `Cache-Control`).
    pub directives: ResponseDirectives,
    /// Where they came from.
    pub source: DirectiveSource,
}

/// Decides whether a shared cache may store `status` + `response_headers` received for a
/// `method` request with `request_headers` (RFC 9111 §3). `freshness_source` is the result of
/// [`super::freshness::freshness_lifetime`] for this response.
pub fn storability(
    method: &str,
    request_headers: &Headers,
    status: u16,
    response_headers: &Headers,
    view: &ResponseView,
    freshness_source: FreshnessSource,
    config: &PolicyConfig,
) -> Result<(), NotStorable> {
    let d = &view.directives;
    if method != "GET" {
        return Err(NotStorable::Method);
    }
    if !(200..=599).contains(&status) {
        return Err(NotStorable::Status);
    }
    // §3.3: a partial response is stored as an incomplete one, only when it is one range
    // whose bytes are exactly those it claims.
    if status == 206 && super::partial::extent_to_store(response_headers).is_none() {
        return Err(NotStorable::ContentRange);
    }
    if RequestDirectives::from_headers(request_headers).no_store {
        return Err(NotStorable::RequestNoStore);
    }
    // must-understand: store only understood statuses, and then ignore no-store (§5.2.2.3).
    if d.must_understand {
        if !is_understood_status(status) {
            return Err(NotStorable::Status);
        }
    } else if d.no_store {
        return Err(NotStorable::ResponseNoStore);
    }
    if d.private == Some(FieldScope::All) {
        return Err(NotStorable::Private);
    }
    if request_headers.contains("authorization")
        && !(d.public || d.must_revalidate || d.s_maxage.is_some())
    {
        return Err(NotStorable::Authorization);
    }
    if !config.store_set_cookie
        && (response_headers.contains("set-cookie") || response_headers.contains("set-cookie2"))
    {
        return Err(NotStorable::SetCookie);
    }
    if vary::is_vary_star(response_headers) {
        return Err(NotStorable::VaryStar);
    }
    // §3: at least one of public, Expires, max-age, s-maxage, or a heuristically cacheable
    // status; a response that must be revalidated anyway is worth keeping for its validators.
    let explicit = d.public
        || d.max_age.is_some()
        || d.s_maxage.is_some()
        || (view.source == DirectiveSource::CacheControl && response_headers.contains("expires"));
    if !explicit && !is_heuristically_cacheable(status) && freshness_source == FreshnessSource::None
    {
        return Err(NotStorable::NoFreshnessInformation);
    }
    Ok(())
}

impl ResponseView {
    /// Parses the directives a shared cache obeys for `headers` (RFC 9213 §2.1 precedence).
    pub fn new(headers: &Headers, config: &PolicyConfig) -> Self {
        let (directives, source) =
            crate::cache_control::shared_cache_directives(headers, &config.targeted_fields);
        ResponseView { directives, source }
    }
}
