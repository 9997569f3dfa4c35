//! `logs --plot OUT.svg`: the reset events drawn against a fixed schedule, with the fitted line.
//!
//! For periodic events the y axis is each incident's offset from a schedule that repeats the
//! nominal period from the first incident: a wall-clock job stays flat, a timer counted from
//! connection start climbs by its reconnect time every period. That is the plot the field report
//! drew by hand to see the drift. Without a period the plot shows the interval before each
//! incident instead.

use std::path::Path;

use idlereset_core::duration::Human;
use idlereset_core::logs::Report;
use idlereset_core::logs::analysis::Analysis;
use plotters::prelude::*;

const SIZE: (u32, u32) = (960, 540);

fn span(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.5);
    (lo - pad, hi + pad)
}

/// Draw the plot; errors carry plotters' message.
pub fn draw(out: &Path, analysis: &Analysis, report: &Report) -> anyhow::Result<()> {
    let t0 = analysis.incidents.first().copied().unwrap_or(0.0);
    let last = analysis.incidents.last().copied().unwrap_or(t0);
    // Hours, or days for logs longer than three days.
    let (scale, unit) = if last - t0 > 3.0 * 86400.0 {
        (86400.0, "days")
    } else {
        (3600.0, "hours")
    };
    let xs: Vec<f64> = analysis
        .incidents
        .iter()
        .map(|t| (t - t0) / scale)
        .collect();
    let periodic = analysis.periodicity.as_ref().filter(|p| p.regular);
    let (ys, y_desc, caption): (Vec<f64>, String, String) = match periodic {
        Some(p) => (
            p.deviation_s.clone(),
            format!(
                "offset from a fixed {} schedule (s)",
                Human(p.nominal_period_s)
            ),
            format!(
                "{}: {} events, period {:.1} s, drift {:+.2} s/day",
                report.pattern.as_str(),
                report.events,
                p.period_s,
                p.drift_s_per_day
            ),
        ),
        None => {
            let mut ys = vec![0.0];
            ys.extend(analysis.intervals_s.iter().copied());
            (
                ys,
                "interval before the incident (s)".into(),
                format!("{}: {} events", report.pattern.as_str(), report.events),
            )
        }
    };
    let (x_lo, x_hi) = span(xs.iter().copied());
    let (y_lo, y_hi) = span(ys.iter().copied());

    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "{unit} since the first incident ({})",
            report.first_event.as_deref().unwrap_or("-")
        ))
        .y_desc(y_desc)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = periodic {
        let line = p
            .index
            .iter()
            .zip(&xs)
            .map(|(&k, &x)| (x, p.fit_intercept_s + p.fit_slope_s * k as f64));
        chart
            .draw_series(LineSeries::new(line, BLUE.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("fitted: {:+.2} s/day", p.drift_s_per_day))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    chart
        .draw_series(
            xs.iter()
                .zip(&ys)
                .map(|(&x, &y)| Circle::new((x, y), 4, RED.filled())),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("reset incidents")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
