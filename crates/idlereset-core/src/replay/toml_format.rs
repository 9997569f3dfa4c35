//! The TOML scenario format: what the built-ins are written in, and what teams write their own
//! replays in when they want explicit minutes, a coverage checklist or live-mode actions.
//!
//! ```toml
//! id = "firewall-900"                # optional; defaults to the file stem
//! title = "Idle database connections reset after 15 minutes"
//! summary = "Firewall 900 s vs pool idle 3600 s"   # one line for `replay --list`
//! setup = ["System context: …", "Time: …", "Your role: …"]
//! optimal_minutes = 12               # required unless every choice has `minutes`
//! worst_minutes = 60
//! worst_note = "+ additional damage" # optional
//! references = ["Runbook: …"]
//!
//! [[checklist]]                      # optional: what a strong response covers
//! id = "rst-origin"
//! text = "RST origin identified"
//!
//! [[round]]
//! title = "Alert fires"
//! cue = "Pools are exhausted."
//! see = "The database still shows the connections ESTABLISHED."
//!
//! [[round.choice]]
//! letter = "A"                       # optional; A, B, C… in order
//! text = "Restart the app servers"
//! result = "Fresh connections, same failure 15 minutes later."
//! recommended = false                # exactly one per round
//! minutes = 20                       # optional, all-or-none (see `scoring`)
//! covers = ["rst-origin"]            # checklist ids this choice covers
//! action = { kind = "keepalive-on-socket", idle_s = 300 }   # live-mode seam
//!
//! [[round]]                          # a round with `actions` and no choices is a
//! title = "Close the incident"       # checklist round (read, not chosen, no cost)
//! actions = ["Verify end to end", "Schedule the post-mortem"]
//! ```
//!
//! Action kinds: `none`, `keepalive-on-socket {idle_s, intvl_s?, probes?}`,
//! `sysctl-keepalive {time_s, intvl_s?, probes?}`, `firewall-timeout {timeout_s}`,
//! `conntrack-loose {enabled}`, `heartbeat {interval_s}`.
//!
//! The schema check is serde with `deny_unknown_fields` (a misspelt key is an error, not a
//! silently ignored line); toml's error spans are byte offsets, turned into line:column.
//! Rounds and choices keep their spans so the playability check points at the right line.

use serde::Deserialize;
use toml::Spanned;

