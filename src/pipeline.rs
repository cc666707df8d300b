//! The control loop: one cycle of collect → profile → forecast → allocate → actuate →
//! apply, with what was applied and refused recorded. The daemon calls [`Controller::step`] on a
//! timer against the libvirt backend; the simulator calls it once per trace interval against
//! the trace backend. There is no second copy of this sequence.

use crate::actuate::{ActuateConfig, Actuator};
use crate::allocate::rules::Rules;
use crate::allocate::{Inputs, Policy};
use crate::backend::{Backend, BackendError};
use crate::collect::{Collector, Observation};
use crate::forecast::stage::{ForecastStage, STATE_FORMAT};
use crate::plan::{Allocation, Applied};
use crate::profile::writer::ProfileWriter;

pub struct Controller {
    collector: Collector,
    profile: Option<ProfileWriter>,
    policy: Option<Box<dyn Policy>>,
    rules: Rules,
    actuator: Actuator,
    /// What the policy decided in the last cycle.
    last_allocation: Option<Allocation>,
    forecasts: Option<ForecastStage>,
    /// Store the forecasters' state in the profile every this many cycles.
    save_every: u64,
    /// Seconds between cycles.
    interval_s: f64,
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
            actuator: Actuator::new(ActuateConfig::exact()),
            last_allocation: None,
            forecasts: None,
            save_every: 0,
            interval_s: crate::model::STEP_S as f64,
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

    /// Cycles come every `seconds` (default: the trace step), so that a policy knows how
    /// long its decision holds.
    pub fn with_interval(mut self, seconds: f64) -> Self {
        self.interval_s = seconds;
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
                lead_s: backend.latency().map(|l| self.interval_s + l),
            };
            let allocation = policy.decide(&input);
            let dry_run = self.actuator.config().dry_run;
            if let Some(p) = &self.profile {
                p.save_allocation(obs.at_unix_ms, &policy.describe(), &allocation, !dry_run);
            }
            let plan = self
                .actuator
                .plan(&allocation, &obs, backend.shapes(), &self.rules);
            if dry_run {
                for d in &plan.domains {
                    for c in &d.changes {
                        let settings: Vec<String> =
                            c.settings.iter().map(|s| s.to_string()).collect();
                        tracing::info!(
                            tenant = %d.id.name,
                            resource = %c.resource,
                            amount = c.amount,
                            "dry run, not applied: {}",
                            settings.join(", ")
                        );
                    }
                }
            } else {
                let applied = backend.apply(&plan)?;
                self.actuator.record(&applied, obs.at_unix_ms);
                for d in &applied.denials {
                    tracing::warn!(
                        tenant = %d.tenant.name,
                        resource = %d.resource,
                        "refused: {} (libvirt error {}): {}",
                        d.setting.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                        d.code.unwrap_or(0),
                        d.message
                    );
                }
                if let Some(p) = &self.profile {
                    p.save_actuations(obs.at_unix_ms, &plan, &applied);
                }
            }
            self.last_allocation = Some(allocation);
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

    /// Turn allocations into changes with `cfg` (the default, [`ActuateConfig::exact`],
    /// passes every amount through every cycle, as the trace replay wants). With
    /// `cfg.dry_run` the plans are logged and nothing is applied.
    pub fn with_actuation(mut self, cfg: ActuateConfig) -> Self {
        self.actuator = Actuator::new(cfg);
        self
    }

    /// Give every domain in sight back the settings it had when prescient first saw it
    /// (kept in the profile), and record what was accepted and refused.
    pub fn hand_back(&mut self, backend: &mut dyn Backend) -> Result<Applied, BackendError> {
        let plan = self.actuator.hand_back();
        let applied = backend.apply(&plan)?;
        if let Some(p) = &self.profile {
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            p.save_actuations(at_ms, &plan, &applied);
        }
        Ok(applied)
    }

    /// The actuator, to hand it what the profile kept.
    pub fn actuator_mut(&mut self) -> &mut Actuator {
        &mut self.actuator
    }

    /// What the policy decided in the last cycle, if it decides.
    pub fn last_allocation(&self) -> Option<&Allocation> {
        self.last_allocation.as_ref()
    }

    /// What the actuator turns allocations into changes with, and what it knows is in
    /// force.
    pub fn actuator(&self) -> &Actuator {
        &self.actuator
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
