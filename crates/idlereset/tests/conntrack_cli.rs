//! `idlereset conntrack` end to end: plant entries in a throw-away namespace over ctnetlink, run
//! the binary against it with `--netns`, check the JSON contract and the filters.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use idlereset_linux::conntrack::{CtTcpState, Ctnetlink, NewEntry, Tuple};
use idlereset_linux::privilege::require_or_skip;

#[path = "support/scratch_ns.rs"]
mod scratch_ns;
use scratch_ns::test_ns;

fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: Some(sport),
        dport: Some(dport),
    }
}

fn run(ns: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["conntrack", "--netns", ns])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn json_contract_filters_and_table() {
    if !require_or_skip("conntrack_cli::json_contract_filters_and_table") {
        return;
    }
    let t = test_ns();
    t.0.run(|| {
        let mut ct = Ctnetlink::open().unwrap();
        ct.insert(&NewEntry::tcp_established(
            tuple("198.18.0.10", 40000, "198.18.1.20", 5432),
            900,
        ))
        .unwrap();
        let mut tw =
            NewEntry::tcp_established(tuple("2001:db8::10", 40001, "2001:db8::20", 443), 120);
        tw.tcp_state = Some(CtTcpState::TIME_WAIT);
        ct.insert(&tw).unwrap();
        let mut nat =
            NewEntry::tcp_established(tuple("198.18.0.11", 40002, "198.18.1.30", 80), 300);
        nat.reply = Some(tuple("198.18.1.30", 80, "198.18.0.99", 61000));
        ct.insert(&nat).unwrap();
    })
    .unwrap();
    let name = t.0.name().to_string();

    let (code, out, err) = run(&name, &["--json", "--enable-accounting"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["count"], 3);
    assert!(v["max"].as_u64().unwrap() > 0);
    assert_eq!(v["accounting"], true);
    assert_eq!(v["stats"]["invalid"], 0);
    assert!(v["stats"]["cpus"].as_u64().unwrap() >= 1);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(v["matched"], 3);
    let e = entries
        .iter()
        .find(|e| e["dst"] == "198.18.1.20:5432")
        .unwrap();
    assert_eq!(
        (e["proto"].as_str(), e["state"].as_str(), e["src"].as_str()),
        (Some("tcp"), Some("ESTABLISHED"), Some("198.18.0.10:40000"))
    );
    assert!((890..=900).contains(&e["timeout_s"].as_u64().unwrap()));
    assert!(
        e["packets"].is_null(),
        "entry created before accounting: {e}"
    );
    let e6 = entries.iter().find(|e| e["state"] == "TIME_WAIT").unwrap();
    assert_eq!(e6["src"], "[2001:db8::10]:40001");
    let n = entries.iter().find(|e| e["nat"] == true).unwrap();
    assert_eq!(n["reply_dst"], "198.18.0.99:61000");

    // Filters.
    let (_, out, _) = run(&name, &["--json", "--port", "61000"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matched"], 1, "NAT port matches the reply direction");
    let (_, out, _) = run(&name, &["--json", "--state", "time_wait"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"][0]["dst"], "[2001:db8::20]:443");
    assert_eq!(v["matched"], 1);
    let (_, out, _) = run(
        &name,
        &["--json", "--src", "198.18.0.10", "--dst", "198.18.1.20"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matched"], 1);
    let (_, out, _) = run(&name, &["--json", "--src", "198.18.0.77"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["matched"].as_u64(), v["entries"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );

    // Human table.
    let (code, out, err) = run(&name, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("conntrack: 3 of"), "{out}");
    assert!(out.contains("198.18.1.30:80->198.18.0.99:61000"), "{out}");
    assert!(out.contains("3 entries shown"), "{out}");

    // Errors are clear and exit 2.
    let (code, _, err) = run("idlereset-test-does-not-exist", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("idlereset-test-does-not-exist"), "{err}");
    let (code, _, err) = run(&name, &["--state", "open"]);
    assert_eq!(code, 2);
    assert!(err.contains("ESTABLISHED"), "{err}");
}
