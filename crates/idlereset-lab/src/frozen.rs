//! The `nat-43200-invalid` story (the field report's 12 h resets), scaled, on the real kernel.
//!
//! A busy flow (db streams to app), an asymmetric fault ([`crate::fault::asymmetric`]) that
//! makes conntrack's window tracking fall behind, then sampling of the flow's entry on `fw`
//! with [`idlereset_core::ctwatch::Watcher`] until the entry expires (or re-synchronises), and
//! what the connection does afterwards. Then the report's fixes, each in its own fresh lab run
//! side by side: `loose=1`, a longer established timeout, application pings at a short
//! interval. Every verdict is what the kernel did in that run, nothing is assumed.
//!
//! The fault needs the routed path (see `fault`), so the runs use the `reject` ruleset (INVALID
//! not dropped; a mid-stream packet that starts a NEW entry is answered with a reset: the rule
//! that admits only packets with a conntrack entry once the entry is gone).
//!
//! What Linux 6.18 does, and what the runs therefore show: after the fault the flow's packets
//! are INVALID; they pass, but neither refresh nor count on the entry, which expires one
//! timeout later. With `loose=1` (the story run) the next packet after expiry is picked up as
//! a NEW entry in mid-stream, the reject rule answers it with a reset: busy flow, frozen timer,
//! expiry, reset. With the report's `loose=0` the packet after expiry is INVALID as well and the
//! routed flow goes on untracked. Under NAT (docs/conntrack.md) INVALID packets skip the translation and
//! the connection breaks at once. `loose=1` does not re-synchronise the window (the report's
//! expectation); `be_liberal=1` is run as well.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use idlereset_core::ctwatch::{EventKind, Sample, WatchConfig, Watcher};
use idlereset_linux::conntrack::{self, Family};
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::evidence::FlowCapture;
use crate::fault;
use crate::firewall::{FirewallSettings, Profile};
use crate::lab::{Lab, LabSpec};
use crate::registry::Ownership;
use crate::reproduce::Outcome;
use crate::scenario::Preset;
use crate::traffic::BusyFlow;

/// The preset's name ([`Preset::Nat43200Invalid`]).
pub const PRESET: &str = "nat-43200-invalid";
/// Its one-line description for `lab reproduce --list`.
pub const DESCRIPTION: &str = "Field report: busy flow marked INVALID after an asymmetric path, conntrack timer frozen (43200 s scaled), then expiry; plus the report's fixes";

const PORT: u16 = 7413;

/// Knobs of a run (lab seconds).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// `nf_conntrack_tcp_timeout_established` (43200 s scaled down).
    pub established_timeout_s: u32,
    /// How long db -> app bypasses the firewall.
    pub fault_s: f64,
    /// Bytes per second db streams to app.
    pub rate: usize,
    /// How long to watch the connection after the entry expired.
    pub after_expiry_s: f64,
    /// Write the story run's `app.pcap` (app's link) and `fw-db.pcap` (fw's db link) here.
    #[serde(skip)]
    pub pcap_dir: Option<std::path::PathBuf>,
}

/// The incident's established timeout, seconds (12 h).
pub const INCIDENT_TIMEOUT_S: f64 = 43_200.0;