use super::caveat;
use super::error::{LoadError, line_col};
use super::model::{self, Action, ChecklistItem, Choice, Round, RoundKind, Scenario};
use super::scoring::{Costs, ScoringError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    id: Option<String>,
    title: String,
    summary: Option<String>,
    #[serde(default)]
    setup: Vec<String>,
    optimal_minutes: Option<Spanned<u32>>,
    worst_minutes: Option<Spanned<u32>>,
    worst_note: Option<String>,
    #[serde(default)]
    damage_notes: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    checklist: Vec<ChecklistItem>,
    #[serde(default)]
    round: Vec<Spanned<RawRound>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRound {
    title: String,
    cue: Option<String>,
    see: Option<String>,
    #[serde(default)]
    choice: Vec<Spanned<RawChoice>>,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChoice {
    letter: Option<Spanned<String>>,
    text: String,
    result: String,
    #[serde(default)]
    recommended: bool,
    minutes: Option<u32>,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    covers: Vec<String>,
    evidence: Option<String>,
    caveat: Option<String>,
}

/// Parse a TOML scenario. `file` names the source in errors; `default_id` is used when the
/// file has no `id`.
pub fn parse(text: &str, file: &str, default_id: &str) -> Result<Scenario, LoadError> {
    let at = |offset: usize, msg: String| {
        let (line, column) = line_col(text, offset);
        LoadError::at(file, line, column, msg)
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(offset, e.message().trim().to_string())
    })?;
    let mut rounds = Vec::new();
    for (i, r) in raw.round.iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let (line, _) = line_col(text, r.span().start);
        let r = r.get_ref();
        let kind = match (r.choice.is_empty(), r.actions.is_empty()) {
            (false, true) => {
                let mut choices = Vec::new();
                for (j, c) in r.choice.iter().enumerate() {
                    choices.push(
                        choice(c, j)
                            .map_err(|(off, msg)| at(off, format!("round {number}: {msg}")))?,
                    );
                }
                RoundKind::Decision { choices }
            }
            (true, false) => RoundKind::Checklist {
                actions: r.actions.clone(),
            },
            (false, false) => {
                return Err(LoadError::at(
                    file,
                    line,
                    1,
                    format!("round {number} has both choices and actions; split it in two"),
                ));
            }
            (true, true) => {
                return Err(LoadError::at(
                    file,
                    line,
                    1,
                    format!("round {number} has neither [[round.choice]] nor actions"),
                ));
            }
        };
        rounds.push(Round {
            number,
            title: r.title.clone(),
            cue: r.cue.clone(),
            see: r.see.clone(),
            kind,
            line,
        });
    }
    let mut scenario = Scenario {
        id: raw.id.clone().unwrap_or_else(|| default_id.to_string()),
        title: raw.title.clone(),
        summary: raw.summary.clone().unwrap_or_else(|| raw.title.clone()),
        setup: raw.setup,
        rounds,
        optimal_minutes: raw.optimal_minutes.as_ref().map_or(0, |v| *v.get_ref()),
        worst_minutes: raw.worst_minutes.as_ref().map_or(0, |v| *v.get_ref()),
        worst_note: raw.worst_note,
        damage_notes: raw.damage_notes,
        checklist: raw.checklist,
        references: raw.references,
        evidence: raw.evidence,
        origin: file.to_string(),
    };
    let explicit = scenario
        .rounds
        .iter()
        .flat_map(Round::choices)
        .any(|c| c.minutes.is_some());
    let span_of = |v: &Option<Spanned<u32>>| v.as_ref().map_or(0, |v| v.span().start);
    if explicit {
        // derive what the file leaves out from the explicit minutes
        let costs = Costs::compute(&scenario).map_err(|e| match &e {
            // point at the choice that lacks (or has) minutes
            ScoringError::PartialMinutes { round, letter, .. } => {
                let offset = raw
                    .round
                    .get((*round as usize).saturating_sub(1))
                    .and_then(|r| {
                        let rr = r.get_ref();
                        scenario
                            .rounds
                            .get((*round as usize).saturating_sub(1))
                            .and_then(|m| {
                                m.choices()
                                    .iter()
                                    .position(|c| c.letter == *letter)
                                    .and_then(|j| rr.choice.get(j))
                            })
                    })
                    .map_or(0, |c| c.span().start);
                at(offset, e.to_string())
            }
            _ => LoadError::at(file, 0, 0, e.to_string()),
        })?;
        if raw.optimal_minutes.is_none() {
            scenario.optimal_minutes = costs.optimal_total(&scenario);
        }
        if raw.worst_minutes.is_none() {
            scenario.worst_minutes = costs.worst_total();
        }
    } else if raw.optimal_minutes.is_none() || raw.worst_minutes.is_none() {
        let which = if raw.optimal_minutes.is_none() {
            "optimal_minutes"
        } else {
            "worst_minutes"
        };
        return Err(LoadError::at(
            file,
            0,
            0,
            format!("{which} is required (or give `minutes` on every choice)"),
        ));
    }
    model::check(&scenario).map_err(|(msg, line)| LoadError::at(file, line, 1, msg))?;
    caveat::annotate(&mut scenario);
    let stated_at = span_of(&raw.optimal_minutes).max(span_of(&raw.worst_minutes));
    let costs = Costs::compute(&scenario).map_err(|e| at(stated_at, e.to_string()))?;
    if explicit {
        costs
            .check_against(&scenario)
            .map_err(|e| at(stated_at, e.to_string()))?;
    }
    Ok(scenario)
}

