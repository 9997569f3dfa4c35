//! One connection to the listener: its first line within the deadline, then either a session
//! (control connection: token out, results back) or a test connection handed to the watcher.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlereset_core::reverse::{self, Hello, Token};
use socket2::{SockRef, Socket, TcpKeepalive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Shared, read_line};
use crate::admission::Slot;
use crate::probe::IdleWatch;

/// Results waiting to be written on one control connection, at most.
const RESULT_QUEUE: usize = 1024;

/// Live sessions and the test connections being watched.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) sessions: HashMap<Token, Session>,
    pub(super) watched: Vec<Watched>,
}

/// A control connection's session.
pub(super) struct Session {
    /// Source address of the control connection: tests must come from it.
    pub(super) ip: IpAddr,
    pub(super) results: mpsc::Sender<String>,
    pub(super) tests: usize,
}

/// A test connection waiting for its keepalive probe.
pub(super) struct Watched {
    pub(super) token: Token,
    pub(super) rung: u32,
    pub(super) idle_s: u32,
    pub(super) sock: Socket,
    pub(super) watch: IdleWatch,
    pub(super) _slot: Slot,
}

/// Handle one accepted connection.
pub(super) async fn connection(
    sh: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut slot: Slot,
) {
    let line = match tokio::time::timeout(sh.cfg.line_timeout, read_line(&mut stream)).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => {
            sh.log
                .throttled("read", || format!("{peer}: no first line: {e}"));
            return;
        }
        Err(_) => {
            let secs = sh.cfg.line_timeout.as_secs_f64();
            sh.log.throttled("slow", || {
                format!("{peer}: no complete first line within {secs} s: closed")
            });
            return;
        }
    };
    slot.handshake_done();
    match reverse::parse_hello(&line) {
        Ok(Hello::Control) => control(&sh, stream, peer, slot).await,
        Ok(Hello::Test {
            token,
            rung,
            idle_s,
        }) => {
            if let Err(why) = test(&sh, stream, peer, slot, token, rung, idle_s) {
                sh.log
                    .throttled("test", || format!("{peer}: TEST refused: {why}"));
            }
        }
        Err(e) => {
            sh.log.throttled("line", || {
                format!("{peer}: refused: {e}: {}", reverse::describe(&line))
            });
            let _ = stream.try_write(format!("ERR {e}\n").as_bytes());
        }
    }
}

/// A fresh token from the kernel's CSPRNG (getrandom(2)).
fn new_token() -> std::io::Result<Token> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Token(b))
}

/// Removes its session (and so its tests) when the control connection ends.
struct SessionGuard<'a> {
    sh: &'a Shared,
    token: Token,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.sh.registry.lock() {
            r.sessions.remove(&self.token);
            r.watched.retain(|w| w.token != self.token);
        }
    }
}

/// Register a session, or say why not.
fn open_session(sh: &Shared, ip: IpAddr) -> Result<(Token, mpsc::Receiver<String>), String> {
    let token = new_token().map_err(|e| format!("no random token: {e}"))?;
    let (tx, rx) = mpsc::channel(RESULT_QUEUE);
    let mut r = sh
        .registry
        .lock()
        .map_err(|_| "internal error".to_string())?;
    if r.sessions.len() >= sh.cfg.max_sessions {
        return Err("too many sessions".into());
    }
    if r.sessions.values().filter(|s| s.ip == ip).count() >= sh.cfg.max_sessions_per_source {
        return Err("too many sessions from this address".into());
    }
    r.sessions.insert(
        token,
        Session {
            ip,
            results: tx,
            tests: 0,
        },
    );
    Ok((token, rx))
}

async fn control(sh: &Shared, mut stream: TcpStream, peer: SocketAddr, _slot: Slot) {
    let ip = peer.ip().to_canonical();
    let (token, mut results) = match open_session(sh, ip) {
        Ok(s) => s,
        Err(why) => {
            sh.log
                .throttled("session", || format!("{peer}: session refused: {why}"));
            let _ = stream.try_write(format!("ERR {why}\n").as_bytes());
            return;
        }
    };
    let _guard = SessionGuard { sh, token };
    let _ = keepalive(&SockRef::from(&stream), 1);
    let write_timeout = Duration::from_secs(10);
    let hello = reverse::session_line(&token);
    if !matches!(
        tokio::time::timeout(write_timeout, stream.write_all(hello.as_bytes())).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let short = token.short();
    sh.log.event(&format!("{peer}: session {short}.. opened"));
    let (mut rd, mut wr) = stream.split();
    let deadline = tokio::time::sleep(sh.cfg.session_timeout);
    tokio::pin!(deadline);
    let mut scratch = [0u8; 64];
    let why = loop {
        tokio::select! {
            _ = &mut deadline => {
                let _ = wr.try_write(b"ERR session deadline reached\n");
                break "deadline reached";
            }
            r = rd.read(&mut scratch) => match r {
                Ok(0) => break "closed by the client",
                Ok(_) => break "client sent data on the control connection",
                Err(_) => break "control connection failed",
            },
            Some(line) = results.recv() => {
                if !matches!(
                    tokio::time::timeout(write_timeout, wr.write_all(line.as_bytes())).await,
                    Ok(Ok(()))
                ) {
                    break "client does not read its results";
                }
            }
        }
    };
    sh.log
        .event(&format!("{peer}: session {short}.. ended: {why}"));
}

/// Hand a test connection to the watcher, or say why not.
fn test(
    sh: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    token: Token,
    rung: u32,
    idle_s: u32,
) -> Result<(), String> {
    let mut r = sh
        .registry
        .lock()
        .map_err(|_| "internal error".to_string())?;
    let Some(s) = r.sessions.get_mut(&token) else {
        return Err("no such session".into());
    };
    if s.ip != peer.ip().to_canonical() {
        return Err(format!(
            "session {}.. belongs to another address",
            token.short()
        ));
    }
    if s.tests >= sh.cfg.max_tests_per_session {
        return Err("too many tests in this session".into());
    }
    let sock = Socket::from(stream.into_std().map_err(|e| e.to_string())?);
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    keepalive(&SockRef::from(&sock), idle_s).map_err(|e| e.to_string())?;
    // The idle clock starts at the last packet received: the TEST line.
    let ago = crate::tcpinfo::tcp_info(&sock)
        .map(|i| i.last_data_recv_ms)
        .unwrap_or(0);
    let now = Instant::now();
    let established = now
        .checked_sub(Duration::from_millis(u64::from(ago)))
        .unwrap_or(now);
    s.tests += 1;
    r.watched.push(Watched {
        token,
        rung,
        idle_s,
        watch: IdleWatch::new(established, idle_s),
        sock,
        _slot: slot,
    });
    Ok(())
}

fn keepalive(sock: &SockRef<'_>, idle: u32) -> std::io::Result<()> {
    sock.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(u64::from(idle.max(1))))
            .with_interval(Duration::from_secs(1))
            .with_retries(5),
    )?;
    sock.set_keepalive(true)
}
