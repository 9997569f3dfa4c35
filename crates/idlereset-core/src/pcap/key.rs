//! What the flow tracker reads of a packet: its flow key and a few header fields.
//!
//! [`Seg::of`] turns a parsed [`TcpSegment`] into the canonical flow [`Key`] (lower endpoint
//! first), the sender's side in it and the fields the tracker needs, nothing else; for the
//! common packet [`PlainV4`] reads the same fields in one step. Both are stateless, so the
//! reading thread does this (see [`super::pipeline`]) and packs the result (see `wire`); the
//! tracking thread unpacks the exact [`Seg`] and only looks the flow up (callgrind on a 150 MB
//! capture from `examples/gen_capture`, with events boxed (see `flow`): keying on the reading
//! thread cut the tracker's instructions 15 %, 374 M to 320 M).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::packet::TcpSegment;

/// One endpoint, compact: IPv4 addresses are widened to 128 bits (two words, so the key is
/// 48 bytes, not 64 with u128 alignment); `v6` keeps the families distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    hi: u64,
    lo: u64,
    pub(crate) port: u16,
    v6: bool,
}

impl Endpoint {
    #[inline]
    fn new(ip: IpAddr, port: u16) -> Endpoint {
        match ip {
            IpAddr::V4(a) => Endpoint {
                hi: 0,
                lo: u64::from(a.to_bits()),
                port,
                v6: false,
            },
            IpAddr::V6(a) => {
                let bits = a.to_bits();
                Endpoint {
                    hi: (bits >> 64) as u64,
                    lo: bits as u64,
                    port,
                    v6: true,
                }
            }
        }
    }

    fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                u128::from(self.hi) << 64 | u128::from(self.lo),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(self.lo as u32))
        }
    }
}

/// Canonical flow key: the lower endpoint first. Plain integers rather than `IpAddr` tuples:
/// comparing and hashing the key is on the per-packet path (measured: about a third faster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) ends: [Endpoint; 2],
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let [a, b] = self.ends;
        h.write_u64(a.lo);
        h.write_u64(a.hi);
        h.write_u64(b.lo);
        h.write_u64(b.hi);
        h.write_u64(u64::from(a.port) | u64::from(b.port) << 16 | u64::from(a.v6) << 32);
    }
}

impl Key {
    /// The key and the index (0 or 1) of the sender in it.
    #[inline]
    pub(crate) fn of(seg: &TcpSegment) -> (Key, usize) {
        let a = Endpoint::new(seg.src, seg.sport);
        let b = Endpoint::new(seg.dst, seg.dport);
        if a <= b {
            (Key { ends: [a, b] }, 0)
        } else {
            (Key { ends: [b, a] }, 1)
        }
    }

    /// The key of an IPv4 flow whose ends are already in canonical order: (`a`, `pa`) is not
    /// above (`b`, `pb`). The inverse of [`Key::as_v4`].
    #[inline(always)]
    pub(crate) fn v4(a: u32, pa: u16, b: u32, pb: u16) -> Key {
        let end = |addr: u32, port: u16| Endpoint {
            hi: 0,
            lo: u64::from(addr),
            port,
            v6: false,
        };
        Key {
            ends: [end(a, pa), end(b, pb)],
        }
    }

    /// An IPv4 key's addresses and ports, side 0 first: `(a, pa, b, pb)`; `None` for IPv6.
    #[inline(always)]
    pub(crate) fn as_v4(&self) -> Option<(u32, u16, u32, u16)> {
        let [a, b] = self.ends;
        (!a.v6).then_some((a.lo as u32, a.port, b.lo as u32, b.port))
    }

    /// `addr:port` of side 0 or 1.
    pub(crate) fn addr(&self, side: usize) -> String {
        let e = self.ends[side];
        SocketAddr::new(e.ip(), e.port).to_string()
    }
}

/// A TCP segment as the flow tracker sees it: keyed, without addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    /// The flow.
    pub key: Key,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// TCP payload bytes.
    pub payload_len: u32,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// TCP flags byte.
    pub flags: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The sender's side in `key` (0 or 1).
    pub sender: u8,
}

