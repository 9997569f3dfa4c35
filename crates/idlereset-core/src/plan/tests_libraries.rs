//! Plans per library and version: defaults, settings a version lacks and library minimums come
//! from `data/libraries.toml`, so each expectation here is read from that data where it can be.
#![allow(clippy::unwrap_used)]

use super::tests_support::{client, path};
use super::*;
use crate::inventory::{Client, Current, Library};
use crate::libraries::{Libraries, Version};
use crate::plan::clients::Value;

fn one(t: f64, c: Client) -> ClientPlan {
    plan(&path(t, vec![c])).clients.remove(0)
}

fn kinds(c: &ClientPlan) -> Vec<&str> {
    c.problems.iter().map(|p| p.kind.as_str()).collect()
}

#[test]
fn hikaricp_2_7_never_gets_keepalive_time_but_5_does() {
    let old = one(900.0, client("a", Library::Hikaricp, Some("2.7.9")));
    assert!(
        old.settings.get("keepaliveTime").is_none(),
        "{:?}",
        old.settings
    );
    assert!(!old.snippet.contains("keepaliveTime="), "{}", old.snippet);
    assert!(old.notes.iter().any(|n| n.contains("has no keepaliveTime")));
    assert!(old.settings.get("dataSource.tcpKeepAlive").is_some());
    assert_eq!(old.version, "2.7.9");
    assert!(!old.version_assumed);
    let new = one(900.0, client("a", Library::Hikaricp, Some("5.1.0")));
    assert!(new.settings.get("keepaliveTime").is_some());
    assert!(new.snippet.contains("keepaliveTime="));
    // Validation on borrow hides resets but is not a keepalive: still a problem today.
    assert!(kinds(&old).contains(&"no-keepalive"), "{:?}", old.problems);
    assert!(
        old.notes
            .iter()
            .any(|n| n.contains("does not keep the flow alive"))
    );
}

#[test]
fn no_version_says_which_version_the_advice_assumes() {
    let c = one(900.0, client("a", Library::Hikaricp, None));
    let assumed = Libraries::builtin()
        .get("hikaricp")
        .unwrap()
        .assumed_version;
    assert!(c.version_assumed);
    assert_eq!(c.version, assumed.to_string());
    assert!(
        c.notes.iter().any(|n| n.contains("assumed")),
        "{:?}",
        c.notes
    );
}

#[test]
fn five_second_path_grpcio_and_grpc_go_cannot_ping_it() {
    // grpcio leaves ~5 s more than keepalive_time_ms between pings on the wire (measured, see
    // the library data): a 5 s path is a per-client problem, with an application call instead
    // of the host sysctls (grpcio sets no SO_KEEPALIVE).
    let py = one(5.0, client("py", Library::Grpcio, None));
    assert!(
        py.settings.get("grpc.keepalive_time_ms").is_none(),
        "{:?}",
        py.settings
    );
    let p = py
        .problems
        .iter()
        .find(|p| p.kind == "below-library-minimum")
        .expect("grpcio's ping gap is a per-client problem");
    assert!(p.detail.contains("unary RPC"), "{}", p.detail);
    // A 12 s path holds: the period plus the extra gap stays below the path.
    let ok = one(12.0, client("py", Library::Grpcio, None));
    let ms = match ok.settings.get("grpc.keepalive_time_ms") {
        Some(Value::Int(ms)) => *ms,
        other => panic!("{other:?}"),
    };
    assert!(
        (ms as f64) / 1000.0 + 5.0 < 12.0,
        "grpcio ping gap below the path: {ms}"
    );
    let go = one(5.0, client("go", Library::GrpcGo, None));
    let p = go
        .problems
        .iter()
        .find(|p| p.kind == "below-library-minimum")
        .expect("grpc-go's floor is a per-client problem");
    assert!(p.detail.contains("TCP keepalive"), "{}", p.detail);
    assert!(go.settings.get("keepalive.ClientParameters.Time").is_none());
    assert!(go.settings.get("net.KeepAliveConfig.Idle").is_some());
    let java = one(5.0, client("j", Library::GrpcJava, None));
    assert!(kinds(&java).contains(&"below-library-minimum"));
    assert!(
        java.settings
            .get("EpollChannelOption.TCP_KEEPIDLE")
            .is_some()
    );
    // Above the floor grpc-go gets its HTTP/2 keepalive, at least the floor.
    let ok = one(60.0, client("go", Library::GrpcGo, None));
    assert!(ok.settings.get("keepalive.ClientParameters.Time").is_some());
    assert!(!kinds(&ok).contains(&"below-library-minimum"));
}

