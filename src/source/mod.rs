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
//! | Kubernetes objects | [`config`] | `objects-<type>` (JSON lines, one part per resource type) |

pub mod bucket;
pub mod child;
pub mod config;
pub mod files;
pub mod postgres;

pub mod stream;

use std::io::Read;
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
    #[error(transparent)]
    Config(#[from] config::ConfigError),
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

/// The bytes of a part: a tool's standard output, or a task of this
/// process (a listing of API objects) sending them through a channel.
pub enum Producer {
    Tool {
        tool: &'static str,
        cmd: Command,
    },
    Task {
        what: &'static str,
        task: Option<stream::Task>,
    },
}

/// A producer once started: waited on for its verdict after its output was
/// read to the end, or stopped.
pub enum Running {
    Tool { what: String, stage: Stage },
    Task(tokio::task::JoinHandle<Result<(), SourceError>>),
}

impl Running {
    /// Stops it: the backup failed elsewhere.
    pub fn kill(self) {
        match self {
            Running::Tool { stage, .. } => stage.kill(),
            Running::Task(t) => t.abort(),
        }
    }

    /// Its verdict; a tool's non-zero exit fails the part even if its
    /// output looked complete.
    pub async fn wait(self) -> Result<(), SourceError> {
        match self {
            Running::Tool { what, stage } => child::wait(stage)
                .await
                .map(|_| ())
                .map_err(|failure| SourceError::Tool { what, failure }),
            Running::Task(t) => t
                .await
                .map_err(|e| SourceError::Refused(format!("the producing task failed: {e}")))?,
        }
    }
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
            Producer::Task { what, .. } => what,
        }
    }

    /// Starts producing: the running producer (waited on for its verdict
    /// once its output is read to the end) and its output.
    pub fn start(&mut self) -> Result<(Running, Box<dyn Read + Send>), SourceError> {
        let what = self.what().to_string();
        match &mut self.producer {
            Producer::Tool { tool, cmd } => {
                let tool = *tool;
                let mut stage = Stage::spawn(tool, std::mem::replace(cmd, Command::new("true")))
                    .map_err(|source| postgres::PgError::Spawn {
                        tool: tool.to_string(),
                        source,
                    })?;
                let stdout = stage.child.stdout.take().expect("piped stdout");
                Ok((Running::Tool { what, stage }, Box::new(stdout)))
            }
            Producer::Task { task, .. } => {
                let task = task.take().expect("a part is started once");
                let (handle, reader) = task.spawn();
                Ok((Running::Task(handle), Box::new(reader)))
            }
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
    Config(config::Config),
}

impl Source {
    /// Checks the source can be backed up and lists the parts, in order.
    pub async fn parts(&mut self, backup_id: &str) -> Result<Vec<Part>, SourceError> {
        match self {
            Source::PostgresLogical(s) => s.parts().await,
            Source::PostgresPhysical(s) => s.parts(backup_id).await,
            Source::Config(s) => s.parts().await,
        }
    }

    /// Describes what was backed up, after every part is stored.
    pub async fn describe(self) -> Result<Described, SourceError> {
        match self {
            Source::PostgresLogical(s) => s.describe().await,
            Source::PostgresPhysical(s) => s.describe().await,
            Source::Config(s) => s.describe().await,
        }
    }
}
