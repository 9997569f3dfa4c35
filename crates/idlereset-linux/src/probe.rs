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

use idlereset_core::probe::{
    Bracket, Failure, Precision, RungResult, SHORT_RUNG_S, ladder, refine,
};
use idlereset_core::reverse::{CONTROL_HELLO, MAX_LINE, Token, test_hello};
use serde::Serialize;
use socket2::{Domain, Socket, TcpKeepalive, Type};

use crate::error::{LinuxError, Result};
use crate::netns::NetNs;
use crate::tcpinfo::{TCP_ESTABLISHED, tcp_info};

/// What to measure and how politely.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The server to probe (`addr:port`).
    pub target: SocketAddr,
    /// Longest idle to test.
    pub max: Duration,
    /// How narrow the bracket must get before stopping.
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
    /// Seconds since the measurement started.
    pub elapsed_s: f64,
    /// Pass number (1, then refinements).
    pub pass: u32,
    /// Idle durations still waiting for their verdict, seconds.
    pub pending: Vec<u32>,
    /// Longest idle survived so far, seconds.
    pub survived_up_to: Option<f64>,
    /// Shortest idle failed so far, seconds, and how.
    pub failed_from: Option<(f64, Failure)>,
}

impl Progress {
    fn now(t0: Instant, pass: u32, pending: Vec<u32>, bracket: &Bracket) -> Progress {
        Progress {
            elapsed_s: t0.elapsed().as_secs_f64(),
            pass,
            pending,
            survived_up_to: bracket.low,
            failed_from: bracket.high,
        }
    }
}

/// The outcome of one rung, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct RungOutcome {
    /// The idle tested, seconds.
    pub idle_s: u32,
    /// The pass it belongs to.
    pub pass: u32,
    /// What happened.
    pub result: RungResult,
}

/// What [`run`] or [`run_reverse`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    /// Bounds on the path's idle timeout.
    pub bracket: Bracket,
    /// Wall time the measurement took, seconds.
    pub elapsed_s: f64,
    /// Connections opened.
    pub connections: usize,
    /// Passes run.
    pub passes: u32,
    /// Every rung, in the order they finished.
    pub rungs: Vec<RungOutcome>,
    /// The wall-time limit stopped the measurement early.
    pub truncated: bool,
}

