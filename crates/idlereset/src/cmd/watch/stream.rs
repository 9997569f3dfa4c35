//! The live reset pipeline shared by `watch` and `exporter`: tracepoint events from a private
//! tracefs instance, joined with a continuously sampled socket table that knows each flow's
//! idle time and owner.
//!
//! Why a sampler: the `tcp_*_reset` tracepoints carry the 4-tuple but not how long the
//! connection had been idle, nor its process. sock_diag's `tcp_info` has `last_data_sent` /
//! `last_data_recv`, so a thread dumps the established sockets every ~200 ms and keeps, per
//! 4-tuple, when data last moved and which process owns the socket. When a reset arrives the
//! flow's entry gives the idle age. The packet that provoked the reset (the app's first send
//! after the idle period) may itself show up in a sample just before the reset; the sampler
//! remembers the idle gap that such fresh activity ended, and the lookup uses that gap when the
//! activity is within a second of the reset.
//!
//! Tracepoints fire for every network namespace and do not say which; the sampler reads one
//! namespace (`--netns`), so events of other namespaces are reported with an unknown idle age.
//! Timestamps: the tracefs instance uses the `mono` clock and the sampler `CLOCK_MONOTONIC`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idlereset_core::resets::{Direction, parse_trace_line};
use idlereset_linux::NetNs;
use idlereset_linux::procfs::SocketOwners;
use idlereset_linux::sockdiag::{self, TcpFilter};
use idlereset_linux::tracefs::{self, RESET_EVENTS, TraceInstance};

/// Sampling period of the socket table.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long a flow that left the socket table stays known (the reset closes it).
const FORGET_AFTER_S: f64 = 10.0;

/// One reset, joined with what the sampler knew about its flow.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Monotonic seconds of the event.
    pub mono_s: f64,
    pub direction: Direction,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub idle_s: Option<f64>,
}

#[derive(Debug, Clone)]
struct Flow {
    inode: u64,
    /// Monotonic seconds when data last moved.
    active_at: f64,
    /// The idle gap the latest activity ended, and when that activity was seen.
    prev_gap: Option<f64>,
    seen_at: f64,
}

/// Flows by (local, remote) and owners by inode, updated by the sampler thread.
#[derive(Debug, Default)]
pub struct IdleCache {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    owners: HashMap<u64, (u32, String)>,
    last_owner_scan: f64,
}

