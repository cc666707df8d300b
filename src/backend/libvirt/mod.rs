//! The libvirt backend: one bulk `virConnectGetAllDomainStats` per cycle, domain XML cached
//! per domain and refreshed on lifecycle/metadata events (with periodic polling as the
//! fallback), and reconnection when libvirtd restarts.

pub mod domxml;
pub mod ffi;
pub mod stats;
pub mod tc;

use super::{Backend, BackendError, DomainConfig, DomainSnapshot, Snapshot};
use crate::model::{HostInfo, PerResource, Resource, TenantId, TenantPolicy};
use crate::plan::{Applied, Denial, Plan, Setting};
use ffi::Conn;
use ffi::Param;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Re-read every domain's XML at least this often (cycles), in case an event was missed.
const XML_REFRESH_CYCLES: u64 = 30;

pub struct LibvirtBackend {
    uri: String,
    conn: Option<Conn>,
    events: Arc<AtomicU64>,
    events_seen: u64,
    configs: HashMap<String, (DomainConfig, u64)>,
    /// CPU bandwidth and disk throttles as last read (with the configuration).
    settings: HashMap<String, Vec<Setting>>,
    /// vNICs are shaped with `tc` on their taps (it can be run here).
    tc: bool,
    /// The taps shaped, per domain UUID (their ifb devices go when the domain does).
    shaped: HashMap<String, Vec<String>>,
    /// How long the setters take, measured on every call.
    latency: Latency,
    cycle: u64,
    epoch: Instant,
}

/// Seconds a balloon takes to give a guest back 1 GiB (measured under TCG: 512 → 1024 MiB in
/// 0.5 s); a memory rise is in force that long after its call.
const BALLOON_DEFLATE_S_PER_GIB: f64 = 1.0;
/// Memory amounts are in KiB.
const KIB_PER_GIB: f64 = 1024.0 * 1024.0;

/// The setters' latency per resource: a moving average of the measured calls, weighted to
/// the slow ones (a slow call counts at once, a fast one pulls the average down slowly).
#[derive(Debug, Default)]
struct Latency {
    seconds: PerResource<f64>,
}

impl Latency {
    fn record(&mut self, r: Resource, took: f64) {
        let s = self.seconds.get_mut(r);
        *s = if took > *s {
            took
        } else {
            0.9 * *s + 0.1 * took
        };
    }
}

impl LibvirtBackend {
    /// Connect to `uri` (e.g. `qemu:///system`). Fails with a clear error if libvirtd is not
    /// reachable; later disconnections are healed by reconnecting at the next cycle.
    pub fn connect(uri: &str) -> Result<Self, BackendError> {
        ffi::quiet_errors();
        if let Err(e) = ffi::start_event_loop() {
            tracing::warn!("libvirt events unavailable ({e}); domain changes found by polling");
        }
        let mut b = LibvirtBackend {
            uri: uri.to_string(),
            conn: None,
            events: Arc::new(AtomicU64::new(0)),
            events_seen: 0,
            configs: HashMap::new(),
            settings: HashMap::new(),
            tc: tc::available(),
            shaped: HashMap::new(),
            latency: Latency::default(),
            cycle: 0,
            epoch: Instant::now(),
        };
        b.ensure_connected()?;
        if b.tc {
            tracing::info!(
                "vNIC bandwidth is shaped with tc on each domain's tap (htb for the guest's \
                 inbound, ifb + tbf for its outbound), not with libvirt's vNIC QoS"
            );
        } else {
            tracing::warn!("tc cannot be run here: vNIC bandwidth is not shaped");
        }
        Ok(b)
    }

    fn err(&self, call: &'static str, message: String) -> BackendError {
        BackendError::Call {
            uri: self.uri.clone(),
            call,
            message,
        }
    }

