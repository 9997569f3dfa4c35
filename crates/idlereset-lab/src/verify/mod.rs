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
mod databases;
pub mod driver;
pub mod mapping;
pub mod psql;
mod real;
mod runs;

use std::net::SocketAddr;
use std::time::Duration;

use idlereset_core::catalog::Failure;
use idlereset_core::inventory::{Current, Hop, HopKind, Inventory, Library};
use idlereset_core::libraries::Libraries;
use idlereset_core::plan::Plan;
use idlereset_core::plan::clients::ClientPlan;
use idlereset_core::scale::TimeScale;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::firewall::{FirewallSettings, Profile};
use crate::lab::{Lab, LabSpec};
use crate::registry::Ownership;
use crate::server::DbServer;
use databases::Databases;
use driver::Driver;
use mapping::{Model, Which};
use runs::RunCtx;

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
