#![allow(clippy::unwrap_used)]
//! `verify` on the real kernel (issue 7's test list): planned settings survive an idle beyond
//! the path timeout, the runbook's "OS sysctl only" setting fails, and a libpq connection
//! string with `keepalives_idle` below the timeout survives against a real PostgreSQL.

use idlereset_core::catalog::Catalog;
use idlereset_core::inventory::Inventory;
use idlereset_core::plan;
use idlereset_lab::verify::mapping::Which;
use idlereset_lab::verify::{Db, Options, Report, RunReport, run};
use idlereset_linux::privilege::require_or_skip;

fn inventory(text: &str) -> Inventory {
    Inventory::parse(text, "test.toml", &Catalog::builtin().unwrap()).unwrap()
}

async fn verify(text: &str, opts: Options) -> Report {
    let inv = inventory(text);
    let p = plan::plan(&inv);
    let r = run(&inv, &p, &opts, &|m| eprintln!("{m}")).await.unwrap();
    for run in &r.runs {
        eprintln!(
            "{:>10} {:<11} {:<9} via {:<7} idle {:.0} s {:?} {}",
            run.client,
            run.settings.as_str(),
            run.outcome,
            run.via,
            run.idle_s,
            run.error,
            run.detail
        );
    }
    r
}

fn find<'a>(r: &'a Report, client: &str, which: Which) -> &'a RunReport {
    r.runs
        .iter()
        .find(|x| x.client == client && x.settings == which)
        .unwrap_or_else(|| panic!("no run {client} {which:?}"))
}

const RUNBOOK: &str = include_str!("../../../examples/inventories/firewall-3600.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_plan_survives_and_sysctl_only_fails() {
    if !require_or_skip("runbook_plan_survives_and_sysctl_only_fails") {
        return;
    }
    let r = verify(RUNBOOK, Options::default()).await;
    assert!(r.verified, "planned settings must survive: {:#?}", r.runs);
    for run in r.runs.iter().filter(|x| x.settings == Which::Planned) {
        assert_eq!(run.outcome, "survived", "{run:?}");
        assert!(
            run.idle_s > r.path_timeout_s,
            "idle {} must exceed the path timeout {}",
            run.idle_s,
            r.path_timeout_s
        );
    }
    // PgJDBC with only the OS sysctls: SO_KEEPALIVE is off, the firewall forgets the flow.
    let trap = find(&r, "reports", Which::SysctlOnly);
    assert_eq!(trap.outcome, "reset", "{trap:?}");
    assert!(
        trap.error.as_deref().unwrap().contains("reset by peer"),
        "{trap:?}"
    );
    // libpq with the OS default 7200 s keepalive idle: too late for the 3600 s firewall.
    assert_ne!(find(&r, "billing", Which::Current).outcome, "survived");
    assert_ne!(find(&r, "ingest", Which::Current).outcome, "survived");
}

const LIBPQ_900: &str = r#"
name = "libpq through the 900 s firewall"
[[hop]]
name = "dc-firewall"
kind = "firewall"
idle_timeout_s = 900
failure = "reset"
[[client]]
name = "api"
library = "libpq"
connections = 4
current = { keepalive_time_s = 7200 }
[[client]]
name = "other"
library = "java"
connections = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_keepalives_idle_survives_against_real_postgres() {
    if !require_or_skip("libpq_keepalives_idle_survives_against_real_postgres") {
        return;
    }
    assert!(
        idlereset_lab::postgres::Binaries::find().is_some()
            && idlereset_lab::postgres::find_psql().is_some(),
        "PostgreSQL (initdb, postgres, psql) is needed: run .ci/install-deps"
    );
    let opts = Options {
        client: Some("api".into()),
        db: Db::Postgres,
        ..Options::default()
    };
    let r = verify(LIBPQ_900, opts).await;
    assert_eq!(r.db, "postgres");
    assert_eq!(r.runs.len(), 2, "only the chosen client: {:?}", r.runs);
    let planned = find(&r, "api", Which::Planned);
    assert_eq!(planned.via, "psql");
    // keepalives_idle below the path timeout, passed to libpq in the connection string.
    let idle = planned.model.keepidle_s.unwrap();
    assert!(idle < r.path_timeout_s, "{idle}");
    let lab_idle = (idle / r.time_scale).round() as u64;
    assert!(
        planned
            .detail
            .contains(&format!("keepalives_idle={lab_idle} ")),
        "{}",
        planned.detail
    );
    assert_eq!(planned.outcome, "survived", "{planned:?}");
    assert!(r.verified);
    // The same psql with the OS default idle (7200 s) loses its session to the firewall's RST.
    let current = find(&r, "api", Which::Current);
    assert_eq!(current.via, "psql");
    assert_eq!(current.outcome, "reset", "{current:?}");
    assert!(
        current
            .error
            .as_deref()
            .unwrap()
            .contains("server closed the connection unexpectedly"),
        "{current:?}"
    );
}

