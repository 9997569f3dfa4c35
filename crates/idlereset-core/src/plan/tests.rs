//! Plans for the example inventories and for generated ones: every value the plan promises to
//! keep below the path timeout is checked against the inventory, not against fixed numbers.
#![allow(clippy::unwrap_used)]

use super::tests_support::client;
use super::*;
use crate::catalog::Catalog;
use crate::inventory::{Client, Current, HopKind, Library, Options};
use crate::plan::clients::Value;

const EXAMPLES: [(&str, &str); 4] = [
    (
        "firewall-900.toml",
        include_str!("../../../../examples/inventories/firewall-900.toml"),
    ),
    (
        "firewall-3600.toml",
        include_str!("../../../../examples/inventories/firewall-3600.toml"),
    ),
    (
        "nat-43200.toml",
        include_str!("../../../../examples/inventories/nat-43200.toml"),
    ),
    (
        "multi-hop-aws.toml",
        include_str!("../../../../examples/inventories/multi-hop-aws.toml"),
    ),
];

fn example(name: &str) -> Inventory {
    let (file, text) = EXAMPLES.iter().find(|(f, _)| *f == name).unwrap();
    Inventory::parse(text, file, &Catalog::builtin().unwrap()).unwrap()
}

/// The invariants every plan must satisfy, checked against the inventory itself.
fn assert_safe(inv: &Inventory, p: &Plan) {
    let (t, hop) = inv.path_timeout().unwrap();
    assert_eq!(p.path_timeout_s, t);
    assert_eq!(p.limiting_hop, hop.name);
    for h in &inv.hops {
        assert!(
            p.path_timeout_s <= h.idle_timeout_s,
            "path timeout is the smallest hop"
        );
    }
    let k = &p.keepalive;
    assert!(
        (k.time_s as f64) <= t / 2.0,
        "keepalive time {} leaves half of {t} as margin",
        k.time_s
    );
    assert!(
        (k.intvl_s as f64) < t && k.intvl_s <= k.time_s,
        "intvl {} below {t}",
        k.intvl_s
    );
    assert_eq!(
        k.detect_dead_peer_s,
        k.time_s + k.intvl_s * u64::from(k.probes)
    );
    assert_eq!(k.probes, inv.options.probes);
    assert!((p.pool.idle_timeout_s as f64) < t && (p.pool.max_lifetime_s as f64) < t);
    match (inv.keepalive_blind_timeout(), &p.heartbeat) {
        (Some((b, h)), Some(hb)) => {
            assert_eq!((hb.hop.as_str(), hb.hop_timeout_s), (h.name.as_str(), b));
            assert!((hb.interval_s as f64) <= b / 2.0);
        }
        (None, None) => {}
        other => panic!("heartbeat mismatch: {other:?}"),
    }
    assert!(
        p.firewall.established_timeout_s as f64 >= t,
        "the firewall alternative never shortens"
    );
    assert!(
        p.firewall
            .hops
            .iter()
            .all(|h| h.from_s < p.firewall.established_timeout_s as f64)
    );
    assert_eq!(p.sysctl["net.ipv4.tcp_keepalive_time"], k.time_s);
    assert_eq!(p.sysctl["net.ipv4.tcp_keepalive_intvl"], k.intvl_s);
    assert_eq!(p.clients.len(), inv.clients.len());
    for c in &p.clients {
        assert!(
            !c.settings.0.is_empty() && !c.snippet.is_empty(),
            "{} has settings",
            c.name
        );
        for (key, v) in &c.settings.0 {
            // Every time-like setting, converted to seconds, stays below the path timeout.
            let secs = match (key.as_str(), v) {
                (k, Value::Int(n))
                    if k.ends_with("Millis")
                        || k.ends_with("_ms")
                        || k == "keepaliveTime"
                        || k == "idleTimeout"
                        || k == "maxLifetime"
                        || k == "tcp_user_timeout"
                        || k == "TCP_USER_TIMEOUT" =>
                {
                    Some(*n as f64 / 1000.0)
                }
                (k, Value::Int(n))
                    if k.contains("IDLE")
                        || k.contains("INTV")
                        || k.ends_with("_idle")
                        || k.ends_with("_interval")
                        || k.ends_with("Seconds")
                        || k.contains("keepalive_time")
                        || k.contains("keepalive_intvl")
                        || k == "health_check_interval"
                        || k.ends_with("tcp-keepalive") =>
                {
                    Some(*n as f64)
                }
                (_, Value::Text(s))
                    if s.ends_with('s') && s[..s.len() - 1].parse::<f64>().is_ok() =>
                {
                    s[..s.len() - 1].parse::<f64>().ok()
                }
                _ => None,
            };
            let detection = key.contains("user_timeout")
                || key.contains("USER_TIMEOUT")
                || key.contains("keepalive_timeout_ms");
            if let Some(s) = secs.filter(|_| !detection) {
                assert!(
                    s < t,
                    "{}: {key} = {v} is not below the {t} s path timeout",
                    c.name
                );
            }
        }
    }
}

