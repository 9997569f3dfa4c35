//! One scrape's worth of readings, gathered from each kernel source independently.
//!
//! Every source (conntrack size, conntrack statistics, the conntrack table for frozen timers,
//! sock_diag, /proc owners, /proc/net/snmp + netstat) is read on its own and its failure is kept
//! as a message, so one unavailable source (no conntrack module, no permission on /proc) never
//! fails the whole response: the encoder turns each into `idlereset_source_up{source=...}`.
//!
//! Cost with many sockets: sockets are streamed from sock_diag and folded into per-process
//! tallies as they arrive (memory O(processes), not O(sockets), apart from the inode set the
//! /proc owner scan needs); the conntrack table is streamed into the frozen-timer sampler, which
//! keeps one small record per entry. Process labels are capped (`max_processes`, the rest fold
//! into `process="other"`) so a host with thousands of short-lived programs cannot blow up the
//! series count.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use idlereset_core::ctwatch::{Sample, WatchConfig, Watcher};
use idlereset_core::inventory::Inventory;
use idlereset_core::netstat::Counters;
use idlereset_linux::conntrack::{self, CpuStats, CtCount, Family};
use idlereset_linux::procfs::SocketOwners;
use idlereset_linux::sockdiag::{self, TcpFilter};

/// Which idle timeout a socket's remote has to survive.
#[derive(Debug, Clone)]
pub enum PathTimeout {
    /// Nothing known: only "without keepalive" is judged.
    Unknown,
    /// One timeout for every remote (`--path-timeout`).
    Fixed(f64),
    /// Per remote, from a path inventory; remotes no hop applies to are not on the path.
    Inventory(Box<Inventory>),
}

impl PathTimeout {
    /// `None`: the remote is not on the monitored path. `Some(None)`: on it, timeout unknown.
    fn for_remote(&self, remote: SocketAddr) -> Option<Option<f64>> {
        match self {
            PathTimeout::Unknown => Some(None),
            PathTimeout::Fixed(t) => Some(Some(*t)),
            PathTimeout::Inventory(inv) => inv.path_timeout_for(remote).map(|(t, _)| Some(t)),
        }
    }
}

/// Per-process socket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub established: u64,
    pub no_keepalive: u64,
    pub keepalive_late: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.established += o.established;
        self.no_keepalive += o.no_keepalive;
        self.keepalive_late += o.keepalive_late;
    }
}

/// Socket tallies by process label (already capped).
#[derive(Debug, Clone)]
pub struct Sockets {
    pub by_process: Vec<(String, Tally)>,
    /// Whether the /proc owner scan worked (process labels are "unknown" otherwise).
    pub owners: Result<(), String>,
}

/// Conntrack table sampling for frozen timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frozen {
    pub accounting: bool,
    /// Flows the conntrack watcher (idlereset_core::ctwatch) currently flags frozen.
    pub frozen: u64,
    pub compared: u64,
}

/// One scrape.
#[derive(Debug)]
pub struct Snapshot {
    pub ct_count: Result<CtCount, String>,
    pub ct_stats: Result<CpuStats, String>,
    pub frozen: Result<Frozen, String>,
    pub sockets: Result<Sockets, String>,
    pub netstat: Result<Counters, String>,
    pub duration_s: f64,
}

/// State kept between scrapes (the frozen-timer sampler) and the scrape settings.
pub struct Collector {
    pub path: PathTimeout,
    pub max_processes: usize,
    frozen: Watcher<FlowKey>,
    started: Instant,
}

type FlowKey = (u32, u8, IpAddr, IpAddr, Option<u16>, Option<u16>);

impl Collector {
    pub fn new(path: PathTimeout, max_processes: usize) -> Collector {
        Collector {
            path,
            max_processes,
            frozen: Watcher::new(WatchConfig::default()),
            started: Instant::now(),
        }
    }

