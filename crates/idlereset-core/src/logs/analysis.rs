//! From reset times to a diagnosis: intervals, period, jitter, drift against the wall clock, and
//! which pattern the events follow.
//!
//! # Method and thresholds
//!
//! 1. **Incidents.** One reset usually logs several lines (error, stack trace, "reconnecting");
//!    events closer than the merge window (default [`DEFAULT_MERGE_WINDOW_S`]) form one incident,
//!    timed by its first line.
//! 2. **Period.** With at least [`MIN_INCIDENTS`] incidents, the median interval `P0` gives each
//!    interval a number of periods `m = round(d / P0)` (so a missed event counts twice), and a
//!    least-squares line `t = a + P·k` through (period index, time) gives the period `P` and the
//!    jitter (standard deviation of the residuals). The events are **regular** when the jitter is
//!    at most [`MAX_REL_JITTER`] of `P`; otherwise the pattern is `irregular`.
//! 3. **Drift.** The nominal period `P_nom` is `P` rounded to what a scheduler would use: whole
//!    seconds below 120 s, whole minutes above. `drift_s_per_day = (P − P_nom)·86400/P` is how
//!    far the events' time of day moves per day, and the *phase wander* `D = (P − P_nom)·n` is how
//!    far it moved over the `n` periods observed.
//! 4. **Pattern.** A timer that restarts with every connection fires at `T + reconnect time`
//!    after the previous reset: every interval is at least the nominal period and the time of day
//!    only moves forward. A wall-clock schedule (cron) fires at the same time of day, with a
//!    start-up jitter on both sides and no drift. So, for regular events, with `tick` the
//!    timestamps' resolution (at least 1 ms):
//!    - `connection-age-timer` when `|D| > max(3·jitter, 2·tick)` (it moved further than jitter
//!      explains; a cron job cannot), or when `D ≥ tick` and no interval is shorter than its
//!      nominal length by more than half a tick (monotone forward drift; a cron job's start-up
//!      jitter makes some intervals shorter than the period);
//!    - `wall-clock-schedule` otherwise.
//!
//!    When lines also carry connection ids and the [idle bracket](super::idle) is consistent
//!    (`low < high`), the failures are explained by idle and the pattern is `idle-timeout`
//!    whatever the timing says.
//! 5. **Confidence.** `high` with at least 6 intervals, `medium` with 3-5, `low` with 2: three
//!    events (the field report's case) cannot rule out a cron job that happened to start one
//!    second later each time.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::idle::Bracket;

/// Events closer than this (seconds) are one incident.
pub const DEFAULT_MERGE_WINDOW_S: f64 = 2.0;
/// Fewest incidents for a periodic pattern.
pub const MIN_INCIDENTS: usize = 3;
/// Longest gap, in periods, still read as missed events rather than as no period at all.
pub(crate) const MAX_MISSED_PERIODS: f64 = 10_000.0;
/// Largest jitter, relative to the period, for events to count as regular.
pub const MAX_REL_JITTER: f64 = 0.05;

/// The pattern the reset events follow (JSON: kebab-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// A timer restarted with every connection: each reset comes a fixed time after the previous
    /// one plus the reconnect time, so the time of day drifts forward.
    ConnectionAgeTimer,
    /// A wall-clock schedule (cron): the same time of day, jitter on both sides, no drift.
    WallClockSchedule,
    /// Failures explained by idle: a consistent idle bracket from the connections' lines.
    IdleTimeout,
    /// Jitter above [`MAX_REL_JITTER`] of the period, or too few incidents.
    Irregular,
}

impl Pattern {
    /// The kebab-case name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::ConnectionAgeTimer => "connection-age-timer",
            Pattern::WallClockSchedule => "wall-clock-schedule",
            Pattern::IdleTimeout => "idle-timeout",
            Pattern::Irregular => "irregular",
        }
    }
}