#[test]
fn every_example_plans_safely() {
    for (name, _) in EXAMPLES {
        let inv = example(name);
        let p = plan(&inv);
        assert_safe(&inv, &p);
        for r in [
            render::text(&p),
            render::sysctl(&p),
            render::mermaid(&p),
            render::dot(&p),
            render::nft(&p),
        ] {
            assert!(!r.is_empty());
        }
    }
}

#[test]
fn one_hop_firewall_900() {
    let inv = example("firewall-900.toml");
    let p = plan(&inv);
    assert_eq!(
        (p.path_timeout_s, p.limiting_hop.as_str()),
        (900.0, "dc-firewall")
    );
    let c = &p.clients[0];
    assert_eq!(c.library, Library::Hikaricp);
    let kinds: Vec<&str> = c.problems.iter().map(|x| x.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["no-keepalive", "pool-idle-too-long"],
        "the seed's diagnosis"
    );
    assert_eq!(
        c.settings.get("dataSource.tcpKeepAlive"),
        Some(&Value::Bool(true)),
        "the opt-in"
    );
    assert!(p.heartbeat.is_none());
    let fw = &p.firewall;
    assert!(
        fw.established_timeout_s as f64 > 3600.0 * 1.25,
        "outlasts the pool's 3600 s idle"
    );
    assert_eq!(fw.longest_client_idle_s, Some(3600.0));
    assert!(fw.hops.iter().all(|h| h.possible));
    assert_eq!(fw.conntrack.entries, 40);
    assert_eq!(fw.conntrack.bytes, 40 * cost::CONNTRACK_ENTRY_BYTES);
}

#[test]
fn several_hops_with_one_ignoring_keepalives() {
    let inv = example("multi-hop-aws.toml");
    let p = plan(&inv);
    assert_eq!(
        (p.path_timeout_s, p.limiting_hop.as_str()),
        (350.0, "nat-gw")
    );
    let hb = p.heartbeat.as_ref().unwrap();
    assert_eq!(hb.hop, "db-proxy");
    assert!(p.warnings.iter().any(|w| w.contains("db-proxy")));
    let by = |n: &str| p.clients.iter().find(|c| c.name == n).unwrap();
    // node-postgres' 10 s default idle timeout is shorter than planned: kept, never lengthened.
    assert_eq!(
        by("catalog-sync").settings.get("idleTimeoutMillis"),
        Some(&Value::Int(10_000))
    );
    assert!(
        by("catalog-sync")
            .problems
            .iter()
            .any(|x| x.kind == "no-keepalive")
    );
    assert!(
        !by("catalog-sync")
            .problems
            .iter()
            .any(|x| x.kind == "no-heartbeat"),
        "its 10 s pool idle covers the proxy"
    );
    assert!(
        by("legacy-batch")
            .problems
            .iter()
            .any(|x| x.kind == "no-heartbeat")
    );
    // Go's 15 s default keepalive holds the NAT gateway, but not the proxy, and database/sql
    // keeps idle connections forever by default.
    let kinds: Vec<&str> = by("checkout")
        .problems
        .iter()
        .map(|x| x.kind.as_str())
        .collect();
    assert_eq!(kinds, ["no-heartbeat"]);
    assert!(by("checkout").notes.iter().any(|n| n.contains("db-proxy")));
    // The NAT gateway cannot be raised; the firewall can.
    let nat = p.firewall.hops.iter().find(|h| h.hop == "nat-gw").unwrap();
    assert!(!nat.possible, "{}", nat.note);
    assert!(
        p.firewall
            .hops
            .iter()
            .any(|h| h.hop == "partner-fw" && h.possible)
    );
    assert_eq!(p.keepalive.probes, 4, "[plan] probes");
}

#[test]
fn firewall_alternative_never_shortens_a_hop() {
    let inv = example("nat-43200.toml");
    let p = plan(&inv);
    assert!(p.firewall.established_timeout_s as f64 >= p.path_timeout_s);
    assert!(p.firewall.hops.is_empty());
    assert_eq!(
        p.firewall.unbounded_clients,
        ["event-processor"],
        "gRPC keepalive is off by default"
    );
}

#[test]
fn grpc_says_the_server_must_permit_pings() {
    let mut inv = example("multi-hop-aws.toml");
    inv.clients = vec![client("g", Library::Grpcio, None)];
    let p = plan(&inv);
    let c = &p.clients[0];
    assert!(
        c.settings
            .get("server:grpc.http2.min_ping_interval_without_data_ms")
            .is_some()
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("too_many_pings") && n.contains("permit_keepalive_time")),
        "{:?}",
        c.notes
    );
    // A 12 h path plans a 7200 s ping: no server change needed, no warning.
    let mut long = example("nat-43200.toml");
    long.clients[0].current = Current::default();
    let p = plan(&long);
    assert!(
        !p.clients[0]
            .notes
            .iter()
            .any(|n| n.contains("too_many_pings"))
    );
}

