//! From a verdict to the fix: the path inventory the planner takes (built from what was
//! measured and found), the command that verifies the plan, the rollback notes, and the
//! Prometheus alerts that would have caught the incident.
//!
//! The inventory is produced as TOML text, the format `plan` and `verify` read, so the user can
//! save it and run exactly the commands shown.

use std::fmt::Write as _;

use super::evidence::{Evidence, Failure};
use super::verdict::{Cause, Verdict};

/// The client library a process name suggests, in `plan`'s names. Only names that identify
/// one runtime are mapped; the library inside it is not visible from outside the process. A
/// name the library data calls ambiguous (`redis`: redis-py, ioredis or go-redis?) is no
/// mapping: the inventory validator would refuse it, so the client stays `raw`.
pub fn library_for_process(comm: &str) -> Option<&'static str> {
    let c = comm.to_ascii_lowercase();
    let lib = if c == "psql" || c.starts_with("postgres") || c == "pgbouncer" {
        "libpq"
    } else if c == "java" {
        "java"
    } else if c.starts_with("python") || c == "gunicorn" || c == "uwsgi" || c == "celery" {
        "python"
    } else if c == "node" || c == "nodejs" {
        "node-pg"
    } else if c.starts_with("redis") {
        "redis"
    } else {
        return None;
    };
    let ambiguous = !crate::libraries::Libraries::builtin()
        .candidates(lib)
        .is_empty();
    (!ambiguous).then_some(lib)
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path inventory for the measured path and the processes found, or `None` when no idle
/// timeout was measured (nothing to plan for).
pub fn inventory_toml(verdict: &Verdict, ev: &Evidence) -> Option<String> {
    if !verdict.cause.idle_related() {
        return None;
    }
    let timeout = verdict.path_timeout_s.plan_value()?;
    let (kind, failure) = match verdict.failure {
        Failure::Fin => ("proxy", "fin"),
        Failure::Blackhole => ("firewall", "drop"),
        Failure::Reset => ("firewall", "reset"),
        Failure::None => ("firewall", "unknown"),
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Built by `idlereset triage` from the measured path ({}).",
        verdict.bracket_source.as_deref().unwrap_or("evidence")
    );
    let _ = writeln!(t, "name = \"measured path\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "[[hop]]");
    let _ = writeln!(t, "name = \"measured-hop\"");
    let _ = writeln!(t, "kind = \"{kind}\"");
    let _ = writeln!(t, "idle_timeout_s = {}", timeout.floor().max(1.0));
    let _ = writeln!(t, "failure = \"{failure}\"");
    let procs = ev
        .sockets
        .as_ref()
        .map(|s| s.processes.as_slice())
        .unwrap_or_default();
    let mut any = false;
    for p in procs.iter().filter(|p| p.connections > 0) {
        any = true;
        let _ = writeln!(t);
        let _ = writeln!(t, "[[client]]");
        let _ = writeln!(t, "name = {}", toml_str(&p.process));
        let _ = writeln!(t, "library = \"{}\"", p.library.as_deref().unwrap_or("raw"));
        let _ = writeln!(t, "connections = {}", p.connections);
        let _ = writeln!(
            t,
            "current = {{ keepalive = {} }}",
            p.keepalive_on > 0 && p.keepalive_off == 0
        );
    }
    if !any {
        let _ = writeln!(t);
        let _ = writeln!(t, "[[client]]");
        let _ = writeln!(t, "name = \"app\"");
        let _ = writeln!(t, "library = \"raw\"");
        let _ = writeln!(t, "connections = 1");
    }
    Some(t)
}

/// The command that proves the plan in the lab.
pub fn verify_command(inventory_file: &str) -> String {
    format!("sudo idlereset verify {inventory_file}")
}

/// The runbook's rollback and safety notes for this cause.
pub fn rollback(cause: Cause) -> Vec<String> {
    let mut v = vec![
        "Roll out to one server first, then the fleet; keep the previous /etc/sysctl.d/ file to restore it (sysctl --system re-reads it).".to_string(),
        "Persist sysctl changes in /etc/sysctl.d/, or they are lost at the next reboot.".to_string(),
    ];
    match cause {
        Cause::MiddleboxIdleTimeout | Cause::KeepaliveIneffective => {
            v.push("A lower tcp_keepalive_time sends more keepalive traffic: check the cost on servers with many connections (the plan shows it).".into());
            v.push("Raising the firewall's conntrack timeout instead keeps more entries: watch the table (idlereset conntrack, IdleresetConntrackTableNearFull) before and after.".into());
            v.push("Fix both sides when both cross the firewall: keepalive on the client and the server.".into());
        }
        Cause::ServerIdleClose => {
            v.push("TCP keepalives do not reset an endpoint's idle timer: the pool's idle limit or an application heartbeat below the server's close does; revert it by restoring the pool settings.".into());
        }
        Cause::StateLostWhileActive => {
            v.push(format!(
                "When a conntrack box sees only part of the flow (asymmetric route, failover): {} = 1 on that box stops its timer freezing on INVALID packets (plan's multipath advice; keepalives and pings do not help, they are INVALID too). Persist it in {}; revert by setting 0. It costs: {}.",
                crate::plan::multipath::BE_LIBERAL_SYSCTL,
                crate::plan::multipath::BE_LIBERAL_FILE,
                crate::plan::multipath::TRADE_OFF
            ));
        }
        _ => {}
    }
    v
}

/// Alerts in deploy/prometheus/alerts.yml that would have caught this cause, by name.
pub fn alerts(cause: Cause) -> &'static [&'static str] {
    match cause {
        Cause::MiddleboxIdleTimeout | Cause::KeepaliveIneffective => &[
            "IdleresetSocketsAtRisk",
            "IdleresetResetsAfterIdle",
            "IdleresetConntrackInvalidRising",
        ],
        Cause::ServerIdleClose => &["IdleresetSocketsAtRisk"],
        Cause::StateLostWhileActive => &[
            "IdleresetConntrackFrozenTimers",
            "IdleresetConntrackEarlyDrops",
            "IdleresetConntrackTableNearFull",
            "IdleresetResetBurst",
        ],
        Cause::ConnectionAgeTimer | Cause::NotIdleRelated => &["IdleresetResetBurst"],
        Cause::Inconclusive => &["IdleresetResetsAfterIdle", "IdleresetResetBurst"],
    }
}

/// Every alert name any cause refers to (for checking them against the deploy files).
pub fn all_alerts() -> Vec<&'static str> {
    let causes = [
        Cause::MiddleboxIdleTimeout,
        Cause::ServerIdleClose,
        Cause::ConnectionAgeTimer,
        Cause::StateLostWhileActive,
        Cause::KeepaliveIneffective,
        Cause::NotIdleRelated,
        Cause::Inconclusive,
    ];
    let mut v: Vec<_> = causes
        .iter()
        .flat_map(|c| alerts(*c).iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
