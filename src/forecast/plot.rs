//! An SVG picture of a forecast: the last day of a series, then from the origin the point
//! forecast with its p50–p95 band and p99 line over the next 48 steps, against what came.
//! Hand-written SVG (no plotting dependency).

use super::{H, SeriesForecaster};
use std::fmt::Write;

/// Replay `rows` up to and including step `origin`, forecast, and draw. None if the series
/// is too short for one day before and 48 steps after the origin.
pub fn svg(rows: &[(i64, f64)], origin: usize, title: &str) -> Option<String> {
    let before = 288usize;
    if origin < before || origin + H >= rows.len() {
        return None;
    }
    let mut f = SeriesForecaster::default();
    for &(ts, v) in &rows[..=origin] {
        f.update(ts, v).ok()?;
    }
    let fc = f.forecast();
    // `left` leaves room for the value labels left of the plot, under the title's row.
    let (w, h, pad, left) = (900.0, 360.0, 40.0, 70.0);
    let n = before + H;
    let actual: Vec<f64> = rows[origin - before + 1..=origin + H]
        .iter()
        .map(|r| r.1)
        .collect();
    let mut hi = actual.iter().copied().fold(0.0, f64::max);
    for q in &fc.quantiles {
        hi = hi.max(q[3] as f64);
    }
    let hi = if hi > 0.0 { hi * 1.05 } else { 1.0 };
    let x = |i: usize| left + (w - left - pad) * i as f64 / (n - 1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / hi;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let _ = writeln!(s, r#"<text x="{left}" y="20">{title}</text>"#);
    // Band p50..p95 (polygon), p99 line, point line.
    let k0 = before - 1; // the origin's index in the picture
    let mut band = String::new();
    for k in 0..H {
        let _ = write!(
            band,
            "{:.1},{:.1} ",
            x(k0 + 1 + k),
            y(fc.quantiles[k][2] as f64)
        );
    }
    for k in (0..H).rev() {
        let _ = write!(
            band,
            "{:.1},{:.1} ",
            x(k0 + 1 + k),
            y(fc.quantiles[k][0] as f64)
        );
    }
    let _ = writeln!(
        s,
        r##"<polygon points="{band}" fill="#9ecae1" fill-opacity="0.6"/>"##
    );
    let line = |vals: &mut dyn Iterator<Item = (usize, f64)>| {
        vals.map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let p99 = line(&mut (0..H).map(|k| (k0 + 1 + k, fc.quantiles[k][3] as f64)));
    let _ = writeln!(
        s,
        r##"<polyline points="{p99}" fill="none" stroke="#3182bd" stroke-dasharray="4 3"/>"##
    );
    let act = line(&mut actual.iter().copied().enumerate());
    let _ = writeln!(
        s,
        r##"<polyline points="{act}" fill="none" stroke="#333" stroke-width="1.2"/>"##
    );
    let pt = line(
        &mut std::iter::once((k0, rows[origin].1))
            .chain((0..H).map(|k| (k0 + 1 + k, fc.point[k] as f64))),
    );
    let _ = writeln!(
        s,
        r##"<polyline points="{pt}" fill="none" stroke="#e6550d" stroke-width="2"/>"##
    );
    // Axes, origin marker, legend.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{left}" y1="{pad}" x2="{left}" y2="{b}" stroke="#999"/><line x1="{xo:.1}" y1="{pad}" x2="{xo:.1}" y2="{b}" stroke="#999" stroke-dasharray="2 2"/>"##,
        b = h - pad,
        r = w - pad,
        xo = x(k0)
    );
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="{zy}" text-anchor="end">0</text><text x="{lx}" y="{ty}" text-anchor="end">{hi:.0}</text><text x="{xo:.1}" y="{ly}">origin</text>"##,
        lx = left - 6.0,
        zy = h - pad + 4.0,
        ly = h - pad + 15.0,
        ty = pad + 4.0,
        xo = x(k0) - 15.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="20" fill="#333">actual</text><text x="{lx2}" y="20" fill="#e6550d">ensemble</text><text x="{lx3}" y="20" fill="#3182bd">p50–p95 band, p99 dashed</text>"##,
        lx = w - 380.0,
        lx2 = w - 325.0,
        lx3 = w - 255.0
    );
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_a_picture() {
        let rows: Vec<(i64, f64)> = (0..700)
            .map(|t| (300 * t as i64, 10.0 + (t % 288) as f64 / 10.0))
            .collect();
        let s = super::svg(&rows, 600, "test").unwrap();
        assert!(s.starts_with("<svg") && s.contains("polygon") && s.ends_with("</svg>\n"));
        assert!(super::svg(&rows, 100, "too early").is_none());
    }

    /// Every text's box, as (left, top, right, bottom), from its x, baseline, anchor and
    /// length (12 px sans-serif: at most 7.5 px a character, 12 px high and 4 below the baseline).
    fn text_boxes(svg: &str) -> Vec<(String, [f64; 4])> {
        let attr = |tag: &str, name: &str| {
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let end = tag[at..].find('"')? + at;
            Some(tag[at..end].to_string())
        };
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let (tag, rest) = t.split_once('>').unwrap();
                let text = rest.split("</text>").next().unwrap().to_string();
                let x: f64 = attr(tag, "x").unwrap().parse().unwrap();
                let y: f64 = attr(tag, "y").unwrap().parse().unwrap();
                let wide = 7.5 * text.chars().count() as f64;
                let x0 = match attr(tag, "text-anchor").as_deref() {
                    Some("end") => x - wide,
                    Some("middle") => x - wide / 2.0,
                    _ => x,
                };
                (text, [x0, y - 12.0, x0 + wide, y + 4.0])
            })
            .collect()
    }

    #[test]
    fn no_label_overlaps_another_or_the_plot() {
        let rows: Vec<(i64, f64)> = (0..700)
            .map(|t| (300 * t as i64, 1000.0 + (t % 288) as f64 * 10.0))
            .collect();
        let s = super::svg(&rows, 600, "8.csv.gz cpu at step 600 <origin>").unwrap();
        assert!(s.contains("&lt;origin&gt;"), "the title is escaped");
        let boxes = text_boxes(&s);
        assert_eq!(boxes.len(), 7, "{boxes:?}");
        for (i, (a, p)) in boxes.iter().enumerate() {
            for (b, q) in &boxes[i + 1..] {
                let apart = p[2] <= q[0] || q[2] <= p[0] || p[3] <= q[1] || q[3] <= p[1];
                assert!(apart, "{a:?} {p:?} overlaps {b:?} {q:?}");
            }
        }
        // The value labels sit left of the plot area (x from 70).
        for (t, b) in boxes.iter().filter(|(t, _)| t.parse::<f64>().is_ok()) {
            assert!(b[2] <= 70.0, "{t:?} {b:?}");
        }
    }
}
