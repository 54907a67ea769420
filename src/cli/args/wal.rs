//! Arguments of the WAL commands: wal-push, wal-fetch, wal-stream.

use super::{CompressionArg, ConnArgs, KeyArgs};
use crate::location::NamedLocation;
use clap::Args;
use std::path::PathBuf;

/// Where archived WAL goes and how it is sealed (wal-push, wal-stream).
#[derive(Args)]
pub struct WalArchiveArgs {
    /// Destination (repeat for several; all receive every file).
    #[arg(long = "to", required = true)]
    pub to: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
}

#[derive(Args)]
pub struct WalPushArgs {
    /// The WAL file (PostgreSQL's %p).
    pub path: PathBuf,
    #[command(flatten)]
    pub archive: WalArchiveArgs,
    /// Longest time one failing destination may hold up PostgreSQL's
    /// archiver (e.g. 10m): past it, the file goes to the others and is
    /// owed to it, copied over once it answers. Default: no bound, every
    /// destination takes every file.
    #[arg(long, value_parser = parse_max_block, requires = "state_dir")]
    pub max_block: Option<chrono::Duration>,
    /// Where wal-push remembers failing destinations and what it owes them
    /// (a directory of the server's own, outside its data directory).
    #[arg(long, requires = "max_block")]
    pub state_dir: Option<PathBuf>,
}

fn parse_max_block(text: &str) -> Result<chrono::Duration, String> {
    crate::api::parse_duration(text)
        .filter(|d| *d >= chrono::Duration::zero())
        .ok_or_else(|| format!("{text:?} is not a duration such as 0s, 5m or 1h"))
}

#[derive(Args)]
pub struct WalFetchArgs {
    /// The WAL file name wanted (PostgreSQL's %f).
    pub name: String,
    /// Where to write it (PostgreSQL's %p).
    pub dest: PathBuf,
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args)]
pub struct WalStreamArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Local directory pg_receivewal writes into; files leave it once every
    /// destination has them.
    #[arg(long)]
    pub spool: PathBuf,
    /// Physical replication slot (created when missing).
    #[arg(long, default_value = "lifeboat")]
    pub slot: String,
    #[command(flatten)]
    pub archive: WalArchiveArgs,
    /// Longest time received WAL may wait before it is in every destination
    /// (the partial segment is shipped this often): `60s`, `5s`, `1m`.
    #[arg(long, default_value = "60s", value_parser = parse_max_wal_delay)]
    pub max_wal_delay: chrono::Duration,
    /// Rewrite this JSON file (atomically) after every pass:
    /// {lastSegment, lastShippedAt, lagSeconds, partialBytes}.
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Serve `/status` (the same JSON, read by the operator), `/metrics` and
    /// `/healthz` on this address, e.g. 0.0.0.0:8081.
    #[arg(long)]
    pub http_addr: Option<std::net::SocketAddr>,
}

fn parse_max_wal_delay(text: &str) -> Result<chrono::Duration, String> {
    crate::api::parse_duration(text)
        .filter(|d| *d > chrono::Duration::zero())
        .ok_or_else(|| format!("{text:?} is not a duration above zero such as 5s, 60s or 1m"))
}
