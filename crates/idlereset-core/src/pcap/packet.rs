//! The few IP and TCP header fields the flow tracker needs, read straight from the bytes.
//!
//! Hand-rolled on purpose: this runs once per packet on captures with tens of millions of
//! packets, and we need eleven fields, not a parsed header tree. The parser does no allocation,
//! no checksum verification and no option parsing; it reads only what is present, so truncated
//! snap lengths (`tcpdump -s 96`) still work. Its output is checked in tests against packets
//! serialised by `etherparse`, which is the reference here.
//!
//! Lengths come from the IP header, not from the captured bytes, so Ethernet padding and short
//! snap lengths do not change the payload length. A total length of 0 (TSO packets captured on
//! the sending host) falls back to the captured length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP FIN flag bit.
pub const FIN: u8 = 0x01;
/// TCP SYN flag bit.
pub const SYN: u8 = 0x02;
/// TCP RST flag bit.
pub const RST: u8 = 0x04;
/// TCP PSH flag bit.
pub const PSH: u8 = 0x08;
/// TCP ACK flag bit.
pub const ACK: u8 = 0x10;

/// How many IPv6 extension headers we walk before giving up.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// A TCP segment as seen at the capture point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with [`ACK`]).
    pub ack: u32,
    /// TCP flags byte ([`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`], ...).
    pub flags: u8,
    /// TCP payload bytes (from the IP length fields).
    pub payload_len: u32,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// IPv4 don't-fragment bit (always false for IPv6).
    pub df: bool,
}

impl TcpSegment {
    /// Whether the flag bit (or any of the bits) `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The TCP segment in an IP packet, or `None` when the packet is not TCP, is a non-first
/// fragment, or is too short to hold the TCP header's first 16 bytes.
#[inline]
pub fn parse_tcp(ip: &[u8]) -> Option<TcpSegment> {
    match ip.first()? >> 4 {
        4 => parse_v4(ip),
        6 => parse_v6(ip),
        _ => None,
    }
}

#[inline]
fn parse_v4(ip: &[u8]) -> Option<TcpSegment> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl || ip[9] != 6 {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x1fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let total = if total == 0 { ip.len() } else { total };
    let l4_len = total.checked_sub(ihl)?;
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let mut seg = parse_tcp_header(&ip[ihl..], l4_len, src, dst, ip[8])?;
    seg.ip_id = Some(u16::from_be_bytes([ip[4], ip[5]]));
    seg.df = frag & 0x4000 != 0;
    Some(seg)
}

#[inline]
fn parse_v6(ip: &[u8]) -> Option<TcpSegment> {
    if ip.len() < 40 {
        return None;
    }
    let mut next = ip[6];
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mut l4_len = if payload == 0 { ip.len() - 40 } else { payload };
    let mut at = 40;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        let hdr_len = match next {
            6 => {
                let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?));
                let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?));
                return parse_tcp_header(ip.get(at..)?, l4_len, src, dst, ip[7]);
            }
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => (usize::from(*ip.get(at + 1)?) + 1) * 8,
            // Fragment: only the first fragment holds the TCP header.
            44 => {
                let off = u16::from_be_bytes([*ip.get(at + 2)?, *ip.get(at + 3)?]);
                if off & 0xfff8 != 0 {
                    return None;
                }
                8
            }
            // Authentication header.
            51 => (usize::from(*ip.get(at + 1)?) + 2) * 4,
            _ => return None,
        };
        next = *ip.get(at)?;
        at += hdr_len;
        l4_len = l4_len.checked_sub(hdr_len)?;
    }
    None
}

#[inline]
fn parse_tcp_header(
    tcp: &[u8],
    l4_len: usize,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
) -> Option<TcpSegment> {
    let h = tcp.get(..14)?;
    let doff = usize::from(h[12] >> 4) * 4;
    if doff < 20 {
        return None;
    }
    Some(TcpSegment {
        src,
        dst,
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: h[13],
        payload_len: u32::try_from(l4_len.saturating_sub(doff)).unwrap_or(u32::MAX),
        ttl,
        ip_id: None,
        df: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::testkit::{Pkt, V4_A, V4_B, V6_A, V6_B};

    #[test]
    fn ipv4_fields_match_etherparse_output() {
        let bytes = Pkt::new(V4_A, 40000, V4_B, 5432)
            .ttl(61)
            .id(777)
            .seq(1000)
            .ack(5)
            .flags(ACK | PSH)
            .payload(13)
            .ip();
        let s = parse_tcp(&bytes).unwrap();
        assert_eq!((s.src, s.dst, s.sport, s.dport), (V4_A, V4_B, 40000, 5432));
        assert_eq!(
            (s.seq, s.ack, s.flags, s.payload_len, s.ttl),
            (1000, 5, ACK | PSH, 13, 61)
        );
        assert_eq!((s.ip_id, s.df), (Some(777), true));
    }

    #[test]
    fn ipv6_fields_match_etherparse_output() {
        let bytes = Pkt::new(V6_A, 40000, V6_B, 443)
            .ttl(57)
            .seq(9)
            .flags(RST)
            .ip();
        let s = parse_tcp(&bytes).unwrap();
        assert_eq!(
            (
                s.src,
                s.dst,
                s.dport,
                s.flags,
                s.ttl,
                s.ip_id,
                s.payload_len
            ),
            (V6_A, V6_B, 443, RST, 57, None, 0)
        );
    }

    #[test]
    fn ethernet_padding_and_snaplen_do_not_change_payload_length() {
        let mut bytes = Pkt::new(V4_A, 1, V4_B, 2).payload(100).ip();
        let full = parse_tcp(&bytes).unwrap().payload_len;
        bytes.truncate(54);
        assert_eq!(parse_tcp(&bytes).unwrap().payload_len, full);
        let mut padded = Pkt::new(V4_A, 1, V4_B, 2).ip();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_tcp(&padded).unwrap().payload_len, 0);
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let plain = Pkt::new(V6_A, 1000, V6_B, 80).payload(7).ip();
        // Insert an 8-byte destination-options header between the IPv6 header and TCP.
        let mut ext = plain[..40].to_vec();
        ext[6] = 60;
        let plen = u16::from_be_bytes([ext[4], ext[5]]) + 8;
        ext[4..6].copy_from_slice(&plen.to_be_bytes());
        ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&plain[40..]);
        let s = parse_tcp(&ext).unwrap();
        assert_eq!((s.sport, s.dport, s.payload_len), (1000, 80, 7));
    }

    #[test]
    fn non_tcp_fragments_and_garbage_are_none() {
        let mut udp = Pkt::new(V4_A, 1, V4_B, 2).ip();
        udp[9] = 17;
        assert!(parse_tcp(&udp).is_none());
        let mut frag = Pkt::new(V4_A, 1, V4_B, 2).ip();
        frag[7] = 1;
        assert!(parse_tcp(&frag).is_none());
        assert!(parse_tcp(&[]).is_none());
        assert!(parse_tcp(&[0x45; 30]).is_none());
        assert!(parse_tcp(&[0x4f; 10]).is_none());
    }
}