const DROP_AND_PROXY: &str = r#"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 900
failure = "drop"
[[hop]]
name = "proxy"
kind = "proxy"
idle_timeout_s = 1200
failure = "fin"
honours_keepalive = false
[[client]]
name = "bare"
library = "raw"
connections = 1
[[client]]
name = "ka"
library = "python"
connections = 1
current = { keepalive = true, keepalive_time_s = 300, keepalive_intvl_s = 60 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_hop_blackholes_and_proxy_needs_traffic() {
    if !require_or_skip("drop_hop_blackholes_and_proxy_needs_traffic") {
        return;
    }
    let opts = Options {
        db: Db::Builtin,
        ..Options::default()
    };
    let r = verify(DROP_AND_PROXY, opts).await;
    assert_eq!(r.db, "builtin");
    // No keepalive through a dropping firewall: the query vanishes.
    assert_eq!(find(&r, "bare", Which::Current).outcome, "blackhole");
    // Keepalive holds the firewall but not the proxy, which closes the idle connection.
    let ka = find(&r, "ka", Which::Current);
    assert_eq!(ka.outcome, "closed", "{ka:?}");
    // The plan adds application traffic below the proxy's timeout: both survive.
    for c in ["bare", "ka"] {
        let p = find(&r, c, Which::Planned);
        assert_eq!(p.outcome, "survived", "{p:?}");
        assert!(p.detail.contains("heartbeats"), "{p:?}");
    }
    assert!(r.verified);
}

const TWO_FIREWALLS: &str = r#"
[[hop]]
name = "near-fw"
kind = "firewall"
idle_timeout_s = 900
failure = "reset"
[[hop]]
name = "far-fw"
kind = "firewall"
idle_timeout_s = 1800
failure = "drop"
[[client]]
name = "svc"
library = "raw"
connections = 1
current = { keepalive = true, keepalive_time_s = 1200, keepalive_intvl_s = 60 }
"#;

/// One firewall per hop: keepalive every 1200 s holds the far 1800 s firewall, but the near
/// 900 s one (a router turned firewall) forgets the flow and resets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hop_is_its_own_firewall() {
    if !require_or_skip("each_hop_is_its_own_firewall") {
        return;
    }
    let r = verify(TWO_FIREWALLS, Options::default()).await;
    let hosts: Vec<(&str, &str)> = r
        .hops
        .iter()
        .map(|h| (h.name.as_str(), h.host.as_str()))
        .collect();
    assert_eq!(hosts, [("near-fw", "r1"), ("far-fw", "fw")]);
    assert_eq!(r.hops[0].lab_timeout_s * 2, r.hops[1].lab_timeout_s);
    let cur = find(&r, "svc", Which::Current);
    assert_eq!(cur.outcome, "reset", "the near firewall cuts it: {cur:?}");
    assert_eq!(find(&r, "svc", Which::Planned).outcome, "survived");
    assert!(r.verified);
}

const LIBPQ_PROXY_V6: &str = r#"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 900
failure = "reset"
[[hop]]
name = "pgbouncer"
kind = "proxy"
idle_timeout_s = 1200
failure = "fin"
honours_keepalive = false
[[client]]
name = "api"
library = "libpq"
connections = 1
current = { keepalive_time_s = 300, keepalive_intvl_s = 60 }
[plan]
ip_version = 6
"#;