impl Options {
    /// Options from the knobs this preset honours: the incident's firewall timeout (default
    /// 43200 s) divided by the time scale (default: 43200 / 15 = 2880) gives the lab timeout.
    pub fn from_knobs(time_scale: Option<f64>, fw_timeout_s: Option<f64>) -> Result<Options> {
        let default = Options::default();
        let incident = fw_timeout_s.unwrap_or(INCIDENT_TIMEOUT_S);
        let scale =
            time_scale.unwrap_or(INCIDENT_TIMEOUT_S / f64::from(default.established_timeout_s));
        let lab = incident / scale;
        if !(lab.is_finite() && (2.0..=600.0).contains(&lab)) {
            return Err(LabError::Config(format!(
                "firewall timeout {incident} s at time scale {scale} is {lab:.2} lab seconds; preset {} needs 2 to 600 (the story lasts about three timeouts)",
                Preset::Nat43200Invalid
            )));
        }
        Ok(Options {
            established_timeout_s: lab.round() as u32,
            ..default
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            established_timeout_s: 15,
            fault_s: 6.0,
            rate: 2_000_000,
            after_expiry_s: 4.0,
            pcap_dir: None,
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone, Copy)]
struct Variant {
    fix: &'static str,
    loose: bool,
    be_liberal: bool,
    timeout_mult: u32,
    ping: Option<Duration>,
}

/// The story: the kernel's default `loose=1` with the reject ruleset.
const BASE: Variant = Variant {
    fix: "none (loose=1, reject NEW non-SYN)",
    loose: true,
    be_liberal: false,
    timeout_mult: 1,
    ping: None,
};

/// The verdict name of `loose=1`, judged on the story run itself.
const LOOSE_FIX: &str = "loose=1 (the report's fix; the story run)";

/// The name of every fix the report judges, in its order (as [`FixVerdict::fix`]).
pub fn fix_names() -> Vec<&'static str> {
    std::iter::once(LOOSE_FIX)
        .chain(FIXES.iter().map(|v| v.fix))
        .collect()
}

const FIXES: [Variant; 4] = [
    Variant {
        fix: "loose=0 (the report's box)",
        loose: false,
        ..BASE
    },
    Variant {
        fix: "longer established timeout (3x)",
        timeout_mult: 3,
        ..BASE
    },
    Variant {
        fix: "application pings every 0.5 s",
        ping: Some(Duration::from_millis(500)),
        ..BASE
    },
    Variant {
        fix: "be_liberal=1",
        be_liberal: true,
        ..BASE
    },
];

/// What one run saw.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The variant this run applied (the story run: `none (loose=1, reject NEW non-SYN)`).
    pub fix: String,
    /// The connection after the story (`reset` | `blackhole` | `survived`); null when the run
    /// itself failed (then `error` says why).
    pub outcome: Option<Outcome>,
    /// What happened to the connection, in one line (or why the run failed).
    pub detail: String,
    /// Lab seconds since the run started when the entry's timer was seen frozen.
    pub frozen_at_s: Option<f64>,
    /// Lab seconds since the run started when the entry vanished after the fault.
    pub expired_at_s: Option<f64>,
    /// The entry's timer was refreshed again after the fault (window tracking caught up).
    pub resynchronised: bool,
    /// Seconds between the entry's last refresh and its expiry (conntrack's view of "idle").
    pub idle_s: Option<f64>,
    /// Packets `fw` counted as INVALID during the run.
    pub invalid_packets: u64,
    /// What the run saw, one line per event, prefixed with lab seconds since its start.
    pub timeline: Vec<String>,
    /// The run itself failed (lab error), not the connection.
    pub error: Option<String>,
    /// What the application saw when the connection failed.
    pub app_error: Option<String>,
}

/// What a fix did, compared with the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixOutcome {
    /// The timer is refreshed again, or never froze: the connection lives and is tracked.
    Helps,
    /// The connection lives, but the firewall no longer tracks it.
    SurvivesUntracked,
    /// The same end, later.
    Postpones,
    /// The connection ends as in the story.
    DoesNotHelp,
    /// The fix's run failed (lab error); `detail` says why.
    Error,
}

impl FixOutcome {
    /// The JSON name (`helps`, `survives-untracked`, `postpones`, `does-not-help`, `error`).
    pub fn name(self) -> &'static str {
        match self {
            FixOutcome::Helps => "helps",
            FixOutcome::SurvivesUntracked => "survives-untracked",
            FixOutcome::Postpones => "postpones",
            FixOutcome::DoesNotHelp => "does-not-help",
            FixOutcome::Error => "error",
        }
    }
}

/// One fix's verdict in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FixVerdict {
    /// The fix's name (as [`RunResult::fix`]).
    pub fix: String,
    /// What the fix did, compared with the story.
    pub outcome: FixOutcome,
    /// Why, in one line.
    pub detail: String,
}

