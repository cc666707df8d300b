//! The trace backend: a host whose tenants replay recorded demand ([`crate::sim::Replay`]).
//! Each trace interval is one control interval, and the daemon's loop runs on it unchanged.
//!
//! The host model: allocations are hard caps (as vCPU quota, balloon, iotune and tc are), so
//! served = min(demand, allocation); Σ allocations must fit the capacity; the balloon can
//! shrink memory only so fast. A policy sees what a real host measures: served usage (as
//! counters) and whether the tenant hit its cap, never the unmet demand.

use super::{
    Backend, BackendError, BalloonStats, DiskCounters, DomainConfig, DomainCounters,
    DomainSnapshot, NicCounters, Snapshot, VcpuCounters,
};
use crate::model::STEP_S;
use crate::model::{Class, HostInfo, PerResource, Resource, TenantId, TenantPolicy};
use crate::plan::{Applied, Plan};
use crate::sim::replay::Replay;
use std::collections::HashMap;
use std::sync::Arc;

/// The simulated host's clock, MHz per core: converts the traces' MHz into cores. Any value
/// gives the same metrics (they are ratios); this one is typical of the traced hosts.
pub const CORE_MHZ: f64 = 2600.0;

/// Trace units → pipeline units (cores, KiB, bytes/s).
pub fn to_pipeline(r: Resource, v: f64) -> f64 {
    match r {
        Resource::Cpu => v / CORE_MHZ,
        Resource::Mem => v,
        Resource::Disk | Resource::Net => v * 1024.0,
    }
}

/// Pipeline units → trace units.
pub fn to_trace(r: Resource, v: f64) -> f64 {
    match r {
        Resource::Cpu => v * CORE_MHZ,
        Resource::Mem => v,
        Resource::Disk | Resource::Net => v / 1024.0,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HostModel {
    /// Capacity per resource, trace units.
    pub capacity: PerResource<f64>,
    /// How fast the balloon can take memory back, KiB per second.
    pub balloon_inflate_kib_per_s: f64,
}

impl HostModel {
    /// C_r = fraction × the 99th percentile over time of Σ tenants' demand.
    pub fn sized(replay: &Replay, fraction: f64, balloon_inflate_kib_per_s: f64) -> HostModel {
        let mut capacity = PerResource::default();
        for r in Resource::ALL {
            let mut totals: Vec<f64> = (0..replay.steps)
                .map(|k| replay.total_demand(r, k))
                .collect();
            totals.sort_by(f64::total_cmp);
            let p99 = totals
                .get(((totals.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0);
            *capacity.get_mut(r) = fraction * p99;
        }
        HostModel {
            capacity,
            balloon_inflate_kib_per_s,
        }
    }
}

struct TenantState {
    counters: DomainCounters,
    /// Last interval's allocation (trace units), NaN when it had none.
    allocation: [f64; 4],
    capped: [bool; 4],
    id: TenantId,
}

pub struct TraceBackend {
    replay: Arc<Replay>,
    classes: Vec<Class>,
    host: HostModel,
    step: usize,
    /// The interval the last snapshot showed, until an allocation is applied to it: the
    /// replay advances only in `apply`, so a second snapshot of it would never end.
    observed: Option<usize>,
    tenants: Vec<TenantState>,
    by_uuid: HashMap<Arc<str>, usize>,
    /// What the last applied interval served, for the simulator's metrics.
    served: Vec<Served>,
}

/// One tenant's interval as the simulated host served it (trace units, per resource).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served {
    pub class: Class,
    pub demand: [f64; 4],
    pub allocation: [f64; 4],
    /// The allocation differs by more than 1% from the previous interval's.
    pub changed: [bool; 4],
}

/// Demand above the allocation, beyond floating-point noise of unit conversions: the tenant
/// ran into its cap.
pub fn exceeds(demand: f64, allocation: f64) -> bool {
    demand > allocation * (1.0 + 1e-9) + 1e-9
}

/// The UUID a replayed tenant goes by.
fn uuid_of(index: usize) -> String {
    format!("00000000-0000-4000-8000-{index:012}")
}

impl TraceBackend {
    pub fn new(replay: Arc<Replay>, classes: Vec<Class>, host: HostModel) -> Self {
        assert_eq!(classes.len(), replay.tenants.len(), "one class per tenant");
        let tenants: Vec<TenantState> = replay
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| TenantState {
                counters: DomainCounters {
                    cpu_time_ns: Some(0),
                    vcpus: vec![VcpuCounters {
                        time_ns: Some(0),
                        delay_ns: Some(0),
                        wait_ns: None,
                    }],
                    disks: vec![DiskCounters {
                        name: "vda".into(),
                        rd_bytes: Some(0),
                        wr_bytes: Some(0),
                        ..DiskCounters::default()
                    }],
                    nics: vec![NicCounters {
                        name: "vnet0".into(),
                        rx_bytes: Some(0),
                        tx_bytes: Some(0),
                        ..NicCounters::default()
                    }],
                    ..DomainCounters::default()
                },
                allocation: [f64::NAN; 4],
                capped: [false; 4],
                id: TenantId {
                    uuid: uuid_of(i).into(),
                    name: t.name.as_str().into(),
                },
            })
            .collect();
        let by_uuid = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.uuid.clone(), i))
            .collect();
        TraceBackend {
            replay,
            classes,
            host,
            step: 0,
            observed: None,
            tenants,
            by_uuid,
            served: Vec::new(),
        }
    }

    /// The interval the next snapshot opens.
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn finished(&self) -> bool {
        self.step >= self.replay.steps
    }

    /// The tenants present in the interval last applied, as it served them.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    fn name(&self) -> String {
        format!("trace replay ({} tenants)", self.replay.tenants.len())
    }
}

