//! Reading one classic pcap file on both threads at once.
//!
//! Why: with one reading thread, that thread is the bottleneck: copying the file out of the
//! page cache and decoding it takes longer than tracking the flows on the other core
//! (docs/pcap.md has the measurements). Handing raw bytes from one core to the other costs
//! more than it saves. Here both threads read: the file is cut into spans of 8 MiB, a helper
//! thread reads and decodes spans ahead, and the tracking thread, when the span it needs is
//! still being decoded, decodes the next free one itself instead of waiting. Only the
//! compact keyed batches cross cores.
//!
//! **Where a span's records start** is not known until the span before it is decoded: a
//! record may straddle the boundary. A span's decoder therefore guesses its first record
//! with the resynchronisation test ([`Decoder::probe`](super::reader::Decoder::probe): a
//! plausible header followed by another), checks that the next records decode with times
//! that agree, and decodes on from there. The tracking thread takes spans in file order and
//! keeps the one [`ChunkReader`] whose state is the truth: a span is used only when its
//! first record is exactly where that reader is, and its first time is within the jump
//! limit of the reader's last. Anything else (a wrong guess, damage, a time jump, the end of
//! the file, a file that grew) is read by that reader itself, the same way as
//! [`pipeline`](super::pipeline) reads, so damage, notes and counts are those of a
//! one-thread read by construction (tests compare them at many span sizes).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::chunks::{CHUNK, ChunkReader, MAX_JUMP_NS};
use super::pipeline::Batch;
use super::reader::{Decoder, PcapLayout, Probe, Step};
use super::{Analyzer, ReadOutcome};

/// Bytes per span. Large enough that a span's hand-over (a lock, maybe a wake-up of the other
/// core) is rare, small enough that the two threads share the work evenly to the end.
pub(crate) const SPAN: u64 = 8 * 1024 * 1024;
/// Spans decoded ahead of the tracking thread at most (bounds memory: one batch each).
/// Measured on bench/pcap/run.sh's capture (9 interleaved runs each): 2 ahead left the helper
/// waiting (0.67x tcpdump's wall time), 3 gave 0.51x, 6 and 10 0.465x; spans of 4 MiB
/// matched 8 MiB, 16 MiB were slower (0.49x, and more memory).
const AHEAD: usize = 6;

/// Spans in a row that the reader could have taken but whose guess was wrong or missing,
/// after which the tracking thread reads the rest of the file alone (records the guess
/// rejects but the reader takes, such as a wire length below the captured one, would
/// otherwise cost a core for nothing). Spans inside damage or a clock jump do not count.
const GIVE_UP_AFTER: u32 = 4;
/// Bytes a span's decoder scans for its first record before it gives up and leaves the
/// span to the tracking thread's reader (only records longer than this start further in).
const GUESS_SCAN: u64 = 1024 * 1024;

/// Records the tracking thread's reader collects before tracking them, and the starting
/// capacity of a span's batch (it grows to the span's records).
const FLUSH: usize = 16 * 1024;

/// Positioned reads, as `pread(2)`: what lets two threads read one file at once.
pub trait ReadAt: Sync {
    /// Read into `buf` from byte `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - from);
        buf[..n].copy_from_slice(&self[from..from + n]);
        Ok(n)
    }
}

/// A `Read` over a [`ReadAt`] from a position that can be moved.
struct Cursor<'a, S: ?Sized> {
    src: &'a S,
    pos: u64,
}

impl<S: ReadAt + ?Sized> Read for Cursor<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.src.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The records of one span as decoded by either thread.
struct Span {
    /// Byte offset of its first record (the guess); `None` when none was found: no record
    /// starts in the span or in its first [`GUESS_SCAN`] bytes, no candidate had agreeing
    /// records after it, or a read failed.
    start: Option<u64>,
    /// Byte offset after its last record.
    end: u64,
    first_ts: u64,
    last_ts: u64,
    batch: Batch,
}

/// What both threads share: which spans are taken, the decoded ones waiting.
struct Plan {
    /// The next span nobody has taken.
    next: usize,
    /// Spans the tracking thread is done with.
    used: usize,
    /// How many spans the file has.
    spans: usize,
    /// Decoded spans by index, waiting for the tracking thread.
    ready: BTreeMap<usize, Span>,
    /// Emptied batches to reuse.
    spare: Vec<Batch>,
    /// The tracking thread stopped early: the helper stops too.
    stop: bool,
    /// The helper returned (or panicked): a span it took and did not deliver never will be.
    helper_gone: bool,
}

/// The layout of `src` when it is a classic pcap file, read from its header.
fn pcap_layout<S: ReadAt + ?Sized>(src: &S) -> Option<PcapLayout> {
    let mut head = [0u8; 24];
    let n = src.read_at(&mut head, 0).ok()?;
    let mut decoder = Decoder::new();
    match decoder.decode(&head[..n], 0) {
        Ok(Step::Skip { .. }) => decoder.pcap_layout(),
        _ => None,
    }
}

