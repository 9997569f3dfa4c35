//! The app host's workload: a real connection pool against the lab database.
//!
//! Connections are TCP sockets created inside the `app` namespace with the socket options under
//! test (SO_KEEPALIVE, TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT, TCP_USER_TIMEOUT). The pool
//! keeps idle connections for `idle_timeout`, retires them at `max_lifetime`, and optionally
//! validates idle ones with a `PING` every `heartbeat` (the runbook's "validation query" fix).
//! Every query and every failure is written to an application log with a timestamp, the
//! connection id, how long the connection had been idle and the exact text the OS gave
//! ("Connection reset by peer (os error 104)").

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Socket options of the workload's connections (lab seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientOptions {
    /// SO_KEEPALIVE
    pub so_keepalive: bool,
    /// TCP_KEEPIDLE, whole seconds (None: the namespace's tcp_keepalive_time)
    pub keepidle_s: Option<u32>,
    /// TCP_KEEPINTVL, whole seconds
    pub keepintvl_s: Option<u32>,
    /// TCP_KEEPCNT
    pub keepcnt: Option<u32>,
    /// TCP_USER_TIMEOUT
    pub user_timeout_ms: Option<u64>,
}

/// Pool behaviour (lab time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// Number of connections the workload uses (the supervisor runs one worker per connection).
    pub size: usize,
    /// Retire connections idle this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Retire connections this old; `None` = never.
    pub max_lifetime: Option<Duration>,
    /// Validation query on idle connections at this interval.
    pub heartbeat: Option<Duration>,
    /// How long a query waits for its answer before the app gives up.
    pub query_timeout: Duration,
    /// How long connecting may take before the app gives up.
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 1,
            idle_timeout: None,
            max_lifetime: None,
            heartbeat: None,
            query_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How a query failed, from the application's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// ECONNRESET / EPIPE
    Reset,
    /// ETIMEDOUT or no answer within the query timeout
    Timeout,
    /// The server closed the connection (EOF)
    Eof,
    /// Connect refused or unreachable
    Connect,
    /// Any other error.
    Other,
}

/// A failed query or connect, as the application saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryError {
    /// How it failed.
    pub kind: FailureKind,
    /// The text the application saw (the OS's message for socket errors).
    pub text: String,
    /// Id of the pooled connection it happened on.
    pub conn: u64,
}

impl QueryError {
    fn from_io(conn: u64, e: &std::io::Error) -> QueryError {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => FailureKind::Reset,
            K::TimedOut => FailureKind::Timeout,
            K::UnexpectedEof => FailureKind::Eof,
            K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable => {
                FailureKind::Connect
            }
            _ => FailureKind::Other,
        };
        QueryError {
            kind,
            text: e.to_string(),
            conn,
        }
    }
}

/// Pool statistics, as shown by `lab status`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolStats {
    /// Connections open now.
    pub open: u64,
    /// Open connections waiting in the pool.
    pub idle: u64,
    /// Connections checked out by the application.
    pub in_use: u64,
    /// Connections opened since the pool started.
    pub opened_total: u64,
    /// Connections dropped after an error.
    pub broken_total: u64,
    /// Connections the pool closed itself (idle timeout or lifetime).
    pub retired_total: u64,
    /// Queries answered.
    pub queries_ok: u64,
    /// Validation queries sent on idle connections.
    pub heartbeats: u64,
}

/// One pooled connection.
pub struct Conn {
    /// Connection id, unique within the pool, from 1.
    pub id: u64,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// When it was connected.
    pub created: Instant,
    /// When it last answered a query (its connect time before that).
    pub last_used: Instant,
    /// The app's address and port.
    pub local: SocketAddr,
    /// The database's address and port.
    pub peer: SocketAddr,
}

/// The application log: timestamped lines, kept in memory and optionally appended to a file.
#[derive(Default)]
pub struct AppLog {
    file: Option<Mutex<std::fs::File>>,
    lines: Mutex<VecDeque<String>>,
}

const LOG_MEMORY: usize = 10_000;

