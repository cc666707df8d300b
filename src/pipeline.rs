//! The control loop: one cycle of collect → profile → forecast → allocate → actuate →
//! apply, with what was applied and refused recorded. The daemon calls [`Controller::step`] on a
//! timer against the libvirt backend; the simulator calls it once per trace interval against
//! the trace backend. There is no second copy of this sequence.

use crate::actuate::{ActuateConfig, Actuator};
use crate::allocate::overrides::{Override, Overrides};
use crate::allocate::rules::Rules;
use crate::allocate::{Inputs, Policy};
use crate::backend::{Backend, BackendError};
use crate::cadence::Cadence;
use crate::collect::{Collector, Observation};
use crate::forecast::stage::{ForecastStage, STATE_FORMAT};
use crate::leadtime::{LeadTime, Rise};
use crate::model::Resource;
use crate::plan::{Allocation, Applied, Denial};
use crate::profile::writer::ProfileWriter;
use std::collections::VecDeque;

/// A tenant held below what the policy wanted (its raise was refused) counts as capped in an
/// interval in which it used at least this share of the amount still in force.
pub const HELD_AT: f64 = 0.95;

/// How many refusals the controller keeps for the operator to see (newest last).
pub const RECENT_DENIALS: usize = 200;

/// The profile's operator-state kind the overrides are kept under.
pub const OVERRIDES: &str = "override";

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
    /// How long a decision stays in force: the interval between cycles, as measured.
    cadence: Cadence,
    cycles: u64,
    /// The operator's overrides, applied to every observation before the policy decides.
    overrides: Overrides,
    /// The latest refusals with their time (Unix ms).
    denials: VecDeque<(i64, Denial)>,
    /// Refusals since the start, per resource.
    denials_total: crate::model::PerResource<u64>,
    /// How long the policy took to decide in the last cycle (seconds).
    decide_s: f64,
    /// Whether each rise in usage found its amount already in force.
    leadtime: LeadTime,
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
            cadence: Cadence::new(crate::model::STEP_S as f64),
            cycles: 0,
            overrides: Overrides::default(),
            denials: VecDeque::new(),
            denials_total: Default::default(),
            decide_s: 0.0,
            leadtime: LeadTime::default(),
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
        self.cadence = Cadence::new(seconds);
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
            // Names quoted and escaped: whoever names a domain cannot split or forge a line.
            tracing::info!(tenant = ?id.name, uuid = %id.uuid, "tenant appeared");
        }
        for id in &obs.vanished {
            tracing::info!(tenant = ?id.name, uuid = %id.uuid, "tenant vanished");
        }
        if let Some(p) = self.profile.as_mut() {
            p.submit(obs.clone());
        }
        self.classify_rises(&obs);
        if let Some(f) = self.forecasts.as_mut() {
            f.observe(&obs);
            if let Some(p) = &self.profile
                && self.cycles.is_multiple_of(self.save_every)
            {
                p.save_forecasters(STATE_FORMAT, obs.at_unix_ms, f.export(false));
            }
        }
        self.expire_overrides(obs.at_unix_ms);
        if let Some(policy) = self.policy.as_mut() {
            let mut overridden;
            let obs = if self.overrides.is_empty() {
                &obs
            } else {
                overridden = obs.clone();
                self.overrides.apply(&mut overridden);
                &overridden
            };
            let input = Inputs {
                obs,
                forecasts: self.forecasts.as_ref(),
                rules: &self.rules,
                lead_s: backend.latency().map(|l| self.cadence.ahead_s() + l),
            };
            let t0 = std::time::Instant::now();
            let allocation = policy.decide(&input);
            self.decide_s = t0.elapsed().as_secs_f64();
            let dry_run = self.actuator.config().dry_run;
            if let Some(p) = &self.profile {
                p.save_allocation(obs.at_unix_ms, &policy.describe(), &allocation, !dry_run);
            }
            let plan = self
                .actuator
                .plan(&allocation, obs, backend.shapes(), &self.rules);
            // What domains seen for the first time have, kept before anything is changed:
            // `on_exit = "restore"` gives it back, after any number of restarts.
            let first_seen = self.actuator.take_first_seen();
            self.cadence.record(snapshot.mono_ns, backend.clock_ns());
            if let Some(p) = &self.profile
                && let Err(e) = p.save_taken_over(obs.at_unix_ms, first_seen)
            {
                tracing::error!(
                    "cannot keep the settings domains had before prescient: {e} (restoring them \
                     at exit gives back what this run first saw)"
                );
            }
            if dry_run {
                for d in &plan.domains {
                    for c in &d.changes {
                        let settings: Vec<String> =
                            c.settings.iter().map(|s| s.to_string()).collect();
                        tracing::info!(
                            tenant = ?d.id.name,
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
                    if self.denials.len() == RECENT_DENIALS {
                        self.denials.pop_front();
                    }
                    self.denials.push_back((obs.at_unix_ms, d.clone()));
                    *self.denials_total.get_mut(d.resource) += 1;
                    tracing::warn!(
                        tenant = ?d.tenant.name,
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

    /// Classify the rises in usage this observation shows against what was in force during
    /// its interval (what the actuator last had accepted, else the domain's settings), and
    /// keep those classified in the profile.
    fn classify_rises(&mut self, obs: &Observation) {
        let actuator = &self.actuator;
        let rises = self.leadtime.observe(obs, |t, r| {
            (actuator.in_force(&t.id.uuid, r))
                .or_else(|| crate::actuate::amount_of(&t.settings, r, t.vcpus))
        });
        if let Some(p) = &self.profile {
            p.save_rises(rises);
        }
    }

    /// What the lead-time classifier counted.
    pub fn leadtime(&self) -> &LeadTime {
        &self.leadtime
    }

    /// Start with the rises of the last day the profile kept.
    pub fn adopt_rises(&mut self, rises: Vec<Rise>) {
        self.leadtime.adopt(rises);
    }

    /// Drop the overrides whose time is up, and say so.
    fn expire_overrides(&mut self, now_ms: i64) {
        let gone = self.overrides.expire(now_ms);
        for o in &gone {
            tracing::info!(tenant = ?o.name, set_by = %o.set_by, "override expired");
        }
        if !gone.is_empty()
            && let Err(e) = self.save_overrides()
        {
            tracing::error!("cannot store the overrides: {e}");
        }
    }

    /// The operator's overrides in force.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Start with the overrides the profile kept (rows as [`Self::save_overrides`] stores
    /// them); an unreadable row is skipped with a warning.
    pub fn adopt_overrides(&mut self, rows: Vec<(String, String)>) -> usize {
        let mut list = Vec::new();
        for (uuid, json) in rows {
            match serde_json::from_str::<Override>(&json) {
                Ok(o) => list.push(o),
                Err(e) => {
                    tracing::warn!(tenant = %uuid, "stored override unreadable, skipped: {e}")
                }
            }
        }
        let n = list.len();
        self.overrides = Overrides::new(list);
        n
    }

    /// Set (or replace) a tenant's override from the next cycle on, stored in the profile
    /// before this returns.
    pub fn set_override(&mut self, o: Override) -> Result<(), String> {
        let mut next = self.overrides.clone();
        next.set(o, self.last_allocation.as_ref())
            .map_err(|e| e.to_string())?;
        let before = std::mem::replace(&mut self.overrides, next);
        self.save_overrides()
            .inspect_err(|_| self.overrides = before)
    }

    /// Clear a tenant's override, stored in the profile before this returns; the cleared
    /// one (None: there was none).
    pub fn clear_override(&mut self, uuid: &str) -> Result<Option<Override>, String> {
        let gone = self.overrides.clear(uuid);
        if let Some(o) = &gone
            && let Err(e) = self.save_overrides()
        {
            self.overrides.set(o.clone(), None).ok();
            return Err(e);
        }
        Ok(gone)
    }

    fn save_overrides(&self) -> Result<(), String> {
        let Some(p) = &self.profile else {
            return Ok(());
        };
        let rows = (self.overrides.list().into_iter())
            .map(|o| {
                let json = serde_json::to_string(&o).unwrap_or_default();
                (o.uuid.to_string(), json)
            })
            .collect();
        p.save_operator_state(OVERRIDES, rows)
    }

    /// Refusals since the start, per resource.
    pub fn denials_total(&self) -> crate::model::PerResource<u64> {
        self.denials_total
    }

    /// How long a decision stays in force, as measured.
    pub fn cadence(&self) -> &Cadence {
        &self.cadence
    }

    /// How long the policy took to decide in the last cycle (seconds).
    pub fn decide_seconds(&self) -> f64 {
        self.decide_s
    }

    /// The latest refusals, oldest first, with their time (Unix ms).
    pub fn recent_denials(&self) -> impl Iterator<Item = &(i64, Denial)> {
        self.denials.iter()
    }

    /// The forecast stage, to declare and cancel intents.
    pub fn forecasts_mut(&mut self) -> Option<&mut ForecastStage> {
        self.forecasts.as_mut()
    }

    /// Store the forecasters' state now (after an intent was declared or cancelled).
    pub fn save_forecasts(&mut self, at_ms: i64) {
        if let (Some(f), Some(p)) = (self.forecasts.as_mut(), &self.profile) {
            p.save_forecasters(STATE_FORMAT, at_ms, f.export(false));
        }
    }

    /// The profile writer, for the operator's state kept beside the overrides.
    pub fn profile(&self) -> Option<&ProfileWriter> {
        self.profile.as_ref()
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
            let at_ms = crate::model::now_unix_ms();
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
            let at_ms = crate::model::now_unix_ms();
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

#[cfg(test)]
mod operator_tests {
    use super::*;
    use crate::allocate::kind::PolicyKind;
    use crate::allocate::overrides::Override;
    use crate::backend::{DomainConfig, DomainCounters, DomainSnapshot, Snapshot};
    use crate::model::{Amounts, HostInfo, PerResource, TenantId};
    use crate::plan::Plan;

    /// Two busy tenants on a 4-core host that accepts every change.
    struct Host {
        t_s: u64,
        cpu_ns: [u64; 2],
    }

    fn id(i: usize) -> TenantId {
        TenantId {
            uuid: format!("u{i}").into(),
            name: format!("t{i}").into(),
        }
    }

    impl Backend for Host {
        fn describe(&self) -> String {
            "host".into()
        }
        fn host(&mut self) -> Result<HostInfo, BackendError> {
            Ok(HostInfo {
                cpus: 4,
                capacity: PerResource {
                    cpu: Some(4.0),
                    ..Default::default()
                },
                ..Default::default()
            })
        }
        fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
            self.t_s += 10;
            let host = self.host()?;
            let domains = (0..2)
                .map(|i| {
                    self.cpu_ns[i] += 15_000_000_000; // 1.5 cores each
                    DomainSnapshot {
                        id: id(i),
                        config: DomainConfig {
                            vcpus: 4,
                            ..Default::default()
                        },
                        counters: DomainCounters {
                            cpu_time_ns: Some(self.cpu_ns[i]),
                            balloon: crate::backend::BalloonStats {
                                available_kib: Some(4 << 20),
                                usable_kib: Some(3 << 20),
                                ..Default::default()
                            },
                            disks: vec![crate::backend::DiskCounters {
                                name: "vda".into(),
                                rd_bytes: Some(self.t_s * 1000),
                                wr_bytes: Some(0),
                                ..Default::default()
                            }],
                            nics: vec![crate::backend::NicCounters {
                                name: "vnet0".into(),
                                rx_bytes: Some(self.t_s * 100),
                                tx_bytes: Some(0),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                        ..Default::default()
                    }
                })
                .collect();
            Ok(Snapshot {
                at_unix_ms: (self.t_s * 1000) as i64,
                mono_ns: self.t_s * 1_000_000_000,
                host,
                domains,
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
                    (applied.accepted).push((d.id.uuid.clone(), c.resource, c.amount));
                }
            }
            Ok(applied)
        }
    }

    fn cpu_of(c: &Controller, uuid: &str) -> f64 {
        let a = c.last_allocation().unwrap();
        a.tenants
            .iter()
            .find(|t| &*t.uuid == uuid)
            .unwrap()
            .amounts
            .cpu
    }

    fn max_cpu(uuid: usize, cores: f64) -> Override {
        let mut o = Override::of(&id(uuid), "root (uid 0)".into(), 0);
        o.max.cpu = Some(cores);
        o
    }

    /// The host above on a clock that starts applying 150 ms after each snapshot, one cycle
    /// in ten starting 300 ms late, with a 20 ms cpu setter.
    struct Jittery(Host);

    impl Backend for Jittery {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn host(&mut self) -> Result<HostInfo, BackendError> {
            self.0.host()
        }
        fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
            let mut s = self.0.snapshot()?;
            let late = if (s.mono_ns / 10_000_000_000).is_multiple_of(10) {
                300_000_000
            } else {
                0
            };
            s.mono_ns += late;
            Ok(s)
        }
        fn shapes(&self) -> PerResource<bool> {
            self.0.shapes()
        }
        fn latency(&self) -> PerResource<f64> {
            PerResource {
                cpu: 0.02,
                ..Default::default()
            }
        }
        fn clock_ns(&self) -> Option<u64> {
            let late = if self.0.t_s.is_multiple_of(100) {
                300_000_000
            } else {
                0
            };
            Some(self.0.t_s * 1_000_000_000 + late + 150_000_000)
        }
        fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
            self.0.apply(plan)
        }
    }

    /// Reports the span each decision was asked to cover.
    struct Spy(std::sync::Arc<std::sync::Mutex<Vec<f64>>>);

    impl Policy for Spy {
        fn describe(&self) -> String {
            "spy".into()
        }
        fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
            self.0.lock().unwrap().push(input.lead_s.cpu);
            Allocation::default()
        }
    }

    #[test]
    fn a_decision_covers_until_the_next_one_may_be_in_force_as_measured() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut c = Controller::new(None)
            .with_interval(10.0)
            .with_policy(Box::new(Spy(seen.clone())));
        let mut backend = Jittery(Host {
            t_s: 0,
            cpu_ns: [0; 2],
        });
        for _ in 0..30 {
            c.step(&mut backend).unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0], 10.02,
            "the planned interval and the setter, before measuring"
        );
        // Reaches of 10.15 s, 10.45 s into a late cycle, 9.85 s out of it: the longest plus
        // its spread over the median, plus the setter.
        let last = *seen.last().unwrap();
        assert!((last - (10.45 + 0.30 + 0.02)).abs() < 1e-6, "{last}");
    }

    #[test]
    fn an_override_changes_the_next_allocation_of_every_policy() {
        for kind in [
            PolicyKind::Static,
            PolicyKind::Reactive,
            PolicyKind::Prescient,
        ] {
            let (policy, _) = kind.build(None, Default::default()).unwrap();
            let mut backend = Host {
                t_s: 0,
                cpu_ns: [0; 2],
            };
            let mut c = Controller::new(None).with_policy(policy);
            for _ in 0..3 {
                c.step(&mut backend).unwrap();
            }
            let before = cpu_of(&c, "u0");
            assert!(before > 0.5, "{kind}: t0 has {before} cores before");
            c.set_override(max_cpu(0, 0.5)).unwrap();
            c.step(&mut backend).unwrap();
            assert!(
                cpu_of(&c, "u0") <= 0.5 + 1e-9,
                "{kind}: {}",
                cpu_of(&c, "u0")
            );
            // A minimum holds it up, and the freeze holds it where it is.
            let mut o = max_cpu(1, 3.5);
            o.min.cpu = Some(3.0);
            c.set_override(o).unwrap();
            c.step(&mut backend).unwrap();
            assert!(
                cpu_of(&c, "u1") >= 3.0 - 1e-9,
                "{kind}: {}",
                cpu_of(&c, "u1")
            );
            let held = cpu_of(&c, "u1");
            c.clear_override("u1").unwrap();
            let mut f = max_cpu(1, 0.0);
            f.max = Amounts::default();
            f.freeze = true;
            c.set_override(f).unwrap();
            c.step(&mut backend).unwrap();
            c.step(&mut backend).unwrap();
            assert_eq!(cpu_of(&c, "u1"), held, "{kind}: a freeze holds");
            // Cleared, the policy decides again.
            c.clear_override("u0").unwrap();
            c.step(&mut backend).unwrap();
            assert!(cpu_of(&c, "u0") > 0.5, "{kind}: {}", cpu_of(&c, "u0"));
        }
    }

    /// [`Host`] whose domains report CPU settings with these shares.
    struct Configured {
        host: Host,
        shares: u64,
    }

    impl Backend for Configured {
        fn describe(&self) -> String {
            "configured".into()
        }
        fn host(&mut self) -> Result<HostInfo, BackendError> {
            self.host.host()
        }
        fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
            let mut s = self.host.snapshot()?;
            for d in &mut s.domains {
                d.settings = vec![crate::plan::Setting::Cpu {
                    vcpu_period_us: 100_000,
                    vcpu_quota_us: -1,
                    cpu_shares: self.shares,
                }];
            }
            Ok(s)
        }
        fn shapes(&self) -> PerResource<bool> {
            self.host.shapes()
        }
        fn latency(&self) -> PerResource<f64> {
            self.host.latency()
        }
        fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
            self.host.apply(plan)
        }
    }

    #[test]
    fn what_domains_had_before_prescient_is_given_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        let run = |shares: u64| {
            let db = crate::profile::ProfileDb::open(&path, false).unwrap();
            let kept = db.load_taken_over().unwrap();
            let w =
                ProfileWriter::spawn(db, Default::default(), std::time::Duration::from_secs(3600));
            let (policy, _) = PolicyKind::Static.build(None, Default::default()).unwrap();
            let mut c = Controller::new(Some(w))
                .with_policy(policy)
                .with_actuation(ActuateConfig::default());
            c.actuator_mut().adopt_originals(kept);
            let mut backend = Configured {
                host: Host {
                    t_s: 0,
                    cpu_ns: [0; 2],
                },
                shares,
            };
            c.step(&mut backend).unwrap();
            let back = c.actuator().hand_back();
            c.shutdown();
            back
        };
        let shares_given_back = |plan: &Plan| -> Vec<u64> {
            (plan.domains.iter().flat_map(|d| &d.changes))
                .flat_map(|c| &c.settings)
                .filter_map(|s| match s {
                    crate::plan::Setting::Cpu { cpu_shares, .. } => Some(*cpu_shares),
                    _ => None,
                })
                .collect()
        };
        // Run 1 sees the operator's shares; run 2 sees what run 1 left (prescient's).
        assert_eq!(shares_given_back(&run(777)), [777, 777]);
        assert_eq!(
            shares_given_back(&run(2)),
            [777, 777],
            "the first run's originals"
        );
    }

    #[test]
    fn overrides_expire_and_are_kept_in_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        let writer = |path: &std::path::Path| {
            let db = crate::profile::ProfileDb::open(path, false).unwrap();
            let rows = db.load_operator_state(OVERRIDES).unwrap();
            (
                ProfileWriter::spawn(db, Default::default(), std::time::Duration::from_secs(3600)),
                rows,
            )
        };
        let (w, rows) = writer(&path);
        assert!(rows.is_empty());
        let (policy, _) = PolicyKind::Static.build(None, Default::default()).unwrap();
        let mut c = Controller::new(Some(w)).with_policy(policy);
        let mut backend = Host {
            t_s: 0,
            cpu_ns: [0; 2],
        };
        c.step(&mut backend).unwrap();
        c.set_override(max_cpu(0, 0.5)).unwrap();
        let mut expiring = max_cpu(1, 1.0);
        expiring.expires_ms = Some(25_000); // the third cycle is at 30 s
        c.set_override(expiring).unwrap();
        c.step(&mut backend).unwrap();
        assert!(c.overrides().get("u1").is_some());
        c.step(&mut backend).unwrap();
        assert!(c.overrides().get("u1").is_none(), "expired");
        c.shutdown();
        let (w, rows) = writer(&path);
        let mut again = Controller::new(Some(w));
        assert_eq!(again.adopt_overrides(rows), 1);
        assert_eq!(again.overrides().get("u0").unwrap().max.cpu, Some(0.5));
        again.shutdown();
    }

    #[test]
    fn an_intent_declared_through_the_desk_shifts_the_forecast_at_its_start() {
        use crate::control::action::{Action, IntentSpec, Quantities};
        use crate::control::auth::Caller;
        use crate::control::desk::Desk;
        let stage =
            crate::forecast::stage::ForecastStage::new(Default::default()).with_bucket_seconds(10);
        let mut c = Controller::new(None)
            .with_forecasts(stage, 1)
            .with_interval(10.0);
        let mut backend = Host {
            t_s: 0,
            cpu_ns: [0; 2],
        };
        let mut obs = None;
        for _ in 0..4 {
            obs = Some(c.step(&mut backend).unwrap());
        }
        let obs = obs.unwrap();
        let (origin, before) = c.forecasts().unwrap().latest("u0").unwrap();
        let before = before.cpu.point[1];
        let mut desk = Desk::default();
        let root = Caller::new(0, 0, None);
        let spec = IntentSpec {
            tenant: "t0".into(),
            start_unix_s: origin + 20, // the second coming bucket
            duration_s: 10,
            demand: Quantities {
                cpu_cores: Some(4.0),
                ..Default::default()
            },
            note: Some("nightly build".into()),
        };
        let answer = desk
            .act(
                &mut c,
                Some(&obs),
                Action::IntentAdd(spec),
                &root,
                obs.at_unix_ms,
            )
            .unwrap();
        let id = answer["ids"][0].as_u64().unwrap();
        let (_, after) = c.forecasts().unwrap().latest("u0").unwrap();
        let (first, second) = (after.cpu.point[0], after.cpu.point[1]);
        assert!(
            second > before + 1.0 && (first - before).abs() < 1e-3,
            "before {before}, after: first {first}, second {second}"
        );
        assert_eq!(
            desk.notes.get(&id).map(String::as_str),
            Some("nightly build")
        );
        // Kept in the forecasters' state: a restart restores the pending intent.
        let saved = c.forecasts_mut().unwrap().export(true);
        let mut again =
            crate::forecast::stage::ForecastStage::new(Default::default()).with_bucket_seconds(10);
        let saved = saved
            .into_iter()
            .map(|(u, b)| (u.to_string(), crate::forecast::stage::STATE_FORMAT, b))
            .collect();
        again.restore(saved);
        assert_eq!(again.intents("u0").unwrap().pending().len(), 1);
        // Cancelled, it is gone; an unknown id is a 404.
        desk.act(
            &mut c,
            Some(&obs),
            Action::IntentCancel { id },
            &root,
            obs.at_unix_ms,
        )
        .unwrap();
        let gone = desk.act(&mut c, Some(&obs), Action::IntentCancel { id }, &root, 0);
        assert_eq!(gone.unwrap_err().status, 404);
    }

    #[test]
    fn intent_values_are_checked_first_and_ids_are_never_given_twice() {
        use crate::control::action::{Action, IntentSpec, Quantities};
        use crate::control::auth::Caller;
        use crate::control::desk::load_notes;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        let open = |path: &std::path::Path| {
            let db = crate::profile::ProfileDb::open(path, false).unwrap();
            let desk = load_notes(&db).unwrap();
            let w =
                ProfileWriter::spawn(db, Default::default(), std::time::Duration::from_secs(3600));
            let stage = crate::forecast::stage::ForecastStage::new(Default::default())
                .with_bucket_seconds(10);
            let c = Controller::new(Some(w))
                .with_forecasts(stage, 1)
                .with_interval(10.0);
            (c, desk)
        };
        let (mut c, mut desk) = open(&path);
        let mut backend = Host {
            t_s: 0,
            cpu_ns: [0; 2],
        };
        let root = Caller::new(0, 0, None);
        let spec = |start_unix_s: i64, duration_s: i64| IntentSpec {
            tenant: "t0".into(),
            start_unix_s,
            duration_s,
            demand: Quantities {
                cpu_cores: Some(2.0),
                ..Default::default()
            },
            note: None,
        };
        // Values are refused (400) before the tenant is looked for or known to the forecaster.
        let now_ms = 1_700_000_000_000;
        for (start, duration, field) in [
            (0, 60, "start_unix_s (--start)"),
            (-5, 60, "start_unix_s (--start)"),
            (2020, 60, "start_unix_s (--start)"),
            (1_700_000_060, 0, "duration_s (--duration)"),
            (1_700_000_060, 8 * 86_400, "duration_s (--duration)"),
            (1_700_000_000 + 31 * 86_400, 60, "start_unix_s (--start)"),
        ] {
            let e = (desk.act(
                &mut c,
                None,
                Action::IntentAdd(spec(start, duration)),
                &root,
                now_ms,
            ))
            .unwrap_err();
            assert_eq!(e.status, 400, "{start} {duration}: {e}");
            assert!(e.message.starts_with(field), "{e}");
        }
        let mut obs = None;
        for _ in 0..4 {
            obs = Some(c.step(&mut backend).unwrap());
        }
        let obs = obs.unwrap();
        let now_ms = obs.at_unix_ms;
        let add = |c: &mut Controller, desk: &mut crate::control::desk::Desk| {
            let a = Action::IntentAdd(spec(now_ms / 1000 + 60, 60));
            desk.act(c, Some(&obs), a, &root, now_ms).unwrap()["ids"][0]
                .as_u64()
                .unwrap()
        };
        let first = add(&mut c, &mut desk);
        let cancel = Action::IntentCancel { id: first };
        desk.act(&mut c, Some(&obs), cancel, &root, now_ms).unwrap();
        let second = add(&mut c, &mut desk);
        assert!(second > first, "{first} given again after its cancel");
        let cancel = Action::IntentCancel { id: second };
        desk.act(&mut c, Some(&obs), cancel, &root, now_ms).unwrap();
        c.shutdown();
        // Nothing pending, yet after a restart the next id is still a new one.
        let (mut c, mut desk) = open(&path);
        for _ in 0..4 {
            c.step(&mut backend).unwrap();
        }
        let third = add(&mut c, &mut desk);
        assert!(
            third > second,
            "{second} given again after a restart: {third}"
        );
        c.shutdown();
    }
}
