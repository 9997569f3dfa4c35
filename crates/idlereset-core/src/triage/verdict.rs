//! The verdict: which cause the evidence points to, how sure we are, the chain of evidence
//! behind it, and where the sources disagree.
//!
//! Sources are ranked by how directly they measure the path: a probe measures it (it opened
//! connections and waited), a capture shows what happened on the wire, logs show what the
//! application noticed. The path's idle-timeout bracket starts from the best source and is
//! narrowed by the others when they agree; when they do not, the disagreement is named as a
//! contradiction and lowers the confidence instead of being averaged away.

use serde::Serialize;

use super::evidence::{Evidence, Failure, LogPattern, OsKeepalive, max_opt, min_opt};

/// The root cause `triage` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A stateful middlebox forgot the idle flow (reset or blackhole).
    MiddleboxIdleTimeout,
    /// The server or a proxy closes idle connections (FIN).
    ServerIdleClose,
    /// Connections are cut a fixed time after they started, busy or idle.
    ConnectionAgeTimer,
    /// State was lost while the connection was active (frozen timer, failover).
    StateLostWhileActive,
    /// Keepalive is configured but does not protect the connections (sysctl-only trap, or
    /// keepalive fires later than the path forgets).
    KeepaliveIneffective,
    /// The path holds idle connections; the resets have another cause.
    NotIdleRelated,
    /// Not enough evidence: see `next`.
    Inconclusive,
}

impl Cause {
    /// The kebab-case name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::MiddleboxIdleTimeout => "middlebox-idle-timeout",
            Cause::ServerIdleClose => "server-idle-close",
            Cause::ConnectionAgeTimer => "connection-age-timer",
            Cause::StateLostWhileActive => "state-lost-while-active",
            Cause::KeepaliveIneffective => "keepalive-ineffective",
            Cause::NotIdleRelated => "not-idle-related",
            Cause::Inconclusive => "inconclusive",
        }
    }

    /// Is this a cause an idle-keeping fix (keepalive, pool limits, heartbeat) addresses?
    pub fn idle_related(self) -> bool {
        matches!(
            self,
            Cause::MiddleboxIdleTimeout | Cause::ServerIdleClose | Cause::KeepaliveIneffective
        )
    }
}

/// How strongly the evidence supports the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Indirect evidence from a single source (no probe measured it).
    Low,
    /// A probe measured it, or two sources agree.
    Medium,
    /// A probe measured it and other sources agree.
    High,
}

impl Confidence {
    fn lower(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }
}

/// Bounds on the path's idle timeout, in seconds: it survived `low`, failed by `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Bracket {
    /// Longest idle survived, seconds.
    pub low: Option<f64>,
    /// Shortest idle failed, seconds.
    pub high: Option<f64>,
}

impl Bracket {
    /// The value to plan against: the lower bound when known (the timeout may be just above
    /// it), else 90 % of the upper bound.
    pub(crate) fn plan_value(&self) -> Option<f64> {
        match (self.low, self.high) {
            (Some(l), _) if l >= 1.0 => Some(l),
            (_, Some(h)) => Some((h * 0.9).max(1.0)),
            _ => None,
        }
    }
}

/// What `triage` concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The most likely cause.
    pub cause: Cause,
    /// How strongly the evidence supports it.
    pub confidence: Confidence,
    /// What the endpoints see when it happens.
    pub failure: Failure,
    /// Bounds on the path's idle timeout.
    pub path_timeout_s: Bracket,
    /// Where the bracket came from (`probe 198.18.2.10:5432`, `capture`, `logs`).
    pub bracket_source: Option<String>,
    /// The chain of evidence, strongest first.
    pub evidence: Vec<String>,
    /// Where sources disagree.
    pub contradictions: Vec<String>,
    /// Catalog entries whose timeout fits (ids).
    pub catalog: Vec<String>,
    /// What to collect next (always set for `inconclusive`).
    pub next: Vec<String>,
}

/// One source's view of the path.
struct Source {
    name: String,
    low: Option<f64>,
    high: Option<f64>,
    failure: Failure,
    /// A probe that saw no failure: it bounds the path it probed from below.
    clean_probe: bool,
}

fn fmt_s(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} s")
    } else {
        format!("{v:.1} s")
    }
}

