//! The streaming scanner: blocks of a file, a pipe or standard input in, events and incidents
//! out, with memory that does not grow with the input.
//!
//! One pass per input. Candidate lines are found by two SIMD-prefiltered searches run side by
//! side over each block (the reset signatures, and the connection-identity markers when
//! connections are read); every other line is skipped unparsed, which keeps the scan near grep
//! speed. A matching line is an **event** of the record it belongs to (see [`super::record`]):
//! one record counts once, whichever of its lines match. A line that only carries a connection
//! identity is **activity** (that connection survived its idle) unless a later line of the same
//! record fails.
//!
//! Everything kept is bounded: counters, one live incident per input, a [`Reservoir`] of
//! incidents (all of them up to [`MAX_INCIDENTS`], a uniform sample beyond) and of the intervals
//! between them, the first [`MAX_SERIES`] incidents of at most [`MAX_CONNECTIONS`] connections,
//! and the idle bracket's running state.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input as AcInput, MatchKind};
use jiff::Timestamp;
use serde::Serialize;

use super::idle::{self, BracketState, ConnObservation};
use super::lines::{DEFAULT_BLOCK, LineSplitter};
use super::record;
use super::reservoir::Reservoir;
use super::signatures::{FindCache, SigMatch};
use super::timestamp::SyslogYear;
use super::{ScanOptions, seconds};
use crate::libraries::FailureText;

/// Incidents kept exactly; beyond, a uniform sample of this many.
pub const MAX_INCIDENTS: usize = 65_536;
/// Connections whose own incident series are kept (pools have tens).
pub const MAX_CONNECTIONS: usize = 4_096;
/// Incidents kept per connection series (the first ones).
pub const MAX_SERIES: usize = 1_024;
/// Longest text of a line quoted in the output.
const QUOTE_LEN: usize = 200;

/// A place in an input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// The line (at most 200 bytes, lossy UTF-8).
    pub text: String,
    /// The signature that matched, for events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What was read from one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputStats {
    /// The input's name (a path, or `-` for stdin).
    pub name: String,
    /// Bytes read.
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Lines longer than the limit, skipped.
    pub overlong_lines: u64,
    /// The file shrank while it was read (rotated by copytruncate): only this many bytes were
    /// read; the report covers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_at: Option<u64>,
    /// The file was truncated and read again from its start this many times (`--follow`).
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u64,
    /// Reset events found (a record counts once).
    pub events: u64,
    /// Where the first event is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event: Option<Location>,
    /// Matching lines without a timestamp and outside any record.
    pub lines_without_timestamp: u64,
    /// Where the first matching line without a timestamp is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_without_timestamp: Option<Location>,
    /// Matching lines inside a record already counted (stack-trace lines of the same failure).
    pub lines_in_records: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One incident, reported as soon as it is found (`logs -`, `--follow`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveIncident {
    /// 1-based number of the incident in this run.
    pub incident: u64,
    /// Time of the record's first line (RFC 3339).
    pub time: String,
    /// The input the incident was read from.
    pub file: String,
    /// 1-based line number of the record's first line.
    pub line: u64,
    /// Id of the signature that matched.
    pub signature: String,
    /// The connection the line names, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// Idle the line states, seconds, when it states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<f64>,
    /// Seconds since the previous incident of the same input (negative: out of order).
    pub since_previous_s: Option<f64>,
    /// The record's first line (lossy UTF-8, shortened).
    pub text: String,
}

/// One incident kept for the analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IncidentRec {
    pub t: f64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub input: u32,
    pub line: u64,
}

#[derive(Debug, Clone)]
struct Head {
    offset: u64,
    line: u64,
    time: Timestamp,
    frac: u8,
    conn: Option<(usize, Vec<u8>)>,
    idle: Option<f64>,
}

#[derive(Debug, Clone)]
struct Pending {
    head: u64,
    t: f64,
    kind: usize,
    key: Vec<u8>,
    idle: Option<f64>,
}

/// Per-input progress.
#[derive(Debug, Default)]
struct Cursor {
    splitter: Option<LineSplitter>,
    syslog: SyslogYear,
    last_head: Option<Head>,
    record: Option<u64>,
    /// The failure the current record's texts name, once one does.
    record_failure: Option<FailureText>,
    pending: Option<Pending>,
    /// Newlines before the start of the next block.
    lines: u64,
    /// Start and last event time of the open incident, and the previous incident's start.
    open: Option<(f64, f64)>,
    prev_start: Option<f64>,
}

/// Reset events (records) by the failure their error texts name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FailureTexts {
    /// Records whose texts name a reset (`Connection reset`, `ECONNRESET`, grpcio's
    /// `recvmsg:Connection reset by peer`).
    pub reset: u64,
    /// Records whose texts name a timeout (`ETIMEDOUT`, `Connection timed out`) and no reset
    /// before it.
    pub timeout: u64,
}