#[test]
fn json_contract_and_round_trip() {
    let p = plan(&example("multi-hop-aws.toml"));
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["path_timeout_s"], 350.0);
    assert_eq!(v["limiting_hop"], "nat-gw");
    for f in ["time_s", "intvl_s", "probes"] {
        assert!(v["keepalive"][f].is_u64(), "keepalive.{f}");
    }
    for f in ["idle_timeout_s", "max_lifetime_s"] {
        assert!(v["pool"][f].is_u64(), "pool.{f}");
    }
    let c = &v["clients"][0];
    assert_eq!(
        (c["name"].as_str(), c["library"].as_str()),
        (Some("checkout"), Some("go"))
    );
    assert_eq!(
        c["settings"]["net.KeepAliveConfig.Idle"],
        format!("{}s", p.keepalive.time_s)
    );
    assert_eq!(v["clients"][1]["library"], "node-pg");
    let back: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p, "verify can read a saved plan back");
}

#[test]
fn renderers_show_every_hop_and_the_limit() {
    let p = plan(&example("multi-hop-aws.toml"));
    let m = render::mermaid(&p);
    let d = render::dot(&p);
    for h in &p.hops {
        assert!(m.contains(&h.name) && d.contains(&h.name), "{}", h.name);
    }
    assert!(m.contains("class h0 limiting"));
    assert!(
        d.contains("h0 [label=")
            && d.lines()
                .any(|l| l.starts_with("    h0 ") && l.contains("color=red"))
    );
    assert_eq!(d.matches('{').count(), d.matches('}').count());
    assert!(m.contains("c4 --> h0") && m.contains("h2 --> srv"));
    let s = render::sysctl(&p);
    assert!(s.contains(&format!(
        "net.ipv4.tcp_keepalive_time = {}",
        p.keepalive.time_s
    )));
    assert!(s.contains("SO_KEEPALIVE"));
}

#[test]
fn nft_policy_targets_the_matches() {
    let p = plan(&example("firewall-900.toml"));
    let n = render::nft(&p);
    let t = p.firewall.established_timeout_s;
    assert!(
        n.contains(&format!(
            "ip daddr 198.18.2.0/24 tcp dport 5432 ct timeout set \"established-{t}\""
        )),
        "{n}"
    );
    assert!(
        n.contains(&format!(
            "ip6 daddr 2001:db8:2::/64 tcp dport 5432 ct timeout set \"established-{t}-v6\""
        )),
        "{n}"
    );
    assert!(n.contains(&format!("policy = {{ established: {t} }}")));
}

#[test]
fn snapshots() {
    let p = plan(&example("firewall-900.toml"));
    insta::assert_snapshot!("firewall_900_text", render::text(&p));
    insta::assert_snapshot!("firewall_900_sysctl", render::sysctl(&p));
    insta::assert_snapshot!("firewall_900_nft", render::nft(&p));
    let p = plan(&example("multi-hop-aws.toml"));
    insta::assert_snapshot!("multi_hop_mermaid", render::mermaid(&p));
    insta::assert_snapshot!("multi_hop_dot", render::dot(&p));
}

proptest::proptest! {
    #[test]
    fn generated_paths_plan_safely(
        hops in proptest::collection::vec((2.0f64..500_000.0, proptest::prelude::any::<bool>()), 1..6),
        libs in proptest::collection::vec(0usize..Library::ALL.len(), 0..5),
        probes in 1u32..=127,
    ) {
        let inv = Inventory {
            name: None,
            server: None,
            hops: hops.iter().enumerate().map(|(i, (t, honours))| Hop {
                name: format!("h{i}"),
                kind: if *honours { HopKind::Firewall } else { HopKind::Proxy },
                idle_timeout_s: *t,
                failure: crate::catalog::Failure::Drop,
                honours_keepalive: *honours,
                catalog: None,
                matches: vec![],
                line: i + 1,
                other_path: None,
            }).collect(),
            clients: libs.iter().enumerate().map(|(i, l)| Client {
                connections: 3,
                ..client(&format!("c{i}"), Library::ALL[*l].1, None)
            }).collect(),
            options: Options { probes, ..Options::default() },
        };
        let p = plan(&inv);
        // gRPC's 10 s floor and HikariCP's 30 s minimums cannot fit tiny paths; those are warned.
        if p.path_timeout_s >= 60.0 {
            assert_safe(&inv, &p);
        } else {
            proptest::prop_assert!(!p.warnings.is_empty());
        }
    }
}