impl Backend for TraceBackend {
    fn describe(&self) -> String {
        self.name()
    }

    fn host(&mut self) -> Result<HostInfo, BackendError> {
        let c = &self.host.capacity;
        Ok(HostInfo {
            hostname: "simulated".into(),
            cpus: (c.cpu / CORE_MHZ).ceil() as u32,
            cpu_mhz: CORE_MHZ as u32,
            memory_kib: c.mem as u64,
            capacity: PerResource {
                cpu: Some(to_pipeline(Resource::Cpu, c.cpu)),
                mem: Some(c.mem),
                disk: Some(to_pipeline(Resource::Disk, c.disk)),
                net: Some(to_pipeline(Resource::Net, c.net)),
            },
            ..HostInfo::default()
        })
    }

    /// The tenants present in the coming interval, with counters up to the one that ended.
    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        let k = self.step;
        if self.observed == Some(k) {
            return Err(BackendError::Rejected {
                backend: self.name(),
                message: format!(
                    "interval {k} was observed twice: the trace replay advances only when an \
                     allocation is applied (drive it with a policy)"
                ),
            });
        }
        if k >= self.replay.steps {
            return Err(BackendError::Rejected {
                backend: self.name(),
                message: format!("the replay ended after {} intervals", self.replay.steps),
            });
        }
        let host = self.host()?;
        let mut domains = Vec::new();
        for (i, t) in self.replay.tenants.iter().enumerate() {
            if !t.present(k) {
                continue;
            }
            // Provisioned size as known before this interval.
            let seen = k.saturating_sub(1);
            let s = &self.tenants[i];
            let capped = |r: Resource| (k > 0 && t.present(k - 1)).then_some(s.capped[r.index()]);
            domains.push(DomainSnapshot {
                id: s.id.clone(),
                config: DomainConfig {
                    vcpus: (t.cores[seen].ceil() as u32).max(1),
                    max_memory_kib: t.mem_capacity_kib[seen] as u64,
                    policy: TenantPolicy {
                        class: self.classes[i],
                        ..TenantPolicy::default()
                    },
                    ..DomainConfig::default()
                },
                counters: s.counters.clone(),
                capped: PerResource {
                    cpu: capped(Resource::Cpu),
                    mem: capped(Resource::Mem),
                    disk: capped(Resource::Disk),
                    net: capped(Resource::Net),
                },
                settings: Vec::new(),
            });
        }
        let at_s = self.replay.t0 + k as i64 * STEP_S;
        self.observed = Some(k);
        Ok(Snapshot {
            at_unix_ms: at_s * 1000,
            mono_ns: (k as u64) * STEP_S as u64 * 1_000_000_000,
            host,
            domains,
        })
    }

    /// This host enforces every resource: an allocation is a hard cap.
    /// A replayed interval's allocation is in force from its first instant.
    fn latency(&self) -> PerResource<f64> {
        PerResource::default()
    }

    /// A replayed interval's decision is made and applied at the interval's first instant.
    fn clock_ns(&self) -> Option<u64> {
        Some(self.step as u64 * STEP_S as u64 * 1_000_000_000)
    }

    fn shapes(&self) -> PerResource<bool> {
        PerResource {
            cpu: true,
            mem: true,
            disk: true,
            net: true,
        }
    }

    /// Enforce the plan's amounts for the current interval (what it does not change stays as
    /// it was), serve the demand, account, advance.
    fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
        let k = self.step;
        if k >= self.replay.steps {
            return Err(BackendError::Rejected {
                backend: self.name(),
                message: "the replay has ended".into(),
            });
        }
        let n = self.replay.tenants.len();
        let mut alloc: Vec<[f64; 4]> = self.tenants.iter().map(|s| s.allocation).collect();
        let mut applied = Applied::default();
        for d in &plan.domains {
            let Some(&i) = self.by_uuid.get(&*d.id.uuid) else {
                return Err(BackendError::Rejected {
                    backend: self.name(),
                    message: format!("plan for unknown tenant {}", d.id.uuid),
                });
            };
            for c in &d.changes {
                let r = c.resource;
                let v = to_trace(r, c.amount);
                if !(v.is_finite() && v >= 0.0) {
                    return Err(BackendError::Rejected {
                        backend: self.name(),
                        message: format!("allocation of {r} for tenant {} is {v}", d.id.uuid),
                    });
                }
                alloc[i][r.index()] = v;
                applied.accepted.push((d.id.uuid.clone(), r, c.amount));
            }
        }
        for (i, a) in alloc.iter().enumerate() {
            if self.replay.tenants[i].present(k)
                && let Some(r) = Resource::ALL
                    .into_iter()
                    .find(|r| !a[r.index()].is_finite())
            {
                return Err(BackendError::Rejected {
                    backend: self.name(),
                    message: format!(
                        "interval {k}: tenant {} has no {r} allocation in force",
                        self.tenants[i].id
                    ),
                });
            }
        }
        // The balloon takes memory back only so fast.
        let max_shrink = self.host.balloon_inflate_kib_per_s * STEP_S as f64;
        for (i, a) in alloc.iter_mut().enumerate() {
            let prev = self.tenants[i].allocation[Resource::Mem.index()];
            if prev.is_finite() && self.replay.tenants[i].present(k) {
                a[Resource::Mem.index()] = a[Resource::Mem.index()].max(prev - max_shrink);
            }
        }
        for r in Resource::ALL {
            let total: f64 = (0..n)
                .filter(|&i| self.replay.tenants[i].present(k))
                .map(|i| alloc[i][r.index()])
                .sum();
            let cap = *self.host.capacity.get(r);
            if total > cap * (1.0 + 1e-9) + 1e-9 {
                return Err(BackendError::Rejected {
                    backend: self.name(),
                    message: format!(
                        "interval {k}: {r} allocations sum to {total:.3}, over the capacity {cap:.3}"
                    ),
                });
            }
        }
        let dt_ns = STEP_S as u64 * 1_000_000_000;
        self.served.clear();
        for (i, a_i) in alloc.iter().enumerate() {
            let t = &self.replay.tenants[i];
            let s = &mut self.tenants[i];
            if !t.present(k) {
                s.allocation = [f64::NAN; 4];
                continue;
            }
            let mut served = [0f64; 4];
            let mut record = Served {
                class: self.classes[i],
                demand: [0.0; 4],
                allocation: *a_i,
                changed: [false; 4],
            };
            for r in Resource::ALL {
                let j = r.index();
                let d = t.demand(r, k);
                let a = a_i[j];
                let prev = s.allocation[j];
                record.demand[j] = d;
                record.changed[j] = prev.is_finite() && (a - prev).abs() > 0.01 * prev.abs();
                served[j] = d.min(a);
                s.capped[j] = exceeds(d, a);
                s.allocation[j] = a;
            }
            self.served.push(record);
            // Served usage into the counters the collector reads, in libvirt's units.
            let c = &mut s.counters;
            let cpu_ns = (to_pipeline(Resource::Cpu, served[0]) * dt_ns as f64).round() as u64;
            c.cpu_time_ns = c.cpu_time_ns.map(|v| v + cpu_ns);
            c.vcpus[0].time_ns = c.vcpus[0].time_ns.map(|v| v + cpu_ns);
            c.balloon = BalloonStats {
                current_kib: Some(a_i[1] as u64),
                maximum_kib: Some(t.mem_capacity_kib[k] as u64),
                rss_kib: Some(served[1].round() as u64),
                ..BalloonStats::default()
            };
            let bytes = |v: f64| (to_pipeline(Resource::Disk, v) * STEP_S as f64).round() as u64;
            c.disks[0].rd_bytes = c.disks[0].rd_bytes.map(|v| v + bytes(served[2]));
            c.nics[0].rx_bytes = c.nics[0].rx_bytes.map(|v| v + bytes(served[3]));
        }
        self.step += 1;
        Ok(applied)
    }
}