/// How much the evidence supports the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// Two intervals or fewer.
    Low,
    /// Three to five intervals.
    Medium,
    /// Six intervals or more.
    High,
}

/// The periodic fit of the incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Periodicity {
    /// Fitted period (slope of the line), seconds.
    pub period_s: f64,
    /// The period a scheduler would use (whole seconds below 120 s, whole minutes above).
    pub nominal_period_s: f64,
    /// Standard deviation of the residuals, seconds.
    pub jitter_s: f64,
    /// How far the fitted period is from the nominal one, seconds per day.
    pub drift_s_per_day: f64,
    /// How far the time of day moved over the observation, seconds.
    pub phase_wander_s: f64,
    /// Jitter small enough (below [`MAX_REL_JITTER`] of the period) for a scheduler.
    pub regular: bool,
    /// The incident times fitted, seconds since the epoch.
    pub times: Vec<f64>,
    /// Period index of each incident (0 for the first).
    pub index: Vec<u64>,
    /// Each incident's offset from the nominal schedule started at the first one, seconds.
    pub deviation_s: Vec<f64>,
    /// The fitted line in the same coordinates: `fit_intercept_s + fit_slope_s * index`.
    pub fit_intercept_s: f64,
    /// Slope of the fitted line: seconds per period index.
    pub fit_slope_s: f64,
}

/// The diagnosis of one set of reset times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// The pattern diagnosed.
    pub pattern: Pattern,
    /// How much the evidence supports it.
    pub confidence: Confidence,
    /// Incident start times, seconds since the epoch, sorted.
    pub incidents: Vec<f64>,
    /// Gaps between consecutive incidents, seconds.
    pub intervals_s: Vec<f64>,
    /// The periodic fit, when there are at least [`MIN_INCIDENTS`] incidents.
    pub periodicity: Option<Periodicity>,
    /// The idle bracket from lines tied to connections, when any.
    pub bracket: Option<Bracket>,
    /// Time of day of the first incident (in the analysis zone), `HH:MM:SS`.
    pub first_time_of_day: Option<String>,
    /// One sentence saying why this pattern.
    pub reason: String,
    /// Set when the pattern comes from the connections' own series (see [`per_connection`]).
    pub per_connection: Option<PerConnection>,
}

/// The connections' own reset series, for pools whose connections each run a timer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerConnection {
    /// Connections with at least [`MIN_INCIDENTS`] incidents.
    pub fitted: usize,
    /// Of those, how many reset regularly with the same nominal period.
    pub regular: usize,
    /// Median fitted period of the regular ones, seconds.
    pub period_s: f64,
    /// Median drift of the regular ones, seconds per day.
    pub drift_s_per_day: f64,
}

/// Group sorted event times into incidents (first time of each burst).
pub fn incidents(sorted: &[f64], merge_window_s: f64) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for &t in sorted {
        if t - last > merge_window_s {
            out.push(t);
        }
        last = t;
    }
    out
}

/// Median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn nominal(period: f64) -> f64 {
    let unit = if period < 120.0 { 1.0 } else { 60.0 };
    ((period / unit).round() * unit).max(unit)
}

