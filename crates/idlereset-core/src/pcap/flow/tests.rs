//! Scenario tests: whole synthetic captures through reader, link, packet and flow tracker.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::pcap::testkit::{Conv, Pkt, V4_A, V4_B, V6_A, V6_B};
use crate::pcap::writer::{
    LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,
};
use crate::pcap::{analyse_bytes, packet};
use std::net::IpAddr;

fn run(bytes: &[u8]) -> Analysis {
    let (fa, read) = analyse_bytes(bytes, Config::default());
    assert!(read.error.is_none() && read.damage.is_empty(), "{read:?}");
    assert_eq!(fa.other_packets, 0);
    fa.analysis
}

/// Client idles 950 s, sends a query; the firewall (directly attached to the capture point,
/// TTL 64) answers with a RST carrying the server's address. The server's own packets arrive
/// with TTL 63.
fn firewall_reset(c: IpAddr, s: IpAddr) -> Conv {
    let mut conv = Conv::new(c, s);
    conv.handshake()
        .exchange()
        .wait(950.0)
        .c_data(80)
        .forged_rst_from_server(64, 0);
    conv
}

fn only_event(a: &Analysis) -> &Event {
    assert_eq!(a.events.len(), 1, "{:#?}", a.events);
    &a.events[0]
}

#[test]
fn firewall_reset_ipv4() {
    let a = run(&firewall_reset(V4_A, V4_B).pcap(LINKTYPE_ETHERNET, false));
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Reset);
    assert_eq!(e.origin, Origin::Middlebox);
    assert_eq!(
        (e.client.as_str(), e.server.as_str()),
        ("198.18.0.10:41000", "198.19.0.20:5432")
    );
    assert_eq!(e.carries, Some(Role::Server));
    assert_eq!(e.trigger, Role::Client);
    assert!(
        (e.idle_before_s - 950.0).abs() < 0.01,
        "{}",
        e.idle_before_s
    );
    let ev = e.evidence.as_ref().unwrap();
    assert_eq!((ev.ttl, ev.expected_ttl.clone()), (64, vec![63]));
    assert!(e.time.starts_with("2023-11-14T22:"), "{}", e.time);
    assert_eq!(a.stats.flows, 1);
}

#[test]
fn firewall_reset_ipv6_prints_bracketed_addresses() {
    let a = run(&firewall_reset(V6_A, V6_B).pcap(LINKTYPE_RAW, true));
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::Reset, Origin::Middlebox));
    assert_eq!(e.server, "[2001:db8:0:2::14]:5432");
    assert_eq!(e.client, "[2001:db8:0:1::a]:41000");
    assert_eq!(e.evidence.as_ref().unwrap().ip_id_pattern, "ipv6");
}

#[test]
fn every_link_type_and_format_gives_the_same_verdict() {
    let conv = firewall_reset(V4_A, V4_B);
    let captures = [
        ("ethernet+vlan", conv.pcap(LINKTYPE_ETHERNET, false)),
        ("sll", conv.pcap(LINKTYPE_LINUX_SLL, false)),
        ("sll2", conv.pcap(LINKTYPE_LINUX_SLL2, true)),
        ("raw", conv.pcap(LINKTYPE_RAW, false)),
        ("pcapng sll2", conv.pcapng(LINKTYPE_LINUX_SLL2)),
        ("pcapng ethernet", conv.pcapng(LINKTYPE_ETHERNET)),
    ];
    for (name, bytes) in captures {
        let a = run(&bytes);
        assert_eq!(a.events.len(), 1, "{name}");
        let e = &a.events[0];
        assert_eq!(
            (e.kind, e.origin),
            (Kind::Reset, Origin::Middlebox),
            "{name}"
        );
        assert!(
            (e.idle_before_s - 950.0).abs() < 0.01,
            "{name}: {}",
            e.idle_before_s
        );
    }
}

#[test]
fn router_hop_server_reset_is_the_endpoint_not_a_guess_of_64() {
    // Everything crosses one more router: client 63, server 62 at the capture point.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.c.ttl = 63;
    conv.s.ttl = 62;
    conv.handshake().exchange().wait(700.0).c_data(10).s_rst();
    let e = only_event(&run(&conv.pcap(LINKTYPE_ETHERNET, false))).clone();
    assert_eq!((e.kind, e.origin), (Kind::Reset, Origin::Endpoint));

    // The same path with a firewall one hop closer than the server forging the RST.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.c.ttl = 63;
    conv.s.ttl = 62;
    conv.handshake()
        .exchange()
        .wait(700.0)
        .c_data(10)
        .forged_rst_from_server(63, 0);
    let e = only_event(&run(&conv.pcap(LINKTYPE_ETHERNET, false))).clone();
    assert_eq!(e.origin, Origin::Middlebox);
    assert_eq!(e.evidence.unwrap().expected_ttl, vec![62]);
}

