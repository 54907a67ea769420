//! `lifeboat backup`: pg_dump (and the server's globals) — or, with
//! `--method physical`, pg_basebackup's tar of the data directory — streamed
//! through compress → encrypt → hash to every destination at once, then the
//! manifest written last in each. Nothing is committed anywhere unless every part
//! reached every destination (or, with `allow_partial`, at least one).

use super::progress::{mib_per_s, peak_rss_bytes, Progress};
use super::upload::{fan_out, spawn_encoder};
use super::{manifests, Error};
use crate::catalog::{self, Manifest, ObjectEntry, PhysicalInfo, SourceInfo};
use crate::keys::Keyring;
use crate::pipeline::header::Compression;
use crate::recovery;
use crate::source::child::{self, Stage};
use crate::source::postgres::{self, PgConn, PgError};
use crate::store::Store;
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct BackupOptions {
    pub conn: PgConn,
    pub databases: Vec<String>,
    pub all_databases: bool,
    /// Database to connect to for `all_databases` and the version query.
    pub maintenance_db: String,
    pub globals: bool,
    pub to: Vec<String>,
    pub keys: Keyring,
    pub compression: Compression,
    pub policy: String,
    pub tier: String,
    pub allow_partial: bool,
    pub method: Method,
}

/// What kind of backup: pg_dump per database, or a base backup of the whole
/// cluster for point-in-time recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Logical,
    Physical,
}

#[derive(Debug, Serialize)]
pub struct DestinationReport {
    pub url: String,
    pub committed: bool,
    /// Set by [`verify_committed`]: the backup was read back from here and checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub backup_id: String,
    pub policy: String,
    pub tier: String,
    pub server_version: String,
    pub databases: Vec<String>,
    pub destinations: Vec<DestinationReport>,
    pub objects: Vec<ObjectEntry>,
    /// Bytes read from pg_dump.
    pub bytes_in: u64,
    /// Bytes stored in each destination.
    pub bytes_out: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub peak_rss_bytes: u64,
}

struct Part {
    /// Keeps the first bytes of the tool's output here (pg_basebackup's
    /// backup_label).
    head: Option<Arc<Mutex<Vec<u8>>>>,
    name: String,
    role: &'static str,
    database: Option<String>,
    tool: &'static str,
    cmd: Command,
}

/// Tracks which destinations are still in the backup and why others left.
struct Fleet {
    stores: Vec<Store>,
    live: Vec<usize>,
    failed: Vec<(usize, String)>,
    allow_partial: bool,
}

impl Fleet {
    fn fail(&mut self, index: usize, e: impl std::fmt::Display) {
        tracing::error!(dest = %self.stores[index].name(), error = %e, "destination failed");
        self.live.retain(|&i| i != index);
        self.failed.push((index, e.to_string()));
    }

