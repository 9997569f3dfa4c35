//! End-to-end tests on synthetic logs (one per pattern) and property tests: the scanner and its
//! parsers never panic on arbitrary bytes.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::timestamp::SyslogYear;
use super::*;

fn opts() -> ScanOptions {
    ScanOptions::default()
}

fn run(log: &str) -> Report {
    run_with(log, &opts())
}

fn run_with(log: &str, o: &ScanOptions) -> Report {
    let catalog = Catalog::builtin().unwrap();
    analyse_bytes("test.log", log.as_bytes(), o, &catalog, &TimeZone::UTC).report
}

fn ts(secs: f64) -> String {
    let t = Timestamp::new(secs.floor() as i64, ((secs - secs.floor()) * 1e9) as i32).unwrap();
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const T0: f64 = 1_715_310_862.0; // 2024-05-10T03:14:22Z

#[test]
fn field_report_log() {
    let log = "2024-05-10T03:14:22Z INFO reconnecting upstream: unexpected EOF\n\
               2024-05-10T15:14:23Z INFO reconnecting upstream: unexpected EOF\n\
               2024-05-11T03:14:23Z INFO reconnecting upstream: unexpected EOF\n";
    let r = run(log);
    assert_eq!(r.events, 3);
    assert_eq!(r.pattern, Pattern::ConnectionAgeTimer, "{}", r.reason);
    assert!((r.period_s.unwrap() - 43200.5).abs() < 1e-6);
    assert!((r.drift_s_per_day.unwrap() - 1.0).abs() < 0.01);
    assert_eq!(r.nominal_period_s, Some(43200.0));
    // No catalog entry documents a 12 h default: no invented candidate.
    assert!(r.candidates.is_empty(), "{:?}", r.candidates);
    assert!(r.idle_timeout_s.is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["pattern"], "connection-age-timer");
    assert_eq!(json["events"], 3);
    assert!(json["candidates"].as_array().unwrap().is_empty());
}

#[test]
fn connection_age_timer_among_noise_and_stack_traces() {
    // A 24 h kube-proxy-like timer plus 3 s reconnect, Java stack traces, chatter.
    let mut log = String::new();
    let mut rng = Lcg(7);
    let mut reset = T0;
    for day in 0..8 {
        for k in 0..50 {
            let t = T0 + f64::from(day) * 86400.0 + f64::from(k) * 1700.0 + rng.next();
            writeln!(log, "{} INFO handled request id={k}", ts(t)).unwrap();
        }
        writeln!(
            log,
            "{} ERROR stream failed: java.net.SocketException: Connection reset",
            ts(reset)
        )
        .unwrap();
        writeln!(
            log,
            "\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:1)"
        )
        .unwrap();
        writeln!(log, "Caused by: java.net.SocketException: Connection reset").unwrap();
        writeln!(
            log,
            "{} WARN reconnecting after Connection reset",
            ts(reset + 0.5)
        )
        .unwrap();
        reset += 86403.0 + (rng.next() - 0.5) * 0.4;
    }
    let r = run(&log);
    assert_eq!(r.events, 16);
    assert_eq!(r.incidents, 8);
    // The `Caused by:` lines belong to the ERROR record above: one failure, one event.
    assert_eq!(r.lines_without_timestamp, 0);
    assert_eq!(r.lines_in_records, 8);
    assert_eq!(r.pattern, Pattern::ConnectionAgeTimer, "{}", r.reason);
    assert!(
        (r.drift_s_per_day.unwrap() - 3.0).abs() < 0.3,
        "{:?}",
        r.drift_s_per_day
    );
    assert_eq!(r.confidence, Confidence::High);
    let ids: Vec<_> = r.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["kube-proxy-conntrack"]);
    assert!(r.candidates[0].source.starts_with("https://"));
}

