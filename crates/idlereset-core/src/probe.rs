//! The idle-timeout measurement plan and its bookkeeping, for `idlereset probe`.
//!
//! One connection per idle duration under test ("rung"), each with TCP_KEEPIDLE set to that
//! duration so the kernel sends its first keepalive probe after exactly that much idle. All
//! rungs run at once, so the measurement ends shortly after the first rung above the path's
//! timeout fails, not after a sequence of full-timeout waits. TCP_KEEPIDLE has one-second
//! granularity, so the rungs are whole seconds: every second up to 20 s, then steps of the
//! requested relative precision. When the connection budget cannot cover the range at that
//! precision, a coarse first pass brackets the timeout and refinement passes narrow it.
//!
//! Pure logic: the socket engine lives in `idlereset-linux::probe`.

use serde::{Deserialize, Serialize};

/// Below this many seconds a rung has no phase-shifted copies, and the timer wheel fires its
/// probe well under a second late (256 ms at HZ=250, 640 ms at HZ=100), so the whole second
/// of a measured idle is the rung's TCP_KEEPIDLE.
pub const SHORT_RUNG_S: u32 = 16;

/// How narrow the final bracket must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Precision {
    /// Relative width: (high - low) / low <= p.
    Relative(f64),
    /// Absolute width in seconds.
    Absolute(f64),
}

impl Precision {
    /// Parse `5%` or `5s` / `2m` / `5`.
    pub fn parse(s: &str) -> Result<Precision, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid precision {s:?} (examples: 5%, 2s)"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("precision {s:?} must be between 0 and 100 %"));
            }
            return Ok(Precision::Relative(v / 100.0));
        }
        let d = crate::duration::parse_duration(t).map_err(|e| e.to_string())?;
        if d.as_secs_f64() <= 0.0 {
            return Err("precision must be positive".into());
        }
        Ok(Precision::Absolute(d.as_secs_f64()))
    }

    /// Is a bracket this narrow? One second is always enough: TCP_KEEPIDLE's unit. Below
    /// [`SHORT_RUNG_S`] that floor is two adjacent whole-second rungs, however late the timer
    /// wheel fired either probe: another pass would only sample that lateness again.
    pub fn satisfied(self, low: f64, high: f64) -> bool {
        let w = high - low;
        w <= 1.05
            || (high < f64::from(SHORT_RUNG_S) && high.floor() - low.floor() <= 1.0)
            || match self {
                Precision::Relative(p) => low > 0.0 && w / low <= p + 1e-9,
                Precision::Absolute(a) => w <= a + 1e-9,
            }
    }

    /// Next rung above `d` at this precision (at least one second more).
    fn step(self, d: u32) -> u32 {
        let next = match self {
            Precision::Relative(p) => (f64::from(d) * (1.0 + p)).floor() as u32,
            Precision::Absolute(a) => d + a.floor() as u32,
        };
        next.max(d + 1)
    }
}

/// Whole-second idle durations to test between `min` and `max` (inclusive), at most `budget`.
/// Returns the finest ladder the budget allows: `precision` steps when they fit, otherwise a
/// geometric ladder over the whole range (a coarse first pass).
pub fn ladder(min: u32, max: u32, precision: Precision, budget: usize) -> Vec<u32> {
    let (min, max) = (min.max(1), max.max(min.max(1)));
    let budget = budget.max(2);
    let mut fine = Vec::new();
    let mut d = min;
    while d <= max {
        fine.push(d);
        d = if d < 20 { d + 1 } else { precision.step(d) };
    }
    if fine.last() != Some(&max) {
        fine.push(max);
    }
    if fine.len() <= budget {
        return fine;
    }
    // Geometric over [min, max] with `budget` rungs, deduplicated to whole seconds.
    let ratio = (f64::from(max) / f64::from(min)).powf(1.0 / (budget as f64 - 1.0));
    let mut v: Vec<u32> = (0..budget)
        .map(|i| (f64::from(min) * ratio.powi(i as i32)).round() as u32)
        .collect();
    v.push(max);
    v.sort_unstable();
    v.dedup();
    v
}

/// Refinement rungs strictly inside (low, high).
pub fn refine(low: f64, high: f64, precision: Precision, budget: usize) -> Vec<u32> {
    let lo = low.floor() as u32 + 1;
    let hi = (high.ceil() as u32).saturating_sub(1);
    if lo > hi {
        return Vec::new();
    }
    ladder(lo, hi, precision, budget)
}

/// How a path failed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// A RST came back (a middlebox or the peer forgot the connection).
    Reset,
    /// The keepalive probe was never acknowledged.
    Blackhole,
    /// The peer (or a proxy) closed the idle connection.
    Fin,
    /// Nothing failed up to the maximum.
    None,
}

/// The result of one rung.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RungResult {
    /// The keepalive probe after `idle_s` was acknowledged.
    Survived {
        /// Idle before the probe, seconds.
        idle_s: f64,
    },
    /// Failed with `failure` after `idle_s` of idle.
    Failed {
        /// How it failed.
        failure: Failure,
        /// Idle before the failure, seconds.
        idle_s: f64,
    },
}

/// The running bracket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bracket {
    /// Longest idle that survived.
    pub low: Option<f64>,
    /// Shortest idle that failed, and how.
    pub high: Option<(f64, Failure)>,
}

