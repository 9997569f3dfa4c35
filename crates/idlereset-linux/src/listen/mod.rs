//! `idlereset listen PORT`: the cooperating responder for `probe --reverse`, a server meant to
//! face the network.
//!
//! Reverse mode measures the server-to-client direction (what a server push or an inbound
//! packet through a NAT sees after idle): the *listener* arms TCP keepalive on each test
//! connection with the idle duration the client asked for, watches it exactly like the forward
//! engine, and reports each result on the client's control connection. The wire protocol is
//! pure and lives in [`idlereset_core::reverse`].
//!
//! What a stranger can make it do is bounded (each bound is a [`ListenConfig`] field):
//! - one tokio runtime, no thread per connection; connections counted globally and per source
//!   address, refused (closed at once) beyond the caps; `--allow` networks filter before that;
//! - a first line of at most [`MAX_LINE`] bytes within `line_timeout` (a deadline for the whole
//!   line, not per read), so a slow sender is cut after 5 s whatever its pace;
//! - sessions limited in number and lifetime; tokens of 128 bits from the kernel's CSPRNG;
//!   test connections accepted only with a live token and from the control connection's
//!   source address;
//! - accept errors (EMFILE, ENFILE, ENOBUFS) back off and are logged once per burst; every log
//!   line about a stranger is throttled and shows at most 32 escaped bytes of what it sent.

mod session;
mod watch;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idlereset_core::reverse::MAX_LINE;
use socket2::Socket;

use crate::error::{LinuxError, Result};

pub use idlereset_core::reverse::parse_result;

use crate::admission::{self, Admission, Caps, Throttle};

/// Limits of a listener. [`Default`] is what `idlereset listen` uses.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Networks allowed to connect; empty: everyone.
    pub allow: Vec<ipnet::IpNet>,
    /// Open connections at most (also capped below the process's file descriptor limit).
    pub max_connections: usize,
    /// Open connections from one source address at most.
    pub max_per_source: usize,
    /// Connections from one source address still sending their first line, at most.
    pub max_pending_per_source: usize,
    /// Concurrent sessions (control connections) at most.
    pub max_sessions: usize,
    /// Concurrent sessions from one source address at most.
    pub max_sessions_per_source: usize,
    /// Concurrent test connections in one session at most.
    pub max_tests_per_session: usize,
    /// Time for a new connection to send its whole first line.
    pub line_timeout: Duration,
    /// Lifetime of a session; its tests end with it.
    pub session_timeout: Duration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            allow: Vec::new(),
            max_connections: 1024,
            max_per_source: 600,
            max_pending_per_source: 32,
            max_sessions: 64,
            max_sessions_per_source: 4,
            max_tests_per_session: 512,
            line_timeout: Duration::from_secs(5),
            // Longer than the longest rung (TCP_KEEPIDLE max 32767 s, plus timer-wheel slack).
            session_timeout: Duration::from_secs(12 * 3600),
        }
    }
}

/// State shared by the accept loop, the connection tasks and the watcher.
struct Shared {
    cfg: ListenConfig,
    registry: Mutex<session::Registry>,
    admission: Admission,
    log: Log,
}

type OnEvent = dyn Fn(&str) + Send + Sync;

/// The event sink with per-kind throttles for what strangers can trigger.
struct Log {
    on_event: Box<OnEvent>,
    throttles: Mutex<std::collections::HashMap<&'static str, Throttle>>,
}

impl Log {
    fn event(&self, msg: &str) {
        (self.on_event)(msg);
    }

    /// Log `msg` unless a message of this `kind` went out in the last 10 s; then the next one
    /// says how many were suppressed.
    fn throttled(&self, kind: &'static str, msg: impl FnOnce() -> String) {
        let suppressed = match self.throttles.lock() {
            Ok(mut t) => t.entry(kind).or_default().hit(std::time::Instant::now()),
            Err(_) => return,
        };
        if let Some(n) = suppressed {
            let tail = match n {
                0 => String::new(),
                n => format!(" ({n} more like this since the last notice)"),
            };
            (self.on_event)(&format!("{}{tail}", msg()));
        }
    }
}

