//! `audit` findings: which sockets, processes and settings of a host an idle timeout will cut.
//!
//! The runbook's triage steps 3-5 and its traps as pure functions. The binary gathers facts
//! (sock_diag, `/proc`, sysctls, conntrack statistics) and hands them here as plain data;
//! everything that decides, words a finding or proposes a fix lives in this module so it can be
//! tested on numbers. The checks:
//!
//! - [`keepalive`]: per socket, `no-keepalive` (idle long enough to be at risk, or part of a
//!   pool-like set) and `keepalive-too-late` (the next keepalive probe is due later than the
//!   path forgets the flow), plus the host-level `sysctl-only` trap (keepalive sysctls lowered,
//!   sockets not opting in).
//! - [`conntrack`]: the local conntrack table nearly full, its INVALID counter rising, its
//!   ESTABLISHED timeout shorter than the keepalive in use.
//!
//! What the kernel shows and what it hides decides how honest a finding can be: a keepalive's
//! interval is not reported by sock_diag, only the pending timer. Findings say in `detail`
//! what was observed and what was assumed; the limits go to [`Report::notes`].

pub mod conntrack;
pub mod gather;
pub mod keepalive;
pub mod libraries;
mod model;
#[cfg(test)]
mod tests;

pub use crate::path::PathPolicy;
pub use model::{
    ConntrackFacts, Finding, KernelSettings, PathTimeout, Report, Severity, SocketFacts,
    default_path_timeout,
};

/// Run every check over one namespace's facts. `paths` resolves a socket's remote to the idle
/// timeout of its path (`--path-timeout`, an inventory, or the assumed default); a remote off
/// the path, or with an unknown timeout, is not judged.
pub fn evaluate(
    sockets: &[SocketFacts],
    kernel: &KernelSettings,
    ct: Option<&ConntrackFacts>,
    paths: &PathPolicy,
) -> Report {
    let mut report = Report::default();
    keepalive::check(sockets, kernel, &|r| paths.resolve(r), &mut report);
    if let Some(ct) = ct {
        conntrack::check(ct, kernel, sockets, &mut report);
    }
    report
        .findings
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(b.kind)));
    report
}
