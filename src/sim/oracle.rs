use crate::allocate::{Allocation, Policy, TenantAllocation};
use crate::backend::trace::to_pipeline;
use crate::collect::Observation;
use crate::model::{PerResource, Resource};
use crate::sim::replay::{INTERVAL_S, Replay};
use std::collections::HashMap;
use std::sync::Arc;

/// `oracle`: knows the coming interval's true demand and allocates it by priority: gold's
/// demand first, then silver's, then bronze's, the first class that does not fit scaled down
/// in proportion. The upper bound no real policy can beat; the only policy that sees demand.
pub struct Oracle {
    replay: Arc<Replay>,
    index: HashMap<String, usize>,
}

impl Oracle {
    pub fn new(replay: Arc<Replay>) -> Self {
        let index = replay
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Oracle { replay, index }
    }
}

/// Fill classes in order of weight; the first that does not fit is scaled down in proportion.
pub fn fit_priority(requests: &mut [f64], weights: &[f64], capacity: f64) {
    let mut levels: Vec<f64> = weights.to_vec();
    levels.sort_by(|a, b| b.total_cmp(a));
    levels.dedup();
    let mut left = capacity;
    for w in levels {
        let want: f64 = requests
            .iter()
            .zip(weights)
            .filter(|(_, x)| **x == w)
            .map(|(r, _)| r)
            .sum();
        let f = if want <= left {
            1.0
        } else if want > 0.0 {
            left.max(0.0) / want
        } else {
            0.0
        };
        for (r, _) in requests.iter_mut().zip(weights).filter(|(_, x)| **x == w) {
            *r *= f;
        }
        left -= want * f;
    }
}

impl Policy for Oracle {
    fn describe(&self) -> String {
        "oracle".into()
    }

    fn decide(&mut self, obs: &Observation) -> Allocation {
        let k = ((obs.at_unix_ms / 1000 - self.replay.t0) / INTERVAL_S) as usize;
        let weights: Vec<f64> = obs
            .tenants
            .iter()
            .map(|t| t.policy.class.weight())
            .collect();
        let mut amounts = vec![PerResource::<f64>::default(); obs.tenants.len()];
        for r in Resource::ALL {
            let mut col: Vec<f64> = obs
                .tenants
                .iter()
                .map(|t| {
                    let i = self.index[&*t.id.name];
                    let d = self.replay.tenants[i].demand(r, k);
                    if d.is_nan() { 0.0 } else { to_pipeline(r, d) }
                })
                .collect();
            if let Some(c) = *obs.host.capacity.get(r) {
                fit_priority(&mut col, &weights, c);
            }
            for (a, v) in amounts.iter_mut().zip(col) {
                *a.get_mut(r) = v;
            }
        }
        Allocation {
            tenants: obs
                .tenants
                .iter()
                .zip(amounts)
                .map(|(t, amounts)| TenantAllocation {
                    uuid: t.id.uuid.clone(),
                    amounts,
                })
                .collect(),
        }
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
}
