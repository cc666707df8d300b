//! Allocate: from what was observed, how much of each resource each tenant gets for the
//! coming interval. A [`Policy`] is the part of the control loop between observation and
//! plan; the baselines the simulator compares against live in [`baselines`].

pub mod baselines;
pub mod kind;
pub mod overrides;
pub mod prescient;
pub mod rules;
pub mod solve;

use crate::collect::{Observation, TenantStats};
use crate::forecast::stage::ForecastStage;
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, Basis, Binding, Reason, TenantAllocation};
use rules::Rules;
use std::sync::Arc;

/// What a policy sees when it decides the coming interval: what a real host measures (the
/// observation of the interval that just ended) and, when the control loop forecasts, every
/// tenant's forecast; and the operator's rules it must obey.
pub struct Inputs<'a> {
    pub obs: &'a Observation,
    pub forecasts: Option<&'a ForecastStage>,
    pub rules: &'a Rules,
    /// Seconds, per resource, from this decision until the next one may be in force (the
    /// measured reach of a decision, [`crate::cadence`], plus the setter's latency): the
    /// span this allocation must cover.
    pub lead_s: PerResource<f64>,
}

/// Decides allocations, once per interval, after the observation of the interval that just
/// ended.
pub trait Policy: Send {
    /// Name and knob, e.g. `reactive(margin=0.2)`.
    fn describe(&self) -> String;
    fn decide(&mut self, input: &Inputs<'_>) -> Allocation;
    /// The shadow price λ of each resource in the last decision, for a policy that has one
    /// (0: capacity was ample).
    fn prices(&self) -> Option<PerResource<f64>> {
        None
    }
    /// Take back what the policy learnt of a tenant, from the reasons it gave last (kept in
    /// the profile); returns whether it had anything to learn from them.
    fn restore(&mut self, _uuid: &str, _last: &PerResource<crate::plan::Reason>) -> bool {
        false
    }
}

/// The request a tenant makes when nothing is known of it yet: its share of the host in
/// proportion to class weight × provisioned size (the `static` policy's rule).
pub fn size(t: &TenantStats, r: Resource) -> f64 {
    match r {
        Resource::Cpu => t.vcpus.max(1) as f64,
        Resource::Mem => (t.max_memory_kib as f64).max(1.0),
        Resource::Disk | Resource::Net => 1.0,
    }
}

/// Each tenant's static share of what the tenants may have of resource `r` (the host's
/// capacity less its reserve): ∝ class weight × size.
pub fn static_shares(obs: &Observation, rules: &Rules, r: Resource) -> Vec<f64> {
    let keys: Vec<f64> = obs
        .tenants
        .iter()
        .map(|t| rules.weight(t.policy.class) * size(t, r))
        .collect();
    let total: f64 = keys.iter().sum();
    match rules.capacity(&obs.host, r) {
        Some(c) if total > 0.0 => keys.iter().map(|k| c * k / total).collect(),
        // No known capacity: every tenant may have its provisioned size.
        _ => obs.tenants.iter().map(|t| size(t, r)).collect(),
    }
}

/// Scale requests down to fit `capacity`, less for heavier classes: x_i = r_i · min(1, θ·w_i)
/// with θ chosen so that Σ x_i = capacity (requests that fit are returned unchanged).
pub fn fit_weighted(requests: &mut [f64], weights: &[f64], capacity: f64) {
    let total: f64 = requests.iter().sum();
    if total <= capacity {
        return;
    }
    // Group the requests by weight: θ's breakpoints are 1/w, heaviest class first.
    let mut groups: Vec<(f64, f64)> = Vec::new(); // (weight, Σ requests)
    for (&r, &w) in requests.iter().zip(weights) {
        match groups.iter_mut().find(|(gw, _)| *gw == w) {
            Some(g) => g.1 += r,
            None => groups.push((w, r)),
        }
    }
    groups.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut saturated = 0.0; // Σ requests of groups with θ·w ≥ 1
    let mut theta = 0.0;
    for k in 0..=groups.len() {
        let unsat: f64 = groups[k..].iter().map(|(w, r)| w * r).sum();
        if unsat > 0.0 {
            theta = (capacity - saturated).max(0.0) / unsat;
        }
        // Valid if no unsaturated group would be over its request at this θ.
        if k == groups.len() || theta * groups[k].0 <= 1.0 {
            break;
        }
        saturated += groups[k].1;
    }
    for (r, &w) in requests.iter_mut().zip(weights) {
        *r *= (theta * w).min(1.0);
    }
    // Guard against rounding: never exceed capacity.
    let sum: f64 = requests.iter().sum();
    if sum > capacity && sum > 0.0 {
        let f = capacity / sum;
        requests.iter_mut().for_each(|r| *r *= f);
    }
}

/// Fill classes in order of weight; the first class that does not fit is scaled down in
/// proportion, the ones after it get nothing.
pub fn fit_priority(requests: &mut [f64], weights: &[f64], capacity: f64) {
    let mut levels: Vec<f64> = weights.to_vec();
    levels.sort_by(|a, b| b.total_cmp(a));
    levels.dedup();
    let mut left = capacity;
    for w in levels {
        let in_class = |x: &f64| *x == w;
        let want: f64 = requests
            .iter()
            .zip(weights)
            .filter(|(_, x)| in_class(x))
            .map(|(r, _)| r)
            .sum();
        let f = if want <= left {
            1.0
        } else if want > 0.0 {
            left.max(0.0) / want
        } else {
            0.0
        };
        for (r, _) in requests
            .iter_mut()
            .zip(weights)
            .filter(|(_, x)| in_class(x))
        {
            *r *= f;
        }
        left -= want * f;
    }
}

/// Turn per-tenant requests into an allocation that fits the host under the operator's
/// rules: negative or non-finite requests become 0 and each is held within the tenant's
/// reservation and limit; then, for each resource with a known capacity (less the host's
/// reserve), the reservations are given first and what the requests ask beyond them is
/// fitted into the rest with `fit` ([`fit_weighted`] or [`fit_priority`]). When even the
/// reservations do not fit, they are squeezed, the lowest weight first. Each amount comes
/// with the constraint that bound it (its basis: the policy's rule).
pub fn fit_to_host(
    obs: &Observation,
    rules: &Rules,
    mut requests: Vec<PerResource<f64>>,
    fit: fn(&mut [f64], &[f64], f64),
) -> Allocation {
    let weights: Vec<f64> = obs
        .tenants
        .iter()
        .map(|t| rules.weight(t.policy.class))
        .collect();
    let mut reasons = vec![PerResource::<Reason>::default(); obs.tenants.len()];
    for r in Resource::ALL {
        let bounds: Vec<(f64, f64)> = obs.tenants.iter().map(|t| rules.bounds(t, r)).collect();
        let raw: Vec<f64> = (requests.iter())
            .map(|q| {
                let v = *q.get(r);
                if v.is_finite() { v.max(0.0) } else { 0.0 }
            })
            .collect();
        let clamped: Vec<f64> = (raw.iter().zip(&bounds))
            .map(|(v, &(lo, hi))| v.clamp(lo, hi))
            .collect();
        let mut col = clamped.clone();
        let capacity = rules.capacity(&obs.host, r);
        if let Some(c) = capacity {
            let mut lows: Vec<f64> = bounds.iter().map(|b| b.0).collect();
            let reserved: f64 = lows.iter().sum();
            if reserved >= c {
                fit_priority(&mut lows, &weights, c);
                col = lows;
            } else {
                let mut above: Vec<f64> = col.iter().zip(&lows).map(|(x, lo)| x - lo).collect();
                fit(&mut above, &weights, c - reserved);
                col = lows.iter().zip(above).map(|(lo, a)| lo + a).collect();
            }
        }
        for (i, x) in col.iter().enumerate() {
            let ((lo, hi), want) = (bounds[i], raw[i]);
            let below = |v: f64| *x < v * (1.0 - 1e-9);
            let binding = if below(lo) || (capacity.is_some() && below(clamped[i])) {
                Binding::Capacity
            } else if lo > 0.0 && want <= lo && !below(lo) && *x <= lo * (1.0 + 1e-9) {
                Binding::Reservation
            } else if hi.is_finite() && want >= hi && !below(hi) {
                Binding::Limit
            } else {
                Binding::None
            };
            *reasons[i].get_mut(r) = Reason {
                binding,
                sensitivity: 1.0,
                basis: Some(Basis::Rule),
                ..Reason::default()
            };
        }
        for (q, v) in requests.iter_mut().zip(col) {
            *q.get_mut(r) = v;
        }
    }
    Allocation {
        tenants: (obs.tenants.iter().zip(requests).zip(reasons))
            .map(|((t, amounts), why)| TenantAllocation {
                uuid: Arc::clone(&t.id.uuid),
                amounts,
                reasons: Some(why),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Class;

    /// An observation of tenants of `classes` on a host of `cpus` cores, each using 1 core.
    pub(crate) fn host_of(cpus: f64, classes: &[Class]) -> Observation {
        let mut obs = Observation {
            at_unix_ms: 0,
            host: Default::default(),
            tenants: vec![],
            appeared: vec![],
            vanished: vec![],
        };
        obs.host.capacity.cpu = Some(cpus);
        for (i, &class) in classes.iter().enumerate() {
            let mut t = TenantStats::default();
            t.id.uuid = format!("u{i}").into();
            t.policy.class = class;
            t.vcpus = 4;
            t.usage.cpu = Some(1.0);
            obs.tenants.push(t);
        }
        obs
    }

    fn cpu(a: &Allocation) -> Vec<f64> {
        a.tenants.iter().map(|t| t.amounts.cpu).collect()
    }

    fn requests(cpu: &[f64]) -> Vec<PerResource<f64>> {
        cpu.iter()
            .map(|&c| PerResource {
                cpu: c,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn fitting_obeys_reservations_limits_and_the_host_reserve() {
        let obs = host_of(10.0, &[Class::Gold, Class::Silver, Class::Bronze]);
        let rules = rules::Rules::parse(
            "[host.reserve]\ncpu_cores = 2\n\
             [classes.gold]\nlimit = { cpu_cores = 3 }\n\
             [classes.bronze]\nreservation = { cpu_cores = 2 }\n",
            "test",
        )
        .unwrap();
        // Ample: gold held at its limit, bronze lifted to its reservation.
        let a = fit_to_host(&obs, &rules, requests(&[5.0, 1.0, 0.5]), fit_weighted);
        assert_eq!(cpu(&a), [3.0, 1.0, 2.0]);
        // Short (8 cores after the reserve): bronze keeps its reservation, the rest is
        // shared by weight beyond the reservations.
        let a = fit_to_host(&obs, &rules, requests(&[3.0, 6.0, 4.0]), fit_weighted);
        let x = cpu(&a);
        assert!((x.iter().sum::<f64>() - 8.0).abs() < 1e-9, "{x:?}");
        assert!(x[2] >= 2.0 && x[0] <= 3.0, "{x:?}");
        // Reservations beyond the host: the lowest weight is squeezed first.
        let rules = rules::Rules::parse(
            "[classes.gold]\nreservation = { cpu_cores = 6 }\n\
             [classes.bronze]\nreservation = { cpu_cores = 6 }\n",
            "test",
        )
        .unwrap();
        let a = fit_to_host(&obs, &rules, requests(&[1.0, 1.0, 1.0]), fit_weighted);
        assert_eq!(cpu(&a), [6.0, 0.0, 4.0]);
    }

    /// Seven domains of 2 vCPUs on 4 CPUs, nothing known of them yet: every policy says
    /// capacity bound them (their static share is below their size), and from what.
    #[test]
    fn a_squeeze_to_the_static_share_is_reported_as_capacity_by_every_policy() {
        use crate::allocate::kind::PolicyKind;
        use crate::plan::{Basis, Binding};
        let mut obs = host_of(4.0, &[Class::Silver; 7]);
        obs.tenants[0].policy.class = Class::Gold;
        for t in &mut obs.tenants {
            t.vcpus = 2;
            t.size_is_limit = true;
            t.usage.cpu = None;
        }
        let rules = Rules::default();
        let decide = |name: &str, obs: &Observation| {
            let kind: PolicyKind = name.parse().unwrap();
            let (mut policy, _) = kind.build(None, Default::default()).unwrap();
            policy.decide(&Inputs {
                obs,
                forecasts: None,
                rules: &rules,
                lead_s: PerResource::default(),
            })
        };
        for name in ["static", "reactive", "vpa", "nsigma", "prescient"] {
            let a = decide(name, &obs);
            let x = cpu(&a);
            assert!((x.iter().sum::<f64>() - 4.0).abs() < 1e-6, "{name}: {x:?}");
            for t in &a.tenants {
                let why = t.reasons.expect("every policy gives reasons").cpu;
                assert_eq!(why.binding, Binding::Capacity, "{name}: {x:?}");
                assert_eq!(why.basis, Some(Basis::Share), "{name}");
            }
        }
        // Room to spare: a gold tenant held at its metadata limit says so, a baseline
        // included, even where it asks exactly its limit.
        let mut obs = host_of(16.0, &[Class::Gold, Class::Bronze]);
        obs.tenants[0].policy.limit.cpu = Some(1.2);
        for name in ["reactive", "prescient"] {
            let a = decide(name, &obs);
            let why = a.tenants[0].reasons.unwrap().cpu;
            assert_eq!(why.binding, Binding::Limit, "{name}: {:?}", cpu(&a));
            assert_eq!(a.tenants[1].reasons.unwrap().cpu.binding, Binding::None);
        }
    }

    #[test]
    fn priority_fill() {
        let mut r = vec![5.0, 5.0, 5.0, 5.0];
        fit_priority(&mut r, &[4.0, 2.0, 2.0, 1.0], 10.0);
        assert_eq!(r, [5.0, 2.5, 2.5, 0.0]);
    }

    #[test]
    fn fitting_requests_are_untouched() {
        let mut r = vec![1.0, 2.0, 3.0];
        fit_weighted(&mut r, &[4.0, 2.0, 1.0], 6.0);
        assert_eq!(r, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn heavier_classes_are_scaled_down_less() {
        let mut r = vec![10.0, 10.0, 10.0];
        fit_weighted(&mut r, &[4.0, 2.0, 1.0], 15.0);
        let sum: f64 = r.iter().sum();
        assert!((sum - 15.0).abs() < 1e-9, "{r:?}");
        // θ = 15 / 70: shares 4θ, 2θ, θ of each request.
        assert!((r[0] / r[1] - 2.0).abs() < 1e-9 && (r[1] / r[2] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn gold_saturates_first() {
        // Gold asks little: it gets all of it; the rest share what is left by weight.
        let mut r = vec![1.0, 10.0, 10.0];
        fit_weighted(&mut r, &[4.0, 2.0, 1.0], 11.0);
        assert!((r[0] - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.iter().sum::<f64>() - 11.0).abs() < 1e-9);
        assert!((r[1] / r[2] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn brute_force_agrees() {
        // Random instances: the result sums to capacity and matches r·min(1, θw) for the θ
        // found by bisection.
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..200 {
            let n = 1 + (rnd() * 20.0) as usize;
            let req: Vec<f64> = (0..n).map(|_| rnd() * 10.0).collect();
            let w: Vec<f64> = (0..n)
                .map(|_| [1.0, 2.0, 4.0][(rnd() * 3.0) as usize])
                .collect();
            let cap = rnd() * req.iter().sum::<f64>();
            let mut got = req.clone();
            fit_weighted(&mut got, &w, cap);
            let (mut lo, mut hi) = (0.0, 10.0);
            for _ in 0..200 {
                let mid = (lo + hi) / 2.0;
                let s: f64 = req
                    .iter()
                    .zip(&w)
                    .map(|(r, w)| r * (mid * w).min(1.0))
                    .sum();
                if s > cap { hi = mid } else { lo = mid }
            }
            for i in 0..n {
                let want = req[i] * (lo * w[i]).min(1.0);
                assert!((got[i] - want).abs() < 1e-6, "{req:?} {w:?} {cap}: {got:?}");
            }
        }
    }
}
