//! `triage` as text: the five steps, the verdict with its evidence, the fix.

use std::io::Write;
use std::path::Path;

use idlereset_core::plan::render as plan_render;

use super::output::Output;

/// "between 8.6 s and 9.4 s" for the verdict line.
pub fn bracket(o: &Output) -> String {
    match (o.path_timeout_s.low, o.path_timeout_s.high) {
        (Some(l), Some(h)) => format!("between {l:.1} s and {h:.1} s"),
        (None, Some(h)) => format!("at most {h:.1} s"),
        (Some(l), None) => format!("above {l:.1} s"),
        (None, None) => "not measured".into(),
    }
}

pub fn text(o: &Output, report: Option<&Path>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for s in &o.steps {
        writeln!(
            out,
            "[{}] {:<9} {:<12} {}",
            s.number,
            s.step,
            s.status.as_str(),
            s.summary
        )?;
        for d in &s.details {
            writeln!(out, "      {d}")?;
        }
    }
    if !o.could_not_see.is_empty() {
        writeln!(out, "could not see:")?;
        for c in &o.could_not_see {
            writeln!(out, "  - {c}")?;
        }
    }
    if o.interrupted {
        writeln!(
            out,
            "interrupted: the verdict uses what was found until Ctrl-C"
        )?;
    }
    let v = &o.verdict;
    writeln!(out)?;
    writeln!(
        out,
        "verdict: {} (confidence {:?}), failure {}, path idle timeout {}",
        v.cause.as_str(),
        v.confidence,
        o.failure,
        bracket(o)
    )?;
    for e in &v.evidence {
        writeln!(out, "  because {e}")?;
    }
    for c in &v.contradictions {
        writeln!(out, "  but {c}")?;
    }
    if !v.catalog.is_empty() {
        writeln!(out, "  catalog matches: {}", v.catalog.join(", "))?;
    }
    for n in &v.next {
        writeln!(out, "  collect next: {n}")?;
    }
    if let Some(p) = &o.fix {
        writeln!(out)?;
        writeln!(out, "fix (plan for the measured path):")?;
        for line in plan_render::text(p).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    if let (Some(inv), Some(cmd)) = (&o.remedy.inventory, &o.remedy.verify) {
        writeln!(out)?;
        writeln!(
            out,
            "verify: save this inventory as triage-inventory.toml, then run `{cmd}`"
        )?;
        for line in inv.lines() {
            writeln!(out, "  {line}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "rollback:")?;
    for r in &o.remedy.rollback {
        writeln!(out, "  - {r}")?;
    }
    writeln!(
        out,
        "alerts that would have caught it (deploy/prometheus/alerts.yml): {}",
        o.remedy.alerts.join(", ")
    )?;
    if let Some(p) = report {
        writeln!(out, "report written to {}", p.display())?;
    }
    writeln!(out, "triage took {:.1} s", o.elapsed_s)?;
    Ok(())
}
