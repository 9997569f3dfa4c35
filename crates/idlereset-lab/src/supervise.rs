//! The long-running side of `lab up`: the database server on `db` and the pooled workload on
//! `app`, run by a detached supervisor process until `lab down` (or SIGTERM).
//!
//! The workload runs `pool_size` clients; each takes a connection from the pool, queries, gives
//! it back and waits the scenario's idle gap, so with the default settings the lab keeps
//! producing the incident. Pool statistics go to `<run dir>/pool.json` (read by `lab status`),
//! the application log to `<run dir>/app.log`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::registry;
use crate::scenario::Scenario;
use crate::server::DbServer;
use crate::workload::{AppLog, Pool, PoolStats};

/// What `lab status` shows of a supervised lab's workload.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WorkloadStatus {
    /// The pool's statistics.
    pub pool: PoolStats,
    /// Connections the database server accepted.
    pub db_accepted: u64,
    /// Connections open on the database server now.
    pub db_open: u64,
    /// Request lines the database server answered.
    pub db_requests: u64,
    /// When the status was written, milliseconds since the Unix epoch.
    pub updated_unix_ms: u128,
}

/// Where the supervisor writes the [`WorkloadStatus`] of lab `lab` (`pool.json` in its run
/// directory).
pub(crate) fn pool_file(lab: &str) -> std::path::PathBuf {
    registry::run_dir(lab).join("pool.json")
}

/// Where the supervisor appends lab `lab`'s application log (`app.log` in its run directory).
pub fn app_log_file(lab: &str) -> std::path::PathBuf {
    registry::run_dir(lab).join("app.log")
}

/// Run the lab's server and workload until `shutdown` completes.
pub async fn run(
    lab: &Lab,
    sc: &Scenario,
    pool_size: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let scale = sc.scale()?;
    let dir = registry::run_dir(lab.name());
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("create", &dir, e))?;
    let server = DbServer::start(
        lab.ns("db")?,
        sc.port,
        sc.server_idle_close_s.map(|s| scale.lab(s)),
    )?;
    let log_path = app_log_file(lab.name());
    let log = Arc::new(AppLog::to_file(&log_path).map_err(|e| LabError::io("open", &log_path, e))?);
    let mut cfg = sc.pool_config()?;
    cfg.size = pool_size.max(1);
    let target = SocketAddr::new(lab.topology().db_addr(sc.ipv6), sc.port);
    let pool = Arc::new(Pool::new(
        idlereset_linux::NetNs::open(lab.ns("app")?.name())?,
        target,
        sc.client_options()?,
        cfg,
        log,
    ));
    let idle = sc.lab_idle()?.max(Duration::from_millis(100));
    let mut tasks = Vec::new();
    for i in 0..pool_size.max(1) {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            // Stagger the clients so their idle gaps do not line up.
            tokio::time::sleep(idle.mul_f64(i as f64 / pool.config().size as f64)).await;
            loop {
                match pool.get().await {
                    Ok(mut c) => match pool.query(&mut c, "SELECT 1").await {
                        Ok(_) => pool.put(c),
                        Err(_) => pool.discard(c),
                    },
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
                tokio::time::sleep(idle).await;
            }
        }));
    }
    {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(pool.maintenance_period()).await;
                pool.maintain().await;
            }
        }));
    }
    let stats_path = pool_file(lab.name());
    let writer = async {
        loop {
            let st = WorkloadStatus {
                pool: pool.stats(),
                db_accepted: server
                    .stats
                    .accepted
                    .load(std::sync::atomic::Ordering::Relaxed),
                db_open: server.stats.open.load(std::sync::atomic::Ordering::Relaxed),
                db_requests: server
                    .stats
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed),
                updated_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
            };
            if let Ok(body) = serde_json::to_vec(&st) {
                let tmp = stats_path.with_extension("json.tmp");
                if std::fs::write(&tmp, body).is_ok() {
                    let _ = std::fs::rename(&tmp, &stats_path);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = writer => {}
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Read the workload status a supervisor wrote.
pub fn read_status(lab: &str) -> Option<WorkloadStatus> {
    let body = std::fs::read(pool_file(lab)).ok()?;
    serde_json::from_slice(&body).ok()
}
