//! actuate: allocation → plan. Turns the policy's amounts into concrete settings per domain
//! and keeps only what should change now:
//!
//! * a change smaller than the hysteresis (a share of the amount in force) is not made;
//! * a rise is made at once; a cut waits until the resource's cooldown since its last change
//!   has passed (a tenant is never squeezed twice in a row on one noisy forecast), except a
//!   cut down to the tenant's limit (say, an operator's override): a limit holds at once;
//! * the balloon never goes below the guest's floor (the memory it uses plus a margin) nor
//!   above its maximum, and inflates at most one step per cycle;
//! * a refused change is retried after the cooldown, not every cycle.
//!
//! The amounts in force are what the backend accepted, seeded from the settings the backend
//! read from the domain when it is first seen.

use crate::allocate::rules::Rules;
use crate::collect::{Observation, TenantStats};
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, Applied, Change, DomainPlan, DomainSettings, Plan, Setting};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A disk or vNIC is never throttled below this (bytes/s): a guest must still be able to
/// boot, log and be reached whatever the forecast says.
pub const DEVICE_FLOOR_BYTES_PER_S: f64 = 1024.0 * 1024.0;

/// cgroups' CPU weight range as libvirt takes it (`cpu_shares`).
const SHARES_MIN: u64 = 2;
const SHARES_MAX: u64 = 262_144;
/// The smallest CFS quota the kernel takes (µs).
const QUOTA_MIN_US: i64 = 1000;

/// How allocations become changes (`[actuate]` in the daemon's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActuateConfig {
    /// Decide and log the plans, change nothing on any domain.
    pub dry_run: bool,
    /// Changes smaller than this share of the amount in force are not made (0 … 1).
    pub hysteresis: f64,
    /// A resource is cut no sooner than this after its last change (rises are not held).
    pub cooldown_seconds: f64,
    /// The CFS period of every vCPU (µs).
    pub cpu_period_us: u64,
    /// The balloon inflates (takes memory from the guest) at most this much per cycle.
    pub balloon_step_mib: f64,
    /// The balloon leaves the guest at least the memory it uses plus this.
    pub memory_floor_margin_mib: f64,
    /// The balloon takes memory from a guest only while the host's free memory (free +
    /// cached + buffers) is below this share of its total (0 … 1; 1: always). With memory
    /// to spare, squeezing a guest gains no one anything and risks its next phase.
    pub balloon_below_host_free: f64,
    /// What the daemon does to the domains when it stops: leave the last settings (they are
    /// safe) or restore what each domain had when prescient first saw it.
    pub on_exit: OnExit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    #[default]
    Leave,
    Restore,
}

impl Default for ActuateConfig {
    fn default() -> Self {
        ActuateConfig {
            dry_run: false,
            hysteresis: 0.05,
            cooldown_seconds: 60.0,
            cpu_period_us: 100_000,
            balloon_step_mib: 1024.0,
            memory_floor_margin_mib: 64.0,
            balloon_below_host_free: 0.2,
            on_exit: OnExit::Leave,
        }
    }
}

impl ActuateConfig {
    /// Every amount every cycle, exactly as decided: what the trace replay uses, whose host
    /// model enforces the amounts itself (and moves the balloon at its own speed).
    pub fn exact() -> Self {
        ActuateConfig {
            dry_run: false,
            hysteresis: 0.0,
            cooldown_seconds: 0.0,
            cpu_period_us: 100_000,
            balloon_step_mib: 0.0,
            memory_floor_margin_mib: 0.0,
            balloon_below_host_free: 1.0,
            on_exit: OnExit::Leave,
        }
    }

    fn is_exact(&self) -> bool {
        self.hysteresis == 0.0
            && self.cooldown_seconds == 0.0
            && self.balloon_step_mib == 0.0
            && self.memory_floor_margin_mib == 0.0
    }

    /// The first value out of range, as (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !ok(self.hysteresis, 0.0, 1.0) {
            return Err((
                "actuate.hysteresis",
                format!("= {} is outside 0 … 1", self.hysteresis),
            ));
        }
        if !ok(self.cooldown_seconds, 0.0, 86_400.0) {
            let v = self.cooldown_seconds;
            return Err((
                "actuate.cooldown_seconds",
                format!("= {v} is outside 0 … 86400"),
            ));
        }
        if !(1000..=1_000_000).contains(&self.cpu_period_us) {
            let v = self.cpu_period_us;
            return Err((
                "actuate.cpu_period_us",
                format!("= {v} is outside 1000 … 1000000"),
            ));
        }
        if !ok(self.balloon_step_mib, 0.0, 1e7) {
            let v = self.balloon_step_mib;
            return Err((
                "actuate.balloon_step_mib",
                format!("= {v} is not an amount ≥ 0"),
            ));
        }
        if !ok(self.balloon_below_host_free, 0.0, 1.0) {
            let v = self.balloon_below_host_free;
            return Err((
                "actuate.balloon_below_host_free",
                format!("= {v} is outside 0 … 1"),
            ));
        }
        if !ok(self.memory_floor_margin_mib, 0.0, 1e7) {
            let v = self.memory_floor_margin_mib;
            return Err((
                "actuate.memory_floor_margin_mib",
                format!("= {v} is not an amount ≥ 0"),
            ));
        }
        Ok(())
    }
}