    /// Err when the backup can no longer succeed.
    fn check(&self) -> Result<(), Error> {
        if self.live.is_empty() || (!self.failed.is_empty() && !self.allow_partial) {
            let failed = self
                .failed
                .iter()
                .map(|(i, e)| format!("{}: {e}", self.stores[*i].name()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Destinations { failed });
        }
        Ok(())
    }

    /// Removes everything this backup wrote, in every destination it touched.
    async fn discard(&self, id: &str) {
        for s in &self.stores {
            if let Err(e) = manifests::delete_backup(s, id).await {
                tracing::warn!(dest = %s.name(), backup = %id, error = %e, "could not remove the objects of the failed backup; the next backup removes them");
            }
        }
    }
}

pub async fn backup(o: BackupOptions) -> Result<BackupReport, Error> {
    let t0 = Instant::now();
    let started_at = Utc::now();
    let id = catalog::new_backup_id(started_at);
    if o.to.is_empty() {
        return Err(Error::Usage(
            "no destination: give --to at least once".into(),
        ));
    }
    let mut stores = Vec::new();
    for url in &o.to {
        stores.push(Store::open(url).await?);
    }
    let mut fleet = Fleet {
        live: (0..stores.len()).collect(),
        stores,
        failed: Vec::new(),
        allow_partial: o.allow_partial,
    };
    tracing::info!(backup = %id, destinations = fleet.stores.len(), "backup started");
    for i in fleet.live.clone() {
        if let Err(e) = manifests::clean_leftovers(&fleet.stores[i], &id).await {
            fleet.fail(i, e);
        }
    }
    fleet.check()?;

    let result = match o.method {
        Method::Logical => run_parts(&o, &id, &mut fleet).await,
        Method::Physical => run_base(&o, &id, &mut fleet).await,
    };
    let (objects, databases, server_version, physical) = match result {
        Ok(r) => r,
        Err(e) => {
            fleet.discard(&id).await;
            return Err(e);
        }
    };

    let manifest = Manifest {
        format: catalog::MANIFEST_FORMAT,
        backup_id: id.clone(),
        policy: o.policy.clone(),
        tier: o.tier.clone(),
        source: SourceInfo {
            kind: "postgres".into(),
            method: match o.method {
                Method::Logical => "logical",
                Method::Physical => "physical",
            }
            .into(),
            host: o.conn.host_label(),
            server_version: server_version.clone(),
            databases: databases.clone(),
        },
        started_at,
        completed_at: Utc::now(),
        compression: o.compression,
        key_id: String::new(),
        objects: objects.clone(),
        mac_key: String::new(),
        physical,
    };
    let sealed = Bytes::from(catalog::seal_manifest(manifest, &o.keys));
    let key = catalog::manifest_key(&id);
    let live = fleet.live.clone();
    let puts = futures::future::join_all(
        live.iter()
            .map(|&i| fleet.stores[i].put(&key, sealed.clone())),
    )
    .await;
    for (i, r) in live.into_iter().zip(puts) {
        if let Err(e) = r {
            fleet.fail(i, e);
        }
    }
    if let Err(e) = fleet.check() {
        // Uncommit: a manifest in one place and not in another is not a backup.
        fleet.discard(&id).await;
        return Err(e);
    }
    for (i, _) in &fleet.failed {
        let _ = manifests::delete_backup(&fleet.stores[*i], &id).await;
    }

    let seconds = t0.elapsed().as_secs_f64();
    let bytes_in: u64 = objects.iter().map(|o| o.plain_size).sum();
    let bytes_out: u64 = objects.iter().map(|o| o.size).sum();
    let destinations = (0..fleet.stores.len())
        .map(|i| DestinationReport {
            url: fleet.stores[i].name().to_string(),
            committed: fleet.live.contains(&i),
            verified: None,
            error: fleet
                .failed
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, e)| e.clone()),
        })
        .collect();
    tracing::info!(backup = %id, bytes_in, bytes_out, seconds = format!("{seconds:.1}"), "backup committed");
    Ok(BackupReport {
        backup_id: id,
        policy: o.policy,
        tier: o.tier,
        server_version,
        databases,
        destinations,
        objects,
        bytes_in,
        bytes_out,
        seconds,
        mib_per_s: mib_per_s(bytes_in, seconds),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Objects, databases, server version and (physical) base backup facts.
type Parts = (Vec<ObjectEntry>, Vec<String>, String, Option<PhysicalInfo>);

async fn run_parts(o: &BackupOptions, id: &str, fleet: &mut Fleet) -> Result<Parts, Error> {
    let passfile = o.conn.passfile()?;
    let databases = if o.all_databases {
        let mut c = o.conn.connect(&o.maintenance_db).await?;
        let dbs = postgres::list_databases(&mut c, &o.maintenance_db).await?;
        postgres::close(c).await;
        dbs
    } else {
        o.databases.clone()
    };
    if databases.is_empty() {
        return Err(Error::Usage(
            "no database to back up: give --database or --all-databases".into(),
        ));
    }
    let mut parts = Vec::new();
    if o.globals {
        parts.push(Part {
            head: None,
            name: "globals".into(),
            role: "globals",
            database: None,
            tool: "pg_dumpall",
            cmd: o.conn.pg_dumpall_globals(passfile.as_ref()),
        });
    }
    for (n, db) in databases.iter().enumerate() {
        parts.push(Part {
            head: None,
            name: format!("db-{n}"),
            role: "database",
            database: Some(db.clone()),
            tool: "pg_dump",
            cmd: o.conn.pg_dump(db, passfile.as_ref()),
        });
    }
    let mut objects = Vec::new();
    for part in parts {
        objects.push(run_part(o, id, fleet, part).await?);
    }
    // Asked after the dumps so that a failing dump reports pg_dump's own words.
    let mut c = o.conn.connect(&databases[0]).await?;
    let version = postgres::server_version(&mut c, &databases[0]).await?;
    postgres::close(c).await;
    drop(passfile);
    Ok((objects, databases, version, None))
}

/// A base backup: pg_basebackup's tar of the data directory as one object
/// (`base`). It runs with `-X none`: the server then waits, before the backup
/// ends, until every WAL file the backup needs is archived, so a committed
/// base backup is always restorable from the archive (and smaller).
async fn run_base(o: &BackupOptions, id: &str, fleet: &mut Fleet) -> Result<Parts, Error> {
    let db = &o.maintenance_db;
    let mut c = o.conn.connect(db).await?;
    let archive_mode = postgres::setting(&mut c, db, "archive_mode").await?;
    let failing = postgres::archive_failing(&mut c, db).await?;
    let streamed = postgres::streaming_slots(&mut c, db).await?;
    let version = postgres::server_version(&mut c, db).await?;
    postgres::close(c).await;
    // pg_basebackup -X none waits, without end, for the WAL to be archived.
    if let Some(wal) = failing {
        return Err(Error::Usage(format!(
            "--method physical: {}'s archive_command is failing (last on {wal}; see the server log): \
             the base backup would wait for its WAL forever",
            o.conn.host_label()
        )));
    }
    // With archive_mode off the WAL must be streamed (lifeboat wal-stream
    // on a slot); the server does not wait for it then, so the base backup
    // restores once the archiver has shipped its end (within maxWalDelay).
    if archive_mode == "off" && streamed == 0 {
        return Err(Error::Usage(format!(
            "--method physical: {} has archive_mode=off and no WAL receiver on a replication slot; \
             a base backup restores only with its WAL archived (archive_command='lifeboat wal-push %p …' \
             or lifeboat wal-stream)",
            o.conn.host_label()
        )));
    }
    let passfile = o.conn.passfile()?;
    let started_at = Utc::now();
    let head = Arc::new(Mutex::new(Vec::new()));
    let part = Part {
        head: Some(head.clone()),
        name: "base".into(),
        role: "base",
        database: None,
        tool: "pg_basebackup",
        cmd: o.conn.pg_basebackup(id, passfile.as_ref()),
    };
    let object = run_part(o, id, fleet, part).await?;
    let stopped_at = Utc::now();
    drop(passfile);
    // pg_basebackup -X none does not print the WAL range; the start is in
    // backup_label. For the stop, the server's position once the backup
    // returned: an upper bound (the stop forced a segment switch), so a
    // restore to any LSN at or after it can start from this backup.
    let mut c = o.conn.connect(db).await?;
    let stop = postgres::wal_position(&mut c, db).await?;
    postgres::close(c).await;
    let head = head.lock().expect("not poisoned").clone();
    let (timeline, start, start_wal) = recovery::parse_backup_label(&head)?;
    let stop = stop.parse::<recovery::Lsn>()?;
    let physical = PhysicalInfo {
        timeline,
        start_lsn: start.to_string(),
        stop_lsn: stop.to_string(),
        start_wal,
        started_at,
        stopped_at,
    };
    tracing::info!(timeline, start = %start, stop = %stop, start_wal = %physical.start_wal, "base backup taken");
    Ok((vec![object], Vec::new(), version, Some(physical)))
}

async fn run_part(
    o: &BackupOptions,
    id: &str,
    fleet: &mut Fleet,
    mut part: Part,
) -> Result<ObjectEntry, Error> {
    let key = catalog::object_key(id, &part.name);
    let what = part.database.clone().unwrap_or_else(|| part.name.clone());
    tracing::info!(part = %part.name, what = %what, "dumping");
    let mut stage = Stage::spawn(
        part.tool,
        std::mem::replace(&mut part.cmd, Command::new("true")),
    )
    .map_err(|source| PgError::Spawn {
        tool: part.tool.to_string(),
        source,
    })?;
    let stdout = HeadTap {
        inner: stage.child.stdout.take().expect("piped stdout"),
        head: part.head.take(),
    };
    let progress = Progress::start(format!("{} {what}", part.tool));
    let (rx, encoder) = spawn_encoder(
        stdout,
        o.keys.primary(),
        &key,
        o.compression,
        progress.clone(),
    )
    .map_err(Error::Pipeline)?;
    let (writers, failed) = fan_out(&fleet.stores, &fleet.live, &key, rx, !o.allow_partial).await;
    let encoded = encoder
        .await
        .map_err(|e| Error::Pipeline(std::io::Error::other(e)));
    progress.done();
    for (i, e) in failed {
        fleet.fail(i, e);
    }
    let abort_all = |writers: Vec<(usize, crate::store::ObjectWriter)>| async move {
        for (_, w) in writers {
            w.abort().await;
        }
    };
    if let Err(e) = fleet.check() {
        stage.kill();
        abort_all(writers).await;
        return Err(e);
    }
    let encoded = match encoded.and_then(|r| r.map_err(Error::Pipeline)) {
        Ok(enc) => enc,
        Err(e) => {
            // The encoder stops when it cannot read the dump or write on; if
            // the tool failed, its message is the one that matters.
            let tool_err = child::wait(stage).await.err();
            abort_all(writers).await;
            return Err(match tool_err {
                Some(f) => tool_error(f, &what),
                None => e,
            });
        }
    };
    if let Err(f) = child::wait(stage).await {
        abort_all(writers).await;
        return Err(tool_error(f, &what));
    }
    let finishes = futures::future::join_all(
        writers
            .into_iter()
            .map(|(i, w)| async move { (i, w.finish().await) }),
    )
    .await;
    for (i, r) in finishes {
        if let Err(e) = r {
            fleet.fail(i, e);
        }
    }
    fleet.check()?;
    Ok(ObjectEntry {
        key,
        role: part.role.to_string(),
        database: part.database,
        size: encoded.digest.size,
        sha256: encoded.digest.sha256,
        plain_size: encoded.plain_size,
    })
}

/// Reads the committed backup back from every destination that holds it
/// (`lifeboat backup --verify`): manifest MAC, every object's SHA-256 and
/// every segment's tag. Records the outcome per destination in the report;
/// returns false when any destination failed.
pub async fn verify_committed(
    report: &mut BackupReport,
    keys: std::sync::Arc<Keyring>,
) -> Result<bool, Error> {
    use super::verify::{self, Which};
    let point = Which::Point(catalog::Point::Id(report.backup_id.clone()));
    let mut all_ok = true;
    for d in report.destinations.iter_mut().filter(|d| d.committed) {
        let checked = verify::verify(std::slice::from_ref(&d.url), keys.clone(), &point).await?;
        let ok = checked.problems == 0 && !checked.checks.is_empty();
        if !ok {
            let why = checked
                .checks
                .iter()
                .flat_map(|c| {
                    c.error
                        .iter()
                        .cloned()
                        .chain(c.objects.iter().filter_map(|o| o.error.clone()))
                })
                .collect::<Vec<_>>()
                .join("; ");
            tracing::error!(dest = %d.url, backup = %report.backup_id, error = %why, "read-back verification failed");
            d.error = Some(format!("verification failed: {why}"));
        }
        d.verified = Some(ok);
        all_ok &= ok;
    }
    Ok(all_ok)
}

/// Passes a tool's output through, keeping its first bytes when asked.
struct HeadTap<R> {
    inner: R,
    head: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<R: Read> Read for HeadTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(head) = &self.head {
            let mut h = head.lock().expect("not poisoned");
            let room = recovery::LABEL_HEAD.saturating_sub(h.len()).min(n);
            h.extend_from_slice(&buf[..room]);
            if h.len() >= recovery::LABEL_HEAD {
                drop(h);
                self.head = None;
            }
        }
        Ok(n)
    }
}

fn tool_error(f: crate::source::child::Failure, what: &str) -> Error {
    Error::Tool {
        tool: f.tool,
        what: what.to_string(),
        status: f.status,
        stderr: f.stderr,
    }
}

/// What a Job reports back to the controller (fits a termination message).
#[derive(Debug, Serialize)]
pub struct BackupSummary<'a> {
    pub backup_id: &'a str,
    pub server_version: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    /// Destinations that hold the backup, by URL without query.
    pub committed: Vec<&'a str>,
    pub failed: Vec<&'a str>,
    /// Destinations where the backup was read back and every byte checked
    /// (`--verify`); a committed destination missing here failed verification
    /// or was not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<&'a str>>,
    pub objects: Vec<SummaryObject<'a>>,
}

#[derive(Debug, Serialize)]
pub struct SummaryObject<'a> {
    pub key: &'a str,
    pub size: u64,
    pub sha256: &'a str,
}

impl BackupReport {
    pub fn summary(&self) -> BackupSummary<'_> {
        // Destination URLs without their query (endpoint, credentials path).
        let pick = |committed: bool| -> Vec<&str> {
            self.destinations
                .iter()
                .filter(|d| d.committed == committed)
                .map(|d| d.url.split('?').next().unwrap_or(&d.url))
                .collect()
        };
        BackupSummary {
            backup_id: &self.backup_id,
            server_version: &self.server_version,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            seconds: self.seconds,
            committed: pick(true),
            failed: pick(false),
            verified: self
                .destinations
                .iter()
                .any(|d| d.verified.is_some())
                .then(|| {
                    self.destinations
                        .iter()
                        .filter(|d| d.verified == Some(true))
                        .map(|d| d.url.split('?').next().unwrap_or(&d.url))
                        .collect()
                }),
            objects: self
                .objects
                .iter()
                .map(|o| SummaryObject {
                    key: &o.key,
                    size: o.size,
                    sha256: &o.sha256,
                })
                .collect(),
        }
    }
}
