//! TCP sockets of the calling thread's network namespace over `NETLINK_SOCK_DIAG` (INET_DIAG),
//! what `ss -tnoi` shows, streamed with bounded memory (one 64 KiB buffer for any number of
//! sockets).
//!
//! # Keepalive visibility
//!
//! Whether a socket set `SO_KEEPALIVE` is not reported directly. It shows as the keepalive
//! timer (`idiag_timer == 2`) on an established socket: the kernel arms `sk_timer` for
//! keepalive and inet_diag reports it when no retransmit / zero-window-probe timer is pending.
//! Limitation: a socket with unacknowledged data (pending retransmit timer, `idiag_timer == 1`)
//! or a zero-window probe (`== 4`) hides its keepalive timer; [`SocketInfo::keepalive_armed`]
//! is then `false` and [`SocketInfo::keepalive_known`] `None` ("cannot tell"). Idle sockets —
//! the ones an idle timeout cuts — have an empty send queue, so for them the answer is reliable.
//!
//! # Effective keepalive idle
//!
//! The keepalive timer fires `keepalive_time` after the last *received* segment or ACK
//! (`keepalive_time_elapsed()`), so on an idle socket with no probe out yet
//! `expires_ms + min(last_data_recv_ms, last_ack_recv_ms)` ≈ the effective `TCP_KEEPIDLE`
//! ([`SocketInfo::keepalive_idle_estimate_ms`]). It is exact when nothing arrived since the timer
//! was last armed (the timer re-arms for the remainder when it fires early); with traffic since
//! then it is low. When `SO_KEEPALIVE` alone was switched on after the connection had already
//! been idle, that first arming counts from the setsockopt (a later `TCP_KEEPIDLE` counts from the
//! last receive), so the estimate is high by that idle time until the first expiry. With probes
//! out (`timer.retrans > 0`), the timer runs at `TCP_KEEPINTVL` instead and no estimate is given.

pub mod destroy;
mod tcpinfo;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use idlereset_core::socket::SocketFacts;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NlasIterator, Parseable,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use serde::Serialize;

pub use self::tcpinfo::TcpInfo;
pub use crate::nldump::DumpSummary;

use crate::error::{LinuxError, Result};
use crate::nldump::{NlSocket, RawMsg};

const WHAT: &str = "sock_diag";
/// `sizeof(struct inet_diag_msg)`.
const INET_DIAG_MSG_LEN: usize = 72;

/// Socket TCP state (`TCP_ESTABLISHED` = 1 ... `TCP_NEW_SYN_RECV` = 12), not conntrack's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpSockState(pub u8);

impl TcpSockState {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: TcpSockState = TcpSockState(1);
    /// `TCP_TIME_WAIT`.
    pub const TIME_WAIT: TcpSockState = TcpSockState(6);
    /// `TCP_LISTEN`.
    pub const LISTEN: TcpSockState = TcpSockState(10);
    const NAMES: [&'static str; 13] = [
        "UNKNOWN",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
    ];

    /// The kernel's name (`ESTABLISHED`, `TIME_WAIT`, ...); `UNKNOWN` past the known states.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("UNKNOWN")
    }

    /// The state named `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<TcpSockState> {
        Self::NAMES
            .iter()
            .skip(1)
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i + 1).ok())
            .map(TcpSockState)
    }

    /// This state's bit in a dump's state mask.
    pub fn bit(self) -> u32 {
        1u32.checked_shl(u32::from(self.0)).unwrap_or(0)
    }
}

/// Which timer `inet_diag_msg.idiag_timer` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    /// 1: retransmit (also RACK reordering and tail loss probe).
    Retransmit,
    /// 2: keepalive (`sk_timer`).
    Keepalive,
    /// 3: TIME_WAIT.
    TimeWait,
    /// 4: zero-window probe.
    ZeroWindowProbe,
}

/// The pending timer of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SockTimer {
    /// Which timer is pending.
    pub kind: TimerKind,
    /// Milliseconds until it fires.
    pub expires_ms: u32,
    /// `idiag_retrans`: retransmissions for the retransmit timer, unanswered probes for the
    /// keepalive timer.
    pub retrans: u8,
}

