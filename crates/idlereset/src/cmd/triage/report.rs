//! `triage --report OUT.md`: the incident write-up a team can paste into a post-mortem
//! (summary, timeline, evidence, root cause, fix, verification, rollback, monitoring). The
//! measured inventory is written beside it (`OUT.inventory.toml`) so the verify command in the
//! report runs as shown.

use std::fmt::Write as _;
use std::path::Path;

use idlereset_core::plan::render as plan_render;

use super::output::Output;
use super::render::bracket;

/// The report's Markdown.
pub fn markdown(o: &Output, inventory_file: &str) -> String {
    let v = &o.verdict;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Incident: connections reset after idle — {}",
        v.cause.as_str()
    );
    let _ = writeln!(m);
    let _ = writeln!(m, "## Summary");
    let _ = writeln!(m);
    let _ = writeln!(
        m,
        "Root cause: **{}** (confidence {:?}). Failure mode: {}. Path idle timeout {}.",
        v.cause.as_str(),
        v.confidence,
        o.failure,
        bracket(o)
    );
    if let Some(l) = o.evidence.logs.as_ref().filter(|l| l.events > 0) {
        let _ = writeln!(m);
        let _ = writeln!(m, "## Timeline");
        let _ = writeln!(m);
        let _ = writeln!(
            m,
            "- {} reset line(s) in the application log, {} incident(s){}.",
            l.events,
            l.incidents,
            l.period_s
                .map_or(String::new(), |p| format!(", about every {p:.1} s"))
        );
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Evidence (runbook steps)");
    let _ = writeln!(m);
    for s in &o.steps {
        let _ = writeln!(
            m,
            "{}. **{}** — {}: {}",
            s.number,
            s.step,
            s.status.as_str(),
            s.summary
        );
        for d in &s.details {
            let _ = writeln!(m, "   - {d}");
        }
    }
    if !o.could_not_see.is_empty() {
        let _ = writeln!(m);
        let _ = writeln!(m, "Could not see:");
        for c in &o.could_not_see {
            let _ = writeln!(m, "- {c}");
        }
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Root cause");
    let _ = writeln!(m);
    for e in &v.evidence {
        let _ = writeln!(m, "- {e}");
    }
    for c in &v.contradictions {
        let _ = writeln!(m, "- Contradiction: {c}");
    }
    if !v.catalog.is_empty() {
        let _ = writeln!(
            m,
            "- Documented timeouts that fit: {}",
            v.catalog.join(", ")
        );
    }
    for n in &v.next {
        let _ = writeln!(m, "- To collect next: {n}");
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Fix");
    let _ = writeln!(m);
    match &o.fix {
        Some(p) => {
            let _ = writeln!(m, "```text\n{}```", plan_render::text(p));
            let _ = writeln!(m);
            let _ = writeln!(m, "`/etc/sysctl.d/` file:");
            let _ = writeln!(m);
            let _ = writeln!(m, "```ini\n{}```", plan_render::sysctl(p));
        }
        None => {
            let _ = writeln!(m, "No idle-keeping fix applies to this cause.");
        }
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Verification");
    let _ = writeln!(m);
    match &o.remedy.verify {
        Some(_) => {
            let _ = writeln!(
                m,
                "Prove the plan in a lab with the measured path: `sudo idlereset verify {inventory_file}`; after rolling out, run `idlereset triage` again: the probe must still measure the same path, and step 5 must show the connections with SO_KEEPALIVE."
            );
        }
        None => {
            let _ = writeln!(
                m,
                "Re-run `idlereset triage` with the collections listed above."
            );
        }
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Rollback");
    let _ = writeln!(m);
    for r in &o.remedy.rollback {
        let _ = writeln!(m, "- {r}");
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Monitoring");
    let _ = writeln!(m);
    let _ = writeln!(
        m,
        "Alerts in deploy/prometheus/alerts.yml (fed by `idlereset exporter`) that would have caught it:"
    );
    for a in &o.remedy.alerts {
        let _ = writeln!(m, "- `{a}`");
    }
    m
}

/// Write the report and, when there is one, the inventory beside it.
pub fn write(path: &Path, o: &Output) -> std::io::Result<()> {
    let inv_path = path.with_extension("inventory.toml");
    let inv_name = inv_path.display().to_string();
    if let Some(inv) = &o.remedy.inventory {
        std::fs::write(&inv_path, inv)?;
    }
    std::fs::write(path, markdown(o, &inv_name))
}
