//! A scripted host for tests without root: sockets, owners, sysctls, conntrack and reset events
//! set as plain data, a clock that [`HostSource::pause`] advances. Sources left as `Err` fail
//! the way a real host without privileges does.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{
    CtCounters, CtFlow, CtSize, HostError, HostErrorKind, HostSocket, HostSource, Owners,
    ProcessLibs, ResetSeen,
};
use crate::netstat::Counters;

/// A host made of plain data.
#[derive(Debug, Clone)]
pub struct FakeHost {
    /// The established sockets every dump returns.
    pub sockets: Vec<HostSocket>,
    /// Socket owners (`unreadable` counts processes hidden by permission).
    pub owners: Result<Owners, HostError>,
    /// Sysctl values; a missing name is `NotFound`.
    pub sysctls: BTreeMap<String, String>,
    /// Conntrack size.
    pub ct_size: Result<CtSize, HostError>,
    /// Successive conntrack counter readings (the last one repeats).
    pub ct_counters: VecDeque<Result<CtCounters, HostError>>,
    /// Successive conntrack table dumps (the last one repeats).
    pub ct_flows: VecDeque<Result<Vec<CtFlow>, HostError>>,
    /// `/proc/net/snmp` + netstat.
    pub netstat: Result<Counters, HostError>,
    /// Reset events handed out by [`HostSource::reset_events`], each at its `mono_s`.
    pub resets: Vec<ResetSeen>,
    /// The clock.
    pub now_s: f64,
    /// Command lines and loaded paths by pid; a missing pid is `NotFound` (the process exited).
    pub processes: BTreeMap<u32, ProcessLibs>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            sockets: Vec::new(),
            owners: Ok(Owners::default()),
            sysctls: BTreeMap::new(),
            ct_size: Err(FakeHost::denied("conntrack")),
            ct_counters: VecDeque::new(),
            ct_flows: VecDeque::new(),
            netstat: Ok(Counters::default()),
            resets: Vec::new(),
            now_s: 1000.0,
            processes: BTreeMap::new(),
        }
    }
}

impl FakeHost {
    /// The error an unprivileged reader gets from `source`.
    pub fn denied(source: &str) -> HostError {
        HostError::new(source, HostErrorKind::Permission, "Operation not permitted")
    }
}

impl HostSource for FakeHost {
    fn sockets(&mut self, on: &mut dyn FnMut(HostSocket)) -> Result<bool, HostError> {
        for s in &self.sockets {
            on(s.clone());
        }
        Ok(false)
    }

    fn owners(&mut self, inodes: &HashSet<u64>) -> Result<Owners, HostError> {
        let all = self.owners.clone()?;
        Ok(Owners {
            by_inode: all
                .by_inode
                .into_iter()
                .filter(|(i, _)| inodes.contains(i))
                .collect(),
            unreadable: all.unreadable,
        })
    }

    fn sysctl(&mut self, name: &str) -> Result<String, HostError> {
        self.sysctls.get(name).cloned().ok_or_else(|| {
            HostError::new(
                format!("sysctl {name}"),
                HostErrorKind::NotFound,
                "No such file or directory",
            )
        })
    }

    fn conntrack_size(&mut self) -> Result<CtSize, HostError> {
        self.ct_size.clone()
    }

    fn conntrack_counters(&mut self) -> Result<CtCounters, HostError> {
        match self.ct_counters.len() {
            0 => Err(FakeHost::denied("conntrack statistics")),
            1 => self.ct_counters[0].clone(),
            _ => self
                .ct_counters
                .pop_front()
                .unwrap_or_else(|| Err(FakeHost::denied("conntrack statistics"))),
        }
    }

    fn conntrack_flows(&mut self, on: &mut dyn FnMut(CtFlow)) -> Result<(), HostError> {
        let dump = match self.ct_flows.len() {
            0 => Err(FakeHost::denied("conntrack table")),
            1 => self.ct_flows[0].clone(),
            _ => self
                .ct_flows
                .pop_front()
                .unwrap_or_else(|| Err(FakeHost::denied("conntrack table"))),
        };
        for f in dump? {
            on(f);
        }
        Ok(())
    }

    fn netstat(&mut self) -> Result<Counters, HostError> {
        self.netstat.clone()
    }