enum State {
    Connecting { since: Instant },
    Idle(IdleWatch),
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

/// At most this many passes (one, then refinements).
const MAX_PASSES: u32 = 3;

/// Rungs at start delay 0, plus, from [`SHORT_RUNG_S`] (16 s) up (where the kernel's timer wheel rounds keepalive
/// timers to a second or more), copies started later by the given fractions of an eighth of
/// their duration (about one wheel granule): the copies fire at other actual idles, which
/// narrows the bracket below the granule at the cost of that delay.
fn with_phases(idles: &[u32], fractions: &[f64]) -> Vec<(u32, f64)> {
    let mut v: Vec<(u32, f64)> = idles.iter().map(|&d| (d, 0.0)).collect();
    for &d in idles.iter().filter(|&&d| d >= SHORT_RUNG_S) {
        let granule = (f64::from(d) / 8.0).min(131.0);
        v.extend(fractions.iter().map(|f| (d, f * granule)));
    }
    v
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
    let first = ladder(1, max, cfg.precision, cfg.connections);
    let long = first.iter().filter(|&&d| d >= SHORT_RUNG_S).count().max(1);
    let copies = (cfg.connections.saturating_sub(first.len()) / long).min(3);
    let fractions: Vec<f64> = (1..=copies)
        .map(|i| i as f64 / (copies + 1) as f64)
        .collect();
    let mut rungs_todo = with_phases(&first, &fractions);
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
        if truncated || pass >= MAX_PASSES {
            break;
        }
        // Refine inside the bracket. The same whole-second rungs may come back: started at other
        // phases of the timer wheel they fire at other actual idles.
        rungs_todo = match (bracket.low, bracket.high) {
            (Some(l), Some((h, _))) if !cfg.precision.satisfied(l, h) => {
                let lo = l.floor().max(1.0) as u32;
                let hi = h.ceil() as u32;
                let base = refine(
                    f64::from(lo) - 1.0,
                    f64::from(hi) + 1.0,
                    cfg.precision,
                    cfg.connections / 4,
                );
                with_phases(&base, &[0.25, 0.5, 0.75])
            }
            _ => Vec::new(),
        };
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
    idles: &[(u32, f64)],
    t0: Instant,
    bracket: &mut Bracket,
    outcomes: &mut Vec<RungOutcome>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<bool> {
    // Connect in order of start delay (then shortest first); pop from the end.
    let mut order: Vec<(u32, f64)> = idles.to_vec();
    order.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    let pass_start = Instant::now();
    let mut rungs: Vec<Rung> = Vec::new();
    let pace = Duration::from_secs_f64(1.0 / f64::from(cfg.connect_rate.max(1)));
    let mut last_progress = Instant::now() - Duration::from_secs(1);
    let mut next_connect = Instant::now();
    loop {
        let now = Instant::now();
        if t0.elapsed() > cfg.wall_limit {
            return Ok(true);
        }
        while now >= next_connect
            && order
                .last()
                .is_some_and(|&(_, delay)| pass_start.elapsed().as_secs_f64() >= delay)
        {
            let Some((d, _)) = order.pop() else { break };
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
                            // The kernel's idle clock starts at the last packet received (the
                            // SYN-ACK), not when this loop noticed: back-date to it.
                            let ago = Duration::from_millis(u64::from(i.last_ack_recv_ms));
                            let now = Instant::now();
                            r.state = State::Idle(IdleWatch::new(
                                now.checked_sub(ago).unwrap_or(now),
                                r.idle_s,
                            ));
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
                State::Idle(ref mut w) => w.check(sock),
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
            order.retain(|&(d, _)| f64::from(d) < h);
        }
        let pending: Vec<u32> = rungs
            .iter()
            .filter(|r| !matches!(r.state, State::Done))
            .map(|r| r.idle_s)
            .chain(order.iter().map(|&(d, _)| d))
            .collect();
        if last_progress.elapsed() >= Duration::from_millis(500) || pending.is_empty() {
            let mut p = pending.clone();
            p.sort_unstable();
            progress(&Progress::now(t0, pass, p, bracket));
            last_progress = Instant::now();
        }
        if pending.is_empty() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Watches one idle connection until its first keepalive probe decides its fate.
///
/// The kernel's keepalive timer sits in the timer wheel, whose granularity grows with the
/// expiry (at HZ=250: 256 ms up to 16 s, 2 s up to 131 s, 16 s up to 17 min, 131 s beyond), so
/// the probe goes out up to one granule *after* TCP_KEEPIDLE. Every result therefore carries the
/// idle actually measured: until the probe's ACK (survived), the RST or the FIN (failed), or the
/// moment the kernel reported an unanswered probe (blackhole).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleWatch {
    /// When the kernel's idle clock started (the last packet received at connect time).
    pub established: Instant,
    /// TCP_KEEPIDLE of this connection.
    pub idle_s: u32,
    /// When an unanswered probe was first seen (seconds since `established`).
    first_probe_s: Option<f64>,
}

/// Upper bound on how late the timer wheel may fire a timer of `d` seconds, plus slack.
fn latest_probe(d: f64) -> f64 {
    d * 1.15 + 3.0
}

impl IdleWatch {
    pub fn new(established: Instant, idle_s: u32) -> IdleWatch {
        IdleWatch {
            established,
            idle_s,
            first_probe_s: None,
        }
    }

    /// The connection's fate, once decided.
    pub fn check(&mut self, sock: &Socket) -> Option<RungResult> {
        let since = self.established.elapsed().as_secs_f64();
        let failed = |failure, idle_s| Some(RungResult::Failed { failure, idle_s });
        if let Ok(Some(e)) = sock.take_error() {
            let f = if e.raw_os_error() == Some(libc::ETIMEDOUT) {
                Failure::Blackhole
            } else {
                Failure::Reset
            };
            return failed(f, self.first_probe_s.unwrap_or(since));
        }
        let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match sock.peek(&mut one) {
            Ok(0) => return failed(Failure::Fin, since),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return failed(Failure::Reset, since),
        }
        let info = tcp_info(sock).ok()?;
        // Any ACK after the handshake answers a keepalive probe: nothing else is in flight.
        let ack_at = since - f64::from(info.last_ack_recv_ms) / 1000.0;
        if ack_at > 0.5 {
            return Some(RungResult::Survived { idle_s: ack_at });
        }
        if info.probes > 0 && self.first_probe_s.is_none() {
            self.first_probe_s = Some(since);
        }
        let grace = (3.0 * f64::from(info.rtt_us) / 1e6 + 0.5).max(1.5);
        match self.first_probe_s {
            Some(p) if info.probes >= 2 || since > p + grace => failed(Failure::Blackhole, p),
            None if since > latest_probe(f64::from(self.idle_s)) => {
                failed(Failure::Blackhole, since)
            }
            _ => None,
        }
    }
}

/// Result of the refresh test.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshOutcome {
    /// Keepalive interval used, seconds.
    pub interval_s: u32,
    /// How long the connection was held, seconds.
    pub held_s: f64,
    /// A byte sent after the hold was acknowledged.
    pub carried_data: bool,
    /// How it failed ([`Failure::None`] when the byte was acknowledged).
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
    let mut watch = IdleWatch::new(t0, u32::MAX);
    while t0.elapsed() < hold {
        if let Some(RungResult::Failed { failure, .. }) = watch.check(&sock) {
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
    use std::io::Write;
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
    let ctrl = connect(CONTROL_HELLO.to_string(), Some(1))?;
    let mut ctrl = ControlLines::new(ctrl)?;
    let token = ctrl.session()?;
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
                    let s = connect(test_hello(&token, next_id, d), None)?;
                    open.insert(next_id, (d, s));
                }
                next_connect += pace;
            }
            for (id, res) in ctrl.results()? {
                if let Some((d, _s)) = open.remove(&id) {
                    bracket.add(res);
                    outcomes.push(RungOutcome {
                        idle_s: d,
                        pass,
                        result: res,
                    });
                }
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
                progress(&Progress::now(t0, pass, pending.clone(), &bracket));
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

/// The client's end of the control connection: bounded lines from the listener.
struct ControlLines {
    sock: std::net::TcpStream,
    buf: Vec<u8>,
}

impl ControlLines {
    fn new(sock: std::net::TcpStream) -> Result<ControlLines> {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| LinuxError::socket("configure", "control connection", e))?;
        Ok(ControlLines {
            sock,
            buf: Vec::with_capacity(MAX_LINE),
        })
    }

    /// Complete lines read so far (without waiting longer than the read timeout).
    fn read_lines(&mut self) -> Result<Vec<Vec<u8>>> {
        use std::io::Read;
        let mut chunk = [0u8; 512];
        let n = match (&self.sock).read(&mut chunk) {
            Ok(0) => {
                return Err(LinuxError::Unsupported(
                    "the listener closed the control connection".into(),
                ));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(LinuxError::socket("read", "control connection", e)),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            lines.push(self.buf.drain(..=i).collect());
        }
        if self.buf.len() > MAX_LINE {
            return Err(LinuxError::Unsupported(format!(
                "the listener sent a line longer than {MAX_LINE} bytes: {}",
                idlereset_core::reverse::describe(&self.buf)
            )));
        }
        Ok(lines)
    }

    /// Wait (up to 10 s) for the listener's `SESSION <token>`.
    fn session(&mut self) -> Result<Token> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Some(line) = self.read_lines()?.into_iter().next() {
                return idlereset_core::reverse::parse_session(&line).map_err(|e| {
                    LinuxError::Unsupported(format!(
                        "the listener refused the session ({e}): {}",
                        idlereset_core::reverse::describe(&line)
                    ))
                });
            }
        }
        Err(LinuxError::Unsupported(
            "the listener sent no session token within 10 s".into(),
        ))
    }

    /// Results received since the last call.
    fn results(&mut self) -> Result<Vec<(u32, RungResult)>> {
        Ok(self
            .read_lines()?
            .iter()
            .filter_map(|l| idlereset_core::reverse::parse_result(&String::from_utf8_lossy(l)))
            .collect())
    }
}
