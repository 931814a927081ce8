//! The read path with incomplete stored responses (RFC 9111 §3.3), on the simulated host:
//! a single-part `206` the origin sent is stored, answers the ranges wholly within it
//! (`206` with their own `Content-Range`, RFC 9110 §14.4), never anything else, and is
//! replaced by the origin's next answer.

use alloc::string::String;

use crate::engine::simulated::{body_text, request, Answer, SimBody, SimHost, Simulation};
use crate::engine::{Engine, EngineConfig, Handled};
use crate::time::Timestamp;

/// The origin's `206` for bytes 4-9 of `0123456789` (exactly those bytes), fresh for a
/// minute, with `more`.
fn part_4_to_9(more: &[(&str, &str)]) -> Answer {
    part_4_to_9_for("max-age=60", more)
}

/// [`part_4_to_9`] with `cache_control`.
fn part_4_to_9_for(cache_control: &str, more: &[(&str, &str)]) -> Answer {
    let mut fields = alloc::vec![
        ("cache-control", cache_control),
        ("content-range", "bytes 4-9/10"),
        ("content-length", "6"),
    ];
    fields.extend_from_slice(more);
    Answer::respond(206, &fields, "456789")
}

/// The complete response those bytes are part of.
fn whole() -> Answer {
    Answer::respond(200, &[("cache-control", "max-age=60")], "0123456789")
}

/// An origin answering `answer` to everything.
fn origin(answer: Answer) -> Simulation {
    Simulation::new(Timestamp::from_millis(1_000_000), answer)
}

/// An origin answering `answer`, and an engine in front of it that stored the answer to a
/// first request (for `bytes=6-8`).
fn filled(answer: Answer) -> (Simulation, Engine<SimHost>) {
    let sim = origin(answer);
    let engine = sim.engine(EngineConfig::default()).unwrap();
    get(&sim, &engine, &range("bytes=6-8"));
    (sim, engine)
}

fn get(sim: &Simulation, engine: &Engine<SimHost>, fields: &[(&str, &str)]) -> Seen {
    seen(
        &sim.clock
            .block_on(engine.handle(request("GET", "/p", fields))),
    )
}

fn range(value: &str) -> [(&str, &str); 1] {
    [("range", value)]
}

/// What a client saw.
struct Seen {
    status: u16,
    content_range: Option<String>,
    body: String,
    cache_status: String,
}

impl Seen {
    /// Asserts that its `Cache-Status` says `what`.
    fn says(&self, what: &str) {
        assert!(
            self.cache_status.contains(what),
            "{what:?} not in {}",
            self.cache_status
        );
    }

    /// Status, `Content-Range` and content.
    fn part(&self) -> (u16, Option<&str>, &str) {
        (self.status, self.content_range.as_deref(), &self.body)
    }
}

fn seen(handled: &Handled<SimBody>) -> Seen {
    let fields = handled.response.fields();
    Seen {
        status: handled.response.status,
        content_range: fields.get_str("content-range").map(String::from),
        body: body_text(&handled.response),
        cache_status: String::from(fields.get_str("cache-status").unwrap_or("")),
    }
}

/// RFC 9111 §3.3: the origin's `206` is stored (the origin request carries no `Range`),
/// its first client gets the range it asked for cut from it, and later ranges wholly
/// within it (byte range, open-ended, suffix, all of it) are hits with their own
/// `Content-Range`.
#[test]
fn a_stored_partial_answers_the_ranges_within_it() {
    let sim = origin(part_4_to_9(&[]));
    let engine = sim.engine(EngineConfig::default()).unwrap();
    let first = get(&sim, &engine, &range("bytes=-5"));
    assert_eq!(first.part(), (206, Some("bytes 5-9/10"), "56789"));
    assert_eq!(
        first.cache_status,
        "edgecache-l1; fwd=uri-miss; fwd-status=206; ttl=60; stored"
    );
    assert!(sim.script.borrow().requests[0]
        .headers
        .get_str("range")
        .is_none());
    for (asked, content_range, body) in [
        ("bytes=6-8", "bytes 6-8/10", "678"),
        ("bytes=6-", "bytes 6-9/10", "6789"),
        ("bytes=-1", "bytes 9-9/10", "9"),
        ("bytes=4-9", "bytes 4-9/10", "456789"),
        ("bytes=5-500", "bytes 5-9/10", "56789"),
    ] {
        let hit = get(&sim, &engine, &range(asked));
        assert_eq!(hit.part(), (206, Some(content_range), body), "{asked}");
        assert_eq!(hit.cache_status, "edgecache-l1; hit; ttl=60", "{asked}");
    }
    assert_eq!(sim.fetches(), 1);
}

