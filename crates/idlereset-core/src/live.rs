//! The pure half of the live reset stream shared by `watch` and `exporter`: a cache of sampled
//! sockets that knows each flow's idle time and owner, the join of a reset event with it, and
//! the reading of a joined reset against the path policy. The threads, the namespace and the
//! event source (tracefs, sock_diag destroy events) stay with the caller; everything here reads
//! the host through [`HostSource`], so it is tested over the fake host.
//!
//! Why a sampler: the `tcp_*_reset` tracepoints carry the 4-tuple but not how long the
//! connection had been idle, nor its process. sock_diag's `tcp_info` has `last_data_sent` /
//! `last_data_recv`, so the caller samples the established sockets every ~200 ms and the cache
//! keeps, per 4-tuple, when data last moved and which process owns the socket. The packet that
//! provoked the reset (the app's first send after the idle period) may itself show up in a
//! sample just before the reset; the cache remembers the idle gap that such fresh activity
//! ended, and the lookup uses that gap when the activity is within a second of the reset.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::catalog::Catalog;
use crate::host::{HostError, HostErrorKind, HostSource, ResetSeen};
use crate::netstat::Counters;
use crate::path::PathLookup;
use crate::resets::{Direction, PathHop, reading};

/// How long a flow that left the socket table stays known (the reset closes it).
const FORGET_AFTER_S: f64 = 10.0;
/// Owners are rescanned at most this often (seconds): a `/proc` scan is the costly part.
const OWNER_SCAN_EVERY_S: f64 = 1.0;

/// One reset, joined with what the sampler knew about its flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// Monotonic seconds of the event.
    pub mono_s: f64,
    /// Which way the reset went.
    pub direction: Direction,
    /// This host's end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// Owning process, when the sampler saw the flow and its owner.
    pub pid: Option<u32>,
    /// Its command name.
    pub process: Option<String>,
    /// Idle seconds before the reset, when the sampler saw the flow.
    pub idle_s: Option<f64>,
}

#[derive(Debug, Clone)]
struct Flow {
    inode: u64,
    /// Monotonic seconds when data last moved.
    active_at: f64,
    /// The idle gap the latest activity ended.
    prev_gap: Option<f64>,
    seen_at: f64,
}

/// Flows by (local, remote) and owners by inode.
#[derive(Debug, Default)]
pub struct IdleCache {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    owners: HashMap<u64, (u32, String)>,
    last_owner_scan: f64,
}

impl IdleCache {
    /// Record one socket seen at `now` (monotonic s) idle for `idle_s`.
    pub fn observe(
        &mut self,
        now: f64,
        local: SocketAddr,
        remote: SocketAddr,
        inode: u64,
        idle_s: f64,
    ) {
        let active_at = now - idle_s;
        let f = self.flows.entry((local, remote)).or_insert(Flow {
            inode,
            active_at,
            prev_gap: None,
            seen_at: now,
        });
        // tcp_info's last_data_* are in ms from jiffies; ignore sub-50 ms jitter.
        if active_at > f.active_at + 0.05 {
            f.prev_gap = Some(active_at - f.active_at);
            f.active_at = active_at;
        }
        f.inode = inode;
        f.seen_at = now;
    }

    /// Drop flows not seen for a while, and their owners.
    pub(crate) fn forget_old(&mut self, now: f64) {
        self.flows.retain(|_, f| now - f.seen_at < FORGET_AFTER_S);
        let live: HashSet<u64> = self.flows.values().map(|f| f.inode).collect();
        self.owners.retain(|i, _| live.contains(i));
    }

    /// The idle age of a flow at event time `ts` (monotonic s), and its inode.
    pub(crate) fn idle_at(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        ts: f64,
    ) -> Option<(f64, u64)> {
        let f = self.flows.get(&(local, remote))?;
        let since = ts - f.active_at;
        // Activity within a second before the reset is the send that provoked it: the idle
        // period is the gap that send ended.
        let idle = match f.prev_gap {
            Some(gap) if since < 1.0 => gap,
            _ => since,
        };
        Some((idle.max(0.0), f.inode))
    }

