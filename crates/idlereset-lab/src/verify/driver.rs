//! The real client library in the lab: a small driver program per library (Python, Node, Java,
//! Go; the last two compiled first, see `compiled`) runs in the `app` namespace against a real
//! server in `db`, holds one connection idle and reports what the library did.
//!
//! Which program runs a library is the `driver` field of its row in the library data
//! (`python:psycopg2`, `node:pg`, ...). A driver runs only when its runtime and the library are
//! installed (`.ci/install-deps`); `availability` says why not otherwise, and `verify` falls
//! back to the socket-level model. Settings are passed in the library's own terms, with
//! durations already scaled to the lab; `{}` runs the library's own defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use idlereset_core::libraries::LibraryData;
use idlereset_linux::NetNs;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::error::{LabError, Result};
use crate::verify::compiled;
use crate::verify::mapping::Model;

/// Where the driver programs live (`IDLERESET_DRIVERS_DIR` overrides the source tree's).
pub fn drivers_dir() -> PathBuf {
    std::env::var_os("IDLERESET_DRIVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/drivers")))
}

/// A driver program for one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// `python`, `node`, `java` or `go`.
    pub runtime: String,
    /// The module the driver loads (`psycopg2`, `redis`, `pg`, `ioredis`, `pgjdbc`,
    /// `hikaricp`, `lib-pq`, `pgx`).
    pub module: String,
}

impl Driver {
    /// The driver named in a library's data row.
    pub fn of(lib: &LibraryData) -> Option<Driver> {
        let (runtime, module) = lib.driver.as_deref()?.split_once(':')?;
        Some(Driver {
            runtime: runtime.into(),
            module: module.into(),
        })
    }

    /// The program, the arguments before the driver's own, and the file that names it in
    /// errors (the script, or the compiled driver's program).
    fn command(&self) -> (PathBuf, Vec<std::ffi::OsString>, PathBuf) {
        let dir = drivers_dir();
        if let Some(p) = compiled::prepared(&self.runtime) {
            return (p.program.clone(), p.args.clone(), p.program.clone());
        }
        let script = match self.runtime.as_str() {
            "node" => dir.join("node/driver.js"),
            "java" => dir.join("java/Driver.java"),
            "go" => dir.join("go/driver.go"),
            _ => dir.join("python/driver.py"),
        };
        let bin = match self.runtime.as_str() {
            "node" => "node",
            _ => "python3",
        };
        (bin.into(), vec![script.clone().into()], script)
    }

    fn base(&self) -> tokio::process::Command {
        let (bin, args, _) = self.command();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args);
        cmd.env("NODE_PATH", drivers_dir().join("node/node_modules"));
        cmd
    }

    /// `Ok(())` when the runtime and the library load here; otherwise why not.
    pub async fn availability(&self) -> std::result::Result<(), String> {
        if compiled::is_compiled(&self.runtime) {
            // Compiling against the installed libraries is the check that they load.
            return compiled::prepare(&self.runtime).await.map(|_| ());
        }
        let (bin, _, script) = self.command();
        if !script.is_file() {
            return Err(format!("driver {} not found", script.display()));
        }
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env("NODE_PATH", drivers_dir().join("node/node_modules"));
        match self.runtime.as_str() {
            "node" => cmd.args(["-e", &format!("require('{}')", self.module)]),
            _ => cmd.args(["-c", &format!("import {}", self.module)]),
        };
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match out {
            Ok(s) if s.success() => Ok(()),
            Ok(_) => Err(format!(
                "{} module {:?} is not installed (run .ci/install-deps)",
                self.runtime, self.module
            )),
            Err(_) => Err(format!("{} is not installed", self.runtime)),
        }
    }
}

/// One line the driver prints.
#[derive(Debug, Clone, Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    retried: Option<bool>,
    /// A new connection answered (pool retirement or a hidden reset; `retried` says which).
    #[serde(default)]
    replaced: Option<bool>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    wrapper: Option<String>,
    #[serde(default)]
    local_port: Option<u16>,
}

/// The socket options of the real connection, read back over sock_diag in the `app` namespace
/// shortly after the first query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SockReadback {
    /// SO_KEEPALIVE as the keepalive timer shows it; `None` = another timer hid it.
    pub so_keepalive: Option<bool>,
    /// Effective TCP_KEEPIDLE estimated from the pending keepalive timer, seconds.
    pub keepidle_s: Option<f64>,
}

/// Read back the connection from `local_port` in `ns`.
fn readback(ns: &NetNs, local_port: u16) -> Option<SockReadback> {
    use idlereset_linux::sockdiag::{TcpFilter, dump_tcp};
    let mut found = None;
    ns.run(|| {
        dump_tcp(TcpFilter::established(), |s| {
            if s.local.port() == local_port {
                found = Some(SockReadback {
                    so_keepalive: s.keepalive_known(),
                    keepidle_s: s.keepalive_idle_estimate_ms().map(|ms| ms as f64 / 1000.0),
                });
            }
        })
    })
    .ok()?
    .ok()?;
    found
}

/// What a real run saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverResult {
    /// The connection answered the query after the idle time.
    pub survived: bool,
    /// The library answered after replacing the connection (retry / reconnect hid a reset).
    pub retried: bool,
    /// A new connection answered although no reset was hidden: the pool retired the idle one
    /// (its idle timeout or lifetime).
    pub replaced: bool,
    /// The error text the library reported, if any.
    pub error: Option<String>,
    /// Library version as the driver read it.
    pub version: Option<String>,
    /// The application log the driver wrote (stderr).
    pub app_log: String,
    /// The connection's socket options read back over sock_diag.
    pub sockopts: Option<SockReadback>,
}

