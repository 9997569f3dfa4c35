//! `idlereset logs` end to end: the built binary on synthetic log files, checking the JSON
//! contract (design.md), exit codes and the SVG plot.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

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
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    for b in idlereset_core::logs::signatures::BUILTINS {
        assert!(
            script.contains(&format!("-e \"{}\"", b.literal)),
            "bench/logs.sh lacks {:?}",
            b.literal
        );
    }
}
