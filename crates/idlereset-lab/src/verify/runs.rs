//! One `verify` run: a client's connection under one settings variant idles beyond the path's
//! timeout and sends one more query. [`RunCtx::one`] picks how it runs (the real library through
//! its driver, real libpq through `psql`, or the lab's pooled workload with the socket options
//! the settings amount to) and records what the application saw in a [`RunReport`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlereset_core::inventory::Library;
use idlereset_core::scale::TimeScale;

use super::mapping::{Model, Which};
use super::{Drivers, RunReport, psql};
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::postgres::Postgres;
use crate::workload::{AppLog, ClientOptions, FailureKind, Pool, PoolConfig};

/// What every run shares: the lab, the time scale, how long to idle, and which real servers and
/// drivers are there.
pub(super) struct RunCtx<'a> {
    /// The lab's redis-server runs in `db`.
    pub(super) redis: bool,
    /// The lab's gRPC server runs in `db`.
    pub(super) grpc: bool,
    /// The path runs in real time (scale 1).
    pub(super) real_time: bool,
    /// The real drivers found, or why each is missing.
    pub(super) drivers: &'a Drivers,
    pub(super) lab: &'a Lab,
    pub(super) scale: TimeScale,
    /// How long every connection idles, lab time.
    pub(super) idle: Duration,
    /// How long a query waits for its answer before the path counts as a blackhole.
    pub(super) reply_timeout: Duration,
    /// The built-in server's address.
    pub(super) target: SocketAddr,
    /// PostgreSQL and the `psql` that talks to it, when it runs.
    pub(super) pg: Option<(&'a Postgres, &'a std::path::Path)>,
}

