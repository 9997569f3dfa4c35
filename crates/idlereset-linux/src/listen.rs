//! `idlereset listen PORT`: the cooperating responder for `probe --reverse`.
//!
//! Reverse mode measures the server-to-client direction (what a server push or an inbound
//! packet through a NAT sees after idle): the *listener* arms TCP keepalive on each test
//! connection with the idle duration the client asked for, watches it exactly like the forward
//! engine, and reports each result on the client's control connection.
//!
//! Protocol (one line each, then silence):
//! - `IDLERESET CTRL <session>`: a control connection; results come back on it as
//!   `RESULT <rung> <survived|reset|blackhole|fin> <idle_s>`. It carries 1 s keepalives.
//! - `IDLERESET TEST <session> <rung> <idle_s>`: a test connection for one idle duration.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlereset_core::probe::{Failure, RungResult};
use socket2::{Socket, TcpKeepalive};

use crate::error::{LinuxError, Result};
use crate::probe::IdleWatch;

struct Watched {
    session: String,
    rung: u32,
    idle_s: u32,
    sock: Socket,
    watch: IdleWatch,
}

#[derive(Default)]
struct Shared {
    ctrl: HashMap<String, TcpStream>,
    watched: Vec<Watched>,
}

fn failure_word(f: Failure) -> &'static str {
    match f {
        Failure::Reset => "reset",
        Failure::Blackhole => "blackhole",
        Failure::Fin => "fin",
        Failure::None => "survived",
    }
}

fn keepalive(sock: &Socket, idle: u32) -> std::io::Result<()> {
    sock.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(u64::from(idle.max(1))))
            .with_interval(Duration::from_secs(1))
            .with_retries(5),
    )?;
    sock.set_keepalive(true)
}

/// Serve until the process ends. `on_event` gets one line per accepted test or result.
pub fn serve(listener: TcpListener, on_event: impl Fn(&str) + Send + Sync + 'static) -> Result<()> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let on_event = Arc::new(on_event);
    {
        let shared = shared.clone();
        let on_event = on_event.clone();
        std::thread::spawn(move || watch(shared, on_event.as_ref()));
    }
    loop {
        let (stream, peer) = listener
            .accept()
            .map_err(|e| LinuxError::socket("accept", "listen", e))?;
        let shared = shared.clone();
        let on_event = on_event.clone();
        std::thread::spawn(move || {
            if let Err(e) = handshake(stream, peer, &shared, on_event.as_ref()) {
                on_event(&format!("{peer}: {e}"));
            }
        });
    }
}

fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Mutex<Shared>,
    on_event: &(dyn Fn(&str) + Send + Sync),
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["IDLERESET", "CTRL", session] => {
            let sock = Socket::from(stream.try_clone()?);
            keepalive(&sock, 1)?;
            on_event(&format!("{peer}: control connection for session {session}"));
            if let Ok(mut s) = shared.lock() {
                s.ctrl.insert(session.to_string(), stream);
            }
            Ok(())
        }
        ["IDLERESET", "TEST", session, rung, idle] => {
            let (rung, idle) = match (rung.parse::<u32>(), idle.parse::<u32>()) {
                (Ok(r), Ok(i)) if i >= 1 => (r, i),
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "bad TEST line",
                    ));
                }
            };
            let sock = Socket::from(stream);
            keepalive(&sock, idle)?;
            // The idle clock starts at the last packet received: the TEST line.
            let ago = crate::tcpinfo::tcp_info(&sock)
                .map(|i| i.last_data_recv_ms)
                .unwrap_or(0);
            let now = Instant::now();
            let established = now
                .checked_sub(Duration::from_millis(u64::from(ago)))
                .unwrap_or(now);
            sock.set_nonblocking(true)?;
            if let Ok(mut s) = shared.lock() {
                s.watched.push(Watched {
                    session: session.to_string(),
                    rung,
                    idle_s: idle,
                    watch: IdleWatch::new(established, idle),
                    sock,
                });
            }
            Ok(())
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an idlereset probe: {:?}", line.trim()),
        )),
    }
}

fn watch(shared: Arc<Mutex<Shared>>, on_event: &(dyn Fn(&str) + Send + Sync)) {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let Ok(mut s) = shared.lock() else { return };
        let mut done = Vec::new();
        for (i, w) in s.watched.iter_mut().enumerate() {
            if let Some(r) = w.watch.check(&w.sock) {
                done.push((i, r));
            }
        }
        for (i, r) in done.into_iter().rev() {
            let w = s.watched.swap_remove(i);
            let (word, idle) = match r {
                RungResult::Survived { idle_s } => ("survived", idle_s),
                RungResult::Failed { failure, idle_s } => (failure_word(failure), idle_s),
            };
            let msg = format!("RESULT {} {word} {idle:.3}\n", w.rung);
            on_event(&format!(
                "session {} rung {} ({} s): {word}",
                w.session, w.rung, w.idle_s
            ));
            if let Some(c) = s.ctrl.get_mut(&w.session) {
                if c.write_all(msg.as_bytes()).is_err() {
                    s.ctrl.remove(&w.session);
                }
            }
        }
    }
}

/// A listening socket on `addr` (an unspecified IPv6 address also accepts IPv4), optionally
/// inside the named network namespace.
pub fn bind(addr: SocketAddr, netns: Option<&str>) -> Result<TcpListener> {
    let make = move || -> std::io::Result<TcpListener> {
        let domain = if addr.is_ipv6() {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let s = Socket::new(domain, socket2::Type::STREAM, None)?;
        if addr.is_ipv6() {
            s.set_only_v6(false)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        Ok(s.into())
    };
    let r = match netns {
        Some(ns) => crate::NetNs::open(ns)?.run(make)?,
        None => make(),
    };
    r.map_err(|e| LinuxError::socket("listen", addr.to_string(), e))
}

/// Parse a `RESULT` line into (rung, result).
pub fn parse_result(line: &str) -> Option<(u32, RungResult)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let ["RESULT", rung, word, idle] = f.as_slice() else {
        return None;
    };
    let rung = rung.parse().ok()?;
    let idle_s: f64 = idle.parse().ok()?;
    let r = match *word {
        "survived" => RungResult::Survived { idle_s },
        "reset" => RungResult::Failed {
            failure: Failure::Reset,
            idle_s,
        },
        "blackhole" => RungResult::Failed {
            failure: Failure::Blackhole,
            idle_s,
        },
        "fin" => RungResult::Failed {
            failure: Failure::Fin,
            idle_s,
        },
        _ => return None,
    };
    Some((rung, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_round_trip() {
        assert_eq!(
            parse_result("RESULT 7 survived 7.000"),
            Some((7, RungResult::Survived { idle_s: 7.0 }))
        );
        assert_eq!(
            parse_result("RESULT 8 reset 8.000"),
            Some((
                8,
                RungResult::Failed {
                    failure: Failure::Reset,
                    idle_s: 8.0
                }
            ))
        );
        assert_eq!(parse_result("RESULT x reset 1"), None);
        assert_eq!(parse_result("garbage"), None);
    }
}
