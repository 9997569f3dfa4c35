//! `verify`: prove a plan on the real kernel instead of trusting the arithmetic.
//!
//! [`run`] builds the inventory's path as a lab: every hop that honours TCP keepalives (firewall,
//! NAT, load balancer) becomes a Linux conntrack firewall of its own (the first ones on routers
//! `r1..rN`, the last on `fw`), with its idle timeout as `nf_conntrack_tcp_timeout_established`
//! and its failure as the nftables profile (`drop` -> silent drop, anything else -> TCP reset
//! from the firewall). A hop that ignores keepalives (an L7 proxy) cannot be built from
//! conntrack, which keepalive probes always refresh; it is modelled at the server end by an
//! idle close that only application traffic resets: the built-in server's idle close and
//! PostgreSQL's `idle_session_timeout`. Every duration is divided by one time scale so the
//! path timeout lasts a few lab seconds.
//!
//! Then, for every client, one connection per settings variant (planned, current, and the
//! runbook's "OS sysctl only" trap for clients without SO_KEEPALIVE) idles well beyond every
//! hop's timeout and sends one more query. Libraries with a driver program (see [`driver`];
//! psycopg2, redis-py, node-postgres, ioredis, PgJDBC, HikariCP, Go lib/pq, pgx) run for real
//! against PostgreSQL / redis-server when installed, libpq runs the real `psql`; the others run the lab's pooled workload with the
//! socket options and pool limits their settings amount to (see [`mapping`]). A library whose
//! defaults are timed in its own code cannot be time-scaled: paths up to [`REAL_TIME_MAX_S`] then
//! run in real time. All runs share the lab and run concurrently, each on its own flow.

mod compiled;
pub mod driver;
pub mod mapping;
pub mod psql;
mod real;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlereset_core::catalog::Failure;
use idlereset_core::inventory::{Current, Hop, HopKind, Inventory, IpVersion, Library};
use idlereset_core::libraries::Libraries;
use idlereset_core::plan::Plan;
use idlereset_core::plan::clients::ClientPlan;
use idlereset_core::scale::TimeScale;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::firewall::{FirewallSettings, Profile};
use crate::grpc::GrpcServer;
use crate::lab::{Lab, LabSpec};
use crate::postgres::{self, PgOptions, Postgres};
use crate::redis::{self as redis_server, Redis};
use crate::registry::Ownership;
use crate::server::DbServer;
use crate::workload::{AppLog, ClientOptions, FailureKind, Pool, PoolConfig};
use driver::Driver;
use mapping::{Model, Which};

/// Port of the built-in line-protocol server during `verify` (PostgreSQL keeps 5432).
pub const BUILTIN_PORT: u16 = 5433;
/// Port of PostgreSQL in the lab.
pub const PG_PORT: u16 = 5432;
/// Longest path timeout run in real time so library defaults (fixed in their code, not
/// scalable) can be run as they are.
pub const REAL_TIME_MAX_S: f64 = 120.0;
/// The kernel's default established timeout, for a path with no conntrack hop.
const KERNEL_DEFAULT_S: u32 = 432_000;

/// Which database the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Db {
    /// PostgreSQL when installed, else the built-in server only.
    Auto,
    /// The lab's built-in line-protocol server only.
    Builtin,
    /// PostgreSQL required (error when missing).
    Postgres,
}

/// Knobs of a [`run`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this client.
    pub client: Option<String>,
    /// The path timeout in lab seconds (sets the time scale).
    pub lab_path_timeout_s: u32,
    /// Which database server the runs talk to.
    pub db: Db,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client: None,
            lab_path_timeout_s: 4,
            db: Db::Auto,
        }
    }
}

/// How one inventory hop was built.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    /// The hop's name in the inventory.
    pub name: String,
    /// The hop's idle timeout, configured seconds.
    pub timeout_s: f64,
    /// The same timeout in the lab, whole lab seconds.
    pub lab_timeout_s: u32,
    /// `r1`, `fw` or `db` (proxy idle close).
    pub host: String,
    /// How the lab built the hop (conntrack timeout and nftables profile, or server idle close).
    pub modelled_as: String,
}