/// Over IPv6, real PostgreSQL's idle_session_timeout stands in for a proxy that ignores
/// keepalives: libpq keepalives hold the firewall but the server closes the idle session
/// (FATAL, "closed"); the plan's heartbeat queries keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_session_needs_heartbeat_over_ipv6() {
    if !require_or_skip("postgres_idle_session_needs_heartbeat_over_ipv6") {
        return;
    }
    assert!(
        idlereset_lab::postgres::Binaries::find().is_some(),
        "PostgreSQL is needed: run .ci/install-deps"
    );
    let opts = Options {
        db: Db::Postgres,
        ..Options::default()
    };
    let r = verify(LIBPQ_PROXY_V6, opts).await;
    let current = find(&r, "api", Which::Current);
    assert_eq!(current.via, "psql");
    assert!(
        current.detail.contains("host=2001:db8:2::10"),
        "{current:?}"
    );
    assert_eq!(current.outcome, "closed", "{current:?}");
    assert!(
        current
            .error
            .as_deref()
            .unwrap()
            .contains("idle-session timeout"),
        "{current:?}"
    );
    let planned = find(&r, "api", Which::Planned);
    assert_eq!(planned.outcome, "survived", "{planned:?}");
    assert!(planned.detail.contains("heartbeat queries"), "{planned:?}");
}

/// The `n`th error text of a library in the library data.
fn b_error(lib: idlereset_core::inventory::Library, n: usize) -> &'static str {
    &idlereset_core::libraries::Libraries::builtin()
        .profile(lib, None)
        .library
        .errors[n]
}

/// The client matrix on a 60 s path, short enough to run library defaults in real time.
const MATRIX_60: &str = r#"
name = "client matrix"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 60
failure = "reset"
[[client]]
name = "redis-py"
library = "redis-py"
[[client]]
name = "ioredis"
library = "ioredis"
[[client]]
name = "node-pg"
library = "node-pg"
[[client]]
name = "libpq"
library = "libpq"
[[client]]
name = "grpcio"
library = "grpcio"
[[client]]
name = "pgjdbc"
library = "pgjdbc"
[[client]]
name = "hikaricp"
library = "hikaricp"
version = "2.7.9"
[[client]]
name = "lib-pq"
library = "lib-pq"
[[client]]
name = "pgx"
library = "pgx"
version = "4.15.0"
"#;