/// RFC 9111 §3.3: never the whole response, a `HEAD`, a range partly or wholly outside,
/// several ranges, or a false `If-Range`: each goes to the origin (`fwd=partial`), whose
/// answer (here the same part again) replaces it.
#[test]
fn a_stored_partial_never_answers_what_it_lacks() {
    let (sim, engine) = filled(part_4_to_9(&[("etag", "\"v1\"")]));
    let mut fetches = 1;
    for (method, fields) in [
        ("GET", &[][..]),
        ("HEAD", &[][..]),
        ("HEAD", &range("bytes=6-8")[..]),
        ("GET", &range("bytes=3-8")),
        ("GET", &range("bytes=0-1")),
        ("GET", &range("bytes=-7")),
        ("GET", &range("bytes=10-")),
        ("GET", &range("bytes=4-5, 8-9")),
        ("GET", &[("range", "bytes=6-8"), ("if-range", "\"v0\"")]),
    ] {
        let handled = sim
            .clock
            .block_on(engine.handle(request(method, "/p", fields)));
        fetches += 1;
        assert_eq!(sim.fetches(), fetches, "{method} {fields:?}");
        let cache_status = seen(&handled).cache_status;
        assert!(
            cache_status.contains("fwd=partial; fwd-status=206") && !cache_status.contains("hit"),
            "{method} {fields:?}: {cache_status}"
        );
    }
    let sent = &sim.script.borrow().requests;
    assert!(sent
        .iter()
        .all(|r| r.method == "GET" && r.headers.get_str("range").is_none()));
    // Still stored: the part within is a hit.
    let hit = get(
        &sim,
        &engine,
        &[("range", "bytes=6-8"), ("if-range", "\"v1\"")],
    );
    assert_eq!(hit.part(), (206, Some("bytes 6-8/10"), "678"));
    hit.says("hit");
    assert_eq!(sim.fetches(), fetches);
}

/// A request the part cannot answer fetches the complete response, which replaces it and
/// answers every range from then on.
#[test]
fn the_complete_response_replaces_a_stored_partial() {
    let (sim, engine) = filled(part_4_to_9(&[]));
    sim.then(whole());
    let replaced = get(&sim, &engine, &range("bytes=0-1"));
    assert_eq!(replaced.part(), (206, Some("bytes 0-1/10"), "01"));
    assert_eq!(
        replaced.cache_status,
        "edgecache-l1; fwd=partial; fwd-status=200; ttl=60; stored"
    );
    for fields in [&[][..], &range("bytes=0-1"), &range("bytes=6-8")] {
        let hit = get(&sim, &engine, fields);
        assert!(
            hit.cache_status.contains("hit"),
            "{fields:?}: {}",
            hit.cache_status
        );
    }
    assert_eq!(get(&sim, &engine, &[]).part(), (200, None, "0123456789"));
    assert_eq!(sim.fetches(), 2);
}

