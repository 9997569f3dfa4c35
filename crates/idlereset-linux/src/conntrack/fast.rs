//! Allocation-free decoder of one ctnetlink `IPCTNL_MSG_CT_NEW` message, used by dumps.
//!
//! Hand-rolled on purpose: `netlink-packet-netfilter` builds a `Vec` of typed attributes (and
//! nested `Vec`s for tuples) for every entry, which made decoding a 1,000,000-entry dump cost
//! about as much again as the kernel's own work. This walks the attribute bytes once and
//! fills a [`ConntrackEntry`] directly; it produces exactly what [`super::entry::decode_entry`]
//! produces (a unit test compares both on the same messages), and returns an error naming the
//! attribute and its offset in the message on malformed input instead of panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::entry::{
    CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID, CTA_TIMESTAMP, CTA_USE, CTA_ZONE,
    ConntrackEntry, Counters, CtTcpState, Tuple,
};

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// Attributes of `buf`, which starts at byte `base` of the message: (kind, value, offset).
struct Nlas<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Nlas<'a> {
    fn new(buf: &'a [u8], base: usize) -> Nlas<'a> {
        Nlas { buf, pos: 0, base }
    }
}

impl<'a> Iterator for Nlas<'a> {
    type Item = Result<(u16, &'a [u8], usize), String>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        if rest.len() < 4 {
            return None; // trailing padding
        }
        let at = self.base + self.pos;
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            self.pos = self.buf.len();
            return Some(Err(format!(
                "attribute {kind} at offset {at}: length {len} with {} bytes left",
                rest.len()
            )));
        }
        self.pos += (len + 3) & !3;
        Some(Ok((kind, &rest[4..len], at + 4)))
    }
}

fn arr<const N: usize>(v: &[u8], what: &str, at: usize) -> Result<[u8; N], String> {
    v.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{what} at offset {at}: {} bytes, want {N}", v.len()))
}

fn be32(v: &[u8], what: &str, at: usize) -> Result<u32, String> {
    arr::<4>(v, what, at).map(u32::from_be_bytes)
}

fn be64(v: &[u8], what: &str, at: usize) -> Result<u64, String> {
    arr::<8>(v, what, at).map(u64::from_be_bytes)
}