    /// Read every source in the calling thread's network namespace.
    pub fn collect(&mut self) -> Snapshot {
        let t0 = Instant::now();
        let mut ct = conntrack::Ctnetlink::open().map_err(|e| e.to_string());
        let ct_count = ct
            .as_mut()
            .map_err(|e| e.clone())
            .and_then(|c| c.count().map_err(|e| e.to_string()));
        let ct_stats = ct
            .as_mut()
            .map_err(|e| e.clone())
            .and_then(|c| c.stats().map(|s| s.total).map_err(|e| e.to_string()));
        // The table needs the same permission as the size query: when that failed the table
        // was not read either (not even "accounting off, nothing to dump").
        let frozen = match (ct.as_mut(), &ct_count) {
            (Ok(c), Ok(_)) => self.sample_frozen(c),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e.clone()),
        };
        let sockets = self.sockets();
        let netstat = read_netstat();
        Snapshot {
            ct_count,
            ct_stats,
            frozen,
            sockets,
            netstat,
            duration_s: t0.elapsed().as_secs_f64(),
        }
    }

    fn sample_frozen(&mut self, ct: &mut conntrack::Ctnetlink) -> Result<Frozen, String> {
        let accounting = conntrack::accounting_enabled().unwrap_or(false);
        if !accounting {
            // Entries carry no packet counters: nothing to compare, and no reason to pay for a
            // dump of a possibly large table.
            return Ok(Frozen::default());
        }
        // The same detector as `conntrack --watch`, one round per scrape.
        let now = self.started.elapsed().as_secs_f64();
        let invalid = ct.stats().ok().map(|s| s.total.invalid);
        let mut events = Vec::new();
        self.frozen.begin_round(now, invalid, &mut events);
        let watcher = &mut self.frozen;
        ct.dump(Family::All, |e| {
            let key = (
                e.id,
                e.proto,
                e.orig.src,
                e.orig.dst,
                e.orig.sport,
                e.orig.dport,
            );
            let sample = Sample {
                t_s: now,
                timeout_s: e.timeout_s,
                packets: e.packets(),
            };
            watcher.observe(&key, sample, &mut events);
        })
        .map_err(|e| e.to_string())?;
        self.frozen.end_round(now, &mut events);
        Ok(Frozen {
            accounting,
            frozen: self.frozen.frozen_flows() as u64,
            compared: self.frozen.flows() as u64,
        })
    }

    fn sockets(&self) -> Result<Sockets, String> {
        // Pass 1: stream sockets into per-inode classifications (3 bits each), keeping only what
        // the owner lookup needs.
        let mut per_inode: HashMap<u64, Tally> = HashMap::new();
        sockdiag::dump_tcp(TcpFilter::established(), |s| {
            let t = classify(&s, &self.path);
            per_inode.entry(s.inode).or_default().add(t);
        })
        .map_err(|e| e.to_string())?;
        let wanted: HashSet<u64> = per_inode.keys().copied().filter(|&i| i != 0).collect();
        let owners = SocketOwners::scan(Some(&wanted));
        let mut by_comm: HashMap<String, Tally> = HashMap::new();
        let owners_ok = match &owners {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        for (inode, t) in per_inode {
            let name = owners
                .as_ref()
                .ok()
                .and_then(|o| o.process(inode))
                .map_or_else(|| "unknown".to_string(), |(_, comm)| comm.to_string());
            by_comm.entry(name).or_default().add(t);
        }
        Ok(Sockets {
            by_process: cap_processes(by_comm, self.max_processes),
            owners: owners_ok,
        })
    }
}

/// Classify one established socket.
fn classify(s: &sockdiag::SocketInfo, path: &PathTimeout) -> Tally {
    let mut t = Tally {
        established: 1,
        ..Tally::default()
    };
    // Loopback never crosses a middlebox; remotes off the inventory's path are not at risk.
    if s.remote.ip().is_loopback() || is_mapped_loopback(s.remote.ip()) {
        return t;
    }
    let Some(timeout) = path.for_remote(s.remote) else {
        return t;
    };
    match s.keepalive_known() {
        Some(false) => t.no_keepalive = 1,
        Some(true) => {
            if let (Some(limit), Some(ka_ms)) = (timeout, s.keepalive_idle_estimate_ms()) {
                // Allow the timer wheel's granularity: the estimate is in ms, timeouts in s.
                if ka_ms as f64 / 1000.0 > limit + 1.0 {
                    t.keepalive_late = 1;
                }
            }
        }
        None => {}
    }
    t
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// Keep the `max` processes with the most established sockets; fold the rest into "other".
pub fn cap_processes(by_comm: HashMap<String, Tally>, max: usize) -> Vec<(String, Tally)> {
    let mut v: Vec<(String, Tally)> = by_comm.into_iter().collect();
    v.sort_by(|a, b| b.1.established.cmp(&a.1.established).then(a.0.cmp(&b.0)));
    if v.len() > max {
        let mut other = Tally::default();
        for (_, t) in v.drain(max..) {
            other.add(t);
        }
        match v.iter_mut().find(|(n, _)| n == "other") {
            Some((_, t)) => t.add(other),
            None => v.push(("other".into(), other)),
        }
    }
    v
}

/// `/proc/net/snmp` and `/proc/net/netstat` of the calling thread's namespace.
fn read_netstat() -> Result<Counters, String> {
    let mut c = Counters::default();
    for name in ["snmp", "netstat"] {
        // thread-self: the namespace of this thread (the exporter reads lab namespaces from a
        // thread that entered them; /proc/self/net is the main thread's).
        let path = format!("/proc/thread-self/net/{name}");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
        c.add_file(&text, &path).map_err(|e| e.to_string())?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(e: u64, n: u64) -> Tally {
        Tally {
            established: e,
            no_keepalive: n,
            keepalive_late: 0,
        }
    }

    #[test]
    fn cap_keeps_biggest_and_folds_rest() {
        let m: HashMap<String, Tally> = [
            ("pg".to_string(), t(50, 1)),
            ("java".into(), t(40, 40)),
            ("nginx".into(), t(3, 0)),
            ("cron".into(), t(1, 1)),
        ]
        .into_iter()
        .collect();
        let v = cap_processes(m, 2);
        let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pg", "java", "other"]);
        assert_eq!(v[2].1, t(4, 1));
        let total: u64 = v.iter().map(|(_, t)| t.established).sum();
        assert_eq!(total, 94);
    }

    #[test]
    fn cap_merges_into_existing_other() {
        let m: HashMap<String, Tally> = [
            ("other".to_string(), t(9, 0)),
            ("a".into(), t(1, 0)),
            ("b".into(), t(10, 0)),
        ]
        .into_iter()
        .collect();
        let v = cap_processes(m, 2);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v.iter().find(|(n, _)| n == "other").map(|x| x.1),
            Some(t(10, 0))
        );
    }
}
