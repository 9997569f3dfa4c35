//! The chunk reader on damaged captures: lab captures cut at many offsets and with records
//! overwritten by garbage, and property tests that it never panics and never loops.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::pcap::events::Kind;
use crate::pcap::flow::Config;
use crate::pcap::reader::Records;
use crate::pcap::testkit::{Conv, V4_A, V4_B, lab_capture, mutated_capture};
use crate::pcap::writer::LINKTYPE_ETHERNET;
use crate::pcap::{FileAnalysis, analyse_bytes, tcp_segment};

fn cfg() -> Config {
    Config {
        min_idle_ns: 1_000_000_000,
        ..Config::default()
    }
}

/// For each flow (`client server`, as events name them), the byte range its records span.
fn flow_ranges(data: &[u8]) -> HashMap<(String, String), (u64, u64)> {
    let mut out: HashMap<(String, String), (u64, u64)> = HashMap::new();
    let mut rs = Records::new(data);
    for r in rs.by_ref() {
        let r = r.unwrap();
        let Some(seg) = tcp_segment(&r) else { continue };
        let a = std::net::SocketAddr::new(seg.src, seg.sport).to_string();
        let b = std::net::SocketAddr::new(seg.dst, seg.dport).to_string();
        let end = r.offset + 16 + r.data.len() as u64;
        for key in [(a.clone(), b.clone()), (b, a)] {
            let e = out.entry(key).or_insert((r.offset, end));
            e.0 = e.0.min(r.offset);
            e.1 = e.1.max(end);
        }
    }
    out
}

type EventKey = (Kind, String, String);

fn events(fa: &FileAnalysis) -> Vec<EventKey> {
    fa.analysis
        .events
        .iter()
        .map(|e| (e.kind, e.client.clone(), e.server.clone()))
        .collect()
}

/// Every event of the intact capture whose flow lies wholly before `limit` and outside the
/// damaged ranges must still be found.
fn assert_outside_events_kept(
    intact: &[EventKey],
    ranges: &HashMap<(String, String), (u64, u64)>,
    fa: &FileAnalysis,
    limit: u64,
    what: &str,
) {
    let got = events(fa);
    for ev in intact {
        let (lo, hi) = ranges[&(ev.1.clone(), ev.2.clone())];
        let hit = fa
            .damage
            .iter()
            .any(|d| d.offset < hi && d.offset + d.skipped > lo);
        if hi <= limit && !hit {
            assert!(
                got.contains(ev),
                "{what}: lost {ev:?}; damage {:?}",
                fa.damage
            );
        }
    }
}

#[test]
fn lab_capture_cut_at_many_offsets_keeps_every_event_before_the_cut() {
    let data = lab_capture();
    let (whole, read) = analyse_bytes(&data, cfg());
    assert!(read.damage.is_empty() && read.notes.is_empty());
    let intact = events(&whole);
    assert_eq!(intact.len(), 6, "{intact:?}");
    let ranges = flow_ranges(&data);
    for cut in (25..data.len()).step_by(37) {
        let (fa, read) = analyse_bytes(&data[..cut], cfg());
        assert!(read.error.is_none(), "cut {cut}: {:?}", read.error);
        assert_outside_events_kept(&intact, &ranges, &fa, cut as u64, &format!("cut {cut}"));
        for d in &fa.damage {
            assert!(d.offset + d.skipped <= cut as u64);
        }
    }
}

#[test]
fn lab_capture_with_records_overwritten_by_garbage_reports_the_ranges() {
    let data = lab_capture();
    let (whole, _) = analyse_bytes(&data, cfg());
    let intact = events(&whole);
    let ranges = flow_ranges(&data);
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in (1..offsets.len() - 1).step_by(5) {
        let mut bad = data.clone();
        let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
        for b in &mut bad[from..to] {
            *b = rand() as u8;
        }
        let (fa, read) = analyse_bytes(&bad, cfg());
        assert!(read.error.is_none());
        let what = format!("record {i} at {from}..{to}");
        assert_outside_events_kept(&intact, &ranges, &fa, u64::MAX, &what);
        // The garbage is reported as a damaged range starting at or before it, and reading
        // picked up again after it.
        let d = fa
            .damage
            .first()
            .unwrap_or_else(|| panic!("{what}: no damage"));
        assert_ne!(d.reason, ZERO_FILLED, "{what}: garbage is not zeros");
        assert!(
            d.offset <= to as u64 && d.offset + d.skipped >= to as u64 - 16,
            "{what}: {d:?}"
        );
        assert!(
            fa.packets as usize >= offsets.len() - 8,
            "{what}: {}",
            fa.packets
        );
    }
}