/// One TCP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketInfo {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// TCP state of the socket.
    #[serde(serialize_with = "ser_state")]
    pub state: TcpSockState,
    /// Socket inode (0 for TIME_WAIT); [`crate::procfs`] maps it to processes.
    pub inode: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Bytes received and not read yet (for listeners: the accept backlog).
    pub recv_queue: u32,
    /// Bytes sent and not acknowledged yet (for listeners: the backlog limit).
    pub send_queue: u32,
    /// The pending timer, if any.
    pub timer: Option<SockTimer>,
    /// The keepalive timer is pending (`SO_KEEPALIVE` on). `false` can also mean "hidden by a
    /// retransmit timer"; [`SocketInfo::keepalive_known`] tells the cases apart.
    pub keepalive_armed: bool,
    /// ms since data was last sent / received and since the last ACK was received
    /// (from `tcp_info`; `None` for TIME_WAIT and request sockets).
    pub last_data_sent_ms: Option<u32>,
    /// Milliseconds since data was last received.
    pub last_data_recv_ms: Option<u32>,
    /// Milliseconds since an ACK was last received.
    pub last_ack_recv_ms: Option<u32>,
    /// `tcp_info`, absent for TIME_WAIT and request sockets.
    pub info: Option<TcpInfo>,
}

fn ser_state<S: serde::Serializer>(
    s: &TcpSockState,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

impl SocketInfo {
    /// Does the socket have `SO_KEEPALIVE` on? `Some(true)`: keepalive timer pending.
    /// `Some(false)`: established, nothing pending, so no keepalive. `None`: another timer
    /// hides it, or the state has no keepalive (see the module doc).
    pub fn keepalive_known(&self) -> Option<bool> {
        match self.timer.map(|t| t.kind) {
            Some(TimerKind::Keepalive) => Some(true),
            None if self.state == TcpSockState::ESTABLISHED => Some(false),
            _ => None,
        }
    }

    /// Estimated effective keepalive idle time in ms (see the module doc), when the keepalive
    /// timer is pending with no probe out and `tcp_info` is known.
    pub fn keepalive_idle_estimate_ms(&self) -> Option<u64> {
        let t = self
            .timer
            .filter(|t| t.kind == TimerKind::Keepalive && t.retrans == 0)?;
        let info = self.info?;
        Some(u64::from(t.expires_ms) + u64::from(info.since_last_receive_ms()))
    }

    /// The socket as core's analysis sees it (`audit`, `exporter`, `watch` judge these with
    /// `idlereset_core::socket::classify`); owner fields are filled in later from `/proc`.
    pub fn facts(&self) -> SocketFacts {
        let ka_timer = self.timer.filter(|t| t.kind == TimerKind::Keepalive);
        SocketFacts {
            local: Some(self.local),
            remote: Some(self.remote),
            keepalive: self.keepalive_known(),
            keepalive_timer_ms: ka_timer.map(|t| u64::from(t.expires_ms)),
            probes_out: ka_timer.map_or(0, |t| t.retrans),
            last_data_sent_ms: self.last_data_sent_ms.map(u64::from),
            last_data_recv_ms: self.last_data_recv_ms.map(u64::from),
            last_ack_recv_ms: self.last_ack_recv_ms.map(u64::from),
            pid: None,
            process: None,
        }
    }

    /// Milliseconds since the last data in either direction (the connection's idle time).
    pub fn idle_ms(&self) -> Option<u32> {
        self.info
            .map(|i| i.last_data_sent_ms.min(i.last_data_recv_ms))
    }
}

/// Which sockets to dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFilter {
    /// Dump IPv4 sockets.
    pub ipv4: bool,
    /// Dump IPv6 sockets.
    pub ipv6: bool,
    /// Bit `1 << state` per wanted [`TcpSockState`]; [`TcpFilter::ALL_STATES`] for every state.
    pub states: u32,
}

impl TcpFilter {
    /// Every state bit from `TCP_ESTABLISHED` (1) to `TCP_NEW_SYN_RECV` (12).
    pub const ALL_STATES: u32 = 0x1ffe;

    /// IPv4 and IPv6, every state.
    pub fn all() -> TcpFilter {
        TcpFilter {
            ipv4: true,
            ipv6: true,
            states: Self::ALL_STATES,
        }
    }

    /// IPv4 and IPv6, established sockets only.
    pub fn established() -> TcpFilter {
        TcpFilter {
            ipv4: true,
            ipv6: true,
            states: TcpSockState::ESTABLISHED.bit(),
        }
    }
}

fn decode_err(msg: &RawMsg<'_>, message: impl std::fmt::Display) -> LinuxError {
    LinuxError::Netlink {
        op: "dump TCP sockets",
        object: WHAT.into(),
        message: format!("message at reply offset {}: {message}", msg.offset),
    }
}

