//! Statistics for the whole fleet (issue 14, point 3): every instance sharing the Redis tier
//! (isolates of the Worker, `edgecache serve` processes) adds its counts to the fleet's
//! totals there, and `/stats` and `/metrics` report those totals beside the instance's own
//! figures, each labelled.
//!
//! - **Report.** Every `stats.report_secs` (10 s by default; 0: never) an instance sends what
//!   it counted since its last report: the counters that moved, added to one hash
//!   `{prefix}stats:{fleet}:totals` (`HINCRBY`), which also keeps when it started counting
//!   (`since_ms`, `HSETNX`), and its mark in the roster `{prefix}stats:{fleet}:instances`, a
//!   sorted set of instance ids scored by the time of their last report, from which those
//!   silent for [`WINDOW_REPORTS`] intervals are dropped in the same transaction. So the
//!   keys are two, whatever the number of instances, and the roster holds the live ones
//!   only. One transaction, one round trip (`MULTI`/`EXEC`; over Redis over HTTP one
//!   `/multi-exec`): all of a report or none of it. (The hash tag `{fleet}` keeps both keys
//!   in one slot of a Redis Cluster.)
//! - **When.** The engine says when a report is due: on a request, as a background job
//!   ([`super::Job::ReportStats`], `ctx.wait_until` on the Worker, which has no timers),
//!   natively also on a timer, so an idle process stays on the roster; and before a
//!   `/stats` or `/metrics` answer. A report is tried at most once per interval: a failed
//!   one keeps its counts for the next (nothing is lost, nothing retried per request), and
//!   none is sent while the shared tier's circuit is open.
//! - **What can be lost or miscounted.** An instance that stops (an isolate evicted, a
//!   process killed) loses what it counted since its last report: at most `report_secs` of
//!   its counts. A report whose answer is lost after Redis applied it (a timeout at the wrong
//!   moment) is sent again with the next one, so those counts are added twice. When Redis
//!   loses its data (restart without persistence, failover, flush; see [`super::sync`]) the
//!   totals start again from the next reports, and `since_ms` says when; likewise when no
//!   instance reports for [`TOTALS_TTL_MS`].
//! - **How fresh.** The totals hold each instance's counts up to its last report: at most
//!   about `report_secs` old for live instances. The answer says how many instances reported
//!   within the window and how old the newest and the oldest of those reports are.
//! - **Gauges** (L1 entries and bytes, the circuit) stay per instance: a sum of them over
//!   isolates that come and go would mislead.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::time::Timestamp;

use super::host::{CounterReport, Lock, Runtime, SharedTier};
use super::stats::{Counters, InstanceId};
use super::{Engine, Host};

/// Instances that have not reported for this many intervals are not counted as reporting,
/// and leave the roster.
pub const WINDOW_REPORTS: u64 = 3;

/// How long the totals are kept after the last report of any instance: a week.
pub const TOTALS_TTL_MS: u64 = 7 * 24 * 3_600_000;

/// At most this many reporting instances are listed (they are all counted).
pub const MAX_LISTED: usize = 100;

/// The field of the totals holding when they started counting.
const SINCE_FIELD: &str = "since_ms";

/// What an instance knows of its own reports.
#[derive(Clone, Debug, Default)]
pub struct FleetState {
    /// This instance's id, drawn at start.
    pub instance: InstanceId,
    /// Its counters as of its last successful report: what the totals hold of it.
    pub reported: Counters,
    /// When a report was last started (successful or not).
    pub last_attempt: Option<Timestamp>,
    /// When a report last succeeded.
    pub last_report: Option<Timestamp>,
    /// Whether a report is being sent now.
    pub reporting: bool,
}

