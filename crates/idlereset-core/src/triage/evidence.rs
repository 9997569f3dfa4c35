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
    /// The kebab-case name, as in JSON output.
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
    /// Reset-like lines that could not be timed (no timestamp with a date, no timestamped
    /// record above them): not in `events`.
    pub untimed_lines: usize,
    /// Incidents (events close together merged).
    pub incidents: usize,
    /// The pattern the incidents follow.
    pub pattern: LogPattern,
    /// Fitted period between incidents, seconds.
    pub period_s: Option<f64>,
    /// Drift of the period against a scheduler's, seconds per day.
    pub drift_s_per_day: Option<f64>,
    /// Longest idle a logged connection survived / shortest idle before a logged failure.
    pub idle_low_s: Option<f64>,
    /// Shortest idle before a logged failure, seconds.
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
    /// TCP flows seen.
    pub flows: u64,
    /// RSTs answering the first exchange after an idle gap.
    pub idle_resets: usize,
    /// Of those, RSTs whose TTL / origin says a middlebox sent them, not the peer.
    pub middlebox_resets: usize,
    /// Data after idle never acknowledged.
    pub blackholes: usize,
    /// FIN as the first packet after a long idle.
    pub idle_closes: usize,
    /// RSTs in flows that were never idle (state lost while active). `None`: the capture
    /// engine does not report them.
    pub active_resets: Option<usize>,
    /// Longest idle gap a flow survived, seconds.
    pub idle_low_s: Option<f64>,
    /// Shortest idle gap before a failure, seconds.
    pub idle_high_s: Option<f64>,
    /// False when a longer idle survived than one that failed.
    pub consistent: bool,
    /// Catalog entries whose timeout fits (ids).
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
    /// The remote probed (`addr:port`).
    pub remote: String,
    /// Longest idle that survived.
    pub low_s: Option<f64>,
    /// Shortest idle that failed.
    pub high_s: Option<f64>,
    /// How the shortest failure failed.
    pub failure: Failure,
    /// Longest idle tested (no failure up to it means no timeout below it).
    pub max_s: f64,
    /// Stopped early (Ctrl-C, time budget) before the bracket was as narrow as asked.
    pub stopped_early: bool,
    /// Catalog entries whose timeout fits (ids).
    pub catalog: Vec<String>,
}

/// Step 3: the local conntrack table (this host forwards or NATs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LocalConntrack {
    /// `nf_conntrack_tcp_timeout_established`, seconds.
    pub established_timeout_s: Option<u64>,
    /// Entries in the table now.
    pub entries: u64,
    /// Table size (`nf_conntrack_max`).
    pub max: Option<u64>,
    /// Packets counted INVALID since boot.
    pub invalid: u64,
}

/// Step 4: the OS keepalive defaults (only for sockets that set SO_KEEPALIVE).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct OsKeepalive {
    /// `net.ipv4.tcp_keepalive_time`, seconds.
    pub time_s: Option<u64>,
    /// `net.ipv4.tcp_keepalive_intvl`, seconds.
    pub intvl_s: Option<u64>,
    /// `net.ipv4.tcp_keepalive_probes`.
    pub probes: Option<u64>,
}

impl OsKeepalive {
    /// Linux's defaults: 7200 s, 75 s, 9.
    pub(crate) const LINUX_DEFAULT_TIME_S: u64 = 7200;

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
    /// Established connections of the process.
    pub connections: usize,
    /// Of those, sockets with SO_KEEPALIVE set.
    pub keepalive_on: usize,
    /// Of those, sockets without SO_KEEPALIVE.
    pub keepalive_off: usize,
    /// Remotes of these connections (ADDR:PORT), deduplicated.
    pub remotes: Vec<String>,
}

/// Step 5: the host's sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SocketEvidence {
    /// One entry per process.
    pub processes: Vec<ProcessSockets>,
    /// Remotes that audit judged at risk (no keepalive, keepalive later than the path).
    pub at_risk_remotes: Vec<String>,
    /// Kinds of audit findings, e.g. `no-keepalive`, `sysctl-only`.
    pub findings: Vec<String>,
}

impl SocketEvidence {
    /// Sockets with SO_KEEPALIVE over all processes.
    pub fn keepalive_on(&self) -> usize {
        self.processes.iter().map(|p| p.keepalive_on).sum()
    }
    /// Sockets without SO_KEEPALIVE over all processes.
    pub fn keepalive_off(&self) -> usize {
        self.processes.iter().map(|p| p.keepalive_off).sum()
    }
}

/// Everything gathered; `None` means the step did not run or could not see.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Evidence {
    /// Step 1, the application logs.
    pub logs: Option<LogEvidence>,
    /// Step 2, packet captures.
    pub packets: Option<PacketEvidence>,
    /// Step 3, probes of the path, one per remote.
    pub probes: Vec<ProbeEvidence>,
    /// Step 3, the local conntrack table.
    pub conntrack: Option<LocalConntrack>,
    /// Step 4, the OS keepalive defaults.
    pub os_keepalive: Option<OsKeepalive>,
    /// Step 5, the host's sockets.
    pub sockets: Option<SocketEvidence>,
}
