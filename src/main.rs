use clap::Parser;
use prescient::cli::{Cli, Command, is_broken_pipe, run};
use std::io::IsTerminal;
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
        eprintln!("prescient: error: --log: {e}");
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = run(cli) {
        if is_broken_pipe(e.as_ref()) {
            return;
        }
        eprintln!("prescient: error: {e}");
        std::process::exit(1);
    }
}
