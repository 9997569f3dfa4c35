//! Live reset events: parsing the kernel's `tcp:tcp_receive_reset` / `tcp:tcp_send_reset`
//! tracepoint lines (as `trace_pipe` prints them) and the one-line reading `watch` prints for an
//! event ("reset after 902 s idle: matches firewall 900 s in inventory").
//!
//! The tracepoints' text format (kernel 6.x, `print fmt` in the events' `format` files):
//!
//! ```text
//!   <idle>-0 [001] ..s2. 5123.456789: tcp_receive_reset: family=AF_INET sport=40000 dport=5432 saddr=198.18.0.10 daddr=198.18.2.10 saddrv6=::ffff:198.18.0.10 daddrv6=::ffff:198.18.2.10 sock_cookie=a1
//!   app-77 [000] ..... 5123.5: tcp_send_reset: skbaddr=0000 skaddr=0000 src=198.18.2.10:5432 dest=198.18.0.10:40000 state=TCP_ESTABLISHED reason=NOT_SPECIFIED
//! ```
//!
//! In both, the first address is this host's end of the connection and the second the peer's
//! (for a reset sent without a full socket the kernel reverses the incoming segment's tuple so
//! the printed direction is still local -> remote). The line carries no network namespace, so
//! `watch` matches flows by 4-tuple against the sockets it samples.
//!
//! Parsing never panics; a line that is not one of these events is `Ok(None)` (trace_pipe also
//! carries lost-event notes), a line that is one but is malformed is an error with the reason.

use std::net::{IpAddr, SocketAddr};

use crate::catalog::Catalog;

/// Which way the reset went, seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A RST arrived from the remote.
    Received,
    /// This host sent a RST.
    Sent,
}

/// One parsed tracepoint line.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceReset {
    /// Trace clock timestamp in seconds (the instance's `trace_clock`).
    pub ts_s: f64,
    /// Received or sent.
    pub direction: Direction,
    /// This host's address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// `state=` of a sent reset (`TCP_ESTABLISHED`, ...); `None` for received resets.
    pub state: Option<String>,
    /// `reason=` of a sent reset.
    pub reason: Option<String>,
}

/// Parse one `trace_pipe` line. `Ok(None)` when the line is not a TCP reset event.
pub fn parse_trace_line(line: &str) -> Result<Option<TraceReset>, String> {
    let (direction, marker) = if let Some(i) = line.find(": tcp_receive_reset: ") {
        (Direction::Received, (i, ": tcp_receive_reset: ".len()))
    } else if let Some(i) = line.find(": tcp_send_reset: ") {
        (Direction::Sent, (i, ": tcp_send_reset: ".len()))
    } else {
        return Ok(None);
    };
    let head = &line[..marker.0];
    let ts_s: f64 = head
        .split_ascii_whitespace()
        .last()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("no timestamp before the event name in {line:?}"))?;
    let fields = &line[marker.0 + marker.1..];
    let get = |key: &str| -> Option<&str> {
        fields
            .split_ascii_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let need = |key: &str| get(key).ok_or_else(|| format!("no {key}= in {line:?}"));
    let ev = match direction {
        Direction::Received => {
            let v6 = need("family")? == "AF_INET6";
            let (sa, da) = if v6 {
                ("saddrv6", "daddrv6")
            } else {
                ("saddr", "daddr")
            };
            let addr = |k: &str| -> Result<IpAddr, String> {
                let v = need(k)?;
                v.parse().map_err(|_| format!("{k}={v} is not an address"))
            };
            let port = |k: &str| -> Result<u16, String> {
                let v = need(k)?;
                v.parse().map_err(|_| format!("{k}={v} is not a port"))
            };
            TraceReset {
                ts_s,
                direction,
                local: SocketAddr::new(addr(sa)?, port("sport")?),
                remote: SocketAddr::new(addr(da)?, port("dport")?),
                state: None,
                reason: None,
            }
        }
        Direction::Sent => {
            let sock = |k: &str| -> Result<SocketAddr, String> {
                let v = need(k)?;
                v.parse().map_err(|_| format!("{k}={v} is not addr:port"))
            };
            TraceReset {
                ts_s,
                direction,
                local: sock("src")?,
                remote: sock("dest")?,
                state: get("state").map(str::to_string),
                reason: get("reason").map(str::to_string),
            }
        }
    };
    Ok(Some(ev))
}

/// The smallest idle timeout on the way to the reset's remote, as the inventory says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathHop<'a> {
    /// Name of the hop (`--path-timeout` for a bare timeout).
    pub name: &'a str,
    /// Kind of the hop (`firewall`, `nat`, ...).
    pub kind: &'a str,
    /// Its idle timeout, seconds.
    pub timeout_s: f64,
    /// From an inventory hop (`false`: a bare `--path-timeout`).
    pub from_inventory: bool,
}