/// What is in force on one tenant, as far as the actuator knows.
#[derive(Debug, Default, Clone)]
struct InForce {
    amount: PerResource<Option<f64>>,
    /// When the resource last changed, Unix ms.
    since_ms: PerResource<Option<i64>>,
    /// When a change of the resource was last refused, Unix ms.
    refused_ms: PerResource<Option<i64>>,
    /// The amount in force when the last change tried was a raise the backend refused.
    held: PerResource<Option<f64>>,
    id: crate::model::TenantId,
    vcpus: u32,
    /// The vCPU and emulator pinning in force (a [`Setting::Pin`]), as read or as set.
    pin: Option<Setting>,
    /// The pinning tried this cycle, in force once the backend accepts it.
    pin_tried: Option<Setting>,
    /// Whether prescient has pinned the tenant (then it unpins it when no class asks).
    pinned: bool,
}

/// What tenant `t` is held at for an allocation of `amount` of `r`: the amount where the
/// host's capacity of `r` is known; where it is not (libvirt knows none for disk and network)
/// nothing is shared, and the tenant is held only at its limit under `rules` (∞: unlimited).
pub fn enforced(
    obs: &Observation,
    rules: &Rules,
    t: &TenantStats,
    r: Resource,
    amount: f64,
) -> f64 {
    match obs.host.capacity.get(r) {
        Some(_) => amount,
        None => rules.bounds(t, r).1,
    }
}

pub struct Actuator {
    cfg: ActuateConfig,
    tenants: HashMap<Arc<str>, InForce>,
    /// What each domain had when prescient first saw it (from the profile, or read then).
    originals: HashMap<Arc<str>, Vec<Setting>>,
    /// Domains seen for the first time since [`Actuator::take_first_seen`] last ran.
    first_seen: Vec<DomainSettings>,
}

impl Actuator {
    pub fn new(cfg: ActuateConfig) -> Self {
        Actuator {
            cfg,
            tenants: HashMap::new(),
            originals: HashMap::new(),
            first_seen: Vec::new(),
        }
    }

    /// What domains had when prescient first saw them, as the profile kept it.
    pub fn adopt_originals(&mut self, kept: Vec<DomainSettings>) {
        self.originals.extend(kept);
    }

    /// The domains seen for the first time since the last call, with their settings then.
    pub fn take_first_seen(&mut self) -> Vec<DomainSettings> {
        std::mem::take(&mut self.first_seen)
    }

    /// The plan that gives every domain in sight back what it had when first seen.
    pub fn hand_back(&self) -> Plan {
        let mut plan = Plan::default();
        for (uuid, t) in &self.tenants {
            let Some(settings) = self.originals.get(uuid) else {
                continue;
            };
            let mut changes: Vec<Change> = Vec::new();
            for s in settings {
                let r = s.resource();
                match changes.iter_mut().find(|c| c.resource == r) {
                    Some(c) => c.settings.push(s.clone()),
                    None => changes.push(Change {
                        resource: r,
                        amount: amount_of(settings, r, t.vcpus).unwrap_or(f64::NAN),
                        previous: *t.amount.get(r),
                        settings: vec![s.clone()],
                    }),
                }
            }
            if !changes.is_empty() {
                plan.domains.push(DomainPlan {
                    id: t.id.clone(),
                    changes,
                });
            }
        }
        plan
    }

    pub fn config(&self) -> &ActuateConfig {
        &self.cfg
    }

