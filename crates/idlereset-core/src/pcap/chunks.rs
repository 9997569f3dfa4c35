//! The one resumable reader of capture files: records from any `Read`, in chunks, with
//! damage handling.
//!
//! Why chunks rather than a memory map or reading the whole file: every page of a mapping
//! the analysis touches counts in the resident set, so a 4 GB capture would show 4 GB of RSS;
//! chunked reads into one reused buffer keep the peak flat whatever the file size, at the cost
//! of one copy from the page cache. The [`Decoder`] borrows records from the buffer (zero
//! copy); [`ChunkReader::next_record`] hands them out one at a time, and
//! [`ChunkReader::for_each_record`] hands a classic pcap file's buffered records out in one
//! loop (the same records; what the two-thread pipeline uses, measured in docs/pcap.md).
//!
//! **Damage.** Captures get cut while being written, copied half-way, or have blocks
//! overwritten. After a corrupt record header the reader *resynchronises*: it scans forward
//! for the next position where a plausible record header starts *and* another plausible one
//! follows it (pcapng blocks also repeat their length at their end), skips the bytes in
//! between and goes on. Each skipped range is a [`Damage`] with its byte offset and length.
//! A file that ends inside its last record is a normal end, reported as a note, and so is a
//! file that ends in zero bytes (space allocated but never written: a crash, a preallocated
//! file); a zeroed block in the middle is a damaged range that says it is all zeros.
//!
//! **Absurd time jumps.** A record whose timestamp is more than [`MAX_JUMP_NS`] away from the
//! previous record's is ignored with a note (a flipped bit in the seconds field would
//! otherwise show as an idle gap of decades). When [`REBASE_AFTER`] records in a row agree on
//! the new time, the capture's clock really jumped and the reader follows it.

use std::io::{ErrorKind, Read};

use super::reader::{Decoder, PcapLayout, Probe, ReadError, Record, Step};

/// Read size; a record larger than this grows the buffer (up to the decoder's limit).
/// 256 KiB rather than megabytes: the buffer stays in the core's L2 cache, so the kernel's
/// copy into it and the decoder's reads from it do not go out to memory (measured on the
/// benchmark capture, 1.15 GB: 4 MiB reads took about 0.1 s more system time, and perf put
/// the record-header reads among the reading thread's hottest lines).
pub(crate) const CHUNK: usize = 256 * 1024;
/// A record more than this far in time from the previous one is a corrupt timestamp.
pub const MAX_JUMP_NS: u64 = 30 * 86_400 * 1_000_000_000;
/// This many consecutive records agreeing on a jumped clock make it the new time.
pub const REBASE_AFTER: u32 = 3;
/// The reason of a damaged range that is all zero bytes.
const ZERO_FILLED: &str = "zero bytes: a block the file system never wrote (a crash) or wiped";
/// Zero bytes at a position that rule out a record or block starting there: a classic pcap
/// record's length is in its bytes 8-11, a pcapng block's type in 0-3 and its length in 4-7.
const ZERO_HEADER: usize = 16;
/// Notes kept per file (the count of the rest is kept).
const MAX_NOTES: usize = 20;

/// A byte range of a capture that could not be read and was skipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The file (set by the caller that knows it; empty otherwise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// Absolute byte offset where the damage starts.
    pub offset: u64,
    /// Bytes skipped.
    pub skipped: u64,
    /// What was wrong at `offset`.
    pub reason: String,
    /// Capture time of the last good record before the damage (ns since the epoch).
    #[serde(skip)]
    pub after_ts_ns: Option<u64>,
    /// Capture time of the first good record after it.
    #[serde(skip)]
    pub before_ts_ns: Option<u64>,
}

