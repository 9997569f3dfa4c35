#![allow(clippy::unwrap_used)]
//! `replay --live` on the real kernel: choices are applied to a lab and verified with traffic.

use std::process::Command;

use idlereset_linux::privilege::require_or_skip;

fn live(answers: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args([
            "replay",
            "firewall-900",
            "--live",
            "--json",
            "--answers",
            answers,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn recommended_path_ends_with_a_verified_surviving_connection() {
    if !require_or_skip("recommended_path_ends_with_a_verified_surviving_connection") {
        return;
    }
    let v = live("B,C,B,C");
    assert_eq!(v["live"]["incident"], "reset", "{v}");
    assert_eq!(v["live"]["final_outcome"], "survived", "{v}");
    assert_eq!(v["total_minutes"], v["optimal_minutes"]);
    let verified: Vec<&str> = v["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["verification"].as_str())
        .collect();
    assert!(
        verified.iter().any(|s| s.contains("Survived")),
        "{verified:?}"
    );
}

#[test]
fn sysctl_only_trap_ends_with_a_verified_reset() {
    if !require_or_skip("sysctl_only_trap_ends_with_a_verified_reset") {
        return;
    }
    let v = live("B,A,D,A");
    assert_eq!(v["live"]["final_outcome"], "reset", "{v}");
    let applied = v["live"]["applied"].as_array().unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert!(
        applied[0]
            .as_str()
            .unwrap()
            .contains("tcp_keepalive_time=300")
    );
}