fn tuple(v: &[u8], base: usize, what: &str) -> Result<(Tuple, Option<u8>), String> {
    let (mut src, mut dst, mut sport, mut dport, mut proto) = (None, None, None, None, None);
    for nla in Nlas::new(v, base) {
        let (kind, val, at) = nla?;
        match kind {
            CTA_TUPLE_IP => {
                for nla in Nlas::new(val, at) {
                    let (k, a, at) = nla?;
                    match k {
                        CTA_IP_V4_SRC => src = Some(IpAddr::V4(Ipv4Addr::from(arr(a, "v4", at)?))),
                        CTA_IP_V4_DST => dst = Some(IpAddr::V4(Ipv4Addr::from(arr(a, "v4", at)?))),
                        CTA_IP_V6_SRC => src = Some(IpAddr::V6(Ipv6Addr::from(arr(a, "v6", at)?))),
                        CTA_IP_V6_DST => dst = Some(IpAddr::V6(Ipv6Addr::from(arr(a, "v6", at)?))),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for nla in Nlas::new(val, at) {
                    let (k, p, at) = nla?;
                    match k {
                        CTA_PROTO_NUM => proto = Some(arr::<1>(p, "proto", at)?[0]),
                        CTA_PROTO_SRC_PORT => {
                            sport = Some(u16::from_be_bytes(arr(p, "port", at)?));
                        }
                        CTA_PROTO_DST_PORT => {
                            dport = Some(u16::from_be_bytes(arr(p, "port", at)?));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Tuple::assemble(src, dst, sport, dport, proto, what)
}

fn counters(v: &[u8], base: usize) -> Result<Counters, String> {
    let mut c = Counters::default();
    for nla in Nlas::new(v, base) {
        let (k, x, at) = nla?;
        match k {
            1 => c.packets = be64(x, "packets", at)?,
            2 => c.bytes = be64(x, "bytes", at)?,
            3 => c.packets = be32(x, "packets32", at)?.into(),
            4 => c.bytes = be32(x, "bytes32", at)?.into(),
            _ => {}
        }
    }
    Ok(c)
}

/// Decode one whole netlink message (header included) carrying a conntrack entry.
pub(crate) fn decode_message(msg: &[u8]) -> Result<ConntrackEntry, String> {
    let family = *msg
        .get(NLMSG_HDRLEN)
        .ok_or_else(|| format!("message of {} bytes has no nfgenmsg", msg.len()))?;
    let attrs = msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or_default();
    let unspecified = Tuple {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        sport: None,
        dport: None,
    };
    let mut e = ConntrackEntry {
        family,
        proto: 0,
        tcp_state: None,
        orig: unspecified,
        reply: unspecified,
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
    let (mut orig, mut reply, mut proto) = (false, false, None);
    for nla in Nlas::new(attrs, NLMSG_HDRLEN + NFGENMSG_LEN) {
        let (kind, v, at) = nla?;
        match kind {
            CTA_TUPLE_ORIG => {
                let (t, p) = tuple(v, at, "original")?;
                e.orig = t;
                orig = true;
                proto = proto.or(p);
            }
            CTA_TUPLE_REPLY => {
                let (t, p) = tuple(v, at, "reply")?;
                e.reply = t;
                reply = true;
                proto = proto.or(p);
            }
            CTA_STATUS => e.status = be32(v, "CTA_STATUS", at)?,
            CTA_TIMEOUT => e.timeout_s = be32(v, "CTA_TIMEOUT", at)?,
            CTA_MARK => e.mark = be32(v, "CTA_MARK", at)?,
            CTA_PROTOINFO => {
                for nla in Nlas::new(v, at) {
                    let (k, tcp, at) = nla?;
                    if k != CTA_PROTOINFO_TCP {
                        continue;
                    }
                    for nla in Nlas::new(tcp, at) {
                        let (k, s, at) = nla?;
                        if k == CTA_PROTOINFO_TCP_STATE {
                            e.tcp_state = Some(CtTcpState(arr::<1>(s, "tcp state", at)?[0]));
                        }
                    }
                }
            }
            CTA_COUNTERS_ORIG => e.orig_counters = Some(counters(v, at)?),
            CTA_COUNTERS_REPLY => e.reply_counters = Some(counters(v, at)?),
            CTA_ZONE => e.zone = u16::from_be_bytes(arr(v, "CTA_ZONE", at)?),
            CTA_ID => e.id = be32(v, "CTA_ID", at)?,
            CTA_USE => e.use_count = be32(v, "CTA_USE", at)?,
            CTA_TIMESTAMP => {
                for nla in Nlas::new(v, at) {
                    let (k, x, at) = nla?;
                    if k == 1 {
                        e.start_ns = Some(be64(x, "timestamp start", at)?);
                    }
                }
            }
            _ => {}
        }
    }
    if !orig {
        return Err("entry without CTA_TUPLE_ORIG".into());
    }
    if !reply {
        return Err("entry without CTA_TUPLE_REPLY".into());
    }
    e.proto = proto.ok_or("entry without L4 protocol number")?;
    if e.proto != 6 {
        e.tcp_state = None;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use netlink_packet_core::{DefaultNla, NetlinkMessage};
    use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};

    use super::super::{NewEntry, request};
    use super::*;

    fn message(attrs: Vec<ConntrackAttribute>, v6: bool) -> Vec<u8> {
        use netlink_packet_netfilter::NetfilterProtoFamily;
        let fam = if v6 {
            NetfilterProtoFamily::IPv6
        } else {
            NetfilterProtoFamily::IPv4
        };
        let mut msg: NetlinkMessage<_> = request(fam, 0, ConntrackMessage::New(attrs));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    fn counters_nla(kind: u16, packets: u64, bytes: u64) -> ConntrackAttribute {
        let mut v = Vec::new();
        for (k, x) in [(1u16, packets), (2u16, bytes)] {
            v.extend_from_slice(&12u16.to_ne_bytes());
            v.extend_from_slice(&k.to_ne_bytes());
            v.extend_from_slice(&x.to_be_bytes());
        }
        ConntrackAttribute::Other(DefaultNla::new(kind | 0x8000, v))
    }

    fn slow(buf: &[u8]) -> ConntrackEntry {
        let msg = crate::nldump::RawMsg {
            msg_type: 0,
            bytes: buf,
            offset: 0,
        };
        let (hdr, ct) = super::super::parse("test", &msg).unwrap();
        let ConntrackMessage::New(attrs) = ct else {
            panic!("not NEW")
        };
        super::super::entry::decode_entry(u8::from(hdr.family), &attrs).unwrap()
    }

    #[test]
    fn matches_the_typed_decoder() {
        let t = |s: &str, d: &str| Tuple {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            sport: Some(40000),
            dport: Some(5432),
        };
        let mut tcp = NewEntry::tcp_established(t("198.18.1.10", "198.18.2.10"), 900);
        tcp.mark = 7;
        tcp.zone = 3;
        tcp.reply = Some(Tuple {
            dst: "198.18.2.1".parse().unwrap(),
            ..t("198.18.1.10", "198.18.2.10").inverse()
        });
        let mut attrs = tcp.attributes();
        attrs.push(counters_nla(CTA_COUNTERS_ORIG, 5, 300));
        attrs.push(counters_nla(CTA_COUNTERS_REPLY, 4, 9000));
        attrs.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ID,
            77u32.to_be_bytes().to_vec(),
        )));
        let buf = message(attrs, false);
        let fast = decode_message(&buf).unwrap();
        assert_eq!(fast, slow(&buf));
        assert_eq!(fast.packets(), Some(9));
        assert_eq!(fast.id, 77);
        assert_eq!(fast.tcp_state, Some(CtTcpState::ESTABLISHED));
        let mut udp = NewEntry::tcp_established(t("2001:db8:1::10", "2001:db8:2::10"), 30);
        udp.proto = 17;
        let buf = message(udp.attributes(), true);
        let fast = decode_message(&buf).unwrap();
        assert_eq!(fast, slow(&buf));
        assert_eq!((fast.family, fast.proto, fast.tcp_state), (10, 17, None));
    }

    #[test]
    fn malformed_input_is_an_error_with_offset() {
        let tcp = NewEntry::tcp_established(
            Tuple {
                src: "198.18.1.10".parse().unwrap(),
                dst: "198.18.2.10".parse().unwrap(),
                sport: Some(1),
                dport: Some(2),
            },
            9,
        );
        let buf = message(tcp.attributes(), false);
        // Every truncation decodes to an error or a valid entry, never a panic.
        for cut in 0..buf.len() {
            let _ = decode_message(&buf[..cut]);
        }
        assert!(decode_message(&buf[..10]).is_err());
        let mut bad = buf.clone();
        bad[20] = 0xff; // first attribute claims 255+ bytes
        bad[21] = 0x7f;
        let err = decode_message(&bad).unwrap_err();
        assert!(err.contains("offset 20"), "{err}");
        assert!(
            decode_message(&buf[..20])
                .unwrap_err()
                .contains("CTA_TUPLE_ORIG")
        );
    }
}