#[test]
fn a_zero_filled_tail_is_a_note_not_packets_or_damage() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(900.0)
        .c_data(10)
        .forged_rst_from_server(64, 0);
    for (name, data) in [
        ("pcap", lab_capture()),
        ("pcapng", conv.pcapng(LINKTYPE_ETHERNET)),
    ] {
        let (intact, _) = analyse_bytes(&data, cfg());
        for zeros in [1, 4, 15, 16, 17, 64, 4096, 100_000] {
            let mut padded = data.clone();
            padded.resize(data.len() + zeros, 0);
            let (fa, read) = analyse_bytes(&padded, cfg());
            let what = format!("{name} + {zeros} zero bytes");
            assert!(read.error.is_none(), "{what}: {:?}", read.error);
            assert!(fa.damage.is_empty(), "{what}: {:?}", fa.damage);
            assert_eq!(fa.packets, intact.packets, "{what}");
            assert_eq!(fa.analysis, intact.analysis, "{what}");
            assert!(!fa.verdict_unsafe, "{what}");
            let note = format!(
                "byte offset {}: the file ends in {zeros} zero bytes",
                data.len()
            );
            assert!(
                fa.notes.len() == 1 && fa.notes[0].starts_with(&note),
                "{what}: {:?}",
                fa.notes
            );
        }
    }
}

#[test]
fn one_byte_that_is_not_zero_makes_a_zero_tail_damage() {
    let data = lab_capture();
    let (intact, _) = analyse_bytes(&data, cfg());
    // From byte 16 on: a non-zero byte in the first 16 makes a (bogus) record, ignored for its
    // time, and the zeros after it are a tail.
    for at in [16, 17, 31, 2_000, 4_095] {
        let mut padded = data.clone();
        padded.resize(data.len() + 4_096, 0);
        padded[data.len() + at] = 1;
        for chunk in [1, 3, 16, 999, CHUNK] {
            let log = read_log(&padded, chunk, true);
            let what = format!("a 1 at {at} of the tail, chunk {chunk}");
            assert_eq!(log.0.len() as u64, intact.packets, "{what}");
            assert!(
                log.2.iter().all(|n| !n.contains("zero bytes")),
                "{what}: {:?}",
                log.2
            );
            assert_eq!(log.1.len(), 1, "{what}: {:?}", log.1);
            assert_eq!(log.1[0].offset, data.len() as u64, "{what}");
            assert_eq!(log.1[0].skipped, 4_096, "{what}");
            assert_ne!(log.1[0].reason, ZERO_FILLED, "{what}");
        }
    }
}

