//! Where a restore writes. Each kind of target is one module that prepares
//! the target once (refusing one that is not empty unless told otherwise),
//! loads the decoded parts it is handed through a [`Loader`], and removes
//! what it created when every destination failed. `commands::restore` and
//! `commands::pitr` keep what every kind shares: choosing the recovery point
//! across destinations, falling back from one destination to the next,
//! reporting.
//!
//! | kind | module | loads |
//! |---|---|---|
//! | PostgreSQL database | [`database`] | a `database` part (pg_restore), the `globals` part (psql) |
//! | PostgreSQL data directory | [`data_dir`] | the `base` part (tar), before recovery replays WAL |
//! | Kubernetes API | [`cluster`] (IO), [`objects`] (choice, order, mapping) | `objects-<type>` parts, one object per line |

pub mod bucket;
pub mod bucket_dir;
pub mod cloud;
pub mod cluster;
pub mod data_dir;
pub mod database;
pub mod files;
pub mod files_in_place;
pub mod frame_feed;
pub mod growing;
pub mod objects;
pub mod spool;

use std::os::fd::OwnedFd;
use std::process::Command;

use crate::source::child::{self, Failure, Stage};
use crate::source::postgres::{PassFile, PgError};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The target is not fit for the restore as asked; names what to change.
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} for {what} failed ({}): {}", .failure.tool, .failure.status, .failure.stderr)]
    Tool { what: String, failure: Failure },
}

impl TargetError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| TargetError::Io { what, source }
    }
}

/// A program that loads a part from its standard input (pg_restore, tar).
///
/// It must never see end-of-input before every byte has authenticated: a
/// second handle on its stdin is held until [`Loader::finish`], and
/// [`Loader::abort`] kills it before that handle closes, so a fault loads
/// nothing (pg_restore's single transaction rolls back; tar's partial tree
/// is removed by its target).
pub struct Loader {
    stage: Stage,
    hold: OwnedFd,
    input: Option<std::fs::File>,
    /// What it loads, for messages: the database, the base backup.
    what: String,
    /// The password file it reads, removed once it has exited.
    passfile: Option<PassFile>,
}

impl Loader {
    pub fn spawn(tool: &'static str, cmd: Command, what: String) -> Result<Self, TargetError> {
        let mut stage = Stage::spawn(tool, cmd).map_err(|source| PgError::Spawn {
            tool: tool.into(),
            source,
        })?;
        let stdin: OwnedFd = stage.child.stdin.take().expect("piped stdin").into();
        let hold = stdin.try_clone().map_err(TargetError::io(tool))?;
        Ok(Self {
            stage,
            hold,
            input: Some(std::fs::File::from(stdin)),
            what,
            passfile: None,
        })
    }

    /// Keeps the password file the program reads until it has exited.
    pub fn keeping(mut self, passfile: Option<PassFile>) -> Self {
        self.passfile = passfile;
        self
    }

    /// Where the decoded bytes go (once).
    pub fn input(&mut self) -> std::io::BufWriter<std::fs::File> {
        let file = self.input.take().expect("the loader's input is taken once");
        // A 1 MiB pipe (the unprivileged limit) instead of 64 KiB: the
        // writer blocks, and both sides switch, 16 times less often. Best
        // effort: a smaller pipe is only slower.
        let _ = rustix::pipe::fcntl_setpipe_size(&file, 1 << 20);
        std::io::BufWriter::with_capacity(1 << 20, file)
    }

    /// Everything authenticated: lets the program see end-of-input and waits
    /// for its verdict. Returns its stderr (notices).
    pub async fn finish(self) -> Result<String, TargetError> {
        let Loader {
            stage, hold, what, ..
        } = self;
        drop(hold);
        child::wait(stage)
            .await
            .map_err(|failure| TargetError::Tool { what, failure })
    }

    /// A fault upstream: kills the program unless it already exited, then
    /// waits. Returns the program's own failure when it died by itself (an
    /// SQL error says more than the broken pipe it caused upstream).
    pub async fn abort(self) -> Option<TargetError> {
        let Loader {
            mut stage,
            hold,
            what,
            ..
        } = self;
        if !matches!(stage.child.try_wait(), Ok(Some(_))) {
            stage.kill_now();
        }
        drop(hold);
        match child::wait(stage).await {
            Err(failure) if !failure.killed => Some(TargetError::Tool { what, failure }),
            _ => None,
        }
    }
}