impl RunCtx<'_> {
    /// Run one client under one settings variant; a run that fails itself is an `error` outcome.
    pub(super) async fn one(
        &self,
        client: String,
        lib: Library,
        which: Which,
        model: Model,
        defaults: bool,
    ) -> RunReport {
        let mut r = RunReport {
            client,
            library: lib.as_str().into(),
            settings: which,
            outcome: "error".into(),
            idle_s: 0.0,
            error: None,
            detail: String::new(),
            via: "sockets".into(),
            why: String::new(),
            library_version: None,
            retried: None,
            app_log: None,
            sockopts: None,
            model,
        };
        // libpq runs through psql when installed (real libpq, heartbeat queries included).
        let psql_first = lib == Library::Libpq && self.pg.is_some();
        let real = match self
            .real_plan(lib, which, defaults)
            .and_then(|d| {
                if psql_first {
                    Err("psql is installed: real libpq through psql".to_string())
                } else {
                    Ok(d)
                }
            })
            .and_then(|d| self.compiled_fits(lib, &d, &r.model).map(|()| d))
        {
            Ok(d) => Some(d),
            Err(why) => {
                r.why = why;
                None
            }
        };
        let res = match (real, lib, self.pg) {
            (Some(d), _, _) => {
                r.via = format!("real:{}:{}", d.runtime, d.module);
                self.real(&mut r, &d, defaults).await
            }
            (None, Library::Libpq, Some((pg, psql))) => {
                r.via = "psql".into();
                r.why = "real libpq through psql".into();
                self.psql(&mut r, pg, psql).await
            }
            _ => self.pool(&mut r).await,
        };
        if let Err(e) = res {
            r.outcome = "error".into();
            r.error = Some(e.to_string());
        }
        r
    }

    pub(super) fn secs(&self, s: Option<f64>) -> Option<u32> {
        s.map(|s| self.scale.lab_whole_secs(s))
    }

    pub(super) fn dur(&self, s: Option<f64>) -> Option<Duration> {
        s.map(|s| self.scale.lab(s).max(Duration::from_millis(100)))
    }

    pub(super) fn user_timeout(&self, m: &Model) -> Option<u64> {
        m.user_timeout_ms
            .map(|ms| ((ms as f64 / self.scale.factor()) as u64).max(1000))
    }

    async fn psql(&self, r: &mut RunReport, pg: &Postgres, psql: &std::path::Path) -> Result<()> {
        let m = &r.model;
        let mut conninfo = format!(
            "{} connect_timeout=5 application_name=idlereset-verify keepalives={}",
            pg.conninfo(self.target.ip()),
            u8::from(m.so_keepalive)
        );
        for (k, v) in [
            ("keepalives_idle", self.secs(m.keepidle_s)),
            ("keepalives_interval", self.secs(m.keepintvl_s)),
            ("keepalives_count", m.keepcnt),
        ] {
            if let (true, Some(v)) = (m.so_keepalive, v) {
                conninfo.push_str(&format!(" {k}={v}"));
            }
        }
        if let Some(ms) = self.user_timeout(m) {
            conninfo.push_str(&format!(" tcp_user_timeout={ms}"));
        }
        let hb = self.dur(m.heartbeat_s);
        let res = psql::session(
            psql,
            self.lab.ns("app")?,
            &conninfo,
            self.idle,
            hb,
            self.reply_timeout,
        )
        .await?;
        r.idle_s = self.scale.configured(res.idle);
        r.error = res.error.clone();
        r.outcome = if res.survived {
            "survived".into()
        } else if res.hung {
            "blackhole".into()
        } else {
            psql::classify(res.error.as_deref().unwrap_or("")).into()
        };
        r.detail = format!(
            "psql \"{conninfo}\": {}{}",
            if res.survived {
                "select 'after' answered on the same session"
            } else if res.hung {
                "no answer: the query vanished into the path"
            } else {
                "the session broke"
            },
            if res.heartbeats > 0 {
                format!(" ({} heartbeat queries)", res.heartbeats)
            } else {
                String::new()
            }
        );
        Ok(())
    }

    async fn pool(&self, r: &mut RunReport) -> Result<()> {
        let m = &r.model;
        let opts = ClientOptions {
            so_keepalive: m.so_keepalive,
            keepidle_s: self.secs(m.keepidle_s),
            keepintvl_s: self.secs(m.keepintvl_s),
            keepcnt: m.keepcnt,
            user_timeout_ms: self.user_timeout(m),
        };
        let cfg = PoolConfig {
            size: 1,
            idle_timeout: self.dur(m.pool_idle_s),
            max_lifetime: self.dur(m.max_lifetime_s),
            heartbeat: self.dur(m.heartbeat_s),
            query_timeout: self.reply_timeout,
            connect_timeout: Duration::from_secs(5),
        };
        let ns = idlereset_linux::NetNs::open(self.lab.ns("app")?.name())?;
        let pool = Pool::new(ns, self.target, opts, cfg, Arc::new(AppLog::default()));
        let lab = self.lab.name();
        let mut c = pool
            .get()
            .await
            .map_err(|e| LabError::lab(lab, format!("connect: {}", e.text)))?;
        pool.query(&mut c, "BEFORE")
            .await
            .map_err(|e| LabError::lab(lab, format!("first query: {}", e.text)))?;
        let first = c.id;
        pool.put(c);
        let started = Instant::now();
        let mut failure = None;
        while started.elapsed() < self.idle {
            let left = self.idle.saturating_sub(started.elapsed());
            tokio::time::sleep(pool.maintenance_period().min(left)).await;
            if let Some(f) = pool.maintain().await.into_iter().next() {
                failure = Some((f, "heartbeat"));
                break;
            }
        }
        r.idle_s = self.scale.configured(started.elapsed());
        let result = match failure {
            Some(f) => Err(f),
            None => match pool.get().await {
                Ok(mut c) => {
                    let id = c.id;
                    pool.query(&mut c, "AFTER")
                        .await
                        .map(|_| id)
                        .map_err(|e| (e, "query"))
                }
                Err(e) => Err((e, "reconnect")),
            },
        };
        let stats = pool.stats();
        match result {
            Ok(id) => {
                r.outcome = "survived".into();
                r.detail = if id == first {
                    format!(
                        "the same connection answered{}",
                        if stats.heartbeats > 0 {
                            format!(" ({} heartbeats kept it busy)", stats.heartbeats)
                        } else if m.so_keepalive {
                            " (keepalive probes kept the path's state)".into()
                        } else {
                            String::new()
                        }
                    )
                } else {
                    "the pool retired the idle connection before the path cut it and answered on a new one".into()
                };
            }
            Err((e, during)) => {
                r.outcome = match e.kind {
                    FailureKind::Reset => "reset",
                    FailureKind::Timeout => "blackhole",
                    FailureKind::Eof => "closed",
                    FailureKind::Connect | FailureKind::Other => "error",
                }
                .into();
                r.detail = format!("failed during the {during} after idle");
                r.error = Some(e.text);
            }
        }
        Ok(())
    }
}
