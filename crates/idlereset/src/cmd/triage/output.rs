//! What `triage` prints, as serde types (the `triage --json` contract in docs/json.md), and
//! the one-line summaries of each step, shared by the text, JSON and Markdown renderings.

use idlereset_core::plan::Plan;
use idlereset_core::triage::verdict::pattern_name;
use idlereset_core::triage::{
    Bracket, Evidence, LocalConntrack, LogEvidence, OsKeepalive, PacketEvidence, ProbeEvidence,
    SocketEvidence, Verdict, fix,
};
use serde::Serialize;

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Done,
    NotPossible,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::NotPossible => "not possible",
            Status::Skipped => "skipped",
        }
    }
}

/// One runbook step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `logs`, `packets`, `path`, `keepalive`, `sockets`.
    pub step: &'static str,
    /// 1 to 5, the runbook's order.
    pub number: u8,
    pub status: Status,
    pub summary: String,
    pub details: Vec<String>,
}

impl Step {
    pub fn new(number: u8, step: &'static str, status: Status, summary: String) -> Step {
        Step {
            step,
            number,
            status,
            summary,
            details: Vec::new(),
        }
    }
}

/// How to verify and undo the fix, and what would have caught the incident.
#[derive(Debug, Clone, Serialize)]
pub struct FixOut {
    /// The inventory the plan was made from (save it to run `plan` / `verify` yourself).
    pub inventory: Option<String>,
    pub verify: Option<String>,
    pub rollback: Vec<String>,
    /// Alerts in deploy/prometheus/alerts.yml that would have caught it.
    pub alerts: Vec<&'static str>,
}

/// The `triage --json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub steps: Vec<Step>,
    pub verdict: Verdict,
    pub path_timeout_s: Bracket,
    /// reset | blackhole | fin | none
    pub failure: &'static str,
    /// The plan's JSON object (same as `plan --json`), or null.
    pub fix: Option<Plan>,
    /// Inventory, verify command, rollback notes, alerts.
    pub remedy: FixOut,
    /// What could not be seen and why (privileges, missing modules, errors).
    pub could_not_see: Vec<String>,
    /// Ctrl-C stopped the probes; the result is what was found until then.
    pub interrupted: bool,
    pub elapsed_s: f64,
    /// The typed evidence the verdict was made from.
    pub evidence: Evidence,
}

impl Output {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        steps: Vec<Step>,
        verdict: Verdict,
        plan: Option<Plan>,
        inventory: Option<String>,
        evidence: Evidence,
        could_not_see: Vec<String>,
        interrupted: bool,
        elapsed_s: f64,
    ) -> Output {
        let verify = inventory
            .as_ref()
            .map(|_| fix::verify_command("triage-inventory.toml"));
        Output {
            steps,
            path_timeout_s: verdict.path_timeout_s,
            failure: verdict.failure.as_str(),
            fix: plan,
            remedy: FixOut {
                inventory,
                verify,
                rollback: fix::rollback(verdict.cause),
                alerts: fix::alerts(verdict.cause).to_vec(),
            },
            verdict,
            could_not_see,
            interrupted,
            elapsed_s: (elapsed_s * 10.0).round() / 10.0,
            evidence,
        }
    }
}

fn s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} s"))
}

pub fn log_step(l: &LogEvidence) -> Step {
    if l.events == 0 {
        let summary = if l.untimed_lines > 0 {
            idlereset_core::logs::untimed_note(l.untimed_lines as u64)
        } else {
            "no reset-like lines in the logs".into()
        };
        return Step::new(1, "logs", Status::Done, summary);
    }
    let mut st = Step::new(
        1,
        "logs",
        Status::Done,
        format!(
            "{} reset line(s), {} incident(s), pattern {}",
            l.events,
            l.incidents,
            pattern_name(l.pattern)
        ),
    );
    let sigs: Vec<String> = l
        .signatures
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    st.details.push(format!("signatures: {}", sigs.join(", ")));
    if let Some(p) = l.period_s {
        st.details.push(format!(
            "period {p:.1} s, drift {}",
            l.drift_s_per_day
                .map_or("-".into(), |d| format!("{d:+.2} s/day"))
        ));
    }
    if l.idle_low_s.is_some() || l.idle_high_s.is_some() {
        st.details.push(format!(
            "idle bracket: survived up to {}, failed after {}",
            s(l.idle_low_s),
            s(l.idle_high_s)
        ));
    }
    if !l.catalog.is_empty() {
        st.details
            .push(format!("catalog: {}", l.catalog.join(", ")));
    }
    st
}

