//! The Markdown after-action report of a play-through (`replay --report OUT.md`).
//!
//! Rendered from the [`Transcript`] and the [`Scenario`] only, so a report can be written for
//! any front end's session and compared in tests.

use std::fmt::Write;

use super::model::Scenario;
use super::session::Transcript;

/// Markdown after-action report.
pub fn markdown(s: &Scenario, t: &Transcript) -> String {
    let mut out = String::new();
    // writing to a String cannot fail; the results are ignored on purpose
    let _ = writeln!(out, "# After-action report: {}\n", s.title);
    let _ = writeln!(out, "- Scenario: `{}` ({})", s.id, s.origin);
    let _ = writeln!(
        out,
        "- Path taken: {}",
        if t.path.is_empty() { "(none)" } else { &t.path }
    );
    let _ = writeln!(
        out,
        "- Total downtime: {} min{}",
        t.total_minutes,
        if t.complete {
            ""
        } else {
            " (exercise not finished)"
        }
    );
    let _ = writeln!(out, "- Optimal resolution time: {} min", t.optimal_minutes);
    let worst_note = s
        .worst_note
        .as_deref()
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- If every wrong choice was made: {} min{worst_note}",
        t.worst_minutes
    );
    for note in t.shown_damage_notes() {
        let _ = writeln!(out, "- {note}");
    }
    let _ = writeln!(out, "- Verdict: {}\n", verdict(t));
    if !s.setup.is_empty() {
        let _ = writeln!(out, "## Setup\n");
        for line in &s.setup {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Rounds\n");
    let _ = writeln!(out, "| Round | Choice | Recommended | Minutes |");
    let _ = writeln!(out, "|---|---|---|---|");
    for r in &t.rounds {
        let choice = match (r.choice, &r.choice_text) {
            (Some(l), Some(text)) => format!("{l}) {}", cell(text)),
            _ => "(checklist)".to_string(),
        };
        let rec = match r.recommended_choice {
            Some(l) if r.recommended => format!("{l} (yes)"),
            Some(l) => format!("{l}"),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} {} | {choice} | {rec} | {} |",
            r.number,
            cell(&r.title),
            r.minutes
        );
    }
    let _ = writeln!(out);
    for r in t.rounds.iter().filter(|r| r.result.is_some()) {
        let _ = writeln!(out, "### Round {}: {}\n", r.number, r.title);
        if let Some(result) = &r.result {
            let _ = writeln!(out, "{}\n", result.replace('\n', " "));
        }
        if let Some(e) = &r.evidence {
            let _ = writeln!(out, "Measured: {e}\n");
        }
        if let Some(c) = &r.caveat {
            let _ = writeln!(out, "> **Caveat:** {c}\n");
        }
        if let Some(a) = &r.action {
            let _ = writeln!(out, "System change: {}\n", a.describe());
        }
        if let Some(v) = &r.verification {
            let _ = writeln!(out, "Verified in the lab: {v}\n");
        }
    }
    let _ = writeln!(out, "## What a strong response covers\n");
    for c in &t.checklist {
        let _ = writeln!(out, "- [{}] {}", if c.covered { "x" } else { " " }, c.text);
    }
    if !t.evidence.is_empty() {
        let _ = writeln!(out, "\n## Lab evidence\n");
        for e in &t.evidence {
            let _ = writeln!(out, "- {e}");
        }
    }
    if !t.references.is_empty() {
        let _ = writeln!(out, "\n## Cross-references\n");
        for r in &t.references {
            let _ = writeln!(out, "- {r}");
        }
    }
    out
}

/// One line judging the total against the scenario's range.
pub fn verdict(t: &Transcript) -> String {
    if !t.complete {
        return "unfinished".to_string();
    }
    let wrong = t
        .rounds
        .iter()
        .filter(|r| r.choice.is_some() && !r.recommended)
        .count();
    if t.total_minutes <= t.optimal_minutes {
        "optimal: every round answered with the recommended choice".to_string()
    } else {
        format!(
            "{} min over optimal ({wrong} round(s) off the recommended path)",
            t.total_minutes - t.optimal_minutes
        )
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replay::{builtin, session::play_scripted};

    #[test]
    fn report_lists_path_minutes_total_and_checklist() {
        let s = builtin::get("firewall-900").unwrap();
        let t = play_scripted(&s, &['A', 'C', 'B', 'C']).unwrap();
        let md = markdown(&s, &t);
        assert!(md.contains("- Path taken: A,C,B,C"), "{md}");
        assert!(
            md.contains(&format!("- Total downtime: {} min", t.total_minutes)),
            "{md}"
        );
        assert!(
            md.contains("| 1 Resets at exactly 15 minutes | A) Restart the app servers"),
            "{md}"
        );
        assert!(md.contains("- [ ] RST origin identified"), "{md}");
        assert!(md.contains("- [x] Monitoring added"), "{md}");
        assert!(
            md.contains("System change: SO_KEEPALIVE on the socket: idle 300 s"),
            "{md}"
        );
        assert!(verdict(&t).starts_with(&format!(
            "{} min over optimal (1 round",
            t.total_minutes - 12
        )));
    }
}
