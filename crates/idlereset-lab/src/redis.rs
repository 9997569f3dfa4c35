//! A real `redis-server` in the lab's `db` namespace, for the client matrix of `verify`
//! (redis-py, ioredis). No persistence, no protected mode (it listens only on lab addresses),
//! killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;

use crate::error::{LabError, Result};

/// Port of redis-server in the lab.
pub const REDIS_PORT: u16 = 6379;

/// `redis-server` on PATH or in Debian's location.
pub fn find() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A running redis-server.
pub struct Redis {
    child: Child,
}

impl Redis {
    /// Start redis-server inside `ns` (the `db` namespace) and wait until it accepts
    /// connections on `addr`.
    pub fn start(ns: &NetNs, lab: &str, addr: std::net::IpAddr) -> Result<Redis> {
        let bin = find().ok_or_else(|| {
            LabError::lab(lab, "redis-server is not installed; run .ci/install-deps")
        })?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "0.0.0.0 ::",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            // The server's own keepalive (default 300 s) must not keep the flows alive for the
            // client library under test.
            "--tcp-keepalive",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = ns
            .run(move || cmd.spawn())?
            .map_err(|e| LabError::io("run", bin, e))?;
        let r = Redis { child };
        let target = std::net::SocketAddr::new(addr, REDIS_PORT);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let up = ns.run(|| {
                std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::lab(lab, "redis-server not ready after 10 s"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