#[test]
fn wall_clock_schedule_in_syslog() {
    // A backup job at 02:30 every day resets the DB connections; syslog, whole seconds.
    let mut log = String::new();
    let mut rng = Lcg(3);
    for day in 1..=9 {
        let sec = (rng.next() * 4.0) as u32;
        writeln!(
            log,
            "May {day:>2} 02:29:58 db1 cron[77]: (root) CMD (/usr/local/bin/backup)"
        )
        .unwrap();
        writeln!(log, "May {day:>2} 02:30:{sec:02} app1 api[4242]: FATAL: server closed the connection unexpectedly").unwrap();
        writeln!(log, "May {day:>2} 09:00:00 app1 api[4242]: healthy").unwrap();
    }
    let r = run(&log);
    assert_eq!(r.events, 9);
    assert_eq!(r.pattern, Pattern::WallClockSchedule, "{}", r.reason);
    assert!(r.drift_s_per_day.unwrap().abs() < 1.0);
    assert_eq!(r.nominal_period_s, Some(86400.0));
    assert!(r.candidates.is_empty());
    assert_eq!(
        r.first_event.as_deref(),
        Some(&*format!(
            "2024-05-01T02:30:{:02}Z",
            (Lcg(3).next() * 4.0) as u32
        ))
    );
}