/// The preset's JSON: the contract's `outcome`, `idle_s`, `error`, plus the fixes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The preset that ran.
    pub preset: Preset,
    /// The story run's outcome.
    pub outcome: Outcome,
    /// The story run's idle time as conntrack saw it, lab seconds (see [`RunResult::idle_s`]).
    pub idle_s: Option<f64>,
    /// What the application saw when the story's connection failed.
    pub error: Option<String>,
    /// The knobs all runs used.
    pub options: Options,
    /// The story run (no fix applied).
    pub story: RunResult,
    /// One verdict per fix: `loose=1` (judged on the story run), then one per run in `runs`.
    pub fixes: Vec<FixVerdict>,
    /// The fixes' own runs, each in a fresh lab.
    pub runs: Vec<RunResult>,
}

/// The flow's entry on fw: (timeout, packets, id).
type EntrySample = (u32, Option<u64>, u32);

/// The flow's entry on fw and fw's INVALID statistic.
fn sample(lab: &Lab, sport: u16) -> Result<(Option<EntrySample>, u64)> {
    let (entry, stats) = lab.ns("fw")?.run(|| {
        let mut found = None;
        let dumped = conntrack::dump(Family::V4, |e| {
            if e.orig.sport == Some(sport) && e.orig.dport == Some(PORT) {
                found = Some((e.timeout_s, e.packets(), e.id));
            }
        });
        (dumped.map(|_| found), conntrack::stats())
    })?;
    Ok((entry?, stats?.total.invalid))
}

