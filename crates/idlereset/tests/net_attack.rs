#![allow(clippy::unwrap_used)]
//! Attack tests on loopback against the two servers that face the network, `idlereset listen`
//! and `idlereset exporter`: oversized lines and headers, 5,000 connections, slow senders, a
//! second client using a guessed or observed session token, a server at its file descriptor
//! limit. The legitimate prober or scraper (from 127.0.0.1) must keep being served, the server
//! must stay up, its peak memory (VmHWM) bounded and its log short. Attackers use other
//! loopback source addresses (127.0.0.0/8 is all loopback), as strangers would.
//!
//! Bounded in count and time: at most 5,000 attack connections per test, each test under a
//! minute. Raising the file descriptor limits needs root (CAP_SYS_RESOURCE): privileged tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlereset_linux::privilege::require_or_skip;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

#[path = "support/exporter.rs"]
mod exporter_support;

/// The attack size the issue asks for.
const FLOOD: usize = 5000;
/// File descriptors the attacked server gets (soft = hard): far below the flood.
const SERVER_FDS: u64 = 512;

/// Lower a running server's RLIMIT_NOFILE (soft and hard) to `fds`, with util-linux's
/// `prlimit` (tests only; this process cannot use prlimit(2) without unsafe code). The server
/// sized its caps for its limit at start, so it now meets EMFILE: fd exhaustion.
fn lower_fd_limit(pid: u32, fds: u64) {
    let st = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={fds}:{fds}"))
        .status()
        .expect("prlimit (util-linux) is needed for the fd exhaustion tests");
    assert!(st.success(), "prlimit failed: {st}");
}

/// Room for the flood in this process (soft limit up to the hard one).
fn raise_own_fd_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= FLOOD as u64 + 200,
        "the hard RLIMIT_NOFILE ({hard}) is too low for {FLOOD} connections"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A blocking connection from `src` (a loopback address) to `dst`.
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddrV4::new(src, 0).into())?;
    s.connect_timeout(&dst.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// `n` connections from `src` that send nothing, opened without waiting for each handshake.
fn flood(src: Ipv4Addr, dst: SocketAddr, n: usize) -> Vec<Socket> {
    (0..n)
        .filter_map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
            s.bind(&SocketAddrV4::new(src, 0).into()).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&dst.into());
            Some(s)
        })
        .collect()
}