/// The lab workload's format, with a 900 s idle timeout on the path.
fn lab_log(timeout: f64, seed: u64) -> String {
    let mut log = String::new();
    let mut rng = Lcg(seed);
    let mut lines: Vec<(f64, String)> = Vec::new();
    for conn in 0..4 {
        let mut t = T0 + f64::from(conn);
        for _ in 0..12 {
            let idle = rng.next() * 1500.0;
            t += idle;
            if idle > timeout {
                lines.push((t, format!("conn={conn} event=error error=\"Connection reset by peer (os error 104)\" idle_s={idle:.1}")));
                t += 0.05;
                lines.push((t, format!("conn={conn} event=connect ok idle_s=0.0")));
            } else {
                lines.push((t, format!("conn={conn} event=query ok idle_s={idle:.1}")));
            }
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, l) in lines {
        writeln!(log, "{} {l}", ts(t)).unwrap();
    }
    log
}

#[test]
fn idle_timeout_from_connection_ids() {
    let r = run(&lab_log(900.0, 11));
    assert_eq!(r.pattern, Pattern::IdleTimeout, "{}", r.reason);
    let b = r.idle_timeout_s.unwrap();
    let (low, high) = (b.low.unwrap(), b.high.unwrap());
    assert!(low < 900.0 && high > 900.0, "{low}..{high}");
    assert!(high - low < 200.0, "{low}..{high}");
    assert!(
        r.candidates.iter().any(|c| c.id == "docker-swarm-ipvs"),
        "{:?}",
        r.candidates
    );
    assert!(
        r.candidates
            .iter()
            .all(|c| c.timeout_s > low * 0.98 && c.timeout_s <= high * 1.02)
    );
}

#[test]
fn idle_timeout_from_four_tuples_and_gaps() {
    // No idle_s field: idle is the gap between lines of the same 4-tuple.
    let mut log = String::new();
    let a = "198.18.1.10:40000->198.18.2.10:5432";
    let b = "198.18.1.10:40001->198.18.2.10:5432";
    for (t, tuple, text) in [
        (0.0, a, "query ok"),
        (100.0, a, "query ok"),
        (300.0, a, "query ok"),
        (5.0, b, "query ok"),
        (345.0, b, "query ok"),
        (700.0, a, "read: connection reset by peer"),
        (1000.0, b, "read: connection reset by peer"),
    ] {
        writeln!(log, "{} {tuple} {text}", ts(T0 + t)).unwrap();
    }
    let r = run(&log);
    assert_eq!(r.pattern, Pattern::IdleTimeout, "{}", r.reason);
    let b = r.idle_timeout_s.unwrap();
    assert_eq!((b.low, b.high), (Some(340.0), Some(400.0)));
    let ids: Vec<_> = r.candidates.iter().map(|c| c.id.as_str()).collect();
    assert!(
        ids.contains(&"aws-nat-gateway") && ids.contains(&"aws-nlb"),
        "{ids:?}"
    );
}

#[test]
fn connections_can_be_ignored() {
    let o = ScanOptions {
        connections: false,
        ..opts()
    };
    let r = run_with(&lab_log(900.0, 11), &o);
    assert!(r.idle_timeout_s.is_none());
    assert_ne!(r.pattern, Pattern::IdleTimeout);
}

#[test]
fn pool_slots_with_their_own_age_timers() {
    // Three pool slots (`conn=N` reused across reconnects), each cut 3600 s after it connected,
    // reconnecting in 1.5 s, with busy traffic in between (so no idle bracket explains it).
    let mut lines: Vec<(f64, String)> = Vec::new();
    for (slot, start) in [(0, 0.0), (1, 1500.0), (2, 2600.0)] {
        let mut born = T0 + start;
        for _ in 0..6 {
            let mut t = born;
            while t + 60.0 < born + 3600.0 {
                t += 60.0;
                lines.push((t, format!("conn={slot} event=query ok idle_s=60.0")));
            }
            let cut = born + 3600.0;
            let idle = cut - t;
            lines.push((cut, format!("conn={slot} event=error error=\"Connection reset by peer (os error 104)\" idle_s={idle:.1}")));
            born = cut + 1.5;
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut log = String::new();
    for (t, l) in &lines {
        writeln!(log, "{} {l}", ts(*t)).unwrap();
    }
    let r = run(&log);
    assert_eq!(r.events, 18);
    assert_eq!(r.pattern, Pattern::ConnectionAgeTimer, "{}", r.reason);
    assert!(
        (r.period_s.unwrap() - 3601.5).abs() < 0.01,
        "{:?}",
        r.period_s
    );
    assert!((r.drift_s_per_day.unwrap() - 1.5 * 86400.0 / 3601.5).abs() < 0.1);
    let per = r.per_connection.unwrap();
    assert_eq!((per.fitted, per.regular), (3, 3));
    // Idle bracket computed but inconsistent (survived 60 s, failed after less).
    let b = r.idle_timeout_s.unwrap();
    assert!(b.low.unwrap() >= b.high.unwrap());
    let ids: Vec<_> = r.candidates.iter().map(|c| c.id.as_str()).collect();
    assert!(ids.contains(&"cisco-asa-conn"), "{ids:?}");
}

#[test]
fn irregular_events() {
    let mut log = String::new();
    let mut rng = Lcg(5);
    let mut t = T0;
    for _ in 0..20 {
        t += rng.next() * 20000.0 + 10.0;
        writeln!(log, "{} WARN write: broken pipe", ts(t)).unwrap();
    }
    let r = run(&log);
    assert_eq!(r.events, 20);
    assert_eq!(r.pattern, Pattern::Irregular, "{}", r.reason);
    assert_eq!(r.period_s, None);
    assert_eq!(r.drift_s_per_day, None);
}

#[test]
fn user_patterns_and_go_format() {
    let mut log = String::new();
    for k in 0..5 {
        let t = Timestamp::new((T0 + f64::from(k) * 3600.0) as i64, 0).unwrap();
        writeln!(
            log,
            "{} upstream sent GOAWAY",
            t.strftime("%Y/%m/%d %H:%M:%S")
        )
        .unwrap();
    }
    assert_eq!(run(&log).events, 0);
    let o = ScanOptions {
        signatures: SignatureSet::new(true, &["GOAWAY".into()]).unwrap(),
        ..opts()
    };
    let r = run_with(&log, &o);
    assert_eq!(r.events, 5);
    assert_eq!(r.signatures.get("match:GOAWAY"), Some(&5));
    assert_eq!(r.period_s, Some(3600.0));
    assert_eq!(r.pattern, Pattern::WallClockSchedule, "{}", r.reason);
}

#[test]
fn line_numbers_and_no_trailing_newline() {
    let r = run("a\nb\n2024-05-10T03:14:22Z broken pipe");
    assert_eq!(r.events, 1);
    let first = r.inputs[0].first_event.clone().unwrap();
    assert_eq!((first.line, first.offset), (3, 4));
    let r = run("broken pipe without a time\nbroken pipe");
    assert_eq!((r.events, r.lines_without_timestamp), (0, 2));
    assert_eq!(
        r.inputs[0].first_without_timestamp.as_ref().unwrap().line,
        1
    );
}

proptest! {
    #[test]
    fn scan_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let catalog = Catalog::builtin().unwrap();
        let _ = analyse_bytes("fuzz", &data, &opts(), &catalog, &TimeZone::UTC);
    }

    #[test]
    fn scan_never_panics_on_log_like_text(
        lines in proptest::collection::vec(
            "(20[0-9]{2}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]{0,12})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?|[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}|[0-9]{9,14}(\\.[0-9]*)?|\\[[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9:]{8} [+-][0-9]{4}\\]|20[0-9]{2}/[0-9/]{5} [0-9:]{8}) (conn=[0-9a-z]{0,3}|[0-9.:]{0,20}->[0-9.:]{0,20}|connection #?[0-9]{0,4})? (connection reset|broken pipe|ETIMEDOUT|ok) ?(idle_s=[0-9.]{0,6})?",
            0..40,
        )
    ) {
        let text = lines.join("\n");
        let catalog = Catalog::builtin().unwrap();
        let r = analyse_bytes("prop", text.as_bytes(), &opts(), &catalog, &TimeZone::UTC).report;
        prop_assert!(r.events as usize <= lines.len());
    }

    #[test]
    fn timestamp_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = timestamp::find_timestamp(&data, &TimeContext::default(), &mut SyslogYear::default());
        let _ = idle::connection_key(&data);
        let _ = idle::idle_field(&data);
    }

    #[test]
    fn rfc3339_round_trips(secs in 978_307_200i64..4_102_444_800, millis in 0i32..1000, off_min in -720i32..=840) {
        let t = Timestamp::new(secs, millis * 1_000_000).unwrap();
        let off = jiff::tz::Offset::from_seconds(off_min * 60).unwrap();
        let text = format!("{} connection reset", t.to_zoned(TimeZone::fixed(off)).strftime("%Y-%m-%dT%H:%M:%S%.3f%:z"));
        let p = timestamp::find_timestamp(text.as_bytes(), &TimeContext::default(), &mut SyslogYear::default());
        prop_assert_eq!(p.map(|p| p.time), Some(t));
    }
}

fn fixture(name: &str) -> Report {
    let path = format!("{}/tests/fixtures/logs/{name}", env!("CARGO_MANIFEST_DIR"));
    run(&std::fs::read_to_string(&path).unwrap())
}

#[test]
fn java_pgjdbc_and_hikaricp_failures_count_once() {
    let r = fixture("java-pgjdbc-hikaricp.log");
    // Three query failures with stack traces (the reset text on 2 lines each) and two HikariCP
    // validation WARNs: five failures, five events.
    assert_eq!(
        (r.events, r.lines_in_records, r.lines_without_timestamp),
        (5, 3, 0)
    );
    assert_eq!(
        r.incidents, 3,
        "each WARN follows its failure within a second"
    );
    assert_eq!(r.signatures.get("pgjdbc-io-error"), Some(&3));
    assert_eq!(r.signatures.get("hikaricp-validation-failed"), Some(&2));
    // PgConnection@... identities bracket the idle: 880 s survived, 965.6 s failed.
    assert_eq!(r.pattern, Pattern::IdleTimeout, "{}", r.reason);
    let b = r.idle_timeout_s.unwrap();
    assert_eq!(b.low, Some(880.0));
    assert!((b.high.unwrap() - 965.571).abs() < 1e-3, "{b:?}");
    assert!(r.candidates.iter().any(|c| c.id == "docker-swarm-ipvs"));
    assert_eq!(r.idle_bracket_note, None);
    // The failure is named in each query failure's `Caused by: ... Connection reset`; the
    // validation WARNs ("This connection has been closed.") do not say.
    assert_eq!(
        r.failure_texts,
        scanner::FailureTexts {
            reset: 3,
            timeout: 0
        }
    );
}

#[test]
fn failure_texts_count_each_record_once_by_its_first_named_failure() {
    let log = "2026-12-01 10:39:04 ERROR Error while reading from 10.0.0.7:6379 : (110, 'Connection timed out')\n\
               2026-12-01 10:45:04 ERROR read tcp 10.0.0.5:4000->10.0.0.7:6379: read: connection reset by peer\n\
               2026-12-01 10:51:04 ERROR query failed: unexpected EOF\n\
               2026-12-01 10:57:04 ERROR read: ETIMEDOUT\n  caused by: Connection reset by peer\n";
    let r = run(log);
    assert_eq!(r.events, 4);
    assert_eq!(
        r.failure_texts,
        scanner::FailureTexts {
            reset: 1,
            timeout: 2
        }
    );
}

/// Logs written by real runs of the drivers in the lab (`real-*.log`, see the fixtures' README):
/// psycopg2 (libpq 17) twice through a 5 s firewall, `log.exception` tracebacks whose reset text
/// sits on an untimestamped continuation line.
#[test]
fn real_psycopg2_tracebacks_count_once() {
    let r = fixture("real-psycopg2.log");
    assert_eq!(
        (r.events, r.incidents, r.lines_without_timestamp),
        (2, 2, 0)
    );
    assert_eq!(r.signatures.get("libpq-server-closed"), Some(&2));
    assert_eq!(r.libraries.get("libpq"), Some(&2));
}

/// grpcio 1.76: the `_InactiveRpcError` traceback carries `StatusCode.UNAVAILABLE` and
/// `recvmsg:Connection reset by peer` on continuation lines: one failure, one event, named grpcio.
#[test]
fn real_grpcio_traceback_counts_once_and_names_grpcio() {
    let r = fixture("real-grpcio.log");
    assert_eq!((r.events, r.lines_without_timestamp), (1, 0));
    assert!(r.lines_in_records >= 1, "{}", r.lines_in_records);
    assert_eq!(r.signatures.get("grpcio-recvmsg-reset"), Some(&1));
    assert_eq!(r.libraries.get("grpcio"), Some(&1));
}

/// Go's share of the hand-written fixtures stays below; the Node and Redis clients' real logs:
/// node-pg's app logs each failure twice (the client's `error` event and the rejected query,
/// 1 ms apart, with a stack), which groups into one incident per failure; ioredis reconnects and
/// logs `read ECONNRESET` once; redis-py retries on a new connection and the library logs
/// nothing, so `logs` finds nothing (the driver's own WARNING has no reset text).
#[test]
fn real_node_and_redis_logs() {
    let pg = fixture("real-node-pg.log");
    assert_eq!((pg.events, pg.incidents), (4, 2));
    assert_eq!(pg.signatures.get("econnreset"), Some(&4));
    let note = pg.idle_bracket_note.unwrap_or_default();
    assert!(note.contains("idlereset pcap"), "{note}");
    let io = fixture("real-ioredis.log");
    assert_eq!((io.events, io.incidents), (1, 1));
    let py = fixture("real-redis-py.log");
    assert_eq!(py.events, 0);
}

#[test]
fn go_errors_and_panics_count_once() {
    let r = fixture("go-pgx.log");
    assert_eq!(
        (r.events, r.lines_in_records, r.lines_without_timestamp),
        (3, 1, 0)
    );
    let b = r.idle_timeout_s.unwrap();
    assert_eq!((b.low, b.high), (Some(600.0), Some(1201.0)));
}

/// `lab_log` without the idle phrases: the idle is the gap since the connection's last line.
fn gap_log(timeout: f64, seed: u64) -> Vec<(f64, String)> {
    lab_log(timeout, seed)
        .lines()
        .map(|l| {
            let cut = l.find(" idle_s=").unwrap_or(l.len());
            let t = l
                .split(' ')
                .next()
                .and_then(|t| t.parse::<Timestamp>().ok());
            (
                t.map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0),
                l[..cut].to_string(),
            )
        })
        .collect()
}