#[test]
fn defaults_on_the_wire_decide_todays_problems() {
    // redis-py 8 holds a 60 s path by its own keepalive (30 s); 7.x does not set SO_KEEPALIVE.
    assert!(
        one(60.0, client("r", Library::RedisPy, Some("8.1.0")))
            .problems
            .is_empty()
    );
    assert!(
        kinds(&one(60.0, client("r", Library::RedisPy, Some("7.4.0")))).contains(&"no-keepalive")
    );
    // ioredis 6: keepAlive 30 s by default.
    assert!(
        one(60.0, client("i", Library::Ioredis, Some("6.0.0")))
            .problems
            .is_empty()
    );
    // Go's net.Dialer 15 s and lib/pq (which keeps it) hold 60 s; pgx's 5 min does not.
    assert!(
        one(60.0, client("g", Library::Go, None))
            .problems
            .is_empty()
    );
    assert!(
        one(60.0, client("l", Library::LibPq, None))
            .problems
            .is_empty()
    );
    assert!(kinds(&one(60.0, client("x", Library::Pgx, None))).contains(&"keepalive-too-late"));
    // libpq: on, but the OS's 7200 s.
    assert!(kinds(&one(60.0, client("p", Library::Libpq, None))).contains(&"keepalive-too-late"));
}

#[test]
fn heartbeat_is_honoured_as_application_traffic() {
    let mut c = client("a", Library::Pgjdbc, None);
    c.current = Current {
        heartbeat_s: Some(20.0),
        ..Current::default()
    };
    let p = one(60.0, c);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.current_idle_bound_s, Some(20.0));
}

#[test]
fn node_runtime_interval_replaces_host_sysctls() {
    let p = one(900.0, client("n", Library::NodePg, None));
    assert!(p.settings.get("net.ipv4.tcp_keepalive_intvl").is_none());
    assert!(
        p.notes.iter().any(|n| n.contains("TCP_KEEPINTVL 1 s")),
        "{:?}",
        p.notes
    );
}

#[test]
fn every_emitted_key_is_one_the_version_has() {
    for (_, lib) in Library::ALL {
        for t in [5.0, 60.0, 900.0] {
            let c = one(t, client("c", lib, None));
            let prof = Libraries::builtin().profile(lib, None);
            for (k, _) in &c.settings.0 {
                assert!(
                    k.starts_with("net.ipv4.")
                        || k.starts_with("server:")
                        || prof.behaviour.supports(k),
                    "{}: {k} not in the data file's `supports`",
                    lib.as_str()
                );
            }
        }
    }
    let v = Version::parse("4.0.0").unwrap();
    assert!(
        !Libraries::builtin()
            .profile(Library::Hikaricp, Some(v))
            .behaviour
            .supports("keepaliveTime")
    );
}