/// One run: a client, a settings variant, and what happened to its idle connection.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The client's name in the inventory.
    pub client: String,
    /// The library the client uses.
    pub library: String,
    /// Which settings the run applied.
    pub settings: Which,
    /// `survived`, `reset`, `blackhole`, `closed`, or `error` (the run itself failed).
    pub outcome: String,
    /// Idle without application queries, in configured seconds.
    pub idle_s: f64,
    /// The error text: what the application saw, or why the run itself failed.
    pub error: Option<String>,
    /// What happened, in one line.
    pub detail: String,
    /// `real:<runtime>:<module>` (the real library through its driver), `psql` (real libpq
    /// against PostgreSQL) or `sockets` (the socket-level model, lab workload).
    pub via: String,
    /// Why this run used the real library or the model.
    #[serde(default)]
    pub why: String,
    /// Version of the real library that ran.
    pub library_version: Option<String>,
    /// The real library answered only after replacing the connection (retry / reconnect hid
    /// a reset from the application).
    pub retried: Option<bool>,
    /// What the real run's application logged (stderr of the driver).
    pub app_log: Option<String>,
    /// Real runs: the connection's socket options read back over sock_diag.
    pub sockopts: Option<driver::SockReadback>,
    /// The socket options and pool limits the run amounts to.
    pub model: Model,
}

impl RunReport {
    /// Whether the settings kept the flow alive: the same connection answered after the idle,
    /// or the pool retired it before the path cut it. A survival only through a retry, a
    /// reconnect or validation on borrow hid a reset from the application but did not keep the
    /// flow alive, so it does not verify a plan.
    pub fn kept_alive(&self) -> bool {
        self.outcome == "survived" && self.retried != Some(true)
    }
}

/// What [`run`] proved: how the path was built and what every run's idle connection did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The inventory's `name` (the path's description).
    pub path: Option<String>,
    /// Configured seconds per lab second (1 when run in real time).
    pub time_scale: f64,
    /// The plan's path timeout, configured seconds.
    pub path_timeout_s: f64,
    /// The path timeout in the lab, whole lab seconds.
    pub lab_path_timeout_s: u32,
    /// How long every connection idled, lab seconds.
    pub lab_idle_s: f64,
    /// `postgres` or `builtin`.
    pub db: String,
    /// How each inventory hop was built.
    pub hops: Vec<HopReport>,
    /// Every run, one per client and settings variant.
    pub runs: Vec<RunReport>,
    /// Every planned run survived.
    pub verified: bool,
    /// Caveats of this verification (real time, hops modelled at the server, PostgreSQL missing).
    pub notes: Vec<String>,
}

fn failure_name(f: Failure) -> &'static str {
    match f {
        Failure::Reset => "reset",
        Failure::Drop => "drop",
        Failure::Fin => "fin, built as reset: conntrack cannot send a FIN",
        Failure::None => "none, built as reset",
        Failure::Unknown => "unknown, built as reset",
    }
}

fn profile(h: &Hop) -> Profile {
    match (h.failure, h.kind) {
        (Failure::Drop, _) => Profile::Drop,
        (_, HopKind::Nat) => Profile::Nat,
        _ => Profile::Reject,
    }
}

