//! Allocate: from what was observed, how much of each resource each tenant gets for the
//! coming interval. A [`Policy`] is the part of the control loop between observation and
//! plan; the baselines the simulator compares against live in [`baselines`].

pub mod baselines;
pub mod prescient;
pub mod solve;

use crate::collect::{Observation, TenantStats};
use crate::forecast::stage::ForecastStage;
use crate::model::{Allocation, PerResource, Resource, TenantAllocation};
use std::sync::Arc;

/// What a policy sees when it decides the coming interval: what a real host measures (the
/// observation of the interval that just ended) and, when the control loop forecasts, every
/// tenant's forecast.
pub struct Inputs<'a> {
    pub obs: &'a Observation,
    pub forecasts: Option<&'a ForecastStage>,
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

/// Each tenant's static share of `capacity` of resource `r`: ∝ class weight × size.
pub fn static_shares(obs: &Observation, r: Resource) -> Vec<f64> {
    let keys: Vec<f64> = obs
        .tenants
        .iter()
        .map(|t| t.policy.class.weight() * size(t, r))
        .collect();
    let total: f64 = keys.iter().sum();
    match obs.host.capacity.get(r) {
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

/// Turn per-tenant requests into an allocation that fits the host: negative or non-finite
/// requests become 0, then each resource with a known capacity is fitted with `fit`
/// ([`fit_weighted`] or [`fit_priority`]).
pub fn fit_to_host(
    obs: &Observation,
    mut requests: Vec<PerResource<f64>>,
    fit: fn(&mut [f64], &[f64], f64),
) -> Allocation {
    let weights: Vec<f64> = obs
        .tenants
        .iter()
        .map(|t| t.policy.class.weight())
        .collect();
    for r in Resource::ALL {
        let mut col: Vec<f64> = requests
            .iter()
            .map(|q| {
                let v = *q.get(r);
                if v.is_finite() { v.max(0.0) } else { 0.0 }
            })
            .collect();
        if let Some(c) = *obs.host.capacity.get(r) {
            fit(&mut col, &weights, c);
        }
        for (q, v) in requests.iter_mut().zip(col) {
            *q.get_mut(r) = v;
        }
    }
    Allocation {
        tenants: obs
            .tenants
            .iter()
            .zip(requests)
            .map(|(t, amounts)| TenantAllocation {
                uuid: Arc::clone(&t.id.uuid),
                amounts,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
