//! Per-socket keepalive checks: `no-keepalive`, `keepalive-too-late`, and the host-level
//! `sysctl-only` trap.
//!
//! How the pending timer reads as the next probe, and the one rule that judges it, live in
//! [`crate::socket`] (shared with the exporter and `watch`).
//!
//! Limit: before the first probe the interval is invisible. Such sockets are counted in a note,
//! with the namespace's `tcp_keepalive_intvl` as the value they get unless they set their own.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use super::model::{
    DEFAULT_KEEPALIVE_INTVL_S, Finding, KernelSettings, Report, Severity, round1, who,
};
use crate::path::{PathLookup, PathTimeout};
use crate::plan::keepalive::{keepalive as plan_keepalive, pool as plan_pool};
pub use crate::socket::{NextProbe, PROBE_EVIDENCE_MS, Phase, next_probe};
use crate::socket::{SocketFacts, Verdict, classify};

/// Connections from one process to one remote that make a pool.
pub(crate) const POOL_MIN: usize = 3;
/// Keepalive probes planned in fixes (the runbook's value).
const FIX_PROBES: u32 = 5;

fn fix_keepalive(path: &PathTimeout) -> String {
    let k = plan_keepalive(path.seconds, FIX_PROBES);
    format!(
        "set SO_KEEPALIVE with TCP_KEEPIDLE={} TCP_KEEPINTVL={} TCP_KEEPCNT={} on these sockets (in the client library's options, e.g. libpq keepalives_idle={} keepalives_interval={}); both must stay below the path's {} s",
        k.time_s, k.intvl_s, k.probes, k.time_s, k.intvl_s, path.seconds
    )
}

fn fix_no_keepalive(path: &PathTimeout) -> String {
    let p = plan_pool(path.seconds);
    format!(
        "{}; or retire idle pooled connections first (pool idle timeout {} s, max lifetime {} s)",
        fix_keepalive(path),
        p.idle_timeout_s,
        p.max_lifetime_s
    )
}

/// Every per-socket check plus `sysctl-only`, appended to `report`.
pub fn check(
    sockets: &[SocketFacts],
    kernel: &KernelSettings,
    path_timeout: &dyn Fn(SocketAddr) -> PathLookup,
    report: &mut Report,
) {
    let mut pools: HashMap<(u32, SocketAddr), usize> = HashMap::new();
    for s in sockets {
        if let (Some(pid), Some(r), Some(false)) = (s.pid, s.remote, s.keepalive) {
            *pools.entry((pid, r)).or_default() += 1;
        }
    }
    let intvl_default = kernel
        .keepalive_intvl_s
        .unwrap_or(DEFAULT_KEEPALIVE_INTVL_S);
    let (mut hidden, mut unverified, mut no_ka, mut off_path) = (0usize, 0usize, 0usize, 0usize);
    let mut unverified_min_path = f64::INFINITY;
    let mut no_ka_procs = BTreeSet::new();
    for s in sockets {
        let lookup = s.remote.map_or(PathLookup::OffPath, path_timeout);
        let path = match &lookup {
            PathLookup::Known(p) => p,
            // audit always resolves a timeout (the catalog default at worst).
            PathLookup::Unknown | PathLookup::OffPath => {
                off_path += 1;
                continue;
            }
        };
        match classify(s, &lookup) {
            Verdict::OffPath => off_path += 1,
            Verdict::Hidden | Verdict::KeepaliveOn { next: None } => hidden += 1,
            Verdict::NoKeepalive => {
                no_ka += 1;
                no_ka_procs.insert(who(s));
                let pool = match (s.pid, s.remote) {
                    (Some(pid), Some(r)) => pools.get(&(pid, r)).copied().unwrap_or(1),
                    _ => 1,
                };
                if let Some(f) = no_keepalive(s, path, pool) {
                    report.findings.push(f);
                }
            }
            Verdict::KeepaliveTooLate { next, path } => {
                report.findings.push(too_late(s, &path, next));
            }
            Verdict::KeepaliveOn { next: Some(np) } => {
                if np.phase == Phase::FirstProbe && intvl_default as f64 > path.seconds {
                    unverified += 1;
                    unverified_min_path = unverified_min_path.min(path.seconds);
                }
            }
        }
    }
    if kernel.keepalive_lowered() && no_ka > 0 {
        report
            .findings
            .push(sysctl_only(kernel, no_ka, &no_ka_procs));
    }
    if unverified > 0 {
        report.notes.push(format!(
            "{unverified} sockets with keepalive have not sent a probe since their last data, so their TCP_KEEPINTVL is not observable yet; unless they set their own, they re-probe every {intvl_default} s (net.ipv4.tcp_keepalive_intvl), more than the path's {unverified_min_path} s; audit again once they have been idle past their first probe"
        ));
    }
    if hidden > 0 {
        report.notes.push(format!(
            "{hidden} sockets have unacknowledged data or a zero-window probe pending, which hides whether keepalive is on; they are not idle now"
        ));
    }
    if off_path > 0 {
        report.notes.push(format!(
            "{off_path} sockets go to remotes no inventory hop matches; not judged"
        ));
    }
}

