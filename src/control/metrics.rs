//! The [`View`] in Prometheus' text exposition, encoded at each scrape with
//! prometheus-client: the Prometheus text format (0.0.4) unless the scraper asks for
//! OpenMetrics in its `Accept` header ([`negotiate`]). Names follow Prometheus' conventions:
//! the `prescient_` prefix, snake case, the base unit last where there is one (a metric per
//! resource where the units differ, a `resource` label where they do not); counters end in
//! `_total`. Memory is in bytes (the pipeline's KiB × 1024), CPU in cores. An unlimited
//! allocation (no known capacity, no limit) has no sample.

use super::view::View;
use crate::leadtime::{LATE_BUCKETS, Outcome};
use crate::model::Resource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The exposition formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text format 0.0.4 (the default).
    Prometheus,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The format for an `Accept` header: OpenMetrics where the scraper accepts it with a
/// higher (or equal) quality than plain text, else Prometheus' text format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let quality = |want: &str| {
        (accept.unwrap_or("").split(','))
            .filter_map(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next()?.to_ascii_lowercase();
                let q = (parts.filter_map(|p| p.strip_prefix("q=")))
                    .find_map(|q| q.parse::<f64>().ok())
                    .unwrap_or(1.0);
                (media == want).then_some(q)
            })
            .fold(None, |best: Option<f64>, q| {
                Some(best.map_or(q, |b| b.max(q)))
            })
    };
    match (
        quality("application/openmetrics-text"),
        quality("text/plain"),
    ) {
        (Some(om), Some(text)) if om >= text && om > 0.0 => Format::OpenMetrics,
        (Some(om), None) if om > 0.0 => Format::OpenMetrics,
        _ => Format::Prometheus,
    }
}

/// A resource's metric name part and the factor from the pipeline's unit to the base unit.
fn unit(r: Resource) -> (&'static str, f64) {
    match r {
        Resource::Cpu => ("cpu_cores", 1.0),
        Resource::Mem => ("memory_bytes", 1024.0),
        Resource::Disk => ("disk_bytes_per_second", 1.0),
        Resource::Net => ("network_bytes_per_second", 1.0),
    }
}

#[derive(Debug)]
struct ViewCollector(Arc<View>);

