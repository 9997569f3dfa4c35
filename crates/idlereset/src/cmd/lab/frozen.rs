//! `lab reproduce --preset nat-43200-invalid`: print the frozen-timer story and the fixes.

use std::io::Write;

use idlereset_lab::frozen::{self, Options, Report};

use crate::app::Outcome;
use crate::cmd::signals::run_cancellable;

pub fn run(json: bool) -> anyhow::Result<Outcome> {
    let opts = Options::default();
    let report =
        run_cancellable(
            async move { Ok(frozen::run(&opts, &|m| eprintln!("idlereset: {m}")).await?) },
        )?;
    if json {
        crate::cmd::print_json(&report)?;
    } else {
        print(&report, &mut std::io::stdout().lock())?;
    }
    Ok(if report.outcome == "survived" && report.error.is_none() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn print(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: established timeout {} s, asymmetric fault {} s at {} B/s",
        r.preset, r.options.established_timeout_s, r.options.fault_s, r.options.rate
    )?;
    for line in &r.story.timeline {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "Outcome: {} ({})", r.outcome, r.story.detail)?;
    if let Some(e) = &r.error {
        writeln!(out, "Error: {e}")?;
    }
    writeln!(out, "Fixes (each in its own lab run):")?;
    for f in &r.fixes {
        writeln!(out, "  {:<34} {:<14} {}", f.fix, f.outcome, f.detail)?;
    }
    Ok(())
}
