//! Per-socket keepalive checks: `no-keepalive`, `keepalive-too-late`, and the host-level
//! `sysctl-only` trap.
//!
//! # What the keepalive timer shows
//!
//! sock_diag reports the pending keepalive timer (ms until it fires) and the unanswered probe
//! count, not the socket's TCP_KEEPIDLE / TCP_KEEPINTVL. `tcp_keepalive_timer()`
//! (net/ipv4/tcp_timer.c) re-arms the timer in three ways:
//! - nothing received for `keepalive_time` yet: for the rest of it, so the timer fires
//!   `TCP_KEEPIDLE` after the last received packet;
//! - it just sent a probe: in `TCP_KEEPINTVL`. When the probe is answered, the ACK resets the
//!   probe count and the receive clock, and at the next expiry the kernel probes again at once if
//!   `TCP_KEEPINTVL >= TCP_KEEPIDLE`, or waits out the rest of `TCP_KEEPIDLE` otherwise.
//!
//! So in every phase `timer + time since the last received packet` is when the next probe (or
//! re-check) is due, counted from the last packet the middlebox saw. That is the number to
//! compare with the path timeout: the first probe at KEEPIDLE in the first phase, the re-probe
//! spacing (KEEPINTVL when it is the longer one) once probes were answered. An ACK newer than the
//! last data in both directions means a probe was answered (a window update can look the same);
//! the finding says which phase it saw.
//!
//! Limit: before the first probe the interval is invisible. Such sockets are counted in a note,
//! with the namespace's `tcp_keepalive_intvl` as the value they get unless they set their own.
//! Unanswered probes (`probes_out > 0`) only bound the interval from below (`>= timer`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use super::model::{
    DEFAULT_KEEPALIVE_INTVL_S, Finding, KernelSettings, PathTimeout, Report, Severity, SocketFacts,
    round1, who,
};
use crate::plan::keepalive::{keepalive as plan_keepalive, pool as plan_pool};

/// Connections from one process to one remote that make a pool.
pub const POOL_MIN: usize = 3;
/// An ACK this much newer than the last data in both directions is an answered probe.
pub const PROBE_EVIDENCE_MS: u64 = 1000;
/// Keepalive probes planned in fixes (the runbook's value).
const FIX_PROBES: u32 = 5;

/// Which stage of keepalive a socket was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No probe answered since the last data: the timer counts towards TCP_KEEPIDLE.
    FirstProbe,
    /// An ACK arrived after the last data (a probe was answered): re-probe spacing.
    Reprobe,
    /// Probes sent and not answered yet: the timer runs at TCP_KEEPINTVL.
    Unanswered(u8),
}

/// The next keepalive probe as read from the timer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NextProbe {
    pub phase: Phase,
    /// Seconds until the timer fires.
    pub timer_s: f64,
    /// Seconds from the last received packet to the next probe (a lower bound of the interval
    /// when probes are unanswered).
    pub after_last_packet_s: f64,
}

/// Read the next probe from a socket with its keepalive timer pending.
pub fn next_probe(s: &SocketFacts) -> Option<NextProbe> {
    let timer_ms = s.keepalive_timer_ms?;
    let timer_s = timer_ms as f64 / 1000.0;
    if s.probes_out > 0 {
        return Some(NextProbe {
            phase: Phase::Unanswered(s.probes_out),
            timer_s,
            after_last_packet_s: timer_s,
        });
    }
    let since = s.since_receive_ms()?;
    let last_data = s.last_data_sent_ms?.min(s.last_data_recv_ms?);
    let ack = s.last_ack_recv_ms?;
    let phase = if ack.saturating_add(PROBE_EVIDENCE_MS) < last_data {
        Phase::Reprobe
    } else {
        Phase::FirstProbe
    };
    Some(NextProbe {
        phase,
        timer_s,
        after_last_packet_s: (timer_ms + since) as f64 / 1000.0,
    })
}

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
    path_timeout: &dyn Fn(SocketAddr) -> Option<PathTimeout>,
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
        let Some(path) = s.remote.and_then(path_timeout) else {
            off_path += 1;
            continue;
        };
        match s.keepalive {
            None => hidden += 1,
            Some(false) => {
                no_ka += 1;
                no_ka_procs.insert(who(s));
                let pool = match (s.pid, s.remote) {
                    (Some(pid), Some(r)) => pools.get(&(pid, r)).copied().unwrap_or(1),
                    _ => 1,
                };
                if let Some(f) = no_keepalive(s, &path, pool) {
                    report.findings.push(f);
                }
            }
            Some(true) => match next_probe(s) {
                Some(np) if np.after_last_packet_s > path.seconds => {
                    report.findings.push(too_late(s, &path, np));
                }
                Some(np)
                    if np.phase == Phase::FirstProbe && intvl_default as f64 > path.seconds =>
                {
                    unverified += 1;
                    unverified_min_path = unverified_min_path.min(path.seconds);
                }
                Some(_) => {}
                None => hidden += 1,
            },
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
