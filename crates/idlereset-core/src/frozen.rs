//! Frozen-timer detection by sampling: conntrack entries whose remaining timeout keeps falling
//! while their packet counters rise.
//!
//! A packet that conntrack accepts for a flow refreshes the entry's timer back to the state's
//! full timeout. The field report's failure is the opposite: packets flow (the counters rise) but
//! the timer is not refreshed (the packets were classified INVALID or ignored by window
//! tracking), so the entry expires under a busy connection. Two samples of the table show it: for
//! the same entry, `packets` rose and `timeout` fell by about the time between the samples, as
//! if nothing had arrived.
//!
//! A timer refreshed to a *lower* value (ESTABLISHED with unacknowledged data drops to 300 s)
//! also falls while packets rise, but by an amount unrelated to the elapsed time; the
//! `tolerance_s` window around the elapsed time keeps those out.
//!
//! This is the exporter's scrape-to-scrape sampler, kept small and generic over the entry key so
//! it can later be unified with the `conntrack` command's watcher. Memory: one small record per
//! entry of the previous sample, capped at `max_entries` (entries beyond it are not tracked and
//! [`Sample::untracked`] counts them).

use std::collections::HashMap;
use std::hash::Hash;

/// One entry's state in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Seconds left on the entry's timer.
    pub timeout_s: u32,
    /// Packets counted on the entry (both directions).
    pub packets: u64,
}

/// The result of comparing a sample with the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample<K> {
    /// Entries whose timer fell by about the elapsed time while their packets rose.
    pub frozen: Vec<K>,
    /// Entries present in both samples (so compared).
    pub compared: usize,
    /// Entries not tracked because the table exceeded `max_entries`.
    pub untracked: usize,
}

/// Keeps the previous sample and compares each new one with it.
#[derive(Debug)]
pub struct FrozenSampler<K> {
    prev: HashMap<K, Reading>,
    prev_at_s: Option<f64>,
    /// Accepted difference between the timer's fall and the elapsed time (timers tick in whole
    /// seconds, and the two dumps are not instantaneous).
    pub tolerance_s: f64,
    pub max_entries: usize,
}

impl<K: Hash + Eq + Clone> Default for FrozenSampler<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> FrozenSampler<K> {
    pub fn new() -> Self {
        FrozenSampler {
            prev: HashMap::new(),
            prev_at_s: None,
            tolerance_s: 2.0,
            max_entries: 500_000,
        }
    }

    /// Feed a complete sample taken at `now_s` (any monotonic clock in seconds). The first
    /// sample only primes the sampler. Entries without packet counters (accounting off) should
    /// not be fed.
    pub fn sample(
        &mut self,
        now_s: f64,
        entries: impl IntoIterator<Item = (K, Reading)>,
    ) -> Sample<K> {
        let mut next = HashMap::with_capacity(self.prev.len());
        let mut out = Sample {
            frozen: Vec::new(),
            compared: 0,
            untracked: 0,
        };
        let elapsed = self.prev_at_s.map(|t| now_s - t);
        for (key, r) in entries {
            if let (Some(elapsed), Some(old)) = (elapsed, self.prev.get(&key)) {
                out.compared += 1;
                if is_frozen(*old, r, elapsed, self.tolerance_s) {
                    out.frozen.push(key.clone());
                }
            }
            if next.len() < self.max_entries {
                next.insert(key, r);
            } else {
                out.untracked += 1;
            }
        }
        self.prev = next;
        self.prev_at_s = Some(now_s);
        out
    }
}

/// Packets rose while the timer fell by the elapsed time (± tolerance).
pub fn is_frozen(old: Reading, new: Reading, elapsed_s: f64, tolerance_s: f64) -> bool {
    if new.packets <= old.packets || new.timeout_s >= old.timeout_s || elapsed_s <= 0.0 {
        return false;
    }
    let fell = f64::from(old.timeout_s - new.timeout_s);
    (fell - elapsed_s).abs() <= tolerance_s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(timeout_s: u32, packets: u64) -> Reading {
        Reading { timeout_s, packets }
    }

    #[test]
    fn first_sample_primes_only() {
        let mut s = FrozenSampler::new();
        let out = s.sample(0.0, [(1u32, r(100, 5))]);
        assert_eq!(out.compared, 0);
        assert!(out.frozen.is_empty());
    }

    #[test]
    fn finds_timer_falling_while_packets_rise() {
        let mut s = FrozenSampler::new();
        s.sample(
            0.0,
            [
                (1u32, r(300, 10)),
                (2, r(300, 10)),
                (3, r(300, 10)),
                (4, r(300, 10)),
            ],
        );
        let out = s.sample(
            15.0,
            [
                (1, r(285, 14)), // frozen: fell by 15 s with 4 new packets
                (2, r(300, 14)), // refreshed: back to the full timeout
                (3, r(285, 10)), // idle: no packets, timer just runs down
                (4, r(120, 14)), // refreshed to a lower cap, not by elapsed time
                (5, r(300, 1)),  // new entry, nothing to compare
            ],
        );
        assert_eq!(out.frozen, vec![1]);
        assert_eq!(out.compared, 4);
        // The next sample compares against the second one, not the first.
        let out = s.sample(30.0, [(1, r(270, 20)), (5, r(285, 1))]);
        assert_eq!(out.frozen, vec![1]);
        assert_eq!(out.compared, 2);
    }

    #[test]
    fn cap_bounds_memory() {
        let mut s = FrozenSampler::new();
        s.max_entries = 2;
        let out = s.sample(0.0, (0u32..5).map(|k| (k, r(100, 1))));
        assert_eq!(out.untracked, 3);
        let out = s.sample(10.0, (0u32..5).map(|k| (k, r(90, 2))));
        assert_eq!(out.compared, 2);
        assert_eq!(out.frozen.len(), 2);
    }

    #[test]
    fn tolerance_edges() {
        assert!(is_frozen(r(100, 1), r(88, 2), 10.0, 2.0));
        assert!(!is_frozen(r(100, 1), r(87, 2), 10.0, 2.0));
        assert!(!is_frozen(r(100, 1), r(90, 1), 10.0, 2.0));
        assert!(!is_frozen(r(100, 1), r(90, 2), 0.0, 2.0));
    }
}