/// Why reading stopped for good: the file is not a capture, or reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The file header is unreadable (nothing after it can be interpreted).
    #[error(transparent)]
    Header(ReadError),
    /// Reading the input failed.
    #[error("byte offset {offset}: read failed")]
    Io {
        /// Absolute byte offset the read started at.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads records from `R` chunk by chunk; see the module docs.
pub struct ChunkReader<R> {
    src: R,
    decoder: Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Absolute offset of `buf[0]`.
    base: u64,
    eof: bool,
    done: bool,
    damage: Vec<Damage>,
    /// Index in `damage` of a range still waiting for its `before_ts_ns`.
    open_damage: Option<usize>,
    notes: Vec<String>,
    notes_dropped: u64,
    last_ts: Option<u64>,
    /// A run of records agreeing on a jumped clock: (time of the last, count).
    jump_run: Option<(u64, u32)>,
    ignored: u64,
    /// Records accepted so far.
    accepted: u64,
    /// Records accepted before the first damage.
    first_damage_after: Option<u64>,
}

impl<R: Read> ChunkReader<R> {
    /// A reader with the default chunk size.
    pub fn new(src: R) -> ChunkReader<R> {
        ChunkReader::with_chunk(src, CHUNK)
    }

    /// A reader that reads `chunk` bytes at a time (at least 1).
    pub fn with_chunk(src: R, chunk: usize) -> ChunkReader<R> {
        ChunkReader {
            src,
            decoder: Decoder::new(),
            buf: vec![0; chunk.max(1)],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            done: false,
            damage: Vec::new(),
            open_damage: None,
            notes: Vec::new(),
            notes_dropped: 0,
            last_ts: None,
            jump_run: None,
            ignored: 0,
            accepted: 0,
            first_damage_after: None,
        }
    }

    /// `"pcap"`, `"pcapng"`, or `"unknown"` before the file header was read.
    pub fn format(&self) -> &'static str {
        self.decoder.format()
    }

    /// The link types seen so far (see [`Decoder::linktypes`]).
    pub(crate) fn linktypes(&self) -> Vec<u32> {
        self.decoder.linktypes()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The damaged ranges skipped so far.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Notes on the reading (a cut last record, ignored timestamps), the last one saying how
    /// many more were left out.
    pub fn notes(&self) -> Vec<String> {
        let mut n = self.notes.clone();
        if self.notes_dropped > 0 {
            n.push(format!("... and {} more notes", self.notes_dropped));
        }
        n
    }

    /// How many records were read before the first damaged range, if there is one.
    pub fn records_before_damage(&self) -> Option<u64> {
        // A cut last record or a zero tail is not damage: `at_eof` and `zero_tail` drop the
        // range that was opened.
        self.first_damage_after.filter(|_| !self.damage.is_empty())
    }

    /// Records ignored for an absurd timestamp.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The next record, `Ok(None)` at the end. Damage is skipped and recorded, never an error;
    /// only an unreadable file header or an I/O error is.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ChunkError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let base = self.base + self.start as u64;
            let step = self.decoder.decode(&self.buf[self.start..self.end], base);
            match step {
                Ok(Step::Record { record, used }) => {
                    let at = record.data.as_ptr() as usize - self.buf.as_ptr() as usize;
                    let (len, ts_ns, linktype, orig_len) = (
                        record.data.len(),
                        record.ts_ns,
                        record.linktype,
                        record.orig_len,
                    );
                    self.start += used;
                    if !self.accept_time(ts_ns, base) {
                        continue;
                    }
                    return Ok(Some(Record {
                        ts_ns,
                        linktype,
                        data: &self.buf[at..at + len],
                        orig_len,
                        offset: base,
                    }));
                }
                Ok(Step::Skip { used }) => self.start += used,
                Ok(Step::NeedMore { need }) if !self.eof => self.fill(need)?,
                Ok(Step::NeedMore { need }) => self.at_eof(need)?,
                Err(e) if self.decoder.format() == "unknown" => {
                    self.done = true;
                    return Err(ChunkError::Header(e));
                }
                Err(e) => self.resync(e.to_string())?,
            }
        }
    }

    /// Hand `f` every record [`ChunkReader::next_record`] would return, up to and including
    /// the first one that needs more input, damage handling or a note. Returns `false` at the
    /// end (records may have been handed to `f` in that same call); an error stops reading
    /// for good, as with `next_record`. For a classic pcap file this decodes the buffered
    /// records in one tight loop (no per-record dispatch on the decoder state or on the
    /// outcome), which is most of the reading thread's work on a large capture; anything
    /// unusual goes the general way.
    #[inline]
    pub fn for_each_record(&mut self, f: impl FnMut(&Record<'_>)) -> Result<bool, ChunkError> {
        self.for_each_record_before(u64::MAX, f)
    }

    /// [`ChunkReader::for_each_record`], but only records that start before byte offset
    /// `limit`: the first record the general way hands out may start past it (after
    /// skipping damage or records with ignored timestamps); it is handed out.
    /// Returns `true` without reading when the position is at or past `limit`.
    #[inline]
    pub(crate) fn for_each_record_before(
        &mut self,
        limit: u64,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<bool, ChunkError> {
        if let Some((layout, mut last)) = self.fast_state() {
            let mut pos = self.start;
            let mut accepted = 0;
            while self.base + (pos as u64) < limit {
                let Ok(Step::Record { record, used }) =
                    layout.decode(&self.buf[pos..self.end], self.base + pos as u64)
                else {
                    break;
                };
                if record.ts_ns.abs_diff(last) > MAX_JUMP_NS {
                    break;
                }
                f(&record);
                last = record.ts_ns;
                pos += used;
                accepted += 1;
            }
            self.start = pos;
            self.last_ts = Some(last);
            self.accepted += accepted;
        }
        if self.position() >= limit && !self.done {
            return Ok(true);
        }
        match self.next_record()? {
            Some(rec) => {
                f(&rec);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The layout and last record time when the next records can be decoded without this
    /// reader's state (a classic pcap file, a time to check jumps against, no damaged range
    /// or clock jump pending, not at the end): what the tight loop of
    /// [`ChunkReader::for_each_record`] and records decoded elsewhere need.
    pub(crate) fn fast_state(&self) -> Option<(PcapLayout, u64)> {
        match (
            self.decoder.pcap_layout(),
            self.last_ts,
            self.open_damage,
            self.jump_run,
            self.done,
        ) {
            (Some(layout), Some(last), None, None, false) => Some((layout, last)),
            _ => None,
        }
    }

    /// `records` records from the position up to byte offset `to` were decoded elsewhere,
    /// the last at `last_ts`: go on after them, as if this reader had read them itself (only
    /// while [`ChunkReader::fast_state`] holds). When `to` is past the buffered bytes,
    /// `reposition` must make the source read from `to` next.
    pub(crate) fn skip_decoded(
        &mut self,
        to: u64,
        last_ts: u64,
        records: u64,
        reposition: impl FnOnce(&mut R, u64),
    ) {
        debug_assert!(self.fast_state().is_some() && to >= self.position());
        if records > 0 {
            self.last_ts = Some(last_ts);
            self.accepted += records;
        }
        if to <= self.base + self.end as u64 {
            self.start = (to - self.base) as usize;
        } else {
            self.base = to;
            self.start = 0;
            self.end = 0;
            self.eof = false;
            reposition(&mut self.src, to);
        }
    }

    /// Keep the unread bytes, then read until at least `need` are buffered or the file ends.
    fn fill(&mut self, need: usize) -> Result<(), ChunkError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        if need > self.buf.len() {
            // Grow geometrically, and to twice what is needed: a resynchronisation asks for
            // a few more bytes at a time, or for a long record's bytes at each step it takes
            // (with room for only `need`, every step would refill).
            let grown = need.saturating_mul(2).max(self.buf.len().saturating_mul(2));
            self.buf
                .resize(grown.min(need.max(2 * super::reader::MAX_RECORD_LEN)), 0);
        }
        while self.end < need.max(1) && !self.eof {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    self.done = true;
                    return Err(ChunkError::Io {
                        offset: self.base + self.end as u64,
                        source,
                    });
                }
            }
            if self.end == self.buf.len() {
                break;
            }
        }
        Ok(())
    }

    /// The file ended with `need` bytes wanted.
    fn at_eof(&mut self, need: usize) -> Result<(), ChunkError> {
        let have = self.end - self.start;
        if self.decoder.format() == "unknown" {
            self.done = true;
            return Err(ChunkError::Header(ReadError::Truncated {
                offset: self.position(),
                what: "file header",
                need: need as u64,
                have: have as u64,
            }));
        }
        if have == 0 {
            self.done = true;
            return Ok(());
        }
        // A wrong length field can claim bytes the file does not have: if a good record
        // follows, this was damage, not the end.
        let offset = self.position();
        let reason = format!("record claims {need} bytes, the file has {have} left");
        let ranges = self.damage.len();
        if self.scan(offset, reason)? {
            return Ok(());
        }
        if self.damage.len() == ranges {
            // The rest was all zeros: `scan` left a note instead of a range.
            return Ok(());
        }
        self.damage.pop();
        self.open_damage = None;
        self.note(format!(
            "byte offset {offset}: the file ends inside the last record ({have} of {need} bytes present): a capture cut while being written; read up to there"
        ));
        self.done = true;
        Ok(())
    }

    /// Skip damage at the current position: scan for the next plausible record.
    fn resync(&mut self, reason: String) -> Result<(), ChunkError> {
        let offset = self.position();
        self.scan(offset, reason).map(|_| ())
    }

    /// Record damage from `offset` and advance to the next plausible record. Returns whether
    /// one was found (otherwise the damage runs to the end of the file).
    fn scan(&mut self, offset: u64, reason: String) -> Result<bool, ChunkError> {
        let step = if self.decoder.format() == "pcapng" {
            4
        } else {
            1
        };
        self.damage.push(Damage {
            file: String::new(),
            offset,
            skipped: 0,
            reason,
            after_ts_ns: self.last_ts,
            before_ts_ns: None,
        });
        let idx = self.damage.len() - 1;
        if idx == 0 {
            self.first_damage_after = Some(self.accepted);
        }
        let mut p = self.start + step;
        // Whether every byte skipped so far is zero (checked a step at a time as the scan
        // passes it).
        let mut zeros = self.buf[self.start..self.end.min(p)]
            .iter()
            .all(|&b| b == 0);
        loop {
            if p >= self.end && self.eof {
                self.start = self.end;
                self.damage[idx].skipped = self.position() - offset;
                self.done = true;
                if zeros {
                    self.zero_tail(idx);
                }
                return Ok(false);
            }
            let probe = if p >= self.end {
                Probe::NeedMore(1)
            } else {
                self.decoder
                    .probe(&self.buf[p..self.end], self.eof, self.last_ts, MAX_JUMP_NS)
            };
            match probe {
                Probe::Yes => {
                    self.resume_at(p, idx, offset, zeros);
                    return Ok(true);
                }
                Probe::No => {
                    zeros = zeros && self.zero_step(p, step);
                    p = self.past_zero_headers(p + step, step);
                }
                Probe::NeedMore(n) => {
                    // `zeros` covers the bytes up to `p`, which `fill` keeps or `p` has not
                    // passed the buffer's end.
                    debug_assert!(p <= self.end || self.eof, "bytes skipped unchecked");
                    // Drop the bytes already scanned, then read more.
                    let keep_from = p.min(self.end);
                    self.start = keep_from;
                    self.fill(n)?;
                    p = self.start + (p - keep_from);
                    if self.eof && self.end - self.start < n {
                        // Not enough bytes will ever come: judge with what there is.
                        let probe = if p < self.end {
                            self.decoder.probe(
                                &self.buf[p..self.end],
                                true,
                                self.last_ts,
                                MAX_JUMP_NS,
                            )
                        } else {
                            Probe::No
                        };
                        if probe == Probe::Yes {
                            self.resume_at(p, idx, offset, zeros);
                            return Ok(true);
                        }
                        zeros = zeros && self.zero_step(p, step);
                        p += step;
                    }
                }
            }
        }
    }

    /// Whether a record's time is believable; see the module docs.
    fn accept_time(&mut self, ts: u64, offset: u64) -> bool {
        // Simple packet blocks carry no timestamp.
        if ts == 0 && self.decoder.format() == "pcapng" {
            return true;
        }
        let ok = match self.last_ts {
            None => true,
            Some(last) if last.abs_diff(ts) <= MAX_JUMP_NS => true,
            Some(last) => {
                let run = match self.jump_run {
                    Some((t, n)) if t.abs_diff(ts) <= MAX_JUMP_NS => n + 1,
                    _ => 1,
                };
                self.jump_run = Some((ts, run));
                if run >= REBASE_AFTER {
                    self.note(format!(
                        "byte offset {offset}: the capture's clock jumps by {} days and stays there; following it",
                        days(last, ts)
                    ));
                    true
                } else {
                    self.ignored += 1;
                    self.note(format!(
                        "byte offset {offset}: record timestamp {} is {} days away from its neighbours: corrupt, record ignored",
                        super::flow::rfc3339(ts),
                        days(last, ts)
                    ));
                    false
                }
            }
        };
        if ok {
            self.jump_run = None;
            self.last_ts = Some(ts);
            self.accepted += 1;
            if let Some(i) = self.open_damage.take() {
                self.damage[i].before_ts_ns = Some(ts);
            }
        }
        ok
    }

    /// A plausible record starts at buffer index `p`: the damaged range `idx` (from `offset`)
    /// ends there, saying so when it was all zeros, and reading resumes there.
    fn resume_at(&mut self, p: usize, idx: usize, offset: u64, zeros: bool) {
        self.start = p;
        self.damage[idx].skipped = self.position() - offset;
        self.open_damage = Some(idx);
        if zeros {
            self.damage[idx].reason = ZERO_FILLED.to_string();
        }
    }

    /// Whether the `step` bytes from index `p` that the scan passes over are all zero. They
    /// are buffered: a probe answers "no" only with a header's worth of bytes in hand (the
    /// bound only guards the slice).
    fn zero_step(&self, p: usize, step: usize) -> bool {
        let next = (p + step).min(self.end);
        self.buf[p.min(next)..next].iter().all(|&b| b == 0)
    }

    /// Where the scan goes on from `p`, `step` at a time: past the positions in a buffered
    /// run of zeros whose first [`ZERO_HEADER`] bytes are all zero, which no probe accepts
    /// (a record or block needs a length). Without this, 500 MB of zeros after a capture
    /// took 4.7 s to scan; the bytes skipped are zeros, so what the scan found and
    /// its `zeros` flag stay the same.
    fn past_zero_headers(&self, p: usize, step: usize) -> usize {
        let rest = &self.buf[p.min(self.end)..self.end];
        let mut zero = 0;
        for w in rest.chunks_exact(16) {
            if u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])) != 0 {
                break;
            }
            zero += 16;
        }
        zero += rest[zero..].iter().take_while(|&&b| b == 0).count();
        if zero < ZERO_HEADER + step {
            return p;
        }
        p + (zero - ZERO_HEADER) / step * step
    }

    /// The damaged range `idx` runs to the end of the file and is all zeros: not damage but
    /// space that was never written, so a note instead.
    fn zero_tail(&mut self, idx: usize) {
        // `idx` is the last range (the one `scan` opened); `open_damage` can only point at an
        // earlier one.
        let d = self.damage.remove(idx);
        if self.damage.is_empty() {
            self.first_damage_after = None;
        }
        self.note(format!(
            "byte offset {}: the file ends in {} zero bytes: space that was allocated but never written (a capture cut by a crash, or a preallocated file); read up to there",
            d.offset, d.skipped
        ));
    }

    fn note(&mut self, n: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(n);
        } else {
            self.notes_dropped += 1;
        }
    }
}

fn days(a: u64, b: u64) -> u64 {
    a.abs_diff(b) / (86_400 * 1_000_000_000)
}

#[cfg(test)]
mod tests;
