//! Packet captures: writing standard pcap files (used by `lab capture`), and reading pcap /
//! pcapng to explain resets after idle (`idlereset pcap`).
//!
//! The analysis is a pipeline of small steps, one module each: [`reader`] (records from
//! bytes), [`chunks`] (the one reader of files: chunked, resumable, skipping damage) →
//! [`link`] (the IP packet in a frame) → [`packet`] (IP/TCP header fields) →
//! [`flow`] (per-flow tracking, idle episodes) → [`events`] (event types and origin
//! verdict) → [`summary`] (idle bracket, catalog candidates, verdict). [`pipeline`] runs
//! reading and flow tracking on two threads over any `Read` (pcapng files, pipes);
//! [`spans`] reads a classic pcap file on both threads at once with positioned reads (what
//! `idlereset pcap` and `triage` use for files).

pub mod chunks;
pub mod events;
pub mod flow;
mod key;
pub mod link;
pub mod packet;
pub mod pipeline;
pub mod reader;
pub mod spans;
pub mod summary;
pub mod table;
mod wire;
pub mod writer;

#[cfg(test)]
mod testkit;

use serde::Serialize;

use self::chunks::{ChunkError, ChunkReader, Damage};
use self::flow::{Analysis, Config, Tracker};
use self::key::{PlainV4, Seg};
use self::reader::Record;
use self::wire::WireBatch;

/// What one capture file contained and showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileAnalysis {
    /// `"pcap"` or `"pcapng"`.
    pub format: &'static str,
    /// Records read.
    pub packets: u64,
    /// Records that were not TCP over IPv4 / IPv6 (ARP, UDP, unknown link types, fragments).
    pub other_packets: u64,
    /// The flows and events found.
    #[serde(flatten)]
    pub analysis: Analysis,
    /// Damaged byte ranges that were skipped.
    pub damage: Vec<Damage>,
    /// Notes on reading: a cut last record, ignored timestamps, link types not understood.
    pub notes: Vec<String>,
    /// True when the damage makes the verdict unsafe (see [`assess_damage`]).
    pub verdict_unsafe: bool,
}

/// What reading a capture produced besides its records.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// `"pcap"`, `"pcapng"` or `"unknown"`.
    pub format: &'static str,
    /// Damaged byte ranges that were skipped.
    pub damage: Vec<Damage>,
    /// Notes on reading: a cut last record, ignored timestamps, link types not understood.
    pub notes: Vec<String>,
    /// Bytes read.
    pub bytes: u64,
    /// Link types of the file that this tool cannot read (every one of them, when none is
    /// readable, makes the file unusable).
    pub unsupported_linktypes: Vec<u32>,
    /// True when the file has link types and none is supported.
    pub no_supported_linktype: bool,
    /// Why reading stopped early, if it did (unreadable header, I/O error).
    pub error: Option<ChunkError>,
}

impl ReadOutcome {
    /// Collect what `reader` saw once it is done.
    pub fn of<R>(reader: &ChunkReader<R>, error: Option<ChunkError>) -> ReadOutcome
    where
        R: std::io::Read,
    {
        let types = reader.linktypes();
        let unsupported: Vec<u32> = types
            .iter()
            .copied()
            .filter(|&t| !link::supported(t))
            .collect();
        let mut notes = reader.notes();
        let no_supported = !types.is_empty() && unsupported.len() == types.len();
        if !unsupported.is_empty() && !no_supported {
            notes.push(format!(
                "interfaces with link types {unsupported:?} are not understood; their packets are counted as not TCP"
            ));
        }
        let mut out = ReadOutcome {
            format: reader.format(),
            damage: reader.damage().to_vec(),
            notes,
            bytes: reader.position(),
            unsupported_linktypes: unsupported,
            no_supported_linktype: no_supported,
            error,
        };
        if out.format == "pcap"
            && reader.records_before_damage().is_some_and(|n| n < 3)
            && out.mostly_skipped()
        {
            out.notes.push(
                "damage from the first records on: captures written by some old patched libpcaps (Nokia, Red Hat 6.1, SuSE 6.3) have longer record headers that neither this tool nor tcpdump reads; Wireshark does: `editcap -F pcap IN OUT` converts them"
                    .to_string(),
            );
        }
        out
    }

    /// Bytes skipped as damage.
    pub fn skipped(&self) -> u64 {
        self.damage.iter().map(|d| d.skipped).sum()
    }