/// Feed every record of `file` to `analyzer`: in spans on both threads when it is a regular
/// file (see the module docs), else (a pipe, a FIFO, a character device, which cannot be
/// read at an offset) through [`analyse_reader`](super::pipeline::analyse_reader).
pub fn analyse_file(
    file: &std::fs::File,
    analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
) -> (Analyzer, ReadOutcome) {
    match file.metadata() {
        Ok(m) if m.is_file() => analyse_at(file, m.len(), analyzer, progress),
        _ => super::pipeline::analyse_reader(file, analyzer, progress),
    }
}

/// Feed every record of the classic pcap file `src` of `len` bytes to `analyzer` on two
/// threads (see the module docs); any other file goes through
/// [`analyse_reader`](super::pipeline::analyse_reader). The result is the one-thread one.
pub fn analyse_at<S: ReadAt + ?Sized>(
    src: &S,
    len: u64,
    analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
) -> (Analyzer, ReadOutcome) {
    analyse_at_in_spans(src, len, analyzer, progress, SPAN)
}

/// [`analyse_at`] with spans of `span` bytes (tests and the fuzz target use small ones to
/// cross many).
pub fn analyse_at_in_spans<S: ReadAt + ?Sized>(
    src: &S,
    len: u64,
    analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
    span: u64,
) -> (Analyzer, ReadOutcome) {
    let (analyzer, outcome, _) = run(src, len, analyzer, progress, span);
    (analyzer, outcome)
}

/// How the spans of one file were read (for tests: both ways must be exercised).
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Spans whose decoded records were used.
    guessed: u64,
    /// Spans decoded elsewhere whose guess was not where the file's reader was.
    missed: u64,
}

fn run<S: ReadAt + ?Sized>(
    src: &S,
    len: u64,
    mut analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
    span: u64,
) -> (Analyzer, ReadOutcome, Tally) {
    let span = span.max(1);
    let mut tally = Tally::default();
    let Some(layout) = pcap_layout(src) else {
        let (a, o) = super::pipeline::analyse_reader(Cursor { src, pos: 0 }, analyzer, progress);
        return (a, o, tally);
    };
    let spans = usize::try_from(len.div_ceil(span)).unwrap_or(usize::MAX);
    let plan = Mutex::new(Plan {
        next: 1,
        used: 0,
        spans,
        ready: BTreeMap::new(),
        spare: Vec::new(),
        stop: false,
        helper_gone: false,
    });
    let wake = Condvar::new();
    let file = SpanSource { src, layout, span };
    std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            let _gone = GoneOnDrop(&plan, &wake);
            helper(&file, &plan, &wake);
        });
        // However this thread leaves (a panic too), the helper must not wait for it forever.
        let _stop = StopOnDrop(&plan, &wake);
        let mut reader = ChunkReader::new(Cursor { src, pos: 0 });
        let mut own = Batch::new(FLUSH);
        let mut buf = Vec::new();
        let mut error = None;
        // Span 0 holds the file header: the reader reads it.
        let mut k = 0;
        let mut missed_in_row = 0;
        let mut alone = false;
        loop {
            let limit = if k + 1 < spans {
                (k as u64 + 1) * span
            } else {
                u64::MAX
            };
            if k > 0 && k < spans && !alone && reader.position() < limit {
                let got = take(&plan, &wake, k, &file, &mut buf);
                // The reader can take decoded records only in its tight loop's state (not
                // inside damage or a clock jump); then the span is usable when it starts
                // where the reader is, at a time the reader would accept.
                let ready = reader.fast_state();
                let used = match (&got, ready) {
                    (Some(s), Some((_, last))) => {
                        s.start == Some(reader.position())
                            && (s.batch.records() == 0 || s.first_ts.abs_diff(last) <= MAX_JUMP_NS)
                    }
                    _ => false,
                };
                if let Some(s) = got {
                    if used {
                        tally.guessed += 1;
                        missed_in_row = 0;
                        let records = s.batch.records() as u64;
                        reader.skip_decoded(s.end, s.last_ts, records, |c, to| c.pos = to);
                        analyzer.account_batch(&s.batch.segs, s.batch.others);
                    } else if ready.is_some() {
                        // A wrong guess, or none (no agreeing records, a long record).
                        tally.missed += u64::from(s.start.is_some());
                        missed_in_row += 1;
                    }
                    give_back(&plan, s.batch);
                }
            }
            // The rest of the span (all of it when the guess was not used).
            let mut more = true;
            while more && reader.position() < limit {
                match reader.for_each_record_before(limit, |rec| own.push(rec)) {
                    Ok(m) => more = m,
                    Err(e) => {
                        error = Some(e);
                        more = false;
                    }
                }
                if own.records() >= FLUSH {
                    analyzer.account_batch(&own.segs, own.others);
                    own.clear();
                }
            }
            analyzer.account_batch(&own.segs, own.others);
            own.clear();
            progress(reader.position());
            if missed_in_row >= GIVE_UP_AFTER {
                // This file's spans cannot be guessed: read it here and let the helper rest.
                alone = true;
            }
            {
                let mut p = lock(&plan);
                p.used = k + 1;
                p.stop |= !more || alone;
                // Spans this thread read past (a record longer than a span) are not needed.
                let used = p.used;
                while let Some(e) = p.ready.first_entry() {
                    if *e.key() >= used {
                        break;
                    }
                    let mut batch = e.remove().batch;
                    batch.clear();
                    p.spare.push(batch);
                }
            }
            wake.notify_all();
            if !more {
                break;
            }
            k += 1;
        }
        drop(_stop);
        // A helper that panicked only cost time: this thread read its spans again.
        let _ = helper.join();
        let outcome = ReadOutcome::of(&reader, error);
        (analyzer, outcome, tally)
    })
}

