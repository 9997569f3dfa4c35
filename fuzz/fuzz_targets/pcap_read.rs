//! Fuzz the pcap / pcapng decoder and the whole analysis pipeline on arbitrary bytes.
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run pcap_read -- -max_total_time=30`
//! Checks: no panic; the in-memory iterator and the chunked decoder (as the binary drives it)
//! see the same records and fail at the same offset.
#![no_main]

use idlereset_core::pcap::reader::{Decoder, Records, Step};
use idlereset_core::pcap::{analyse_bytes, flow::Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole: Vec<_> = Records::new(data).collect();

    // Chunked decoding with a chunk size taken from the input.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut dec = Decoder::new();
    let (mut start, mut end) = (0usize, chunk.min(data.len()));
    let mut chunked = Vec::new();
    loop {
        match dec.decode(&data[start..end], start as u64) {
            Ok(Step::Record { record, used }) => {
                chunked.push(Ok(record));
                start += used;
            }
            Ok(Step::Skip { used }) => start += used,
            Ok(Step::NeedMore { need }) => {
                if end == data.len() {
                    if start < end || dec.format() == "unknown" {
                        chunked.push(Err(start as u64));
                    }
                    break;
                }
                end = (start + need.max(chunk)).min(data.len());
            }
            Err(e) => {
                chunked.push(Err(e.offset()));
                break;
            }
        }
    }
    assert_eq!(whole.len(), chunked.len());
    for (a, b) in whole.iter().zip(&chunked) {
        match (a, b) {
            (Ok(x), Ok(y)) => assert_eq!(x, y),
            (Err(x), Err(off)) => assert_eq!(x.offset(), *off),
            _ => panic!("iterator and chunked decoder disagree: {a:?} vs {b:?}"),
        }
    }

    let (_analysis, _err) = analyse_bytes(data, Config::default());
});
