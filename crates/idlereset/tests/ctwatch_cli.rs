//! `idlereset conntrack` against a real lab firewall: the app-to-db flow with its NAT tuples,
//! and `--watch` flagging a frozen timer after an asymmetric fault (and nothing without it).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::traffic::BusyFlow;
use idlereset_lab::{Lab, LabSpec, fault};
use idlereset_linux::privilege::require_or_skip;

async fn lab(profile: Profile, loose: bool) -> Lab {
    let mut fw = FirewallSettings::new(profile, 60);
    fw.loose = loose;
    let spec = LabSpec::new(0, fw);
    Lab::create(spec, None, Ownership::Foreground)
        .await
        .unwrap()
}

fn idlereset(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlereset"));
    c.args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lists_the_nat_flow_with_timeout_and_counters() {
    if !require_or_skip("ctwatch_cli::json_lists_the_nat_flow_with_timeout_and_counters") {
        return;
    }
    let lab = lab(Profile::Nat, true).await;
    let flow = BusyFlow::start(&lab, 7421, 2_000_000, None).unwrap();
    let sport = flow.sport;
    std::thread::sleep(Duration::from_millis(500));
    let fw = format!("{}-fw", lab.name());
    let out = idlereset(&["conntrack", "--netns", &fw, "--json", "--port", "7421"])
        .output()
        .unwrap();
    flow.stop();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["entries"][0];
    assert_eq!(v["matched"], 1, "{v}");
    assert_eq!(e["src"], format!("198.18.1.10:{sport}"));
    assert_eq!(e["dst"], "198.18.2.10:7421");
    assert_eq!(e["state"], "ESTABLISHED");
    assert_eq!(e["nat"], true);
    let reply_dst = e["reply_dst"].as_str().unwrap();
    assert!(reply_dst.starts_with("198.18.2.1:"), "{reply_dst}");
    let timeout = e["timeout_s"].as_u64().unwrap();
    assert!((50..=60).contains(&timeout), "timeout {timeout}");
    assert!(e["packets"].as_u64().unwrap() > 10, "{e}");
    assert!(e["bytes"].as_u64().unwrap() > 10_000, "{e}");
    assert_eq!(v["accounting"], true);
}

/// The watcher's JSON event lines, as they come.
fn event_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(line) = line else { return };
            let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (bounded) for an event matching `want`; returns it and every event seen until then.
fn wait_event(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    seen: &mut Vec<serde_json::Value>,
    timeout: Duration,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let t = Instant::now();
    while let Some(left) = timeout.checked_sub(t.elapsed()) {
        let Ok(e) = rx.recv_timeout(left) else {
            return None;
        };
        seen.push(e.clone());
        if want(&e) {
            return Some(e);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_flags_the_frozen_flow_only_after_the_fault() {
    if !require_or_skip("ctwatch_cli::watch_flags_the_frozen_flow_only_after_the_fault") {
        return;
    }
    let lab = lab(Profile::Reject, false).await;
    let flow = BusyFlow::start(&lab, 7422, 2_000_000, None).unwrap();
    let sport = flow.sport;
    let src = format!("198.18.1.10:{sport}");
    let fw = format!("{}-fw", lab.name());
    let watch = |samples: &str, expiring: &str| {
        idlereset(&[
            "conntrack",
            "--netns",
            &fw,
            "--watch",
            "--json",
            "--port",
            "7422",
            "--samples",
            samples,
            "--expiring",
            expiring,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // Without a fault: nothing to report, exit 0.
    let quiet = watch("4", "30").wait_with_output().unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{quiet:?}");
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    // With the fault. No schedule is assumed: an expiring threshold at the entry's full timeout
    // (60 s) makes the watcher report the busy flow as soon as it has seen its packets advance
    // between two samples; only then is the fault injected, and the frozen event awaited.
    let mut child = watch("120", "60");
    let rx = event_lines(&mut child);
    let mut seen = Vec::new();
    let busy = wait_event(&rx, &mut seen, Duration::from_secs(60), |e| {
        e["event"] == "expiring-while-active"
            && e["flow"]["src"] == src.as_str()
            && e["packets_delta"].as_u64().unwrap_or(0) > 0
    });
    let busy = busy.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the watcher never saw the busy flow: {seen:?}")
    });
    assert!(
        seen.iter().all(|e| e["event"] != "frozen"),
        "frozen before any fault: {seen:?}"
    );
    fault::asymmetric(&lab, Duration::from_secs(5), std::future::pending())
        .await
        .unwrap();
    let frozen = wait_event(&rx, &mut seen, Duration::from_secs(60), |e| {
        e["event"] == "frozen"
    });
    if !seen.iter().any(|e| e["event"] == "invalid-rising") {
        wait_event(&rx, &mut seen, Duration::from_secs(10), |e| {
            e["event"] == "invalid-rising"
        });
    }
    let _ = child.kill();
    let _ = child.wait();
    flow.stop();
    let frozen = frozen.unwrap_or_else(|| panic!("no frozen event: {seen:?}"));
    assert_eq!(frozen["flow"]["src"], src.as_str());
    assert!(frozen["time_left_s"].as_u64().unwrap() < 60, "{frozen}");
    assert!(
        frozen["t_s"].as_f64().unwrap() > busy["t_s"].as_f64().unwrap(),
        "flagged only after the fault: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| e["event"] == "invalid-rising"),
        "{seen:?}"
    );
}