    fn reset_events(
        &mut self,
        stop: &AtomicBool,
        on: &mut dyn FnMut(ResetSeen),
    ) -> Result<(), HostError> {
        for r in std::mem::take(&mut self.resets) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.now_s = self.now_s.max(r.mono_s);
            on(r);
        }
        Ok(())
    }

    fn process_libs(&mut self, pid: u32) -> Result<ProcessLibs, HostError> {
        self.processes.get(&pid).cloned().ok_or_else(|| {
            HostError::new(
                format!("/proc/{pid}"),
                HostErrorKind::NotFound,
                "No such process",
            )
        })
    }

    fn monotonic_s(&self) -> f64 {
        self.now_s
    }

    fn pause(&mut self, d: Duration) {
        self.now_s += d.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::evaluate;
    use crate::audit::gather::{attribute, gather};
    use crate::path::PathPolicy;
    use crate::socket::SocketFacts;

    fn socket(port: u16, inode: u64, keepalive: bool, idle_ms: u64) -> HostSocket {
        HostSocket {
            facts: SocketFacts {
                local: format!("198.18.0.10:{port}").parse().ok(),
                remote: "198.18.2.10:5432".parse().ok(),
                keepalive: Some(keepalive),
                keepalive_timer_ms: keepalive.then_some(7_000_000),
                last_data_sent_ms: Some(idle_ms),
                last_data_recv_ms: Some(idle_ms),
                last_ack_recv_ms: Some(idle_ms),
                ..SocketFacts::default()
            },
            inode,
        }
    }

    /// `audit`'s whole analysis (gather, owners, checks) without root: an idle socket without
    /// keepalive and one whose keepalive comes after the path are found and attributed; a
    /// rising INVALID counter over the sample shows; what was hidden is said.
    #[test]
    fn audit_over_a_fake_host() {
        let mut host = FakeHost {
            sockets: vec![
                socket(40000, 11, false, 400_000),
                socket(40001, 12, true, 1000),
            ],
            owners: Ok(Owners {
                by_inode: [(11, (42, "java".to_string()))].into_iter().collect(),
                unreadable: 2,
            }),
            sysctls: [
                ("net.ipv4.tcp_keepalive_time", "7200"),
                ("net.netfilter.nf_conntrack_count", "10"),
                ("net.netfilter.nf_conntrack_max", "100"),
                (
                    "net.netfilter.nf_conntrack_tcp_timeout_established",
                    "432000",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ct_size: Ok(CtSize {
                entries: 10,
                max: Some(100),
            }),
            ct_counters: [3, 50]
                .into_iter()
                .map(|invalid| {
                    Ok(CtCounters {
                        invalid,
                        ..CtCounters::default()
                    })
                })
                .collect(),
            ..FakeHost::default()
        };
        let mut facts = vec![gather(&mut host, None, Duration::from_secs(5)).unwrap()];
        assert!(host.now_s >= 1005.0, "the sample pause advanced the clock");
        let notes = attribute(&mut host, &mut facts);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("could not see 2 processes"))
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("1 sockets have no visible owner"))
        );
        let f = &facts[0];
        let ct = f.conntrack.unwrap();
        assert_eq!(
            (ct.invalid, ct.invalid_delta, ct.max),
            (50, Some(47), Some(100))
        );
        assert!(
            f.could_not_see
                .iter()
                .any(|c| c.contains("tcp_keepalive_intvl"))
        );
        let r = evaluate(
            &f.sockets,
            &f.kernel(),
            f.conntrack.as_ref(),
            &PathPolicy::fixed(300.0, "--path-timeout"),
        );
        let kinds: Vec<(&str, Option<&str>)> = r
            .findings
            .iter()
            .map(|x| (x.kind, x.process.as_deref()))
            .collect();
        assert!(kinds.contains(&("no-keepalive", Some("java"))), "{kinds:?}");
        assert!(kinds.contains(&("keepalive-too-late", None)), "{kinds:?}");
        assert!(
            kinds.iter().any(|k| k.0 == "conntrack-invalid-rising"),
            "{kinds:?}"
        );
    }

    #[test]
    fn unreadable_sources_are_reported_not_fatal() {
        let mut host = FakeHost::default();
        // Conntrack denied, no sysctls: still gathers, says what it could not see.
        let f = gather(&mut host, Some("app".into()), Duration::ZERO).unwrap();
        assert!(f.conntrack.is_none());
        assert!(f.could_not_see.iter().any(|c| c.contains("permission")));
    }
}
