//! The reactive baselines prescient is measured against, each as operators know it. Sources
//! and exact rules: docs/evaluation.md.
//!
//! Every baseline requests, per tenant and resource, an amount computed from the usage it
//! observed; a tenant with no usage yet requests its static share. Requests never go below
//! [`FLOOR`] × the static share (a cap of 0 would starve a tenant for good: its served usage,
//! all a policy sees, would stay 0). Requests are held within each tenant's reservation and
//! limit, and requests beyond capacity are scaled down by class weight
//! ([`super::fit_to_host`]).

mod nsigma;
mod reactive;
mod static_share;
mod vpa;

pub use nsigma::NSigma;
pub use reactive::Reactive;
pub use static_share::StaticShare;
pub use vpa::Vpa;

use super::{Inputs, fit_to_host, fit_weighted, static_shares};
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, Basis, Binding};
use std::collections::HashMap;
use std::sync::Arc;

/// The smallest request, as a fraction of the tenant's static share.
pub const FLOOR: f64 = 0.05;

/// What a baseline sees of one tenant and resource in the interval that just ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// Served usage (None: not measured yet).
    pub usage: Option<f64>,
    /// Whether the tenant ran into its allocation (its demand may have been higher).
    pub capped: bool,
    pub at_ms: i64,
}

/// Per-tenant state of a baseline, dropped when the tenant vanishes.
pub(crate) struct PerTenant<S> {
    states: HashMap<Arc<str>, S>,
}

impl<S: Default> PerTenant<S> {
    pub fn new() -> Self {
        PerTenant {
            states: HashMap::new(),
        }
    }

    /// Forget vanished tenants, then run `f(state, resource, seen)` → request for each
    /// tenant and resource, and fit the requests to the host.
    pub fn decide(
        &mut self,
        input: &Inputs<'_>,
        mut f: impl FnMut(&mut S, Resource, Seen) -> Option<f64>,
    ) -> Allocation {
        let (obs, rules) = (input.obs, input.rules);
        for id in &obs.vanished {
            self.states.remove(&*id.uuid);
        }
        let shares: Vec<[f64; 4]> = {
            let cols: Vec<Vec<f64>> = Resource::ALL
                .iter()
                .map(|&r| static_shares(obs, rules, r))
                .collect();
            (0..obs.tenants.len())
                .map(|i| [cols[0][i], cols[1][i], cols[2][i], cols[3][i]])
                .collect()
        };
        // Per tenant and resource: asked for its static share (nothing known of it yet),
        // and raised to the floor.
        let mut how = vec![[(false, false); 4]; obs.tenants.len()];
        let requests = obs
            .tenants
            .iter()
            .zip(&shares)
            .zip(how.iter_mut())
            .map(|((t, share), how)| {
                if !self.states.contains_key(&*t.id.uuid) {
                    self.states.insert(Arc::clone(&t.id.uuid), S::default());
                }
                let state = self.states.get_mut(&*t.id.uuid).expect("inserted above");
                let mut q = PerResource::default();
                for r in Resource::ALL {
                    let s = share[r.index()];
                    let seen = Seen {
                        usage: *t.usage.get(r),
                        capped: *t.capped.get(r),
                        at_ms: obs.at_unix_ms,
                    };
                    let want = f(state, r, seen);
                    let floor = FLOOR * s;
                    how[r.index()] = (want.is_none(), want.is_some_and(|w| w < floor));
                    *q.get_mut(r) = want.unwrap_or(s).max(floor);
                }
                q
            })
            .collect();
        let mut a = fit_to_host(obs, rules, requests, fit_weighted);
        for ((a, t), how) in a.tenants.iter_mut().zip(&obs.tenants).zip(&how) {
            let Some(why) = a.reasons.as_mut() else {
                continue;
            };
            for r in Resource::ALL {
                let (shared, floored) = how[r.index()];
                let (x, why) = (*a.amounts.get(r), why.get_mut(r));
                if shared {
                    why.basis = Some(Basis::Share);
                    // Its share of a host that cannot give each domain its size.
                    if why.binding == Binding::None
                        && rules.capacity(&obs.host, r).is_some()
                        && t.most(r).is_some_and(|m| x < m * (1.0 - 1e-9))
                    {
                        why.binding = Binding::Capacity;
                    }
                } else if floored && why.binding == Binding::None {
                    why.binding = Binding::Floor;
                }
            }
        }
        a
    }
}
