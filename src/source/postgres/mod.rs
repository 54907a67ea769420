//! PostgreSQL as a source and a target: connection settings, the pg_dump and
//! pg_restore child processes, and the few queries lifeboat makes itself (sqlx).
//!
//! The password reaches child processes through a private passfile (0600, in
//! the temp directory, deleted on drop) and sqlx through its options — never
//! through argv, where every process on the node could read it.

pub mod archive;
pub mod frames;
pub mod logical;
pub mod majors;
pub mod physical;
pub mod programs;

pub use programs::{Need, Programs};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How pg_restore reads the archive.
pub enum RestoreInput<'a> {
    /// From stdin, in one transaction: stopped part-way it leaves nothing.
    Stream,
    /// From stdin, in one transaction, one section (`pre-data`, `data`),
    /// with `list` only the entries of that `pg_restore --use-list` file in
    /// it: the parts of a parallel restore before its post-data section.
    StreamSection {
        section: &'static str,
        list: Option<&'a Path>,
    },
    /// The post-data section (indexes, constraints, triggers) of an
    /// authenticated local copy, over `jobs` connections: the second half.
    /// Not one transaction (pg_restore cannot), so a failure leaves a part
    /// built and the database is dropped by whoever created it.
    ParallelPostData { file: &'a Path, jobs: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write a private passfile for the PostgreSQL tools: {0}")]
    PassFile(std::io::Error),
    #[error("cannot start {tool}: {source} (is the PostgreSQL client installed? set --pg-bin)")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("database {db}: {message}")]
    Query { db: String, message: String },
    /// No installed programs of the major a server needs (names it and the package).
    #[error("{0}")]
    NoPrograms(String),
}

/// A password that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub fn from_file(path: &Path) -> Result<Self, PgError> {
        let text = std::fs::read_to_string(path).map_err(|source| PgError::PasswordFile {
            path: path.to_path_buf(),
            source,
        })?;
        // A trailing newline from `echo` or a Secret is not part of the password.
        Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// Where a server is and how to log in. Unset fields fall back to libpq's
/// environment (PGHOST, PGPORT, PGUSER, PGPASSFILE, PGSSLMODE) in the children.
#[derive(Debug, Clone, Default)]
pub struct PgConn {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Where PostgreSQL's programs are (one directory per major, or one for all).
    pub programs: Programs,
    /// The directory chosen for this server ([`PgConn::with_programs`]).
    pub bin_dir: Option<PathBuf>,
}

/// A passfile that lives as long as the children that read it.
pub struct PassFile(tempfile_path::TempPath);

mod tempfile_path {
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// Passfiles that exist now, for [`remove_all`] when a signal ends the
    /// process before their owners are dropped.
    static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// A path removed on drop.
    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn new(path: PathBuf) -> Self {
            LIVE.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(path.clone());
            TempPath(path)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            LIVE.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|p| *p != self.0);
        }
    }

    pub fn remove_all() {
        for p in LIVE.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Removes every passfile this process has written; for a process about to
/// end on a signal (SIGTERM from a Job's deadline, Ctrl-C), when no
/// destructor will run.
pub fn remove_passfiles() {
    tempfile_path::remove_all();
}

/// What PostgreSQL's programs get of lifeboat's environment: libpq's own
/// variables (PG*), the locale, PATH, HOME (for ~/.postgresql certificates)
/// and TMPDIR. Not the rest — cloud credentials, tokens, whatever the pod
/// was given: a program gets only what it reads.
pub fn child_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(k, _)| {
        let k = k.to_string_lossy();
        k.starts_with("PG")
            || k.starts_with("LC_")
            || matches!(
                k.as_ref(),
                "PATH" | "HOME" | "TMPDIR" | "TZ" | "LANG" | "LANGUAGE"
            )
    })
}

