//! `idlereset logs`: find reset events in application logs and say what they follow: a timer
//! counted from connection start, a wall-clock schedule, or an idle timeout.
//!
//! This module only validates arguments, maps the files (via `idlereset-linux`), hands the bytes
//! to `idlereset_core::logs` and renders the result: a terminal summary with a sparkline of the
//! drift, `--json` (design.md contract), and `--plot OUT.svg`.

mod plot;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::{Human, parse_duration};
use idlereset_core::logs::analysis::{self, Analysis, Pattern};
use idlereset_core::logs::idle;
use idlereset_core::logs::signatures::SignatureSet;
use idlereset_core::logs::timestamp::TimeContext;
use idlereset_core::logs::{self as core_logs, FileScan, Report, ScanOptions};
use idlereset_linux::mapped_file::MappedFile;
use jiff::tz::TimeZone;

use crate::app::Outcome;

const EXAMPLES: &str = "\
Examples:
  idlereset logs app.log                          find resets, their period, drift and pattern
  idlereset logs app.log.1 app.log --json         one JSON object (events, pattern, period_s, ...)
  idlereset logs app.log --plot resets.svg        draw the events against the fitted schedule
  idlereset logs lab.log --match 'GOAWAY'         add your own signature (regular expression)
  idlereset logs /var/log/syslog --tz Europe/Berlin --year 2024
  kubectl logs deploy/api | idlereset logs -

Built-in signatures (case-insensitive): connection reset, ECONNRESET, broken pipe, EPIPE,
unexpected EOF, server closed the connection unexpectedly (libpq), transport is closing (gRPC),
Communications link failure (MySQL), server has gone away, lost connection to MySQL server,
socket hang up, forcibly closed by the remote host, connection abort, ETIMEDOUT, connection timed out.

Exit status: 0 no reset events, 1 reset events found, 2 error.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
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
    /// Do not read connection ids / 4-tuples (skips the idle bracket and its second pass)
    #[arg(long)]
    pub no_connections: bool,
}

struct Input {
    name: String,
    data: MappedFile,
}

fn time_zone(name: &str) -> anyhow::Result<TimeZone> {
    match name {
        "local" => Ok(TimeZone::system()),
        "UTC" | "utc" | "Z" => Ok(TimeZone::UTC),
        other => TimeZone::get(other).with_context(|| format!("--tz {other:?}: unknown time zone (try UTC, local or an IANA name such as Europe/Berlin)")),
    }
}

fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
                    .context("reading standard input")?;
                Ok(Input {
                    name: "<stdin>".into(),
                    data: MappedFile::Read(buf),
                })
            } else {
                let data = MappedFile::open(path)?;
                Ok(Input {
                    name: path.display().to_string(),
                    data,
                })
            }
        })
        .collect()
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
    let signatures = SignatureSet::new(!args.no_builtin, &args.patterns)?;
    let opts = ScanOptions {
        signatures,
        time: TimeContext {
            tz: tz.clone(),
            year,
        },
        connections: !args.no_connections,
    };
    let inputs = read_inputs(&args.files)?;
    let scans: Vec<FileScan> = inputs
        .iter()
        .map(|i| core_logs::scan(&i.data, &opts))
        .collect();
    let catalog = Catalog::builtin()?;
    let (report, analysis) = core_logs::report(&scans, &opts.signatures, &catalog, &tz, merge);

    if let Some(out) = &args.plot {
        let lines: Vec<_> = scans
            .iter()
            .flat_map(|s| s.conn_lines.iter().cloned())
            .collect();
        let samples = idle::samples(&lines);
        plot::draw(out, &analysis, &report, &samples)
            .with_context(|| format!("writing plot {}", out.display()))?;
    }
    if args.json {
        super::print_json(&report)?;
    } else {
        print_summary(
            &inputs,
            &scans,
            &report,
            &analysis,
            &opts.signatures,
            &tz,
            args.plot.as_ref(),
        )?;
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

#[allow(clippy::too_many_arguments)]
fn print_summary(
    inputs: &[Input],
    scans: &[FileScan],
    report: &Report,
    analysis: &Analysis,
    signatures: &SignatureSet,
    tz: &TimeZone,
    plot: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} reset event(s) in {} file(s), {} incident(s); {} matching line(s) without a timestamp skipped",
        report.events,
        inputs.len(),
        report.incidents,
        report.lines_without_timestamp
    )?;
    if report.events == 0 {
        writeln!(
            out,
            "no reset-like lines found (built-in signatures: see --help; add your own with --match)"
        )?;
        return Ok(());
    }
    let sigs: Vec<String> = report
        .signatures
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(out, "  signatures: {}", sigs.join(", "))?;
    for (input, scan) in inputs.iter().zip(scans) {
        if let Some(e) = scan.events.first() {
            let line = core_logs::line_number(&input.data, e.offset);
            let text = line_text(&input.data, e.offset);
            let sig = signatures
                .names()
                .get(e.signature)
                .map_or("", String::as_str);
            writeln!(out, "  first in {}:{line} [{sig}]: {text}", input.name)?;
        }
        if let Some(off) = scan.first_no_timestamp {
            let line = core_logs::line_number(&input.data, off);
            writeln!(out, "  first line without timestamp: {}:{line}", input.name)?;
        }
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
    if let Some(p) = plot {
        writeln!(out, "plot written to {}", p.display())?;
    }
    Ok(())
}

/// The line at `offset`, trimmed to 120 characters.
fn line_text(data: &[u8], offset: usize) -> String {
    let rest = data.get(offset..).unwrap_or_default();
    let end = memchr_newline(rest).min(120);
    String::from_utf8_lossy(&rest[..end]).trim_end().to_string()
}

fn memchr_newline(b: &[u8]) -> usize {
    b.iter().position(|&c| c == b'\n').unwrap_or(b.len())
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
}