fn describe(b: &Bracket) -> String {
    match (b.low, b.high) {
        (Some(l), Some(h)) => format!("between {} and {}", fmt_s(l), fmt_s(h)),
        (None, Some(h)) => format!("at most {}", fmt_s(h)),
        (Some(l), None) => format!("above {}", fmt_s(l)),
        (None, None) => "unknown".into(),
    }
}

/// The sources that saw an idle failure, best first (probes, then captures, then logs). A probe
/// that held idle connections without a failure (and ran to its end) is a source too, ranked
/// after the probes that failed: it measured that its path keeps idle connections at least as
/// long as its longest survivor, so a log or capture bracket below that is a contradiction. It
/// is never weighed against another probe (each probed its own remote's path); with several,
/// the shortest survivor is the one logs and captures are weighed against.
fn sources(ev: &Evidence) -> Vec<Source> {
    let mut out = Vec::new();
    let mut probes: Vec<_> = ev.probes.iter().filter(|p| p.high_s.is_some()).collect();
    probes.sort_by(|a, b| {
        a.high_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.high_s.unwrap_or(f64::MAX))
    });
    for p in probes {
        out.push(Source {
            name: format!("probe {}", p.remote),
            low: p.low_s,
            high: p.high_s,
            failure: p.failure,
            clean_probe: false,
        });
    }
    let mut clean: Vec<_> = ev.probes.iter().filter(|p| is_clean(p)).collect();
    // The shortest survivor first: logs or a capture may speak of any probed path, so they
    // contradict the clean probes only below what every one of them held.
    clean.sort_by(|a, b| a.low_s.unwrap_or(0.0).total_cmp(&b.low_s.unwrap_or(0.0)));
    for p in clean {
        out.push(Source {
            name: format!("probe {}", p.remote),
            low: p.low_s,
            high: None,
            failure: Failure::None,
            clean_probe: true,
        });
    }
    if let Some(pk) = &ev.packets {
        let failure = packet_failure(pk);
        if failure != Failure::None && pk.consistent {
            out.push(Source {
                name: "capture".into(),
                low: pk.idle_low_s,
                high: pk.idle_high_s,
                failure,
                clean_probe: false,
            });
        }
    }
    if let Some(l) = &ev.logs {
        let bracket_ok = match (l.idle_low_s, l.idle_high_s) {
            (Some(lo), Some(hi)) => lo < hi,
            (None, Some(_)) => true,
            _ => false,
        };
        if l.events > 0 && bracket_ok && l.pattern != LogPattern::ConnectionAgeTimer {
            out.push(Source {
                name: "logs".into(),
                low: l.idle_low_s,
                high: l.idle_high_s,
                failure: l.failure,
                clean_probe: false,
            });
        }
    }
    out
}

/// A probe that failed nothing, ran to its end and held some idle connection.
fn is_clean(p: &super::evidence::ProbeEvidence) -> bool {
    p.high_s.is_none() && !p.stopped_early && p.low_s.is_some()
}

fn packet_failure(pk: &super::evidence::PacketEvidence) -> Failure {
    if pk.idle_resets > 0 {
        Failure::Reset
    } else if pk.blackholes > 0 {
        Failure::Blackhole
    } else if pk.idle_closes > 0 {
        Failure::Fin
    } else {
        Failure::None
    }
}

