//! `idlereset plan` end to end: every example inventory plans (exit 0), the JSON contract holds,
//! and an invalid inventory exits 2 with file:line:column errors.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

#[path = "support/cli.rs"]
mod cli_support;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
}

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/inventories");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_plans_in_every_format() {
    let ex = examples();
    assert!(ex.len() >= 4, "{ex:?}");
    for path in &ex {
        for format in ["text", "sysctl", "nft", "mermaid", "dot"] {
            let out = bin()
                .arg("plan")
                .arg(path)
                .args(["--format", format])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} {format}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.stdout.is_empty());
        }
        let out = bin().arg("plan").arg(path).arg("--json").output().unwrap();
        cli_support::assert_exit(&out, 0);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = v["path_timeout_s"].as_f64().unwrap();
        assert!(v["limiting_hop"].is_string());
        assert!((v["keepalive"]["time_s"].as_f64().unwrap()) < t);
        assert!((v["keepalive"]["intvl_s"].as_f64().unwrap()) < t);
        assert!(v["keepalive"]["probes"].as_u64().unwrap() >= 1);
        assert!((v["pool"]["idle_timeout_s"].as_f64().unwrap()) < t);
        assert!((v["pool"]["max_lifetime_s"].as_f64().unwrap()) < t);
        for c in v["clients"].as_array().unwrap() {
            assert!(
                c["name"].is_string() && c["library"].is_string() && c["settings"].is_object(),
                "{c}"
            );
        }
    }
}

#[test]
fn invalid_inventory_exits_2_with_positions() {
    let dir = std::env::temp_dir().join(format!("idlereset-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[hop]]\nname = \"nat\"\ncatalog = \"aws-nat-gatway\"\n",
    )
    .unwrap();
    let out = bin().arg("plan").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:11: unknown catalog id \"aws-nat-gatway\""),
        "{err}"
    );
    assert!(err.contains("did you mean \"aws-nat-gateway\"?"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_stdin() {
    use std::io::Write;
    let mut child = bin()
        .args(["plan", "-", "--format", "sysctl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[[hop]]\nname='fw'\nkind='firewall'\nidle_timeout_s=3600\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("net.ipv4.tcp_keepalive_time = 1800"));
}

#[test]
fn remote_selects_the_hops_on_its_path() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/inventories/firewall-900.toml");
    let out = bin()
        .arg("plan")
        .arg(&path)
        .args(["--json", "--remote", "[2001:db8:2::10]:5432"])
        .output()
        .unwrap();
    cli_support::assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limiting_hop"], "dc-firewall");
    let out = bin()
        .arg("plan")
        .arg(&path)
        .args(["--remote", "203.0.113.9:443"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no hop"));
}