/// True when the server closed `s` (EOF or reset) within `within`.
fn closed_by_server(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an ERR line, then the close
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Slow senders that sent their first byte: a second byte 4 s later, then, 6 s after the
/// first, the server must have closed every one (its deadline is for the whole first line or
/// request head, 5 s, not per read).
fn assert_slow_senders_cut(slow: &mut [TcpStream]) {
    std::thread::sleep(Duration::from_secs(4));
    for s in slow.iter_mut() {
        let _ = s.write_all(b"D");
    }
    std::thread::sleep(Duration::from_secs(2));
    let cut = slow
        .iter()
        .filter(|s| closed_by_server(s, Duration::from_millis(200)))
        .count();
    assert_eq!(cut, slow.len(), "slow senders still held after 6 s");
}

/// A running `idlereset listen` with its log collected.
struct Listener {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start() -> Listener {
        Listener::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Listener {
        let mut child = Command::new(env!("CARGO_BIN_EXE_idlereset"))
            .args(["listen", "0", "--bind", "127.0.0.1"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stderr, lines) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            let mut addr = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on ").nth(1) {
                    addr = a.split(' ').next().map(str::to_string);
                }
                // Its limits are sized (from its fd limit) once it says what it accepts.
                if line.contains("accepting at most")
                    && let Some(a) = addr.take()
                {
                    let _ = tx.send(a);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no `listening on` and `accepting at most` lines within 30 s")
            .parse()
            .unwrap();
        Listener { child, addr, log }
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the listener died; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    /// The log stays short whatever strangers sent.
    fn assert_log_bounded(&self) {
        let log = self.log.lock().unwrap();
        let bytes: usize = log.iter().map(|l| l.len() + 1).sum();
        let longest = log.iter().map(String::len).max().unwrap_or(0);
        eprintln!("listener log: {} lines, {bytes} bytes", log.len());
        assert!(
            bytes < 64 * 1024 && longest < 400,
            "log:\n{}",
            log.join("\n")
        );
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `idlereset probe ADDR --reverse --max 3s`: the legitimate prober (from 127.0.0.1).
fn reverse_probe(addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["probe", &addr.to_string(), "--reverse", "--max", "3s"])
        .args(["--precision", "1s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_probe_measured_the_path(probe: Child) {
    let out = probe.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "probe failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let low = v["timeout_s"]["low"].as_f64().unwrap_or(0.0);
    assert!(
        low >= 2.5 && v["timeout_s"]["high"].is_null(),
        "loopback holds every rung up to 3 s: {v}"
    );
}

#[test]
fn listen_serves_the_prober_through_a_flood_oversized_lines_and_slow_senders() {
    if !require_or_skip("listen_serves_the_prober_through_a_flood_oversized_lines_and_slow_senders")
    {
        return;
    }
    raise_own_fd_limit();
    let t0 = Instant::now();
    let mut server = Listener::start();
    lower_fd_limit(server.child.id(), SERVER_FDS);
    let addr = server.addr;

    // 5,000 silent connections from one stranger, far above the server's 512 descriptors.
    let held = flood(lo(2), addr, FLOOD);
    assert!(
        held.len() >= FLOOD * 9 / 10,
        "opened {} of {FLOOD}",
        held.len()
    );
    // Slow senders from other strangers: a byte every 4 s.
    let mut slow: Vec<TcpStream> = (10..30)
        .filter_map(|i| connect_from(lo(i), addr).ok())
        .collect();
    // Oversized lines: 16 MB without a newline, from three more.
    let big = std::thread::spawn(move || {
        (40..43)
            .map(|i| {
                let Ok(mut s) = connect_from(lo(i), addr) else {
                    return 0;
                };
                let chunk = vec![b'A'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 16 << 20 {
                    match s.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                sent
            })
            .collect::<Vec<usize>>()
    });

    let probe = reverse_probe(addr);
    for s in &mut slow {
        let _ = s.write_all(b"I");
    }
    assert_slow_senders_cut(&mut slow);

    assert_probe_measured_the_path(probe);
    let sent = big.join().unwrap();
    assert!(
        sent.iter().all(|&n| n < 16 << 20),
        "the server kept reading a line without newline: {sent:?}"
    );
    server.assert_alive();
    let hwm = vm_hwm_kib(server.child.id());
    eprintln!(
        "listen under attack: VmHWM {hwm} KiB, {:.1} s, oversized senders cut after {sent:?} bytes",
        t0.elapsed().as_secs_f64()
    );
    assert!(hwm < 64 * 1024, "listener peak memory {hwm} KiB");
    drop(held);

    // Fd exhaustion: 1,000 silent connections from 50 addresses (within the per-address caps)
    // against 512 descriptors. accept fails (EMFILE), the server backs off and logs it once;
    // the line deadline frees the descriptors and the next probe is served.
    let many: Vec<Socket> = (100..150).flat_map(|i| flood(lo(i), addr, 20)).collect();
    std::thread::sleep(Duration::from_secs(7));
    server.assert_alive();
    drop(many);
    let failures = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    eprintln!("accept-failure notices during exhaustion: {failures}");
    assert!(
        (1..=2).contains(&failures),
        "exhaustion reached, and logged at most once per 10 s: {failures} notices"
    );
    assert_probe_measured_the_path(reverse_probe(addr));
    server.assert_alive();
    let hwm = vm_hwm_kib(server.child.id());
    eprintln!(
        "listen after fd exhaustion: VmHWM {hwm} KiB, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(hwm < 64 * 1024, "listener peak memory {hwm} KiB");
    server.assert_log_bounded();
    eprintln!("{}", server.log.lock().unwrap().join("\n"));
}

/// Read one line from the control connection (bounded, with a deadline).
fn read_line(s: &mut TcpStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 256 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into_owned()),
            Ok(1) => line.push(b[0]),
            _ => return None,
        }
    }
    None
}

#[test]
fn listen_refuses_guessed_and_observed_session_tokens_from_strangers() {
    if !require_or_skip("listen_refuses_guessed_and_observed_session_tokens_from_strangers") {
        return;
    }
    let mut server = Listener::start();
    let addr = server.addr;
    let mut ctrl = connect_from(lo(1), addr).unwrap();
    ctrl.write_all(b"IDLERESET CTRL\n").unwrap();
    let session = read_line(&mut ctrl, Duration::from_secs(5)).unwrap();
    let token = session.strip_prefix("SESSION ").unwrap().to_string();
    assert_eq!(token.len(), 32, "a 128-bit token: {session}");

    // The old takeover: a second control connection naming the session.
    let mut takeover = connect_from(lo(5), addr).unwrap();
    takeover
        .write_all(format!("IDLERESET CTRL {token}\n").as_bytes())
        .unwrap();
    assert!(closed_by_server(&takeover, Duration::from_secs(3)));
    // The observed token from another address, and a guessed token from the prober's own.
    let mut observed = connect_from(lo(5), addr).unwrap();
    observed
        .write_all(format!("IDLERESET TEST {token} 2 1\n").as_bytes())
        .unwrap();
    assert!(closed_by_server(&observed, Duration::from_secs(3)));
    let mut guessed = connect_from(lo(1), addr).unwrap();
    guessed
        .write_all(format!("IDLERESET TEST {} 3 1\n", "0".repeat(32)).as_bytes())
        .unwrap();
    assert!(closed_by_server(&guessed, Duration::from_secs(3)));

    // The prober's own test still works, and only its result comes back.
    let mut own = connect_from(lo(1), addr).unwrap();
    own.write_all(format!("IDLERESET TEST {token} 1 1\n").as_bytes())
        .unwrap();
    let result = read_line(&mut ctrl, Duration::from_secs(10)).unwrap();
    assert!(result.starts_with("RESULT 1 survived "), "{result}");
    assert_eq!(read_line(&mut ctrl, Duration::from_secs(3)), None);
    server.assert_alive();
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(&token),
        "the log must not hand out the token:\n{log}"
    );
}

#[test]
fn listen_allow_admits_only_the_listed_networks() {
    if !require_or_skip("listen_allow_admits_only_the_listed_networks") {
        return;
    }
    let mut server = Listener::start_with(&["--allow", "127.0.0.1/32", "--allow", "::1/128"]);
    let mut stranger = connect_from(lo(7), server.addr).unwrap();
    let _ = stranger.write_all(b"IDLERESET CTRL\n");
    assert!(closed_by_server(&stranger, Duration::from_secs(3)));
    let mut ctrl = connect_from(lo(1), server.addr).unwrap();
    ctrl.write_all(b"IDLERESET CTRL\n").unwrap();
    let session = read_line(&mut ctrl, Duration::from_secs(5)).unwrap();
    assert!(session.starts_with("SESSION "), "{session}");
    server.assert_alive();
    // The refusal is logged by the server and read from its stderr by a thread: on a loaded
    // machine the line may arrive after the session above, so wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log.lock().unwrap().join("\n");
        if log.contains("127.0.0.7") && log.contains("--allow") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request on a fresh connection from `src`; the raw response.
fn http(src: Ipv4Addr, addr: SocketAddr, request: &str) -> String {
    let mut s = connect_from(src, addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str, method: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

#[test]
fn exporter_serves_scrapes_through_a_flood_oversized_headers_and_slow_senders() {
    if !require_or_skip(
        "exporter_serves_scrapes_through_a_flood_oversized_headers_and_slow_senders",
    ) {
        return;
    }
    raise_own_fd_limit();
    let exporter = exporter_support::start(&["--no-reset-events"]);
    lower_fd_limit(exporter.child.id(), SERVER_FDS);
    let addr = exporter.addr;
    let held = flood(lo(2), addr, FLOOD);
    assert!(held.len() >= FLOOD * 9 / 10);
    let mut slow: Vec<TcpStream> = (10..30)
        .filter_map(|i| connect_from(lo(i), addr).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"G");
    }
    // A 1 MB header: 431 or a close, never buffered whole.
    let big = http(
        lo(40),
        addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "A".repeat(1 << 20)
        ),
    );
    assert!(
        big.is_empty() || big.starts_with("HTTP/1.1 431"),
        "{big:.200}"
    );

    let t = Instant::now();
    let scrape = http(lo(1), addr, &get("/metrics", "GET"));
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape:.300}");
    assert!(scrape.contains("idlereset_source_up"), "{scrape:.300}");
    eprintln!(
        "scrape during the flood: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    assert_slow_senders_cut(&mut slow);

    // HEAD and 405 semantics.
    let head = http(lo(1), addr, &get("/metrics", "HEAD"));
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let missing = http(lo(1), addr, &get("/nope", "HEAD"));
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.ends_with("\r\n\r\n"),
        "HEAD 404 without body: {missing}"
    );
    let post = http(lo(1), addr, &get("/metrics", "POST"));
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head\r\n"),
        "{post}"
    );

    let mut child = exporter;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "the exporter died"
    );
    let hwm = vm_hwm_kib(child.child.id());
    eprintln!("exporter under attack: VmHWM {hwm} KiB");
    assert!(hwm < 128 * 1024, "exporter peak memory {hwm} KiB");
    drop(held);
    let _ = &mut child;
}

#[test]
fn an_unprivileged_exporter_reports_the_conntrack_table_down() {
    if !require_or_skip("an_unprivileged_exporter_reports_the_conntrack_table_down") {
        return;
    }
    let exporter = exporter_support::start_with(&["--no-reset-events"], |c| {
        use std::os::unix::process::CommandExt;
        c.uid(65534).gid(65534);
    });
    let body = http(lo(1), exporter.addr, &get("/metrics", "GET"));
    for source in ["conntrack", "conntrack_stats", "conntrack_table"] {
        assert!(
            body.contains(&format!("idlereset_source_up{{source=\"{source}\"}} 0")),
            "nobody cannot read {source}:\n{body}"
        );
    }
    assert!(
        !body.contains("idlereset_conntrack_frozen_timer_flows"),
        "{body}"
    );
}