#[test]
fn rst_with_matching_ttl_but_foreign_ip_id_is_a_middlebox() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .exchange()
        .wait(1000.0)
        .c_data(10)
        .forged_rst_from_server(63, 40_000);
    let e = only_event(&run(&conv.pcap(LINKTYPE_RAW, false))).clone();
    assert_eq!(e.origin, Origin::Middlebox);
    let ev = e.evidence.unwrap();
    assert_eq!(ev.ip_id_pattern, "incrementing");
    assert!(ev.reason.contains("IP ID 40000"), "{}", ev.reason);
}

#[test]
fn silent_drop_is_a_blackhole() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(400.0).c_data(100);
    let mut backoff = 0.2;
    for _ in 0..6 {
        conv.wait(backoff).c_retransmit(100);
        backoff *= 2.0;
    }
    let a = run(&conv.pcap(LINKTYPE_ETHERNET, false));
    let e = only_event(&a);
    assert_eq!(
        (e.kind, e.origin, e.carries),
        (Kind::Blackhole, Origin::Unknown, None)
    );
    assert_eq!(e.retransmissions, 6);
    assert!((e.idle_before_s - 400.0).abs() < 0.01);
    assert_eq!(a.stats.retransmissions, 6);

    // The same drop ended by the client's own RST when it gives up: still a blackhole.
    conv.wait(30.0).c_rst();
    let e = only_event(&run(&conv.pcap(LINKTYPE_ETHERNET, false))).clone();
    assert_eq!(e.kind, Kind::Blackhole);
}

#[test]
fn unanswered_keepalive_probes_are_a_blackhole() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(7200.0).c_probe();
    for _ in 0..8 {
        conv.wait(75.0).c_probe();
    }
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Blackhole);
    assert!((e.idle_before_s - 7200.0).abs() < 0.01);
    assert_eq!(
        (a.stats.keepalive_probes, a.stats.keepalive_answered),
        (9, 0)
    );
}

#[test]
fn server_idle_close_is_reported() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(600.0)
        .s_fin()
        .c_fin()
        .s_ack();
    let a = run(&conv.pcap(LINKTYPE_LINUX_SLL2, false));
    let e = only_event(&a);
    assert_eq!(
        (e.kind, e.origin, e.carries),
        (Kind::IdleClose, Origin::Endpoint, Some(Role::Server))
    );
    assert!((e.idle_before_s - 600.0).abs() < 0.01);
}

#[test]
fn client_retiring_an_idle_connection_is_not_a_failure() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(600.0)
        .c_fin()
        .s_fin()
        .c_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    assert_eq!(a.stats.idle_flows, 1);
}

#[test]
fn client_abort_after_idle_is_not_a_failure_but_a_server_abort_is() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(600.0).c_rst();
    assert!(run(&conv.pcap(LINKTYPE_RAW, false)).events.is_empty());

    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(600.0).s_rst();
    let e = only_event(&run(&conv.pcap(LINKTYPE_RAW, false))).clone();
    assert_eq!(
        (e.kind, e.origin, e.carries, e.trigger),
        (
            Kind::Reset,
            Origin::Endpoint,
            Some(Role::Server),
            Role::Server
        )
    );
}

#[test]
fn answered_keepalives_keep_the_flow_alive() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange();
    for _ in 0..20 {
        conv.wait(60.0).c_probe().s_ack();
    }
    conv.wait(1.0).exchange().c_fin().s_fin().c_ack();
    let a = run(&conv.pcap(LINKTYPE_ETHERNET, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    assert_eq!(
        (a.stats.keepalive_probes, a.stats.keepalive_answered),
        (20, 20)
    );
    assert_eq!(a.stats.retransmissions, 0);
    let survived = a.longest_survived_idle_s.unwrap();
    assert!((survived - 60.0).abs() < 0.1, "{survived}");
    assert_eq!(a.notable_flows.len(), 1);
    assert_eq!(a.notable_flows[0].keepalive_probes, 20);
}

#[test]
fn normal_closes_and_busy_resets_are_not_idle_events() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(0.5)
        .exchange()
        .c_fin()
        .s_fin()
        .c_ack();
    // A refused connection on another port: SYN answered by RST.
    let refused = Pkt::new(V4_A, 41001, V4_B, 9999).flags(packet::SYN).seq(5);
    let rst = Pkt::new(V4_B, 9999, V4_A, 41001)
        .flags(packet::RST | ACK)
        .ack(6)
        .ttl(63);
    conv.raw(&refused).raw(&rst);
    // A busy flow aborted by the client after 2 s.
    let mut busy = Conv::new(V4_A, V4_B);
    busy.c.port = 41002;
    busy.t = conv.t;
    busy.handshake().exchange().wait(2.0).c_rst();
    conv.pkts.extend(busy.pkts);
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    assert_eq!(a.stats.flows, 3);
}