    /// Pause (true) or resume changing the domains: plans are still made and logged.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.cfg.dry_run = dry_run;
    }

    /// The amount of `r` in force on `uuid`, as far as the actuator knows.
    pub fn in_force(&self, uuid: &str, r: Resource) -> Option<f64> {
        self.tenants.get(uuid).and_then(|t| *t.amount.get(r))
    }

    /// The changes that bring the host to `alloc`, for the resources the backend `shapes`.
    /// Where the host's capacity of a resource is unknown (libvirt knows none for disk and
    /// network) there is nothing to share: each tenant is held only at its limit under
    /// `rules` (unthrottled without one), not at its forecast.
    pub fn plan(
        &mut self,
        alloc: &Allocation,
        obs: &Observation,
        shapes: PerResource<bool>,
        rules: &Rules,
    ) -> Plan {
        self.tenants
            .retain(|uuid, _| obs.tenants.iter().any(|t| t.id.uuid == *uuid));
        let by_uuid: HashMap<&str, &TenantStats> =
            obs.tenants.iter().map(|t| (&*t.id.uuid, t)).collect();
        let h = &obs.host;
        let host_free = h.memory_free_kib.map(|f| {
            (f + h.memory_cached_kib.unwrap_or(0) + h.memory_buffers_kib.unwrap_or(0)) as f64
        });
        let squeeze_memory = self.cfg.balloon_below_host_free >= 1.0
            || host_free
                .is_some_and(|f| f < self.cfg.balloon_below_host_free * h.memory_kib as f64);
        let pins = if self.cfg.is_exact() {
            None
        } else {
            pins(obs, rules)
        };
        let mut plan = Plan::default();
        for a in &alloc.tenants {
            let Some(t) = by_uuid.get(&*a.uuid) else {
                continue;
            };
            if !self.tenants.contains_key(&a.uuid)
                && !self.originals.contains_key(&a.uuid)
                && !t.settings.is_empty()
            {
                self.originals.insert(a.uuid.clone(), t.settings.clone());
                self.first_seen.push((a.uuid.clone(), t.settings.clone()));
            }
            let state = self.tenants.entry(a.uuid.clone()).or_default();
            state.id = t.id.clone();
            state.vcpus = t.vcpus;
            state.pin_tried = None;
            if state.pin.is_none() {
                state.pin = t
                    .settings
                    .iter()
                    .find(|s| matches!(s, Setting::Pin { .. }))
                    .cloned();
            }
            for r in Resource::ALL {
                if state.amount.get(r).is_none() {
                    *state.amount.get_mut(r) = amount_of(&t.settings, r, t.vcpus);
                }
            }
            let mut changes = Vec::new();
            for r in Resource::ALL {
                if !*shapes.get(r) {
                    continue;
                }
                let previous = *state.amount.get(r);
                let amount = enforced(obs, rules, t, r, *a.amounts.get(r));
                let wanted = bounded(&self.cfg, t, r, amount, previous);
                let within = |at: &Option<i64>| {
                    at.is_some_and(|s| {
                        ((obs.at_unix_ms - s) as f64) < self.cfg.cooldown_seconds * 1000.0
                    })
                };
                if wanted.is_nan()
                    || (!self.cfg.is_exact() && previous == Some(wanted))
                    || within(state.refused_ms.get(r))
                {
                    continue;
                }
                if let Some(p) = previous
                    && !self.cfg.is_exact()
                {
                    let small = p.is_finite()
                        && wanted.is_finite()
                        && (wanted - p).abs() <= self.cfg.hysteresis * p.abs().max(wanted.abs());
                    let cooling = within(state.since_ms.get(r));
                    let held = r == Resource::Mem && !squeeze_memory;
                    // A cut to the tenant's limit (an operator's override, its metadata, its
                    // class) is made at once: the limit is a hard constraint.
                    let over_limit = p > rules.bounds(t, r).1 * (1.0 + 1e-9);
                    if small || (wanted < p && (cooling || held) && !over_limit) {
                        continue;
                    }
                }
                let settings = settings_for(&self.cfg, t, r, wanted);
                // No device to set (a domain without disks or vNICs): nothing to change,
                // except on a host that enforces amounts itself.
                if settings.is_empty() && !self.cfg.is_exact() {
                    continue;
                }
                changes.push(Change {
                    resource: r,
                    amount: wanted,
                    previous,
                    settings,
                });
            }
            // The pinning, where a class asks for dedicated CPUs (or prescient pinned the
            // tenant before and none asks any more: all CPUs again).
            let wanted_pin = match &pins {
                Some(p) => p.get(&*a.uuid).cloned(),
                None if state.pinned => Some(unpinned(t.vcpus, obs.host.cpus)),
                None => None,
            };
            if let Some(pin) = wanted_pin
                && state.pin.as_ref() != Some(&pin)
                && *shapes.get(Resource::Cpu)
            {
                match changes.iter_mut().find(|c| c.resource == Resource::Cpu) {
                    Some(c) => c.settings.push(pin.clone()),
                    None => {
                        if let Some(in_force) = *state.amount.get(Resource::Cpu) {
                            changes.push(Change {
                                resource: Resource::Cpu,
                                amount: in_force,
                                previous: Some(in_force),
                                settings: vec![pin.clone()],
                            });
                        }
                    }
                }
                state.pin_tried = Some(pin);
            }
            if !changes.is_empty() {
                plan.domains.push(DomainPlan {
                    id: t.id.clone(),
                    changes,
                });
            }
        }
        plan
    }

    /// Take note of what the backend made of a plan at `at_ms`: accepted amounts are in
    /// force; a refused resource waits for its cooldown before it is tried again.
    pub fn record(&mut self, applied: &Applied, at_ms: i64) {
        for (uuid, r, amount) in &applied.accepted {
            let t = self.tenants.entry(uuid.clone()).or_default();
            if *r == Resource::Cpu
                && let Some(pin) = t.pin_tried.take()
            {
                t.pin = Some(pin);
                t.pinned = true;
            }
            *t.amount.get_mut(*r) = Some(*amount);
            *t.since_ms.get_mut(*r) = Some(at_ms);
            *t.refused_ms.get_mut(*r) = None;
            *t.held.get_mut(*r) = None;
        }
        for d in &applied.denials {
            let t = self.tenants.entry(d.tenant.uuid.clone()).or_default();
            *t.refused_ms.get_mut(d.resource) = Some(at_ms);
            let in_force = d.got.or(*t.amount.get(d.resource));
            *t.held.get_mut(d.resource) = in_force.filter(|&g| d.wanted > g);
        }
    }

    /// The amount a tenant is held at: the one in force when its last raise of `r` was
    /// refused, until a change of it is accepted.
    pub fn held_at(&self, uuid: &str, r: Resource) -> Option<f64> {
        *self.tenants.get(uuid)?.held.get(r)
    }
}