/// Fit a period through incident times (sorted, seconds). `None` with fewer than
/// [`MIN_INCIDENTS`] or a zero median interval. `p0_hint` is the median interval when the times
/// are a sample of a longer series (the sample's own intervals are multiples of the period).
pub fn fit_period(incidents: &[f64], p0_hint: Option<f64>) -> Option<Periodicity> {
    if incidents.len() < MIN_INCIDENTS {
        return None;
    }
    let intervals: Vec<f64> = incidents.windows(2).map(|w| w[1] - w[0]).collect();
    let p0 = p0_hint.unwrap_or_else(|| median(&intervals));
    if !(p0.is_finite() && p0 > 0.0) {
        return None;
    }
    let mut index = vec![0u64];
    for d in &intervals {
        let m = (d / p0).round().max(1.0);
        // A gap of thousands of periods is not a missed event: no period to fit.
        if m > MAX_MISSED_PERIODS {
            return None;
        }
        index.push(index.last().copied().unwrap_or(0).saturating_add(m as u64));
    }
    let t0 = incidents[0];
    let xs: Vec<f64> = index.iter().map(|&k| k as f64).collect();
    let ys: Vec<f64> = incidents.iter().map(|t| t - t0).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ssr: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let dof = (n - 2.0).max(1.0);
    let jitter = (ssr / dof).sqrt();
    let p_nom = nominal(slope);
    let periods = index.last().copied().unwrap_or(0) as f64;
    Some(Periodicity {
        period_s: slope,
        nominal_period_s: p_nom,
        jitter_s: jitter,
        drift_s_per_day: (slope - p_nom) * 86400.0 / slope,
        phase_wander_s: (slope - p_nom) * periods,
        regular: slope > 0.0 && jitter <= MAX_REL_JITTER * slope,
        deviation_s: xs.iter().zip(&ys).map(|(x, y)| y - x * p_nom).collect(),
        times: incidents.to_vec(),
        index,
        fit_intercept_s: intercept,
        fit_slope_s: slope - p_nom,
    })
}

/// Classify incidents (sorted, seconds since the epoch). `tick` is the timestamps' resolution in
/// seconds; `bracket` the idle bracket when connection ids allowed one; `p0_hint` the median
/// interval when `incidents` is a sample (see [`fit_period`]).
pub fn analyse(
    incidents: Vec<f64>,
    tick: f64,
    bracket: Option<Bracket>,
    tz: &TimeZone,
    p0_hint: Option<f64>,
) -> Analysis {
    let tick = tick.max(0.001);
    let intervals_s: Vec<f64> = incidents.windows(2).map(|w| w[1] - w[0]).collect();
    let periodicity = fit_period(&incidents, p0_hint);
    let first_time_of_day = incidents.first().and_then(|&t| time_of_day(t, tz));
    let confidence = match intervals_s.len() {
        0..=2 => Confidence::Low,
        3..=5 => Confidence::Medium,
        _ => Confidence::High,
    };
    let (pattern, reason) = match (&bracket, &periodicity) {
        (Some(b), _) if b.consistent() => (
            Pattern::IdleTimeout,
            format!(
                "{} idle periods survived (longest {:.1} s) and {} failed (shortest {:.1} s): the failures follow idle time",
                b.survived,
                b.low.unwrap_or(0.0),
                b.failed,
                b.high.unwrap_or(0.0)
            ),
        ),
        (_, Some(p)) if p.regular => classify_regular(p, &intervals_s, tick),
        (_, Some(p)) => (
            Pattern::Irregular,
            format!(
                "intervals vary too much (jitter {:.1} s is over {:.0}% of {:.1} s)",
                p.jitter_s,
                MAX_REL_JITTER * 100.0,
                p.period_s
            ),
        ),
        (_, None) => (
            Pattern::Irregular,
            format!(
                "{} incident(s): at least {MIN_INCIDENTS} are needed to find a period",
                incidents.len()
            ),
        ),
    };
    let confidence = if pattern == Pattern::IdleTimeout {
        match bracket.map_or(0, |b| b.failed.min(b.survived)) {
            0..=1 => Confidence::Low,
            2..=4 => Confidence::Medium,
            _ => Confidence::High,
        }
    } else {
        confidence
    };
    Analysis {
        pattern,
        confidence,
        incidents,
        intervals_s,
        periodicity,
        bracket,
        first_time_of_day,
        reason,
        per_connection: None,
    }
}

