//! `prescient show TENANT`: a tenant's recent usage and its forecast with bands, from the
//! running daemon: sparklines in the terminal, or an SVG picture with `--plot`.

use super::client::call;
use super::collect::utc;
use super::operator::show as value;
use crate::control::action::percent_encode;
use crate::control::view::Explain;
use crate::model::Resource;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The tenant's name or UUID.
    #[arg(value_name = "TENANT")]
    pub tenant: String,
    /// Only this resource (cpu, mem, disk, net); default all four.
    #[arg(long, value_name = "RESOURCE", value_parser = parse_resource)]
    pub resource: Option<Resource>,
    /// Draw it as SVG into FILE (usage, the p50–p95 band, p99 and the allocation).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print the daemon's answer as JSON (the same as `explain --json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: super::client::SocketArg,
}

fn parse_resource(s: &str) -> Result<Resource, String> {
    (Resource::ALL.into_iter())
        .find(|r| r.name() == s)
        .ok_or_else(|| format!("{s:?}: expected cpu, mem, disk or net"))
}

pub fn run(socket: &Path, a: ShowArgs) -> super::CliResult {
    let path = format!("/v1/tenants/{}/explain", percent_encode(&a.tenant));
    let body = call(socket, "GET", &path, None)?;
    if a.json {
        outln!("{}", body.trim_end())?;
        return Ok(());
    }
    let e: Explain = serde_json::from_str(&body)?;
    let resources: Vec<Resource> = match a.resource {
        Some(r) => vec![r],
        None => Resource::ALL.to_vec(),
    };
    if e.steps.is_empty() && e.history.cpu.iter().all(Option::is_none) {
        return Err(format!(
            "{} has no forecast yet: its first bucket ({} s) has not completed, or the host \
             reports no usage for it",
            e.tenant.name, e.bucket_s
        )
        .into());
    }
    match &a.plot {
        Some(file) => {
            std::fs::write(file, svg(&e, &resources))
                .map_err(|err| format!("cannot write {}: {err}", file.display()))?;
            outln!("{} written", file.display())?;
        }
        None => out!("{}", sparklines(&e, &resources))?,
    }
    Ok(())
}

