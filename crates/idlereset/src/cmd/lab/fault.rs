//! `lab fault`: inject a fault into a running lab (today: an asymmetric path around `fw`).

use std::time::Duration;

use idlereset_lab::Lab;
use idlereset_lab::fault;

use crate::app::Outcome;
use crate::cmd::signals::run_graceful;

#[derive(Debug, clap::Subcommand)]
#[command(after_help = "\
Examples:
  idlereset lab fault asymmetric --for 8
  idlereset lab fault asymmetric --for 3 --lab idlereset-3fa9c1 --json")]
pub enum FaultKind {
    /// Route the db -> app direction over a direct app <-> db link (bypassing fw) for a while,
    /// so fw's conntrack misses that direction's data and marks the flow's packets INVALID
    #[command(after_help = "\
Examples:
  idlereset lab up --profile reject --loose 0 --fw-timeout 60s --time-scale 1
  idlereset lab fault asymmetric --for 8
  idlereset conntrack --netns $(idlereset lab status --json | jq -r '.labs[0].name')-fw --watch

Needs a routed profile (reject or drop): under NAT the database answers fw's own address,
which cannot be routed around fw. Ctrl-C ends the fault early; the route is always restored.")]
    Asymmetric(AsymmetricArgs),
}

#[derive(Debug, clap::Args)]
pub struct AsymmetricArgs {
    /// Seconds the db -> app direction bypasses the firewall
    #[arg(long = "for", value_name = "SECONDS")]
    pub for_s: f64,
    /// Lab (default: the only one)
    #[arg(long)]
    pub lab: Option<String>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(kind: FaultKind) -> anyhow::Result<Outcome> {
    match kind {
        FaultKind::Asymmetric(a) => asymmetric(a),
    }
}

fn asymmetric(a: AsymmetricArgs) -> anyhow::Result<Outcome> {
    if !(a.for_s.is_finite() && a.for_s > 0.0 && a.for_s <= 86_400.0) {
        anyhow::bail!("--for must be between 0 and 86400 seconds, got {}", a.for_s);
    }
    let name = super::pick_lab(a.lab.as_deref())?;
    let lab = Lab::open(&name)?;
    let json = a.json;
    if !json {
        eprintln!(
            "idlereset: lab {name}: db -> app goes around fw for {} s",
            a.for_s
        );
    }
    // The fault itself listens for Ctrl-C so the route is restored before the runtime stops.
    // A signal ends it as interrupted (exit 2), after the route was restored.
    let report = run_graceful(|cancel| async move {
        Ok(fault::asymmetric(&lab, Duration::from_secs_f64(a.for_s), cancel).await?)
    })?;
    if json {
        crate::cmd::print_json(&report)?;
    } else {
        println!(
            "asymmetric fault on {}: {} via {} for {:.1} s; fw INVALID statistic {} -> {} (+{})",
            report.lab,
            report.direction,
            report.route,
            report.duration_s,
            report.invalid_before,
            report.invalid_after,
            report.invalid_after.saturating_sub(report.invalid_before)
        );
    }
    Ok(Outcome::Clean)
}
