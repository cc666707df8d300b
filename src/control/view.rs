//! What the daemon shows the operator: a [`View`] of the control loop, built by the loop
//! thread after every cycle and every change and published whole, so that a read of the API
//! or of the metrics never waits on the loop. The same types are what the CLI reads back.

use crate::allocate::overrides::Override;
use crate::forecast::history::present;
use crate::leadtime::{LateHistogram, Rise, RiseCounts, RiseWindows};
use crate::model::{Class, PerResource, Resource};
use crate::pipeline::Controller;
use crate::plan::{Binding, Reason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many past buckets `show` draws.
pub const HISTORY_STEPS: usize = 48;

/// How many models `explain` names per resource (the heaviest).
pub const EXPLAIN_MODELS: usize = 4;

/// How many refusals `explain` shows per tenant (the newest).
pub const EXPLAIN_DENIALS: usize = 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct View {
    pub status: Status,
    pub tenants: Vec<TenantView>,
    pub explains: Vec<Explain>,
    pub overrides: Vec<Override>,
    pub intents: Vec<IntentView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub backend: String,
    pub started_unix_ms: i64,
    /// When this view was built.
    pub at_unix_ms: i64,
    pub interval_s: f64,
    /// The forecast step (None: the daemon does not forecast).
    pub bucket_s: Option<i64>,
    /// The allocation policy (None: the daemon only observes and forecasts).
    pub policy: Option<String>,
    pub policy_file: Option<String>,
    /// Allocations are decided and logged but not applied (`pause`, or a dry run).
    pub paused: bool,
    pub cycles: u64,
    pub last_cycle: Option<CycleView>,
    pub host: Option<HostView>,
    /// Each resource's shadow price λ in the last decision, for a policy that has one.
    pub shadow_prices: Option<PerResource<f64>>,
    /// Whether each resource's capacity was short in the last decision: some tenant got
    /// less than it asked for because of it (None: no decision yet).
    pub capacity_short: Option<PerResource<bool>>,
    /// What the tenants' reservations (operator overrides, metadata, class) add up to, per
    /// resource, in the pipeline's units.
    pub reserved: PerResource<f64>,
    /// Resources whose reservations exceed what the tenants may have: they cannot all be
    /// honoured, the lowest classes' are squeezed.
    pub reservations_unmet: PerResource<bool>,
    pub tenants: usize,
    pub overrides: usize,
    pub intents: usize,
    /// Changes the hypervisor refused since the daemon started, per resource.
    pub denials_total: PerResource<u64>,
    /// Cycles that failed (collection or apply errors) since the daemon started.
    pub cycle_errors_total: u64,
    /// Rises in the tenants' usage by outcome, per resource: over the last hour and day
    /// (kept across restarts), and since the daemon started.
    #[serde(default)]
    pub rises: PerResource<RiseWindows>,
    #[serde(default)]
    pub rises_total: PerResource<RiseCounts>,
    /// The seconds late of late rises since the daemon started, per resource.
    #[serde(default)]
    pub rise_late_seconds: PerResource<LateHistogram>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CycleView {
    pub at_unix_ms: i64,
    /// The whole cycle, and the policy's decision within it (seconds).
    pub duration_s: f64,
    pub decide_s: f64,
    /// Why the cycle failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostView {
    pub hostname: String,
    pub cpus: u32,
    pub memory_kib: u64,
    /// What the tenants may have in all, per resource, in the pipeline's units.
    pub capacity: PerResource<Option<f64>>,
    /// What the host has, before its reserve (None: unknown).
    #[serde(default)]
    pub total: PerResource<Option<f64>>,
}

/// A forecast's quantiles for one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    pub uuid: String,
    pub class: Class,
    /// An operator's override holds (see `override list`).
    pub overridden: bool,
    /// Last interval's usage, in the pipeline's units (cores, KiB, bytes/s, bytes/s).
    pub usage: PerResource<Option<f64>>,
    pub capped: PerResource<bool>,
    /// The forecast of the coming bucket.
    pub forecast: Option<PerResource<Band>>,
    /// What the policy decided for the coming interval, as it is enforced: where the
    /// host's capacity is unknown (disk, network) the tenant is held only at its limit, and
    /// None means unlimited.
    pub allocation: Option<PerResource<Option<f64>>>,
    /// What is in force on the domain, as far as the daemon knows.
    pub in_force: PerResource<Option<f64>>,
    pub binding: Option<PerResource<Binding>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Explain {
    pub tenant: TenantView,
    /// The start of the bucket the forecast's first step follows (Unix s), and its steps.
    pub forecast_origin_unix_s: Option<i64>,
    pub bucket_s: i64,
    pub steps: Vec<StepBand>,
    /// The tenant's mean usage in the last buckets, oldest first, the newest being the
    /// bucket at the forecast's origin (None: no value for that bucket).
    pub history: PerResource<Vec<Option<f64>>>,
    /// The models' weights in the coming bucket's forecast, heaviest first.
    pub weights: PerResource<Vec<ModelWeight>>,
    pub reasons: Option<PerResource<Reason>>,
    /// Reservation and limit the tenant is held within (None: unlimited).
    pub bounds: PerResource<(f64, Option<f64>)>,
    /// Whether the host's capacity of each resource is known (libvirt knows none for disk
    /// and network: there a tenant is throttled only at its limit).
    pub capacity_known: PerResource<bool>,
    pub intents: Vec<IntentView>,
    /// How far the tenant's past intents came true, per resource (0 … 1).
    pub intent_trust: PerResource<f32>,
    #[serde(rename = "override")]
    pub override_: Option<Override>,
    pub denials: Vec<DenialView>,
    /// The tenant's rises in usage over the last hour and day, and its last one of each
    /// resource in the last day.
    #[serde(default)]
    pub rises: PerResource<RiseWindows>,
    #[serde(default)]
    pub last_rises: PerResource<Option<Rise>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepBand {
    pub start_unix_s: i64,
    pub band: PerResource<Band>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelWeight {
    pub model: String,
    pub weight: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IntentView {
    pub id: u64,
    pub tenant: String,
    pub uuid: String,
    pub resource: Option<Resource>,
    pub start_unix_s: i64,
    pub duration_s: i64,
    /// The declared total usage in the window, in the pipeline's units.
    pub amount: f64,
    pub note: Option<String>,
    /// The tenant's trust on this resource (how much of the intent is blended in).
    pub trust: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DenialView {
    pub at_unix_ms: i64,
    pub resource: Option<Resource>,
    pub wanted: f64,
    pub got: Option<f64>,
    pub code: Option<i32>,
    pub message: String,
}

/// What the loop thread knows besides the controller when it builds a view.
pub struct Context<'a> {
    pub status: Status,
    /// The last cycle's observation (None before the first).
    pub obs: Option<&'a crate::collect::Observation>,
    pub notes: &'a BTreeMap<u64, String>,
}

impl View {
    /// The view of `controller` after its last cycle.
    pub fn build(controller: &Controller, ctx: Context<'_>) -> View {
        let mut status = ctx.status;
        let obs = ctx.obs;
        let alloc = controller.last_allocation();
        let forecasts = controller.forecasts();
        let overrides = controller.overrides();
        status.cycles = controller.cycles();
        status.denials_total = controller.denials_total();
        let leadtime = controller.leadtime();
        status.rises = leadtime.windows(None);
        status.rises_total = leadtime.totals();
        status.rise_late_seconds = leadtime.late_seconds();
        status.paused = controller.actuator().config().dry_run;
        status.policy = controller.policy().map(|p| p.describe());
        status.shadow_prices = controller.policy().and_then(|p| p.prices());
        status.bucket_s = forecasts.map(|f| f.bucket_seconds());
        status.overrides = overrides.list().len();
        status.host = obs.map(|o| HostView {
            hostname: o.host.hostname.clone(),
            cpus: o.host.cpus,
            memory_kib: o.host.memory_kib,
            capacity: PerResource {
                cpu: controller.rules().capacity(&o.host, Resource::Cpu),
                mem: controller.rules().capacity(&o.host, Resource::Mem),
                disk: controller.rules().capacity(&o.host, Resource::Disk),
                net: controller.rules().capacity(&o.host, Resource::Net),
            },
            total: o.host.capacity,
        });
        status.capacity_short = alloc.map(|a| {
            let mut short = PerResource::<bool>::default();
            for why in a.tenants.iter().filter_map(|t| t.reasons.as_ref()) {
                for r in Resource::ALL {
                    *short.get_mut(r) |= why.get(r).binding == Binding::Capacity;
                }
            }
            short
        });
        let band = |q: &[f32; 4]| Band {
            p50: q[0] as f64,
            p90: q[1] as f64,
            p95: q[2] as f64,
            p99: q[3] as f64,
        };
        let names = crate::forecast::candidate_names();
        let mut intents = Vec::new();
        let mut tenants = Vec::new();
        let mut explains = Vec::new();
        for t in obs.map(|o| o.tenants.as_slice()).unwrap_or_default() {
            let uuid = &*t.id.uuid;
            let ov = overrides.get(uuid);
            let latest = forecasts.and_then(|f| f.latest(uuid));
            let allocated = alloc.and_then(|a| a.tenants.iter().find(|x| &*x.uuid == uuid));
            let book = forecasts.and_then(|f| f.intents(uuid));
            let mut overridden_t = t.clone();
            overrides.apply_one(&mut overridden_t);
            let bound = |r| {
                let (lo, hi) = controller.rules().bounds(&overridden_t, r);
                (lo, hi.is_finite().then_some(hi))
            };
            for r in Resource::ALL {
                *status.reserved.get_mut(r) += bound(r).0;
            }
            // Where the capacity is unknown the actuator holds the tenant only at its limit.
            let enforced = |a: &PerResource<f64>| {
                let mut out = PerResource::<Option<f64>>::default();
                for r in Resource::ALL {
                    let rules = controller.rules();
                    let x = obs.map_or(*a.get(r), |o| {
                        crate::actuate::enforced(o, rules, &overridden_t, r, *a.get(r))
                    });
                    *out.get_mut(r) = x.is_finite().then_some(x);
                }
                out
            };
            let view = TenantView {
                name: t.id.name.to_string(),
                uuid: uuid.to_string(),
                class: ov.and_then(|o| o.class).unwrap_or(t.policy.class),
                overridden: ov.is_some(),
                usage: t.usage,
                capped: t.capped,
                forecast: latest.and_then(|(_, f)| {
                    let q = |r: Resource| f.get(r).quantiles.first().map(band);
                    Some(PerResource {
                        cpu: q(Resource::Cpu)?,
                        mem: q(Resource::Mem)?,
                        disk: q(Resource::Disk)?,
                        net: q(Resource::Net)?,
                    })
                }),
                allocation: allocated.map(|a| enforced(&a.amounts)),
                in_force: PerResource {
                    cpu: controller.actuator().in_force(uuid, Resource::Cpu),
                    mem: controller.actuator().in_force(uuid, Resource::Mem),
                    disk: controller.actuator().in_force(uuid, Resource::Disk),
                    net: controller.actuator().in_force(uuid, Resource::Net),
                },
                binding: allocated.and_then(|a| a.reasons.map(|r| r.map(|x| x.binding))),
            };
            let mine: Vec<IntentView> = book
                .map(|b| {
                    (b.pending().iter())
                        .map(|p| IntentView {
                            id: p.intent.id,
                            tenant: view.name.clone(),
                            uuid: view.uuid.clone(),
                            resource: Some(p.intent.resource),
                            start_unix_s: p.intent.start_s,
                            duration_s: p.intent.duration_s,
                            amount: p.intent.amount,
                            note: ctx.notes.get(&p.intent.id).cloned(),
                            trust: b.trust(p.intent.resource),
                        })
                        .collect()
                })
                .unwrap_or_default();
            intents.extend(mine.iter().cloned());
            let step_s = status.bucket_s.unwrap_or(crate::model::STEP_S);
            let steps = latest
                .map(|(origin, f)| {
                    (0..f.cpu.quantiles.len())
                        .filter_map(|k| {
                            let q = |r: Resource| f.get(r).quantiles.get(k).map(band);
                            Some(StepBand {
                                start_unix_s: origin + (k as i64 + 1) * step_s,
                                band: PerResource {
                                    cpu: q(Resource::Cpu)?,
                                    mem: q(Resource::Mem)?,
                                    disk: q(Resource::Disk)?,
                                    net: q(Resource::Net)?,
                                },
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut weights = PerResource::<Vec<ModelWeight>>::default();
            let mut history = PerResource::<Vec<Option<f64>>>::default();
            if let Some(fc) = forecasts.and_then(|f| f.forecaster(uuid)) {
                for r in Resource::ALL {
                    let h = fc.series.get(r).history();
                    *history.get_mut(r) = (0..HISTORY_STEPS)
                        .rev()
                        .map(|k| h.lag(k).filter(|v| present(*v)).map(f64::from))
                        .collect();
                    let w = fc.series.get(r).weights();
                    let mut ws: Vec<ModelWeight> = (w.first().into_iter().flatten())
                        .enumerate()
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(m, w)| ModelWeight {
                            model: names.get(m).unwrap_or(&"?").to_string(),
                            weight: *w,
                        })
                        .collect();
                    ws.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                    ws.truncate(EXPLAIN_MODELS);
                    *weights.get_mut(r) = ws;
                }
            }
            let mut denials: Vec<DenialView> = (controller.recent_denials())
                .filter(|(_, d)| &*d.tenant.uuid == uuid)
                .map(|(at, d)| DenialView {
                    at_unix_ms: *at,
                    resource: Some(d.resource),
                    wanted: d.wanted,
                    got: d.got,
                    code: d.code,
                    message: d.message.clone(),
                })
                .collect();
            denials.reverse();
            denials.truncate(EXPLAIN_DENIALS);
            explains.push(Explain {
                forecast_origin_unix_s: latest.map(|(o, _)| o),
                bucket_s: step_s,
                steps,
                history,
                weights,
                reasons: allocated.and_then(|a| a.reasons),
                capacity_known: status
                    .host
                    .as_ref()
                    .map(|h| h.capacity.map(|c| c.is_some()))
                    .unwrap_or_default(),
                bounds: PerResource {
                    cpu: bound(Resource::Cpu),
                    mem: bound(Resource::Mem),
                    disk: bound(Resource::Disk),
                    net: bound(Resource::Net),
                },
                intents: mine,
                intent_trust: PerResource {
                    cpu: book.map_or(0.0, |b| b.trust(Resource::Cpu)),
                    mem: book.map_or(0.0, |b| b.trust(Resource::Mem)),
                    disk: book.map_or(0.0, |b| b.trust(Resource::Disk)),
                    net: book.map_or(0.0, |b| b.trust(Resource::Net)),
                },
                override_: ov.cloned(),
                denials,
                rises: leadtime.windows(Some(uuid)),
                last_rises: leadtime.last(uuid),
                tenant: view.clone(),
            });
            tenants.push(view);
        }
        if let Some(h) = &status.host {
            for r in Resource::ALL {
                *status.reservations_unmet.get_mut(r) = h
                    .capacity
                    .get(r)
                    .is_some_and(|c| *status.reserved.get(r) > c * (1.0 + 1e-9) + 1e-9);
            }
        }
        status.tenants = tenants.len();
        status.intents = intents.len();
        View {
            status,
            tenants,
            explains,
            overrides: overrides.list(),
            intents,
        }
    }

    /// The explanation of the tenant with this name or UUID.
    pub fn explain(&self, tenant: &str) -> Option<&Explain> {
        (self.explains.iter()).find(|e| e.tenant.name == tenant || e.tenant.uuid == tenant)
    }
}