#[test]
fn client_is_found_without_a_syn() {
    // Capture started mid-connection: the server speaks first after the idle.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.exchange().wait(900.0).s_data(20);
    let rst = Pkt::new(V4_A, 41000, V4_B, 5432)
        .flags(packet::RST)
        .ttl(60)
        .seq(conv.c.seq);
    conv.raw(&rst);
    let e = only_event(&run(&conv.pcap(LINKTYPE_RAW, false))).clone();
    assert_eq!(
        (e.client.as_str(), e.trigger, e.carries),
        ("198.18.0.10:41000", Role::Server, Some(Role::Client))
    );
    assert_eq!(e.origin, Origin::Middlebox);
}

#[test]
fn bracket_inputs_survived_and_failed() {
    let mut ok = Conv::new(V4_A, V4_B);
    ok.handshake().exchange().wait(300.0).exchange();
    let mut bad = firewall_reset(V4_A, V4_B);
    bad.c.port = 41001;
    bad.pkts.clear();
    bad.t = ok.t;
    bad.handshake()
        .exchange()
        .wait(400.0)
        .c_data(5)
        .forged_rst_from_server(64, 0);
    ok.pkts.extend(bad.pkts);
    ok.pkts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let a = run(&ok.pcap(LINKTYPE_RAW, false));
    assert!((a.longest_survived_idle_s.unwrap() - 300.0).abs() < 0.01);
    assert!((only_event(&a).idle_before_s - 400.0).abs() < 0.01);
}

#[test]
fn memory_stays_bounded_and_every_flow_is_counted() {
    let cfg = Config {
        max_flows: 100,
        linger_ns: NS,
        ..Config::default()
    };
    let mut tracker = Tracker::new(cfg);
    let mut peak = 0;
    // 1000 short connections closed normally, one every 10 ms ...
    for i in 0..1000u32 {
        let mut conv = Conv::new(V4_A, V4_B);
        conv.c.port = 20_000 + i as u16;
        conv.t = 1000.0 + f64::from(i) * 0.01;
        conv.handshake().exchange().c_fin().s_fin().c_ack();
        for (t, ip) in &conv.pkts {
            tracker.packet((t * 1e9) as u64, &Seg::of(&packet::parse_tcp(ip).unwrap()));
            peak = peak.max(tracker.live_flows());
        }
    }
    // ... and 500 that stay open, forcing evictions by the cap.
    for i in 0..500u32 {
        let mut conv = Conv::new(V4_A, V4_B);
        conv.c.port = 40_000 + i as u16;
        conv.t = 2000.0 + f64::from(i);
        conv.handshake();
        for (t, ip) in &conv.pkts {
            tracker.packet((t * 1e9) as u64, &Seg::of(&packet::parse_tcp(ip).unwrap()));
            peak = peak.max(tracker.live_flows());
        }
    }
    assert!(peak <= 101, "peak {peak}");
    let a = tracker.finish();
    assert_eq!(a.stats.flows, 1500);
    assert!(a.stats.evicted_by_cap > 0);
}

#[test]
fn truncated_capture_is_analysed_up_to_the_damage() {
    let bytes = firewall_reset(V4_A, V4_B).pcap(LINKTYPE_ETHERNET, false);
    let cut = &bytes[..bytes.len() - 10];
    let (fa, read) = analyse_bytes(cut, Config::default());
    // A file cut inside its last record is a normal end, with a note naming the offset.
    assert!(read.error.is_none() && read.damage.is_empty(), "{read:?}");
    assert_eq!(read.notes.len(), 1, "{:?}", read.notes);
    assert!(
        read.notes[0].contains("ends inside the last record"),
        "{:?}",
        read.notes
    );
    assert!(!fa.verdict_unsafe);
    // Everything but the RST was read: the flow is there, the data after idle too.
    assert_eq!(fa.packets, 7);
    assert_eq!(fa.analysis.stats.flows, 1);
    assert!(fa.analysis.events.is_empty());
}

