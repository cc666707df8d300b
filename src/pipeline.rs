//! The control loop: one cycle of collect → profile (→ forecast → allocate → actuate →
//! feedback as those stages land). The daemon calls [`Controller::step`] on a timer against
//! the libvirt backend; a simulator calls it per trace interval against a replay backend.
//! There is no second copy of this sequence.

use crate::backend::{Backend, BackendError};
use crate::collect::{Collector, Observation};
use crate::profile::writer::ProfileWriter;

pub struct Controller {
    collector: Collector,
    profile: Option<ProfileWriter>,
    cycles: u64,
}

impl Controller {
    /// A controller that stores what it observes in `profile` (None: observe only).
    pub fn new(profile: Option<ProfileWriter>) -> Self {
        Controller {
            collector: Collector::new(),
            profile,
            cycles: 0,
        }
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