impl Plan {
    /// Take span `k` (the next free one, or one the caller needs) with a batch to decode it
    /// into.
    fn claim(&mut self, k: usize) -> Batch {
        self.next = self.next.max(k + 1);
        self.spare.pop().unwrap_or_else(|| Batch::new(FLUSH))
    }
}

/// Wait on `wake` for the other thread.
fn wait<'a>(wake: &Condvar, p: MutexGuard<'a, Plan>) -> MutexGuard<'a, Plan> {
    wake.wait(p).unwrap_or_else(PoisonError::into_inner)
}

/// What decoding any span of the file needs: where to read, the record layout, the span size.
struct SpanSource<'a, S: ?Sized> {
    src: &'a S,
    layout: PcapLayout,
    span: u64,
}

/// Tells the helper to stop when dropped.
struct StopOnDrop<'a>(&'a Mutex<Plan>, &'a Condvar);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        lock(self.0).stop = true;
        self.1.notify_all();
    }
}

/// Tells the tracking thread that the helper is gone when dropped.
struct GoneOnDrop<'a>(&'a Mutex<Plan>, &'a Condvar);

impl Drop for GoneOnDrop<'_> {
    fn drop(&mut self) {
        lock(self.0).helper_gone = true;
        self.1.notify_all();
    }
}

fn lock(plan: &Mutex<Plan>) -> std::sync::MutexGuard<'_, Plan> {
    plan.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Span `k` for the tracking thread: decoded by the helper, or by this thread when the
/// helper has not got to it. While it waits, this thread decodes the next free span.
fn take<S: ReadAt + ?Sized>(
    plan: &Mutex<Plan>,
    wake: &Condvar,
    k: usize,
    file: &SpanSource<'_, S>,
    buf: &mut Vec<u8>,
) -> Option<Span> {
    let mut p = lock(plan);
    loop {
        if let Some(s) = p.ready.remove(&k) {
            return Some(s);
        }
        if p.next > k && p.helper_gone {
            // Taken by a helper that died: this thread's reader reads it.
            return None;
        }
        if p.next <= k {
            // Nobody has it yet: decode it here.
            let batch = p.claim(k);
            drop(p);
            return Some(decode_span(file, k, buf, batch));
        }
        if p.next < p.spans && p.next < p.used + AHEAD {
            let j = p.next;
            let batch = p.claim(j);
            drop(p);
            let s = decode_span(file, j, buf, batch);
            p = lock(plan);
            p.ready.insert(j, s);
            continue;
        }
        p = wait(wake, p);
    }
}

fn give_back(plan: &Mutex<Plan>, mut batch: Batch) {
    batch.clear();
    lock(plan).spare.push(batch);
}

/// The helper thread: decode free spans, at most [`AHEAD`] ahead of the tracking thread.
fn helper<S: ReadAt + ?Sized>(file: &SpanSource<'_, S>, plan: &Mutex<Plan>, wake: &Condvar) {
    let mut buf = Vec::new();
    let mut p = lock(plan);
    loop {
        if p.stop || p.next >= p.spans {
            return;
        }
        if p.next >= p.used + AHEAD {
            p = wait(wake, p);
            continue;
        }
        let k = p.next;
        let batch = p.claim(k);
        drop(p);
        let s = decode_span(file, k, &mut buf, batch);
        p = lock(plan);
        p.ready.insert(k, s);
        wake.notify_all();
    }
}

