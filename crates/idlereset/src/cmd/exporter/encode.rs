//! A [`Snapshot`] as Prometheus / OpenMetrics text, with the prometheus-client crate.
//!
//! A fresh registry is filled per scrape from the snapshot (values are read from the kernel at
//! scrape time, not accumulated here); kernel counters become `Counter`s so they carry `_total`
//! and the `counter` type. Only the reset-event histogram lives across scrapes (it is fed by the
//! tracefs reader between scrapes), and is registered by handle.
//!
//! Metric names (all prefixed `idlereset_`) are part of the alert rules and dashboard in
//! `deploy/`; change them together.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use idlereset_core::netstat::RESET_COUNTERS;

use idlereset_core::exporter_collect::Snapshot;

pub type Labels = Vec<(String, String)>;

/// Reset events by direction, idle age in seconds; shared with the tracefs reader.
pub type ResetHistogram = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets for idle age at reset: from seconds (lab, scaled) to the 5-day conntrack default.
pub const IDLE_BUCKETS: [f64; 14] = [
    1.0, 5.0, 30.0, 60.0, 120.0, 240.0, 350.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0,
    86400.0,
];

pub fn new_histogram() -> Histogram {
    Histogram::new(IDLE_BUCKETS)
}

/// What the reset-event reader has to say at scrape time.
pub struct ResetSource<'a> {
    pub up: bool,
    pub histogram: &'a ResetHistogram,
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Encode a snapshot (and the reset events) as exposition text.
pub fn render(snap: &Snapshot, resets: Option<ResetSource<'_>>) -> String {
    let mut reg = Registry::with_prefix("idlereset");
    let up: Family<Labels, Gauge> = Family::default();
    let set_up = |source: &str, ok: bool| {
        up.get_or_create(&vec![("source".into(), source.into())])
            .set(i64::from(ok));
    };

    set_up("conntrack", snap.ct_count.is_ok());
    if let Ok(c) = &snap.ct_count {
        gauge(
            &mut reg,
            "conntrack_entries",
            "Entries in the conntrack table",
            to_i64(c.entries),
        );
        if let Some(max) = c.max {
            gauge(
                &mut reg,
                "conntrack_entries_limit",
                "Maximum conntrack entries (nf_conntrack_max)",
                to_i64(max),
            );
        }
    }

    set_up("conntrack_stats", snap.ct_stats.is_ok());
    if let Ok(s) = &snap.ct_stats {
        for (name, help, v) in [
            (
                "conntrack_invalid",
                "Packets conntrack could not track (INVALID)",
                s.invalid,
            ),
            (
                "conntrack_drop",
                "Packets dropped because conntrack failed",
                s.drop,
            ),
            (
                "conntrack_early_drop",
                "Entries dropped to make room in a full table",
                s.early_drop,
            ),
            (
                "conntrack_insert_failed",
                "Entries that could not be inserted (races, full table)",
                s.insert_failed,
            ),
            ("conntrack_found", "Lookups that found an entry", s.found),
            ("conntrack_insert", "Entries inserted", s.insert),
            (
                "conntrack_error",
                "Packets with protocol errors seen by conntrack",
                s.error,
            ),
            (
                "conntrack_search_restart",
                "Table lookups restarted by a concurrent resize",
                s.search_restart,
            ),
        ] {
            counter(&mut reg, name, help, v);
        }
    }

    set_up("conntrack_table", snap.frozen.is_ok());
    if let Ok(f) = &snap.frozen {
        gauge(
            &mut reg,
            "conntrack_accounting_enabled",
            "1 when nf_conntrack_acct is on (needed for frozen-timer detection)",
            i64::from(f.accounting),
        );
        gauge(
            &mut reg,
            "conntrack_frozen_timer_flows",
            "Entries whose timeout fell by the time since the last scrape while their packet counters rose",
            to_i64(f.frozen),
        );
        gauge(
            &mut reg,
            "conntrack_frozen_timer_compared_flows",
            "Entries with packet counters seen in this scrape and the previous one (what the frozen check covered)",
            to_i64(f.compared),
        );
    }

    set_up("sockdiag", snap.sockets.is_ok());
    if let Ok(s) = &snap.sockets {
        set_up("procfs", s.owners.is_ok());
        let est: Family<Labels, Gauge> = Family::default();
        let nok: Family<Labels, Gauge> = Family::default();
        let late: Family<Labels, Gauge> = Family::default();
        for (process, t) in &s.by_process {
            let l = vec![("process".to_string(), process.clone())];
            est.get_or_create(&l).set(to_i64(t.established));
            nok.get_or_create(&l).set(to_i64(t.no_keepalive));
            late.get_or_create(&l).set(to_i64(t.keepalive_late));
        }
        reg.register("tcp_established_sockets", "Established TCP sockets", est);
        reg.register(
            "tcp_sockets_without_keepalive",
            "Established TCP sockets to non-loopback remotes on the path without SO_KEEPALIVE",
            nok,
        );
        reg.register(
            "tcp_sockets_keepalive_too_late",
            "Established TCP sockets whose first keepalive comes later than the path's idle timeout",
            late,
        );
    }

    set_up("snmp", snap.netstat.is_ok());
    if let Ok(c) = &snap.netstat {
        for (sec, field, suffix, help) in RESET_COUNTERS {
            if let Some(v) = c.counter(sec, field) {
                counter(&mut reg, suffix, help, v);
            }
        }
    }

    match resets {
        Some(r) => {
            set_up("tracefs", r.up);
            reg.register_with_unit(
                "reset_idle",
                "TCP resets seen by the tcp_*_reset tracepoints, by the connection's idle time before the reset",
                Unit::Seconds,
                r.histogram.clone(),
            );
        }
        None => set_up("tracefs", false),
    }

    let d: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    d.set(snap.duration_s);
    reg.register_with_unit(
        "scrape_duration",
        "Time spent reading the kernel sources",
        Unit::Seconds,
        d,
    );
    reg.register(
        "source_up",
        "1 when the source could be read in this scrape",
        up,
    );

    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlereset_core::exporter_collect::{Collector, Frozen};
    use idlereset_core::host::fake::FakeHost;
    use idlereset_core::host::{CtCounters, CtSize};
    use idlereset_core::netstat::Counters;
    use idlereset_core::path::PathPolicy;
    use idlereset_core::tally::{Sockets, Tally};

    fn snap() -> Snapshot {
        Snapshot {
            ct_count: Ok(CtSize {
                entries: 12,
                max: Some(262144),
            }),
            ct_stats: Ok(CtCounters {
                invalid: 7,
                ..CtCounters::default()
            }),
            frozen: Ok(Frozen {
                accounting: true,
                frozen: 2,
                compared: 10,
            }),
            sockets: Ok(Sockets {
                by_process: vec![(
                    "java".into(),
                    Tally {
                        established: 5,
                        no_keepalive: 4,
                        keepalive_late: 1,
                    },
                )],
                owners: Ok(()),
            }),
            netstat: Counters::parse("Tcp: EstabResets OutRsts\nTcp: 3 9\n", "snmp")
                .map_err(|e| e.to_string()),
            duration_s: 0.25,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn renders_values_types_and_up() {
        let h: ResetHistogram = Family::new_with_constructor(new_histogram);
        h.get_or_create(&vec![("direction".into(), "received".into())])
            .observe(902.0);
        let text = render(
            &snap(),
            Some(ResetSource {
                up: true,
                histogram: &h,
            }),
        );
        assert_eq!(
            line(&text, "idlereset_conntrack_entries "),
            "idlereset_conntrack_entries 12"
        );
        assert_eq!(
            line(&text, "idlereset_conntrack_invalid_total"),
            "idlereset_conntrack_invalid_total 7"
        );
        assert!(text.contains("# TYPE idlereset_conntrack_invalid counter"));
        assert_eq!(
            line(&text, "idlereset_tcp_sockets_without_keepalive{"),
            "idlereset_tcp_sockets_without_keepalive{process=\"java\"} 4"
        );
        assert_eq!(
            line(&text, "idlereset_tcp_estab_resets_total"),
            "idlereset_tcp_estab_resets_total 3"
        );
        assert_eq!(
            line(&text, "idlereset_tcp_out_rsts_total"),
            "idlereset_tcp_out_rsts_total 9"
        );
        assert_eq!(
            line(&text, "idlereset_conntrack_frozen_timer_flows"),
            "idlereset_conntrack_frozen_timer_flows 2"
        );
        assert_eq!(
            line(
                &text,
                "idlereset_reset_idle_seconds_bucket{le=\"900.0\",direction=\"received\"}"
            ),
            "idlereset_reset_idle_seconds_bucket{le=\"900.0\",direction=\"received\"} 0"
        );
        assert!(text.contains(
            "idlereset_reset_idle_seconds_bucket{le=\"1200.0\",direction=\"received\"} 1"
        ));
        assert!(text.contains("idlereset_source_up{source=\"tracefs\"} 1"));
        assert!(text.contains("idlereset_source_up{source=\"sockdiag\"} 1"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn failed_source_is_down_and_others_still_render() {
        let mut s = snap();
        s.ct_count = Err("no conntrack".into());
        s.ct_stats = Err("no conntrack".into());
        let text = render(&s, None);
        assert!(
            text.contains("idlereset_source_up{source=\"conntrack\"} 0"),
            "{text}"
        );
        assert!(text.contains("idlereset_source_up{source=\"tracefs\"} 0"));
        assert!(!text.contains("idlereset_conntrack_entries "));
        assert!(!text.contains("idlereset_conntrack_invalid_total"));
        assert!(text.contains("idlereset_tcp_established_sockets{process=\"java\"} 5"));
    }

    /// A scrape of an unprivileged host, collected over the fake host and rendered: the
    /// sources it may not read are `source_up 0`, the readable ones 1, and no gauge of an
    /// unread source appears.
    #[test]
    fn unprivileged_scrape_reports_sources_down() {
        let mut host = FakeHost {
            owners: Err(FakeHost::denied("/proc")),
            ..FakeHost::default()
        };
        let snap =
            Collector::new(PathPolicy::fixed(300.0, "--path-timeout"), 20).collect(&mut host);
        let text = render(&snap, None);
        for (source, up) in [
            ("conntrack", 0),
            ("conntrack_stats", 0),
            ("conntrack_table", 0),
            ("procfs", 0),
            ("sockdiag", 1),
            ("snmp", 1),
        ] {
            let want = format!("idlereset_source_up{{source=\"{source}\"}} {up}");
            assert!(text.contains(&want), "{want} missing in\n{text}");
        }
        assert!(!text.contains("idlereset_conntrack_entries "));
    }
}
