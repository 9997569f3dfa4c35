//! `idlereset logs`: find reset events in application logs and say what they follow: a timer
//! counted from connection start, a wall-clock schedule, or an idle timeout.
//!
//! This module only validates arguments, hands blocks read by [`read`] to
//! `idlereset_core::logs::Scanner` and renders the result: a line per incident as it is found
//! (pipes, standard input, `--follow`), a terminal summary with a sparkline of the drift,
//! `--json` (docs/json.md contract), and `--plot OUT.svg`.

mod plot;
mod read;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::{Human, parse_duration};
use idlereset_core::logs::analysis::{self, Analysis, Pattern};
use idlereset_core::logs::signatures::SignatureSet;
use idlereset_core::logs::timestamp::TimeContext;
use idlereset_core::logs::{LiveIncident, Report, ScanOptions, Scanner};
use jiff::tz::TimeZone;
use read::Msg;

use crate::app::Outcome;

const EXAMPLES: &str = "\
Examples:
  idlereset logs app.log                          find resets, their period, drift and pattern
  idlereset logs app.log.1 app.log --json         one JSON object (events, pattern, period_s, ...)
  idlereset logs app.log --plot resets.svg        draw the events against the fitted schedule
  idlereset logs lab.log --match 'GOAWAY'         add your own signature (regular expression)
  idlereset logs /var/log/syslog --tz Europe/Berlin --year 2024
  kubectl logs -f deploy/api | idlereset logs -  incidents as they happen, summary at EOF or Ctrl-C
  idlereset logs --follow /var/log/app.log      like tail -F: survives rotation and copytruncate
  idlereset logs --follow app.log --json        one JSON object per incident, then the summary

Stack-trace lines (indented, `Caused by:`, `Traceback`, Go panics) belong to the timestamped line
above: one failure is one event.

Exit status: 0 no reset events, 1 reset events found, 2 error.";

/// The examples plus the built-in signatures, as the library data file lists them.
fn help_text() -> String {
    use idlereset_core::logs::signatures::builtins;
    let mut by_lib: Vec<(&str, Vec<&str>)> = Vec::new();
    for b in builtins() {
        match by_lib.iter_mut().find(|(l, _)| *l == b.library) {
            Some((_, v)) => v.push(&b.literal),
            None => by_lib.push((&b.library, vec![&b.literal])),
        }
    }
    let list: Vec<String> = by_lib
        .iter()
        .map(|(l, v)| format!("{l} ({})", v.join(", ")))
        .collect();
    let (head, tail) = EXAMPLES
        .split_once("Stack-trace lines")
        .unwrap_or((EXAMPLES, ""));
    format!(
        "{head}Built-in signatures (case-insensitive, from the library data file): {}.\nStack-trace lines{tail}",
        list.join("; ")
    )
}

#[derive(Debug, clap::Args)]
#[command(after_help = help_text())]
pub struct Args {
    /// Log files to read (`-` for standard input)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Draw the events over time with the fitted schedule to this SVG file
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
    /// Also count lines matching this regular expression as reset events (repeatable)
    #[arg(long = "match", value_name = "REGEX")]
    pub patterns: Vec<String>,
    /// Use only the --match patterns, not the built-in signatures
    #[arg(long)]
    pub no_builtin: bool,
    /// Time zone of timestamps without an offset (IANA name, `UTC`, or `local`)
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,
    /// Year of syslog timestamps, which have none (default: this year)
    #[arg(long, value_name = "YEAR")]
    pub year: Option<i16>,
    /// Events closer than this are one incident (one reset logs several lines)
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub merge_window: String,
    /// Do not read connection ids / 4-tuples (skips the idle bracket)
    #[arg(long)]
    pub no_connections: bool,
    /// Keep reading FILE as it grows (like tail -F, across rotation and copytruncate); print each
    /// incident as it is found and the summary on Ctrl-C
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop reading each input after this many bytes (e.g. 100M, 2G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_bytes: Option<u64>,
    /// Skip (and count) lines longer than this (e.g. 64K, 1M)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1M")]
    pub max_line: u64,
}

/// `4096`, `64K`, `100M`, `2G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?}: expected a size such as 4096, 64K, 100M or 2G"))
}

/// An input that produced no line break in this many bytes is not a text log.
const NOT_TEXT_AFTER: u64 = 64 << 20;

fn time_zone(name: &str) -> anyhow::Result<TimeZone> {
    match name {
        "local" => Ok(TimeZone::system()),
        "UTC" | "utc" | "Z" => Ok(TimeZone::UTC),
        other => TimeZone::get(other).with_context(|| format!("--tz {other:?}: unknown time zone (try UTC, local or an IANA name such as Europe/Berlin)")),
    }
}

/// Prints incidents as they are found.
struct LivePrinter {
    enabled: bool,
    json: bool,
}

