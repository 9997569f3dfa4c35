//! The socket engine of `idlereset probe`: many idle connections at once, each with
//! TCP_KEEPIDLE set to the idle duration it tests, watched through TCP_INFO.
//!
//! A rung connects (paced), sends nothing, and lets the kernel send its first keepalive probe
//! after exactly its idle duration. Then:
//! - an ACK arriving after the probe time: the path still knew the flow (`Survived`);
//! - a RST (SO_ERROR / recv = ECONNRESET): `Reset`;
//! - no ACK within a grace period while probes go unanswered: `Blackhole`;
//! - EOF before the probe: the peer or a proxy closed the idle connection (`Fin`, at the
//!   measured idle).
//!
//! Rungs above the shortest failure so far are closed early; survivors are closed cleanly.
//! The planning and bookkeeping are pure and live in `idlereset_core::probe`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idlereset_core::probe::{Bracket, Failure, Precision, RungResult, ladder, refine};
use serde::Serialize;
use socket2::{Domain, Socket, TcpKeepalive, Type};

use crate::error::{LinuxError, Result};
use crate::netns::NetNs;
use crate::tcpinfo::{TCP_ESTABLISHED, tcp_info};

/// What to measure and how politely.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub target: SocketAddr,
    pub max: Duration,
    pub precision: Precision,
    /// Connection budget per pass.
    pub connections: usize,
    /// New connections per second.
    pub connect_rate: u32,
    /// Hard upper bound on wall time.
    pub wall_limit: Duration,
    /// Create the sockets inside this namespace (lab use).
    pub netns: Option<String>,
}

/// Live state for a progress display.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub elapsed_s: f64,
    pub pass: u32,
    pub pending: Vec<u32>,
    pub survived_up_to: Option<f64>,
    pub failed_from: Option<(f64, Failure)>,
}

/// The outcome of one rung, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct RungOutcome {
    pub idle_s: u32,
    pub pass: u32,
    pub result: RungResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    pub bracket: Bracket,
    pub elapsed_s: f64,
    pub connections: usize,
    pub passes: u32,
    pub rungs: Vec<RungOutcome>,
    /// The wall-time limit stopped the measurement early.
    pub truncated: bool,
}

enum State {
    Connecting { since: Instant },
    Idle { established: Instant },
    Done,
}

struct Rung {
    idle_s: u32,
    sock: Option<Socket>,
    state: State,
}

fn make_socket(cfg: &ProbeConfig, keepidle: u32, keepintvl: u32) -> Result<Socket> {
    let domain = if cfg.target.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let target = cfg.target;
    let build = move || -> std::io::Result<Socket> {
        let s = Socket::new(domain, Type::STREAM, None)?;
        s.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(u64::from(keepidle)))
                .with_interval(Duration::from_secs(u64::from(keepintvl)))
                .with_retries(5),
        )?;
        s.set_keepalive(true)?;
        s.set_nonblocking(true)?;
        match s.connect(&target.into()) {
            Ok(()) => Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
            Err(e) => Err(e),
        }
    };
    let r = match &cfg.netns {
        Some(ns) => NetNs::open(ns)?.run(build)?,
        None => build(),
    };
    r.map_err(|e| LinuxError::socket("connect", cfg.target.to_string(), e))
}

/// Measure the idle timeout of the path to `cfg.target`.
pub fn run(cfg: &ProbeConfig, progress: &mut dyn FnMut(&Progress)) -> Result<ProbeOutcome> {
    let t0 = Instant::now();
    let max = (cfg.max.as_secs().clamp(1, 32767)) as u32;
    let mut bracket = Bracket::default();
    let mut outcomes = Vec::new();
    let mut used = 0usize;
    let mut pass = 0u32;
    let mut truncated = false;
    let mut rungs_todo = ladder(1, max, cfg.precision, cfg.connections);
    let mut tested = std::collections::BTreeSet::new();
    while !rungs_todo.is_empty() {
        pass += 1;
        used += rungs_todo.len();
        truncated |= run_pass(
            cfg,
            pass,
            &rungs_todo,
            t0,
            &mut bracket,
            &mut outcomes,
            progress,
        )?;
        if truncated {
            break;
        }
        tested.extend(rungs_todo.iter().copied());
        rungs_todo = match (bracket.low, bracket.high) {
            (Some(l), Some((h, _))) if !cfg.precision.satisfied(l, h) => {
                refine(l, h, cfg.precision, cfg.connections)
            }
            _ => Vec::new(),
        };
        // A rung already tested cannot narrow the bracket further (e.g. a FIN measured at
        // 4.02 s leaves only the 4 s rung inside (3, 4.02), and it fails the same way).
        rungs_todo.retain(|d| !tested.contains(d));
    }
    Ok(ProbeOutcome {
        bracket,
        elapsed_s: t0.elapsed().as_secs_f64(),
        connections: used,
        passes: pass,
        rungs: outcomes,
        truncated,
    })
}

