//! One conntrack entry as idlereset uses it, decoded from a ctnetlink `IPCTNL_MSG_CT_NEW` message.
//!
//! The typed attributes (tuples, protoinfo, status, timeout, mark) come from
//! `netlink-packet-netfilter`; what that crate does not model (counters, zone, id, use count,
//! timestamp) arrives as `ConntrackAttribute::Other(DefaultNla)` and is decoded here from the
//! raw attribute bytes, big-endian as ctnetlink sends them.

use std::net::IpAddr;

use netlink_packet_core::{DefaultNla, Nla, NlasIterator};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Tuple as NlTuple,
};
use serde::Serialize;

// Attribute numbers of `enum ctattr_type` (uapi/linux/netfilter/nfnetlink_conntrack.h) that
// the crate leaves as `Other`.
pub(crate) const CTA_COUNTERS_ORIG: u16 = 9;
pub(crate) const CTA_COUNTERS_REPLY: u16 = 10;
pub(crate) const CTA_USE: u16 = 11;
pub(crate) const CTA_ID: u16 = 12;
pub(crate) const CTA_ZONE: u16 = 18;
pub(crate) const CTA_TIMESTAMP: u16 = 20;

const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_COUNTERS32_PACKETS: u16 = 3;
const CTA_COUNTERS32_BYTES: u16 = 4;
const CTA_TIMESTAMP_START: u16 = 1;

/// One direction of a flow: addresses and (for TCP, UDP, SCTP, DCCP, UDP-Lite) ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port; `None` for protocols without ports.
    pub sport: Option<u16>,
    /// Destination port; `None` for protocols without ports.
    pub dport: Option<u16>,
}

impl Tuple {
    /// Finish decoding a tuple: both addresses are required, ports and protocol optional.
    pub(crate) fn assemble(
        src: Option<IpAddr>,
        dst: Option<IpAddr>,
        sport: Option<u16>,
        dport: Option<u16>,
        proto: Option<u8>,
        what: &str,
    ) -> Result<(Tuple, Option<u8>), String> {
        match (src, dst) {
            (Some(src), Some(dst)) => Ok((
                Tuple {
                    src,
                    dst,
                    sport,
                    dport,
                },
                proto,
            )),
            _ => Err(format!(
                "{what} tuple without source or destination address"
            )),
        }
    }

    /// The tuple of the other direction when no NAT rewrites it.
    pub fn inverse(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// `addr:port` of the source (`[v6]:port`; the bare address when there is no port).
    pub fn src_endpoint(&self) -> String {
        endpoint(self.src, self.sport)
    }

    /// `addr:port` of the destination.
    pub fn dst_endpoint(&self) -> String {
        endpoint(self.dst, self.dport)
    }
}

/// `addr:port`, IPv6 as `[addr]:port`, the bare address without a port.
pub fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, None) => a.to_string(),
    }
}

/// Packet and byte counters of one direction (present only with `nf_conntrack_acct=1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// Conntrack's TCP state (`enum tcp_conntrack`), which is not the endpoint's socket state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtTcpState(pub u8);

impl CtTcpState {
    /// `TCP_CONNTRACK_ESTABLISHED`.
    pub const ESTABLISHED: CtTcpState = CtTcpState(3);
    /// `TCP_CONNTRACK_TIME_WAIT`.
    pub const TIME_WAIT: CtTcpState = CtTcpState(7);
    const NAMES: [&'static str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];

    /// The name `conntrack -L` prints (`ESTABLISHED`, `TIME_WAIT`, ...); `UNKNOWN` beyond the table.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("UNKNOWN")
    }

    /// Parse a state name, case-insensitively.
    pub fn from_name(name: &str) -> Option<CtTcpState> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i).ok())
            .map(CtTcpState)
    }
}

