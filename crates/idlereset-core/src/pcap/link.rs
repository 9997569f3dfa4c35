//! From a link-layer frame to the IP packet inside it.
//!
//! Captures of idle resets come from three places: a NIC (`tcpdump -i eth0`: Ethernet, often
//! with 802.1Q / 802.1ad tags on trunks), `tcpdump -i any` (Linux cooked capture, SLL v1 in
//! older libpcap and SLL2 since libpcap 1.10), and tunnels or `lab capture` (raw IP). Each
//! header is a few fixed fields, so this is hand-rolled and allocation-free; anything we do not
//! understand is simply "not IP" and skipped by the caller.

use super::writer::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW};

/// BSD loopback: 4-byte address family in host byte order.
pub(crate) const LINKTYPE_NULL: u32 = 0;
/// OpenBSD loopback: 4-byte address family in network byte order.
pub(crate) const LINKTYPE_LOOP: u32 = 108;
/// DLT_RAW as written by some old libpcap versions.
pub(crate) const LINKTYPE_RAW_ALT: u32 = 12;
/// DLT_RAW on some BSDs.
pub(crate) const LINKTYPE_RAW_ALT2: u32 = 14;
/// Raw IPv4 packets, no link header.
pub(crate) const LINKTYPE_IPV4: u32 = 228;
/// Raw IPv6 packets, no link header.
pub(crate) const LINKTYPE_IPV6: u32 = 229;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
/// At most this many stacked VLAN tags are skipped (real networks use one or two).
const MAX_VLAN_TAGS: usize = 4;

/// The IP packet (version 4 or 6) carried by `frame`, or `None` when the frame carries
/// something else or is too short.
#[inline]
pub fn ip_payload(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    match linktype {
        LINKTYPE_ETHERNET => {
            let ethertype = be16(frame, 12)?;
            after_ethertype(ethertype, frame.get(14..)?)
        }
        LINKTYPE_LINUX_SLL => {
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
            let proto = be16(frame, 14)?;
            after_ethertype(proto, frame.get(16..)?)
        }
        LINKTYPE_LINUX_SLL2 => {
            // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
            // address length (1), address (8).
            let proto = be16(frame, 0)?;
            after_ethertype(proto, frame.get(20..)?)
        }
        LINKTYPE_RAW | LINKTYPE_RAW_ALT | LINKTYPE_RAW_ALT2 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            by_version(frame)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => by_version(frame.get(4..)?),
        _ => None,
    }
}

/// Whether [`ip_payload`] understands this link type.
pub fn supported(linktype: u32) -> bool {
    matches!(
        linktype,
        LINKTYPE_ETHERNET
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_LINUX_SLL2
            | LINKTYPE_RAW
            | LINKTYPE_RAW_ALT
            | LINKTYPE_RAW_ALT2
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_NULL
            | LINKTYPE_LOOP
    )
}

#[inline]
fn after_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Option<&[u8]> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ethertype {
            ETH_IPV4 | ETH_IPV6 => return Some(rest),
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                ethertype = be16(rest, 2)?;
                rest = rest.get(4..)?;
            }
            _ => return None,
        }
    }
    None
}

#[inline]
fn by_version(ip: &[u8]) -> Option<&[u8]> {
    match ip.first()? >> 4 {
        4 | 6 => Some(ip),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];

    #[test]
    fn ethernet_with_and_without_vlan_tags() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&IP);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &f), Some(&IP[..]));

        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x86, 0xdd]);
        tagged.extend_from_slice(&[0x60, 0, 0, 0]);
        assert_eq!(
            ip_payload(LINKTYPE_ETHERNET, &tagged),
            Some(&[0x60, 0, 0, 0][..])
        );

        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &arp), None);
    }

    #[test]
    fn too_many_vlan_tags_is_not_ip() {
        let mut f = vec![0u8; 12];
        for _ in 0..6 {
            f.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&IP);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &f), None);
    }

    #[test]
    fn cooked_v1_and_v2() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&IP);
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL, &sll), Some(&IP[..]));

        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&IP);
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL2, &sll2), Some(&IP[..]));
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL2, &sll2[..19]), None);
    }

    #[test]
    fn raw_and_loopback() {
        assert_eq!(ip_payload(LINKTYPE_RAW, &IP), Some(&IP[..]));
        assert_eq!(ip_payload(LINKTYPE_RAW, &[0x15, 0]), None);
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&IP);
        assert_eq!(ip_payload(LINKTYPE_NULL, &null), Some(&IP[..]));
        assert_eq!(ip_payload(9999, &IP), None);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &[]), None);
    }
}
