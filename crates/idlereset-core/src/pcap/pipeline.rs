//! Reading and flow tracking of one capture on two threads.
//!
//! One thread reads chunks, decodes records, parses their IP/TCP headers and keys them by flow
//! (all stateless), the other tracks flows (stateful, the larger share of the work). Batches of
//! keyed segments go between them through a bounded channel and come back empty for reuse, so
//! nothing is allocated per packet and memory stays at a few batches. Records that are not TCP
//! only travel as a count. With a second core free this hides the read and parse cost behind
//! flow tracking (bench/pcap/run.sh measures it).
//!
//! Threads only, no I/O of its own: the caller hands in any `Read`. A classic pcap file
//! that can be read at any offset goes through [`spans`](super::spans) instead, where both
//! threads read (this reading thread is the bottleneck there).

use std::io::Read;
use std::sync::mpsc;

use super::chunks::{CHUNK, ChunkReader};
use super::key::PlainV4;
use super::reader::Record;
use super::wire::WireBatch;
use super::{Analyzer, ReadOutcome, general_seg, link};

/// Keyed TCP segments in file order, and how many records between them were not TCP.
pub(super) struct Batch {
    pub(super) segs: WireBatch,
    pub(super) others: u64,
}

impl Batch {
    pub(super) fn new(capacity: usize) -> Batch {
        Batch {
            segs: WireBatch::with_capacity(capacity),
            others: 0,
        }
    }

    pub(super) fn records(&self) -> usize {
        self.segs.len() + self.others as usize
    }

    /// Empty, keeping the capacity.
    pub(super) fn clear(&mut self) {
        self.segs.clear();
        self.others = 0;
    }

    /// Add a record: its keyed TCP segment, or a count when it holds none. The same two ways
    /// as [`tcp_seg`](super::tcp_seg) (the pipeline test holds them to it), but the common
    /// packet (see [`PlainV4::parse`]) is packed straight from its fields, and any other
    /// packet is parsed out of line.
    #[inline(always)]
    pub(super) fn push(&mut self, rec: &Record<'_>) {
        match link::ip_payload(rec.linktype, rec.data) {
            Some(ip) => match PlainV4::parse(ip) {
                Some(p) => self.segs.push_plain(rec.ts_ns, &p),
                None => self.push_general(rec.ts_ns, ip),
            },
            None => self.others += 1,
        }
    }

    /// [`Batch::push`] of an IP packet that is not the common packet.
    #[inline(never)]
    fn push_general(&mut self, ts_ns: u64, ip: &[u8]) {
        match general_seg(ip) {
            Some(seg) => self.segs.push(ts_ns, &seg),
            None => self.others += 1,
        }
    }
}

/// Records per batch. Each hand-over between the threads can wake the other one, which is
/// dear in a virtual machine (an interrupt to the other core). Measured with
/// bench/pcap/run.sh's capture on 2 cores, 80-byte entries: 16,384 took about 6 % less CPU
/// and 10 % less wall time than 1,024 or 4,096, 65,536 was slower again. With 40-byte
/// entries and the tracker prefetching (it now waits for the reader): 65,536 (2.6 MB) took
/// about 4 % less CPU and 6 % less wall time than 16,384 in three sets of 9-15 interleaved
/// runs, 32,768 about the same wall, 131,072 no better and 262,144 worse.
const BATCH: usize = 64 * 1024;
/// Batches in flight between the threads: two keep both busy (eight measured the same, with
/// more memory).
const QUEUED: usize = 2;

/// Send the full `batch` to the tracker and start an empty one (a returned batch when there
/// is one); `true` when the tracker is gone. Out of line and cold: it runs once per batch, so
/// the per-record path stays short.
#[cold]
#[inline(never)]
fn hand_over(
    batch: &mut Batch,
    tx: &mpsc::SyncSender<Batch>,
    back_rx: &mpsc::Receiver<Batch>,
    records: usize,
) -> bool {
    let next = back_rx.try_recv().unwrap_or_else(|_| Batch::new(records));
    tx.send(std::mem::replace(batch, next)).is_err()
}

/// Feed every record of `src` to `analyzer` and hand it back with what reading saw.
/// `progress` gets the bytes consumed so far, about every chunk read.
pub fn analyse_reader<R: Read + Send>(
    src: R,
    analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
) -> (Analyzer, ReadOutcome) {
    analyse_reader_in_batches(src, analyzer, progress, BATCH)
}

/// [`analyse_reader`] with batches of `records` records instead of 65,536 (tests and the
/// fuzz target use small ones to cross many batch boundaries).
pub fn analyse_reader_in_batches<R: Read + Send>(
    src: R,
    mut analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
    records: usize,
) -> (Analyzer, ReadOutcome) {
    let records = records.max(1);
    let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUED);
    let (back_tx, back_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut reader = ChunkReader::new(src);
            let mut batch = Batch::new(records);
            let mut tracker_gone = false;
            let mut reported = 0u64;
            let error = loop {
                let more = reader.for_each_record(|rec| {
                    batch.push(rec);
                    if batch.records() >= records && !tracker_gone {
                        tracker_gone = hand_over(&mut batch, &tx, &back_rx, records);
                    }
                });
                // A pcapng file comes back here after every record: report about every chunk.
                let at = reader.position();
                if at >= reported + CHUNK as u64 {
                    progress(at);
                    reported = at;
                }
                match more {
                    Ok(true) if !tracker_gone => {}
                    Ok(_) => break None,
                    Err(e) => break Some(e),
                }
            };
            if batch.records() > 0 {
                // The tracker only stops when this side is done.
                let _ = tx.send(batch);
            }
            progress(reader.position());
            ReadOutcome::of(&reader, error)
        });
        for mut batch in rx {
            analyzer.account_batch(&batch.segs, batch.others);
            batch.segs.clear();
            batch.others = 0;
            // The reader may be gone already; then the batch is simply dropped.
            let _ = back_tx.send(batch);
        }
        let outcome = reader.join().unwrap_or_else(|_| ReadOutcome {
            format: "unknown",
            notes: vec!["the reader thread panicked; the analysis covers what it read".into()],
            ..ReadOutcome::default()
        });
        (analyzer, outcome)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::analyse_bytes;
    use crate::pcap::flow::Config;
    use crate::pcap::testkit::{lab_capture, mixed_capture};

    fn cfg() -> Config {
        Config {
            min_idle_ns: 1_000_000_000,
            ..Config::default()
        }
    }

    /// The two-thread analysis of `data` in batches of `records`.
    fn pipelined(data: &[u8], records: usize) -> crate::pcap::FileAnalysis {
        let (analyzer, outcome) =
            analyse_reader_in_batches(data, Analyzer::new(cfg()), &|_| {}, records);
        analyzer.finish(&[&outcome])
    }

    #[test]
    fn any_batch_size_gives_the_one_thread_analysis() {
        for data in [lab_capture(), mixed_capture()] {
            let (one_thread, _) = analyse_bytes(&data, cfg());
            assert!(
                !one_thread.analysis.events.is_empty(),
                "the capture has events to agree on"
            );
            for records in [1, 2, 3, 5, 8, 13, 64, BATCH] {
                assert_eq!(
                    pipelined(&data, records),
                    one_thread,
                    "batches of {records}"
                );
            }
        }
    }
}
