//! Keyed segments as they go from the reading thread to the tracking thread: 40 bytes each
//! instead of the 80 of a timestamped [`Seg`].
//!
//! The reader writes every segment once and the tracker, on the other core, reads it once, so
//! the size of a segment in a batch is memory traffic between the cores: the reader's stores
//! into a batch the tracker last held were a third of its decoding samples (`perf`). An IPv4
//! flow's key fits in 12 bytes (two addresses, two ports); an IPv6 key (48 bytes, and rare)
//! waits in a side list of the batch and the entry holds its index. The tracker rebuilds the
//! exact [`Seg`], so nothing downstream changes (tested below on both families).

use super::key::{Key, PlainV4, Seg};

/// The sender's side in the key (0 or 1).
const SENDER: u8 = 1;
/// The segment has an IPv4 identification.
const HAS_ID: u8 = 2;
/// IPv6: `a` is the index of the key in the batch's IPv6 keys.
const V6: u8 = 4;

/// One keyed segment, compact.
#[derive(Debug, Clone, Copy)]
struct Wire {
    ts_ns: u64,
    /// IPv4: side 0's address. IPv6: the index of the key in [`WireBatch::v6_keys`].
    a: u32,
    /// IPv4: side 1's address.
    b: u32,
    pa: u16,
    pb: u16,
    seq: u32,
    ack: u32,
    payload_len: u32,
    ip_id: u16,
    flags: u8,
    ttl: u8,
    bits: u8,
}

/// Keyed segments in file order, compact, with the IPv6 keys they refer to.
#[derive(Debug, Default)]
pub(crate) struct WireBatch {
    entries: Vec<Wire>,
    v6_keys: Vec<Key>,
}

impl WireBatch {
    /// An empty batch with room for `n` segments.
    pub fn with_capacity(n: usize) -> WireBatch {
        WireBatch {
            entries: Vec::with_capacity(n),
            v6_keys: Vec::new(),
        }
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forget every segment, keeping the memory.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.v6_keys.clear();
    }

    /// Add `seg`, captured at `ts_ns`.
    #[inline(always)]
    pub fn push(&mut self, ts_ns: u64, seg: &Seg) {
        let (a, b, pa, pb, family) = match seg.key.as_v4() {
            Some((a, pa, b, pb)) => (a, b, pa, pb, 0),
            None => {
                // A batch holds at most 65,536 segments, far below u32::MAX.
                debug_assert!(u32::try_from(self.v6_keys.len()).is_ok());
                let index = u32::try_from(self.v6_keys.len()).unwrap_or(u32::MAX);
                self.v6_keys.push(seg.key);
                (index, 0, 0, 0, V6)
            }
        };
        self.entries.push(Wire {
            ts_ns,
            a,
            b,
            pa,
            pb,
            seq: seg.seq,
            ack: seg.ack,
            payload_len: seg.payload_len,
            ip_id: seg.ip_id.unwrap_or(0),
            flags: seg.flags,
            ttl: seg.ttl,
            bits: (seg.sender & SENDER) | if seg.ip_id.is_some() { HAS_ID } else { 0 } | family,
        });
    }

    /// Add the common packet `p`, captured at `ts_ns`: as [`WireBatch::push`] of its
    /// [`PlainV4::seg`], without widening it first.
    #[inline(always)]
    pub fn push_plain(&mut self, ts_ns: u64, p: &PlainV4) {
        self.entries.push(Wire {
            ts_ns,
            a: p.a,
            b: p.b,
            pa: p.pa,
            pb: p.pb,
            seq: p.seq,
            ack: p.ack,
            payload_len: p.payload_len,
            ip_id: p.ip_id,
            flags: p.flags,
            ttl: p.ttl,
            bits: (p.sender & SENDER) | HAS_ID,
        });
    }

    /// The `i`th segment and its capture time, as it was pushed; `None` past the end.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<(u64, Seg)> {
        let w = self.entries.get(i)?;
        let key = if w.bits & V6 == 0 {
            Key::v4(w.a, w.pa, w.b, w.pb)
        } else {
            // Pushed with the entry, so always there.
            *self.v6_keys.get(w.a as usize)?
        };
        let seg = Seg {
            key,
            seq: w.seq,
            ack: w.ack,
            payload_len: w.payload_len,
            ip_id: (w.bits & HAS_ID != 0).then_some(w.ip_id),
            flags: w.flags,
            ttl: w.ttl,
            sender: w.bits & SENDER,
        };
        Some((w.ts_ns, seg))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::packet::{ACK, FIN, PSH, RST, SYN, parse_tcp};
    use crate::pcap::testkit::{Pkt, V4_A, V4_B, V6_A, V6_B};