fn choice(c: &Spanned<RawChoice>, index: usize) -> Result<Choice, (usize, String)> {
    let raw = c.get_ref();
    let letter = match &raw.letter {
        None => u8::try_from(index)
            .ok()
            .and_then(|i| b'A'.checked_add(i))
            .filter(u8::is_ascii_uppercase)
            .map(char::from)
            .ok_or_else(|| (c.span().start, "more than 26 choices".to_string()))?,
        Some(l) => {
            let s = l.get_ref().trim();
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(ch), None) if ch.is_ascii_alphabetic() => ch.to_ascii_uppercase(),
                _ => {
                    return Err((
                        l.span().start,
                        format!("choice letter {s:?} must be one letter A-Z"),
                    ));
                }
            }
        }
    };
    Ok(Choice {
        letter,
        text: raw.text.clone(),
        recommended: raw.recommended,
        result: raw.result.clone(),
        minutes: raw.minutes,
        action: raw.action.clone(),
        covers: raw.covers.clone(),
        evidence: raw.evidence.clone(),
        caveat: raw.caveat.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replay::session::play_scripted;

    const MINI: &str = r#"title = "Mini"
optimal_minutes = 6
worst_minutes = 30

[[round]]
title = "One"
cue = "Hurry"
[[round.choice]]
text = "Guess"
result = "Wrong"
[[round.choice]]
text = "Look"
result = "Right"
recommended = true
action = { kind = "firewall-timeout", timeout_s = 7200 }

[[round]]
title = "Two"
[[round.choice]]
text = "Fix"
result = "Fixed"
recommended = true
[[round.choice]]
text = "Wait"
result = "Worse"

[[round]]
title = "Close"
actions = ["check", "document"]
"#;

    #[test]
    fn mini_scenario_loads_and_scores() {
        let s = parse(MINI, "mini.toml", "mini").unwrap();
        assert_eq!(s.id, "mini");
        assert_eq!(s.rounds.len(), 3);
        assert_eq!(s.rounds[0].line, 5);
        assert_eq!(
            s.rounds[0].choice('B').unwrap().action,
            Action::FirewallTimeout { timeout_s: 7200 }
        );
        assert_eq!(play_scripted(&s, &['B', 'A']).unwrap().total_minutes, 6);
        assert_eq!(play_scripted(&s, &['A', 'B']).unwrap().total_minutes, 30);
    }

    fn err(text: &str) -> LoadError {
        parse(text, "x.toml", "x").unwrap_err()
    }

    #[test]
    fn schema_errors_give_line_and_column() {
        let e = err(&MINI.replace("cue = \"Hurry\"", "cue_text = \"Hurry\""));
        assert!(
            matches!(
                &e,
                LoadError::At {
                    line: 7,
                    column: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("cue_text"), "{e}");
        let e = err(&MINI.replace("timeout_s = 7200", "timeout_s = \"long\""));
        assert_eq!(e.line(), Some(15), "{e}");
        let e = err(&MINI.replace("kind = \"firewall-timeout\"", "kind = \"reboot\""));
        assert_eq!(e.line(), Some(15), "{e}");
        let e = err("title = \"x\"\noptimal_minutes = = 3\n");
        assert_eq!(e.line(), Some(2), "{e}");
    }

    #[test]
    fn playability_errors_point_at_the_round() {
        let e = err(&MINI.replace(
            "result = \"Worse\"",
            "result = \"Worse\"\nrecommended = true",
        ));
        assert_eq!(e.line(), Some(17), "{e}");
        assert!(e.to_string().contains("exactly one recommended"), "{e}");
        let e = err(&MINI.replace("actions = [\"check\", \"document\"]", ""));
        assert_eq!(e.line(), Some(27), "{e}");
        let e = err(&MINI.replace("optimal_minutes = 6\n", ""));
        assert!(e.to_string().contains("optimal_minutes is required"), "{e}");
        let e = err(&MINI
            .replace("letter", "x")
            .replace("text = \"Guess\"", "letter = \"AB\"\ntext = \"Guess\""));
        assert_eq!(e.line(), Some(9), "{e}");
    }

    #[test]
    fn explicit_minutes_must_match_stated_times() {
        let explicit = MINI
            .replace("result = \"Wrong\"", "result = \"Wrong\"\nminutes = 25")
            .replace("result = \"Right\"", "result = \"Right\"\nminutes = 4")
            .replace("result = \"Fixed\"", "result = \"Fixed\"\nminutes = 2")
            .replace("result = \"Worse\"", "result = \"Worse\"\nminutes = 5");
        let s = parse(&explicit, "x.toml", "x").unwrap();
        assert_eq!(play_scripted(&s, &['A', 'B']).unwrap().total_minutes, 30);
        assert_eq!(play_scripted(&s, &['B', 'B']).unwrap().total_minutes, 9);
        let wrong = explicit.replace("minutes = 25", "minutes = 26");
        let e = err(&wrong);
        assert!(e.to_string().contains("worst time is 30 min"), "{e}");
        assert_eq!(e.line(), Some(3), "{e}");
        // minutes on some choices only: the error points at the first choice without them
        let partial = explicit.replacen("minutes = 2\n", "", 1);
        let e = err(&partial);
        assert_eq!(e.line(), Some(21), "{e}");
        assert!(e.to_string().contains("round 2 choice A has none"), "{e}");
        // stated times may be left out and are derived
        let derived = explicit.replace("optimal_minutes = 6\nworst_minutes = 30\n", "");
        let s = parse(&derived, "x.toml", "x").unwrap();
        assert_eq!((s.optimal_minutes, s.worst_minutes), (6, 30));
    }

    #[test]
    fn readme_example_is_a_valid_scenario() {
        let readme = include_str!("../../../../docs/replay.md");
        let section = readme
            .split("**TOML format.**")
            .nth(1)
            .expect("docs/replay.md has the TOML format section");
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let s = parse(block, "docs/replay.md", "readme").unwrap();
        assert_eq!(s.id, "my-incident");
        assert_eq!(s.evidence.len(), 1);
        assert!(s.rounds[0].choices()[1].evidence.is_some());
        assert_eq!(play_scripted(&s, &['B']).unwrap().total_minutes, 12);
        assert_eq!(play_scripted(&s, &['A']).unwrap().total_minutes, 60);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
                let _ = parse(&text, "p.toml", "p");
            }

            #[test]
            fn never_panics_on_mangled_scenario(cut in 0usize..600, len in 0usize..40, insert in "[\\[\\]=\"a-z0-9 \n.]{0,10}") {
                let mut s = MINI.to_string();
                let start = cut.min(s.len());
                let end = (start + len).min(s.len());
                s.replace_range(start..end, &insert);
                let _ = parse(&s, "p.toml", "p");
            }
        }
    }
}
