//! Reset events in application logs: find them fast, time them, and say what they follow.
//!
//! The pipeline, one module per step:
//! - [`lines`]: blocks of a file, pipe or standard input cut into whole lines, with a cap on line
//!   length (memory stays bounded whatever the input);
//! - [`scanner`]: one streaming pass per input: SIMD-prefiltered searches find reset-like text
//!   ([`signatures`]) and connection identities ([`idle`]); only those lines are parsed, which
//!   keeps a gigabyte scan near grep speed; [`record`] ties stack-trace lines to the record they
//!   belong to so one failure counts once;
//! - [`timestamp`]: the time of a line, whatever the log format;
//! - [`idle`]: when lines carry connection identities, the idle bracket of the timeout;
//! - [`outliers`]: absurd timestamps, reported and left out;
//! - [`analysis`]: incidents, period, jitter, drift against the wall clock, pattern.
//!
//! The binary reads the bytes (this crate does no I/O) and hands them to a [`Scanner`];
//! [`Scanner::finish`] builds the `logs --json` object (docs/json.md contract).

pub mod analysis;
pub mod idle;
pub mod lines;
pub mod outliers;
pub mod record;
pub mod reservoir;
pub mod scanner;
pub mod signatures;
pub mod timestamp;

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::catalog::Catalog;
use analysis::{Analysis, Confidence, Pattern};
use idle::{Bracket, IdleSample};
pub use scanner::{InputStats, LiveIncident, Location, Scanner};
use signatures::SignatureSet;
use timestamp::TimeContext;

/// What a scan looks for and how it reads times.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// The signatures matched.
    pub signatures: SignatureSet,
    /// How timestamps without a year or zone are read.
    pub time: TimeContext,
    /// Read the lines of connections (identities) to bracket the idle timeout.
    pub connections: bool,
    /// Events closer than this (seconds) in one input are one incident.
    pub merge_window_s: f64,
    /// Longest line kept (default [`lines::DEFAULT_BLOCK`]); longer lines are skipped and counted.
    pub max_line: Option<usize>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            signatures: SignatureSet::builtin(),
            time: TimeContext::default(),
            connections: true,
            merge_window_s: analysis::DEFAULT_MERGE_WINDOW_S,
            max_line: None,
        }
    }
}

pub(crate) fn seconds(t: Timestamp) -> f64 {
    t.as_second() as f64 + f64::from(t.subsec_nanosecond()) * 1e-9
}

/// `idle_timeout_s` in the JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleTimeout {
    /// Longest idle survived, seconds (the timeout is above it).
    pub low: Option<f64>,
    /// Shortest idle that failed, seconds (the timeout is at most this).
    pub high: Option<f64>,
}

/// A catalog entry near what was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateOut {
    /// The entry's idle timeout, seconds.
    pub timeout_s: f64,
    /// The document the figure comes from.
    pub source: String,
    /// Catalog id.
    pub id: String,
    /// Product name.
    pub name: String,
    /// Kind of box (`firewall`, `load-balancer`, ...).
    pub kind: String,
}

/// An incident whose timestamp is far from all the others (left out of the analysis).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbsurdTimestamp {
    /// The timestamp as written.
    pub time: String,
    /// The input it was read from.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
}

