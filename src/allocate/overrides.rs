//! Operator overrides: hard constraints on one tenant's allocation, set through the control
//! socket (`prescient override set`). An override replaces what the domain's metadata and the
//! policy file say: its class, a minimum and a maximum per resource, or a freeze that holds
//! every amount where it was. Each may expire; the control loop drops it at its time.
//!
//! They act on the policy's inputs, not on its output: the control loop rewrites each
//! overridden tenant's declared policy (class, guarantee, limit) before the policy decides,
//! so that every policy obeys them through [`super::rules::Rules::bounds`] and the capacity
//! they leave is shared among the others by the same solve.

use super::rules::Rules;
use crate::collect::{Observation, TenantStats};
use crate::model::{Amounts, Class, Resource};
use crate::plan::Allocation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The longest an override may be set for (30 days); without a time it holds until cleared.
pub const MAX_TTL_S: f64 = 30.0 * 86_400.0;

/// An amount of `r` in the pipeline's units, in the operator's (cores, MiB, bytes/s).
fn show(r: Resource, v: f64) -> String {
    match r {
        Resource::Cpu => format!("{v:.2} cores"),
        Resource::Mem => format!("{:.0} MiB", v / 1024.0),
        Resource::Disk | Resource::Net => format!("{v:.0} bytes/s"),
    }
}

/// One tenant's override, amounts in the pipeline's units (cores, KiB, bytes/s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub uuid: Arc<str>,
    pub name: Arc<str>,
    #[serde(default)]
    pub class: Option<Class>,
    #[serde(default)]
    pub min: Amounts,
    #[serde(default)]
    pub max: Amounts,
    /// Hold every amount at what it was when the override was set.
    #[serde(default)]
    pub freeze: bool,
    /// Held amounts of a freeze (taken from the allocation in force when it was set).
    #[serde(default)]
    pub frozen: Amounts,
    /// Unix ms after which the override no longer holds (None: until cleared).
    pub expires_ms: Option<i64>,
    /// Who set it (user name and uid), and when (Unix ms).
    pub set_by: String,
    pub set_ms: i64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    #[error("{field}: {value} is not a finite number ≥ 0")]
    Amount { field: String, value: f64 },
    #[error("{resource}: the minimum {min} is above the maximum {max}")]
    MinAboveMax {
        resource: Resource,
        min: f64,
        max: f64,
    },
    #[error("ttl: {0} s is not between 1 s and 30 days")]
    Ttl(f64),
    #[error(
        "the minimum {r} {} is more than the domain can ever use ({}: its {}); \
         give at most that",
        show(*resource, *min), show(*resource, *size),
        if *resource == Resource::Cpu { "vCPUs" } else { "maximum memory" },
        r = resource
    )]
    BeyondSize {
        resource: Resource,
        min: f64,
        size: f64,
    },
    #[error(
        "its {r} reservation of {} cannot be honoured: with it the tenants' {r} \
         reservations would add up to {}, more than they may have in all ({}, the host's \
         capacity less its reserve); ask less, or lower another tenant's minimum \
         (`prescient override list`) or a class's reservation",
        show(*resource, *min), show(*resource, *reserved), show(*resource, *capacity),
        r = resource
    )]
    BeyondCapacity {
        resource: Resource,
        min: f64,
        reserved: f64,
        capacity: f64,
    },
    #[error("an override must set a class, a minimum, a maximum or a freeze")]
    Empty,
}

impl Override {
    /// An override of `id` that asks for nothing yet, set by `set_by` at `set_ms`.
    pub fn of(id: &crate::model::TenantId, set_by: String, set_ms: i64) -> Override {
        Override {
            uuid: id.uuid.clone(),
            name: id.name.clone(),
            class: None,
            min: Amounts::default(),
            max: Amounts::default(),
            freeze: false,
            frozen: Amounts::default(),
            expires_ms: None,
            set_by,
            set_ms,
        }
    }

    /// Check the amounts and that it asks for something.
    pub fn validate(&self) -> Result<(), OverrideError> {
        for r in Resource::ALL {
            for (kind, v) in [("min", self.min.get(r)), ("max", self.max.get(r))] {
                if let Some(v) = *v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(OverrideError::Amount {
                        field: format!("{kind}.{r}"),
                        value: v,
                    });
                }
            }
            if let (Some(min), Some(max)) = (*self.min.get(r), *self.max.get(r))
                && min > max
            {
                return Err(OverrideError::MinAboveMax {
                    resource: r,
                    min,
                    max,
                });
            }
        }
        let any = |a: &Amounts| Resource::ALL.iter().any(|r| a.get(*r).is_some());
        if self.class.is_none() && !self.freeze && !any(&self.min) && !any(&self.max) {
            return Err(OverrideError::Empty);
        }
        Ok(())
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|t| now_ms >= t)
    }
}

/// The overrides in force, by tenant UUID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    by_uuid: BTreeMap<Arc<str>, Override>,
}

