#![allow(clippy::unwrap_used)]
//! `triage` on lab incidents, on the real kernel: bring a lab up with its workload, let the
//! app's connection fail once, then run `triage` in the `app` namespace with the app's log and
//! `--remote` the database. The verdict must name the story's cause and the measured bracket
//! must hold the firewall's (scaled) timeout, within the time budget of 1.2 x the path timeout
//! + 10 s.

use std::process::Command;
use std::time::{Duration, Instant};

use idlereset_linux::privilege::require_or_skip;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
}

/// A supervised lab, taken down when dropped (also when the test fails).
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = bin().args(["lab", "down", &self.0]).output();
    }
}

fn lab_up(tag: &str, knobs: &[&str]) -> LabGuard {
    let name = format!("idlereset-tg{tag}{}", std::process::id() % 100_000);
    let out = bin()
        .args(["lab", "up", "--name", &name, "--pool-size", "1"])
        .args(knobs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    LabGuard(name)
}

fn app_log(lab: &str) -> std::path::PathBuf {
    idlereset_lab::supervise::app_log_file(lab)
}

/// Wait until the app logged a failed query (the incident happened once) and its pool opened
/// the next connection, which step 5 then sees.
fn wait_for_failure(lab: &str, timeout: Duration) {
    let t = Instant::now();
    loop {
        let log = std::fs::read_to_string(app_log(lab)).unwrap_or_default();
        if let Some(at) = log.find("event=error")
            && log[at..].contains("event=connect")
        {
            return;
        }
        assert!(
            t.elapsed() < timeout,
            "no failure in the app log of {lab} after {timeout:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn triage(lab: &str) -> serde_json::Value {
    let out = bin()
        .args(["triage", "--netns", &format!("{lab}-app"), "--log"])
        .arg(app_log(lab))
        .args([
            "--remote",
            "198.18.2.10:5432",
            "--probe-max",
            "60s",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(1) || out.status.code() == Some(0),
        "triage failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The cause, the failure, and the bracket around `timeout_s` (whole-second kernel timers and
/// the timer wheel allow half a second either way); the time budget.
fn check(v: &serde_json::Value, cause: &str, failure: &str, timeout_s: f64) {
    assert_eq!(v["verdict"]["cause"], cause, "{v:#}");
    assert_eq!(v["failure"], failure, "{v:#}");
    let low = v["path_timeout_s"]["low"]
        .as_f64()
        .unwrap_or_else(|| panic!("no lower bound: {v:#}"));
    let high = v["path_timeout_s"]["high"]
        .as_f64()
        .unwrap_or_else(|| panic!("no upper bound: {v:#}"));
    assert!(
        low <= timeout_s + 0.5 && high >= timeout_s - 0.5,
        "bracket {low}..{high} does not hold {timeout_s}"
    );
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    assert!(
        elapsed <= 1.2 * high + 10.0,
        "verdict took {elapsed} s for a {high} s path"
    );
    for s in v["steps"].as_array().unwrap() {
        assert_ne!(s["status"], "not-possible", "{s:#}");
    }
    assert_eq!(v["steps"].as_array().unwrap().len(), 5);
}

#[test]
fn firewall_900_reset_is_a_middlebox_idle_timeout() {
    if !require_or_skip("firewall_900_reset_is_a_middlebox_idle_timeout") {
        return;
    }
    // 900 s at time scale 100: the firewall forgets after 9 s, the app idles 12 s.
    let lab = lab_up("a", &["--preset", "firewall-900"]);
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "middlebox-idle-timeout", "reset", 9.0);
    // The fix is planned below the measured path and names the app's process.
    let ka = v["fix"]["keepalive"]["time_s"].as_u64().unwrap();
    assert!(ka < 9, "keepalive time {ka}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "done");
    assert!(
        steps[4]["summary"]
            .as_str()
            .unwrap()
            .contains("1 connection(s): 0 with SO_KEEPALIVE, 1 without"),
        "{:#}",
        steps[4]
    );
    assert!(
        v["remedy"]["verify"]
            .as_str()
            .unwrap()
            .contains("idlereset verify")
    );
    drop(lab);
    fix_survives(&v["fix"]["keepalive"], &["--preset", "firewall-900"], 100.0);
}

/// Apply the planned keepalive (lab seconds, given to the lab in incident seconds) to the
/// same story and check the app's connection now survives its idle gaps.
fn fix_survives(ka: &serde_json::Value, story: &[&str], scale: f64) {
    let secs = |k: &str| (ka[k].as_f64().unwrap() * scale).to_string();
    let probes = ka["probes"].as_u64().unwrap().to_string();
    let mut knobs: Vec<&str> = story.to_vec();
    let (t, i) = (secs("time_s"), secs("intvl_s"));
    knobs.extend([
        "--keepalive-time",
        t.as_str(),
        "--keepalive-intvl",
        i.as_str(),
        "--keepalive-probes",
        probes.as_str(),
    ]);
    let lab = lab_up("f", &knobs);
    // Three idle gaps of 12 s through the 9 s firewall.
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(app_log(&lab.0)).unwrap_or_default();
        assert!(!log.contains("event=error"), "the fix did not hold:\n{log}");
        let long_idles = log
            .lines()
            .filter_map(|l| l.split("idle_s=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .filter(|&idle| idle > 9.0 && idle < 30.0)
            .count();
        if long_idles >= 3 {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no idle query yet:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn ctrl_c_stops_the_probes_and_still_prints_what_was_found() {
    if !require_or_skip("ctrl_c_stops_the_probes_and_still_prints_what_was_found") {
        return;
    }
    // A 2 h firewall (72 s in the lab): the probe would run a minute; Ctrl-C after 3 s.
    let lab = lab_up("e", &["--preset", "firewall-900", "--fw-timeout", "2h"]);
    let child = bin()
        .args(["triage", "--netns", &format!("{}-app", lab.0)])
        .args([
            "--remote",
            "198.18.2.10:5432",
            "--probe-max",
            "60s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        t.elapsed()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], true);
    let p = &v["evidence"]["probes"][0];
    assert_eq!(p["stopped_early"], true, "{p:#}");
    assert!(p["low_s"].as_f64().unwrap_or(0.0) >= 1.0, "{p:#}");
    assert_eq!(v["verdict"]["cause"], "inconclusive");
}

#[test]
fn firewall_3600_sysctl_only_trap_is_keepalive_ineffective() {
    if !require_or_skip("firewall_3600_sysctl_only_trap_is_keepalive_ineffective") {
        return;
    }
    // 3600 s at scale 400 (9 s); the OS keepalive time lowered to 1800 s (4 s), but the app
    // does not set SO_KEEPALIVE: the runbook's trap.
    let lab = lab_up(
        "b",
        &[
            "--preset",
            "firewall-3600",
            "--keepalive",
            "0",
            "--os-keepalive-time",
            "1800",
        ],
    );
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "keepalive-ineffective", "reset", 9.0);
    let evidence = v["verdict"]["evidence"].to_string();
    assert!(evidence.contains("sysctl-only trap"), "{evidence}");
}

#[test]
fn firewall_drop_is_a_middlebox_idle_timeout_by_blackhole() {
    if !require_or_skip("firewall_drop_is_a_middlebox_idle_timeout_by_blackhole") {
        return;
    }
    let lab = lab_up("c", &["--preset", "firewall-900", "--profile", "drop"]);
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "middlebox-idle-timeout", "blackhole", 9.0);
}

#[test]
fn server_idle_close_is_named() {
    if !require_or_skip("server_idle_close_is_named") {
        return;
    }
    // The firewall keeps flows 2 h (72 s in the lab); the database closes idle ones after
    // 600 s (6 s).
    let lab = lab_up(
        "d",
        &[
            "--preset",
            "firewall-900",
            "--fw-timeout",
            "2h",
            "--server-idle-close",
            "600",
        ],
    );
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "server-idle-close", "fin", 6.0);
}

#[test]
fn nat_43200_invalid_drop_is_a_blackhole_the_os_keepalive_would_prevent() {
    if !require_or_skip("nat_43200_invalid_drop_is_a_blackhole_the_os_keepalive_would_prevent") {
        return;
    }
    // A NAT forgetting after 12 h (9 s at scale 4800) that drops INVALID packets, strict TCP
    // tracking; the app idles 16 h (12 s). Linux's default keepalive time (7200 s, 1.5 s here)
    // is below the NAT's timeout, but the app does not set SO_KEEPALIVE: the sysctl-only trap.
    let lab = lab_up(
        "g",
        &[
            "--preset",
            "firewall-900",
            "--profile",
            "nat",
            "--fw-timeout",
            "43200",
            "--drop-invalid",
            "1",
            "--loose",
            "0",
            "--idle",
            "57600",
            "--pool-idle-timeout",
            "100000",
            "--time-scale",
            "4800",
        ],
    );
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "keepalive-ineffective", "blackhole", 9.0);
    assert!(
        v["verdict"]["evidence"]
            .to_string()
            .contains("sysctl-only trap"),
        "{v:#}"
    );
}
