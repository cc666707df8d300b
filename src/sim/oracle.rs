use crate::allocate::{Inputs, Policy, fit_priority, fit_to_host};
use crate::backend::trace::to_pipeline;
use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use crate::plan::Allocation;
use crate::sim::replay::Replay;
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

impl Policy for Oracle {
    fn describe(&self) -> String {
        "oracle".into()
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let obs = input.obs;
        let k = ((obs.at_unix_ms / 1000 - self.replay.t0) / STEP_S) as usize;
        let demands = obs
            .tenants
            .iter()
            .map(|t| {
                let tenant = &self.replay.tenants[self.index[&*t.id.name]];
                let mut d = PerResource::default();
                for r in Resource::ALL {
                    let v = tenant.demand(r, k);
                    *d.get_mut(r) = if v.is_nan() { 0.0 } else { to_pipeline(r, v) };
                }
                d
            })
            .collect();
        fit_to_host(obs, input.rules, demands, fit_priority)
    }
}
