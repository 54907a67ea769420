//! A logical backup of PostgreSQL: the server's globals (roles and
//! tablespaces, `pg_dumpall --globals-only`) and one `pg_dump` custom-format
//! archive per database, each its own part.

use super::majors::Rule;
use super::{close, list_databases, server_version, PassFile, PgConn};
use crate::catalog::{PgMethod, PostgresInfo, SourceInfo};
use crate::source::{Described, Part, Producer, SourceError};

pub struct Logical {
    pub conn: PgConn,
    /// The databases to dump; empty with `all_databases`.
    pub databases: Vec<String>,
    pub all_databases: bool,
    /// Database to connect to for the list of databases.
    pub maintenance_db: String,
    /// Also dump roles and tablespaces (the `globals` part).
    pub globals: bool,
    /// Lives as long as the dumps that read it.
    passfile: Option<PassFile>,
    chosen: Vec<String>,
}

impl Logical {
    pub fn new(
        conn: PgConn,
        databases: Vec<String>,
        all_databases: bool,
        maintenance_db: String,
        globals: bool,
    ) -> Self {
        Self {
            conn,
            databases,
            all_databases,
            maintenance_db,
            globals,
            passfile: None,
            chosen: Vec::new(),
        }
    }

    pub(crate) async fn parts(&mut self) -> Result<Vec<Part>, SourceError> {
        self.passfile = self.conn.passfile()?;
        self.chosen = if self.all_databases {
            let db = &self.maintenance_db;
            let mut c = self.conn.connect(db).await?;
            let dbs = list_databases(&mut c, db).await?;
            close(c).await;
            dbs
        } else {
            self.databases.clone()
        };
        if self.chosen.is_empty() {
            return Err(SourceError::Refused(
                "no database to back up: give --database or --all-databases".into(),
            ));
        }
        // The server's own pg_dump (its dump restores with the server's own
        // pg_restore), else the newest above it.
        self.conn = self
            .conn
            .for_server(&self.chosen[0], "pg_dump", Rule::own_or_newer)
            .await?;
        let passfile = self.passfile.as_ref();
        let mut parts = Vec::new();
        if self.globals {
            parts.push(Part {
                name: "globals".into(),
                role: "globals",
                database: None,
                producer: Producer::Tool {
                    tool: "pg_dumpall",
                    cmd: self.conn.pg_dumpall_globals(passfile),
                },
                head: None,
            });
        }
        for (n, db) in self.chosen.iter().enumerate() {
            parts.push(Part {
                name: format!("db-{n}"),
                role: "database",
                database: Some(db.clone()),
                producer: Producer::Tool {
                    tool: "pg_dump",
                    cmd: self.conn.pg_dump(db, passfile),
                },
                head: None,
            });
        }
        Ok(parts)
    }

    pub(crate) async fn describe(mut self) -> Result<Described, SourceError> {
        self.passfile = None;
        // Asked after the dumps so that a failing dump reports pg_dump's own words.
        let db = &self.chosen[0];
        let mut c = self.conn.connect(db).await?;
        let version = server_version(&mut c, db).await?;
        close(c).await;
        Ok(Described {
            info: SourceInfo::Postgres(PostgresInfo {
                method: PgMethod::Logical,
                host: self.conn.host_label(),
                server_version: version,
                client_version: self.conn.client_version("pg_dump"),
                databases: self.chosen,
            }),
            physical: None,
        })
    }
}
