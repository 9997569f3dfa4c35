//! Collecting one network namespace's facts for `audit` from a [`HostSource`]: established TCP
//! sockets, the audit sysctls, conntrack size and counters (sampled before and after the socket
//! dump, so a rising INVALID counter shows), and what could not be read and why.
//!
//! Runs on the thread that is in the namespace; the process-owner scan is namespace-independent
//! and done once for all namespaces afterwards ([`attribute`]).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::model::{ConntrackFacts, KernelSettings};
use crate::host::{CtCounters, HostError, HostErrorKind, HostSource};
use crate::socket::SocketFacts;

/// What was read in one namespace.
#[derive(Debug, Default)]
pub struct NsFacts {
    /// `None`: the namespace `audit` runs in.
    pub netns: Option<String>,
    /// Established sockets (owners filled in by [`attribute`]).
    pub sockets: Vec<SocketFacts>,
    /// Socket inodes, parallel to `sockets` (0 when unknown).
    pub inodes: Vec<u64>,
    /// Sysctl name -> text, of those readable.
    pub sysctl: BTreeMap<String, String>,
    /// Conntrack size and counters, when readable.
    pub conntrack: Option<ConntrackFacts>,
    /// What could not be read, and why.
    pub could_not_see: Vec<String>,
    /// The socket table changed during the dump.
    pub dump_interrupted: bool,
    /// Client libraries the sockets' owning processes show, by pid (filled in by
    /// [`attribute`]).
    pub libraries: BTreeMap<u32, super::libraries::Detected>,
}

impl NsFacts {
    /// The kernel settings the checks use.
    pub fn kernel(&self) -> KernelSettings {
        KernelSettings::from_sysctls(&self.sysctl)
    }
}

fn why(e: &HostError) -> String {
    if e.is_permission_denied() {
        "permission (needs CAP_NET_ADMIN: run as root)".into()
    } else {
        e.message.clone()
    }
}

/// Gather one namespace through `host`. `sample` is the least time between the two conntrack
/// counter samples. Only a failed socket dump is an error.
pub fn gather(
    host: &mut dyn HostSource,
    netns: Option<String>,
    sample: Duration,
) -> Result<NsFacts, HostError> {
    let mut out = NsFacts {
        netns,
        ..NsFacts::default()
    };
    for name in KernelSettings::NAMES {
        match host.sysctl(name) {
            Ok(v) => {
                out.sysctl.insert(name.to_string(), v);
            }
            Err(e) if name.starts_with("net.netfilter.") && e.kind == HostErrorKind::NotFound => {}
            Err(e) => out
                .could_not_see
                .push(format!("sysctl {name}: {}", why(&e))),
        }
    }
    if !out.sysctl.contains_key("net.netfilter.nf_conntrack_count") {
        out.could_not_see.push(
            "conntrack: no net.netfilter sysctls in this namespace (nf_conntrack not loaded, or no rule uses it yet)".into(),
        );
    }
    let started = host.monotonic_s();
    let before = counters(host, &mut out.could_not_see);
    let (mut sockets, mut inodes) = (Vec::new(), Vec::new());
    out.dump_interrupted = host.sockets(&mut |s| {
        sockets.push(s.facts);
        inodes.push(s.inode);
    })?;
    out.sockets = sockets;
    out.inodes = inodes;
    if let Some(before) = before {
        let elapsed = Duration::from_secs_f64((host.monotonic_s() - started).max(0.0));
        let left = sample.saturating_sub(elapsed);
        if !left.is_zero() {
            host.pause(left);
        }
        let after = counters(host, &mut out.could_not_see);
        let size = match host.conntrack_size() {
            Ok(n) => Some(n),
            Err(e) => {
                out.could_not_see
                    .push(format!("conntrack count: {}", why(&e)));
                None
            }
        };
        let sysctl_num = |n: &str| out.sysctl.get(n).and_then(|v| v.parse::<u64>().ok());
        let last = after.as_ref().unwrap_or(&before);
        out.conntrack = Some(ConntrackFacts {
            count: size
                .map(|c| c.entries)
                .or_else(|| sysctl_num("net.netfilter.nf_conntrack_count"))
                .unwrap_or(0),
            max: size
                .and_then(|c| c.max)
                .or_else(|| sysctl_num("net.netfilter.nf_conntrack_max")),
            invalid: last.invalid,
            drop: last.drop,
            early_drop: last.early_drop,
            insert_failed: last.insert_failed,
            invalid_delta: after
                .as_ref()
                .map(|a| a.invalid.saturating_sub(before.invalid)),
            sample_s: after
                .as_ref()
                .map(|_| (host.monotonic_s() - started).max(0.0)),
        });
    }
    Ok(out)
}

fn counters(host: &mut dyn HostSource, could_not_see: &mut Vec<String>) -> Option<CtCounters> {
    match host.conntrack_counters() {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = format!("conntrack: {}", why(&e));
            if !could_not_see.contains(&msg) {
                could_not_see.push(msg);
            }
            None
        }
    }
}

/// Fill in the owning process of every socket of `namespaces` from one owner scan through
/// `host`; returns the "could not see" lines (hidden processes, sockets without an owner).
pub fn attribute(host: &mut dyn HostSource, namespaces: &mut [NsFacts]) -> Vec<String> {
    let wanted: HashSet<u64> = namespaces
        .iter()
        .flat_map(|f| f.inodes.iter().copied())
        .filter(|i| *i != 0)
        .collect();
    let mut notes = Vec::new();
    let owners = match host.owners(&wanted) {
        Ok(o) => o,
        Err(e) => {
            notes.push(format!("socket owners: {e}"));
            Default::default()
        }
    };
    if let Some(n) = owners.visibility_note() {
        notes.push(format!(
            "{n} (their sockets show without pid; run as root to see them)"
        ));
    }
    let mut unowned = 0usize;
    let mut seen: BTreeMap<u32, Option<super::libraries::Detected>> = BTreeMap::new();
    for f in namespaces.iter_mut() {
        for (s, inode) in f.sockets.iter_mut().zip(&f.inodes) {
            match owners.process(*inode) {
                Some((pid, comm)) => {
                    s.pid = Some(pid);
                    s.process = Some(comm.to_string());
                    let lib = seen.entry(pid).or_insert_with(|| {
                        host.process_libs(pid)
                            .ok()
                            .and_then(|p| super::libraries::identify(&p))
                    });
                    if let Some(d) = lib {
                        f.libraries.insert(pid, d.clone());
                    }
                }
                None => unowned += 1,
            }
        }
    }
    if unowned > 0 {
        notes.push(format!(
            "{unowned} sockets have no visible owner (other users' processes without root, another PID namespace, or closed during the scan)"
        ));
    }
    notes
}
