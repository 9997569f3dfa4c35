//! Byte-level tests of the pcap / pcapng decoder, and property tests that it never panics.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::pcap::testkit::{Conv, V4_A, V4_B};
use crate::pcap::writer::{LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter};

fn all(data: &[u8]) -> (Vec<Record<'_>>, Option<ReadError>) {
    let mut recs = Vec::new();
    let mut err = None;
    for r in Records::new(data) {
        match r {
            Ok(r) => recs.push(r),
            Err(e) => err = Some(e),
        }
    }
    (recs, err)
}

fn pcap_micro() -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW, 65535, false).unwrap();
    w.write_packet(Duration::new(10, 5_000), &[0x45, 1, 2], 3)
        .unwrap();
    w.write_packet(Duration::new(11, 0), &[0x60; 5], 60)
        .unwrap();
    w.into_inner()
}

/// Swap every 4-byte header field of a little-endian classic pcap to big endian.
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let mut out = le.to_vec();
    let swap4 = |b: &mut [u8], at: usize| b[at..at + 4].reverse();
    swap4(&mut out, 0);
    out[4..6].reverse();
    out[6..8].reverse();
    for at in [8, 12, 16, 20] {
        swap4(&mut out, at);
    }
    let mut pos = 24;
    while pos + 16 <= out.len() {
        let incl = u32::from_le_bytes(out[pos + 8..pos + 12].try_into().unwrap()) as usize;
        for at in [0, 4, 8, 12] {
            swap4(&mut out, pos + at);
        }
        pos += 16 + incl;
    }
    out
}

#[test]
fn classic_pcap_micro_nano_and_big_endian() {
    let le = pcap_micro();
    let (recs, err) = all(&le);
    assert!(err.is_none());
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].ts_ns, 10_000_005_000);
    assert_eq!(
        (recs[0].linktype, recs[0].data, recs[0].offset),
        (LINKTYPE_RAW, &[0x45, 1, 2][..], 24)
    );
    assert_eq!((recs[1].orig_len, recs[1].offset), (60, 24 + 16 + 3));

    let be = to_big_endian(&le);
    assert_ne!(be, le);
    let (recs_be, err) = all(&be);
    assert!(err.is_none());
    assert_eq!(recs_be, recs);

    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 65535, true).unwrap();
    w.write_packet(Duration::new(3, 123_456_789), &[1], 1)
        .unwrap();
    let nano = w.into_inner();
    let (recs, _) = all(&nano);
    assert_eq!(recs[0].ts_ns, 3_123_456_789);
}

#[test]
fn pcapng_little_and_big_endian_sections_agree() {
    let conv = {
        let mut c = Conv::new(V4_A, V4_B);
        c.handshake().exchange();
        c
    };
    let le = conv.pcapng(LINKTYPE_RAW);
    let (recs, err) = all(&le);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[0].ts_ns, 1_700_000_000_000_000_000);
    assert_eq!(recs[0].data, &conv.pkts[0].1[..]);

    // Re-encode the same section big endian by hand: every u32/u16 field swapped.
    let be = pcapng_to_big_endian(&le);
    let (recs_be, err) = all(&be);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        recs_be
            .iter()
            .map(|r| (r.ts_ns, r.data))
            .collect::<Vec<_>>(),
        recs.iter().map(|r| (r.ts_ns, r.data)).collect::<Vec<_>>()
    );
}