pub fn packet_step(p: &PacketEvidence, notes: Vec<String>) -> Step {
    let mut st = Step::new(
        2,
        "packets",
        Status::Done,
        format!(
            "{} flow(s): {} reset(s) after idle ({} from a middlebox), {} blackhole(s), {} idle close(s)",
            p.flows, p.idle_resets, p.middlebox_resets, p.blackholes, p.idle_closes
        ),
    );
    if p.idle_low_s.is_some() || p.idle_high_s.is_some() {
        st.details.push(format!(
            "idle before: longest survived {}, shortest failed {}{}",
            s(p.idle_low_s),
            s(p.idle_high_s),
            if p.consistent { "" } else { " (inconsistent)" }
        ));
    }
    st.details.push(match p.active_resets {
        Some(n) => format!("resets in active flows: {n}"),
        None => "resets in active flows: not reported by this capture engine".into(),
    });
    st.details.extend(notes);
    st
}

pub fn probe_step(probes: &[ProbeEvidence]) -> Step {
    let measured = probes.iter().filter(|p| p.high_s.is_some()).count();
    let mut st = Step::new(
        3,
        "path",
        Status::Done,
        format!(
            "probed {} remote(s), {measured} with an idle timeout",
            probes.len()
        ),
    );
    for p in probes {
        let line = match (p.low_s, p.high_s) {
            (l, Some(h)) => format!(
                "{}: idle timeout between {} (survived) and {h:.1} s (failed: {}){}",
                p.remote,
                s(l),
                p.failure.as_str(),
                if p.stopped_early {
                    ", stopped refining"
                } else {
                    ""
                }
            ),
            (l, None) if p.stopped_early => format!(
                "{}: stopped before any failure (survived up to {})",
                p.remote,
                s(l)
            ),
            _ => format!("{}: no idle timeout up to {:.0} s", p.remote, p.max_s),
        };
        st.details.push(line);
        if !p.catalog.is_empty() {
            st.details
                .push(format!("  matches catalog: {}", p.catalog.join(", ")));
        }
    }
    st
}

pub fn conntrack_details(st: &mut Step, ct: Option<&LocalConntrack>, forwarding: Option<bool>) {
    match (ct, forwarding) {
        (Some(ct), fw) => st.details.push(format!(
            "local conntrack: {} entries{}, ESTABLISHED timeout {}{}",
            ct.entries,
            ct.max.map_or(String::new(), |m| format!(" of {m}")),
            ct.established_timeout_s
                .map_or("-".into(), |t| format!("{t} s")),
            if fw == Some(true) {
                " (this host forwards)"
            } else {
                ""
            }
        )),
        (None, Some(true)) => st
            .details
            .push("this host forwards but its conntrack table could not be read".into()),
        (None, _) => st
            .details
            .push("local conntrack: not loaded here (this host does not track flows)".into()),
    }
}

pub fn keepalive_step(k: Option<&OsKeepalive>) -> Step {
    match k {
        Some(k) => Step::new(
            4,
            "keepalive",
            Status::Done,
            format!(
                "tcp_keepalive_time {} s, intvl {} s, probes {}{}",
                k.time_s.map_or("?".into(), |v| v.to_string()),
                k.intvl_s.map_or("?".into(), |v| v.to_string()),
                k.probes.map_or("?".into(), |v| v.to_string()),
                if k.lowered() {
                    " (lowered from Linux's 7200 s; applies only to sockets that set SO_KEEPALIVE)"
                } else {
                    " (Linux defaults)"
                }
            ),
        ),
        None => Step::new(
            4,
            "keepalive",
            Status::NotPossible,
            "the keepalive sysctls could not be read".into(),
        ),
    }
}

pub fn socket_step(sk: &SocketEvidence) -> Step {
    let total: usize = sk.processes.iter().map(|p| p.connections).sum();
    let mut st = Step::new(
        5,
        "sockets",
        Status::Done,
        format!(
            "{total} connection(s): {} with SO_KEEPALIVE, {} without",
            sk.keepalive_on(),
            sk.keepalive_off()
        ),
    );
    for p in sk.processes.iter().take(10) {
        st.details.push(format!(
            "{}: {} connection(s), keepalive on {} / off {}, library {}, to {}",
            p.process,
            p.connections,
            p.keepalive_on,
            p.keepalive_off,
            p.library.as_deref().unwrap_or("not visible"),
            p.remotes.join(" ")
        ));
    }
    if sk.processes.len() > 10 {
        st.details.push(format!(
            "... and {} more process(es)",
            sk.processes.len() - 10
        ));
    }
    if !sk.findings.is_empty() {
        st.details
            .push(format!("audit findings: {}", sk.findings.join(", ")));
    }
    st
}