/// `IPS_*` status bits (uapi nf_conntrack_common.h) with the names `conntrack -L` uses.
pub const STATUS_NAMES: [(u32, &str); 15] = [
    (1 << 0, "EXPECTED"),
    (1 << 1, "SEEN_REPLY"),
    (1 << 2, "ASSURED"),
    (1 << 3, "CONFIRMED"),
    (1 << 4, "SRC_NAT"),
    (1 << 5, "DST_NAT"),
    (1 << 6, "SEQ_ADJUST"),
    (1 << 7, "SRC_NAT_DONE"),
    (1 << 8, "DST_NAT_DONE"),
    (1 << 9, "DYING"),
    (1 << 10, "FIXED_TIMEOUT"),
    (1 << 11, "TEMPLATE"),
    (1 << 12, "UNTRACKED"),
    (1 << 13, "HELPER"),
    (1 << 14, "OFFLOAD"),
];

/// `IPS_SEEN_REPLY`: packets were seen in both directions.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`: the entry is not early-dropped when the table is full.
pub const IPS_ASSURED: u32 = 1 << 2;

/// Names of the bits set in a status word.
pub fn status_names(status: u32) -> Vec<&'static str> {
    STATUS_NAMES
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackEntry {
    /// L3 family (`AF_INET` 2 or `AF_INET6` 10).
    pub family: u8,
    /// L4 protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub proto: u8,
    /// Conntrack TCP state; `None` for other protocols.
    pub tcp_state: Option<CtTcpState>,
    /// The original direction, as the first packet was seen.
    pub orig: Tuple,
    /// The reply direction; differs from `orig.inverse()` under NAT.
    pub reply: Tuple,
    /// Seconds until the entry expires unless a packet refreshes it.
    pub timeout_s: u32,
    /// Original-direction counters; `None` without `nf_conntrack_acct=1`.
    pub orig_counters: Option<Counters>,
    /// Reply-direction counters; `None` without `nf_conntrack_acct=1`.
    pub reply_counters: Option<Counters>,
    /// Connection mark (`ct mark`).
    pub mark: u32,
    /// Conntrack zone.
    pub zone: u16,
    /// `IPS_*` status bits ([`status_names`] names them).
    pub status: u32,
    /// Kernel id of the entry (stable while it lives).
    pub id: u32,
    /// Reference count of the entry.
    pub use_count: u32,
    /// Creation time (ns, CLOCK_REALTIME) when `nf_conntrack_timestamp=1`.
    pub start_ns: Option<u64>,
}

impl ConntrackEntry {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, ... or the number.
    pub fn proto_name(&self) -> String {
        proto_name(self.proto)
    }

    /// Status bit names (`ASSURED`, `SEEN_REPLY`, ...).
    pub fn status_names(&self) -> Vec<&'static str> {
        status_names(self.status)
    }

    /// True when the reply tuple is not the inverse of the original one (SNAT or DNAT).
    pub fn is_natted(&self) -> bool {
        self.reply != self.orig.inverse()
    }

    /// Packets of both directions, `None` without accounting.
    pub fn packets(&self) -> Option<u64> {
        sum(self.orig_counters, self.reply_counters, |c| c.packets)
    }

    /// Bytes of both directions, `None` without accounting.
    pub fn bytes(&self) -> Option<u64> {
        sum(self.orig_counters, self.reply_counters, |c| c.bytes)
    }
}

fn sum(a: Option<Counters>, b: Option<Counters>, f: fn(Counters) -> u64) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.map_or(0, f).saturating_add(b.map_or(0, f))),
    }
}

