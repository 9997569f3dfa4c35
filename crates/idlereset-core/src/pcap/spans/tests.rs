//! Reading in spans on two threads gives exactly the one-thread analysis: on intact, damaged
//! and cut captures, with a length other than the file's, at many span sizes, and when a span's guess of its
//! first record is wrong.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;
use crate::pcap::flow::Config;
use crate::pcap::reader::Records;
use crate::pcap::testkit::{Conv, V4_A, V4_B, lab_capture, mixed_capture, mutated_capture};
use crate::pcap::writer::LINKTYPE_ETHERNET;
use crate::pcap::{FileAnalysis, analyse_bytes};

fn cfg() -> Config {
    Config {
        min_idle_ns: 1_000_000_000,
        ..Config::default()
    }
}

/// The analysis of `data` read in spans of `span` bytes as if the file were `len` bytes
/// long, the bytes read, and how the spans were used.
fn in_spans(data: &[u8], len: u64, span: u64) -> (FileAnalysis, u64, bool, Tally) {
    let (analyzer, outcome, tally) = run(data, len, Analyzer::new(cfg()), &|_| {}, span);
    let bytes = outcome.bytes;
    let failed = outcome.error.is_some();
    (analyzer.finish(&[&outcome]), bytes, failed, tally)
}

/// Assert that reading `data` in spans of `span` bytes gives the one-thread analysis, and
/// return how the spans were used.
#[track_caller]
fn assert_same(data: &[u8], span: u64, what: &str) -> Tally {
    let (one, read) = analyse_bytes(data, cfg());
    let (two, bytes, failed, tally) = in_spans(data, data.len() as u64, span);
    assert_eq!(two, one, "{what}: spans of {span}");
    assert_eq!(bytes, read.bytes, "{what}: bytes read, spans of {span}");
    assert_eq!(failed, read.error.is_some(), "{what}: spans of {span}");
    tally
}

/// How many spans after the first have a record starting in them, not counting the first
/// record (the file's reader reads that one with the file header, to know its time).
fn spans_with_records(data: &[u8], span: u64) -> u64 {
    let mut spans: Vec<u64> = Records::new(data)
        .skip(1)
        .map(|r| r.unwrap().offset / span)
        .filter(|&k| k > 0)
        .collect();
    spans.dedup();
    spans.len() as u64
}

const SPANS: [u64; 12] = [1, 2, 3, 7, 24, 25, 64, 333, 1000, 4096, 65_536, SPAN];

#[test]
fn any_span_size_gives_the_one_thread_analysis() {
    for (name, data) in [("lab", lab_capture()), ("mixed", mixed_capture())] {
        let (one, _) = analyse_bytes(&data, cfg());
        assert!(
            !one.analysis.events.is_empty(),
            "{name}: events to agree on"
        );
        for span in SPANS {
            let tally = assert_same(&data, span, name);
            // Every later span in which a record starts is decoded on its own and used.
            let starts = spans_with_records(&data, span);
            assert_eq!(
                (tally.guessed, tally.missed),
                (starts, 0),
                "{name}: spans of {span}"
            );
        }
    }
}

#[test]
fn microsecond_and_big_endian_files_are_read_in_spans_too() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    for _ in 0..50 {
        conv.exchange();
    }
    conv.wait(30.0).c_data(10).forged_rst_from_server(50, 0);
    let micro = conv.pcap(LINKTYPE_ETHERNET, false);
    let big = big_endian(&micro);
    assert_eq!(analyse_bytes(&big, cfg()).0, analyse_bytes(&micro, cfg()).0);
    for data in [micro, big] {
        for span in [5, 64, 500] {
            let tally = assert_same(&data, span, "micro/big");
            assert!(tally.guessed > 0, "spans of {span}: {tally:?}");
        }
    }
}

/// A little-endian classic pcap file rewritten big-endian.
fn big_endian(data: &[u8]) -> Vec<u8> {
    let swap = |b: &mut [u8]| {
        for w in b.chunks_exact_mut(4) {
            w.reverse();
        }
    };
    let mut out = data.to_vec();
    swap(&mut out[0..4]);
    out[4..6].reverse();
    out[6..8].reverse();
    swap(&mut out[8..24]);
    for r in Records::new(data) {
        let at = r.unwrap().offset as usize;
        swap(&mut out[at..at + 16]);
    }
    out
}