/// Combine the sources into one bracket; disagreements go to `contradictions`.
fn combine(
    srcs: &[Source],
    evidence: &mut Vec<String>,
    contradictions: &mut Vec<String>,
) -> (Bracket, Option<String>, Failure) {
    let Some(best) = srcs.first() else {
        return (Bracket::default(), None, Failure::None);
    };
    let mut b = Bracket {
        low: best.low,
        high: best.high,
    };
    let mut failure = best.failure;
    let mut source = best.name.clone();
    evidence.push(format!(
        "{}: idle timeout {}{}",
        best.name,
        describe(&b),
        if best.failure == Failure::None {
            String::new()
        } else {
            format!(", fails by {}", best.failure.as_str())
        }
    ));
    for s in &srcs[1..] {
        let other = Bracket {
            low: s.low,
            high: s.high,
        };
        if s.clean_probe {
            // Probes measure one remote's path each: one that held is no argument against
            // another probe, nor (when another probe is the best source) against logs or a
            // capture. Only the best clean probe, when it is the best source, bounds them.
            evidence.push(format!(
                "{} held idle connections {} (another path)",
                s.name,
                describe(&other)
            ));
            continue;
        }
        let below = matches!((s.high, b.low), (Some(h), Some(l)) if h <= l);
        let above = matches!((s.low, b.high), (Some(l), Some(h)) if l >= h);
        if below || above {
            contradictions.push(format!(
                "{} puts the idle timeout {} but {} measured {}: they cross different middleboxes, or the limit is not purely idle",
                s.name,
                describe(&other),
                best.name,
                describe(&b)
            ));
            continue;
        }
        // Error texts name the failure loosely (a blackhole can end in a reset after the
        // retransmissions): the logs fill a missing failure but do not contradict one.
        let loose = s.name == "logs";
        if !loose && s.failure != Failure::None && failure != Failure::None && s.failure != failure
        {
            contradictions.push(format!(
                "{} saw failures by {} but {} by {}",
                s.name,
                s.failure.as_str(),
                best.name,
                failure.as_str()
            ));
        }
        if failure == Failure::None {
            failure = s.failure;
        }
        evidence.push(format!(
            "{} agrees: idle timeout {}",
            s.name,
            describe(&other)
        ));
        // A best source that saw no failure (a clean probe) bounds the bracket from below
        // only; the first agreeing source that saw one names where the bracket came from.
        if b.high.is_none() && s.high.is_some() {
            source = s.name.clone();
        }
        b.low = max_opt(b.low, s.low);
        b.high = min_opt(b.high, s.high);
    }
    (b, Some(source), failure)
}

/// Why keepalive does not protect the connections, if it does not.
///
/// The sysctl-only trap is judged on what the kernel shows, not on who changed what: the OS
/// keepalive time is below the path's timeout (so it would keep the flows alive) while
/// connections do not set SO_KEEPALIVE, so it does not apply to them. An OS keepalive time above the
/// path would not have helped anyway: then the missing keepalive is plainly a middlebox idle
/// timeout story. Judging by the ratio to the path keeps scaled labs and real hosts alike.
fn keepalive_problem(ev: &Evidence, b: &Bracket) -> Option<String> {
    let os = ev.os_keepalive.unwrap_or_default();
    let socks = ev.sockets.as_ref()?;
    let (on, off) = (socks.keepalive_on(), socks.keepalive_off());
    let limit = b.low.or(b.high)?;
    if off > 0 && os.time_s.is_some_and(|t| (t as f64) < limit) {
        let which = if on == 0 {
            format!("none of the {off} connections set SO_KEEPALIVE, so it applies to none of them")
        } else {
            let (verb, them) = if off == 1 {
                ("does", "it")
            } else {
                ("do", "them")
            };
            format!(
                "{off} of the {} connections {verb} not set SO_KEEPALIVE, so it does not apply to {them}",
                on + off
            )
        };
        return Some(format!(
            "sysctl-only trap: the OS keepalive time ({} s) is below the path's timeout, but {which}",
            os.time_s.unwrap_or_default()
        ));
    }
    // Keepalive that fires too late is the story only when every connection sets it: where
    // some set none (another process's, or part of a pool), the middlebox's idle timeout cuts
    // those whatever the others do.
    if off == 0 {
        return keepalive_too_late(ev, b);
    }
    None
}

/// The connections that set SO_KEEPALIVE, when their first probe goes out later than the path
/// forgets (all of them, or `on` of `on + off` in a mixed set).
fn keepalive_too_late(ev: &Evidence, b: &Bracket) -> Option<String> {
    let os = ev.os_keepalive.unwrap_or_default();
    let socks = ev.sockets.as_ref()?;
    let (on, off) = (socks.keepalive_on(), socks.keepalive_off());
    let limit = b.low.or(b.high)?;
    let too_late = socks.findings.iter().any(|f| f == "keepalive-too-late");
    let t = os.time_s.unwrap_or(OsKeepalive::LINUX_DEFAULT_TIME_S) as f64;
    if on == 0 || !(too_late || t >= limit) {
        return None;
    }
    let who = if off == 0 {
        format!("{on} connection(s) set SO_KEEPALIVE")
    } else {
        format!("{on} of the {} connections set SO_KEEPALIVE", on + off)
    };
    Some(format!(
        "{who}, but the first probe goes out after {} idle (tcp_keepalive_time, unless the socket sets TCP_KEEPIDLE), later than the path forgets ({})",
        fmt_s(t),
        describe(b)
    ))
}

