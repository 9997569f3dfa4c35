//! The netlink request/dump loop shared by the conntrack and sock_diag readers.
//!
//! Why hand-rolled rather than `netlink-proto`: that crate is async and collects a reply stream
//! per request, while our readers must stream a table of any size through a fixed buffer
//! (100k sockets or conntrack entries without memory growing) and must be able to *count*
//! messages without decoding them (the kernel-cost baseline of the conntrack benchmark). The loop
//! is small: one blocking `netlink_sys::Socket`, one receive buffer reused for every datagram,
//! and a walk over the `nlmsghdr`s it holds. Message *payloads* are decoded by the typed crates
//! (`netlink-packet-netfilter`, `netlink-packet-sock-diag`) in the callers.

use netlink_packet_core::{NLM_F_DUMP_INTR, NetlinkMessage, NetlinkSerializable};
use netlink_sys::{Socket, SocketAddr};

use crate::error::{LinuxError, Result};

/// Receive buffer size. The kernel sizes dump datagrams by the largest buffer it has seen the
/// reader use, capped at 32 KiB; twice that leaves room and is still a fixed, small amount.
pub(crate) const RECV_BUF_LEN: usize = 64 * 1024;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawMsg<'a> {
    pub msg_type: u16,
    /// The whole message, header included (what `NetlinkMessage::deserialize` wants).
    pub bytes: &'a [u8],
    /// Offset of this message in the stream of the reply (for error messages).
    pub offset: u64,
}

impl RawMsg<'_> {
    /// The payload after the 16-byte `nlmsghdr`.
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(NLMSG_HDRLEN..).unwrap_or(&[])
    }
}

/// What a finished dump looked like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Data messages handed to the callback.
    pub messages: u64,
    /// Datagrams received.
    pub datagrams: u64,
    /// Bytes received.
    pub bytes: u64,
    /// The kernel flagged the dump as interrupted (`NLM_F_DUMP_INTR`): the table changed while
    /// it was being walked, so an entry may be missing or appear twice.
    pub interrupted: bool,
}

/// A blocking netlink socket for one request at a time.
pub(crate) struct NlSocket {
    sock: Socket,
    seq: u32,
    what: &'static str,
    buf: Vec<u8>,
}

impl NlSocket {
    /// Open a netlink socket of `protocol` in the calling thread's network namespace.
    pub fn open(protocol: isize, what: &'static str) -> Result<NlSocket> {
        let mut sock = Socket::new(protocol)
            .map_err(|e| LinuxError::socket("open netlink socket", what, e))?;
        sock.bind_auto()
            .map_err(|e| LinuxError::socket("bind netlink socket", what, e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| LinuxError::socket("connect netlink socket", what, e))?;
        Ok(NlSocket {
            sock,
            seq: 0,
            what,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Serialize and send one request; returns its sequence number.
    pub fn send<I: NetlinkSerializable + std::fmt::Debug>(
        &mut self,
        mut msg: NetlinkMessage<I>,
        op: &'static str,
    ) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut bytes);
        self.sock
            .send(&bytes, 0)
            .map_err(|e| LinuxError::socket(op, self.what, e))?;
        Ok(self.seq)
    }

    /// Receive the reply to request `seq` until `NLMSG_DONE` (dumps) or an ACK / error (plain
    /// requests), handing every data message to `on_msg`. Memory stays at one receive buffer.
    pub fn receive(
        &mut self,
        seq: u32,
        op: &'static str,
        mut on_msg: impl FnMut(RawMsg<'_>) -> Result<()>,
    ) -> Result<DumpSummary> {
        let mut summary = DumpSummary::default();
        let mut stream_offset = 0u64;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinuxError::socket(op, self.what, e)),
            };
            if n > self.buf.len() {
                return Err(LinuxError::Netlink {
                    op,
                    object: self.what.to_string(),
                    message: format!(
                        "datagram of {n} bytes exceeds the {} byte receive buffer",
                        self.buf.len()
                    ),
                });
            }
            summary.datagrams += 1;
            summary.bytes += n as u64;
            let mut off = 0usize;
            while off + NLMSG_HDRLEN <= n {
                let hdr = &self.buf[off..off + NLMSG_HDRLEN];
                let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
                let msg_type = u16::from_ne_bytes([hdr[4], hdr[5]]);
                let flags = u16::from_ne_bytes([hdr[6], hdr[7]]);
                let msg_seq = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(LinuxError::Netlink {
                        op,
                        object: self.what.to_string(),
                        message: format!(
                            "malformed message at reply offset {}: length {len} with {} bytes left",
                            stream_offset + off as u64,
                            n - off
                        ),
                    });
                }
                let msg = RawMsg {
                    msg_type,
                    bytes: &self.buf[off..off + len],
                    offset: stream_offset + off as u64,
                };
                off += (len + 3) & !3;
                if msg_seq != seq {
                    continue; // a stale reply to an earlier, abandoned request
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    summary.interrupted = true;
                }
                match msg_type {
                    NLMSG_NOOP => {}
                    NLMSG_DONE => {
                        check_errno(msg.payload(), op, self.what)?;
                        return Ok(summary);
                    }
                    NLMSG_ERROR => {
                        // An ACK (errno 0) ends a plain request; an error ends anything.
                        check_errno(msg.payload(), op, self.what)?;
                        return Ok(summary);
                    }
                    NLMSG_OVERRUN => {
                        return Err(LinuxError::Netlink {
                            op,
                            object: self.what.to_string(),
                            message: "kernel reported NLMSG_OVERRUN (data lost)".into(),
                        });
                    }
                    _ => {
                        summary.messages += 1;
                        on_msg(msg)?;
                    }
                }
            }
            stream_offset += n as u64;
        }
    }
}

/// `NLMSG_ERROR` / `NLMSG_DONE` payloads start with a negative errno (0 = success).
fn check_errno(payload: &[u8], op: &'static str, what: &str) -> Result<()> {
    let Some(b) = payload.get(..4) else {
        return Ok(());
    };
    let code = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    if code == 0 {
        return Ok(());
    }
    Err(LinuxError::NetlinkErrno {
        op,
        object: what.to_string(),
        errno: std::io::Error::from_raw_os_error(code.saturating_neg()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_payloads() {
        assert!(check_errno(&0i32.to_ne_bytes(), "t", "x").is_ok());
        assert!(check_errno(&[], "t", "x").is_ok());
        let err =
            check_errno(&(-libc::EPERM).to_ne_bytes(), "t", "x").expect_err("EPERM must fail");
        assert!(err.is_permission_denied(), "{err}");
        let err =
            check_errno(&(-libc::ENOENT).to_ne_bytes(), "t", "x").expect_err("ENOENT must fail");
        assert!(!err.is_permission_denied());
    }
}