impl Overrides {
    pub fn new(list: Vec<Override>) -> Self {
        Overrides {
            by_uuid: list.into_iter().map(|o| (o.uuid.clone(), o)).collect(),
        }
    }

    pub fn list(&self) -> Vec<Override> {
        self.by_uuid.values().cloned().collect()
    }

    pub fn get(&self, uuid: &str) -> Option<&Override> {
        self.by_uuid.get(uuid)
    }

    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// Set (or replace) a tenant's override. A freeze takes its amounts from `last`, the
    /// allocation in force (a freeze with nothing decided yet holds nothing).
    pub fn set(&mut self, mut o: Override, last: Option<&Allocation>) -> Result<(), OverrideError> {
        o.validate()?;
        o.frozen = Amounts::default();
        if o.freeze
            && let Some(t) = last.and_then(|a| a.tenants.iter().find(|t| t.uuid == o.uuid))
        {
            for r in Resource::ALL {
                *o.frozen.get_mut(r) = Some(*t.amounts.get(r));
            }
        }
        self.by_uuid.insert(o.uuid.clone(), o);
        Ok(())
    }

    /// Whether `o`, set beside the overrides in force, can be honoured on the host of `obs`
    /// under `rules`: each minimum no more than the domain can use, and, where `o` raises
    /// the tenants' reservations of a resource (a minimum, or a class with a reservation),
    /// all of them together within what the tenants may have of it.
    pub fn check_fits(
        &self,
        o: &Override,
        obs: &Observation,
        rules: &Rules,
    ) -> Result<(), OverrideError> {
        let reserved = |set: &Overrides, r: Resource| -> (f64, f64) {
            let mut obs = obs.clone();
            set.apply(&mut obs);
            let lo = |t: &TenantStats| rules.bounds(t, r).0;
            let mine = (obs.tenants.iter())
                .find(|t| t.id.uuid == o.uuid)
                .map_or(0.0, lo);
            (obs.tenants.iter().map(lo).sum(), mine)
        };
        let mut next = self.clone();
        next.by_uuid.insert(o.uuid.clone(), o.clone());
        for r in Resource::ALL {
            let size = (obs.tenants.iter())
                .find(|t| t.id.uuid == o.uuid)
                .and_then(|t| t.most(r));
            if let (Some(min), Some(size)) = (*o.min.get(r), size)
                && min > size
            {
                return Err(OverrideError::BeyondSize {
                    resource: r,
                    min,
                    size,
                });
            }
            let Some(capacity) = rules.capacity(&obs.host, r) else {
                continue;
            };
            let (after, min) = reserved(&next, r);
            if after > capacity * (1.0 + 1e-9) && after > reserved(self, r).0 * (1.0 + 1e-9) {
                return Err(OverrideError::BeyondCapacity {
                    resource: r,
                    min,
                    reserved: after,
                    capacity,
                });
            }
        }
        Ok(())
    }

    /// Remove a tenant's override; the removed one, if there was one.
    pub fn clear(&mut self, uuid: &str) -> Option<Override> {
        self.by_uuid.remove(uuid)
    }

