//! Typed parameters of `virConnectGetAllDomainStats` → [`DomainCounters`].
//!
//! Pure parsing over `(field, value)` pairs, so that it is tested without a hypervisor.
//! Unknown fields are ignored (libvirt adds fields over time); a field of an unexpected type
//! reads as absent.

use super::ffi::Param;
use crate::backend::{BalloonStats, DiskCounters, DomainCounters, NicCounters, VcpuCounters};
use std::collections::HashMap;

fn uint(p: &Param) -> Option<u64> {
    match *p {
        Param::UInt(v) => Some(v),
        Param::Int(v) if v >= 0 => Some(v as u64),
        _ => None,
    }
}

fn text(p: &Param) -> Option<String> {
    match p {
        Param::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// Parse one domain's stats record.
pub fn parse(params: &[(String, Param)]) -> DomainCounters {
    let map: HashMap<&str, &Param> = params.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let get = |k: &str| map.get(k).and_then(|p| uint(p));
    let count = |k: &str| get(k).unwrap_or(0).min(4096) as usize;

    let balloon = BalloonStats {
        current_kib: get("balloon.current"),
        maximum_kib: get("balloon.maximum"),
        unused_kib: get("balloon.unused"),
        available_kib: get("balloon.available"),
        usable_kib: get("balloon.usable"),
        rss_kib: get("balloon.rss"),
        disk_caches_kib: get("balloon.disk_caches"),
        swap_in_kib: get("balloon.swap_in"),
        swap_out_kib: get("balloon.swap_out"),
        major_faults: get("balloon.major_fault"),
        minor_faults: get("balloon.minor_fault"),
        last_update: get("balloon.last-update"),
    };

    // vcpu.current is the number online; indices may be sparse up to vcpu.maximum.
    let vcpu_max = count("vcpu.maximum").max(count("vcpu.current"));
    let vcpus = (0..vcpu_max)
        .filter_map(|i| {
            let time_ns = get(&format!("vcpu.{i}.time"));
            time_ns.map(|t| VcpuCounters {
                time_ns: Some(t),
                delay_ns: get(&format!("vcpu.{i}.delay")),
                wait_ns: get(&format!("vcpu.{i}.wait")),
            })
        })
        .collect();

    let disks = (0..count("block.count"))
        .map(|i| {
            let f = |s: &str| get(&format!("block.{i}.{s}"));
            DiskCounters {
                name: map
                    .get(format!("block.{i}.name").as_str())
                    .and_then(|p| text(p))
                    .unwrap_or_else(|| format!("block{i}"))
                    .into(),
                rd_reqs: f("rd.reqs"),
                rd_bytes: f("rd.bytes"),
                rd_times_ns: f("rd.times"),
                wr_reqs: f("wr.reqs"),
                wr_bytes: f("wr.bytes"),
                wr_times_ns: f("wr.times"),
                fl_reqs: f("fl.reqs"),
                fl_times_ns: f("fl.times"),
                capacity_bytes: f("capacity"),
            }
        })
        .collect();

    let nics = (0..count("net.count"))
        .map(|i| {
            let f = |s: &str| get(&format!("net.{i}.{s}"));
            NicCounters {
                name: map
                    .get(format!("net.{i}.name").as_str())
                    .and_then(|p| text(p))
                    .unwrap_or_else(|| format!("net{i}"))
                    .into(),
                rx_bytes: f("rx.bytes"),
                rx_pkts: f("rx.pkts"),
                rx_errs: f("rx.errs"),
                rx_drop: f("rx.drop"),
                tx_bytes: f("tx.bytes"),
                tx_pkts: f("tx.pkts"),
                tx_errs: f("tx.errs"),
                tx_drop: f("tx.drop"),
            }
        })
        .collect();

    DomainCounters {
        cpu_time_ns: get("cpu.time"),
        cpu_user_ns: get("cpu.user"),
        cpu_system_ns: get("cpu.system"),
        vcpus,
        balloon,
        disks,
        nics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(k: &str, v: u64) -> (String, Param) {
        (k.to_string(), Param::UInt(v))
    }
    fn s(k: &str, v: &str) -> (String, Param) {
        (k.to_string(), Param::Str(v.to_string()))
    }

    /// The fields `virsh domstats --raw` showed for a 1-vCPU lab guest (lab-notes.md).
    fn lab_record() -> Vec<(String, Param)> {
        vec![
            (String::from("state.state"), Param::Int(1)),
            u("cpu.time", 5_000_000_000),
            u("cpu.user", 3_000_000_000),
            u("cpu.system", 1_000_000_000),
            u("balloon.current", 524_288),
            u("balloon.maximum", 524_288),
            u("balloon.swap_in", 0),
            u("balloon.swap_out", 0),
            u("balloon.major_fault", 12),
            u("balloon.minor_fault", 3400),
            u("balloon.unused", 400_000),
            u("balloon.available", 500_000),
            u("balloon.usable", 420_000),
            u("balloon.last-update", 77),
            u("balloon.disk_caches", 1000),
            u("balloon.rss", 200_000),
            u("vcpu.current", 1),
            u("vcpu.maximum", 1),
            (String::from("vcpu.0.state"), Param::Int(1)),
            u("vcpu.0.time", 4_000_000_000),
            u("vcpu.0.wait", 0),
            u("vcpu.0.delay", 650_000_000),
            u("net.count", 1),
            s("net.0.name", "vnet0"),
            u("net.0.rx.bytes", 1000),
            u("net.0.rx.pkts", 10),
            u("net.0.rx.errs", 0),
            u("net.0.rx.drop", 1),
            u("net.0.tx.bytes", 2000),
            u("net.0.tx.pkts", 20),
            u("net.0.tx.errs", 0),
            u("net.0.tx.drop", 0),
            u("block.count", 1),
            s("block.0.name", "vda"),
            s("block.0.path", "/var/lib/libvirt/images/lab1.qcow2"),
            u("block.0.rd.reqs", 5),
            u("block.0.rd.bytes", 4096 * 5),
            u("block.0.rd.times", 1_000_000),
            u("block.0.wr.reqs", 7),
            u("block.0.wr.bytes", 4096 * 7),
            u("block.0.wr.times", 2_000_000),
            u("block.0.fl.reqs", 1),
            u("block.0.fl.times", 10),
            u("block.0.capacity", 268_435_456),
        ]
    }

    #[test]
    fn parses_every_group_of_a_lab_record() {
        let c = parse(&lab_record());
        assert_eq!(c.cpu_time_ns, Some(5_000_000_000));
        assert_eq!(c.cpu_user_ns, Some(3_000_000_000));
        assert_eq!(c.vcpus.len(), 1);
        assert_eq!(c.vcpus[0].delay_ns, Some(650_000_000));
        assert_eq!(c.balloon.unused_kib, Some(400_000));
        assert_eq!(c.balloon.usable_kib, Some(420_000));
        assert_eq!(c.balloon.major_faults, Some(12));
        assert_eq!(c.balloon.rss_kib, Some(200_000));
        assert_eq!(c.disks.len(), 1);
        assert_eq!(&*c.disks[0].name, "vda");
        assert_eq!(c.disks[0].wr_bytes, Some(28_672));
        assert_eq!(c.disks[0].rd_times_ns, Some(1_000_000));
        assert_eq!(c.nics.len(), 1);
        assert_eq!(&*c.nics[0].name, "vnet0");
        assert_eq!(c.nics[0].rx_drop, Some(1));
        assert_eq!(c.nics[0].tx_pkts, Some(20));
    }

    #[test]
    fn missing_groups_read_as_absent() {
        // What the test driver returns: state only.
        let c = parse(&[(String::from("state.state"), Param::Int(1))]);
        assert_eq!(c.cpu_time_ns, None);
        assert!(c.vcpus.is_empty() && c.disks.is_empty() && c.nics.is_empty());
        assert_eq!(c.balloon, BalloonStats::default());
    }

    #[test]
    fn wrong_types_and_negative_values_read_as_absent() {
        let c = parse(&[
            (String::from("cpu.time"), Param::Str("lots".into())),
            (String::from("balloon.current"), Param::Int(-5)),
            (String::from("balloon.maximum"), Param::Double(1.0)),
        ]);
        assert_eq!(c.cpu_time_ns, None);
        assert_eq!(c.balloon.current_kib, None);
        assert_eq!(c.balloon.maximum_kib, None);
    }

    #[test]
    fn sparse_vcpus_and_unnamed_devices() {
        let c = parse(&[
            u("vcpu.current", 1),
            u("vcpu.maximum", 2),
            u("vcpu.1.time", 7),
            u("block.count", 1),
            u("net.count", 1),
        ]);
        assert_eq!(c.vcpus.len(), 1);
        assert_eq!(c.vcpus[0].time_ns, Some(7));
        assert_eq!(&*c.disks[0].name, "block0");
        assert_eq!(&*c.nics[0].name, "net0");
        assert_eq!(c.disks[0].rd_bytes, None);
    }

    #[test]
    fn absurd_counts_are_bounded() {
        let c = parse(&[u("block.count", u64::MAX)]);
        assert_eq!(c.disks.len(), 4096);
    }
}