impl LivePrinter {
    fn print(&self, i: &LiveIncident) {
        if !self.enabled {
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not stop the scan; the summary write reports it.
        let _ = if self.json {
            serde_json::to_writer(&mut out, i)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            let since = i
                .since_previous_s
                .map_or(String::new(), |d| format!(" (+{})", Human(d)));
            let conn = i
                .conn
                .as_deref()
                .map_or(String::new(), |c| format!(" conn {c}"));
            writeln!(
                out,
                "incident {} at {}{since} {}:{} [{}]{conn}: {}",
                i.incident, i.time, i.file, i.line, i.signature, i.text
            )
        };
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let tz = time_zone(&args.tz)?;
    let year = match args.year {
        Some(y) => y,
        None => jiff::Zoned::now().year(),
    };
    let merge = parse_duration(&args.merge_window)
        .context("--merge-window")?
        .as_secs_f64();
    if args.follow && args.files.len() != 1 {
        anyhow::bail!("--follow reads exactly one FILE (or -)");
    }
    let signatures = SignatureSet::new(!args.no_builtin, &args.patterns)?;
    let opts = ScanOptions {
        signatures,
        time: TimeContext {
            tz: tz.clone(),
            year,
        },
        connections: !args.no_connections,
        merge_window_s: merge,
        max_line: Some(usize::try_from(args.max_line).unwrap_or(usize::MAX)),
    };
    let catalog = Catalog::builtin()?;
    let (rx, stop) = read::spawn(
        args.files.clone(),
        read::ReadOptions {
            follow: args.follow,
            max_bytes: args.max_bytes,
            poll: Duration::from_millis(250),
        },
    );
    read::stop_on_signal(stop);
    let mut scanner = Scanner::new(&opts);
    let mut printer = LivePrinter {
        enabled: false,
        json: args.json,
    };
    let mut stopped = false;
    loop {
        match rx.recv() {
            Ok(Msg::Begin { name, live }) => {
                scanner.begin_input(&name);
                printer.enabled = live && (!args.json || args.follow);
            }
            Ok(Msg::Block(b)) => {
                scanner.push(&b, &mut |i| printer.print(i));
                if let Some(s) = scanner.current()
                    && s.lines == 0
                    && s.bytes >= NOT_TEXT_AFTER
                    && s.overlong_lines > 0
                {
                    anyhow::bail!(
                        "{}: no line break in the first {} bytes: not a text log (use --max-bytes to read it anyway)",
                        s.name,
                        s.bytes
                    );
                }
            }
            Ok(Msg::Truncated { size, read }) => {
                scanner.note_truncated();
                let name = scanner
                    .current()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                eprintln!(
                    "warning: {name} shrank while it was read (was {size} bytes, ended after {read}; rotated with copytruncate?): the report covers the first {read} bytes"
                );
            }
            Ok(Msg::Restarted { why }) => {
                let name = scanner
                    .current()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                eprintln!("note: {name} was {why}; reading it again from its start");
                scanner.restart_input();
            }
            Ok(Msg::End) => scanner.end_input(&mut |i| printer.print(i)),
            Ok(Msg::Failed(e)) => return Err(e),
            Ok(Msg::Stop) => {
                scanner.end_input(&mut |i| printer.print(i));
                stopped = true;
                break;
            }
            Ok(Msg::Done) | Err(_) => break,
        }
    }
    let summary = scanner.finish(&catalog, &tz);
    let report = &summary.report;
    for s in &report.inputs {
        if s.overlong_lines > 0 {
            eprintln!(
                "warning: {}: {} line(s) longer than {} bytes skipped",
                s.name, s.overlong_lines, args.max_line
            );
        }
    }
    if let Some(out) = &args.plot {
        plot::draw(out, &summary.analysis, report, &summary.samples)
            .with_context(|| format!("writing plot {}", out.display()))?;
    }
    if args.json {
        if args.follow {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, report)?;
            writeln!(out)?;
        } else {
            super::print_json(report)?;
        }
    } else {
        if stopped {
            println!("-- interrupted: summary of what was read --");
        }
        print_summary(report, &summary.analysis, &tz, args.plot.as_ref())?;
    }
    Ok(if report.events > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line chart of `values` (bucketed to at most `width` cells).
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    let cells: Vec<f64> = values
        .chunks(per)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let (lo, hi) = cells
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    cells
        .iter()
        .map(|&v| {
            if hi - lo < 1e-9 {
                SPARK[3]
            } else {
                SPARK[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

fn print_summary(
    report: &Report,
    analysis: &Analysis,
    tz: &TimeZone,
    plot: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} reset event(s) in {} file(s), {} incident(s); {} matching line(s) without a timestamp skipped, {} stack-trace line(s) folded into their record",
        report.events,
        report.inputs.len(),
        report.incidents,
        report.lines_without_timestamp,
        report.lines_in_records
    )?;
    for s in &report.inputs {
        if let Some(at) = s.truncated_at {
            writeln!(
                out,
                "  {} shrank while it was read: only its first {at} bytes are covered",
                s.name
            )?;
        }
    }
    if report.events == 0 {
        if report.lines_without_timestamp > 0 {
            writeln!(
                out,
                "{}",
                idlereset_core::logs::untimed_note(report.lines_without_timestamp)
            )?;
        } else {
            writeln!(
                out,
                "no reset-like lines found (built-in signatures: see --help; add your own with --match)"
            )?;
        }
        return Ok(());
    }
    let sigs: Vec<String> = report
        .signatures
        .iter()
        .map(
            |(k, v)| match idlereset_core::logs::signatures::library_of(k) {
                Some(lib) => format!("{k} ({lib}) {v}"),
                None => format!("{k} {v}"),
            },
        )
        .collect();
    writeln!(out, "  signatures: {}", sigs.join(", "))?;
    for s in &report.inputs {
        if let Some(e) = &s.first_event {
            let sig = e.signature.as_deref().unwrap_or_default();
            writeln!(out, "  first in {}:{} [{sig}]: {}", s.name, e.line, e.text)?;
        }
        if let Some(e) = &s.first_without_timestamp {
            writeln!(out, "  first line without timestamp: {}:{}", s.name, e.line)?;
        }
    }
    if report.absurd_timestamps > 0 {
        let ex: Vec<String> = report
            .absurd_examples
            .iter()
            .map(|a| format!("{}:{} ({})", a.file, a.line, a.time))
            .collect();
        writeln!(
            out,
            "  {} incident(s) with absurd timestamps left out: {}",
            report.absurd_timestamps,
            ex.join(", ")
        )?;
    }
    if report.sampled {
        writeln!(
            out,
            "  {} incidents: the period is fitted on a uniform sample of them",
            report.incidents
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "pattern: {} (confidence {})",
        report.pattern.as_str(),
        format!("{:?}", analysis.confidence).to_lowercase()
    )?;
    writeln!(out, "  {}", report.reason)?;
    if let Some(p) = analysis.periodicity.as_ref().filter(|p| p.regular) {
        writeln!(
            out,
            "  period {:.1} s (~{}), jitter {:.2} s, drift {:+.2} s/day against the wall clock",
            p.period_s,
            Human(p.nominal_period_s),
            p.jitter_s,
            p.drift_s_per_day
        )?;
        if let Some(per) = &analysis.per_connection {
            writeln!(
                out,
                "  per connection: {} of {} connections reset regularly, median period {:.1} s, median drift {:+.2} s/day; below: the longest series",
                per.regular, per.fitted, per.period_s, per.drift_s_per_day
            )?;
        }
        let tods: Vec<String> = p
            .times
            .iter()
            .take(6)
            .filter_map(|&t| analysis::time_of_day(t, tz))
            .collect();
        let more = if p.times.len() > 6 { ", ..." } else { "" };
        writeln!(out, "  time of day: {}{more}", tods.join(", "))?;
        writeln!(
            out,
            "  offset from a fixed {} schedule: {}  ({:+.2} s .. {:+.2} s)",
            Human(p.nominal_period_s),
            sparkline(&p.deviation_s, 60),
            p.deviation_s.iter().copied().fold(f64::INFINITY, f64::min),
            p.deviation_s
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        )?;
    } else if !analysis.intervals_s.is_empty() {
        writeln!(
            out,
            "  intervals between incidents: {}",
            sparkline(&analysis.intervals_s, 60)
        )?;
    }
    if let Some(b) = &analysis.bracket {
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
        writeln!(
            out,
            "  idle bracket ({} connection(s)): survived up to {}, failed after {} ({} survived, {} failed idles)",
            b.connections,
            fmt(b.low),
            fmt(b.high),
            b.survived,
            b.failed
        )?;
    }
    writeln!(out)?;
    if report.candidates.is_empty() {
        let hint = match report.pattern {
            Pattern::ConnectionAgeTimer => {
                " - compare with configured values on the path, e.g. sysctl net.netfilter.nf_conntrack_tcp_timeout_established"
            }
            Pattern::WallClockSchedule => {
                " - look for jobs scheduled at that time of day (cron, backups, failovers)"
            }
            _ => "",
        };
        writeln!(out, "catalog candidates: none{hint}")?;
    } else {
        writeln!(out, "catalog candidates:")?;
        for c in &report.candidates {
            writeln!(
                out,
                "  {:<24} {:<28} {}",
                Human(c.timeout_s).to_string(),
                c.id,
                c.source
            )?;
        }
    }
    if let Some(note) = &report.idle_bracket_note {
        writeln!(out, "idle bracket: {note}")?;
    }
    if let Some(p) = plot {
        writeln!(out, "plot written to {}", p.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_and_buckets() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0], 10), "▁▅█");
        assert_eq!(sparkline(&[5.0, 5.0], 10), "▄▄");
        assert_eq!(
            sparkline(&(0..100).map(f64::from).collect::<Vec<_>>(), 10)
                .chars()
                .count(),
            10
        );
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("100m"), Ok(100 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }
}
