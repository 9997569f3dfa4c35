//! Real-kernel tests: each creates its own namespace, plants entries over ctnetlink and reads
//! them back.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use super::*;
use crate::privilege::require_or_skip;
use crate::testns::TestNs;

fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: Some(sport),
        dport: Some(dport),
    }
}

fn collect(family: Family) -> Vec<ConntrackEntry> {
    let mut v = Vec::new();
    dump(family, |e| v.push(e)).unwrap();
    v
}

#[test]
fn insert_dump_count_v4_v6_nat_zone_mark() {
    if !require_or_skip("conntrack::insert_dump_count_v4_v6_nat_zone_mark") {
        return;
    }
    let t = TestNs::new(false);
    t.ns.run(|| {
        let mut ct = Ctnetlink::open().unwrap();
        assert_eq!(
            ct.count().unwrap().entries,
            0,
            "a fresh namespace has an empty table"
        );

        let v4 = tuple("198.18.0.10", 40000, "198.18.1.20", 5432);
        ct.insert(&NewEntry::tcp_established(v4, 900)).unwrap();

        let v6 = tuple("2001:db8::10", 40001, "2001:db8::20", 443);
        let mut e6 = NewEntry::tcp_established(v6, 120);
        e6.tcp_state = Some(CtTcpState::TIME_WAIT);
        e6.mark = 0x2a;
        e6.zone = 7;
        ct.insert(&e6).unwrap();

        // SNAT: the reply comes back to the NAT address 198.18.0.99:61000.
        let nat_orig = tuple("198.18.0.11", 40002, "198.18.1.20", 5432);
        let mut nat = NewEntry::tcp_established(nat_orig, 300);
        nat.reply = Some(tuple("198.18.1.20", 5432, "198.18.0.99", 61000));
        ct.insert(&nat).unwrap();

        let udp = NewEntry {
            proto: 17,
            reply: None,
            tcp_state: None,
            status: 0,
            ..NewEntry::tcp_established(tuple("198.18.0.12", 53000, "198.18.1.53", 53), 30)
        };
        ct.insert(&udp).unwrap();

        // Inserting the same tuple twice is refused.
        let dup = ct.insert(&NewEntry::tcp_established(v4, 900)).unwrap_err();
        assert!(dup.to_string().contains("exists"), "{dup}");

        let all = collect(Family::All);
        assert_eq!(all.len(), 4, "{all:#?}");
        assert_eq!(ct.count().unwrap().entries, 4);

        let e = all.iter().find(|e| e.orig == v4).expect("v4 entry");
        assert_eq!((e.proto, e.family), (6, 2));
        assert_eq!(e.tcp_state.map(CtTcpState::name), Some("ESTABLISHED"));
        assert!(
            (895..=900).contains(&e.timeout_s),
            "timeout {}",
            e.timeout_s
        );
        assert_eq!(e.reply, v4.inverse());
        assert!(!e.is_natted());
        assert!(
            e.status_names().contains(&"ASSURED"),
            "{:?}",
            e.status_names()
        );
        assert!(e.status_names().contains(&"SEEN_REPLY"));
        assert_ne!(e.id, 0);

        let e = all.iter().find(|e| e.orig == v6).expect("v6 entry");
        assert_eq!(e.family, 10);
        assert_eq!(e.tcp_state, Some(CtTcpState::TIME_WAIT));
        assert_eq!((e.mark, e.zone), (0x2a, 7));
        assert_eq!(e.orig.src_endpoint(), "[2001:db8::10]:40001");

        let e = all.iter().find(|e| e.orig == nat_orig).expect("nat entry");
        assert!(e.is_natted());
        assert_eq!(e.reply.dst_endpoint(), "198.18.0.99:61000");

        let e = all.iter().find(|e| e.proto == 17).expect("udp entry");
        assert_eq!(e.tcp_state, None);
        assert_eq!(e.proto_name(), "udp");

        // Family filters.
        assert_eq!(collect(Family::V4).len(), 3);
        let v6_only = collect(Family::V6);
        assert_eq!(v6_only.len(), 1);
        assert!(matches!(v6_only[0].orig.src, IpAddr::V6(_)));

        // The count-only dump sees the same number of messages without decoding.
        assert_eq!(ct.dump_count(Family::All).unwrap().messages, 4);

        ct.flush().unwrap();
        assert_eq!(collect(Family::All).len(), 0);
    })
    .unwrap();
}

