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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_flags_the_frozen_flow_only_after_the_fault() {
    if !require_or_skip("ctwatch_cli::watch_flags_the_frozen_flow_only_after_the_fault") {
        return;
    }
    let lab = lab(Profile::Reject, false).await;
    let flow = BusyFlow::start(&lab, 7422, 2_000_000, None).unwrap();
    let sport = flow.sport;
    let fw = format!("{}-fw", lab.name());
    let watch = |samples: &str| {
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
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // Without a fault: nothing to report, exit 0.
    let quiet = watch("4").wait_with_output().unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{quiet:?}");
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    // With the fault: frozen within a few samples while traffic continues.
    let t0 = Instant::now();
    let child = watch("12");
    tokio::time::sleep(Duration::from_secs(2)).await;
    fault::asymmetric(&lab, Duration::from_secs(5), std::future::pending())
        .await
        .unwrap();
    let out = child.wait_with_output().unwrap();
    flow.stop();
    let text = String::from_utf8(out.stdout).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.status.code(), Some(1), "findings exit 1: {text}");
    let frozen = events
        .iter()
        .find(|e| e["event"] == "frozen")
        .unwrap_or_else(|| panic!("no frozen event: {text}"));
    assert_eq!(frozen["flow"]["src"], format!("198.18.1.10:{sport}"));
    assert!(frozen["time_left_s"].as_u64().unwrap() < 60, "{frozen}");
    // Flagged within a few samples of the fault's start (2 s in).
    assert!(frozen["t_s"].as_f64().unwrap() <= 7.5, "{frozen}");
    assert!(
        events.iter().any(|e| e["event"] == "invalid-rising"),
        "{text}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
}
