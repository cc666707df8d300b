//! The shortfall-versus-slack plot: one line per policy through its knob values.

use crate::sim::metrics::Report;
use plotters::prelude::*;
use std::path::Path;

/// Draw `reports` (grouped by policy, in knob order) as frontiers: overall slack on x,
/// overall weighted shortfall on y.
pub fn frontiers(path: &Path, reports: &[Report]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let mut groups: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in reports {
        let p = (r.overall.slack, r.overall.weighted_shortfall);
        match groups.iter_mut().find(|(n, _)| *n == r.policy) {
            Some(g) => g.1.push(p),
            None => groups.push((r.policy.clone(), vec![p])),
        }
    }
    let max_x = reports
        .iter()
        .map(|r| r.overall.slack)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let max_y = reports
        .iter()
        .map(|r| r.overall.weighted_shortfall)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Weighted shortfall vs slack (mean of cpu, mem, disk, net)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("slack: Σ(allocation − served) / Σ allocation")
        .y_desc("weighted shortfall")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in groups.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
