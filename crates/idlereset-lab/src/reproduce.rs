//! `lab reproduce`: run one incident end to end on the real kernel and report what happened.
//!
//! Build the lab, start the database, open a pooled connection and use it, let it sit idle for
//! the scenario's gap while sampling the firewall's conntrack entry and capturing the flow on
//! the app's link and on the firewall's database-side link, use the connection again, and
//! classify what the application saw. The report carries a timeline, the evidence and a verdict.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::evidence::{CtSample, FlowCapture, SeenPacket, sample_conntrack};
use crate::lab::Lab;
use crate::registry::Ownership;
use crate::scenario::Scenario;
use crate::server::DbServer;
use crate::workload::{AppLog, FailureKind, Pool, QueryError};
use idlereset_core::scale::TimeScale;

/// What the application's connection did: the `outcome` of every preset's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A TCP reset ended it.
    Reset,
    /// Packets vanished: the app timed out (or nothing more arrived).
    Blackhole,
    /// The server (or a proxy) closed the idle connection.
    Closed,
    /// It kept working.
    Survived,
}

impl Outcome {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Reset => "reset",
            Outcome::Blackhole => "blackhole",
            Outcome::Closed => "closed",
            Outcome::Survived => "survived",
        }
    }

    /// Did the connection fail (a finding)?
    pub fn failed(self) -> bool {
        self != Outcome::Survived
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Lab seconds since start.
    pub t_s: f64,
    /// The same moment in incident seconds (t_s x time scale).
    pub incident_s: f64,
    /// Where it happened (`app`, `fw`, `db`, ...).
    pub host: &'static str,
    /// What happened.
    pub what: String,
}

/// What the lab observed that explains the outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// The database server never saw the connection end (it still holds it).
    pub db_still_open: bool,
    /// TCP state of the database's side of the connection after the failure, read over
    /// sock_diag inside the `db` namespace (e.g. `ESTABLISHED`).
    pub db_socket_state: Option<String>,
    /// Errors the database saw on its connections (a reset reaching it would count here).
    pub db_errors: u64,
    /// Last conntrack state seen for the flow before the final query, and when the entry vanished.
    pub ct_last_state: Option<String>,
    /// Lab seconds since start when the flow's conntrack entry vanished.
    pub ct_gone_at_s: Option<f64>,
    /// Times the entry's timer went up during the idle gap (keepalive / heartbeat refreshes).
    pub ct_refreshes: u32,
    /// RSTs seen at the app carrying the database's address, with their TTL.
    pub rst_at_app: Vec<u8>,
    /// TTL of ordinary packets from the database as seen at the app.
    pub db_ttl_at_app: Option<u8>,
    /// RSTs seen on the firewall's database-side link.
    pub rst_on_db_link: usize,
    /// Packets of the flow that crossed the app link during the idle gap (keepalives, heartbeats).
    pub packets_during_idle: usize,
    /// Retransmissions of the final query seen at the app.
    pub retransmissions: usize,
    /// The pool had retired the connection before the final query (pool idle timeout / lifetime).
    pub pool_retired: bool,
}

/// What a preset's reproduction showed: the contract's `outcome`, `idle_s`, `error`, and the
/// timeline and evidence behind them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The preset that ran.
    pub preset: String,
    /// What happened to the connection on the final query.
    pub outcome: Outcome,
    /// The idle gap, incident seconds.
    pub idle_s: f64,
    /// The error text the application got, if any.
    pub error: Option<String>,
    /// Incident seconds per lab second.
    pub time_scale: f64,
    /// Name of the lab the run used.
    pub lab: String,
    /// The firewall's established timeout, incident seconds.
    pub firewall_timeout_s: f64,
    /// The firewall profile's name (see [`crate::firewall::Profile`]).
    pub profile: String,
    /// One line describing the client's keepalive and pool settings.
    pub client: String,
    /// What happened, in time order.
    pub timeline: Vec<Event>,
    /// What the lab observed that explains the outcome.
    pub evidence: Evidence,
    /// The explanation of the outcome, in words.
    pub verdict: String,
    /// Heartbeats that failed during the idle gap (also in the timeline).
    pub maintenance_failures: Vec<MaintenanceFailure>,
    /// The application's log lines (most recent ones).
    pub app_log: Vec<String>,
    /// Lab wall time of the whole run.
    pub elapsed_s: f64,
    /// Packets of the flow captured during the run (for pcap export, not in the JSON).
    #[serde(skip)]
    pub packets: Vec<SeenPacket>,
}

