//! What the fixes cost: keepalive packets and bytes on the wire, conntrack memory on firewalls.
//!
//! Assumptions (stated constants, printed with every cost):
//! - A keepalive exchange is two frames: the probe (a zero-length segment, seq = SND.UNA - 1)
//!   and the peer's ACK. Each is 54 bytes as captured on IPv4 Ethernet (14 Ethernet + 20 IPv4 +
//!   20 TCP, no options, no FCS or padding); IPv6 adds 20 (74 bytes).
//! - Probe rate of an idle connection: the keepalive model of docs/plan.md (after the first probe at KEEPIDLE,
//!   one every KEEPINTVL) gives the `worst` rate `1 / intvl`; if an answered probe restarts the
//!   idle clock (Linux updates `rcv_tstamp` on the ACK, so the next probe comes KEEPIDLE later)
//!   the rate is `1 / time`, reported as `best`. Both assume every connection idle all the time.
//! - A conntrack entry takes about 320 bytes on 64-bit Linux: the object size of the
//!   `nf_conntrack` slab cache in `/proc/slabinfo` (`objsize`, 320 on x86_64 5.x/6.x kernels,
//!   more with extensions such as NAT or ct timeout policies attached).

use serde::{Deserialize, Serialize};

use crate::inventory::IpVersion;
use crate::plan::keepalive::Keepalive;

/// Bytes per conntrack entry on 64-bit Linux (`/proc/slabinfo`, `nf_conntrack` objsize).
pub const CONNTRACK_ENTRY_BYTES: u64 = 320;
/// One keepalive probe or its ACK on IPv4 Ethernet, as captured (14 + 20 + 20).
pub(crate) const PROBE_FRAME_BYTES_V4: u64 = 54;
/// IPv6 header is 20 bytes longer than IPv4's.
pub(crate) const PROBE_FRAME_BYTES_V6: u64 = PROBE_FRAME_BYTES_V4 + 20;

/// Bytes of one probe or ACK frame for the IP version.
pub(crate) fn frame_bytes(ip: IpVersion) -> u64 {
    match ip {
        IpVersion::V4 => PROBE_FRAME_BYTES_V4,
        IpVersion::V6 => PROBE_FRAME_BYTES_V6,
    }
}

/// A range between two assumptions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Upper estimate (the less favourable assumption).
    pub worst: f64,
    /// Lower estimate (the more favourable assumption).
    pub best: f64,
}

/// Keepalive traffic for a number of idle connections.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KeepaliveCost {
    /// Idle connections counted.
    pub connections: u64,
    /// Bytes per frame assumed (probe and ACK each).
    pub frame_bytes: u64,
    /// Packets per second, both directions.
    pub packets_per_s: Bounds,
    /// Bytes per second, both directions.
    pub bytes_per_s: Bounds,
}

/// Keepalive traffic of `connections` idle connections: at worst one probe and ACK every
/// `intvl_s`, at best every `time_s`.
pub(crate) fn keepalive_cost(k: &Keepalive, connections: u64, ip: IpVersion) -> KeepaliveCost {
    let frame = frame_bytes(ip);
    let per = |period: u64| 2.0 * connections as f64 / period.max(1) as f64;
    let packets = Bounds {
        worst: per(k.intvl_s),
        best: per(k.time_s),
    };
    KeepaliveCost {
        connections,
        frame_bytes: frame,
        packets_per_s: packets,
        bytes_per_s: Bounds {
            worst: packets.worst * frame as f64,
            best: packets.best * frame as f64,
        },
    }
}

/// Conntrack memory of the firewall alternative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConntrackCost {
    /// Bytes per entry ([`CONNTRACK_ENTRY_BYTES`]).
    pub entry_bytes: u64,
    /// Entries for the connections in the inventory (one per connection).
    pub entries: u64,
    /// Memory for those entries.
    pub bytes: u64,
    /// Established timeout now (the path's smallest hop) and planned.
    pub from_timeout_s: f64,
    /// Planned established timeout, seconds.
    pub to_timeout_s: u64,
    /// Entries held at steady state per flow per second that ends without FIN/RST reaching
    /// the firewall (crashed host, cut path): such an entry lives a full timeout.
    pub orphan_entries_per_flow_per_s: Bounds,
    /// The same in bytes (`worst` = planned timeout, `best` = current timeout).
    pub orphan_bytes_per_flow_per_s: Bounds,
}

/// Conntrack memory for `entries` connections, and of orphaned entries at the current and
/// planned established timeouts (seconds).
pub(crate) fn conntrack_cost(
    entries: u64,
    from_timeout_s: f64,
    to_timeout_s: u64,
) -> ConntrackCost {
    let b = CONNTRACK_ENTRY_BYTES as f64;
    ConntrackCost {
        entry_bytes: CONNTRACK_ENTRY_BYTES,
        entries,
        bytes: entries * CONNTRACK_ENTRY_BYTES,
        from_timeout_s,
        to_timeout_s,
        orphan_entries_per_flow_per_s: Bounds {
            worst: to_timeout_s as f64,
            best: from_timeout_s,
        },
        orphan_bytes_per_flow_per_s: Bounds {
            worst: to_timeout_s as f64 * b,
            best: from_timeout_s * b,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::keepalive::keepalive;

    #[test]
    fn keepalive_traffic_scales_with_connections_and_period() {
        let k = keepalive(900.0, 5); // time 420, intvl 30
        let c = keepalive_cost(&k, 300, IpVersion::V4);
        assert!((c.packets_per_s.worst - 2.0 * 300.0 / 30.0).abs() < 1e-9);
        assert!((c.packets_per_s.best - 2.0 * 300.0 / 420.0).abs() < 1e-9);
        assert!((c.bytes_per_s.worst - 20.0 * 54.0).abs() < 1e-9);
        let c6 = keepalive_cost(&k, 300, IpVersion::V6);
        assert_eq!(c6.frame_bytes, 74);
        assert!(c6.bytes_per_s.worst > c.bytes_per_s.worst);
        assert_eq!(keepalive_cost(&k, 0, IpVersion::V4).bytes_per_s.worst, 0.0);
    }

    #[test]
    fn conntrack_memory() {
        let c = conntrack_cost(1000, 900.0, 10800);
        assert_eq!(c.bytes, 320_000);
        assert_eq!(c.orphan_entries_per_flow_per_s.worst, 10800.0);
        assert_eq!(c.orphan_bytes_per_flow_per_s.worst, 10800.0 * 320.0);
        assert_eq!(c.orphan_bytes_per_flow_per_s.best, 900.0 * 320.0);
    }
}