/// Every tenant's pinning when a class of `rules` asks for dedicated CPUs (None: none
/// does). The tenants of such classes, the highest weight first, each get one host CPU per
/// vCPU from the top of the host's CPUs down, while at least one CPU stays shared; a tenant
/// that does not fit stays shared. Emulator threads and every other tenant run on the
/// shared CPUs.
pub fn pins(obs: &Observation, rules: &Rules) -> Option<HashMap<Arc<str>, Setting>> {
    let n = obs.host.cpus;
    let mut wanting: Vec<&TenantStats> = (obs.tenants.iter())
        .filter(|t| rules.class(t.policy.class).dedicated_cpus)
        .collect();
    if wanting.is_empty() || n < 2 {
        return None;
    }
    wanting.sort_by(|a, b| {
        let w = |t: &TenantStats| rules.weight(t.policy.class);
        w(b).total_cmp(&w(a))
            .then_with(|| a.id.name.cmp(&b.id.name))
    });
    let mut free_top = n;
    let mut dedicated: HashMap<&str, Vec<u32>> = HashMap::new();
    for t in wanting {
        let k = t.vcpus.max(1);
        if free_top > k {
            dedicated.insert(&t.id.uuid, (free_top - k..free_top).collect());
            free_top -= k;
        }
    }
    let shared: Vec<u32> = (0..free_top).collect();
    Some(
        (obs.tenants.iter())
            .map(|t| {
                let vcpu_cpus = match dedicated.get(&*t.id.uuid) {
                    Some(cpus) => cpus.iter().map(|c| vec![*c]).collect(),
                    None => vec![shared.clone(); t.vcpus.max(1) as usize],
                };
                let pin = Setting::Pin {
                    vcpu_cpus,
                    emulator_cpus: shared.clone(),
                };
                (t.id.uuid.clone(), pin)
            })
            .collect(),
    )
}

/// Every vCPU and the emulator on every host CPU.
fn unpinned(vcpus: u32, cpus: u32) -> Setting {
    let all: Vec<u32> = (0..cpus).collect();
    Setting::Pin {
        vcpu_cpus: vec![all.clone(); vcpus.max(1) as usize],
        emulator_cpus: all,
    }
}

/// The amount a domain's current settings give, where they tell.
pub fn amount_of(settings: &[Setting], r: Resource, vcpus: u32) -> Option<f64> {
    let mut sum: Option<f64> = None;
    for s in settings {
        match (r, s) {
            (
                Resource::Cpu,
                Setting::Cpu {
                    vcpu_period_us,
                    vcpu_quota_us,
                    ..
                },
            ) => {
                let n = vcpus.max(1) as f64;
                return Some(if *vcpu_quota_us < 0 || *vcpu_period_us == 0 {
                    n
                } else {
                    (*vcpu_quota_us as f64 / *vcpu_period_us as f64).min(1.0) * n
                });
            }
            (Resource::Mem, Setting::Balloon { target_kib }) => return Some(*target_kib as f64),
            (
                Resource::Disk,
                Setting::DiskIoTune {
                    total_bytes_sec: v, ..
                },
            )
            | (Resource::Net, Setting::NicRate { bytes_per_s: v, .. }) => {
                // Any unthrottled device leaves the tenant unbounded.
                if *v == 0 {
                    return Some(f64::INFINITY);
                }
                sum = Some(sum.unwrap_or(0.0) + *v as f64);
            }
            _ => {}
        }
    }
    sum
}

/// The amount the domain can be given: the balloon within [floor, maximum] and moved at most
/// one step; a disk at least its floor.
fn bounded(
    cfg: &ActuateConfig,
    t: &TenantStats,
    r: Resource,
    amount: f64,
    previous: Option<f64>,
) -> f64 {
    if cfg.is_exact() {
        return amount;
    }
    match r {
        Resource::Mem => {
            let mut v = amount;
            if let Some(used) = t.mem.used_kib {
                v = v.max(used as f64 + cfg.memory_floor_margin_mib * 1024.0);
            }
            if t.max_memory_kib > 0 {
                v = v.min(t.max_memory_kib as f64);
            }
            if let Some(p) = previous
                && cfg.balloon_step_mib > 0.0
            {
                v = v.max(p - cfg.balloon_step_mib * 1024.0);
            }
            v.round()
        }
        Resource::Disk => amount.max(DEVICE_FLOOR_BYTES_PER_S * t.disk_targets.len().max(1) as f64),
        Resource::Net => amount.max(DEVICE_FLOOR_BYTES_PER_S * t.nics.len().max(1) as f64),
        Resource::Cpu => amount,
    }
}

