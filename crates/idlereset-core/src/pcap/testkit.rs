//! Test support: hand-built TCP conversations written as pcap / pcapng with any link type.
//!
//! IP and TCP headers are serialised by `etherparse` (an independent implementation), link
//! headers and pcapng blocks by hand following the specs, and classic pcap by our
//! [`PcapWriter`]. Each scenario test describes a conversation the way a capture would show it.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{IpHeaders, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder};

use super::packet::{ACK, FIN, PSH, RST, SYN};
use super::writer::{
    LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, PcapWriter,
};

pub const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
pub const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 20));
pub const V6_A: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 10));
pub const V6_B: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 20));

/// One hand-built TCP/IP packet.
#[derive(Debug, Clone)]
pub struct Pkt {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    ttl: u8,
    id: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: usize,
}

impl Pkt {
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Pkt {
        Pkt {
            src,
            sport,
            dst,
            dport,
            ttl: 64,
            id: 0,
            seq: 0,
            ack: 0,
            flags: ACK,
            payload: 0,
        }
    }
    pub fn ttl(mut self, ttl: u8) -> Pkt {
        self.ttl = ttl;
        self
    }
    pub fn id(mut self, id: u16) -> Pkt {
        self.id = id;
        self
    }
    pub fn seq(mut self, seq: u32) -> Pkt {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Pkt {
        self.ack = ack;
        self
    }
    pub fn flags(mut self, flags: u8) -> Pkt {
        self.flags = flags;
        self
    }
    pub fn payload(mut self, n: usize) -> Pkt {
        self.payload = n;
        self
    }

    /// The raw IP packet.
    pub fn ip(&self) -> Vec<u8> {
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h =
                    Ipv4Header::new(0, self.ttl, IpNumber::TCP, s.octets(), d.octets()).unwrap();
                h.identification = self.id;
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: IpNumber::TCP,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                },
                Default::default(),
            ),
            _ => panic!("mixed address families"),
        };
        let mut b = PacketBuilder::ip(ip).tcp(self.sport, self.dport, self.seq, 64000);
        if self.flags & ACK != 0 {
            b = b.ack(self.ack);
        }
        if self.flags & SYN != 0 {
            b = b.syn();
        }
        if self.flags & FIN != 0 {
            b = b.fin();
        }
        if self.flags & RST != 0 {
            b = b.rst();
        }
        if self.flags & PSH != 0 {
            b = b.psh();
        }
        let payload = vec![0x61u8; self.payload];
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, &payload).unwrap();
        out
    }
}

/// One endpoint of a conversation: address, port, next sequence number, TTL at the capture
/// point and IP ID counter.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub addr: IpAddr,
    pub port: u16,
    pub seq: u32,
    pub ttl: u8,
    pub id: u16,
}

/// A TCP conversation between a client and a server, as seen at the capture point.
#[derive(Debug, Clone)]
pub struct Conv {
    pub c: End,
    pub s: End,
    pub t: f64,
    pub pkts: Vec<(f64, Vec<u8>)>,
}

impl Conv {
    /// Client at `c:41000` (TTL 64 at the capture point), server at `s:5432` (TTL 63: one
    /// router between the server and the capture point). Starts at t = 1_700_000_000 s.
    pub fn new(c: IpAddr, s: IpAddr) -> Conv {
        Conv {
            c: End {
                addr: c,
                port: 41000,
                seq: 1_000,
                ttl: 64,
                id: 100,
            },
            s: End {
                addr: s,
                port: 5432,
                seq: 900_000,
                ttl: 63,
                id: 5_000,
            },
            t: 1_700_000_000.0,
            pkts: Vec::new(),
        }
    }

    pub fn wait(&mut self, secs: f64) -> &mut Self {
        self.t += secs;
        self
    }

    pub fn raw(&mut self, p: &Pkt) -> &mut Self {
        self.pkts.push((self.t, p.ip()));
        self.t += 0.001;
        self
    }

