//! Collect: cumulative counters → per-interval rates and utilisations.
//!
//! Keeps the previous snapshot of each tenant. A tenant seen for the first time has gauges but
//! no rates yet; a counter that went backwards (the domain restarted, a device was replaced)
//! gives no rate for that interval rather than a huge or negative one; tenants that vanished
//! are reported once and forgotten.

use crate::backend::{DomainCounters, DomainSnapshot, Snapshot};
use crate::model::{HostInfo, PerResource, Resource, TenantId, TenantPolicy};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// One tenant's stats over the last interval.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TenantStats {
    pub id: TenantId,
    pub policy: TenantPolicy,
    pub vcpus: u32,
    pub max_memory_kib: u64,
    /// Usage can never exceed `vcpus` cores and `max_memory_kib` (see [`TenantStats::most`]).
    pub size_is_limit: bool,
    /// The four managed resources, in cores, KiB, bytes/s and bytes/s. `None` until two
    /// samples exist (rates) or when the guest does not report it.
    pub usage: PerResource<Option<f64>>,
    /// Whether the tenant ran into its cap in the interval: as the backend reports it, or
    /// else inferred (cpu: vCPU delay ≥ 10% of the interval; mem: any swap-in; net: drops;
    /// disk: not visible in libvirt's counters).
    pub capped: PerResource<bool>,
    pub cpu: CpuStats,
    pub mem: MemStats,
    pub disks: Vec<DiskRates>,
    pub nics: Vec<NicRates>,
    /// The domain's disks (guest-side targets, e.g. `vda`), from its definition.
    pub disk_targets: Vec<Arc<str>>,
    /// The domain's settings as the backend last read them (empty where it cannot).
    pub settings: Vec<crate::plan::Setting>,
}

