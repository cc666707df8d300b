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
use super::solve::{Demand, Item, solve_each_bucket};
use super::{Inputs, Policy, static_shares};
use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, Basis, Binding, Reason, TenantAllocation};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Prescient {
    cost: f64,
    /// Learn each tenant's sensitivity from its experience (see [`Learned`]).
    feedback: bool,
    tenants: HashMap<Arc<str>, Learned>,
    /// What each resource's allocations have served, for its price of slack.
    ledger: [Ledger; 4],
    /// The shadow price of each resource in the last solve.
    prices: [f64; 4],
    /// When the last decision was made.
    last_ms: Option<i64>,
}

/// A resource's allocations and what they served, discounted (a one-day half-life, whatever
/// the interval), from the host's own measurements: the policy's allocations and the
/// served usage under them.
///
/// The knob c prices slack in the terms the operator judges a resource by: its weighted
/// shortfall Σ w·unmet / Σ w·demand and its slack Σ unused / Σ allocated. One more unit for
/// tenant i changes the first by −w_i·P(D_i > x_i)/W and the second by (P(D_i ≤ x_i) − s)/A
/// (W: Σ w·demand, A: Σ allocation, s: the slack). Weighing both alike, the newsvendor's
/// cost of a unit in resource r is c·(1 − s_r)·W_r/A_r: a resource with slack to spare takes
/// one more unit of it at a lower price than one that runs lean.
#[derive(Debug, Clone, Copy, Default)]
struct Ledger {
    allocated: f64,
    unused: f64,
    weighted_served: f64,
}

impl Ledger {
    /// What is kept over one 5-minute interval: 0.5^(1/288), a one-day half-life.
    const KEEP_PER_STEP: f64 = 0.997_596;

    fn add(&mut self, allocation: f64, served: f64, weight: f64) {
        self.allocated += allocation;
        self.unused += (allocation - served).max(0.0);
        self.weighted_served += weight * served;
    }

    /// Discount what was kept by `dt_s` seconds gone by.
    fn decay(&mut self, dt_s: f64) {
        let steps = dt_s.max(0.0) / STEP_S as f64;
        let keep = Self::KEEP_PER_STEP.powf(steps);
        self.allocated *= keep;
        self.unused *= keep;
        self.weighted_served *= keep;
    }

    /// The cost of a unit allocated, for knob `c` (c itself until something was served).
    fn cost(&self, c: f64) -> f64 {
        if self.allocated <= 0.0 || self.weighted_served <= 0.0 {
            return c;
        }
        let slack = (self.unused / self.allocated).clamp(0.0, 1.0);
        c * (1.0 - slack) * self.weighted_served / self.allocated
    }
}

/// What the policy keeps of a tenant, per resource.
///
/// The feedback: after a change, what the tenant's experience says it gained. The host tells
/// the served usage and whether the tenant ran into its allocation (vCPU delay, swap-in,
/// drops on a real host; demand above the cap in the simulator). Given more, a tenant whose
/// served usage did not rise and that was not capped before had no use for it: its
/// sensitivity s falls. Squeezed, a tenant that became capped suffered from it: s rises.
/// Given more and using it, or squeezed without harm, confirms what the forecast said and
/// leaves s as it is. Its value per unit served is class weight × s, within [`S_MIN`,
/// `S_MAX`].
#[derive(Debug, Clone, Copy)]
struct Learned {
    /// The allocation for the interval that just ended, and the one before (pipeline units).
    allocation: [f64; 4],
    before: [f64; 4],
    /// Served usage and capped, as the previous observation reported them.
    usage: [f64; 4],
    capped: [bool; 4],
    sensitivity: [f64; 4],
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            allocation: [f64::NAN; 4],
            before: [f64::NAN; 4],
            usage: [f64::NAN; 4],
            capped: [false; 4],
            sensitivity: [1.0; 4],
        }
    }
}

impl Learned {
    /// Take in what the interval under `allocation` showed: `usage` served, `capped`.
    fn learn(&mut self, j: usize, usage: f64, capped: bool) {
        let (now, before, was) = (self.allocation[j], self.before[j], self.usage[j]);
        if now.is_finite() && before.is_finite() && was.is_finite() {
            let step = if now > before * 1.01 && usage <= was * 1.01 && !self.capped[j] {
                -ETA // given more, used none of it
            } else if now < before * 0.99 && capped && !self.capped[j] {
                ETA // squeezed into a cap
            } else {
                0.0
            };
            self.sensitivity[j] = (self.sensitivity[j] * step.exp()).clamp(S_MIN, S_MAX);
        }
        self.usage[j] = usage;
        self.capped[j] = capped;
    }
}