fn scan_inputs(inputs: &[String]) -> Report {
    let catalog = Catalog::builtin().unwrap();
    let o = opts();
    let mut s = scanner::Scanner::new(&o);
    for (i, text) in inputs.iter().enumerate() {
        s.begin_input(&format!("app.log.{i}"));
        s.push(text.as_bytes(), &mut |_| {});
        s.end_input(&mut |_| {});
    }
    s.finish(&catalog, &TimeZone::UTC).report
}

#[test]
fn rotated_files_given_newest_first_keep_the_idle_bracket() {
    let lines = gap_log(900.0, 11);
    let mid = lines[lines.len() / 2].0;
    let (old, new): (Vec<_>, Vec<_>) = lines.iter().partition(|(t, _)| *t < mid);
    let text = |v: &[&(f64, String)]| v.iter().map(|(_, l)| format!("{l}\n")).collect::<String>();
    let in_order = scan_inputs(&[text(&old), text(&new)]);
    let newest_first = scan_inputs(&[text(&new), text(&old)]);
    for r in [&in_order, &newest_first] {
        assert_eq!(r.pattern, Pattern::IdleTimeout, "{}", r.reason);
        let b = r.idle_timeout_s.unwrap();
        let (low, high) = (b.low.unwrap(), b.high.unwrap());
        assert!(low < 900.0 && high > 900.0, "{low}..{high}");
    }
}

