//! `idlereset triage`: the runbook for "Connection reset by peer" after idle, in one command.
//!
//! Runs the runbook's five steps on the host where the resets happen (logs, packets, path idle
//! timeout, OS keepalive settings, which sockets opt in to SO_KEEPALIVE), each reported as
//! done, not possible (and why) or skipped; hands the evidence to
//! `idlereset_core::triage::decide` for a verdict; plans the fix with `plan` on an inventory
//! built from what was measured; and renders text, `--json` or a Markdown incident report.
//! All calls into other engines go through [`gather`].

mod gather;
mod output;
mod render;
mod report;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::parse_duration;
use idlereset_core::triage::{Evidence, decide, fix};

use self::gather::{PathSource, ProbeLimits};
use self::output::{Output, Status, Step};
use crate::app::Outcome;

const EXAMPLES: &str = "\
Examples:
  idlereset triage --log /var/log/app/app.log                      steps 1, 4, 5: fast, reads only
  sudo idlereset triage --log app.log --remote db.internal:5432    also measure the path (up to --probe-max)
  sudo idlereset triage --remote 10.0.2.10:5432 --capture 20m --probe-max 20m --report incident.md
  idlereset triage --log app.log --pcap rst.pcap --json | jq .verdict
  sudo idlereset triage --netns app --log app.log --remote 198.18.2.10:5432 --probe-max 60s
  sudo idlereset triage --probe-at-risk --probe-max 30m             probe every remote found at risk

Steps (each done / not possible (why) / skipped):
  1 logs       reset incidents, signatures, pattern, period and drift, idle bracket (--log)
  2 packets    RST origin, idle before, blackholes, idle closes (--pcap, or --capture D while step 3 runs)
  3 path       idle timeout of the path to each --remote (probe), this host's conntrack table
  4 keepalive  the OS keepalive defaults (net.ipv4.tcp_keepalive_*)
  5 sockets    which connections and processes set SO_KEEPALIVE
Then a verdict (middlebox-idle-timeout, server-idle-close, connection-age-timer,
state-lost-while-active, keepalive-ineffective, not-idle-related, inconclusive) with confidence,
evidence and contradictions, and the fix (plan), how to verify it, rollback notes and alerts.

Safe: it only reads, except the probe connections (no payload; counted and paced as `probe`).
Ctrl-C stops the probes and still prints what was found.
Exit status: 0 nothing idle-related found, 1 a cause was found, 2 error.";

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Application log with the reset errors (repeatable)
    #[arg(long = "log", value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    /// Packet capture around the resets (pcap or pcapng; repeatable)
    #[arg(long = "pcap", value_name = "FILE")]
    pub pcaps: Vec<PathBuf>,
    /// Server the failing connections go to: its path's idle timeout is measured (repeatable)
    #[arg(long = "remote", value_name = "HOST:PORT")]
    pub remotes: Vec<String>,
    /// Path inventory (TOML): judge sockets against its hops when no probe runs
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Also probe each remote that step 5 finds at risk (at most 8)
    #[arg(long)]
    pub probe_at_risk: bool,
    /// Longest idle a probe tests
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = duration)]
    pub probe_max: Duration,
    /// Record this namespace's TCP traffic (AF_PACKET, all interfaces) for this long while the
    /// probes run, then analyse it as step 2 (needs --netns)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub capture: Option<Duration>,
    /// Run in the network namespace /run/netns/NAME (sockets, sysctls, probes, capture)
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown incident report (and the measured inventory beside it)
    #[arg(long, value_name = "OUT.md")]
    pub report: Option<PathBuf>,
    /// Skip steps 4 and 5 (this host's sockets and sysctls), for logs from another host
    #[arg(long)]
    pub skip_host: bool,
}