/// What the solve's binding is read against, for one tenant and resource.
struct Known {
    /// The forecast's p50 and p95 of each bucket solved (none: there was no forecast).
    steps: Vec<(f64, f64)>,
    basis: Basis,
    /// The domain's size where it bounds the allocation below its limit.
    size: Option<f64>,
    /// The domain's size where the host enforces it.
    domain: Option<f64>,
    limit: f64,
}

/// Step of the sensitivity's update.
const ETA: f64 = 0.1;
/// Bounds of the sensitivity.
pub const S_MIN: f64 = 0.25;
pub const S_MAX: f64 = 4.0;

impl Prescient {
    pub const DEFAULT_COST: f64 = 0.05;
    /// How much more a capped tenant gets next, at least.
    pub const PROBE_GROWTH: f64 = 1.5;

    /// `feedback`: learn each tenant's sensitivity (without it, every s is 1).
    pub fn new(cost: f64, feedback: bool) -> Self {
        Prescient {
            cost,
            feedback,
            tenants: HashMap::new(),
            ledger: [Ledger::default(); 4],
            prices: [0.0; 4],
            last_ms: None,
        }
    }
}

impl Policy for Prescient {
    fn prices(&self) -> Option<PerResource<f64>> {
        Some(PerResource {
            cpu: self.prices[0],
            mem: self.prices[1],
            disk: self.prices[2],
            net: self.prices[3],
        })
    }

    fn describe(&self) -> String {
        format!("prescient(c={}, feedback={})", self.cost, self.feedback)
    }

