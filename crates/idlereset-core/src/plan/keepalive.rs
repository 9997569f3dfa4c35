//! The margin rules: from a path timeout to keepalive, pool, heartbeat and firewall values.
//!
//! Every value is a whole number of seconds (the kernel's keepalive options are integers) taken
//! from a ladder of "nice" values an engineer would type (`420`, `600`, `1800`), always rounded
//! towards safety: down for what must stay below a timeout, up for what must outlast an idle.
//!
//! With `T` the path timeout (smallest hop timeout):
//!
//! | value | rule | T = 900 | T = 350 | T = 3600 | T = 43200 |
//! |---|---|---|---|---|---|
//! | keepalive time | `floor(T / 2)`, at most 7200 (the Linux default) | 420 | 150 | 1800 | 7200 |
//! | keepalive intvl | `floor(time / 6)`, at most 30 | 60 → 30 | 20 | 30 | 30 |
//! | probes | `[plan] probes`, default 5 (the runbook's value) | 5 | 5 | 5 | 5 |
//! | dead peer detected after | `time + intvl * probes` (also TCP_USER_TIMEOUT) | 570 | 250 | 1950 | 7350 |
//! | pool idle timeout | `floor(T / 2)`, at most 600 | 420 | 150 | 600 | 600 |
//! | pool max lifetime | `floor(3T / 4)`, at most 1800, above idle | 600 | 240 | 1800 | 1800 |
//! | heartbeat (hop ignoring keepalives, timeout `B`) | `floor(B / 2)` | | | | |
//! | firewall established timeout | `ceil(1.25 * max(7200, longest client idle))` | | | | |
//!
//! Why these: half the timeout leaves room for one lost probe or a late timer and is what the
//! runbook chose (1800 s for 3600 s). Design.md's model (the first probe at KEEPIDLE, later ones
//! every KEEPINTVL without the idle clock restarting) needs both `time` and `intvl` below `T`;
//! `intvl <= time / 6` keeps that and makes a dead peer known within about `time + 150 s`. The
//! max lifetime stays below `T` even when keepalives hold the path: a connection is then retired
//! before a middlebox whose timer stopped refreshing (the field report's INVALID flow) can cut it.
//! The firewall value must outlast the longest idle any client allows and at least the Linux
//! default keepalive (7200 s), so default SO_KEEPALIVE sockets keep their state.

use serde::{Deserialize, Serialize};

/// Values a human would type; every rule rounds onto this ladder.
pub(crate) const LADDER: [u64; 34] = [
    1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 150, 180, 240, 300, 420, 600, 900, 1200, 1800,
    2700, 3600, 5400, 7200, 10800, 14400, 21600, 43200, 86400, 172_800, 259_200, 432_000, 604_800,
];

/// Linux `tcp_keepalive_time` default: the cap for the planned first probe, and the idle the
/// firewall alternative must at least cover.
pub(crate) const LINUX_KEEPALIVE_TIME_S: u64 = 7200;
/// Cap for the probe interval (below the Linux default 75 s, as in the runbook).
pub(crate) const MAX_INTVL_S: u64 = 30;
/// Cap for the pool idle timeout (HikariCP's default idleTimeout, 10 min).
pub(crate) const MAX_POOL_IDLE_S: u64 = 600;
/// Cap for the pool max lifetime (HikariCP's default maxLifetime, 30 min).
pub(crate) const MAX_LIFETIME_S: u64 = 1800;
/// Headroom of the firewall alternative over the longest client idle.
pub(crate) const FIREWALL_HEADROOM: f64 = 1.25;

/// Largest ladder value `<= x` (at least 1).
pub(crate) fn nice_floor(x: f64) -> u64 {
    LADDER
        .iter()
        .copied()
        .take_while(|&v| (v as f64) <= x)
        .last()
        .unwrap_or(1)
}

/// Smallest ladder value `>= x`; above the ladder, `x` rounded up to a whole day.
pub(crate) fn nice_ceil(x: f64) -> u64 {
    LADDER
        .iter()
        .copied()
        .find(|&v| (v as f64) >= x)
        .unwrap_or_else(|| {
            let days = (x / 86400.0).ceil();
            if days.is_finite() && days > 0.0 {
                days as u64 * 86400
            } else {
                86400
            }
        })
}

/// Planned TCP keepalive for every socket on the path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Keepalive {
    /// TCP_KEEPIDLE / `net.ipv4.tcp_keepalive_time`.
    pub time_s: u64,
    /// TCP_KEEPINTVL / `net.ipv4.tcp_keepalive_intvl`.
    pub intvl_s: u64,
    /// TCP_KEEPCNT / `net.ipv4.tcp_keepalive_probes`.
    pub probes: u32,
    /// A dead peer is detected (connection errors out) this long after the last traffic.
    pub detect_dead_peer_s: u64,
    /// TCP_USER_TIMEOUT to pair with it (ms), = detection time.
    pub tcp_user_timeout_ms: u64,
    /// Path timeout minus `time_s`: how late the first probe may be and still hold the state.
    pub margin_s: f64,
}

