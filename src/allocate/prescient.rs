//! `prescient`: each tenant's allocation for the coming interval chosen before it starts,
//! from its forecast demand distribution, by the newsvendor solve ([`super::solve`]) per
//! resource: each class its own quantile 1 − c/w of demand when capacity is ample, a shared
//! shadow price λ under scarcity. Knob: c, the cost of a unit allocated and not used.
//!
//! A tenant without a forecast for the coming interval (its first bucket has not completed,
//! or it was away longer than its forecast reaches) asks what `reactive` would, as a certain
//! demand. A tenant that ran into its allocation had its demand cut off
//! at the cap (the forecaster learns served usage), so its next allocation is at least
//! [`Prescient::PROBE_GROWTH`] × the last one: it probes upward until it is no longer capped.

use super::baselines::{FLOOR, Reactive};
use super::solve::{Demand, Item, solve};
use super::{Inputs, Policy, static_shares};
use crate::forecast::stage::BUCKET_S;
use crate::model::{Allocation, PerResource, Resource, TenantAllocation};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Prescient {
    cost: f64,
    /// Each tenant's last allocation (pipeline units), per resource.
    last: HashMap<Arc<str>, [f64; 4]>,
    /// The shadow price of each resource in the last solve.
    prices: [f64; 4],
}

impl Prescient {
    pub const DEFAULT_COST: f64 = 0.2;
    /// How much more a capped tenant gets next, at least.
    pub const PROBE_GROWTH: f64 = 1.5;

    pub fn new(cost: f64) -> Self {
        Prescient {
            cost,
            last: HashMap::new(),
            prices: [0.0; 4],
        }
    }

    /// λ per resource of the last decision.
    pub fn prices(&self) -> PerResource<f64> {
        PerResource {
            cpu: self.prices[0],
            mem: self.prices[1],
            disk: self.prices[2],
            net: self.prices[3],
        }
    }
}

impl Policy for Prescient {
    fn describe(&self) -> String {
        format!("prescient(c={})", self.cost)
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let obs = input.obs;
        for id in &obs.vanished {
            self.last.remove(&*id.uuid);
        }
        // The bucket that holds the coming interval.
        let now_bucket = (obs.at_unix_ms / 1000).div_euclid(BUCKET_S) * BUCKET_S;
        let forecasts: Vec<_> = obs
            .tenants
            .iter()
            .map(|t| input.forecasts.and_then(|f| f.latest(&t.id.uuid)))
            .collect();
        let mut amounts = vec![PerResource::<f64>::default(); obs.tenants.len()];
        for r in Resource::ALL {
            let shares = static_shares(obs, r);
            let capacity = *obs.host.capacity.get(r);
            let items: Vec<Item> = obs
                .tenants
                .iter()
                .zip(&shares)
                .zip(&forecasts)
                .map(|((t, &share), f)| {
                    let hi = capacity.unwrap_or(f64::INFINITY);
                    let mut lo = FLOOR * share;
                    // The forecast's step for the coming interval; a forecast that does not
                    // reach it (the tenant was away) is stale: ask as reactive would.
                    let step = f.and_then(|(origin, fc)| {
                        let h = (now_bucket - origin) / BUCKET_S;
                        let q = fc.get(r).quantiles.get(usize::try_from(h - 1).ok()?)?;
                        Some(q.map(f64::from))
                    });
                    let demand = match step {
                        Some([p50, p90, p95, p99]) => Demand::from_quantiles(p50, p90, p95, p99),
                        None => Demand::certain(
                            t.usage
                                .get(r)
                                .map_or(share, |u| u * (1.0 + Reactive::DEFAULT_MARGIN)),
                        ),
                    };
                    if *t.capped.get(r)
                        && let Some(last) = self.last.get(&*t.id.uuid)
                    {
                        lo = lo.max(last[r.index()] * Self::PROBE_GROWTH);
                    }
                    let w = t.policy.class.weight();
                    Item {
                        value: w,
                        priority: w,
                        demand,
                        lo: lo.min(hi),
                        hi,
                    }
                })
                .collect();
            let s = solve(&items, capacity, self.cost);
            self.prices[r.index()] = s.lambda;
            for (a, x) in amounts.iter_mut().zip(s.x) {
                *a.get_mut(r) = x;
            }
        }
        let tenants = obs
            .tenants
            .iter()
            .zip(amounts)
            .map(|(t, a)| {
                self.last
                    .insert(Arc::clone(&t.id.uuid), [a.cpu, a.mem, a.disk, a.net]);
                TenantAllocation {
                    uuid: Arc::clone(&t.id.uuid),
                    amounts: a,
                }
            })
            .collect();
        Allocation { tenants }
    }
}