    /// The learned sensitivities come back; the rest (the last allocations and usage) is
    /// relearnt in two intervals.
    fn restore(&mut self, uuid: &str, last: &PerResource<Reason>) -> bool {
        if !self.feedback {
            return false;
        }
        let mut l = Learned::default();
        for r in Resource::ALL {
            let s = last.get(r).sensitivity;
            l.sensitivity[r.index()] = if s.is_finite() {
                s.clamp(S_MIN, S_MAX)
            } else {
                1.0
            };
        }
        self.tenants.insert(Arc::from(uuid), l);
        true
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let obs = input.obs;
        for id in &obs.vanished {
            self.tenants.remove(&*id.uuid);
        }
        let dt_s = self
            .last_ms
            .map_or(0.0, |t| (obs.at_unix_ms - t) as f64 / 1000.0);
        self.last_ms = Some(obs.at_unix_ms);
        self.ledger.iter_mut().for_each(|l| l.decay(dt_s));
        let mut learned: Vec<Learned> = obs
            .tenants
            .iter()
            .map(|t| {
                let mut l = self.tenants.get(&*t.id.uuid).copied().unwrap_or_default();
                for r in Resource::ALL {
                    let (a, u) = (l.allocation[r.index()], t.usage.get(r));
                    if let (true, Some(u)) = (a.is_finite(), u) {
                        self.ledger[r.index()].add(a, *u, t.policy.class.weight());
                    }
                    match t.usage.get(r) {
                        Some(u) if self.feedback => l.learn(r.index(), *u, *t.capped.get(r)),
                        _ => l.usage[r.index()] = f64::NAN,
                    }
                }
                l
            })
            .collect();
        // The bucket that holds the coming interval, and per resource the last one this
        // allocation must cover: the bucket in which the next decision comes into force.
        let bucket = input.forecasts.map_or(STEP_S, |f| f.bucket_seconds());
        let bucket_of = |ms: i64| ms.div_euclid(1000 * bucket) * bucket;
        let now_bucket = bucket_of(obs.at_unix_ms);
        let last_bucket = input
            .lead_s
            .map(|lead| bucket_of(obs.at_unix_ms + (lead.max(0.0) * 1000.0) as i64 - 1));
        let forecasts: Vec<_> = obs
            .tenants
            .iter()
            .map(|t| input.forecasts.and_then(|f| f.latest(&t.id.uuid)))
            .collect();
        let mut amounts = vec![PerResource::<f64>::default(); obs.tenants.len()];
        let mut reasons = vec![PerResource::<Reason>::default(); obs.tenants.len()];
        let rules = input.rules;
        for r in Resource::ALL {
            let shares = static_shares(obs, rules, r);
            let capacity = rules.capacity(&obs.host, r);
            let cost = self.ledger[r.index()].cost(self.cost);
            // How many buckets this allocation covers.
            let span =
                usize::try_from((*last_bucket.get(r) - now_bucket) / bucket).unwrap_or(0) + 1;
            let reservations: Vec<f64> =
                (obs.tenants.iter()).map(|t| rules.bounds(t, r).0).collect();
            let (asks, known): (Vec<Vec<Item>>, Vec<Known>) = obs
                .tenants
                .iter()
                .zip(&shares)
                .zip(&forecasts)
                .zip(&learned)
                .map(|(((t, &share), f), l)| {
                    let (reservation, limit) = rules.bounds(t, r);
                    // Never more than the domain can use: above its size a unit is slack
                    // whatever the forecast's tail says (an operator's reservation stands).
                    let size = t.most(r).filter(|&m| m < limit && m >= reservation);
                    let hi = capacity.unwrap_or(f64::INFINITY).min(size.unwrap_or(limit));
                    let mut lo = (FLOOR * share).max(reservation);
                    // The forecast's steps from the coming interval's to the one the next
                    // decision comes into force in (a rise is made before the demand
                    // arrives): each its own for a rate, their highest for a stock
                    // ([`solve_each_bucket`]). A forecast that does not reach the coming
                    // interval (the tenant was away) is stale: ask as reactive would.
                    let steps = f.and_then(|(origin, fc)| {
                        let qs = &fc.get(r).quantiles;
                        let first = usize::try_from((now_bucket - origin) / bucket - 1).ok()?;
                        let mut steps = vec![qs.get(first)?.map(f64::from)];
                        for later in qs.iter().skip(first + 1).take(span - 1) {
                            let later = later.map(f64::from);
                            if r.is_rate() {
                                steps.push(later);
                            } else {
                                for (e, v) in steps[0].iter_mut().zip(later) {
                                    *e = e.max(v);
                                }
                            }
                        }
                        Some(steps)
                    });
                    let (demands, basis) = match (&steps, t.usage.get(r)) {
                        (Some(steps), _) => (
                            (steps.iter())
                                .map(|&[p50, p90, p95, p99]| {
                                    Demand::from_quantiles(p50, p90, p95, p99)
                                })
                                .collect(),
                            Basis::Forecast,
                        ),
                        (None, Some(u)) => (
                            vec![Demand::certain(u * (1.0 + Reactive::DEFAULT_MARGIN))],
                            Basis::Usage,
                        ),
                        (None, None) => (vec![Demand::certain(share)], Basis::Share),
                    };
                    let last = l.allocation[r.index()];
                    if *t.capped.get(r) && last.is_finite() {
                        lo = lo.max(last * Self::PROBE_GROWTH);
                    }
                    let class = rules.class(t.policy.class);
                    // A class with a provisioning target τ values a unit so that it gets its
                    // τ-quantile when capacity is ample: v = cost / (1 − τ).
                    let value = match class.target.get(r) {
                        Some(tau) => cost.max(1e-9) / (1.0 - tau),
                        None => class.weight,
                    };
                    let items = (demands.into_iter())
                        .map(|demand| Item {
                            value: value * l.sensitivity[r.index()],
                            priority: class.weight,
                            demand,
                            lo: lo.min(hi),
                            hi,
                        })
                        .collect();
                    let k = Known {
                        steps: (steps.iter().flatten()).map(|q| (q[0], q[2])).collect(),
                        basis,
                        size,
                        domain: t.most(r),
                        limit,
                    };
                    (items, k)
                })
                .unzip();
            // Bucket b's items; a tenant whose forecast ends sooner keeps its last step.
            let buckets: Vec<Vec<Item>> = (0..asks.iter().map(Vec::len).max().unwrap_or(1))
                .map(|b| (asks.iter()).map(|a| a[b.min(a.len() - 1)]).collect())
                .collect();
            let s = solve_each_bucket(&buckets, capacity, cost);
            self.prices[r.index()] = s.solution.lambda;
            let why = reasons.iter_mut().zip(&known).zip(&s.solution.binding);
            let decisive = s.bucket.iter().zip(&s.lambdas);
            for (((((a, x), l), ((why, k), &binding)), &reserved), (&b, &lambda)) in (amounts
                .iter_mut())
            .zip(s.solution.x)
            .zip(learned.iter_mut())
            .zip(why)
            .zip(&reservations)
            .zip(decisive)
            {
                let step = k.steps.get(b).or(k.steps.last());
                let below = |v: f64| x < v * (1.0 - 1e-9);
                let binding = match binding {
                    // Squeezed below what the operator reserved: the reservations do not fit.
                    _ if below(reserved) => Binding::Capacity,
                    // Held above what the operator reserved: the policy's own floor or probe.
                    Binding::Reservation if x > reserved + 1e-9 * x.abs().max(1.0) => {
                        Binding::Floor
                    }
                    Binding::Limit if k.size.is_some_and(|m| !below(m)) => Binding::Size,
                    // Held at the capacity itself, not at a limit of its own.
                    Binding::Limit if below(k.limit) => Binding::Capacity,
                    // Its static share of a host that cannot give each domain its size.
                    Binding::None
                        if k.basis == Basis::Share
                            && capacity.is_some()
                            && k.domain.is_some_and(below) =>
                    {
                        Binding::Capacity
                    }
                    b => b,
                };
                *why.get_mut(r) = Reason {
                    forecast_p50: step.map(|q| q.0),
                    forecast_p95: step.map(|q| q.1),
                    binding,
                    lambda,
                    sensitivity: l.sensitivity[r.index()],
                    basis: Some(k.basis),
                };
                *a.get_mut(r) = x;
                l.before[r.index()] = l.allocation[r.index()];
                l.allocation[r.index()] = x;
            }
        }
        let tenants = obs
            .tenants
            .iter()
            .zip(amounts)
            .zip(learned)
            .zip(reasons)
            .map(|(((t, a), l), why)| {
                self.tenants.insert(Arc::clone(&t.id.uuid), l);
                TenantAllocation {
                    uuid: Arc::clone(&t.id.uuid),
                    amounts: a,
                    reasons: Some(why),
                }
            })
            .collect();
        Allocation { tenants }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::rules::Rules;
    use crate::allocate::tests::host_of;
    use crate::model::Class;

    fn allocate(obs: &crate::collect::Observation, rules: &str) -> Allocation {
        let rules = Rules::parse(rules, "test").unwrap();
        let mut p = Prescient::new(Prescient::DEFAULT_COST, true);
        let input = Inputs {
            obs,
            forecasts: None,
            rules: &rules,
            lead_s: PerResource::default(),
        };
        p.decide(&input)
    }

    fn decide(obs: &crate::collect::Observation, rules: &str) -> Vec<f64> {
        let a = allocate(obs, rules);
        a.tenants.iter().map(|t| t.amounts.cpu).collect()
    }

    /// A fresh policy's decision on `obs` whose CPU covers `lead_s` seconds ahead.
    fn ahead_by(
        obs: &crate::collect::Observation,
        stage: &crate::forecast::stage::ForecastStage,
        rules: &Rules,
        lead_s: f64,
    ) -> Allocation {
        let mut p = Prescient::new(Prescient::DEFAULT_COST, true);
        p.decide(&Inputs {
            obs,
            forecasts: Some(stage),
            rules,
            lead_s: PerResource {
                cpu: lead_s,
                ..Default::default()
            },
        })
    }

    /// The allocation decided in the last cycle before a busy bucket, when the next decision
    /// would come into force only inside it, is already raised to the busy bucket's forecast.
    #[test]
    fn a_rise_is_decided_before_the_bucket_it_is_for() {
        use crate::forecast::stage::ForecastStage;
        let mut stage =
            ForecastStage::new(crate::forecast::Config::default()).with_bucket_seconds(20);
        let busy = |t: i64| (t - 1).div_euclid(20).rem_euclid(12) < 6;
        let at = |t: i64| {
            let mut o = host_of(2.0, &[Class::Gold]);
            o.at_unix_ms = t * 1000;
            let u = &mut o.tenants[0].usage;
            u.cpu = Some(if busy(t) { 1.0 } else { 0.1 });
            (u.mem, u.disk, u.net) = (Some(1e5), Some(1e3), Some(1e3));
            o
        };
        // An hour and a half of the 4-minute cycle, up to 10 s before an idle-to-busy step.
        let start = 1_700_000_040; // the start of a busy bucket
        let step = start + 240 * 23 + 120;
        assert!(busy(step + 1) && !busy(step - 1));
        let mut t = start;
        while t <= step - 10 {
            stage.observe(&at(t));
            t += 10;
        }
        // The class asks for its p90 (after an hour and a half, the idle buckets' p95 still
        // holds the steps the forecast missed).
        let rules = Rules::parse("[classes.gold]\ntarget = { cpu = 0.9 }\n", "test").unwrap();
        let obs = at(step - 10);
        let cpu_with = |lead: f64| ahead_by(&obs, &stage, &rules, lead).tenants[0].amounts.cpu;
        let early = cpu_with(10.05);
        let within = cpu_with(5.0);
        assert!(early >= 0.9, "raised for the busy bucket: {early}");
        assert!(within < 0.5, "the idle bucket alone: {within}");
    }

    /// The lab's shape: three 1-vCPU tenants on 2 cores taking turns to be busy for 80 s of
    /// every 240 s, silver then bronze then gold. The decision just before bronze's step
    /// also covers silver's last busy bucket: each bucket is solved on its own, so bronze is
    /// raised for its step although the two peaks together would not fit.
    #[test]
    fn peaks_in_consecutive_buckets_are_both_covered() {
        use crate::forecast::stage::ForecastStage;
        let mut stage =
            ForecastStage::new(crate::forecast::Config::default()).with_bucket_seconds(20);
        // Tenant i (gold, silver, bronze) is busy in the i-th third of the cycle after
        // silver's (silver 0–80 s, bronze 80–160 s, gold 160–240 s).
        let busy = |i: usize, t: i64| (t - 1).div_euclid(80).rem_euclid(3) == (i as i64 + 2) % 3;
        let at = |t: i64| {
            let mut o = host_of(2.0, &[Class::Gold, Class::Silver, Class::Bronze]);
            o.at_unix_ms = t * 1000;
            for (i, tenant) in o.tenants.iter_mut().enumerate() {
                tenant.vcpus = 1;
                let u = &mut tenant.usage;
                u.cpu = Some(if busy(i, t) { 1.0 } else { 0.05 });
                (u.mem, u.disk, u.net) = (Some(1e5), Some(1e3), Some(1e3));
            }
            o
        };
        let start = 1_700_000_160; // the start of a cycle (silver's step)
        let step = start + 240 * 22 + 80; // bronze's step
        assert!(busy(2, step + 1) && !busy(2, step - 1) && busy(1, step - 1));
        let mut t = start;
        while t <= step - 5 {
            stage.observe(&at(t));
            t += 5;
        }
        let rules = Rules::parse(
            "[classes.gold]\ntarget = { cpu = 0.9 }\n\
             [classes.silver]\ntarget = { cpu = 0.9 }\n\
             [classes.bronze]\ntarget = { cpu = 0.9 }\n",
            "test",
        )
        .unwrap();
        let obs = at(step - 5);
        let decide_with = |lead: f64| ahead_by(&obs, &stage, &rules, lead);
        let both = decide_with(10.05);
        let cpu: Vec<f64> = both.tenants.iter().map(|t| t.amounts.cpu).collect();
        assert!(
            cpu[1] >= 0.9 && cpu[2] >= 0.9,
            "silver and bronze up: {cpu:?}"
        );
        let reasons = both.tenants[2].reasons.as_ref().unwrap();
        assert!(
            reasons.cpu.forecast_p50.unwrap() > 0.5,
            "bronze's reason is its busy bucket's forecast: {reasons:?}"
        );
        let now = decide_with(5.0);
        assert!(
            now.tenants[2].amounts.cpu < 0.5,
            "the idle bucket alone: {now:?}"
        );
    }

    #[test]
    fn the_rules_bound_the_solve() {
        // Without forecasts each tenant asks what reactive would (1.2 cores).
        let obs = host_of(16.0, &[Class::Gold, Class::Silver, Class::Bronze]);
        let x = decide(&obs, "");
        assert!(x.iter().all(|&x| (x - 1.2).abs() < 1e-9), "{x:?}");
        let x = decide(
            &obs,
            "[classes.gold]\nlimit = { cpu_cores = 0.5 }\n\
             [classes.bronze]\nreservation = { cpu_cores = 3 }\n",
        );
        assert_eq!(x[0], 0.5);
        assert!((x[1] - 1.2).abs() < 1e-9 && x[2] == 3.0, "{x:?}");
        // ...and each allocation says which constraint bound.
        let a = allocate(
            &obs,
            "[classes.gold]\nlimit = { cpu_cores = 0.5 }\n\
             [classes.bronze]\nreservation = { cpu_cores = 3 }\n",
        );
        let why: Vec<_> = a.tenants.iter().map(|t| t.reasons.unwrap().cpu).collect();
        use crate::plan::Binding;
        assert_eq!(
            why.iter().map(|w| w.binding).collect::<Vec<_>>(),
            [Binding::Limit, Binding::None, Binding::Reservation]
        );
        assert!(
            why.iter()
                .all(|w| w.forecast_p50.is_none() && w.sensitivity == 1.0)
        );
        // An idle tenant held up by the policy's own floor (a share of its static share)
        // says so, not that a reservation holds it.
        let mut idle = obs.clone();
        idle.tenants[0].usage.cpu = Some(0.001);
        let a = allocate(&idle, "");
        let why = a.tenants[0].reasons.unwrap().cpu;
        assert_eq!(why.binding, Binding::Floor, "{:?}", a.tenants[0].amounts);
        // Where the host enforces a domain's size, no more than its vCPUs: the rest would be
        // allocated and never used. Not where the size is no limit (a trace replay).
        let mut small = obs.clone();
        small.tenants[0].usage.cpu = Some(3.9);
        assert!(allocate(&small, "").tenants[0].amounts.cpu > 4.0);
        small.tenants[0].size_is_limit = true;
        let a = allocate(&small, "");
        assert_eq!(a.tenants[0].amounts.cpu, 4.0);
        assert_eq!(a.tenants[0].reasons.unwrap().cpu.binding, Binding::Size);
        // A tenant's metadata overrides its class.
        let mut obs = obs;
        obs.tenants[0].policy.limit.cpu = Some(0.8);
        let x = decide(&obs, "[classes.gold]\nlimit = { cpu_cores = 0.5 }\n");
        assert_eq!(x[0], 0.8);
        // The host reserve comes off what the tenants share: 1 core left for 3 × 1.2.
        let x = decide(&obs, "[host.reserve]\ncpu_cores = 15\n");
        assert!((x.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{x:?}");
        assert!(x[0] > x[1] && x[1] > x[2], "{x:?}");
    }

    /// A tenant's sensitivity for cpu after `steps` of (allocation, served usage, capped).
    fn learn(steps: &[(f64, f64, bool)]) -> f64 {
        let mut l = Learned::default();
        for &(allocation, usage, capped) in steps {
            l.learn(0, usage, capped); // what the interval under the last allocation showed
            l.before[0] = l.allocation[0];
            l.allocation[0] = allocation;
        }
        l.sensitivity[0]
    }

    #[test]
    fn the_ledger_halves_in_a_day_whatever_the_interval() {
        let mut a = Ledger::default();
        a.add(10.0, 5.0, 2.0);
        let mut b = a;
        a.decay(86_400.0);
        (0..8_640).for_each(|_| b.decay(10.0));
        assert!((a.allocated - 5.0).abs() < 1e-3, "{a:?}");
        assert!((b.allocated - a.allocated).abs() < 1e-9, "{b:?}");
        assert!(
            (b.weighted_served - a.weighted_served).abs() < 1e-9,
            "{b:?}"
        );
    }

    #[test]
    fn feedback_follows_what_the_tenant_gained() {
        // Given more (10 → 20) and using none of it: lower.
        let idle = learn(&[
            (10.0, 5.0, false),
            (10.0, 5.0, false),
            (20.0, 5.0, false),
            (20.0, 5.0, false),
        ]);
        assert!(idle < 1.0, "{idle}");
        // Given more and using it: as it was.
        let used = learn(&[
            (10.0, 5.0, false),
            (10.0, 5.0, false),
            (20.0, 5.0, false),
            (20.0, 15.0, false),
        ]);
        assert_eq!(used, 1.0);
        // Squeezed (20 → 10) into a cap: higher.
        let hurt = learn(&[
            (20.0, 15.0, false),
            (20.0, 15.0, false),
            (10.0, 15.0, false),
            (10.0, 10.0, true),
        ]);
        assert!(hurt > 1.0, "{hurt}");
        // Squeezed without harm: as it was.
        let fine = learn(&[
            (20.0, 5.0, false),
            (20.0, 5.0, false),
            (10.0, 5.0, false),
            (10.0, 5.0, false),
        ]);
        assert_eq!(fine, 1.0);
        // Bounded.
        let many: Vec<_> = (0..200)
            .flat_map(|_| [(10.0, 5.0, false), (20.0, 5.0, false)])
            .collect();
        assert_eq!(learn(&many), S_MIN);
    }
}
