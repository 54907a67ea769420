//! The argument structs of `lifeboat`'s subcommands, grouped as the
//! commands are, and the pieces several of them flatten in.

mod backup;
mod cloud;
mod config;
mod notify;
mod operator;
mod wal;

pub use backup::{
    BackupArgs, KeygenArgs, ListArgs, MethodArg, PlanArgs, PruneArgs, RestoreArgs, VerifyArgs,
};
pub use config::{ConfigBackupArgs, ConfigRestoreArgs, ExportArgs};
pub use notify::NotifyArgs;
pub use operator::{ControllerArgs, OutputArg, StatusArgs};
pub use wal::{WalFetchArgs, WalPushArgs, WalStreamArgs};

use crate::commands;
use crate::keys::{KeyError, Keyring};
use crate::owner::Owner;
use crate::pipeline::header::Compression;
use crate::source::postgres::{PgConn, Programs, Secret};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// Where PostgreSQL is. Unset values come from libpq's environment
/// (PGHOST, PGPORT, PGUSER, PGPASSFILE, PGPASSWORD, PGSSLMODE).
#[derive(Args, Clone)]
pub struct ConnArgs {
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the password (never pass a password on the command line).
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// One directory of PostgreSQL's programs, used whatever the server's
    /// major (overrides --pg-root).
    #[arg(long, env = "LIFEBOAT_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Directory of one `<major>/bin` per PostgreSQL major; lifeboat runs
    /// the major each server needs [default: /usr/lib/postgresql when it
    /// exists, else PATH].
    #[arg(long, env = "LIFEBOAT_PG_ROOT")]
    pub pg_root: Option<PathBuf>,
    /// Database for server-level queries.
    #[arg(long, default_value = "postgres")]
    pub maintenance_db: String,
}

impl ConnArgs {
    pub fn conn(&self) -> Result<PgConn, commands::Error> {
        Ok(PgConn {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self
                .password_file
                .as_deref()
                .map(Secret::from_file)
                .transpose()?,
            programs: Programs::from_args(self.pg_bin.clone(), self.pg_root.clone()),
            bin_dir: None,
        })
    }
}

#[derive(Args)]
pub struct KeyArgs {
    /// Master key file (`lifeboat keygen`); the first key encrypts, all decrypt.
    #[arg(long, env = "LIFEBOAT_KEY_FILE")]
    pub key_file: PathBuf,
    #[command(flatten)]
    pub owner: OwnerArg,
}

impl KeyArgs {
    pub fn load(&self) -> Result<Keyring, KeyError> {
        self.owner.load(&self.key_file)
    }
}

#[derive(Args)]
pub struct OwnerArg {
    /// Whose backups these are, `<namespace>/<policy>`: backups record it,
    /// and a manifest of anyone else's is refused (the operator sets it on
    /// every Job; a backup copied between policies sharing a key fails).
    #[arg(long, env = "LIFEBOAT_OWNER")]
    pub owner: Option<Owner>,
}

impl OwnerArg {
    /// The key file's keys, vouching only for this owner's backups.
    pub fn load(&self, key_file: &Path) -> Result<Keyring, KeyError> {
        Ok(Keyring::load(key_file)?.for_owner(self.owner.clone()))
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

/// The pipeline's compression for a `--compression` value.
pub fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::None => Compression::None,
    }
}
