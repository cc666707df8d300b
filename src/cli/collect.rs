use crate::backend::libvirt::LibvirtBackend;
use crate::collect::Observation;
use crate::pipeline::Controller;
use clap::Args;
use std::fmt::Write as _;
use std::time::Duration;

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
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
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

fn opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    match v {
        Some(v) => format!("{:.*}", digits, v / scale),
        None => "-".into(),
    }
}

/// A per-tenant table for people: CPU in cores, memory in MiB, I/O in MB/s.
pub fn render_table(obs: &Observation) -> String {
    let mut s = String::new();
    let at = obs.at_unix_ms as f64 / 1000.0;
    let _ = writeln!(
        s,
        "at {at:.1} · host {} · {} CPUs · {} MiB · {} tenants",
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
        let sum = |f: fn(&crate::collect::DiskRates) -> Option<f64>| t.disks.iter().map(f).sum();
        let nsum = |f: fn(&crate::collect::NicRates) -> Option<f64>| t.nics.iter().map(f).sum();
        let kib = |v: Option<u64>| opt(v.map(|v| v as f64), 1024.0, 0);
        let mut name = t.id.name.to_string();
        if t.policy.metadata_error.is_some() {
            name.push('!');
        }
        let _ = writeln!(
            s,
            "{:<20} {:<6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
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