#[test]
fn an_absurd_failure_line_gives_no_idle_sample() {
    let mut log = String::new();
    for (i, (_, l)) in gap_log(900.0, 11).iter().enumerate() {
        writeln!(log, "{l}").unwrap();
        if i == 10 {
            writeln!(
                log,
                "0000-01-01T00:00:00Z conn=2 event=error error=\"Connection reset by peer\""
            )
            .unwrap();
        }
        if i == 20 {
            // A success dated year 0: the gap to the connection's next line is no idle either.
            writeln!(log, "0000-01-01T00:00:00Z conn=3 event=query ok").unwrap();
        }
    }
    let r = run(&log);
    assert_eq!(r.absurd_timestamps, 1);
    assert_eq!(r.pattern, Pattern::IdleTimeout, "{}", r.reason);
    let b = r.idle_timeout_s.unwrap();
    let (low, high) = (b.low.unwrap(), b.high.unwrap());
    assert!(low < 900.0 && high > 900.0, "{low}..{high}");
}

/// Two connections cut 1 s apart every hour are one incident per hour (a pool cut together),
/// as docs/logs.md says; the hourly period is fitted between those incidents.
#[test]
fn resets_of_several_connections_within_the_window_are_one_incident() {
    let mut log = String::new();
    for h in 0..5 {
        let t = T0 + f64::from(h) * 3600.0;
        for (conn, dt) in [(1, 0.0), (2, 1.0)] {
            writeln!(
                log,
                "{} conn={conn} event=error error=\"Connection reset by peer\"",
                ts(t + dt)
            )
            .unwrap();
        }
    }
    let r = run(&log);
    assert_eq!((r.events, r.incidents), (10, 5));
    assert_eq!(r.nominal_period_s, Some(3600.0), "{}", r.reason);
}

