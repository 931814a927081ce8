//! The analyser's answer, a plain JS object once serialised (camelCase keys).

use serde::Serialize;

/// A statement and the RFC section behind it.
#[derive(Clone, Debug, Serialize)]
pub struct Note {
    /// Plain-words explanation.
    pub text: String,
    /// The RFC section, e.g. `RFC 9111 §5.2.2.7`.
    pub rfc: String,
}

impl Note {
    pub(crate) fn new(text: impl Into<String>, rfc: impl Into<String>) -> Note {
        Note {
            text: text.into(),
            rfc: rfc.into(),
        }
    }
}

/// A common mistake or a surprise in the headers.
#[derive(Clone, Debug, Serialize)]
pub struct Warning {
    /// A stable identifier, e.g. `private-with-max-age`.
    pub code: &'static str,
    /// `error` (almost certainly not what was meant), `warning` or `info`.
    pub severity: &'static str,
    /// What is wrong and what to do instead.
    pub text: String,
    /// The RFC section behind it.
    pub rfc: &'static str,
}

/// How the request itself is treated (RFC 9111 §4, §4.4).
#[derive(Clone, Debug, Serialize)]
pub struct RequestInfo {
    /// `lookup`, `bypass` or `unsafe`.
    pub class: &'static str,
    /// Explanation.
    pub text: String,
    /// RFC section.
    pub rfc: &'static str,
}

/// The directives this shared cache obeys and where they came from (RFC 9213 §2.1).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectivesInfo {
    /// The field name the directives were taken from (`cache-control`, `cdn-cache-control`…).
    pub source: String,
    /// The recognised directives, e.g. `["public", "max-age=60"]`.
    pub list: Vec<String>,
    /// Fields present but ignored by this cache because a targeted field takes precedence.
    pub ignored_fields: Vec<String>,
}

/// The freshness lifetime (RFC 9111 §4.2.1).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FreshnessInfo {
    /// Lifetime in seconds.
    pub lifetime_secs: u64,
    /// `s-maxage`, `max-age`, `expires`, `heuristic`, `default-ttl` or `none`.
    pub source: &'static str,
    /// Whether the origin stated it (not a heuristic).
    pub explicit: bool,
    /// Explanation.
    pub text: String,
    /// RFC section.
    pub rfc: &'static str,
}

/// What the cache does with a request for this response at one instant.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moment {
    /// Seconds after the response was received.
    pub at_secs: u64,
    /// A short label (`just stored`, `freshness ends`…).
    pub label: String,
    /// `fresh`, `stale-accepted-by-request`, `stale-while-revalidate`,
    /// `revalidate`, `vary-mismatch` or `incomplete` (a stored `206` that does not hold
    /// the request's range, RFC 9111 §3.3).
    pub decision: &'static str,
    /// Why validation is needed (`stale`, `response-no-cache`…), for `revalidate`.
    pub revalidate_reason: Option<&'static str>,
    /// The response's age then (RFC 9111 §4.2.3).
    pub age_secs: u64,
    /// Freshness left then, negative when stale (RFC 9211 §2.4).
    pub ttl_secs: i64,
    /// Whether a stale copy would be served if the origin failed then (RFC 5861 §4).
    pub serve_stale_on_error: bool,
    /// Explanation.
    pub text: String,
    /// RFC section.
    pub rfc: String,
    /// The `Cache-Status` the cache would send then (RFC 9211).
    pub cache_status: String,
    /// The `Cache-Status` if the origin failed then and a stale copy was served instead.
    pub cache_status_on_error: Option<String>,
}

/// Secondary keys (RFC 9111 §4.1).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaryInfo {
    /// Nominated request fields, lowercase.
    pub fields: Vec<String>,
    /// `Vary: *`.
    pub star: bool,
    /// The request's normalised values of those fields, stored with the response.
    pub selected: Vec<(String, String)>,
    /// Explanation.
    pub text: String,
    /// RFC section.
    pub rfc: &'static str,
}

/// Validators and the conditional request a revalidation would send (RFC 9111 §4.3.1).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorInfo {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// Fields a revalidation would add (`If-None-Match`, `If-Modified-Since`).
    pub conditional_request: Vec<(String, String)>,
}

/// `Cache-Status` values (RFC 9211).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStatusInfo {
    /// On the request that fetched this response from the origin.
    pub on_fetch: String,
    /// On a repeat of the request at `now`.
    pub on_repeat: String,
}

/// The instants the analysis used (ms since 1970).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Times {
    /// When the request was sent.
    pub request_time: u64,
    /// When the response was received.
    pub response_time: u64,
    /// The instant `now` refers to.
    pub now: u64,
}

/// What a shared cache does with a response, and why.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One sentence in plain words.
    pub verdict: String,
    /// Whether a shared cache may store it (RFC 9111 §3).
    pub storable: bool,
    /// Why not, when it may not.
    pub reason: Option<Note>,
    /// The reason's stable code (`private`, `no-store`…), when not storable.
    pub reason_code: Option<&'static str>,
    /// Status code analysed.
    pub status: u16,
    /// Request method analysed.
    pub method: String,
    /// How the request is treated.
    pub request: RequestInfo,
    /// Directives obeyed.
    pub directives: DirectivesInfo,
    /// Freshness lifetime.
    pub freshness: FreshnessInfo,
    /// Age at `now` (RFC 9111 §4.2.3).
    pub age_secs: u64,
    /// Freshness left at `now`; negative once stale.
    pub ttl_secs: i64,
    /// The `stale-while-revalidate` window this cache applies (RFC 5861 §3).
    pub stale_while_revalidate_secs: u64,
    /// The `stale-if-error` window this cache applies (RFC 5861 §4).
    pub stale_if_error_secs: u64,
    /// Explanation of the stale windows.
    pub stale: Note,
    /// How long the cache keeps the entry from `now` (stale windows and validator
    /// retention), when stored.
    pub keep_secs: Option<u64>,
    /// The decision for a repeat of the request at `now`, when stored.
    pub now: Option<Moment>,
    /// Decisions at the instants that matter: stored, last fresh second, stale windows, gone.
    pub timeline: Vec<Moment>,
    /// Vary.
    pub vary: VaryInfo,
    /// Validators.
    pub validators: ValidatorInfo,
    /// Purge tags (`Surrogate-Key`, `Cache-Tag`).
    pub tags: Vec<String>,
    /// `Cache-Status` values.
    pub cache_status: CacheStatusInfo,
    /// Common mistakes and surprises.
    pub warnings: Vec<Warning>,
    /// The reasoning, step by step.
    pub notes: Vec<Note>,
    /// The instants used.
    pub times: Times,
}
