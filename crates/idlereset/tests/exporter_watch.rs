#![allow(clippy::unwrap_used)]
//! `exporter` and `watch` against the real-kernel lab (issue 8's tests): the exporter's
//! /metrics is valid exposition text, reports the sockets without keepalive a test opened, and
//! the conntrack INVALID counter rises when mid-stream packets hit a strict firewall; `watch`
//! reports a lab reset with the right idle age within a second.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/exporter.rs"]
mod exporter_support;

use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::server::DbServer;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::NetNs;
use idlereset_linux::privilege::require_or_skip;

const PORT: u16 = 5432;

macro_rules! privileged {
    ($name:literal) => {
        if !require_or_skip($name) {
            return;
        }
    };
}

async fn lab(fw: FirewallSettings) -> Lab {
    Lab::create(LabSpec::new(0, fw), None, Ownership::Foreground)
        .await
        .unwrap()
}

/// Connect from `ns` to the lab database, optionally with SO_KEEPALIVE, and do one round trip.
fn connect(ns: &NetNs, db: SocketAddr, keepalive: bool) -> TcpStream {
    ns.run(|| {
        let s = TcpStream::connect_timeout(&db, Duration::from_secs(3)).unwrap();
        if keepalive {
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::KeepAlive, &true).unwrap();
        }
        s
    })
    .unwrap()
}

fn round_trip(s: &mut TcpStream) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"PING\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::other("eof"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A running exporter and the port it serves on (from its ready file). Interrupted on drop.
struct Exporter {
    addr: SocketAddr,
    _running: exporter_support::RunningExporter,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        let running = exporter_support::start(args);
        Exporter {
            addr: running.addr,
            _running: running,
        }
    }

    /// One scrape, on a blocking thread (the lab's server runs on this runtime).
    async fn scrape(&self) -> String {
        let addr = self.addr;
        tokio::task::spawn_blocking(move || scrape_at(addr))
            .await
            .unwrap()
    }
}

fn scrape_at(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    body.to_string()
}

