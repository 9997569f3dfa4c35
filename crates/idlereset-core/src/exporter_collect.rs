//! One exporter scrape's worth of readings, gathered from each source of a [`HostSource`]
//! independently, so the collection is tested over the fake host without root and the binary
//! only serves and renders it.
//!
//! Every source (conntrack size, conntrack statistics, the conntrack table for frozen timers,
//! sockets, socket owners, `/proc/net/snmp` + netstat) is read on its own and its failure is
//! kept as a message, so one unavailable source (no conntrack module, no permission on /proc)
//! never fails the whole response: the encoder turns each into `idlereset_source_up{source=...}`.
//!
//! Cost with many sockets: sockets are folded into per-process tallies as they stream in
//! ([`collect_sockets`]); the conntrack table is streamed into the frozen-timer sampler, which
//! keeps one small record per entry. Process labels are capped (`max_processes`).

use std::net::IpAddr;

use crate::ctwatch::{Sample, WatchConfig, Watcher};
use crate::host::{CtCounters, CtSize, HostSource};
use crate::netstat::Counters;
use crate::path::PathPolicy;
use crate::tally::{Sockets, collect_sockets};

/// Conntrack table sampling for frozen timers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frozen {
    /// Whether `nf_conntrack_acct` is on (without it entries carry no packet counters).
    pub accounting: bool,
    /// Flows the conntrack watcher ([`crate::ctwatch`]) currently flags frozen.
    pub frozen: u64,
    /// Flows seen in this round and the previous one (what the check covered).
    pub compared: u64,
}

/// One scrape: each source's reading or why it could not be read.
#[derive(Debug)]
pub struct Snapshot {
    /// Conntrack table size.
    pub ct_count: Result<CtSize, String>,
    /// Conntrack statistics summed over CPUs.
    pub ct_stats: Result<CtCounters, String>,
    /// Frozen-timer sampling of the conntrack table.
    pub frozen: Result<Frozen, String>,
    /// Socket tallies per process.
    pub sockets: Result<Sockets, String>,
    /// `/proc/net/snmp` and `/proc/net/netstat`.
    pub netstat: Result<Counters, String>,
    /// Seconds spent reading (on the host's monotonic clock).
    pub duration_s: f64,
}

/// State kept between scrapes (the frozen-timer sampler) and the scrape settings.
#[derive(Debug)]
pub struct Collector {
    /// Path timeouts the socket tallies judge keepalive against.
    pub path: PathPolicy,
    /// Process label values kept; the rest fold into `process="other"`.
    pub max_processes: usize,
    frozen: Watcher<FlowKey>,
}

type FlowKey = (u32, u8, IpAddr, IpAddr, Option<u16>, Option<u16>);

impl Collector {
    /// A collector with an empty frozen-timer history.
    pub fn new(path: PathPolicy, max_processes: usize) -> Collector {
        Collector {
            path,
            max_processes,
            frozen: Watcher::new(WatchConfig::default()),
        }
    }

    /// Read every source of `host`.
    pub fn collect(&mut self, host: &mut dyn HostSource) -> Snapshot {
        let t0 = host.monotonic_s();
        let ct_count = host.conntrack_size().map_err(|e| e.to_string());
        let ct_stats = host.conntrack_counters().map_err(|e| e.to_string());
        // The table needs the same permission as the size query: when that failed the table
        // was not read either (not even "accounting off, nothing to dump").
        let frozen = match &ct_count {
            Ok(_) => self.sample_frozen(host, ct_stats.as_ref().ok().map(|s| s.invalid)),
            Err(e) => Err(e.clone()),
        };
        let sockets =
            collect_sockets(host, &self.path, self.max_processes).map_err(|e| e.to_string());
        let netstat = host.netstat().map_err(|e| e.to_string());
        Snapshot {
            ct_count,
            ct_stats,
            frozen,
            sockets,
            netstat,
            duration_s: (host.monotonic_s() - t0).max(0.0),
        }
    }