    fn ensure_connected(&mut self) -> Result<&Conn, BackendError> {
        if self.conn.as_ref().is_some_and(|c| !c.is_alive()) {
            tracing::warn!(uri = %self.uri, "lost the connection to libvirtd; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut conn = Conn::open(&self.uri).map_err(|message| BackendError::Connect {
                uri: self.uri.clone(),
                message,
            })?;
            if let Err(e) = conn.watch_domains(&self.events) {
                tracing::debug!("domain events not registered ({e}); polling only");
            }
            // Everything we cached may be stale after a reconnect.
            self.configs.clear();
            tracing::info!(uri = %self.uri, "connected to libvirt");
            self.conn = Some(conn);
        }
        Ok(self.conn.as_ref().expect("connection set above"))
    }

    fn domain_config(&mut self, uuid: &str, name: &str) -> DomainConfig {
        let fresh = self
            .configs
            .get(uuid)
            .is_some_and(|(_, at)| self.cycle - at < XML_REFRESH_CYCLES);
        if fresh {
            return self.configs[uuid].0.clone();
        }
        let xml = match self.conn.as_ref().map(|c| c.domain_xml(uuid)) {
            Some(Ok(xml)) => xml,
            Some(Err(e)) => {
                // Keep what we knew; the domain probably vanished and the next cycle says so.
                tracing::debug!(domain = name, "cannot read domain XML: {e}");
                return self
                    .configs
                    .get(uuid)
                    .map(|(c, _)| c.clone())
                    .unwrap_or_default();
            }
            None => return DomainConfig::default(),
        };
        let config = match domxml::parse(&xml) {
            Ok(c) => c,
            Err(e) => DomainConfig {
                size_is_limit: true,
                policy: TenantPolicy {
                    metadata_error: Some(e.to_string()),
                    ..TenantPolicy::default()
                },
                ..DomainConfig::default()
            },
        };
        if let Some(err) = &config.policy.metadata_error {
            let changed = self
                .configs
                .get(uuid)
                .is_none_or(|(c, _)| c.policy.metadata_error.as_ref() != Some(err));
            if changed {
                tracing::warn!(
                    domain = name,
                    "ignoring its <prescient:tenant> metadata, monitoring with defaults: {err}"
                );
            }
        }
        if let Some(conn) = self.conn.as_ref() {
            self.settings
                .insert(uuid.to_string(), read_settings(conn, uuid, &config));
        }
        self.configs
            .insert(uuid.to_string(), (config.clone(), self.cycle));
        config
    }
}

impl Backend for LibvirtBackend {
    fn describe(&self) -> String {
        format!("libvirt {}", self.uri)
    }

    fn host(&mut self) -> Result<HostInfo, BackendError> {
        let conn = self.ensure_connected()?;
        let info = conn.node_info();
        let hostname = conn.hostname().unwrap_or_default();
        let mem = conn.node_memory_stats().unwrap_or_default();
        let info = info.map_err(|e| self.err("virNodeGetInfo", e))?;
        let find = |k: &str| mem.iter().find(|(f, _)| f == k).map(|(_, v)| *v);
        Ok(HostInfo {
            hostname,
            cpus: info.cpus,
            cpu_mhz: info.mhz,
            memory_kib: find("total").unwrap_or(info.memory_kib),
            memory_free_kib: find("free"),
            memory_cached_kib: find("cached"),
            memory_buffers_kib: find("buffers"),
            capacity: PerResource {
                cpu: Some(info.cpus as f64),
                mem: Some(find("total").unwrap_or(info.memory_kib) as f64),
                disk: None,
                net: None,
            },
        })
    }

    /// vCPU bandwidth and shares, balloon targets, disk throttles and, where `tc` runs,
    /// vNIC bandwidth.
    fn latency(&self) -> PerResource<f64> {
        self.latency.seconds
    }

    fn clock_ns(&self) -> Option<u64> {
        Some(self.epoch.elapsed().as_nanos() as u64)
    }

    fn shapes(&self) -> PerResource<bool> {
        PerResource {
            cpu: true,
            mem: true,
            disk: true,
            net: self.tc,
        }
    }

    fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
        if plan.is_empty() {
            return Ok(Applied::default());
        }
        let mut shaped = std::mem::take(&mut self.shaped);
        let mut latency = std::mem::take(&mut self.latency);
        let result = self
            .ensure_connected()
            .map(|conn| apply_plan(conn, plan, &mut shaped, &mut latency));
        self.shaped = shaped;
        self.latency = latency;
        result?.map_err(|message| self.err("virDomainSet*", message))
    }

    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        self.cycle += 1;
        let generation = self.events.load(Ordering::Relaxed);
        if generation != self.events_seen {
            // Something was defined, started, stopped or had its metadata changed.
            self.events_seen = generation;
            self.configs.clear();
        }
        let raw = match self.ensure_connected()?.all_domain_stats() {
            Ok(raw) => raw,
            Err(first) => {
                // A libvirtd restart shows up here first: reconnect once and retry.
                self.conn = None;
                self.ensure_connected()?.all_domain_stats().map_err(|e| {
                    self.err(
                        "virConnectGetAllDomainStats",
                        format!("{first}; after reconnecting: {e}"),
                    )
                })?
            }
        };
        let mono_ns = self.epoch.elapsed().as_nanos() as u64;
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let host = self.host()?;
        let mut domains = Vec::with_capacity(raw.len());
        for r in raw {
            let config = self.domain_config(&r.uuid, &r.name);
            let counters = stats::parse(&r.params);
            let mut settings = self.settings.get(&r.uuid).cloned().unwrap_or_default();
            if let Some(kib) = counters.balloon.current_kib {
                settings.push(Setting::Balloon { target_kib: kib });
            }
            domains.push(DomainSnapshot {
                id: TenantId {
                    uuid: r.uuid.into(),
                    name: r.name.into(),
                },
                config,
                counters,
                capped: PerResource::default(),
                settings,
            });
        }
        self.configs
            .retain(|uuid, _| domains.iter().any(|d| *d.id.uuid == **uuid));
        self.settings
            .retain(|uuid, _| domains.iter().any(|d| *d.id.uuid == **uuid));
        self.shaped.retain(|uuid, taps| {
            let here = domains.iter().any(|d| *d.id.uuid == **uuid);
            if !here {
                taps.iter().for_each(|t| tc::forget(t));
            }
            here
        });
        Ok(Snapshot {
            at_unix_ms,
            mono_ns,
            host,
            domains,
        })
    }
}

/// The domain's CPU bandwidth, vCPU pinning and disk throttles (what a getter cannot read is
/// left out).
fn read_settings(conn: &Conn, uuid: &str, config: &DomainConfig) -> Vec<Setting> {
    let mut out = Vec::new();
    let uint = |params: &[(String, Param)], name: &str| {
        params
            .iter()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| match v {
                Param::UInt(u) => Some(*u),
                Param::Int(i) => u64::try_from(*i).ok(),
                _ => None,
            })
    };
    match conn.scheduler_params(uuid) {
        Ok(p) => {
            let quota = p
                .iter()
                .find(|(f, _)| f == "vcpu_quota")
                .and_then(|(_, v)| match v {
                    Param::Int(i) => Some(*i),
                    Param::UInt(u) => i64::try_from(*u).ok(),
                    _ => None,
                });
            if let (Some(period), Some(quota), Some(shares)) =
                (uint(&p, "vcpu_period"), quota, uint(&p, "cpu_shares"))
            {
                // cgroup v2 reports "max" (no quota) as a huge number.
                let quota = if quota <= 0 || quota as u64 >= u64::MAX / 2 {
                    -1
                } else {
                    quota
                };
                out.push(Setting::Cpu {
                    vcpu_period_us: period,
                    vcpu_quota_us: quota,
                    cpu_shares: shares,
                });
            }
        }
        Err(e) => tracing::debug!(uuid, "cannot read scheduler parameters: {e}"),
    }
    for disk in &config.disks {
        match conn.block_iotune(uuid, &disk.target) {
            Ok(p) => out.push(Setting::DiskIoTune {
                disk: disk.target.clone(),
                total_bytes_sec: uint(&p, "total_bytes_sec").unwrap_or(0),
                total_iops_sec: uint(&p, "total_iops_sec").unwrap_or(0),
            }),
            Err(e) => {
                tracing::debug!(uuid, disk = %disk.target, "cannot read the disk throttle: {e}")
            }
        }
    }
    let cpus = conn.node_info().map(|n| n.cpus).unwrap_or(0);
    if cpus > 0 {
        match conn.pins(uuid, config.vcpus.max(1), cpus) {
            Ok((vcpu_cpus, emulator_cpus)) => out.push(Setting::Pin {
                vcpu_cpus,
                emulator_cpus,
            }),
            Err(e) => tracing::debug!(uuid, "cannot read the vCPU pinning: {e}"),
        }
    }
    // A tap without prescient's htb is unshaped; one with it has a rate we do not parse.
    for tap in config.interfaces.iter().filter_map(|i| i.target.as_deref()) {
        if tc::is_shaped(tap) == Some(false) {
            out.push(Setting::NicRate {
                tap: tap.to_string(),
                bytes_per_s: 0,
            });
        }
    }
    out
}