#[test]
fn damaged_captures_read_in_spans_give_the_one_thread_analysis() {
    let data = lab_capture();
    let offsets: Vec<usize> = Records::new(&data)
        .map(|r| r.unwrap().offset as usize)
        .collect();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for i in (1..offsets.len() - 1).step_by(9) {
        let mut bad = data.clone();
        bad[offsets[i]..offsets[i + 1]].fill(0xa5);
        cases.push((format!("garbage over record {i}"), bad.clone()));
        bad[offsets[i]..offsets[i + 1]].fill(0);
        cases.push((format!("zeros over record {i}"), bad));
        // Seconds field +68 years: one ignored record.
        let mut bad = data.clone();
        bad[offsets[i] + 3] ^= 0x80;
        cases.push((format!("timestamp of record {i}"), bad));
    }
    for cut in [data.len() / 3, data.len() / 2 + 7, data.len() - 5] {
        cases.push((format!("cut at {cut}"), data[..cut].to_vec()));
    }
    let mut tail = data.clone();
    tail.resize(data.len() + 5000, 0);
    cases.push(("zero tail".into(), tail));
    let mut jumped = Conv::new(V4_A, V4_B);
    jumped.handshake().exchange().wait(40.0 * 86_400.0);
    for _ in 0..20 {
        jumped.exchange();
    }
    cases.push(("clock jump".into(), jumped.pcap(LINKTYPE_ETHERNET, true)));
    for (what, bad) in &cases {
        let (one, _) = analyse_bytes(bad, cfg());
        assert!(
            !one.damage.is_empty() || !one.notes.is_empty(),
            "{what}: the case must be damaged"
        );
        for span in [7, 64, 500, 4096] {
            assert_same(bad, span, what);
        }
    }
}

#[test]
fn a_span_that_starts_right_after_a_clock_jump_is_left_to_the_reader() {
    // The span's records agree with each other, but its first is 40 days after the reader's
    // last: the reader must see it to apply its clock-jump rule (ignore, or follow after
    // three records that agree).
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    for _ in 0..10 {
        conv.exchange();
    }
    conv.wait(40.0 * 86_400.0);
    for _ in 0..20 {
        conv.exchange();
    }
    let data = conv.pcap(LINKTYPE_ETHERNET, true);
    let recs: Vec<_> = Records::new(&data).map(|r| r.unwrap()).collect();
    let after = recs
        .windows(2)
        .find(|w| w[1].ts_ns - w[0].ts_ns > MAX_JUMP_NS)
        .map(|w| w[1].offset)
        .unwrap();
    let (one, _) = analyse_bytes(&data, cfg());
    assert!(
        one.notes.iter().any(|n| n.contains("clock jumps")),
        "{:?}",
        one.notes
    );
    // Spans that start exactly at the first record after the jump.
    for span in [after, after / 2, after / 3] {
        if after % span == 0 {
            assert_same(&data, span, "a span starts at the jump");
        }
    }
}

#[test]
fn a_wrong_guess_of_a_spans_first_record_is_read_again() {
    // One packet's payload is a chain of record lookalikes (a pcap file sent over TCP): a
    // span that starts inside it guesses one of them.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().c_data(1400).s_ack().exchange();
    let mut data = conv.pcap(LINKTYPE_ETHERNET, true);
    let rec = Records::new(&data)
        .map(|r| r.unwrap())
        .find(|r| r.data.len() > 1400)
        .map(|r| {
            (
                r.offset as usize + 16 + 54,
                r.offset as usize + 16 + r.data.len(),
            )
        })
        .unwrap();
    let mut fake = Vec::new();
    while fake.len() + 24 <= rec.1 - rec.0 {
        fake.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        fake.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0]);
        fake.extend_from_slice(&[0x11; 8]);
    }
    data[rec.0..rec.0 + fake.len()].copy_from_slice(&fake);
    let mut missed = 0;
    for span in [24, 100, 256, 1000] {
        missed += assert_same(&data, span, "lookalikes").missed;
    }
    assert!(
        missed > 0,
        "no span guessed a lookalike: the test proves nothing"
    );
}

