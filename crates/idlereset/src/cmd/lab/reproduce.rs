//! `idlereset lab reproduce`: run one incident end to end in a fresh lab.

use std::io::Write;

use idlereset_lab::frozen;
use idlereset_lab::reproduce::{self, Options, PresetReport};
use idlereset_lab::scenario::{Preset, Scenario};

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

nat-43200-invalid takes only --time-scale and --fw-timeout (default 43200 s at scale 2880);
any other knob is refused, never ignored.

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
    /// Write app.pcap (app's link) and fw-db.pcap (firewall's database link) into DIR (for
    /// nat-43200-invalid: of the story run)
    #[arg(long, value_name = "DIR")]
    pub capture_dir: Option<std::path::PathBuf>,
    /// Print one JSON object: outcome, idle_s, error, timeline, evidence, verdict
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReproduceArgs) -> anyhow::Result<Outcome> {
    if a.list {
        for p in Preset::ALL {
            println!("{:<18} {}", p.name(), p.description());
        }
        return Ok(Outcome::Clean);
    }
    let preset = Preset::parse(&a.preset)?;
    preset.check_knobs(&a.knobs.given())?;
    let progress = |m: &str| eprintln!("idlereset: {m}");
    let report = if preset.is_scenario() {
        let sc = a.knobs.apply(Scenario::of(preset)?);
        if let Some(d) = &a.capture_dir {
            std::fs::create_dir_all(d)?;
        }
        let opts = Options {
            pcap_dir: a.capture_dir.clone(),
        };
        let r = run_cancellable(async { Ok(reproduce::run_with(&sc, &opts, &progress).await?) })?;
        PresetReport::Incident(Box::new(r))
    } else {
        let mut opts = frozen::Options::from_knobs(
            a.knobs.time_scale,
            a.knobs.firewall.fw_timeout.map(|d| d.as_secs_f64()),
        )?;
        opts.pcap_dir = a.capture_dir.clone();
        let r = run_cancellable(async { Ok(frozen::run(&opts, &progress).await?) })?;
        PresetReport::FrozenTimer(Box::new(r))
    };
    if a.json {
        crate::cmd::print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        match &report {
            PresetReport::Incident(r) => super::report::print(r, &mut out)?,
            PresetReport::FrozenTimer(r) => super::frozen::print(r, &mut out)?,
        }
        if let Some(d) = &a.capture_dir {
            writeln!(
                out,
                "Captures: {}/app.pcap, {}/fw-db.pcap",
                d.display(),
                d.display()
            )?;
        }
    }
    Ok(if report.outcome().failed() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
