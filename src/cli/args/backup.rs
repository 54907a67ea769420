//! Arguments of the commands on backups: backup, restore, plan, list,
//! verify, prune, keygen.

use super::{CompressionArg, ConnArgs, KeyArgs, OwnerArg};
use crate::catalog::Point;
use crate::commands;
use crate::location::NamedLocation;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    Logical,
    Physical,
}

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub objects: super::ConfigBackupArgs,
    /// `logical` (pg_dump per database) or `physical` (pg_basebackup of the
    /// whole cluster, for point-in-time restore; needs WAL archiving with wal-push).
    #[arg(long, value_enum, default_value = "logical")]
    pub method: MethodArg,
    /// Database to back up (repeat for several).
    #[arg(
        long = "database",
        short = 'd',
        required_unless_present_any = ["all_databases", "method", "path", "bucket", "config"]
    )]
    pub databases: Vec<String>,
    /// Back up the files under this directory (a PVC's mount) into the
    /// chunk store, instead of a database.
    #[arg(long, conflicts_with_all = ["databases", "all_databases", "no_globals"])]
    pub path: Option<PathBuf>,
    /// Back up the objects of this bucket (s3://bucket/prefix?region=…
    /// [&endpoint=…][&credentials=DIR]) into the chunk store.
    #[arg(long, conflicts_with_all = ["databases", "all_databases", "no_globals", "path"])]
    pub bucket: Option<crate::location::Location>,
    /// With --path: only files and links matching one of these globs
    /// (relative to --path, repeat for several); directories are always kept.
    #[arg(long)]
    pub include: Vec<String>,
    /// With --path: leave out what matches (and everything under it).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// With --path: read every file, even those unchanged since the previous
    /// backup (the weekly and monthly tiers).
    #[arg(long)]
    pub full: bool,
    /// With --path: leave out files that cannot be read and list them in
    /// the report, instead of failing.
    #[arg(long, requires = "path")]
    pub skip_unreadable: bool,
    /// With --path: close packs at this many bytes (default 32 MiB).
    #[arg(long, hide = true)]
    pub pack_size: Option<u64>,
    /// Every database that accepts connections.
    #[arg(long, conflicts_with = "databases")]
    pub all_databases: bool,
    /// Leave out roles and tablespaces (pg_dumpall --globals-only).
    #[arg(long)]
    pub no_globals: bool,
    /// Destination: s3://bucket/prefix?region=R[&endpoint=URL] or file:///path (repeat for several).
    #[arg(long = "to", required = true)]
    pub to: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
    /// Policy name recorded in the manifest (default: the --owner's policy,
    /// else `manual`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Tier recorded in the manifest (daily, weekly, monthly, manual).
    #[arg(long, default_value = "manual")]
    pub tier: String,
    /// Commit in the destinations that succeeded when others fail (default: all or nothing).
    #[arg(long)]
    pub allow_partial: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    pub report_file: Option<PathBuf>,
    /// After committing, read the backup back from every destination and
    /// check every byte (as `lifeboat verify`); exit 1 when any check fails.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub objects: super::ConfigRestoreArgs,
    /// Where the backup is, in order of preference (repeat for fallbacks).
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// `latest`, a backup id, or an RFC 3339 time (newest backup completed by then).
    #[arg(long, default_value = "latest")]
    pub backup: Point,
    /// Which database of the backup (when it holds several).
    #[arg(long)]
    pub database: Option<String>,
    /// Every database of the backup, each under its own name (a whole
    /// server back: add --globals --create), one by one, each reported.
    #[arg(long, conflicts_with_all = ["database", "target_db", "checks", "drop_after"])]
    pub all_databases: bool,
    /// Database to restore into (default: the source database's name).
    #[arg(long)]
    pub target_db: Option<String>,
    /// Create the target database when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Replace the contents of a non-empty target (default: refuse).
    #[arg(long)]
    pub clean: bool,
    /// Do not restore ownership and grants (a server without the same roles).
    #[arg(long)]
    pub no_owner: bool,
    /// First recreate the backup's roles and tablespaces (a fresh server).
    #[arg(long)]
    pub globals: bool,
    /// pg_restore connections, or `auto` (the CPUs this process may use, at
    /// most 8; the operator's restore Jobs pass it). Above 1, a database this
    /// restore creates is loaded over N connections from a local copy of the
    /// dump (disk: its size) as the copy is written, its indexes and
    /// constraints built once the copy authenticated whole; it is dropped
    /// if anything fails. An existing database, or too little disk, loads
    /// in one transaction instead. Default 1: one transaction.
    #[arg(long, default_value = "1", value_parser = parse_jobs)]
    pub jobs: u32,
    /// Directory for that copy (default: TMPDIR).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Point-in-time restore: unpack the newest physical base backup that
    /// reaches the target into this empty (or absent) directory and recover
    /// it from the WAL archive (the --from destinations) to the target.
    #[arg(long, conflicts_with_all = ["backup", "database", "all_databases", "target_db", "create", "clean", "no_owner", "globals"])]
    pub data_dir: Option<PathBuf>,
    /// Recover up to this time (RFC 3339), including transactions committed at it.
    #[arg(long, requires = "data_dir", conflicts_with = "target_lsn")]
    pub target_time: Option<String>,
    /// Recover up to this WAL position (like 0/3000028), inclusive.
    #[arg(long, requires = "data_dir")]
    pub target_lsn: Option<String>,
    /// Only prepare the directory (base backup, recovery.signal, settings);
    /// recovery runs when PostgreSQL is next started there.
    #[arg(long, requires = "data_dir")]
    pub no_start: bool,
    /// Restore a file backup into this directory, which must be new or
    /// empty; nothing appears there unless every file restored.
    #[arg(long, conflicts_with_all = ["data_dir", "database", "all_databases", "target_db", "create", "clean", "no_owner", "globals", "checks", "drop_after"])]
    pub to_dir: Option<PathBuf>,
    /// Restore a bucket backup into this bucket (s3://bucket/prefix?region=…).
    #[arg(long, conflicts_with_all = ["to_dir", "data_dir", "database", "all_databases", "target_db", "create", "clean", "no_owner", "globals", "checks", "drop_after"])]
    pub to_bucket: Option<crate::location::Location>,
    /// With --to-dir or --to-bucket, for a path or key the target already
    /// has: never replace it, replace it if the backup's copy is newer
    /// (mtime; --to-dir only), or always. With --to-dir it restores into an
    /// existing directory.
    #[arg(long, value_enum)]
    pub overwrite: Option<crate::target::files_in_place::Overwrite>,
    /// With --to-dir: also remove what the backup does not hold (under
    /// --path, when given). Restores into an existing directory.
    #[arg(long, requires = "to_dir")]
    pub delete_extra: bool,
    /// With --to-dir or --to-bucket: restore only this path (a key prefix
    /// for buckets; relative; repeat for several).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Leave the promoted server running after recovery (default: stop it cleanly).
    #[arg(long, requires = "data_dir", conflicts_with = "no_start")]
    pub keep_running: bool,
    /// Owner of the restored data directory and user of the postmaster
    /// (PostgreSQL refuses root); default: the current user.
    #[arg(long, requires = "data_dir")]
    pub run_as: Option<String>,
    /// Port of the restored server while lifeboat runs it (its socket's
    /// name; on TCP only with --keep-running).
    #[arg(long = "server-port", requires = "data_dir", default_value_t = 5432)]
    pub server_port: u16,
    #[arg(long)]
    pub json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    pub report_file: Option<PathBuf>,
    /// SQL run against the restored database afterwards (repeat); each must
    /// succeed and, when it returns a boolean, return true.
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Drop the target database after the checks (a restore drill's scratch database).
    #[arg(long)]
    pub drop_after: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    /// Destinations in order of preference (repeat).
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// `latest`, a backup id, or an RFC 3339 time (newest backup completed by then).
    #[arg(long, default_value = "latest")]
    pub backup: Point,
    /// Database the restore would go into (default: the backup's one database).
    #[arg(long)]
    pub target_db: Option<String>,
    /// `full`: read back every object of the chosen copy; `quick`: check each
    /// is there with its size (the restore authenticates every byte anyway).
    #[arg(long, value_enum, default_value = "full")]
    pub verify: commands::plan::Depth,
    /// The newest backup id known to exist (the operator passes the one it
    /// recorded): with `latest`, fail if no destination shows it or newer.
    #[arg(long)]
    pub newest_known: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    pub report_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    /// Check each manifest's MAC with this key file.
    #[arg(long, env = "LIFEBOAT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    #[command(flatten)]
    pub owner: OwnerArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// `latest`, a backup id, an RFC 3339 time, or `all`.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    /// Backup id to delete (repeat for several).
    #[arg(long = "backup")]
    pub backups: Vec<String>,
    /// Also remove what interrupted backups left (incomplete uploads, objects without a manifest).
    #[arg(long)]
    pub incomplete: bool,
    /// Key file: WAL no kept base backup needs is deleted only after every
    /// manifest authenticated with it (without it, WAL is kept).
    #[arg(long, env = "LIFEBOAT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// With --key-file: packs of file backups that no kept backup needs are
    /// deleted once the run that wrote them started longer ago than this.
    #[arg(long, default_value = "24h")]
    pub grace: String,
    #[command(flatten)]
    pub owner: OwnerArg,
    #[arg(long)]
    pub json: bool,
    /// Also write a compact JSON report here (a Job's /dev/termination-log).
    #[arg(long)]
    pub report_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Key id recorded in every object it encrypts (A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub id: String,
    /// Key file to write (mode 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// Put the new key first in an existing file (rotation: old keys still decrypt).
    #[arg(long)]
    pub add: bool,
}

/// `--jobs`: 1 to 64, or `auto`: the CPUs this process may use (in a pod its
/// CPU limit, which the standard library reads from the cgroup), at most 8.
fn parse_jobs(s: &str) -> Result<u32, String> {
    if s == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(8) as u32));
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("{s:?}: expected a number from 1 to 64, or auto")),
    }
}
