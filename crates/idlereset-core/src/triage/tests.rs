//! Every cause and every contradiction on hand-built evidence.

use super::evidence::*;
use super::fix;
use super::verdict::*;

fn probe(low: f64, high: f64, failure: Failure) -> ProbeEvidence {
    ProbeEvidence {
        remote: "198.18.2.10:5432".into(),
        low_s: Some(low),
        high_s: Some(high),
        failure,
        max_s: 60.0,
        stopped_early: false,
        catalog: vec![],
    }
}

fn clean_probe(max: f64) -> ProbeEvidence {
    ProbeEvidence {
        remote: "198.18.2.10:5432".into(),
        low_s: Some(max),
        high_s: None,
        failure: Failure::None,
        max_s: max,
        stopped_early: false,
        catalog: vec![],
    }
}

fn logs(pattern: LogPattern, low: Option<f64>, high: Option<f64>) -> LogEvidence {
    LogEvidence {
        events: 6,
        untimed_lines: 0,
        incidents: 3,
        pattern,
        period_s: Some(12.0),
        drift_s_per_day: None,
        idle_low_s: low,
        idle_high_s: high,
        signatures: vec![("connection-reset".into(), 6)],
        catalog: vec![],
        failure: Failure::Reset,
    }
}

fn sockets(on: usize, off: usize) -> SocketEvidence {
    SocketEvidence {
        processes: vec![ProcessSockets {
            process: "app (pid 7)".into(),
            library: None,
            connections: on + off,
            keepalive_on: on,
            keepalive_off: off,
            remotes: vec!["198.18.2.10:5432".into()],
        }],
        at_risk_remotes: vec![],
        findings: vec![],
    }
}

fn os(time: u64) -> OsKeepalive {
    OsKeepalive {
        time_s: Some(time),
        intvl_s: Some(75),
        probes: Some(9),
    }
}

#[test]
fn firewall_reset_without_keepalive_is_a_middlebox_idle_timeout() {
    let ev = Evidence {
        logs: Some(logs(LogPattern::IdleTimeout, Some(5.0), Some(12.0))),
        probes: vec![probe(8.6, 9.4, Failure::Reset)],
        os_keepalive: Some(os(7200)),
        sockets: Some(sockets(0, 4)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(v.confidence, Confidence::High);
    assert_eq!(v.failure, Failure::Reset);
    assert_eq!(v.path_timeout_s.low, Some(8.6));
    assert_eq!(v.path_timeout_s.high, Some(9.4));
    assert!(v.contradictions.is_empty(), "{:?}", v.contradictions);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("do not set SO_KEEPALIVE"))
    );
}