impl AppLog {
    /// A log that also appends every line to `path` (created when missing).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub(crate) fn to_file(path: &std::path::Path) -> std::io::Result<AppLog> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AppLog {
            file: Some(Mutex::new(f)),
            lines: Mutex::default(),
        })
    }

    /// Log `conn=ID event=EVENT rest`.
    pub fn log(&self, conn: u64, event: &str, rest: &str) {
        let line = format!(
            "{} conn={conn} event={event}{}{rest}",
            jiff::Timestamp::now(),
            if rest.is_empty() { "" } else { " " }
        );
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{line}");
        }
        if let Ok(mut l) = self.lines.lock() {
            if l.len() >= LOG_MEMORY {
                l.pop_front();
            }
            l.push_back(line);
        }
    }

    /// The lines kept in memory (the last 10 000), oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A connection pool in the `app` namespace.
pub struct Pool {
    ns: NetNs,
    target: SocketAddr,
    opts: ClientOptions,
    cfg: PoolConfig,
    idle: Mutex<VecDeque<Conn>>,
    next_id: AtomicU64,
    stats: Mutex<PoolStats>,
    /// The application log the pool writes to.
    pub log: Arc<AppLog>,
}

impl Pool {
    /// A pool in namespace `ns` for the server at `target`, with socket options `opts`; it
    /// connects only when asked for a connection.
    pub fn new(
        ns: NetNs,
        target: SocketAddr,
        opts: ClientOptions,
        cfg: PoolConfig,
        log: Arc<AppLog>,
    ) -> Pool {
        Pool {
            ns,
            target,
            opts,
            cfg,
            idle: Mutex::default(),
            next_id: AtomicU64::new(1),
            stats: Mutex::default(),
            log,
        }
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Current statistics (`idle` counted now).
    pub fn stats(&self) -> PoolStats {
        let mut s = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        s.idle = self.idle.lock().map(|q| q.len() as u64).unwrap_or(0);
        s
    }

    fn bump(&self, f: impl FnOnce(&mut PoolStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    fn make_socket(&self) -> std::io::Result<Socket> {
        let domain = if self.target.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let opts = self.opts.clone();
        self.ns
            .run(move || -> std::io::Result<Socket> {
                let s = Socket::new(domain, Type::STREAM, None)?;
                if opts.so_keepalive {
                    let mut ka = TcpKeepalive::new();
                    if let Some(t) = opts.keepidle_s {
                        ka = ka.with_time(Duration::from_secs(u64::from(t)));
                    }
                    if let Some(i) = opts.keepintvl_s {
                        ka = ka.with_interval(Duration::from_secs(u64::from(i)));
                    }
                    if let Some(c) = opts.keepcnt {
                        ka = ka.with_retries(c);
                    }
                    s.set_tcp_keepalive(&ka)?;
                    s.set_keepalive(true)?;
                }
                if let Some(ms) = opts.user_timeout_ms {
                    s.set_tcp_user_timeout(Some(Duration::from_millis(ms)))?;
                }
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    /// Open a new connection.
    pub async fn connect(&self) -> Result<Conn, QueryError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sock = self
            .make_socket()
            .map_err(|e| QueryError::from_io(id, &e))?;
        let tsock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(sock));
        let stream = match tokio::time::timeout(
            self.cfg.connect_timeout,
            tsock.connect(self.target),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let err = QueryError::from_io(id, &e);
                self.log
                    .log(id, "connect-error", &format!("error={:?}", err.text));
                return Err(err);
            }
            Err(_) => {
                let err = QueryError {
                    kind: FailureKind::Timeout,
                    text: "connect timed out".into(),
                    conn: id,
                };
                self.log
                    .log(id, "connect-error", &format!("error={:?}", err.text));
                return Err(err);
            }
        };
        let local = stream
            .local_addr()
            .map_err(|e| QueryError::from_io(id, &e))?;
        let peer = stream
            .peer_addr()
            .map_err(|e| QueryError::from_io(id, &e))?;
        let (r, w) = stream.into_split();
        self.bump(|s| {
            s.open += 1;
            s.opened_total += 1;
        });
        self.log
            .log(id, "connect", &format!("local={local} peer={peer}"));
        let now = Instant::now();
        Ok(Conn {
            id,
            reader: BufReader::new(r),
            writer: w,
            created: now,
            last_used: now,
            local,
            peer,
        })
    }

    /// Take an idle connection (retiring the ones past the pool limits) or open one.
    pub async fn get(&self) -> Result<Conn, QueryError> {
        loop {
            let c = self.idle.lock().ok().and_then(|mut q| q.pop_front());
            match c {
                Some(c) if self.expired(&c) => self.retire(c, "limit"),
                Some(c) => {
                    self.bump(|s| s.in_use += 1);
                    return Ok(c);
                }
                None => {
                    let c = self.connect().await?;
                    self.bump(|s| s.in_use += 1);
                    return Ok(c);
                }
            }
        }
    }

    fn expired(&self, c: &Conn) -> bool {
        self.cfg
            .idle_timeout
            .is_some_and(|t| c.last_used.elapsed() >= t)
            || self
                .cfg
                .max_lifetime
                .is_some_and(|t| c.created.elapsed() >= t)
    }

    fn retire(&self, c: Conn, why: &str) {
        self.log.log(
            c.id,
            "retire",
            &format!(
                "reason={why} age_s={:.3}",
                c.created.elapsed().as_secs_f64()
            ),
        );
        self.bump(|s| {
            s.open = s.open.saturating_sub(1);
            s.retired_total += 1;
        });
    }

    /// Give a healthy connection back.
    pub fn put(&self, c: Conn) {
        self.bump(|s| s.in_use = s.in_use.saturating_sub(1));
        if let Ok(mut q) = self.idle.lock() {
            q.push_back(c);
        }
    }

    /// Throw away a broken connection.
    pub fn discard(&self, c: Conn) {
        self.bump(|s| {
            s.in_use = s.in_use.saturating_sub(1);
            s.open = s.open.saturating_sub(1);
            s.broken_total += 1;
        });
        drop(c);
    }

    /// Send one request and wait for its answer.
    pub async fn query(&self, c: &mut Conn, request: &str) -> Result<String, QueryError> {
        let idle = c.last_used.elapsed().as_secs_f64();
        let event = if request == "PING" {
            "heartbeat"
        } else {
            "query"
        };
        let res = tokio::time::timeout(self.cfg.query_timeout, async {
            c.writer
                .write_all(format!("{request}\n").as_bytes())
                .await?;
            let mut line = String::new();
            let n = c.reader.read_line(&mut line).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "unexpected EOF",
                ));
            }
            Ok(line.trim_end().to_string())
        })
        .await;
        let res = match res {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(QueryError::from_io(c.id, &e)),
            Err(_) => Err(QueryError {
                kind: FailureKind::Timeout,
                text: format!(
                    "no reply within {:.1} s",
                    self.cfg.query_timeout.as_secs_f64()
                ),
                conn: c.id,
            }),
        };
        match &res {
            Ok(_) => {
                c.last_used = Instant::now();
                self.log.log(c.id, event, &format!("ok idle_s={idle:.3}"));
                self.bump(|s| {
                    if event == "query" {
                        s.queries_ok += 1
                    } else {
                        s.heartbeats += 1
                    }
                });
            }
            Err(e) => self.log.log(
                c.id,
                "error",
                &format!("error={:?} idle_s={idle:.3} during={event}", e.text),
            ),
        }
        res
    }

    /// One maintenance pass: retire idle connections past the limits and validate the ones
    /// idle for at least the heartbeat interval. Returns heartbeat failures.
    pub async fn maintain(&self) -> Vec<QueryError> {
        let mut failures = Vec::new();
        let conns: Vec<Conn> = self
            .idle
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default();
        for mut c in conns {
            if self.expired(&c) {
                self.retire(c, "limit");
                continue;
            }
            if self
                .cfg
                .heartbeat
                .is_some_and(|h| c.last_used.elapsed() >= h)
            {
                match self.query(&mut c, "PING").await {
                    Ok(_) => {}
                    Err(e) => {
                        failures.push(e);
                        self.bump(|s| {
                            s.open = s.open.saturating_sub(1);
                            s.broken_total += 1;
                        });
                        continue;
                    }
                }
            }
            if let Ok(mut q) = self.idle.lock() {
                q.push_back(c);
            }
        }
        failures
    }

    /// How often `maintain` should run for this configuration.
    pub fn maintenance_period(&self) -> Duration {
        let mut p = Duration::from_millis(250);
        if let Some(h) = self.cfg.heartbeat {
            p = p.min(h / 4);
        }
        p.max(Duration::from_millis(20))
    }
}
