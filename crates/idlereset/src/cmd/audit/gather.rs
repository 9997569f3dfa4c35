//! Collecting one network namespace's facts for `audit`: established TCP sockets over
//! sock_diag, the audit sysctls, conntrack size and counters (sampled before and after the
//! socket dump, so a rising INVALID counter shows), and what could not be read and why.
//!
//! Everything here runs on the thread that is in the namespace (`NetNs::run`); the process scan
//! over `/proc` is namespace-independent and runs once for all namespaces afterwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use idlereset_core::audit::{ConntrackFacts, KernelSettings, SocketFacts};
use idlereset_linux::conntrack::{CtStats, Ctnetlink};
use idlereset_linux::sockdiag::{TcpFilter, dump_tcp};
use idlereset_linux::{LinuxError, sysctl};

/// What was read in one namespace.
#[derive(Debug, Default)]
pub struct NsFacts {
    /// `None`: the namespace `audit` runs in.
    pub netns: Option<String>,
    pub sockets: Vec<SocketFacts>,
    /// Socket inodes, parallel to `sockets` (0 when unknown).
    pub inodes: Vec<u64>,
    pub sysctl: BTreeMap<String, String>,
    pub conntrack: Option<ConntrackFacts>,
    pub could_not_see: Vec<String>,
    pub dump_interrupted: bool,
}

impl NsFacts {
    pub fn kernel(&self) -> KernelSettings {
        KernelSettings::from_sysctls(&self.sysctl)
    }
}

fn why(e: &LinuxError) -> String {
    if e.is_permission_denied() {
        "permission (needs CAP_NET_ADMIN: run as root)".into()
    } else {
        e.to_string()
    }
}

/// Gather the calling thread's namespace. `sample` is the least time between the two conntrack
/// counter samples.
pub fn gather(netns: Option<String>, sample: Duration) -> anyhow::Result<NsFacts> {
    let mut out = NsFacts {
        netns,
        ..NsFacts::default()
    };
    for name in KernelSettings::NAMES {
        match sysctl::read(name) {
            Ok(v) => {
                out.sysctl.insert(name.to_string(), v);
            }
            Err(e) if name.starts_with("net.netfilter.") && is_not_found(&e) => {}
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
    let started = Instant::now();
    let mut ct = match Ctnetlink::open() {
        Ok(ct) => Some(ct),
        Err(e) => {
            out.could_not_see.push(format!("conntrack: {}", why(&e)));
            None
        }
    };
    let before = ct.as_mut().and_then(|c| stats(c, &mut out.could_not_see));

    let (mut sockets, mut inodes) = (Vec::new(), Vec::new());
    let summary = dump_tcp(TcpFilter::established(), |s| {
        sockets.push(s.facts());
        inodes.push(s.inode);
    })
    .map_err(|e| anyhow::Error::new(e).context("dumping TCP sockets over sock_diag"))?;
    out.sockets = sockets;
    out.inodes = inodes;
    out.dump_interrupted = summary.interrupted;

    if let (Some(c), Some(before)) = (ct.as_mut(), before) {
        let left = sample.saturating_sub(started.elapsed());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
        let after = stats(c, &mut out.could_not_see);
        let count = match c.count() {
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
            count: count
                .map(|c| c.entries)
                .or_else(|| sysctl_num("net.netfilter.nf_conntrack_count"))
                .unwrap_or(0),
            max: count
                .and_then(|c| c.max)
                .or_else(|| sysctl_num("net.netfilter.nf_conntrack_max")),
            invalid: last.total.invalid,
            drop: last.total.drop,
            early_drop: last.total.early_drop,
            insert_failed: last.total.insert_failed,
            invalid_delta: after
                .as_ref()
                .map(|a| a.total.invalid.saturating_sub(before.total.invalid)),
            sample_s: after.as_ref().map(|_| started.elapsed().as_secs_f64()),
        });
    }
    Ok(out)
}

fn stats(c: &mut Ctnetlink, could_not_see: &mut Vec<String>) -> Option<CtStats> {
    match c.stats() {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = format!("conntrack statistics: {}", why(&e));
            if !could_not_see.contains(&msg) {
                could_not_see.push(msg);
            }
            None
        }
    }
}

fn is_not_found(e: &LinuxError) -> bool {
    matches!(e, LinuxError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}