/// The fleet's figures, read from the shared tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// Every instance's counters added up, as of each one's last report.
    pub totals: Counters,
    /// When the totals started counting (ms since the epoch), if the tier says.
    pub since_ms: Option<u64>,
    /// Instances that reported within the window.
    pub instances: u64,
    /// The newest of them (at most [`MAX_LISTED`]), newest first, with the time of their
    /// last report.
    pub reporting: Vec<(String, u64)>,
    /// When these figures were read (ms since the epoch).
    pub read_at_ms: u64,
    /// `stats.report_secs`.
    pub report_secs: u64,
    /// When this instance's last report succeeded (ms since the epoch).
    pub own_report_ms: Option<u64>,
}

impl Fleet {
    /// The window within which an instance counts as reporting, in seconds.
    pub fn window_secs(&self) -> u64 {
        self.report_secs.saturating_mul(WINDOW_REPORTS)
    }

    fn age_ms(&self, at_ms: u64) -> u64 {
        self.read_at_ms.saturating_sub(at_ms)
    }

    /// How old the newest and the oldest report of the instances counted are, in ms.
    /// The oldest is exact when every instance is listed, else that of the last listed.
    pub fn report_ages_ms(&self) -> Option<(u64, u64)> {
        let newest = self.reporting.first()?.1;
        let oldest = self.reporting.last()?.1;
        Some((self.age_ms(newest), self.age_ms(oldest)))
    }
}

/// The fleet's figures, or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetView {
    /// Read from the shared tier.
    Figures(alloc::boxed::Box<Fleet>),
    /// None to show, for this reason (said in `/stats`).
    Unavailable(&'static str),
}

/// Why there are no fleet figures: reporting is off.
pub const OFF: &str = "stats.report_secs is 0: instances do not report to the fleet";
/// Why there are no fleet figures: no shared tier.
pub const NO_SHARED_TIER: &str =
    "no shared tier (Redis): each instance counts alone, and these figures are this one's";
/// Why there are no fleet figures: the circuit is open.
pub const TIER_FAILING: &str =
    "the shared tier is failing (circuit open): the fleet's figures cannot be read now";
/// Why there are no fleet figures: the read failed.
pub const TIER_UNANSWERED: &str = "the shared tier did not answer the read of the fleet's figures";

impl FleetView {
    /// The figures as a JSON object: the fleet's totals in the instance's layout (`engine`
    /// and the L1 counters), labelled `"scope": "fleet"`, with their freshness; `null` when
    /// unavailable (the reason is [`Self::reason`]). Written through the serializers the
    /// instance's figures use already (no `serde_json::Value`), which keeps the Worker's
    /// bundle smaller.
    pub fn to_json(&self) -> String {
        let FleetView::Figures(fleet) = self else {
            return String::from("null");
        };
        let ages = fleet.report_ages_ms();
        let head = FleetJson {
            scope: "fleet",
            report_secs: fleet.report_secs,
            window_secs: fleet.window_secs(),
            instances: fleet.instances,
            newest_report_age_ms: ages.map(|(newest, _)| newest),
            oldest_report_age_ms: ages.map(|(_, oldest)| oldest),
            own_report_age_ms: fleet.own_report_ms.map(|at| fleet.age_ms(at)),
            since_ms: fleet.since_ms,
            read_at_ms: fleet.read_at_ms,
            reporting: fleet
                .reporting
                .iter()
                .map(|(id, at)| ReportingJson {
                    instance: id,
                    age_ms: fleet.age_ms(*at),
                })
                .collect(),
        };
        let mut out = serde_json::to_string(&head).unwrap_or_else(|_| String::from("{}"));
        let totals = serde_json::to_string(&fleet.totals).unwrap_or_default();
        // Both are objects: the totals' members go in before the closing brace.
        if let (Some(inner), Some(b'}')) = (
            totals.strip_prefix('{').and_then(|t| t.strip_suffix('}')),
            out.as_bytes().last(),
        ) {
            if !inner.is_empty() {
                out.pop();
                out.push(',');
                out.push_str(inner);
                out.push('}');
            }
        }
        out
    }