/// The report of any preset, one type for `lab reproduce`: both shapes carry the contract fields
/// `preset`, `outcome` (an [`Outcome`]), `idle_s` and `error`; serialised as the inner report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PresetReport {
    /// A scenario preset's run ([`run_with`]).
    Incident(Box<Report>),
    /// The frozen-timer story and its fixes ([`crate::frozen::run`]).
    FrozenTimer(Box<crate::frozen::Report>),
}

impl PresetReport {
    /// What the application's connection did.
    pub fn outcome(&self) -> Outcome {
        match self {
            PresetReport::Incident(r) => r.outcome,
            PresetReport::FrozenTimer(r) => r.outcome,
        }
    }

    /// The application's error text, if it got one.
    pub fn error(&self) -> Option<&str> {
        match self {
            PresetReport::Incident(r) => r.error.as_deref(),
            PresetReport::FrozenTimer(r) => r.error.as_deref(),
        }
    }
}

/// Run a scenario in a fresh lab that is removed afterwards.
pub async fn run(sc: &Scenario, progress: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    run_with(sc, &Options::default(), progress).await
}

/// Extra outputs of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write `app.pcap` and `fw-db.pcap` here.
    pub pcap_dir: Option<std::path::PathBuf>,
}

/// [`run`] with options.
pub async fn run_with(
    sc: &Scenario,
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Report> {
    sc.validate()?;
    let lab = Lab::create(sc.lab_spec()?, None, Ownership::Foreground).await?;
    progress(&format!(
        "lab {} up in {:.0} ms",
        lab.name(),
        lab.build_time.as_secs_f64() * 1000.0
    ));
    let r = run_in(&lab, sc, opts, progress).await;
    lab.destroy()?;
    r
}

/// Run a scenario in an existing lab (its firewall already configured as the scenario wants).
pub async fn run_in(
    lab: &Lab,
    sc: &Scenario,
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Report> {
    let mut run = Run::setup(lab, sc, opts)?;
    let client = run.connect_and_use().await?;
    let idle_start = run.t0.elapsed().as_secs_f64();
    let idle = run.idle(client, progress).await?;
    let last = run.final_query(idle_start).await;
    // Let the last packets (an RST, a retransmission) reach the captures and the sampler.
    tokio::time::sleep(Duration::from_millis(150)).await;
    Ok(run.finish(idle, last, client, idle_start))
}

/// A heartbeat (validation query) that failed during the idle gap.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceFailure {
    /// Lab seconds since start (when the idle phase collected it).
    pub t_s: f64,
    /// Id of the pooled connection the heartbeat ran on.
    pub conn: u64,
    /// The error text the heartbeat got.
    pub error: String,
}

/// One run of a scenario, phase by phase.
struct Run<'a> {
    lab: &'a Lab,
    sc: &'a Scenario,
    scale: TimeScale,
    t0: Instant,
    target: SocketAddr,
    server: DbServer,
    capture: FlowCapture,
    log: Arc<AppLog>,
    pool: Arc<Pool>,
    timeline: Vec<Event>,
}

/// What the idle phase leaves behind: the running conntrack sampler and the maintenance
/// task's failures.
struct IdlePhase {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<Vec<CtSample>>,
    maintenance: Vec<MaintenanceFailure>,
}