/// Protocol name of an IP protocol number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        47 => "gre".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// Raw value bytes of an attribute the crate left as `DefaultNla`.
pub(crate) fn nla_value(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0u8; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

pub(crate) fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Decode the nested `CTA_COUNTERS_*` attribute.
fn decode_counters(value: &[u8]) -> Result<Counters, String> {
    let mut c = Counters::default();
    for nla in NlasIterator::new(value) {
        let nla = nla.map_err(|e| format!("counters: {e}"))?;
        let v = nla.value();
        match nla.kind() {
            CTA_COUNTERS_PACKETS => c.packets = be_u64(v).ok_or("counters: short packets")?,
            CTA_COUNTERS_BYTES => c.bytes = be_u64(v).ok_or("counters: short bytes")?,
            CTA_COUNTERS32_PACKETS => {
                c.packets = be_u32(v).ok_or("counters: short packets32")?.into()
            }
            CTA_COUNTERS32_BYTES => c.bytes = be_u32(v).ok_or("counters: short bytes32")?.into(),
            _ => {}
        }
    }
    Ok(c)
}

fn decode_tuple(parts: &[NlTuple], what: &str) -> Result<(Tuple, Option<u8>), String> {
    let (mut src, mut dst, mut sport, mut dport, mut proto) = (None, None, None, None, None);
    for part in parts {
        match part {
            NlTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            NlTuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(pr) => proto = Some(u8::from(*pr)),
                        ProtoTuple::SourcePort(x) => sport = Some(*x),
                        ProtoTuple::DestinationPort(x) => dport = Some(*x),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Tuple::assemble(src, dst, sport, dport, proto, what)
}

/// Build an entry from the attributes of one ctnetlink message of L3 `family`. Dumps use the
/// allocation-free `fast::decode_message`; this typed decoder is its reference in tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn decode_entry(
    family: u8,
    attrs: &[ConntrackAttribute],
) -> Result<ConntrackEntry, String> {
    let mut orig = None;
    let mut reply = None;
    let mut proto = None;
    let mut e = ConntrackEntry {
        family,
        proto: 0,
        tcp_state: None,
        orig: Tuple {
            src: IpAddr::from([0, 0, 0, 0]),
            dst: IpAddr::from([0, 0, 0, 0]),
            sport: None,
            dport: None,
        },
        reply: Tuple {
            src: IpAddr::from([0, 0, 0, 0]),
            dst: IpAddr::from([0, 0, 0, 0]),
            sport: None,
            dport: None,
        },
        timeout_s: 0,
        orig_counters: None,
        reply_counters: None,
        mark: 0,
        zone: 0,
        status: 0,
        id: 0,
        use_count: 0,
        start_ns: None,
    };
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(t) => {
                let (tuple, p) = decode_tuple(t, "original")?;
                orig = Some(tuple);
                proto = proto.or(p);
            }
            ConntrackAttribute::CtaTupleReply(t) => {
                let (tuple, p) = decode_tuple(t, "reply")?;
                reply = Some(tuple);
                proto = proto.or(p);
            }
            ConntrackAttribute::CtaProtoInfo(infos) => {
                for info in infos {
                    if let ProtoInfo::TCP(tcp) = info {
                        for t in tcp {
                            if let ProtoInfoTCP::State(s) = t {
                                e.tcp_state = Some(CtTcpState(*s));
                            }
                        }
                    }
                }
            }
            ConntrackAttribute::CtaStatus(s) => e.status = s.bits(),
            ConntrackAttribute::CtaTimeout(t) => e.timeout_s = *t,
            ConntrackAttribute::CtaMark(m) => e.mark = *m,
            ConntrackAttribute::Other(nla) => {
                let v = nla_value(nla);
                match nla.kind() & 0x3fff {
                    CTA_COUNTERS_ORIG => e.orig_counters = Some(decode_counters(&v)?),
                    CTA_COUNTERS_REPLY => e.reply_counters = Some(decode_counters(&v)?),
                    CTA_ZONE => e.zone = be_u16(&v).ok_or("short CTA_ZONE")?,
                    CTA_ID => e.id = be_u32(&v).ok_or("short CTA_ID")?,
                    CTA_USE => e.use_count = be_u32(&v).ok_or("short CTA_USE")?,
                    CTA_TIMESTAMP => {
                        for nla in NlasIterator::new(&v[..]) {
                            let nla = nla.map_err(|e| format!("timestamp: {e}"))?;
                            if nla.kind() == CTA_TIMESTAMP_START {
                                e.start_ns = be_u64(nla.value());
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    e.orig = orig.ok_or("entry without CTA_TUPLE_ORIG")?;
    e.reply = reply.ok_or("entry without CTA_TUPLE_REPLY")?;
    e.proto = proto.ok_or("entry without L4 protocol number")?;
    if e.proto != 6 {
        e.tcp_state = None;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_names_round_trip() {
        assert_eq!(CtTcpState(3).name(), "ESTABLISHED");
        assert_eq!(CtTcpState(7).name(), "TIME_WAIT");
        assert_eq!(CtTcpState(42).name(), "UNKNOWN");
        assert_eq!(
            CtTcpState::from_name("time_wait"),
            Some(CtTcpState::TIME_WAIT)
        );
        assert_eq!(CtTcpState::from_name("nope"), None);
    }

    #[test]
    fn status_bits_to_names() {
        assert_eq!(
            status_names(0b1110),
            vec!["SEEN_REPLY", "ASSURED", "CONFIRMED"]
        );
        assert!(status_names(0).is_empty());
    }

    #[test]
    fn endpoints_bracket_v6() {
        assert_eq!(
            endpoint("198.18.0.1".parse().unwrap(), Some(5432)),
            "198.18.0.1:5432"
        );
        assert_eq!(
            endpoint("2001:db8::1".parse().unwrap(), Some(80)),
            "[2001:db8::1]:80"
        );
        assert_eq!(
            endpoint("2001:db8::1".parse().unwrap(), None),
            "2001:db8::1"
        );
    }

    #[test]
    fn counters_64_and_32_bit() {
        // CTA_COUNTERS_PACKETS (u64 BE 7), CTA_COUNTERS_BYTES (u64 BE 0x1_0000_0001)
        let bytes64: Vec<u8> = [
            &[12, 0, 1, 0][..],
            &7u64.to_be_bytes(),
            &[12, 0, 2, 0],
            &0x1_0000_0001u64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(
            decode_counters(&bytes64).unwrap(),
            Counters {
                packets: 7,
                bytes: 0x1_0000_0001
            }
        );
        // CTA_COUNTERS32_PACKETS 3, CTA_COUNTERS32_BYTES 180
        let bytes32: Vec<u8> = [
            &[8, 0, 3, 0][..],
            &3u32.to_be_bytes(),
            &[8, 0, 4, 0],
            &180u32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(
            decode_counters(&bytes32).unwrap(),
            Counters {
                packets: 3,
                bytes: 180
            }
        );
        // A truncated packets attribute is an error, not a panic.
        let short: Vec<u8> = [&[8, 0, 1, 0][..], &[0, 0, 0, 1]].concat();
        assert!(decode_counters(&short).is_err());
    }

    #[test]
    fn entry_without_tuples_is_an_error() {
        let err = decode_entry(2, &[ConntrackAttribute::CtaTimeout(30)]).unwrap_err();
        assert!(err.contains("CTA_TUPLE_ORIG"), "{err}");
    }

    #[test]
    fn packets_sum_directions_only_with_accounting() {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: Some(1),
            dport: Some(2),
        };
        let mut e = decode_entry(
            2,
            &[
                ConntrackAttribute::CtaTupleOrig(vec![
                    NlTuple::Ip(vec![
                        IPTuple::SourceAddress(t.src),
                        IPTuple::DestinationAddress(t.dst),
                    ]),
                    NlTuple::Proto(vec![
                        ProtoTuple::Protocol(6.into()),
                        ProtoTuple::SourcePort(1),
                        ProtoTuple::DestinationPort(2),
                    ]),
                ]),
                ConntrackAttribute::CtaTupleReply(vec![
                    NlTuple::Ip(vec![
                        IPTuple::SourceAddress(t.dst),
                        IPTuple::DestinationAddress("198.18.0.9".parse().unwrap()),
                    ]),
                    NlTuple::Proto(vec![
                        ProtoTuple::Protocol(6.into()),
                        ProtoTuple::SourcePort(2),
                        ProtoTuple::DestinationPort(1),
                    ]),
                ]),
            ],
        )
        .unwrap();
        assert_eq!(e.orig, t);
        assert!(
            e.is_natted(),
            "reply goes to 198.18.0.9, not back to the source"
        );
        assert_eq!(e.packets(), None);
        e.orig_counters = Some(Counters {
            packets: 2,
            bytes: 100,
        });
        e.reply_counters = Some(Counters {
            packets: 3,
            bytes: 50,
        });
        assert_eq!((e.packets(), e.bytes()), (Some(5), Some(150)));
    }
}