fn run_with(bytes: &[u8], cfg: Config) -> Analysis {
    let (fa, read) = analyse_bytes(bytes, cfg);
    assert!(read.error.is_none() && read.damage.is_empty(), "{read:?}");
    fa.analysis
}

/// A busy flow: a request every 0.2 s answered at once, for `secs` seconds.
fn busy(conv: &mut Conv, secs: f64) {
    let n = (secs / 0.2) as usize;
    for _ in 0..n {
        conv.wait(0.2).c_data(20).s_data(100).c_ack();
    }
}

fn summary_of(a: &Analysis) -> crate::pcap::summary::Summary {
    let cat = crate::catalog::Catalog::builtin().unwrap();
    crate::pcap::summary::summarise(&[a], &cat)
}

#[test]
fn middlebox_reset_of_a_busy_flow_is_an_active_reset_not_an_idle_failure() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    busy(&mut conv, 200.0);
    conv.wait(0.2).c_data(20).forged_rst_from_server(64, 0);
    for min_idle in [5.0, 0.5] {
        let cfg = Config {
            min_idle_ns: (min_idle * 1e9) as u64,
            ..Config::default()
        };
        let a = run_with(&conv.pcap(LINKTYPE_ETHERNET, false), cfg);
        let e = only_event(&a);
        assert_eq!((e.kind, e.origin), (Kind::ActiveReset, Origin::Middlebox));
        assert!(e.idle_before_s < 0.3, "{}", e.idle_before_s);
        let m = e.last_minute.unwrap();
        // 300 requests a minute, three packets each, 120 payload bytes each; the window
        // covers the last 55 to 60 s.
        assert!((820..=905).contains(&m.packets), "{m:?}");
        assert!((32_800..=36_500).contains(&m.bytes), "{m:?}");
        let reading = e.reading.as_deref().unwrap();
        assert!(reading.contains("not the cause") && reading.contains("conntrack --watch"));
        let s = summary_of(&a);
        assert_eq!((s.idle_failures, s.active_resets), (0, 1));
        assert_eq!(s.idle_timeout_s.high, None);
        assert!(s.candidates.is_empty());
        assert!(s.verdict.contains("1 active reset"), "{}", s.verdict);
    }
}

#[test]
fn a_stall_with_growing_retransmission_gaps_is_not_an_idle_episode() {
    // The busy flow's packets start being dropped: the client retransmits after 0.2, 0.4,
    // 0.8 and 1.6 s, then the firewall resets it. With --min-idle 0.5s this used to be an
    // idle failure bracketing the timeout between two back-off gaps.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    busy(&mut conv, 30.0);
    conv.wait(0.2).c_data(20);
    for backoff in [0.2, 0.4, 0.8, 1.6] {
        conv.wait(backoff).c_retransmit(20);
    }
    conv.wait(0.01).forged_rst_from_server(64, 0);
    let cfg = Config {
        min_idle_ns: 500_000_000,
        ..Config::default()
    };
    let a = run_with(&conv.pcap(LINKTYPE_RAW, false), cfg);
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::ActiveReset, Origin::Middlebox));
    let s = summary_of(&a);
    assert_eq!(s.idle_failures, 0);
    assert_eq!(s.idle_timeout_s.low, None);
    assert_eq!(s.idle_timeout_s.high, None);
}

#[test]
fn endpoint_reset_of_a_busy_flow_is_listed_only_with_all() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    busy(&mut conv, 20.0);
    conv.wait(0.2).c_data(20).s_rst();
    let bytes = conv.pcap(LINKTYPE_ETHERNET, false);
    assert!(run(&bytes).events.is_empty());
    let a = run_with(
        &bytes,
        Config {
            all_resets: true,
            ..Config::default()
        },
    );
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::ActiveReset, Origin::Endpoint));
    assert!(
        e.reading
            .as_deref()
            .unwrap()
            .contains("Not an idle timeout")
    );
    let s = summary_of(&a);
    assert_eq!(
        (s.idle_failures, s.active_resets, s.endpoint_active_resets),
        (0, 0, 1)
    );
}

