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

use std::net::IpAddr;
use std::time::Instant;

use idlereset_core::ctwatch::{Sample, WatchConfig, Watcher};
use idlereset_core::host::HostSource;
use idlereset_core::netstat::Counters;
use idlereset_core::path::PathPolicy;
pub use idlereset_core::tally::Sockets;
use idlereset_core::tally::collect_sockets;
use idlereset_linux::conntrack::{self, CpuStats, CtCount, Family};
use idlereset_linux::host::LinuxHost;

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
    pub path: PathPolicy,
    pub max_processes: usize,
    frozen: Watcher<FlowKey>,
    started: Instant,
}

type FlowKey = (u32, u8, IpAddr, IpAddr, Option<u16>, Option<u16>);

impl Collector {
    pub fn new(path: PathPolicy, max_processes: usize) -> Collector {
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
        collect_sockets(&mut LinuxHost::new(), &self.path, self.max_processes)
            .map_err(|e| e.to_string())
    }
}

/// `/proc/net/snmp` and `/proc/net/netstat` of the calling thread's namespace.
fn read_netstat() -> Result<Counters, String> {
    LinuxHost::new().netstat().map_err(|e| e.to_string())
}