fn run_pass(
    cfg: &ProbeConfig,
    pass: u32,
    idles: &[u32],
    t0: Instant,
    bracket: &mut Bracket,
    outcomes: &mut Vec<RungOutcome>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<bool> {
    // Open the longest rungs first: they matter last, pacing delays the short ones least.
    let mut order: Vec<u32> = idles.to_vec();
    order.sort_unstable_by(|a, b| b.cmp(a));
    let mut rungs: Vec<Rung> = Vec::new();
    let pace = Duration::from_secs_f64(1.0 / f64::from(cfg.connect_rate.max(1)));
    let mut last_progress = Instant::now() - Duration::from_secs(1);
    let mut next_connect = Instant::now();
    loop {
        let now = Instant::now();
        if t0.elapsed() > cfg.wall_limit {
            return Ok(true);
        }
        while now >= next_connect {
            let Some(d) = order.pop() else { break };
            let skip = bracket.high.is_some_and(|(h, _)| f64::from(d) >= h);
            if !skip {
                let sock = make_socket(cfg, d, 1)?;
                rungs.push(Rung {
                    idle_s: d,
                    sock: Some(sock),
                    state: State::Connecting {
                        since: Instant::now(),
                    },
                });
            }
            next_connect += pace;
        }
        for r in rungs.iter_mut() {
            let Some(sock) = r.sock.as_ref() else {
                continue;
            };
            let result = match r.state {
                State::Done => None,
                State::Connecting { since } => {
                    if let Ok(Some(e)) = sock.take_error() {
                        return Err(LinuxError::socket("connect", cfg.target.to_string(), e));
                    }
                    match tcp_info(sock) {
                        Ok(i) if i.state == TCP_ESTABLISHED => {
                            r.state = State::Idle {
                                established: Instant::now(),
                            };
                            None
                        }
                        _ if since.elapsed() > Duration::from_secs(10) => {
                            return Err(LinuxError::socket(
                                "connect",
                                cfg.target.to_string(),
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "no answer to SYN within 10 s",
                                ),
                            ));
                        }
                        _ => None,
                    }
                }
                State::Idle { established } => classify(sock, established, r.idle_s),
            };
            if let Some(res) = result {
                r.state = State::Done;
                r.sock = None; // close: FIN for survivors
                bracket.add(res);
                outcomes.push(RungOutcome {
                    idle_s: r.idle_s,
                    pass,
                    result: res,
                });
            }
        }
        // Rungs at or above the shortest failure cannot narrow the bracket: stop them.
        if let Some((h, _)) = bracket.high {
            for r in rungs
                .iter_mut()
                .filter(|r| !matches!(r.state, State::Done) && f64::from(r.idle_s) >= h)
            {
                r.state = State::Done;
                r.sock = None;
            }
            order.retain(|&d| f64::from(d) < h);
        }
        let pending: Vec<u32> = rungs
            .iter()
            .filter(|r| !matches!(r.state, State::Done))
            .map(|r| r.idle_s)
            .chain(order.iter().copied())
            .collect();
        if last_progress.elapsed() >= Duration::from_millis(500) || pending.is_empty() {
            let mut p = pending.clone();
            p.sort_unstable();
            progress(&Progress {
                elapsed_s: t0.elapsed().as_secs_f64(),
                pass,
                pending: p,
                survived_up_to: bracket.low,
                failed_from: bracket.high,
            });
            last_progress = Instant::now();
        }
        if pending.is_empty() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Decide a rung's fate, if it is decided yet.
pub(crate) fn classify(sock: &Socket, established: Instant, idle_s: u32) -> Option<RungResult> {
    let idle_f = f64::from(idle_s);
    let since = established.elapsed().as_secs_f64();
    if let Ok(Some(e)) = sock.take_error() {
        let failure = if e.raw_os_error() == Some(libc::ETIMEDOUT) {
            Failure::Blackhole
        } else {
            Failure::Reset
        };
        return Some(RungResult::Failed {
            failure,
            idle_s: idle_f,
        });
    }
    let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match sock.peek(&mut one) {
        Ok(0) => {
            return Some(RungResult::Failed {
                failure: Failure::Fin,
                idle_s: since,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Some(RungResult::Failed {
                failure: Failure::Reset,
                idle_s: idle_f,
            });
        }
        Err(_) => {
            return Some(RungResult::Failed {
                failure: Failure::Reset,
                idle_s: idle_f,
            });
        }
    }
    if since < idle_f {
        return None;
    }
    let info = tcp_info(sock).ok()?;
    let probe_at = idle_f;
    let ack_at = since - f64::from(info.last_ack_recv_ms) / 1000.0;
    if ack_at > probe_at - 0.5 {
        return Some(RungResult::Survived { idle_s: idle_f });
    }
    let grace = (3.0 * f64::from(info.rtt_us) / 1e6 + 0.5).max(1.5);
    if since > probe_at + grace {
        return Some(RungResult::Failed {
            failure: Failure::Blackhole,
            idle_s: idle_f,
        });
    }
    None
}

/// Result of the refresh test.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshOutcome {
    pub interval_s: u32,
    pub held_s: f64,
    /// A byte sent after the hold was acknowledged.
    pub carried_data: bool,
    pub failure: Failure,
}

/// Hold one connection for `hold` with keepalives every `interval`, then send one byte and check
/// it is acknowledged: detects middleboxes that ignore keepalives and frozen state timers.
pub fn refresh_test(cfg: &ProbeConfig, interval: u32, hold: Duration) -> Result<RefreshOutcome> {
    let sock = make_socket(cfg, interval.max(1), interval.max(1))?;
    let t0 = Instant::now();
    while tcp_info(&sock)
        .map(|i| i.state != TCP_ESTABLISHED)
        .unwrap_or(true)
    {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(LinuxError::Unsupported(format!(
                "refresh test: cannot connect to {}",
                cfg.target
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let fail = |failure| {
        Ok(RefreshOutcome {
            interval_s: interval,
            held_s: t0.elapsed().as_secs_f64(),
            carried_data: false,
            failure,
        })
    };
    while t0.elapsed() < hold {
        if let Some(RungResult::Failed { failure, .. }) = classify(&sock, t0, u32::MAX) {
            return fail(failure);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let held_s = t0.elapsed().as_secs_f64();
    if let Err(e) = (&sock).write_all_nonblocking(b"\n") {
        let _ = e;
        return fail(Failure::Reset);
    }
    let sent = Instant::now();
    while sent.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(_)) = sock.take_error() {
            return fail(Failure::Reset);
        }
        if tcp_info(&sock).map(|i| i.unacked == 0).unwrap_or(false) {
            return Ok(RefreshOutcome {
                interval_s: interval,
                held_s,
                carried_data: true,
                failure: Failure::None,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fail(Failure::Blackhole)
}

trait WriteNonblocking {
    fn write_all_nonblocking(&self, data: &[u8]) -> std::io::Result<()>;
}

impl WriteNonblocking for &Socket {
    fn write_all_nonblocking(&self, data: &[u8]) -> std::io::Result<()> {
        let n = self.send(data)?;
        if n == data.len() {
            Ok(())
        } else {
            Err(std::io::Error::other("short write"))
        }
    }
}

/// Reverse mode: the `idlereset listen` responder at `cfg.target` arms the keepalives, so the
/// probes travel server -> client; results come back on a control connection.
pub fn run_reverse(cfg: &ProbeConfig, progress: &mut dyn FnMut(&Progress)) -> Result<ProbeOutcome> {
    use std::io::{BufRead, BufReader, Write};
    let t0 = Instant::now();
    let connect = |hello: String, keepalive_s: Option<u32>| -> Result<std::net::TcpStream> {
        let target = cfg.target;
        let open = move || -> std::io::Result<std::net::TcpStream> {
            let s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
            if let Some(k) = keepalive_s {
                let sock = socket2::SockRef::from(&s);
                sock.set_tcp_keepalive(
                    &TcpKeepalive::new()
                        .with_time(Duration::from_secs(u64::from(k)))
                        .with_interval(Duration::from_secs(1)),
                )?;
                sock.set_keepalive(true)?;
            }
            (&s).write_all(hello.as_bytes())?;
            Ok(s)
        };
        let r = match &cfg.netns {
            Some(ns) => NetNs::open(ns)?.run(open)?,
            None => open(),
        };
        r.map_err(|e| {
            LinuxError::socket(
                "connect",
                format!("{} (is `idlereset listen` running there?)", cfg.target),
                e,
            )
        })
    };
    let session = format!(
        "{:x}{:x}",
        std::process::id(),
        t0.elapsed().as_nanos() as u64 ^ 0x5eed
    );
    let ctrl = connect(format!("IDLERESET CTRL {session}\n"), Some(1))?;
    ctrl.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| LinuxError::socket("configure", "control connection", e))?;
    let mut ctrl_lines = BufReader::new(ctrl);
    let max = (cfg.max.as_secs().clamp(1, 32767)) as u32;
    let mut bracket = Bracket::default();
    let mut outcomes = Vec::new();
    let (mut used, mut pass, mut next_id) = (0usize, 0u32, 0u32);
    let mut tested = std::collections::BTreeSet::new();
    let mut todo = ladder(1, max, cfg.precision, cfg.connections);
    let mut truncated = false;
    while !todo.is_empty() && !truncated {
        pass += 1;
        used += todo.len();
        tested.extend(todo.iter().copied());
        let mut open: std::collections::HashMap<u32, (u32, std::net::TcpStream)> =
            Default::default();
        let mut order = todo.clone();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let pace = Duration::from_secs_f64(1.0 / f64::from(cfg.connect_rate.max(1)));
        let mut next_connect = Instant::now();
        let mut last_progress = Instant::now() - Duration::from_secs(1);
        loop {
            if t0.elapsed() > cfg.wall_limit {
                truncated = true;
                break;
            }
            while Instant::now() >= next_connect {
                let Some(d) = order.pop() else { break };
                if bracket.high.is_none_or(|(h, _)| f64::from(d) < h) {
                    next_id += 1;
                    let s = connect(format!("IDLERESET TEST {session} {next_id} {d}\n"), None)?;
                    open.insert(next_id, (d, s));
                }
                next_connect += pace;
            }
            let mut line = String::new();
            match ctrl_lines.read_line(&mut line) {
                Ok(0) => {
                    return Err(LinuxError::Unsupported(
                        "the listener closed the control connection".into(),
                    ));
                }
                Ok(_) => {
                    if let Some((id, res)) = crate::listen::parse_result(&line) {
                        if let Some((d, _s)) = open.remove(&id) {
                            let res = match res {
                                RungResult::Survived { .. } => RungResult::Survived {
                                    idle_s: f64::from(d),
                                },
                                other => other,
                            };
                            bracket.add(res);
                            outcomes.push(RungOutcome {
                                idle_s: d,
                                pass,
                                result: res,
                            });
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(LinuxError::socket("read", "control connection", e)),
            }
            if let Some((h, _)) = bracket.high {
                open.retain(|_, (d, _)| f64::from(*d) < h);
                order.retain(|&d| f64::from(d) < h);
            }
            let mut pending: Vec<u32> = open
                .values()
                .map(|(d, _)| *d)
                .chain(order.iter().copied())
                .collect();
            pending.sort_unstable();
            if last_progress.elapsed() >= Duration::from_millis(500) || pending.is_empty() {
                progress(&Progress {
                    elapsed_s: t0.elapsed().as_secs_f64(),
                    pass,
                    pending: pending.clone(),
                    survived_up_to: bracket.low,
                    failed_from: bracket.high,
                });
                last_progress = Instant::now();
            }
            if pending.is_empty() {
                break;
            }
        }
        todo = match (bracket.low, bracket.high) {
            (Some(l), Some((h, _))) if !cfg.precision.satisfied(l, h) => {
                refine(l, h, cfg.precision, cfg.connections)
            }
            _ => Vec::new(),
        };
        todo.retain(|d| !tested.contains(d));
    }
    Ok(ProbeOutcome {
        bracket,
        elapsed_s: t0.elapsed().as_secs_f64(),
        connections: used,
        passes: pass,
        rungs: outcomes,
        truncated,
    })
}
