//! `analyzeHeaders(input)`: what a shared cache may do with a response and why, answered by
//! the core's policy ([`crate::policy`]: storability RFC 9111 §3, freshness §4.2, reuse §4 and
//! RFC 5861, Vary §4.1, Cache-Status RFC 9211), explained in plain words with the RFC section
//! behind each answer, plus warnings about common mistakes.

mod explain;
mod lint;
pub mod report;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::headers_input::{HeadersInput, ParsedHeaders};
use super::js::{from_js, instant, to_js};
use crate::cache_control::{is_tchar, DirectiveSource};
use crate::entry::CachedResponse;
use crate::headers::Headers;
use crate::policy::cache_status::{CacheStatusEntry, Forward};
use crate::policy::conditional::{conditional_headers, has_validator};
use crate::policy::decision::{decide, Keep, OriginHead, ResponseDecision};
use crate::policy::freshness::{date_value, freshness_lifetime};
use crate::policy::request::{classify, RequestClass};
use crate::policy::reuse::{evaluate, stale_windows, Evaluation, Reuse, RevalidateReason};
use crate::policy::storable::{NotStorable, ResponseView};
use crate::policy::storage::{lifetimes, purge_tags};
use crate::policy::{partial, vary, PolicyConfig};
use crate::time::Timestamp;
use explain::duration;
use report::{
    CacheStatusInfo, DirectivesInfo, FreshnessInfo, Moment, Note, Report, RequestInfo, Times,
    ValidatorInfo, VaryInfo,
};

/// The analyser's input (`analyzeHeaders({...})`); a bare string is taken as
/// `responseHeaders`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalyzeInput {
    /// Response header fields: text, `{name: value}` or `[[name, value]]` (required).
    pub response_headers: Option<HeadersInput>,
    /// Request header fields, same shapes.
    pub request_headers: Option<HeadersInput>,
    /// Status code (default: from a pasted status line, else 200).
    pub status: Option<u16>,
    /// Request method (default: from a pasted request line, else `GET`).
    pub method: Option<String>,
    /// When the request was sent, ms since 1970 (default: the response time).
    pub request_time: Option<f64>,
    /// When the response was received, ms since 1970 (default: its `Date`, else now).
    pub response_time: Option<f64>,
    /// The instant to judge reuse at, ms since 1970 (default: the response time).
    pub now: Option<f64>,
    /// The cache name in `Cache-Status` (default `edgecache-l1`).
    pub cache_name: Option<String>,
    /// Policy knobs, as in the `[cache.policy]` config section (snake_case keys).
    pub policy: Option<PolicyConfig>,
}

/// Analyses response headers (and optionally request headers) as a shared cache would.
/// Returns a plain object (see [`report::Report`]); throws on unparsable input.
#[wasm_bindgen(js_name = analyzeHeaders)]
pub fn analyze_headers(input: JsValue) -> Result<JsValue, JsError> {
    let input: AnalyzeInput = match input.as_string() {
        Some(text) => AnalyzeInput {
            response_headers: Some(HeadersInput::Text(text)),
            ..AnalyzeInput::default()
        },
        None => from_js(&input, "analyzer input")?,
    };
    let times = [
        instant(input.request_time, "requestTime")?,
        instant(input.response_time, "responseTime")?,
        instant(input.now, "now")?,
    ];
    let report = analyze(
        &input,
        times,
        Timestamp::from_millis(js_sys::Date::now().max(0.0) as u64),
    )
    .map_err(|e| JsError::new(&e))?;
    to_js(&report)
}

