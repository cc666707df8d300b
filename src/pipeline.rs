//! The control loop: one cycle of collect → profile → forecast → allocate → apply (→
//! actuate and feedback as those stages land). The daemon calls [`Controller::step`] on a
//! timer against the libvirt backend; the simulator calls it once per trace interval against
//! the trace backend. There is no second copy of this sequence.

use crate::allocate::rules::Rules;
use crate::allocate::{Inputs, Policy};
use crate::backend::{Backend, BackendError};
use crate::collect::{Collector, Observation};
use crate::forecast::stage::{ForecastStage, STATE_FORMAT};
use crate::profile::writer::ProfileWriter;

pub struct Controller {
    collector: Collector,
    profile: Option<ProfileWriter>,
    policy: Option<Box<dyn Policy>>,
    rules: Rules,
    /// Apply the policy's allocations through the backend (else only decide and record).
    apply: bool,
    forecasts: Option<ForecastStage>,
    /// Store the forecasters' state in the profile every this many cycles.
    save_every: u64,
    cycles: u64,
}

impl Controller {
    /// A controller that stores what it observes in `profile` (None: observe only).
    pub fn new(profile: Option<ProfileWriter>) -> Self {
        Controller {
            collector: Collector::new(),
            profile,
            policy: None,
            rules: Rules::default(),
            apply: true,
            forecasts: None,
            save_every: 0,
            cycles: 0,
        }
    }

    /// Forecast every tenant's resources; the forecasters' state goes to the profile every
    /// `save_every` cycles and at shutdown.
    pub fn with_forecasts(mut self, stage: ForecastStage, save_every: u64) -> Self {
        self.forecasts = Some(stage);
        self.save_every = save_every.max(1);
        self
    }

    /// The forecast stage, if the controller forecasts.
    pub fn forecasts(&self) -> Option<&ForecastStage> {
        self.forecasts.as_ref()
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
        if let Some(f) = self.forecasts.as_mut() {
            f.observe(&obs);
            if let Some(p) = &self.profile
                && self.cycles.is_multiple_of(self.save_every)
            {
                p.save_forecasters(STATE_FORMAT, obs.at_unix_ms, f.export(false));
            }
        }
        if let Some(policy) = self.policy.as_mut() {
            let input = Inputs {
                obs: &obs,
                forecasts: self.forecasts.as_ref(),
                rules: &self.rules,
            };
            let allocation = policy.decide(&input);
            if let Some(p) = &self.profile {
                p.save_allocation(obs.at_unix_ms, &policy.describe(), &allocation, self.apply);
            }
            if self.apply {
                backend.apply(&allocation)?;
            }
        }
        Ok(obs)
    }

    /// The operator's rules the policy obeys (the defaults until set).
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Obey `rules` from the next cycle on.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// Decide and record the policy's allocations but leave the backend's settings as they
    /// are.
    pub fn decide_only(mut self) -> Self {
        self.apply = false;
        self
    }

    /// The policy, if the controller decides allocations.
    pub fn policy(&self) -> Option<&dyn Policy> {
        self.policy.as_deref()
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

    /// Store the forecasters' state, commit and close the profile.
    pub fn shutdown(mut self) -> Option<crate::profile::writer::WriterStats> {
        if let (Some(f), Some(p)) = (self.forecasts.as_mut(), &self.profile) {
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            p.save_forecasters(STATE_FORMAT, at_ms, f.export(false));
        }
        self.profile.map(ProfileWriter::shutdown)
    }
}
