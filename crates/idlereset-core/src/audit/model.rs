//! The plain data the audit checks read (socket facts, kernel settings, conntrack counters) and
//! what they produce (findings, notes). Kept free of kernel types so the checks are testable.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::path::{PathTimeout, default_path_timeout};
pub use crate::socket::SocketFacts;

/// Kernel settings of one namespace, parsed from sysctl text. Unreadable ones are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KernelSettings {
    /// `net.ipv4.tcp_keepalive_time`, seconds.
    pub keepalive_time_s: Option<u64>,
    /// `net.ipv4.tcp_keepalive_intvl`, seconds.
    pub keepalive_intvl_s: Option<u64>,
    /// `net.ipv4.tcp_keepalive_probes`, a count.
    pub keepalive_probes: Option<u64>,
    /// `net.ipv4.tcp_retries2`, a count of retransmissions.
    pub retries2: Option<u64>,
    /// `net.netfilter.nf_conntrack_tcp_timeout_established`, seconds.
    pub ct_established_s: Option<u64>,
    /// `net.netfilter.nf_conntrack_tcp_loose` (0 or 1).
    pub ct_loose: Option<u64>,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` (0 or 1).
    pub ct_be_liberal: Option<u64>,
}

/// Linux defaults (`include/net/tcp.h`).
pub(crate) const DEFAULT_KEEPALIVE_TIME_S: u64 = 7200;
pub(crate) const DEFAULT_KEEPALIVE_INTVL_S: u64 = 75;
pub(crate) const DEFAULT_KEEPALIVE_PROBES: u64 = 9;

impl KernelSettings {
    /// The sysctls `audit` reads, in output order.
    pub const NAMES: [&'static str; 16] = [
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_retries2",
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged",
        "net.netfilter.nf_conntrack_tcp_timeout_max_retrans",
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
        "net.netfilter.nf_conntrack_tcp_loose",
        "net.netfilter.nf_conntrack_tcp_be_liberal",
        "net.netfilter.nf_conntrack_count",
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_acct",
    ];

    /// Parse the values that checks use from a `name -> text` map; text that is not a number
    /// leaves the setting unknown.
    pub(crate) fn from_sysctls(map: &BTreeMap<String, String>) -> KernelSettings {
        let num = |n: &str| map.get(n).and_then(|v| v.trim().parse::<u64>().ok());
        KernelSettings {
            keepalive_time_s: num("net.ipv4.tcp_keepalive_time"),
            keepalive_intvl_s: num("net.ipv4.tcp_keepalive_intvl"),
            keepalive_probes: num("net.ipv4.tcp_keepalive_probes"),
            retries2: num("net.ipv4.tcp_retries2"),
            ct_established_s: num("net.netfilter.nf_conntrack_tcp_timeout_established"),
            ct_loose: num("net.netfilter.nf_conntrack_tcp_loose"),
            ct_be_liberal: num("net.netfilter.nf_conntrack_tcp_be_liberal"),
        }
    }

    /// Were the OS keepalive defaults changed from Linux's (7200 / 75 / 9)?
    pub(crate) fn keepalive_lowered(&self) -> bool {
        self.keepalive_time_s
            .is_some_and(|t| t < DEFAULT_KEEPALIVE_TIME_S)
            || self
                .keepalive_intvl_s
                .is_some_and(|t| t < DEFAULT_KEEPALIVE_INTVL_S)
            || self
                .keepalive_probes
                .is_some_and(|t| t < DEFAULT_KEEPALIVE_PROBES)
    }
}

/// Conntrack table size and counters of one namespace. `invalid_delta` is the growth of the
/// INVALID counter between two samples `sample_s` apart (None with one sample).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ConntrackFacts {
    /// Entries in the table now.
    pub count: u64,
    /// Table size (`nf_conntrack_max`); `None` when unreadable.
    pub max: Option<u64>,
    /// Packets counted INVALID since boot (all CPUs).
    pub invalid: u64,
    /// Packets dropped because the table was full.
    pub drop: u64,
    /// Entries evicted early to make room.
    pub early_drop: u64,
    /// Entries that failed to be inserted.
    pub insert_failed: u64,
    /// Growth of `invalid` between the two samples; `None` with one sample.
    pub invalid_delta: Option<u64>,
    /// Seconds between the two samples; `None` with one sample.
    pub sample_s: Option<f64>,
}

/// How bad a finding is. Every finding makes `audit` exit 1; severity orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not at risk yet, but will be (a pool without keepalive that is busy right now).
    Low,
    /// At risk: idle for more than half the path timeout, or keepalive slower than the path.
    Medium,
    /// Idle longer than the path timeout already (probably cut), or the table is about full.
    High,
}

/// One finding, in the `audit --json` contract shape (`kind, local, remote, pid, process,
/// idle_s, detail` plus `severity`, `fix` and the numbers behind it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Kind of finding, a stable kebab-case name (`conntrack-table-full`, ...).
    pub kind: &'static str,
    /// How bad it is; findings sort by it.
    pub severity: Severity,
    /// Local address of the socket (`ip:port`); `None` for table-wide findings.
    pub local: Option<String>,
    /// Remote address of the socket (`ip:port`); `None` for table-wide findings.
    pub remote: Option<String>,
    /// Owning process id, when known.
    pub pid: Option<u32>,
    /// Owning process name, when known.
    pub process: Option<String>,
    /// Seconds since the socket last received data, when known.
    pub idle_s: Option<f64>,
    /// The path timeout the socket was judged against, and where it came from.
    pub path_timeout_s: Option<f64>,
    /// Where `path_timeout_s` came from (`--path-timeout`, the inventory, the catalog default).
    pub path_source: Option<String>,
    /// Observed spacing of the next keepalive probe after the last received packet.
    pub keepalive_s: Option<f64>,
    /// What was observed, what was assumed.
    pub detail: String,
    /// The concrete change that removes the finding.
    pub fix: String,
    /// The client library the owning process shows (an identity of the library data file),
    /// when it shows one; `fix` is then that library's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

impl Finding {
    pub(crate) fn host(
        kind: &'static str,
        severity: Severity,
        detail: String,
        fix: String,
    ) -> Self {
        Finding {
            kind,
            severity,
            local: None,
            remote: None,
            pid: None,
            process: None,
            idle_s: None,
            path_timeout_s: None,
            path_source: None,
            keepalive_s: None,
            detail,
            fix,
            library: None,
        }
    }

    pub(crate) fn socket(
        kind: &'static str,
        severity: Severity,
        s: &SocketFacts,
        path: &PathTimeout,
        detail: String,
        fix: String,
    ) -> Self {
        Finding {
            local: s.local.map(|a| a.to_string()),
            remote: s.remote.map(|a| a.to_string()),
            pid: s.pid,
            process: s.process.clone(),
            idle_s: s.idle_s().map(round1),
            path_timeout_s: Some(path.seconds),
            path_source: Some(path.source.clone()),
            ..Finding::host(kind, severity, detail, fix)
        }
    }
}

/// What `evaluate` concluded for one namespace.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Report {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Limits of what could be judged (aggregated, one line each).
    pub notes: Vec<String>,
}

pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// "pid 42 (java)" or "process unknown".
pub(crate) fn who(s: &SocketFacts) -> String {
    match (s.pid, s.process.as_deref()) {
        (Some(pid), Some(p)) => format!("{p} (pid {pid})"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "an unknown process".into(),
    }
}