/// The lab path for an inventory: spec, hop reports, and the proxy idle close (lab seconds).
pub fn path(inv: &Inventory, scale: TimeScale) -> (LabSpec, Vec<HopReport>, Option<u32>) {
    let ct: Vec<&Hop> = inv.hops.iter().filter(|h| h.honours_keepalive).collect();
    let mut reports = Vec::new();
    let mut fws = Vec::new();
    for (i, h) in ct.iter().enumerate() {
        let lab_s = scale.lab_whole_secs(h.idle_timeout_s);
        let p = profile(h);
        let mut fw = FirewallSettings::new(p, lab_s);
        // A silently dropping middlebox drops everything of a flow it forgot, the far end's
        // FIN and RST included; conntrack classifies those as INVALID (not NEW), so without
        // this they would pass and tell the client what the middlebox never would.
        fw.drop_invalid = p == Profile::Drop;
        fws.push(fw);
        let host = if i + 1 == ct.len() {
            "fw".to_string()
        } else {
            format!("r{}", i + 1)
        };
        reports.push(HopReport {
            name: h.name.clone(),
            timeout_s: h.idle_timeout_s,
            lab_timeout_s: lab_s,
            host,
            modelled_as: format!(
                "conntrack established timeout {lab_s} s, nftables profile {} (failure: {})",
                p.name(),
                failure_name(h.failure)
            ),
        });
    }
    let proxy = inv
        .hops
        .iter()
        .filter(|h| !h.honours_keepalive)
        .min_by(|a, b| a.idle_timeout_s.total_cmp(&b.idle_timeout_s));
    let proxy_lab = proxy.map(|h| scale.lab_whole_secs(h.idle_timeout_s));
    for h in inv.hops.iter().filter(|h| !h.honours_keepalive) {
        let lab_s = scale.lab_whole_secs(h.idle_timeout_s);
        reports.push(HopReport {
            name: h.name.clone(),
            timeout_s: h.idle_timeout_s,
            lab_timeout_s: lab_s,
            host: "db".into(),
            modelled_as: format!(
                "ignores keepalives: idle close after {} s at the server end (built-in server idle close / PostgreSQL idle_session_timeout), reset only by application traffic",
                proxy_lab.unwrap_or(lab_s)
            ),
        });
    }
    let firewall = fws
        .pop()
        .unwrap_or_else(|| FirewallSettings::new(Profile::Reject, KERNEL_DEFAULT_S));
    let spec = LabSpec {
        hops: fws.len() as u8,
        firewall,
        app_sysctls: Vec::new(),
        router_firewalls: fws,
    };
    (spec, reports, proxy_lab)
}

type Drivers = std::collections::HashMap<Library, std::result::Result<Driver, String>>;

/// One planned run: client name, library, which settings, the model, whether they are defaults.
type Job = (String, Library, Which, Model, bool);