#[test]
fn zeroed_records_in_the_middle_are_one_damaged_range_of_zeros() {
    let data = lab_capture();
    let (whole, _) = analyse_bytes(&data, cfg());
    let intact = events(&whole);
    let ranges = flow_ranges(&data);
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    for i in (1..offsets.len() - 4).step_by(7) {
        let (from, to) = (offsets[i] as usize, offsets[i + 3] as usize);
        let mut bad = data.clone();
        bad[from..to].fill(0);
        let what = format!("records {i}..{} zeroed at {from}..{to}", i + 3);
        // The same range whatever the reads' size (the scan crosses buffer refills).
        for chunk in [1, 7, 999] {
            let log = read_log(&bad, chunk, true);
            let ranges: Vec<_> = log.1.iter().map(|d| (d.offset, d.skipped)).collect();
            assert_eq!(
                ranges,
                vec![(from as u64, (to - from) as u64)],
                "{what}, chunk {chunk}"
            );
            assert_eq!(log.1[0].reason, ZERO_FILLED, "{what}, chunk {chunk}");
        }
        let (fa, read) = analyse_bytes(&bad, cfg());
        assert!(read.error.is_none(), "{what}");
        assert_eq!(
            fa.damage
                .iter()
                .map(|d| (d.offset, d.skipped, d.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![(from as u64, (to - from) as u64, ZERO_FILLED)],
            "{what}"
        );
        assert_eq!(fa.packets as usize, offsets.len() - 3, "{what}");
        assert_outside_events_kept(&intact, &ranges, &fa, u64::MAX, &what);
    }
}

#[test]
fn a_record_whose_header_starts_with_zeros_ends_a_run_of_zeros_exactly() {
    // A device without a clock writes 1970 times: a record header that starts with eight
    // zero bytes, right after a zeroed block. The scan skips zero runs in strides; it must
    // still stop exactly at that record, at any read size.
    // A 256-byte frame: the header's length field starts with a zero byte too, so 9 bytes of
    // the header are zero.
    for (zeros, frame_len) in [1usize, 15, 16, 17, 100, 4096, 100_003]
        .into_iter()
        .flat_map(|z| [(z, 0), (z, 256)])
    {
        let mut w =
            crate::pcap::writer::PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 65_535, false)
                .unwrap();
        let mut frame = crate::pcap::testkit::frame(
            LINKTYPE_ETHERNET,
            &crate::pcap::testkit::Pkt::new(V4_A, 41000, V4_B, 5432).ip(),
        );
        if frame_len > 0 {
            frame.resize(frame_len, 0xee);
        }
        w.write_packet(
            std::time::Duration::from_secs(0),
            &frame,
            frame.len() as u32,
        )
        .unwrap();
        let one = w.into_inner();
        let mut data = one[..24].to_vec();
        data.resize(24 + zeros, 0);
        for _ in 0..3 {
            data.extend_from_slice(&one[24..]);
        }
        for chunk in [1, 7, 64, 999, 1 << 18] {
            let log = read_log(&data, chunk, true);
            let ranges: Vec<_> = log.1.iter().map(|d| (d.offset, d.skipped)).collect();
            let what = format!("{zeros} zeros, frame {}, chunk {chunk}", frame.len());
            assert_eq!(ranges, vec![(24, zeros as u64)], "{what}");
            assert_eq!(log.0.len(), 3, "{what}");
        }
    }
}

#[test]
fn resynchronising_through_long_record_lookalikes_reads_in_linear_time() {
    // snaplen 0xffffffff lets records be 16 MiB long. After one good record, garbage: a
    // corrupt header, then 64 KiB that repeat a header claiming 2 MB records; a good 2.2 MB
    // record follows. The
    // scan meets a plausible long header every 16 bytes: with room for only the bytes one
    // asks for, every one of them would refill the buffer.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake();
    let small = conv.pcap(LINKTYPE_ETHERNET, false);
    let recs: Vec<_> = Records::new(&small).map(|r| r.unwrap()).collect();
    let mut data = small[..24].to_vec();
    data[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let first = recs[0].offset as usize;
    data.extend_from_slice(&small[first..first + 16 + recs[0].data.len()]);
    let mut lookalike = Vec::new();
    for v in [1_700_000_000u32, 0, 2_000_001, 2_000_001] {
        lookalike.extend_from_slice(&v.to_le_bytes());
    }
    // A corrupt header (a length beyond any limit) starts the garbage, so the reader has to
    // resynchronise through the lookalikes.
    let garbage_at = data.len();
    data.extend_from_slice(&[0xff; 16]);
    data.extend(lookalike.iter().cycle().take(64 * 1024));
    let second = recs[1].offset as usize;
    let mut big = small[second..second + 16 + recs[1].data.len()].to_vec();
    let len = big.len() - 16 + 2_200_000;
    big[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    big[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    big.resize(16 + len, 0xee);
    data.extend_from_slice(&big);

    struct Counting<'a>(&'a [u8], usize);
    impl std::io::Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 += 1;
            self.0.read(buf)
        }
    }
    let mut r = ChunkReader::new(Counting(&data, 0));
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
    assert_eq!(
        r.damage()
            .iter()
            .map(|d| (d.offset, d.skipped))
            .collect::<Vec<_>>(),
        vec![(garbage_at as u64, 16 + 64 * 1024)]
    );
    assert!(r.src.1 <= 64, "{} reads", r.src.1);
}

#[test]
fn a_corrupt_timestamp_is_ignored_with_a_note_not_a_decades_long_idle() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().exchange().exchange();
    let mut data = conv.pcap(LINKTYPE_ETHERNET, false);
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    // Flip the top bits of the seconds field of the fifth record: +68 years.
    let at = offsets[4] as usize + 3;
    data[at] ^= 0x80;
    let (fa, read) = analyse_bytes(&data, Config::default());
    assert_eq!(fa.packets, offsets.len() as u64 - 1);
    assert!(
        fa.analysis.stats.max_idle_s < 1.0,
        "{}",
        fa.analysis.stats.max_idle_s
    );
    assert!(
        read.notes.iter().any(|n| n.contains("record ignored")),
        "{:?}",
        read.notes
    );

    // A clock that really jumps (several records agree) is followed.
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(40.0 * 86_400.0)
        .exchange()
        .exchange();
    let (fa, read) = analyse_bytes(&conv.pcap(LINKTYPE_ETHERNET, false), Config::default());
    assert!(
        read.notes.iter().any(|n| n.contains("following it")),
        "{:?}",
        read.notes
    );
    assert_eq!(fa.packets, 10);
}