/// The `logs --json` object. Contract fields first (docs/json.md); the rest are additions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Reset events: records (a line and its stack trace) with reset-like text.
    pub events: u64,
    /// The pattern the incidents follow.
    pub pattern: Pattern,
    /// Fitted period between incidents, seconds; `None` without a periodic fit.
    pub period_s: Option<f64>,
    /// Drift of the period against the nominal one, seconds per day.
    pub drift_s_per_day: Option<f64>,
    /// The idle timeout bracketed from connections' lines, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<IdleTimeout>,
    /// Catalog entries whose timeout is near the period or bracket.
    pub candidates: Vec<CandidateOut>,
    /// How much the evidence supports the pattern.
    pub confidence: Confidence,
    /// One sentence saying why this pattern.
    pub reason: String,
    /// Incidents: events closer than the merge window count as one.
    pub incidents: u64,
    /// The period a scheduler would use (whole seconds or minutes), seconds.
    pub nominal_period_s: Option<f64>,
    /// Standard deviation of the incidents around the fit, seconds.
    pub jitter_s: Option<f64>,
    /// Time of day of the first incident, `HH:MM:SS`.
    pub first_time_of_day: Option<String>,
    /// Time of the first event (RFC 3339).
    pub first_event: Option<String>,
    /// Time of the last event (RFC 3339).
    pub last_event: Option<String>,
    /// Matching lines without a timestamp and outside any record.
    pub lines_without_timestamp: u64,
    /// Matching lines folded into a record already counted (its stack trace).
    pub lines_in_records: u64,
    /// Lines longer than the line limit, skipped.
    pub overlong_lines: u64,
    /// Events per signature id.
    pub signatures: BTreeMap<String, u64>,
    /// Events by the failure their error texts name (a record's stack trace included): the
    /// first text in a record that says reset or timeout decides; texts that say neither (EOF,
    /// broken pipe, a driver's "I/O error") count in neither.
    pub failure_texts: scanner::FailureTexts,
    /// Events per client library (an inventory identity, or `os` / a runtime / another stack)
    /// of the built-in signatures that matched, from the library data file; `--match` patterns
    /// belong to none.
    pub libraries: BTreeMap<String, u64>,
    /// Longest idle survived and shortest idle failed, with the counts behind them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_bracket: Option<Bracket>,
    /// Why no idle bracket could be read and what to use instead (set when there are events but
    /// no complete bracket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_bracket_note: Option<String>,
    /// Set when the pattern comes from each connection's own resets (connection pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_connection: Option<analysis::PerConnection>,
    /// Incidents left out for absurd timestamps (years away from the others).
    pub absurd_timestamps: u64,
    /// The first of them (at most 10).
    pub absurd_examples: Vec<AbsurdTimestamp>,
    /// True when more incidents were found than are kept: the period was fitted on a uniform
    /// sample of them.
    pub sampled: bool,
    /// What was read from each input, in command-line order.
    pub inputs: Vec<InputStats>,
}

/// What to say when `untimed` reset-like lines were found but none could be timed (no
/// timestamp with a date on them or on a record above them): the formats understood and how to
/// make the log timed. `logs` and `triage` print the same sentence.
pub fn untimed_note(untimed: u64) -> String {
    format!(
        "{untimed} reset-like line(s) found but none could be timed: a record needs a timestamp \
         with a date at its start (RFC 3339 / ISO 8601 `2026-11-20 09:31:07.902`, Go / nginx \
         `2026/11/20 09:31:07`, Apache `[20/Nov/2026:09:31:07 +0000]`, syslog `Nov 20 09:31:07`, \
         epoch seconds or milliseconds); a time of day alone (logback's default `09:31:07.902`) \
         or none (Python's `logging.basicConfig()`) cannot be placed. Add a date to the log \
         pattern (logback `%d{{yyyy-MM-dd HH:mm:ss.SSS}}`, Python `format=\"%(asctime)s ...\"`)"
    )
}

/// Everything `logs` shows: the report, the analysis behind it and the idle samples to plot.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The `--json` report.
    pub report: Report,
    /// The analysis behind it.
    pub analysis: Analysis,
    /// Idle periods of connections, for the plot.
    pub samples: Vec<IdleSample>,
}

/// Relative tolerance when matching a period against the catalog.
pub(crate) const PERIOD_TOLERANCE: f64 = 0.02;
/// Absurd timestamps listed by name.
const MAX_ABSURD_EXAMPLES: usize = 10;

