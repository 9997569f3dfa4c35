//! `idlereset lab reproduce`: run one incident end to end in a fresh lab.

use std::io::Write;

use idlereset_lab::reproduce::{self, Options, Outcome as LabOutcome};
use idlereset_lab::scenario::{PRESETS, Scenario};

use super::args::ScenarioArgs;
use crate::app::Outcome;
use crate::cmd::signals::run_cancellable;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset lab reproduce --preset firewall-900
  idlereset lab reproduce --preset firewall-900 --keepalive-time 5m        (the fix: survives)
  idlereset lab reproduce --preset firewall-900 --os-keepalive-time 5m     (the trap: still resets)
  idlereset lab reproduce --preset firewall-3600 --fw-timeout 86400
  idlereset lab reproduce --preset firewall-900 --profile drop --user-timeout 2m --json
  idlereset lab reproduce --preset nat-43200-invalid        (frozen conntrack timer, and the fixes)
  idlereset lab reproduce --list

Exit code: 1 when the connection failed (reset, blackhole, closed), 0 when it survived.")]
pub struct ReproduceArgs {
    /// Incident preset (see --list)
    #[arg(long, default_value = "firewall-900")]
    pub preset: String,
    /// List the presets and exit
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub knobs: ScenarioArgs,
    /// Write app.pcap (app's link) and fw-db.pcap (firewall's database link) into DIR
    #[arg(long, value_name = "DIR")]
    pub capture_dir: Option<std::path::PathBuf>,
    /// Print one JSON object: outcome, idle_s, error, timeline, evidence, verdict
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReproduceArgs) -> anyhow::Result<Outcome> {
    if a.list {
        for (name, desc) in PRESETS {
            println!("{name:<16} {desc}");
        }
        println!(
            "{:<16} {}",
            idlereset_lab::frozen::PRESET,
            idlereset_lab::frozen::DESCRIPTION
        );
        return Ok(Outcome::Clean);
    }
    if a.preset == idlereset_lab::frozen::PRESET {
        return super::frozen::run(a.json);
    }
    let sc = a.knobs.apply(Scenario::preset(&a.preset)?);
    if let Some(d) = &a.capture_dir {
        std::fs::create_dir_all(d)?;
    }
    let opts = Options {
        pcap_dir: a.capture_dir.clone(),
    };
    let report = run_cancellable(async {
        Ok(reproduce::run_with(&sc, &opts, &|m| eprintln!("idlereset: {m}")).await?)
    })?;
    if a.json {
        crate::cmd::print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        super::report::print(&report, &mut out)?;
        if let Some(d) = &a.capture_dir {
            writeln!(
                out,
                "Captures: {}/app.pcap, {}/fw-db.pcap",
                d.display(),
                d.display()
            )?;
        }
    }
    Ok(if report.outcome == LabOutcome::Survived {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