/// The final query: its result, the connection it used, when it was sent and answered.
struct LastQuery {
    result: std::result::Result<(), QueryError>,
    conn: u64,
    t_query: f64,
    t_result: f64,
    pool_retired: bool,
}

impl<'a> Run<'a> {
    /// Database server, captures on the app's link and the firewall's database link, the pool.
    fn setup(lab: &'a Lab, sc: &'a Scenario, opts: &Options) -> Result<Run<'a>> {
        let scale = sc.scale()?;
        let t0 = Instant::now();
        let topo = lab.topology();
        let server = DbServer::start(
            lab.ns("db")?,
            sc.port,
            sc.server_idle_close_s.map(|s| scale.lab(s)),
        )?;
        let target = SocketAddr::new(topo.db_addr(sc.ipv6), sc.port);
        let (_, fw_db_link) = topo.fw_links();
        let capture = FlowCapture::start(
            vec![
                (lab.ns("app")?, topo.app_link(), "app"),
                (lab.ns("fw")?, fw_db_link, "fw->db"),
            ],
            sc.port,
            t0,
            opts.pcap_dir.as_deref(),
        )?;
        let log = Arc::new(AppLog::default());
        let pool = Arc::new(Pool::new(
            idlereset_linux::NetNs::open(lab.ns("app")?.name())?,
            target,
            sc.client_options()?,
            sc.pool_config()?,
            log.clone(),
        ));
        Ok(Run {
            lab,
            sc,
            scale,
            t0,
            target,
            server,
            capture,
            log,
            pool,
            timeline: Vec::new(),
        })
    }

    fn event(&mut self, host: &'static str, what: String) {
        let t_s = self.t0.elapsed().as_secs_f64();
        self.event_at(t_s, host, what);
    }

    fn event_at(&mut self, t_s: f64, host: &'static str, what: String) {
        self.timeline.push(Event {
            t_s,
            incident_s: t_s * self.scale.factor(),
            host,
            what,
        });
    }

    /// Phase 1: connect, query, return the connection to the pool. Returns the app's address.
    async fn connect_and_use(&mut self) -> Result<SocketAddr> {
        let name = self.lab.name();
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LabError::lab(name, format!("first connect failed: {}", e.text)))?;
        let client = conn.local;
        self.event(
            "app",
            format!(
                "connected {} -> {} (conn={})",
                conn.local, conn.peer, conn.id
            ),
        );
        self.pool
            .query(&mut conn, "SELECT 1")
            .await
            .map_err(|e| LabError::lab(name, format!("first query failed: {}", e.text)))?;
        self.event(
            "app",
            "query ok; connection returned to the pool, idle from now".into(),
        );
        self.pool.put(conn);
        Ok(client)
    }

    /// Phase 2: the idle gap, with pool maintenance (heartbeats, retirement) and conntrack
    /// sampling. Maintenance stops between passes (a pass holds the idle connections), and its
    /// failures are kept for the report.
    async fn idle(
        &mut self,
        client: SocketAddr,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<IdlePhase> {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_conntrack(
            idlereset_linux::NetNs::open(self.lab.ns("fw")?.name())?,
            client,
            self.sc.port,
            self.t0,
            Duration::from_millis(100),
            stop.clone(),
        );
        let idle = self.sc.lab_idle()?;
        progress(&format!(
            "idle for {:.1} s lab time ({:.0} s incident time); firewall forgets idle flows after {:.1} s ({:.0} s)",
            idle.as_secs_f64(),
            self.sc.idle_s,
            self.scale.lab(self.sc.fw_timeout_s).as_secs_f64(),
            self.sc.fw_timeout_s
        ));
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
        let (pool, t0) = (self.pool.clone(), self.t0);
        let maint =
            tokio::spawn(async move {
                let mut failures = Vec::new();
                loop {
                    tokio::select! {
                        _ = done_rx.wait_for(|d| *d) => return failures,
                        () = tokio::time::sleep(pool.maintenance_period()) => {}
                    }
                    let t_s = t0.elapsed().as_secs_f64();
                    failures.extend(pool.maintain().await.into_iter().map(|e| {
                        MaintenanceFailure {
                            t_s,
                            conn: e.conn,
                            error: e.text,
                        }
                    }));
                }
            });
        tokio::time::sleep(idle).await;
        let _ = done_tx.send(true);
        let maintenance = maint.await.map_err(|e| {
            LabError::lab(
                self.lab.name(),
                format!("pool maintenance task failed: {e}"),
            )
        })?;
        for f in &maintenance {
            self.event_at(
                f.t_s,
                "app",
                format!("heartbeat on conn={} failed: {}", f.conn, f.error),
            );
        }
        Ok(IdlePhase {
            stop,
            sampler,
            maintenance,
        })
    }

    /// Phase 3: use the connection again.
    async fn final_query(&mut self, idle_start: f64) -> LastQuery {
        let before = self.pool.stats();
        let pool_retired = before.retired_total > 0 || before.broken_total > 0;
        let t_query = self.t0.elapsed().as_secs_f64();
        let (result, conn) = match self.pool.get().await {
            Ok(mut c) => {
                let id = c.id;
                self.event(
                    "app",
                    format!(
                        "query on conn={id} after {:.1} s idle",
                        t_query - idle_start
                    ),
                );
                let r = self.pool.query(&mut c, "SELECT 2").await;
                match &r {
                    Ok(_) => self.pool.put(c),
                    Err(_) => self.pool.discard(c),
                }
                (r.map(|_| ()), id)
            }
            Err(e) => (Err(e.clone()), e.conn),
        };
        LastQuery {
            result,
            conn,
            t_query,
            t_result: self.t0.elapsed().as_secs_f64(),
            pool_retired,
        }
    }

    /// Phase 4: stop the observers, read the database's side, classify and explain.
    fn finish(
        mut self,
        idle: IdlePhase,
        last: LastQuery,
        client: SocketAddr,
        idle_start: f64,
    ) -> Report {
        let what = match &last.result {
            Err(e) => format!("error on conn={}: {}", last.conn, e.text),
            Ok(()) => "query ok: the connection survived the idle gap".into(),
        };
        self.event_at(last.t_result, "app", what);
        idle.stop.store(true, Ordering::Relaxed);
        let samples = idle.sampler.join().unwrap_or_default();
        let packets = self.capture.finish();
        let port = self.sc.port;
        let db_socket_state = self
            .lab
            .ns("db")
            .ok()
            .and_then(|ns| ns.run(|| db_side_state(port)).ok().flatten());
        let db_open = self.server.stats.open.load(Ordering::Relaxed);
        let db_errors = self.server.stats.errors.load(Ordering::Relaxed);
        let (outcome, error) = classify(&last.result);
        let window = Window {
            server: self.target,
            client,
            idle_start,
            t_query: last.t_query,
        };
        let mut evidence = analyse(
            &samples,
            &packets,
            &window,
            &mut self.timeline,
            self.scale.factor(),
        );
        evidence.db_still_open = db_open > 0 && outcome == Outcome::Reset;
        evidence.db_socket_state = db_socket_state;
        evidence.db_errors = db_errors;
        evidence.pool_retired = last.pool_retired;
        self.timeline.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let sc = self.sc;
        Report {
            preset: sc.preset.clone(),
            outcome,
            idle_s: self
                .scale
                .configured(Duration::from_secs_f64(last.t_query - idle_start)),
            error,
            time_scale: sc.time_scale,
            lab: self.lab.name().to_string(),
            firewall_timeout_s: sc.fw_timeout_s,
            profile: sc.profile.name().to_string(),
            client: sc.client_summary(),
            verdict: verdict(sc, outcome, &evidence),
            timeline: self.timeline,
            evidence,
            maintenance_failures: idle.maintenance,
            app_log: self.log.lines(),
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            packets,
        }
    }
}