/// Verify `plan` (computed from `inv`) in a fresh lab.
pub async fn run(
    inv: &Inventory,
    plan: &Plan,
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Report> {
    if inv.hops.iter().filter(|h| h.honours_keepalive).count() > 20 {
        return Err(LabError::Config("more than 20 hops".into()));
    }
    let drivers = real::available_drivers(plan, opts).await;
    let (real_time, factor, scale) = timing(plan, opts, &drivers)?;
    let (spec, hops, proxy_lab) = scaled_path(inv, plan, scale);
    let longest = hops
        .iter()
        .map(|h| h.lab_timeout_s)
        .max()
        .unwrap_or(opts.lab_path_timeout_s);
    let idle = Duration::from_secs_f64(f64::from(longest) * 1.25 + 1.0);
    let reply_timeout = Duration::from_secs(u64::from(opts.lab_path_timeout_s.clamp(2, 5)));
    let clients = selected_clients(plan, opts)?;
    progress(&format!(
        "building the path: {} conntrack hop(s), time scale {factor:.1}",
        hops.iter().filter(|h| h.host != "db").count()
    ));
    let lab = Lab::create(spec, None, Ownership::Foreground).await?;
    let idle_close = proxy_lab.map(|s| Duration::from_secs(u64::from(s)));
    let server = DbServer::start(lab.ns("db")?, BUILTIN_PORT, idle_close)?;
    let mut notes = Vec::new();
    let dbs = Databases::start(
        &lab, inv, opts, &clients, &drivers, idle_close, &mut notes, progress,
    )?;
    let ctx = RunCtx {
        lab: &lab,
        scale,
        idle,
        reply_timeout,
        target: SocketAddr::new(dbs.db_addr, BUILTIN_PORT),
        pg: dbs.pg.as_ref().map(|(p, psql)| (p, psql.as_path())),
        redis: dbs.redis.is_some(),
        grpc: dbs.grpc.is_some(),
        real_time,
        drivers: &drivers,
    };
    let jobs = jobs(inv, plan, &clients);
    progress(&format!(
        "{} run(s) in parallel, each idle {:.1} lab s (= {:.0} s) beyond the path timeout {} lab s",
        jobs.len(),
        idle.as_secs_f64(),
        scale.configured(idle),
        scale.lab_whole_secs(plan.path_timeout_s)
    ));
    let runs = futures::future::join_all(
        jobs.into_iter()
            .map(|(name, lib, which, model, defaults)| ctx.one(name, lib, which, model, defaults)),
    )
    .await;
    let db = if ctx.pg.is_some() {
        "postgres"
    } else {
        "builtin"
    };
    drop(server);
    drop(dbs);
    closing_notes(&mut notes, real_time, plan, proxy_lab.is_some());
    notes.extend(real::version_notes(plan, &runs));
    let verified = runs
        .iter()
        .filter(|r| r.settings == Which::Planned)
        .all(RunReport::kept_alive);
    Ok(Report {
        path: inv.name.clone(),
        time_scale: factor,
        path_timeout_s: plan.path_timeout_s,
        lab_path_timeout_s: scale.lab_whole_secs(plan.path_timeout_s),
        lab_idle_s: idle.as_secs_f64(),
        db: db.into(),
        hops,
        runs,
        verified,
        notes,
    })
}

/// The notes on how the runs were made (real time, hops modelled at the server).
fn closing_notes(notes: &mut Vec<String>, real_time: bool, plan: &Plan, proxy: bool) {
    if real_time {
        notes.push(format!(
            "run in real time (time scale 1): the path timeout {} s is short enough to run library defaults as they are (fixed in the libraries' code, they cannot be time-scaled)",
            plan.path_timeout_s
        ));
    }
    if proxy {
        notes.push("hops that ignore keepalives are modelled at the server end (the lab has no L7 proxy); their position on the path does not change the outcome".into());
    }
}

/// Real time (scale 1) only when a library whose defaults are timed in its own code will run
/// for real and the path is short enough; otherwise the path timeout scaled to the lab's.
fn timing(plan: &Plan, opts: &Options, drivers: &Drivers) -> Result<(bool, f64, TimeScale)> {
    let real_time = plan.path_timeout_s <= REAL_TIME_MAX_S
        && drivers.iter().any(|(l, d)| {
            d.is_ok() && real::fixed_timing(Libraries::builtin().profile(*l, None).behaviour)
        });
    let factor = if real_time {
        1.0
    } else {
        (plan.path_timeout_s / f64::from(opts.lab_path_timeout_s.max(1))).max(1.0)
    };
    let scale = TimeScale::new(factor)
        .ok_or_else(|| LabError::Config(format!("path timeout {}", plan.path_timeout_s)))?;
    Ok((real_time, factor, scale))
}

/// The lab of the inventory's path, with the plan's sysctls on `app` (durations scaled).
fn scaled_path(
    inv: &Inventory,
    plan: &Plan,
    scale: TimeScale,
) -> (LabSpec, Vec<HopReport>, Option<u32>) {
    let (mut spec, hops, proxy_lab) = path(inv, scale);
    spec.app_sysctls = plan
        .sysctl
        .iter()
        .map(|(k, v)| {
            let v = if k.ends_with("probes") {
                *v
            } else {
                u64::from(scale.lab_whole_secs(*v as f64))
            };
            (k.clone(), v.to_string())
        })
        .collect();
    (spec, hops, proxy_lab)
}

/// The plan's clients `--client` selects (all without it); none is an error.
fn selected_clients<'p>(plan: &'p Plan, opts: &Options) -> Result<Vec<&'p ClientPlan>> {
    let clients: Vec<_> = plan
        .clients
        .iter()
        .filter(|c| opts.client.as_deref().is_none_or(|n| n == c.name))
        .collect();
    if clients.is_empty() {
        let names: Vec<&str> = plan.clients.iter().map(|c| c.name.as_str()).collect();
        return Err(LabError::Config(match &opts.client {
            Some(n) => format!(
                "no client {n:?} in the inventory (clients: {})",
                names.join(", ")
            ),
            None => "the inventory has no clients to verify".into(),
        }));
    }
    Ok(clients)
}