/// `demo`'s last act: triage the log of the incident it reproduced. Its lab is gone, so only
/// the log is read (steps 2 to 5 are skipped and say so).
pub fn after_demo(app_log: &[String]) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("idlereset-demo-{}.log", std::process::id()));
    std::fs::write(&path, app_log.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let args = Args {
        logs: vec![path.clone()],
        pcaps: Vec::new(),
        remotes: Vec::new(),
        inventory: None,
        probe_at_risk: false,
        probe_max: Duration::from_secs(7200),
        capture: None,
        netns: None,
        json: false,
        report: None,
        skip_host: true,
    };
    let r = run(args);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

/// Raised by Ctrl-C / SIGTERM.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(crate::cmd::signals::shutdown());
        f.store(true, Ordering::Relaxed);
    });
    flag
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let catalog = Catalog::builtin()?;
    let out = triage(&args, &catalog, started)?;
    if let Some(path) = &args.report {
        report::write(path, &out).with_context(|| format!("writing report {}", path.display()))?;
    }
    if args.json {
        crate::cmd::print_json(&out)?;
    } else {
        render::text(&out, args.report.as_deref())?;
    }
    Ok(if out.verdict.cause.idle_related() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn not_possible(step: u8, name: &'static str, why: String) -> Step {
    Step::new(step, name, Status::NotPossible, why)
}

fn triage(args: &Args, catalog: &Catalog, started: Instant) -> anyhow::Result<Output> {
    let stop = interrupt_flag();
    let inventory = args
        .inventory
        .as_deref()
        .map(|p| gather::inventory(p, catalog))
        .transpose()?;
    let remotes: Vec<SocketAddr> = args
        .remotes
        .iter()
        .map(|r| gather::resolve(r))
        .collect::<anyhow::Result<_>>()?;
    let mut ev = Evidence::default();
    let mut could_not_see = Vec::new();
    let mut steps = Vec::new();

    // 1. logs
    steps.push(if args.logs.is_empty() {
        Step::new(1, "logs", Status::Skipped, "no --log given".into())
    } else {
        match gather::logs(&args.logs, catalog) {
            Ok(l) => {
                let s = output::log_step(&l);
                ev.logs = Some(l);
                s
            }
            Err(e) => not_possible(1, "logs", format!("{e:#}")),
        }
    });

    // 4 and 5 are read first, so the probes' own connections are not counted among the host's.
    let host = if args.skip_host {
        None
    } else {
        match gather::host(args.netns.as_deref()) {
            Ok(h) => {
                could_not_see.extend(h.could_not_see.iter().cloned());
                Some(h)
            }
            Err(e) => {
                could_not_see.push(format!("sockets and sysctls: {e:#}"));
                None
            }
        }
    };
    let first_look = host.as_ref().map(|h| {
        let src = match &inventory {
            Some(inv) => PathSource::Inventory(inv),
            None => PathSource::Assumed,
        };
        gather::sockets(h, &src, catalog)
    });

    // 2 + 3: captures, live capture during the probes, probes.
    let mut probe_targets = remotes.clone();
    if args.probe_at_risk {
        for r in first_look.iter().flat_map(|s| &s.at_risk_remotes) {
            if let Ok(a) = r.parse::<SocketAddr>() {
                if !probe_targets.contains(&a) && probe_targets.len() < remotes.len() + 8 {
                    probe_targets.push(a);
                }
            }
        }
    }
    let live = match (args.capture, args.netns.as_deref()) {
        (None, _) => None,
        (Some(_), None) => {
            could_not_see.push(
                "--capture needs --netns in this version (the capture opens the namespace by name)"
                    .into(),
            );
            None
        }
        (Some(_), Some(ns)) => match gather::LiveCapture::start(ns) {
            Ok(c) => Some(c),
            Err(e) => {
                could_not_see.push(format!("capture: {e:#}"));
                None
            }
        },
    };
    let capture_started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let quiet = args.json;
    let mut progress = |line: &str| {
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if !quiet {
            eprintln!("{line}");
        }
    };
    if !probe_targets.is_empty() {
        let limits = ProbeLimits {
            max: args.probe_max,
            connections: 256,
            connect_rate: 200,
        };
        ev.probes = gather::probes(
            &probe_targets,
            args.netns.as_deref(),
            &limits,
            catalog,
            &stop,
            &mut progress,
        );
        if tty {
            eprintln!();
        }
    }
    let mut packet_notes = Vec::new();
    if let (Some(live), Some(d)) = (live, args.capture) {
        while capture_started.elapsed() < d && !stop.load(Ordering::Relaxed) {
            progress(&format!(
                "capturing {:.0} s of {:.0} s",
                capture_started.elapsed().as_secs_f64(),
                d.as_secs_f64()
            ));
            std::thread::sleep(Duration::from_millis(500));
        }
        if tty {
            eprintln!();
        }
        match live.finish(catalog) {
            Ok((p, frames, errors)) => {
                packet_notes.push(format!(
                    "captured {frames} frame(s) in {:.0} s",
                    capture_started.elapsed().as_secs_f64()
                ));
                packet_notes.extend(errors);
                ev.packets = Some(merge_packets(ev.packets.take(), p));
            }
            Err(e) => could_not_see.push(format!("capture: {e:#}")),
        }
    }
    if !args.pcaps.is_empty() {
        let (p, errors) = gather::pcaps(&args.pcaps, catalog);
        packet_notes.extend(errors);
        ev.packets = Some(merge_packets(ev.packets.take(), p));
    }
    steps.push(match &ev.packets {
        Some(p) => output::packet_step(p, packet_notes),
        None if args.capture.is_some() => not_possible(
            2,
            "packets",
            "the capture could not run (see could not see)".into(),
        ),
        None => Step::new(
            2,
            "packets",
            Status::Skipped,
            "no --pcap or --capture given".into(),
        ),
    });

    // 3: path
    let mut path_step = if ev.probes.is_empty() {
        Step::new(
            3,
            "path",
            Status::Skipped,
            "no --remote given (and no remote at risk to probe)".into(),
        )
    } else {
        output::probe_step(&ev.probes)
    };
    if let Some(h) = &host {
        ev.conntrack = gather::local_conntrack(h);
        output::conntrack_details(&mut path_step, ev.conntrack.as_ref(), h.forwarding);
    }
    steps.push(path_step);

    // 4 and 5
    match &host {
        Some(h) => {
            ev.os_keepalive = gather::os_keepalive(h);
            steps.push(output::keepalive_step(ev.os_keepalive.as_ref()));
            let measured = ev
                .probes
                .iter()
                .filter_map(|p| p.low_s.filter(|_| p.high_s.is_some()).or(p.high_s))
                .reduce(f64::min);
            let src = match (measured, &inventory) {
                (Some(m), _) => PathSource::Measured(m),
                (None, Some(inv)) => PathSource::Inventory(inv),
                (None, None) => PathSource::Assumed,
            };
            let s = gather::sockets(h, &src, catalog);
            steps.push(output::socket_step(&s));
            ev.sockets = Some(s);
        }
        None if args.skip_host => {
            let why = "--skip-host: the logs come from another host".to_string();
            steps.push(Step::new(4, "keepalive", Status::Skipped, why.clone()));
            steps.push(Step::new(5, "sockets", Status::Skipped, why));
        }
        None => {
            let why = could_not_see.last().cloned().unwrap_or_default();
            steps.push(not_possible(4, "keepalive", why.clone()));
            steps.push(not_possible(5, "sockets", why));
        }
    }
    steps.sort_by_key(|s| s.number);

    let verdict = decide(&ev);
    let inventory_toml = fix::inventory_toml(&verdict, &ev);
    let plan = match &inventory_toml {
        Some(t) => match gather::plan(t, catalog) {
            Ok(p) => Some(p),
            Err(e) => {
                could_not_see.push(format!("plan: {e:#}"));
                None
            }
        },
        None => None,
    };
    Ok(Output::new(
        steps,
        verdict,
        plan,
        inventory_toml,
        ev,
        could_not_see,
        stop.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

/// Sum two captures' evidence (a live capture and given files).
fn merge_packets(
    a: Option<idlereset_core::triage::PacketEvidence>,
    b: idlereset_core::triage::PacketEvidence,
) -> idlereset_core::triage::PacketEvidence {
    let Some(a) = a else { return b };
    let min = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let max = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let mut catalog = a.catalog;
    catalog.extend(
        b.catalog
            .into_iter()
            .filter(|c| !catalog.contains(c))
            .collect::<Vec<_>>(),
    );
    let low = max(a.idle_low_s, b.idle_low_s);
    let high = min(a.idle_high_s, b.idle_high_s);
    idlereset_core::triage::PacketEvidence {
        flows: a.flows + b.flows,
        idle_resets: a.idle_resets + b.idle_resets,
        middlebox_resets: a.middlebox_resets + b.middlebox_resets,
        blackholes: a.blackholes + b.blackholes,
        idle_closes: a.idle_closes + b.idle_closes,
        active_resets: match (a.active_resets, b.active_resets) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        },
        idle_low_s: low,
        idle_high_s: high,
        consistent: a.consistent
            && b.consistent
            && !matches!((low, high), (Some(l), Some(h)) if l >= h),
        catalog,
    }
}