    fn send(
        &mut self,
        from_client: bool,
        flags: u8,
        len: u32,
        seq_override: Option<u32>,
    ) -> &mut Self {
        let (me, peer) = if from_client {
            (self.c, self.s)
        } else {
            (self.s, self.c)
        };
        let seq = seq_override.unwrap_or(me.seq);
        let p = Pkt::new(me.addr, me.port, peer.addr, peer.port)
            .ttl(me.ttl)
            .id(me.id)
            .seq(seq)
            .ack(peer.seq)
            .flags(flags)
            .payload(len as usize);
        let used = len + u32::from(flags & (SYN | FIN) != 0);
        let me_mut = if from_client {
            &mut self.c
        } else {
            &mut self.s
        };
        me_mut.id = me_mut.id.wrapping_add(1);
        if seq_override.is_none() {
            me_mut.seq = me_mut.seq.wrapping_add(used);
        }
        self.raw(&p)
    }

    pub fn handshake(&mut self) -> &mut Self {
        self.send(true, SYN, 0, None);
        self.send(false, SYN | ACK, 0, None);
        self.send(true, ACK, 0, None)
    }
    /// Client sends `n` bytes, server acknowledges.
    pub fn c_data(&mut self, n: u32) -> &mut Self {
        self.send(true, ACK | PSH, n, None)
    }
    pub fn s_data(&mut self, n: u32) -> &mut Self {
        self.send(false, ACK | PSH, n, None)
    }
    pub fn c_ack(&mut self) -> &mut Self {
        self.send(true, ACK, 0, None)
    }
    pub fn s_ack(&mut self) -> &mut Self {
        self.send(false, ACK, 0, None)
    }
    /// A request / response exchange.
    pub fn exchange(&mut self) -> &mut Self {
        self.c_data(100).s_data(300).c_ack()
    }
    /// Client retransmits its last `n` bytes.
    pub fn c_retransmit(&mut self, n: u32) -> &mut Self {
        let seq = self.c.seq.wrapping_sub(n);
        self.send(true, ACK | PSH, n, Some(seq))
    }
    /// A keepalive probe from the client (seq = snd_nxt - 1, no payload).
    pub fn c_probe(&mut self) -> &mut Self {
        let seq = self.c.seq.wrapping_sub(1);
        self.send(true, ACK, 0, Some(seq))
    }
    pub fn c_fin(&mut self) -> &mut Self {
        self.send(true, FIN | ACK, 0, None)
    }
    pub fn s_fin(&mut self) -> &mut Self {
        self.send(false, FIN | ACK, 0, None)
    }
    pub fn c_rst(&mut self) -> &mut Self {
        self.send(true, RST, 0, None)
    }
    /// A RST from the real server (its own TTL and ID sequence).
    pub fn s_rst(&mut self) -> &mut Self {
        self.send(false, RST | ACK, 0, None)
    }
    /// A RST carrying the server's address, forged with this TTL and IP ID.
    pub fn forged_rst_from_server(&mut self, ttl: u8, id: u16) -> &mut Self {
        let p = Pkt::new(self.s.addr, self.s.port, self.c.addr, self.c.port)
            .ttl(ttl)
            .id(id)
            .seq(self.s.seq)
            .ack(self.c.seq)
            .flags(RST | ACK);
        self.raw(&p)
    }

    /// Classic pcap with this link type (Ethernet, SLL, SLL2 or raw).
    pub fn pcap(&self, linktype: u32, nanos: bool) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), linktype, 65535, nanos).unwrap();
        for (t, ip) in &self.pkts {
            let frame = frame(linktype, ip);
            w.write_packet(Duration::from_secs_f64(*t), &frame, frame.len() as u32)
                .unwrap();
        }
        w.into_inner()
    }

    /// pcapng (little endian, nanosecond `if_tsresol`) with this link type.
    pub fn pcapng(&self, linktype: u32) -> Vec<u8> {
        let mut out = Vec::new();
        // Section header: BOM, version 1.0, section length -1.
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        push_block(&mut out, 0x0a0d_0d0a, &shb);
        // A custom block we must skip.
        push_block(&mut out, 0x0000_0bad, &[1, 2, 3, 4]);
        let mut idb = Vec::new();
        idb.extend_from_slice(&(linktype as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
        push_block(&mut out, 1, &idb);
        for (t, ip) in &self.pkts {
            let frame = frame(linktype, ip);
            let ns = (t * 1e9).round() as u64;
            let mut epb = Vec::new();
            epb.extend_from_slice(&0u32.to_le_bytes());
            epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ns as u32).to_le_bytes());
            epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            epb.extend_from_slice(&frame);
            while epb.len() % 4 != 0 {
                epb.push(0);
            }
            push_block(&mut out, 6, &epb);
        }
        out
    }
}