fn sockaddr(addr: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

/// Decode one `inet_diag_msg` payload (with its attributes).
pub(crate) fn decode(payload: &[u8]) -> std::result::Result<SocketInfo, String> {
    let head = payload.get(..INET_DIAG_MSG_LEN).ok_or_else(|| {
        format!(
            "inet_diag_msg of {} bytes, need {INET_DIAG_MSG_LEN}",
            payload.len()
        )
    })?;
    let h = InetResponseHeader::parse(head).map_err(|e| e.to_string())?;
    // The crate folds `idiag_retrans` into its timer enum only for the retransmit timer; read the
    // raw bytes so the keepalive probe count is kept too.
    let (timer_code, retrans) = (head[2], head[3]);
    let expires_ms = u32::from_ne_bytes([head[52], head[53], head[54], head[55]]);
    let kind = match timer_code {
        1 => Some(TimerKind::Retransmit),
        2 => Some(TimerKind::Keepalive),
        3 => Some(TimerKind::TimeWait),
        4 => Some(TimerKind::ZeroWindowProbe),
        _ => None,
    };
    let mut info = None;
    for nla in NlasIterator::new(&payload[INET_DIAG_MSG_LEN..]) {
        let nla = nla.map_err(|e| format!("attributes: {e}"))?;
        if nla.kind() == INET_DIAG_INFO {
            info = Some(TcpInfo::parse(nla.value())?);
        }
    }
    Ok(SocketInfo {
        local: sockaddr(h.socket_id.source_address, h.socket_id.source_port),
        remote: sockaddr(
            h.socket_id.destination_address,
            h.socket_id.destination_port,
        ),
        state: TcpSockState(h.state),
        inode: u64::from(h.inode),
        uid: h.uid,
        recv_queue: h.recv_queue,
        send_queue: h.send_queue,
        timer: kind.map(|kind| SockTimer {
            kind,
            expires_ms,
            retrans,
        }),
        keepalive_armed: kind == Some(TimerKind::Keepalive),
        last_data_sent_ms: info.map(|i| i.last_data_sent_ms),
        last_data_recv_ms: info.map(|i| i.last_data_recv_ms),
        last_ack_recv_ms: info.map(|i| i.last_ack_recv_ms),
        info,
    })
}

/// An open sock_diag socket in the namespace it was created in.
pub struct SockDiag {
    sock: NlSocket,
}

impl SockDiag {
    /// A sock_diag socket in the current thread's network namespace.
    pub fn open() -> Result<SockDiag> {
        Ok(SockDiag {
            sock: NlSocket::open(NETLINK_SOCK_DIAG, WHAT)?,
        })
    }

    /// Stream the TCP sockets matching `filter` to `on_socket`, IPv4 first, then IPv6.
    pub fn dump_tcp(
        &mut self,
        filter: TcpFilter,
        mut on_socket: impl FnMut(SocketInfo),
    ) -> Result<DumpSummary> {
        let mut total = DumpSummary::default();
        let families = [(filter.ipv4, AF_INET), (filter.ipv6, AF_INET6)];
        for (_, af) in families.into_iter().filter(|(want, _)| *want) {
            let req = InetRequest {
                family: af,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: StateFlags::from_bits_truncate(filter.states),
                socket_id: if af == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            };
            let mut hdr = NetlinkHeader::default();
            hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
            hdr.message_type = SOCK_DIAG_BY_FAMILY;
            let msg = NetlinkMessage::new(hdr, SockDiagMessage::InetRequest(req).into());
            let seq = self.sock.send(msg, "dump TCP sockets")?;
            let s = self.sock.receive(seq, "dump TCP sockets", |m| {
                if m.msg_type != SOCK_DIAG_BY_FAMILY {
                    return Ok(());
                }
                on_socket(decode(m.payload()).map_err(|e| decode_err(&m, e))?);
                Ok(())
            })?;
            total.messages += s.messages;
            total.datagrams += s.datagrams;
            total.bytes += s.bytes;
            total.interrupted |= s.interrupted;
        }
        Ok(total)
    }
}

/// Stream the calling namespace's TCP sockets (see [`SockDiag::dump_tcp`]).
pub fn dump_tcp(filter: TcpFilter, on_socket: impl FnMut(SocketInfo)) -> Result<DumpSummary> {
    SockDiag::open()?.dump_tcp(filter, on_socket)
}
