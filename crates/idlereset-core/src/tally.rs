//! Per-process socket tallies for the exporter's gauges (`idlereset_tcp_established_sockets`,
//! `..._without_keepalive`, `..._keepalive_too_late`), counted with the one socket verdict of
//! [`crate::socket::classify`] so the gauges and `audit`'s findings agree on the same sockets.
//!
//! Loopback connections are counted as established but never judged (no middlebox on them).
//! Process labels are capped ([`cap_processes`]) so a host with thousands of short-lived
//! programs cannot blow up the series count.

use std::collections::{HashMap, HashSet};

use crate::host::{HostError, HostSource};
use crate::path::PathPolicy;
use crate::socket::{SocketFacts, Verdict, classify};

/// Per-process socket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Established sockets.
    pub established: u64,
    /// Of them, without `SO_KEEPALIVE` (on the path, not loopback).
    pub no_keepalive: u64,
    /// Of them, with a keepalive due later than the path's idle timeout.
    pub keepalive_late: u64,
}

impl Tally {
    /// Add another tally's counts.
    pub fn add(&mut self, o: Tally) {
        self.established += o.established;
        self.no_keepalive += o.no_keepalive;
        self.keepalive_late += o.keepalive_late;
    }

    /// The tally of one established socket.
    pub fn of(s: &SocketFacts, paths: &PathPolicy) -> Tally {
        let mut t = Tally {
            established: 1,
            ..Tally::default()
        };
        let Some(remote) = s.remote else {
            return t;
        };
        if s.is_loopback() {
            return t;
        }
        match classify(s, &paths.resolve(remote)) {
            Verdict::NoKeepalive => t.no_keepalive = 1,
            Verdict::KeepaliveTooLate { .. } => t.keepalive_late = 1,
            Verdict::OffPath | Verdict::Hidden | Verdict::KeepaliveOn { .. } => {}
        }
        t
    }
}

/// Socket tallies by process label (already capped).
#[derive(Debug, Clone)]
pub struct Sockets {
    /// (process label, tally), most established first; `other` holds the capped rest.
    pub by_process: Vec<(String, Tally)>,
    /// Whether the owner scan worked (process labels are "unknown" otherwise).
    pub owners: Result<(), String>,
}

