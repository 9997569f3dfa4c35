//! Raw IPv4/TCP packets for capture files the CLI tests write: one client and one server,
//! checksums left zero (the analyser does not verify them).

#![allow(dead_code)]

/// The client's address (port 41000).
pub const CLIENT: [u8; 4] = [198, 18, 0, 10];
/// The server's address (port 5432).
pub const SERVER: [u8; 4] = [198, 19, 0, 20];

pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;
pub const RST: u8 = 0x04;
pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;

/// A packet from the client (or the server) with this TTL, IP ID, flags, sequence and
/// acknowledgement numbers and `payload` bytes of data.
pub fn packet(
    from_client: bool,
    ttl: u8,
    id: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u16,
) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, 41000u16, 5432u16)
    } else {
        (SERVER, CLIENT, 5432, 41000)
    };
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&(40 + payload).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0x40, 0, ttl, 6, 0, 0]);
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ack.to_be_bytes());
    b.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    b.resize(b.len() + usize::from(payload), b'x');
    b
}

/// A classic pcap (raw IP link type) of `pkts`, each at 1,700,000,000 s + its offset.
pub fn pcap_bytes(pkts: &[(f64, Vec<u8>)]) -> Vec<u8> {
    use idlereset_core::pcap::writer::{LINKTYPE_RAW, PcapWriter};
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW, 65535, false)
        .unwrap_or_else(|e| panic!("pcap header: {e}"));
    for (t, p) in pkts {
        let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
        w.write_packet(
            std::time::Duration::from_secs_f64(1_700_000_000.0 + t),
            p,
            len,
        )
        .unwrap_or_else(|e| panic!("pcap record: {e}"));
    }
    w.into_inner()
}
