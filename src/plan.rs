//! The plan vocabulary every stage speaks: what allocate decides ([`Allocation`], amounts in
//! the pipeline's units), what actuate turns it into ([`Plan`], concrete settings per domain)
//! and what a backend reports back ([`Applied`], with a [`Denial`] for every refusal). Here so
//! that allocate, actuate, the backends and the profile import it and not each other.

use crate::model::{PerResource, Resource, TenantId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which constraint decided a tenant's allocation of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// Its own quantile 1 − c/v: nothing bound.
    #[default]
    None,
    /// Held up at its reservation.
    Reservation,
    /// Held up above its reservation by the policy itself: the floor it keeps every tenant
    /// at (a share of its static share), or a probe above a capped interval's amount.
    Floor,
    /// Held down at its limit.
    Limit,
    /// Held down at the most the domain can use (its vCPUs, its maximum memory): more would
    /// be allocated and never used.
    Size,
    /// Held down by the shared capacity (λ > 0), squeezed below its reservation, or held
    /// to its static share of a host that cannot give every domain its size.
    Capacity,
}

/// What a policy started from for a tenant's amount of one resource, before its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The forecast of the coming interval.
    Forecast,
    /// No forecast (yet): the last usage with a margin, as `reactive` would ask.
    Usage,
    /// Nothing known of the tenant yet: its static share of the host (class weight × size).
    Share,
    /// The baseline policy's own rule on the usage it observed.
    Rule,
}

/// Why a tenant got its amount of one resource, from a policy that solves for it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Reason {
    /// The forecast of the coming interval the policy used (None: there was none, and the
    /// last usage stood in for it).
    pub forecast_p50: Option<f64>,
    pub forecast_p95: Option<f64>,
    pub binding: Binding,
    /// The resource's shadow price λ (0: capacity was ample).
    pub lambda: f64,
    /// The tenant's learned sensitivity (1: as its class says).
    pub sensitivity: f64,
    /// What the amount was computed from (None: not recorded, in older profiles).
    #[serde(default)]
    pub basis: Option<Basis>,
}

/// One tenant's amounts for the coming interval, in the pipeline's units (cores, KiB,
/// bytes/s, bytes/s), and why, when the policy can tell.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantAllocation {
    pub uuid: Arc<str>,
    pub amounts: PerResource<f64>,
    pub reasons: Option<PerResource<Reason>>,
}

/// Allocations for the tenants of one observation: what allocate decides and a backend
/// applies (here so that neither stage imports the other).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    pub tenants: Vec<TenantAllocation>,
}

/// One concrete setting of a domain, in the hypervisor's units. A backend reads the current
/// ones into its snapshot and applies the wanted ones from a [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "setting", rename_all = "snake_case")]
pub enum Setting {
    /// CFS bandwidth of each vCPU (quota < 0: unlimited) and the domain's CPU weight.
    Cpu {
        vcpu_period_us: u64,
        vcpu_quota_us: i64,
        cpu_shares: u64,
    },
    /// The balloon's target: the memory the guest may use.
    Balloon { target_kib: u64 },
    /// The I/O throttle of one disk (0: unlimited).
    DiskIoTune {
        disk: String,
        total_bytes_sec: u64,
        total_iops_sec: u64,
    },
    /// The bandwidth of one vNIC (its host-side tap), each way (0: unlimited).
    NicRate { tap: String, bytes_per_s: u64 },
    /// The host CPUs each vCPU (by index) and the emulator threads may run on.
    Pin {
        vcpu_cpus: Vec<Vec<u32>>,
        emulator_cpus: Vec<u32>,
    },
}

impl Setting {
    /// The resource this setting shapes.
    pub fn resource(&self) -> Resource {
        match self {
            Setting::Cpu { .. } | Setting::Pin { .. } => Resource::Cpu,
            Setting::Balloon { .. } => Resource::Mem,
            Setting::DiskIoTune { .. } => Resource::Disk,
            Setting::NicRate { .. } => Resource::Net,
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Cpu {
                vcpu_period_us,
                vcpu_quota_us,
                cpu_shares,
            } => write!(
                f,
                "vcpu_quota={vcpu_quota_us} vcpu_period={vcpu_period_us} cpu_shares={cpu_shares}"
            ),
            Setting::Balloon { target_kib } => write!(f, "balloon target {target_kib} KiB"),
            Setting::DiskIoTune {
                disk,
                total_bytes_sec,
                total_iops_sec,
            } => write!(
                f,
                "{disk} total_bytes_sec={total_bytes_sec} total_iops_sec={total_iops_sec}"
            ),
            Setting::NicRate { tap, bytes_per_s } => {
                write!(f, "{tap} {bytes_per_s} bytes/s each way")
            }
            Setting::Pin {
                vcpu_cpus,
                emulator_cpus,
            } => {
                let list = |c: &[u32]| {
                    let v: Vec<String> = c.iter().map(u32::to_string).collect();
                    v.join(",")
                };
                let vcpus: Vec<String> = (vcpu_cpus.iter().enumerate())
                    .map(|(i, c)| format!("vcpu{i}→{}", list(c)))
                    .collect();
                write!(
                    f,
                    "pin {} emulator→{}",
                    vcpus.join(" "),
                    list(emulator_cpus)
                )
            }
        }
    }
}

/// A domain's settings, by its UUID.
pub type DomainSettings = (Arc<str>, Vec<Setting>);

/// A new amount of one resource for one tenant and the settings that give it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub resource: Resource,
    /// The amount, in the pipeline's units; a backend without settings (the trace replay)
    /// enforces this directly.
    pub amount: f64,
    /// The amount in force before, when known.
    pub previous: Option<f64>,
    /// The settings that realise `amount` on this domain (empty where the backend has no
    /// setter for the resource).
    pub settings: Vec<Setting>,
}

/// What changes on one domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainPlan {
    pub id: TenantId,
    pub changes: Vec<Change>,
}

/// What to change on the host this cycle: only what moved past the hysteresis. An empty plan
/// ("no change") is a valid plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub domains: Vec<DomainPlan>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.domains.iter().all(|d| d.changes.is_empty())
    }

    /// The number of changes in the plan.
    pub fn len(&self) -> usize {
        self.domains.iter().map(|d| d.changes.len()).sum()
    }
}

/// A change the backend refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    pub tenant: TenantId,
    pub resource: Resource,
    /// The amount wanted, in the pipeline's units.
    pub wanted: f64,
    /// The amount still in force, when known.
    pub got: Option<f64>,
    /// The setting that was refused.
    pub setting: Option<Setting>,
    /// The hypervisor's own error code (libvirt's virErrorNumber), when it has one.
    pub code: Option<i32>,
    pub message: String,
}

/// What a backend made of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Applied {
    /// Changes now in force: tenant UUID, resource and amount.
    pub accepted: Vec<(Arc<str>, Resource, f64)>,
    pub denials: Vec<Denial>,
}
