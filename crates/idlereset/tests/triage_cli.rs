#![allow(clippy::unwrap_used)]
//! `idlereset triage` through the command line: help, the fast path without probing, the JSON
//! contract (insta snapshot, in a fresh namespace so the host's sockets do not leak in), the
//! Markdown report, bad inputs, and the alert names it cites against the deploy files.

use std::process::Command;

use idlereset_linux::privilege::require_or_skip;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
}

#[path = "support/scratch_ns.rs"]
mod scratch_ns;
use scratch_ns::test_ns;

#[path = "support/cli.rs"]
mod cli_support;

/// An application log in the lab's format: one connection survives 300 s idle, one fails
/// after 960 s, one after 1000 s.
fn write_log(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("app.log");
    let lines = [
        "2026-01-01T00:00:00Z conn=1 event=connect local=198.18.1.10:40000 peer=198.18.2.10:5432",
        "2026-01-01T00:00:01Z conn=1 event=query ok idle_s=0.000",
        "2026-01-01T00:05:01Z conn=1 event=query ok idle_s=300.000",
        "2026-01-01T00:21:01Z conn=1 event=error error=\"Connection reset by peer (os error 104)\" idle_s=960.000 during=query",
        "2026-01-01T00:21:02Z conn=2 event=connect local=198.18.1.10:40002 peer=198.18.2.10:5432",
        "2026-01-01T00:21:03Z conn=2 event=query ok idle_s=0.000",
        "2026-01-01T00:37:43Z conn=2 event=error error=\"Connection reset by peer (os error 104)\" idle_s=1000.000 during=query",
    ];
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("idlereset-triage-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn help_has_examples_and_the_steps() {
    let out = bin().args(["triage", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Examples:"));
    assert!(text.contains("--probe-at-risk"));
    assert!(text.contains("keepalive-ineffective"));
}

#[test]
fn without_probing_it_is_fast_and_says_what_it_skipped() {
    let out = bin().args(["triage", "--json"]).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["elapsed_s"].as_f64().unwrap() < 2.0, "{}", v["elapsed_s"]);
    assert_eq!(v["steps"][0]["status"], "skipped");
    assert_eq!(v["steps"][1]["status"], "skipped");
    assert_eq!(v["steps"][2]["status"], "skipped");
    assert_eq!(v["verdict"]["cause"], "inconclusive");
    assert!(!v["verdict"]["next"].as_array().unwrap().is_empty());
}

/// Python's `logging.basicConfig()` prints no time: triage says the reset line was found but
/// could not be timed (step summary, evidence, `evidence.logs.untimed_lines`).
#[test]
fn untimed_reset_lines_are_named_not_missed() {
    let dir = tmpdir("untimed");
    let log = dir.join("app.log");
    std::fs::write(
        &log,
        "INFO:app:query ok\nERROR:app:query failed\nTraceback (most recent call last):\n\
         psycopg2.OperationalError: server closed the connection unexpectedly\n",
    )
    .unwrap();
    let out = bin()
        .args(["triage", "--json", "--skip-host", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["evidence"]["logs"]["untimed_lines"], 1);
    assert_eq!(v["evidence"]["logs"]["events"], 0);
    let summary = v["steps"][0]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("1 reset-like line(s) found but none could be timed"),
        "{summary}"
    );
    let evidence = v["verdict"]["evidence"].to_string();
    assert!(evidence.contains("none could be timed"), "{evidence}");
}

#[test]
fn unreadable_inputs_are_reported_not_fatal() {
    let dir = tmpdir("bad");
    let pcap = dir.join("bad.pcap");
    std::fs::write(&pcap, b"not a capture at all").unwrap();
    let out = bin()
        .args([
            "triage",
            "--json",
            "--log",
            "/nonexistent/app.log",
            "--pcap",
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][0]["status"], "not-possible");
    assert!(
        v["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/app.log")
    );
    let details = v["steps"][1]["details"].to_string();
    assert!(details.contains("bad.pcap"), "{details}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_capture_with_an_unsafe_verdict_is_flagged_with_its_hint() {
    // A Nokia-format pcap (written by editcap) is damage from its first records on.
    let nokia = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../idlereset-core/tests/fixtures/lab-reset-v4-editcap-nokia.pcap"
    );
    let out = bin()
        .args(["triage", "--json", "--pcap", nokia])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let details = v["steps"][1]["details"].to_string();
    assert!(details.contains("verdict unsafe"), "{details}");
    assert!(details.contains("editcap -F pcap"), "{details}");
}

#[test]
fn json_contract_snapshot_and_report() {
    if !require_or_skip("triage_cli::json_contract_snapshot_and_report") {
        return;
    }
    let ns = test_ns();
    let dir = tmpdir("snap");
    let log = write_log(&dir);
    let report = dir.join("incident.md");
    let out = bin()
        .args(["triage", "--json", "--netns", ns.0.name(), "--log"])
        .arg(&log)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    cli_support::assert_exit(&out, 1);
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Contract fields.
    for k in ["steps", "verdict", "path_timeout_s", "failure", "fix"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["verdict"]["cause"], "middlebox-idle-timeout");
    assert!(v["fix"]["keepalive"]["time_s"].as_u64().unwrap() < 300);
    // Volatile: timing, and the namespace's name.
    v["elapsed_s"] = serde_json::json!("[elapsed]");
    let text = serde_json::to_string_pretty(&v)
        .unwrap()
        .replace(ns.0.name(), "[netns]");
    insta::assert_snapshot!("triage_json_log_only", text);

    let md = std::fs::read_to_string(&report).unwrap();
    for h in [
        "## Summary",
        "## Timeline",
        "## Evidence",
        "## Root cause",
        "## Fix",
        "## Verification",
        "## Rollback",
        "## Monitoring",
    ] {
        assert!(md.contains(h), "report lacks {h}");
    }
    let inv = std::fs::read_to_string(dir.join("incident.inventory.toml")).unwrap();
    // The written inventory is one `plan` accepts.
    let plan = bin()
        .args(["plan", "--json"])
        .arg(dir.join("incident.inventory.toml"))
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{inv}\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_alert_triage_names_exists_in_the_deploy_files() {
    let alerts = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    for a in idlereset_core::triage::fix::all_alerts() {
        assert!(
            alerts.contains(&format!("alert: {a}\n")),
            "{a} not in alerts.yml"
        );
    }
}
