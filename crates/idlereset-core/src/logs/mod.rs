//! Reset events in application logs: find them fast, time them, and say what they follow.
//!
//! The pipeline, one module per step:
//! - [`signatures`]: a SIMD-prefiltered search for reset-like text over the whole buffer; only
//!   matching lines are looked at further, which is what keeps a gigabyte scan near grep speed;
//! - [`timestamp`]: the time of each matching line, whatever the log format;
//! - [`idle`]: when lines carry connection ids or 4-tuples, a second pass reads the lines of the
//!   same connections and brackets the idle timeout;
//! - [`analysis`]: incidents, period, jitter, drift against the wall clock, pattern.
//!
//! [`scan`] works on one file's bytes (the binary maps the file; this crate does no I/O) and
//! [`report`] merges the files and builds the `logs --json` object (design.md contract).

pub mod analysis;
pub mod idle;
pub mod signatures;
pub mod timestamp;

use std::collections::{BTreeMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::catalog::Catalog;
use analysis::{Analysis, Confidence, Pattern};
use idle::{Bracket, ConnLine};
use signatures::SignatureSet;
use timestamp::{SyslogYear, TimeContext};

/// What a scan looks for and how it reads times.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub signatures: SignatureSet,
    pub time: TimeContext,
    /// Read the lines of connections that failed (ids / 4-tuples) to bracket the idle timeout.
    pub connections: bool,
}

/// One reset-like line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: Timestamp,
    /// Byte offset of the line in its file.
    pub offset: usize,
    /// Index into the signature set's names.
    pub signature: usize,
    pub conn: Option<String>,
    pub frac_digits: u8,
}

/// The result of scanning one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileScan {
    /// Matching lines with a timestamp, in file order.
    pub events: Vec<Event>,
    /// Matching lines without a timestamp (skipped).
    pub no_timestamp: u64,
    /// Offset of the first matching line without a timestamp.
    pub first_no_timestamp: Option<usize>,
    /// Lines tied to a connection (failures and activity), for the idle bracket.
    pub conn_lines: Vec<ConnLine>,
}

fn line_bounds(data: &[u8], start: usize, end: usize) -> (usize, usize) {
    let ls = memchr::memrchr(b'\n', &data[..start]).map_or(0, |i| i + 1);
    let le = memchr::memchr(b'\n', &data[end..]).map_or(data.len(), |i| end + i);
    (ls, le)
}

fn seconds(t: Timestamp) -> f64 {
    t.as_second() as f64 + f64::from(t.subsec_nanosecond()) * 1e-9
}

/// Scan one file's bytes. Never fails: lines that do not parse are counted and skipped.
pub fn scan(data: &[u8], opts: &ScanOptions) -> FileScan {
    let mut out = FileScan::default();
    let mut syslog = SyslogYear::default();
    let mut markers = [false; idle::MARKERS.len()];
    let mut pos = 0;
    while let Some(m) = opts.signatures.find(data, pos) {
        let (ls, le) = line_bounds(data, m.start, m.end);
        let line = &data[ls..le];
        match timestamp::find_timestamp(line, &opts.time, &mut syslog) {
            Some(p) => {
                let keyed = if opts.connections {
                    idle::keyed(line)
                } else {
                    None
                };
                if let Some((marker, _)) = keyed {
                    markers[marker] = true;
                }
                let conn = keyed.map(|(_, k)| String::from_utf8_lossy(k).into_owned());
                if let Some(k) = &conn {
                    out.conn_lines.push(ConnLine {
                        t: seconds(p.time),
                        key: k.clone(),
                        failed: true,
                        idle_s: idle::idle_field(line),
                    });
                }
                out.events.push(Event {
                    time: p.time,
                    offset: ls,
                    signature: m.signature,
                    conn,
                    frac_digits: p.frac_digits,
                });
            }
            None => {
                out.no_timestamp += 1;
                out.first_no_timestamp.get_or_insert(ls);
            }
        }
        pos = le + 1;
    }
    if opts.connections && !out.conn_lines.is_empty() {
        let used: Vec<&[u8]> = idle::MARKERS
            .iter()
            .zip(markers)
            .filter(|(_, u)| *u)
            .map(|(m, _)| *m)
            .collect();
        activity(data, opts, &used, &mut out);
    }
    out
}