#[test]
fn chunk_size_does_not_change_what_is_read_from_a_damaged_file() {
    let mut data = lab_capture();
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    let mid = offsets[offsets.len() / 2] as usize;
    data[mid..mid + 40].fill(0xff);
    let read_all = |chunk| {
        let mut r = ChunkReader::with_chunk(&data[..], chunk);
        let mut recs = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            recs.push(rec.offset);
        }
        (recs, r.damage().to_vec())
    };
    let reference = read_all(1 << 20);
    assert_eq!(reference.1.len(), 1);
    for chunk in [1, 3, 16, 100, 999] {
        assert_eq!(read_all(chunk), reference, "chunk {chunk}");
    }
}

#[test]
fn damaged_pcapng_block_is_skipped_by_its_repeated_length() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake()
        .exchange()
        .wait(900.0)
        .c_data(10)
        .forged_rst_from_server(64, 0);
    let mut data = conv.pcapng(LINKTYPE_ETHERNET);
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    // Corrupt the length of the third packet block.
    let at = offsets[2] as usize + 4;
    data[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
    let (fa, read) = analyse_bytes(&data, Config::default());
    assert_eq!(read.damage.len(), 1, "{:?}", read.damage);
    assert_eq!(read.damage[0].offset, offsets[2]);
    assert_eq!(read.damage[0].offset + read.damage[0].skipped, offsets[3]);
    assert_eq!(fa.packets, offsets.len() as u64 - 1);
    assert_eq!(fa.analysis.events.len(), 1);
}

#[test]
fn header_damage_is_an_error_and_io_errors_carry_the_offset() {
    let mut r = ChunkReader::new(&b"not a capture at all"[..]);
    assert!(matches!(r.next_record(), Err(ChunkError::Header(_))));
    assert!(matches!(r.next_record(), Ok(None)));

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let mut r = ChunkReader::new(Failing);
    let err = r.next_record().err().unwrap();
    assert!(matches!(err, ChunkError::Io { offset: 0, .. }), "{err}");
}

/// What a reader gave: the records (time, offset, bytes), the damage, the notes, how many
/// records it ignored and read before the first damage, and the error that stopped it.
type ReadLog = (
    Vec<(u64, u64, Vec<u8>)>,
    Vec<Damage>,
    Vec<String>,
    (u64, Option<u64>),
    Option<String>,
);