/// The outcome and the application's error text of the final query.
fn classify(result: &std::result::Result<(), QueryError>) -> (Outcome, Option<String>) {
    match result {
        Ok(()) => (Outcome::Survived, None),
        Err(e) => (
            match e.kind {
                FailureKind::Reset => Outcome::Reset,
                FailureKind::Timeout => Outcome::Blackhole,
                FailureKind::Eof => Outcome::Closed,
                _ => Outcome::Blackhole,
            },
            Some(e.text.clone()),
        ),
    }
}

/// State of the database's connection socket (local port `port`, not the listener), if any.
fn db_side_state(port: u16) -> Option<String> {
    use idlereset_linux::sockdiag::{TcpFilter, dump_tcp};
    let mut state = None;
    let _ = dump_tcp(TcpFilter::all(), |s| {
        if s.local.port() == port && s.remote.port() != 0 {
            state = Some(s.state.name().to_string());
        }
    });
    state
}

/// The flow and the idle window the evidence is about.
struct Window {
    server: SocketAddr,
    client: SocketAddr,
    idle_start: f64,
    t_query: f64,
}

/// Timeline entries of the evidence, in lab seconds.
struct Timeline<'a> {
    events: &'a mut Vec<Event>,
    factor: f64,
}

impl Timeline<'_> {
    fn push(&mut self, t_s: f64, host: &'static str, what: String) {
        self.events.push(Event {
            t_s,
            incident_s: t_s * self.factor,
            host,
            what,
        });
    }
}

