//! `lab up`, `lab down`, `lab status` and the hidden `lab supervise`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_lab::procs::StoppedProcess;
use idlereset_lab::registry::{self, LabRecord, Ownership};
use idlereset_lab::scenario::Scenario;
use idlereset_lab::{Lab, LabSpec, supervise};
use serde::Serialize;

use super::args::ScenarioArgs;
use crate::app::Outcome;
use crate::cmd::signals::{run_cancellable, run_graceful};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset lab up                                         firewall-900 settings, scaled 100x
  idlereset lab up --name idlereset-demo --profile drop --fw-timeout 10m
  idlereset lab up --hops 2 --ipv6 --pool-size 8
  idlereset lab up --foreground                            stay attached; Ctrl-C removes the lab
  idlereset lab up --db postgres                           a real PostgreSQL on db (port 5432)")]
pub struct UpArgs {
    /// Lab name (must start with `idlereset-`); default: idlereset-RANDOM
    #[arg(long)]
    pub name: Option<String>,
    /// Preset whose settings the lab starts from
    #[arg(long, default_value = "firewall-900")]
    pub preset: String,
    #[command(flatten)]
    pub knobs: ScenarioArgs,
    /// Connections in the app's pool (each queries, then idles for --idle)
    #[arg(long, default_value_t = 4)]
    pub pool_size: usize,
    /// Stay in the foreground running the workload; Ctrl-C removes the lab
    #[arg(long)]
    pub foreground: bool,
    /// Database on `db`: the built-in line server, or also a real PostgreSQL on port 5432
    /// (trust auth for the lab subnets; the built-in server and workload move to 5433)
    #[arg(long, value_parser = ["builtin", "postgres"], default_value = "builtin")]
    pub db: String,
    /// Print one JSON object describing the lab
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Lab to remove (default: the only one)
    pub lab: Option<String>,
    /// Remove every lab left behind: supervised labs, labs whose owner died, orphan namespaces
    #[arg(long)]
    pub all: bool,
    /// Also remove labs whose foreground owner (a running reproduce, demo or test) is alive
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Lab to show (default: all)
    pub lab: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    #[arg(long)]
    pub lab: String,
    #[arg(long)]
    pub pool_size: usize,
    #[arg(long, default_value = "builtin")]
    pub db: String,
}

/// How long `lab up` waits for its supervisor's first status.
const SUPERVISOR_START: Duration = Duration::from_secs(60);

fn scenario_file(lab: &str) -> std::path::PathBuf {
    registry::run_dir(lab).join("scenario.json")
}

/// Create the lab's run directory and write the scenario the supervisor reads; returns the
/// directory.
fn write_scenario(lab: &str, sc: &Scenario) -> anyhow::Result<std::path::PathBuf> {
    let dir = registry::run_dir(lab);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(scenario_file(lab), serde_json::to_vec_pretty(sc)?)?;
    Ok(dir)
}

/// Say which processes still ran inside a removed lab (they were stopped).
fn report_stopped(procs: &[StoppedProcess]) {
    for p in procs {
        eprintln!(
            "idlereset: stopped process {} ({}) in {} with {}{}",
            p.pid,
            p.command,
            p.namespace,
            p.signal,
            if p.survived { " (still present!)" } else { "" }
        );
    }
}

