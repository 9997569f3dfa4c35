#![allow(clippy::unwrap_used)]
//! `idlereset verify` through the command line: JSON contract, exit codes (0 verified, 1 a
//! planned setting failed in the lab, 2 usage errors), and the human report.

use std::process::{Command, Output};

use idlereset_linux::privilege::require_or_skip;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
}

fn run(args: &[&str]) -> Output {
    let out = bin()
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn help_has_examples() {
    let out = run(&["verify", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Examples:"));
    assert!(text.contains("--client"));
    assert!(text.contains("--db"));
}

#[test]
fn unknown_client_is_a_usage_error() {
    if !require_or_skip("unknown_client_is_a_usage_error") {
        return;
    }
    let out = run(&[
        "verify",
        "examples/inventories/firewall-900.toml",
        "--client",
        "nobody",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no client \"nobody\""), "{err}");
    assert!(err.contains("orders-api"), "names the clients: {err}");
}

#[test]
fn seed_inventory_verifies_as_json() {
    if !require_or_skip("seed_inventory_verifies_as_json") {
        return;
    }
    let out = run(&[
        "verify",
        "examples/inventories/firewall-900.toml",
        "--client",
        "orders-api",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["inventory"], "examples/inventories/firewall-900.toml");
    assert_eq!(v["path_timeout_s"], 900.0);
    assert_eq!(v["verified"], true);
    let scale = v["time_scale"].as_f64().unwrap();
    assert!((100.0..=450.0).contains(&scale), "{scale}");
    let runs = v["runs"].as_array().unwrap();
    let get = |s: &str| {
        runs.iter()
            .find(|r| r["settings"] == s)
            .unwrap_or_else(|| panic!("no {s} run: {runs:?}"))
    };
    assert_eq!(get("planned")["outcome"], "survived");
    assert!(get("planned")["idle_s"].as_f64().unwrap() > 900.0);
    // HikariCP today: no keepalive and a 3600 s pool idle through the 900 s firewall.
    assert_eq!(get("current")["outcome"], "reset");
    assert!(
        get("current")["error"]
            .as_str()
            .unwrap()
            .contains("reset by peer")
    );
    assert_eq!(get("sysctl-only")["outcome"], "reset");
    for r in runs {
        assert_eq!(r["client"], "orders-api");
        assert!(r["detail"].is_string());
    }
}

/// A proxy that ignores keepalives and cuts after 8 s, in front of HikariCP 5: keepaliveTime,
/// maxLifetime and idleTimeout all fall below HikariCP's minimums (it ignores or resets them,
/// per the library data), TCP keepalive does not reach the proxy: the plan warns, and the lab
/// proves it fails.
#[test]
fn failing_plan_exits_1() {
    if !require_or_skip("failing_plan_exits_1") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("idlereset-verify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("short.toml");
    std::fs::write(
        &inv,
        "[[hop]]\nname = \"tiny-proxy\"\nkind = \"proxy\"\nidle_timeout_s = 8\nfailure = \"fin\"\n\
         [[client]]\nname = \"pool\"\nlibrary = \"hikaricp\"\nversion = \"5.1.0\"\nconnections = 1\n",
    )
    .unwrap();
    let out = run(&["verify", inv.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("NOT verified"), "{text}");
    assert!(text.contains("tiny-proxy"), "{text}");
}

/// `lab up --db postgres`: a real server on db, reachable from app over both address families
/// through the firewall, gone after `lab down`.
#[test]
fn lab_up_with_postgres() {
    if !require_or_skip("lab_up_with_postgres") {
        return;
    }
    let name = format!("idlereset-pgcli{:x}", std::process::id() & 0xffff);
    let up = run(&["lab", "up", "--db", "postgres", "--name", &name]);
    assert!(up.status.success());
    let query = |host: &str| {
        run(&[
            "lab",
            "exec",
            "--lab",
            &name,
            "app",
            "--",
            "psql",
            &format!("host={host} port=5432 user=postgres dbname=postgres"),
            "-tAc",
            "select inet_client_addr()",
        ])
    };
    let v4 = query("198.18.2.10");
    let v6 = query("2001:db8:2::10");
    let down = run(&["lab", "down", &name]);
    assert!(down.status.success());
    assert_eq!(String::from_utf8_lossy(&v4.stdout).trim(), "198.18.1.10");
    assert_eq!(String::from_utf8_lossy(&v6.stdout).trim(), "2001:db8:1::10");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let left = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&name) && l.contains("postgres"))
        .count();
    assert_eq!(left, 0, "postgres must stop with the lab");
}