    /// More than a tenth of the bytes read were skipped: a verdict on
    /// this file alone is unsafe whatever its size.
    pub fn mostly_skipped(&self) -> bool {
        self.skipped() as f64 > self.bytes.max(1) as f64 * UNSAFE_SKIPPED_SHARE_ANY
    }
}

/// Analyses the records of one capture, in file order.
pub struct Analyzer {
    tracker: Tracker,
    packets: u64,
    other: u64,
}

impl Analyzer {
    /// An analyzer with no records read yet.
    pub fn new(cfg: Config) -> Analyzer {
        Analyzer {
            tracker: Tracker::new(cfg),
            packets: 0,
            other: 0,
        }
    }

    /// Account one record.
    pub fn record(&mut self, rec: &Record<'_>) {
        self.account(rec.ts_ns, tcp_seg(rec).as_ref());
    }

    /// Account one record decoded by [`tcp_seg`]: `None` for a record that is not TCP.
    fn account(&mut self, ts_ns: u64, seg: Option<&Seg>) {
        self.packets += 1;
        match seg {
            Some(seg) => self.tracker.packet(ts_ns, seg),
            None => self.other += 1,
        }
    }

    /// Account a batch decoded by [`tcp_seg`] on another thread: its TCP segments in order,
    /// and `others` records that were not TCP (they only count).
    pub(crate) fn account_batch(&mut self, segs: &WireBatch, others: u64) {
        self.packets += segs.len() as u64 + others;
        self.other += others;
        // Prefetch the flow of the segment PREFETCH_AHEAD places ahead before tracking this
        // one: the first touch of a flow's bucket is the tracker's costliest load, and this way
        // its cache miss overlaps with the work on the segments in between. Each segment is
        // unpacked and its key hashed once, for both; they wait in a ring.
        let mut ring: Ring = [(0, None, 0); AHEAD_RING];
        for i in 0..PREFETCH_AHEAD {
            stage(&self.tracker, segs, i, &mut ring);
        }
        for i in 0..segs.len() {
            stage(&self.tracker, segs, i + PREFETCH_AHEAD, &mut ring);
            if let (ts, Some(seg), h) = &ring[i % AHEAD_RING] {
                self.tracker.packet_hashed(*ts, seg, *h);
            }
        }
    }

    /// Records seen so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Summarise all flows; `reads` are the outcomes of the files fed to this analyzer.
    pub fn finish(self, reads: &[&ReadOutcome]) -> FileAnalysis {
        let mut format = "unknown";
        for r in reads {
            format = match (format, r.format) {
                (_, "unknown") => format,
                ("unknown", f) => f,
                (a, b) if a == b => a,
                _ => "mixed",
            };
        }
        let mut analysis = self.tracker.finish();
        let damage: Vec<Damage> = reads.iter().flat_map(|r| r.damage.clone()).collect();
        let verdict_unsafe = assess_damage(&mut analysis, reads);
        FileAnalysis {
            format,
            packets: self.packets,
            other_packets: self.other,
            analysis,
            damage,
            notes: reads.iter().flat_map(|r| r.notes.clone()).collect(),
            verdict_unsafe,
        }
    }
}

/// Skipped bytes above this share of the file, and above [`UNSAFE_SKIPPED_MIN`], make any
/// verdict unsafe (they could hide events).
const UNSAFE_SKIPPED_SHARE: f64 = 0.01;
const UNSAFE_SKIPPED_MIN: u64 = 64 * 1024;
/// Skipped bytes above this share make the verdict unsafe whatever the file's size: a small
/// capture mostly skipped (a format variant read as damage) must not pass as clean.
const UNSAFE_SKIPPED_SHARE_ANY: f64 = 0.10;