/// Structural check of OpenMetrics text: every sample belongs to a family declared by `# TYPE`
/// before it, names and label sets are well formed, values are numbers, the text ends in `# EOF`.
/// When promtool is installed, it must parse the text too (exit 0, or 3 = lint remarks only).
fn assert_valid_exposition(text: &str) {
    let mut families: Vec<(String, String)> = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    for l in &lines[..lines.len() - 1] {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap();
            assert!(name_ok(n), "bad family name in {l}");
            assert!(
                [
                    "gauge",
                    "counter",
                    "histogram",
                    "info",
                    "stateset",
                    "unknown",
                    "summary"
                ]
                .contains(&t),
                "{l}"
            );
            families.push((n.to_string(), t.to_string()));
            continue;
        }
        if l.starts_with("# HELP ") || l.starts_with("# UNIT ") {
            continue;
        }
        assert!(!l.starts_with('#'), "unknown comment {l}");
        let (series, value) = l.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {l}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad sample name in {l}");
        if let Some(labels) = series.split_once('{').map(|x| x.1) {
            let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{l}"));
            for kv in labels.split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{l}"));
                assert!(name_ok(k) && v.starts_with('"'), "bad label in {l}");
            }
        }
        let (fam, t) = families
            .last()
            .unwrap_or_else(|| panic!("sample before any TYPE: {l}"));
        let suffix_ok = match t.as_str() {
            "counter" => name == format!("{fam}_total") || name == format!("{fam}_created"),
            "histogram" => ["_bucket", "_sum", "_count", "_created"]
                .iter()
                .any(|s| name == format!("{fam}{s}")),
            _ => name == fam,
        };
        assert!(
            suffix_ok,
            "sample {name} does not belong to family {fam} ({t})"
        );
        assert!(name.starts_with("idlereset_"), "{name} lacks the prefix");
    }
    if let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(3),
            "promtool check metrics failed to parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The value of the first sample line starting with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_reports_sockets_without_keepalive_and_invalid_rising() {
    privileged!("exporter_reports_sockets_without_keepalive_and_invalid_rising");
    let mut fw = FirewallSettings::new(Profile::Reject, 60);
    fw.loose = false; // mid-stream packets without an entry are INVALID
    fw.drop_invalid = false; // ... and still pass, so the flow keeps working
    let lab = lab(fw).await;
    let _db = DbServer::start(lab.ns("db").unwrap(), PORT, None).unwrap();
    let db = SocketAddr::new(lab.topology().db_addr(false), PORT);
    let app = lab.ns("app").unwrap();
    let mut plain: Vec<TcpStream> = (0..3).map(|_| connect(app, db, false)).collect();
    let mut with_ka = connect(app, db, true);
    for s in plain.iter_mut().chain(std::iter::once(&mut with_ka)) {
        assert!(round_trip(s).unwrap().starts_with("PONG"));
    }

    let app_exp = Exporter::start(&[
        "--netns",
        app.name(),
        "--path-timeout",
        "60",
        "--no-reset-events",
    ]);
    let text = app_exp.scrape().await;
    eprintln!("{text}");
    assert_valid_exposition(&text);
    let comm = own_comm();
    let series = |m: &str| format!("idlereset_{m}{{process=\"{comm}\"}}");
    assert_eq!(
        value(&text, &series("tcp_sockets_without_keepalive")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &series("tcp_established_sockets")),
        Some(4.0),
        "{text}"
    );
    // SO_KEEPALIVE alone: the first probe after the default 7200 s, later than 60 s.
    assert_eq!(
        value(&text, &series("tcp_sockets_keepalive_too_late")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "idlereset_source_up{source=\"sockdiag\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "idlereset_source_up{source=\"procfs\"}"),
        Some(1.0)
    );
    drop(app_exp);

    // INVALID: forget the flows on fw, then send mid-stream: with loose=0 conntrack cannot pick
    // them up and classifies the packets INVALID.
    let fw_ns = lab.ns("fw").unwrap();
    let fw_exp = Exporter::start(&["--netns", fw_ns.name(), "--no-reset-events"]);
    let before_text = fw_exp.scrape().await;
    assert_valid_exposition(&before_text);
    let before = value(&before_text, "idlereset_conntrack_invalid_total").unwrap();
    assert!(
        value(&before_text, "idlereset_conntrack_entries ").unwrap() >= 4.0,
        "{before_text}"
    );
    fw_ns
        .run(|| {
            idlereset_linux::conntrack::Ctnetlink::open()
                .unwrap()
                .flush()
                .unwrap()
        })
        .unwrap();
    for s in &mut plain {
        // The packets pass (drop_invalid=false), so the round trip still works.
        assert!(round_trip(s).unwrap().starts_with("PONG"));
    }
    let after_text = fw_exp.scrape().await;
    let after = value(&after_text, "idlereset_conntrack_invalid_total").unwrap();
    assert!(
        after >= before + 2.0,
        "INVALID counter did not rise: {before} -> {after}"
    );
}