/// Planned connection-pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Close connections idle longer than this, seconds.
    pub idle_timeout_s: u64,
    /// Retire connections older than this, seconds.
    pub max_lifetime_s: u64,
}

/// Keepalive values for a path timeout `t` (seconds).
pub fn keepalive(t: f64, probes: u32) -> Keepalive {
    let time_s = nice_floor(t / 2.0).min(LINUX_KEEPALIVE_TIME_S);
    let intvl_s = nice_floor(time_s as f64 / 6.0).min(MAX_INTVL_S);
    let detect = time_s + intvl_s * u64::from(probes);
    Keepalive {
        time_s,
        intvl_s,
        probes,
        detect_dead_peer_s: detect,
        tcp_user_timeout_ms: detect * 1000,
        margin_s: t - time_s as f64,
    }
}

/// Pool limits for a path timeout `t`.
pub fn pool(t: f64) -> Pool {
    let max_lifetime_s = nice_floor(t * 0.75).min(MAX_LIFETIME_S);
    let mut idle_timeout_s = nice_floor(t / 2.0).min(MAX_POOL_IDLE_S);
    if idle_timeout_s >= max_lifetime_s {
        // A pool retires by age first otherwise (HikariCP even disables idleTimeout then).
        idle_timeout_s = LADDER
            .iter()
            .copied()
            .take_while(|&v| v < max_lifetime_s)
            .last()
            .unwrap_or(1);
    }
    Pool {
        idle_timeout_s,
        max_lifetime_s,
    }
}

/// Application heartbeat period for a hop that ignores TCP keepalives, timeout `b`.
pub fn heartbeat(b: f64) -> u64 {
    nice_floor(b / 2.0)
}

/// Conntrack established timeout that outlasts `longest_client_idle_s`.
pub(crate) fn firewall_timeout(longest_client_idle_s: f64) -> u64 {
    nice_ceil(FIREWALL_HEADROOM * longest_client_idle_s.max(LINUX_KEEPALIVE_TIME_S as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_sorted() {
        assert!(LADDER.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rounding() {
        assert_eq!(nice_floor(450.0), 420);
        assert_eq!(nice_floor(420.0), 420);
        assert_eq!(nice_floor(0.3), 1);
        assert_eq!(nice_ceil(9000.0), 10800);
        assert_eq!(nice_ceil(10800.0), 10800);
        assert_eq!(nice_ceil(700_000.0), 9 * 86400);
    }

    #[test]
    fn documented_table() {
        let k = keepalive(900.0, 5);
        assert_eq!(
            (k.time_s, k.intvl_s, k.detect_dead_peer_s, k.margin_s),
            (420, 30, 570, 480.0)
        );
        assert_eq!(k.tcp_user_timeout_ms, 570_000);
        let k = keepalive(350.0, 5);
        assert_eq!((k.time_s, k.intvl_s), (150, 20));
        let k = keepalive(3600.0, 5);
        assert_eq!(
            (k.time_s, k.intvl_s, k.detect_dead_peer_s),
            (1800, 30, 1950),
            "the runbook's values"
        );
        assert_eq!(keepalive(43200.0, 5).time_s, 7200);
        assert_eq!(
            pool(900.0),
            Pool {
                idle_timeout_s: 420,
                max_lifetime_s: 600
            }
        );
        assert_eq!(
            pool(350.0),
            Pool {
                idle_timeout_s: 150,
                max_lifetime_s: 240
            }
        );
        assert_eq!(
            pool(43200.0),
            Pool {
                idle_timeout_s: 600,
                max_lifetime_s: 1800
            }
        );
        assert_eq!(firewall_timeout(3600.0), 10800);
        assert_eq!(firewall_timeout(43200.0), 86400);
    }

    proptest::proptest! {
        /// The invariants the plan promises, for every path timeout the inventory accepts.
        #[test]
        fn values_stay_below_the_path_timeout(t in 2.0f64..2_592_000.0, probes in 1u32..=127) {
            let k = keepalive(t, probes);
            proptest::prop_assert!(k.time_s >= 1 && k.intvl_s >= 1);
            proptest::prop_assert!((k.time_s as f64) <= t / 2.0, "time {} vs {}", k.time_s, t);
            proptest::prop_assert!((k.intvl_s as f64) < t && k.intvl_s <= k.time_s);
            proptest::prop_assert!(k.margin_s >= t / 2.0);
            let p = pool(t);
            proptest::prop_assert!((p.max_lifetime_s as f64) < t);
            proptest::prop_assert!((p.idle_timeout_s as f64) < t);
            proptest::prop_assert!(t < 4.0 || p.idle_timeout_s < p.max_lifetime_s);
            proptest::prop_assert!((heartbeat(t) as f64) <= t / 2.0);
            let f = firewall_timeout(t);
            proptest::prop_assert!(f as f64 >= 1.25 * t && f >= 9000);
        }
    }
}
