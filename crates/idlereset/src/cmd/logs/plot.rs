//! `logs --plot OUT.svg`: the reset events over time, drawn so the diagnosis is visible.
//!
//! - Periodic events: each incident's offset from a schedule that repeats the nominal period
//!   from the first incident, with the fitted line. A wall-clock job stays flat; a timer counted
//!   from connection start climbs by its reconnect time every period. That is the plot the field
//!   report drew by hand to see the drift.
//! - Idle timeout: the idle before every connection line (survived / failed) with the bracket's
//!   two bounds as horizontal lines.
//! - Otherwise: the interval before each incident.

use std::path::Path;

use idlereset_core::duration::Human;
use idlereset_core::logs::Report;
use idlereset_core::logs::analysis::{Analysis, Pattern};
use idlereset_core::logs::idle::IdleSample;
use plotters::prelude::*;

const SIZE: (u32, u32) = (960, 540);
const DARK_GREEN: RGBColor = RGBColor(0, 150, 0);

fn span(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

/// A time unit that gives readable axis numbers for a span of `secs`.
fn unit(secs: f64) -> (f64, &'static str) {
    match secs {
        s if s > 3.0 * 86400.0 => (86400.0, "days"),
        s if s > 3.0 * 3600.0 => (3600.0, "hours"),
        s if s > 180.0 => (60.0, "minutes"),
        _ => (1.0, "seconds"),
    }
}

struct Series {
    caption: String,
    y_desc: String,
    /// (x in seconds since t0, y, failed?)
    points: Vec<(f64, f64, bool)>,
    /// Fitted line through (x seconds, y).
    line: Option<(Vec<(f64, f64)>, String)>,
    /// Horizontal lines (y, label).
    bounds: Vec<(f64, String)>,
}

fn series(analysis: &Analysis, report: &Report, samples: &[IdleSample], t0: f64) -> Series {
    let periodic = analysis.periodicity.as_ref().filter(|p| p.regular);
    match (report.pattern, periodic, analysis.bracket) {
        (Pattern::IdleTimeout, _, Some(b)) if !samples.is_empty() => Series {
            caption: format!(
                "idle-timeout: {} survived, {} failed idles",
                b.survived, b.failed
            ),
            y_desc: "idle before the line (s)".into(),
            points: samples
                .iter()
                .map(|s| (s.t - t0, s.idle_s, s.failed))
                .collect(),
            line: None,
            bounds: [(b.low, "longest survived"), (b.high, "shortest failed")]
                .into_iter()
                .filter_map(|(v, l)| v.map(|v| (v, format!("{l}: {v:.1} s"))))
                .collect(),
        },
        (_, Some(p), _) => Series {
            caption: format!(
                "{}: {} events, period {:.1} s, drift {:+.2} s/day",
                report.pattern.as_str(),
                report.events,
                p.period_s,
                p.drift_s_per_day
            ),
            y_desc: format!(
                "offset from a fixed {} schedule (s)",
                Human(p.nominal_period_s)
            ),
            points: p
                .times
                .iter()
                .zip(&p.deviation_s)
                .map(|(t, y)| (t - t0, *y, true))
                .collect(),
            line: Some((
                p.index
                    .iter()
                    .zip(&p.times)
                    .map(|(&k, t)| (t - t0, p.fit_intercept_s + p.fit_slope_s * k as f64))
                    .collect(),
                format!("fitted: {:+.2} s/day", p.drift_s_per_day),
            )),
            bounds: Vec::new(),
        },
        _ => Series {
            caption: format!("{}: {} events", report.pattern.as_str(), report.events),
            y_desc: "interval before the incident (s)".into(),
            points: analysis
                .incidents
                .iter()
                .zip(std::iter::once(0.0).chain(analysis.intervals_s.iter().copied()))
                .map(|(t, d)| (t - t0, d, true))
                .collect(),
            line: None,
            bounds: Vec::new(),
        },
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Draw the plot to `out` (SVG).
pub fn draw(
    out: &Path,
    analysis: &Analysis,
    report: &Report,
    samples: &[IdleSample],
) -> anyhow::Result<()> {
    let t0 = analysis
        .incidents
        .first()
        .copied()
        .into_iter()
        .chain(samples.first().map(|s| s.t))
        .fold(f64::INFINITY, f64::min);
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    let s = series(analysis, report, samples, t0);
    let (scale, unit_name) = unit(s.points.iter().map(|p| p.0).fold(0.0, f64::max));
    let (x_lo, x_hi) = span(s.points.iter().map(|p| p.0 / scale));
    let (y_lo, y_hi) = span(
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.bounds.iter().map(|b| b.0))
            .chain(s.line.iter().flat_map(|(l, _)| l.iter().map(|p| p.1))),
    );

    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&s.caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "{unit_name} since {}",
            report.first_event.as_deref().unwrap_or("the first event")
        ))
        .y_desc(&s.y_desc)
        .draw()
        .map_err(err)?;
    for (i, (y, label)) in s.bounds.iter().enumerate() {
        let color = if i == 0 { DARK_GREEN } else { RED };
        chart
            .draw_series(LineSeries::new(
                [(x_lo, *y), (x_hi, *y)],
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some((line, label)) = &s.line {
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|(x, y)| (x / scale, *y)),
                BLUE.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.clone())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    let failed: Vec<_> = s
        .points
        .iter()
        .filter(|p| p.2)
        .map(|p| (p.0 / scale, p.1))
        .collect();
    let survived: Vec<_> = s
        .points
        .iter()
        .filter(|p| !p.2)
        .map(|p| (p.0 / scale, p.1))
        .collect();
    if !survived.is_empty() {
        chart
            .draw_series(
                survived
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, DARK_GREEN.filled())),
            )
            .map_err(err)?
            .label("survived")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, DARK_GREEN.filled()));
    }
    chart
        .draw_series(
            failed
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 4, RED.filled())),
        )
        .map_err(err)?
        .label(if survived.is_empty() {
            "reset incidents"
        } else {
            "failed"
        })
        .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_span() {
        assert_eq!(unit(30.0).1, "seconds");
        assert_eq!(unit(3600.0).1, "minutes");
        assert_eq!(unit(86400.0).1, "hours");
        assert_eq!(unit(10.0 * 86400.0).1, "days");
        let (lo, hi) = span([5.0, 5.0].into_iter());
        assert!(lo < 5.0 && hi > 5.0);
    }
}
