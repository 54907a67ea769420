//! A PostgreSQL database as a restore target: created when asked, refused
//! when it holds objects unless `--clean`, loaded by pg_restore in one
//! transaction, and dropped again only if this restore created it and
//! nothing was loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Loader, TargetError};
use crate::catalog::SourceInfo;
use crate::source::child::{self, Stage};
use crate::source::postgres::majors::{self, Rule};
use crate::source::postgres::programs::server_major;
use crate::source::postgres::{self, Need, PgConn, PgError, RestoreInput};

/// The server, and what the restore may do to it.
#[derive(Clone)]
pub struct DatabaseTarget {
    pub conn: PgConn,
    /// The database lifeboat connects to to create or drop the target.
    pub maintenance_db: String,
    /// Create the target database when it does not exist.
    pub create: bool,
    /// Replace the contents of a target that holds objects.
    pub clean: bool,
    pub no_owner: bool,
}

/// What one restore did to its target across attempts: prepared once,
/// dropped only if it created it and every attempt failed.
#[derive(Default)]
pub struct Prepared {
    database: Option<String>,
    created: bool,
    /// pg_restore was given the whole dump: it may have committed, so the
    /// database may hold the restore whatever its exit says.
    handed_over: bool,
}

impl Prepared {
    /// Whether this restore created the database (and may drop it again).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Lets pg_restore see the end of the dump and waits for its verdict.
    /// From here on the database is never dropped by this restore.
    pub async fn hand_over(&mut self, loader: Loader) -> Result<String, TargetError> {
        self.handed_over = true;
        loader.finish().await
    }
}

impl DatabaseTarget {
    /// This target with the programs a restore of `source` needs, once the
    /// direction is checked: a dump goes into a server of its own major or a
    /// newer one, and is read by a pg_restore at least as new as the pg_dump
    /// that wrote it (its archive format): the target server's own when it
    /// can (a newer one may send settings an older server refuses), else
    /// the newest.
    pub async fn for_backup(&self, source: &SourceInfo) -> Result<DatabaseTarget, TargetError> {
        let Some(pg) = source.postgres() else {
            return Ok(self.clone());
        };
        let db = &self.maintenance_db;
        let mut c = self.conn.connect(db).await?;
        let target = server_major(&mut c, db).await;
        postgres::close(c).await;
        let target = target?;
        let backup = majors::major_of(&pg.server_version);
        if let Some(backup) = backup {
            majors::restore_direction(backup, target).map_err(TargetError::Refused)?;
        }
        let (archive, why) = match pg.client_version.as_deref() {
            Some(v) => (
                majors::major_of(v),
                format!("to read a dump made by pg_dump {v}"),
            ),
            None => (
                backup,
                format!("to read a dump of PostgreSQL {}", pg.server_version),
            ),
        };
        let conn = self.conn.with_programs(&Need {
            tool: "pg_restore",
            rule: Rule::Prefer {
                major: target,
                at_least: archive.unwrap_or(target),
            },
            why,
        })?;
        Ok(DatabaseTarget {
            conn,
            ..self.clone()
        })
    }

    /// Checks (and creates, when asked) the target database, once per restore.
    pub async fn prepare(&self, db: &str, state: &mut Prepared) -> Result<(), TargetError> {
        if state.database.as_deref() == Some(db) {
            return Ok(());
        }
        let mut c = self.conn.connect(&self.maintenance_db).await?;
        let exists = postgres::database_exists(&mut c, &self.maintenance_db, db).await?;
        if !exists {
            if !self.create {
                postgres::close(c).await;
                return Err(TargetError::Refused(format!(
                    "target database {db:?} does not exist on {}; pass --create to create it",
                    self.conn.host_label()
                )));
            }
            postgres::create_database(&mut c, &self.maintenance_db, db).await?;
            state.created = true;
            tracing::info!(database = %db, "created the target database");
        }
        postgres::close(c).await;
        if exists {
            let mut c = self.conn.connect(db).await?;
            let n = postgres::user_objects(&mut c, db).await?;
            postgres::close(c).await;
            if n > 0 && !self.clean {
                return Err(TargetError::Refused(format!(
                    "target database {db:?} is not empty ({n} objects); pass --clean to replace its contents"
                )));
            }
        }
        state.database = Some(db.to_string());
        Ok(())
    }