#[test]
fn a_mid_flow_ttl_change_of_one_direction_is_noted_beside_the_active_reset() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    busy(&mut conv, 10.0);
    // Failover: the server's packets now cross one more router.
    conv.s.ttl = 62;
    busy(&mut conv, 10.0);
    conv.wait(0.2).c_data(20).forged_rst_from_server(64, 0);
    let a = run(&conv.pcap(LINKTYPE_ETHERNET, false));
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::ActiveReset, Origin::Middlebox));
    let rc = e.route_change.as_ref().unwrap();
    assert_eq!(
        (rc.direction, rc.from_ttl, rc.to_ttl),
        (Role::Server, 63, 62)
    );
    assert!(rc.packets_after >= 50, "{rc:?}");
    assert!(rc.note.contains("INVALID"), "{}", rc.note);
    assert_eq!(summary_of(&a).route_changes, 1);

    // Without the change there is no note.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    busy(&mut conv, 20.0);
    conv.wait(0.2).c_data(20).forged_rst_from_server(64, 0);
    assert!(
        only_event(&run(&conv.pcap(LINKTYPE_ETHERNET, false)))
            .route_change
            .is_none()
    );
}

#[test]
fn finished_flows_leave_the_table_after_exactly_the_linger() {
    let cfg = Config {
        linger_ns: 10 * NS,
        ..Config::default()
    };
    let mut t = Tracker::new(cfg);
    let seg = |port: u16, flags: u8| {
        let ip = Pkt::new(V4_A, port, V4_B, 5432).flags(flags).ip();
        Seg::of(&packet::parse_tcp(&ip).unwrap())
    };
    let t0 = 1_700_000_000 * NS;
    t.packet(t0, &seg(40001, packet::ACK));
    t.packet(t0, &seg(40001, packet::RST));
    t.packet(t0 + 1, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 2);
    t.packet(t0 + 10 * NS - 1, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 2, "lingers until 10 s after its RST");
    t.packet(t0 + 10 * NS, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 1, "gone 10 s after its RST");
    // Two more finish one second apart: each leaves at its own time (the next expiry is
    // taken from what is still queued).
    t.packet(t0 + 11 * NS, &seg(40003, packet::RST));
    t.packet(t0 + 12 * NS, &seg(40004, packet::RST));
    assert_eq!(t.live_flows(), 3);
    t.packet(t0 + 21 * NS - 1, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 3);
    t.packet(t0 + 21 * NS, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 2);
    t.packet(t0 + 22 * NS, &seg(40002, packet::ACK));
    assert_eq!(t.live_flows(), 1);
}

/// One packet of a random conversation: flow, sender, flags, sequence step (0: repeat the
/// last sequence number, 1: in order, 2: one below, a keepalive probe), payload, time step,
/// TTL choice.
type RandomPacket = (u8, bool, u8, u8, u16, u32, bool);

