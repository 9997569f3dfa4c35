//! TCP sockets as the kernel destroys them: sock_diag's multicast groups
//! `SKNLGRP_INET_TCP_DESTROY` and `SKNLGRP_INET6_TCP_DESTROY` (CAP_NET_ADMIN).
//!
//! The fallback source for `watch` where tracefs is unavailable: a reset connection is destroyed
//! when its owner closes it after the error, and the message carries the socket's 4-tuple and its
//! `tcp_info` (time since data was last sent: the send that met the reset). The kernel does not
//! say *why* a socket went away; callers pair these events with the namespace's reset counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::{SocketInfo, decode};
use crate::error::{LinuxError, Result};

const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Hand every TCP socket destroyed in the calling thread's namespace to `on_socket` until
/// `stop` is raised.
pub fn watch_destroyed(stop: &AtomicBool, mut on_socket: impl FnMut(SocketInfo)) -> Result<()> {
    let what = "sock_diag destroy events";
    let mut sock =
        Socket::new(NETLINK_SOCK_DIAG).map_err(|e| LinuxError::socket("open", what, e))?;
    sock.bind_auto()
        .map_err(|e| LinuxError::socket("bind", what, e))?;
    for g in [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY] {
        sock.add_membership(g)
            .map_err(|e| LinuxError::socket("join multicast group", what, e))?;
    }
    sock.set_non_blocking(true)
        .map_err(|e| LinuxError::socket("configure", what, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(LinuxError::socket("recv", what, e)),
        };
        for payload in messages(&buf[..n]) {
            if let Ok(info) = decode(payload) {
                on_socket(info);
            }
        }
    }
    Ok(())
}

/// The payloads of the SOCK_DIAG_BY_FAMILY messages in one datagram; malformed tails are dropped.
pub(crate) fn messages(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        if ty == SOCK_DIAG_BY_FAMILY {
            out.push(&b[16..len]);
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_datagrams_and_survives_garbage() {
        let mut d = Vec::new();
        for payload in [&[1u8, 2, 3][..], &[4, 5, 6, 7][..]] {
            let len = 16 + payload.len() as u32;
            d.extend_from_slice(&len.to_ne_bytes());
            d.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            d.extend_from_slice(&[0; 10]);
            d.extend_from_slice(payload);
            d.resize((d.len() + 3) & !3, 0);
        }
        let m = messages(&d);
        assert_eq!(m, vec![&[1u8, 2, 3][..], &[4, 5, 6, 7][..]]);
        assert!(messages(&[0xff; 40]).is_empty());
        assert!(messages(&[]).is_empty());
    }
}
