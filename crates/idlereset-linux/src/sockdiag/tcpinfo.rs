//! The fields of `struct tcp_info` (uapi/linux/tcp.h) idlereset reads, by offset.
//!
//! `netlink-packet-sock-diag` hands `INET_DIAG_INFO` over as raw bytes unless its `rich_nlas`
//! feature is on, and that feature requires the kernel's *whole* current struct (it refuses a
//! shorter one from an older kernel). The struct only ever grows at its end, so reading the
//! fields we need by their fixed offsets, in host byte order, and treating a field beyond the
//! received length as absent works on every kernel.

use serde::Serialize;

/// The `tcp_info` fields relevant to idle connections. Times are milliseconds ago, as the
/// kernel reports them (`jiffies_to_msecs(now - stamp)`); `rtt_us` is microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpInfo {
    /// `tcpi_state`: the socket's TCP state.
    pub state: u8,
    /// `tcpi_ca_state`: congestion-avoidance state.
    pub ca_state: u8,
    /// Retransmissions of the head segment in a row (the RTO backoff counter).
    pub retransmits: u8,
    /// Unanswered zero-window or keepalive probes.
    pub probes: u8,
    /// `tcpi_backoff`: RTO backoff exponent.
    pub backoff: u8,
    /// `tcpi_rto`: retransmission timeout, microseconds.
    pub rto_us: u32,
    /// `tcpi_unacked`: segments sent and not acknowledged.
    pub unacked: u32,
    /// `tcpi_lost`: segments considered lost.
    pub lost: u32,
    /// `tcpi_last_data_sent`: milliseconds since data was last sent.
    pub last_data_sent_ms: u32,
    /// `tcpi_last_data_recv`: milliseconds since data was last received.
    pub last_data_recv_ms: u32,
    /// `tcpi_last_ack_recv`: milliseconds since an ACK was last received.
    pub last_ack_recv_ms: u32,
    /// `tcpi_rtt`: smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// `tcpi_rttvar`: round-trip time variation, microseconds.
    pub rttvar_us: u32,
    /// `tcpi_total_retrans`: retransmissions over the connection's life.
    pub total_retrans: u32,
    /// `tcpi_bytes_acked` (kernel 4.1+), 0 when absent.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received` (kernel 4.1+), 0 when absent.
    pub bytes_received: u64,
}

// Offsets in `struct tcp_info`.
const OFF_RTO: usize = 8;
const OFF_UNACKED: usize = 24;
const OFF_LOST: usize = 32;
const OFF_LAST_DATA_SENT: usize = 44;
const OFF_LAST_DATA_RECV: usize = 52;
const OFF_LAST_ACK_RECV: usize = 56;
const OFF_RTT: usize = 68;
const OFF_RTTVAR: usize = 72;
const OFF_TOTAL_RETRANS: usize = 100;
const OFF_BYTES_ACKED: usize = 120;
const OFF_BYTES_RECEIVED: usize = 128;
/// The oldest layout we accept ends after `tcpi_total_retrans` (Linux 2.6.x).
pub(crate) const MIN_LEN: usize = OFF_TOTAL_RETRANS + 4;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

impl TcpInfo {
    /// Parse the raw `INET_DIAG_INFO` payload; `Err` names the length when it is too short.
    pub fn parse(b: &[u8]) -> Result<TcpInfo, String> {
        if b.len() < MIN_LEN {
            return Err(format!(
                "tcp_info of {} bytes, need at least {MIN_LEN}",
                b.len()
            ));
        }
        let req = |off| u32_at(b, off).unwrap_or(0); // within MIN_LEN: always present
        Ok(TcpInfo {
            state: b[0],
            ca_state: b[1],
            retransmits: b[2],
            probes: b[3],
            backoff: b[4],
            rto_us: req(OFF_RTO),
            unacked: req(OFF_UNACKED),
            lost: req(OFF_LOST),
            last_data_sent_ms: req(OFF_LAST_DATA_SENT),
            last_data_recv_ms: req(OFF_LAST_DATA_RECV),
            last_ack_recv_ms: req(OFF_LAST_ACK_RECV),
            rtt_us: req(OFF_RTT),
            rttvar_us: req(OFF_RTTVAR),
            total_retrans: req(OFF_TOTAL_RETRANS),
            bytes_acked: u64_at(b, OFF_BYTES_ACKED).unwrap_or(0),
            bytes_received: u64_at(b, OFF_BYTES_RECEIVED).unwrap_or(0),
        })
    }

    /// Milliseconds since anything was received, as the keepalive timer measures idleness
    /// (`keepalive_time_elapsed()`: the later of the last received segment and the last ACK).
    pub(crate) fn since_last_receive_ms(&self) -> u32 {
        self.last_data_recv_ms.min(self.last_ack_recv_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn put(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn reads_fields_at_their_offsets() {
        let mut b = vec![0u8; 232];
        b[..5].copy_from_slice(&[1, 0, 2, 3, 4]); // ESTABLISHED, open, retransmits 2, probes 3, backoff 4
        put(&mut b, OFF_UNACKED, 5);
        put(&mut b, OFF_LAST_DATA_SENT, 1000);
        put(&mut b, OFF_LAST_DATA_RECV, 2000);
        put(&mut b, OFF_LAST_ACK_RECV, 1500);
        put(&mut b, OFF_RTT, 250);
        put(&mut b, OFF_TOTAL_RETRANS, 9);
        b[OFF_BYTES_ACKED..OFF_BYTES_ACKED + 8].copy_from_slice(&77u64.to_ne_bytes());
        let i = TcpInfo::parse(&b).unwrap();
        assert_eq!((i.state, i.retransmits, i.probes, i.backoff), (1, 2, 3, 4));
        assert_eq!((i.unacked, i.rtt_us, i.total_retrans), (5, 250, 9));
        assert_eq!(
            (i.last_data_sent_ms, i.last_data_recv_ms, i.last_ack_recv_ms),
            (1000, 2000, 1500)
        );
        assert_eq!(i.since_last_receive_ms(), 1500);
        assert_eq!(i.bytes_acked, 77);
    }

    #[test]
    fn old_short_layout_and_truncation() {
        let mut b = vec![0u8; MIN_LEN];
        put(&mut b, OFF_LAST_ACK_RECV, 42);
        let i = TcpInfo::parse(&b).unwrap();
        assert_eq!((i.last_ack_recv_ms, i.bytes_acked), (42, 0));
        let err = TcpInfo::parse(&b[..MIN_LEN - 1]).unwrap_err();
        assert!(err.contains("103 bytes"), "{err}");
    }
}