/// The tenant's allocation of `r`, where the host's capacity of it is known (elsewhere the
/// tenant is throttled only at its limit, and the policy's amount means nothing).
fn allocation(e: &Explain, r: Resource) -> Option<f64> {
    let a = e.tenant.allocation.and_then(|a| *a.get(r))?;
    (*e.capacity_known.get(r) && a.is_finite()).then_some(a)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn spark(values: impl Iterator<Item = Option<f64>>, top: f64) -> String {
    values
        .map(|v| match v {
            None => ' ',
            Some(v) => {
                let i = ((v / top).clamp(0.0, 1.0) * 7.0).round() as usize;
                BARS[i]
            }
        })
        .collect()
}

/// The top of a resource's scale: the largest value shown (1 if all are 0).
fn top(e: &Explain, r: Resource) -> f64 {
    let past = e.history.get(r).iter().flatten().copied();
    let bands = e.steps.iter().map(|s| s.band.get(r).p99);
    let top = past
        .chain(bands)
        .chain(allocation(e, r))
        .fold(0.0, f64::max);
    if top > 0.0 { top } else { 1.0 }
}

fn sparklines(e: &Explain, resources: &[Resource]) -> String {
    let mut o = String::new();
    let bucket = humantime::format_duration(std::time::Duration::from_secs(e.bucket_s as u64));
    let _ = writeln!(
        o,
        "{} ({}): {} buckets of {bucket} before {}, then the forecast",
        e.tenant.name,
        e.tenant.class,
        e.history.cpu.len(),
        e.forecast_origin_unix_s
            .map(|t| utc(t * 1000))
            .unwrap_or_else(|| "-".into())
    );
    for &r in resources {
        let t = top(e, r);
        let past = spark(e.history.get(r).iter().copied(), t);
        let p50 = spark(e.steps.iter().map(|s| Some(s.band.get(r).p50)), t);
        let p95 = spark(e.steps.iter().map(|s| Some(s.band.get(r).p95)), t);
        let _ = writeln!(o, "\n{:<4} past {past}│ p50 {p50}", r.name());
        let _ = writeln!(
            o,
            "     {:>width$}│ p95 {p95}",
            "",
            width = past.chars().count() + 5
        );
        let next = e.steps.first().map(|s| *s.band.get(r));
        let _ = writeln!(
            o,
            "     now {}, next p50 {} p95 {}, allocated {}, scale top {}",
            value(r, *e.tenant.usage.get(r)),
            value(r, next.map(|b| b.p50)),
            value(r, next.map(|b| b.p95)),
            value(r, allocation(e, r)),
            value(r, Some(t)),
        );
    }
    let _ = writeln!(o, "\n(cpu in cores, mem in MiB, disk and net in MB/s)");
    o
}

/// One panel per resource: usage, the p50–p95 band, the p99 line and the allocation.
pub fn svg(e: &Explain, resources: &[Resource]) -> String {
    let (w, panel, pad) = (900.0, 220.0, 44.0);
    let h = panel * resources.len() as f64 + 30.0;
    let past = e.history.cpu.len();
    let n = past + e.steps.len();
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n.max(2) - 1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{pad}" y="18" font-size="14">{} ({}): usage, then the forecast from {}</text>"#,
        xml(&e.tenant.name),
        e.tenant.class,
        e.forecast_origin_unix_s
            .map(|t| utc(t * 1000))
            .unwrap_or_else(|| "-".into())
    );
    for (p, &r) in resources.iter().enumerate() {
        let y0 = 30.0 + panel * p as f64;
        let top = top(e, r) * 1.05;
        let (scale, unit) = match r {
            Resource::Cpu => (1.0, "cores"),
            Resource::Mem => (1024.0, "MiB"),
            Resource::Disk | Resource::Net => (1e6, "MB/s"),
        };
        let y = |v: f64| y0 + panel - pad - (panel - 1.5 * pad) * (v / top).clamp(0.0, 1.0);
        let _ = writeln!(
            s,
            r#"<text x="{pad}" y="{:.1}">{r} ({unit}), top {:.2}</text>"#,
            y0 + 14.0,
            top / scale
        );
        let _ = writeln!(
            s,
            r##"<line x1="{pad}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999"/>"##,
            y(0.0),
            w - pad,
            y(0.0)
        );
        // Now: the forecast's origin.
        let xn = x(past.saturating_sub(1));
        let _ = writeln!(
            s,
            r##"<line class="now" x1="{xn:.1}" y1="{:.1}" x2="{xn:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3,3"/>"##,
            y(top),
            y(0.0)
        );
        if !e.steps.is_empty() {
            let mut band = String::new();
            for (k, st) in e.steps.iter().enumerate() {
                let _ = write!(band, "{:.1},{:.1} ", x(past + k), y(st.band.get(r).p95));
            }
            for (k, st) in e.steps.iter().enumerate().rev() {
                let _ = write!(band, "{:.1},{:.1} ", x(past + k), y(st.band.get(r).p50));
            }
            let _ = writeln!(
                s,
                r##"<polygon class="band" points="{band}" fill="#9ecae1" fill-opacity="0.6"><title>p50–p95</title></polygon>"##
            );
            let p99: String = (e.steps.iter().enumerate())
                .map(|(k, st)| format!("{:.1},{:.1} ", x(past + k), y(st.band.get(r).p99)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline class="p99" points="{p99}" fill="none" stroke="#3182bd" stroke-dasharray="4,3"><title>p99</title></polyline>"##
            );
        }
        let usage: String = (e.history.get(r).iter().enumerate())
            .filter_map(|(i, v)| Some(format!("{:.1},{:.1} ", x(i), y((*v)?))))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline class="usage" points="{usage}" fill="none" stroke="#222" stroke-width="1.5"><title>usage</title></polyline>"##
        );
        if let Some(a) = allocation(e, r) {
            let _ = writeln!(
                s,
                r##"<line class="allocation" x1="{xn:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e6550d" stroke-width="1.5"><title>allocation {}</title></line>"##,
                y(a),
                x(n.saturating_sub(1)),
                y(a),
                value(r, Some(a))
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{pad}" y="{:.1}" fill="#555">black: usage per bucket · blue band: forecast p50–p95 · dashed: p99 · orange: allocation</text>"##,
        h - 6.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::{Band, StepBand};
    use crate::model::PerResource;

    fn explain() -> Explain {
        let band = |v: f64| Band {
            p50: v,
            p90: v * 1.2,
            p95: v * 1.3,
            p99: v * 1.5,
        };
        let mut e = Explain {
            bucket_s: 300,
            forecast_origin_unix_s: Some(1_796_300_000),
            ..Default::default()
        };
        e.tenant.name = "web <1>".into();
        e.tenant.allocation = Some(PerResource {
            cpu: Some(2.0),
            mem: Some(4e6),
            disk: None,
            net: None,
        });
        e.capacity_known = PerResource {
            cpu: true,
            mem: true,
            disk: false,
            net: false,
        };
        for r in Resource::ALL {
            *e.history.get_mut(r) = (0..48).map(|i| (i % 5 != 0).then_some(i as f64)).collect();
        }
        e.steps = (0..48)
            .map(|k| StepBand {
                start_unix_s: 1_796_300_000 + 300 * (k + 1),
                band: PerResource {
                    cpu: band(1.0 + k as f64 / 48.0),
                    mem: band(3e6),
                    disk: band(1e6),
                    net: band(1e5),
                },
            })
            .collect();
        e
    }

    #[test]
    fn the_picture_has_usage_bands_p99_and_the_allocation_where_it_means_something() {
        let s = svg(&explain(), &Resource::ALL);
        assert_eq!(s.matches(r#"<polygon class="band""#).count(), 4);
        assert_eq!(s.matches(r#"class="usage""#).count(), 4);
        assert_eq!(s.matches(r#"class="p99""#).count(), 4);
        // Disk and network capacity are unknown: no allocation line there.
        assert_eq!(s.matches(r#"class="allocation""#).count(), 2);
        assert!(s.contains("web &lt;1&gt;"), "names are escaped");
        assert!(s.ends_with("</svg>\n"));
    }

    #[test]
    fn sparklines_show_the_past_and_both_quantiles() {
        let text = sparklines(&explain(), &[Resource::Cpu]);
        assert!(text.contains("past ") && text.contains("p50 ") && text.contains("p95 "));
        assert!(text.contains('█'), "{text}");
    }
}