impl FailureTexts {
    fn add(&mut self, f: FailureText) {
        match f {
            FailureText::Reset => self.reset += 1,
            FailureText::Timeout => self.timeout += 1,
        }
    }
}

/// Everything the report is built from; bounded.
#[derive(Debug)]
pub(crate) struct Totals {
    pub events: u64,
    pub by_signature: Vec<u64>,
    pub failure_texts: FailureTexts,
    pub coarsest_frac: Option<u8>,
    pub incident_count: u64,
    pub incidents: Reservoir<IncidentRec>,
    pub intervals: Reservoir<f64>,
    pub series: HashMap<(usize, Vec<u8>), Vec<f64>>,
    pub series_dropped: u64,
    pub bracket: BracketState,
    pub inputs: Vec<InputStats>,
}

/// Scans inputs one after the other (see the module docs).
#[derive(Debug)]
pub struct Scanner<'o> {
    pub(crate) opts: &'o ScanOptions,
    markers: Option<AhoCorasick>,
    cur: Cursor,
    pub(crate) totals: Totals,
}

impl<'o> Scanner<'o> {
    /// A scanner with nothing read yet.
    pub fn new(opts: &'o ScanOptions) -> Scanner<'o> {
        let markers = if opts.connections {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(idle::MARKERS)
                .ok()
        } else {
            None
        };
        Scanner {
            opts,
            markers,
            cur: Cursor::default(),
            totals: Totals {
                events: 0,
                by_signature: vec![0; opts.signatures.names().len()],
                failure_texts: FailureTexts::default(),
                coarsest_frac: None,
                incident_count: 0,
                incidents: Reservoir::new(MAX_INCIDENTS),
                intervals: Reservoir::new(MAX_INCIDENTS),
                series: HashMap::new(),
                series_dropped: 0,
                bracket: BracketState::default(),
                inputs: Vec::new(),
            },
        }
    }

    /// Start the next input.
    pub fn begin_input(&mut self, name: &str) {
        self.cur = Cursor {
            splitter: Some(LineSplitter::new(
                self.opts.max_line.unwrap_or(DEFAULT_BLOCK),
            )),
            ..Cursor::default()
        };
        self.totals.inputs.push(InputStats {
            name: name.to_string(),
            bytes: 0,
            lines: 0,
            overlong_lines: 0,
            truncated_at: None,
            restarts: 0,
            events: 0,
            first_event: None,
            lines_without_timestamp: 0,
            first_without_timestamp: None,
            lines_in_records: 0,
        });
    }

    /// What has been read of the current input.
    pub fn current(&self) -> Option<&InputStats> {
        self.totals.inputs.last()
    }

    fn stats(&mut self) -> Option<&mut InputStats> {
        self.totals.inputs.last_mut()
    }

    /// Scan the next block of the current input. `live` receives each incident as it starts.
    pub fn push(&mut self, block: &[u8], live: &mut dyn FnMut(&LiveIncident)) {
        let Some(mut sp) = self.cur.splitter.take() else {
            return;
        };
        sp.push(block, |lines, off| self.feed(lines, off, live));
        self.sync_splitter(&sp);
        self.cur.splitter = Some(sp);
    }

    fn sync_splitter(&mut self, sp: &LineSplitter) {
        let (bytes, over) = (sp.bytes(), sp.overlong_lines());
        let lines = self.cur.lines;
        if let Some(s) = self.stats() {
            s.bytes = s.bytes.max(bytes);
            s.overlong_lines = over;
            s.lines = s.lines.max(lines);
        }
    }

    /// The current input ended (end of file, end of pipe).
    pub fn end_input(&mut self, live: &mut dyn FnMut(&LiveIncident)) {
        if let Some(mut sp) = self.cur.splitter.take() {
            sp.finish(|lines, off| self.feed(lines, off, live));
            self.sync_splitter(&sp);
        }
        if let Some(p) = self.cur.pending.take() {
            self.commit(p);
        }
        self.cur.open = None;
    }

    /// The current input shrank below what was read: note it (the report covers what was read).
    pub fn note_truncated(&mut self) {
        if let Some(s) = self.stats() {
            s.truncated_at = Some(s.bytes);
        }
    }

    /// The current input was truncated and is read again from its start (`--follow`).
    pub fn restart_input(&mut self) {
        if let Some(sp) = self.cur.splitter.as_mut() {
            sp.restart();
        }
        self.cur.lines = 0;
        self.cur.last_head = None;
        self.cur.record = None;
        self.cur.record_failure = None;
        if let Some(s) = self.stats() {
            s.restarts += 1;
        }
    }

    /// Complete lines at stream offset `base`.
    fn feed(&mut self, data: &[u8], base: u64, live: &mut dyn FnMut(&LiveIncident)) {
        let mut lc = LineCursor {
            pos: 0,
            line: self.cur.lines + 1,
        };
        let mut pos = 0;
        let mut sig: Option<Option<SigMatch>> = None;
        let mut searched = FindCache::default();
        let mut mark: Option<Option<usize>> = None;
        while pos < data.len() {
            if sig.is_none_or(|s| s.is_some_and(|m| m.start < pos)) {
                sig = Some(self.opts.signatures.find_cached(data, pos, &mut searched));
            }
            if let Some(ac) = &self.markers
                && mark.is_none_or(|m| m.is_some_and(|p| p < pos))
            {
                mark = Some(
                    ac.find(AcInput::new(data).span(pos..data.len()))
                        .map(|m| m.start()),
                );
            }
            let s = sig.flatten();
            let m = mark.flatten();
            let at = match (s, m) {
                (None, None) => break,
                (Some(s), Some(m)) => s.start.min(m),
                (Some(s), None) => s.start,
                (None, Some(m)) => m,
            };
            let ls = memchr::memrchr(b'\n', &data[..at]).map_or(0, |i| i + 1);
            let le = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |i| at + i);
            pos = le + 1;
            match s.filter(|s| s.start <= le) {
                Some(sm) => self.on_match(data, base, ls, le, sm, &mut lc, live),
                None => self.on_activity(data, base, ls, le, &mut lc),
            }
        }
        // Remember the last record start for stack-trace lines at the top of the next block.
        if let Some((start, p)) = record::start_above(data, data.len(), &self.opts.time) {
            let line = lc.line_of(data, start);
            let text = &data[start..line_end(data, start)];
            self.cur.last_head = Some(self.head(text, base + start as u64, line, p));
        }
        self.cur.lines = lc.line_of(data, data.len()) - 1;
    }