/// The one-line reading of a reset after `idle_s` seconds of idle.
pub fn reading(idle_s: Option<f64>, hop: Option<PathHop<'_>>, catalog: Option<&Catalog>) -> String {
    let Some(idle) = idle_s else {
        return "reset; idle age unknown (the connection was not seen by the socket sampler)"
            .into();
    };
    let head = format!("reset after {} s idle", fmt_s(idle));
    if let Some(h) = hop {
        let t = h.timeout_s;
        let what = if h.from_inventory {
            format!("{} {:?} {} s in inventory", h.kind, h.name, fmt_s(t))
        } else {
            format!("the path timeout {} s", fmt_s(t))
        };
        // The timer fires within a second or so of the timeout; the reset comes on the first
        // packet after it, which can be much later.
        return if idle < t - (t * 0.02).max(1.0) {
            format!("{head}: shorter than the path's smallest timeout ({what}): not an idle expiry")
        } else if idle <= t * 1.1 + 5.0 {
            format!("{head}: matches {what}")
        } else {
            format!("{head}: longer than {what}; its state had expired")
        };
    }
    if let Some(c) = catalog.and_then(|c| c.near(idle, 0.05).into_iter().next()) {
        return format!(
            "{head}: near {} {} s (catalog; pass --inventory for this path's hops)",
            c.entry.name,
            fmt_s(c.entry.idle_timeout_s)
        );
    }
    format!("{head}: no inventory given and no documented idle timeout near it")
}

fn fmt_s(s: f64) -> String {
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{:.0}", s)
    } else {
        format!("{:.1}", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECV4: &str = "          <idle>-0       [001] ..s2.  5123.456789: tcp_receive_reset: family=AF_INET sport=40000 dport=5432 saddr=198.18.0.10 daddr=198.18.2.10 saddrv6=::ffff:198.18.0.10 daddrv6=::ffff:198.18.2.10 sock_cookie=a1";
    const RECV6: &str = " app-1 [000] ..... 7.25: tcp_receive_reset: family=AF_INET6 sport=40000 dport=5432 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=2001:db8::10 daddrv6=2001:db8:2::10 sock_cookie=3";
    const SEND6: &str = " kworker/u8:1-123 [000] b..1. 9.5: tcp_send_reset: skbaddr=000000001 skaddr=00000002 src=[2001:db8:2::10]:5432 dest=[2001:db8::10]:40001 state=TCP_ESTABLISHED reason=NOT_SPECIFIED";

    #[test]
    fn parses_received_v4_and_v6() {
        let e = parse_trace_line(RECV4).unwrap().unwrap();
        assert_eq!(e.direction, Direction::Received);
        assert_eq!(e.local, "198.18.0.10:40000".parse().unwrap());
        assert_eq!(e.remote, "198.18.2.10:5432".parse().unwrap());
        assert!((e.ts_s - 5123.456789).abs() < 1e-9);
        let e = parse_trace_line(RECV6).unwrap().unwrap();
        assert_eq!(e.local, "[2001:db8::10]:40000".parse().unwrap());
        assert_eq!(e.remote, "[2001:db8:2::10]:5432".parse().unwrap());
    }

    #[test]
    fn parses_sent_with_state_and_reason() {
        let e = parse_trace_line(SEND6).unwrap().unwrap();
        assert_eq!(e.direction, Direction::Sent);
        assert_eq!(e.local, "[2001:db8:2::10]:5432".parse().unwrap());
        assert_eq!(e.remote, "[2001:db8::10]:40001".parse().unwrap());
        assert_eq!(e.state.as_deref(), Some("TCP_ESTABLISHED"));
        assert_eq!(e.reason.as_deref(), Some("NOT_SPECIFIED"));
        assert!((e.ts_s - 9.5).abs() < 1e-9);
    }

    #[test]
    fn other_lines_are_none_and_bad_events_errors() {
        assert_eq!(parse_trace_line("CPU:1 [LOST 3 EVENTS]").unwrap(), None);
        assert_eq!(parse_trace_line("").unwrap(), None);
        assert!(parse_trace_line(&RECV4.replace("sport=40000", "sport=x")).is_err());
        assert!(parse_trace_line(&RECV4.replace("5123.456789:", "zz:")).is_err());
        assert!(parse_trace_line(&SEND6.replace("dest=", "dst=")).is_err());
        assert!(
            parse_trace_line(" a-1 [0] 1.0: tcp_send_reset: src=1.2.3.4 dest=1.2.3.4:1").is_err()
        );
    }

    #[test]
    fn readings_against_inventory_and_catalog() {
        let fw = PathHop {
            name: "dc-firewall",
            kind: "firewall",
            timeout_s: 900.0,
            from_inventory: true,
        };
        let r = reading(Some(902.0), Some(fw), None);
        assert_eq!(
            r,
            "reset after 902 s idle: matches firewall \"dc-firewall\" 900 s in inventory"
        );
        assert!(reading(Some(3600.0), Some(fw), None).contains("longer than firewall"));
        assert!(reading(Some(12.0), Some(fw), None).contains("not an idle expiry"));
        let cat = Catalog::builtin().unwrap();
        let r = reading(Some(351.0), None, Some(&cat));
        assert!(r.contains("near ") && r.contains("350 s"), "{r}");
        assert!(reading(Some(3.3), None, Some(&cat)).contains("3.3 s idle: no inventory"));
        assert!(reading(None, Some(fw), None).contains("unknown"));
        let bare = PathHop {
            from_inventory: false,
            ..fw
        };
        assert_eq!(
            reading(Some(901.0), Some(bare), None),
            "reset after 901 s idle: matches the path timeout 900 s"
        );
    }
}
