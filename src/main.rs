//! The `lifeboat` binary: parses the command line, sets up logging and runs
//! the command (`lifeboat::cli`).

use clap::Parser;
use lifeboat::cli::{self, Cli};
use lifeboat::commands;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
