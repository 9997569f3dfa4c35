//! `idlereset conntrack --watch`: the sampling loop around `idlereset_core::ctwatch`.
//!
//! Every `--interval` seconds the table is dumped (streamed over ctnetlink, one entry at a time)
//! and each matching entry with counters becomes a sample keyed by its conntrack id and
//! original tuple; the INVALID statistic is read once per round. Events are printed as they
//! occur, one line each (or one JSON object per line with `--json`), and flushed at once so a
//! pipe sees them live. The watcher keeps one small state per sampled flow, never the dump.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use idlereset_core::ctwatch::{Event, Sample, WatchConfig, Watcher};
use idlereset_linux::conntrack::{self, ConntrackEntry, Family, endpoint, proto_name};
use serde::Serialize;

use super::conntrack::{Args, Filter, hint};
use crate::app::Outcome;

/// A flow's identity across samples: the kernel's entry id plus the original tuple (ids are
/// reused after an entry dies, the tuple tells two lives apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    id: u32,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: Option<u16>,
    dport: Option<u16>,
}

impl FlowKey {
    fn of(e: &ConntrackEntry) -> FlowKey {
        FlowKey {
            id: e.id,
            proto: e.proto,
            src: e.orig.src,
            dst: e.orig.dst,
            sport: e.orig.sport,
            dport: e.orig.dport,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {} -> {} (id {})",
            proto_name(self.proto),
            endpoint(self.src, self.sport),
            endpoint(self.dst, self.dport),
            self.id
        )
    }
}

/// One `--json` event line.
#[derive(Debug, Serialize)]
struct EventJson<'a> {
    event: &'static str,
    t_s: f64,
    flow: Option<FlowJson>,
    evidence: &'a str,
    time_left_s: Option<u32>,
    packets_delta: Option<u64>,
    timeout_fall_s: Option<i64>,
}

#[derive(Debug, Serialize)]
struct FlowJson {
    id: u32,
    proto: String,
    src: String,
    dst: String,
}

fn event_json(e: &Event<FlowKey>) -> EventJson<'_> {
    EventJson {
        event: e.kind.name(),
        t_s: (e.t_s * 1000.0).round() / 1000.0,
        flow: e.flow.map(|k| FlowJson {
            id: k.id,
            proto: proto_name(k.proto),
            src: endpoint(k.src, k.sport),
            dst: endpoint(k.dst, k.dport),
        }),
        evidence: &e.evidence,
        time_left_s: e.time_left_s,
        packets_delta: e.packets_delta,
        timeout_fall_s: e.timeout_fall_s,
    }
}

fn event_line(e: &Event<FlowKey>) -> String {
    let flow = e.flow.map_or_else(|| "table".to_string(), |k| k.describe());
    let left = e
        .time_left_s
        .map_or_else(String::new, |s| format!(" [{s} s left]"));
    format!(
        "{:>8.1}s {:<22} {flow}{left}: {}",
        e.t_s,
        e.kind.name(),
        e.evidence
    )
}

/// Runs in the chosen namespace until `--samples` rounds are done (or forever).
pub(crate) fn watch(args: &Args, accounting: bool) -> anyhow::Result<Outcome> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        anyhow::bail!(
            "--interval must be a positive number of seconds, got {}",
            args.interval
        );
    }
    if !accounting {
        eprintln!(
            "idlereset: conntrack accounting is off here: entries carry no packet counters, so frozen timers cannot be seen (add --enable-accounting; only new entries get counters)"
        );
    }
    let filter = Filter::from_args(args);
    let cfg = WatchConfig {
        frozen_after: args.frozen_after,
        expiring_s: args.expiring,
        ..WatchConfig::default()
    };
    let mut watcher: Watcher<FlowKey> = Watcher::new(cfg);
    let mut ct = conntrack::Ctnetlink::open().map_err(hint)?;
    let start = Instant::now();
    let interval = Duration::from_secs_f64(args.interval);
    let mut out = std::io::stdout().lock();
    let mut flagged = false;
    let mut events = Vec::new();
    let mut round = 0u64;
    if !args.json {
        writeln!(
            out,
            "watching conntrack every {} s (frozen after {} intervals, expiring at {} s)",
            args.interval, cfg.frozen_after, cfg.expiring_s
        )?;
    }
    loop {
        let t = start.elapsed().as_secs_f64();
        let invalid = ct.stats().map_err(hint)?.total.invalid;
        watcher.begin_round(t, Some(invalid), &mut events);
        ct.dump(Family::All, |e| {
            // Entries without counters can never be flagged: not tracking them keeps the
            // watcher's memory to the flows that matter.
            if filter.matches(&e) && e.packets().is_some() {
                let s = Sample {
                    t_s: t,
                    timeout_s: e.timeout_s,
                    packets: e.packets(),
                };
                watcher.observe(&FlowKey::of(&e), s, &mut events);
            }
        })
        .map_err(hint)?;
        watcher.end_round(t, &mut events);
        for e in events.drain(..) {
            flagged = true;
            if args.json {
                serde_json::to_writer(&mut out, &event_json(&e))?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", event_line(&e))?;
            }
        }
        out.flush()?;
        round += 1;
        if args.samples.is_some_and(|n| round >= n) {
            break;
        }
        let next = interval.mul_f64(round as f64);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(if flagged {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlereset_core::ctwatch::EventKind;

    fn key() -> FlowKey {
        FlowKey {
            id: 42,
            proto: 6,
            src: "198.18.1.10".parse().unwrap(),
            dst: "198.18.2.10".parse().unwrap(),
            sport: Some(40000),
            dport: Some(5432),
        }
    }

    #[test]
    fn json_snapshot() {
        let e = Event {
            kind: EventKind::Frozen,
            t_s: 12.34567,
            flow: Some(key()),
            evidence: "900 packets in 2 s while the timeout fell 2 s".into(),
            time_left_s: Some(27),
            packets_delta: Some(900),
            timeout_fall_s: Some(2),
        };
        insta::assert_json_snapshot!("conntrack_watch_json", event_json(&e));
    }

    #[test]
    fn event_renderings_carry_flow_evidence_and_time_left() {
        let e = Event {
            kind: EventKind::Frozen,
            t_s: 12.34567,
            flow: Some(key()),
            evidence: "900 packets".into(),
            time_left_s: Some(27),
            packets_delta: Some(900),
            timeout_fall_s: Some(2),
        };
        let line = event_line(&e);
        assert!(line.contains("frozen"), "{line}");
        assert!(
            line.contains("198.18.1.10:40000 -> 198.18.2.10:5432"),
            "{line}"
        );
        assert!(line.contains("[27 s left]"), "{line}");
        let v = serde_json::to_value(event_json(&e)).unwrap();
        assert_eq!(v["event"], "frozen");
        assert_eq!(v["flow"]["dst"], "198.18.2.10:5432");
        assert_eq!(v["time_left_s"], 27);
        assert_eq!(v["t_s"], 12.346);
        let table = Event::<FlowKey> {
            kind: EventKind::InvalidRising,
            flow: None,
            time_left_s: None,
            ..e
        };
        assert!(event_line(&table).contains("table"));
        assert!(serde_json::to_value(event_json(&table)).unwrap()["flow"].is_null());
    }
}
