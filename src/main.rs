//! The `lifeboat` binary: parses the command line, sets up logging and runs
//! the command (`lifeboat::cli`).

use clap::Parser;
use lifeboat::cli::{self, Cli};
use lifeboat::commands;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before the runtime and its threads exist: it may re-exec the program.
    lifeboat::malloc_tunables::fix_mmap_threshold();
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a Job's log or a captured stderr gets
        // plain `key=value` fields.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if !cli.stops_gracefully() {
        tokio::spawn(remove_secrets_on_signal());
    }
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// SIGTERM (a Job's deadline, a drained node) or Ctrl-C ends the process
/// with no destructor run: remove the passfiles first, then end as the
/// signal would have (128 + its number). Not for the commands with their
/// own graceful stop (the controller, wal-stream).
async fn remove_secrets_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let code = tokio::select! {
        _ = term.recv() => 143,
        _ = int.recv() => 130,
    };
    lifeboat::source::postgres::remove_passfiles();
    std::process::exit(code);
}
