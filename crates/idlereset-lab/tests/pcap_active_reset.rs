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

/// Wait up to `secs` for the flow to fail, then stop traffic and capture and remove the lab.
/// Returns the flow's failure.
fn finish(lab: Lab, flow: &BusyFlow, capture: FlowCapture, secs: u64) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while flow.failed.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let failure = flow.failed.lock().unwrap().clone();
    // Let the capture see the reset's aftermath.
    std::thread::sleep(Duration::from_millis(500));
    flow.stop();
    drop(capture.finish());
    lab.destroy().unwrap();
    failure
}

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
    let failure = finish(lab, &flow, capture, 10);
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

/// Records of several pcap files merged in time order into one capture (what `tcpdump -i
/// any` would have written).
fn merge_pcaps(files: &[Vec<u8>]) -> Vec<u8> {
    use idlereset_core::pcap::reader::Records;
    use idlereset_core::pcap::writer::PcapWriter;
    let mut recs: Vec<(u64, Vec<u8>, u32, u32)> = files
        .iter()
        .flat_map(|f| Records::new(f).map_while(Result::ok))
        .map(|r| (r.ts_ns, r.data.to_vec(), r.orig_len, r.linktype))
        .collect();
    recs.sort_by_key(|r| r.0);
    let linktype = recs.first().map_or(1, |r| r.3);
    let mut w = PcapWriter::new(Vec::new(), linktype, 262_144, true).unwrap();
    for (ts, data, orig, _) in &recs {
        w.write_packet(Duration::from_nanos(*ts), data, *orig)
            .unwrap();
    }
    w.into_inner()
}

/// The `nat-43200-invalid` story, driven through the library: a busy flow, db -> app routed
/// around fw for a few seconds (`lab fault asymmetric`), the frozen entry expires, the next
/// packet is reset by fw. The app's capture of both its links shows the database's TTL
/// changing mid-flow while packets kept flowing; the active reset carries that note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_timer_story_capture_gives_an_active_reset_with_the_asymmetric_route_note() {
    if !require_or_skip(
        "frozen_timer_story_capture_gives_an_active_reset_with_the_asymmetric_route_note",
    ) {
        return;
    }
    const STORY_PORT: u16 = 7422;
    let lab = Lab::create(
        LabSpec::new(0, FirewallSettings::new(Profile::Reject, 8)),
        None,
        Ownership::Foreground,
    )
    .await
    .unwrap();
    idlereset_lab::fault::ensure_failover_path(&lab)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("idlereset-pcap-story-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = lab.topology().clone();
    let app = lab.ns("app").unwrap();
    let capture = FlowCapture::start(
        vec![
            (app, topo.app_link(), "app"),
            (
                app,
                idlereset_lab::fault::failover_links().0,
                "app-failover",
            ),
        ],
        STORY_PORT,
        Instant::now(),
        Some(&dir),
    )
    .unwrap();
    let flow = BusyFlow::start(&lab, STORY_PORT, 50_000, Some(Duration::from_millis(200))).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let report =
        idlereset_lab::fault::asymmetric(&lab, Duration::from_secs(4), std::future::pending())
            .await
            .unwrap();
    eprintln!("{report:?}");
    let failure = finish(lab, &flow, capture, 30);
    eprintln!("failure: {failure:?}");
    assert!(failure.is_some(), "the flow survived the frozen timer");

    let files: Vec<Vec<u8>> = ["app.pcap", "app-failover.pcap"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let (fa, read) = analyse_bytes(&merge_pcaps(&files), Config::default());
    assert!(read.error.is_none() && read.damage.is_empty(), "{read:?}");
    let active: Vec<_> = fa
        .analysis
        .events
        .iter()
        .filter(|e| e.kind == Kind::ActiveReset)
        .collect();
    assert_eq!(active.len(), 1, "{:#?}", fa.analysis.events);
    let e = active[0];
    assert_eq!(e.origin, Origin::Middlebox, "{e:#?}");
    let rc = e
        .route_change
        .as_ref()
        .unwrap_or_else(|| panic!("no route change: {e:#?}"));
    assert_eq!(
        rc.direction,
        idlereset_core::pcap::events::Role::Server,
        "{rc:#?}"
    );
    assert!(rc.note.contains("INVALID"), "{rc:#?}");
    let s = summarise(&[&fa.analysis], &Catalog::builtin().unwrap());
    assert_eq!(
        (s.idle_failures, s.active_resets, s.route_changes),
        (0, 1, 1),
        "{s:#?}"
    );
}
