//! `getsockopt(TCP_INFO)` on a socket: the kernel's own view of a connection (state, last
//! packet times, unanswered keepalive probes, RTT, unacknowledged segments), as the same
//! [`TcpInfo`] sock_diag's `INET_DIAG_INFO` decodes to: one type for both ways of reading it.

use std::os::fd::AsRawFd;

pub use crate::sockdiag::TcpInfo;

/// `TCP_ESTABLISHED`, as in [`TcpInfo::state`].
pub const TCP_ESTABLISHED: u8 = 1;

/// Read TCP_INFO from a TCP socket, decoded by the same offsets as sock_diag's copy.
pub fn tcp_info(sock: &impl AsRawFd) -> std::io::Result<TcpInfo> {
    // Larger than any kernel's struct tcp_info so far (232 bytes on 6.x); the kernel copies
    // min(len, sizeof) bytes and reports how many.
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is a writable buffer of `len` bytes that outlives the call; the kernel writes
    // at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let got = buf.get(..len as usize).unwrap_or(&buf);
    TcpInfo::parse(got).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
