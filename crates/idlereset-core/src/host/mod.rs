//! What `audit`, `exporter`, `watch` (and `triage`) read from a host, behind one small trait, so
//! their analysis runs the same over the real kernel (`idlereset_linux::host::LinuxHost`:
//! sock_diag, `/proc`, sysctls, ctnetlink, tracefs) and over [`fake::FakeHost`] in tests that
//! need no root, the way trippy hides its platform behind a trait.
//!
//! Each method reads one source of the calling thread's network namespace; a failure is a
//! [`HostError`] saying which source and whether it was a permission problem, so callers can
//! report "could not see" per source instead of failing whole.

pub mod fake;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::netstat::Counters;
use crate::resets::Direction;
use crate::socket::SocketFacts;

/// Why a source could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct HostError {
    /// The source (`sock_diag`, `conntrack`, `sysctl net.ipv4.tcp_keepalive_time`, ...).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
    /// What kind of failure it was.
    pub kind: HostErrorKind,
}

/// The failures callers treat differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// Missing privilege (EPERM / EACCES).
    Permission,
    /// The source does not exist here (sysctl of a module not loaded).
    NotFound,
    /// Anything else.
    Other,
}

impl HostError {
    /// A failure of `source_name`.
    pub fn new(
        source_name: impl Into<String>,
        kind: HostErrorKind,
        message: impl Into<String>,
    ) -> Self {
        HostError {
            source_name: source_name.into(),
            message: message.into(),
            kind,
        }
    }

    /// True for missing privileges.
    pub fn is_permission_denied(&self) -> bool {
        self.kind == HostErrorKind::Permission
    }
}

/// One established socket as the host reports it, with its inode for the owner lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSocket {
    /// What the analysis judges.
    pub facts: SocketFacts,
    /// Socket inode (0 when unknown).
    pub inode: u64,
}

/// Processes owning socket inodes, from one `/proc` scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    /// Inode -> (pid, command name).
    pub by_inode: HashMap<u64, (u32, String)>,
    /// Processes whose file descriptors could not be read (permission).
    pub unreadable: usize,
}

impl Owners {
    /// The owner of a socket inode.
    pub fn process(&self, inode: u64) -> Option<(u32, &str)> {
        self.by_inode.get(&inode).map(|(p, c)| (*p, c.as_str()))
    }

    /// "could not see N processes: permission", when some were unreadable.
    pub fn visibility_note(&self) -> Option<String> {
        (self.unreadable > 0)
            .then(|| format!("could not see {} processes: permission", self.unreadable))
    }
}

/// A process's command line and loaded / open file paths, for naming its client library.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessLibs {
    /// Arguments joined by spaces.
    pub cmdline: String,
    /// Paths of mapped files (shared objects, jars) and open files, deduplicated.
    pub loaded: Vec<String>,
}

/// The file paths of a `/proc/PID/maps` text (the sixth column of lines that have one),
/// deduplicated in order of appearance. Malformed lines are skipped.
pub fn maps_paths(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        // address perms offset dev inode [path]: the path starts after the fifth field.
        let mut rest = line;
        let mut ok = true;
        for _ in 0..5 {
            rest = rest.trim_start();
            match rest.find(char::is_whitespace) {
                Some(i) => rest = &rest[i..],
                None => {
                    ok = false;
                    break;
                }
            }
        }
        let path = rest.trim();
        if ok && path.starts_with('/') && seen.insert(path.to_string()) {
            out.push(path.to_string());
        }
    }
    out
}

/// Conntrack table size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtSize {
    /// Entries in this namespace's table.
    pub entries: u64,
    /// `nf_conntrack_max`, when readable.
    pub max: Option<u64>,
}

/// Conntrack statistics summed over CPUs (the counters `audit` and the exporter use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtCounters {
    /// Packets conntrack could not track.
    pub invalid: u64,
    /// Packets dropped because conntrack failed.
    pub drop: u64,
    /// Entries dropped to make room.
    pub early_drop: u64,
    /// Entries that could not be inserted.
    pub insert_failed: u64,
    /// Lookups that found an entry.
    pub found: u64,
    /// Entries inserted.
    pub insert: u64,
    /// Packets with protocol errors seen by conntrack.
    pub error: u64,
    /// Table lookups restarted by a concurrent resize.
    pub search_restart: u64,
}

/// One conntrack table entry, as much of it as the frozen-timer check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtFlow {
    /// The kernel's entry id (tells a re-created flow from the old one).
    pub id: u32,
    /// IP protocol number.
    pub proto: u8,
    /// Original direction's source address.
    pub src: IpAddr,
    /// Original direction's destination address.
    pub dst: IpAddr,
    /// Original direction's source port (TCP/UDP/SCTP).
    pub sport: Option<u16>,
    /// Original direction's destination port.
    pub dport: Option<u16>,
    /// Remaining timeout in seconds.
    pub timeout_s: u32,
    /// Packets of both directions; `None` without accounting.
    pub packets: Option<u64>,
}

/// One TCP reset the host saw (tracepoint or destroyed socket), in monotonic seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetSeen {
    /// Monotonic seconds of the event.
    pub mono_s: f64,
    /// Which way the reset went.
    pub direction: Direction,
    /// This host's end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
}

/// The sources of one host (one network namespace: the calling thread's).
pub trait HostSource {
    /// Stream the established TCP sockets to `on`; `Ok(true)` when the dump was interrupted by
    /// table changes (counts may be inexact).
    fn sockets(&mut self, on: &mut dyn FnMut(HostSocket)) -> Result<bool, HostError>;
    /// Owners of the given socket inodes.
    fn owners(&mut self, inodes: &std::collections::HashSet<u64>) -> Result<Owners, HostError>;
    /// One sysctl's text (`net.ipv4.tcp_keepalive_time`).
    fn sysctl(&mut self, name: &str) -> Result<String, HostError>;
    /// Conntrack table size.
    fn conntrack_size(&mut self) -> Result<CtSize, HostError>;
    /// Conntrack counters.
    fn conntrack_counters(&mut self) -> Result<CtCounters, HostError>;
    /// Stream the conntrack table's entries to `on`.
    fn conntrack_flows(&mut self, on: &mut dyn FnMut(CtFlow)) -> Result<(), HostError>;
    /// `/proc/net/snmp` and `/proc/net/netstat`.
    fn netstat(&mut self) -> Result<Counters, HostError>;
    /// Read TCP resets until `stop` is set, handing each to `on` (tracepoints on a real host).
    fn reset_events(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        on: &mut dyn FnMut(ResetSeen),
    ) -> Result<(), HostError>;
    /// What shows which client libraries process `pid` uses: its command line and the paths
    /// it has loaded or open (`/proc/PID/maps`, `/proc/PID/fd`).
    fn process_libs(&mut self, pid: u32) -> Result<ProcessLibs, HostError>;
    /// Monotonic seconds (the clock of reset events).
    fn monotonic_s(&self) -> f64;
    /// Wait `d` (a fake host advances its clock instead).
    fn pause(&mut self, d: Duration);
}
