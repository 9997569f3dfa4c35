//! The damage report as plain text, printed after every play-through (line mode, scripted,
//! and after the terminal UI closes).

use std::io::{self, Write};

use idlereset_core::replay::report::verdict;
use idlereset_core::replay::{Scenario, Transcript};

/// Path taken, minutes per round, total downtime against the optimal and worst times, the
/// source's other damage lines (blast radius), caveats of the answers chosen, the coverage
/// checklist, lab evidence and cross-references.
pub fn damage_report(out: &mut dyn Write, s: &Scenario, t: &Transcript) -> io::Result<()> {
    writeln!(out, "\nDamage report: {}", s.title)?;
    writeln!(
        out,
        "  Path taken: {}",
        if t.path.is_empty() { "(none)" } else { &t.path }
    )?;
    for r in &t.rounds {
        let what = match (r.choice, r.recommended_choice) {
            (Some(c), _) if r.recommended => format!("{c}  recommended"),
            (Some(c), Some(rec)) => format!("{c}  (recommended: {rec})"),
            (Some(c), None) => format!("{c}"),
            (None, _) => "checklist".to_string(),
        };
        writeln!(
            out,
            "  Round {:<3} {:<40} {:<22} {:>4} min",
            r.number,
            clip(&r.title, 40),
            what,
            r.minutes
        )?;
    }
    let note = s
        .worst_note
        .as_deref()
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    writeln!(
        out,
        "  Total downtime: {} min (optimal {} min, every wrong choice {} min{note})",
        t.total_minutes, t.optimal_minutes, t.worst_minutes
    )?;
    for note in t.shown_damage_notes() {
        writeln!(out, "  {note}")?;
    }
    writeln!(out, "  Verdict: {}", verdict(t))?;
    for r in &t.rounds {
        if let Some(c) = &r.caveat {
            writeln!(out, "  Caveat (round {}): {c}", r.number)?;
        }
    }
    writeln!(out, "What a strong response covers:")?;
    for c in &t.checklist {
        writeln!(out, "  [{}] {}", if c.covered { "x" } else { " " }, c.text)?;
    }
    list(out, "Lab evidence:", &t.evidence)?;
    list(out, "Cross-references:", &t.references)
}

fn list(out: &mut dyn Write, heading: &str, items: &[String]) -> io::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(out, "{heading}")?;
    for i in items {
        writeln!(out, "  - {i}")?;
    }
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
