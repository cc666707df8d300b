//! The libvirt backend: one bulk `virConnectGetAllDomainStats` per cycle, domain XML cached
//! per domain and refreshed on lifecycle/metadata events (with periodic polling as the
//! fallback), and reconnection when libvirtd restarts.

pub mod domxml;
pub mod ffi;
pub mod stats;

use super::{Backend, BackendError, DomainConfig, DomainSnapshot, Snapshot};
use crate::model::{HostInfo, PerResource, TenantId, TenantPolicy};
use ffi::Conn;
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
    cycle: u64,
    epoch: Instant,
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
            cycle: 0,
            epoch: Instant::now(),
        };
        b.ensure_connected()?;
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

    fn apply(&mut self, _allocation: &crate::model::Allocation) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: self.describe(),
            why: "actuation through libvirt (quota, balloon, iotune, vNIC rates) is not built \
                  yet; run the daemon without an allocation policy"
                .into(),
        })
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
            domains.push(DomainSnapshot {
                id: TenantId {
                    uuid: r.uuid.into(),
                    name: r.name.into(),
                },
                config,
                counters: stats::parse(&r.params),
                capped: PerResource::default(),
            });
        }
        self.configs
            .retain(|uuid, _| domains.iter().any(|d| *d.id.uuid == **uuid));
        Ok(Snapshot {
            at_unix_ms,
            mono_ns,
            host,
            domains,
        })
    }
}