fn analyse(
    samples: &[CtSample],
    packets: &[SeenPacket],
    w: &Window,
    timeline: &mut Vec<Event>,
    factor: f64,
) -> Evidence {
    let mut ev = Evidence::default();
    let mut tl = Timeline {
        events: timeline,
        factor,
    };
    analyse_conntrack(samples, w, &mut ev, &mut tl);
    analyse_packets(packets, w, &mut ev, &mut tl);
    ev
}

/// Conntrack: first sighting, refreshes, disappearance (before the final query).
fn analyse_conntrack(samples: &[CtSample], w: &Window, ev: &mut Evidence, tl: &mut Timeline) {
    let mut prev: Option<&CtSample> = None;
    for s in samples.iter().filter(|s| s.t <= w.t_query) {
        match (prev.and_then(|p| p.timeout_s), s.timeout_s) {
            (None, Some(t))
                if prev.is_none_or(|p| p.state.is_none()) && ev.ct_last_state.is_none() =>
            {
                tl.push(
                    s.t,
                    "fw",
                    format!(
                        "conntrack entry {} with {t} s left",
                        s.state.clone().unwrap_or_default()
                    ),
                );
            }
            // Timeouts are whole seconds (rounded down), so the expiry estimate t + timeout
            // wanders by less than one second without traffic; a later estimate by a second
            // or more, or a larger remaining value, means a packet refreshed the entry.
            (Some(a), Some(b))
                if s.t > w.idle_start
                    && (b > a || prev.is_some_and(|p| s.t + b as f64 >= p.t + a as f64 + 1.0)) =>
            {
                ev.ct_refreshes += 1;
                if ev.ct_refreshes <= 3 {
                    tl.push(
                        s.t,
                        "fw",
                        format!("conntrack timer refreshed: {b} s left (traffic during idle)"),
                    );
                }
            }
            (Some(_), None) => {
                ev.ct_gone_at_s.get_or_insert(s.t);
                tl.push(
                    s.t,
                    "fw",
                    "conntrack entry expired: the firewall forgot the flow".into(),
                );
            }
            _ => {}
        }
        if s.state.is_some() {
            ev.ct_last_state = s.state.clone();
        }
        prev = Some(s);
    }
    if samples
        .iter()
        .rev()
        .find(|s| s.t <= w.t_query)
        .is_some_and(|s| s.state.is_some())
    {
        ev.ct_gone_at_s = None;
    }
}