async fn run_variant(v: Variant, opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> RunResult {
    let mut r = RunResult {
        fix: v.fix.to_string(),
        outcome: Some(Outcome::Survived),
        detail: String::new(),
        frozen_at_s: None,
        expired_at_s: None,
        resynchronised: false,
        idle_s: None,
        invalid_packets: 0,
        timeline: Vec::new(),
        error: None,
        app_error: None,
    };
    if let Err(e) = story(v, opts, progress, &mut r).await {
        r.outcome = None;
        r.error = Some(e.with_causes());
    }
    r
}

async fn story(
    v: Variant,
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
    r: &mut RunResult,
) -> Result<()> {
    let mut st = Story::start(v, opts, progress).await?;
    loop {
        let t = st.t0.elapsed().as_secs_f64();
        st.observe(r, t)?;
        if st.connection_failed(r, t) {
            break;
        }
        if st.fault_done_at.is_none() && t >= 3.0 {
            st.fault(r, t).await?;
            continue;
        }
        if st.over(r, t) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    st.finish(r);
    Ok(())
}

/// One run of the story, phase by phase: [`Story::start`] (lab, capture, busy flow), per second
/// [`Story::observe`] (the entry into the frozen-timer watcher), once [`Story::fault`], until
/// [`Story::over`], then [`Story::finish`].
struct Story<'a> {
    v: Variant,
    opts: &'a Options,
    progress: &'a (dyn Fn(&str) + Sync),
    timeout: u32,
    lab: Lab,
    t0: Instant,
    capture: Option<FlowCapture>,
    flow: BusyFlow,
    watcher: Watcher<u32>,
    events: Vec<idlereset_core::ctwatch::Event<u32>>,
    last_refresh: f64,
    prev_timeout: u32,
    invalid0: Option<u64>,
    fault_done_at: Option<f64>,
    after_fault_high: u32,
    received_at_expiry: u64,
}

impl<'a> Story<'a> {
    /// The lab with this variant's firewall, the capture (story run only), the busy flow.
    async fn start(
        v: Variant,
        opts: &'a Options,
        progress: &'a (dyn Fn(&str) + Sync),
    ) -> Result<Story<'a>> {
        let timeout = opts.established_timeout_s * v.timeout_mult;
        let mut fw = FirewallSettings::new(Profile::Reject, timeout);
        fw.loose = v.loose;
        fw.be_liberal = v.be_liberal;
        let lab = Lab::create(LabSpec::new(0, fw), None, Ownership::Foreground).await?;
        let t0 = Instant::now();
        // Only the story run is captured (the fixes run at the same time, in labs of their own).
        let capture = match (&opts.pcap_dir, v.fix == BASE.fix) {
            (Some(dir), true) => {
                let topo = lab.topology();
                Some(FlowCapture::start(
                    vec![
                        (lab.ns("app")?, topo.app_link(), "app"),
                        (lab.ns("fw")?, topo.fw_links().1, "fw->db"),
                    ],
                    PORT,
                    t0,
                    Some(dir),
                )?)
            }
            _ => None,
        };
        let flow = BusyFlow::start(&lab, PORT, opts.rate, v.ping)?;
        let watcher = Watcher::new(WatchConfig {
            expiring_s: (timeout / 3).max(2),
            ..WatchConfig::default()
        });
        Ok(Story {
            v,
            opts,
            progress,
            timeout,
            lab,
            t0,
            capture,
            flow,
            watcher,
            events: Vec::new(),
            last_refresh: 0.0,
            prev_timeout: 0,
            invalid0: None,
            fault_done_at: None,
            after_fault_high: 0,
            received_at_expiry: 0,
        })
    }

    fn log(&self, r: &mut RunResult, t: f64, m: String) {
        (self.progress)(&format!("[{}] {t:6.1}s {m}", self.v.fix));
        r.timeline.push(format!("{t:6.1}s {m}"));
    }

    /// One sampling round of the flow's entry on fw: refreshes, expiry, the watcher's events.
    fn observe(&mut self, r: &mut RunResult, t: f64) -> Result<()> {
        let (entry, invalid) = sample(&self.lab, self.flow.sport)?;
        self.invalid0.get_or_insert(invalid);
        self.watcher.begin_round(t, Some(invalid), &mut self.events);
        match entry {
            Some((timeout_s, packets, id)) => {
                if timeout_s >= self.prev_timeout {
                    self.last_refresh = t;
                }
                self.prev_timeout = timeout_s;
                if self.fault_done_at.is_some() && timeout_s + 1 >= self.timeout {
                    self.after_fault_high += 1;
                }
                let sample = Sample {
                    t_s: t,
                    timeout_s,
                    packets,
                };
                self.watcher.observe(&id, sample, &mut self.events);
            }
            None if r.expired_at_s.is_none() && self.fault_done_at.is_some() => {
                r.expired_at_s = Some(t);
                r.idle_s = Some(((t - self.last_refresh) * 10.0).round() / 10.0);
                self.received_at_expiry = self.flow.received.load(Ordering::Relaxed);
                let m = format!(
                    "the flow's entry is gone from fw's table (last refreshed {:.1} s earlier)",
                    t - self.last_refresh
                );
                self.log(r, t, m);
            }
            None => {}
        }
        self.watcher.end_round(t, &mut self.events);
        for e in std::mem::take(&mut self.events) {
            if e.kind == EventKind::Frozen && r.frozen_at_s.is_none() {
                r.frozen_at_s = Some(t);
            }
            self.log(r, t, format!("{}: {}", e.kind.name(), e.evidence));
        }
        Ok(())
    }

    /// Whether the app's connection failed (a reset): the run's outcome.
    fn connection_failed(&self, r: &mut RunResult, t: f64) -> bool {
        let failed = match self.flow.failed.lock() {
            Ok(g) => g.clone(),
            Err(_) => None,
        };
        let Some(m) = failed else {
            return false;
        };
        self.log(r, t, format!("connection failed: {m}"));
        r.outcome = Some(Outcome::Reset);
        r.app_error = Some(m);
        true
    }

    /// The asymmetric fault: db -> app goes around fw for `fault_s`.
    async fn fault(&mut self, r: &mut RunResult, t: f64) -> Result<()> {
        let (fault_s, rate) = (self.opts.fault_s, self.opts.rate);
        let m = format!("fault: db -> app goes around fw for {fault_s} s ({rate} B/s)");
        self.log(r, t, m);
        let rep = fault::asymmetric(
            &self.lab,
            Duration::from_secs_f64(fault_s),
            std::future::pending(),
        )
        .await?;
        let t = self.t0.elapsed().as_secs_f64();
        let m = format!(
            "fault over: fw INVALID statistic +{}",
            rep.invalid_after.saturating_sub(rep.invalid_before)
        );
        self.log(r, t, m);
        self.fault_done_at = Some(t);
        Ok(())
    }

    /// Whether the story has ended: re-synchronised, watched long enough after expiry (a
    /// blackhole when nothing more arrived), or past the deadline.
    fn over(&self, r: &mut RunResult, t: f64) -> bool {
        if self.after_fault_high >= 3 {
            r.resynchronised = true;
            let m = "the entry's timer is refreshed again: conntrack re-synchronised";
            self.log(r, t, m.into());
            return true;
        }
        if let Some(exp) = r.expired_at_s
            && t - exp >= self.opts.after_expiry_s
        {
            let received = self.flow.received.load(Ordering::Relaxed);
            let more = received.saturating_sub(self.received_at_expiry);
            if more == 0 {
                r.outcome = Some(Outcome::Blackhole);
            }
            let m = format!("{more} bytes reached the app since the entry expired");
            self.log(r, t, m);
            return true;
        }
        let deadline = f64::from(self.timeout) + self.opts.fault_s + 3.0 + 8.0;
        if t > deadline {
            self.log(r, t, "deadline reached".into());
            return true;
        }
        false
    }

    /// Stop the flow and the capture, count the INVALID packets, describe the run.
    fn finish(self, r: &mut RunResult) {
        self.flow.stop();
        if let Some(c) = self.capture {
            c.finish();
        }
        let (_, invalid) = sample(&self.lab, self.flow.sport).unwrap_or((None, 0));
        r.invalid_packets = invalid.saturating_sub(self.invalid0.unwrap_or(0));
        r.detail = describe(r, self.timeout);
    }
}

