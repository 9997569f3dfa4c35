//! Human rendering of a `lab reproduce` report (also used by `demo`).

use std::io::Write;

use idlereset_lab::reproduce::Report;

pub fn print(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Scenario {}: firewall {} ({} s), {}",
        r.preset, r.profile, r.firewall_timeout_s, r.client
    )?;
    writeln!(
        out,
        "Time scale {}: lab seconds x {} = incident seconds\n",
        r.time_scale, r.time_scale
    )?;
    writeln!(
        out,
        "  {:>8} {:>10}  {:<4} what",
        "lab t", "incident t", "host"
    )?;
    for e in &r.timeline {
        writeln!(
            out,
            "  {:>7.2}s {:>9.0}s  {:<4} {}",
            e.t_s, e.incident_s, e.host, e.what
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Outcome: {:?} after {:.0} s idle{}",
        r.outcome,
        r.idle_s,
        r.error
            .as_ref()
            .map(|e| format!(": \"{e}\""))
            .unwrap_or_default()
    )?;
    writeln!(out, "Verdict: {}", r.verdict)?;
    Ok(())
}