/// An idle failure was measured: a middlebox forgot the flow, or keepalive was there and did
/// not help. Confidence from how directly and by how many sources it was seen.
fn idle_cause(
    ev: &Evidence,
    bracket: &Bracket,
    failure: Failure,
    probe_measured: bool,
    agreeing: usize,
    evidence: &mut Vec<String>,
) -> (Cause, Confidence) {
    let mut c = match (probe_measured, agreeing) {
        (true, n) if n >= 2 => Confidence::High,
        (true, _) | (false, 2..) => Confidence::Medium,
        _ => Confidence::Low,
    };
    if failure == Failure::None && !probe_measured {
        c = c.min(Confidence::Medium);
    }
    if let Some(why) = keepalive_problem(ev, bracket) {
        evidence.push(why);
        return (Cause::KeepaliveIneffective, c);
    }
    if let Some(s) = ev.sockets.as_ref().filter(|s| s.keepalive_off() > 0) {
        evidence.push(format!(
            "{} connection(s) do not set SO_KEEPALIVE: nothing keeps them alive while idle",
            s.keepalive_off()
        ));
        if let Some(late) = keepalive_too_late(ev, bracket) {
            evidence.push(late);
        }
    }
    (Cause::MiddleboxIdleTimeout, c)
}

/// Decide. Pure: the same evidence always gives the same verdict.
pub fn decide(ev: &Evidence) -> Verdict {
    let mut evidence = Vec::new();
    let mut contradictions = Vec::new();
    let srcs = sources(ev);
    let (bracket, bracket_source, failure) = combine(&srcs, &mut evidence, &mut contradictions);
    let probe_measured = ev.probes.iter().any(|p| p.high_s.is_some());
    // What the longest-holding clean probe survived (not its `--probe-max`).
    let probe_clean = ev
        .probes
        .iter()
        .filter(|p| is_clean(p))
        .filter_map(|p| p.low_s)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    log_evidence(ev, &mut evidence);
    packet_evidence(ev, &mut evidence);
    local_ct_evidence(ev, &bracket, &mut evidence);

    let logs = ev.logs.as_ref();
    let pattern = logs.filter(|l| l.events > 0).map(|l| l.pattern);
    let active = ev
        .packets
        .as_ref()
        .and_then(|p| p.active_resets)
        .unwrap_or(0);
    let idle_failures = ev
        .packets
        .as_ref()
        .map_or(0, |p| p.idle_resets + p.blackholes + p.idle_closes);

    let (cause, mut confidence) = if failure == Failure::Fin {
        let c = if probe_measured {
            Confidence::High
        } else {
            Confidence::Medium
        };
        (Cause::ServerIdleClose, c)
    } else if pattern == Some(LogPattern::ConnectionAgeTimer) && !probe_measured {
        if let Some(max) = probe_clean {
            evidence.push(format!(
                "the probe held idle connections up to {}: not an idle timeout",
                fmt_s(max)
            ));
        }
        let c = if probe_clean.is_some() {
            Confidence::High
        } else {
            Confidence::Medium
        };
        (Cause::ConnectionAgeTimer, c)
    } else if active > 0 && idle_failures == 0 && !probe_measured {
        evidence.push(format!("{active} reset(s) in flows that were not idle: state was lost while the connections were active"));
        (Cause::StateLostWhileActive, Confidence::Medium)
    } else if pattern == Some(LogPattern::WallClockSchedule) && !probe_measured {
        evidence.push("resets come at the same time of day: a scheduled event (failover, restart) drops the state, not idleness".into());
        (Cause::StateLostWhileActive, Confidence::Low)
    } else if bracket.high.is_some() {
        // Only sources that saw a failure corroborate one; a clean probe does not.
        let failing = srcs.iter().filter(|s| s.high.is_some()).count();
        let agreeing = failing - contradictions.len().min(failing.saturating_sub(1));
        idle_cause(
            ev,
            &bracket,
            failure,
            probe_measured,
            agreeing,
            &mut evidence,
        )
    } else if let Some(max) = probe_clean {
        evidence.push(format!(
            "the probe held idle connections up to {}",
            fmt_s(max)
        ));
        let c = if pattern.is_some() {
            Confidence::Medium
        } else {
            Confidence::Low
        };
        (Cause::NotIdleRelated, c)
    } else {
        (Cause::Inconclusive, Confidence::Low)
    };
    if (cause == Cause::MiddleboxIdleTimeout || cause == Cause::KeepaliveIneffective)
        && let Some(pk) = &ev.packets
        && pk.idle_resets > 0
        && pk.middlebox_resets == 0
    {
        contradictions.push(format!(
                    "the capture's {} reset(s) after idle came from the peer itself (TTL), not a middlebox: a server that forgot the connection (restart, its own idle timeout) is possible",
                    pk.idle_resets
                ));
    }
    // Every contradiction, the one above included, lowers the confidence one level.
    for _ in &contradictions {
        confidence = confidence.lower();
    }
    let next = if cause == Cause::Inconclusive || confidence == Confidence::Low {
        next_steps(ev)
    } else {
        Vec::new()
    };
    Verdict {
        cause,
        confidence,
        failure,
        path_timeout_s: bracket,
        bracket_source,
        evidence,
        contradictions,
        catalog: catalog(ev),
        next,
    }
}

