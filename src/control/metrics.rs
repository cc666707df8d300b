//! The [`View`] in Prometheus' text exposition (OpenMetrics), encoded at each scrape with
//! prometheus-client. Names carry the `prescient_` prefix and their base unit; counters end
//! in `_total`. Memory is in bytes (the pipeline's KiB × 1024), CPU in cores.

use super::view::View;
use crate::model::Resource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        if let Some(p) = &s.shadow_prices {
            gauges(
                &mut enc,
                "prescient_shadow_price",
                "The shared price λ of each resource in the last decision (0: capacity ample)",
                &per_resource(&|r| Some(*p.get(r))),
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
                .filter_map(|t| Some((tenant(t), t.allocation?.get(r) * k)))
                .filter(|(_, x)| x.is_finite())
                .collect();
            gauges(
                &mut enc,
                &format!("prescient_tenant_allocation_{u}"),
                "What the policy decided for the coming interval",
                &alloc,
            )?;
            let shortfall: Vec<_> = (v.tenants.iter())
                .map(|t| (tenant(t), f64::from(u8::from(*t.capped.get(r)))))
                .collect();
            gauges(
                &mut enc,
                &format!("prescient_tenant_capped_{}", r.name()),
                "1 if the tenant ran into its cap in the last interval (a shortfall)",
                &shortfall,
            )?;
        }
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

/// The metrics of `view`, in Prometheus text format.
pub fn render(view: Arc<View>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ViewCollector(view)));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