    /// Join a reset with the flow's idle age (looked up at `idle_from`, usually the event's
    /// time) and owner.
    pub fn join(&self, ev: &ResetSeen, idle_from: f64) -> Joined {
        let known = self.idle_at(ev.local, ev.remote, idle_from);
        let owner = known
            .and_then(|(_, inode)| self.owners.get(&inode))
            .cloned();
        Joined {
            mono_s: ev.mono_s,
            direction: ev.direction,
            local: ev.local,
            remote: ev.remote,
            pid: owner.as_ref().map(|o| o.0),
            process: owner.map(|o| o.1),
            idle_s: known.map(|k| k.0),
        }
    }
}

fn poisoned() -> HostError {
    HostError::new("idle cache", HostErrorKind::Other, "poisoned by a panic")
}

/// One sampling pass of `host`'s sockets into `cache` (owners rescanned at most once a second,
/// outside the lock).
pub fn sample_once(host: &mut dyn HostSource, cache: &Mutex<IdleCache>) -> Result<(), HostError> {
    let now = host.monotonic_s();
    let mut seen: Vec<(SocketAddr, SocketAddr, u64, f64)> = Vec::new();
    host.sockets(&mut |s| {
        if let (Some(l), Some(r), Some(idle)) = (s.facts.local, s.facts.remote, s.facts.idle_s()) {
            seen.push((l, r, s.inode, idle));
        }
    })?;
    let new_inodes: HashSet<u64> = {
        let mut c = cache.lock().map_err(|_| poisoned())?;
        for (l, r, inode, idle) in &seen {
            c.observe(now, *l, *r, *inode, *idle);
        }
        c.forget_old(now);
        if now - c.last_owner_scan < OWNER_SCAN_EVERY_S {
            HashSet::new()
        } else {
            seen.iter()
                .map(|s| s.2)
                .filter(|i| *i != 0 && !c.owners.contains_key(i))
                .collect()
        }
    };
    if !new_inodes.is_empty()
        && let Ok(o) = host.owners(&new_inodes)
    {
        let mut c = cache.lock().map_err(|_| poisoned())?;
        c.last_owner_scan = now;
        c.owners.extend(o.by_inode);
    }
    Ok(())
}

/// A namespace's reset counters at one moment: (received, sent), where received is
/// `Tcp EstabResets` + `TcpExt TCPAbortOnData` + `TCPAbortOnTimeout` and sent is `Tcp OutRsts`.
/// Counters missing from `c` count as 0.
pub fn reset_counters(c: &Counters) -> (u64, u64) {
    let received = c.counter("Tcp", "EstabResets").unwrap_or(0)
        + ["TCPAbortOnData", "TCPAbortOnTimeout"]
            .iter()
            .filter_map(|k| c.counter("TcpExt", k))
            .sum::<u64>();
    (received, c.counter("Tcp", "OutRsts").unwrap_or(0))
}

/// The destroy-event fallback's test of whether a destroyed socket was reset (where tracefs is
/// unavailable): its namespace's reset counters ([`reset_counters`]) rose since the previous
/// destroyed socket. Sent when only `OutRsts` rose; when the counters cannot be read, every
/// destroyed socket counts as a received reset (better a false report than a silent miss).
#[derive(Debug, Clone, Copy, Default)]
pub struct DestroyGate {
    last: Option<(u64, u64)>,
}

impl DestroyGate {
    /// A gate starting from the counters read before watching.
    pub fn new(initial: Option<(u64, u64)>) -> DestroyGate {
        DestroyGate { last: initial }
    }

