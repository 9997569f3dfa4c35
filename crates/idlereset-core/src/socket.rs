//! One verdict per established TCP socket, shared by `audit` (findings), `exporter` (gauges),
//! `watch` (the state of a reset's flow) and `triage`: is keepalive off, on but slower than the
//! path, on and in time, or hidden by another timer. One rule, so a socket `audit` calls
//! `keepalive-too-late` is the socket the exporter counts in
//! `idlereset_tcp_sockets_keepalive_too_late`.
//!
//! # What the keepalive timer shows
//!
//! sock_diag reports the pending keepalive timer (ms until it fires) and the unanswered probe
//! count, not the socket's TCP_KEEPIDLE / TCP_KEEPINTVL. `tcp_keepalive_timer()`
//! (net/ipv4/tcp_timer.c) re-arms the timer in three ways:
//! - nothing received for `keepalive_time` yet: for the rest of it, so the timer fires
//!   `TCP_KEEPIDLE` after the last received packet;
//! - it just sent a probe: in `TCP_KEEPINTVL`. When the probe is answered, the ACK resets the
//!   probe count and the receive clock, and at the next expiry the kernel probes again at once if
//!   `TCP_KEEPINTVL >= TCP_KEEPIDLE`, or waits out the rest of `TCP_KEEPIDLE` otherwise.
//!
//! So in every phase `timer + time since the last received packet` is when the next probe (or
//! re-check) is due, counted from the last packet the middlebox saw. That is the number compared
//! with the path timeout. An ACK newer than the last data in both directions means a probe was
//! answered (a window update can look the same). Unanswered probes (`probes_out > 0`) only
//! bound the interval from below (`>= timer`).

use std::net::SocketAddr;

use crate::path::{PathLookup, PathTimeout};

/// An ACK this much newer than the last data in both directions is an answered probe.
pub const PROBE_EVIDENCE_MS: u64 = 1000;

/// What was seen of one established TCP socket (times in milliseconds ago, as `tcp_info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocketFacts {
    /// This host's end.
    pub local: Option<SocketAddr>,
    /// The peer's end.
    pub remote: Option<SocketAddr>,
    /// `Some(true)`: keepalive timer pending; `Some(false)`: established with no timer, so no
    /// `SO_KEEPALIVE`; `None`: hidden by a retransmit / zero-window timer.
    pub keepalive: Option<bool>,
    /// Milliseconds until the keepalive timer fires (when it is the pending timer).
    pub keepalive_timer_ms: Option<u64>,
    /// Unanswered keepalive probes (`idiag_retrans` for the keepalive timer).
    pub probes_out: u8,
    /// Milliseconds since data was last sent.
    pub last_data_sent_ms: Option<u64>,
    /// Milliseconds since data was last received.
    pub last_data_recv_ms: Option<u64>,
    /// Milliseconds since the last ACK was received.
    pub last_ack_recv_ms: Option<u64>,
    /// Owning process, when known.
    pub pid: Option<u32>,
    /// Owning process's command name, when known.
    pub process: Option<String>,
}

impl SocketFacts {
    /// Seconds since data went either way (the idle a middlebox sees, keepalives aside).
    pub fn idle_s(&self) -> Option<f64> {
        let ms = self.last_data_sent_ms?.min(self.last_data_recv_ms?);
        Some(ms as f64 / 1000.0)
    }

    /// Milliseconds since anything was received (the keepalive clock).
    pub(crate) fn since_receive_ms(&self) -> Option<u64> {
        Some(self.last_data_recv_ms?.min(self.last_ack_recv_ms?))
    }

    /// Is the peer on loopback (no middlebox on the way)?
    pub fn is_loopback(&self) -> bool {
        self.remote.is_some_and(is_loopback)
    }
}

/// Loopback, IPv4-mapped loopback included: no middlebox sits on such a connection.
pub fn is_loopback(a: SocketAddr) -> bool {
    a.ip().to_canonical().is_loopback()
}

/// Which stage of keepalive a socket was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No probe answered since the last data: the timer counts towards TCP_KEEPIDLE.
    FirstProbe,
    /// An ACK arrived after the last data (a probe was answered): re-probe spacing.
    Reprobe,
    /// Probes sent and not answered yet: the timer runs at TCP_KEEPINTVL.
    Unanswered(u8),
}

/// The next keepalive probe as read from the timer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NextProbe {
    /// The keepalive stage the timer was read in.
    pub phase: Phase,
    /// Seconds until the timer fires.
    pub timer_s: f64,
    /// Seconds from the last received packet to the next probe (a lower bound of the interval
    /// when probes are unanswered).
    pub after_last_packet_s: f64,
}