    /// Drops the database if this restore created it and nothing may have
    /// been loaded into it (every attempt failed before the hand-over).
    pub async fn discard(&self, state: &Prepared) {
        if let (true, Some(db)) = (state.created, &state.database) {
            if state.handed_over {
                tracing::warn!(database = %db, "kept the database: pg_restore had the whole dump and may have committed it; check it, or drop it and restore again");
                return;
            }
            if let Err(e) = self.drop_database(db).await {
                tracing::warn!(database = %db, error = %e, "could not drop the database this restore created");
            }
        }
    }

    pub async fn drop_database(&self, db: &str) -> Result<(), PgError> {
        let mut c = self.conn.connect(&self.maintenance_db).await?;
        postgres::drop_database(&mut c, &self.maintenance_db, db).await?;
        postgres::close(c).await;
        Ok(())
    }

    /// Starts pg_restore into `db`; the caller feeds it the decoded dump.
    /// `input` is [`RestoreInput::Stream`] or, for the first half of a
    /// parallel restore, [`RestoreInput::StreamWithoutPostData`].
    pub fn loader(&self, db: &str, input: &RestoreInput) -> Result<Loader, TargetError> {
        let passfile = self.conn.passfile()?;
        let cmd = self
            .conn
            .pg_restore(db, input, self.clean, self.no_owner, passfile.as_ref());
        Ok(Loader::spawn("pg_restore", cmd, db.to_string())?.keeping(passfile))
    }

    /// Builds the post-data section (indexes, constraints, triggers) of an
    /// authenticated local copy of the dump into `db`, which this restore
    /// created and whose tables and rows are loaded, over `jobs`
    /// connections. Not one transaction: on failure the caller's discard
    /// drops the database; on success nothing later drops it. Returns
    /// pg_restore's notices.
    pub async fn build_post_data(
        &self,
        db: &str,
        dump: &Path,
        jobs: u32,
        state: &mut Prepared,
    ) -> Result<String, TargetError> {
        let passfile = self.conn.passfile()?;
        let input = RestoreInput::ParallelPostData { file: dump, jobs };
        let cmd = self
            .conn
            .pg_restore(db, &input, self.clean, self.no_owner, passfile.as_ref());
        let stage = Stage::spawn("pg_restore", cmd).map_err(|source| PgError::Spawn {
            tool: "pg_restore".into(),
            source,
        })?;
        let done = child::wait(stage).await;
        drop(passfile);
        let notes = done.map_err(|failure| TargetError::Tool {
            what: db.to_string(),
            failure,
        })?;
        state.handed_over = true;
        Ok(notes)
    }

    /// Applies the globals (roles, tablespaces): SQL that has already
    /// authenticated whole. Statements for roles that exist already fail
    /// harmlessly on a live server and are only counted.
    pub async fn apply_globals(&self, sql: Vec<u8>) -> Result<(), TargetError> {
        let failed = self.run_sql("globals", sql).await?;
        for l in &failed {
            tracing::warn!(line = %l, "a globals statement failed");
        }
        tracing::info!("applied the globals (roles, tablespaces)");
        Ok(())
    }