/// Serve with the default limits until the process ends (a blocking call: it runs its own
/// tokio runtime). `on_event` gets one line per session, result and (throttled) refusal.
pub fn serve(listener: TcpListener, on_event: impl Fn(&str) + Send + Sync + 'static) -> Result<()> {
    serve_with(listener, ListenConfig::default(), on_event)
}

/// [`serve`] with explicit limits.
pub fn serve_with(
    listener: TcpListener,
    cfg: ListenConfig,
    on_event: impl Fn(&str) + Send + Sync + 'static,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LinuxError::socket("start runtime", "listen", e))?;
    rt.block_on(serve_async(listener, cfg, Box::new(on_event)))
}

/// The accept loop, on the caller's tokio runtime.
pub async fn serve_async(
    listener: TcpListener,
    mut cfg: ListenConfig,
    on_event: Box<OnEvent>,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .map_err(|e| LinuxError::socket("configure", "listen", e))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| LinuxError::socket("register", "listen", e))?;
    let fd_cap = admission::raise_fd_limit().saturating_sub(64) as usize;
    if fd_cap < cfg.max_connections {
        on_event(&format!(
            "at most {fd_cap} connections (file descriptor limit), not {}",
            cfg.max_connections
        ));
        cfg.max_connections = fd_cap.max(1);
    }
    on_event(&format!(
        "accepting at most {} connections ({} per address), first line within {} s, sessions up to {} s{}",
        cfg.max_connections,
        cfg.max_per_source,
        cfg.line_timeout.as_secs_f64(),
        cfg.session_timeout.as_secs(),
        if cfg.allow.is_empty() {
            String::new()
        } else {
            format!(", only from {} network(s)", cfg.allow.len())
        }
    ));
    let shared = Arc::new(Shared {
        admission: Admission::new(Caps {
            max_connections: cfg.max_connections,
            max_per_source: cfg.max_per_source,
            max_pending_per_source: cfg.max_pending_per_source,
        }),
        registry: Mutex::new(session::Registry::default()),
        log: Log {
            on_event,
            throttles: Mutex::default(),
        },
        cfg,
    });
    tokio::spawn(watch::run(shared.clone()));
    let mut backoff = admission::Backoff::default();
    loop {
        let log = |m: &str| shared.log.event(m);
        let (stream, peer) = admission::accept(&listener, &mut backoff, &log).await;
        admit(&shared, stream, peer);
    }
}

/// Allow-list and connection caps; a connection within them gets its own task.
fn admit(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let ip: IpAddr = peer.ip().to_canonical();
    if !idlereset_core::reverse::allowed(&shared.cfg.allow, ip) {
        shared.log.throttled("allow", || {
            format!("{peer}: refused: not in the --allow networks")
        });
        return;
    }
    let Some(slot) = shared.admission.admit(ip) else {
        shared.log.throttled("limit", || {
            format!("{peer}: refused: connection limit reached")
        });
        return;
    };
    tokio::spawn(session::connection(shared.clone(), stream, peer, slot));
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

/// Read one line of at most [`MAX_LINE`] bytes (newline included). Returns what was read when
/// the line is too long (the parser refuses it), an error at EOF before a newline.
async fn read_line(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; MAX_LINE + 1];
    let mut n = 0;
    loop {
        let got = s.read(&mut buf[n..]).await?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {n} bytes without a newline"),
            ));
        }
        if let Some(i) = buf[n..n + got].iter().position(|&b| b == b'\n') {
            return Ok(buf[..n + i + 1].to_vec());
        }
        n += got;
        if n == buf.len() {
            return Ok(buf.to_vec());
        }
    }
}