/// A `206` whose `Content-Range` is not one range it holds exactly is passed on, not
/// stored: a length that lies, an unsatisfied range, an unknown length, several ranges,
/// `no-store`; a `206` whose body is not what its fields say is never used.
#[test]
fn a_206_that_is_not_exactly_its_range_is_not_stored() {
    // Why, the origin's fields besides `max-age=60`, its body, and what Cache-Status says.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let range_4_to_9 = ("content-range", "bytes 4-9/10");
    let cases: [Case; 7] = [
        (
            "a length that lies",
            &[range_4_to_9, ("content-length", "5")],
            "45678",
            "detail=content-range",
        ),
        (
            "an unsatisfied range",
            &[("content-range", "bytes */10"), ("content-length", "0")],
            "",
            "detail=content-range",
        ),
        (
            "an unknown length",
            &[("content-range", "bytes 4-9/*"), ("content-length", "6")],
            "456789",
            "detail=content-range",
        ),
        (
            "no Content-Range",
            &[("content-length", "6")],
            "456789",
            "detail=content-range",
        ),
        (
            "multipart",
            &[
                ("content-type", "multipart/byteranges; boundary=b"),
                ("content-length", "6"),
                range_4_to_9,
            ],
            "456789",
            "detail=content-range",
        ),
        (
            "no-store",
            &[
                ("cache-control", "no-store"),
                range_4_to_9,
                ("content-length", "6"),
            ],
            "456789",
            "detail=no-store",
        ),
        (
            "a body shorter than its fields say",
            &[range_4_to_9, ("content-length", "6")],
            "45678",
            "stored",
        ),
    ];
    for (why, fields, body, detail) in cases {
        let mut all = alloc::vec![("cache-control", "max-age=60")];
        all.extend_from_slice(fields);
        let sim = origin(Answer::respond(206, &all, body));
        let engine = sim.engine(EngineConfig::default()).unwrap();
        let passed = get(&sim, &engine, &range("bytes=6-7"));
        assert_eq!(
            (passed.status, passed.body.as_str()),
            (206, body),
            "{why}: the origin's"
        );
        assert!(
            passed.cache_status.contains(detail),
            "{why}: {}",
            passed.cache_status
        );
        let again = get(&sim, &engine, &range("bytes=6-7"));
        assert!(
            !again.cache_status.contains("hit"),
            "{why}: {}",
            again.cache_status
        );
        assert_eq!(sim.fetches(), 2, "{why}");
    }
}

/// An enormous claimed complete length is a length like any: ranges are resolved against
/// it and served only from the bytes held.
#[test]
fn an_enormous_complete_length_is_harmless() {
    let sim = origin(Answer::respond(
        206,
        &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-4/18446744073709551615"),
            ("content-length", "5"),
        ],
        "01234",
    ));
    let engine = sim.engine(EngineConfig::default()).unwrap();
    get(&sim, &engine, &range("bytes=0-0"));
    let hit = get(&sim, &engine, &range("bytes=1-3"));
    assert_eq!(
        hit.part(),
        (206, Some("bytes 1-3/18446744073709551615"), "123")
    );
    hit.says("hit");
    let suffix = get(&sim, &engine, &range("bytes=-2"));
    suffix.says("fwd=partial");
    assert_eq!(sim.fetches(), 2);
}

/// An origin that answers with another range than the client asked for: its `206` is
/// passed on as it is, stored, and answers the ranges it does hold.
#[test]
fn a_part_other_than_the_one_asked_for_is_passed_on_and_kept() {
    let sim = origin(part_4_to_9(&[]));
    let engine = sim.engine(EngineConfig::default()).unwrap();
    let passed = get(&sim, &engine, &range("bytes=0-1"));
    assert_eq!(passed.part(), (206, Some("bytes 4-9/10"), "456789"));
    let hit = get(&sim, &engine, &range("bytes=7-8"));
    assert_eq!(hit.part(), (206, Some("bytes 7-8/10"), "78"));
    hit.says("hit");
    assert_eq!(sim.fetches(), 1);
}

/// RFC 9110 §13.2.2: the client's `If-None-Match` is evaluated against the stored part
/// before its `Range`; RFC 9111 §5.2.1.7: `only-if-cached` gets the part when it holds the
/// range, else `504`.
#[test]
fn conditions_and_only_if_cached_on_a_stored_partial() {
    let (sim, engine) = filled(part_4_to_9(&[("etag", "\"v1\"")]));
    let matching = [("range", "bytes=6-8"), ("if-none-match", "\"v1\"")];
    assert_eq!(get(&sim, &engine, &matching).part(), (304, None, ""));
    let other = [("range", "bytes=6-8"), ("if-none-match", "\"v0\"")];
    assert_eq!(
        get(&sim, &engine, &other).part(),
        (206, Some("bytes 6-8/10"), "678")
    );
    let only = |asked: &'static str| [("range", asked), ("cache-control", "only-if-cached")];
    assert_eq!(
        get(&sim, &engine, &only("bytes=7-")).part(),
        (206, Some("bytes 7-9/10"), "789")
    );
    assert_eq!(get(&sim, &engine, &only("bytes=0-1")).status, 504);
    assert_eq!(sim.fetches(), 1);
}

