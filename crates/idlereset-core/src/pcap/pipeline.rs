//! Reading and flow tracking of one capture on two threads.
//!
//! One thread reads chunks, decodes records and parses their IP/TCP headers (stateless), the
//! other tracks flows (stateful, the larger share of the work). Batches of parsed segments go
//! between them through a bounded channel and come back empty for reuse, so nothing is
//! allocated per packet and memory stays at a few batches. With a second core free this hides
//! the read and parse cost behind flow tracking (bench/pcap/run.sh measures it).
//!
//! Threads only, no I/O of its own: the caller hands in any `Read`.

use std::io::Read;
use std::sync::mpsc;

use super::chunks::ChunkReader;
use super::packet::TcpSegment;
use super::{Analyzer, ReadOutcome, tcp_segment};

type Batch = Vec<(u64, Option<TcpSegment>)>;
/// Records per batch.
const BATCH: usize = 4 * 1024;
/// Batches in flight between the threads.
const QUEUED: usize = 8;

/// Feed every record of `src` to `analyzer` and hand it back with what reading saw.
/// `progress` gets the bytes consumed so far, about every batch.
pub fn analyse_reader<R: Read + Send>(
    src: R,
    mut analyzer: Analyzer,
    progress: &(dyn Fn(u64) + Sync),
) -> (Analyzer, ReadOutcome) {
    let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUED);
    let (back_tx, back_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut reader = ChunkReader::new(src);
            let mut batch: Batch = Vec::with_capacity(BATCH);
            let error = loop {
                match reader.next_record() {
                    Ok(Some(rec)) => batch.push((rec.ts_ns, tcp_segment(&rec))),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
                if batch.len() == BATCH {
                    let next = back_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                    if tx.send(std::mem::replace(&mut batch, next)).is_err() {
                        break None;
                    }
                    progress(reader.position());
                }
            };
            if !batch.is_empty() {
                // The tracker only stops when this side is done.
                let _ = tx.send(batch);
            }
            progress(reader.position());
            ReadOutcome::of(&reader, error)
        });
        for mut batch in rx {
            for (ts, seg) in &batch {
                analyzer.account(*ts, seg.as_ref());
            }
            batch.clear();
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