    /// Why there are no figures, if there are none.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            FleetView::Figures(_) => None,
            FleetView::Unavailable(why) => Some(why),
        }
    }

    /// The figures in the Prometheus text format: every counter as
    /// `edgecache_fleet_{name}_total` (names of their own: a sum over a label that held
    /// both one instance's figures and the fleet's would count them twice), the instances
    /// reporting, how old their reports are, and `edgecache_fleet_up` (0 without figures).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP edgecache_fleet_{name} {help}.");
            let _ = writeln!(out, "# TYPE edgecache_fleet_{name} gauge");
            let _ = writeln!(out, "edgecache_fleet_{name} {value}");
        };
        let FleetView::Figures(fleet) = self else {
            gauge(
                &mut out,
                "up",
                "1 when the fleet's figures could be read",
                0,
            );
            return out;
        };
        gauge(
            &mut out,
            "up",
            "1 when the fleet's figures could be read",
            1,
        );
        for (name, help, value) in fleet.totals.table() {
            let _ = writeln!(
                out,
                "# HELP edgecache_fleet_{name}_total {help} (every instance, as last reported)."
            );
            let _ = writeln!(out, "# TYPE edgecache_fleet_{name}_total counter");
            let _ = writeln!(out, "edgecache_fleet_{name}_total {value}");
        }
        gauge(
            &mut out,
            "instances",
            "Instances that reported within the window",
            fleet.instances,
        );
        gauge(
            &mut out,
            "report_interval_seconds",
            "How often instances report (stats.report_secs)",
            fleet.report_secs,
        );
        if let Some((newest, oldest)) = fleet.report_ages_ms() {
            gauge(
                &mut out,
                "newest_report_age_seconds",
                "Age of the newest report in the totals",
                newest / 1000,
            );
            gauge(
                &mut out,
                "oldest_report_age_seconds",
                "Age of the oldest report of the instances reporting",
                oldest / 1000,
            );
        }
        out
    }
}

/// The fleet's figures in `/stats`, but their totals (see [`FleetView::to_json`]).
#[derive(serde::Serialize)]
struct FleetJson<'a> {
    scope: &'static str,
    report_secs: u64,
    window_secs: u64,
    instances: u64,
    newest_report_age_ms: Option<u64>,
    oldest_report_age_ms: Option<u64>,
    own_report_age_ms: Option<u64>,
    since_ms: Option<u64>,
    read_at_ms: u64,
    reporting: Vec<ReportingJson<'a>>,
}

/// One instance reporting, in `/stats`.
#[derive(serde::Serialize)]
struct ReportingJson<'a> {
    instance: &'a str,
    age_ms: u64,
}

/// Clears [`FleetState::reporting`] when a report ends, however it ends (a host may drop
/// it unfinished).
struct Reporting<'a, L: Lock<super::EngineState>>(&'a L);

impl<L: Lock<super::EngineState>> Drop for Reporting<'_, L> {
    fn drop(&mut self) {
        self.0.with(|s| s.fleet.reporting = false);
    }
}

impl<H: Host> Engine<H> {
    /// The hash of the fleet's totals.
    fn fleet_totals_key(&self) -> String {
        self.sync_key("stats:{fleet}:totals")
    }

    /// The roster of reporting instances.
    fn fleet_roster_key(&self) -> String {
        self.sync_key("stats:{fleet}:instances")
    }

    fn report_interval_ms(&self) -> u64 {
        self.config.stats.report_secs.saturating_mul(1000)
    }

    /// Whether a report to the fleet's totals is due at `now`: reporting on, a shared tier,
    /// none being sent, and none tried within `stats.report_secs`.
    pub(crate) fn stats_report_due(&self, now: Timestamp) -> bool {
        let interval = self.report_interval_ms();
        interval > 0
            && self.shared.is_some()
            && self.state.with(|s| {
                !s.fleet.reporting
                    && s.fleet
                        .last_attempt
                        .is_none_or(|t| now.millis_since(t) >= interval)
            })
    }