fn describe(r: &RunResult, timeout: u32) -> String {
    let frozen = r
        .frozen_at_s
        .map_or("the timer was not flagged frozen".to_string(), |t| {
            format!("timer frozen (flagged at {t:.0} s)")
        });
    let end = match (r.resynchronised, r.expired_at_s) {
        (true, _) => "conntrack re-synchronised and refreshes the entry again".to_string(),
        (false, Some(t)) => format!("the entry (timeout {timeout} s) expired at {t:.0} s"),
        (false, None) => format!("the entry (timeout {timeout} s) had not expired by the end"),
    };
    let conn = r.outcome.map_or("unknown", Outcome::name);
    format!(
        "{frozen}; {end}; connection {conn}; {} INVALID packets",
        r.invalid_packets
    )
}

fn verdict(story: &RunResult, fix: &RunResult) -> FixVerdict {
    let later = match (story.expired_at_s, fix.expired_at_s) {
        (Some(a), Some(b)) => b > a * 1.5,
        _ => false,
    };
    let survived = fix.outcome == Some(Outcome::Survived);
    let outcome = if fix.error.is_some() || fix.outcome.is_none() {
        FixOutcome::Error
    } else if !survived && later {
        // The same end, later.
        FixOutcome::Postpones
    } else if !survived {
        FixOutcome::DoesNotHelp
    } else if fix.resynchronised || (fix.frozen_at_s.is_none() && fix.expired_at_s.is_none()) {
        FixOutcome::Helps
    } else if fix.expired_at_s.is_some() {
        // Connection alive, but the firewall no longer tracks it.
        FixOutcome::SurvivesUntracked
    } else {
        // Frozen, not expired within the run: the same end, later.
        FixOutcome::Postpones
    };
    FixVerdict {
        fix: fix.fix.clone(),
        outcome,
        detail: fix.error.clone().unwrap_or_else(|| fix.detail.clone()),
    }
}

