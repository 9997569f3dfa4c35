#![allow(clippy::unwrap_used)]
//! `replay --live` on the real kernel: choices are applied to a lab and verified with traffic.

use std::process::Command;

use idlereset_linux::privilege::require_or_skip;

fn live(answers: &str) -> serde_json::Value {
    live_of("firewall-900", answers)
}

fn live_of(replay: &str, answers: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["replay", replay, "--live", "--json", "--answers", answers])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The lab verdicts the transcript recorded, round by round.
fn verifications(v: &serde_json::Value) -> Vec<&str> {
    v["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["verification"].as_str())
        .collect()
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
    let verified = verifications(&v);
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

/// The frozen-timer replay runs the lab's own `nat-43200-invalid` story and its fixes, and every
/// choice that changes the system is judged by the run that made that change.
#[test]
fn frozen_timer_replay_is_judged_by_the_story_runs() {
    if !require_or_skip("frozen_timer_replay_is_judged_by_the_story_runs") {
        return;
    }
    // Recommended path: plot, read the timeout, check INVALID counters, be_liberal=1, alert.
    let v = live_of("nat-frozen-timer", "B,A,B,B,A");
    assert_eq!(v["live"]["lab_preset"], "nat-43200-invalid", "{v}");
    assert_eq!(v["live"]["incident"], "reset", "{v}");
    assert_eq!(v["live"]["final_outcome"], "survived", "{v}");
    let verified = verifications(&v);
    assert!(
        verified
            .iter()
            .any(|s| s.contains("`be_liberal=1`") && s.contains(": helps")),
        "{verified:?}"
    );
    let applied = v["live"]["applied"].as_array().unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
}