/// A pool interleaves its connections' resets, so the pooled series can look irregular while
/// each connection (slot id such as `conn=3`, reused across reconnects) resets like clockwork.
/// When the pooled analysis is `irregular` and at least two connections, and at least half of
/// those with [`MIN_INCIDENTS`] incidents, are regular with nominal periods within 2 % of their
/// median, the pattern is the majority verdict of those connections (ties go to
/// `wall-clock-schedule`, the weaker claim), and the plot uses the longest series.
pub fn per_connection(pooled: Analysis, by_connection: &[Vec<f64>], tick: f64) -> Analysis {
    if pooled.pattern != Pattern::Irregular {
        return pooled;
    }
    let tick = tick.max(0.001);
    let fits: Vec<Periodicity> = by_connection
        .iter()
        .filter_map(|t| fit_period(t, None))
        .collect();
    let regular: Vec<&Periodicity> = fits.iter().filter(|p| p.regular).collect();
    if regular.len() < 2 || regular.len() * 2 < fits.len() {
        return pooled;
    }
    let nominal = median(
        &regular
            .iter()
            .map(|p| p.nominal_period_s)
            .collect::<Vec<_>>(),
    );
    if regular
        .iter()
        .any(|p| (p.nominal_period_s - nominal).abs() > 0.02 * nominal)
    {
        return pooled;
    }
    let verdicts: Vec<(Pattern, String)> = regular
        .iter()
        .map(|p| {
            let intervals: Vec<f64> = p.times.windows(2).map(|w| w[1] - w[0]).collect();
            classify_regular(p, &intervals, tick)
        })
        .collect();
    let age = verdicts
        .iter()
        .filter(|v| v.0 == Pattern::ConnectionAgeTimer)
        .count();
    let pattern = if age * 2 > verdicts.len() {
        Pattern::ConnectionAgeTimer
    } else {
        Pattern::WallClockSchedule
    };
    let Some((best, why)) = regular
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.0 == pattern)
        .max_by_key(|(p, _)| p.times.len())
    else {
        return pooled;
    };
    let intervals: usize = regular
        .iter()
        .map(|p| p.times.len().saturating_sub(1))
        .sum();
    let per = PerConnection {
        fitted: fits.len(),
        regular: regular.len(),
        period_s: median(&regular.iter().map(|p| p.period_s).collect::<Vec<_>>()),
        drift_s_per_day: median(
            &regular
                .iter()
                .map(|p| p.drift_s_per_day)
                .collect::<Vec<_>>(),
        ),
    };
    Analysis {
        pattern,
        confidence: match intervals {
            0..=2 => Confidence::Low,
            3..=5 => Confidence::Medium,
            _ => Confidence::High,
        },
        periodicity: Some((*best).clone()),
        reason: format!(
            "pooled resets interleave, but {} of {} connections each reset on their own schedule; longest series: {}",
            per.regular, per.fitted, why.1
        ),
        per_connection: Some(per),
        ..pooled
    }
}

fn classify_regular(p: &Periodicity, intervals: &[f64], tick: f64) -> (Pattern, String) {
    let d = p.phase_wander_s;
    let mut k_prev = 0u64;
    let mut never_short = true;
    for (i, dt) in intervals.iter().enumerate() {
        let k = p.index.get(i + 1).copied().unwrap_or(k_prev + 1);
        if *dt < (k - k_prev) as f64 * p.nominal_period_s - tick / 2.0 {
            never_short = false;
        }
        k_prev = k;
    }
    let beyond_jitter = d.abs() > (3.0 * p.jitter_s).max(2.0 * tick);
    if beyond_jitter || (d >= tick && never_short) {
        let why = if beyond_jitter {
            "more than jitter explains"
        } else {
            "forward only, no interval shorter than the period"
        };
        (
            Pattern::ConnectionAgeTimer,
            format!(
                "period {:.1} s drifts {:+.2} s/day against the wall clock ({:+.2} s over the log, {why}): a timer counted from connection start",
                p.period_s, p.drift_s_per_day, d
            ),
        )
    } else {
        (
            Pattern::WallClockSchedule,
            format!(
                "period {:.1} s holds its time of day (moved {:+.2} s over the log, jitter {:.2} s): a wall-clock schedule such as cron",
                p.period_s, d, p.jitter_s
            ),
        )
    }
}