/// The settings that give `amount` of `r` on this domain.
fn settings_for(cfg: &ActuateConfig, t: &TenantStats, r: Resource, amount: f64) -> Vec<Setting> {
    match r {
        Resource::Cpu => {
            let n = t.vcpus.max(1) as f64;
            let per_vcpu = amount / n;
            let period = cfg.cpu_period_us;
            let quota = if per_vcpu >= 1.0 {
                -1 // a vCPU cannot use more than one core: unlimited
            } else {
                ((per_vcpu * period as f64).round() as i64).max(QUOTA_MIN_US)
            };
            let shares = ((amount * 1024.0).round() as u64).clamp(SHARES_MIN, SHARES_MAX);
            vec![Setting::Cpu {
                vcpu_period_us: period,
                vcpu_quota_us: quota,
                cpu_shares: shares,
            }]
        }
        Resource::Mem => vec![Setting::Balloon {
            target_kib: amount.max(0.0).round() as u64,
        }],
        Resource::Disk => {
            let per_disk = amount / t.disk_targets.len().max(1) as f64;
            // 0: unthrottled.
            let bytes = if per_disk.is_finite() {
                per_disk.max(1.0).round() as u64
            } else {
                0
            };
            t.disk_targets
                .iter()
                .map(|d| Setting::DiskIoTune {
                    disk: d.to_string(),
                    total_bytes_sec: bytes,
                    total_iops_sec: 0,
                })
                .collect()
        }
        Resource::Net => {
            // Each way at the whole amount (split over the vNICs): the mix of inbound and
            // outbound may change at any time.
            let per_nic = amount / t.nics.len().max(1) as f64;
            let bytes = if per_nic.is_finite() {
                per_nic.max(1.0).round() as u64
            } else {
                0
            };
            t.nics
                .iter()
                .map(|n| Setting::NicRate {
                    tap: n.name.to_string(),
                    bytes_per_s: bytes,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::MemStats;
    use crate::model::TenantId;
    use crate::plan::{Denial, TenantAllocation};

    const MIB: f64 = 1024.0;
    const ALL: PerResource<bool> = PerResource {
        cpu: true,
        mem: true,
        disk: true,
        net: false,
    };

    /// The defaults, with the balloon free to take memory whatever the host has.
    fn cfg() -> ActuateConfig {
        ActuateConfig {
            balloon_below_host_free: 1.0,
            ..ActuateConfig::default()
        }
    }

    fn tenant(used_mib: u64) -> TenantStats {
        TenantStats {
            id: TenantId {
                uuid: "u1".into(),
                name: "t1".into(),
            },
            vcpus: 2,
            max_memory_kib: 1024 * 1024,
            mem: MemStats {
                used_kib: Some(used_mib * 1024),
                ..MemStats::default()
            },
            disk_targets: vec!["vda".into(), "vdb".into()],
            ..TenantStats::default()
        }
    }

    fn obs(at_s: i64, t: TenantStats) -> Observation {
        let known = Some(1e12);
        Observation {
            at_unix_ms: at_s * 1000,
            tenants: vec![t],
            host: crate::model::HostInfo {
                capacity: PerResource {
                    cpu: known,
                    mem: known,
                    disk: known,
                    net: known,
                },
                ..Default::default()
            },
            ..Observation::default()
        }
    }

    fn alloc(cpu: f64, mem_mib: f64, disk: f64) -> Allocation {
        Allocation {
            tenants: vec![TenantAllocation {
                uuid: "u1".into(),
                amounts: PerResource {
                    cpu,
                    mem: mem_mib * MIB,
                    disk,
                    net: 1e6,
                },
                reasons: None,
            }],
        }
    }

    fn accept_all(a: &mut Actuator, plan: &Plan, at_s: i64) {
        let mut applied = Applied::default();
        for d in &plan.domains {
            for c in &d.changes {
                applied
                    .accepted
                    .push((d.id.uuid.clone(), c.resource, c.amount));
            }
        }
        a.record(&applied, at_s * 1000);
    }

    fn change(plan: &Plan, r: Resource) -> Option<&Change> {
        plan.domains
            .iter()
            .flat_map(|d| &d.changes)
            .find(|c| c.resource == r)
    }

    #[test]
    fn settings_follow_the_amounts() {
        let mut a = Actuator::new(cfg());
        let plan = a.plan(
            &alloc(0.5, 512.0, 8e6),
            &obs(0, tenant(100)),
            ALL,
            &Rules::default(),
        );
        let cpu = change(&plan, Resource::Cpu).unwrap();
        assert_eq!(
            cpu.settings,
            vec![Setting::Cpu {
                vcpu_period_us: 100_000,
                vcpu_quota_us: 25_000, // 0.5 cores over 2 vCPUs
                cpu_shares: 512,
            }]
        );
        let mem = change(&plan, Resource::Mem).unwrap();
        assert_eq!(
            mem.settings,
            vec![Setting::Balloon {
                target_kib: 512 * 1024
            }]
        );
        let disk = change(&plan, Resource::Disk).unwrap();
        assert_eq!(disk.settings.len(), 2, "one throttle per disk");
        assert!(matches!(
            &disk.settings[1],
            Setting::DiskIoTune { disk, total_bytes_sec: 4_000_000, total_iops_sec: 0 } if disk == "vdb"
        ));
        assert!(
            change(&plan, Resource::Net).is_none(),
            "net is not shaped by this backend"
        );
        // Two full vCPUs: no quota at all.
        let plan = Actuator::new(cfg()).plan(
            &alloc(2.5, 512.0, 8e6),
            &obs(0, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert!(matches!(
            change(&plan, Resource::Cpu).unwrap().settings[0],
            Setting::Cpu {
                vcpu_quota_us: -1,
                ..
            }
        ));
    }

    #[test]
    fn the_balloon_stays_above_the_guest_floor_and_below_its_maximum() {
        let mut a = Actuator::new(cfg());
        // Uses 300 MiB: a 128 MiB target becomes 300 + 64.
        let plan = a.plan(
            &alloc(1.0, 128.0, 8e6),
            &obs(0, tenant(300)),
            ALL,
            &Rules::default(),
        );
        assert_eq!(change(&plan, Resource::Mem).unwrap().amount, 364.0 * MIB);
        let plan = a.plan(
            &alloc(1.0, 4096.0, 8e6),
            &obs(0, tenant(300)),
            ALL,
            &Rules::default(),
        );
        assert_eq!(change(&plan, Resource::Mem).unwrap().amount, 1024.0 * MIB);
    }

    #[test]
    fn the_balloon_inflates_one_step_per_cycle() {
        let cfg = ActuateConfig {
            balloon_step_mib: 100.0,
            cooldown_seconds: 0.0,
            ..cfg()
        };
        let mut a = Actuator::new(cfg);
        let mut t = tenant(10);
        t.max_memory_kib = 8 * 1024 * 1024;
        let p = a.plan(
            &alloc(1.0, 1000.0, 8e6),
            &obs(0, t.clone()),
            ALL,
            &Rules::default(),
        );
        accept_all(&mut a, &p, 0);
        let p = a.plan(
            &alloc(1.0, 200.0, 8e6),
            &obs(10, t.clone()),
            ALL,
            &Rules::default(),
        );
        assert_eq!(change(&p, Resource::Mem).unwrap().amount, 900.0 * MIB);
        accept_all(&mut a, &p, 10);
        // Deflating (giving back) is not limited.
        let p = a.plan(
            &alloc(1.0, 4000.0, 8e6),
            &obs(20, t),
            ALL,
            &Rules::default(),
        );
        assert_eq!(change(&p, Resource::Mem).unwrap().amount, 4000.0 * MIB);
    }

    #[test]
    fn small_changes_wait_and_cuts_wait_for_the_cooldown() {
        let mut a = Actuator::new(cfg());
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(0, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert_eq!(p.len(), 3);
        accept_all(&mut a, &p, 0);
        // 3 % more CPU: under the 5 % hysteresis.
        let p = a.plan(
            &alloc(1.03, 512.0, 8e6),
            &obs(10, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert!(p.is_empty(), "{p:?}");
        // A rise is made at once, a cut within the cooldown waits.
        let p = a.plan(
            &alloc(1.5, 256.0, 8e6),
            &obs(20, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert!(change(&p, Resource::Cpu).is_some());
        assert!(change(&p, Resource::Mem).is_none());
        accept_all(&mut a, &p, 20);
        let p = a.plan(
            &alloc(1.5, 256.0, 8e6),
            &obs(61, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert_eq!(change(&p, Resource::Mem).unwrap().amount, 256.0 * MIB);
    }

    fn pin_of(plan: &Plan) -> Option<&Setting> {
        change(plan, Resource::Cpu)?
            .settings
            .iter()
            .find(|s| matches!(s, Setting::Pin { .. }))
    }

    #[test]
    fn a_class_with_dedicated_cpus_gets_them_and_the_rest_share_what_is_left() {
        use crate::model::Class;
        let mut rules = Rules::default();
        rules.classes[Class::Gold as usize].dedicated_cpus = true;
        let mut o = obs(0, tenant(100));
        o.host.cpus = 4;
        let mut gold = tenant(100);
        gold.id = TenantId {
            uuid: "g".into(),
            name: "g".into(),
        };
        gold.policy.class = Class::Gold;
        gold.vcpus = 2;
        let mut big = gold.clone();
        big.id = TenantId {
            uuid: "big".into(),
            name: "big".into(),
        };
        big.vcpus = 4; // does not fit beside the other: stays shared
        o.tenants.push(gold);
        o.tenants.push(big);
        let pins = pins(&o, &rules).unwrap();
        let pin = |u: &str| match &pins[u] {
            Setting::Pin {
                vcpu_cpus,
                emulator_cpus,
            } => (vcpu_cpus.clone(), emulator_cpus.clone()),
            _ => unreachable!(),
        };
        assert_eq!(pin("g"), (vec![vec![2], vec![3]], vec![0, 1]));
        assert_eq!(pin("u1"), (vec![vec![0, 1]; 2], vec![0, 1]));
        assert_eq!(pin("big"), (vec![vec![0, 1]; 4], vec![0, 1]));
        assert!(
            super::pins(&o, &Rules::default()).is_none(),
            "no class asks: nothing is pinned"
        );

        // Through the actuator: pinned once, then left alone; unpinned when no class asks.
        let mut a = Actuator::new(cfg());
        let mut one = obs(0, tenant(100));
        one.host.cpus = 4;
        one.tenants[0].policy.class = Class::Gold;
        let p = a.plan(&alloc(1.0, 512.0, 8e6), &one, ALL, &rules);
        assert!(pin_of(&p).is_some(), "{p:?}");
        let pins_set = (p.domains.iter().flat_map(|d| &d.changes))
            .flat_map(|c| &c.settings)
            .filter(|s| matches!(s, Setting::Pin { .. }))
            .count();
        assert_eq!(pins_set, 1, "{p:?}");
        accept_all(&mut a, &p, 0);
        one.at_unix_ms = 10_000;
        let p = a.plan(&alloc(1.0, 512.0, 8e6), &one, ALL, &rules);
        assert!(pin_of(&p).is_none(), "{p:?}");
        let p = a.plan(&alloc(1.0, 512.0, 8e6), &one, ALL, &Rules::default());
        assert_eq!(
            pin_of(&p),
            Some(&Setting::Pin {
                vcpu_cpus: vec![vec![0, 1, 2, 3]; 2],
                emulator_cpus: vec![0, 1, 2, 3],
            })
        );
    }

    /// An actuator that applied `cpu` cores (and the rest of [`alloc`]) at time 0.
    fn settled_at(cpu: f64) -> Actuator {
        let mut a = Actuator::new(cfg());
        let p = a.plan(
            &alloc(cpu, 512.0, 8e6),
            &obs(0, tenant(100)),
            ALL,
            &Rules::default(),
        );
        accept_all(&mut a, &p, 0);
        a
    }

    #[test]
    fn a_cut_down_to_the_tenants_limit_does_not_wait_for_the_cooldown() {
        let mut a = settled_at(1.5);
        // 10 s later an override caps the tenant at 0.5 cores: cut now, not in 60 s.
        let mut t = tenant(100);
        t.policy.limit.cpu = Some(0.5);
        let p = a.plan(&alloc(0.5, 512.0, 8e6), &obs(10, t), ALL, &Rules::default());
        assert_eq!(change(&p, Resource::Cpu).unwrap().amount, 0.5);
        // Without a limit the same cut waits.
        let mut a = settled_at(1.5);
        let p = a.plan(
            &alloc(0.5, 512.0, 8e6),
            &obs(10, tenant(100)),
            ALL,
            &Rules::default(),
        );
        assert!(change(&p, Resource::Cpu).is_none());
    }

    #[test]
    fn a_refused_change_is_retried_after_the_cooldown() {
        let mut a = Actuator::new(cfg());
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(0, tenant(100)),
            ALL,
            &Rules::default(),
        );
        let t = tenant(100);
        let denied = Applied {
            accepted: vec![],
            denials: vec![Denial {
                tenant: t.id.clone(),
                resource: Resource::Mem,
                wanted: 512.0 * MIB,
                got: None,
                setting: None,
                code: Some(8),
                message: "no".into(),
            }],
        };
        assert!(change(&p, Resource::Mem).is_some());
        a.record(&denied, 0);
        assert!(
            change(
                &a.plan(
                    &alloc(1.0, 512.0, 8e6),
                    &obs(30, tenant(100)),
                    ALL,
                    &Rules::default()
                ),
                Resource::Mem
            )
            .is_none()
        );
        assert!(
            change(
                &a.plan(
                    &alloc(1.0, 512.0, 8e6),
                    &obs(61, tenant(100)),
                    ALL,
                    &Rules::default()
                ),
                Resource::Mem
            )
            .is_some()
        );
    }

    #[test]
    fn what_the_domain_had_is_where_the_diff_starts() {
        let mut t = tenant(100);
        t.settings = vec![
            Setting::Cpu {
                vcpu_period_us: 100_000,
                vcpu_quota_us: 50_000,
                cpu_shares: 1024,
            },
            Setting::Balloon {
                target_kib: 512 * 1024,
            },
        ];
        assert_eq!(amount_of(&t.settings, Resource::Cpu, 2), Some(1.0));
        let mut a = Actuator::new(cfg());
        let p = a.plan(&alloc(1.0, 512.0, 8e6), &obs(0, t), ALL, &Rules::default());
        assert!(change(&p, Resource::Cpu).is_none() && change(&p, Resource::Mem).is_none());
        assert_eq!(change(&p, Resource::Disk).unwrap().previous, None);
    }

    #[test]
    fn without_a_known_capacity_a_tenant_is_held_only_at_its_limit() {
        let mut o = obs(0, tenant(100));
        o.host.capacity.disk = None;
        let mut a = Actuator::new(cfg());
        let p = a.plan(&alloc(1.0, 512.0, 8e6), &o, ALL, &Rules::default());
        let disk = change(&p, Resource::Disk).unwrap();
        assert_eq!(disk.amount, f64::INFINITY);
        assert!(matches!(
            disk.settings[0],
            Setting::DiskIoTune {
                total_bytes_sec: 0,
                ..
            }
        ));
        accept_all(&mut a, &p, 0);
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(100, tenant(100)).tap_disk_unknown(),
            ALL,
            &Rules::default(),
        );
        assert!(
            change(&p, Resource::Disk).is_none(),
            "unlimited stays unlimited: {p:?}"
        );
        let rules = Rules::parse(
            "[classes.silver]\nlimit = { disk_bytes_per_s = 5e6 }\n",
            "r.toml",
        )
        .unwrap();
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(200, tenant(100)).tap_disk_unknown(),
            ALL,
            &rules,
        );
        assert_eq!(change(&p, Resource::Disk).unwrap().amount, 5e6);
    }

    trait DiskUnknown {
        fn tap_disk_unknown(self) -> Self;
    }

    impl DiskUnknown for Observation {
        fn tap_disk_unknown(mut self) -> Self {
            self.host.capacity.disk = None;
            self
        }
    }

    #[test]
    fn the_balloon_takes_memory_only_while_the_host_is_short_of_it() {
        let mut a = Actuator::new(ActuateConfig::default());
        let mut o = obs(0, tenant(100));
        o.host.memory_kib = 16 << 20;
        o.host.memory_free_kib = Some(8 << 20); // half free: no squeeze
        let p = a.plan(&alloc(1.0, 1024.0, 8e6), &o, ALL, &Rules::default());
        accept_all(&mut a, &p, 0);
        o.at_unix_ms = 100_000;
        let p = a.plan(&alloc(1.0, 256.0, 8e6), &o, ALL, &Rules::default());
        assert!(change(&p, Resource::Mem).is_none(), "{p:?}");
        o.host.memory_free_kib = Some(1 << 20); // 6 % free: squeeze
        let p = a.plan(&alloc(1.0, 256.0, 8e6), &o, ALL, &Rules::default());
        assert_eq!(change(&p, Resource::Mem).unwrap().amount, 256.0 * MIB);
    }

    #[test]
    fn each_vnic_is_shaped_each_way_and_a_domain_without_one_is_left_alone() {
        let mut t = tenant(100);
        t.nics = ["vnet1", "vnet2"]
            .map(|n| crate::collect::NicRates {
                name: n.into(),
                ..Default::default()
            })
            .to_vec();
        let with_net = PerResource { net: true, ..ALL };
        let mut a = Actuator::new(cfg());
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(0, t),
            with_net,
            &Rules::default(),
        );
        // 1 MB/s in all is under the floor of 1 MiB/s a vNIC.
        let net = change(&p, Resource::Net).unwrap();
        assert_eq!(
            net.settings,
            vec![
                Setting::NicRate {
                    tap: "vnet1".into(),
                    bytes_per_s: 1_048_576
                },
                Setting::NicRate {
                    tap: "vnet2".into(),
                    bytes_per_s: 1_048_576
                },
            ]
        );
        let mut a = Actuator::new(cfg());
        let p = a.plan(
            &alloc(1.0, 512.0, 8e6),
            &obs(0, tenant(100)),
            with_net,
            &Rules::default(),
        );
        assert!(
            change(&p, Resource::Net).is_none(),
            "no vNIC, no change: {p:?}"
        );
    }

    #[test]
    fn exact_mode_passes_every_amount_through() {
        let mut a = Actuator::new(ActuateConfig::exact());
        let all = PerResource {
            cpu: true,
            mem: true,
            disk: true,
            net: true,
        };
        for at in 0..3 {
            let p = a.plan(
                &alloc(1.0, 1.0, 0.0),
                &obs(at, tenant(100)),
                all,
                &Rules::default(),
            );
            assert_eq!(p.len(), 4);
            assert_eq!(change(&p, Resource::Mem).unwrap().amount, MIB, "no floor");
            accept_all(&mut a, &p, at);
        }
    }
}