    /// Drop and return the overrides that have expired at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Override> {
        let gone: Vec<Arc<str>> = (self.by_uuid.values())
            .filter(|o| o.expired(now_ms))
            .map(|o| o.uuid.clone())
            .collect();
        gone.iter().filter_map(|u| self.by_uuid.remove(u)).collect()
    }

    /// Rewrite each overridden tenant's declared policy in `obs`: the class, the minimum as
    /// its guarantee, the maximum as its limit, and a freeze as both at the held amounts.
    pub fn apply(&self, obs: &mut Observation) {
        if self.by_uuid.is_empty() {
            return;
        }
        for t in &mut obs.tenants {
            self.apply_one(t);
        }
    }

    /// [`Self::apply`] to one tenant.
    pub fn apply_one(&self, t: &mut TenantStats) {
        {
            let Some(o) = self.by_uuid.get(&t.id.uuid) else {
                return;
            };
            if let Some(c) = o.class {
                t.policy.class = c;
            }
            for r in Resource::ALL {
                let (lo, hi) = if o.freeze && o.frozen.get(r).is_some() {
                    (*o.frozen.get(r), *o.frozen.get(r))
                } else {
                    (*o.min.get(r), *o.max.get(r))
                };
                if let Some(lo) = lo {
                    *t.policy.guarantee.get_mut(r) = Some(lo);
                }
                if let Some(hi) = hi {
                    *t.policy.limit.get_mut(r) = Some(hi);
                    // A declared guarantee above the override's maximum yields to it.
                    if t.policy.guarantee.get(r).is_some_and(|g| g > hi) {
                        *t.policy.guarantee.get_mut(r) = Some(hi);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PerResource, TenantId};
    use crate::plan::TenantAllocation;

    fn ov(uuid: &str) -> Override {
        let id = TenantId {
            uuid: uuid.into(),
            name: uuid.into(),
        };
        Override::of(&id, "root (uid 0)".into(), 0)
    }

    fn obs() -> Observation {
        let mut t = TenantStats {
            id: TenantId {
                uuid: "u1".into(),
                name: "t1".into(),
            },
            ..Default::default()
        };
        t.policy.guarantee.mem = Some(1000.0);
        Observation {
            tenants: vec![t],
            ..Default::default()
        }
    }

    #[test]
    fn bad_overrides_are_refused_with_the_field_named() {
        assert_eq!(ov("u1").validate(), Err(OverrideError::Empty));
        let mut o = ov("u1");
        o.min.cpu = Some(-1.0);
        assert!(o.validate().unwrap_err().to_string().contains("min.cpu"));
        let mut o = ov("u1");
        o.min.cpu = Some(3.0);
        o.max.cpu = Some(2.0);
        assert!(matches!(
            o.validate(),
            Err(OverrideError::MinAboveMax { .. })
        ));
        let mut o = ov("u1");
        o.max.net = Some(f64::NAN);
        assert!(o.validate().is_err());
    }

    #[test]
    fn apply_rewrites_class_and_bounds_and_a_maximum_wins_over_a_declared_guarantee() {
        let mut set = Overrides::default();
        let mut o = ov("u1");
        o.class = Some(Class::Gold);
        o.min.cpu = Some(2.0);
        o.max.mem = Some(500.0);
        set.set(o, None).unwrap();
        let mut obs = obs();
        set.apply(&mut obs);
        let p = &obs.tenants[0].policy;
        assert_eq!(p.class, Class::Gold);
        assert_eq!(p.guarantee.cpu, Some(2.0));
        assert_eq!(p.limit.mem, Some(500.0));
        assert_eq!(p.guarantee.mem, Some(500.0));
    }

    #[test]
    fn a_freeze_holds_the_amounts_in_force_when_it_was_set() {
        let last = Allocation {
            tenants: vec![TenantAllocation {
                uuid: "u1".into(),
                amounts: PerResource {
                    cpu: 1.5,
                    mem: 2048.0,
                    disk: 0.0,
                    net: 7.0,
                },
                reasons: None,
            }],
        };
        let mut set = Overrides::default();
        let mut o = ov("u1");
        o.freeze = true;
        set.set(o, Some(&last)).unwrap();
        let mut obs = obs();
        set.apply(&mut obs);
        let p = &obs.tenants[0].policy;
        assert_eq!((p.guarantee.cpu, p.limit.cpu), (Some(1.5), Some(1.5)));
        assert_eq!((p.guarantee.net, p.limit.net), (Some(7.0), Some(7.0)));
    }

    #[test]
    fn a_minimum_the_domain_or_the_host_cannot_honour_is_refused() {
        let mut obs = crate::allocate::tests::host_of(4.0, &[Class::Gold; 7]);
        for t in &mut obs.tenants {
            t.vcpus = 2;
            t.size_is_limit = true;
        }
        let rules = Rules::default();
        let mut set = Overrides::default();
        let min = |uuid: &str, cpu: f64| {
            let mut o = ov(uuid);
            o.min.cpu = Some(cpu);
            o
        };
        // More than its 2 vCPUs can use.
        let e = set.check_fits(&min("u0", 20.0), &obs, &rules).unwrap_err();
        assert!(matches!(e, OverrideError::BeyondSize { .. }), "{e}");
        assert!(e.to_string().contains("vCPUs"), "{e}");
        // Two minimums of 2 fill the 4 CPUs; a third is refused, naming the sums.
        for u in ["u0", "u1"] {
            set.check_fits(&min(u, 2.0), &obs, &rules).unwrap();
            set.set(min(u, 2.0), None).unwrap();
        }
        let e = set.check_fits(&min("u2", 2.0), &obs, &rules).unwrap_err();
        assert!(matches!(e, OverrideError::BeyondCapacity { .. }), "{e}");
        assert!(
            e.to_string().contains("6.00 cores") && e.to_string().contains("4.00 cores"),
            "{e}"
        );
        // Replacing a tenant's own minimum counts it once.
        set.check_fits(&min("u1", 1.5), &obs, &rules).unwrap();
        // A class whose reservation does not fit beside them is refused as well.
        let rules =
            Rules::parse("[classes.silver]\nreservation = { cpu_cores = 1 }\n", "p").unwrap();
        let mut silver = ov("u3");
        silver.class = Some(Class::Silver);
        let e = set.check_fits(&silver, &obs, &rules).unwrap_err();
        assert!(e.to_string().contains("reservation of 1.00 cores"), "{e}");
    }

    #[test]
    fn expired_overrides_are_dropped() {
        let mut set = Overrides::default();
        let mut o = ov("u1");
        o.class = Some(Class::Bronze);
        o.expires_ms = Some(1000);
        set.set(o, None).unwrap();
        assert!(set.expire(999).is_empty());
        assert_eq!(set.expire(1000).len(), 1);
        assert!(set.is_empty());
    }
}