fn ms(c: &ClientPlan, key: &str) -> Option<u64> {
    match c.settings.get(key) {
        Some(Value::Int(n)) => Some(*n),
        None => None,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn hikaricp_2_7_9_on_20_s_gets_no_pool_limit_below_its_minimums() {
    // HikariCP 2.7.9 replaces a maxLifetime below 30 s with 30 min (measured, see the data):
    // on a 20 s path the plan leaves maxLifetime out and says why, relying on TCP keepalive.
    let b = Libraries::builtin()
        .profile(Library::Hikaricp, Some(Version::parse("2.7.9").unwrap()))
        .behaviour;
    let min_life = b
        .min_max_lifetime_s
        .expect("2.7.9 has a maxLifetime minimum")
        * 1000.0;
    let min_idle = b.min_pool_idle_s.expect("2.7.9 has an idleTimeout minimum") * 1000.0;
    let c = one(20.0, client("h", Library::Hikaricp, Some("2.7.9")));
    assert_eq!(ms(&c, "maxLifetime"), None, "{:?}", c.settings);
    assert!(!c.snippet.contains("maxLifetime="), "{}", c.snippet);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("maxLifetime is left out") && n.contains("TCP keepalive")),
        "{:?}",
        c.notes
    );
    if let Some(i) = ms(&c, "idleTimeout") {
        assert!(i as f64 >= min_idle && (i as f64) < 20_000.0, "{i}");
    }
    assert_eq!(
        c.settings.get("dataSource.tcpKeepAlive"),
        Some(&Value::Bool(true))
    );
    assert!(c.settings.get("net.ipv4.tcp_keepalive_time").is_some());
    // Every path and version: nothing below the row's minimums, nothing at or above the path.
    for v in ["2.7.9", "4.0.3", "5.1.0"] {
        let b = Libraries::builtin()
            .profile(Library::Hikaricp, Some(Version::parse(v).unwrap()))
            .behaviour;
        for t in [5.0, 12.0, 20.0, 35.0, 45.0, 60.0, 90.0, 900.0] {
            let c = one(t, client("h", Library::Hikaricp, Some(v)));
            for (key, min) in [
                ("maxLifetime", b.min_max_lifetime_s),
                ("idleTimeout", b.min_pool_idle_s),
                ("keepaliveTime", b.min_ping_s),
            ] {
                if let Some(x) = ms(&c, key) {
                    assert!(
                        x as f64 >= min.unwrap_or(0.0) * 1000.0,
                        "{v} {t} s: {key}={x}"
                    );
                    assert!((x as f64) < t * 1000.0, "{v} {t} s: {key}={x}");
                }
            }
        }
    }
    // A 35 s path: the 30 s minimum still fits below it, so maxLifetime is raised to it.
    let c = one(35.0, client("h", Library::Hikaricp, Some("2.7.9")));
    assert_eq!(ms(&c, "maxLifetime"), Some(min_life as u64));
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("accepts maxLifetime from"))
    );
}

#[test]
fn hikaricp_5_on_60_s_still_gets_keepalive_time() {
    let c = one(60.0, client("h", Library::Hikaricp, Some("5.1.0")));
    let min = Libraries::builtin()
        .profile(Library::Hikaricp, Some(Version::parse("5.1.0").unwrap()))
        .behaviour
        .min_ping_s
        .unwrap()
        * 1000.0;
    let ka = ms(&c, "keepaliveTime").expect("keepaliveTime on a 60 s path");
    assert!(ka as f64 >= min && ka < 60_000, "{ka}");
    if let Some(l) = ms(&c, "maxLifetime") {
        assert!(ka < l, "keepaliveTime {ka} must stay below maxLifetime {l}");
    }
    // On 20 s the 30 s keepaliveTime cannot fit: left out, TCP keepalive instead.
    let short = one(20.0, client("h", Library::Hikaricp, Some("5.1.0")));
    assert_eq!(ms(&short, "keepaliveTime"), None, "{:?}", short.settings);
    assert!(
        short
            .notes
            .iter()
            .any(|n| n.contains("keepaliveTime is left out"))
    );
}

#[test]
fn go_clients_say_keepalive_config_needs_go_1_23() {
    for lib in [Library::LibPq, Library::Pgx, Library::GoRedis, Library::Go] {
        let c = one(60.0, client("g", lib, None));
        assert!(
            c.settings.get("net.KeepAliveConfig.Idle").is_some(),
            "{}: {:?}",
            lib.as_str(),
            c.settings
        );
        assert!(
            c.notes.iter().any(|n| n.contains("Go 1.23")
                && n.contains("TCP_KEEPCNT")
                && n.contains("setsockopt")),
            "{}: {:?}",
            lib.as_str(),
            c.notes
        );
    }
    // Go before 1.23 gets net.Dialer.KeepAlive, not KeepAliveConfig.
    let old = one(60.0, client("g", Library::Go, Some("1.22")));
    assert!(old.settings.get("net.KeepAliveConfig.Enable").is_none());
    assert!(old.settings.get("net.Dialer.KeepAlive").is_some());
}
