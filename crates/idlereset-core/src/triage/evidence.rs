//! The evidence `triage` reasons over, in its own small types.
//!
//! Each runbook step fills one part; a part that could not be gathered stays `None` (or empty),
//! which the verdict treats as "not seen", never as "nothing there". The types are deliberately
//! independent of the engines that gather them (logs, pcap, probe, audit), so those engines can
//! change without touching the verdict: one adapter in the binary converts their outputs.

use serde::Serialize;

/// How the path (or an endpoint) failed a connection that sat idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The next packet after the idle was answered with a RST.
    Reset,
    /// The next packet after the idle vanished (retransmitted until the sender gave up).
    Blackhole,
    /// The peer or a proxy closed the idle connection (FIN).
    Fin,
    /// Nothing failed (or nothing was seen failing).
    #[default]
    None,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Reset => "reset",
            Failure::Blackhole => "blackhole",
            Failure::Fin => "fin",
            Failure::None => "none",
        }
    }
}

/// The pattern the reset times in the logs follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogPattern {
    /// Resets follow the connections' idle time.
    IdleTimeout,
    /// Resets come a fixed time after each connection started, busy or not.
    ConnectionAgeTimer,
    /// Resets come at the same wall-clock time (a scheduled job, a failover).
    WallClockSchedule,
    /// No regularity found.
    Irregular,
}

/// Step 1: what the application logs showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEvidence {
    /// Reset-like log lines.
    pub events: usize,
    /// Incidents (events close together merged).
    pub incidents: usize,
    pub pattern: LogPattern,
    pub period_s: Option<f64>,
    pub drift_s_per_day: Option<f64>,
    /// Longest idle a logged connection survived / shortest idle before a logged failure.
    pub idle_low_s: Option<f64>,
    pub idle_high_s: Option<f64>,
    /// Signature name -> events.
    pub signatures: Vec<(String, usize)>,
    /// Catalog entries whose timeout fits (ids).
    pub catalog: Vec<String>,
    /// The failure the error texts name (`Connection reset` -> reset, `timed out` ->
    /// blackhole); `None` when they do not tell (EOF, broken pipe).
    pub failure: Failure,
}

/// Step 2: what packet captures showed.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PacketEvidence {
    pub flows: u64,
    /// RSTs answering the first exchange after an idle gap.
    pub idle_resets: usize,
    /// Of those, RSTs whose TTL / origin says a middlebox sent them, not the peer.
    pub middlebox_resets: usize,
    pub blackholes: usize,
    pub idle_closes: usize,
    /// RSTs in flows that were never idle (state lost while active). `None`: the capture
    /// engine does not report them.
    pub active_resets: Option<usize>,
    pub idle_low_s: Option<f64>,
    pub idle_high_s: Option<f64>,
    /// False when a longer idle survived than one that failed.
    pub consistent: bool,
    pub catalog: Vec<String>,
}

pub(crate) fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

pub(crate) fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl PacketEvidence {
    /// Two captures' evidence as one (a live capture and given files): counts add up, the
    /// bracket is the longest survived idle and the shortest failed one over both.
    pub fn merge(self, other: PacketEvidence) -> PacketEvidence {
        let low = max_opt(self.idle_low_s, other.idle_low_s);
        let high = min_opt(self.idle_high_s, other.idle_high_s);
        let mut catalog = self.catalog;
        for c in other.catalog {
            if !catalog.contains(&c) {
                catalog.push(c);
            }
        }
        PacketEvidence {
            flows: self.flows + other.flows,
            idle_resets: self.idle_resets + other.idle_resets,
            middlebox_resets: self.middlebox_resets + other.middlebox_resets,
            blackholes: self.blackholes + other.blackholes,
            idle_closes: self.idle_closes + other.idle_closes,
            active_resets: match (self.active_resets, other.active_resets) {
                (Some(x), Some(y)) => Some(x + y),
                (x, y) => x.or(y),
            },
            idle_low_s: low,
            idle_high_s: high,
            consistent: self.consistent
                && other.consistent
                && !matches!((low, high), (Some(l), Some(h)) if l >= h),
            catalog,
        }
    }
}

/// Step 3: one probe of the path to a remote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeEvidence {
    pub remote: String,
    /// Longest idle that survived.
    pub low_s: Option<f64>,
    /// Shortest idle that failed.
    pub high_s: Option<f64>,
    pub failure: Failure,
    /// Longest idle tested (no failure up to it means no timeout below it).
    pub max_s: f64,
    /// Stopped early (Ctrl-C, time budget) before the bracket was as narrow as asked.
    pub stopped_early: bool,
    pub catalog: Vec<String>,
}

/// Step 3: the local conntrack table (this host forwards or NATs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LocalConntrack {
    pub established_timeout_s: Option<u64>,
    pub entries: u64,
    pub max: Option<u64>,
    pub invalid: u64,
}

/// Step 4: the OS keepalive defaults (only for sockets that set SO_KEEPALIVE).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct OsKeepalive {
    pub time_s: Option<u64>,
    pub intvl_s: Option<u64>,
    pub probes: Option<u64>,
}

impl OsKeepalive {
    /// Linux's defaults: 7200 s, 75 s, 9.
    pub const LINUX_DEFAULT_TIME_S: u64 = 7200;

    /// Were the defaults lowered from Linux's?
    pub fn lowered(&self) -> bool {
        self.time_s.is_some_and(|t| t < Self::LINUX_DEFAULT_TIME_S)
    }
}

/// Step 5: one process's established connections and whether they opt in to SO_KEEPALIVE.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ProcessSockets {
    /// "name (pid N)" or "unknown".
    pub process: String,
    /// The client library, where it can be told from the process (else `None`).
    pub library: Option<String>,
    pub connections: usize,
    pub keepalive_on: usize,
    pub keepalive_off: usize,
    /// Remotes of these connections (ADDR:PORT), deduplicated.
    pub remotes: Vec<String>,
}

/// Step 5: the host's sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SocketEvidence {
    pub processes: Vec<ProcessSockets>,
    /// Remotes that audit judged at risk (no keepalive, keepalive later than the path).
    pub at_risk_remotes: Vec<String>,
    /// Kinds of audit findings, e.g. `no-keepalive`, `sysctl-only`.
    pub findings: Vec<String>,
}

impl SocketEvidence {
    pub fn keepalive_on(&self) -> usize {
        self.processes.iter().map(|p| p.keepalive_on).sum()
    }
    pub fn keepalive_off(&self) -> usize {
        self.processes.iter().map(|p| p.keepalive_off).sum()
    }
}

/// Everything gathered; `None` means the step did not run or could not see.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Evidence {
    pub logs: Option<LogEvidence>,
    pub packets: Option<PacketEvidence>,
    pub probes: Vec<ProbeEvidence>,
    pub conntrack: Option<LocalConntrack>,
    pub os_keepalive: Option<OsKeepalive>,
    pub sockets: Option<SocketEvidence>,
}
