//! `idlereset logs` end to end: the built binary on synthetic log files, checking the JSON
//! contract (docs/json.md), exit codes and the SVG plot.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

#[path = "support/cli.rs"]
mod cli_support;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("idlereset-logs-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idlereset(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const FIELD_REPORT: &str = "\
2024-05-10T03:14:22Z INFO reconnecting upstream: unexpected EOF
2024-05-10T15:14:23Z INFO reconnecting upstream: unexpected EOF
2024-05-11T03:14:23Z INFO reconnecting upstream: unexpected EOF
";

#[test]
fn field_report_json_plot_and_exit_code() {
    let d = dir("field");
    let log = d.join("app.log");
    std::fs::write(&log, FIELD_REPORT).unwrap();
    let svg = d.join("plot.svg");
    let out = idlereset(&[
        "logs",
        log.to_str().unwrap(),
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    cli_support::assert_exit(&out, 1);
    let v = json(&out);
    assert_eq!(v["events"], 3);
    assert_eq!(v["pattern"], "connection-age-timer");
    assert_eq!(v["period_s"], 43200.5);
    assert!((v["drift_s_per_day"].as_f64().unwrap() - 1.0).abs() < 0.01);
    assert!(v["candidates"].as_array().unwrap().is_empty());
    assert!(v.get("idle_timeout_s").is_none());
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"));
    assert_eq!(
        plot.matches("<circle").count(),
        3 + 1,
        "three incidents and the legend marker"
    );
    assert!(plot.contains("drift +1.00 s/day"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn human_summary_names_file_line_and_sparkline() {
    let d = dir("human");
    let log = d.join("app.log");
    std::fs::write(&log, format!("starting\n{FIELD_REPORT}")).unwrap();
    let out = idlereset(&["logs", log.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("pattern: connection-age-timer"), "{text}");
    assert!(text.contains("app.log:2 [unexpected-eof]"), "{text}");
    assert!(text.contains("03:14:22, 15:14:23, 03:14:23"), "{text}");
    assert!(
        text.chars().any(|c| ('▁'..='█').contains(&c)),
        "sparkline: {text}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn idle_bracket_from_lab_workload_lines() {
    let d = dir("lab");
    let log = d.join("workload.log");
    let mut text = String::new();
    // Timeout 9 s (scaled lab): idles up to 8 s survive, 10-12 s fail.
    let mut t = 0.0f64;
    for (i, idle) in [2.0, 8.0, 10.5, 1.0, 7.5, 12.0, 3.0, 6.0, 11.0]
        .iter()
        .enumerate()
    {
        t += idle;
        let conn = i % 2;
        let stamp =
            jiff::Timestamp::from_millisecond(1_795_150_000_000 + (t * 1000.0) as i64).unwrap();
        if *idle > 9.0 {
            writeln!(text, "{stamp} conn={conn} event=error error=\"Connection reset by peer (os error 104)\" idle_s={idle}").unwrap();
        } else {
            writeln!(text, "{stamp} conn={conn} event=query ok idle_s={idle}").unwrap();
        }
    }
    std::fs::write(&log, text).unwrap();
    let v = json(&idlereset(&["logs", log.to_str().unwrap(), "--json"]));
    assert_eq!(v["pattern"], "idle-timeout");
    assert_eq!(v["idle_timeout_s"]["low"], 8.0);
    assert_eq!(v["idle_timeout_s"]["high"], 10.5);
    let v = json(&idlereset(&[
        "logs",
        log.to_str().unwrap(),
        "--json",
        "--no-connections",
    ]));
    assert!(v.get("idle_timeout_s").is_none());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn clean_logs_user_patterns_and_errors() {
    let d = dir("misc");
    let log = d.join("quiet.log");
    std::fs::write(&log, "2024-05-10T03:14:22Z upstream sent GOAWAY\n").unwrap();
    let out = idlereset(&["logs", log.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["events"], 0);
    let out = idlereset(&["logs", log.to_str().unwrap(), "--json", "--match", "GOAWAY"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["events"], 1);
    let out = idlereset(&["logs", log.to_str().unwrap(), "--match", "(unclosed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(unclosed"));
    let missing = d.join("missing.log");
    let out = idlereset(&["logs", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.log"));
    let out = idlereset(&["logs", log.to_str().unwrap(), "--tz", "Nowhere/Atlantis"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn zone_less_logs_follow_tz() {
    let d = dir("tz");
    let log = d.join("app.log");
    std::fs::write(&log, "2024-05-10 03:14:22,123 ERROR write: broken pipe\n").unwrap();
    let v = json(&idlereset(&[
        "logs",
        log.to_str().unwrap(),
        "--json",
        "--tz",
        "America/New_York",
    ]));
    assert_eq!(v["first_event"], "2024-05-10T07:14:22.123Z");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bench_script_counts_every_builtin_signature() {
    // bench/logs.sh compares with `rg -c` on the same signatures: keep its list in sync.
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/logs.sh"))
            .unwrap();
    for b in idlereset_core::logs::signatures::builtins() {
        assert!(
            script.contains(&format!("-e \"{}\"", b.literal)),
            "bench/logs.sh lacks {:?}",
            b.literal
        );
    }
}

/// Peak resident memory (VmHWM, KiB) of a running process.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Bytes a process has read so far.
fn read_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn file_truncated_mid_scan_gives_a_result_not_a_signal() {
    use std::io::Write as _;
    let d = dir("truncate");
    let log = d.join("app.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        let filler = "INFO request handled method=GET path=/api/v1/items status=200 bytes=1234";
        for k in 0..1_500_000u64 {
            if k % 1000 == 0 {
                writeln!(
                    f,
                    "{} ERROR read: connection reset by peer",
                    1_700_000_000 + k
                )
                .unwrap();
            } else {
                writeln!(f, "{} {filler}", 1_700_000_000 + k).unwrap();
            }
        }
    }
    let size = std::fs::metadata(&log).unwrap().len();
    let child = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["logs", log.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Truncate (logrotate's copytruncate) once the scan is under way.
    let t0 = std::time::Instant::now();
    while read_bytes(child.id()) < 4 << 20 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let started = read_bytes(child.id());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "killed by a signal or failed: {:?} {stderr}",
        out.status
    );
    assert!(started < size, "the scan ended before the truncation");
    let v = json(&out);
    let truncated = v["inputs"][0]["truncated_at"].as_u64().unwrap();
    assert!(truncated < size, "{truncated} vs {size}");
    assert!(v["events"].as_u64().unwrap() > 0);
    assert!(stderr.contains("shrank while it was read"), "{stderr}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_pipe_is_streamed_with_bounded_memory() {
    use std::io::Write as _;
    // A full gigabyte by default (IDLERESET_LOGS_PIPE_MB to change it). The scan's hot loops are
    // aho-corasick and memchr, which the dev profile optimises (see Cargo.toml), and the
    // generator below formats one timestamp per eight lines, so this stays cheap in a debug build.
    let mb: u64 = std::env::var("IDLERESET_LOGS_PIPE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["logs", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut events = 0u64;
    let mut sent = 0u64;
    let mut t = 1_100_000_000u64;
    let mut block: Vec<u8> = Vec::with_capacity(2 << 20);
    let mut k = 0u64;
    let mut ts = t.to_string();
    while sent < mb << 20 {
        block.clear();
        while block.len() < 1 << 20 {
            k += 1;
            if k.is_multiple_of(8) {
                // A reset every 300 s on one of 16 pool connections.
                writeln!(
                    block,
                    "{ts} ERROR conn={} read: connection reset by peer",
                    k % 16
                )
                .unwrap();
                events += 1;
                t += 300;
                ts = t.to_string();
            } else {
                block.extend_from_slice(ts.as_bytes());
                block.extend_from_slice(b" INFO request handled status=200 bytes=1234\n");
            }
        }
        stdin.write_all(&block).unwrap();
        sent += block.len() as u64;
    }
    // Everything is written and mostly consumed: the peak so far is the scan's.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let peak_kib = peak_rss_kib(pid);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    cli_support::assert_exit(&out, 1);
    let v = json(&out);
    eprintln!(
        "pipe: {} MiB, {events} events, peak RSS {:.1} MiB",
        sent >> 20,
        peak_kib as f64 / 1024.0
    );
    assert_eq!(v["events"].as_u64(), Some(events));
    assert_eq!(v["sampled"], events > 65_536);
    assert!(
        (v["period_s"].as_f64().unwrap() - 300.0).abs() < 0.01,
        "{v}"
    );
    // Before streaming, the whole input was held in memory (and 2 M events took 855 MB).
    assert!(
        peak_kib < 96 * 1024,
        "peak RSS {peak_kib} KiB for a {} MiB pipe",
        sent >> 20
    );
}

#[test]
fn dev_zero_is_a_clear_error_or_a_bounded_result() {
    let out = idlereset(&["logs", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/dev/zero: no line break"), "{stderr}");
    let out = idlereset(&["logs", "/dev/zero", "--max-bytes", "8M", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["inputs"][0]["bytes"], 8 << 20);
    assert_eq!(v["overlong_lines"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than"));
}

#[test]
fn follow_reports_incidents_as_they_happen_and_the_summary_on_ctrl_c() {
    use std::io::{BufRead as _, Write as _};
    let d = dir("follow");
    let log = d.join("app.log");
    std::fs::write(
        &log,
        "2024-05-10T03:14:22Z INFO reconnecting upstream: unexpected EOF\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["logs", "--follow", log.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["incident"], 1);
    // Appended later, and after a copytruncate.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"2024-05-10T15:14:23Z INFO reconnecting upstream: unexpected EOF\n")
        .unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (second["incident"].as_u64(), second["line"].as_u64()),
        (Some(2), Some(2))
    );
    std::fs::write(
        &log,
        "2024-05-11T03:14:23Z INFO reconnecting upstream: unexpected EOF\n",
    )
    .unwrap();
    let third: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (third["incident"].as_u64(), third["line"].as_u64()),
        (Some(3), Some(1))
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let summary: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(summary["events"], 3);
    assert_eq!(summary["pattern"], "connection-age-timer");
    assert_eq!(summary["inputs"][0]["restarts"], 1);
    assert_eq!(child.wait().unwrap().code(), Some(1));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn json_snapshot_of_a_java_log() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../idlereset-core/tests/fixtures/logs/java-pgjdbc-hikaricp.log"
    );
    let out = idlereset(&["logs", fixture, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let mut v = json(&out);
    // The fixture's absolute path depends on the checkout.
    v["inputs"][0]["name"] = "java-pgjdbc-hikaricp.log".into();
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
}

/// Logback's default pattern prints a time of day without a date: the reset lines are found,
/// and the output says they could not be timed and how to fix the pattern, not "no reset-like
/// lines".
#[test]
fn reset_lines_without_a_date_are_reported_as_untimed() {
    let d = dir("untimed");
    let log = d.join("app.log");
    std::fs::write(
        &log,
        "09:31:07.902 [http-nio-8080-exec-5] ERROR c.e.orders.OrderRepository - query failed\n\
         org.postgresql.util.PSQLException: An I/O error occurred while sending to the backend.\n\
         Caused by: java.net.SocketException: Connection reset\n",
    )
    .unwrap();
    let out = idlereset(&["logs", log.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 reset-like line(s) found but none could be timed"),
        "{text}"
    );
    assert!(text.contains("Add a date to the log pattern"), "{text}");
    assert!(!text.contains("no reset-like lines found"), "{text}");
}