/// `data` read record by record with `next_record`, or in runs with `for_each_record`.
fn read_log(data: &[u8], chunk: usize, in_runs: bool) -> ReadLog {
    let mut r = ChunkReader::with_chunk(data, chunk);
    let mut recs = Vec::new();
    let mut keep = |rec: &Record<'_>| recs.push((rec.ts_ns, rec.offset, rec.data.to_vec()));
    let error = loop {
        let more = if in_runs {
            r.for_each_record(&mut keep)
        } else {
            r.next_record()
                .map(|rec| rec.map(|rec| keep(&rec)).is_some())
        };
        match more {
            Ok(true) => {}
            Ok(false) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    let counts = (r.ignored(), r.records_before_damage());
    (recs, r.damage().to_vec(), r.notes(), counts, error)
}

#[test]
fn records_in_runs_are_the_records_one_by_one() {
    let mut data = lab_capture();
    let offsets: Vec<u64> = Records::new(&data).map(|r| r.unwrap().offset).collect();
    let one_by_one = read_log(&data, CHUNK, false);
    assert_eq!(one_by_one.0.len(), offsets.len());
    assert_eq!(read_log(&data, CHUNK, true), one_by_one);
    // Damage, a corrupt timestamp and a cut last record, at several chunk sizes.
    let mid = offsets[offsets.len() / 2] as usize;
    data[mid..mid + 40].fill(0xff);
    data[offsets[10] as usize + 3] ^= 0x80;
    data.truncate(data.len() - 5);
    let one_by_one = read_log(&data, CHUNK, false);
    assert_eq!(one_by_one.1.len(), 1, "{:?}", one_by_one.1);
    // Record 10 ignored (its timestamp), the others before the damaged one read.
    assert_eq!(one_by_one.3, (1, Some(offsets.len() as u64 / 2 - 1)));
    for chunk in [1, 7, 100, 4096, CHUNK] {
        assert_eq!(read_log(&data, chunk, true), one_by_one, "chunk {chunk}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_never_loops_on_mutated_captures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..64),
        cut in any::<usize>(),
        ng in any::<bool>(),
        chunk in 1usize..300,
        zero_tail in prop_oneof![Just(0usize), 1usize..80],
    ) {
        let mut data = mutated_capture(&flips, cut, ng);
        data.resize(data.len() + zero_tail, 0);
        let mut r = ChunkReader::with_chunk(&data[..], chunk);
        let mut n = 0usize;
        let mut last = None;
        while let Ok(Some(rec)) = r.next_record() {
            prop_assert!(last.is_none_or(|l| rec.offset > l), "offsets must advance");
            last = Some(rec.offset);
            n += 1;
            prop_assert!(n <= data.len(), "more records than bytes");
        }
        for d in r.damage() {
            prop_assert!(d.offset + d.skipped <= data.len() as u64);
            let bytes = &data[d.offset as usize..(d.offset + d.skipped) as usize];
            prop_assert!(d.reason != ZERO_FILLED || bytes.iter().all(|&b| b == 0));
        }
        // A zero tail note only where the file really ends in that many zeros.
        for n in r.notes() {
            if let Some((at, zeros)) = n
                .strip_prefix("byte offset ")
                .and_then(|n| n.split_once(": the file ends in "))
            {
                let at: usize = at.parse().unwrap();
                let zeros: usize = zeros.split(' ').next().unwrap().parse().unwrap();
                prop_assert_eq!(at + zeros, data.len());
                prop_assert!(data[at..].iter().all(|&b| b == 0), "{}", n);
            }
        }
        let _ = analyse_bytes(&data, Config::default());
    }

    #[test]
    fn records_in_runs_match_one_by_one_on_mutated_captures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..32),
        cut in any::<usize>(),
        ng in any::<bool>(),
        chunk in 1usize..300,
    ) {
        let data = mutated_capture(&flips, cut, ng);
        prop_assert_eq!(read_log(&data, chunk, true), read_log(&data, chunk, false));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes_after_a_valid_header(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
    ) {
        let mut data = Conv::new(V4_A, V4_B).pcap(LINKTYPE_ETHERNET, false);
        data.extend_from_slice(&body);
        let mut r = ChunkReader::with_chunk(&data[..], chunk);
        let mut n = 0usize;
        while let Ok(Some(_)) = r.next_record() {
            n += 1;
            prop_assert!(n <= data.len());
        }
    }
}