    fn head(&self, line: &[u8], offset: u64, line_no: u64, p: super::timestamp::Parsed) -> Head {
        let conn = if self.opts.connections {
            idle::keyed(line).map(|(k, v)| (k, v.to_vec()))
        } else {
            None
        };
        Head {
            offset,
            line: line_no,
            time: p.time,
            frac: p.frac_digits,
            conn,
            idle: idle::idle_field(line),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_match(
        &mut self,
        data: &[u8],
        base: u64,
        ls: usize,
        le: usize,
        sm: SigMatch,
        lc: &mut LineCursor,
        live: &mut dyn FnMut(&LiveIncident),
    ) {
        let line = &data[ls..le];
        let own = record::record_start(line, &self.opts.time, &mut self.cur.syslog);
        let head = match own {
            Some(p) => Some(self.head(line, base + ls as u64, lc.line_of(data, ls), p)),
            None => match record::start_above(data, ls, &self.opts.time) {
                Some((start, p)) => {
                    let text = &data[start..line_end(data, start)];
                    Some(self.head(text, base + start as u64, lc.line_of(data, start), p))
                }
                // The block starts inside the record: its start is the last one of the previous
                // block, if near enough.
                None if ls < record::MAX_RECORD_BYTES => self
                    .cur
                    .last_head
                    .clone()
                    .filter(|h| base + (ls as u64) < h.offset + record::MAX_RECORD_BYTES as u64),
                None => None,
            },
        };
        let Some(mut h) = head else {
            let loc = Location {
                line: lc.line_of(data, ls),
                offset: base + ls as u64,
                text: quote(line),
                signature: None,
            };
            if let Some(s) = self.stats() {
                s.lines_without_timestamp += 1;
                s.first_without_timestamp.get_or_insert(loc);
            }
            return;
        };
        if self.cur.record == Some(h.offset) {
            if let Some(s) = self.stats() {
                s.lines_in_records += 1;
            }
            // A record counts once, by the first failure its texts name (Java's `Caused by:
            // java.net.SocketException: Connection reset` below a driver's own message). Once
            // it is known, the record's further lines are not searched for one.
            if self.cur.record_failure.is_none()
                && let Some(f) = self.opts.signatures.failure_in_line(data, sm, le)
            {
                self.cur.record_failure = Some(f);
                self.totals.failure_texts.add(f);
            }
            return;
        }
        self.cur.record = Some(h.offset);
        let failure = self.opts.signatures.failure_in_line(data, sm, le);
        self.cur.record_failure = failure;
        if let Some(f) = failure {
            self.totals.failure_texts.add(f);
        }
        if let Some(p) = self.cur.pending.take()
            && p.head != h.offset
        {
            self.commit(p);
        }
        if self.opts.connections && h.conn.is_none() {
            h.conn = idle::keyed(line).map(|(k, v)| (k, v.to_vec()));
        }
        if h.idle.is_none() {
            h.idle = idle::idle_field(line);
        }
        let loc = Location {
            line: h.line,
            offset: h.offset,
            text: quote(line),
            signature: self.opts.signatures.names().get(sm.signature).cloned(),
        };
        self.event(h, sm.signature, loc, live);
    }

    fn on_activity(&mut self, data: &[u8], base: u64, ls: usize, le: usize, lc: &mut LineCursor) {
        let line = &data[ls..le];
        let Some((kind, key)) = idle::keyed(line) else {
            return;
        };
        let Some(p) = record::record_start(line, &self.opts.time, &mut self.cur.syslog) else {
            return;
        };
        let _ = lc;
        let pending = Pending {
            head: base + ls as u64,
            t: seconds(p.time),
            kind,
            key: key.to_vec(),
            idle: idle::idle_field(line),
        };
        if let Some(prev) = self.cur.pending.replace(pending) {
            self.commit(prev);
        }
    }

    fn commit(&mut self, p: Pending) {
        self.totals.bracket.observe(ConnObservation {
            t: p.t,
            kind: p.kind,
            key: &p.key,
            failed: false,
            idle_s: p.idle,
        });
    }

    fn event(
        &mut self,
        h: Head,
        signature: usize,
        loc: Location,
        live: &mut dyn FnMut(&LiveIncident),
    ) {
        let t = seconds(h.time);
        let window = self.opts.merge_window_s;
        let totals = &mut self.totals;
        totals.events += 1;
        if let Some(n) = totals.by_signature.get_mut(signature) {
            *n += 1;
        }
        totals.coarsest_frac = Some(totals.coarsest_frac.map_or(h.frac, |f| f.min(h.frac)));
        if let Some((kind, key)) = &h.conn {
            totals.bracket.observe(ConnObservation {
                t,
                kind: *kind,
                key,
                failed: true,
                idle_s: h.idle,
            });
            let exists = totals.series.contains_key(&(*kind, key.clone()));
            if exists || totals.series.len() < MAX_CONNECTIONS {
                let s = totals.series.entry((*kind, key.clone())).or_default();
                if s.last().is_none_or(|l| (t - l).abs() > window) {
                    if s.len() < MAX_SERIES {
                        s.push(t);
                    } else {
                        totals.series_dropped += 1;
                    }
                }
            } else {
                totals.series_dropped += 1;
            }
        }
        let input = totals.inputs.len().saturating_sub(1);
        if let Some(s) = totals.inputs.last_mut() {
            s.events += 1;
            s.first_event.get_or_insert_with(|| loc.clone());
        }
        match self.cur.open {
            Some((start, last)) if (t - last).abs() <= window => {
                self.cur.open = Some((start, last.max(t)));
                if let Some(r) = totals.incidents.last_mut() {
                    r.end = r.end.max(h.time);
                }
            }
            _ => {
                totals.incident_count += 1;
                let since = self.cur.prev_start.map(|p| t - p);
                if let Some(d) = since.filter(|d| *d > 0.0) {
                    totals.intervals.offer(d);
                }
                self.cur.prev_start = Some(t);
                self.cur.open = Some((t, t));
                totals.incidents.offer(IncidentRec {
                    t,
                    start: h.time,
                    end: h.time,
                    input: input as u32,
                    line: loc.line,
                });
                live(&LiveIncident {
                    incident: totals.incident_count,
                    time: h.time.to_string(),
                    file: totals
                        .inputs
                        .last()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    line: loc.line,
                    signature: self
                        .opts
                        .signatures
                        .names()
                        .get(signature)
                        .cloned()
                        .unwrap_or_default(),
                    conn: h
                        .conn
                        .as_ref()
                        .map(|(_, k)| String::from_utf8_lossy(k).into_owned()),
                    idle_s: h.idle,
                    since_previous_s: since,
                    text: loc.text,
                });
            }
        }
    }
}

fn line_end(data: &[u8], start: usize) -> usize {
    memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i)
}

fn quote(line: &[u8]) -> String {
    let end = line.len().min(QUOTE_LEN);
    String::from_utf8_lossy(&line[..end]).trim_end().to_string()
}

/// Line numbers inside one block, counted lazily and only once forward.
struct LineCursor {
    /// Bytes before `pos` are counted.
    pos: usize,
    /// Line number of the line containing `pos`.
    line: u64,
}

impl LineCursor {
    fn count(b: &[u8]) -> u64 {
        memchr::memchr_iter(b'\n', b).count() as u64
    }

    /// 1-based line number of byte `at` of `data`.
    fn line_of(&mut self, data: &[u8], at: usize) -> u64 {
        if at >= self.pos {
            self.line += Self::count(&data[self.pos..at]);
            self.pos = at;
            self.line
        } else {
            self.line.saturating_sub(Self::count(&data[at..self.pos]))
        }
    }
}