/// Run `driver` in `ns` against `target` (JSON for the driver), idle `idle`.
pub async fn run(
    driver: &Driver,
    ns: &NetNs,
    target: &serde_json::Value,
    idle: Duration,
    settings: &BTreeMap<String, serde_json::Value>,
) -> Result<DriverResult> {
    let (_, _, script) = driver.command();
    let mut cmd = driver.base();
    cmd.arg(&driver.module)
        .arg(target.to_string())
        .arg(format!("{:.3}", idle.as_secs_f64()))
        .arg(serde_json::to_string(settings).unwrap_or_else(|_| "{}".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = super::psql::spawn_in(ns, cmd, &script)?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(LabError::Config("driver pipes missing".into()));
    };
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(stdout).lines();
    let deadline = idle + Duration::from_secs(60);
    let mut version = None;
    let mut result = None;
    let mut sockopts = None;
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(ev) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            match ev.event.as_str() {
                "connected" => {
                    version = match (ev.version, ev.wrapper) {
                        (Some(v), Some(w)) => Some(format!("{v} ({w})")),
                        (v, _) => v,
                    };
                    if let Some(port) = ev.local_port {
                        // Let the keepalive timer settle after the first query's ACKs.
                        tokio::time::sleep(Duration::from_millis(500).min(idle / 4)).await;
                        sockopts = readback(ns, port);
                    }
                }
                "result" => result = Some(ev),
                _ => {}
            }
        }
    };
    let timed_out = tokio::time::timeout(deadline, read).await.is_err();
    let _ = child.start_kill();
    let _ = child.wait().await;
    let app_log = err_task.await.unwrap_or_default();
    let Some(ev) = result else {
        let tail: String = app_log
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(LabError::Config(format!(
            "driver {} {} gave no result{}: {tail}",
            driver.runtime,
            driver.module,
            if timed_out { " (timed out)" } else { "" }
        )));
    };
    Ok(DriverResult {
        survived: ev.outcome.as_deref() == Some("survived"),
        retried: ev.retried.unwrap_or(false),
        replaced: ev.replaced.unwrap_or(false) && !ev.retried.unwrap_or(false),
        error: ev.error,
        version,
        app_log,
        sockopts,
    })
}

/// Settings in the library's own terms for a model, durations divided by `scale`
/// (`explicit` = only what the model was asked to set; the rest stays the library's default).
pub fn settings(
    module: &str,
    m: &Model,
    scale: &dyn Fn(f64) -> u64,
) -> BTreeMap<String, serde_json::Value> {
    use serde_json::Value as J;
    let mut s = BTreeMap::new();
    let mut put = |k: &str, v: J| {
        s.insert(k.to_string(), v);
    };
    let secs = |x: Option<f64>| x.map(scale);
    match module {
        "psycopg2" => {
            put("keepalives", J::from(u8::from(m.so_keepalive)));
            for (k, v) in [
                ("keepalives_idle", secs(m.keepidle_s)),
                ("keepalives_interval", secs(m.keepintvl_s)),
                ("keepalives_count", m.keepcnt.map(u64::from)),
            ] {
                if let (true, Some(v)) = (m.so_keepalive, v) {
                    put(k, J::from(v));
                }
            }
            if let Some(ms) = m.user_timeout_ms {
                put(
                    "tcp_user_timeout",
                    J::from(scale(ms as f64 / 1000.0) * 1000),
                );
            }
        }
        "redis" => {
            put("socket_keepalive", J::from(m.so_keepalive));
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("TCP_KEEPIDLE", secs(m.keepidle_s)),
                ("TCP_KEEPINTVL", secs(m.keepintvl_s)),
                ("TCP_KEEPCNT", m.keepcnt.map(u64::from)),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), J::from(v));
                }
            }
            if m.so_keepalive && !o.is_empty() {
                put("socket_keepalive_options", J::Object(o));
            }
            if let Some(h) = secs(m.heartbeat_s) {
                put("health_check_interval", J::from(h));
            }
        }
        "pg" => {
            put("keepAlive", J::from(m.so_keepalive));
            if let (true, Some(v)) = (m.so_keepalive, secs(m.keepidle_s)) {
                put("keepAliveInitialDelayMillis", J::from(v * 1000));
            }
        }
        "grpc" => {
            // grpcio's channel arguments as `plan` writes them: HTTP/2 PINGs at the heartbeat,
            // also without calls, never capped by a ping budget. C-core keeps no TCP keepalive
            // of its own, so a socket-level keepalive has no grpcio argument to map to.
            if let Some(h) = m.heartbeat_s {
                let ms = (scale(h) * 1000).max(1000);
                put("grpc.keepalive_time_ms", J::from(ms));
                put("grpc.keepalive_timeout_ms", J::from(20_000u64));
                put("grpc.keepalive_permit_without_calls", J::from(1u8));
                put("grpc.http2.max_pings_without_data", J::from(0u8));
            }
        }
        "ioredis" => {
            if m.so_keepalive {
                put("keepAlive", J::from(secs(m.keepidle_s).unwrap_or(0) * 1000));
            } else {
                put("keepAlive", J::Null);
            }
        }
        other => s.extend(compiled::settings(other, m, scale)),
    }
    s
}
