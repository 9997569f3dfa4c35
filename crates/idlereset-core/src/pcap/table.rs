//! The flow table's storage: a `HashMap` with the `rustc-hash` Fx hasher.
//!
//! The hasher: keys come from a file, not from an attacker racing us, and hashing is on the
//! per-packet path, so a multiply-rotate hash per word (as in rustc) instead of SipHash.
//!
//! Flows are stored inline in the buckets, and the table grows with the live flows. Measured
//! alternatives on the benchmark capture (5.4 M packets, ~2,000 live flows), both slower:
//! - a small index into a slab of flows: 40 % less memory at 100,000 live flows (a table that
//!   keeps removing and inserting accumulates tombstones and doubles its buckets once), but an
//!   extra memory access per packet, +12 % CPU;
//! - reserving the table for the flow cap up front: the few live flows are scattered over a
//!   table sized for 50,000 and every lookup misses the cache, +25 % CPU.
//!
//! Memory is bounded by the flow cap instead (`--max-flows`, default 50,000: about 64 MB
//! resident for the whole process at the cap, measured on a capture of a million SYNs; 117 MB
//! at 100,000).

/// The flow table type.
pub type FxHashMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash(v: impl Hash) -> u64 {
        rustc_hash::FxBuildHasher.hash_one(v)
    }

    #[test]
    fn spreads_nearby_keys_into_different_buckets() {
        // hashbrown takes the top 7 bits as the control byte and low bits as the bucket.
        let hashes: Vec<u64> = (0u64..1000).map(hash).collect();
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
        // rustc-hash 2 leaves the top bits of small integers less mixed (97 of 128 measured).
        assert!(top.len() > 64, "{} distinct control bytes", top.len());
        assert_ne!(hash((1u64, 2u64)), hash((2u64, 1u64)));
    }

    #[test]
    fn map_works() {
        let mut m: FxHashMap<u32, u32> = FxHashMap::default();
        for k in 0..100 {
            m.insert(k, k * 2);
        }
        assert_eq!(m.get(&42), Some(&84));
    }
}