fn random_packet() -> impl proptest::strategy::Strategy<Value = RandomPacket> {
    use proptest::prelude::*;
    let flags = prop_oneof![
        8 => Just(packet::ACK),
        4 => Just(packet::ACK | packet::PSH),
        1 => Just(packet::SYN),
        1 => Just(packet::SYN | packet::ACK),
        1 => Just(packet::FIN | packet::ACK),
        1 => Just(packet::RST),
        1 => Just(packet::RST | packet::ACK),
        1 => Just(0u8),
    ];
    let step = prop_oneof![8 => Just(1u8), 2 => Just(0u8), 1 => Just(2u8)];
    let payload = prop_oneof![3 => Just(0u16), 3 => 1u16..1500, 1 => Just(1u16)];
    // Mostly busy (under the 1 s episode threshold), sometimes idle for seconds or minutes.
    let gap = prop_oneof![
        12 => 0u32..900_000_000,
        2 => 900_000_000u32..2_000_000_000,
        1 => Just(u32::MAX),
        // Half a second back in time (captures merged from several interfaces).
        1 => Just(u32::MAX - 1),
    ];
    (
        0u8..3,
        any::<bool>(),
        flags,
        step,
        payload,
        gap,
        any::<bool>(),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The common-packet fast path changes nothing: the same packets through a tracker that
    /// takes every packet the general way give the same analysis.
    #[test]
    fn the_common_packet_fast_path_gives_what_the_general_way_gives(
        packets in proptest::collection::vec(random_packet(), 1..200),
        min_idle_ms in proptest::prop_oneof![proptest::strategy::Just(5_000u64), 100u64..3_000],
        // Near the top of the sequence space, so sequence numbers wrap.
        start_seq in proptest::prop_oneof![proptest::strategy::Just(u32::MAX - 3_000), proptest::num::u32::ANY],
    ) {
        let cfg = Config { min_idle_ns: min_idle_ms * 1_000_000, ..Config::default() };
        let mut fast = Tracker::new(cfg);
        let mut general = Tracker::new(cfg).without_fast_path();
        let mut ts = 1_700_000_000_000_000_000u64;
        // Per flow and side: the next sequence number and the last one sent.
        let mut next = [[start_seq, start_seq.wrapping_add(4000)]; 3];
        let mut ids = [[100u16, 900u16]; 3];
        for (flow, from_server, flags, step, payload, gap, other_ttl) in packets {
            ts = match gap {
                u32::MAX => ts + 700_000_000_000,
                g if g == u32::MAX - 1 => ts - 500_000_000,
                g => ts + u64::from(g),
            };
            let (f, side) = (usize::from(flow), usize::from(from_server));
            let seq = match step {
                0 => next[f][side].wrapping_sub(u32::from(payload).max(1)),
                2 => next[f][side].wrapping_sub(1),
                _ => next[f][side],
            };
            let payload = if flags & packet::RST != 0 { 0 } else { payload };
            let ack = next[f][1 - side];
            let (src, dst, sport, dport) = if from_server {
                (V4_B, V4_A, 5432, 40000 + u16::from(flow))
            } else {
                (V4_A, V4_B, 40000 + u16::from(flow), 5432)
            };
            ids[f][side] = ids[f][side].wrapping_add(1);
            let ttl = match (from_server, other_ttl) {
                (_, true) => 64,
                (true, false) => 61,
                (false, false) => 63,
            };
            let bytes = Pkt::new(src, sport, dst, dport)
                .flags(flags)
                .seq(seq)
                .ack(ack)
                .payload(usize::from(payload))
                .ttl(ttl)
                .id(ids[f][side])
                .ip();
            let seg = Seg::of(&packet::parse_tcp(&bytes).unwrap());
            fast.packet(ts, &seg);
            general.packet(ts, &seg);
            if step == 1 {
                let syn_fin = u32::from(flags & (packet::SYN | packet::FIN) != 0);
                next[f][side] = seq.wrapping_add(u32::from(payload)).wrapping_add(syn_fin);
            }
        }
        proptest::prop_assert_eq!(fast.finish(), general.finish());
    }
}

/// Packets of `conv` into a tracker, in time order, then its analysis.
fn track(convs: &[&Conv], cfg: Config) -> Analysis {
    let mut pkts: Vec<&(f64, Vec<u8>)> = convs.iter().flat_map(|c| c.pkts.iter()).collect();
    pkts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut tracker = Tracker::new(cfg);
    for (t, ip) in pkts {
        tracker.packet((t * 1e9) as u64, &Seg::of(&packet::parse_tcp(ip).unwrap()));
    }
    tracker.finish()
}

/// The client's last FIN (`payload` 0) or last `payload` bytes of data, sent again.
fn c_again(conv: &mut Conv, flags: u8, payload: u32) {
    let back = payload.max(1);
    let p = Pkt::new(conv.c.addr, conv.c.port, conv.s.addr, conv.s.port)
        .ttl(conv.c.ttl)
        .id(conv.c.id)
        .seq(conv.c.seq.wrapping_sub(back))
        .ack(conv.s.seq)
        .flags(flags)
        .payload(payload as usize);
    conv.c.id = conv.c.id.wrapping_add(1);
    conv.raw(&p);
}

/// Six retransmissions of the client's last FIN or data, backing off from 0.2 s.
fn c_backoff(conv: &mut Conv, flags: u8, payload: u32) {
    for i in 0..6 {
        conv.wait(0.2 * f64::from(1u32 << i));
        c_again(conv, flags, payload);
    }
}

#[test]
fn a_capture_started_on_an_idle_pool_still_knows_keepalive_probes() {
    // No handshake: tcpdump started while the pool idled. The first client packet is a probe.
    let mut conv = Conv::new(V4_A, V4_B);
    for _ in 0..3 {
        conv.c_probe().s_ack().wait(300.0);
    }
    for _ in 0..9 {
        conv.c_probe().wait(75.0);
    }
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    // The very first packet seen cannot be told from new data; every later probe can.
    assert_eq!(
        (a.stats.keepalive_probes, a.stats.keepalive_answered),
        (11, 2)
    );
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Blackhole);
    assert!((e.idle_before_s - 300.0).abs() < 0.1, "{}", e.idle_before_s);
}

#[test]
fn a_client_fin_after_idle_answered_by_a_middlebox_rst_is_a_reset() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(1800.0)
        .c_fin()
        .forged_rst_from_server(64, 0);
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::Reset, Origin::Middlebox));
    assert!((e.idle_before_s - 1800.0).abs() < 0.01);
    assert_eq!(a.longest_survived_idle_s, None);
}