    /// Adds what this instance counted since its last report to the fleet's totals, if a
    /// report is due (else nothing): one transaction. When it fails the counts are kept
    /// for the next report, which is not tried before `stats.report_secs` has passed.
    pub async fn report_stats(&self) {
        let now = self.runtime.now();
        if !self.stats_report_due(now) {
            return;
        }
        let started = self.state.with(|s| {
            if s.fleet.reporting {
                return None;
            }
            s.fleet.reporting = true;
            s.fleet.last_attempt = Some(now);
            let current = Counters::new(s.stats, &s.l1.stats());
            Some((s.fleet.instance, current, current.since(&s.fleet.reported)))
        });
        let Some((instance, current, delta)) = started else {
            return;
        };
        let _reporting = Reporting(&self.state);
        let Some(tier) = self.l2_tier() else {
            return;
        };
        let increments = delta.nonzero();
        let member = format!("{instance}");
        let (hash, roster) = (self.fleet_totals_key(), self.fleet_roster_key());
        let window_ms = self.report_interval_ms().saturating_mul(WINDOW_REPORTS);
        let report = CounterReport {
            hash: &hash,
            increments: &increments,
            if_absent: &[(SINCE_FIELD, now.as_millis())],
            hash_ttl_ms: TOTALS_TTL_MS,
            roster: &roster,
            member: &member,
            at_ms: now.as_millis(),
            forget_before_ms: now.as_millis().saturating_sub(window_ms),
            roster_ttl_ms: window_ms,
        };
        if self.l2_guarded(tier.add_counters(&report)).await.is_some() {
            self.state.with(|s| {
                s.fleet.reported = current;
                s.fleet.last_report = Some(now);
            });
        }
    }

    /// The fleet's figures, read in one round trip (after this instance's report, when one
    /// is due), or why there are none. Never fails: a stats request is answered whatever
    /// the shared tier does.
    pub async fn fleet(&self) -> FleetView {
        if self.config.stats.report_secs == 0 {
            return FleetView::Unavailable(OFF);
        }
        if self.shared.is_none() {
            return FleetView::Unavailable(NO_SHARED_TIER);
        }
        self.report_stats().await;
        let Some(tier) = self.l2_tier() else {
            return FleetView::Unavailable(TIER_FAILING);
        };
        let now = self.runtime.now().as_millis();
        let since = now.saturating_sub(self.report_interval_ms().saturating_mul(WINDOW_REPORTS));
        let (hash, roster) = (self.fleet_totals_key(), self.fleet_roster_key());
        let read = tier.read_counters(&hash, &roster, since, MAX_LISTED);
        let Some(read) = self.l2_guarded(read).await else {
            return FleetView::Unavailable(TIER_UNANSWERED);
        };
        let number = |value: &[u8]| core::str::from_utf8(value).ok()?.parse::<u64>().ok();
        let since_ms = read
            .fields
            .iter()
            .find(|(name, _)| name == SINCE_FIELD)
            .and_then(|(_, value)| number(value));
        let totals = Counters::from_fields(
            read.fields
                .iter()
                .filter(|(name, _)| name != SINCE_FIELD)
                .filter_map(|(name, value)| Some((name.as_str(), number(value)?))),
        );
        FleetView::Figures(alloc::boxed::Box::new(Fleet {
            totals,
            since_ms,
            instances: read.reporters,
            reporting: read.newest,
            read_at_ms: now,
            report_secs: self.config.stats.report_secs,
            own_report_ms: self
                .state
                .with(|s| s.fleet.last_report.map(Timestamp::as_millis)),
        }))
    }

    /// `/stats`: this instance's figures as [`super::Snapshot::to_json`] has them
    /// (`"scope": "instance"`), and the fleet's under `"fleet"` (`null` and
    /// `"fleet_unavailable"` saying why, when there are none).
    pub async fn stats_json(&self) -> String {
        let fleet = self.fleet().await;
        let mut out = self.snapshot().to_json();
        if out.ends_with('}') {
            out.pop();
            out.push_str(",\"fleet\":");
            out.push_str(&fleet.to_json());
            if let Some(why) = fleet.reason() {
                out.push_str(",\"fleet_unavailable\":");
                out.push_str(&serde_json::to_string(why).unwrap_or_default());
            }
            out.push('}');
        }
        out
    }

