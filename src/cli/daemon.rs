use crate::config::Config;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// TOML config file (every key optional; see docs/configuration.md). Without it, the
    /// defaults apply.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// libvirt URI, overriding [daemon] uri.
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
    /// Profile database, overriding [profile] path.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Control interval in seconds, overriding [daemon] interval_seconds.
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    /// If the profile database is corrupt or not prescient's, move it aside
    /// (`<file>.bad-<time>`) and start a new one. Without this flag such a file is refused.
    #[arg(long)]
    pub reset_db: bool,
    /// Print a table of every tenant's stats each cycle on stdout.
    #[arg(long)]
    pub print_stats: bool,
}

pub fn run(a: DaemonArgs) -> super::CliResult {
    let (mut cfg, origin) = match &a.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::default(), "defaults".to_string()),
    };
    if let Some(uri) = a.uri {
        cfg.daemon.uri = uri;
    }
    if let Some(db) = a.db {
        cfg.profile.path = db;
    }
    if let Some(i) = a.interval {
        cfg.daemon.interval_seconds = i;
    }
    cfg.validate(&format!("{origin} with command-line overrides"))?;
    crate::daemon::run(
        cfg,
        crate::daemon::Options {
            reset_db: a.reset_db,
            print_stats: a.print_stats,
        },
    )?;
    Ok(())
}
