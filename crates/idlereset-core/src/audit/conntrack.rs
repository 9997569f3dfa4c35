//! Checks of the host's own conntrack table (when this host is the firewall or NAT box, or
//! tracks its own flows): `conntrack-table-full`, `conntrack-invalid-rising`,
//! `conntrack-timeout-short`.
//!
//! A full table evicts entries early (`early_drop`) or refuses new flows (`drop`,
//! `insert_failed`). INVALID packets do not refresh an entry's timer (the field report: a flow
//! marked INVALID kept flowing until its entry expired under it). An ESTABLISHED timeout shorter
//! than the keepalive this host's sockets use means this host is itself the middlebox that cuts
//! them.

use super::keepalive::next_probe;
use super::model::{ConntrackFacts, Finding, KernelSettings, Report, Severity, SocketFacts};

/// Fill ratio from which the table is reported.
pub const NEARLY_FULL: f64 = 0.8;
/// Fill ratio from which that is high severity.
pub const FULL: f64 = 0.95;

/// Adds the conntrack findings to `report`: a table nearly full ([`NEARLY_FULL`], high severity
/// from [`FULL`]), INVALID packets rising between the two samples, and an established timeout
/// shorter than the keepalive of the given sockets (`kernel` gives the default keepalive).
pub fn check(
    ct: &ConntrackFacts,
    kernel: &KernelSettings,
    sockets: &[SocketFacts],
    report: &mut Report,
) {
    if let Some(max) = ct.max.filter(|m| *m > 0) {
        let ratio = ct.count as f64 / max as f64;
        if ratio >= NEARLY_FULL {
            let severity = if ratio >= FULL {
                Severity::High
            } else {
                Severity::Medium
            };
            report.findings.push(Finding::host(
                "conntrack-table-full",
                severity,
                format!(
                    "conntrack table {} of {max} entries ({:.0}%); counters: drop {}, early_drop {}, insert_failed {}. A full table evicts entries early or refuses new flows",
                    ct.count,
                    ratio * 100.0,
                    ct.drop,
                    ct.early_drop,
                    ct.insert_failed
                ),
                format!(
                    "raise net.netfilter.nf_conntrack_max (e.g. to {}) and the hash size, or shorten timeouts of states that pile up (TIME_WAIT, CLOSE_WAIT); do not lower the ESTABLISHED timeout below the clients' keepalive",
                    max.saturating_mul(2)
                ),
            ));
        }
    }
    if let Some(d) = ct.invalid_delta.filter(|d| *d > 0) {
        let over = ct
            .sample_s
            .map(|s| format!(" in {s:.1} s"))
            .unwrap_or_default();
        let loose = match kernel.ct_loose {
            Some(0) => "; nf_conntrack_tcp_loose=0, so flows whose entry expired stay INVALID",
            _ => "",
        };
        report.findings.push(Finding::host(
            "conntrack-invalid-rising",
            Severity::Medium,
            format!(
                "the INVALID counter rose by {d}{over} (total {}); packets conntrack marks INVALID do not refresh an entry's timer, so a flow can be forgotten while it still carries traffic{loose}",
                ct.invalid
            ),
            "find the flows (nft rule `ct state invalid counter log`, or `idlereset conntrack --json`); if window tracking rejects them (asymmetric routing, offload), set net.netfilter.nf_conntrack_tcp_be_liberal=1; retire long-lived connections before their entry can expire (pool max lifetime)".into(),
        ));
    }
    check_timeout(ct, kernel, sockets, report);
}

/// `conntrack-timeout-short`: the table's ESTABLISHED timeout against the longest keepalive
/// spacing this host's sockets use (observed, else the OS default when sockets have keepalive).
fn check_timeout(
    ct: &ConntrackFacts,
    kernel: &KernelSettings,
    sockets: &[SocketFacts],
    report: &mut Report,
) {
    let Some(est) = kernel.ct_established_s else {
        return;
    };
    let with_ka: Vec<&SocketFacts> = sockets
        .iter()
        .filter(|s| s.keepalive == Some(true))
        .collect();
    if with_ka.is_empty() || ct.count == 0 {
        return;
    }
    let observed = with_ka
        .iter()
        .filter_map(|s| next_probe(s))
        .map(|n| n.after_last_packet_s)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let (keepalive_s, what) = match (observed, kernel.keepalive_time_s) {
        (Some(v), _) => (
            v,
            "the longest keepalive spacing observed on this host's sockets",
        ),
        (None, Some(t)) => (
            t as f64,
            "net.ipv4.tcp_keepalive_time (assumed: no timer readable)",
        ),
        (None, None) => return,
    };
    if (est as f64) < keepalive_s {
        report.findings.push(Finding::host(
            "conntrack-timeout-short",
            Severity::Medium,
            format!(
                "nf_conntrack_tcp_timeout_established is {est} s, shorter than {keepalive_s:.0} s, {what}; this host's own conntrack forgets idle flows before their keepalive refreshes them"
            ),
            format!(
                "raise net.netfilter.nf_conntrack_tcp_timeout_established above {:.0} s (the Linux default is 432000), or lower the sockets' keepalive below {est} s",
                (keepalive_s * 1.25).ceil()
            ),
        ));
    }
}
