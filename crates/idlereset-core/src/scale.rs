//! Time scaling for the lab.
//!
//! The seeds' incidents play over minutes and hours (a 900 s firewall, a 43200 s NAT). The lab
//! replays them in seconds by dividing every configured duration by one factor, so the ratios
//! that decide the outcome (idle gap vs firewall timeout vs keepalive) stay exactly the same.

use std::time::Duration;

/// A time-scale factor: every configured duration is divided by it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    /// Real time (factor 1).
    pub(crate) const REAL: TimeScale = TimeScale(1.0);

    /// A factor; `None` unless it is finite and at least 1.
    pub fn new(factor: f64) -> Option<TimeScale> {
        (factor.is_finite() && factor >= 1.0).then_some(TimeScale(factor))
    }

    /// The factor itself.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// A configured duration in seconds as lab wall time.
    pub fn lab(self, configured_s: f64) -> Duration {
        Duration::from_secs_f64((configured_s / self.0).max(0.0))
    }

    /// A configured duration as whole lab seconds, at least 1: for kernel knobs that only take
    /// whole seconds (conntrack timeouts, TCP_KEEPIDLE).
    pub fn lab_whole_secs(self, configured_s: f64) -> u32 {
        let s = (configured_s / self.0).round();
        s.clamp(1.0, u32::MAX as f64) as u32
    }

    /// A lab wall-time duration expressed back in configured (incident) seconds.
    pub fn configured(self, lab: Duration) -> f64 {
        lab.as_secs_f64() * self.0
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::REAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_durations() {
        let s = TimeScale::new(100.0).expect("valid");
        assert_eq!(s.lab(900.0), Duration::from_secs(9));
        assert_eq!(s.lab_whole_secs(900.0), 9);
        assert_eq!(s.lab_whole_secs(20.0), 1, "never below one second");
        assert!((s.configured(Duration::from_secs(9)) - 900.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(TimeScale::new(0.5).is_none());
        assert!(TimeScale::new(f64::NAN).is_none());
        assert!(TimeScale::new(f64::INFINITY).is_none());
    }
}
