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
use idlereset_core::inventory::Inventory;
use idlereset_core::triage::{Evidence, PacketEvidence, decide, fix};

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
    /// probes run, then analyse it as step 2 (the --netns namespace, else the current one)
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

/// One triage in progress: what was found so far.
struct Run<'a> {
    args: &'a Args,
    catalog: &'a Catalog,
    inventory: Option<Inventory>,
    stop: Arc<AtomicBool>,
    ev: Evidence,
    steps: Vec<Step>,
    could_not_see: Vec<String>,
}

fn triage(args: &Args, catalog: &Catalog, started: Instant) -> anyhow::Result<Output> {
    let inventory = args
        .inventory
        .as_deref()
        .map(|p| gather::inventory(p, catalog))
        .transpose()?;
    // A name may resolve to several addresses (one per zone, IPv4 and IPv6): the first is
    // probed, and the sockets to any of them are the application's.
    let resolved: Vec<Vec<SocketAddr>> = args
        .remotes
        .iter()
        .map(|r| gather::resolve_all(r))
        .collect::<anyhow::Result<_>>()?;
    let remotes: Vec<SocketAddr> = resolved.iter().filter_map(|a| a.first().copied()).collect();
    let also: Vec<SocketAddr> = resolved
        .iter()
        .flat_map(|a| a.iter().skip(1).copied())
        .collect();
    let mut run = Run {
        args,
        catalog,
        inventory,
        stop: interrupt_flag(),
        ev: Evidence::default(),
        steps: Vec::new(),
        could_not_see: Vec::new(),
    };
    run.logs();
    // Steps 4 and 5 are read before the probes, so their connections are not counted.
    let host = run.host();
    let targets = run.probe_targets(remotes, host.as_ref());
    run.packets_and_path(&targets, host.as_ref());
    let scope: Vec<SocketAddr> = targets.iter().chain(&also).copied().collect();
    run.host_steps(host.as_ref(), &scope);
    Ok(run.finish(started))
}

