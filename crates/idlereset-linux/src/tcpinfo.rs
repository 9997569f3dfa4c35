//! `getsockopt(TCP_INFO)` on a socket: the kernel's own view of a connection (state, last
//! packet times, unanswered keepalive probes, RTT, unacknowledged segments).

use std::os::fd::AsRawFd;

/// The fields of `struct tcp_info` idlereset uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// TCP state (1 = ESTABLISHED, 7 = CLOSE, ...).
    pub state: u8,
    /// Unanswered keepalive / zero-window probes.
    pub probes: u8,
    pub retransmits: u8,
    /// Milliseconds since the last data was sent / received, and the last ACK received.
    pub last_data_sent_ms: u32,
    pub last_data_recv_ms: u32,
    pub last_ack_recv_ms: u32,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u32,
    /// Segments sent but not yet acknowledged.
    pub unacked: u32,
}

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE: u8 = 7;

/// Read TCP_INFO from a TCP socket.
pub fn tcp_info(sock: &impl AsRawFd) -> std::io::Result<TcpInfo> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call; the kernel writes
    // at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpInfo {
        state: info.tcpi_state,
        probes: info.tcpi_probes,
        retransmits: info.tcpi_retransmits,
        last_data_sent_ms: info.tcpi_last_data_sent,
        last_data_recv_ms: info.tcpi_last_data_recv,
        last_ack_recv_ms: info.tcpi_last_ack_recv,
        rtt_us: info.tcpi_rtt,
        unacked: info.tcpi_unacked,
    })
}
