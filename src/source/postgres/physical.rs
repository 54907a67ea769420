//! A physical backup of PostgreSQL: pg_basebackup's tar of the whole data
//! directory as one part (`base`), for point-in-time recovery.
//!
//! It runs with `-X none`: the server then waits, before the backup ends,
//! until every WAL file the backup needs is archived, so a committed base
//! backup is always restorable from the archive (and smaller). So the
//! server's WAL archiving is checked first: a failing archive_command would
//! make the backup wait forever.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::majors::Rule;
use super::programs::server_major;
use super::{
    archive_failing, close, server_version, setting, streaming_slots, wal_position, Need, PassFile,
    PgConn,
};
use crate::catalog::{PgMethod, PhysicalInfo, PostgresInfo, SourceInfo};
use crate::recovery;
use crate::source::{Described, Part, Producer, SourceError};

pub struct Physical {
    pub conn: PgConn,
    /// Database to connect to for the server's settings and positions.
    pub maintenance_db: String,
    passfile: Option<PassFile>,
    version: String,
    started_at: DateTime<Utc>,
    head: Arc<Mutex<Vec<u8>>>,
}

impl Physical {
    pub fn new(conn: PgConn, maintenance_db: String) -> Self {
        Self {
            conn,
            maintenance_db,
            passfile: None,
            version: String::new(),
            started_at: Utc::now(),
            head: Arc::default(),
        }
    }

    pub(crate) async fn parts(&mut self, backup_id: &str) -> Result<Vec<Part>, SourceError> {
        let db = &self.maintenance_db;
        let mut c = self.conn.connect(db).await?;
        let archive_mode = setting(&mut c, db, "archive_mode").await?;
        let failing = archive_failing(&mut c, db).await?;
        let streamed = streaming_slots(&mut c, db).await?;
        self.version = server_version(&mut c, db).await?;
        let major = server_major(&mut c, db).await?;
        close(c).await;
        // A base backup is restorable only by a server of its own major, and
        // pg_basebackup of that major is what it is recorded as.
        self.conn = self.conn.with_programs(&Need {
            tool: "pg_basebackup",
            rule: Rule::Exactly(major),
            why: format!(
                "for the PostgreSQL {major} server at {}",
                self.conn.host_label()
            ),
        })?;
        if let Some(wal) = failing {
            return Err(SourceError::Refused(format!(
                "--method physical: {}'s archive_command is failing (last on {wal}; see the server log): \
                 the base backup would wait for its WAL forever",
                self.conn.host_label()
            )));
        }
        // With archive_mode off the WAL must be streamed (lifeboat wal-stream
        // on a slot); the server does not wait for it then, so the base backup
        // restores once the archiver has shipped its end (within maxWalDelay).
        if archive_mode == "off" && streamed == 0 {
            return Err(SourceError::Refused(format!(
                "--method physical: {} has archive_mode=off and no WAL receiver on a replication slot; \
                 a base backup restores only with its WAL archived (archive_command='lifeboat wal-push %p …' \
                 or lifeboat wal-stream)",
                self.conn.host_label()
            )));
        }
        self.passfile = self.conn.passfile()?;
        self.started_at = Utc::now();
        Ok(vec![Part {
            name: "base".into(),
            role: "base",
            database: None,
            producer: Producer::Tool {
                tool: "pg_basebackup",
                cmd: self.conn.pg_basebackup(backup_id, self.passfile.as_ref()),
            },
            head: Some(self.head.clone()),
        }])
    }

    pub(crate) async fn describe(mut self) -> Result<Described, SourceError> {
        let stopped_at = Utc::now();
        self.passfile = None;
        // pg_basebackup -X none does not print the WAL range; the start is in
        // backup_label. For the stop, the server's position once the backup
        // returned: an upper bound (the stop forced a segment switch), so a
        // restore to any LSN at or after it can start from this backup.
        let db = &self.maintenance_db;
        let mut c = self.conn.connect(db).await?;
        let stop = wal_position(&mut c, db).await?;
        close(c).await;
        let head = self.head.lock().expect("not poisoned").clone();
        let (timeline, start, start_wal) = recovery::parse_backup_label(&head)?;
        let stop = stop.parse::<recovery::Lsn>()?;
        let physical = PhysicalInfo {
            timeline,
            start_lsn: start.to_string(),
            stop_lsn: stop.to_string(),
            start_wal,
            started_at: self.started_at,
            stopped_at,
        };
        tracing::info!(timeline, start = %start, stop = %stop, start_wal = %physical.start_wal, "base backup taken");
        Ok(Described {
            info: SourceInfo::Postgres(PostgresInfo {
                method: PgMethod::Physical,
                host: self.conn.host_label(),
                client_version: self.conn.client_version("pg_basebackup"),
                server_version: self.version,
                databases: Vec::new(),
            }),
            physical: Some(physical),
        })
    }
}