/// Read the next probe from a socket with its keepalive timer pending.
pub fn next_probe(s: &SocketFacts) -> Option<NextProbe> {
    let timer_ms = s.keepalive_timer_ms?;
    let timer_s = timer_ms as f64 / 1000.0;
    if s.probes_out > 0 {
        return Some(NextProbe {
            phase: Phase::Unanswered(s.probes_out),
            timer_s,
            after_last_packet_s: timer_s,
        });
    }
    let since = s.since_receive_ms()?;
    let last_data = s.last_data_sent_ms?.min(s.last_data_recv_ms?);
    let ack = s.last_ack_recv_ms?;
    let phase = if ack.saturating_add(PROBE_EVIDENCE_MS) < last_data {
        Phase::Reprobe
    } else {
        Phase::FirstProbe
    };
    Some(NextProbe {
        phase,
        timer_s,
        after_last_packet_s: (timer_ms + since) as f64 / 1000.0,
    })
}

/// The one verdict on a socket against its path.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The remote is off the described path: not judged.
    OffPath,
    /// A retransmit or zero-window timer hides whether keepalive is on (the socket is busy).
    Hidden,
    /// Established, no keepalive timer: `SO_KEEPALIVE` is off.
    NoKeepalive,
    /// Keepalive on, but the next probe is due later than the path forgets the flow.
    KeepaliveTooLate {
        /// The probe as read from the timer.
        next: NextProbe,
        /// The timeout it loses against.
        path: PathTimeout,
    },
    /// Keepalive on and in time, or the path's timeout is unknown, or the timer's stage is not
    /// readable (`next` is `None` then).
    KeepaliveOn {
        /// The probe as read from the timer, when readable.
        next: Option<NextProbe>,
    },
}

/// Judge one socket against what its path policy says about its remote.
pub fn classify(s: &SocketFacts, path: &PathLookup) -> Verdict {
    if *path == PathLookup::OffPath {
        return Verdict::OffPath;
    }
    match s.keepalive {
        None => Verdict::Hidden,
        Some(false) => Verdict::NoKeepalive,
        Some(true) => {
            let next = next_probe(s);
            match (next, path.timeout()) {
                (Some(np), Some(t)) if np.after_last_packet_s > t.seconds => {
                    Verdict::KeepaliveTooLate {
                        next: np,
                        path: t.clone(),
                    }
                }
                _ => Verdict::KeepaliveOn { next },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(timer_ms: u64, since_ms: u64) -> SocketFacts {
        SocketFacts {
            remote: "198.18.2.10:5432".parse().ok(),
            keepalive: Some(true),
            keepalive_timer_ms: Some(timer_ms),
            last_data_sent_ms: Some(since_ms),
            last_data_recv_ms: Some(since_ms),
            last_ack_recv_ms: Some(since_ms),
            ..SocketFacts::default()
        }
    }

    fn known(s: f64) -> PathLookup {
        PathLookup::Known(PathTimeout {
            seconds: s,
            source: "test".into(),
            hop: None,
        })
    }

    #[test]
    fn verdicts() {
        // First probe at 1000 s after the last packet, path 900 s: too late.
        assert!(matches!(
            classify(&ka(400_000, 600_000), &known(900.0)),
            Verdict::KeepaliveTooLate { .. }
        ));
        // 800 s: in time.
        assert!(matches!(
            classify(&ka(200_000, 600_000), &known(900.0)),
            Verdict::KeepaliveOn { next: Some(_) }
        ));
        // Unknown path: never too late.
        assert!(matches!(
            classify(&ka(400_000, 600_000), &PathLookup::Unknown),
            Verdict::KeepaliveOn { .. }
        ));
        let off = SocketFacts {
            keepalive: Some(false),
            ..ka(0, 0)
        };
        assert_eq!(classify(&off, &known(900.0)), Verdict::NoKeepalive);
        assert_eq!(classify(&off, &PathLookup::OffPath), Verdict::OffPath);
        let hidden = SocketFacts {
            keepalive: None,
            ..ka(0, 0)
        };
        assert_eq!(classify(&hidden, &known(900.0)), Verdict::Hidden);
    }

    #[test]
    fn loopback_includes_mapped() {
        assert!(is_loopback(
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!())
        ));
        assert!(is_loopback(
            "[::ffff:127.0.0.1]:1"
                .parse()
                .unwrap_or_else(|_| unreachable!())
        ));
        assert!(!is_loopback(
            "198.18.0.1:1".parse().unwrap_or_else(|_| unreachable!())
        ));
    }
}
