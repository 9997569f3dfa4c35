//! Fuzz the pcap / pcapng reader and the whole analysis pipeline on arbitrary bytes.
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run pcap_read -- -max_total_time=30`
//! Checks: no panic, no endless loop; core's `ChunkReader` (the one reader the binary uses)
//! gives the same records, damage and notes whatever its chunk size; it agrees with the
//! strict in-memory iterator up to the first damage; damaged ranges lie inside the input.
#![no_main]

use idlereset_core::pcap::chunks::ChunkReader;
use idlereset_core::pcap::reader::Records;
use idlereset_core::pcap::{analyse_bytes, flow::Config};
use libfuzzer_sys::fuzz_target;

type Seen = (Vec<(u64, u64, Vec<u8>)>, Vec<(u64, u64)>, Vec<String>, bool);

fn read(data: &[u8], chunk: usize) -> Seen {
    let mut r = ChunkReader::with_chunk(data, chunk);
    let mut recs = Vec::new();
    let failed = loop {
        match r.next_record() {
            Ok(Some(rec)) => recs.push((rec.offset, rec.ts_ns, rec.data.to_vec())),
            Ok(None) => break false,
            Err(_) => break true,
        }
        assert!(recs.len() <= data.len(), "more records than bytes: a loop");
    };
    let damage = r.damage().iter().map(|d| (d.offset, d.skipped)).collect();
    (recs, damage, r.notes(), failed)
}

fuzz_target!(|data: &[u8]| {
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let small = read(data, chunk);
    let big = read(data, 1 << 20);
    assert_eq!(small, big, "chunk size {chunk} changed what was read");

    let (recs, damage, _, _) = &small;
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

    let _ = analyse_bytes(data, Config::default());
});
