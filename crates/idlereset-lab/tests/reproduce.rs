#![allow(clippy::unwrap_used)]
//! Incidents reproduced on the real kernel (issue 2's test list). Each test builds its own lab
//! (namespaces named with a fresh run id), so they run in parallel without clashing.

use idlereset_lab::firewall::Profile;
use idlereset_lab::reproduce::{Outcome, Report, run};
use idlereset_lab::scenario::Scenario;
use idlereset_linux::privilege::require_or_skip;

/// firewall-900 at scale 300: firewall 3 s, idle 4 s (1200 s), pool idle 12 s.
fn fw900() -> Scenario {
    let mut s = Scenario::preset("firewall-900").unwrap();
    s.time_scale = 300.0;
    s
}

async fn go(s: &Scenario) -> Report {
    let r = run(s, &|m| eprintln!("{m}")).await.unwrap();
    eprintln!(
        "{} -> {:?} {:?}\n{}",
        s.preset, r.outcome, r.error, r.verdict
    );
    for e in &r.timeline {
        eprintln!("  {:7.3}s {:>4} {}", e.t_s, e.host, e.what);
    }
    r
}

macro_rules! privileged {
    ($name:literal) => {
        if !require_or_skip($name) {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_beyond_firewall_timeout_resets() {
    privileged!("idle_beyond_firewall_timeout_resets");
    let r = go(&fw900()).await;
    assert_eq!(r.outcome, Outcome::Reset);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("Connection reset by peer"),
        "{:?}",
        r.error
    );
    // The entry expired within the expected window: after the firewall timeout (3 s lab),
    // before the query (4 s lab), measured from the last activity at ~0 s.
    let gone = r
        .evidence
        .ct_gone_at_s
        .expect("conntrack entry should have expired");
    assert!((2.9..4.0).contains(&gone), "entry vanished at {gone} s");
    assert!(
        !r.evidence.rst_at_app.is_empty(),
        "the RST must be seen at the app"
    );
    assert_eq!(
        r.evidence.rst_on_db_link, 0,
        "the database never sees the RST"
    );
    assert_ne!(
        r.evidence.rst_at_app[0],
        r.evidence.db_ttl_at_app.unwrap(),
        "RST TTL differs from the db's"
    );
    assert!(r.evidence.db_still_open);
    assert_eq!(
        r.evidence.db_socket_state.as_deref(),
        Some("ESTABLISHED"),
        "sock_diag in db"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_below_firewall_timeout_survives() {
    privileged!("idle_below_firewall_timeout_survives");
    let mut s = fw900();
    s.idle_s = 600.0; // 2 s lab, firewall 3 s
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Survived, "{:?}", r.error);
    assert!(r.evidence.ct_gone_at_s.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_on_socket_below_timeout_prevents_reset() {
    privileged!("keepalive_on_socket_below_timeout_prevents_reset");
    let mut s = fw900();
    s.so_keepalive = true;
    s.keepalive_time_s = Some(300.0); // 1 s lab
    s.keepalive_intvl_s = Some(300.0);
    s.keepalive_probes = Some(5);
    s.idle_s = 1800.0; // 6 s lab, twice the firewall timeout
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Survived, "{:?}", r.error);
    // Six seconds of idle through a 3 s firewall: the entry stayed only because packets refreshed it.
    assert!(
        r.evidence.ct_gone_at_s.is_none(),
        "the conntrack entry never expired"
    );
    assert_eq!(r.evidence.ct_last_state.as_deref(), Some("ESTABLISHED"));
    assert!(
        r.evidence.packets_during_idle >= 4,
        "probes and their ACKs cross the app link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longer_firewall_timeout_prevents_reset() {
    privileged!("longer_firewall_timeout_prevents_reset");
    let mut s = fw900();
    s.fw_timeout_s = 86400.0;
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Survived, "{:?}", r.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_heartbeat_prevents_reset() {
    privileged!("application_heartbeat_prevents_reset");
    let mut s = fw900();
    s.heartbeat_s = Some(300.0); // 1 s lab
    s.idle_s = 1800.0;
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Survived, "{:?}", r.error);
    assert!(
        r.app_log.iter().any(|l| l.contains("event=heartbeat ok")),
        "{:?}",
        r.app_log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_sysctl_without_so_keepalive_still_resets() {
    privileged!("os_sysctl_without_so_keepalive_still_resets");
    let mut s = fw900();
    s.os_keepalive_time_s = Some(300.0); // lowered OS default, 1 s lab
    s.os_keepalive_intvl_s = Some(300.0);
    s.so_keepalive = false; // but the sockets never opt in
    let r = go(&s).await;
    assert_eq!(
        r.outcome,
        Outcome::Reset,
        "the runbook's trap: OS settings are only defaults"
    );
    assert_eq!(
        r.evidence.packets_during_idle, 0,
        "no keepalive probe was ever sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_default_keepalive_7200_is_too_late_for_3600() {
    privileged!("runbook_default_keepalive_7200_is_too_late_for_3600");
    let mut s = Scenario::preset("firewall-3600").unwrap();
    s.time_scale = 1200.0; // fw 3 s, OS keepalive 6 s, idle 4 s
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_profile_gives_a_timeout_not_a_reset() {
    privileged!("drop_profile_gives_a_timeout_not_a_reset");
    let mut s = fw900();
    s.profile = Profile::Drop;
    s.user_timeout_s = Some(450.0); // TCP_USER_TIMEOUT 1.5 s lab
    // The application's own deadline (default: 2 s lab) must not race the kernel's 1.5 s: under
    // load the kernel's retransmission timer can run late and the app gave up first ("no reply
    // within 2.0 s"). 10 s lab leaves TCP_USER_TIMEOUT the only deadline that can end the query.
    s.query_timeout_s = 3000.0;
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Blackhole, "{:?}", r.error);
    assert!(
        r.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        r.error
    );
    assert!(r.evidence.rst_at_app.is_empty(), "no RST in drop profile");
    assert!(
        r.evidence.retransmissions >= 1,
        "the query is retransmitted into the void"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_profile_resets_after_expiry_and_works_before() {
    privileged!("nat_profile_resets_after_expiry_and_works_before");
    let mut s = fw900();
    s.profile = Profile::Nat;
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Reset);
    let mut short = s.clone();
    short.idle_s = 450.0;
    assert_eq!(go(&short).await.outcome, Outcome::Survived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_path_behaves_like_ipv4() {
    privileged!("ipv6_path_behaves_like_ipv4");
    let mut s = fw900();
    s.ipv6 = true;
    let r = go(&s).await;
    assert_eq!(r.outcome, Outcome::Reset);
    assert!(
        r.timeline[0].what.contains("2001:db8:"),
        "{}",
        r.timeline[0].what
    );
    assert_ne!(r.evidence.rst_at_app[0], r.evidence.db_ttl_at_app.unwrap());
    let mut short = s.clone();
    short.idle_s = 450.0;
    assert_eq!(go(&short).await.outcome, Outcome::Survived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_hops_lower_the_ttl_the_app_sees() {
    privileged!("extra_hops_lower_the_ttl_the_app_sees");
    let direct = go(&fw900()).await;
    let mut s = fw900();
    s.hops = 2;
    let routed = go(&s).await;
    assert_eq!(routed.outcome, Outcome::Reset);
    let (d_db, r_db) = (
        direct.evidence.db_ttl_at_app.unwrap(),
        routed.evidence.db_ttl_at_app.unwrap(),
    );
    assert_eq!(
        d_db - r_db,
        2,
        "two routers lower the database's TTL by two"
    );
    let (d_rst, r_rst) = (direct.evidence.rst_at_app[0], routed.evidence.rst_at_app[0]);
    assert_eq!(d_rst - r_rst, 2, "and the firewall's RST's TTL too");
}