/// One scrape's socket tallies from `host`: sockets are folded into per-inode tallies as they
/// stream in (memory O(sockets' inodes), not O(sockets' facts)), then labelled by owner and
/// capped at `max_processes`.
pub fn collect_sockets(
    host: &mut dyn HostSource,
    paths: &PathPolicy,
    max_processes: usize,
) -> Result<Sockets, HostError> {
    let mut per_inode: HashMap<u64, Tally> = HashMap::new();
    host.sockets(&mut |s| {
        per_inode
            .entry(s.inode)
            .or_default()
            .add(Tally::of(&s.facts, paths));
    })?;
    let wanted: HashSet<u64> = per_inode.keys().copied().filter(|&i| i != 0).collect();
    let owners = host.owners(&wanted);
    let mut by_comm: HashMap<String, Tally> = HashMap::new();
    for (inode, t) in per_inode {
        let name = owners
            .as_ref()
            .ok()
            .and_then(|o| o.process(inode))
            .map_or_else(|| "unknown".to_string(), |(_, comm)| comm.to_string());
        by_comm.entry(name).or_default().add(t);
    }
    Ok(Sockets {
        by_process: cap_processes(by_comm, max_processes),
        owners: owners.map(|_| ()).map_err(|e| e.to_string()),
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::{KernelSettings, evaluate};

    /// A socket to `remote` with data `idle_ms` ago, keepalive per `timer` (ms to fire,
    /// unanswered probes), the last ACK `ack_ms` ago.
    fn sock(remote: &str, idle_ms: u64, timer: Option<(u64, u8)>, ack_ms: u64) -> SocketFacts {
        SocketFacts {
            local: "198.18.0.10:40000".parse().ok(),
            remote: remote.parse().ok(),
            keepalive: Some(timer.is_some()),
            keepalive_timer_ms: timer.map(|t| t.0),
            probes_out: timer.map_or(0, |t| t.1),
            last_data_sent_ms: Some(idle_ms),
            last_data_recv_ms: Some(idle_ms),
            last_ack_recv_ms: Some(ack_ms),
            pid: Some(7),
            process: Some("app".into()),
        }
    }

    /// The exporter's gauge and audit's finding are one rule: on the same sockets, the sockets
    /// audit calls `keepalive-too-late` are exactly the ones the gauge counts, and every
    /// `no-keepalive` finding is a socket the "without keepalive" gauge counts.
    #[test]
    fn gauges_agree_with_audit_findings_on_the_same_sockets() {
        let inv = crate::inventory::Inventory::parse(
            "[[hop]]\nname = \"fw\"\nkind = \"firewall\"\nidle_timeout_s = 300\nmatches = [\"198.18.2.0/24\"]\n",
            "paths.toml",
            &crate::catalog::Catalog::builtin().unwrap(),
        )
        .unwrap();
        let paths = PathPolicy::inventory(inv, "paths.toml");
        let db = "198.18.2.10:5432";
        let mut sockets = vec![
            // First probe ~400 s after the last packet: late for 300 s.
            sock(db, 100_000, Some((300_000, 0)), 100_000),
            // First probe at 250 s: in time.
            sock(db, 100_000, Some((150_000, 0)), 100_000),
            // Probe answered 2 s ago, next in 598 s: re-probe spacing 600 s, late.
            sock(db, 200_000, Some((598_000, 0)), 2_000),
            // Estimate within a second over the path: late by audit's rule, so by the gauge's.
            sock(db, 10_000, Some((290_500, 0)), 10_000),
            // Unanswered probes with a 400 s interval: late.
            sock(db, 900_000, Some((400_000, 2)), 900_000),
            // No keepalive, idle past the path: finding and gauge.
            sock(db, 400_000, None, 400_000),
            // No keepalive, fresh: gauge only (not at risk yet).
            sock(db, 1_000, None, 1_000),
            // Off the inventory's path: neither.
            sock("203.0.113.5:443", 900_000, None, 900_000),
            sock("203.0.113.5:443", 1_000, Some((900_000, 0)), 1_000),
        ];
        for (i, s) in sockets.iter_mut().enumerate() {
            s.local = format!("198.18.0.10:{}", 40_000 + i).parse().ok();
        }
        let report = evaluate(&sockets, &KernelSettings::default(), None, &paths);
        let mut total = Tally::default();
        let mut late_by_gauge = Vec::new();
        let mut nok_by_gauge = Vec::new();
        for (i, s) in sockets.iter().enumerate() {
            let t = Tally::of(s, &paths);
            if t.keepalive_late == 1 {
                late_by_gauge.push(i);
            }
            if t.no_keepalive == 1 {
                nok_by_gauge.push(i);
            }
            total.add(t);
        }
        let idx = |kind: &str| -> Vec<usize> {
            report
                .findings
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| {
                    sockets
                        .iter()
                        .position(|s| s.local.map(|l| l.to_string()) == f.local)
                        .unwrap()
                })
                .collect()
        };
        let mut late_by_audit = idx("keepalive-too-late");
        late_by_audit.sort_unstable();
        assert_eq!(late_by_audit, late_by_gauge);
        assert_eq!(late_by_gauge, [0, 2, 3, 4]);
        assert_eq!(nok_by_gauge, [5, 6]);
        for i in idx("no-keepalive") {
            assert!(nok_by_gauge.contains(&i), "socket {i}");
        }
        assert_eq!(total.established, 9);
    }

    fn t(e: u64, n: u64) -> Tally {
        Tally {
            established: e,
            no_keepalive: n,
            keepalive_late: 0,
        }
    }

    /// The exporter's socket gauges without root: a fake host's sockets are tallied by owner,
    /// loopback counted but not judged, unowned sockets labelled "unknown".
    #[test]
    fn exporter_tallies_over_a_fake_host() {
        use crate::host::fake::FakeHost;
        use crate::host::{HostSocket, Owners};
        let mk = |remote: &str, inode, keepalive: bool| HostSocket {
            facts: sock(remote, 500_000, keepalive.then_some((400_000, 0)), 500_000),
            inode,
        };
        let mut host = FakeHost {
            sockets: vec![
                mk("198.18.2.10:5432", 1, false),
                mk("198.18.2.10:5432", 2, true),
                mk("127.0.0.1:5432", 3, false),
                mk("198.18.2.10:5432", 4, false),
            ],
            owners: Ok(Owners {
                by_inode: [
                    (1, (9, "java".to_string())),
                    (2, (9, "java".to_string())),
                    (3, (9, "java".to_string())),
                ]
                .into_iter()
                .collect(),
                unreadable: 0,
            }),
            ..FakeHost::default()
        };
        let paths = PathPolicy::fixed(300.0, "--path-timeout");
        let s = collect_sockets(&mut host, &paths, 20).unwrap();
        assert_eq!(
            s.by_process,
            vec![
                (
                    "java".to_string(),
                    Tally {
                        established: 3,
                        no_keepalive: 1,
                        keepalive_late: 1
                    }
                ),
                (
                    "unknown".to_string(),
                    Tally {
                        established: 1,
                        no_keepalive: 1,
                        keepalive_late: 0
                    }
                ),
            ]
        );
        assert!(s.owners.is_ok());
        host.owners = Err(FakeHost::denied("/proc"));
        let s = collect_sockets(&mut host, &paths, 20).unwrap();
        assert!(s.owners.is_err());
        assert_eq!(s.by_process[0].0, "unknown");
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