    /// The database's own owner, settings (`ALTER DATABASE … SET`), ACL and
    /// comment, which pg_restore into an existing database skips: read from
    /// the archive's head (its table of contents, where pg_dump --create put
    /// them) and applied by name. Says what happened, for the report.
    pub async fn apply_properties(&self, head: &Path) -> Result<String, TargetError> {
        let listing = self.toc(head, None).await?;
        let entries: Vec<&str> = listing.lines().filter(|l| is_database_entry(l)).collect();
        if entries.is_empty() {
            return Ok("not in this backup (made before lifeboat recorded them)".into());
        }
        let list = head.with_extension("list");
        std::fs::write(&list, entries.join("\n") + "\n")
            .map_err(TargetError::io("the TOC list"))?;
        let sql = self.toc(head, Some(&list)).await?;
        // The CREATE DATABASE that --create always prints fails: it exists.
        let failed = self
            .run_sql("database properties", sql.into_bytes())
            .await?;
        if failed.is_empty() {
            Ok(format!(
                "restored ({} entries: owner, settings, ACL, comment)",
                entries.len()
            ))
        } else {
            for l in &failed {
                tracing::warn!(line = %l, "a database property was not restored");
            }
            Ok(format!("partly restored: {}", failed.join("; ")))
        }
    }

    /// pg_restore over the archive's head: its listing, or the SQL of `list`.
    async fn toc(&self, head: &Path, list: Option<&Path>) -> Result<String, TargetError> {
        let mut cmd = self.conn.pg_restore_toc(head, list);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(TargetError::io("pg_restore"))?;
        if !out.status.success() {
            return Err(TargetError::Refused(format!(
                "pg_restore could not read the archive's table of contents: {}",
                child::withhold_row_values(String::from_utf8_lossy(&out.stderr).trim())
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs SQL through psql on the maintenance database, going on after
    /// errors; returns the errors other than "already exists".
    async fn run_sql(&self, what: &str, sql: Vec<u8>) -> Result<Vec<String>, TargetError> {
        let passfile = self.conn.passfile()?;
        let cmd = self
            .conn
            .psql_globals(&self.maintenance_db, passfile.as_ref());
        let mut stage = Stage::spawn("psql", cmd).map_err(|source| PgError::Spawn {
            tool: "psql".into(),
            source,
        })?;
        let mut stdin = stage.child.stdin.take().expect("piped stdin");
        let fed =
            tokio::task::spawn_blocking(move || std::io::Write::write_all(&mut stdin, &sql)).await;
        let done = child::wait(stage).await;
        fed.map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(TargetError::io("psql's input"))?;
        let notes = done.map_err(|failure| TargetError::Tool {
            what: what.into(),
            failure,
        })?;
        Ok(notes
            .lines()
            .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
            .map(str::to_string)
            .collect())
    }
}

/// A `pg_restore --list` line of the database's own entries (the first
/// three fields are ids; the rest is type and name).
fn is_database_entry(line: &str) -> bool {
    let rest = line.splitn(4, ' ').nth(3).unwrap_or_default();
    [
        "DATABASE PROPERTIES - ",
        "ACL - DATABASE ",
        "COMMENT - DATABASE ",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
}

/// The first bytes of a dump, kept aside in a private directory as
/// pg_restore reads the dump: the archive's table of contents comes first.
pub struct Head {
    dir: PathBuf,
}

/// Enough for the table of contents of tens of thousands of objects.
const HEAD_BYTES: usize = 16 << 20;

impl Head {
    pub fn new() -> std::io::Result<Head> {
        use std::os::unix::fs::DirBuilderExt;
        let r: [u8; 8] = crate::keys::random_bytes();
        let dir = std::env::temp_dir().join(format!("lifeboat-head-{}", hex::encode(r)));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Head { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("head")
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `inner`, with its first [`HEAD_BYTES`] also written to a [`Head`] when
/// there is one.
pub struct HeadTee<W> {
    inner: W,
    file: Option<std::fs::File>,
    left: usize,
}

impl<W> HeadTee<W> {
    pub fn new(inner: W, head: Option<&Head>) -> std::io::Result<Self> {
        Ok(HeadTee {
            inner,
            file: head.map(|h| std::fs::File::create(h.path())).transpose()?,
            left: HEAD_BYTES,
        })
    }
}

impl<W: Write> Write for HeadTee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let k = n.min(self.left);
        if let (true, Some(file)) = (k > 0, self.file.as_mut()) {
            file.write_all(&buf[..k])?;
            self.left -= k;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