impl Seg {
    /// The keyed form of `seg`.
    #[inline]
    pub(crate) fn of(seg: &TcpSegment) -> Seg {
        let (key, sender) = Key::of(seg);
        Seg {
            key,
            seq: seg.seq,
            ack: seg.ack,
            payload_len: seg.payload_len,
            ip_id: seg.ip_id,
            flags: seg.flags,
            ttl: seg.ttl,
            sender: sender as u8,
        }
    }

    /// Whether the flag bit (or any of the bits) `flag` is set.
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The sender's side in the key.
    pub(crate) fn side(&self) -> usize {
        usize::from(self.sender & 1)
    }
}

/// The common packet's fields, read in one step: IPv4 without options, the two ends already
/// in canonical order. [`PlainV4::seg`] widens it into a [`Seg`]; the reading thread packs
/// it into a batch as it is (see `wire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlainV4 {
    /// Side 0's address (the lower endpoint).
    pub a: u32,
    /// Side 0's port.
    pub pa: u16,
    /// Side 1's address.
    pub b: u32,
    /// Side 1's port.
    pub pb: u16,
    /// The sender's side (0 or 1).
    pub sender: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// TCP payload bytes.
    pub payload_len: u32,
    /// IPv4 identification.
    pub ip_id: u16,
    /// TCP flags byte.
    pub flags: u8,
    /// TTL.
    pub ttl: u8,
}

impl PlainV4 {
    /// The fields of `ip` when it is IPv4 without options whose first 34 bytes (the IP
    /// header and the TCP header's first 14) are present. For such a packet it is `None`
    /// exactly when the general parser's answer is; for any other packet it is `None` and
    /// the caller takes the general way. One fixed-size read instead of the general parser's
    /// address enums and bounds checks: this runs once per packet on the reading thread
    /// (callgrind on a 150 MB capture from `examples/gen_capture`: that thread's instructions
    /// fell from 176 M to 168 M).
    #[inline(always)]
    pub(crate) fn parse(ip: &[u8]) -> Option<PlainV4> {
        let h: &[u8; 34] = ip.first_chunk()?;
        let frag = u16::from_be_bytes([h[6], h[7]]);
        if h[0] != 0x45 || h[9] != 6 || frag & 0x1fff != 0 || h[32] < 0x50 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let total = if total == 0 { ip.len() } else { total };
        let l4_len = total.checked_sub(20)?;
        let doff = usize::from(h[32] >> 4) * 4;
        let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let sport = u16::from_be_bytes([h[20], h[21]]);
        let dport = u16::from_be_bytes([h[22], h[23]]);
        // Both IPv4: the order of `Endpoint` is the order of (address, port).
        let sender_first =
            (u64::from(src) << 16 | u64::from(sport)) <= (u64::from(dst) << 16 | u64::from(dport));
        let (a, pa, b, pb, sender) = if sender_first {
            (src, sport, dst, dport, 0)
        } else {
            (dst, dport, src, sport, 1)
        };
        Some(PlainV4 {
            a,
            pa,
            b,
            pb,
            sender,
            seq: u32::from_be_bytes([h[24], h[25], h[26], h[27]]),
            ack: u32::from_be_bytes([h[28], h[29], h[30], h[31]]),
            payload_len: u32::try_from(l4_len.saturating_sub(doff)).unwrap_or(u32::MAX),
            ip_id: u16::from_be_bytes([h[4], h[5]]),
            flags: h[33],
            ttl: h[8],
        })
    }