    fn sample_frozen(
        &mut self,
        host: &mut dyn HostSource,
        invalid: Option<u64>,
    ) -> Result<Frozen, String> {
        let accounting = host
            .sysctl("net.netfilter.nf_conntrack_acct")
            .is_ok_and(|v| v.trim() == "1");
        if !accounting {
            // Entries carry no packet counters: nothing to compare, and no reason to pay for a
            // dump of a possibly large table.
            return Ok(Frozen::default());
        }
        // The same detector as `conntrack --watch`, one round per scrape.
        let now = host.monotonic_s();
        let mut events = Vec::new();
        self.frozen.begin_round(now, invalid, &mut events);
        let watcher = &mut self.frozen;
        host.conntrack_flows(&mut |f| {
            let key = (f.id, f.proto, f.src, f.dst, f.sport, f.dport);
            let sample = Sample {
                t_s: now,
                timeout_s: f.timeout_s,
                packets: f.packets,
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::{CtFlow, HostSocket, Owners};
    use crate::socket::SocketFacts;

    fn flow(id: u32, timeout_s: u32, packets: u64) -> CtFlow {
        CtFlow {
            id,
            proto: 6,
            src: "198.18.0.10".parse().unwrap(),
            dst: "198.18.2.10".parse().unwrap(),
            sport: Some(40000 + id as u16),
            dport: Some(5432),
            timeout_s,
            packets: Some(packets),
        }
    }

    fn policy() -> PathPolicy {
        PathPolicy::fixed(300.0, "--path-timeout")
    }

    /// An unprivileged exporter: conntrack and the owner scan are denied; those sources (and the
    /// table behind them) are reported unreadable, the others still read.
    #[test]
    fn unreadable_sources_are_errors_not_a_failed_scrape() {
        let mut host = FakeHost {
            owners: Err(FakeHost::denied("/proc")),
            sockets: vec![HostSocket {
                facts: SocketFacts {
                    local: "198.18.0.10:40000".parse().ok(),
                    remote: "198.18.2.10:5432".parse().ok(),
                    keepalive: Some(false),
                    ..SocketFacts::default()
                },
                inode: 7,
            }],
            ..FakeHost::default()
        };
        let snap = Collector::new(policy(), 20).collect(&mut host);
        assert!(
            snap.ct_count
                .unwrap_err()
                .contains("Operation not permitted")
        );
        assert!(snap.ct_stats.is_err());
        assert!(
            snap.frozen.is_err(),
            "the table is not read without the size"
        );
        let s = snap.sockets.unwrap();
        assert!(s.owners.is_err(), "owner scan failure kept per source");
        let est: u64 = s.by_process.iter().map(|(_, t)| t.established).sum();
        assert_eq!(est, 1);
        assert!(snap.netstat.is_ok());
    }

    fn ct_host(accounting: &str) -> FakeHost {
        FakeHost {
            ct_size: Ok(CtSize {
                entries: 2,
                max: Some(65536),
            }),
            ct_counters: [Ok(CtCounters {
                invalid: 4,
                found: 9,
                ..CtCounters::default()
            })]
            .into_iter()
            .collect(),
            sysctls: [("net.netfilter.nf_conntrack_acct", accounting)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), format!("{v}\n")))
                .collect(),
            owners: Ok(Owners::default()),
            ..FakeHost::default()
        }
    }

    /// Over scrapes a minute apart, a busy flow whose timer only falls is counted frozen, a flow
    /// whose timer is refreshed is not; both are compared.
    #[test]
    fn frozen_timer_flows_over_scrapes() {
        let mut host = ct_host("1");
        host.ct_flows = (0..4u32)
            .map(|i| {
                Ok(vec![
                    flow(1, 3600 - 60 * i, 100 + 10 * u64::from(i)),
                    flow(2, 3600, 100 + 10 * u64::from(i)),
                ])
            })
            .collect();
        let mut c = Collector::new(policy(), 20);
        let mut last = None;
        for _ in 0..4 {
            last = Some(c.collect(&mut host));
            host.pause(Duration::from_secs(60));
        }
        let snap = last.unwrap();
        assert_eq!(
            snap.frozen.unwrap(),
            Frozen {
                accounting: true,
                frozen: 1,
                compared: 2
            }
        );
        let ct = snap.ct_count.unwrap();
        assert_eq!((ct.entries, ct.max), (2, Some(65536)));
        assert_eq!(snap.ct_stats.unwrap().found, 9);
    }

    /// Without accounting the table is not dumped (a dump error would otherwise show).
    #[test]
    fn no_accounting_no_dump() {
        let mut host = ct_host("0");
        host.ct_flows = [Err(FakeHost::denied("conntrack table"))]
            .into_iter()
            .collect();
        let snap = Collector::new(policy(), 20).collect(&mut host);
        assert_eq!(snap.frozen.unwrap(), Frozen::default());
        let mut host = ct_host("1");
        host.ct_flows = [Err(FakeHost::denied("conntrack table"))]
            .into_iter()
            .collect();
        let snap = Collector::new(policy(), 20).collect(&mut host);
        assert!(snap.frozen.unwrap_err().contains("conntrack table"));
    }
}
