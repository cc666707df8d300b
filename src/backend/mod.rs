//! The host backend seam: the only place that knows what drives the host.
//!
//! A backend answers one question per cycle: what do the tenants' counters read now
//! ([`Backend::snapshot`], one bulk call). Everything above it (collect, profile, …) speaks in
//! tenants and resources, so the pipeline runs unchanged on a real libvirt host or on a
//! replayed trace. [`Backend::apply`] makes a plan's changes for the coming interval: the
//! trace backend enforces the amounts as hard caps; libvirt sets vCPU bandwidth, balloon
//! targets and disk throttles on the domains.

pub mod libvirt;
pub mod trace;

use crate::model::{HostInfo, PerResource, TenantId, TenantPolicy};
use crate::plan::{Applied, Plan, Setting};
use serde::Serialize;
use std::sync::Arc;

/// Everything one cycle observed, as raw counters and gauges.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Wall-clock time of the bulk call, Unix milliseconds (what the profile stores).
    pub at_unix_ms: i64,
    /// Monotonic time of the bulk call, nanoseconds (what rates are derived from).
    pub mono_ns: u64,
    pub host: HostInfo,
    pub domains: Vec<DomainSnapshot>,
}

/// One running domain: who it is, how it is configured and what its counters read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainSnapshot {
    pub id: TenantId,
    pub config: DomainConfig,
    pub counters: DomainCounters,
    /// Whether the tenant ran into its cap during the last interval, where the backend
    /// knows it directly; None lets collect infer it from delay, swap-in and drops.
    pub capped: PerResource<Option<bool>>,
    /// The domain's current settings (CPU bandwidth, balloon target, disk throttles) where
    /// the backend reads them; empty otherwise.
    pub settings: Vec<Setting>,
}

/// What the domain definition says (libvirt: the domain XML).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DomainConfig {
    pub vcpus: u32,
    pub max_memory_kib: u64,
    /// The domain can never use more than its vCPUs and maximum memory: the host enforces
    /// them (libvirt). False in a trace replay, whose recorded VMs at times used more than
    /// their provisioned size.
    pub size_is_limit: bool,
    pub disks: Vec<DiskConfig>,
    pub interfaces: Vec<InterfaceConfig>,
    pub policy: TenantPolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiskConfig {
    /// Guest-side target, e.g. `vda`.
    pub target: String,
    /// Host-side source (file or device), if any.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InterfaceConfig {
    pub mac: Option<String>,
    /// Host-side device (tap), e.g. `vnet3`; only known while the domain runs.
    pub target: Option<String>,
}

/// Cumulative counters and gauges of one domain. `None` means "not reported by the source".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DomainCounters {
    pub cpu_time_ns: Option<u64>,
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    pub vcpus: Vec<VcpuCounters>,
    pub balloon: BalloonStats,
    pub disks: Vec<DiskCounters>,
    pub nics: Vec<NicCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VcpuCounters {
    pub time_ns: Option<u64>,
    /// Time the vCPU was runnable but not running (steal, throttling).
    pub delay_ns: Option<u64>,
    pub wait_ns: Option<u64>,
}

/// Balloon gauges (KiB) and cumulative swap/fault counters, as the guest's balloon driver
/// reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BalloonStats {
    pub current_kib: Option<u64>,
    pub maximum_kib: Option<u64>,
    pub unused_kib: Option<u64>,
    pub available_kib: Option<u64>,
    pub usable_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    pub disk_caches_kib: Option<u64>,
    pub swap_in_kib: Option<u64>,
    pub swap_out_kib: Option<u64>,
    pub major_faults: Option<u64>,
    pub minor_faults: Option<u64>,
    /// Guest time (s) of the last balloon stats update.
    pub last_update: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiskCounters {
    pub name: Arc<str>,
    pub rd_reqs: Option<u64>,
    pub rd_bytes: Option<u64>,
    pub rd_times_ns: Option<u64>,
    pub wr_reqs: Option<u64>,
    pub wr_bytes: Option<u64>,
    pub wr_times_ns: Option<u64>,
    pub fl_reqs: Option<u64>,
    pub fl_times_ns: Option<u64>,
    pub capacity_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NicCounters {
    pub name: Arc<str>,
    pub rx_bytes: Option<u64>,
    pub rx_pkts: Option<u64>,
    pub rx_errs: Option<u64>,
    pub rx_drop: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_pkts: Option<u64>,
    pub tx_errs: Option<u64>,
    pub tx_drop: Option<u64>,
}

/// Errors of a backend, written for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "cannot connect to libvirt at {uri}: {message} (is libvirtd running, and may this user use its socket?)"
    )]
    Connect { uri: String, message: String },
    #[error("{backend} cannot apply allocations: {why}")]
    Unsupported { backend: String, why: String },
    #[error("{backend}: {message}")]
    Rejected { backend: String, message: String },
    #[error("libvirt call {call} failed on {uri}: {message}")]
    Call {
        uri: String,
        call: &'static str,
        message: String,
    },
}

/// A source of per-cycle snapshots of the host's tenants.
pub trait Backend: Send {
    /// A short description for logs, e.g. `libvirt qemu:///system`.
    fn describe(&self) -> String;

    /// Host capacity: CPUs, clock and memory.
    fn host(&mut self) -> Result<HostInfo, BackendError>;

    /// One bulk read of every running tenant's counters, with the host's state.
    fn snapshot(&mut self) -> Result<Snapshot, BackendError>;

    /// Which resources this backend can enforce (a plan's changes of the others are not
    /// made).
    fn shapes(&self) -> PerResource<bool>;

    /// Seconds from `apply` until a raised setting of each resource is in force (its
    /// setter's latency, as this backend knows it); the policy decides that much ahead.
    fn latency(&self) -> PerResource<f64>;

    /// Now, on the clock this backend stamps its snapshots with ([`Snapshot::mono_ns`]), so
    /// that the loop can measure how long its decisions stay in force; None: the backend
    /// cannot tell, and the planned interval is taken as that time.
    fn clock_ns(&self) -> Option<u64> {
        None
    }

    /// Make the plan's changes for the coming interval and say, per change, what was
    /// accepted and what refused. Only a failure of the backend itself (lost connection,
    /// ended replay) is an error; a refused setting is a [`crate::plan::Denial`].
    fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError>;
}