#[test]
fn a_client_fin_after_idle_that_nobody_answers_is_a_blackhole() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(900.0).c_fin();
    c_backoff(&mut conv, FIN | ACK, 0);
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Blackhole);
    assert!((e.idle_before_s - 900.0).abs() < 0.01);
    assert_eq!(e.retransmissions, 6);
}

#[test]
fn a_client_fin_after_idle_answered_by_the_server_survived_the_gap() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(600.0)
        .c_fin()
        .s_fin()
        .c_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    let survived = a.longest_survived_idle_s.unwrap();
    assert!((survived - 600.0).abs() < 0.01, "{survived}");
}

#[test]
fn a_server_idle_close_after_a_goodbye_message_is_an_idle_close() {
    // PostgreSQL's idle_session_timeout: a FATAL ErrorResponse, then the FIN.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(600.0)
        .s_data(110)
        .s_fin()
        .c_ack()
        .c_fin()
        .s_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!(
        (e.kind, e.origin, e.carries),
        (Kind::IdleClose, Origin::Endpoint, Some(Role::Server))
    );
    assert!((e.idle_before_s - 600.0).abs() < 0.01);
    assert_eq!(a.longest_survived_idle_s, None);
}

#[test]
fn a_new_syn_on_the_same_ports_is_a_new_connection_not_an_answer() {
    // A blackhole, then the client reconnects from the same port with a new ISN, idles
    // 400 s and is reset by the firewall.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(400.0).c_data(80);
    c_backoff(&mut conv, ACK | packet::PSH, 80);
    conv.wait(5.0);
    conv.c.seq = 500;
    conv.s.seq = 7_000_000;
    conv.handshake()
        .exchange()
        .wait(400.0)
        .c_data(80)
        .forged_rst_from_server(64, 0);
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let kinds: Vec<Kind> = a.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Blackhole, Kind::Reset], "{:#?}", a.events);
    for e in &a.events {
        assert!((e.idle_before_s - 400.0).abs() < 0.01, "{e:?}");
    }
    assert_eq!(a.stats.flows, 2);
    assert_eq!(a.longest_survived_idle_s, None);

    // The server's side of a NAT that reused the port: a new SYN after 1800 s of idle is not
    // the other side answering the idle connection.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(1800.0);
    conv.c.seq = 77;
    conv.handshake().exchange();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert_eq!(a.longest_survived_idle_s, None, "{a:#?}");
    assert_eq!(a.stats.flows, 2);
}

#[test]
fn the_flow_cap_evicts_finished_flows_before_an_idle_one() {
    let mut pool = Conv::new(V4_A, V4_B);
    pool.t = 1000.0;
    pool.handshake().exchange().wait(400.0).c_data(80);
    pool.forged_rst_from_server(64, 0);
    let shorts: Vec<Conv> = (0..20u16)
        .map(|i| {
            let mut c = Conv::new(V4_A, V4_B);
            c.c.port = 20_000 + i;
            c.t = 1395.0 + f64::from(i) * 0.2;
            c.handshake().exchange().c_fin().s_fin().c_ack();
            c
        })
        .collect();
    let mut all: Vec<&Conv> = shorts.iter().collect();
    all.push(&pool);
    let cfg = Config {
        max_flows: 16,
        ..Config::default()
    };
    let a = track(&all, cfg);
    assert!(a.stats.evicted_by_cap > 0);
    let e = only_event(&a);
    assert_eq!((e.kind, e.origin), (Kind::Reset, Origin::Middlebox));
    assert!((e.idle_before_s - 400.0).abs() < 0.01);
}

#[test]
fn the_clients_own_rst_after_its_request_is_an_abort_and_after_a_probe_a_blackhole() {
    // The application sent a request after idle, then aborted (SO_LINGER 0) at once.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(600.0).c_data(80).c_rst();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);

    // tcp_keepalive_probes=1: one unanswered probe, then the client's stack gives up.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(600.0)
        .c_probe()
        .wait(75.0)
        .c_rst();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Blackhole);
    assert!((e.idle_before_s - 600.0).abs() < 0.01);
}

