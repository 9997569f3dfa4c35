#![allow(clippy::unwrap_used)]
//! The monitoring files in `deploy/` stay valid and in step with the exporter: the alert rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`), the dashboard is
//! valid JSON with a query in every panel, and every metric they name exists in a real scrape.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

#[path = "support/exporter.rs"]
mod exporter_support;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// promtool, or None outside CI. In CI (CI=true or IDLERESET_REQUIRE_PRIVILEGED=1) a missing
/// promtool is a failure: `.ci/install-deps` installs it.
fn promtool() -> Option<Command> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some(Command::new("promtool"));
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("IDLERESET_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(
        !ci,
        "promtool is missing; .ci/install-deps installs it (Debian package prometheus)"
    );
    eprintln!("promtool not installed: skipping the promtool checks");
    None
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(mut check) = promtool() else { return };
    let rules = deploy().join("prometheus/alerts.yml");
    let out = check.args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(deploy().join("prometheus"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_is_json_with_a_query_per_panel() {
    let text = std::fs::read_to_string(deploy().join("grafana/dashboard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = v["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert!(t["expr"].as_str().unwrap().contains("idlereset_"), "{t}");
        }
    }
}

/// `idlereset_*` names used in a file, with histogram sample suffixes folded to the family.
fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("idlereset_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_metric_named_in_deploy_exists_in_a_scrape() {
    if !idlereset_linux::privilege::require_or_skip(
        "every_metric_named_in_deploy_exists_in_a_scrape",
    ) {
        return;
    }
    let exporter = exporter_support::start(&["--path-timeout", "900"]);
    let mut s = TcpStream::connect(exporter.addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    drop(exporter);
    let samples: Vec<&str> = resp
        .lines()
        .filter(|l| l.starts_with("idlereset_"))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    for file in ["prometheus/alerts.yml", "grafana/dashboard.json"] {
        let text = std::fs::read_to_string(deploy().join(file)).unwrap();
        for name in names_in(&text) {
            // The histogram only has samples once the tracefs reader runs; its family is declared.
            let declared = resp.contains(&format!(
                "# TYPE {} ",
                name.trim_end_matches("_bucket").trim_end_matches("_count")
            ));
            assert!(
                samples.contains(&name.as_str()) || declared,
                "{file} uses {name}, which the exporter does not export:\n{resp}"
            );
        }
    }
}
