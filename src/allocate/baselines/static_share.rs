use super::super::{Inputs, Policy};
use super::PerTenant;
use crate::plan::Allocation;

/// `static`: the host split once and for all in proportion to class weight × provisioned
/// size (vCPUs, memory; disk and network by weight alone), as a fixed-share configuration
/// would. Recomputed only as tenants come and go.
pub struct StaticShare {
    tenants: PerTenant<()>,
}

impl StaticShare {
    pub fn new() -> Self {
        StaticShare {
            tenants: PerTenant::new(),
        }
    }
}

impl Default for StaticShare {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for StaticShare {
    fn describe(&self) -> String {
        "static".into()
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        self.tenants.decide(input, |_, _, _| None)
    }
}
