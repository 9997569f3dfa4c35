//! The flow table's storage: a `hashbrown::HashTable` of (key, flow) with the `rustc-hash` Fx
//! hasher, looked up by a hash the caller computes once per packet, and a prefetch of a
//! flow's bucket ahead of its packet.
//!
//! The hasher: keys come from a file, not from an attacker racing us, and hashing is on the
//! per-packet path, so a multiply-rotate hash per word (as in rustc) instead of SipHash.
//!
//! Why `HashTable` and not `HashMap`: the tracker touches each flow twice per packet, once
//! ahead of time to bring its bucket into the cache and once to track the packet, and
//! `HashTable` takes the hash from the caller, so the key is hashed once. It also gives the
//! address of the bucket whose control byte matches without reading the bucket, which is what
//! a prefetch needs: a load of the bucket (the way `HashMap::get` warms it) holds up the
//! processor's reorder buffer until the data arrives, a prefetch does not. On
//! `bench/pcap/run.sh`'s capture (5.4 M packets, ~2,000 live flows whose buckets the streamed
//! batches keep pushing out of L2) that took about a tenth off the whole run's CPU time
//! (docs/pcap.md has the measurements).
//!
//! Flows are stored inline in the buckets, and the table grows with the live flows. Measured
//! alternatives on the benchmark capture, both slower:
//! - a small index into a slab of flows: 40 % less memory at 100,000 live flows (a table that
//!   keeps removing and inserting accumulates tombstones and doubles its buckets once), but an
//!   extra memory access per packet, +12 % CPU;
//! - reserving the table for the flow cap up front: the few live flows are scattered over a
//!   table sized for 50,000 and every lookup misses the cache, +25 % CPU.
//!
//! Memory is bounded by the flow cap instead (`--max-flows`, default 50,000: about 64 MB
//! resident for the whole process at the cap, measured on a capture of a million SYNs: 59 MB
//! with batches of 16,384 80-byte entries, 63 MB with batches of 65,536 40-byte ones; 117 MB
//! at 100,000).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::key::Key;

/// The hash of `key` in a [`FlowTable`].
#[inline(always)]
pub(crate) fn hash(key: &Key) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// Values by flow key. Every method that finds a key takes its [`hash`] as well, and that
/// hash must be `hash(key)`: the table rehashes its keys with [`hash`] when it grows, so an
/// entry put in under another hash would be lost then (`Tracker` checks this in debug builds).
pub(crate) struct FlowTable<V> {
    entries: HashTable<(Key, V)>,
}

impl<V> FlowTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        FlowTable {
            entries: HashTable::new(),
        }
    }

    /// The value of `key`, whose hash is `h`.
    #[inline(always)]
    pub fn get(&self, h: u64, key: &Key) -> Option<&V> {
        self.entries.find(h, |e| e.0 == *key).map(|e| &e.1)
    }

    /// The value of `key`, whose hash is `h`, to change.
    #[inline(always)]
    pub fn get_mut(&mut self, h: u64, key: &Key) -> Option<&mut V> {
        self.entries.find_mut(h, |e| e.0 == *key).map(|e| &mut e.1)
    }

    /// Take the value of `key`, whose hash is `h`, out of the table.
    pub fn remove(&mut self, h: u64, key: &Key) -> Option<V> {
        let entry = self.entries.find_entry(h, |e| e.0 == *key).ok()?;
        let ((_, v), _) = entry.remove();
        Some(v)
    }

    /// Add `key`, whose hash is `h` and which must not be in the table yet (the caller has
    /// just looked it up).
    pub fn insert_new(&mut self, h: u64, key: Key, v: V) {
        debug_assert!(self.get(h, &key).is_none(), "key inserted twice");
        self.entries.insert_unique(h, (key, v), |e| hash(&e.0));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.entries.iter().map(|e| (&e.0, &e.1))
    }

    /// Start bringing the first cache line of the bucket of the key hashed `h` into the cache,
    /// without waiting for it (prefetching the bucket's other lines too measured the same).
    /// Reads only the table's control bytes: the bucket found is the first whose control byte
    /// matches (almost always the key's; another key's bucket is only a wasted prefetch).
    /// Changes nothing and has no effect on any later result; a no-op on targets other than
    /// x86_64.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        if let Some(entry) = self.entries.find(h, |_| true) {
            prefetch_line(entry);
        }
    }
}

/// Hint the processor to fetch the cache line holding `value` into every cache level.
#[inline(always)]
fn prefetch_line<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::key::Seg;
    use crate::pcap::packet::parse_tcp;
    use crate::pcap::testkit::{Pkt, V4_A, V4_B};

    fn key(port: u16) -> Key {
        Seg::of(&parse_tcp(&Pkt::new(V4_A, port, V4_B, 5432).ip()).unwrap()).key
    }

    #[test]
    fn spreads_nearby_keys_into_different_buckets() {
        // hashbrown takes the top 7 bits as the control byte and low bits as the bucket.
        let hashes: Vec<u64> = (1000u16..2000).map(|p| hash(&key(p))).collect();
        let mut low: Vec<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        low.sort_unstable();
        low.dedup();
        assert!(
            low.len() > 600,
            "{} distinct low-bit buckets of 1000",
            low.len()
        );
        let mut top: Vec<u64> = hashes.iter().map(|h| h >> 57).collect();
        top.sort_unstable();
        top.dedup();
        assert!(top.len() > 64, "{} distinct control bytes", top.len());
    }

    #[test]
    fn finds_changes_and_removes_by_key() {
        let mut t: FlowTable<u32> = FlowTable::new();
        for p in 1..=500u16 {
            let k = key(p);
            t.insert_new(hash(&k), k, u32::from(p));
        }
        assert_eq!(t.len(), 500);
        let k42 = key(42);
        assert_eq!(t.get(hash(&k42), &k42), Some(&42));
        *t.get_mut(hash(&k42), &k42).unwrap() = 4200;
        assert_eq!(t.remove(hash(&k42), &k42), Some(4200));
        assert_eq!(t.remove(hash(&k42), &k42), None);
        assert_eq!(t.get(hash(&k42), &k42), None);
        assert_eq!(t.len(), 499);
        let absent = key(501);
        assert_eq!(t.get(hash(&absent), &absent), None);
        let mut seen: Vec<u32> = t.iter().map(|(_, v)| *v).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=500).filter(|&p| p != 42).collect::<Vec<u32>>());
    }

    #[test]
    fn a_key_is_told_apart_from_another_with_the_same_control_byte() {
        // Prefetch takes the first bucket whose control byte matches; lookups must still
        // compare keys. Two keys given the same hash share every control byte. (A made-up
        // hash is only safe while the table does not grow: two entries fit its first size.)
        let mut t: FlowTable<u32> = FlowTable::new();
        let (a, b) = (key(1), key(2));
        t.insert_new(7, a, 1);
        t.insert_new(7, b, 2);
        t.prefetch(7);
        assert_eq!(t.get(7, &a), Some(&1));
        assert_eq!(t.get(7, &b), Some(&2));
        assert_eq!(t.remove(7, &a), Some(1));
        assert_eq!(t.get(7, &b), Some(&2));
    }

    #[test]
    fn prefetch_on_an_empty_table_and_absent_keys_is_harmless() {
        let mut t: FlowTable<u32> = FlowTable::new();
        t.prefetch(hash(&key(9)));
        let k = key(9);
        t.insert_new(hash(&k), k, 9);
        for p in 0..20u16 {
            t.prefetch(hash(&key(p)));
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(hash(&k), &k), Some(&9));
    }
}