#[test]
fn a_length_other_than_the_files_still_reads_the_file_to_its_end() {
    let data = lab_capture();
    let (one, read) = analyse_bytes(&data, cfg());
    for len in [0, 24, data.len() as u64 / 2, data.len() as u64 * 2] {
        for span in [64, 4096] {
            let (two, bytes, _, _) = in_spans(&data, len, span);
            assert_eq!(two, one, "length {len}, spans of {span}");
            assert_eq!(bytes, read.bytes, "length {len}, spans of {span}");
        }
    }
}

#[test]
fn other_formats_and_unreadable_files_take_the_one_reader_way() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(30.0)
        .c_data(10)
        .forged_rst_from_server(50, 0);
    let ng = conv.pcapng(LINKTYPE_ETHERNET);
    let tally = assert_same(&ng, 64, "pcapng");
    assert_eq!(tally.guessed + tally.missed, 0);
    for junk in [&b""[..], b"abc", b"not a capture file at all, sorry"] {
        let (one, read) = analyse_bytes(junk, cfg());
        let (two, _, failed, _) = in_spans(junk, junk.len() as u64, 8);
        assert_eq!(two, one);
        assert!(failed && read.error.is_some());
    }
}

#[test]
fn a_real_file_is_read_with_positioned_reads() {
    let data = lab_capture();
    let path = std::env::temp_dir().join(format!("idlereset-spans-{}.pcap", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let (analyzer, outcome, tally) = run(
        &file,
        data.len() as u64,
        Analyzer::new(cfg()),
        &|_| {},
        4096,
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(analyzer.finish(&[&outcome]), analyse_bytes(&data, cfg()).0);
    assert!(tally.guessed > 0, "{tally:?}");
}

/// A file whose reads fail from byte `fail_from` on (a disk error).
struct FailingAt<'a> {
    data: &'a [u8],
    fail_from: u64,
}

impl ReadAt for FailingAt<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset + buf.len() as u64 > self.fail_from {
            return Err(std::io::Error::other("injected read error"));
        }
        self.data.read_at(buf, offset)
    }
}

#[test]
fn a_read_error_stops_the_analysis_with_its_offset_and_no_hang() {
    let data = lab_capture();
    let (one, _) = analyse_bytes(&data, cfg());
    for fail_from in [100, data.len() as u64 / 2, data.len() as u64 - 10] {
        let src = FailingAt {
            data: &data,
            fail_from,
        };
        let (analyzer, outcome, _) =
            run(&src, data.len() as u64, Analyzer::new(cfg()), &|_| {}, 512);
        let Some(crate::pcap::chunks::ChunkError::Io { offset, .. }) = outcome.error else {
            panic!("failing from {fail_from}: {:?}", outcome.error);
        };
        assert!(
            offset <= fail_from,
            "error at {offset}, failing from {fail_from}"
        );
        let two = analyzer.finish(&[&outcome]);
        assert!(two.packets < one.packets, "failing from {fail_from}");
    }
}

/// The lab capture, but the helper thread's reads panic (once) and the test thread's reads
/// wait until that has happened, so that the helper surely reads something.
struct HelperPanics<'a> {
    data: &'a [u8],
    panicked: std::sync::atomic::AtomicBool,
}

impl ReadAt for HelperPanics<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        // Test threads are named after their test; the helper has no name.
        if std::thread::current().name().is_none() {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("injected: the helper thread dies");
            }
        } else {
            let start = std::time::Instant::now();
            while offset >= 4096
                && !self.panicked.load(Ordering::SeqCst)
                && start.elapsed() < std::time::Duration::from_secs(10)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        self.data.read_at(buf, offset)
    }
}

#[test]
fn a_helper_that_panics_costs_time_not_records() {
    let data = lab_capture();
    let src = HelperPanics {
        data: &data,
        panicked: std::sync::atomic::AtomicBool::new(false),
    };
    let (analyzer, outcome, _) = run(&src, data.len() as u64, Analyzer::new(cfg()), &|_| {}, 1024);
    assert!(
        src.panicked.load(std::sync::atomic::Ordering::SeqCst),
        "the helper never read: the test proves nothing"
    );
    assert!(outcome.error.is_none());
    assert_eq!(analyzer.finish(&[&outcome]), analyse_bytes(&data, cfg()).0);
}

