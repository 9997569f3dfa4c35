#![allow(clippy::unwrap_used)]
//! The lab through the command line, on the real kernel: JSON contract, lifecycle, cleanup on
//! Ctrl-C, and `lab down --all` after a SIGKILL.
//!
//! The tests of this file run concurrently (and other test binaries may run labs at the same
//! time), so every lab they create carries a scope (`IDLERESET_LAB_SCOPE`), and a test that
//! sweeps with `lab down --all` does it in a scope of its own: it can only remove its own labs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idlereset_linux::privilege::require_or_skip;

#[path = "support/cli.rs"]
mod cli_support;

/// The binary, creating labs in this test process's scope.
fn bin() -> Command {
    bin_in(&format!("lab_cli-{}", std::process::id()))
}

/// The binary, creating (and sweeping) labs in scope `scope` only.
fn bin_in(scope: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlereset"));
    c.env(idlereset_lab::registry::SCOPE_ENV, scope);
    c
}

/// A scope no other test uses.
fn own_scope(test: &str) -> String {
    format!("lab_cli-{}-{test}", std::process::id())
}

fn namespaces_of(lab: &str) -> Vec<String> {
    idlereset_linux::NetNs::list_with_prefix(&format!("{lab}-")).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lab a child process created (from the registry), once it exists.
fn lab_of(child: &Child) -> String {
    let pid = child.id();
    let mut name = String::new();
    // Generous: a debug binary on a loaded machine can take seconds to build a lab.
    wait_for("the child's lab", Duration::from_secs(60), || {
        if let Some(r) = idlereset_lab::registry::list()
            .into_iter()
            .find(|r| r.owner_pid == pid)
        {
            // Every host of the record (a SIGKILL must find the whole lab to leave behind).
            name = r.name;
            namespaces_of(&name).len() >= r.hosts.len()
        } else {
            false
        }
    });
    name
}

/// The report with the fields that change from run to run replaced by their type, so the
/// snapshot pins the contract's shape and the stable values (outcome, settings, verdict).
fn redacted(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let mut v = v.clone();
    let volatile = [
        "/lab",
        "/idle_s",
        "/elapsed_s",
        "/timeline",
        "/app_log",
        "/evidence/ct_gone_at_s",
        "/evidence/ct_refreshes",
        "/evidence/packets_during_idle",
        "/evidence/retransmissions",
        "/evidence/rst_at_app",
        "/evidence/rst_on_db_link",
        "/evidence/db_errors",
    ];
    for path in volatile {
        if let Some(x) = v.pointer_mut(path) {
            let kind = match x {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            *x = Value::String(format!("[{kind}]"));
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn presets_refuse_knobs_they_cannot_honour() {
    // Refused before any lab is built: no privileges needed.
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["lab", "reproduce", "--preset", "nat-43200-invalid"])
        .args(["--keepalive-time", "5m", "--hops", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot honour --hops, --keepalive-time"),
        "{err}"
    );
    let up = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["lab", "up", "--preset", "nat-43200-invalid"])
        .output()
        .unwrap();
    assert_eq!(up.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&up.stderr).contains("not a scenario"));
}

macro_rules! privileged {
    ($name:literal) => {
        if !require_or_skip($name) {
            return;
        }
    };
}

#[test]
fn reproduce_json_contract() {
    privileged!("reproduce_json_contract");
    let out = bin()
        .args([
            "lab",
            "reproduce",
            "--preset",
            "firewall-900",
            "--time-scale",
            "300",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a reproduced reset is a finding: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "reset");
    // The preset idles 1200 incident seconds (4 s of lab time at scale 300); a loaded machine
    // can only make the measured gap longer, by its scheduling delay times 300.
    let idle = v["idle_s"].as_f64().unwrap();
    assert!((1150.0..1800.0).contains(&idle), "idle_s {idle}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Connection reset by peer")
    );
    assert!(v["timeline"].as_array().unwrap().len() >= 4);
    assert!(v["maintenance_failures"].as_array().unwrap().is_empty());
    insta::assert_snapshot!("reproduce_json_firewall_900", redacted(&v));

    let ok = bin()
        .args([
            "lab",
            "reproduce",
            "--time-scale",
            "300",
            "--keepalive-time",
            "5m",
            "--json",
        ])
        .output()
        .unwrap();
    cli_support::assert_exit(&ok, 0);
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["outcome"], "survived");
    assert!(v["error"].is_null());
}

#[test]
fn reproduce_writes_captures() {
    privileged!("reproduce_writes_captures");
    let dir = std::env::temp_dir().join(format!("idlereset-cap-{}", std::process::id()));
    let st = bin()
        .args(["lab", "reproduce", "--time-scale", "300", "--capture-dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
    for f in ["app.pcap", "fw-db.pcap"] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        assert_eq!(
            &bytes[..4],
            &0xa1b2_3c4du32.to_le_bytes(),
            "{f}: nanosecond pcap magic"
        );
        assert!(bytes.len() > 24 + 16 * 4, "{f} has packets");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn up_status_exec_capture_down() {
    privileged!("up_status_exec_capture_down");
    let name = format!("idlereset-t{}", std::process::id() % 100_000);
    let up = bin()
        .args([
            "lab",
            "up",
            "--name",
            &name,
            "--time-scale",
            "300",
            "--fw-timeout",
            "7m",
            "--pool-size",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(v["name"], name.as_str());
    assert_eq!(namespaces_of(&name).len(), 3);

    // exec runs inside the firewall's namespace: it sees the lab's conntrack timeout (420/300 -> 1).
    let ex = bin()
        .args([
            "lab",
            "exec",
            "fw",
            "--lab",
            &name,
            "--",
            "cat",
            "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ex.stdout).trim(), "1");

    // capture while the workload runs.
    let pcap = std::env::temp_dir().join(format!("{name}.pcap"));
    let cap = bin()
        .args([
            "lab",
            "capture",
            "app",
            "idlereset-fw",
            "--lab",
            &name,
            "--duration",
            "3s",
            "--out",
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        cap.status.success(),
        "{}",
        String::from_utf8_lossy(&cap.stderr)
    );
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(
        bytes.len() > 24 + 16,
        "the workload's packets were captured"
    );
    std::fs::remove_file(&pcap).unwrap();

    // status shows pool statistics from the supervisor.
    wait_for("queries", Duration::from_secs(10), || {
        let st = bin()
            .args(["lab", "status", &name, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        v["labs"][0]["workload"]["pool"]["queries_ok"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });

    let down = bin().args(["lab", "down", &name]).output().unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(namespaces_of(&name).is_empty());
    assert!(!Path::new(&format!("/run/idlereset/labs/{name}.json")).exists());
}

#[test]
fn ctrl_c_removes_the_lab() {
    privileged!("ctrl_c_removes_the_lab");
    let mut child = bin()
        .args(["lab", "reproduce", "--time-scale", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let name = lab_of(&child);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(2), "interrupted is an error exit");
    assert!(
        namespaces_of(&name).is_empty(),
        "Ctrl-C left {:?}",
        namespaces_of(&name)
    );
}

#[test]
fn sigkill_then_down_all_removes_leftovers() {
    privileged!("sigkill_then_down_all_removes_leftovers");
    let scope = own_scope("sigkill");
    let mut child = bin_in(&scope)
        .args(["lab", "reproduce", "--time-scale", "100", "--hops", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let name = lab_of(&child);
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    child.wait().unwrap();
    assert_eq!(
        namespaces_of(&name).len(),
        4,
        "a killed run leaves its namespaces behind"
    );
    let out = bin_in(&scope)
        .args(["lab", "down", "--all", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["removed_labs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == name.as_str()),
        "{v}"
    );
    assert!(namespaces_of(&name).is_empty());
}

#[test]
fn demo_without_privileges_says_what_it_needs() {
    if !Path::new("/usr/bin/setpriv").exists() {
        panic!("setpriv (util-linux) is needed for this test");
    }
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--bounding-set",
            "-net_admin,-sys_admin,-net_raw",
            "--inh-caps",
            "-all",
        ])
        .arg(env!("CARGO_BIN_EXE_idlereset"))
        .arg("demo")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(0) {
        panic!("demo ran without capabilities?");
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}