/// Real redis-py, ioredis, node-postgres and grpcio (drivers under `drivers/`, installed by
/// `.ci/install-deps`) and libpq through psql: each library's defaults fail or survive as the
/// library data says, their sockets read back over sock_diag carry the data's SO_KEEPALIVE and
/// TCP_KEEPIDLE, and the plan's settings survive, all in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_library_matrix_matches_the_library_data() {
    use idlereset_core::inventory::Library;
    use idlereset_core::libraries::Libraries;
    use idlereset_core::plan::clients::HOST_KEEPALIVE;
    if !require_or_skip("real_library_matrix_matches_the_library_data") {
        return;
    }
    let opts = Options {
        db: Db::Postgres,
        ..Options::default()
    };
    let r = verify(MATRIX_60, opts).await;
    assert_eq!(r.time_scale, 1.0, "library defaults run in real time");
    let t = r.path_timeout_s;
    for (name, lib) in [
        ("redis-py", Library::RedisPy),
        ("ioredis", Library::Ioredis),
        ("node-pg", Library::NodePg),
        ("libpq", Library::Libpq),
        ("grpcio", Library::Grpcio),
        ("pgjdbc", Library::Pgjdbc),
        ("hikaricp", Library::Hikaricp),
        ("lib-pq", Library::LibPq),
        ("pgx", Library::Pgx),
    ] {
        let b = Libraries::builtin().profile(lib, None).behaviour;
        let holds = b
            .wire_keepalive(HOST_KEEPALIVE)
            .is_some_and(|(idle, intvl, _)| idle < t && intvl < t);
        // A library that validates on borrow hides the reset: it answers on a new connection.
        let hidden = !holds && b.hides_resets.is_some() && lib == Library::Hikaricp;
        let current = find(&r, name, Which::Current);
        let planned = find(&r, name, Which::Planned);
        if lib == Library::Libpq {
            assert_eq!(current.via, "psql", "{current:?}");
        } else {
            for run in [current, planned] {
                assert!(
                    run.via.starts_with("real:"),
                    "{name} must run the real library (run .ci/install-deps): {run:?}"
                );
                assert!(run.library_version.is_some(), "{run:?}");
            }
            // The real sockets, read back over sock_diag, carry what the library data says.
            let so = current
                .sockopts
                .expect("sock_diag read-back of the real connection");
            assert_eq!(so.so_keepalive, Some(b.so_keepalive), "{name}: {so:?}");
            if let (Some(want), true) = (b.keepidle_s, b.so_keepalive) {
                let got = so.keepidle_s.expect("keepalive idle estimate");
                assert!(
                    (got - want).abs() <= 2.0,
                    "{name}: TCP_KEEPIDLE {got} vs data {want}"
                );
            }
            let sp = planned.sockopts.expect("planned read-back");
            assert_eq!(
                sp.so_keepalive,
                Some(planned.model.so_keepalive),
                "{name}: {sp:?}"
            );
            if let (Some(want), Some(got)) = (planned.model.keepidle_s, sp.keepidle_s) {
                assert!(
                    (got - want).abs() <= 2.0,
                    "{name}: planned TCP_KEEPIDLE {got} vs {want}"
                );
            }
        }
        if hidden {
            assert_eq!(current.retried, Some(true), "{name}: {current:?}");
        }
        let log = current.app_log.as_deref().unwrap_or("");
        match lib {
            // What the application log shows of the reset, as the library data says.
            Library::Pgjdbc => {
                assert!(log.contains(b_error(lib, 0)), "{name}: {log}");
                assert!(log.contains("Caused by: "), "{name}: {log}");
            }
            Library::Hikaricp => assert!(
                log.contains("Failed to validate connection")
                    && log.contains("This connection has been closed."),
                "{name}: {log}"
            ),
            Library::Pgx => assert!(log.contains("connection reset by peer"), "{name}: {log}"),
            _ => {}
        }
        assert_eq!(
            current.outcome == "survived",
            holds || hidden,
            "{name}: library data says defaults {} a {t} s path: {current:?}",
            if holds { "hold" } else { "do not hold" }
        );
        assert_eq!(planned.outcome, "survived", "{planned:?}");
        assert!(current.idle_s > t && planned.idle_s > t);
    }
    assert!(r.verified);
}

/// grpcio on a 12 s path, in real time (its ping gap is fixed in its code): its defaults send
/// nothing on an idle channel and are reset; `plan`'s keepalive_time_ms, chosen so that the
/// period plus the measured extra gap stays below the path, holds; the socket has no
/// SO_KEEPALIVE either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_pings_hold_a_path_longer_than_their_wire_gap() {
    if !require_or_skip("grpcio_pings_hold_a_path_longer_than_their_wire_gap") {
        return;
    }
    let inv = r#"
name = "grpcio 12 s"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 12
failure = "reset"
[[client]]
name = "grpcio"
library = "grpcio"
"#;
    let r = verify(inv, Options::default()).await;
    assert_eq!(r.time_scale, 1.0, "grpcio's ping gap cannot be time-scaled");
    let current = find(&r, "grpcio", Which::Current);
    let planned = find(&r, "grpcio", Which::Planned);
    for run in [current, planned] {
        assert_eq!(run.via, "real:python:grpc", "run .ci/install-deps: {run:?}");
        let so = run.sockopts.expect("sock_diag read-back");
        assert_eq!(so.so_keepalive, Some(false), "{run:?}");
    }
    assert_eq!(current.outcome, "reset", "{current:?}");
    let log = current.app_log.as_deref().unwrap_or("");
    assert!(log.contains("StatusCode.UNAVAILABLE"), "{log}");
    assert!(
        planned.why.contains("grpc.keepalive_time_ms"),
        "{planned:?}"
    );
    assert_eq!(planned.outcome, "survived", "{planned:?}");
}