/// Packets: TTLs, traffic during the idle gap, retransmissions of the final query, RSTs.
fn analyse_packets(packets: &[SeenPacket], w: &Window, ev: &mut Evidence, tl: &mut Timeline) {
    let (server, client) = (w.server, w.client);
    let from_db =
        |p: &SeenPacket| p.src == server || (p.src.port() == server.port() && p.dst == client);
    ev.db_ttl_at_app = packets
        .iter()
        .rev()
        .find(|p| p.point == "app" && from_db(p) && !p.rst)
        .map(|p| p.ttl);
    ev.packets_during_idle = packets
        .iter()
        .filter(|p| p.point == "app" && p.t > w.idle_start + 0.05 && p.t < w.t_query - 0.01)
        .count();
    let mut query_seqs = std::collections::HashMap::new();
    for p in packets
        .iter()
        .filter(|p| p.point == "app" && p.t >= w.t_query && p.payload > 0 && p.src == client)
    {
        *query_seqs.entry(p.seq).or_insert(0usize) += 1;
    }
    ev.retransmissions = query_seqs.values().map(|n| n.saturating_sub(1)).sum();
    for p in packets.iter().filter(|p| p.rst) {
        if p.point == "app" && from_db(p) {
            ev.rst_at_app.push(p.ttl);
            tl.push(
                p.t,
                "app",
                format!("RST from {} received (TTL {})", p.src, p.ttl),
            );
        } else if p.point == "fw->db" {
            ev.rst_on_db_link += 1;
            tl.push(
                p.t,
                "fw",
                format!("RST {} -> {} on the firewall's database link", p.src, p.dst),
            );
        }
    }
    if ev.retransmissions > 0 {
        tl.push(
            w.t_query,
            "app",
            format!(
                "query retransmitted {} times, never acknowledged",
                ev.retransmissions
            ),
        );
    }
}

fn verdict(sc: &Scenario, outcome: Outcome, ev: &Evidence) -> String {
    let fw = sc.fw_timeout_s;
    match outcome {
        Outcome::Reset => {
            let mut s = format!(
                "RESET after {:.0} s idle: the firewall's conntrack entry expired after {fw:.0} s of idle, so the next packet \
                 was a new non-SYN flow and the firewall answered it with a TCP reset",
                sc.idle_s
            );
            if let (Some(rst_ttl), Some(db_ttl)) = (ev.rst_at_app.first(), ev.db_ttl_at_app)
                && *rst_ttl != db_ttl
            {
                s.push_str(&format!(
                        ". The RST carries the database's address but TTL {rst_ttl}, while the database's packets arrive with TTL {db_ttl}: \
                         a middlebox made it"
                    ));
            }
            if ev.rst_on_db_link == 0 {
                s.push_str(". No RST crossed the firewall's database link: the database still holds the connection as ESTABLISHED");
            }
            s
        }
        Outcome::Blackhole => format!(
            "BLACKHOLE after {:.0} s idle: the firewall forgot the flow after {fw:.0} s and silently dropped the next packet; \
             the app retransmitted until it gave up",
            sc.idle_s
        ),
        Outcome::Closed => {
            "CLOSED: the server (or a proxy) closed the idle connection; the app read EOF"
                .to_string()
        }
        Outcome::Survived if ev.pool_retired => format!(
            "SURVIVED only because the pool retired the idle connection first (pool idle timeout below the {fw:.0} s firewall timeout)"
        ),
        Outcome::Survived if ev.packets_during_idle > 0 && sc.idle_s > fw => format!(
            "SURVIVED {:.0} s of idle through a {fw:.0} s firewall: {} packets crossed during the gap (keepalive probes or \
             heartbeats and their answers) and kept the firewall's conntrack entry alive; it never expired",
            sc.idle_s, ev.packets_during_idle
        ),
        Outcome::Survived => format!(
            "SURVIVED {:.0} s of idle (firewall timeout {fw:.0} s)",
            sc.idle_s
        ),
    }
}
