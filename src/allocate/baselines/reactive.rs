use super::super::{Allocation, Policy};
use super::PerTenant;
use crate::collect::Observation;

/// `reactive`: the last observed usage × (1 + margin), as oVirt MOM's and Proxmox's
/// auto-ballooning rules react to what a VM used a moment ago. Knob: the margin.
pub struct Reactive {
    margin: f64,
    tenants: PerTenant<()>,
}

impl Reactive {
    pub const DEFAULT_MARGIN: f64 = 0.2;

    pub fn new(margin: f64) -> Self {
        Reactive {
            margin,
            tenants: PerTenant::new(),
        }
    }
}

impl Policy for Reactive {
    fn describe(&self) -> String {
        format!("reactive(margin={})", self.margin)
    }

    fn decide(&mut self, obs: &Observation) -> Allocation {
        let m = self.margin;
        self.tenants
            .decide(obs, |_, _, usage, _| usage.map(|u| u * (1.0 + m)))
    }
}