/// Convert the testkit's pcapng (SHB, custom block, IDB with one option, EPBs) to big endian.
fn pcapng_to_big_endian(le: &[u8]) -> Vec<u8> {
    let mut out = le.to_vec();
    let mut pos = 0;
    while pos + 12 <= out.len() {
        let btype = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap());
        let len = u32::from_le_bytes(out[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        match btype {
            0x0a0d_0d0a => {
                out[body..body + 4].reverse();
                out[body + 4..body + 6].reverse();
                out[body + 6..body + 8].reverse();
                out[body + 8..body + 16].reverse();
            }
            1 => {
                out[body..body + 2].reverse();
                out[body + 4..body + 8].reverse();
                out[body + 8..body + 10].reverse();
                out[body + 10..body + 12].reverse();
            }
            6 => {
                for at in [0, 4, 8, 12, 16] {
                    out[body + at..body + at + 4].reverse();
                }
            }
            _ => {}
        }
        if btype != 0x0a0d_0d0a {
            out[pos..pos + 4].reverse();
        }
        out[pos + 4..pos + 8].reverse();
        out[pos + len - 4..pos + len].reverse();
        pos += len;
    }
    out
}

fn block(btype: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut b = btype.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

fn idb(linktype: u16, snaplen: u32, opts: &[u8]) -> Vec<u8> {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&snaplen.to_le_bytes());
    body.extend_from_slice(opts);
    block(1, &body)
}

#[test]
fn pcapng_binary_resolution_offset_and_simple_blocks() {
    let mut f = shb();
    // if_tsresol = 2^-10, if_tsoffset = 100 s, end of options.
    let mut opts = vec![9, 0, 1, 0, 0x8a, 0, 0, 0, 14, 0, 8, 0];
    opts.extend_from_slice(&100u64.to_le_bytes());
    opts.extend_from_slice(&[0, 0, 0, 0]);
    f.extend(idb(101, 4, &opts));
    let mut epb = 0u32.to_le_bytes().to_vec();
    epb.extend_from_slice(&0u32.to_le_bytes());
    epb.extend_from_slice(&2048u32.to_le_bytes()); // 2 s in 1/1024 units
    epb.extend_from_slice(&3u32.to_le_bytes());
    epb.extend_from_slice(&3u32.to_le_bytes());
    epb.extend_from_slice(&[0x45, 0, 0, 0]);
    f.extend(block(6, &epb));
    // Simple packet block: original length 6, cut to the interface's snap length 4.
    let mut spb = 6u32.to_le_bytes().to_vec();
    spb.extend_from_slice(&[0x45, 1, 2, 3, 4, 5, 0, 0]);
    f.extend(block(3, &spb));
    let (recs, err) = all(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(recs[0].ts_ns, 102_000_000_000);
    assert_eq!(recs[0].data, &[0x45, 0, 0]);
    assert_eq!((recs[1].data, recs[1].orig_len), (&[0x45, 1, 2, 3][..], 6));
}

#[test]
fn errors_carry_the_offset() {
    let (_, err) = all(b"hello world, not a capture");
    assert!(matches!(err, Some(ReadError::BadMagic { offset: 0, .. })));

    let good = pcap_micro();
    let (recs, err) = all(&good[..good.len() - 2]);
    assert_eq!(recs.len(), 1);
    let err = err.unwrap();
    assert_eq!(err.offset(), 24 + 16 + 3);
    assert!(
        matches!(
            err,
            ReadError::Truncated {
                need: 21,
                have: 19,
                ..
            }
        ),
        "{err:?}"
    );

    let mut huge = pcap_micro();
    huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = all(&huge).1.unwrap();
    assert!(
        matches!(err, ReadError::Corrupt { offset: 24, .. }),
        "{err}"
    );

    // A packet block for an interface that was never described.
    let mut f = shb();
    let shb_len = f.len() as u64;
    f.extend(block(6, &[0u8; 20]));
    let err = all(&f).1.unwrap();
    assert_eq!(err.offset(), shb_len);
    assert!(err.to_string().contains("interface 0"), "{err}");

    // A block length that is not a multiple of 4.
    let mut f = shb();
    f.extend_from_slice(&6u32.to_le_bytes());
    f.extend_from_slice(&13u32.to_le_bytes());
    f.extend_from_slice(&[0; 9]);
    assert!(matches!(all(&f).1, Some(ReadError::Corrupt { .. })));

    assert!(matches!(
        all(&[0xd4, 0xc3]).1,
        Some(ReadError::Truncated { offset: 0, .. })
    ));
    assert!(all(&[]).1.is_some());
}

/// Read through core's `ChunkReader` with `chunk`-byte reads, as the binary does.
fn decode_in_chunks(data: &[u8], chunk: usize) -> Vec<(u64, Vec<u8>)> {
    let mut r = crate::pcap::chunks::ChunkReader::with_chunk(data, chunk);
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.ts_ns, rec.data.to_vec()));
    }
    assert!(
        r.damage().is_empty() && r.notes().is_empty(),
        "{:?}",
        r.notes()
    );
    out
}

#[test]
fn decoder_resumes_across_chunk_boundaries() {
    let mut conv = Conv::new(V4_A, V4_B);
    conv.handshake().exchange().exchange();
    for bytes in [
        conv.pcap(LINKTYPE_ETHERNET, false),
        conv.pcapng(LINKTYPE_ETHERNET),
    ] {
        let whole: Vec<(u64, Vec<u8>)> = all(&bytes)
            .0
            .iter()
            .map(|r| (r.ts_ns, r.data.to_vec()))
            .collect();
        assert_eq!(whole.len(), 9);
        for chunk in [1, 7, 16, 50, 4096] {
            assert_eq!(decode_in_chunks(&bytes, chunk), whole, "chunk {chunk}");
        }
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = all(&data);
        let _ = crate::pcap::analyse_bytes(&data, Default::default());
    }

    #[test]
    fn never_panics_on_mutated_captures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in any::<usize>(),
        ng in any::<bool>(),
    ) {
        let mut conv = Conv::new(V4_A, V4_B);
        conv.handshake().exchange().wait(900.0).c_data(10).forged_rst_from_server(64, 0);
        let mut data = if ng { conv.pcapng(LINKTYPE_ETHERNET) } else { conv.pcap(LINKTYPE_ETHERNET, false) };
        for (at, byte) in flips {
            let i = at % data.len();
            data[i] = byte;
        }
        data.truncate(cut % (data.len() + 1));
        let (fa, read) = crate::pcap::analyse_bytes(&data, Default::default());
        for d in &read.damage {
            prop_assert!(d.offset + d.skipped <= data.len() as u64);
        }
        prop_assert!(fa.analysis.events.len() <= 2);
    }
}

