#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::keepalive::{Phase, next_probe};
use super::*;
use crate::catalog::Catalog;

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// An established socket idle `idle_ms`, owned by pid 10 (`app`).
fn sock(port: u16, idle_ms: u64) -> SocketFacts {
    SocketFacts {
        local: addr(&format!("198.18.0.10:{port}")),
        remote: addr("198.18.2.10:5432"),
        keepalive: Some(false),
        keepalive_timer_ms: None,
        probes_out: 0,
        last_data_sent_ms: Some(idle_ms + 20),
        last_data_recv_ms: Some(idle_ms),
        last_ack_recv_ms: Some(idle_ms),
        pid: Some(10),
        process: Some("app".into()),
    }
}

/// Keepalive on, timer firing in `timer_ms`, last ACK `ack_ms` ago.
fn ka(port: u16, idle_ms: u64, timer_ms: u64, ack_ms: u64) -> SocketFacts {
    SocketFacts {
        keepalive: Some(true),
        keepalive_timer_ms: Some(timer_ms),
        last_ack_recv_ms: Some(ack_ms),
        ..sock(port, idle_ms)
    }
}

fn fixed(t: f64) -> PathPolicy {
    PathPolicy::fixed(t, "--path-timeout")
}

fn kinds(r: &Report) -> Vec<(&'static str, Option<String>)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.local.clone()))
        .collect()
}

#[test]
fn the_lab_four_sockets() {
    // Seen 3 s after connect with a 5 s path: no keepalive; idle 2 / intvl 2 (probe answered
    // 1 s ago, next in 1 s); idle 2 / intvl 75 (probe answered 1 s ago, next in 74 s);
    // idle 7200 (first probe in 7197 s).
    let socks = vec![
        sock(1, 3000),
        ka(2, 3000, 1000, 1000),
        ka(3, 3000, 74_000, 1000),
        ka(4, 3000, 7_197_000, 3000),
    ];
    let r = evaluate(&socks, &KernelSettings::default(), None, &fixed(5.0));
    let mut got = kinds(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "keepalive-too-late",
                addr("198.18.0.10:3").map(|a| a.to_string())
            ),
            (
                "keepalive-too-late",
                addr("198.18.0.10:4").map(|a| a.to_string())
            ),
            ("no-keepalive", addr("198.18.0.10:1").map(|a| a.to_string())),
        ]
    );
    let f3 = r
        .findings
        .iter()
        .find(|f| f.local.as_deref() == Some("198.18.0.10:3"))
        .unwrap();
    assert_eq!(f3.keepalive_s, Some(75.0));
    assert!(f3.detail.contains("already answered"), "{}", f3.detail);
    assert_eq!(f3.pid, Some(10));
    let f4 = r
        .findings
        .iter()
        .find(|f| f.local.as_deref() == Some("198.18.0.10:4"))
        .unwrap();
    assert_eq!(f4.keepalive_s, Some(7200.0));
    assert!(f4.detail.contains("TCP_KEEPIDLE ~7200"), "{}", f4.detail);
    assert!(f4.fix.contains("TCP_KEEPIDLE=2"), "{}", f4.fix);
    let nk = r
        .findings
        .iter()
        .find(|f| f.kind == "no-keepalive")
        .unwrap();
    assert_eq!(nk.severity, Severity::Medium, "3 s idle of a 5 s path");
    assert_eq!(nk.idle_s, Some(3.0));
}

#[test]
fn phases_of_the_keepalive_timer() {
    let first = next_probe(&ka(1, 3000, 4000, 3000)).unwrap();
    assert_eq!(first.phase, Phase::FirstProbe);
    assert_eq!(first.after_last_packet_s, 7.0);
    let re = next_probe(&ka(1, 30_000, 40_000, 2000)).unwrap();
    assert_eq!(re.phase, Phase::Reprobe);
    assert_eq!(re.after_last_packet_s, 42.0);
    let mut out = ka(1, 30_000, 9000, 30_000);
    out.probes_out = 2;
    let u = next_probe(&out).unwrap();
    assert_eq!(u.phase, Phase::Unanswered(2));
    assert_eq!(u.after_last_packet_s, 9.0);
    assert!(next_probe(&sock(1, 10)).is_none());
}

#[test]
fn no_keepalive_severity_and_pools() {
    let t = fixed(100.0);
    let k = KernelSettings::default();
    let sev = |idle_ms| {
        evaluate(&[sock(1, idle_ms)], &k, None, &t)
            .findings
            .first()
            .map(|f| f.severity)
    };
    assert_eq!(sev(10_000), None, "fresh single connection");
    assert_eq!(sev(60_000), Some(Severity::Medium));
    assert_eq!(sev(150_000), Some(Severity::High));
    let pool: Vec<_> = (1..=3).map(|p| sock(p, 1000)).collect();
    let r = evaluate(&pool, &k, None, &t);
    assert_eq!(r.findings.len(), 3);
    assert!(r.findings.iter().all(|f| f.severity == Severity::Low));
    // Two connections are not a pool; another process's connection does not count.
    let mut two: Vec<_> = (1..=2).map(|p| sock(p, 1000)).collect();
    two.push(SocketFacts {
        pid: Some(11),
        ..sock(3, 1000)
    });
    assert!(evaluate(&two, &k, None, &t).findings.is_empty());
}