impl IdleCache {
    /// Record one socket seen at `now` (monotonic s) idle for `idle_s`.
    fn observe(
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

    fn forget_old(&mut self, now: f64) {
        self.flows.retain(|_, f| now - f.seen_at < FORGET_AFTER_S);
        let live: HashSet<u64> = self.flows.values().map(|f| f.inode).collect();
        self.owners.retain(|i, _| live.contains(i));
    }

    /// The idle age of a flow at event time `ts` (monotonic s).
    pub fn idle_at(&self, local: SocketAddr, remote: SocketAddr, ts: f64) -> Option<(f64, u64)> {
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

    fn owner(&self, inode: u64) -> Option<&(u32, String)> {
        self.owners.get(&inode)
    }
}

/// One sampling pass in the calling thread's namespace.
fn sample_once(cache: &Mutex<IdleCache>) -> Result<(), String> {
    let now = tracefs::monotonic_s();
    let mut seen: Vec<(SocketAddr, SocketAddr, u64, f64)> = Vec::new();
    sockdiag::dump_tcp(TcpFilter::established(), |s| {
        if let Some(ms) = s.idle_ms() {
            seen.push((s.local, s.remote, s.inode, f64::from(ms) / 1000.0));
        }
    })
    .map_err(|e| e.to_string())?;
    let new_inodes: HashSet<u64> = {
        let mut c = cache
            .lock()
            .map_err(|_| "idle cache poisoned".to_string())?;
        for (l, r, inode, idle) in &seen {
            c.observe(now, *l, *r, *inode, *idle);
        }
        c.forget_old(now);
        if now - c.last_owner_scan < 1.0 {
            HashSet::new()
        } else {
            seen.iter()
                .map(|s| s.2)
                .filter(|i| *i != 0 && !c.owners.contains_key(i))
                .collect()
        }
    };
    if !new_inodes.is_empty() {
        // /proc is global: owners are found whatever namespace the sockets live in.
        if let Ok(o) = SocketOwners::scan(Some(&new_inodes)) {
            let mut c = cache
                .lock()
                .map_err(|_| "idle cache poisoned".to_string())?;
            c.last_owner_scan = now;
            for i in new_inodes {
                if let Some((pid, comm)) = o.process(i) {
                    c.owners.insert(i, (pid, comm.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Sample the sockets of `netns` (or this namespace) every [`SAMPLE_EVERY`] until `stop`.
pub fn spawn_sampler(
    netns: Option<String>,
    cache: Arc<Mutex<IdleCache>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let work = || -> Result<(), String> {
            let mut last_err = None;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = sample_once(&cache) {
                    if last_err.as_ref() != Some(&e) {
                        eprintln!("idlereset: socket sampler: {e}");
                    }
                    last_err = Some(e);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            Ok(())
        };
        match netns {
            Some(name) => {
                let ns = NetNs::open(&name).map_err(|e| e.to_string())?;
                ns.run(work).map_err(|e| e.to_string())?
            }
            None => work(),
        }
    })
}

/// Read reset events until `stop`, joining each with the cache and handing it to `on_event`.
/// Creating the tracefs instance is the caller's first error to report.
pub fn run_events(
    cache: &Mutex<IdleCache>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Joined),
) -> Result<(), idlereset_linux::LinuxError> {
    let mut inst = TraceInstance::create(&RESET_EVENTS)?;
    let mut pending = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        inst.read_lines(Duration::from_millis(200), |line| {
            match parse_trace_line(line) {
                Ok(Some(ev)) => pending.push(ev),
                Ok(None) => {}
                Err(e) => eprintln!("idlereset: unreadable trace line: {e}"),
            }
        })?;
        if pending.is_empty() {
            continue;
        }
        let Ok(c) = cache.lock() else { break };
        for ev in pending.drain(..) {
            let known = c.idle_at(ev.local, ev.remote, ev.ts_s);
            let owner = known.and_then(|(_, inode)| c.owner(inode)).cloned();
            on_event(Joined {
                mono_s: ev.ts_s,
                direction: ev.direction,
                local: ev.local,
                remote: ev.remote,
                pid: owner.as_ref().map(|o| o.0),
                process: owner.map(|o| o.1),
                idle_s: known.map(|k| k.0),
            });
        }
    }
    inst.remove()
}

/// Reset counters of the calling thread's namespace: (EstabResets + aborts, OutRsts).
fn reset_counters() -> Option<(u64, u64)> {
    let mut c = idlereset_core::netstat::Counters::default();
    for f in [
        "/proc/thread-self/net/snmp",
        "/proc/thread-self/net/netstat",
    ] {
        let text = std::fs::read_to_string(f).ok()?;
        c.add_file(&text, f).ok()?;
    }
    let received = ["EstabResets"]
        .iter()
        .filter_map(|k| c.counter("Tcp", k))
        .sum::<u64>()
        + ["TCPAbortOnData", "TCPAbortOnTimeout"]
            .iter()
            .filter_map(|k| c.counter("TcpExt", k))
            .sum::<u64>();
    Some((received, c.counter("Tcp", "OutRsts").unwrap_or(0)))
}

/// The fallback where tracefs is unavailable: sockets destroyed in `netns` (sock_diag destroy
/// multicast), kept as resets when the namespace's reset counters (EstabResets, TCPAbortOnData,
/// TCPAbortOnTimeout) rose since the previous event; `sent` when OutRsts rose too. The idle age
/// is the gap that the socket's last send (from its final tcp_info) ended, looked up in the
/// sampler's cache. Reported when the owner closes the socket, so slower than the tracepoints.
pub fn run_destroy_events(
    netns: Option<String>,
    cache: &Mutex<IdleCache>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Joined) + Send,
) -> Result<(), idlereset_linux::LinuxError> {
    let mut work = move || {
        let mut last = reset_counters();
        idlereset_linux::sockdiag::destroy::watch_destroyed(stop, |s| {
            if s.remote.port() == 0 {
                return;
            }
            let now = reset_counters();
            let (rose, sent) = match (last, now) {
                (Some((r0, o0)), Some((r1, o1))) => (r1 > r0 || o1 > o0, o1 > o0 && r1 == r0),
                _ => (true, false),
            };
            last = now;
            if !rose {
                return;
            }
            let ts = tracefs::monotonic_s();
            let sent_at = ts - f64::from(s.last_data_sent_ms.unwrap_or(0)) / 1000.0;
            let Ok(c) = cache.lock() else { return };
            let known = c.idle_at(s.local, s.remote, sent_at);
            let owner = known.and_then(|(_, inode)| c.owner(inode)).cloned();
            on_event(Joined {
                mono_s: ts,
                direction: if sent {
                    Direction::Sent
                } else {
                    Direction::Received
                },
                local: s.local,
                remote: s.remote,
                pid: owner.as_ref().map(|o| o.0),
                process: owner.map(|o| o.1),
                idle_s: known.map(|k| k.0),
            });
        })
    };
    match netns {
        Some(name) => NetNs::open(&name)?.run(work)?,
        None => work(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn idle_age_from_samples() {
        let (l, r) = (a("198.18.0.10:40000"), a("198.18.2.10:5432"));
        let mut c = IdleCache::default();
        // Sampled at t=100 idle 10 s (active at 90), still idle at t=150.
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
        c.observe(100.0, l, r, 7, 10.0); // active at 90
        c.observe(992.0, l, r, 7, 0.01); // the send at ~992: ends a 902 s gap
        let (idle, _) = c.idle_at(l, r, 992.2).unwrap();
        assert!((idle - 901.99).abs() < 0.01, "{idle}");
        // Long after that activity, the age counts from it again.
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
}