fn log_evidence(ev: &Evidence, out: &mut Vec<String>) {
    let Some(l) = &ev.logs else { return };
    if l.events == 0 {
        if l.untimed_lines > 0 {
            out.push(format!(
                "logs: {}",
                crate::logs::untimed_note(l.untimed_lines as u64)
            ));
        } else {
            out.push("logs: no reset-like lines".into());
        }
        return;
    }
    let period = l
        .period_s
        .map(|p| format!(", every {}", fmt_s(p)))
        .unwrap_or_default();
    out.push(format!(
        "logs: {} reset line(s) in {} incident(s), pattern {}{period}",
        l.events,
        l.incidents,
        pattern_name(l.pattern)
    ));
}

/// The name `logs` uses for a pattern.
pub fn pattern_name(p: LogPattern) -> &'static str {
    match p {
        LogPattern::IdleTimeout => "idle-timeout",
        LogPattern::ConnectionAgeTimer => "connection-age-timer",
        LogPattern::WallClockSchedule => "wall-clock-schedule",
        LogPattern::Irregular => "irregular",
    }
}

fn packet_evidence(ev: &Evidence, out: &mut Vec<String>) {
    let Some(p) = &ev.packets else { return };
    out.push(format!(
        "capture: {} flow(s); after idle {} reset(s) ({} from a middlebox), {} blackhole(s), {} idle close(s)",
        p.flows, p.idle_resets, p.middlebox_resets, p.blackholes, p.idle_closes
    ));
}

fn local_ct_evidence(ev: &Evidence, b: &Bracket, out: &mut Vec<String>) {
    let Some(ct) = &ev.conntrack else { return };
    let Some(t) = ct.established_timeout_s else {
        return;
    };
    let t = t as f64;
    let inside = b.low.is_none_or(|l| t > l - 1.0) && b.high.is_some_and(|h| t <= h + 1.0);
    if inside {
        out.push(format!(
            "this host's own conntrack ESTABLISHED timeout ({}) fits the bracket: this host may be the middlebox",
            fmt_s(t)
        ));
    }
}

fn catalog(ev: &Evidence) -> Vec<String> {
    let from_probe = ev
        .probes
        .iter()
        .find(|p| !p.catalog.is_empty())
        .map(|p| p.catalog.clone());
    from_probe
        .or_else(|| {
            ev.packets
                .as_ref()
                .filter(|p| !p.catalog.is_empty())
                .map(|p| p.catalog.clone())
        })
        .or_else(|| ev.logs.as_ref().map(|l| l.catalog.clone()))
        .unwrap_or_default()
}

fn next_steps(ev: &Evidence) -> Vec<String> {
    let mut n = Vec::new();
    if ev.logs.is_none() {
        n.push(
            "--log FILE: the application log with the reset errors (pattern, period, idle bracket)"
                .into(),
        );
    }
    if ev.probes.is_empty() {
        n.push("--remote HOST:PORT: the server the connections go to, to measure the path's idle timeout".into());
    } else if ev
        .probes
        .iter()
        .all(|p| p.stopped_early && p.high_s.is_none())
    {
        n.push(
            "let the probe run to its end (--probe-max longer than the suspected timeout)".into(),
        );
    }
    if ev.packets.is_none() {
        n.push("--pcap FILE or --capture DURATION: packets around a reset (who sent the RST, after how much idle)".into());
    }
    if ev.sockets.is_none() {
        n.push("steps 4-5 on the host with the connections, as root: which sockets set SO_KEEPALIVE and their processes".into());
    }
    if n.is_empty() {
        n.push("a capture on both sides of the suspected middlebox during a reset, and its session table's idle timeout".into());
    }
    n
}
