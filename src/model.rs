//! The vocabulary every stage speaks: tenants, resources, classes and what a cycle observed.
//!
//! Units are part of the names: `_kib`, `_bytes_per_s`, `_cores`. Nothing in here knows
//! libvirt exists.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The step of everything that counts in 5-minute buckets: the traces' interval, the
/// forecasters' step and the profile's history buckets (seconds).
pub const STEP_S: i64 = 300;

/// `n` and the noun, singular for one: "1 tenant", "2 tenants".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The time now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The four resources prescient manages for each tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU, in cores (1.0 = one host core busy for the whole interval).
    Cpu,
    /// Memory the guest uses, in KiB.
    Mem,
    /// Disk throughput (read + write), in bytes/s.
    Disk,
    /// Network throughput (rx + tx), in bytes/s.
    Net,
}

impl Resource {
    pub const ALL: [Resource; 4] = [Resource::Cpu, Resource::Mem, Resource::Disk, Resource::Net];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Mem => "mem",
            Resource::Disk => "disk",
            Resource::Net => "net",
        }
    }

    /// A rate (CPU time, disk and network throughput): what one tenant leaves unused in an
    /// instant is the others' at once. Memory is a stock: what a guest was given stays with
    /// it until it is taken back.
    pub fn is_rate(self) -> bool {
        self != Resource::Mem
    }

    /// The unit the resource is measured in throughout the pipeline.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "cores",
            Resource::Mem => "KiB",
            Resource::Disk | Resource::Net => "bytes/s",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A small fixed array indexed by [`Resource`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PerResource<T> {
    pub cpu: T,
    pub mem: T,
    pub disk: T,
    pub net: T,
}

impl<T> PerResource<T> {
    pub fn get(&self, r: Resource) -> &T {
        match r {
            Resource::Cpu => &self.cpu,
            Resource::Mem => &self.mem,
            Resource::Disk => &self.disk,
            Resource::Net => &self.net,
        }
    }

    pub fn get_mut(&mut self, r: Resource) -> &mut T {
        match r {
            Resource::Cpu => &mut self.cpu,
            Resource::Mem => &mut self.mem,
            Resource::Disk => &mut self.disk,
            Resource::Net => &mut self.net,
        }
    }

    /// Each value through `f`.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerResource<U> {
        PerResource {
            cpu: f(self.cpu),
            mem: f(self.mem),
            disk: f(self.disk),
            net: f(self.net),
        }
    }
}

/// A tenant's priority class. The three defaults carry DRS's share ratio 4 : 2 : 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Gold,
    #[default]
    Silver,
    Bronze,
}

impl Class {
    pub fn weight(self) -> f64 {
        match self {
            Class::Gold => 4.0,
            Class::Silver => 2.0,
            Class::Bronze => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Gold => "gold",
            Class::Silver => "silver",
            Class::Bronze => "bronze",
        }
    }
}

impl std::str::FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gold" => Ok(Class::Gold),
            "silver" => Ok(Class::Silver),
            "bronze" => Ok(Class::Bronze),
            other => Err(format!(
                "unknown class {other:?} (expected gold, silver or bronze)"
            )),
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tenant: a domain's UUID (stable across restarts) and its name (for people).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId {
    pub uuid: Arc<str>,
    pub name: Arc<str>,
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.uuid)
    }
}

/// Optional amounts per resource, in the pipeline's units (see [`Resource::unit`]).
pub type Amounts = PerResource<Option<f64>>;

/// What the operator declared about a tenant (from `<prescient:tenant>` in the domain metadata).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TenantPolicy {
    pub class: Class,
    /// Amounts the tenant is always given, whatever the forecast.
    pub guarantee: Amounts,
    /// Amounts the tenant is never given more than.
    pub limit: Amounts,
    /// Why the declared policy could not be used, if it could not (the tenant then runs with
    /// the defaults and stays monitored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_error: Option<String>,
}

/// Host capacity, from node info and node memory stats.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub cpus: u32,
    pub cpu_mhz: u32,
    pub memory_kib: u64,
    /// Free memory as the kernel reports it now; None when the driver cannot tell.
    pub memory_free_kib: Option<u64>,
    pub memory_cached_kib: Option<u64>,
    pub memory_buffers_kib: Option<u64>,
    /// What the tenants may be given in all, per resource, in the pipeline's units; None
    /// where the backend cannot tell (libvirt knows no disk or network capacity).
    pub capacity: PerResource<Option<f64>>,
}
