//! Admission control for servers that face the network (`listen`, the exporter): connection
//! slots counted globally and per source address, an accept loop that survives EMFILE with a
//! back-off, a log throttle for what strangers can trigger, and the file descriptor limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many connections a server takes.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one source address at most.
    pub max_per_source: usize,
    /// Connections from one source address that have not finished their handshake (first
    /// line, request head), at most.
    pub max_pending_per_source: usize,
}

/// The connection counters of one server; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    counters: Arc<Mutex<Counters>>,
    caps: Caps,
}

impl Admission {
    /// Counters for a server with these caps (the global cap kept below the fd limit).
    pub fn new(caps: Caps) -> Admission {
        Admission {
            counters: Arc::default(),
            caps,
        }
    }

    /// The caps in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// A slot for a new connection from `ip` (IPv4-mapped addresses folded to IPv4), if the
    /// caps allow one; dropping it gives the place back.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        Slot::acquire(&self.counters, ip.to_canonical(), &self.caps)
    }
}

/// Open and still-handshaking connections, in total and per source address.
#[derive(Debug, Default)]
struct Counters {
    open: usize,
    per_source: HashMap<IpAddr, PerSource>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerSource {
    open: usize,
    pending: usize,
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub struct Slot {
    counters: Arc<Mutex<Counters>>,
    ip: IpAddr,
    pending: bool,
}

impl Slot {
    /// A place for a new connection from `ip`, if the caps allow one.
    fn acquire(counters: &Arc<Mutex<Counters>>, ip: IpAddr, cfg: &Caps) -> Option<Slot> {
        let mut c = counters.lock().ok()?;
        if c.open >= cfg.max_connections {
            return None;
        }
        let s = c.per_source.entry(ip).or_default();
        if s.open >= cfg.max_per_source || s.pending >= cfg.max_pending_per_source {
            if s.open == 0 {
                c.per_source.remove(&ip);
            }
            return None;
        }
        s.open += 1;
        s.pending += 1;
        c.open += 1;
        Some(Slot {
            counters: counters.clone(),
            ip,
            pending: true,
        })
    }

    /// The first line arrived: no longer counted as handshaking.
    pub(crate) fn handshake_done(&mut self) {
        if std::mem::take(&mut self.pending)
            && let Ok(mut c) = self.counters.lock()
            && let Some(s) = c.per_source.get_mut(&self.ip)
        {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        c.open = c.open.saturating_sub(1);
        if let Some(s) = c.per_source.get_mut(&self.ip) {
            s.open = s.open.saturating_sub(1);
            if self.pending {
                s.pending = s.pending.saturating_sub(1);
            }
            if s.open == 0 {
                c.per_source.remove(&self.ip);
            }
        }
    }
}

/// At most one message per kind every `Throttle::EVERY`.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// `Some(suppressed since the last message)` when a message may go out now.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < Self::EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Exponential back-off for a failing `accept` (10 ms doubling to 1 s), reporting the first
/// failure of a burst and its recovery, at most once every 10 s (a server at its fd limit with
/// connections churning would otherwise log every recovery).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
    logged: bool,
    throttle: Throttle,
}

impl Backoff {
    /// Count a failure; true when it should be logged (first of a burst, not throttled).
    pub fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.failures == 1 {
            self.logged = self.throttle.hit(Instant::now()).is_some();
            return self.logged;
        }
        false
    }

    /// How long to wait before the next accept.
    pub fn delay(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(7) as u32;
        Duration::from_millis(10 * 2u64.pow(exp)).min(Duration::from_secs(1))
    }

    /// After a success: `Some(failures)` when a logged burst just ended.
    pub(crate) fn recovered(&mut self) -> Option<u64> {
        let n = std::mem::take(&mut self.failures);
        (n > 0 && std::mem::take(&mut self.logged)).then_some(n)
    }
}

/// Accept the next connection; a failing `accept` (EMFILE, ENFILE, ENOBUFS...) backs off and
/// is reported through `on_error` once per burst, its recovery too.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    backoff: &mut Backoff,
    on_error: &dyn Fn(&str),
) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => {
                if let Some(n) = backoff.recovered() {
                    on_error(&format!("accept works again after {n} failures"));
                }
                return c;
            }
            Err(e) => {
                if backoff.failed() {
                    on_error(&format!(
                        "accept failed: {e}; backing off and retrying (logged once per burst)"
                    ));
                }
                tokio::time::sleep(backoff.delay()).await;
            }
        }
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Caps {
        Caps {
            max_connections: 3,
            max_per_source: 2,
            max_pending_per_source: 1,
        }
    }

    #[test]
    fn slots_respect_global_per_source_and_pending_caps() {
        let c = Arc::new(Mutex::new(Counters::default()));
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        let cfg = cfg();
        let mut s1 = Slot::acquire(&c, a, &cfg).expect("first");
        assert!(
            Slot::acquire(&c, a, &cfg).is_none(),
            "one pending per source"
        );
        s1.handshake_done();
        let mut s2 = Slot::acquire(&c, a, &cfg).expect("second after handshake");
        s2.handshake_done();
        assert!(Slot::acquire(&c, a, &cfg).is_none(), "two per source");
        let s3 = Slot::acquire(&c, b, &cfg).expect("other source");
        assert!(Slot::acquire(&c, b, &cfg).is_none(), "global cap of 3");
        drop(s1);
        drop(s3);
        assert!(Slot::acquire(&c, b, &cfg).is_some());
        drop(s2);
        let n = c.lock().map(|c| (c.open, c.per_source.len())).ok();
        assert_eq!(n, Some((0, 0)), "every slot returned");
    }

    #[test]
    fn throttle_and_backoff() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(0));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(11)), Some(2));
        let mut b = Backoff::default();
        assert!(b.failed());
        assert!(!b.failed());
        assert_eq!(b.delay(), Duration::from_millis(20));
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.delay(), Duration::from_secs(1));
        assert_eq!(b.recovered(), Some(22));
        assert_eq!(b.recovered(), None);
        assert!(!b.failed(), "a second burst within 10 s is not logged");
        assert_eq!(b.recovered(), None);
    }
}