    /// The keyed segment: [`Seg::of`] of [`parse_tcp`](super::packet::parse_tcp) of the
    /// packet.
    #[inline(always)]
    pub(crate) fn seg(&self) -> Seg {
        Seg {
            key: Key::v4(self.a, self.pa, self.b, self.pb),
            seq: self.seq,
            ack: self.ack,
            payload_len: self.payload_len,
            ip_id: Some(self.ip_id),
            flags: self.flags,
            ttl: self.ttl,
            sender: self.sender,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::packet::parse_tcp;
    use crate::pcap::testkit::{Pkt, V4_A, V4_B, V6_A, V6_B};

    #[test]
    fn both_directions_share_one_key_and_name_their_sender() {
        let ab = Seg::of(&parse_tcp(&Pkt::new(V4_A, 40000, V4_B, 5432).ip()).unwrap());
        let ba = Seg::of(&parse_tcp(&Pkt::new(V4_B, 5432, V4_A, 40000).ip()).unwrap());
        assert_eq!(ab.key, ba.key);
        assert_ne!(ab.side(), ba.side());
        assert_eq!(ab.key.addr(ab.side()), format!("{V4_A}:40000"));
        assert_eq!(ba.key.addr(ba.side()), format!("{V4_B}:5432"));
    }

    #[test]
    fn families_and_ports_keep_keys_apart() {
        let v4 = Seg::of(&parse_tcp(&Pkt::new(V4_A, 1, V4_B, 2).ip()).unwrap());
        let v6 = Seg::of(&parse_tcp(&Pkt::new(V6_A, 1, V6_B, 2).ip()).unwrap());
        let other_port = Seg::of(&parse_tcp(&Pkt::new(V4_A, 1, V4_B, 3).ip()).unwrap());
        assert_ne!(v4.key, v6.key);
        assert_ne!(v4.key, other_port.key);
        assert_eq!(v6.ip_id, None);
        assert!(v4.ip_id.is_some());
    }

    /// The general way, which the plain-IPv4 fast path must agree with.
    fn general(ip: &[u8]) -> Option<Seg> {
        parse_tcp(ip).map(|s| Seg::of(&s))
    }

    /// For an IPv4 header without options and 34 bytes present the fast path answers, and
    /// answers exactly as the general parser; for anything else it declines.
    fn check_fast_path(ip: &[u8]) {
        let fast = PlainV4::parse(ip).map(|p| p.seg());
        if ip.len() >= 34 && ip[0] == 0x45 {
            assert_eq!(fast, general(ip), "packet {ip:02x?}");
        } else {
            assert_eq!(fast, None, "packet {ip:02x?}");
        }
    }

    #[test]
    fn plain_ipv4_fast_path_agrees_with_the_general_parser() {
        use crate::pcap::packet::{ACK, FIN, PSH, RST, SYN};
        let base = [
            Pkt::new(V4_A, 40000, V4_B, 5432).payload(100),
            Pkt::new(V4_B, 5432, V4_A, 40000).flags(ACK),
            Pkt::new(V4_A, 80, V4_B, 80).flags(SYN),
            Pkt::new(V4_B, 1, V4_A, 65535).flags(RST | ACK).ttl(1).id(0),
            Pkt::new(V4_A, 2, V4_A, 1)
                .flags(FIN | PSH | ACK)
                .seq(u32::MAX)
                .ack(7),
        ];
        for p in &base {
            let ip = p.ip();
            assert!(
                PlainV4::parse(&ip).is_some(),
                "a plain packet takes the fast path"
            );
            check_fast_path(&ip);
            // Every byte of the headers, a few values each: options, fragments, other
            // protocols, short data offsets, zero or short total lengths, other addresses.
            for at in 0..ip.len().min(40) {
                for v in [
                    0x00, 0x01, 0x06, 0x14, 0x20, 0x45, 0x46, 0x4f, 0x50, 0x60, 0xff,
                ] {
                    let mut m = ip.clone();
                    m[at] = v;
                    check_fast_path(&m);
                }
            }
            for len in 0..ip.len() {
                check_fast_path(&ip[..len]);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_ipv4_fast_path_agrees_on_any_bytes(
            mut ip in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            plain in proptest::bool::ANY,
        ) {
            if plain && !ip.is_empty() {
                ip[0] = 0x45;
            }
            check_fast_path(&ip);
        }
    }

    #[test]
    fn a_seg_stays_small() {
        // The tracker's look-ahead ring holds eight, unpacked; `wire` packs one into 40 bytes.
        assert!(std::mem::size_of::<Seg>() <= 72);
    }
}
