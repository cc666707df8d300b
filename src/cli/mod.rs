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
pub mod client;
pub mod collect;
pub mod daemon;
pub mod forecast_eval;
pub mod forecast_plot;
pub mod frontier_plot;
pub mod man;
pub mod operator;
pub mod policy;
pub mod show;
pub mod simulate;

use clap::{Parser, Subcommand};

/// Proactive resource management for the tenant VMs of a KVM host.
///
/// prescient learns each tenant's behaviour from libvirt's statistics and keeps it in a profile
/// database, so that resources can be retuned before demand arrives.
#[derive(Parser, Debug)]
#[command(
    name = "prescient",
    version,
    about,
    long_about,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Log filter (e.g. `info`, `debug`, `prescient=trace`); overrides RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// The daemon's control socket for the commands that use one, as their own --socket:
    /// where `daemon` listens ("off": no socket) and the operator's commands connect
    /// (default /run/prescient/prescient.sock, or $PRESCIENT_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control loop until SIGINT or SIGTERM: each interval, collect every domain's
    /// stats into the profile database, forecast, and with --policy decide and apply the
    /// allocations; serve the control socket and the metrics meanwhile.
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
    /// The running daemon's health: last cycle, host capacity, shadow prices, counts.
    Status(operator::ReportArgs),
    /// Every tenant's class, usage now, forecast (p50, p95), allocation and what is in
    /// force, per resource.
    Tenants(operator::ReportArgs),
    /// A tenant's recent usage and its forecast with bands: sparklines, or SVG with --plot.
    Show(show::ShowArgs),
    /// Why a tenant has its allocation: forecast quantiles, model weights, the price λ,
    /// which constraint bound, its override, intents and recent refusals.
    Explain(operator::ExplainArgs),
    /// Hard constraints an operator sets on a tenant's allocation (needs root or the
    /// admin group to change).
    Override(operator::OverrideArgs),
    /// Declared upcoming demand the forecaster blends in, weighted by the tenant's record.
    Intent(operator::IntentArgs),
    /// Stop changing the domains: allocations are still decided and logged (a dry run).
    Pause(operator::ReportArgs),
    /// Apply allocations again after `pause`.
    Resume(operator::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `prescient completions bash > /etc/bash_completion.d/prescient`.
    Completions {
        /// The shell to complete for.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): every command with its options, the files and the
    /// environment, e.g. `prescient man > prescient.1; man -l prescient.1`.
    Man,
    /// Print the help of prescient or of a command, e.g. `prescient help override set`.
    Help {
        /// The command (and subcommand) whose help to print; none: prescient's own.
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
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
    // A command's own --socket, else the one given before it.
    let top = cli.socket.as_deref();
    let socket = |s: &client::SocketArg| client::socket(s.socket.as_deref().or(top));
    match cli.command {
        Command::Daemon(mut a) => {
            let s = a.socket.take().or(cli.socket.clone());
            daemon::run(a, s)
        }
        Command::Collect(a) => collect::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::ForecastEval(a) => forecast_eval::run(a),
        Command::ForecastPlot(a) => forecast_plot::run(a),
        Command::FrontierPlot(a) => frontier_plot::run(a),
        Command::Policy(a) => policy::run(a, top),
        Command::Bench(a) => bench::run(a),
        Command::Status(a) => operator::status(&socket(&a.socket), a),
        Command::Tenants(a) => operator::tenants(&socket(&a.socket), a),
        Command::Explain(a) => operator::explain(&socket(&a.report.socket), a),
        Command::Show(a) => show::run(&socket(&a.socket), a),
        Command::Override(a) => operator::overrides(&socket(&a.command.report().socket), a),
        Command::Intent(a) => operator::intents(&socket(&a.command.report().socket), a),
        Command::Pause(a) => operator::pause(&socket(&a.socket), true, a),
        Command::Resume(a) => operator::pause(&socket(&a.socket), false, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "prescient", &mut out);
            out!("{}", String::from_utf8_lossy(&out))?;
            Ok(())
        }
        Command::Man => {
            out!("{}", String::from_utf8_lossy(&man::page()?))?;
            Ok(())
        }
        Command::Help { command } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            cmd.build();
            let mut at = &mut cmd;
            for name in &command {
                let known: Vec<String> =
                    at.get_subcommands().map(|s| s.get_name().into()).collect();
                at = at.find_subcommand_mut(name).ok_or_else(|| {
                    format!("help: no command {name:?} (commands: {})", known.join(", "))
                })?;
            }
            out!("{}", at.render_long_help())?;
            Ok(())
        }
    }
}