impl Scanner<'_> {
    /// Diagnose everything scanned.
    pub fn finish(mut self, catalog: &Catalog, tz: &TimeZone) -> Summary {
        let sampled = !self.totals.incidents.exact();
        let window = self.opts.merge_window_s;
        let mut recs = std::mem::replace(&mut self.totals.incidents, reservoir::Reservoir::new(1))
            .into_items();
        recs.sort_by(|a, b| a.t.total_cmp(&b.t));
        let all: Vec<f64> = recs.iter().map(|r| r.t).collect();
        let range = outliers::plausible_range(&all);
        let plausible = |t: f64| range.is_none_or(|(lo, hi)| t >= lo && t <= hi);
        let (kept, absurd): (Vec<&scanner::IncidentRec>, Vec<_>) =
            recs.iter().partition(|r| plausible(r.t));
        let times: Vec<f64> = kept.iter().map(|r| r.t).collect();
        let incident_times = if sampled {
            times
        } else {
            analysis::incidents(&times, window)
        };
        let p0 = sampled.then(|| analysis::median(self.totals.intervals.items()));
        let tick = 10f64.powi(-i32::from(self.totals.coarsest_frac.unwrap_or(0)));
        let bracket = self.totals.bracket.bracket();
        let pooled = analysis::analyse(incident_times, tick, bracket, tz, p0);
        let series: Vec<Vec<f64>> = self
            .totals
            .series
            .values()
            .map(|s| {
                let mut s: Vec<f64> = s.iter().copied().filter(|t| plausible(*t)).collect();
                s.sort_by(f64::total_cmp);
                analysis::incidents(&s, window)
            })
            .collect();
        let analysis = analysis::per_connection(pooled, &series, tick);
        let incidents = if sampled {
            let share = kept.len() as f64 / recs.len().max(1) as f64;
            (self.totals.incident_count as f64 * share).round() as u64
        } else {
            analysis.incidents.len() as u64
        };
        let report = self.report(
            catalog, &analysis, bracket, incidents, &kept, &absurd, sampled,
        );
        Summary {
            samples: self.totals.bracket.samples(),
            report,
            analysis,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        catalog: &Catalog,
        analysis: &Analysis,
        bracket: Option<Bracket>,
        incidents: u64,
        kept: &[&scanner::IncidentRec],
        absurd: &[&scanner::IncidentRec],
        sampled: bool,
    ) -> Report {
        let t = &self.totals;
        let periodic = analysis.periodicity.as_ref().filter(|p| p.regular);
        let to_out = |c: crate::catalog::Candidate<'_>| CandidateOut {
            timeout_s: c.entry.idle_timeout_s,
            source: c.entry.source.clone(),
            id: c.entry.id.clone(),
            name: c.entry.name.clone(),
            kind: c.entry.kind.clone(),
        };
        let candidates: Vec<CandidateOut> = match (analysis.pattern, &bracket, periodic) {
            (Pattern::IdleTimeout, Some(b), _) => match (b.low, b.high) {
                (Some(l), Some(h)) => catalog
                    .within(l, h, PERIOD_TOLERANCE)
                    .into_iter()
                    .map(to_out)
                    .collect(),
                _ => Vec::new(),
            },
            (Pattern::ConnectionAgeTimer, _, Some(p)) => catalog
                .near(p.nominal_period_s, PERIOD_TOLERANCE)
                .into_iter()
                .map(to_out)
                .collect(),
            _ => Vec::new(),
        };
        let names = self.opts.signatures.names();
        let signatures: BTreeMap<String, u64> = t
            .by_signature
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (names.get(i).cloned().unwrap_or_default(), *n))
            .collect();
        let mut libraries: BTreeMap<String, u64> = BTreeMap::new();
        for (id, n) in &signatures {
            if let Some(lib) = signatures::library_of(id) {
                *libraries.entry(lib.to_string()).or_default() += n;
            }
        }
        let file = |r: &scanner::IncidentRec| {
            t.inputs
                .get(r.input as usize)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        let sum = |f: fn(&InputStats) -> u64| t.inputs.iter().map(f).sum::<u64>();
        Report {
            events: t.events,
            pattern: analysis.pattern,
            period_s: match analysis.per_connection {
                Some(per) => Some(per.period_s),
                None => periodic.map(|p| p.period_s),
            },
            drift_s_per_day: match analysis.per_connection {
                Some(per) => Some(per.drift_s_per_day),
                None => periodic.map(|p| p.drift_s_per_day),
            },
            idle_timeout_s: bracket.map(|b| IdleTimeout {
                low: b.low,
                high: b.high,
            }),
            candidates,
            confidence: analysis.confidence,
            reason: analysis.reason.clone(),
            incidents,
            nominal_period_s: periodic.map(|p| p.nominal_period_s),
            jitter_s: periodic.map(|p| p.jitter_s),
            first_time_of_day: analysis.first_time_of_day.clone(),
            first_event: kept.first().map(|r| r.start.to_string()),
            last_event: kept.iter().map(|r| r.end).max().map(|t| t.to_string()),
            lines_without_timestamp: sum(|s| s.lines_without_timestamp),
            lines_in_records: sum(|s| s.lines_in_records),
            overlong_lines: sum(|s| s.overlong_lines),
            signatures,
            failure_texts: t.failure_texts,
            libraries,
            idle_bracket: bracket,
            idle_bracket_note: (t.events > 0).then(|| self.bracket_note(bracket)).flatten(),
            per_connection: analysis.per_connection,
            absurd_timestamps: absurd.len() as u64,
            absurd_examples: absurd
                .iter()
                .take(MAX_ABSURD_EXAMPLES)
                .map(|r| AbsurdTimestamp {
                    time: r.start.to_string(),
                    file: file(r),
                    line: r.line,
                })
                .collect(),
            sampled,
            inputs: t.inputs.clone(),
        }
    }

    /// Why the idle bracket is missing or open, and what to use instead.
    fn bracket_note(&self, bracket: Option<Bracket>) -> Option<String> {
        const INSTEAD: &str = "to measure the timeout, capture the traffic and run `idlereset pcap`, or measure the path with `idlereset probe`";
        if !self.opts.connections {
            return Some(format!(
                "connection identities not read (--no-connections); {INSTEAD}"
            ));
        }
        let Some(b) = bracket else {
            return Some(format!(
                "no reset line carries a connection identity (conn=, 4-tuple, PgConnection@..., Netty [id: 0x...], pid=), so the idle before each failure is unknown; {INSTEAD}"
            ));
        };
        let kinds = self.totals.bracket.kinds_used().join(", ");
        match (b.low, b.high) {
            (Some(_), Some(_)) => None,
            (None, _) if self.totals.bracket.activity_lines() == 0 => Some(format!(
                "failures carry connection identities ({kinds}) but no other line of those connections shows them in use (no activity lines), so no idle is known to have survived; log successful queries with the same identity, or {INSTEAD}"
            )),
            (None, _) => Some(format!(
                "no connection of the kinds the failures carry ({kinds}) was seen surviving an idle; {INSTEAD}"
            )),
            (_, None) => Some(format!(
                "no failed connection was seen in use before it failed, and no failure states its idle (`after 8s idle`, `idle_s=`), so the idle before each failure is unknown; {INSTEAD}"
            )),
        }
    }
}

/// Scan one buffer as one input and diagnose it (tests, fuzzing, small inputs).
pub fn analyse_bytes(
    name: &str,
    data: &[u8],
    opts: &ScanOptions,
    catalog: &Catalog,
    tz: &TimeZone,
) -> Summary {
    let mut s = Scanner::new(opts);
    s.begin_input(name);
    for block in data.chunks(lines::DEFAULT_BLOCK) {
        s.push(block, &mut |_| {});
    }
    s.end_input(&mut |_| {});
    s.finish(catalog, tz)
}

#[cfg(test)]
mod tests;
