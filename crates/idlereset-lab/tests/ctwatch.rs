#![allow(clippy::unwrap_used)]
//! Frozen conntrack timers on the real kernel: an asymmetric path makes conntrack's window
//! tracking fall behind; afterwards the busy flow's packets are INVALID and its timer falls.

use std::time::{Duration, Instant};

use idlereset_core::ctwatch::{EventKind, Sample, WatchConfig, Watcher};
use idlereset_lab::fault;
use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::traffic::BusyFlow;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::conntrack::{self, Family};
use idlereset_linux::privilege::require_or_skip;

const PORT: u16 = 7411;

/// Sample the flow in fw `n` times, one second apart; returns the watcher's events.
fn watch(lab: &Lab, sport: u16, w: &mut Watcher<u32>, t0: Instant, n: usize) -> Vec<EventKind> {
    let mut events = Vec::new();
    for _ in 0..n {
        let t = t0.elapsed().as_secs_f64();
        let (entry, stats) = lab
            .ns("fw")
            .unwrap()
            .run(|| {
                let mut found = None;
                conntrack::dump(Family::V4, |e| {
                    if e.orig.sport == Some(sport) && e.orig.dport == Some(PORT) {
                        found = Some(e);
                    }
                })
                .unwrap();
                (found, conntrack::stats().unwrap())
            })
            .unwrap();
        if let Some(e) = &entry {
            eprintln!(
                "t={t:.1} timeout={} packets={:?} invalid={}",
                e.timeout_s,
                e.packets(),
                stats.total.invalid
            );
            let s = Sample {
                t_s: t,
                timeout_s: e.timeout_s,
                packets: e.packets(),
            };
            w.begin_round(t, Some(stats.total.invalid), &mut events);
            w.observe(&e.id, s, &mut events);
        }
        w.end_round(t, &mut events);
        std::thread::sleep(Duration::from_secs(1));
    }
    events.into_iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_fault_freezes_the_timer_and_watch_flags_it() {
    if !require_or_skip("asymmetric_fault_freezes_the_timer_and_watch_flags_it") {
        return;
    }
    let mut fw = FirewallSettings::new(Profile::Reject, 60);
    fw.loose = false;
    let spec = LabSpec::new(0, fw);
    let lab = Lab::create(spec, None, Ownership::Foreground)
        .await
        .unwrap();
    let flow = BusyFlow::start(&lab, PORT, 2_000_000, None).unwrap();
    let sport = flow.sport;
    let t0 = Instant::now();
    let mut w = Watcher::new(WatchConfig::default());
    // Without the fault: a busy flow is refreshed, nothing is flagged.
    let before = watch(&lab, sport, &mut w, t0, 4);
    assert!(!before.contains(&EventKind::Frozen), "{before:?}");
    let report = fault::asymmetric(&lab, Duration::from_secs(6), std::future::pending())
        .await
        .unwrap();
    eprintln!("{report:?}");
    assert!(
        report.invalid_after > report.invalid_before,
        "INVALID statistic rises during the fault: {report:?}"
    );
    let after = watch(&lab, sport, &mut w, t0, 6);
    flow.stop();
    assert!(after.contains(&EventKind::Frozen), "{after:?}");
    assert!(after.contains(&EventKind::InvalidRising), "{after:?}");
}
