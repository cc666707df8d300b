use crate::backend::libvirt::LibvirtBackend;
use crate::collect::{Observation, total};
use crate::model::Resource;
use crate::pipeline::Controller;
use clap::Args;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;
use unicode_width::UnicodeWidthStr;

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// libvirt URI.
    #[arg(long, default_value = "qemu:///system", value_name = "URI")]
    pub uri: String,
    /// Print one round and exit (the same as --rounds 1).
    #[arg(long, conflicts_with = "rounds")]
    pub once: bool,
    /// Print this many rounds, then exit (default: until interrupted).
    #[arg(long, value_name = "N")]
    pub rounds: Option<u64>,
    /// Seconds between the bulk reads that rates are derived from.
    #[arg(
        long,
        default_value_t = 2.0,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub window: f64,
    /// One JSON object per round (`{"at_unix_ms":…, "host":{…}, "tenants":[…]}`) instead of
    /// a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CollectArgs) -> super::CliResult {
    if !(a.window.is_finite() && a.window >= 0.0 && a.window <= 3600.0) {
        return Err(format!("--window {} must be between 0 and 3600 seconds", a.window).into());
    }
    let rounds = if a.once { Some(1) } else { a.rounds };
    let mut backend = LibvirtBackend::connect(&a.uri)?;
    let mut controller = Controller::new(None);
    controller.step(&mut backend)?; // the baseline for the first round's rates
    let mut done = 0u64;
    while rounds.is_none_or(|n| done < n) {
        std::thread::sleep(Duration::from_secs_f64(a.window));
        let obs = controller.step(&mut backend)?;
        if a.json {
            outln!("{}", serde_json::to_string(&obs)?)?;
        } else {
            outln!("{}", render_table(&obs))?;
        }
        done += 1;
    }
    Ok(())
}

/// A value in the table's unit, `-` when unknown (as `null` in the JSON); never `-0.00`.
fn opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    match v {
        Some(v) => {
            let s = format!("{:.*}", digits, v / scale);
            match s.strip_prefix('-') {
                Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
                _ => s,
            }
        }
        None => "-".into(),
    }
}

/// A Unix time in milliseconds as UTC to the second, e.g. `2026-12-02T06:37:59Z`.
pub fn utc(at_unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A name as a table shows it: control and other invisible characters escaped (`\n`,
/// `\u{202e}`), so that whoever names a domain cannot break or forge a row.
pub fn cell(name: &str) -> Cow<'_, str> {
    let hidden = |c: char| c.is_control() || (c.escape_debug().count() > 1 && !"\\\"'".contains(c));
    if !name.chars().any(hidden) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| {
                if hidden(c) {
                    c.escape_debug().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `s` padded with spaces to `width` terminal columns (a wide character takes two).
pub fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(s.width())))
}

/// A per-tenant table for people: CPU in cores, memory in MiB, I/O in MB/s.
pub fn render_table(obs: &Observation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} · host {} · {} CPUs · {} MiB · {} tenants",
        utc(obs.at_unix_ms),
        obs.host.hostname,
        obs.host.cpus,
        obs.host.memory_kib / 1024,
        obs.tenants.len()
    );
    let _ = writeln!(
        s,
        "{:<20} {:<6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "TENANT",
        "CLASS",
        "VCPU",
        "CPU",
        "DELAY",
        "MEM_USED",
        "BALLOON",
        "UNUSED",
        "DISK_RD",
        "DISK_WR",
        "NET_RX",
        "NET_TX"
    );
    let _ = writeln!(
        s,
        "{:<20} {:<6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "", "", "cores", "ratio", "MiB", "MiB", "MiB", "MB/s", "MB/s", "MB/s", "MB/s"
    );
    let mut tenants: Vec<_> = obs.tenants.iter().collect();
    tenants.sort_by(|a, b| a.id.name.cmp(&b.id.name));
    for t in tenants {
        let sum = |f: fn(&crate::collect::DiskRates) -> Option<f64>| total(t.disks.iter().map(f));
        let nsum = |f: fn(&crate::collect::NicRates) -> Option<f64>| total(t.nics.iter().map(f));
        let kib = |v: Option<u64>| opt(v.map(|v| v as f64), 1024.0, 0);
        let mut name = cell(&t.id.name).into_owned();
        if t.policy.metadata_error.is_some() {
            name.push('!');
        }
        let _ = writeln!(
            s,
            "{} {:<6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            pad(&name, 20),
            t.policy.class.name(),
            t.vcpus,
            opt(t.usage.cpu, 1.0, 2),
            opt(t.cpu.delay_ratio, 1.0, 2),
            opt(t.usage.mem, 1024.0, 0),
            kib(t.mem.balloon_current_kib),
            kib(t.mem.unused_kib),
            opt(sum(|d| d.rd_bytes_per_s), 1e6, 2),
            opt(sum(|d| d.wr_bytes_per_s), 1e6, 2),
            opt(nsum(|n| n.rx_bytes_per_s), 1e6, 2),
            opt(nsum(|n| n.tx_bytes_per_s), 1e6, 2),
        );
    }
    s
}