/// Mark events whose idle gap spans a damaged range of `reads` (the gap may be records lost
/// to the damage) and decide whether the damage makes the verdict unsafe: such an event
/// exists, the skipped bytes exceed 1 % of all bytes read and 64 KiB, or any one file had
/// more than a tenth skipped (checked per file, so a bad file cannot hide behind a merged
/// good one).
pub fn assess_damage(analysis: &mut Analysis, reads: &[&ReadOutcome]) -> bool {
    const NS: f64 = 1e9;
    let damage: Vec<&Damage> = reads.iter().flat_map(|r| &r.damage).collect();
    let mut unsafe_ = false;
    for e in &mut analysis.events {
        let gap_start = e.ts - e.idle_before_s;
        let hit = damage.iter().find(|d| {
            let after = d.after_ts_ns.map_or(f64::NEG_INFINITY, |t| t as f64 / NS);
            let before = d.before_ts_ns.map_or(f64::INFINITY, |t| t as f64 / NS);
            after <= e.ts && before >= gap_start
        });
        if let Some(d) = hit {
            e.damage = Some(format!(
                "the idle gap before this event spans damaged bytes {}..{}: records may be missing, the gap and the event are uncertain",
                d.offset,
                d.offset + d.skipped
            ));
            unsafe_ = true;
        }
    }
    let skipped: u64 = reads.iter().map(|r| r.skipped()).sum();
    let bytes: u64 = reads.iter().map(|r| r.bytes).sum();
    unsafe_
        || (skipped > UNSAFE_SKIPPED_MIN && skipped as f64 > bytes as f64 * UNSAFE_SKIPPED_SHARE)
        || reads.iter().any(|r| r.mostly_skipped())
}

/// How far ahead in a batch [`Analyzer::account_batch`] prefetches flows. Measured with
/// `bench/pcap/run.sh`'s capture on 2 cores, 7-9 interleaved runs each: 2, 4, 8, 12 and 16
/// ahead within noise of each other, all about 10 % less CPU than looking the flow up 4 ahead
/// (a lookup waits for the bucket, a prefetch does not; see `table`).
const PREFETCH_AHEAD: usize = 4;
/// Segments unpacked ahead, with their capture times and key hashes, by index modulo
/// [`AHEAD_RING`].
type Ring = [(u64, Option<Seg>, u64); AHEAD_RING];

/// Unpack segment `i` of `segs` (if there is one) into `ring`, hash its key and prefetch its
/// flow.
#[inline(always)]
fn stage(tracker: &Tracker, segs: &WireBatch, i: usize, ring: &mut Ring) {
    ring[i % AHEAD_RING] = match segs.get(i) {
        Some((ts, seg)) => {
            let h = table::hash(&seg.key);
            tracker.prefetch(h);
            (ts, Some(seg), h)
        }
        // Past the end: nothing to track. (Every segment in the batch unpacks: `WireBatch`
        // pushes an IPv6 key with the entry that refers to it.)
        None => {
            debug_assert!(i >= segs.len(), "segment {i} of the batch did not unpack");
            (0, None, 0)
        }
    };
}

/// Segments unpacked ahead wait here: a power of two above [`PREFETCH_AHEAD`].
const AHEAD_RING: usize = 8;
const _: () = assert!(AHEAD_RING.is_power_of_two() && AHEAD_RING > PREFETCH_AHEAD);

/// The TCP segment in a record, if it carries one, with the addresses (tests read it).
#[cfg(test)]
pub(crate) fn tcp_segment(rec: &Record<'_>) -> Option<packet::TcpSegment> {
    link::ip_payload(rec.linktype, rec.data).and_then(packet::parse_tcp)
}

/// The keyed segment in a record, as the tracker takes it, if it carries one. Stateless, so
/// decoding can run on one thread while another tracks flows.
#[inline]
pub(crate) fn tcp_seg(rec: &Record<'_>) -> Option<Seg> {
    let ip = link::ip_payload(rec.linktype, rec.data)?;
    match PlainV4::parse(ip) {
        Some(p) => Some(p.seg()),
        None => general_seg(ip),
    }
}

/// The keyed segment in an IP packet, the general way (any IP version, options, extension
/// headers).
pub(crate) fn general_seg(ip: &[u8]) -> Option<Seg> {
    packet::parse_tcp(ip).map(|s| Seg::of(&s))
}

/// Analyse a capture held in memory on this thread, through the same [`ChunkReader`] as
/// files (damage skipped and reported in the result). The outcome carries the error that
/// stopped reading, if any.
pub fn analyse_bytes(data: &[u8], cfg: Config) -> (FileAnalysis, ReadOutcome) {
    let mut reader = ChunkReader::new(data);
    let mut analyzer = Analyzer::new(cfg);
    let error = loop {
        match reader.next_record() {
            Ok(Some(r)) => analyzer.record(&r),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let outcome = ReadOutcome::of(&reader, error);
    (analyzer.finish(&[&outcome]), outcome)
}