#[test]
fn silent_drop_is_a_middlebox_idle_timeout_by_blackhole() {
    let ev = Evidence {
        probes: vec![probe(8.0, 10.0, Failure::Blackhole)],
        sockets: Some(sockets(0, 2)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(v.failure, Failure::Blackhole);
    assert_eq!(v.confidence, Confidence::Medium);
}

#[test]
fn fin_from_the_server_is_a_server_idle_close() {
    let ev = Evidence {
        probes: vec![probe(5.0, 6.2, Failure::Fin)],
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::ServerIdleClose);
    assert_eq!(v.confidence, Confidence::High);
    let inv = fix::inventory_toml(&v, &ev).unwrap();
    assert!(inv.contains("failure = \"fin\""), "{inv}");
}

#[test]
fn idle_closes_in_a_capture_alone_are_a_server_idle_close_with_medium_confidence() {
    let ev = Evidence {
        packets: Some(PacketEvidence {
            flows: 3,
            idle_closes: 2,
            idle_high_s: Some(300.0),
            consistent: true,
            ..PacketEvidence::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::ServerIdleClose);
    assert_eq!(v.confidence, Confidence::Medium);
}

#[test]
fn age_timer_in_logs_with_a_clean_probe_is_a_connection_age_timer() {
    let ev = Evidence {
        logs: Some(logs(LogPattern::ConnectionAgeTimer, None, None)),
        probes: vec![clean_probe(60.0)],
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::ConnectionAgeTimer);
    assert_eq!(v.confidence, Confidence::High);
    assert!(fix::inventory_toml(&v, &ev).is_none());
}

#[test]
fn active_resets_without_idle_failures_are_state_lost_while_active() {
    let ev = Evidence {
        packets: Some(PacketEvidence {
            flows: 10,
            active_resets: Some(4),
            consistent: true,
            ..PacketEvidence::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::StateLostWhileActive);
    assert!(fix::alerts(v.cause).contains(&"IdleresetConntrackFrozenTimers"));
}

#[test]
fn wall_clock_schedule_points_to_state_lost_with_low_confidence() {
    let ev = Evidence {
        logs: Some(logs(LogPattern::WallClockSchedule, None, None)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::StateLostWhileActive);
    assert_eq!(v.confidence, Confidence::Low);
    assert!(!v.next.is_empty());
}

#[test]
fn lowered_sysctl_with_no_socket_opting_in_is_the_sysctl_only_trap() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(4)),
        sockets: Some(sockets(0, 3)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::KeepaliveIneffective);
    assert!(
        v.evidence.iter().any(|e| e.contains("sysctl-only")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn a_keepalive_sysctl_above_the_path_without_opt_in_is_not_the_trap() {
    // Lowered from 7200 s, but still above the 9 s path: no keepalive at all is the story.
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(72)),
        sockets: Some(sockets(0, 3)),
        ..Evidence::default()
    };
    assert_eq!(decide(&ev).cause, Cause::MiddleboxIdleTimeout);
}

#[test]
fn keepalive_later_than_the_path_is_ineffective() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(18)),
        sockets: Some(sockets(3, 0)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::KeepaliveIneffective);
    assert!(v.evidence.iter().any(|e| e.contains("later than the path")));
}

#[test]
fn keepalive_earlier_than_the_path_is_not_blamed() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(4)),
        sockets: Some(sockets(3, 0)),
        ..Evidence::default()
    };
    assert_eq!(decide(&ev).cause, Cause::MiddleboxIdleTimeout);
}

#[test]
fn a_path_that_holds_idle_connections_is_not_idle_related() {
    let ev = Evidence {
        logs: Some(logs(LogPattern::Irregular, None, None)),
        probes: vec![clean_probe(7200.0)],
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::NotIdleRelated);
    assert_eq!(v.confidence, Confidence::Medium);
}

#[test]
fn nothing_gathered_is_inconclusive_and_says_what_to_collect() {
    let v = decide(&Evidence::default());
    assert_eq!(v.cause, Cause::Inconclusive);
    assert_eq!(v.failure, Failure::None);
    assert!(v.next.iter().any(|n| n.contains("--remote")));
    assert!(v.next.iter().any(|n| n.contains("--log")));
    assert!(v.next.iter().any(|n| n.contains("--pcap")));
}

#[test]
fn a_stopped_probe_without_failure_is_not_taken_as_a_clean_path() {
    let mut p = clean_probe(60.0);
    p.stopped_early = true;
    let v = decide(&Evidence {
        probes: vec![p],
        ..Evidence::default()
    });
    assert_eq!(v.cause, Cause::Inconclusive);
    assert!(v.next.iter().any(|n| n.contains("let the probe run")));
}

#[test]
fn logs_that_disagree_with_the_probe_are_named_and_lower_confidence() {
    let ev = Evidence {
        // Logs: failures already after 3 s idle, but the probe survived 8 s.
        logs: Some(logs(LogPattern::IdleTimeout, Some(1.0), Some(3.0))),
        probes: vec![probe(8.0, 9.0, Failure::Reset)],
        packets: Some(PacketEvidence {
            flows: 2,
            idle_resets: 1,
            middlebox_resets: 1,
            idle_low_s: Some(7.0),
            idle_high_s: Some(9.2),
            consistent: true,
            ..PacketEvidence::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(v.contradictions.len(), 1, "{:?}", v.contradictions);
    assert!(v.contradictions[0].starts_with("logs"));
    // Probe and capture agree (High), one contradiction lowers it.
    assert_eq!(v.confidence, Confidence::Medium);
    assert_eq!(v.path_timeout_s.high, Some(9.0));
}

#[test]
fn logs_alone_give_a_low_confidence_verdict_with_their_failure() {
    let ev = Evidence {
        logs: Some(logs(LogPattern::IdleTimeout, Some(300.0), Some(960.0))),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(v.failure, Failure::Reset);
    assert_eq!(v.confidence, Confidence::Low);
    assert!(v.next.iter().any(|n| n.contains("--remote")));
}

#[test]
fn different_failure_kinds_are_a_contradiction() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.0, Failure::Reset)],
        packets: Some(PacketEvidence {
            flows: 2,
            blackholes: 2,
            idle_high_s: Some(9.5),
            consistent: true,
            ..PacketEvidence::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert!(
        v.contradictions.iter().any(|c| c.contains("blackhole")),
        "{:?}",
        v.contradictions
    );
}

#[test]
fn resets_from_the_peer_are_flagged_against_a_middlebox_verdict() {
    let ev = Evidence {
        packets: Some(PacketEvidence {
            flows: 2,
            idle_resets: 2,
            middlebox_resets: 0,
            idle_high_s: Some(900.0),
            consistent: true,
            ..PacketEvidence::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert!(v.contradictions.iter().any(|c| c.contains("from the peer")));
    assert_eq!(v.confidence, Confidence::Low);
}

/// A probe and a capture that agree give high confidence; the capture's resets coming from the
/// peer (TTL) is a contradiction and lowers it one level, as every contradiction does.
#[test]
fn resets_from_the_peer_lower_the_confidence() {
    let capture = |middlebox_resets| PacketEvidence {
        flows: 2,
        idle_resets: 2,
        middlebox_resets,
        idle_low_s: Some(800.0),
        idle_high_s: Some(900.0),
        consistent: true,
        ..PacketEvidence::default()
    };
    let judge = |middlebox_resets| {
        decide(&Evidence {
            probes: vec![probe(850.0, 900.0, Failure::Reset)],
            packets: Some(capture(middlebox_resets)),
            ..Evidence::default()
        })
    };
    let from_middlebox = judge(2);
    assert!(from_middlebox.contradictions.is_empty());
    assert_eq!(from_middlebox.confidence, Confidence::High);
    let from_peer = judge(0);
    assert_eq!(from_peer.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(
        from_peer.contradictions.len(),
        1,
        "{:?}",
        from_peer.contradictions
    );
    assert_eq!(from_peer.confidence, Confidence::Medium);
}

/// A probe that held idle connections up to 7200 s outranks a log bracket of 300-900 s: the
/// disagreement is a contradiction, and the verdict follows the probe.
#[test]
fn a_clean_probe_contradicts_a_lower_log_bracket() {
    let ev = Evidence {
        probes: vec![clean_probe(7200.0)],
        logs: Some(logs(LogPattern::IdleTimeout, Some(300.0), Some(900.0))),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert_eq!(v.contradictions.len(), 1, "{:?}", v.evidence);
    assert!(
        v.contradictions[0].starts_with("logs puts the idle timeout between 300 s and 900 s"),
        "{:?}",
        v.contradictions
    );
    assert!(
        v.contradictions[0].contains("above 7200 s"),
        "{:?}",
        v.contradictions
    );
    assert_eq!(v.cause, Cause::NotIdleRelated);
    assert_eq!(v.path_timeout_s.high, None);
    // A clean probe shorter than the logs' bracket agrees but corroborates nothing: the
    // bracket and its source are the logs', the confidence that of the logs alone.
    let short = Evidence {
        probes: vec![clean_probe(60.0)],
        ..ev
    };
    let v = decide(&short);
    assert!(v.contradictions.is_empty(), "{:?}", v.contradictions);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(v.bracket_source.as_deref(), Some("logs"));
    assert_eq!(
        (v.path_timeout_s.low, v.path_timeout_s.high),
        (Some(300.0), Some(900.0))
    );
    assert_eq!(v.confidence, Confidence::Low);
}

#[test]
fn the_local_conntrack_timeout_inside_the_bracket_is_evidence() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        conntrack: Some(LocalConntrack {
            established_timeout_s: Some(9),
            ..LocalConntrack::default()
        }),
        ..Evidence::default()
    };
    let v = decide(&ev);
    assert!(v.evidence.iter().any(|e| e.contains("own conntrack")));
}

#[test]
fn the_inventory_plans_below_the_lower_bound_with_the_processes_found() {
    let ev = Evidence {
        probes: vec![probe(880.0, 905.0, Failure::Reset)],
        sockets: Some(sockets(0, 40)),
        ..Evidence::default()
    };
    let v = decide(&ev);
    let inv = fix::inventory_toml(&v, &ev).unwrap();
    assert!(inv.contains("idle_timeout_s = 880"), "{inv}");
    assert!(inv.contains("connections = 40"), "{inv}");
    assert!(inv.contains("keepalive = false"), "{inv}");
}

#[test]
fn untimed_reset_lines_are_evidence_not_silence() {
    let mut l = logs(LogPattern::Irregular, None, None);
    (l.events, l.incidents, l.untimed_lines) = (0, 0, 3);
    let v = decide(&Evidence {
        logs: Some(l),
        ..Evidence::default()
    });
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("logs: 3 reset-like line(s) found but none could be timed")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn process_names_map_to_libraries_only_when_unambiguous() {
    assert_eq!(fix::library_for_process("psql"), Some("libpq"));
    assert_eq!(fix::library_for_process("python3.11"), Some("python"));
    assert_eq!(fix::library_for_process("orders-api"), None);
    // `redis` could be redis-py, ioredis or go-redis: the inventory would refuse it.
    assert_eq!(fix::library_for_process("redis-cli"), None);
    assert_eq!(fix::library_for_process("redis-server"), None);
    // So the inventory built for a redis client validates (a `raw` client) and there is a fix.
    let mut socks = sockets(0, 3);
    socks.processes[0].process = "redis-cli (pid 812)".into();
    socks.processes[0].library = fix::library_for_process("redis-cli").map(str::to_string);
    let ev = Evidence {
        probes: vec![probe(850.0, 900.0, Failure::Reset)],
        sockets: Some(socks),
        ..Evidence::default()
    };
    let inv = fix::inventory_toml(&decide(&ev), &ev).unwrap();
    let catalog = crate::catalog::Catalog::builtin().unwrap();
    assert!(
        crate::inventory::Inventory::parse(&inv, "<triage>", &catalog).is_ok(),
        "{inv}"
    );
}

#[test]
fn two_captures_merge_into_one_bracket() {
    let a = PacketEvidence {
        flows: 2,
        idle_resets: 1,
        middlebox_resets: 1,
        idle_low_s: Some(5.0),
        idle_high_s: Some(9.5),
        consistent: true,
        catalog: vec!["x".into()],
        ..PacketEvidence::default()
    };
    let b = PacketEvidence {
        flows: 3,
        blackholes: 1,
        idle_low_s: Some(8.0),
        idle_high_s: Some(12.0),
        consistent: true,
        catalog: vec!["x".into(), "y".into()],
        ..PacketEvidence::default()
    };
    let m = a.merge(b);
    assert_eq!((m.flows, m.idle_resets, m.blackholes), (5, 1, 1));
    assert_eq!((m.idle_low_s, m.idle_high_s), (Some(8.0), Some(9.5)));
    assert!(m.consistent);
    assert_eq!(m.catalog, vec!["x".to_string(), "y".to_string()]);
    let c = PacketEvidence {
        idle_low_s: Some(10.0),
        consistent: true,
        ..PacketEvidence::default()
    };
    assert!(!m.merge(c).consistent, "a survived idle above a failed one");
}

#[test]
fn state_lost_while_active_names_be_liberal_and_its_cost() {
    let notes = fix::rollback(Cause::StateLostWhileActive).join("\n");
    assert!(
        notes.contains("net.netfilter.nf_conntrack_tcp_be_liberal = 1"),
        "{notes}"
    );
    assert!(notes.contains("weaker TCP state checking"), "{notes}");
    assert!(
        !fix::rollback(Cause::ServerIdleClose)
            .join("\n")
            .contains("be_liberal")
    );
}

#[test]
fn a_clean_probe_to_another_remote_is_no_contradiction_to_a_failing_one() {
    let mut failing = probe(850.0, 900.0, Failure::Reset);
    failing.max_s = 7200.0;
    let mut held = clean_probe(7200.0);
    held.remote = "198.18.3.3:6379".into();
    let ev = Evidence {
        probes: vec![failing.clone()],
        logs: Some(logs(LogPattern::IdleTimeout, Some(840.0), Some(905.0))),
        ..Evidence::default()
    };
    let alone = decide(&ev);
    let both = decide(&Evidence {
        probes: vec![failing, held],
        ..ev
    });
    assert!(both.contradictions.is_empty(), "{:?}", both.contradictions);
    assert_eq!(both.cause, Cause::MiddleboxIdleTimeout);
    assert_eq!(both.confidence, alone.confidence);
    assert_eq!(
        (both.path_timeout_s.low, both.path_timeout_s.high),
        (alone.path_timeout_s.low, alone.path_timeout_s.high)
    );
    assert!(
        both.evidence.iter().any(|e| e.contains("198.18.3.3:6379")),
        "{:?}",
        both.evidence
    );
}

#[test]
fn a_clean_probe_bounds_the_path_by_what_it_survived_not_by_its_maximum() {
    // Survived only 120 s of a 7200 s maximum: logs saying 300-900 s do not contradict it.
    let mut short = clean_probe(7200.0);
    short.low_s = Some(120.0);
    let v = decide(&Evidence {
        probes: vec![short],
        logs: Some(logs(LogPattern::IdleTimeout, Some(300.0), Some(900.0))),
        ..Evidence::default()
    });
    assert!(v.contradictions.is_empty(), "{:?}", v.contradictions);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
}

/// The app's connections without SO_KEEPALIVE, and another process (a monitoring agent, an
/// ssh client) whose connection sets it: unscoped, as without `--remote`.
fn app_and_agent() -> SocketEvidence {
    let mut s = sockets(0, 2);
    s.processes.push(ProcessSockets {
        process: "agent (pid 9)".into(),
        library: None,
        connections: 1,
        keepalive_on: 1,
        keepalive_off: 0,
        remotes: vec!["198.18.9.9:443".into()],
    });
    s
}

#[test]
fn another_process_with_keepalive_does_not_make_it_ineffective_or_hide_the_trap() {
    let ev = Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(18)),
        sockets: Some(app_and_agent()),
        ..Evidence::default()
    };
    assert_eq!(decide(&ev).cause, Cause::MiddleboxIdleTimeout);
    // With the OS keepalive below the path, the app's connections are in the trap.
    let v = decide(&Evidence {
        os_keepalive: Some(os(4)),
        ..ev
    });
    assert_eq!(v.cause, Cause::KeepaliveIneffective);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("2 of the 3 connections do not set SO_KEEPALIVE")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn a_clean_probe_is_reported_with_what_it_held_and_clean_probes_bound_by_the_shortest() {
    let mut short = clean_probe(7200.0);
    short.low_s = Some(120.0);
    let v = decide(&Evidence {
        probes: vec![short.clone()],
        logs: Some(logs(LogPattern::ConnectionAgeTimer, None, None)),
        ..Evidence::default()
    });
    assert!(
        v.evidence.iter().any(|e| e.contains("up to 120 s")),
        "{:?}",
        v.evidence
    );
    assert!(
        !v.evidence.iter().any(|e| e.contains("7200")),
        "{:?}",
        v.evidence
    );
    // A LAN cache held 3600 s, the database's probe 120 s: logs at 300-900 s may be the
    // database's, so they contradict neither.
    let mut cache = clean_probe(7200.0);
    cache.remote = "198.18.3.3:6379".into();
    cache.low_s = Some(3600.0);
    let v = decide(&Evidence {
        probes: vec![cache, short],
        logs: Some(logs(LogPattern::IdleTimeout, Some(300.0), Some(900.0))),
        ..Evidence::default()
    });
    assert!(v.contradictions.is_empty(), "{:?}", v.contradictions);
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
}

#[test]
fn a_mixed_pool_names_the_connections_whose_keepalive_fires_too_late() {
    let v = decide(&Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(18)),
        sockets: Some(sockets(3, 1)),
        ..Evidence::default()
    });
    assert_eq!(v.cause, Cause::MiddleboxIdleTimeout);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("3 of the 4 connections set SO_KEEPALIVE, but")),
        "{:?}",
        v.evidence
    );
    // One connection without keepalive under a short OS keepalive: the trap, in the singular.
    let v = decide(&Evidence {
        probes: vec![probe(8.0, 9.5, Failure::Reset)],
        os_keepalive: Some(os(4)),
        sockets: Some(sockets(3, 1)),
        ..Evidence::default()
    });
    assert!(
        v.evidence.iter().any(|e| e.contains(
            "1 of the 4 connections does not set SO_KEEPALIVE, so it does not apply to it"
        )),
        "{:?}",
        v.evidence
    );
}