fn no_keepalive(s: &SocketFacts, path: &PathTimeout, pool: usize) -> Option<Finding> {
    let idle = s.idle_s()?;
    let t = path.seconds;
    let (severity, why) = if idle >= t {
        (
            Severity::High,
            format!(
                "idle {:.1} s, already longer than the path's {t} s: the middlebox has probably forgotten it and the next request gets a reset or vanishes",
                round1(idle)
            ),
        )
    } else if idle > t / 2.0 {
        (
            Severity::Medium,
            format!(
                "idle {:.1} s, more than half the path's {t} s",
                round1(idle)
            ),
        )
    } else if pool >= POOL_MIN {
        (
            Severity::Low,
            format!(
                "one of {pool} connections of this process to the same remote (a pool: some of them will sit idle), idle {:.1} s now",
                round1(idle)
            ),
        )
    } else {
        return None;
    };
    let detail = format!(
        "{why}; no keepalive timer is pending on this established socket, so SO_KEEPALIVE is off (observed); held by {}; path timeout from {}",
        who(s),
        path.source
    );
    Some(Finding::socket(
        "no-keepalive",
        severity,
        s,
        path,
        detail,
        fix_no_keepalive(path),
    ))
}

fn too_late(s: &SocketFacts, path: &PathTimeout, np: NextProbe) -> Finding {
    let t = path.seconds;
    let next = round1(np.after_last_packet_s);
    let timer = round1(np.timer_s);
    let observed = match np.phase {
        Phase::FirstProbe => format!(
            "observed: keepalive timer fires in {timer} s, the first probe ~{next} s after the last received packet, so TCP_KEEPIDLE ~{next} s"
        ),
        Phase::Reprobe => format!(
            "observed: a keepalive probe was already answered (ACK newer than the last data) and the timer fires in {timer} s, so the next probe comes ~{next} s after that ACK: the re-probe spacing of an idle connection, which is TCP_KEEPINTVL when it is longer than TCP_KEEPIDLE (Linux re-probes at the interval, not at the idle time)"
        ),
        Phase::Unanswered(n) => format!(
            "observed: {n} keepalive probe(s) unanswered, the next in {timer} s, so TCP_KEEPINTVL >= {timer} s; unanswered probes also mean the peer or the path may already be gone"
        ),
    };
    let detail = format!(
        "{observed}; that is later than the path's {t} s idle timeout ({}), so the middlebox forgets the flow between probes; held by {}",
        path.source,
        who(s)
    );
    Finding {
        keepalive_s: Some(next),
        ..Finding::socket(
            "keepalive-too-late",
            Severity::Medium,
            s,
            path,
            detail,
            fix_keepalive(path),
        )
    }
}

fn sysctl_only(kernel: &KernelSettings, n: usize, procs: &BTreeSet<String>) -> Finding {
    let show = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
    let mut list: Vec<&str> = procs.iter().map(String::as_str).take(5).collect();
    if procs.len() > 5 {
        list.push("...");
    }
    Finding::host(
        "sysctl-only",
        Severity::Medium,
        format!(
            "OS keepalive settings were lowered (tcp_keepalive_time={} intvl={} probes={}), but {n} established sockets do not enable SO_KEEPALIVE ({}); the sysctls are only defaults for sockets that opt in (the runbook's trap)",
            show(kernel.keepalive_time_s),
            show(kernel.keepalive_intvl_s),
            show(kernel.keepalive_probes),
            list.join(", ")
        ),
        "enable SO_KEEPALIVE in these applications (client library option: libpq keepalives=1, PgJDBC tcpKeepAlive=true, node-postgres keepAlive: true, Go net.Dialer KeepAlive); the lowered sysctls then apply to them".into(),
    )
}
