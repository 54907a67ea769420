//! The `lifeboat` command line: the parser, and a dispatch that hands each
//! subcommand to one function. `main.rs` only parses, sets up logging and
//! turns the result into an exit code.

mod args;
mod backup;
mod notify;
mod objects;
mod operator;
mod print;
mod restore;
mod wal;

use crate::commands;
use args::{
    BackupArgs, ControllerArgs, ExportArgs, KeygenArgs, ListArgs, NotifyArgs, PlanArgs, PruneArgs,
    RestoreArgs, StatusArgs, VerifyArgs, WalFetchArgs, WalPushArgs, WalStreamArgs,
};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Backup and disaster recovery: PostgreSQL to S3 in several regions, encrypted and verified"
)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace or a tracing directive).
    #[arg(long, global = true, env = "LIFEBOAT_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Back up PostgreSQL databases (or, with --config, Kubernetes objects)
    /// to one or more destinations.
    Backup(BackupArgs),
    /// Restore a backup into a database (or, with --config, into a cluster).
    Restore(RestoreArgs),
    /// Write a config backup's objects as YAML files for `kubectl apply`.
    Export(ExportArgs),
    /// Choose and verify the recovery point a restore would use; writes no database.
    Plan(PlanArgs),
    /// List the recovery points in destinations.
    List(ListArgs),
    /// Re-read backups and check every byte without restoring.
    Verify(VerifyArgs),
    /// Delete backups from every destination; clean interrupted uploads.
    Prune(PruneArgs),
    /// Write a new master key file (or put a new key first in one).
    Keygen(KeygenArgs),
    /// Archive one WAL file (PostgreSQL's archive_command: `lifeboat wal-push %p --to …`).
    WalPush(WalPushArgs),
    /// Restore one WAL file (PostgreSQL's restore_command: `lifeboat wal-fetch %f %p --from …`).
    /// Exit 1: not archived; exit 126 (fatal to recovery): a copy failed verification.
    WalFetch(WalFetchArgs),
    /// The on-call table: per BackupPolicy, last backup against the RPO,
    /// next backup, last drill against the RTO, recovery window, health.
    Status(StatusArgs),
    /// Stream WAL continuously (pg_receivewal on a replication slot) and ship
    /// every segment, and the partial one at least every --max-wal-delay.
    WalStream(WalStreamArgs),
    /// Send a notification to Slack, a webhook, PagerDuty, e-mail or a
    /// heartbeat (what the controller's notify Jobs run). Secrets are read
    /// from each target's directory, never from arguments.
    Notify(NotifyArgs),
    /// Print the CustomResourceDefinitions (crds/ holds this output).
    Crds,
    /// Run the operator: schedule BackupRuns, run their Jobs, write status.
    Controller(ControllerArgs),
}

impl Cli {
    /// Commands that stop gracefully on SIGTERM on their own (and drop
    /// their passfiles as they do): the operator and wal-stream.
    pub fn stops_gracefully(&self) -> bool {
        matches!(self.command, Command::Controller(_) | Command::WalStream(_))
    }
}

/// Runs one command. `Ok` carries the exit code of outcomes that are not
/// errors of the command itself (a failed check, WAL not archived); `Err`
/// is printed by `main` as `error: …` with exit 1.
pub async fn run(cli: Cli) -> Result<ExitCode, commands::Error> {
    match cli.command {
        Command::Backup(a) => backup::backup(a).await,
        Command::Restore(a) => restore::restore(a).await,
        Command::Plan(a) => restore::plan(a).await,
        Command::List(a) => backup::list(a).await,
        Command::Verify(a) => backup::verify(a).await,
        Command::Prune(a) => backup::prune(a).await,
        Command::Keygen(a) => backup::keygen(a),
        Command::Export(a) => objects::export(a).await,
        Command::WalPush(a) => wal::push(a).await,
        Command::WalFetch(a) => wal::fetch(a).await,
        Command::WalStream(a) => wal::stream(a).await,
        Command::Status(a) => operator::status(a).await,
        Command::Notify(a) => notify::notify(a).await,
        Command::Crds => operator::crds(),
        Command::Controller(a) => operator::controller(a).await,
    }
}
