use crate::allocate::rules::Rules;
use crate::model::{Amounts, Resource};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check a policy file and print the rules it sets (exit status 1 if it is
    /// invalid, with the file, line and field named).
    ///
    /// A policy file is TOML; every key is optional and unknown keys are refused:
    ///
    ///   [host.reserve]             # what the host keeps for itself
    ///   cpu_cores = 1              # amounts: cpu_cores, mem_mib (or mem_kib),
    ///   mem_mib = 2048             #   disk_bytes_per_s, net_bytes_per_s
    ///
    ///   [classes.gold]             # also classes.silver and classes.bronze
    ///   weight = 4                 # value of a unit served (defaults 4 / 2 / 1)
    ///   reservation = { cpu_cores = 0.5 }   # each tenant gets at least this
    ///   limit = { mem_mib = 8192 }          # ... and never more than this
    ///   target = { cpu = 0.99 }    # the quantile of forecast demand given while
    ///                              # the host has room (prescient policy)
    ///   dedicated_cpus = true      # each vCPU pinned to a host CPU of its own
    ///
    /// A tenant's <prescient:tenant> domain metadata (guarantee, limit) overrides
    /// its class's reservation and limit. policies/default.toml shows every key.
    #[command(verbatim_doc_comment)]
    Validate {
        /// The policy file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the rules as JSON (amounts in cores, KiB and bytes/s).
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to reread its policy file (as SIGHUP does): a valid file is
    /// obeyed from the next cycle on; an invalid one is refused with its error and the
    /// rules in force stay. Needs root or the admin group.
    Reload(super::operator::ReportArgs),
}

/// `top`: the `--socket` given before the subcommand, if any.
pub fn run(a: PolicyArgs, top: Option<&std::path::Path>) -> super::CliResult {
    match a.command {
        PolicyCommand::Reload(r) => {
            let socket = super::client::socket(r.socket.socket.as_deref().or(top));
            super::operator::reload(&socket, r)
        }
        PolicyCommand::Validate { file, json } => {
            let rules = Rules::load(&file)?;
            rules.check_host(&this_host())?;
            if json {
                outln!("{}", serde_json::to_string(&rules)?)?;
            } else {
                outln!("{}: valid", file.display())?;
                out!("{}", render(&rules))?;
            }
            Ok(())
        }
    }
}

/// What this host has, as the daemon would see it: its online CPUs (cores) and its
/// memory (KiB); None where it cannot be read (disk and network: libvirt knows none).
fn this_host() -> crate::model::PerResource<Option<f64>> {
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| {
            (s.trim().split(','))
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => Some(b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1),
                    None => range.parse::<u32>().ok().map(|_| 1),
                })
                .sum::<Option<u32>>()
        });
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        (s.lines())
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    });
    crate::model::PerResource {
        cpu: cpus.map(f64::from),
        mem: mem_kib,
        disk: None,
        net: None,
    }
}

/// Amounts in the operator's units, `-` where nothing is set.
fn amounts(a: &Amounts) -> String {
    Resource::ALL
        .iter()
        .map(|&r| match a.get(r) {
            None => "-".to_string(),
            Some(v) => match r {
                Resource::Cpu => format!("{v} cores"),
                Resource::Mem => format!("{} MiB", v / 1024.0),
                Resource::Disk | Resource::Net => format!("{v} B/s"),
            },
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The rules as a table: one line per class, and the host's reserve.
pub fn render(rules: &Rules) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "amounts are cpu / mem / disk / net");
    let _ = writeln!(s, "host reserve: {}", amounts(&rules.host_reserve));
    for c in &rules.classes {
        let target = Resource::ALL
            .iter()
            .map(|&r| c.target.get(r).map_or("-".to_string(), |t| t.to_string()))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            s,
            "{:<7} weight {}\n        reservation {}\n        limit       {}\n        target      {}{}",
            c.class,
            c.weight,
            amounts(&c.reservation),
            amounts(&c.limit),
            target,
            if c.dedicated_cpus {
                "\n        dedicated host CPUs"
            } else {
                ""
            }
        );
    }
    s
}
