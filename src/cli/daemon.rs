use crate::config::Config;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// TOML config file. Every key is optional and unknown keys are refused; the example
    /// `policies/prescient.toml` (shipped with prescient) lists them all with their
    /// defaults. Without a file, the defaults apply.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// libvirt URI, overriding [daemon] uri (default qemu:///system).
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
    /// Profile database, overriding [profile] path (default /var/lib/prescient/profile.db,
    /// whose directory is created if missing; another path's directory must exist).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Control interval in seconds, 0.05 … 3600, overriding [daemon] interval_seconds
    /// (default 10).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub interval: Option<f64>,
    /// Run an allocation policy, overriding [allocate] policy: static, reactive, vpa,
    /// nsigma or prescient. Each cycle its allocation is decided, recorded in the profile
    /// database (table `allocations`) and applied to the domains: vCPU quota and shares,
    /// balloon target, disk throttles, vNIC bandwidth (tc on the tap). Every change tried,
    /// and every refusal with libvirt's error, goes to the table `actuations`. Without a
    /// policy the daemon only observes and forecasts.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// The policy's knob, overriding [allocate] knob (see `prescient simulate --help`).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub knob: Option<f64>,
    /// Policy file (classes, reservations, limits, host reserve; see `prescient policy
    /// validate --help`), overriding [allocate] policy_file. Reread on SIGHUP: an invalid
    /// file is rejected with its error and the rules in force stay.
    #[arg(long, value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
    /// Decide and log the changes but make none on any domain, overriding [actuate]
    /// dry_run.
    #[arg(long)]
    pub dry_run: bool,
    /// If the profile database is corrupt or not prescient's, move it aside
    /// (`<file>.bad-<time>`) and start a new one. Without this flag such a file is refused.
    /// A valid profile is never moved, nor one that merely cannot be read or written.
    #[arg(long)]
    pub reset_db: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, overriding [control]
    /// metrics_listen (default 127.0.0.1:9187; "off": only over the control socket).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Print a table of every tenant's stats each cycle on stdout.
    #[arg(long)]
    pub print_stats: bool,
    /// Where the control socket listens ("off": no socket), overriding $PRESCIENT_SOCKET and
    /// [control] socket (default /run/prescient/prescient.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `socket`: `--socket` (the daemon's, else the one given before the subcommand), else
/// `$PRESCIENT_SOCKET`, overriding [control] socket.
pub fn run(a: DaemonArgs, socket: Option<PathBuf>) -> super::CliResult {
    let socket = (a.socket.clone().or(socket))
        .or_else(|| std::env::var_os("PRESCIENT_SOCKET").map(PathBuf::from));
    let (mut cfg, text) = match &a.config {
        Some(path) => {
            let (cfg, text) = Config::read(path)?;
            (cfg, Some(text))
        }
        None => (Config::default(), None),
    };
    // The fields the command line sets, with their flags (named in a refusal).
    let mut flags = Vec::new();
    if let Some(uri) = a.uri {
        cfg.daemon.uri = uri;
        flags.push(("daemon.uri", "--uri"));
    }
    if let Some(db) = a.db {
        cfg.profile.path = db;
        flags.push(("profile.path", "--db"));
    }
    if let Some(p) = a.policy {
        cfg.allocate.policy = Some(p);
        flags.push(("allocate.policy", "--policy"));
    }
    if let Some(k) = a.knob {
        cfg.allocate.knob = Some(k);
        flags.push(("allocate.knob", "--knob"));
    }
    if let Some(f) = a.policy_file {
        cfg.allocate.policy_file = Some(f);
    }
    if a.dry_run {
        cfg.actuate.dry_run = true;
    }
    if let Some(s) = socket {
        cfg.control.socket = s;
        flags.push(("control.socket", "--socket"));
    }
    if let Some(m) = a.metrics {
        cfg.control.metrics_listen = m;
        flags.push(("control.metrics_listen", "--metrics"));
    }
    if let Some(i) = a.interval {
        cfg.daemon.interval_seconds = i;
        flags.push(("daemon.interval_seconds", "--interval"));
    }
    cfg.validate(&crate::config::Origin {
        file: a.config.as_deref().zip(text.as_deref()),
        flags,
    })?;
    crate::daemon::run(
        cfg,
        crate::daemon::Options {
            reset_db: a.reset_db,
            print_stats: a.print_stats,
        },
    )?;
    Ok(())
}
