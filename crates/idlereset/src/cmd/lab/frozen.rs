//! Human rendering of the `nat-43200-invalid` report: the frozen-timer story and the fixes.

use std::io::Write;

use idlereset_lab::frozen::Report;

pub fn print(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
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
        let outcome = serde_json::to_value(f.outcome)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        writeln!(out, "  {:<34} {:<18} {}", f.fix, outcome, f.detail)?;
    }
    Ok(())
}
