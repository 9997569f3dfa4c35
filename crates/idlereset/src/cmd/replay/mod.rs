//! `idlereset replay`: play an incident-replay exercise and score it.
//!
//! The engine (loading, scoring, the session state machine, the after-action report) lives in
//! `idlereset_core::replay`; this module picks a front end and renders:
//!
//! * `--answers B,B,D`: scripted, for instructors and tests;
//! * a terminal UI ([`tui`]) when stdin and stdout are terminals;
//! * a plain line mode ([`mod@line`]) otherwise, or with `--plain`: prompts, one letter per line.
//!
//! It is training, so the exit code is 0 whatever the score; errors (a scenario that does
//! not load, a bad answer list) exit 2.

mod line;
mod live;
mod live_frozen;
mod text;
mod tui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use idlereset_core::replay::session::{Session, parse_answers};
use idlereset_core::replay::{Scenario, builtin, load_text, report};

use crate::app::Outcome;

const EXAMPLES: &str = "\
Examples:
  idlereset replay --list                                 built-in scenarios
  idlereset replay firewall-900                           play in the terminal UI
  idlereset replay seed.txt --answers B,B,D               the seed's markdown, scripted
  idlereset replay keepalive-7200 --answers B,D,A,B --json
  idlereset replay my-incident.toml --report after-action.md
  printf 'B\\nB\\nD\\n' | idlereset replay seed.txt     line mode (stdin is not a terminal)

Scenario files: .toml (the documented TOML format) or .md / .txt (the seed's markdown format).
Scoring: the all-recommended path totals the scenario's optimal time, every all-wrong path its
worst time; see docs/replay.md.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// A built-in scenario id (see --list) or a path to a .toml, .md or .txt replay
    #[arg(value_name = "SCENARIO", required_unless_present = "list")]
    pub scenario: Option<String>,
    /// List the built-in scenarios and exit
    #[arg(long)]
    pub list: bool,
    /// Play scripted: one letter per decision round, e.g. B,B,D
    #[arg(long, value_name = "LETTERS")]
    pub answers: Option<String>,
    /// Print the transcript and score as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown after-action report to this file
    #[arg(long, value_name = "OUT.md")]
    pub report: Option<PathBuf>,
    /// Use the plain line mode even on a terminal
    #[arg(long)]
    pub plain: bool,
    /// Back the exercise with the real lab: the incident is reproduced, every choice that changes
    /// the system is applied and verified with real traffic (needs root; line mode)
    #[arg(long)]
    pub live: bool,
    /// Time scale of the live lab [default: 300; nat-frozen-timer: 2880, its 43200 s conntrack
    /// timeout as 15 lab seconds]
    #[arg(long, requires = "live")]
    pub time_scale: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.list {
        return list(args.json);
    }
    let Some(name) = args.scenario.as_deref() else {
        anyhow::bail!(
            "name a scenario (a built-in id or a file); `idlereset replay --list` shows the built-ins"
        );
    };
    let scenario = load(name)?;
    let mut session = Session::new(&scenario)?;
    let mut live_summary: Option<live::LiveSummary> = None;
    if let Some(answers) = &args.answers {
        let letters = parse_answers(answers).map_err(|e| anyhow::anyhow!("--answers: {e}"))?;
        let needed = scenario.decision_rounds().count();
        if letters.len() != needed {
            anyhow::bail!(
                "--answers gave {} letters but {} has {needed} decision rounds",
                letters.len(),
                scenario.id
            );
        }
        let mut sink: Box<dyn Write> = if args.json {
            Box::new(std::io::sink())
        } else {
            Box::new(std::io::stdout().lock())
        };
        let mut live = match args.live {
            true => Some(live::Live::start(&scenario, args.time_scale, &mut sink)?),
            false => None,
        };
        line::play_scripted(&mut session, &letters, &mut sink, live.as_mut())?;
        if let Some(l) = live.as_mut() {
            l.finish(&mut sink)?;
        }
        live_summary = live.map(|l| l.summary);
    } else if !args.plain
        && !args.live
        && !args.json
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
    {
        tui::play(&mut session)?;
    } else {
        // narrative on stderr when stdout carries JSON
        let stdin = std::io::stdin().lock();
        let mut out: Box<dyn Write> = if args.json {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        let mut live = match args.live {
            true => Some(live::Live::start(&scenario, args.time_scale, &mut out)?),
            false => None,
        };
        line::play(&mut session, stdin, &mut out, live.as_mut())?;
        if let Some(l) = live.as_mut() {
            l.finish(&mut out)?;
        }
        live_summary = live.map(|l| l.summary);
    }
    let transcript = session.transcript();
    if let Some(path) = &args.report {
        std::fs::write(path, report::markdown(&scenario, &transcript))
            .with_context(|| format!("writing the after-action report to {}", path.display()))?;
    }
    if args.json {
        super::print_json(&JsonOut {
            transcript: &transcript,
            live: live_summary.as_ref(),
        })?;
    } else {
        let mut out = std::io::stdout().lock();
        text::damage_report(&mut out, &scenario, &transcript)?;
        if let Some(l) = &live_summary {
            writeln!(
                out,
                "Live lab: incident {:?}; applied: {}; final verification: {:?}",
                l.incident,
                if l.applied.is_empty() {
                    "nothing".to_string()
                } else {
                    l.applied.join("; ")
                },
                l.final_outcome
            )?;
        }
        if let Some(path) = &args.report {
            writeln!(out, "After-action report written to {}", path.display())?;
        }
    }
    Ok(Outcome::Clean)
}

/// A built-in id, or a file when the name looks like a path.
fn load(name: &str) -> anyhow::Result<Scenario> {
    let path = Path::new(name);
    let looks_like_file = path.exists()
        || name.contains('/')
        || [".toml", ".md", ".txt", ".markdown"]
            .iter()
            .any(|ext| name.to_ascii_lowercase().ends_with(ext));
    if !looks_like_file {
        return Ok(builtin::get(name)?);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading scenario {name}"))?;
    Ok(load_text(&text, name)?)
}

/// `replay --json`: the transcript, and what live mode did.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    transcript: &'a idlereset_core::replay::Transcript,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<&'a live::LiveSummary>,
}

/// `replay --list --json`.
#[derive(serde::Serialize)]
struct List<'a> {
    scenarios: Vec<ListEntry<'a>>,
}

/// One built-in in `replay --list --json`.
#[derive(serde::Serialize)]
struct ListEntry<'a> {
    id: &'a str,
    title: &'a str,
    summary: &'a str,
    rounds: usize,
    optimal_minutes: u32,
    worst_minutes: u32,
}

fn list(json: bool) -> anyhow::Result<Outcome> {
    let all = builtin::all()?;
    if json {
        let scenarios = all
            .iter()
            .map(|s| ListEntry {
                id: &s.id,
                title: &s.title,
                summary: &s.summary,
                rounds: s.decision_rounds().count(),
                optimal_minutes: s.optimal_minutes,
                worst_minutes: s.worst_minutes,
            })
            .collect();
        super::print_json(&List { scenarios })?;
        return Ok(Outcome::Clean);
    }
    let mut out = std::io::stdout().lock();
    for s in &all {
        writeln!(
            out,
            "{:<18} {} ({} rounds, optimal {} min, worst {} min)",
            s.id,
            s.summary,
            s.decision_rounds().count(),
            s.optimal_minutes,
            s.worst_minutes
        )?;
    }
    writeln!(
        out,
        "\nPlay one with `idlereset replay ID`, or give a .toml / .md replay file."
    )?;
    Ok(Outcome::Clean)
}