fn push_block(out: &mut Vec<u8>, btype: u32, body: &[u8]) {
    let len = (12 + body.len()) as u32;
    out.extend_from_slice(&btype.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Wrap an IP packet in a link-layer header.
pub fn frame(linktype: u32, ip: &[u8]) -> Vec<u8> {
    let ethertype: [u8; 2] = if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    };
    let mut f = Vec::with_capacity(ip.len() + 24);
    match linktype {
        LINKTYPE_ETHERNET => {
            f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
            // One 802.1Q tag (VLAN 42) to exercise tag skipping.
            f.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
            f.extend_from_slice(&ethertype);
        }
        LINKTYPE_LINUX_SLL => {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&ethertype);
        }
        LINKTYPE_LINUX_SLL2 => {
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        LINKTYPE_RAW => {}
        other => panic!("testkit cannot frame link type {other}"),
    }
    f.extend_from_slice(ip);
    f
}

/// Lab captures (written by `lab capture` from real kernel traffic, Ethernet, nanoseconds)
/// with one idle event each, merged into one capture in time order.
pub fn lab_capture() -> Vec<u8> {
    merge(&[
        include_bytes!("../../tests/fixtures/lab/drop.pcap"),
        include_bytes!("../../tests/fixtures/lab/keepalive-alive.pcap"),
        include_bytes!("../../tests/fixtures/lab/reset-v4.pcap"),
        include_bytes!("../../tests/fixtures/lab/reset-v6.pcap"),
        include_bytes!("../../tests/fixtures/lab/router-hop.pcap"),
        include_bytes!("../../tests/fixtures/lab/server-idle-close.pcap"),
    ])
}

/// Classic pcap files of Ethernet frames merged into one (nanoseconds) in time order.
pub fn merge(files: &[&[u8]]) -> Vec<u8> {
    let mut recs: Vec<(u64, Vec<u8>, u32)> = files
        .iter()
        .flat_map(|f| super::reader::Records::new(f).map(|r| r.unwrap()))
        .map(|r| (r.ts_ns, r.data.to_vec(), r.orig_len))
        .collect();
    recs.sort_by_key(|r| r.0);
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 262_144, true).unwrap();
    for (ts, data, orig) in &recs {
        w.write_packet(Duration::from_nanos(*ts), data, *orig)
            .unwrap();
    }
    w.into_inner()
}

/// IPv4 and IPv6 flows interleaved packet by packet, with idle resets on both families,
/// so IPv6 keys and prefetched flows cross batch boundaries.
pub fn mixed_capture() -> Vec<u8> {
    let mut c = Conv::new(V4_A, V4_B);
    c.handshake();
    let mut v6 = Conv::new(V6_A, V6_B);
    v6.handshake();
    for _ in 0..20 {
        c.exchange();
        v6.exchange();
    }
    c.wait(30.0).c_data(10).forged_rst_from_server(50, 0);
    v6.wait(31.0).c_data(10).forged_rst_from_server(50, 0);
    merge(&[
        &c.pcap(LINKTYPE_ETHERNET, true),
        &v6.pcap(LINKTYPE_ETHERNET, true),
    ])
}

/// A short capture with an idle reset (pcapng or classic pcap), with bytes overwritten at
/// `flips` (positions taken modulo its length) and cut at `cut` (modulo its length + 1).
pub fn mutated_capture(flips: &[(usize, u8)], cut: usize, ng: bool) -> Vec<u8> {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .exchange()
        .wait(900.0)
        .c_data(10)
        .forged_rst_from_server(64, 0);
    let mut data = if ng {
        conv.pcapng(LINKTYPE_ETHERNET)
    } else {
        conv.pcap(LINKTYPE_ETHERNET, false)
    };
    for &(at, byte) in flips {
        let i = at % data.len();
        data[i] = byte;
    }
    data.truncate(cut % (data.len() + 1));
    data
}
