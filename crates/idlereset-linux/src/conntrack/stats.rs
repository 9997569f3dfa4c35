//! Conntrack statistics: the per-CPU counters of `IPCTNL_MSG_CT_GET_STATS_CPU` (what
//! `conntrack -S` prints) and the table size of `IPCTNL_MSG_CT_GET_STATS`.
//!
//! `invalid` counts packets conntrack could not match to a valid state (e.g. failed TCP window
//! tracking); those do not refresh an entry's timer, which is how a flow's state can expire
//! while packets still cross the box (the field report's 12 h resets).

use serde::Serialize;

use super::entry::be_u32;

// `enum ctattr_stats_cpu`.
const CTA_STATS_FOUND: u16 = 2;
const CTA_STATS_INVALID: u16 = 4;
const CTA_STATS_INSERT: u16 = 8;
const CTA_STATS_INSERT_FAILED: u16 = 9;
const CTA_STATS_DROP: u16 = 10;
const CTA_STATS_EARLY_DROP: u16 = 11;
const CTA_STATS_ERROR: u16 = 12;
const CTA_STATS_SEARCH_RESTART: u16 = 13;
const CTA_STATS_CLASH_RESOLVE: u16 = 14;
const CTA_STATS_CHAIN_TOOLONG: u16 = 15;

// `enum ctattr_stats_global`.
pub(crate) const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
pub(crate) const CTA_STATS_GLOBAL_MAX_ENTRIES: u16 = 2;

/// Counters of one CPU (or their sum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Lookups that found an entry.
    pub found: u64,
    /// Packets found INVALID.
    pub invalid: u64,
    /// Entries inserted.
    pub insert: u64,
    /// Entries that failed to be inserted.
    pub insert_failed: u64,
    /// Packets dropped because an entry could not be created (table full).
    pub drop: u64,
    /// Entries evicted early to make room.
    pub early_drop: u64,
    /// Errors (ICMP errors that matched no flow, among others).
    pub error: u64,
    /// Lookups restarted after a concurrent change.
    pub search_restart: u64,
    /// Insertion clashes resolved.
    pub clash_resolve: u64,
    /// Insertions refused because a hash chain was too long.
    pub chaintoolong: u64,
}

impl CpuStats {
    fn add(&mut self, o: &CpuStats) {
        self.found += o.found;
        self.invalid += o.invalid;
        self.insert += o.insert;
        self.insert_failed += o.insert_failed;
        self.drop += o.drop;
        self.early_drop += o.early_drop;
        self.error += o.error;
        self.search_restart += o.search_restart;
        self.clash_resolve += o.clash_resolve;
        self.chaintoolong += o.chaintoolong;
    }

    /// Set the counter of attribute `kind` from its big-endian u32 value. Unknown attributes
    /// (added by newer kernels) are ignored.
    pub(crate) fn set(&mut self, kind: u16, value: &[u8]) -> Result<(), String> {
        let slot = match kind {
            CTA_STATS_FOUND => &mut self.found,
            CTA_STATS_INVALID => &mut self.invalid,
            CTA_STATS_INSERT => &mut self.insert,
            CTA_STATS_INSERT_FAILED => &mut self.insert_failed,
            CTA_STATS_DROP => &mut self.drop,
            CTA_STATS_EARLY_DROP => &mut self.early_drop,
            CTA_STATS_ERROR => &mut self.error,
            CTA_STATS_SEARCH_RESTART => &mut self.search_restart,
            CTA_STATS_CLASH_RESOLVE => &mut self.clash_resolve,
            CTA_STATS_CHAIN_TOOLONG => &mut self.chaintoolong,
            _ => return Ok(()),
        };
        *slot = be_u32(value)
            .ok_or_else(|| format!("stats attribute {kind}: {} bytes, want 4", value.len()))?
            .into();
        Ok(())
    }
}

/// Per-CPU statistics and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CtStats {
    /// `(cpu, counters)` in the order the kernel reported them.
    pub per_cpu: Vec<(u16, CpuStats)>,
    /// Sum over all CPUs.
    pub total: CpuStats,
}

impl CtStats {
    pub(crate) fn push(&mut self, cpu: u16, s: CpuStats) {
        self.total.add(&s);
        self.per_cpu.push((cpu, s));
    }
}

/// How full the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CtCount {
    /// Entries in this namespace's table.
    pub entries: u64,
    /// `nf_conntrack_max` (shared by all namespaces).
    pub max: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn set_and_sum() {
        let mut a = CpuStats::default();
        a.set(CTA_STATS_INVALID, &5u32.to_be_bytes()).unwrap();
        a.set(CTA_STATS_CHAIN_TOOLONG, &1u32.to_be_bytes()).unwrap();
        a.set(99, &[1]).unwrap(); // unknown: ignored
        let mut b = CpuStats::default();
        b.set(CTA_STATS_INVALID, &7u32.to_be_bytes()).unwrap();
        b.set(CTA_STATS_FOUND, &3u32.to_be_bytes()).unwrap();
        let mut s = CtStats::default();
        s.push(0, a);
        s.push(1, b);
        assert_eq!(s.total.invalid, 12);
        assert_eq!(s.total.found, 3);
        assert_eq!(s.total.chaintoolong, 1);
        assert_eq!(s.per_cpu.len(), 2);
        assert!(CpuStats::default().set(CTA_STATS_DROP, &[0, 1]).is_err());
    }
}