#[test]
fn accounting_adds_counters_only_when_enabled() {
    if !require_or_skip("conntrack::accounting_adds_counters_only_when_enabled") {
        return;
    }
    let t = TestNs::new(false);
    t.ns.run(|| {
        let mut ct = Ctnetlink::open().unwrap();
        crate::sysctl::write("net.netfilter.nf_conntrack_acct", "0").unwrap();
        let before = tuple("198.18.0.10", 1000, "198.18.1.1", 80);
        ct.insert(&NewEntry::tcp_established(before, 60)).unwrap();
        enable_accounting().unwrap();
        assert!(accounting_enabled().unwrap());
        let after = tuple("198.18.0.10", 1001, "198.18.1.1", 80);
        ct.insert(&NewEntry::tcp_established(after, 60)).unwrap();
        let all = collect(Family::All);
        let b = all.iter().find(|e| e.orig == before).unwrap();
        let a = all.iter().find(|e| e.orig == after).unwrap();
        assert_eq!(
            b.orig_counters, None,
            "created before accounting: no counters"
        );
        assert_eq!(b.packets(), None);
        assert_eq!(
            a.orig_counters,
            Some(Counters::default()),
            "no packet crossed it yet"
        );
        assert_eq!(a.packets(), Some(0));
    })
    .unwrap();
}

#[test]
fn stats_cover_every_cpu() {
    if !require_or_skip("conntrack::stats_cover_every_cpu") {
        return;
    }
    let t = TestNs::new(false);
    let stats = t.ns.run(stats).unwrap().unwrap();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    assert!(
        stats.per_cpu.len() >= cpus,
        "{} per-CPU records for {cpus} CPUs",
        stats.per_cpu.len()
    );
    let sum: u64 = stats.per_cpu.iter().map(|(_, s)| s.invalid).sum();
    assert_eq!(sum, stats.total.invalid);
    assert_eq!(stats.total.invalid, 0, "nothing crossed a fresh namespace");
    // Table size limit is visible.
    let count = t.ns.run(count).unwrap().unwrap();
    assert!(count.max.is_some_and(|m| m > 0), "{count:?}");
}

#[test]
fn large_table_streams() {
    if !require_or_skip("conntrack::large_table_streams") {
        return;
    }
    let t = TestNs::new(false);
    t.ns.run(|| {
        let mut ct = Ctnetlink::open().unwrap();
        let n = 3000u16;
        for i in 0..n {
            ct.insert(&NewEntry::tcp_established(
                tuple("198.18.0.10", 10000 + i, "198.18.1.1", 80),
                600,
            ))
            .unwrap();
        }
        let mut seen = 0u32;
        let mut ports = std::collections::HashSet::new();
        let summary = ct
            .dump(Family::All, |e| {
                seen += 1;
                ports.insert(e.orig.sport);
            })
            .unwrap();
        assert_eq!(seen, u32::from(n));
        assert_eq!(ports.len(), usize::from(n), "no entry twice");
        assert!(
            summary.datagrams > 1,
            "a large table spans several datagrams"
        );
    })
    .unwrap();
}

/// Without a kernel: what `insert` emits parses back, through the crate, into the same entry
/// (tuples, NAT reply, TCP state, status with CONFIRMED forced on, mark, zone).
#[test]
fn new_entry_round_trips_through_the_wire_format() {
    use netlink_packet_core::Emitable;
    let orig = tuple("2001:db8::1", 1234, "2001:db8::2", 5432);
    let mut e = NewEntry::tcp_established(orig, 77);
    e.reply = Some(tuple("2001:db8::2", 5432, "2001:db8::99", 4321));
    e.mark = 9;
    e.zone = 3;
    let attrs = e.attributes();
    let mut bytes = vec![0u8; attrs.as_slice().buffer_len()];
    attrs.as_slice().emit(&mut bytes);
    let parsed: Vec<ConntrackAttribute> = netlink_packet_core::NlasIterator::new(&bytes[..])
        .map(|nla| {
            use netlink_packet_core::Parseable;
            ConntrackAttribute::parse(&nla.unwrap()).unwrap()
        })
        .collect();
    let back = entry::decode_entry(10, &parsed).unwrap();
    assert_eq!(back.orig, orig);
    assert_eq!(back.reply.dst_endpoint(), "[2001:db8::99]:4321");
    assert_eq!(
        (back.proto, back.timeout_s, back.mark, back.zone),
        (6, 77, 9, 3)
    );
    assert_eq!(back.tcp_state, Some(CtTcpState::ESTABLISHED));
    assert_eq!(
        back.status_names(),
        vec!["SEEN_REPLY", "ASSURED", "CONFIRMED"]
    );
    // A truncated buffer is an error, never a panic.
    let cut = &bytes[..bytes.len() / 2];
    let res: Result<Vec<_>, _> = netlink_packet_core::NlasIterator::new(cut)
        .map(|nla| {
            use netlink_packet_core::Parseable;
            nla.and_then(|n| ConntrackAttribute::parse(&n))
        })
        .collect();
    assert!(res.is_err() || entry::decode_entry(10, &res.unwrap()).is_err());
}
