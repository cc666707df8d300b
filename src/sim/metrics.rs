//! What a replay measures, per resource and overall (the mean of the four resources, each
//! a unitless ratio):
//!
//! * `shortfall` = Σ(demand − served) / Σ demand
//! * `weighted_shortfall`: the same with each tenant's terms × its class weight
//! * `violation_rate` per class: share of tenant-intervals with demand > allocation
//! * `slack` = Σ(allocation − served) / Σ allocation
//! * `changes_per_tenant_day`: allocation changes beyond 1%, per tenant and day present

use crate::backend::trace::{Served, exceeds};
use crate::model::{Class, PerResource, Resource};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassRates {
    pub gold: Option<f64>,
    pub silver: Option<f64>,
    pub bronze: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub shortfall: f64,
    pub weighted_shortfall: f64,
    pub slack: f64,
    pub violation_rate: ClassRates,
    pub changes_per_tenant_day: f64,
}

/// Running sums of one resource.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    demand: f64,
    unmet: f64,
    w_demand: f64,
    w_unmet: f64,
    allocated: f64,
    unused: f64,
    class_steps: [u64; 3],
    class_violations: [u64; 3],
    changes: u64,
    tenant_steps: u64,
}

fn class_index(c: Class) -> usize {
    match c {
        Class::Gold => 0,
        Class::Silver => 1,
        Class::Bronze => 2,
    }
}

impl Accumulator {
    /// One tenant-interval: its class, demand, allocation, and whether the allocation
    /// changed by more than 1% from the previous interval's.
    pub fn record(&mut self, class: Class, demand: f64, allocation: f64, changed: bool) {
        let served = demand.min(allocation);
        let unmet = demand - served;
        let w = class.weight();
        self.demand += demand;
        self.unmet += unmet;
        self.w_demand += w * demand;
        self.w_unmet += w * unmet;
        self.allocated += allocation;
        self.unused += allocation - served;
        let c = class_index(class);
        self.class_steps[c] += 1;
        if exceeds(demand, allocation) {
            self.class_violations[c] += 1;
        }
        self.changes += changed as u64;
        self.tenant_steps += 1;
    }

    pub fn metrics(&self, interval_s: f64) -> Metrics {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let rate = |c: usize| {
            (self.class_steps[c] > 0)
                .then(|| self.class_violations[c] as f64 / self.class_steps[c] as f64)
        };
        let tenant_days = self.tenant_steps as f64 * interval_s / 86_400.0;
        Metrics {
            shortfall: ratio(self.unmet, self.demand),
            weighted_shortfall: ratio(self.w_unmet, self.w_demand),
            slack: ratio(self.unused, self.allocated),
            violation_rate: ClassRates {
                gold: rate(0),
                silver: rate(1),
                bronze: rate(2),
            },
            changes_per_tenant_day: ratio(self.changes as f64, tenant_days),
        }
    }
}

/// The four resources' running sums over a replay.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    acc: [Accumulator; 4],
}

impl Tally {
    /// Count one interval as the host served it.
    pub fn record(&mut self, interval: &[Served]) {
        for s in interval {
            for (j, acc) in self.acc.iter_mut().enumerate() {
                acc.record(s.class, s.demand[j], s.allocation[j], s.changed[j]);
            }
        }
    }

    /// Per resource and overall, for intervals of `interval_s` seconds.
    pub fn metrics(&self, interval_s: f64) -> (PerResource<Metrics>, Metrics) {
        let per = PerResource {
            cpu: self.acc[0].metrics(interval_s),
            mem: self.acc[1].metrics(interval_s),
            disk: self.acc[2].metrics(interval_s),
            net: self.acc[3].metrics(interval_s),
        };
        let all = overall(&per);
        (per, all)
    }
}

/// The mean of the four resources' metrics.
pub fn overall(per: &PerResource<Metrics>) -> Metrics {
    let mean =
        |f: fn(&Metrics) -> f64| Resource::ALL.iter().map(|&r| f(per.get(r))).sum::<f64>() / 4.0;
    let class_mean = |f: fn(&ClassRates) -> Option<f64>| {
        let v: Vec<f64> = Resource::ALL
            .iter()
            .filter_map(|&r| f(&per.get(r).violation_rate))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Metrics {
        shortfall: mean(|m| m.shortfall),
        weighted_shortfall: mean(|m| m.weighted_shortfall),
        slack: mean(|m| m.slack),
        violation_rate: ClassRates {
            gold: class_mean(|c| c.gold),
            silver: class_mean(|c| c.silver),
            bronze: class_mean(|c| c.bronze),
        },
        changes_per_tenant_day: mean(|m| m.changes_per_tenant_day),
    }
}

/// A policy's shadow prices over a replay, per resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// Mean λ over the intervals.
    pub mean: PerResource<f64>,
    /// Share of the intervals in which capacity was short (λ > 0).
    pub scarce: PerResource<f64>,
}

/// Running sums of a policy's shadow prices.
#[derive(Debug, Clone, Default)]
pub struct PriceTally {
    sum: [f64; 4],
    scarce: [u64; 4],
    n: u64,
}

impl PriceTally {
    pub fn record(&mut self, p: &PerResource<f64>) {
        for r in Resource::ALL {
            let v = *p.get(r);
            self.sum[r.index()] += v;
            self.scarce[r.index()] += (v > 0.0) as u64;
        }
        self.n += 1;
    }

    /// None when no price was recorded (a policy without one).
    pub fn prices(&self) -> Option<Prices> {
        let n = self.n as f64;
        (self.n > 0).then(|| {
            let per = |f: &dyn Fn(usize) -> f64| PerResource {
                cpu: f(0),
                mem: f(1),
                disk: f(2),
                net: f(3),
            };
            Prices {
                mean: per(&|j| self.sum[j] / n),
                scarce: per(&|j| self.scarce[j] as f64 / n),
            }
        })
    }
}

/// One run's result, as `prescient simulate --json` prints it (and `frontier-plot` reads it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub policy: String,
    pub knob: Option<f64>,
    pub resources: PerResource<Metrics>,
    pub overall: Metrics,
    /// The shadow prices, for a policy that has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
    /// Each rise in a tenant's usage, per resource: whether the amount in force was
    /// already there (ahead), came later (late) or never before it ended (not covered), as
    /// the daemon counts it ([`crate::leadtime`]).
    #[serde(default)]
    pub rises: PerResource<crate::leadtime::RiseCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_on_a_hand_made_case() {
        let mut a = Accumulator::default();
        // gold: demand 10, allocation 8 → served 8, unmet 2, unused 0, violation.
        a.record(Class::Gold, 10.0, 8.0, false);
        // bronze: demand 4, allocation 6 → served 4, unmet 0, unused 2.
        a.record(Class::Bronze, 4.0, 6.0, true);
        let m = a.metrics(43_200.0); // two tenant-steps of half a day: one tenant-day
        assert!((m.shortfall - 2.0 / 14.0).abs() < 1e-12);
        assert!((m.weighted_shortfall - 8.0 / 44.0).abs() < 1e-12); // (4·2)/(4·10 + 1·4)
        assert!((m.slack - 2.0 / 14.0).abs() < 1e-12);
        assert_eq!(m.violation_rate.gold, Some(1.0));
        assert_eq!(m.violation_rate.bronze, Some(0.0));
        assert_eq!(m.violation_rate.silver, None, "no silver tenant-steps");
        assert!((m.changes_per_tenant_day - 1.0).abs() < 1e-12);
    }
}