/// The analysis itself, given the validated instants `[request, response, now]` and the wall
/// clock (used only when neither a response time nor a `Date` is given).
pub fn analyze(
    input: &AnalyzeInput,
    times: [Option<Timestamp>; 3],
    wall: Timestamp,
) -> Result<Report, String> {
    let response: ParsedHeaders = input
        .response_headers
        .as_ref()
        .ok_or("responseHeaders is required (text such as \"Cache-Control: max-age=60\", an object or [name, value] pairs)")?
        .parse("response headers")?;
    let request: ParsedHeaders = match &input.request_headers {
        Some(h) => h.parse("request headers")?,
        None => ParsedHeaders::default(),
    };
    if response.headers.is_empty() && response.status.is_none() && input.status.is_none() {
        return Err(String::from(
            "no header fields found in the response headers",
        ));
    }
    let status = input.status.or(response.status).unwrap_or(200);
    if !(100..=999).contains(&status) {
        return Err(format!("status must be between 100 and 999, got {status}"));
    }
    let method = input
        .method
        .clone()
        .or(request.method.clone())
        .unwrap_or_else(|| String::from("GET"));
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(format!(
            "method {method:?} is not a valid HTTP method token"
        ));
    }
    let config = input.policy.clone().unwrap_or_default();
    if config.heuristic_percent > 100 {
        return Err(String::from("policy.heuristic_percent must be at most 100"));
    }
    let cache_name = input
        .cache_name
        .clone()
        .unwrap_or_else(|| String::from("edgecache-l1"));

    let [request_time, response_time, now] = times;
    let response_time = response_time
        .or_else(|| date_value(&response.headers))
        .unwrap_or(wall);
    let request_time = request_time.unwrap_or(response_time);
    if request_time > response_time {
        return Err(String::from("requestTime must not be after responseTime"));
    }
    let now = now.unwrap_or(response_time);
    if now < response_time {
        return Err(String::from("now must not be before responseTime"));
    }

    let (req_h, resp_h) = (&request.headers, &response.headers);
    let class = classify(&method, req_h);
    let view = ResponseView::new(resp_h, &config);
    let freshness = freshness_lifetime(
        status,
        resp_h,
        &view.directives,
        &view.source,
        response_time,
        &config,
    );
    // The engine's own response decision, for the GET it looks up (a HEAD is answered
    // from it): what the page shows is what edgecache decides.
    let origin = OriginHead {
        status,
        headers: resp_h,
        request_time,
        response_time,
    };
    let kept: Result<alloc::boxed::Box<Keep>, NotStorable> = match class {
        RequestClass::Lookup => match decide("GET", req_h, origin, None, &config) {
            ResponseDecision::Store(keep) => Ok(keep),
            ResponseDecision::Pass(reason) => Err(reason),
        },
        _ => Err(NotStorable::Method),
    };
    let verdict: Result<(), NotStorable> = kept.as_ref().map(|_| ()).map_err(|r| *r);
    let windows = stale_windows(&view, &config);
    let (class_name, class_text, class_rfc) = explain::request(class, &method);
    let (fresh_source, fresh_text, fresh_rfc) = explain::freshness(&freshness, &config);
    let mut notes = vec![Note::new(class_text.clone(), class_rfc)];

    let directives = DirectivesInfo {
        source: match &view.source {
            DirectiveSource::Targeted(name) => name.clone(),
            DirectiveSource::CacheControl => String::from("cache-control"),
        },
        list: explain::directive_list(&view.directives),
        ignored_fields: match &view.source {
            DirectiveSource::Targeted(_) => ["cache-control", "expires"]
                .into_iter()
                .filter(|f| resp_h.contains(f))
                .map(String::from)
                .collect(),
            DirectiveSource::CacheControl => Vec::new(),
        },
    };
    if let DirectiveSource::Targeted(name) = &view.source {
        notes.push(Note::new(format!("Directives come from {name}, which takes precedence over Cache-Control for this cache."), "RFC 9213 §2.1"));
    }

    let vary_fields = vary::nominated_fields(resp_h);
    let star = vary::is_vary_star(resp_h);
    let selected: Vec<(String, String)> = vary::select(resp_h, req_h)
        .iter()
        .map(|(n, v)| (String::from(n), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let vary_text = if star {
        String::from("Vary: * — no stored copy can ever be reused.")
    } else if vary_fields.is_empty() {
        String::from("No Vary: one stored copy serves every request for this URL.")
    } else {
        format!(
            "One stored copy per distinct value of {}: a request is served from a copy only when its (normalised) values match.",
            vary_fields.join(", ")
        )
    };

    let mut report = Report {
        verdict: String::new(),
        storable: verdict.is_ok(),
        reason: None,
        reason_code: None,
        status,
        method: method.clone(),
        request: RequestInfo {
            class: class_name,
            text: class_text,
            rfc: class_rfc,
        },
        directives,
        freshness: FreshnessInfo {
            lifetime_secs: freshness.lifetime_secs,
            source: fresh_source,
            explicit: freshness.is_explicit(),
            text: fresh_text.clone(),
            rfc: fresh_rfc,
        },
        age_secs: 0,
        ttl_secs: 0,
        stale_while_revalidate_secs: windows.while_revalidate_secs,
        stale_if_error_secs: windows.if_error_secs,
        stale: stale_note(&view, windows.while_revalidate_secs, windows.if_error_secs),
        keep_secs: None,
        now: None,
        timeline: Vec::new(),
        vary: VaryInfo {
            fields: vary_fields,
            star,
            selected,
            text: vary_text,
            rfc: "RFC 9111 §4.1",
        },
        validators: ValidatorInfo {
            etag: resp_h.get_str("etag").map(String::from),
            last_modified: resp_h.get_str("last-modified").map(String::from),
            conditional_request: Vec::new(),
        },
        tags: purge_tags(resp_h),
        cache_status: CacheStatusInfo {
            on_fetch: String::new(),
            on_repeat: String::new(),
        },
        warnings: lint::lint(&lint::LintInput {
            directives: &view.directives,
            source: &view.source,
            response: resp_h,
            request: req_h,
            storable: verdict,
            freshness,
            lookup: class == RequestClass::Lookup,
        }),
        notes: Vec::new(),
        times: Times {
            request_time: request_time.as_millis(),
            response_time: response_time.as_millis(),
            now: now.as_millis(),
        },
    };

    match kept {
        Err(reason) => {
            let text = explain::not_storable(reason, &method, status);
            notes.push(Note::new(text.clone(), reason.rfc_section()));
            report.verdict = format!("Not stored by a shared cache. {text}");
            report.reason = Some(Note::new(text, reason.rfc_section()));
            report.reason_code = Some(reason.as_str());
            let fwd = match class {
                RequestClass::Lookup => Forward::UriMiss,
                RequestClass::Bypass(_) => Forward::Bypass,
                RequestClass::Unsafe => Forward::Method,
            };
            let entry = CacheStatusEntry {
                fwd: Some(fwd),
                fwd_status: Some(status),
                detail: (class == RequestClass::Lookup).then(|| String::from(reason.as_str())),
                ..CacheStatusEntry::new(&cache_name)
            };
            report.cache_status.on_fetch = entry.render();
            report.cache_status.on_repeat = entry.render();
        }
        Ok(keep) => {
            notes.push(Note::new(
                "A shared cache may store this response.",
                "RFC 9111 §3",
            ));
            notes.push(Note::new(fresh_text, fresh_rfc));
            let stored = keep.into_entry(req_h, origin, resp_h.clone(), Vec::new());
            let has_validator = has_validator(&stored.headers);
            report.validators.conditional_request = conditional_headers(&stored)
                .iter()
                .map(|(n, v)| (String::from(n), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let at_store = evaluate(req_h, &stored, response_time, &config);
            let on_fetch = CacheStatusEntry {
                fwd: Some(Forward::UriMiss),
                fwd_status: Some(status),
                stored: true,
                ttl: Some(at_store.ttl_secs),
                ..CacheStatusEntry::new(&cache_name)
            };
            report.cache_status.on_fetch = on_fetch.render();
            let ctx = MomentContext {
                stored: &stored,
                method: &method,
                request: req_h,
                config: &config,
                cache_name: &cache_name,
                has_validator,
                refetched_ttl: at_store.ttl_secs,
                status,
            };
            let current = ctx.moment(now, response_time, String::from("now"));
            report.cache_status.on_repeat = current.cache_status.clone();
            report.age_secs = current.age_secs;
            report.ttl_secs = current.ttl_secs;
            notes.push(Note::new(current.text.clone(), current.rfc.clone()));
            report.now = Some(current);
            report.keep_secs = Some(lifetimes(&stored, now, &config).keep_secs(now));
            report.timeline = timeline(
                &ctx,
                response_time,
                at_store,
                windows.while_revalidate_secs,
                windows.if_error_secs,
            );
            report.verdict = headline(&report, &at_store);
        }
    }
    report.notes = notes;
    Ok(report)
}

/// The explanation of the stale windows.
fn stale_note(view: &ResponseView, swr: u64, sie: u64) -> Note {
    let d = &view.directives;
    if swr == 0 && sie == 0 {
        let forbidden = d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some();
        return if forbidden {
            Note::new("Never served stale: must-revalidate, proxy-revalidate or s-maxage forbid it for a shared cache.", "RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.10")
        } else {
            Note::new("No stale windows: once stale, the response is validated before it is served again.", "RFC 9111 §4.2.4")
        };
    }
    let mut parts = Vec::new();
    if swr > 0 {
        parts.push(format!(
            "served stale while revalidating for {} after freshness ends",
            duration(swr)
        ));
    }
    if sie > 0 {
        parts.push(format!(
            "served stale when the origin fails for {} after freshness ends",
            duration(sie)
        ));
    }
    Note::new(
        format!("May be {}.", parts.join(", and ")),
        "RFC 5861 §3, §4",
    )
}

/// The one-sentence verdict.
fn headline(report: &Report, at_store: &Evaluation) -> String {
    let lifetime = report.freshness.lifetime_secs;
    let mut s = match at_store.reuse {
        Reuse::Revalidate(RevalidateReason::ResponseNoCache) => String::from(
            "Stored by a shared cache, but validated with the origin on every use (no-cache)",
        ),
        _ if at_store.ttl_secs <= 0 => String::from(
            "Stored by a shared cache, but stale on arrival: every use needs the origin first",
        ),
        _ => format!(
            "Cacheable by a shared cache: fresh for {} ({})",
            duration(at_store.ttl_secs as u64),
            if report.freshness.explicit {
                report.freshness.source
            } else {
                "guessed"
            }
        ),
    };
    if lifetime > 0 && at_store.ttl_secs > 0 && (at_store.ttl_secs as u64) < lifetime {
        s.push_str(&format!(", of {} minus its age", duration(lifetime)));
    }
    if report.stale_while_revalidate_secs > 0 {
        s.push_str(&format!(
            ", then served stale while revalidating for {}",
            duration(report.stale_while_revalidate_secs)
        ));
    }
    if report.stale_if_error_secs > 0 {
        s.push_str(&format!(
            ", and up to {} past freshness if the origin fails",
            duration(report.stale_if_error_secs)
        ));
    }
    if !report.vary.fields.is_empty() {
        s.push_str(&format!(
            "; one copy per {}",
            report.vary.fields.join(" + ")
        ));
    }
    s.push('.');
    s
}

struct MomentContext<'a> {
    stored: &'a CachedResponse,
    method: &'a str,
    request: &'a Headers,
    config: &'a PolicyConfig,
    cache_name: &'a str,
    has_validator: bool,
    refetched_ttl: i64,
    status: u16,
}

impl MomentContext<'_> {
    /// The policy's verdict on a repeat of the request at `at`, and the Cache-Status the
    /// engine would send for it (a hit, or a forward that stores the refetched response).
    fn moment(&self, at: Timestamp, response_time: Timestamp, label: String) -> Moment {
        let ev = evaluate(self.request, self.stored, at, self.config);
        let ev = partial::limit(ev, self.method, self.request, self.stored);
        let (decision, revalidate_reason) = explain::decision(ev.reuse);
        let (text, rfc) =
            explain::reuse(ev.reuse, ev.ttl_secs, self.has_validator, ev.stale_if_error);
        let base = CacheStatusEntry::new(self.cache_name);
        let entry = match ev.reuse {
            Reuse::Fresh | Reuse::StaleAcceptedByRequest => CacheStatusEntry {
                hit: true,
                ttl: Some(ev.ttl_secs),
                ..base.clone()
            },
            Reuse::StaleWhileRevalidate => CacheStatusEntry {
                hit: true,
                ttl: Some(ev.ttl_secs),
                detail: Some(String::from("stale-while-revalidate")),
                ..base.clone()
            },
            Reuse::Revalidate(reason) => CacheStatusEntry {
                fwd: Some(if reason == RevalidateReason::RequestNoCache {
                    Forward::Request
                } else {
                    Forward::Stale
                }),
                fwd_status: Some(if self.has_validator { 304 } else { self.status }),
                stored: true,
                ttl: Some(self.refetched_ttl),
                ..base.clone()
            },
            Reuse::Incomplete => CacheStatusEntry {
                fwd: Some(Forward::Partial),
                fwd_status: Some(self.status),
                stored: true,
                ttl: Some(self.refetched_ttl),
                ..base.clone()
            },
            Reuse::VaryMismatch => CacheStatusEntry {
                fwd: Some(Forward::VaryMiss),
                fwd_status: Some(self.status),
                stored: true,
                ttl: Some(self.refetched_ttl),
                ..base.clone()
            },
        };
        let on_error = (ev.stale_if_error && matches!(ev.reuse, Reuse::Revalidate(_))).then(|| {
            CacheStatusEntry {
                hit: true,
                ttl: Some(ev.ttl_secs),
                fwd_status: Some(503),
                detail: Some(String::from("stale-if-error")),
                ..base
            }
            .render()
        });
        Moment {
            at_secs: at.secs_since(response_time),
            label,
            decision,
            revalidate_reason,
            age_secs: ev.age_secs,
            ttl_secs: ev.ttl_secs,
            serve_stale_on_error: ev.stale_if_error,
            text,
            rfc,
            cache_status: entry.render(),
            cache_status_on_error: on_error,
        }
    }
}

/// Decisions at the instants where they change.
fn timeline(
    ctx: &MomentContext<'_>,
    response_time: Timestamp,
    at_store: Evaluation,
    swr: u64,
    sie: u64,
) -> Vec<Moment> {
    let ttl0 = at_store.ttl_secs.max(0) as u64;
    let mut points: Vec<(u64, String)> = vec![(0, String::from("just stored"))];
    if ttl0 > 1 {
        points.push((ttl0 - 1, String::from("last fresh second")));
    }
    if ttl0 > 0 {
        points.push((ttl0, String::from("freshness ends")));
    }
    if swr > 0 {
        points.push((
            ttl0.saturating_add(swr),
            String::from("end of stale-while-revalidate"),
        ));
    }
    if sie > swr {
        points.push((
            ttl0.saturating_add(sie),
            String::from("end of stale-if-error"),
        ));
    }
    points.push((
        ttl0.saturating_add(swr.max(sie)).saturating_add(1),
        String::from("past every window"),
    ));
    points.sort_by_key(|(t, _)| *t);
    points.dedup_by_key(|(t, _)| *t);
    points
        .into_iter()
        .map(|(t, label)| ctx.moment(response_time.plus_secs(t), response_time, label))
        .collect()
}