#[test]
fn long_records_full_of_record_lookalikes_are_read_in_linear_time() {
    // snaplen 0xffffffff lets records be 16 MiB long; one 3 MiB record's payload repeats a
    // header claiming 2 MB records, so a span's search for its first record meets a
    // plausible long header every 16 bytes. Refilling for each of them would copy
    // terabytes.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange();
    let small = conv.pcap(LINKTYPE_ETHERNET, false);
    let mut data = small[..24].to_vec();
    data[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let recs: Vec<_> = Records::new(&small).map(|r| r.unwrap()).collect();
    let mut lookalike = Vec::new();
    lookalike.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    lookalike.extend_from_slice(&0u32.to_le_bytes());
    lookalike.extend_from_slice(&2_000_001u32.to_le_bytes());
    lookalike.extend_from_slice(&2_000_001u32.to_le_bytes());
    let big = 3 * 1024 * 1024;
    for (i, r) in recs.iter().enumerate() {
        let at = r.offset as usize;
        let mut rec = small[at..at + 16 + r.data.len()].to_vec();
        if i == 2 {
            rec[8..12].copy_from_slice(&((r.data.len() + big) as u32).to_le_bytes());
            rec[12..16].copy_from_slice(&((r.data.len() + big) as u32).to_le_bytes());
            rec.extend(lookalike.iter().cycle().take(big));
        }
        data.extend_from_slice(&rec);
    }
    let (one, _) = analyse_bytes(&data, cfg());
    assert_eq!(one.packets, recs.len() as u64);
    for span in [64 * 1024, 1024 * 1024] {
        assert_same(&data, span, "long lookalike record");
    }
    // A span inside the long record, decoded on its own: a few reads, not one per lookalike.
    let layout = pcap_layout(&data[..]).unwrap();
    let src = CountingReads {
        data: &data,
        reads: std::sync::atomic::AtomicU64::new(0),
    };
    let mut buf = Vec::new();
    for k in [1, 5, 20] {
        src.reads.store(0, std::sync::atomic::Ordering::SeqCst);
        let file = SpanSource {
            src: &src,
            layout,
            span: 64 * 1024,
        };
        decode_span(&file, k, &mut buf, Batch::new(16));
        let reads = src.reads.load(std::sync::atomic::Ordering::SeqCst);
        assert!(reads <= 32, "span {k}: {reads} reads");
    }
}

/// Bytes that count the reads made of them.
struct CountingReads<'a> {
    data: &'a [u8],
    reads: std::sync::atomic::AtomicU64,
}

impl ReadAt for CountingReads<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.data.read_at(buf, offset)
    }
}

#[test]
fn a_pipe_is_read_from_start_to_end() {
    let data = lab_capture();
    let (rx, mut tx) = std::io::pipe().unwrap();
    let file = std::fs::File::from(std::os::fd::OwnedFd::from(rx));
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || std::io::Write::write_all(&mut tx, &data).unwrap())
    };
    let (analyzer, outcome) = analyse_file(&file, Analyzer::new(cfg()), &|_| {});
    writer.join().unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(analyzer.finish(&[&outcome]), analyse_bytes(&data, cfg()).0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn spans_agree_with_one_thread_on_mutated_captures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..24),
        cut in any::<usize>(),
        ng in prop_oneof![4 => Just(false), 1 => Just(true)],
        span in 1u64..400,
        zero_tail in prop_oneof![Just(0usize), 1usize..80],
    ) {
        let mut data = mutated_capture(&flips, cut, ng);
        data.resize(data.len() + zero_tail, 0);
        let (one, read) = analyse_bytes(&data, cfg());
        let (two, bytes, failed, _) = in_spans(&data, data.len() as u64, span);
        prop_assert_eq!(two, one);
        prop_assert_eq!(bytes, read.bytes);
        prop_assert_eq!(failed, read.error.is_some());
    }
}