/// Second pass: every non-event line tied to a connection is activity that survived. Only lines
/// with the kinds of connection key the failures carried are read (one SIMD substring search
/// in the common case of a single kind).
fn activity(data: &[u8], opts: &ScanOptions, markers: &[&[u8]], out: &mut FileScan) {
    let event_lines: HashSet<usize> = out.events.iter().map(|e| e.offset).collect();
    let single = match markers {
        [one] => Some(memchr::memmem::Finder::new(one)),
        _ => None,
    };
    let multi: Option<AhoCorasick> = match single {
        Some(_) => None,
        None => AhoCorasickBuilder::new().build(markers).ok(),
    };
    let mut syslog = SyslogYear::default();
    let mut pos = 0;
    while pos < data.len() {
        let found = match (&single, &multi) {
            (Some(f), _) => f
                .find(&data[pos..])
                .map(|i| (pos + i, pos + i + f.needle().len())),
            (None, Some(ac)) => ac
                .find(aho_corasick::Input::new(data).span(pos..data.len()))
                .map(|m| (m.start(), m.end())),
            (None, None) => None,
        };
        let Some((start, end)) = found else { break };
        let (ls, le) = line_bounds(data, start, end);
        pos = le + 1;
        if event_lines.contains(&ls) {
            continue;
        }
        let line = &data[ls..le];
        let Some(key) = idle::connection_key(line) else {
            continue;
        };
        let Some(p) = timestamp::find_timestamp(line, &opts.time, &mut syslog) else {
            continue;
        };
        out.conn_lines.push(ConnLine {
            t: seconds(p.time),
            key: String::from_utf8_lossy(key).into_owned(),
            failed: false,
            idle_s: idle::idle_field(line),
        });
    }
}

/// 1-based line number of a byte offset.
pub fn line_number(data: &[u8], offset: usize) -> usize {
    data[..offset.min(data.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `idle_timeout_s` in the JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleTimeout {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// A catalog entry near what was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateOut {
    pub timeout_s: f64,
    pub source: String,
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// The `logs --json` object. Contract fields first (design.md); the rest are additions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub events: usize,
    pub pattern: Pattern,
    pub period_s: Option<f64>,
    pub drift_s_per_day: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<IdleTimeout>,
    pub candidates: Vec<CandidateOut>,
    pub confidence: Confidence,
    pub reason: String,
    pub incidents: usize,
    pub nominal_period_s: Option<f64>,
    pub jitter_s: Option<f64>,
    pub first_time_of_day: Option<String>,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    pub lines_without_timestamp: u64,
    /// Events per signature id.
    pub signatures: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_bracket: Option<Bracket>,
    /// Set when the pattern comes from each connection's own resets (connection pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_connection: Option<analysis::PerConnection>,
}

/// Relative tolerance when matching a period against the catalog.
pub const PERIOD_TOLERANCE: f64 = 0.02;

/// Merge file scans and diagnose them.
pub fn report(
    scans: &[FileScan],
    signatures: &SignatureSet,
    catalog: &Catalog,
    tz: &TimeZone,
    merge_window_s: f64,
) -> (Report, Analysis) {
    let mut events: Vec<&Event> = scans.iter().flat_map(|s| &s.events).collect();
    events.sort_by_key(|e| e.time);
    let times: Vec<f64> = events.iter().map(|e| seconds(e.time)).collect();
    let coarsest = events.iter().map(|e| e.frac_digits).min().unwrap_or(0);
    let tick = 10f64.powi(-i32::from(coarsest));
    let conn_lines: Vec<ConnLine> = scans
        .iter()
        .flat_map(|s| s.conn_lines.iter().cloned())
        .collect();
    let bracket = (!conn_lines.is_empty()).then(|| idle::bracket(&conn_lines));
    let pooled = analysis::analyse(
        analysis::incidents(&times, merge_window_s),
        tick,
        bracket,
        tz,
    );
    let mut by_conn: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for e in &events {
        if let Some(k) = &e.conn {
            by_conn.entry(k).or_default().push(seconds(e.time));
        }
    }
    let per_conn: Vec<Vec<f64>> = by_conn
        .values()
        .map(|t| analysis::incidents(t, merge_window_s))
        .collect();
    let analysis = analysis::per_connection(pooled, &per_conn, tick);

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
    let mut by_sig = BTreeMap::new();
    for e in &events {
        let name = signatures
            .names()
            .get(e.signature)
            .cloned()
            .unwrap_or_default();
        *by_sig.entry(name).or_insert(0) += 1;
    }
    let report = Report {
        events: events.len(),
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
        incidents: analysis.incidents.len(),
        nominal_period_s: periodic.map(|p| p.nominal_period_s),
        jitter_s: periodic.map(|p| p.jitter_s),
        first_time_of_day: analysis.first_time_of_day.clone(),
        first_event: events.first().map(|e| e.time.to_string()),
        last_event: events.last().map(|e| e.time.to_string()),
        lines_without_timestamp: scans.iter().map(|s| s.no_timestamp).sum(),
        signatures: by_sig,
        idle_bracket: bracket,
        per_connection: analysis.per_connection,
    };
    (report, analysis)
}

#[cfg(test)]
mod tests;