/// Each tenant's usage beside its allocation: what the policy decided and, where a change
/// was made, the amount in force on the domain (`in_force`); `∞` is unthrottled.
pub fn render_allocations(
    obs: &Observation,
    allocation: &crate::plan::Allocation,
    decided: impl Fn(&crate::collect::TenantStats, Resource, f64) -> f64,
    in_force: impl Fn(&str, Resource) -> Option<f64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:>18} {:>20} {:>20} {:>20}",
        "ALLOCATION", "CPU cores", "MEM MiB", "DISK MB/s", "NET MB/s"
    );
    let _ = writeln!(
        s,
        "{:<20} {:>18} {:>20} {:>20} {:>20}",
        "use/decided/in force", "", "", "", ""
    );
    let scale = |r: Resource| match r {
        Resource::Cpu => (1.0, 2),
        Resource::Mem => (1024.0, 0),
        Resource::Disk | Resource::Net => (1e6, 1),
    };
    let show = |v: Option<f64>, r: Resource| match v {
        Some(v) if v.is_infinite() => "∞".to_string(),
        v => {
            let (div, digits) = scale(r);
            opt(v, div, digits)
        }
    };
    let mut tenants: Vec<_> = obs.tenants.iter().collect();
    tenants.sort_by(|a, b| a.id.name.cmp(&b.id.name));
    for t in tenants {
        let allocated = allocation.tenants.iter().find(|a| a.uuid == t.id.uuid);
        let _ = write!(s, "{}", pad(&cell(&t.id.name), 20));
        for r in Resource::ALL {
            let cell = format!(
                "{}/{}/{}",
                show(*t.usage.get(r), r),
                show(allocated.map(|a| decided(t, r, *a.amounts.get(r))), r),
                show(in_force(&t.id.uuid, r), r)
            );
            let width = if r == Resource::Cpu { 18 } else { 20 };
            let _ = write!(s, " {cell:>width$}");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_negative_zero_values_read_as_people_expect() {
        assert_eq!(opt(None, 1.0, 2), "-");
        assert_eq!(opt(Some(-0.0), 1e6, 2), "0.00");
        assert_eq!(opt(Some(-1e-9), 1.0, 2), "0.00");
        assert_eq!(opt(Some(-1.5), 1.0, 1), "-1.5");
        assert_eq!(opt(Some(2048.0), 1024.0, 0), "2");
        assert_eq!(
            total(std::iter::empty()),
            None,
            "no device: unknown, not -0"
        );
        assert_eq!(total([Some(1.0), None].into_iter()), None);
        assert_eq!(total([Some(1.0), Some(2.0)].into_iter()), Some(3.0));
    }

    #[test]
    fn an_allocation_where_the_capacity_is_unknown_reads_as_what_is_enforced() {
        use crate::allocate::rules::Rules;
        use crate::plan::{Allocation, TenantAllocation};
        let mut obs = Observation::default();
        obs.host.capacity.cpu = Some(2.0); // disk and network: unknown, as from libvirt
        let mut t = crate::collect::TenantStats::default();
        t.id.uuid = "u1".into();
        t.id.name = "web".into();
        obs.tenants.push(t);
        let alloc = Allocation {
            tenants: vec![TenantAllocation {
                uuid: "u1".into(),
                amounts: crate::model::PerResource {
                    cpu: 1.5,
                    mem: 1024.0,
                    disk: 1.0,
                    net: 1.0,
                },
                reasons: None,
            }],
        };
        let rules = Rules::default();
        let table = render_allocations(
            &obs,
            &alloc,
            |t, r, a| crate::actuate::enforced(&obs, &rules, t, r, a),
            |_, _| None,
        );
        let row = table.lines().find(|l| l.starts_with("web")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "-/1.50/-", "{table}");
        assert_eq!(
            cells[3], "-/∞/-",
            "disk: unthrottled, not 0.0 MB/s: {table}"
        );
        assert_eq!(cells[4], "-/∞/-", "{table}");
    }

    #[test]
    fn names_are_escaped_and_padded_by_terminal_columns() {
        assert_eq!(cell("web-1"), "web-1");
        assert_eq!(cell("evil\nforged"), "evil\\nforged");
        assert_eq!(cell("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(cell("数据库-ünï"), "数据库-ünï");
        assert_eq!(pad("数据库", 8), "数据库  ");
        assert_eq!(pad("ünï", 5), "ünï  ");
        assert_eq!(pad("toolongname", 4), "toolongname");
    }

    #[test]
    fn times_are_shown_as_utc() {
        assert_eq!(utc(1_796_190_861_900), "2026-12-02T05:54:21Z");
    }
}