/// `HH:MM:SS` of an epoch time in `tz`.
pub fn time_of_day(t: f64, tz: &TimeZone) -> Option<String> {
    let secs = t.floor();
    let ts = Timestamp::new(secs as i64, 0).ok()?;
    let z = ts.to_zoned(tz.clone());
    Some(format!(
        "{:02}:{:02}:{:02}",
        z.hour(),
        z.minute(),
        z.second()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAY: f64 = 86400.0;
    const T0: f64 = 1_715_310_862.0; // 2024-05-10T03:14:22Z

    fn run(times: &[f64], tick: f64) -> Analysis {
        analyse(
            incidents(times, DEFAULT_MERGE_WINDOW_S),
            tick,
            None,
            &TimeZone::UTC,
            None,
        )
    }

    #[test]
    fn field_report_is_a_connection_age_timer() {
        // 03:14:22, 15:14:23, 03:14:23 (next day): 12 h, drifting.
        let a = run(&[T0, T0 + 43201.0, T0 + 86401.0], 1.0);
        assert_eq!(a.pattern, Pattern::ConnectionAgeTimer, "{}", a.reason);
        let p = a.periodicity.unwrap();
        assert_eq!(p.nominal_period_s, 43200.0);
        assert!(
            (p.drift_s_per_day - 1.0).abs() < 0.01,
            "{}",
            p.drift_s_per_day
        );
        assert_eq!(a.confidence, Confidence::Low);
        assert_eq!(a.first_time_of_day.as_deref(), Some("03:14:22"));
    }

    #[test]
    fn long_age_timer_with_jitter_is_high_confidence() {
        // Timer 43200 s + 1 s reconnect, with up to 0.4 s of handling jitter either way.
        let jit = [0.0, 0.3, -0.2, 0.4, -0.4, 0.1, 0.0, -0.3, 0.2];
        let mut t = Vec::new();
        let mut start = T0;
        for j in jit {
            t.push(start + j);
            start += 43201.0;
        }
        let a = run(&t, 0.001);
        assert_eq!(a.pattern, Pattern::ConnectionAgeTimer, "{}", a.reason);
        assert_eq!(a.confidence, Confidence::High);
        let p = a.periodicity.unwrap();
        assert!(
            (p.drift_s_per_day - 2.0).abs() < 0.1,
            "{}",
            p.drift_s_per_day
        );
    }

    #[test]
    fn cron_is_a_wall_clock_schedule() {
        // Daily at 03:00 plus 0-3 s of start-up jitter, whole-second timestamps.
        let jit = [2.0, 0.0, 3.0, 1.0, 0.0, 2.0, 1.0, 3.0];
        let base = 1_715_310_000.0 - (1_715_310_000.0 % DAY) + 3.0 * 3600.0;
        let t: Vec<f64> = jit
            .iter()
            .enumerate()
            .map(|(i, j)| base + i as f64 * DAY + j)
            .collect();
        let a = run(&t, 1.0);
        assert_eq!(a.pattern, Pattern::WallClockSchedule, "{}", a.reason);
        let p = a.periodicity.unwrap();
        assert!(p.drift_s_per_day.abs() < 0.5, "{}", p.drift_s_per_day);
        assert_eq!(a.first_time_of_day.as_deref(), Some("03:00:02"));
    }

    #[test]
    fn missed_events_and_bursts_keep_the_period() {
        // Hourly timer, the third reset missing from the log, each reset logged as 3 lines.
        let mut t = Vec::new();
        for k in [0.0, 1.0, 3.0, 4.0, 5.0] {
            let at = T0 + k * 3630.0;
            t.extend([at, at + 0.2, at + 1.0]);
        }
        let a = run(&t, 0.001);
        assert_eq!(a.incidents.len(), 5);
        let p = a.periodicity.unwrap();
        assert!((p.period_s - 3630.0).abs() < 1e-6);
        assert_eq!(p.index, vec![0, 1, 3, 4, 5]);
        assert_eq!(a.pattern, Pattern::ConnectionAgeTimer);
    }

    #[test]
    fn pool_of_age_timers_is_found_per_connection() {
        // Four pool slots, each cut 3600 s after it (re)connected, reconnecting in 2 s; slots
        // started at unrelated times, so the pooled series is irregular.
        let starts = [0.0, 1234.0, 2011.0, 2950.0];
        let series: Vec<Vec<f64>> = starts
            .iter()
            .map(|s| (0..6).map(|k| T0 + s + f64::from(k) * 3602.0).collect())
            .collect();
        let mut all: Vec<f64> = series.iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        let pooled = analyse(
            incidents(&all, DEFAULT_MERGE_WINDOW_S),
            0.001,
            None,
            &TimeZone::UTC,
            None,
        );
        assert_eq!(pooled.pattern, Pattern::Irregular);
        let a = per_connection(pooled, &series, 0.001);
        assert_eq!(a.pattern, Pattern::ConnectionAgeTimer, "{}", a.reason);
        let per = a.per_connection.unwrap();
        assert_eq!((per.fitted, per.regular), (4, 4));
        assert!((per.period_s - 3602.0).abs() < 1e-6);
        assert_eq!(a.periodicity.unwrap().nominal_period_s, 3600.0);
        assert_eq!(a.incidents.len(), 24, "the pooled incidents are kept");
        // Random per-connection series stay irregular.
        let noise: Vec<Vec<f64>> = vec![vec![T0, T0 + 10.0, T0 + 900.0, T0 + 950.0]; 3];
        let pooled = analyse(
            incidents(&all, DEFAULT_MERGE_WINDOW_S),
            0.001,
            None,
            &TimeZone::UTC,
            None,
        );
        assert_eq!(
            per_connection(pooled, &noise, 0.001).pattern,
            Pattern::Irregular
        );
    }

    #[test]
    fn random_events_are_irregular() {
        let t = [
            T0,
            T0 + 100.0,
            T0 + 2500.0,
            T0 + 2900.0,
            T0 + 9000.0,
            T0 + 9100.0,
        ];
        let a = run(&t, 1.0);
        assert_eq!(a.pattern, Pattern::Irregular, "{}", a.reason);
        assert_eq!(run(&[T0, T0 + 60.0], 1.0).pattern, Pattern::Irregular);
        assert_eq!(run(&[], 1.0).pattern, Pattern::Irregular);
    }

    proptest::proptest! {
        #[test]
        fn analysis_never_panics(mut times in proptest::collection::vec(-1e12f64..1e12, 0..40), merge in 0f64..10.0) {
            times.sort_by(f64::total_cmp);
            let a = analyse(incidents(&times, merge), 0.0, None, &TimeZone::UTC, None);
            proptest::prop_assert!(a.incidents.len() <= times.len());
        }
    }

    #[test]
    fn consistent_bracket_means_idle_timeout() {
        let b = Bracket {
            low: Some(880.0),
            high: Some(905.0),
            survived: 5,
            failed: 3,
            connections: 4,
        };
        let a = analyse(vec![T0, T0 + 50.0], 0.001, Some(b), &TimeZone::UTC, None);
        assert_eq!(a.pattern, Pattern::IdleTimeout);
        assert_eq!(a.confidence, Confidence::Medium);
        let bad = Bracket {
            low: Some(950.0),
            ..b
        };
        assert_eq!(
            analyse(vec![T0, T0 + 50.0], 0.001, Some(bad), &TimeZone::UTC, None).pattern,
            Pattern::Irregular
        );
    }
}