    /// `/metrics`: this instance's series (`scope="instance"`), then the fleet's
    /// (`edgecache_fleet_*`).
    pub async fn metrics_text(&self) -> String {
        let fleet = self.fleet().await;
        let mut out = self.snapshot().to_prometheus();
        out.push_str(&fleet.to_prometheus());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::simulated::{
        request, serve, Answer, SimRedis, SimRedisHost, SimRuntime, Simulation,
    };
    use crate::engine::{EngineConfig, Job};
    use crate::shared_tier::RedisTier;
    use crate::time::Clock;

    const START_MS: u64 = 1_000_000;

    /// A simulation whose engines share one simulated Redis.
    struct Shared {
        sim: Simulation,
        redis: SimRedis,
    }

    impl Shared {
        fn new() -> Self {
            let sim = Simulation::new(
                Timestamp::from_millis(START_MS),
                Answer::respond(200, &[("cache-control", "max-age=600")], "body"),
            );
            let redis = SimRedis::new(sim.clock.clone());
            Shared { sim, redis }
        }

        /// An instance with `config`, its random draws seeded with `seed` (its id differs
        /// from the others').
        fn instance(&self, config: EngineConfig, seed: u64) -> Engine<SimRedisHost> {
            let (origin, _) = self.sim.parts();
            let runtime = SimRuntime::seeded(self.sim.clock.clone(), seed);
            let tier = RedisTier::over(self.redis.clone());
            Engine::new(config, origin, Some(tier), runtime).unwrap()
        }

        /// `n` GETs of `path` through `engine`, each with its background job, as a host runs them.
        fn get(&self, engine: &Engine<SimRedisHost>, path: &str, n: usize) {
            for _ in 0..n {
                let received = self.sim.clock.block_on(serve(
                    engine,
                    &self.sim.clock,
                    request("GET", path, &[]),
                ));
                assert_eq!(received.status, 200);
            }
        }

        fn fleet(&self, engine: &Engine<SimRedisHost>) -> super::Fleet {
            match self.sim.clock.block_on(engine.fleet()) {
                FleetView::Figures(fleet) => *fleet,
                other => panic!("no fleet figures: {other:?}"),
            }
        }

        /// The totals hash as Redis holds it.
        fn stored(&self, field: &str) -> Option<i64> {
            self.redis.hash_field("ec:v1:stats:{fleet}:totals", field)
        }

        /// How many report transactions reached Redis.
        fn reports(&self) -> usize {
            self.redis.commands("ZADD")
        }
    }

    fn config() -> EngineConfig {
        let mut config = EngineConfig::default();
        config.stats.report_secs = 10;
        config
    }

    fn requests(engine: &Engine<SimRedisHost>) -> u64 {
        engine.snapshot().engine.requests
    }

    /// Each instance adds only what it counted since its last report: after reports before
    /// and after more requests, the totals are the sum of the instances' own counters, not
    /// more; the roster holds both instances.
    #[test]
    fn deltas_are_reported_once_and_add_up_across_instances() {
        let f = Shared::new();
        let a = f.instance(config(), 1);
        let b = f.instance(config(), 2);
        assert_ne!(a.snapshot().instance, b.snapshot().instance);
        f.get(&a, "/x", 3);
        f.get(&b, "/x", 2);
        // The first request of each reported at once (1 each); the rest waits for the interval.
        assert_eq!(f.reports(), 2);
        assert_eq!(f.stored("requests"), Some(2));
        f.sim.clock.advance_secs(10);
        f.get(&a, "/x", 1);
        f.get(&b, "/y", 1);
        assert_eq!(f.reports(), 4);
        assert_eq!(f.stored("requests"), Some(7));
        f.sim.clock.advance_secs(10);
        let increments = f.redis.commands("HINCRBY");
        for engine in [&a, &b] {
            f.sim.clock.block_on(engine.report_stats());
        }
        assert_eq!(
            f.reports(),
            6,
            "reports with nothing new still mark the instance"
        );
        assert_eq!(
            f.redis.commands("HINCRBY"),
            increments,
            "and add nothing: only counters that moved are sent"
        );
        let fleet = f.fleet(&a);
        assert_eq!(fleet.totals.engine.requests, requests(&a) + requests(&b));
        assert_eq!(fleet.totals.engine.requests, 7, "no request counted twice");
        let (sa, sb) = (a.snapshot(), b.snapshot());
        assert_eq!(
            fleet.totals.engine.origin_fetches,
            sa.engine.origin_fetches + sb.engine.origin_fetches
        );
        assert_eq!(
            fleet.totals.engine.l1_hits,
            sa.engine.l1_hits + sb.engine.l1_hits
        );
        assert_eq!(fleet.instances, 2);
        assert_eq!(
            fleet.since_ms,
            Some(START_MS),
            "counting since the first report"
        );
        let mut listed: Vec<&str> = fleet.reporting.iter().map(|(id, _)| id.as_str()).collect();
        listed.sort_unstable();
        let mut ids = [format!("{}", sa.instance), format!("{}", sb.instance)];
        ids.sort_unstable();
        assert_eq!(listed, ids);
        assert_eq!(fleet.report_ages_ms(), Some((0, 0)));
    }

    /// A report is due once per interval: requests before it add no report job, and a
    /// direct call sends nothing.
    #[test]
    fn no_report_before_it_is_due() {
        let f = Shared::new();
        let a = f.instance(config(), 1);
        let first = f.sim.clock.block_on(a.handle(request("GET", "/x", &[])));
        assert!(has_report(&first.job), "the first request reports");
        f.sim.clock.block_on(a.run_job(first.job.unwrap()));
        assert_eq!(f.reports(), 1);
        f.sim.clock.advance_secs(9);
        let early = f.sim.clock.block_on(a.handle(request("GET", "/x", &[])));
        assert!(!has_report(&early.job), "not due within report_secs");
        f.sim.clock.block_on(a.report_stats());
        assert_eq!(f.reports(), 1, "nothing sent before it is due");
        f.sim.clock.advance_secs(1);
        let due = f.sim.clock.block_on(a.handle(request("GET", "/x", &[])));
        assert!(has_report(&due.job));
        // Without a shared tier, or with reporting off, never.
        let sim = Simulation::new(Timestamp::from_millis(START_MS), Answer::Unreachable);
        let alone = sim.engine(config()).unwrap();
        assert!(!alone.stats_report_due(sim.clock.now()));
        let mut off = config();
        off.stats.report_secs = 0;
        let off = f.instance(off, 3);
        let handled = f.sim.clock.block_on(off.handle(request("GET", "/x", &[])));
        assert!(!has_report(&handled.job));
    }

    fn has_report<B>(job: &Option<Job<B>>) -> bool {
        match job {
            Some(Job::ReportStats) => true,
            Some(Job::Batch(jobs)) => jobs.iter().any(|j| matches!(j, Job::ReportStats)),
            _ => false,
        }
    }

    /// A report that fails keeps its counts: the next one, an interval later, carries them
    /// (and is not tried on every request meanwhile).
    #[test]
    fn a_failed_report_keeps_its_deltas_for_the_next() {
        let f = Shared::new();
        let mut config = config();
        // The breaker stays closed: every report due reaches the (failing) server.
        config.l2.breaker_failures = 1_000;
        let a = f.instance(config, 1);
        f.redis.set_down(true);
        f.get(&a, "/x", 3);
        assert_eq!(f.reports(), 1, "tried once, with the first request");
        assert_eq!(f.stored("requests"), None);
        assert!(a.snapshot().engine.l2_errors >= 1);
        f.sim.clock.advance_secs(5);
        f.get(&a, "/x", 2);
        assert_eq!(f.reports(), 1, "not tried again before report_secs");
        f.redis.set_down(false);
        f.sim.clock.advance_secs(5);
        f.get(&a, "/x", 1);
        assert_eq!(f.reports(), 2);
        assert_eq!(
            f.stored("requests"),
            Some(6),
            "every request, the failed report's too"
        );
        assert_eq!(
            f.stored("l2_errors").map(|n| n as u64),
            Some(a.snapshot().engine.l2_errors),
            "the failures are counted in the fleet as well"
        );
    }

    /// An instance that stops reporting leaves the count of instances after the window, and
    /// the roster: its counts stay in the totals.
    #[test]
    fn silent_instances_leave_the_roster_and_their_counts_stay() {
        let f = Shared::new();
        let a = f.instance(config(), 1);
        let b = f.instance(config(), 2);
        f.get(&a, "/x", 1);
        f.get(&b, "/x", 1);
        assert_eq!(f.fleet(&a).instances, 2);
        f.sim.clock.advance_secs(20);
        f.get(&a, "/x", 1);
        let fleet = f.fleet(&a);
        assert_eq!(
            fleet.instances, 2,
            "b reported 20 s ago: within 3 intervals"
        );
        assert_eq!(fleet.report_ages_ms(), Some((0, 20_000)));
        f.sim.clock.advance_secs(15);
        f.get(&a, "/x", 1);
        let fleet = f.fleet(&a);
        assert_eq!(fleet.instances, 1);
        assert_eq!(
            fleet.totals.engine.requests, 4,
            "b's request is still counted"
        );
        assert_eq!(
            f.redis.roster_len("ec:v1:stats:{fleet}:instances"),
            1,
            "the roster keeps only instances within the window"
        );
    }

    /// `/stats` labels the instance's figures and adds the fleet's; `/metrics` gives the
    /// instance's series `scope="instance"` under their old names and the fleet's names of
    /// their own. Without figures, `"fleet": null` says why and the answer is still 200.
    #[test]
    fn stats_and_metrics_show_the_instance_and_the_fleet() {
        let f = Shared::new();
        let mut config = config();
        config.admin.token = Some(String::from("0123456789abcdef0123"));
        let a = f.instance(config.clone(), 1);
        let b = f.instance(config.clone(), 2);
        f.get(&a, "/x", 2);
        f.get(&b, "/x", 3);
        let auth = [("authorization", "Bearer 0123456789abcdef0123")];
        let stats = f.sim.clock.block_on(serve(
            &a,
            &f.sim.clock,
            request("GET", "/_edgecache/stats", &auth),
        ));
        assert_eq!(stats.status, 200);
        let json: serde_json::Value = serde_json::from_str(&stats.body.unwrap()).unwrap();
        assert_eq!(json["scope"], "instance");
        assert_eq!(json["instance"], format!("{}", a.snapshot().instance));
        assert_eq!(json["instance"].as_str().unwrap().len(), 16);
        assert_eq!(
            json["engine"]["requests"], 2,
            "the instance's own, as before"
        );
        let fleet = &json["fleet"];
        assert_eq!(fleet["scope"], "fleet");
        assert_eq!(
            fleet["engine"]["requests"], 2,
            "as each first reported: 1 + 1"
        );
        assert_eq!(fleet["instances"], 2);
        assert_eq!(fleet["report_secs"], 10);
        assert_eq!(fleet["window_secs"], 30);
        assert_eq!(fleet["since_ms"], START_MS);
        assert!(fleet["l1_evictions"].is_u64(), "{fleet}");
        assert!(json.get("fleet_unavailable").is_none());

        f.sim.clock.advance_secs(10);
        f.sim.clock.block_on(b.report_stats());
        let metrics = f.sim.clock.block_on(serve(
            &a,
            &f.sim.clock,
            request("GET", "/_edgecache/metrics", &auth),
        ));
        let text = metrics.body.unwrap();
        assert!(
            text.contains("edgecache_requests_total{scope=\"instance\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("edgecache_fleet_requests_total 5\n"),
            "{text}"
        );
        assert!(text.contains("edgecache_fleet_instances 2\n"), "{text}");
        assert!(text.contains("edgecache_fleet_up 1\n"), "{text}");
        assert!(
            text.contains("edgecache_l1_entries{scope=\"instance\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("edgecache_fleet_l1_entries"),
            "no fleet gauge of L1"
        );
        let id = format!(
            "edgecache_instance_info{{scope=\"instance\",id=\"{}\"}} 1",
            a.snapshot().instance
        );
        assert!(text.contains(&id), "{text}");

        // The tier down: the stats are answered, without fleet figures, saying why.
        f.redis.set_down(true);
        f.sim.clock.advance_secs(10);
        let down = f.sim.clock.block_on(a.stats_json());
        let json: serde_json::Value = serde_json::from_str(&down).unwrap();
        assert!(json["fleet"].is_null());
        assert_eq!(json["fleet_unavailable"], TIER_UNANSWERED);
        assert_eq!(json["engine"]["requests"], 2);
        let text = f.sim.clock.block_on(a.metrics_text());
        assert!(text.contains("edgecache_fleet_up 0\n") && !text.contains("fleet_requests"));
        // No shared tier, reporting off: null, and why.
        let sim = Simulation::new(Timestamp::from_millis(START_MS), Answer::Unreachable);
        let alone = sim.engine(config.clone()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&sim.clock.block_on(alone.stats_json())).unwrap();
        assert!(json["fleet"].is_null());
        assert_eq!(json["fleet_unavailable"], NO_SHARED_TIER);
        config.stats.report_secs = 0;
        let off = f.instance(config, 3);
        let json: serde_json::Value =
            serde_json::from_str(&f.sim.clock.block_on(off.stats_json())).unwrap();
        assert_eq!(json["fleet_unavailable"], OFF);
    }

    /// Counters go to the tier by their JSON names and come back whole; names another
    /// version wrote are ignored.
    #[test]
    fn counters_round_trip_by_name() {
        let mut counters = Counters::default();
        counters.engine.requests = 5;
        counters.engine.write_behind_dead_letters_trimmed = 2;
        counters.l1_rejected = 7;
        let named = counters.nonzero();
        assert_eq!(
            named,
            [
                ("requests", 5),
                ("write_behind_dead_letters_trimmed", 2),
                ("l1_rejected", 7)
            ]
        );
        let back = Counters::from_fields(named.into_iter().chain([("from_the_future", 3)]));
        assert_eq!(back, counters);
        let mut later = counters;
        later.engine.requests = 9;
        assert_eq!(later.since(&counters).nonzero(), [("requests", 4)]);
        assert_eq!(counters.since(&later).engine.requests, 0, "never below 0");
    }

    /// The one table of counters names every counter the engine keeps: none is left out
    /// of the fleet's totals.
    #[test]
    fn every_counter_is_in_the_table() {
        let json = serde_json::to_value(Counters::default()).unwrap();
        let mut fields: Vec<String> = json["engine"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        fields.extend(["l1_evictions", "l1_expirations", "l1_rejected"].map(String::from));
        fields.sort_unstable();
        let mut names: Vec<String> = Counters::default()
            .table()
            .iter()
            .map(|(name, _, _)| String::from(*name))
            .collect();
        names.sort_unstable();
        assert_eq!(names, fields);
    }

    #[test]
    fn report_secs_is_bounded_and_named() {
        let mut config = EngineConfig::default();
        assert_eq!(config.stats.report_secs, 10);
        config.stats.report_secs = 3_601;
        let e = config.validate().unwrap_err();
        assert_eq!(e.field, "stats.report_secs");
        config.stats.report_secs = 0;
        assert!(config.validate().is_ok());
        let e = EngineConfig::from_json(r#"{"stats":{"report_sec":5}}"#).unwrap_err();
        assert!(e.message.contains("report_sec"), "{e}");
    }
}
