//! Fuzz the pcap / pcapng reader and the whole analysis pipeline on arbitrary bytes.
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run pcap_read -- -max_total_time=30`
//! Checks: no panic, no endless loop; core's `ChunkReader` (the one reader the binary uses)
//! gives the same records, damage and notes whatever its chunk size and whether read record
//! by record or in runs (`for_each_record`, the pipeline's fast way); it agrees with the
//! strict in-memory iterator up to the first damage; damaged ranges lie inside the input;
//! the two-thread pipeline gives the same analysis as the one-thread path, in batches of 1 to
//! 16 records (the input's last byte picks the size) so that inputs cross batch boundaries;
//! reading in spans on two threads gives that analysis too, at spans of 1 to 256 bytes.
#![no_main]

use idlereset_core::pcap::chunks::ChunkReader;
use idlereset_core::pcap::pipeline::analyse_reader_in_batches;
use idlereset_core::pcap::reader::Records;
use idlereset_core::pcap::spans::analyse_at_in_spans;
use idlereset_core::pcap::{Analyzer, analyse_bytes, flow::Config};
use libfuzzer_sys::fuzz_target;

type Seen = (
    Vec<(u64, u64, Vec<u8>)>,
    Vec<(u64, u64)>,
    Vec<String>,
    (u64, Option<u64>),
    bool,
);

fn read(data: &[u8], chunk: usize, in_runs: bool) -> Seen {
    let mut r = ChunkReader::with_chunk(data, chunk);
    let mut recs = Vec::new();
    let failed = loop {
        let mut keep = |rec: &idlereset_core::pcap::reader::Record<'_>| {
            recs.push((rec.offset, rec.ts_ns, rec.data.to_vec()))
        };
        let more = if in_runs {
            r.for_each_record(&mut keep)
        } else {
            r.next_record().map(|rec| rec.map(|rec| keep(&rec)).is_some())
        };
        match more {
            Ok(true) => {}
            Ok(false) => break false,
            Err(_) => break true,
        }
        assert!(recs.len() <= data.len(), "more records than bytes: a loop");
    };
    let damage = r.damage().iter().map(|d| (d.offset, d.skipped)).collect();
    let counts = (r.ignored(), r.records_before_damage());
    (recs, damage, r.notes(), counts, failed)
}

fuzz_target!(|data: &[u8]| {
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let small = read(data, chunk, false);
    let big = read(data, 1 << 20, false);
    assert_eq!(small, big, "chunk size {chunk} changed what was read");
    assert_eq!(read(data, chunk, true), small, "reading in runs changed what was read");

    let (recs, damage, _, _, _) = &small;
    for (off, len) in damage {
        assert!(off + len <= data.len() as u64);
    }
    for w in recs.windows(2) {
        assert!(w[0].0 < w[1].0, "offsets go backwards");
    }
    // Before the first damage, every record is one the strict iterator reads too.
    let first_damage = damage.first().map_or(u64::MAX, |d| d.0);
    let strict: Vec<_> = Records::new(data)
        .map_while(Result::ok)
        .map(|r| (r.offset, r.ts_ns, r.data.to_vec()))
        .collect();
    for rec in recs.iter().filter(|r| r.0 < first_damage) {
        assert!(strict.contains(rec), "record at {} not in the strict read", rec.0);
    }

    let (one_thread, _) = analyse_bytes(data, Config::default());
    let records = 1 + usize::from(data.last().copied().unwrap_or(0) % 16);
    let (analyzer, outcome) =
        analyse_reader_in_batches(data, Analyzer::new(Config::default()), &|_| {}, records);
    assert_eq!(analyzer.finish(&[&outcome]), one_thread, "the pipeline disagrees");

    // Read in spans on two threads (1 to 256 bytes, so that inputs cross many), as if the
    // file had the length the third byte from the end picks (a file that grew or shrank
    // since its length was taken). The bytes come from the end: the first ones are the
    // file header's, the same for every input that reaches this path.
    let from_end = |n: usize| data.len().checked_sub(n).map_or(0, |i| data[i]);
    let span = 1 + u64::from(from_end(2));
    let len = match from_end(3) % 4 {
        0 => data.len() / 2,
        1 => data.len() * 2,
        _ => data.len(),
    } as u64;
    let (analyzer, outcome) =
        analyse_at_in_spans(data, len, Analyzer::new(Config::default()), &|_| {}, span);
    assert_eq!(analyzer.finish(&[&outcome]), one_thread, "reading in spans disagrees");
});
