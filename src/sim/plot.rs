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
    let points: Vec<(f64, f64)> = groups.iter().flat_map(|g| g.1.iter().copied()).collect();
    let names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    let (legend_at, max_y) = legend_place(&points, &names, max_x, max_y);
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
        .position(legend_at)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The plotting area in pixels (900 × 600 less the margins, caption and label areas): what
/// the legend's size is reckoned against.
const AREA: (f64, f64) = (900.0 - 40.0 - 70.0, 600.0 - 40.0 - 50.0 - 30.0);

/// Where the legend goes so that it covers no point: the first corner whose box holds none
/// of `points` (on axes 0 … `max_x`, 0 … `max_y`); if every corner holds one, the upper
/// right with the y axis raised to leave the legend a band of its own above every point.
/// Returns the position and the y axis' top.
fn legend_place(
    points: &[(f64, f64)],
    names: &[&str],
    max_x: f64,
    max_y: f64,
) -> (SeriesLabelPosition, f64) {
    // plotters' legend: 12 px text, a 30 px sample, 10 px margins; generous by a few px.
    let chars = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
    let (w, h) = (
        30.0 + 20.0 + 8.0 * chars + 10.0,
        20.0 + 16.0 * names.len() as f64 + 10.0,
    );
    // A point's circle (radius 4) is covered if its centre is within 6 px of the box.
    let pad = 6.0;
    let covers = |left: bool, top: bool, y_top: f64| {
        let (x0, y0) = (
            if left { 5.0 } else { AREA.0 - w - 5.0 },
            if top { 5.0 } else { AREA.1 - h - 5.0 },
        );
        points.iter().any(|&(x, y)| {
            let (px, py) = (AREA.0 * x / max_x, AREA.1 * (1.0 - y / y_top));
            px > x0 - pad && px < x0 + w + pad && py > y0 - pad && py < y0 + h + pad
        })
    };
    use SeriesLabelPosition::*;
    for (pos, left, top) in [
        (UpperRight, false, true),
        (UpperLeft, true, true),
        (LowerLeft, true, false),
        (LowerRight, false, false),
    ] {
        if !covers(left, top, max_y) {
            return (pos, max_y);
        }
    }
    let band = (h + 5.0 + pad) / AREA.1;
    (UpperRight, max_y / (1.0 - band).max(0.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The legend's box and every point's centre, read back from the SVG.
    fn legend_and_points(svg: &str) -> ([f64; 4], Vec<(f64, f64)>) {
        let num = |tag: &str, name: &str| -> f64 {
            let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
        };
        let legend = svg
            .split('<')
            .find(|t| t.starts_with("rect") && t.contains("opacity=\"0.8\""))
            .expect("a legend box");
        let (x, y) = (num(legend, "x"), num(legend, "y"));
        let b = [x, y, x + num(legend, "width"), y + num(legend, "height")];
        let points = (svg.split('<').filter(|t| t.starts_with("circle")))
            .map(|t| (num(t, "cx"), num(t, "cy")))
            .collect();
        (b, points)
    }

    #[test]
    fn the_legend_covers_no_point() {
        let run = |policy: &str, knob: f64, slack: f64, shortfall: f64| Report {
            policy: policy.to_string(),
            knob: Some(knob),
            resources: Default::default(),
            overall: crate::sim::metrics::Metrics {
                slack,
                weighted_shortfall: shortfall,
                ..Default::default()
            },
            prices: None,
            rises: Default::default(),
        };
        // As a sweep on the slice draws them: points in every corner of the plot.
        let reports = vec![
            run("static", 0.0, 0.93, 0.33),
            run("reactive", 0.1, 0.55, 0.46),
            run("reactive", 0.5, 0.77, 0.24),
            run("prescient", 0.3, 0.55, 0.45),
            run("prescient", 1.2, 0.80, 0.29),
            run("prescient", 3.0, 0.87, 0.26),
            run("prescient", 9.0, 0.02, 0.01),
            run("oracle", 0.0, 0.01, 0.45),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.svg");
        frontiers(&path, &reports).unwrap();
        let (b, points) = legend_and_points(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(points.len(), reports.len());
        for (x, y) in points {
            let inside = x > b[0] - 4.0 && x < b[2] + 4.0 && y > b[1] - 4.0 && y < b[3] + 4.0;
            assert!(!inside, "the legend {b:?} covers the point at ({x}, {y})");
        }
    }
}