    fn seg(p: &Pkt) -> Seg {
        Seg::of(&parse_tcp(&p.ip()).unwrap())
    }

    #[test]
    fn an_entry_is_half_a_timestamped_seg() {
        assert_eq!(std::mem::size_of::<Wire>(), 40);
        assert_eq!(std::mem::size_of::<(u64, Seg)>(), 80);
    }

    #[test]
    fn segments_come_back_exactly_as_pushed_in_both_families() {
        let pkts = [
            Pkt::new(V4_A, 40000, V4_B, 5432).payload(100),
            Pkt::new(V4_B, 5432, V4_A, 40000).flags(ACK).id(0),
            Pkt::new(V6_A, 40000, V6_B, 443).flags(SYN),
            Pkt::new(V4_A, 1, V4_B, 65535).flags(RST | ACK).ttl(1),
            Pkt::new(V6_B, 443, V6_A, 40000)
                .flags(FIN | PSH | ACK)
                .seq(u32::MAX)
                .ack(7)
                .payload(3),
            Pkt::new(V4_B, 80, V4_A, 80)
                .seq(1)
                .ack(u32::MAX)
                .id(u16::MAX),
        ];
        let segs: Vec<(u64, Seg)> = pkts
            .iter()
            .enumerate()
            .map(|(i, p)| (u64::MAX - i as u64, seg(p)))
            .collect();
        let mut batch = WireBatch::with_capacity(4);
        for (ts, s) in &segs {
            batch.push(*ts, s);
        }
        assert_eq!(batch.len(), segs.len());
        for (i, want) in segs.iter().enumerate() {
            assert_eq!(batch.get(i).as_ref(), Some(want), "segment {i}");
        }
        assert_eq!(batch.get(segs.len()), None);
        assert!(segs.iter().any(|(_, s)| s.ip_id.is_none()));
        assert!(segs.iter().any(|(_, s)| s.ip_id == Some(0)));

        batch.clear();
        assert_eq!(batch.len(), 0);
        batch.push(1, &segs[4].1);
        assert_eq!(batch.get(0), Some((1, segs[4].1)));
        assert_eq!(batch.v6_keys.len(), 1, "IPv6 keys restart with the batch");
    }

    #[test]
    fn a_plain_packet_packs_as_its_widened_segment() {
        for p in [
            Pkt::new(V4_A, 40000, V4_B, 5432).payload(100).id(0),
            Pkt::new(V4_B, 5432, V4_A, 40000).flags(RST | ACK).ttl(1),
            Pkt::new(V4_A, 7, V4_A, 7).seq(u32::MAX).id(u16::MAX),
        ] {
            let ip = p.ip();
            let plain = PlainV4::parse(&ip).unwrap();
            assert_eq!(plain.seg(), seg(&p));
            let (mut packed, mut widened) = (WireBatch::default(), WireBatch::default());
            packed.push_plain(9, &plain);
            widened.push(9, &plain.seg());
            assert_eq!(packed.get(0), widened.get(0));
            assert_eq!(packed.get(0), Some((9, seg(&p))));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_ipv4_segment_comes_back_exactly(
            a in proptest::num::u32::ANY, b in proptest::num::u32::ANY,
            pa in proptest::num::u16::ANY, pb in proptest::num::u16::ANY,
            seq in proptest::num::u32::ANY, ack in proptest::num::u32::ANY,
            len in proptest::num::u32::ANY, id in proptest::option::of(proptest::num::u16::ANY),
            flags in proptest::num::u8::ANY, ttl in proptest::num::u8::ANY,
            ts in proptest::num::u64::ANY,
        ) {
            let p = Pkt::new(std::net::Ipv4Addr::from_bits(a).into(), pa, std::net::Ipv4Addr::from_bits(b).into(), pb);
            let mut s = seg(&p);
            (s.seq, s.ack, s.payload_len, s.ip_id, s.flags, s.ttl) = (seq, ack, len, id, flags, ttl);
            let mut batch = WireBatch::default();
            batch.push(ts, &s);
            proptest::prop_assert_eq!(batch.get(0), Some((ts, s)));
        }
    }
}
