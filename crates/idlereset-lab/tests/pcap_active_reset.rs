#![allow(clippy::unwrap_used)]
//! `pcap` on a real kernel's capture: a busy flow whose conntrack entry is deleted on `fw`
//! over ctnetlink mid-stream (the `reject` profile) is reset by the firewall; the app-side
//! capture must show exactly one `active-reset` from a middlebox and nothing in the idle
//! bracket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idlereset_core::catalog::Catalog;
use idlereset_core::pcap::analyse_bytes;
use idlereset_core::pcap::events::{Kind, Origin};
use idlereset_core::pcap::flow::Config;
use idlereset_core::pcap::summary::summarise;
use idlereset_lab::evidence::FlowCapture;
use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::traffic::BusyFlow;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::conntrack::{Ctnetlink, Tuple};
use idlereset_linux::privilege::require_or_skip;

const PORT: u16 = 7421;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_conntrack_entry_under_a_busy_flow_is_one_active_reset() {
    if !require_or_skip("deleted_conntrack_entry_under_a_busy_flow_is_one_active_reset") {
        return;
    }
    let lab = Lab::create(
        LabSpec::new(0, FirewallSettings::new(Profile::Reject, 600)),
        None,
        Ownership::Foreground,
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("idlereset-pcap-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = lab.topology().clone();
    let capture = FlowCapture::start(
        vec![(lab.ns("app").unwrap(), topo.app_link(), "app")],
        PORT,
        Instant::now(),
        Some(&dir),
    )
    .unwrap();
    // db streams 20 kB/s, app sends a request every 0.2 s.
    let flow = BusyFlow::start(&lab, PORT, 20_000, Some(Duration::from_millis(200))).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        flow.failed.lock().unwrap().is_none(),
        "failed before the fault"
    );
    let orig = Tuple {
        src: topo.app_addr(false),
        dst: topo.db_addr(false),
        sport: Some(flow.sport),
        dport: Some(PORT),
    };
    lab.ns("fw")
        .unwrap()
        .run(|| Ctnetlink::open().and_then(|mut ct| ct.delete(6, &orig)))
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while flow.failed.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let failure = flow.failed.lock().unwrap().clone();
    std::thread::sleep(Duration::from_millis(500));
    flow.stop();
    drop(capture.finish());
    lab.destroy().unwrap();
    assert!(failure.is_some(), "the flow survived the deleted entry");

    let bytes = std::fs::read(dir.join("app.pcap")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (fa, read) = analyse_bytes(&bytes, Config::default());
    assert!(read.error.is_none() && read.damage.is_empty(), "{read:?}");
    let events = &fa.analysis.events;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(
        (e.kind, e.origin),
        (Kind::ActiveReset, Origin::Middlebox),
        "{e:#?}"
    );
    let app: SocketAddr = SocketAddr::new(topo.app_addr(false), flow.sport);
    assert_eq!(e.client, app.to_string());
    assert!(e.idle_before_s < 1.0, "{e:#?}");
    assert!(e.last_minute.unwrap().packets > 20, "{e:#?}");
    let s = summarise(&[&fa.analysis], &Catalog::builtin().unwrap());
    assert_eq!((s.idle_failures, s.active_resets), (0, 1), "{s:#?}");
    assert_eq!((s.idle_timeout_s.low, s.idle_timeout_s.high), (None, None));
}
