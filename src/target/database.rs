//! A PostgreSQL database as a restore target: created when asked, refused
//! when it holds objects unless `--clean`, loaded by pg_restore in one
//! transaction, and dropped again only if this restore created it and
//! nothing was loaded.

use super::{Loader, TargetError};
use crate::source::child::{self, Stage};
use crate::source::postgres::{self, PgConn, PgError};

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
}

impl DatabaseTarget {
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

    /// Drops the database if this restore created it (every attempt failed).
    pub async fn discard(&self, state: &Prepared) {
        if let (true, Some(db)) = (state.created, &state.database) {
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
    pub fn loader(&self, db: &str) -> Result<Loader, TargetError> {
        let passfile = self.conn.passfile()?;
        let cmd = self
            .conn
            .pg_restore(db, self.clean, self.no_owner, passfile.as_ref());
        Ok(Loader::spawn("pg_restore", cmd, db.to_string())?.keeping(passfile))
    }

    /// Applies the globals (roles, tablespaces): SQL that has already
    /// authenticated whole. Statements for roles that exist already fail
    /// harmlessly on a live server and are only counted.
    pub async fn apply_globals(&self, sql: Vec<u8>) -> Result<(), TargetError> {
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
            what: "globals".into(),
            failure,
        })?;
        let existing = notes
            .lines()
            .filter(|l| l.contains("already exists"))
            .count();
        for l in notes
            .lines()
            .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
        {
            tracing::warn!(line = %l, "a globals statement failed");
        }
        tracing::info!(
            already_existing = existing,
            "applied the globals (roles, tablespaces)"
        );
        Ok(())
    }
}