#[test]
fn a_few_absurd_timestamps_do_not_flip_the_verdict() {
    // A clean 300 s pattern (whole seconds, a little start-up jitter) ...
    let mut log = String::new();
    let mut rng = Lcg(9);
    for k in 0..24 {
        let t = T0 + f64::from(k) * 300.0 + (rng.next() * 2.0).floor();
        writeln!(log, "{} ERROR write: broken pipe", ts(t)).unwrap();
        if k == 11 {
            // ... with one line dated year 0 and one at the epoch (an unset clock) in the middle.
            writeln!(log, "0000-01-01T00:00:00Z ERROR write: broken pipe").unwrap();
            writeln!(log, "1970-01-01T00:00:00Z ERROR write: broken pipe").unwrap();
        }
    }
    let r = run(&log);
    assert_eq!(r.events, 26);
    assert_eq!(r.absurd_timestamps, 2);
    assert_eq!(r.absurd_examples[0].time, "0000-01-01T00:00:00Z");
    assert_eq!(r.absurd_examples[0].line, 13);
    assert_ne!(r.pattern, Pattern::Irregular, "{}", r.reason);
    assert_eq!(r.nominal_period_s, Some(300.0));
    assert_eq!(r.incidents, 24);
    assert!(r.first_event.unwrap().starts_with("2024-05-10"));
}