#[test]
fn concatenated_pcapng_sections_of_both_byte_orders() {
    let mut c = Conv::new(V4_A, V4_B);
    c.handshake();
    let le = c.pcapng(LINKTYPE_ETHERNET);
    let mut both = le.clone();
    both.extend(pcapng_to_big_endian(&c.pcapng(LINKTYPE_RAW)));
    let (recs, err) = all(&both);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(recs.len(), 6);
    // The second section describes its own interface: link type raw, not Ethernet.
    assert_eq!(recs[2].linktype, LINKTYPE_ETHERNET);
    assert_eq!(recs[3].linktype, LINKTYPE_RAW);
    assert_eq!(recs[3].data, &c.pkts[0].1[..]);
    assert!(recs[3].offset >= le.len() as u64);
}

/// `pcap` (classic, little-endian, microseconds) rewritten as Kuznetsov's modified pcap in
/// byte order `big`: magic 0xa1b2cd34 and 8 more bytes (ifindex, protocol, packet type, pad)
/// after each 16-byte record header.
fn to_modified(pcap: &[u8], big: bool) -> Vec<u8> {
    let word = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let le = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    out.extend_from_slice(&word(0xa1b2_cd34));
    let (major, minor) = (2u16, 4u16);
    out.extend_from_slice(&if big {
        major.to_be_bytes()
    } else {
        major.to_le_bytes()
    });
    out.extend_from_slice(&if big {
        minor.to_be_bytes()
    } else {
        minor.to_le_bytes()
    });
    for at in [8, 12, 16, 20] {
        out.extend_from_slice(&word(le(pcap, at)));
    }
    let mut at = 24;
    while at + 16 <= pcap.len() {
        for f in 0..4 {
            out.extend_from_slice(&word(le(pcap, at + 4 * f)));
        }
        out.extend_from_slice(&[0, 0, 0, 2, 0x08, 0x00, 4, 0]);
        let incl = le(pcap, at + 8) as usize;
        out.extend_from_slice(&pcap[at + 16..at + 16 + incl]);
        at += 16 + incl;
    }
    out
}

#[test]
fn modified_pcap_of_either_byte_order_reads_like_the_classic_file() {
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW, 65535, false).unwrap();
    for (i, len) in [3usize, 5, 9].into_iter().enumerate() {
        let body: Vec<u8> = (0..len).map(|j| (0x45 + i + j) as u8).collect();
        w.write_packet(Duration::new(10 + i as u64, 5_000), &body, 60)
            .unwrap();
    }
    let classic = w.into_inner();
    let (want, err) = all(&classic);
    assert!(err.is_none());
    assert_eq!(want.len(), 3);
    for big in [false, true] {
        let modified = to_modified(&classic, big);
        let (got, err) = all(&modified);
        assert!(err.is_none(), "big {big}: {err:?}");
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.ts_ns, g.data, g.orig_len), (w.ts_ns, w.data, w.orig_len));
        }
        // Resynchronisation knows the longer headers too: garbage before the middle record
        // (a probe with 16-byte headers would land elsewhere).
        let second = 24 + 24 + want[0].data.len();
        let mut damaged = modified[..second].to_vec();
        damaged.extend_from_slice(&[0xee; 7]);
        damaged.extend_from_slice(&modified[second..]);
        let mut r = crate::pcap::chunks::ChunkReader::new(&damaged[..]);
        let mut data = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            data.push(rec.data.to_vec());
        }
        let want_data: Vec<Vec<u8>> = want.iter().map(|w| w.data.to_vec()).collect();
        assert_eq!(data, want_data, "big {big}");
        assert_eq!(r.damage().len(), 1);
        assert_eq!(r.damage()[0].skipped, 7);
    }
}

#[test]
fn a_capture_cut_in_its_second_record_gets_one_note_and_no_variant_hint() {
    let bytes = pcap_micro();
    let cut = &bytes[..bytes.len() - 2];
    let (_, read) = crate::pcap::analyse_bytes(cut, crate::pcap::flow::Config::default());
    assert!(read.damage.is_empty(), "{read:?}");
    assert_eq!(read.notes.len(), 1, "{:?}", read.notes);
    assert!(read.notes[0].contains("ends inside the last record"));
}