/// Make a plan's changes on `conn`, timing each setter; Err (the message) if the connection
/// died under them.
fn apply_plan(
    conn: &Conn,
    plan: &Plan,
    shaped: &mut HashMap<String, Vec<String>>,
    latency: &mut Latency,
) -> Result<Applied, String> {
    let mut applied = Applied::default();
    for d in &plan.domains {
        'change: for c in &d.changes {
            let mut refused = false;
            for setting in &c.settings {
                let uuid = &*d.id.uuid;
                let started = Instant::now();
                let result = match setting {
                    Setting::Cpu {
                        vcpu_period_us,
                        vcpu_quota_us,
                        cpu_shares,
                    } => conn.set_cpu(uuid, *vcpu_period_us, *vcpu_quota_us, *cpu_shares),
                    Setting::Balloon { target_kib } => conn.set_memory(uuid, *target_kib),
                    Setting::DiskIoTune {
                        disk,
                        total_bytes_sec,
                        total_iops_sec,
                    } => conn.set_block_iotune(uuid, disk, *total_bytes_sec, *total_iops_sec),
                    Setting::Pin {
                        vcpu_cpus,
                        emulator_cpus,
                    } => conn.set_pins(uuid, vcpu_cpus, emulator_cpus),
                    Setting::NicRate { tap, bytes_per_s } => {
                        let taps = shaped.entry(uuid.to_string()).or_default();
                        if !taps.contains(tap) {
                            taps.push(tap.clone());
                        }
                        tc::shape(tap, *bytes_per_s).map_err(|e| ffi::LibvirtError {
                            code: 0,
                            message: e.to_string(),
                        })
                    }
                };
                let mut took = started.elapsed().as_secs_f64();
                if let (Resource::Mem, Some(before)) = (c.resource, c.previous) {
                    // The call returns at once; the balloon then deflates at its pace.
                    took += (c.amount - before).max(0.0) / KIB_PER_GIB * BALLOON_DEFLATE_S_PER_GIB;
                }
                latency.record(c.resource, took);
                match result {
                    Ok(()) => {}
                    Err(e) if e.is_no_domain() => {
                        // Gone since the snapshot: the next cycle sees it vanished.
                        tracing::debug!(domain = ?d.id.name, "domain vanished before its change");
                        continue 'change;
                    }
                    Err(e) if e.code != 0 && !conn.is_alive() => return Err(e.message),
                    Err(e) => {
                        refused = true;
                        applied.denials.push(Denial {
                            tenant: d.id.clone(),
                            resource: c.resource,
                            wanted: c.amount,
                            got: c.previous,
                            setting: Some(setting.clone()),
                            code: (e.code != 0).then_some(e.code),
                            message: e.message,
                        });
                    }
                }
            }
            if !refused && !c.settings.is_empty() {
                applied
                    .accepted
                    .push((d.id.uuid.clone(), c.resource, c.amount));
            }
        }
    }
    Ok(applied)
}
