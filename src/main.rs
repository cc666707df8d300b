use clap::Parser;
use prescient::cli::{Cli, Command, is_broken_pipe, run};
use std::io::{IsTerminal, Write};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    // The daemon tells what it does; one-shot commands speak only of problems.
    let default = match cli.command {
        Command::Daemon(_) => "info",
        _ => "warn",
    };
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default)),
    };
    let filter = filter.unwrap_or_else(|e| {
        let _ = writeln!(std::io::stderr(), "prescient: error: --log: {e}");
        std::process::exit(2);
    });
    // A closed stderr (`prescient daemon 2>&1 | head`) loses log lines, never the daemon:
    // write errors are not reported on the stderr that just failed (that would panic).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .init();
    if let Err(e) = run(cli) {
        if is_broken_pipe(e.as_ref()) {
            return;
        }
        let _ = writeln!(std::io::stderr(), "prescient: error: {e}");
        std::process::exit(1);
    }
}