/// Per client: the planned settings, the current ones and (when it differs) sysctls only.
fn jobs(inv: &Inventory, plan: &Plan, clients: &[&ClientPlan]) -> Vec<Job> {
    let mut jobs = Vec::new();
    for cp in clients {
        let Some(client) = inv.clients.iter().find(|c| c.name == cp.name) else {
            continue;
        };
        let defaults = client.current == Current::default();
        let (name, lib) = (cp.name.clone(), cp.library);
        jobs.push((
            name.clone(),
            lib,
            Which::Planned,
            mapping::planned(plan, cp),
            false,
        ));
        jobs.push((
            name.clone(),
            lib,
            Which::Current,
            mapping::current(client),
            defaults,
        ));
        if let Some(m) = mapping::sysctl_only(client) {
            jobs.push((name, lib, Which::SysctlOnly, m, false));
        }
    }
    jobs
}

/// The real database servers the runs need, in the db namespace (stopped when dropped).
struct Databases {
    db_addr: std::net::IpAddr,
    pg: Option<(Postgres, std::path::PathBuf)>,
    redis: Option<Redis>,
    grpc: Option<GrpcServer>,
}

impl Databases {
    /// PostgreSQL when libpq or a real postgres driver runs (and it is installed, or `--db
    /// postgres` asks), redis-server when a real Redis driver runs, the gRPC server when grpcio
    /// runs; what is missing is noted.
    #[allow(clippy::too_many_arguments)]
    fn start(
        lab: &Lab,
        inv: &Inventory,
        opts: &Options,
        clients: &[&ClientPlan],
        drivers: &Drivers,
        idle_close: Option<Duration>,
        notes: &mut Vec<String>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Databases> {
        let db_ns = lab.ns("db")?;
        let protocol_of = |l: Library| {
            Libraries::builtin()
                .profile(l, None)
                .library
                .protocol
                .clone()
        };
        let real = |l: Library| drivers.get(&l).is_some_and(|d| d.is_ok());
        let want_pg = clients.iter().any(|c| {
            c.library == Library::Libpq || (real(c.library) && protocol_of(c.library) == "postgres")
        });
        let want_redis = clients
            .iter()
            .any(|c| real(c.library) && protocol_of(c.library) == "redis");
        let want_grpc = clients
            .iter()
            .any(|c| real(c.library) && protocol_of(c.library) == "grpc");
        let pg_tools = postgres::Binaries::find().zip(postgres::find_psql());
        let pg = match (opts.db, &pg_tools) {
            (Db::Builtin, _) => None,
            (Db::Postgres, None) => {
                return Err(LabError::lab(
                    lab.name(),
                    "--db postgres: PostgreSQL (initdb, postgres, psql) is not installed; run .ci/install-deps",
                ));
            }
            (Db::Auto, None) => {
                notes.push("PostgreSQL is not installed: libpq settings verified as socket options on the built-in server".into());
                None
            }
            (_, Some(_)) if !want_pg && opts.db == Db::Auto => None,
            (_, Some((_, psql_path))) => {
                progress("starting PostgreSQL in the db namespace");
                let pg_opts = PgOptions {
                    port: PG_PORT,
                    idle_session_timeout: idle_close,
                    parent: None,
                };
                Some((
                    Postgres::start(db_ns, lab.name(), &pg_opts)?,
                    psql_path.clone(),
                ))
            }
        };
        let db_addr = lab
            .topology()
            .db_addr(inv.options.ip_version == IpVersion::V6);
        let redis = match (want_redis, redis_server::find()) {
            (true, Some(_)) => {
                progress("starting redis-server in the db namespace");
                Some(Redis::start(db_ns, lab.name(), db_addr)?)
            }
            (true, None) => {
                notes.push("redis-server is not installed: Redis clients verified with the socket-level model".into());
                None
            }
            _ => None,
        };
        // The grpcio driver is available, so python3 and grpcio are: the server needs nothing else.
        let grpc = if want_grpc {
            progress("starting the gRPC server (grpcio) in the db namespace");
            Some(GrpcServer::start(db_ns, lab.name(), db_addr)?)
        } else {
            None
        };
        Ok(Databases {
            db_addr,
            pg,
            redis,
            grpc,
        })
    }
}

struct RunCtx<'a> {
    redis: bool,
    /// The lab's gRPC server runs in `db`.
    grpc: bool,
    real_time: bool,
    drivers: &'a std::collections::HashMap<Library, std::result::Result<Driver, String>>,
    lab: &'a Lab,
    scale: TimeScale,
    idle: Duration,
    reply_timeout: Duration,
    target: SocketAddr,
    pg: Option<(&'a Postgres, &'a std::path::Path)>,
}