/// The report's own fix, `loose=1`, is the story's setting: its verdict comes from the story.
fn loose_verdict(story: &RunResult) -> FixVerdict {
    let v = verdict(story, story);
    FixVerdict {
        fix: LOOSE_FIX.into(),
        detail: format!(
            "{}{}",
            v.detail,
            if story.resynchronised {
                ""
            } else {
                "; loose=1 does not re-synchronise window tracking, it only lets a mid-stream packet start a NEW entry after expiry"
            }
        ),
        ..v
    }
}

/// Run the story and every fix (concurrently, each in its own lab). A story run that fails
/// (a lab error, not the connection) is the error.
pub async fn run(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    if let Some(dir) = &opts.pcap_dir {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("create", dir, e))?;
    }
    let (story, strict, longer, pings, liberal) = tokio::join!(
        run_variant(BASE, opts, progress),
        run_variant(FIXES[0], opts, progress),
        run_variant(FIXES[1], opts, progress),
        run_variant(FIXES[2], opts, progress),
        run_variant(FIXES[3], opts, progress),
    );
    let outcome = match (story.outcome, &story.error) {
        (Some(o), None) => o,
        (_, e) => {
            return Err(LabError::Config(format!(
                "the {PRESET} story run failed: {}",
                e.as_deref().unwrap_or("no outcome")
            )));
        }
    };
    let runs = vec![strict, longer, pings, liberal];
    let mut fixes = vec![loose_verdict(&story)];
    fixes.extend(runs.iter().map(|f| verdict(&story, f)));
    Ok(Report {
        preset: Preset::Nat43200Invalid,
        outcome,
        idle_s: story.idle_s,
        error: story.app_error.clone(),
        options: opts.clone(),
        story,
        fixes,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_result(frozen: bool, expired: bool, resync: bool, outcome: &str) -> RunResult {
        RunResult {
            fix: "x".into(),
            outcome: match outcome {
                "reset" => Some(Outcome::Reset),
                "survived" => Some(Outcome::Survived),
                _ => None,
            },
            detail: "d".into(),
            frozen_at_s: frozen.then_some(8.0),
            expired_at_s: expired.then_some(20.0),
            resynchronised: resync,
            idle_s: None,
            invalid_packets: 0,
            timeline: vec![],
            error: None,
            app_error: None,
        }
    }

    #[test]
    fn verdicts_follow_what_the_run_saw() {
        let base = run_result(true, true, false, "reset");
        let v = |f: RunResult| verdict(&base, &f).outcome;
        use FixOutcome::*;
        assert_eq!(v(run_result(false, false, true, "survived")), Helps);
        assert_eq!(
            v(run_result(true, true, false, "survived")),
            SurvivesUntracked
        );
        assert_eq!(v(run_result(true, false, false, "survived")), Postpones);
        assert_eq!(v(run_result(false, false, false, "survived")), Helps);
        assert_eq!(v(run_result(true, true, false, "reset")), DoesNotHelp);
        let mut err = run_result(false, false, false, "error");
        err.error = Some("boom".into());
        assert_eq!(verdict(&base, &err).detail, "boom");
        assert_eq!(verdict(&base, &err).outcome, FixOutcome::Error);
        let mut later = run_result(true, true, false, "reset");
        later.expired_at_s = Some(60.0);
        assert_eq!(v(later), FixOutcome::Postpones);
        let story = loose_verdict(&run_result(true, true, false, "reset"));
        assert_eq!(story.outcome, FixOutcome::DoesNotHelp);
        assert!(story.detail.contains("does not re-synchronise"));
    }

    #[test]
    fn fix_outcome_names_are_the_json_names() {
        use FixOutcome::*;
        for o in [Helps, SurvivesUntracked, Postpones, DoesNotHelp, Error] {
            let json = serde_json::to_value(o).unwrap_or_default();
            assert_eq!(json.as_str(), Some(o.name()));
        }
    }

    #[test]
    fn description_names_the_expiry() {
        let d = describe(&run_result(true, true, false, "survived"), 15);
        assert!(d.contains("expired at 20 s") && d.contains("frozen"), "{d}");
        assert!(
            describe(&run_result(false, false, true, "survived"), 15).contains("re-synchronised")
        );
    }
}