type Labels = Vec<(&'static str, String)>;

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for ViewCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &self.0;
        let s = &v.status;
        let none: Labels = Vec::new();
        gauges(
            &mut enc,
            "prescient_up",
            "1 while the daemon runs; its version as a label",
            &[(vec![("version", s.version.clone())], 1.0)],
        )?;
        counters(
            &mut enc,
            "prescient_cycles",
            "Control cycles run",
            &[(none.clone(), s.cycles)],
        )?;
        counters(
            &mut enc,
            "prescient_cycle_errors",
            "Control cycles that failed (collection or apply)",
            &[(none.clone(), s.cycle_errors_total)],
        )?;
        if let Some(c) = &s.last_cycle {
            gauges(
                &mut enc,
                "prescient_cycle_duration_seconds",
                "How long the last control cycle took",
                &[(none.clone(), c.duration_s)],
            )?;
            gauges(
                &mut enc,
                "prescient_solve_duration_seconds",
                "How long the policy took to decide in the last cycle",
                &[(none.clone(), c.decide_s)],
            )?;
            gauges(
                &mut enc,
                "prescient_last_cycle_timestamp_seconds",
                "When the last control cycle ran (Unix time)",
                &[(none.clone(), c.at_unix_ms as f64 / 1000.0)],
            )?;
        }
        gauges(
            &mut enc,
            "prescient_paused",
            "1 while allocations are decided but not applied",
            &[(none.clone(), f64::from(u8::from(s.paused)))],
        )?;
        let per_resource = |f: &dyn Fn(Resource) -> Option<f64>| -> Vec<(Labels, f64)> {
            (Resource::ALL.iter())
                .filter_map(|r| Some((vec![("resource", r.name().to_string())], f(*r)?)))
                .collect()
        };
        counters(
            &mut enc,
            "prescient_denials",
            "Changes the hypervisor refused",
            &(Resource::ALL.iter())
                .map(|r| {
                    (
                        vec![("resource", r.name().to_string())],
                        *s.denials_total.get(*r),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let mut rises = Vec::new();
        for r in Resource::ALL {
            for o in Outcome::ALL {
                let labels = vec![
                    ("resource", r.name().to_string()),
                    ("outcome", o.name().to_string()),
                ];
                rises.push((labels, s.rises_total.get(r).get(o)));
            }
        }
        counters(
            &mut enc,
            "prescient_rises",
            "Rises in the tenants' usage by outcome: ahead (the amount in force covered it), late (a later amount did), not_covered (capped until it ended)",
            &rises,
        )?;
        let mut m = enc.encode_descriptor(
            "prescient_rise_late_seconds",
            "Seconds from the start of a late rise until the amount in force covered it",
            None,
            MetricType::Histogram,
        )?;
        for r in Resource::ALL {
            let h = s.rise_late_seconds.get(r);
            let buckets: Vec<(f64, u64)> = (LATE_BUCKETS.iter().copied())
                .chain([f64::INFINITY])
                .enumerate()
                .map(|(i, le)| (le, h.buckets.get(i).copied().unwrap_or(0)))
                .collect();
            m.encode_family(&vec![("resource", r.name().to_string())])?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        if let Some(p) = &s.shadow_prices {
            gauges(
                &mut enc,
                "prescient_shadow_price",
                "The shared price λ of each resource in the last decision of the prescient policy",
                &per_resource(&|r| Some(*p.get(r))),
            )?;
        }
        if let Some(short) = &s.capacity_short {
            gauges(
                &mut enc,
                "prescient_capacity_short",
                "1 if some tenant got less than it asked for because the resource's capacity was short in the last decision",
                &per_resource(&|r| Some(f64::from(u8::from(*short.get(r))))),
            )?;
        }
        gauges(
            &mut enc,
            "prescient_reservations_unmet",
            "1 if the tenants' reservations of the resource exceed what they may have in all (they are squeezed, the lowest classes first)",
            &per_resource(&|r| Some(f64::from(u8::from(*s.reservations_unmet.get(r))))),
        )?;
        for r in Resource::ALL {
            let (u, k) = unit(r);
            gauges(
                &mut enc,
                &format!("prescient_reserved_{u}"),
                "What the tenants' reservations (overrides, metadata, classes) add up to",
                &[(none.clone(), s.reserved.get(r) * k)],
            )?;
        }
        if let Some(h) = &s.host {
            for r in Resource::ALL {
                let (u, k) = unit(r);
                gauges(
                    &mut enc,
                    &format!("prescient_host_capacity_{u}"),
                    "What the tenants may have in all (the host's capacity less its reserve)",
                    &h.capacity
                        .get(r)
                        .map(|c| vec![(none.clone(), c * k)])
                        .unwrap_or_default(),
                )?;
            }
        }
        let tenant = |t: &super::view::TenantView| -> Labels {
            vec![
                ("tenant", t.name.clone()),
                ("uuid", t.uuid.clone()),
                ("class", t.class.name().to_string()),
            ]
        };
        for r in Resource::ALL {
            let (u, k) = unit(r);
            let usage: Vec<_> = (v.tenants.iter())
                .filter_map(|t| Some((tenant(t), (*t.usage.get(r))? * k)))
                .collect();
            gauges(
                &mut enc,
                &format!("prescient_tenant_usage_{u}"),
                "What the tenant used in the last interval",
                &usage,
            )?;
            let mut forecast = Vec::new();
            for t in &v.tenants {
                if let Some(f) = &t.forecast {
                    let b = f.get(r);
                    for (q, x) in [
                        ("0.5", b.p50),
                        ("0.9", b.p90),
                        ("0.95", b.p95),
                        ("0.99", b.p99),
                    ] {
                        let mut l = tenant(t);
                        l.push(("quantile", q.to_string()));
                        forecast.push((l, x * k));
                    }
                }
            }
            gauges(
                &mut enc,
                &format!("prescient_tenant_forecast_{u}"),
                "The forecast of the coming bucket, by quantile",
                &forecast,
            )?;
            let alloc: Vec<_> = (v.tenants.iter())
                .filter_map(|t| Some((tenant(t), (*t.allocation?.get(r))? * k)))
                .filter(|(_, x)| x.is_finite())
                .collect();
            gauges(
                &mut enc,
                &format!("prescient_tenant_allocation_{u}"),
                "What the policy decided for the coming interval",
                &alloc,
            )?;
        }
        let mut capped = Vec::new();
        for t in &v.tenants {
            for r in Resource::ALL {
                let mut l = tenant(t);
                l.push(("resource", r.name().to_string()));
                capped.push((l, f64::from(u8::from(*t.capped.get(r)))));
            }
        }
        gauges(
            &mut enc,
            "prescient_tenant_capped",
            "1 if the tenant ran into its cap in the last interval (a shortfall)",
            &capped,
        )?;
        let mut weights = Vec::new();
        for e in &v.explains {
            for r in Resource::ALL {
                for w in e.weights.get(r) {
                    let mut l = tenant(&e.tenant);
                    l.push(("resource", r.name().to_string()));
                    l.push(("model", w.model.clone()));
                    weights.push((l, w.weight as f64));
                }
            }
        }
        gauges(
            &mut enc,
            "prescient_tenant_model_weight",
            "The heaviest models' weights in the coming bucket's forecast",
            &weights,
        )?;
        Ok(())
    }
}

/// The metrics of `view` in `format`.
pub fn render(view: Arc<View>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ViewCollector(view)));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    match format {
        Format::OpenMetrics => out,
        Format::Prometheus => to_prometheus_text(&out),
    }
}

/// OpenMetrics text as prometheus-client writes it, in Prometheus' text format 0.0.4: a
/// counter's family is named as its samples (with `_total`), and there is no `# EOF`.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = (openmetrics.lines())
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::TenantView;
    use crate::model::PerResource;

    #[test]
    fn the_format_follows_accept() {
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        // Prometheus' own scrape header prefers OpenMetrics.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0.2, text/plain")),
            Format::Prometheus
        );
    }

    #[test]
    fn prometheus_text_names_counters_as_their_samples_and_unlimited_has_no_sample() {
        let mut view = View::default();
        view.status.cycles = 3;
        view.tenants.push(TenantView {
            name: "t".into(),
            allocation: Some(PerResource {
                cpu: Some(1.5),
                mem: Some(1024.0),
                disk: None,
                net: None,
            }),
            ..Default::default()
        });
        let view = Arc::new(view);
        let text = render(view.clone(), Format::Prometheus);
        assert!(
            text.contains("# TYPE prescient_cycles_total counter\n"),
            "{text}"
        );
        assert!(text.contains("prescient_cycles_total 3\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("prescient_tenant_allocation_cpu_cores{"),
            "{text}"
        );
        assert!(
            !text.contains("prescient_tenant_allocation_disk_bytes_per_second"),
            "{text}"
        );
        assert!(text.contains("prescient_tenant_capped{"), "{text}");
        let om = render(view, Format::OpenMetrics);
        assert!(om.contains("# TYPE prescient_cycles counter\n") && om.ends_with("# EOF\n"));
    }

    #[test]
    fn rise_counters_and_the_late_histogram_are_zeros_before_any_rise() {
        let text = render(Arc::new(View::default()), Format::Prometheus);
        assert!(
            text.contains("# TYPE prescient_rises_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE prescient_rise_late_seconds histogram\n"),
            "{text}"
        );
        for r in ["cpu", "mem", "disk", "net"] {
            for o in ["ahead", "late", "not_covered"] {
                let line = format!("prescient_rises_total{{resource=\"{r}\",outcome=\"{o}\"}} 0\n");
                assert!(text.contains(&line), "{line} missing in\n{text}");
            }
            for line in [
                format!("prescient_rise_late_seconds_count{{resource=\"{r}\"}} 0\n"),
                format!("prescient_rise_late_seconds_sum{{resource=\"{r}\"}} 0.0\n"),
                format!("prescient_rise_late_seconds_bucket{{le=\"10.0\",resource=\"{r}\"}} 0\n"),
                format!("prescient_rise_late_seconds_bucket{{le=\"+Inf\",resource=\"{r}\"}} 0\n"),
            ] {
                assert!(text.contains(&line), "{line} missing in\n{text}");
            }
        }
        // A late rise of 12 s: in the 20 s bucket and above, cumulatively.
        let mut view = View::default();
        view.status.rises_total.cpu.late = 1;
        let mut h = crate::leadtime::LateHistogram {
            buckets: vec![0; LATE_BUCKETS.len() + 1],
            sum: 12.0,
            count: 1,
        };
        h.buckets[4] = 1;
        view.status.rise_late_seconds.cpu = h;
        let text = render(Arc::new(view), Format::Prometheus);
        for line in [
            "prescient_rises_total{resource=\"cpu\",outcome=\"late\"} 1\n",
            "prescient_rise_late_seconds_bucket{le=\"10.0\",resource=\"cpu\"} 0\n",
            "prescient_rise_late_seconds_bucket{le=\"20.0\",resource=\"cpu\"} 1\n",
            "prescient_rise_late_seconds_bucket{le=\"+Inf\",resource=\"cpu\"} 1\n",
            "prescient_rise_late_seconds_sum{resource=\"cpu\"} 12.0\n",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
