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
use crate::model::Resource;
use crate::plan::{Allocation, Applied};
use crate::profile::writer::ProfileWriter;

/// A tenant held below what the policy wanted (its raise was refused) counts as capped in an
/// interval in which it used at least this share of the amount still in force.
pub const HELD_AT: f64 = 0.95;

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
        let mut obs = self.collector.ingest(&snapshot);
        self.mark_held(&mut obs);
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

    /// A tenant held by a refused raise (see [`HELD_AT`]) that used up the amount in force
    /// was capped: it wanted more than it may have, so the forecasters and the policy see a
    /// lower bound of its demand.
    fn mark_held(&self, obs: &mut Observation) {
        for t in &mut obs.tenants {
            for r in Resource::ALL {
                if let (Some(got), Some(used)) =
                    (self.actuator.held_at(&t.id.uuid, r), *t.usage.get(r))
                    && used >= HELD_AT * got
                {
                    *t.capped.get_mut(r) = true;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{DomainConfig, DomainCounters, DomainSnapshot, Snapshot};
    use crate::model::{HostInfo, PerResource, TenantId};
    use crate::plan::{Denial, Plan, TenantAllocation};

    /// One tenant busy at `used` cores; raises of its CPU above `allowed` are refused.
    struct Refusing {
        t_s: u64,
        used: f64,
        cpu_ns: u64,
        allowed: f64,
    }

    fn host() -> HostInfo {
        HostInfo {
            cpus: 4,
            capacity: PerResource {
                cpu: Some(4.0),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn id() -> TenantId {
        TenantId {
            uuid: "u1".into(),
            name: "t1".into(),
        }
    }

    impl Backend for Refusing {
        fn describe(&self) -> String {
            "refusing".into()
        }
        fn host(&mut self) -> Result<HostInfo, BackendError> {
            Ok(host())
        }
        fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
            self.t_s += 10;
            self.cpu_ns += (self.used * 10e9) as u64;
            Ok(Snapshot {
                at_unix_ms: (self.t_s * 1000) as i64,
                mono_ns: self.t_s * 1_000_000_000,
                host: host(),
                domains: vec![DomainSnapshot {
                    id: id(),
                    config: DomainConfig {
                        vcpus: 2,
                        ..Default::default()
                    },
                    counters: DomainCounters {
                        cpu_time_ns: Some(self.cpu_ns),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
            })
        }
        fn shapes(&self) -> PerResource<bool> {
            PerResource {
                cpu: true,
                ..Default::default()
            }
        }
        fn latency(&self) -> PerResource<f64> {
            PerResource::default()
        }
        fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
            let mut applied = Applied::default();
            for d in &plan.domains {
                for c in &d.changes {
                    if c.amount > self.allowed {
                        applied.denials.push(Denial {
                            tenant: d.id.clone(),
                            resource: c.resource,
                            wanted: c.amount,
                            got: Some(self.allowed),
                            setting: None,
                            code: Some(1),
                            message: "over the limit".into(),
                        });
                    } else {
                        applied
                            .accepted
                            .push((d.id.uuid.clone(), c.resource, c.amount));
                    }
                }
            }
            Ok(applied)
        }
    }

    /// Wants `cores` for every tenant.
    struct Wants(f64);

    impl Policy for Wants {
        fn describe(&self) -> String {
            format!("wants {}", self.0)
        }
        fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
            Allocation {
                tenants: (input.obs.tenants.iter())
                    .map(|t| TenantAllocation {
                        uuid: t.id.uuid.clone(),
                        reasons: None,
                        amounts: PerResource {
                            cpu: self.0,
                            ..Default::default()
                        },
                    })
                    .collect(),
            }
        }
    }

    fn capped_cpu(used: f64, wants: f64, cycles: usize) -> Vec<bool> {
        let mut backend = Refusing {
            t_s: 0,
            used,
            cpu_ns: 0,
            allowed: 1.0,
        };
        let mut c = Controller::new(None).with_policy(Box::new(Wants(wants)));
        (0..cycles)
            .map(|_| {
                let obs = c.step(&mut backend).unwrap();
                obs.tenants.first().is_some_and(|t| t.capped.cpu)
            })
            .collect()
    }

    #[test]
    fn a_tenant_held_by_a_refused_raise_is_capped_where_it_uses_up_what_it_has() {
        // Busy at the 1 core it is held at: capped from the cycle after the refusal on.
        assert_eq!(capped_cpu(1.0, 2.0, 4), [false, true, true, true]);
        // Well below it: the refusal did not hold it back.
        assert_eq!(capped_cpu(0.5, 2.0, 4), [false; 4]);
        // No refusal (the raise was accepted): never capped.
        assert_eq!(capped_cpu(1.0, 0.9, 4), [false; 4]);
    }
}
