//! The WAL commands: wal-push and wal-fetch (PostgreSQL's archive_command
//! and restore_command), wal-stream.

use super::args::{self, WalFetchArgs, WalPushArgs, WalStreamArgs};
use crate::commands::{
    self,
    wal::{wal_fetch, wal_push, Fetched},
    wal_owed::Bound,
    wal_stream::{wal_stream, StreamOptions},
};
use std::process::ExitCode;
use std::sync::Arc;

/// `lifeboat wal-push %p --to …`.
pub async fn push(a: WalPushArgs) -> Result<ExitCode, commands::Error> {
    let w = a.archive;
    let keys = Arc::new(w.key.load()?);
    let bound = match (a.max_block, a.state_dir) {
        (Some(max_block), Some(state_dir)) => Some(Bound {
            max_block: max_block.to_std().unwrap_or_default(),
            state_dir,
        }),
        _ => None,
    };
    wal_push(
        &a.path,
        &w.to,
        keys,
        args::compression(w.compression),
        bound.as_ref(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat wal-fetch %f %p --from …`: its exit codes are what PostgreSQL
/// reads, so failures are codes here, not errors.
pub async fn fetch(a: WalFetchArgs) -> Result<ExitCode, commands::Error> {
    let keys = Arc::new(a.key.load()?);
    match wal_fetch(&a.name, &a.dest, &a.from, keys).await {
        Ok(Fetched::Restored) => Ok(ExitCode::SUCCESS),
        // PostgreSQL asks for files past the end of the archive: routine.
        Ok(Fetched::NotArchived) => Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e}");
            // Above 125: PostgreSQL aborts recovery instead of ending it early.
            Ok(ExitCode::from(126))
        }
    }
}

/// `lifeboat wal-stream`.
pub async fn stream(a: WalStreamArgs) -> Result<ExitCode, commands::Error> {
    wal_stream(StreamOptions {
        conn: a.conn.conn()?,
        maintenance_db: a.conn.maintenance_db,
        slot: a.slot,
        spool: a.spool,
        to: a.archive.to,
        keys: Arc::new(a.archive.key.load()?),
        compression: args::compression(a.archive.compression),
        max_delay: a.max_wal_delay,
        status_file: a.status_file,
        http_addr: a.http_addr,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