pub fn up(a: UpArgs) -> anyhow::Result<Outcome> {
    let mut sc = a.knobs.apply(Scenario::preset(&a.preset)?);
    sc.validate()?;
    let postgres = a.db == "postgres";
    if postgres {
        anyhow::ensure!(
            idlereset_lab::postgres::Binaries::find().is_some(),
            "--db postgres: PostgreSQL is not installed (initdb and postgres on PATH or under /usr/lib/postgresql/*/bin); run .ci/install-deps"
        );
        if sc.port == idlereset_lab::verify::PG_PORT {
            sc.port = idlereset_lab::verify::BUILTIN_PORT;
        }
    }
    let spec = sc.lab_spec()?;
    let pool_size = a.pool_size;
    if a.foreground {
        // The workload stops on the signal, then PostgreSQL and the lab are removed in order;
        // the command still ends as interrupted (exit 2).
        run_graceful(|cancel| async {
            // Supervised: `lab down NAME` stops this process (SIGTERM), which removes the lab.
            let lab = Lab::create(spec, a.name.clone(), Ownership::Supervised).await?;
            let name = lab.name().to_string();
            write_scenario(&name, &sc)?;
            eprintln!(
                "idlereset: lab {name} up in {:.0} ms; running the workload, Ctrl-C to remove it",
                lab.build_time.as_secs_f64() * 1000.0
            );
            let pg = postgres.then(|| start_postgres(&lab, &sc)).transpose()?;
            supervise::run(&lab, &sc, pool_size, cancel).await?;
            drop(pg);
            report_stopped(&lab.destroy()?.stopped_processes);
            Ok(())
        })?;
        return Ok(Outcome::Clean);
    }
    let (name, build_ms) = run_cancellable(async {
        let lab = Lab::create(spec, a.name.clone(), Ownership::Supervised).await?;
        let name = lab.name().to_string();
        let build_ms = lab.build_time.as_secs_f64() * 1000.0;
        let dir = write_scenario(&name, &sc)?;
        let log = std::fs::File::create(dir.join("supervisor.log"))?;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args([
            "lab",
            "supervise",
            "--lab",
            &name,
            "--pool-size",
            &pool_size.to_string(),
            "--db",
            &a.db,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().context("start the lab supervisor")?;
        let started = Instant::now();
        loop {
            if supervise::read_status(&name).is_some() {
                break;
            }
            if let Some(st) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
                drop(lab);
                anyhow::bail!("lab supervisor exited ({st}): {log}");
            }
            // initdb alone can take many seconds on a loaded machine.
            if started.elapsed() > SUPERVISOR_START {
                let _ = child.kill();
                drop(lab);
                anyhow::bail!(
                    "lab supervisor did not start within {} s",
                    SUPERVISOR_START.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lab.detach();
        Ok((name, build_ms))
    })?;
    if a.json {
        crate::cmd::print_json(&describe(&LabRecord::load(&name)?))?;
    } else {
        println!("lab {name} is up (built in {build_ms:.0} ms)");
        print_lab(
            &describe(&LabRecord::load(&name)?),
            &mut std::io::stdout().lock(),
        )?;
        if postgres {
            println!(
                "postgres: psql \"host=198.18.2.10 port={} user=postgres dbname=postgres\" (run it with idlereset lab exec app -- psql ...)",
                idlereset_lab::verify::PG_PORT
            );
        }
        println!(
            "\nNext: idlereset lab status {name} | idlereset lab exec app -- CMD | idlereset lab down {name}"
        );
    }
    Ok(Outcome::Clean)
}

pub fn supervise(a: SuperviseArgs) -> anyhow::Result<Outcome> {
    let sc: Scenario = serde_json::from_slice(&std::fs::read(scenario_file(&a.lab))?)?;
    run_graceful(|cancel| async {
        let lab = Lab::open(&a.lab)?.adopt(Ownership::Supervised)?;
        let pg = (a.db == "postgres")
            .then(|| start_postgres(&lab, &sc))
            .transpose()?;
        supervise::run(&lab, &sc, a.pool_size, cancel).await?;
        drop(pg);
        report_stopped(&lab.destroy()?.stopped_processes);
        Ok(())
    })?;
    Ok(Outcome::Clean)
}

/// PostgreSQL on `db` for `lab up --db postgres`; its cluster lives in the lab's run directory,
/// which `lab down` removes. The scenario's server idle close becomes `idle_session_timeout`.
fn start_postgres(lab: &Lab, sc: &Scenario) -> anyhow::Result<idlereset_lab::postgres::Postgres> {
    let idle = sc
        .server_idle_close_s
        .map(|s| sc.scale().map(|k| k.lab(s)))
        .transpose()?;
    let opts = idlereset_lab::postgres::PgOptions {
        port: idlereset_lab::verify::PG_PORT,
        idle_session_timeout: idle,
        parent: Some(registry::run_dir(lab.name())),
    };
    Ok(idlereset_lab::postgres::Postgres::start(
        lab.ns("db")?,
        lab.name(),
        &opts,
    )?)
}

fn stop_supervisor(r: &LabRecord) {
    let pid = nix::unistd::Pid::from_raw(r.owner_pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let started = Instant::now();
    while r.owner_alive() && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if r.owner_alive() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

pub fn down(a: DownArgs) -> anyhow::Result<Outcome> {
    // Unmounting namespaces and signalling other users' processes needs root: say so up front
    // instead of failing half-way with a bare EPERM.
    idlereset_lab::error::require_privileges()
        .context("lab down removes namespaces (umount) and stops processes inside them")?;
    if a.all {
        let sweep = registry::sweep(a.force, stop_supervisor)?;
        if a.json {
            crate::cmd::print_json(&sweep)?;
        } else {
            for l in &sweep.removed_labs {
                println!("removed lab {l}");
            }
            for n in &sweep.removed_namespaces {
                println!("removed orphan namespace {n}");
            }
            for s in &sweep.skipped {
                println!("skipped {s}");
            }
            for p in &sweep.stopped_processes {
                println!(
                    "stopped process {} ({}) in {} with {}",
                    p.pid, p.command, p.namespace, p.signal
                );
            }
            if sweep.removed_tracefs_instances > 0 {
                println!(
                    "removed {} stale tracefs instance(s) of killed watch/exporter processes",
                    sweep.removed_tracefs_instances
                );
            }
            if sweep.removed_labs.is_empty()
                && sweep.removed_namespaces.is_empty()
                && sweep.skipped.is_empty()
                && sweep.removed_tracefs_instances == 0
            {
                println!("nothing to remove");
            }
        }
        return Ok(Outcome::Clean);
    }
    let name = super::pick_lab(a.lab.as_deref())?;
    let rec = LabRecord::load(&name)?;
    if rec.owner_alive() {
        match rec.ownership {
            Ownership::Supervised => stop_supervisor(&rec),
            Ownership::Foreground if !a.force => anyhow::bail!(
                "lab {name} belongs to running process {} (a reproduce, demo or test) and is removed when it ends; --force removes it now",
                rec.owner_pid
            ),
            Ownership::Foreground => {}
        }
    }
    let removal = registry::remove(&name, &rec.hosts)?;
    if a.json {
        crate::cmd::print_json(&DownJson {
            removed_labs: vec![name],
            stopped_processes: removal.stopped_processes,
        })?;
    } else {
        for p in &removal.stopped_processes {
            println!(
                "stopped process {} ({}) in {} with {}",
                p.pid, p.command, p.namespace, p.signal
            );
        }
        println!("removed lab {name}");
    }
    Ok(Outcome::Clean)
}

/// `lab down NAME --json`.
#[derive(Debug, Serialize)]
struct DownJson {
    removed_labs: Vec<String>,
    stopped_processes: Vec<StoppedProcess>,
}

#[derive(Debug, Serialize)]
struct HostView {
    name: String,
    namespace: String,
    links: Vec<(String, String, String)>,
}

#[derive(Debug, Serialize)]
struct LabView {
    name: String,
    ownership: Ownership,
    owner_pid: u32,
    owner_alive: bool,
    hosts: Vec<HostView>,
    spec: serde_json::Value,
    conntrack_entries: Option<usize>,
    workload: Option<supervise::WorkloadStatus>,
    app_log_tail: Vec<String>,
}

fn describe(r: &LabRecord) -> LabView {
    let spec: Option<LabSpec> = serde_json::from_value(r.spec.clone()).ok();
    let topo = idlereset_lab::topology::Topology::chain(spec.as_ref().map(|s| s.hops).unwrap_or(0));
    let hosts = topo
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| HostView {
            name: h.name.clone(),
            namespace: format!("{}-{}", r.name, h.name),
            links: topo
                .ifaces(i)
                .into_iter()
                .map(|f| (f.link, format!("{}/24", f.v4), format!("{}/64", f.v6)))
                .collect(),
        })
        .collect();
    let conntrack_entries = idlereset_linux::NetNs::open(&format!("{}-fw", r.name))
        .ok()
        .and_then(|ns| ns.run(idlereset_lab::ct::count_entries).ok())
        .and_then(|r| r.ok());
    let tail = std::fs::read_to_string(supervise::app_log_file(&r.name))
        .map(|s| {
            s.lines()
                .rev()
                .take(5)
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        })
        .unwrap_or_default();
    LabView {
        name: r.name.clone(),
        ownership: r.ownership,
        owner_pid: r.owner_pid,
        owner_alive: r.owner_alive(),
        hosts,
        spec: r.spec.clone(),
        conntrack_entries,
        workload: supervise::read_status(&r.name),
        app_log_tail: tail,
    }
}

fn print_lab(v: &LabView, out: &mut impl Write) -> std::io::Result<()> {
    let owner = if v.owner_alive {
        "running"
    } else {
        "DEAD (lab down --all removes it)"
    };
    writeln!(
        out,
        "{}  ({:?}, owner pid {} {owner})",
        v.name, v.ownership, v.owner_pid
    )?;
    for h in &v.hosts {
        let links: Vec<String> = h
            .links
            .iter()
            .map(|(l, a4, a6)| format!("{l} {a4} {a6}"))
            .collect();
        writeln!(out, "  {:<4} {}", h.name, links.join("; "))?;
    }
    if let Some(fw) = v.spec.get("firewall") {
        writeln!(out, "  firewall: {fw}")?;
    }
    if let Some(n) = v.conntrack_entries {
        writeln!(out, "  fw conntrack entries: {n}")?;
    }
    if let Some(w) = &v.workload {
        let p = &w.pool;
        writeln!(
            out,
            "  pool: open {} idle {} in use {} | opened {} broken {} retired {} | queries ok {} heartbeats {}",
            p.open,
            p.idle,
            p.in_use,
            p.opened_total,
            p.broken_total,
            p.retired_total,
            p.queries_ok,
            p.heartbeats
        )?;
        writeln!(
            out,
            "  db: accepted {} open {} requests {}",
            w.db_accepted, w.db_open, w.db_requests
        )?;
    }
    for l in &v.app_log_tail {
        writeln!(out, "  | {l}")?;
    }
    Ok(())
}

pub fn status(a: StatusArgs) -> anyhow::Result<Outcome> {
    let records: Vec<LabRecord> = match &a.lab {
        Some(n) => vec![LabRecord::load(n)?],
        None => registry::list(),
    };
    let views: Vec<LabView> = records.iter().map(describe).collect();
    if a.json {
        crate::cmd::print_json(&serde_json::json!({ "labs": views }))?;
    } else if views.is_empty() {
        println!("no labs (start one with `idlereset lab up`)");
    } else {
        let mut out = std::io::stdout().lock();
        for v in &views {
            print_lab(v, &mut out)?;
        }
    }
    Ok(Outcome::Clean)
}
