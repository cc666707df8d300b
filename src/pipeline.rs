//! The control loop: one cycle of collect → profile → allocate → apply (→ forecast,
//! actuate and feedback as those stages land). The daemon calls [`Controller::step`] on a
//! timer against the libvirt backend; the simulator calls it once per trace interval against
//! the trace backend. There is no second copy of this sequence.

use crate::allocate::Policy;
use crate::backend::{Backend, BackendError};
use crate::collect::{Collector, Observation};
use crate::profile::writer::ProfileWriter;

pub struct Controller {
    collector: Collector,
    profile: Option<ProfileWriter>,
    policy: Option<Box<dyn Policy>>,
    cycles: u64,
}

impl Controller {
    /// A controller that stores what it observes in `profile` (None: observe only).
    pub fn new(profile: Option<ProfileWriter>) -> Self {
        Controller {
            collector: Collector::new(),
            profile,
            policy: None,
            cycles: 0,
        }
    }

    /// Decide and apply allocations with `policy` every cycle (without one, the controller
    /// only observes).
    pub fn with_policy(mut self, policy: Box<dyn Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Run one cycle against `backend` and return what it observed.
    pub fn step(&mut self, backend: &mut dyn Backend) -> Result<Observation, BackendError> {
        let snapshot = backend.snapshot()?;
        let obs = self.collector.ingest(&snapshot);
        self.cycles += 1;
        for id in &obs.appeared {
            tracing::info!(tenant = %id.name, uuid = %id.uuid, "tenant appeared");
        }
        for id in &obs.vanished {
            tracing::info!(tenant = %id.name, uuid = %id.uuid, "tenant vanished");
        }
        if let Some(p) = self.profile.as_mut() {
            p.submit(obs.clone());
        }
        if let Some(policy) = self.policy.as_mut() {
            let allocation = policy.decide(&obs);
            backend.apply(&allocation)?;
        }
        Ok(obs)
    }

    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Wait until everything observed so far is committed to the profile.
    pub fn flush(&self) -> Result<(), String> {
        match &self.profile {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }

    /// Commit and close the profile.
    pub fn shutdown(self) -> Option<crate::profile::writer::WriterStats> {
        self.profile.map(ProfileWriter::shutdown)
    }
}