#[test]
fn incidents_beyond_the_reservoir_are_sampled_and_keep_the_period() {
    // 100,000 resets every 300 s (more than the reservoir keeps).
    let mut log = String::new();
    let n = scanner::MAX_INCIDENTS as u64 + 34_464;
    for k in 0..n {
        writeln!(
            log,
            "{} ERROR read: connection reset by peer",
            1_100_000_000 + k * 300
        )
        .unwrap();
    }
    let r = run(&log);
    assert_eq!(r.events, n);
    assert!(r.sampled);
    assert_eq!(r.incidents, n);
    assert!(
        (r.period_s.unwrap() - 300.0).abs() < 1e-6,
        "{:?}",
        r.period_s
    );
    assert_eq!(r.pattern, Pattern::WallClockSchedule, "{}", r.reason);
}

#[test]
fn a_long_line_of_matches_is_searched_a_bounded_number_of_times() {
    use super::signatures::SEARCHES;
    // 210 KB lines of a text that names no failure, under a `--match` pattern found nowhere:
    // finding the failure a line names must not search again after each match on it.
    let many = "unexpected eof ".repeat(14_000);
    let log = format!(
        "2026-12-07T10:00:00Z ERROR {many}connection reset\n\
         \tat {many}\n\
         2026-12-07T10:00:09Z ERROR {many}ETIMEDOUT\n"
    );
    let o = ScanOptions {
        signatures: SignatureSet::new(true, &["[0-9]{3}x[0-9]{3}".into()]).unwrap(),
        ..opts()
    };
    let before = SEARCHES.with(|c| c.get());
    let r = run_with(&log, &o);
    let searches = SEARCHES.with(|c| c.get()) - before;
    assert_eq!(r.events, 2);
    assert_eq!(
        r.failure_texts,
        scanner::FailureTexts {
            reset: 1,
            timeout: 1
        }
    );
    // One search by each of the two searchers (built-ins, `--match`) for each line's first
    // match, and one for the failure each record names: the `at` line continues a record
    // whose failure is known and is not searched for one.
    assert!(
        searches <= 3 * 2 + 2,
        "{searches} searches for 3 lines, 2 records"
    );
}

#[test]
fn lines_that_each_match_a_builtin_do_not_rerun_a_pattern_found_nowhere() {
    use super::signatures::SEARCHES;
    // Each line matches a built-in; the `--match` pattern matches nothing in the block, so
    // it is searched once, not once per line to the block's end.
    let lines = 2_000;
    let log: String = (0..lines)
        .map(|i| {
            format!(
                "2026-12-07T10:{:02}:{:02}Z ERROR unexpected eof\n",
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    let o = ScanOptions {
        signatures: SignatureSet::new(true, &["[0-9]{3}x[0-9]{3}".into()]).unwrap(),
        ..opts()
    };
    let before = SEARCHES.with(|c| c.get());
    let r = run_with(&log, &o);
    let searches = SEARCHES.with(|c| c.get()) - before;
    assert_eq!(r.events, lines);
    // Per line one built-in search and one for the failure its text names; the pattern once
    // per block (blocks are large: a handful).
    assert!(
        searches <= 2 * lines + 20,
        "{searches} searches for {lines} lines"
    );
}
