//! Entry points of the fuzz targets in `fuzz/` for the decoders this crate owns.
//!
//! Each function feeds arbitrary bytes through one decoder and ignores the result: a fuzz
//! target calls it, and `tests/fuzz_seeds.rs` calls the same function on every committed seed
//! input (`fuzz/corpus-seeds/TARGET/`), so a crash found once stays a failing test. The
//! decoders themselves stay private; this module is the one door to them.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

/// The typed ctnetlink decoder: `netlink-packet-netfilter` parses the message, then the
/// crate builds an entry from its attributes (the reference decoder of the fast one).
pub fn conntrack_typed(msg: &[u8]) {
    let Ok(nl) = NetlinkMessage::<NetfilterMessage>::deserialize(msg) else {
        return;
    };
    if let NetlinkPayload::InnerMessage(NetfilterMessage {
        header,
        inner:
            NetfilterMessageInner::Conntrack(
                ConntrackMessage::New(attrs)
                | ConntrackMessage::Get(attrs)
                | ConntrackMessage::Delete(attrs),
            ),
        ..
    }) = nl.payload
    {
        let _ = crate::conntrack::entry::decode_entry(u8::from(header.family), &attrs);
    }
}

/// The allocation-free ctnetlink decoder that dumps use.
pub fn conntrack_fast(msg: &[u8]) {
    let _ = crate::conntrack::fast::decode_message(msg);
}

/// sock_diag: the inet_diag message decoder and the SOCK_DESTROY datagram splitter.
pub fn sockdiag(payload: &[u8]) {
    let _ = crate::sockdiag::decode(payload);
    for m in crate::sockdiag::destroy::messages(payload) {
        let _ = crate::sockdiag::decode(m);
    }
}

/// `struct tcp_info` as sock_diag and getsockopt return it.
pub fn tcp_info(bytes: &[u8]) {
    let _ = crate::sockdiag::TcpInfo::parse(bytes);
}

/// procfs: the `socket:[INODE]` link text of `/proc/PID/fd/N`.
pub fn procfs(link: &[u8]) {
    let _ = crate::procfs::parse_socket_link(link);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../fuzz/corpus-seeds/{target}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// The committed seeds start the fuzzer from real messages, not from bytes both decoders
    /// refuse at once.
    #[test]
    fn well_formed_seeds_decode() {
        for name in ["tcp-v4", "tcp-v6"] {
            let e = crate::conntrack::fast::decode_message(&seed("conntrack_fast", name)).unwrap();
            assert_eq!(
                (e.proto, e.timeout_s, e.orig.dport),
                (6, 431_999, Some(5432))
            );
            let s = crate::sockdiag::decode(&seed("sockdiag", name)).unwrap();
            assert_eq!(s.remote.port(), 5432, "{s:?}");
        }
        assert!(crate::sockdiag::TcpInfo::parse(&seed("tcp_info", "full-232")).is_ok());
        assert_eq!(
            crate::procfs::parse_socket_link(&seed("procfs", "socket__12345__")),
            Some(12345)
        );
    }
}