#[test]
fn a_slow_response_then_the_servers_fin_is_an_ordinary_close() {
    // The request before the gap, acknowledged; 30 s later the response and `Connection:
    // close` (the FIN reaches a server-side capture before the client's ACK).
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .c_data(200)
        .s_ack()
        .wait(30.0)
        .s_data(900)
        .s_fin()
        .c_ack()
        .c_fin()
        .s_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    // The same response with the FIN on its last segment.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().c_data(200).s_ack().wait(30.0);
    let p = Pkt::new(conv.s.addr, conv.s.port, conv.c.addr, conv.c.port)
        .ttl(conv.s.ttl)
        .id(conv.s.id)
        .seq(conv.s.seq)
        .ack(conv.c.seq)
        .flags(FIN | ACK | packet::PSH)
        .payload(900);
    conv.raw(&p);
    conv.s.seq = conv.s.seq.wrapping_add(901);
    conv.c_ack().c_fin().s_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    // A bare FIN 600 s after the request is the server (or a proxy) giving up: idle close.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .c_data(200)
        .s_ack()
        .wait(600.0)
        .s_fin()
        .c_ack();
    let e = only_event(&run(&conv.pcap(LINKTYPE_RAW, false))).clone();
    assert_eq!(e.kind, Kind::IdleClose);
    // The client's half-close before the gap makes the server's FIN after it ordinary too.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .c_data(200)
        .c_fin()
        .s_ack()
        .wait(30.0)
        .s_data(900)
        .s_fin()
        .c_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
    // The client closed its side after the last answer; the server closes 30 s later.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .c_fin()
        .s_ack()
        .wait(30.0)
        .s_fin()
        .c_ack();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert!(a.events.is_empty(), "{:#?}", a.events);
}

#[test]
fn a_servers_fin_after_its_unanswered_probes_is_no_idle_close() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().wait(300.0);
    for _ in 0..4 {
        let p = Pkt::new(conv.s.addr, conv.s.port, conv.c.addr, conv.c.port)
            .ttl(conv.s.ttl)
            .id(conv.s.id)
            .seq(conv.s.seq.wrapping_sub(1))
            .ack(conv.c.seq)
            .flags(ACK);
        conv.s.id = conv.s.id.wrapping_add(1);
        conv.raw(&p).wait(75.0);
    }
    conv.s_fin();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    let e = only_event(&a);
    assert_eq!(e.kind, Kind::Blackhole);
    assert!((e.idle_before_s - 300.0).abs() < 0.01);
}

#[test]
fn one_bogus_ack_far_ahead_does_not_hide_a_blackhole() {
    // With the handshake seen, and without (the side's sequence then catches up with the
    // peer's ACK by one byte only).
    for handshake in [true, false] {
        let mut conv = Conv::new(V4_A, V4_B);
        if handshake {
            conv.handshake();
        }
        conv.exchange().exchange();
        let bogus = Pkt::new(conv.s.addr, conv.s.port, conv.c.addr, conv.c.port)
            .ttl(conv.s.ttl)
            .id(conv.s.id)
            .seq(conv.s.seq)
            .ack(conv.c.seq.wrapping_add(100_000))
            .flags(ACK);
        conv.raw(&bogus).wait(300.0).c_data(80);
        c_backoff(&mut conv, ACK | packet::PSH, 80);
        let a = run(&conv.pcap(LINKTYPE_RAW, false));
        let e = only_event(&a);
        assert_eq!(e.kind, Kind::Blackhole, "handshake {handshake}");
        assert_eq!(e.retransmissions, 6, "handshake {handshake}");
    }
}

#[test]
fn a_fast_open_syn_sent_again_stays_one_flow() {
    // TCP Fast Open: the SYN carries the request; the retransmitted SYN is a plain one with
    // the same sequence number.
    let mut conv = Conv::new(V4_A, V4_B);
    let isn = conv.c.seq;
    let syn = |conv: &Conv, len: usize| {
        Pkt::new(conv.c.addr, conv.c.port, conv.s.addr, conv.s.port)
            .ttl(conv.c.ttl)
            .seq(isn)
            .flags(packet::SYN)
            .payload(len)
    };
    let first = syn(&conv, 100);
    conv.raw(&first).wait(1.0);
    let again = syn(&conv, 0);
    conv.raw(&again);
    let syn_ack = Pkt::new(conv.s.addr, conv.s.port, conv.c.addr, conv.c.port)
        .ttl(conv.s.ttl)
        .seq(conv.s.seq)
        .ack(isn.wrapping_add(1))
        .flags(packet::SYN | ACK);
    conv.raw(&syn_ack);
    conv.s.seq = conv.s.seq.wrapping_add(1);
    conv.c.seq = isn.wrapping_add(1);
    conv.c_ack().exchange();
    let a = run(&conv.pcap(LINKTYPE_RAW, false));
    assert_eq!(a.stats.flows, 1);
}