impl PgConn {
    pub fn host_label(&self) -> String {
        let host = self
            .host
            .clone()
            .or_else(|| std::env::var("PGHOST").ok())
            .unwrap_or_else(|| "localhost".into());
        match self
            .port
            .or_else(|| std::env::var("PGPORT").ok()?.parse().ok())
        {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        match (&self.bin_dir, &self.programs) {
            (Some(d), _) | (None, Programs::Fixed(d)) => d.join(name),
            // Under a per-major root but not chosen for a server: PATH.
            _ => PathBuf::from(name),
        }
    }

    /// Writes the password to a private passfile when one was given.
    pub fn passfile(&self) -> Result<Option<PassFile>, PgError> {
        let Some(Secret(pw)) = &self.password else {
            return Ok(None);
        };
        use std::os::unix::fs::OpenOptionsExt;
        let r: [u8; 8] = crate::keys::random_bytes();
        let path = std::env::temp_dir().join(format!("lifeboat-pgpass-{}", hex::encode(r)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(PgError::PassFile)?;
        let guard = PassFile(tempfile_path::TempPath::new(path));
        writeln!(f, "{}", self.passfile_line(pw)).map_err(PgError::PassFile)?;
        Ok(Some(guard))
    }

    /// The passfile's one line: the password for this host, port and user
    /// only, so that a connection anywhere else (whatever steered it there)
    /// is never sent it. Unset values are libpq's defaults, as the tools
    /// will use them.
    fn passfile_line(&self, password: &str) -> String {
        let field = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let host = self
            .host
            .clone()
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| "localhost".into());
        // A socket directory matches as "localhost" in a passfile.
        let host = if host.starts_with('/') {
            "localhost".to_string()
        } else {
            host
        };
        let port = self
            .port
            .map(|p| p.to_string())
            .or_else(|| env("PGPORT"))
            .unwrap_or_else(|| "5432".into());
        let user = self
            .user
            .clone()
            .or_else(|| env("PGUSER"))
            .map(|u| field(&u))
            .unwrap_or_else(|| "*".into());
        format!(
            "{}:{}:*:{user}:{}",
            field(&host),
            field(&port),
            field(password)
        )
    }

    /// A command for a PostgreSQL tool with connection settings in its
    /// environment. The caller keeps `passfile` alive until the child exits.
    pub fn command(&self, tool: &str, passfile: Option<&PassFile>) -> Command {
        let mut cmd = Command::new(self.tool(tool));
        cmd.env_clear().envs(child_env());
        if let Some(h) = &self.host {
            cmd.env("PGHOST", h);
        }
        if let Some(p) = self.port {
            cmd.env("PGPORT", p.to_string());
        }
        if let Some(u) = &self.user {
            cmd.env("PGUSER", u);
        }
        if let Some(PassFile(p)) = passfile {
            cmd.env("PGPASSFILE", &p.0).env_remove("PGPASSWORD");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `pg_dump` of one database in custom format with its own compression
    /// off: lifeboat compresses faster in the pipeline.
    pub fn pg_dump(&self, db: &str, passfile: Option<&PassFile>) -> Command {
        let mut cmd = self.command("pg_dump", passfile);
        // --create records the database's own owner, settings, ACL and
        // comment in the archive (pg_restore into a database skips them;
        // the restore applies them separately, by name).
        cmd.args([
            "--format=custom",
            "--compress=0",
            "--create",
            "--no-password",
            "--dbname",
        ])
        .arg(dbname_conninfo(db));
        cmd
    }

    /// `pg_basebackup` writing the data directory as one tar to stdout, with
    /// no WAL inside (`-X none`: the archive holds it, and the server waits
    /// until it is archived before the backup ends). A fast checkpoint starts
    /// the backup now instead of spreading it over minutes.
    pub fn pg_basebackup(&self, label: &str, passfile: Option<&PassFile>) -> Command {
        let mut cmd = self.command("pg_basebackup", passfile);
        cmd.args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
            "--verbose",
            "--no-password",
        ])
        .arg(format!("--label=lifeboat {label}"));
        cmd
    }

    /// Roles and tablespaces, without role passwords (readable without superuser).
    pub fn pg_dumpall_globals(&self, passfile: Option<&PassFile>) -> Command {
        let mut cmd = self.command("pg_dumpall", passfile);
        cmd.args(["--globals-only", "--no-role-passwords", "--no-password"]);
        cmd
    }

    /// `psql` applying the globals (roles, tablespaces) from stdin. It goes on
    /// past errors: on a server that already has a role, `CREATE ROLE` fails
    /// and the `ALTER ROLE` after it still applies the attributes.
    /// pg_restore reading the archive's head (`file`) to list (`-l`) or
    /// print (`-L list -f -`) its database-level entries.
    pub fn pg_restore_toc(&self, file: &Path, list: Option<&Path>) -> Command {
        let mut cmd = self.command("pg_restore", None);
        cmd.arg("--create");
        match list {
            None => cmd.arg("--list"),
            Some(l) => cmd.arg("--use-list").arg(l).args(["--file", "-"]),
        };
        cmd.arg(file);
        cmd
    }

    /// `pg_restore --list` of one section of an archive read from stdin.
    pub fn pg_restore_list(&self, section: &str) -> Command {
        let mut cmd = self.command("pg_restore", None);
        cmd.args(["--list", &format!("--section={section}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn psql_globals(&self, db: &str, passfile: Option<&PassFile>) -> Command {
        let mut cmd = self.command("psql", passfile);
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=0",
            "--no-password",
            "--dbname",
        ])
        .arg(dbname_conninfo(db));
        cmd.stdin(Stdio::piped());
        cmd
    }

    /// `pg_restore` into `db`, reading the archive as `input` says.
    pub fn pg_restore(
        &self,
        db: &str,
        input: &RestoreInput<'_>,
        clean: bool,
        no_owner: bool,
        passfile: Option<&PassFile>,
    ) -> Command {
        let mut cmd = self.command("pg_restore", passfile);
        cmd.args(["--exit-on-error", "--no-password", "--dbname"])
            .arg(dbname_conninfo(db));
        if clean {
            cmd.args(["--clean", "--if-exists"]);
        }
        if no_owner {
            cmd.args(["--no-owner", "--no-privileges"]);
        }
        match input {
            RestoreInput::Stream => {
                cmd.arg("--single-transaction").stdin(Stdio::piped());
            }
            RestoreInput::StreamSection { section, list } => {
                cmd.args(["--single-transaction", &format!("--section={section}")]);
                if let Some(list) = list {
                    cmd.arg("--use-list").arg(list);
                }
                cmd.stdin(Stdio::piped());
            }
            RestoreInput::ParallelPostData { file, jobs } => {
                cmd.args(["--section=post-data", &format!("--jobs={jobs}")])
                    .arg(file)
                    .stdin(Stdio::null());
            }
        }
        cmd
    }

    fn options(&self, db: &str) -> PgConnectOptions {
        // PgConnectOptions::new reads PGHOST, PGPORT, PGUSER, PGPASSWORD and PGPASSFILE.
        let mut o = PgConnectOptions::new().database(db);
        if let Some(h) = &self.host {
            o = o.host(h);
        }
        if let Some(p) = self.port {
            o = o.port(p);
        }
        if let Some(u) = &self.user {
            o = o.username(u);
        }
        if let Some(Secret(pw)) = &self.password {
            o = o.password(pw);
        }
        o.disable_statement_logging()
    }

    pub async fn connect(&self, db: &str) -> Result<PgConnection, PgError> {
        self.options(db)
            .connect()
            .await
            .map_err(|e| query_err(db, e))
    }
}

/// `--dbname` for a database *name*. libpq reads a `--dbname` holding `=` or
/// starting with `postgresql://` as a whole connection string, so a tenant's
/// database called `host=evil.example` would send the connection (and the
/// password) elsewhere. Quoted as the value of `dbname=`, a name stays a name
/// (what pg_dumpall does since CVE-2016-5424).
pub fn dbname_conninfo(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn query_err(db: &str, e: sqlx::Error) -> PgError {
    PgError::Query {
        db: db.to_string(),
        message: e.to_string(),
    }
}

pub async fn server_version(conn: &mut PgConnection, db: &str) -> Result<String, PgError> {
    sqlx::query_scalar::<_, String>("show server_version")
        .fetch_one(conn)
        .await
        .map_err(|e| query_err(db, e))
}

/// A server setting as `SHOW` prints it.
pub async fn setting(conn: &mut PgConnection, db: &str, name: &str) -> Result<String, PgError> {
    sqlx::query_scalar::<_, String>("select current_setting($1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| query_err(db, e))
}

/// Physical replication slots a receiver is using now (`lifeboat wal-stream`
/// archives WAL this way, with archive_mode off).
pub async fn streaming_slots(conn: &mut PgConnection, db: &str) -> Result<i64, PgError> {
    sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_replication_slots where slot_type = 'physical' and active",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| query_err(db, e))
}

/// The WAL file archive_command last failed on, when it has failed since it
/// last succeeded (pg_stat_archiver).
pub async fn archive_failing(conn: &mut PgConnection, db: &str) -> Result<Option<String>, PgError> {
    sqlx::query_scalar::<_, Option<String>>(
        "select case when last_failed_time is not null
                      and (last_archived_time is null or last_failed_time > last_archived_time)
                     then last_failed_wal end
           from pg_stat_archiver",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| query_err(db, e))
}

/// The server's current WAL position (replayed, on a standby).
pub async fn wal_position(conn: &mut PgConnection, db: &str) -> Result<String, PgError> {
    sqlx::query_scalar::<_, String>(
        "select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| query_err(db, e))
}

/// Every database a dump of "all" means: connectable, not a template.
pub async fn list_databases(conn: &mut PgConnection, db: &str) -> Result<Vec<String>, PgError> {
    sqlx::query_scalar::<_, String>(
        "select datname from pg_database where datallowconn and not datistemplate order by datname",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| query_err(db, e))
}

pub async fn database_exists(
    conn: &mut PgConnection,
    db: &str,
    name: &str,
) -> Result<bool, PgError> {
    sqlx::query_scalar::<_, bool>("select exists(select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| query_err(db, e))
}

pub async fn create_database(conn: &mut PgConnection, db: &str, name: &str) -> Result<(), PgError> {
    let sql = format!("create database {}", quote_ident(name));
    sqlx::raw_sql(&sql)
        .execute(conn)
        .await
        .map_err(|e| query_err(db, e))?;
    Ok(())
}

pub async fn drop_database(conn: &mut PgConnection, db: &str, name: &str) -> Result<(), PgError> {
    let sql = format!("drop database if exists {} with (force)", quote_ident(name));
    sqlx::raw_sql(&sql)
        .execute(conn)
        .await
        .map_err(|e| query_err(db, e))?;
    Ok(())
}

/// What user content a database holds: relations, functions and types outside
/// the system schemas, and schemas other than `public`. Zero means empty.
pub async fn user_objects(conn: &mut PgConnection, db: &str) -> Result<i64, PgError> {
    sqlx::query_scalar::<_, i64>(
        "select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                  where n.nspname not in ('pg_catalog','information_schema') and n.nspname not like 'pg_toast%'
                    and n.nspname not like 'pg_temp%')
              + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                  where n.nspname not in ('pg_catalog','information_schema'))
              + (select count(*) from pg_namespace
                  where nspname not in ('pg_catalog','information_schema','public')
                    and nspname not like 'pg_toast%' and nspname not like 'pg_temp%')
              + (select count(*) from pg_largeobject_metadata)",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| query_err(db, e))
}

/// Closes a connection politely; errors at close do not matter.
pub async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_argv_or_debug() {
        let conn = PgConn {
            host: Some("db".into()),
            port: Some(6432),
            user: Some("backup".into()),
            password: Some(Secret("s3cr:et\\".into())),
            ..Default::default()
        };
        assert!(!format!("{conn:?}").contains("s3cr"));
        let pf = conn.passfile().unwrap().unwrap();
        let text = std::fs::read_to_string(&pf.0 .0).unwrap();
        // For this host, port and user only: a connection steered anywhere
        // else is never sent the password.
        assert_eq!(text, "db:6432:*:backup:s3cr\\:et\\\\\n");
        let cmd = conn.pg_dump("orders", Some(&pf));
        let argv: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(argv.iter().all(|a| !a.contains("s3cr")), "{argv:?}");
        let path = pf.0 .0.clone();
        drop(pf);
        assert!(!path.exists(), "passfile removed on drop");
    }

    #[test]
    fn a_database_name_is_passed_as_a_name() {
        assert_eq!(
            dbname_conninfo("host=evil.example sslmode=disable"),
            "dbname='host=evil.example sslmode=disable'"
        );
        assert_eq!(dbname_conninfo(r"a'b\c"), r"dbname='a\'b\\c'");
        let argv: Vec<String> = PgConn::default()
            .pg_dump("postgresql://evil/x", None)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(argv.last().unwrap(), "dbname='postgresql://evil/x'");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
