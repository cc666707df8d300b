//! Command-line interface: one file per subcommand group, each only parsing and dispatching.

/// `println!` that returns the write error instead of panicking, so that a closed pipe
/// (`prescient … | head`) ends the command quietly (see [`is_broken_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write error (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        write!(o, $($arg)*).and_then(|_| o.flush())
    }};
}

/// `eprintln!` that never panics: a note on stderr is lost, not fatal, when stderr is closed.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod bench;
pub mod collect;
pub mod daemon;
pub mod forecast_eval;
pub mod forecast_plot;
pub mod frontier_plot;
pub mod policy;
pub mod simulate;

use clap::{Parser, Subcommand};

/// prescient: proactive resource management for the tenant VMs of a KVM host.
///
/// It learns each tenant's behaviour from libvirt's statistics and keeps it in a profile
/// database, so that resources can be retuned before demand arrives.
#[derive(Parser, Debug)]
#[command(name = "prescient", version, about, long_about)]
pub struct Cli {
    /// Log filter (e.g. `info`, `debug`, `prescient=trace`); overrides RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control loop: collect every domain's stats each interval into the profile
    /// database, until SIGINT or SIGTERM.
    Daemon(daemon::DaemonArgs),
    /// Read the tenants' stats now (two bulk reads a short window apart, for rates) and print
    /// them.
    Collect(collect::CollectArgs),
    /// Replay real per-VM traces through the control loop on a simulated host and compare
    /// allocation policies (shortfall, slack, violations per class, changes).
    Simulate(simulate::SimulateArgs),
    /// Replay traces through the online forecasters and score them against the naive
    /// forecast (gmrae per resource, model and horizon; coverage of the p95).
    ForecastEval(forecast_eval::ForecastEvalArgs),
    /// Draw one forecast (point, p50–p95 band, p99) against what came, as SVG.
    ForecastPlot(forecast_plot::ForecastPlotArgs),
    /// Draw the shortfall-versus-slack frontiers of saved `simulate --json` runs as SVG (the
    /// plot `simulate --plot` draws, from runs made separately).
    FrontierPlot(frontier_plot::FrontierPlotArgs),
    /// Work with policy files: the classes, reservations, limits and host reserve the
    /// allocation obeys.
    Policy(policy::PolicyArgs),
    /// Print cost figures of a component (release build advised).
    Bench(bench::BenchArgs),
}

/// What went wrong, for `main` to print.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Whether the command stopped because its output was closed (a pager or `head` that quit):
/// not an error to report.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Daemon(a) => daemon::run(a),
        Command::Collect(a) => collect::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::ForecastEval(a) => forecast_eval::run(a),
        Command::ForecastPlot(a) => forecast_plot::run(a),
        Command::FrontierPlot(a) => frontier_plot::run(a),
        Command::Policy(a) => policy::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