#[test]
fn sysctl_only_needs_lowered_settings_and_no_keepalive_sockets() {
    let mut map = BTreeMap::new();
    map.insert(
        "net.ipv4.tcp_keepalive_time".to_string(),
        "60\n".to_string(),
    );
    map.insert("net.ipv4.tcp_keepalive_intvl".to_string(), "75".to_string());
    let lowered = KernelSettings::from_sysctls(&map);
    assert_eq!(lowered.keepalive_time_s, Some(60));
    let t = fixed(100.0);
    let r = evaluate(&[sock(1, 10)], &lowered, None, &t);
    assert_eq!(kinds(&r), vec![("sysctl-only", None)]);
    assert!(r.findings[0].detail.contains("app (pid 10)"));
    assert!(r.findings[0].detail.contains("tcp_keepalive_time=60"));
    // Defaults: no trap. Lowered but every socket opted in: no trap.
    assert!(
        evaluate(&[sock(1, 10)], &KernelSettings::default(), None, &t)
            .findings
            .is_empty()
    );
    assert!(
        evaluate(&[ka(1, 10, 50_000, 10)], &lowered, None, &t)
            .findings
            .is_empty()
    );
}

#[test]
fn interval_before_the_first_probe_is_a_note_not_a_finding() {
    let k = KernelSettings {
        keepalive_intvl_s: Some(75),
        ..KernelSettings::default()
    };
    let r = evaluate(&[ka(1, 500, 1500, 500)], &k, None, &fixed(5.0));
    assert!(r.findings.is_empty());
    assert_eq!(r.notes.len(), 1);
    assert!(r.notes[0].contains("every 75 s"), "{}", r.notes[0]);
    let k2 = KernelSettings {
        keepalive_intvl_s: Some(3),
        ..KernelSettings::default()
    };
    assert!(
        evaluate(&[ka(1, 500, 1500, 500)], &k2, None, &fixed(5.0))
            .notes
            .is_empty()
    );
}

#[test]
fn hidden_and_off_path_sockets_are_counted() {
    let hidden = SocketFacts {
        keepalive: None,
        ..sock(1, 100_000)
    };
    let r = evaluate(&[hidden], &KernelSettings::default(), None, &fixed(5.0));
    assert!(r.findings.is_empty());
    assert!(r.notes[0].starts_with("1 sockets have unacknowledged"));
    let inv = crate::inventory::Inventory::parse(
        "[[hop]]\nname = \"fw\"\nkind = \"firewall\"\nidle_timeout_s = 900\nmatches = [\"203.0.113.0/24\"]\n",
        "paths.toml",
        &Catalog::builtin().unwrap(),
    )
    .unwrap();
    let none = PathPolicy::inventory(inv, "paths.toml");
    let r = evaluate(&[sock(1, 100_000)], &KernelSettings::default(), None, &none);
    assert!(r.findings.is_empty());
    assert!(r.notes[0].contains("no inventory hop"));
}

#[test]
fn conntrack_findings() {
    let k = KernelSettings {
        ct_established_s: Some(60),
        ct_loose: Some(0),
        ..KernelSettings::default()
    };
    let ct = ConntrackFacts {
        count: 970,
        max: Some(1000),
        invalid: 50,
        invalid_delta: Some(7),
        sample_s: Some(1.5),
        early_drop: 3,
        ..ConntrackFacts::default()
    };
    let socks = [ka(1, 100, 299_900, 100)];
    let r = evaluate(&socks, &k, Some(&ct), &fixed(1000.0));
    let got: Vec<_> = r.findings.iter().map(|f| (f.kind, f.severity)).collect();
    assert_eq!(
        got,
        vec![
            ("conntrack-table-full", Severity::High),
            ("conntrack-invalid-rising", Severity::Medium),
            ("conntrack-timeout-short", Severity::Medium),
        ]
    );
    assert!(r.findings[0].detail.contains("97%"));
    assert!(r.findings[1].detail.contains("rose by 7 in 1.5 s"));
    assert!(r.findings[1].detail.contains("tcp_loose=0"));
    assert!(r.findings[2].detail.contains("shorter than 300 s"));
    // Healthy table: nothing.
    let ok = ConntrackFacts {
        count: 10,
        max: Some(1000),
        invalid: 50,
        invalid_delta: Some(0),
        ..ConntrackFacts::default()
    };
    let k_ok = KernelSettings {
        ct_established_s: Some(432_000),
        ..KernelSettings::default()
    };
    assert!(
        evaluate(&socks, &k_ok, Some(&ok), &fixed(1000.0))
            .findings
            .is_empty()
    );
}

#[test]
fn default_path_timeout_comes_from_the_catalog() {
    let c = Catalog::builtin().unwrap();
    let d = default_path_timeout(&c).unwrap();
    let min_nat = c
        .entries()
        .iter()
        .filter(|e| e.kind == "nat")
        .map(|e| e.idle_timeout_s)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(d.seconds, min_nat);
    assert!(d.source.starts_with("assumed"));
}

#[test]
fn json_has_contract_fields() {
    let r = evaluate(
        &[sock(1, 9000)],
        &KernelSettings::default(),
        None,
        &fixed(5.0),
    );
    let v = serde_json::to_value(&r.findings[0]).unwrap();
    for k in [
        "kind", "local", "remote", "pid", "process", "idle_s", "detail", "severity", "fix",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["severity"], "high");
    assert_eq!(v["remote"], "198.18.2.10:5432");
}
