//! Absurd timestamps: a line dated `0000-01-01`, an epoch-zero default or a clock set years
//! wrong must not turn a clean pattern into "irregular".
//!
//! An incident is absurd when it lies further from the median incident time than both
//! [`MIN_MARGIN_S`] (30 days) and six median absolute deviations. Those are reported and left
//! out of the analysis, but only when they are a few (at most a quarter of the incidents, and
//! with at least [`MIN_INCIDENTS_FOR_OUTLIERS`] incidents): a log whose bulk really spans years
//! is analysed as it is.

use super::analysis::median;

/// Nothing closer than this to the median incident is absurd.
pub const MIN_MARGIN_S: f64 = 30.0 * 86_400.0;
/// Fewer incidents than this are never filtered.
pub const MIN_INCIDENTS_FOR_OUTLIERS: usize = 3;

/// The `[low, high]` range of plausible incident times, or `None` when nothing is filtered.
pub(crate) fn plausible_range(times: &[f64]) -> Option<(f64, f64)> {
    if times.len() < MIN_INCIDENTS_FOR_OUTLIERS {
        return None;
    }
    let med = median(times);
    let dev: Vec<f64> = times.iter().map(|t| (t - med).abs()).collect();
    let margin = (6.0 * median(&dev)).max(MIN_MARGIN_S);
    let (lo, hi) = (med - margin, med + margin);
    let outside = times.iter().filter(|&&t| t < lo || t > hi).count();
    (outside > 0 && outside * 4 <= times.len()).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_away_are_absurd_weeks_away_are_not() {
        let t0 = 1_715_310_862.0;
        let mut t: Vec<f64> = (0..20).map(|k| t0 + f64::from(k) * 300.0).collect();
        assert_eq!(plausible_range(&t), None);
        t.push(-62_167_219_200.0); // 0000-01-01
        let (lo, hi) = plausible_range(&t).unwrap_or((0.0, 0.0));
        assert!(lo > -62_167_219_200.0 && lo < t0 && hi > t0 + 6000.0);
        // Resets three weeks later are real.
        let later: Vec<f64> = (0..10)
            .map(|k| t0 + 21.0 * 86400.0 + f64::from(k))
            .collect();
        let mut both: Vec<f64> = (0..20).map(|k| t0 + f64::from(k) * 300.0).collect();
        both.extend(later);
        assert_eq!(plausible_range(&both), None);
    }
}
