#![allow(clippy::unwrap_used)]
//! `probe` against lab paths with known idle timeouts (issue 3's test list).

use std::net::SocketAddr;
use std::time::Duration;

use idlereset_core::probe::{Failure, Precision};
use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::server::DbServer;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::privilege::require_or_skip;
use idlereset_linux::probe::{ProbeConfig, ProbeOutcome, refresh_test, run};

struct Path {
    lab: Lab,
    _server: DbServer,
    target: SocketAddr,
}

async fn path(profile: Profile, fw_timeout_s: u32, server_idle_close: Option<Duration>) -> Path {
    let spec = LabSpec {
        hops: 0,
        firewall: FirewallSettings::new(profile, fw_timeout_s),
        app_sysctls: vec![],
        router_firewalls: vec![],
    };
    let lab = Lab::create(spec, None, Ownership::Foreground)
        .await
        .unwrap();
    let server = DbServer::start(lab.ns("db").unwrap(), 5432, server_idle_close).unwrap();
    let target = SocketAddr::new(lab.topology().db_addr(false), 5432);
    Path {
        lab,
        _server: server,
        target,
    }
}

fn config(p: &Path, max_s: u64, precision: Precision) -> ProbeConfig {
    ProbeConfig {
        target: p.target,
        max: Duration::from_secs(max_s),
        precision,
        connections: 256,
        connect_rate: 200,
        wall_limit: Duration::from_secs(3 * max_s + 30),
        netns: Some(p.lab.ns("app").unwrap().name().to_string()),
    }
}

async fn measure(p: &Path, max_s: u64, precision: Precision) -> ProbeOutcome {
    let cfg = config(p, max_s, precision);
    let out = tokio::task::spawn_blocking(move || run(&cfg, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "bracket {:?} in {:.1} s, {} connections",
        out.bracket, out.elapsed_s, out.connections
    );
    out
}

fn assert_brackets(out: &ProbeOutcome, configured: f64, failure: Failure, precision: Precision) {
    let low = out.bracket.low.expect("something survived");
    let (high, f) = out.bracket.high.expect("something failed");
    assert!(
        low < configured + 0.01 && configured <= high + 0.01,
        "[{low}, {high}] must contain {configured}"
    );
    assert!(
        precision.satisfied(low, high),
        "width {} too wide",
        high - low
    );
    assert_eq!(f, failure);
    // Ends close to T, not a multiple of it.
    assert!(
        out.elapsed_s <= 1.2 * configured + 3.0,
        "took {:.1} s for T = {configured}",
        out.elapsed_s
    );
}

macro_rules! privileged {
    ($name:literal) => {
        if !require_or_skip($name) {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_firewalls_of_3_7_12_seconds() {
    privileged!("reject_firewalls_of_3_7_12_seconds");
    let p = Precision::Relative(0.05);
    let (a, b, c) = tokio::join!(
        path(Profile::Reject, 3, None),
        path(Profile::Reject, 7, None),
        path(Profile::Nat, 12, None)
    );
    let (ra, rb, rc) = tokio::join!(measure(&a, 30, p), measure(&b, 30, p), measure(&c, 30, p));
    assert_brackets(&ra, 3.0, Failure::Reset, p);
    assert_brackets(&rb, 7.0, Failure::Reset, p);
    assert_brackets(&rc, 12.0, Failure::Reset, p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_firewall_is_a_blackhole() {
    privileged!("drop_firewall_is_a_blackhole");
    let p = Precision::Absolute(1.0);
    let path = path(Profile::Drop, 7, None).await;
    let out = measure(&path, 20, p).await;
    let low = out.bracket.low.unwrap();
    let (high, f) = out.bracket.high.unwrap();
    assert!(low < 7.01 && 7.0 <= high + 0.01, "[{low}, {high}]");
    assert_eq!(f, Failure::Blackhole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closing_idle_connections_is_a_fin() {
    privileged!("server_closing_idle_connections_is_a_fin");
    let path = path(Profile::Reject, 3600, Some(Duration::from_secs(5))).await;
    let out = measure(&path, 20, Precision::Relative(0.05)).await;
    let (high, f) = out.bracket.high.unwrap();
    assert_eq!(f, Failure::Fin);
    assert!((4.9..5.6).contains(&high), "FIN after {high} s");
    assert_eq!(out.passes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timeout_within_max_reports_none() {
    privileged!("no_timeout_within_max_reports_none");
    let path = path(Profile::Reject, 3600, None).await;
    let out = measure(&path, 6, Precision::Relative(0.05)).await;
    assert_eq!(out.bracket.failure(), Failure::None);
    let low = out.bracket.low.unwrap();
    assert!((6.0..7.5).contains(&low), "the 6 s rung survived: {low}");
    assert!(out.elapsed_s < 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_test_passes_with_keepalive_below_the_timeout() {
    privileged!("refresh_test_passes_with_keepalive_below_the_timeout");
    let path = path(Profile::Reject, 4, None).await;
    let cfg = config(&path, 10, Precision::Absolute(1.0));
    let ok = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || refresh_test(&cfg, 2, Duration::from_secs(9))
    });
    // Keepalive every 6 s through a 4 s firewall: the entry expires between probes.
    let bad = tokio::task::spawn_blocking(move || refresh_test(&cfg, 6, Duration::from_secs(9)));
    let (ok, bad) = (ok.await.unwrap().unwrap(), bad.await.unwrap().unwrap());
    assert!(ok.carried_data, "{ok:?}");
    assert!(!bad.carried_data, "{bad:?}");
    assert_eq!(bad.failure, Failure::Reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_probe_through_nat_against_listen() {
    privileged!("reverse_probe_through_nat_against_listen");
    let path = path(Profile::Nat, 5, None).await;
    let listener = path
        .lab
        .ns("db")
        .unwrap()
        .run(|| std::net::TcpListener::bind(("0.0.0.0", 9477)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || idlereset_linux::listen::serve(listener, |_| {}));
    let mut cfg = config(&path, 15, Precision::Absolute(1.0));
    cfg.target = SocketAddr::new(path.lab.topology().db_addr(false), 9477);
    let out =
        tokio::task::spawn_blocking(move || idlereset_linux::probe::run_reverse(&cfg, &mut |_| {}))
            .await
            .unwrap()
            .unwrap();
    eprintln!(
        "reverse bracket {:?} in {:.1} s",
        out.bracket, out.elapsed_s
    );
    let low = out.bracket.low.unwrap();
    let (high, f) = out.bracket.high.unwrap();
    assert!(low < 5.01 && 5.0 <= high + 0.01, "[{low}, {high}]");
    assert_eq!(
        f,
        Failure::Reset,
        "the server's probe meets a NAT that forgot the flow"
    );
}
