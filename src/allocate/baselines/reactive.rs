use super::super::{Inputs, Policy};
use super::PerTenant;
use crate::plan::Allocation;

/// `reactive`: the last observed usage × (1 + margin), as oVirt MOM's and Proxmox's
/// auto-ballooning rules react to what a VM used a moment ago; × `cap_growth` more after an
/// interval in which the tenant ran into its allocation, as those tools react to pressure
/// (guest memory pressure, swap) rather than ratchet down to what a cap let through. Knob:
/// the margin; a cap growth of 1 turns the growth off.
pub struct Reactive {
    margin: f64,
    cap_growth: f64,
    tenants: PerTenant<()>,
}

impl Reactive {
    pub const DEFAULT_MARGIN: f64 = 0.2;
    pub const DEFAULT_CAP_GROWTH: f64 = 1.5;

    pub fn new(margin: f64, cap_growth: f64) -> Self {
        Reactive {
            margin,
            cap_growth,
            tenants: PerTenant::new(),
        }
    }
}

impl Policy for Reactive {
    fn describe(&self) -> String {
        format!(
            "reactive(margin={}, cap_growth={})",
            self.margin, self.cap_growth
        )
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let (m, g) = (self.margin, self.cap_growth);
        self.tenants.decide(input, |_, _, seen| {
            let grow = if seen.capped { g } else { 1.0 };
            seen.usage.map(|u| u * (1.0 + m) * grow)
        })
    }
}
