//! The lab's database server: one line in, one line out.
//!
//! Listens on `[::]:PORT` (dual-stack) inside the `db` namespace. `PING` answers `PONG`, any
//! other line answers `OK <line>`. With an idle-close setting it closes connections that stayed
//! silent that long, as PgBouncer's `server_idle_timeout` or a proxy would. It counts what it
//! saw so the lab can tell whether the database ever learned of a reset.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idlereset_linux::NetNs;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{LabError, Result};

/// Counters of the server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Request lines answered.
    pub requests: AtomicU64,
    /// Connections that ended with an error (e.g. a reset that did reach the database).
    pub errors: AtomicU64,
    /// Connections the server closed after its idle timeout.
    pub idle_closed: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A running server; stops when dropped.
pub struct DbServer {
    /// TCP port the server listens on.
    pub port: u16,
    /// The server's counters, shared with its task.
    pub stats: Arc<ServerStats>,
    task: JoinHandle<()>,
}

impl Drop for DbServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DbServer {
    /// Start listening inside `ns`. Must be called within a tokio runtime.
    pub fn start(ns: &NetNs, port: u16, idle_close: Option<Duration>) -> Result<DbServer> {
        let std_listener = ns
            .run(|| -> std::io::Result<std::net::TcpListener> {
                let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
                s.set_only_v6(false)?;
                s.set_reuse_address(true)?;
                s.bind(
                    &SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)).into(),
                )?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })?
            .map_err(|e| {
                LabError::lab(
                    ns.name(),
                    format!("database server cannot listen on port {port}: {e}"),
                )
            })?;
        let listener = TcpListener::from_std(std_listener)
            .map_err(|e| LabError::lab(ns.name(), format!("listener: {e}")))?;
        let stats = Arc::new(ServerStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::Relaxed);
                st.open.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                tokio::spawn(async move {
                    serve(stream, idle_close, &st).await;
                    st.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(DbServer { port, stats, task })
    }
}

async fn serve(stream: tokio::net::TcpStream, idle_close: Option<Duration>, st: &ServerStats) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    loop {
        let next = match idle_close {
            Some(d) => match tokio::time::timeout(d, lines.next_line()).await {
                Ok(r) => r,
                Err(_) => {
                    st.idle_closed.fetch_add(1, Ordering::Relaxed);
                    let _ = wr.shutdown().await;
                    return;
                }
            },
            None => lines.next_line().await,
        };
        match next {
            Ok(Some(line)) => {
                st.requests.fetch_add(1, Ordering::Relaxed);
                let reply = if line.trim() == "PING" {
                    "PONG\n".to_string()
                } else {
                    format!("OK {}\n", line.trim())
                };
                if wr.write_all(reply.as_bytes()).await.is_err() {
                    st.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Ok(None) => return,
            Err(_) => {
                st.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}
