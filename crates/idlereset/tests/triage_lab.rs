#![allow(clippy::unwrap_used)]
//! `triage` on lab incidents, on the real kernel: bring a lab up with its workload, let the
//! app's connection fail once, then run `triage` in the `app` namespace with the app's log and
//! `--remote` the database. The verdict must name the story's cause and the measured bracket
//! must hold the firewall's (scaled) timeout, within the time budget (1.2 x the path timeout
//! plus 10 s); then the fix triage plans is applied through the lab's knobs in a fresh lab of the
//! same story, and the app's connections must come through three idle gaps past the timeout.

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
    // Three idle gaps of 12 s through the 9 s firewall.
    fix_survives(
        "fa",
        &["--preset", "firewall-900"],
        &keepalive_knobs(&v["fix"]["keepalive"], 100.0),
        |log| long_idles(log, 9.0) >= 3,
    );
}

/// The planned keepalive (lab seconds) as the lab's knobs (incident seconds at `scale`).
fn keepalive_knobs(ka: &serde_json::Value, scale: f64) -> Vec<String> {
    let secs = |k: &str| {
        let v = ka[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no keepalive {k}: {ka:#}"));
        (v * scale).to_string()
    };
    vec![
        "--keepalive-time".into(),
        secs("time_s"),
        "--keepalive-intvl".into(),
        secs("intvl_s"),
        "--keepalive-probes".into(),
        ka["probes"].as_u64().unwrap().to_string(),
    ]
}

/// Queries that succeeded after idling longer than `timeout_s` (the app's idle gap is 12 s).
fn long_idles(log: &str, timeout_s: f64) -> usize {
    log.lines()
        .filter(|l| l.contains("event=query ok"))
        .filter_map(|l| l.split("idle_s=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .filter(|&idle| idle > timeout_s && idle < 30.0)
        .count()
}

/// Bring the story up again with the fix's knobs and watch the app's log: no error may appear
/// before `held(log)` says the app went through enough idle gaps past the story's timeout.
/// `tag` names the lab apart from the other tests' (they run concurrently).
fn fix_survives(tag: &str, story: &[&str], fix: &[String], held: impl Fn(&str) -> bool) {
    let mut knobs: Vec<&str> = story.to_vec();
    knobs.extend(fix.iter().map(String::as_str));
    let lab = lab_up(tag, &knobs);
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(app_log(&lab.0)).unwrap_or_default();
        assert!(
            !log.contains("event=error"),
            "the fix {fix:?} did not hold:\n{log}"
        );
        if held(&log) {
            eprintln!("fix {fix:?} held for {:.0} s", t0.elapsed().as_secs_f64());
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "not enough idle gaps yet:\n{log}"
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
    drop(lab);
    // The fix: the app sets SO_KEEPALIVE itself with the planned times (the lowered OS default
    // stays; it was never the problem).
    fix_survives(
        "fb",
        &["--preset", "firewall-3600", "--os-keepalive-time", "1800"],
        &keepalive_knobs(&v["fix"]["keepalive"], 400.0),
        |log| long_idles(log, 9.0) >= 3,
    );
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
    drop(lab);
    fix_survives(
        "fc",
        &["--preset", "firewall-900", "--profile", "drop"],
        &keepalive_knobs(&v["fix"]["keepalive"], 100.0),
        |log| long_idles(log, 9.0) >= 3,
    );
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
    let notes = v["remedy"]["rollback"].to_string();
    assert!(notes.contains("keepalives do not reset"), "{notes}");
    // The fix: the pool's idle limit below the server's close (plan's pool value); keepalive
    // would not help. Each 12 s gap now ends on a fresh connection, never on a closed one.
    let pool_idle = v["fix"]["pool"]["idle_timeout_s"].as_f64().unwrap();
    assert!(pool_idle < 6.0, "pool idle {pool_idle} s");
    drop(lab);
    fix_survives(
        "fd",
        &[
            "--preset",
            "firewall-900",
            "--fw-timeout",
            "2h",
            "--server-idle-close",
            "600",
        ],
        &[
            "--pool-idle-timeout".into(),
            (pool_idle * 100.0).to_string(),
        ],
        |log| {
            log.matches("reason=limit").count() >= 3 && log.matches("event=query ok").count() >= 4
        },
    );
}

#[test]
fn nat_43200_invalid_drop_is_a_blackhole_the_os_keepalive_would_prevent() {
    if !require_or_skip("nat_43200_invalid_drop_is_a_blackhole_the_os_keepalive_would_prevent") {
        return;
    }
    // A NAT forgetting after 12 h (9 s at scale 4800) that drops INVALID packets, strict TCP
    // tracking; the app idles 16 h (12 s). Linux's default keepalive time (7200 s, 1.5 s here)
    // is below the NAT's timeout, but the app does not set SO_KEEPALIVE: the sysctl-only trap.
    let story = [
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
    ];
    let lab = lab_up("g", &story);
    wait_for_failure(&lab.0, Duration::from_secs(60));
    let v = triage(&lab.0);
    check(&v, "keepalive-ineffective", "blackhole", 9.0);
    assert!(
        v["verdict"]["evidence"]
            .to_string()
            .contains("sysctl-only trap"),
        "{v:#}"
    );
    drop(lab);
    fix_survives(
        "fg",
        &story,
        &keepalive_knobs(&v["fix"]["keepalive"], 4800.0),
        |log| long_idles(log, 9.0) >= 3,
    );
}

/// The field report's `nat-43200-invalid` story as the lab really runs it (`lab reproduce`): a
/// busy flow, an asymmetric fault, INVALID packets freezing the firewall's timer, expiry while
/// the flow streams. What the kernel shows: the firewall's reject rule answers the next
/// mid-stream packet (db -> app) with a reset towards db; the app's own capture sees the stream
/// stop but no reset, so `triage` needs the capture on the firewall's db side too, and the
/// story's lab is gone when `lab reproduce` ends (no app log, no live remote to probe). The
/// verdict must be `state-lost-while-active`, from the active reset, not an idle timeout; its
/// fix (be_liberal=1 on the box with the second path) is the one the same run measured to help.
#[test]
fn nat_43200_invalid_frozen_timer_is_state_lost_while_active() {
    if !require_or_skip("nat_43200_invalid_frozen_timer_is_state_lost_while_active") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("idlereset-tg-frozen-{}", std::process::id()));
    let out = bin()
        .args([
            "lab",
            "reproduce",
            "--preset",
            "nat-43200-invalid",
            "--json",
        ])
        .arg("--capture-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let story: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(story["outcome"], "reset", "{story:#}");
    let out = bin()
        .args(["triage", "--skip-host", "--json", "--pcap"])
        .arg(dir.join("app.pcap"))
        .arg("--pcap")
        .arg(dir.join("fw-db.pcap"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["verdict"]["cause"], "state-lost-while-active", "{v:#}");
    let packets = &v["evidence"]["packets"];
    assert!(packets["active_resets"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(packets["idle_resets"], 0, "{v:#}");
    assert_eq!(packets["blackholes"], 0, "{v:#}");
    assert!(
        v["verdict"]["evidence"]
            .to_string()
            .contains("not idle: state was lost"),
        "{v:#}"
    );
    let notes = v["remedy"]["rollback"].to_string();
    assert!(
        notes.contains("net.netfilter.nf_conntrack_tcp_be_liberal = 1"),
        "{notes}"
    );
    // The fix applied in the lab: the same run's be_liberal=1 lab keeps the connection.
    let fixes = story["fixes"].as_array().unwrap();
    let liberal = fixes
        .iter()
        .find(|f| {
            f["fix"]
                .as_str()
                .is_some_and(|n| n.contains("be_liberal=1"))
        })
        .unwrap_or_else(|| panic!("no be_liberal run: {fixes:#?}"));
    assert_eq!(liberal["outcome"], "helps", "{liberal:#}");
}

/// `--probe-at-risk` and `--capture` in the namespace the command runs in: the binary runs
/// inside the lab's `app` namespace through `lab exec` (no `--netns`, no `--remote`). Step 5
/// finds the app's database connection without keepalive, so that remote is probed; the
/// bracket holds the firewall's 9 s, within 1.2 x the path timeout + 10 s; the capture (on
/// every interface of `app`) records the probe's connections, including the firewall's resets
/// after idle.
#[test]
fn probe_at_risk_and_capture_in_the_current_namespace() {
    if !require_or_skip("probe_at_risk_and_capture_in_the_current_namespace") {
        return;
    }
    let lab = lab_up("p", &["--preset", "firewall-900"]);
    let t = Instant::now();
    let out = bin()
        .args(["lab", "exec", "app", "--lab", &lab.0, "--"])
        .arg(env!("CARGO_BIN_EXE_idlereset"))
        .args(["triage", "--log"])
        .arg(app_log(&lab.0))
        .args([
            "--probe-at-risk",
            "--probe-max",
            "60s",
            "--capture",
            "12s",
            "--json",
        ])
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let probes = v["evidence"]["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 1, "{v:#}");
    assert!(
        probes[0]["remote"]
            .as_str()
            .unwrap()
            .starts_with("198.18.2.10:"),
        "{v:#}"
    );
    let (low, high) = (
        probes[0]["low_s"].as_f64().unwrap(),
        probes[0]["high_s"].as_f64().unwrap(),
    );
    assert!(
        low <= 9.5 && high >= 8.5,
        "bracket {low}..{high} does not hold 9"
    );
    assert_eq!(v["verdict"]["cause"], "middlebox-idle-timeout", "{v:#}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[1]["status"], "done", "{:#}", steps[1]);
    let packets = &v["evidence"]["packets"];
    assert!(packets["flows"].as_u64().unwrap() >= 1, "{packets:#}");
    assert!(packets["idle_resets"].as_u64().unwrap() >= 1, "{packets:#}");
    // The time to a verdict, measured around the whole command (lab exec included).
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    eprintln!("probe-at-risk verdict in {elapsed:.1} s ({wall:.1} s with lab exec)");
    assert!(
        wall <= 1.2 * high + 10.0,
        "verdict took {wall:.1} s for a {high} s path"
    );
}