/// A stale part is revalidated with its validator (without `Range`, RFC 9111 §4.3.1): a
/// `304` freshens it and the range is cut from it; without a validator it is fetched anew,
/// and the origin's answer replaces it.
#[test]
fn a_stale_partial_is_revalidated_or_replaced() {
    for (more, answer, fwd) in [
        (
            &[("etag", "\"v1\"")][..],
            Answer::respond(
                304,
                &[("etag", "\"v1\""), ("cache-control", "max-age=60")],
                "",
            ),
            "fwd=stale; fwd-status=304",
        ),
        (&[][..], whole(), "fwd=stale; fwd-status=200"),
    ] {
        let (sim, engine) = filled(part_4_to_9_for("max-age=1", more));
        sim.clock.advance_secs(5);
        sim.then(answer);
        let revalidated = get(&sim, &engine, &range("bytes=7-8"));
        assert_eq!(revalidated.part(), (206, Some("bytes 7-8/10"), "78"));
        revalidated.says(fwd);
        let sent = &sim.script.borrow().requests[1];
        let validator = more.first().map(|(_, etag)| *etag);
        assert_eq!(sent.headers.get_str("if-none-match"), validator);
        assert!(sent.headers.get_str("range").is_none());
        let hit = get(&sim, &engine, &range("bytes=4-5"));
        hit.says("hit");
        assert_eq!(sim.fetches(), 2);
    }
}

/// Concurrent requests for one key share the fill of the part: a waiter whose range it
/// holds is served from it (`collapsed`), one whose range it lacks fetches on its own.
#[test]
fn waiters_use_the_part_only_for_ranges_it_holds() {
    let sim = origin(part_4_to_9(&[]));
    sim.script.borrow_mut().latency_ms = 50;
    let engine = sim.engine(EngineConfig::default()).unwrap();
    let handled = sim.clock.block_on_all(
        [range("bytes=5-6"), range("bytes=7-8"), range("bytes=0-1")]
            .iter()
            .map(|fields| engine.handle(request("GET", "/p", fields)))
            .collect(),
    );
    let [leader, within, outside] = [0, 1, 2].map(|i| seen(&handled[i]));
    assert_eq!(leader.part(), (206, Some("bytes 5-6/10"), "56"));
    assert_eq!(within.part(), (206, Some("bytes 7-8/10"), "78"));
    within.says("collapsed");
    assert_eq!(
        outside.part(),
        (206, Some("bytes 4-9/10"), "456789"),
        "its own fetch, passed on"
    );
    assert!(
        !outside.cache_status.contains("collapsed"),
        "{}",
        outside.cache_status
    );
    assert_eq!(sim.fetches(), 2);
}

/// A part too large to buffer (above `limits.stream_above_bytes`) is stored as it streams
/// through, like any fill, and answers the ranges within it once complete.
#[test]
fn a_streamed_part_is_stored_when_complete() {
    use crate::engine::simulated::serve;
    let content: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let part = &content[20_000..90_000];
    let sim = origin(Answer::respond(
        206,
        &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 20000-89999/100000"),
            ("content-length", "70000"),
        ],
        part,
    ));
    let engine = sim.engine(EngineConfig::default()).unwrap();
    let asked = |range: &'static str| request("GET", "/p", &[("range", range)]);
    let first = sim
        .clock
        .block_on(serve(&engine, &sim.clock, asked("bytes=30000-30009")));
    assert_eq!(first.status, 206);
    assert_eq!(
        first.body.as_deref(),
        Ok(part),
        "the origin's part, as it streamed"
    );
    let hit = sim
        .clock
        .block_on(serve(&engine, &sim.clock, asked("bytes=30000-30009")));
    assert_eq!(hit.body.as_deref(), Ok(&content[30_000..30_010]));
    assert_eq!(
        hit.fields.get_str("content-range"),
        Some("bytes 30000-30009/100000")
    );
    let cache_status = hit.fields.get_str("cache-status").unwrap_or("");
    assert!(cache_status.contains("hit"), "{cache_status}");
    assert_eq!(sim.fetches(), 1);
}