impl TenantStats {
    /// The most of `r` the domain can use however much it is given, where the host
    /// enforces its size: its vCPUs (in cores) and its maximum memory. `None` where the size
    /// is no limit or unknown, and for disk and net, which have no such size.
    pub fn most(&self, r: Resource) -> Option<f64> {
        let v = match r {
            Resource::Cpu => f64::from(self.vcpus),
            Resource::Mem => self.max_memory_kib as f64,
            Resource::Disk | Resource::Net => return None,
        };
        (self.size_is_limit && v > 0.0).then_some(v)
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuStats {
    /// Host cores busy on behalf of the guest (cpu.time rate).
    pub cores: Option<f64>,
    pub user_cores: Option<f64>,
    pub system_cores: Option<f64>,
    /// `cores / vcpus`, 0 … 1.
    pub utilisation: Option<f64>,
    /// Per vCPU: share of the interval it was busy and share it waited to run (steal,
    /// throttling).
    pub vcpu_busy: Vec<Option<f64>>,
    pub vcpu_delay: Vec<Option<f64>>,
    /// Mean of `vcpu_delay`.
    pub delay_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemStats {
    pub balloon_current_kib: Option<u64>,
    pub balloon_maximum_kib: Option<u64>,
    pub unused_kib: Option<u64>,
    pub available_kib: Option<u64>,
    pub usable_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    pub disk_caches_kib: Option<u64>,
    /// Memory the guest uses: available − usable, else available − unused, else host rss.
    pub used_kib: Option<u64>,
    pub swap_in_kib_per_s: Option<f64>,
    pub swap_out_kib_per_s: Option<f64>,
    pub major_faults_per_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DiskRates {
    pub name: Arc<str>,
    pub rd_bytes_per_s: Option<f64>,
    pub wr_bytes_per_s: Option<f64>,
    pub rd_iops: Option<f64>,
    pub wr_iops: Option<f64>,
    /// Mean service time per request over the interval, ms.
    pub rd_ms_per_req: Option<f64>,
    pub wr_ms_per_req: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NicRates {
    pub name: Arc<str>,
    pub rx_bytes_per_s: Option<f64>,
    pub tx_bytes_per_s: Option<f64>,
    pub rx_pkts_per_s: Option<f64>,
    pub tx_pkts_per_s: Option<f64>,
    pub rx_drops_per_s: Option<f64>,
    pub tx_drops_per_s: Option<f64>,
}

/// What one cycle observed, in rates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observation {
    pub at_unix_ms: i64,
    pub host: HostInfo,
    pub tenants: Vec<TenantStats>,
    /// Tenants seen for the first time (or again after vanishing) in this cycle.
    pub appeared: Vec<TenantId>,
    /// Tenants seen in the previous cycle and gone now.
    pub vanished: Vec<TenantId>,
}

struct Previous {
    id: TenantId,
    mono_ns: u64,
    counters: DomainCounters,
    /// The cycle this tenant was last seen in.
    seen: u64,
}

/// Turns successive snapshots into observations.
#[derive(Default)]
pub struct Collector {
    prev: HashMap<Arc<str>, Previous>,
    cycle: u64,
}

/// Rate of a counter over `dt` seconds; None if either side is missing or it went backwards.
fn rate(prev: Option<u64>, cur: Option<u64>, dt: f64) -> Option<f64> {
    match (prev, cur) {
        (Some(p), Some(c)) if c >= p && dt > 0.0 => Some((c - p) as f64 / dt),
        _ => None,
    }
}

/// Mean time per request in ms, from time (ns) and request counters.
fn ms_per_req(
    p_t: Option<u64>,
    c_t: Option<u64>,
    p_n: Option<u64>,
    c_n: Option<u64>,
) -> Option<f64> {
    let dn = c_n?.checked_sub(p_n?)?;
    let dt = c_t?.checked_sub(p_t?)?;
    (dn > 0).then(|| dt as f64 / dn as f64 / 1e6)
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ingest(&mut self, snap: &Snapshot) -> Observation {
        self.cycle += 1;
        let mut tenants = Vec::with_capacity(snap.domains.len());
        let mut appeared = Vec::new();
        for d in &snap.domains {
            match self.prev.get_mut(&*d.id.uuid) {
                Some(p) => {
                    let dt = snap.mono_ns.saturating_sub(p.mono_ns) as f64 / 1e9;
                    tenants.push(derive(d, Some(&p.counters), dt));
                    p.mono_ns = snap.mono_ns;
                    p.counters.clone_from(&d.counters);
                    p.seen = self.cycle;
                    if p.id != d.id {
                        p.id = d.id.clone(); // renamed
                    }
                }
                None => {
                    appeared.push(d.id.clone());
                    tenants.push(derive(d, None, 0.0));
                    self.prev.insert(
                        Arc::clone(&d.id.uuid),
                        Previous {
                            id: d.id.clone(),
                            mono_ns: snap.mono_ns,
                            counters: d.counters.clone(),
                            seen: self.cycle,
                        },
                    );
                }
            }
        }
        let mut vanished = Vec::new();
        if self.prev.len() > snap.domains.len() {
            let cycle = self.cycle;
            self.prev.retain(|_, p| {
                if p.seen != cycle {
                    vanished.push(p.id.clone());
                }
                p.seen == cycle
            });
            vanished.sort();
        }
        Observation {
            at_unix_ms: snap.at_unix_ms,
            host: snap.host.clone(),
            tenants,
            appeared,
            vanished,
        }
    }
}

fn derive(d: &DomainSnapshot, prev: Option<&DomainCounters>, dt: f64) -> TenantStats {
    let c = &d.counters;
    let ns = |p: Option<u64>, q: Option<u64>| rate(p, q, dt).map(|r| r / 1e9);
    let empty = DomainCounters::default();
    let p = prev.unwrap_or(&empty);

    let cores = ns(p.cpu_time_ns, c.cpu_time_ns);
    let vcpus = if d.config.vcpus > 0 {
        d.config.vcpus
    } else {
        c.vcpus.len() as u32
    };
    let vcpu_busy: Vec<Option<f64>> = c
        .vcpus
        .iter()
        .enumerate()
        .map(|(i, v)| ns(p.vcpus.get(i).and_then(|q| q.time_ns), v.time_ns))
        .collect();
    let vcpu_delay: Vec<Option<f64>> = c
        .vcpus
        .iter()
        .enumerate()
        .map(|(i, v)| ns(p.vcpus.get(i).and_then(|q| q.delay_ns), v.delay_ns))
        .collect();
    let delay_ratio = vcpu_delay
        .iter()
        .copied()
        .sum::<Option<f64>>()
        .filter(|_| !vcpu_delay.is_empty())
        .map(|s| s / vcpu_delay.len() as f64);
    let cpu = CpuStats {
        cores,
        user_cores: ns(p.cpu_user_ns, c.cpu_user_ns),
        system_cores: ns(p.cpu_system_ns, c.cpu_system_ns),
        utilisation: cores.filter(|_| vcpus > 0).map(|x| x / vcpus as f64),
        vcpu_busy,
        vcpu_delay,
        delay_ratio,
    };

    let b = &c.balloon;
    let used_kib = match (b.available_kib, b.usable_kib, b.unused_kib) {
        (Some(a), Some(u), _) => Some(a.saturating_sub(u)),
        (Some(a), None, Some(u)) => Some(a.saturating_sub(u)),
        _ => b.rss_kib,
    };
    let mem = MemStats {
        balloon_current_kib: b.current_kib,
        balloon_maximum_kib: b.maximum_kib,
        unused_kib: b.unused_kib,
        available_kib: b.available_kib,
        usable_kib: b.usable_kib,
        rss_kib: b.rss_kib,
        disk_caches_kib: b.disk_caches_kib,
        used_kib,
        swap_in_kib_per_s: rate(p.balloon.swap_in_kib, b.swap_in_kib, dt),
        swap_out_kib_per_s: rate(p.balloon.swap_out_kib, b.swap_out_kib, dt),
        major_faults_per_s: rate(p.balloon.major_faults, b.major_faults, dt),
    };

    let disks: Vec<DiskRates> = c
        .disks
        .iter()
        .map(|k| {
            let q = p.disks.iter().find(|q| q.name == k.name);
            let pq = |f: fn(&crate::backend::DiskCounters) -> Option<u64>| q.and_then(f);
            DiskRates {
                name: k.name.clone(),
                rd_bytes_per_s: rate(pq(|q| q.rd_bytes), k.rd_bytes, dt),
                wr_bytes_per_s: rate(pq(|q| q.wr_bytes), k.wr_bytes, dt),
                rd_iops: rate(pq(|q| q.rd_reqs), k.rd_reqs, dt),
                wr_iops: rate(pq(|q| q.wr_reqs), k.wr_reqs, dt),
                rd_ms_per_req: ms_per_req(
                    pq(|q| q.rd_times_ns),
                    k.rd_times_ns,
                    pq(|q| q.rd_reqs),
                    k.rd_reqs,
                ),
                wr_ms_per_req: ms_per_req(
                    pq(|q| q.wr_times_ns),
                    k.wr_times_ns,
                    pq(|q| q.wr_reqs),
                    k.wr_reqs,
                ),
            }
        })
        .collect();
    let nics: Vec<NicRates> = c
        .nics
        .iter()
        .map(|k| {
            let q = p.nics.iter().find(|q| q.name == k.name);
            let pq = |f: fn(&crate::backend::NicCounters) -> Option<u64>| q.and_then(f);
            NicRates {
                name: k.name.clone(),
                rx_bytes_per_s: rate(pq(|q| q.rx_bytes), k.rx_bytes, dt),
                tx_bytes_per_s: rate(pq(|q| q.tx_bytes), k.tx_bytes, dt),
                rx_pkts_per_s: rate(pq(|q| q.rx_pkts), k.rx_pkts, dt),
                tx_pkts_per_s: rate(pq(|q| q.tx_pkts), k.tx_pkts, dt),
                rx_drops_per_s: rate(pq(|q| q.rx_drop), k.rx_drop, dt),
                tx_drops_per_s: rate(pq(|q| q.tx_drop), k.tx_drop, dt),
            }
        })
        .collect();

    let disk_total = total(
        disks
            .iter()
            .flat_map(|d| [d.rd_bytes_per_s, d.wr_bytes_per_s]),
    );
    let net_total = total(
        nics.iter()
            .flat_map(|n| [n.rx_bytes_per_s, n.tx_bytes_per_s]),
    );
    let inferred = PerResource {
        cpu: cpu.delay_ratio.is_some_and(|r| r >= 0.1),
        mem: mem.swap_in_kib_per_s.is_some_and(|r| r > 0.0),
        disk: false,
        net: nics
            .iter()
            .any(|n| n.rx_drops_per_s.unwrap_or(0.0) + n.tx_drops_per_s.unwrap_or(0.0) > 0.0),
    };
    let capped = PerResource {
        cpu: d.capped.cpu.unwrap_or(inferred.cpu),
        mem: d.capped.mem.unwrap_or(inferred.mem),
        disk: d.capped.disk.unwrap_or(inferred.disk),
        net: d.capped.net.unwrap_or(inferred.net),
    };
    TenantStats {
        id: d.id.clone(),
        policy: d.config.policy.clone(),
        vcpus,
        max_memory_kib: d.config.max_memory_kib,
        size_is_limit: d.config.size_is_limit,
        capped,
        usage: PerResource {
            cpu: cores,
            mem: used_kib.map(|v| v as f64),
            disk: disk_total,
            net: net_total,
        },
        cpu,
        mem,
        disks,
        nics,
        disk_targets: d
            .config
            .disks
            .iter()
            .map(|c| c.target.as_str().into())
            .collect(),
        settings: d.settings.clone(),
    }
}

/// The sum of per-device values: unknown (None) if any part is unknown or there is no
/// device at all (a domain without disks has no disk rate, not a rate of 0).
pub fn total(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut sum = 0.0;
    let mut any = false;
    for v in values {
        sum += v?;
        any = true;
    }
    any.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BalloonStats, DiskCounters, DomainConfig, NicCounters, VcpuCounters};

    fn dom(uuid: &str, cpu_ns: u64, wr: u64, rx: u64) -> DomainSnapshot {
        DomainSnapshot {
            id: TenantId {
                uuid: uuid.into(),
                name: format!("vm-{uuid}").into(),
            },
            config: DomainConfig {
                vcpus: 2,
                ..DomainConfig::default()
            },
            counters: DomainCounters {
                cpu_time_ns: Some(cpu_ns),
                vcpus: vec![
                    VcpuCounters {
                        time_ns: Some(cpu_ns / 2),
                        delay_ns: Some(cpu_ns / 10),
                        wait_ns: None,
                    };
                    2
                ],
                balloon: BalloonStats {
                    available_kib: Some(1000),
                    usable_kib: Some(600),
                    unused_kib: Some(500),
                    major_faults: Some(cpu_ns / 1_000_000_000),
                    ..BalloonStats::default()
                },
                disks: vec![DiskCounters {
                    name: "vda".into(),
                    wr_bytes: Some(wr),
                    wr_reqs: Some(wr / 4096),
                    wr_times_ns: Some(wr * 1000),
                    rd_bytes: Some(0),
                    ..DiskCounters::default()
                }],
                nics: vec![NicCounters {
                    name: "vnet0".into(),
                    rx_bytes: Some(rx),
                    tx_bytes: Some(0),
                    ..NicCounters::default()
                }],
                ..DomainCounters::default()
            },
            capped: PerResource::default(),
            settings: Vec::new(),
        }
    }

    fn snap(t_s: u64, domains: Vec<DomainSnapshot>) -> Snapshot {
        Snapshot {
            at_unix_ms: (t_s * 1000) as i64,
            mono_ns: t_s * 1_000_000_000,
            domains,
            ..Snapshot::default()
        }
    }

    #[test]
    fn first_sight_has_gauges_but_no_rates() {
        let mut c = Collector::new();
        let o = c.ingest(&snap(10, vec![dom("a", 5_000_000_000, 0, 0)]));
        assert_eq!(o.appeared.len(), 1);
        let t = &o.tenants[0];
        assert_eq!(t.usage.cpu, None);
        assert_eq!(t.usage.mem, Some(400.0), "used = available − usable");
        assert_eq!(t.usage.disk, None);
    }

    #[test]
    fn rates_over_the_interval() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 0, 0, 0)]));
        // 10 s later: 15 s of CPU on 2 vCPUs, 40 MB written, 5 MB received.
        let o = c.ingest(&snap(
            20,
            vec![dom("a", 15_000_000_000, 40_960_000, 5_000_000)],
        ));
        let t = &o.tenants[0];
        assert!(o.appeared.is_empty());
        assert!((t.usage.cpu.unwrap() - 1.5).abs() < 1e-9);
        assert!((t.cpu.utilisation.unwrap() - 0.75).abs() < 1e-9);
        assert!((t.cpu.delay_ratio.unwrap() - 0.15).abs() < 1e-9);
        assert!((t.cpu.vcpu_busy[0].unwrap() - 0.75).abs() < 1e-9);
        assert!((t.usage.disk.unwrap() - 4_096_000.0).abs() < 1e-6);
        assert!((t.disks[0].wr_iops.unwrap() - 1000.0).abs() < 1e-9);
        assert!((t.disks[0].wr_ms_per_req.unwrap() - 4.096).abs() < 1e-9);
        assert_eq!(
            t.disks[0].rd_ms_per_req, None,
            "no requests, no service time"
        );
        assert!((t.usage.net.unwrap() - 500_000.0).abs() < 1e-6);
        assert!((t.mem.major_faults_per_s.unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn counter_reset_gives_no_rate_then_recovers() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 50_000_000_000, 1_000_000, 1_000)]));
        // Domain restarted: counters start again from small values.
        let o = c.ingest(&snap(20, vec![dom("a", 1_000_000_000, 4096, 10)]));
        let t = &o.tenants[0];
        assert_eq!(t.usage.cpu, None);
        assert_eq!(t.usage.disk, None);
        assert_eq!(t.usage.net, None);
        let o = c.ingest(&snap(30, vec![dom("a", 6_000_000_000, 4096, 10)]));
        assert!((o.tenants[0].usage.cpu.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(o.tenants[0].usage.net, Some(0.0));
    }

    #[test]
    fn vanished_and_reappearing_domains() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 0, 0, 0), dom("b", 0, 0, 0)]));
        let o = c.ingest(&snap(20, vec![dom("a", 1_000_000_000, 0, 0)]));
        assert_eq!(o.vanished.len(), 1);
        assert_eq!(&*o.vanished[0].uuid, "b");
        let o = c.ingest(&snap(30, vec![dom("a", 2_000_000_000, 0, 0)]));
        assert!(o.vanished.is_empty(), "reported once");
        let o = c.ingest(&snap(
            40,
            vec![dom("a", 3_000_000_000, 0, 0), dom("b", 9, 0, 0)],
        ));
        assert_eq!(o.appeared.len(), 1);
        let b = o.tenants.iter().find(|t| &*t.id.uuid == "b").unwrap();
        assert_eq!(
            b.usage.cpu, None,
            "no rate against a sample from before it vanished"
        );
    }

    #[test]
    fn hotplugged_device_has_no_rate_until_its_second_sample() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 0, 0, 0)]));
        let mut d = dom("a", 0, 100, 0);
        d.counters.disks.push(DiskCounters {
            name: "vdb".into(),
            wr_bytes: Some(1 << 30),
            ..DiskCounters::default()
        });
        let o = c.ingest(&snap(20, vec![d]));
        let t = &o.tenants[0];
        assert_eq!(t.disks[1].wr_bytes_per_s, None);
        assert_eq!(
            t.usage.disk, None,
            "a total with an unknown part is unknown"
        );
    }

    #[test]
    fn capping_is_inferred_or_taken_from_the_backend() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 0, 0, 0)]));
        // delay_ns = cpu/10 per vCPU: 15 s of CPU → 0.15 delay ratio ≥ 0.1 → capped.
        let o = c.ingest(&snap(20, vec![dom("a", 15_000_000_000, 0, 0)]));
        assert!(o.tenants[0].capped.cpu && !o.tenants[0].capped.mem);
        let mut d = dom("a", 16_000_000_000, 0, 0);
        for v in &mut d.counters.vcpus {
            v.delay_ns = Some(20_000_000_000); // inferred: capped…
        }
        d.capped.cpu = Some(false); // …but the backend knows better
        d.capped.disk = Some(true);
        let o = c.ingest(&snap(30, vec![d]));
        assert!(!o.tenants[0].capped.cpu && o.tenants[0].capped.disk);
    }

    #[test]
    fn zero_interval_gives_no_rate() {
        let mut c = Collector::new();
        c.ingest(&snap(10, vec![dom("a", 0, 0, 0)]));
        let o = c.ingest(&snap(10, vec![dom("a", 1, 0, 0)]));
        assert_eq!(o.tenants[0].usage.cpu, None);
    }
}