impl RunCtx<'_> {
    async fn one(
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

    fn secs(&self, s: Option<f64>) -> Option<u32> {
        s.map(|s| self.scale.lab_whole_secs(s))
    }

    fn dur(&self, s: Option<f64>) -> Option<Duration> {
        s.map(|s| self.scale.lab(s).max(Duration::from_millis(100)))
    }

    fn user_timeout(&self, m: &Model) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use idlereset_core::catalog::Catalog;

    fn inv(text: &str) -> Inventory {
        Inventory::parse(text, "t.toml", &Catalog::builtin().expect("catalog")).expect("parse")
    }

    #[test]
    fn one_firewall_per_conntrack_hop_and_proxy_at_the_server() {
        let i = inv(r#"
[[hop]]
name = "nat"
kind = "nat"
idle_timeout_s = 350
failure = "reset"
[[hop]]
name = "proxy"
kind = "proxy"
idle_timeout_s = 600
failure = "fin"
honours_keepalive = false
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 3600
failure = "drop"
[[client]]
name = "a"
library = "go"
connections = 1
"#);
        let scale = TimeScale::new(87.5).expect("scale");
        let (spec, hops, proxy) = path(&i, scale);
        assert_eq!(spec.hops, 1);
        assert_eq!(spec.router_firewalls.len(), 1);
        assert_eq!(spec.router_firewalls[0].profile, Profile::Nat);
        assert_eq!(spec.router_firewalls[0].established_timeout_s, 4);
        assert_eq!(spec.firewall.profile, Profile::Drop);
        assert!(
            spec.firewall.drop_invalid,
            "a dropping hop drops stale FIN/RST too"
        );
        assert!(!spec.router_firewalls[0].drop_invalid);
        assert_eq!(spec.firewall.established_timeout_s, 41);
        assert_eq!(proxy, Some(7));
        let hosts: Vec<&str> = hops.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["r1", "fw", "db"]);
    }

    #[test]
    fn proxy_only_path_keeps_kernel_default_firewall() {
        let i = inv(r#"
[[hop]]
name = "pgbouncer"
kind = "proxy"
idle_timeout_s = 600
failure = "fin"
honours_keepalive = false
[[client]]
name = "a"
library = "libpq"
connections = 1
"#);
        let (spec, _, proxy) = path(&i, TimeScale::new(150.0).expect("scale"));
        assert_eq!(spec.hops, 0);
        assert_eq!(spec.firewall.established_timeout_s, KERNEL_DEFAULT_S);
        assert_eq!(proxy, Some(4));
    }
}