    /// The direction of the reset that destroyed a socket, given the counters read now, or
    /// `None` when the counters did not rise (a normal close).
    pub fn judge(&mut self, now: Option<(u64, u64)>) -> Option<Direction> {
        let verdict = match (self.last, now) {
            (Some((r0, o0)), Some((r1, o1))) => {
                if r1 > r0 {
                    Some(Direction::Received)
                } else if o1 > o0 {
                    Some(Direction::Sent)
                } else {
                    None
                }
            }
            _ => Some(Direction::Received),
        };
        self.last = now;
        verdict
    }
}

/// The reset event for a socket destroyed at `now_s` and judged reset, with the moment its idle
/// gap ended (its last send, from the final `tcp_info`), the time to join it at.
pub fn destroyed_reset(
    now_s: f64,
    direction: Direction,
    local: SocketAddr,
    remote: SocketAddr,
    last_data_sent_ms: Option<u32>,
) -> (ResetSeen, f64) {
    let sent_at = now_s - f64::from(last_data_sent_ms.unwrap_or(0)) / 1000.0;
    let ev = ResetSeen {
        mono_s: now_s,
        direction,
        local,
        remote,
    };
    (ev, sent_at)
}

/// The one-line reading of a joined reset against what the path policy says of its remote.
pub fn read_reset(j: &Joined, path: &PathLookup, catalog: Option<&Catalog>) -> String {
    let hop = path.timeout().map(|t| match &t.hop {
        Some(h) => PathHop {
            name: &h.name,
            kind: h.kind,
            timeout_s: t.seconds,
            from_inventory: true,
        },
        None => PathHop {
            name: "--path-timeout",
            kind: "path",
            timeout_s: t.seconds,
            from_inventory: false,
        },
    });
    reading(j.idle_s, hop, catalog)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::{HostSocket, Owners};
    use crate::path::PathPolicy;
    use crate::socket::SocketFacts;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn idle_age_from_samples() {
        let (l, r) = (a("198.18.0.10:40000"), a("198.18.2.10:5432"));
        let mut c = IdleCache::default();
        c.observe(100.0, l, r, 7, 10.0);
        c.observe(150.0, l, r, 7, 60.0);
        let (idle, inode) = c.idle_at(l, r, 990.0).unwrap();
        assert!((idle - 900.0).abs() < 1e-6, "{idle}");
        assert_eq!(inode, 7);
        assert!(c.idle_at(r, l, 990.0).is_none());
    }

    #[test]
    fn provoking_send_seen_before_reset_uses_the_gap() {
        let (l, r) = (a("198.18.0.10:40000"), a("198.18.2.10:5432"));
        let mut c = IdleCache::default();
        c.observe(100.0, l, r, 7, 10.0);
        c.observe(992.0, l, r, 7, 0.01);
        let (idle, _) = c.idle_at(l, r, 992.2).unwrap();
        assert!((idle - 901.99).abs() < 0.01, "{idle}");
        let (idle, _) = c.idle_at(l, r, 1002.0).unwrap();
        assert!((idle - 10.01).abs() < 0.01, "{idle}");
    }

    #[test]
    fn flows_are_forgotten() {
        let (l, r) = (a("198.18.0.10:40000"), a("198.18.2.10:5432"));
        let mut c = IdleCache::default();
        c.observe(0.0, l, r, 7, 0.0);
        c.forget_old(5.0);
        assert!(c.idle_at(l, r, 5.0).is_some());
        c.forget_old(11.0);
        assert!(c.idle_at(l, r, 11.0).is_none());
    }

    /// `watch`'s pipeline without root: the fake host's socket is sampled, a reset on its flow
    /// arrives 902 s after its last data and is joined with its idle age and owner, and read
    /// against the inventory's 900 s firewall; a reset on an unseen flow has no idle age.
    #[test]
    fn watch_joins_and_reads_resets_over_a_fake_host() {
        let (l, r) = (a("198.18.0.10:40000"), a("198.18.2.10:5432"));
        let mut host = FakeHost {
            sockets: vec![HostSocket {
                facts: SocketFacts {
                    local: Some(l),
                    remote: Some(r),
                    last_data_sent_ms: Some(2_000),
                    last_data_recv_ms: Some(2_000),
                    ..SocketFacts::default()
                },
                inode: 5,
            }],
            owners: Ok(Owners {
                by_inode: [(5, (77, "psql".to_string()))].into_iter().collect(),
                unreadable: 0,
            }),
            resets: vec![
                ResetSeen {
                    mono_s: 1900.0,
                    direction: Direction::Received,
                    local: l,
                    remote: r,
                },
                ResetSeen {
                    mono_s: 1901.0,
                    direction: Direction::Sent,
                    local: a("198.18.0.10:40001"),
                    remote: r,
                },
            ],
            ..FakeHost::default()
        };
        let cache = Mutex::new(IdleCache::default());
        sample_once(&mut host, &cache).unwrap();
        let mut joined = Vec::new();
        host.reset_events(&AtomicBool::new(false), &mut |ev| {
            let c = cache.lock().unwrap();
            joined.push(c.join(&ev, ev.mono_s));
        })
        .unwrap();
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].process.as_deref(), Some("psql"));
        assert_eq!(joined[0].pid, Some(77));
        assert!((joined[0].idle_s.unwrap() - 902.0).abs() < 1e-6);
        assert_eq!(joined[1].idle_s, None);
        let cat = Catalog::builtin().unwrap();
        let inv = crate::inventory::Inventory::parse(
            "[[hop]]\nname = \"dc-firewall\"\nkind = \"firewall\"\nidle_timeout_s = 900\n",
            "path.toml",
            &cat,
        )
        .unwrap();
        let paths = PathPolicy::inventory(inv, "path.toml");
        let text = read_reset(&joined[0], &paths.resolve(r), Some(&cat));
        assert_eq!(
            text,
            "reset after 902 s idle: matches firewall \"dc-firewall\" 900 s in inventory"
        );
        assert!(read_reset(&joined[1], &paths.resolve(r), Some(&cat)).contains("unknown"));
    }

    fn counters(estab: u64, abort: u64, out: u64) -> Option<(u64, u64)> {
        let text = format!(
            "Tcp: EstabResets OutRsts\nTcp: {estab} {out}\nTcpExt: TCPAbortOnData TCPAbortOnTimeout\nTcpExt: {abort} 1\n"
        );
        Some(reset_counters(&Counters::parse(&text, "snmp").unwrap()))
    }

    #[test]
    fn reset_counters_sum_received_causes() {
        assert_eq!(counters(3, 4, 9), Some((8, 9)));
        assert_eq!(reset_counters(&Counters::default()), (0, 0));
    }

    /// A close without counters rising is not a reset; received wins when both rose; only
    /// OutRsts rising is a sent reset; unreadable counters still report.
    #[test]
    fn destroy_gate_judges_by_counters() {
        let mut g = DestroyGate::new(counters(1, 0, 1));
        assert_eq!(g.judge(counters(1, 0, 1)), None);
        assert_eq!(g.judge(counters(2, 0, 1)), Some(Direction::Received));
        assert_eq!(g.judge(counters(2, 1, 2)), Some(Direction::Received));
        assert_eq!(g.judge(counters(2, 1, 3)), Some(Direction::Sent));
        assert_eq!(g.judge(None), Some(Direction::Received));
        assert_eq!(g.judge(counters(2, 1, 3)), Some(Direction::Received));
        assert_eq!(g.judge(counters(2, 1, 3)), None);
    }

    /// A destroyed socket joins the cache at its last send: the idle gap before it.
    #[test]
    fn destroyed_reset_joins_at_last_send() {
        let (ev, at) = destroyed_reset(
            500.0,
            Direction::Received,
            a("198.18.0.10:40000"),
            a("198.18.2.10:5432"),
            Some(1500),
        );
        assert_eq!((ev.mono_s, at), (500.0, 498.5));
        assert_eq!(ev.direction, Direction::Received);
    }
}