impl Bracket {
    /// Adds one rung's result: raises `low` or lowers `high` when it is further in.
    pub fn add(&mut self, r: RungResult) {
        match r {
            RungResult::Survived { idle_s } => {
                if self.low.is_none_or(|l| idle_s > l) {
                    self.low = Some(idle_s);
                }
            }
            RungResult::Failed { failure, idle_s } => {
                if self.high.is_none_or(|(h, _)| idle_s < h) {
                    self.high = Some((idle_s, failure));
                }
            }
        }
    }

    /// True when results contradict a single threshold (a survivor above a failure).
    pub fn inconsistent(&self) -> bool {
        matches!((self.low, self.high), (Some(l), Some((h, _))) if l >= h)
    }

    /// How the shortest failure failed ([`Failure::None`] when nothing failed).
    pub fn failure(&self) -> Failure {
        self.high.map(|(_, f)| f).unwrap_or(Failure::None)
    }
}

/// A keepalive setting that holds a path with the measured idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KeepaliveAdvice {
    /// TCP_KEEPIDLE, seconds.
    pub time_s: u32,
    /// TCP_KEEPINTVL, seconds.
    pub intvl_s: u32,
    /// TCP_KEEPCNT, a count of probes.
    pub probes: u32,
    /// Worst-case time to notice a dead peer: time + intvl * probes.
    pub dead_peer_detection_s: u32,
}

/// Keepalive time and interval both below the longest idle that survived, with a margin of a
/// half (first probe) and a sixth (later probes): while idle Linux re-probes every interval, so
/// both must stay below the path timeout.
pub fn advise_keepalive(survived_s: f64) -> KeepaliveAdvice {
    let time_s = ((survived_s * 0.5).floor() as u32).clamp(1, 7200);
    let intvl_s = ((survived_s / 6.0).floor() as u32)
        .clamp(1, time_s.max(1))
        .min(75);
    let probes = 5;
    KeepaliveAdvice {
        time_s,
        intvl_s,
        probes,
        dead_peer_detection_s: time_s + intvl_s * probes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precision() {
        assert_eq!(Precision::parse("5%").unwrap(), Precision::Relative(0.05));
        assert_eq!(Precision::parse("2s").unwrap(), Precision::Absolute(2.0));
        assert!(Precision::parse("0%").is_err());
        assert!(Precision::parse("abc").is_err());
    }

    #[test]
    fn ladder_is_whole_seconds_then_relative_steps() {
        let l = ladder(1, 7200, Precision::Relative(0.05), 1000);
        assert_eq!(&l[..20], &(1..=20).collect::<Vec<_>>()[..]);
        for w in l.windows(2).filter(|w| w[0] >= 20) {
            let step = f64::from(w[1] - w[0]) / f64::from(w[0]);
            assert!(step <= 0.05 + 1e-9 || w[1] - w[0] == 1, "{w:?}");
        }
        assert_eq!(*l.last().unwrap(), 7200);
        assert!(l.len() < 160, "{}", l.len());
    }

    #[test]
    fn small_budget_gives_a_coarse_geometric_pass() {
        let l = ladder(1, 7200, Precision::Relative(0.02), 40);
        assert!(l.len() <= 41, "{}", l.len());
        assert_eq!(l[0], 1);
        assert_eq!(*l.last().unwrap(), 7200);
        let r = refine(300.0, 400.0, Precision::Absolute(1.0), 200);
        assert_eq!(r.first(), Some(&301));
        assert_eq!(r.last(), Some(&399));
    }

    #[test]
    fn bracket_tracks_longest_survivor_and_shortest_failure() {
        let mut b = Bracket::default();
        b.add(RungResult::Survived { idle_s: 8.0 });
        b.add(RungResult::Failed {
            failure: Failure::Reset,
            idle_s: 12.0,
        });
        b.add(RungResult::Survived { idle_s: 9.0 });
        b.add(RungResult::Failed {
            failure: Failure::Reset,
            idle_s: 10.0,
        });
        assert_eq!(b.low, Some(9.0));
        assert_eq!(b.high, Some((10.0, Failure::Reset)));
        assert!(!b.inconsistent());
        assert!(
            Precision::Relative(0.05).satisfied(9.0, 10.0),
            "one second is the floor"
        );
        assert!(!Precision::Absolute(1.0).satisfied(8.0, 10.0));
    }

    #[test]
    fn adjacent_short_rungs_are_enough_however_late_their_probes_fired() {
        // Rung 2 survived at 2.03 s, rung 3 was reset at 3.10 s (its probe 100 ms late).
        assert!(Precision::Relative(0.05).satisfied(2.03, 3.10));
        assert!(Precision::Absolute(0.5).satisfied(9.0, 10.24));
        // Rungs 2 and 4: the 3 s rung is missing, a pass can still narrow it.
        assert!(!Precision::Relative(0.05).satisfied(2.03, 4.01));
        // From 16 s up, phase-shifted copies sample between granules: the width counts.
        assert!(!Precision::Relative(0.01).satisfied(20.0, 21.3));
        assert!(!Precision::Absolute(0.5).satisfied(15.9, 16.98));
    }

    #[test]
    fn advice_stays_below_the_timeout() {
        for s in [3.0, 9.0, 349.0, 899.0, 3599.0, 43199.0] {
            let a = advise_keepalive(s);
            assert!(
                f64::from(a.time_s) < s && f64::from(a.intvl_s) < s,
                "{s}: {a:?}"
            );
        }
    }
}