impl Run<'_> {
    /// Step 1.
    fn logs(&mut self) {
        let step = if self.args.logs.is_empty() {
            Step::new(1, "logs", Status::Skipped, "no --log given".into())
        } else {
            match gather::logs(&self.args.logs, self.catalog) {
                Ok(l) => {
                    let s = output::log_step(&l);
                    self.ev.logs = Some(l);
                    s
                }
                Err(e) => not_possible(1, "logs", format!("{e:#}")),
            }
        };
        self.steps.push(step);
    }

    /// The facts of steps 3 (local conntrack), 4 and 5.
    fn host(&mut self) -> Option<gather::HostFacts> {
        if self.args.skip_host {
            return None;
        }
        match gather::host(self.args.netns.as_deref()) {
            Ok(h) => {
                self.could_not_see.extend(h.could_not_see.iter().cloned());
                Some(h)
            }
            Err(e) => {
                self.could_not_see
                    .push(format!("sockets and sysctls: {e:#}"));
                None
            }
        }
    }

    /// The `--remote`s, plus with `--probe-at-risk` up to 8 remotes step 5 finds at risk
    /// (judged against the inventory, or the assumed path timeout).
    fn probe_targets(
        &self,
        remotes: Vec<SocketAddr>,
        host: Option<&gather::HostFacts>,
    ) -> Vec<SocketAddr> {
        let mut targets = remotes;
        let (Some(h), true) = (host, self.args.probe_at_risk) else {
            return targets;
        };
        let src = match &self.inventory {
            Some(inv) => PathSource::Inventory(inv),
            None => PathSource::Assumed,
        };
        let limit = targets.len() + 8;
        // At-risk remotes are looked for among all client sockets, not only those to the
        // `--remote`s; the verdict then judges the sockets to every probed remote.
        for r in gather::sockets(h, &src, self.catalog, &[]).at_risk_remotes {
            if let Ok(a) = r.parse::<SocketAddr>()
                && !targets.contains(&a)
                && targets.len() < limit
            {
                targets.push(a);
            }
        }
        targets
    }

    /// Steps 2 and 3: the live capture runs while the probes do; then the given captures.
    fn packets_and_path(&mut self, targets: &[SocketAddr], host: Option<&gather::HostFacts>) {
        let live = self.start_capture();
        let capture_started = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let quiet = self.args.json;
        let mut progress = |line: &str| {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else if !quiet {
                eprintln!("{line}");
            }
        };
        if !targets.is_empty() {
            let limits = ProbeLimits {
                max: self.args.probe_max,
                connections: 256,
                connect_rate: 200,
            };
            self.ev.probes = gather::probes(
                targets,
                self.args.netns.as_deref(),
                &limits,
                self.catalog,
                &self.stop,
                &mut progress,
            );
            if tty {
                eprintln!();
            }
        }
        let mut notes = Vec::new();
        if let (Some(live), Some(d)) = (live, self.args.capture) {
            while capture_started.elapsed() < d && !self.stop.load(Ordering::Relaxed) {
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
            match live.finish(self.catalog) {
                Ok((p, frames, errors)) => {
                    notes.push(format!(
                        "captured {frames} frame(s) in {:.0} s",
                        capture_started.elapsed().as_secs_f64()
                    ));
                    notes.extend(errors);
                    self.add_packets(p);
                }
                Err(e) => self.could_not_see.push(format!("capture: {e:#}")),
            }
        }
        if !self.args.pcaps.is_empty() {
            let (p, errors) = gather::pcaps(&self.args.pcaps, self.catalog);
            notes.extend(errors);
            self.add_packets(p);
        }
        let packets = match &self.ev.packets {
            Some(p) => output::packet_step(p, notes),
            None if self.args.capture.is_some() => not_possible(
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
        };
        self.steps.push(packets);
        let mut path = if self.ev.probes.is_empty() {
            Step::new(
                3,
                "path",
                Status::Skipped,
                "no --remote given (and no remote at risk to probe)".into(),
            )
        } else {
            output::probe_step(&self.ev.probes)
        };
        if let Some(h) = host {
            self.ev.conntrack = gather::local_conntrack(h);
            output::conntrack_details(&mut path, self.ev.conntrack.as_ref(), h.forwarding);
        }
        self.steps.push(path);
    }

    fn start_capture(&mut self) -> Option<gather::LiveCapture> {
        self.args.capture?;
        match gather::LiveCapture::start(self.args.netns.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.could_not_see.push(format!("capture: {e:#}"));
                None
            }
        }
    }

    fn add_packets(&mut self, p: PacketEvidence) {
        self.ev.packets = Some(match self.ev.packets.take() {
            Some(a) => a.merge(p),
            None => p,
        });
    }

    /// Steps 4 and 5; sockets are judged against the measured timeout when there is one, and
    /// only those to the probed `targets` when there are any.
    fn host_steps(&mut self, host: Option<&gather::HostFacts>, targets: &[SocketAddr]) {
        let Some(h) = host else {
            let (status, why) = if self.args.skip_host {
                (
                    Status::Skipped,
                    "--skip-host: the logs come from another host".to_string(),
                )
            } else {
                (
                    Status::NotPossible,
                    self.could_not_see.last().cloned().unwrap_or_default(),
                )
            };
            self.steps
                .push(Step::new(4, "keepalive", status, why.clone()));
            self.steps.push(Step::new(5, "sockets", status, why));
            return;
        };
        self.ev.os_keepalive = gather::os_keepalive(h);
        self.steps
            .push(output::keepalive_step(self.ev.os_keepalive.as_ref()));
        let measured = self
            .ev
            .probes
            .iter()
            .filter_map(|p| p.low_s.filter(|_| p.high_s.is_some()).or(p.high_s))
            .reduce(f64::min);
        let src = match (measured, &self.inventory) {
            (Some(m), _) => PathSource::Measured(m),
            (None, Some(inv)) => PathSource::Inventory(inv),
            (None, None) => PathSource::Assumed,
        };
        let s = gather::sockets(h, &src, self.catalog, targets);
        self.steps.push(output::socket_step(&s));
        self.ev.sockets = Some(s);
    }

    /// The verdict and the fix.
    fn finish(mut self, started: Instant) -> Output {
        self.steps.sort_by_key(|s| s.number);
        let verdict = decide(&self.ev);
        let inventory_toml = fix::inventory_toml(&verdict, &self.ev);
        let plan = inventory_toml
            .as_ref()
            .and_then(|t| match gather::plan(t, self.catalog) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.could_not_see.push(format!("plan: {e:#}"));
                    None
                }
            });
        Output::new(
            self.steps,
            verdict,
            plan,
            inventory_toml,
            self.ev,
            self.could_not_see,
            self.stop.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
        )
    }
}