/// Mount tracefs when the machine has not (CI containers often do not).
fn ensure_tracefs() {
    if idlereset_linux::tracefs::find_root().is_err() {
        let ok = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tracefs is not mounted and mounting it failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_a_lab_reset_with_its_idle_age() {
    privileged!("watch_reports_a_lab_reset_with_its_idle_age");
    ensure_tracefs();
    let lab = lab(FirewallSettings::new(Profile::Reject, 2)).await;
    let _db = DbServer::start(lab.ns("db").unwrap(), PORT, None).unwrap();
    let db = SocketAddr::new(lab.topology().db_addr(false), PORT);
    let app = lab.ns("app").unwrap();
    let mut conn = connect(app, db, false);
    assert!(round_trip(&mut conn).unwrap().starts_with("PONG"));
    let last_activity = Instant::now();
    let local = conn.local_addr().unwrap();

    let mut watch = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args([
            "watch",
            "--json",
            "--netns",
            app.name(),
            "--path-timeout",
            "2",
        ])
        .args(["--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The exporter's reset histogram runs the same pipeline in the background.
    let exporter = Exporter::start(&["--netns", app.name()]);
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });

    // Idle past the firewall's 2 s (its timer has 1 s granularity), then use the connection.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(last_activity.elapsed())).await;
    let sent_at = Instant::now();
    let idle_expected = sent_at.duration_since(last_activity).as_secs_f64();
    let err = round_trip(&mut conn).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let mut event = None;
    while let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(3)) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["local"] == local.to_string() {
            event = Some((at, v));
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = watch.wait().unwrap();
    let (at, v) = event.expect("watch printed no event for the lab connection");
    eprintln!("{v}");
    let latency = at.duration_since(sent_at);
    assert!(latency < Duration::from_secs(1), "event after {latency:?}");
    assert_eq!(v["direction"], "received");
    assert_eq!(v["remote"], db.to_string());
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(v["process"], own_comm());
    let idle = v["idle_s"].as_f64().unwrap();
    assert!(
        (idle - idle_expected).abs() < 0.3,
        "idle {idle} s, expected {idle_expected:.2} s"
    );
    let reading = v["reading"].as_str().unwrap();
    assert!(
        reading.contains("matches the path timeout 2 s"),
        "{reading}"
    );
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    let text = exporter.scrape().await;
    assert_valid_exposition(&text);
    let hist = |le: &str| {
        value(
            &text,
            &format!("idlereset_reset_idle_seconds_bucket{{le=\"{le}\",direction=\"received\"}}"),
        )
        .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
    };
    assert_eq!(hist("1.0"), 0.0, "{text}");
    assert_eq!(hist("5.0"), 1.0, "the 3.5 s reset belongs in le=5: {text}");
    assert_eq!(
        value(&text, "idlereset_source_up{source=\"tracefs\"}"),
        Some(1.0)
    );
    drop(exporter);
    // Interrupted watch removes its tracefs instance.
    assert!(status.code().is_some(), "watch died by signal");
    let inst = idlereset_linux::tracefs::find_root()
        .unwrap()
        .join("instances")
        .join(format!("idlereset-{}", watch.id()));
    assert!(
        !inst.exists(),
        "tracefs instance {} left behind",
        inst.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_tracefs_uses_sock_diag_destroy_events() {
    privileged!("watch_without_tracefs_uses_sock_diag_destroy_events");
    let lab = lab(FirewallSettings::new(Profile::Reject, 2)).await;
    let _db = DbServer::start(lab.ns("db").unwrap(), PORT, None).unwrap();
    let db = SocketAddr::new(lab.topology().db_addr(false), PORT);
    let app = lab.ns("app").unwrap();
    // A connection closed normally must not be reported.
    let mut quiet = connect(app, db, false);
    assert!(round_trip(&mut quiet).unwrap().starts_with("PONG"));
    let mut conn = connect(app, db, false);
    assert!(round_trip(&mut conn).unwrap().starts_with("PONG"));
    let last_activity = Instant::now();
    let local = conn.local_addr().unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args([
            "watch",
            "--json",
            "--source",
            "sock-diag",
            "--netns",
            app.name(),
            "--path-timeout",
            "2",
        ])
        .args(["--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(quiet);
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(last_activity.elapsed())).await;
    let idle_expected = last_activity.elapsed().as_secs_f64();
    let err = round_trip(&mut conn).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    drop(conn); // the owner closes the reset socket: the kernel destroys it
    let mut events = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let done = v["local"] == local.to_string();
        events.push(v);
        if done {
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = watch.wait();
    let v = events
        .iter()
        .find(|v| v["local"] == local.to_string())
        .expect("no event for the reset connection");
    assert_eq!(
        events.len(),
        1,
        "only the reset connection is reported: {events:?}"
    );
    assert_eq!(v["remote"], db.to_string());
    assert_eq!(v["pid"], std::process::id());
    let idle = v["idle_s"].as_f64().unwrap();
    assert!(
        (idle - idle_expected).abs() < 0.5,
        "idle {idle} s, expected {idle_expected:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_invalid_counter_rises_after_the_asymmetric_fault() {
    privileged!("exporter_invalid_counter_rises_after_the_asymmetric_fault");
    let mut fw = FirewallSettings::new(Profile::Reject, 60);
    fw.loose = false;
    let lab = lab(fw).await;
    // A busy flow: db streams ~2 MB/s to app through fw.
    let flow = idlereset_lab::traffic::BusyFlow::start(&lab, 7412, 2_000_000, None).unwrap();
    let fw_exp = Exporter::start(&["--netns", lab.ns("fw").unwrap().name(), "--no-reset-events"]);
    let before = value(&fw_exp.scrape().await, "idlereset_conntrack_invalid_total").unwrap();
    idlereset_lab::fault::asymmetric(&lab, Duration::from_secs(4), std::future::pending())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = fw_exp.scrape().await;
    assert_valid_exposition(&text);
    let after = value(&text, "idlereset_conntrack_invalid_total").unwrap();
    flow.stop();
    assert!(
        after >= before + 10.0,
        "INVALID counter after the asymmetric fault: {before} -> {after}"
    );
}
