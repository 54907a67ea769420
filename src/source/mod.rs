//! What lifeboat backs up and restores into. Each kind of source is one
//! module that says what a backup of it is made of — its [`Part`]s, each a
//! named stream of bytes with a role — and, once every part is stored,
//! describes what was backed up for the manifest ([`SourceInfo`]).
//! `commands::backup` does the rest, the same for every kind: seal each part
//! into every destination, write the manifest last, report.
//!
//! | kind | module | parts |
//! |---|---|---|
//! | PostgreSQL, logical | [`postgres::logical`] | `globals` (pg_dumpall), `db-<n>` (pg_dump per database) |
//! | PostgreSQL, physical | [`postgres::physical`] | `base` (pg_basebackup's tar) |

pub mod child;
pub mod files;
pub mod postgres;

use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::catalog::{PhysicalInfo, SourceInfo};
use child::{Failure, Stage};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Pg(#[from] postgres::PgError),
    /// The source cannot be backed up as asked; says why and what to change.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    #[error("{} for {what} failed ({}): {}", .failure.tool, .failure.status, .failure.stderr)]
    Tool { what: String, failure: Failure },
}

/// One object of a backup, as its source produces it.
pub struct Part {
    /// The object's name in the backup (`db-0`, `globals`, `base`).
    pub name: String,
    /// What the object is, for restores: `database`, `globals`, `base`.
    pub role: &'static str,
    /// The database it holds, when it holds one.
    pub database: Option<String>,
    /// Where its bytes come from.
    pub producer: Producer,
    /// Keeps the first bytes read here, for the source's own use afterwards
    /// (pg_basebackup's backup_label).
    pub head: Option<Arc<Mutex<Vec<u8>>>>,
}

/// The bytes of a part: a tool's standard output.
pub enum Producer {
    Tool { tool: &'static str, cmd: Command },
}

impl Part {
    /// What logs and progress call it: the database, or the part's name.
    pub fn what(&self) -> &str {
        self.database.as_deref().unwrap_or(&self.name)
    }

    /// The program that produces it, for progress lines.
    pub fn tool(&self) -> &'static str {
        match &self.producer {
            Producer::Tool { tool, .. } => tool,
        }
    }

    /// Starts producing: the running stage (waited on for its verdict once
    /// its output is read to the end) and its output.
    pub fn start(&mut self) -> Result<(Stage, std::process::ChildStdout), SourceError> {
        let Producer::Tool { tool, cmd } = &mut self.producer;
        let tool = *tool;
        let mut stage =
            Stage::spawn(tool, std::mem::replace(cmd, Command::new("true"))).map_err(|source| {
                postgres::PgError::Spawn {
                    tool: tool.to_string(),
                    source,
                }
            })?;
        let stdout = stage.child.stdout.take().expect("piped stdout");
        Ok((stage, stdout))
    }

    /// The error for this part's producer having failed.
    pub fn failed(&self, failure: Failure) -> SourceError {
        SourceError::Tool {
            what: self.what().to_string(),
            failure,
        }
    }
}

/// What the manifest records of the source once the backup is stored.
pub struct Described {
    pub info: SourceInfo,
    pub physical: Option<PhysicalInfo>,
}

/// A source to back up, one variant per kind; the one place that matches on it.
pub enum Source {
    PostgresLogical(postgres::logical::Logical),
    PostgresPhysical(postgres::physical::Physical),
}

impl Source {
    /// Checks the source can be backed up and lists the parts, in order.
    pub async fn parts(&mut self, backup_id: &str) -> Result<Vec<Part>, SourceError> {
        match self {
            Source::PostgresLogical(s) => s.parts().await,
            Source::PostgresPhysical(s) => s.parts(backup_id).await,
        }
    }

    /// Describes what was backed up, after every part is stored.
    pub async fn describe(self) -> Result<Described, SourceError> {
        match self {
            Source::PostgresLogical(s) => s.describe().await,
            Source::PostgresPhysical(s) => s.describe().await,
        }
    }
}
