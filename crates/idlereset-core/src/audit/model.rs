//! The plain data the audit checks read (socket facts, kernel settings, conntrack counters) and
//! what they produce (findings, notes). Kept free of kernel types so the checks are testable.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::catalog::Catalog;

/// What was seen of one established TCP socket (times in milliseconds ago, as `tcp_info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocketFacts {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// `Some(true)`: keepalive timer pending; `Some(false)`: established with no timer, so no
    /// `SO_KEEPALIVE`; `None`: hidden by a retransmit / zero-window timer.
    pub keepalive: Option<bool>,
    /// Milliseconds until the keepalive timer fires (when it is the pending timer).
    pub keepalive_timer_ms: Option<u64>,
    /// Unanswered keepalive probes (`idiag_retrans` for the keepalive timer).
    pub probes_out: u8,
    pub last_data_sent_ms: Option<u64>,
    pub last_data_recv_ms: Option<u64>,
    pub last_ack_recv_ms: Option<u64>,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

impl SocketFacts {
    /// Seconds since data went either way (the idle a middlebox sees, keepalives aside).
    pub fn idle_s(&self) -> Option<f64> {
        let ms = self.last_data_sent_ms?.min(self.last_data_recv_ms?);
        Some(ms as f64 / 1000.0)
    }

    /// Milliseconds since anything was received (the keepalive clock).
    pub fn since_receive_ms(&self) -> Option<u64> {
        Some(self.last_data_recv_ms?.min(self.last_ack_recv_ms?))
    }
}

/// The idle timeout of the path a socket crosses and where that number came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTimeout {
    pub seconds: f64,
    /// "--path-timeout", "inventory hop dc-firewall", "assumed: ...".
    pub source: String,
}

/// The path timeout assumed when neither `--path-timeout` nor an inventory is given: the
/// shortest NAT idle timeout documented in the catalog (NAT gateways are the middlebox most
/// hosts cross without knowing). `None` only if the catalog has no NAT entry.
pub fn default_path_timeout(catalog: &Catalog) -> Option<PathTimeout> {
    let e = catalog
        .entries()
        .iter()
        .filter(|e| e.kind == "nat")
        .min_by(|a, b| a.idle_timeout_s.total_cmp(&b.idle_timeout_s))?;
    Some(PathTimeout {
        seconds: e.idle_timeout_s,
        source: format!(
            "assumed: {} {} s, the shortest NAT idle timeout in the catalog (pass --path-timeout or --inventory)",
            e.name, e.idle_timeout_s
        ),
    })
}

/// Kernel settings of one namespace, parsed from sysctl text. Unreadable ones are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KernelSettings {
    pub keepalive_time_s: Option<u64>,
    pub keepalive_intvl_s: Option<u64>,
    pub keepalive_probes: Option<u64>,
    pub retries2: Option<u64>,
    pub ct_established_s: Option<u64>,
    pub ct_loose: Option<u64>,
    pub ct_be_liberal: Option<u64>,
}

/// Linux defaults (`include/net/tcp.h`).
pub const DEFAULT_KEEPALIVE_TIME_S: u64 = 7200;
pub const DEFAULT_KEEPALIVE_INTVL_S: u64 = 75;
pub const DEFAULT_KEEPALIVE_PROBES: u64 = 9;

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
    pub fn from_sysctls(map: &BTreeMap<String, String>) -> KernelSettings {
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
    pub fn keepalive_lowered(&self) -> bool {
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
    pub count: u64,
    pub max: Option<u64>,
    pub invalid: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub insert_failed: u64,
    pub invalid_delta: Option<u64>,
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
    pub kind: &'static str,
    pub severity: Severity,
    pub local: Option<String>,
    pub remote: Option<String>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub idle_s: Option<f64>,
    /// The path timeout the socket was judged against, and where it came from.
    pub path_timeout_s: Option<f64>,
    pub path_source: Option<String>,
    /// Observed spacing of the next keepalive probe after the last received packet.
    pub keepalive_s: Option<f64>,
    /// What was observed, what was assumed.
    pub detail: String,
    /// The concrete change that removes the finding.
    pub fix: String,
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