/// Decode span `k`: find its first record, then decode records that start in it, stopping
/// at anything unusual (the tracking thread's reader deals with that).
fn decode_span<S: ReadAt + ?Sized>(
    file: &SpanSource<'_, S>,
    k: usize,
    buf: &mut Vec<u8>,
    mut batch: Batch,
) -> Span {
    let SpanSource { src, layout, span } = *file;
    let from = k as u64 * span;
    let limit = from.saturating_add(span);
    let mut window = Window::new(src, buf, from);
    let mut out = Span {
        start: None,
        end: from,
        first_ts: 0,
        last_ts: 0,
        batch: Batch::new(0),
    };
    // The first record: a plausible header followed by another.
    let mut pos = 0usize;
    loop {
        let at = window.base + pos as u64;
        if at >= limit || at - from >= GUESS_SCAN || (window.eof && pos >= window.end) {
            out.batch = batch;
            return out;
        }
        match layout.probe(window.bytes(pos), window.eof, None, MAX_JUMP_NS) {
            Probe::Yes if records_agree(layout, window.bytes(pos), window.base + pos as u64) => {
                break;
            }
            Probe::Yes => pos += 1,
            Probe::No => pos += 1,
            Probe::NeedMore(n) => {
                if window.eof || !window.fill(&mut pos, n) {
                    out.batch = batch;
                    return out;
                }
            }
        }
    }
    let start = window.base + pos as u64;
    out.start = Some(start);
    let mut last: Option<u64> = None;
    'span: loop {
        while window.base + (pos as u64) < limit {
            match layout.decode(window.bytes(pos), window.base + pos as u64) {
                Ok(Step::Record { record, used }) => {
                    match last {
                        None => out.first_ts = record.ts_ns,
                        Some(l) if l.abs_diff(record.ts_ns) > MAX_JUMP_NS => break 'span,
                        Some(_) => {}
                    }
                    batch.push(&record);
                    last = Some(record.ts_ns);
                    pos += used;
                }
                Ok(Step::NeedMore { need }) if !window.eof => {
                    if !window.fill(&mut pos, need) {
                        break 'span;
                    }
                    continue 'span;
                }
                _ => break 'span,
            }
        }
        break;
    }
    out.end = window.base + pos as u64;
    out.last_ts = last.unwrap_or(0);
    out.batch = batch;
    out
}

/// Records checked after a guessed first record.
const GUESS_CHECK: usize = 8;

/// Whether the [`GUESS_CHECK`] records from `buf[0]` (as many as `buf` holds) decode and lie
/// within the jump limit of the first: packet bytes that look like two record headers
/// rarely go on looking like more, with times that agree.
fn records_agree(layout: PcapLayout, buf: &[u8], base: u64) -> bool {
    let mut at = 0;
    let mut first = None;
    for _ in 0..GUESS_CHECK {
        match layout.decode(&buf[at..], base + at as u64) {
            Ok(Step::Record { record, used }) => {
                let t0 = *first.get_or_insert(record.ts_ns);
                if t0.abs_diff(record.ts_ns) > MAX_JUMP_NS {
                    return false;
                }
                at += used;
            }
            Ok(Step::NeedMore { .. }) => return true,
            _ => return false,
        }
    }
    true
}

/// Chunked positioned reads into a reused buffer.
struct Window<'a, S: ?Sized> {
    src: &'a S,
    buf: &'a mut Vec<u8>,
    /// Byte offset of `buf[0]`.
    base: u64,
    end: usize,
    eof: bool,
}

impl<'a, S: ReadAt + ?Sized> Window<'a, S> {
    fn new(src: &'a S, buf: &'a mut Vec<u8>, from: u64) -> Window<'a, S> {
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        Window {
            src,
            buf,
            base: from,
            end: 0,
            eof: false,
        }
    }

    fn bytes(&self, pos: usize) -> &[u8] {
        &self.buf[pos.min(self.end)..self.end]
    }

    /// Keep the bytes from `pos` (which becomes 0), then read until `need` are buffered or
    /// the file ends. `false` on a read error (the tracking thread's reader reports it).
    fn fill(&mut self, pos: &mut usize, need: usize) -> bool {
        let keep = (*pos).min(self.end);
        self.buf.copy_within(keep..self.end, 0);
        self.base += keep as u64;
        self.end -= keep;
        *pos -= keep;
        if need > self.buf.len() {
            // Twice what is needed: a scan that asks for a long record's bytes at each step
            // then refills once per `need` bytes passed, not at every step.
            let grown = need.saturating_mul(2).max(self.buf.len().saturating_mul(2));
            self.buf
                .resize(grown.min(need.max(2 * super::reader::MAX_RECORD_LEN)), 0);
        }
        while self.end < need && !self.eof {
            match self
                .src
                .read_at(&mut self.buf[self.end..], self.base + self.end as u64)
            {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
            if self.end == self.buf.len() {
                break;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
