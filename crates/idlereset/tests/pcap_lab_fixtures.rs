#![allow(clippy::unwrap_used)]
//! `pcap` on captures made in the real lab with `lab reproduce --capture-dir` / `lab capture`
//! (regenerate with bench/make_lab_fixtures.sh): the verdict matches what the lab did.

use std::process::Command;

fn analyse(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../idlereset-core/tests/fixtures/lab/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["pcap", &path, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kinds(v: &serde_json::Value) -> Vec<(String, String)> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn firewall_resets_are_middlebox_resets_after_the_idle_gap() {
    for f in [
        "reset-v4.pcap",
        "reset-v6.pcap",
        "router-hop.pcap",
        "any-sll.pcap",
        "dumpcap.pcapng",
    ] {
        let v = analyse(f);
        let k = kinds(&v);
        assert!(
            k.contains(&("reset".into(), "middlebox".into())),
            "{f}: {k:?}"
        );
        let idle = v["events"][0]["idle_before_s"].as_f64().unwrap();
        assert!(
            (11.5..12.6).contains(&idle),
            "{f}: idle {idle} (lab idle 12 s at scale 100)"
        );
    }
    let v6 = analyse("reset-v6.pcap");
    assert!(
        v6["events"][0]["server"]
            .as_str()
            .unwrap()
            .starts_with("[2001:db8:"),
        "{v6}"
    );
}

#[test]
fn silent_drop_is_a_blackhole() {
    let k = kinds(&analyse("drop.pcap"));
    assert_eq!(
        k.first().map(|(kind, _)| kind.as_str()),
        Some("blackhole"),
        "{k:?}"
    );
}

#[test]
fn server_idle_close_is_an_idle_close() {
    let k = kinds(&analyse("server-idle-close.pcap"));
    assert!(k.iter().any(|(kind, _)| kind == "idle-close"), "{k:?}");
}

#[test]
fn keepalive_keeping_the_flow_alive_is_no_event() {
    let v = analyse("keepalive-alive.pcap");
    assert!(kinds(&v).is_empty(), "{v}");
    assert_eq!(v["flows"], 1);
}
