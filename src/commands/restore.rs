//! `lifeboat restore`: choose a recovery point, then stream it from the first
//! destination that serves it intact into `pg_restore`, falling back to the
//! next destination when one is unreachable or fails verification.
//!
//! pg_restore runs in one transaction and sees end-of-input only after the
//! whole object authenticated and matched the manifest; on any fault it is
//! killed first, so the transaction rolls back and nothing is loaded.

use super::download::decode_object;
use super::progress::{mib_per_s, peak_rss_bytes};
use super::{manifests, Error};
use crate::catalog::{ObjectEntry, Point};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::source::child::{self, Stage};
use crate::source::postgres::{self, PgConn, PgError};
use crate::store::Store;
use serde::Serialize;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct RestoreOptions {
    pub from: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    pub point: Point,
    /// Which database of the backup, when it holds several.
    pub database: Option<String>,
    pub target: PgConn,
    /// Target database name; the source database's name when unset.
    pub target_db: Option<String>,
    pub maintenance_db: String,
    pub create: bool,
    pub clean: bool,
    pub no_owner: bool,
    /// Apply the backup's roles and tablespaces before the database.
    pub globals: bool,
}

#[derive(Debug, Serialize)]
pub struct Attempt {
    pub destination: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub destination: String,
    pub source_database: String,
    pub target_database: String,
    pub backup_completed_at: chrono::DateTime<chrono::Utc>,
    pub bytes: u64,
    pub plain_bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Destinations tried before the one that served the restore.
    pub failed_attempts: Vec<Attempt>,
    pub peak_rss_bytes: u64,
}

/// State of the target across attempts: prepared once, dropped only if we
/// created it and every attempt failed.
#[derive(Default)]
struct Target {
    prepared: Option<String>,
    created: bool,
}

pub async fn restore(o: RestoreOptions) -> Result<RestoreReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    let point = resolve_point(&o).await;
    let mut target = Target::default();
    let mut attempts = Vec::new();
    for url in &o.from {
        match restore_from(url, &o, &point, &mut target).await {
            Ok(mut report) => {
                report.seconds = t0.elapsed().as_secs_f64();
                report.mib_per_s = mib_per_s(report.plain_bytes, report.seconds);
                report.failed_attempts = attempts;
                report.peak_rss_bytes = peak_rss_bytes();
                tracing::info!(backup = %report.backup_id, from = %report.destination, target = %report.target_database, seconds = format!("{:.1}", report.seconds), "restore complete");
                return Ok(report);
            }
            Err(e) if e.is_source_fault() => {
                tracing::warn!(from = %url.label(), error = %e, "this destination cannot serve the restore; trying the next one");
                attempts.push(Attempt {
                    destination: url.name.clone(),
                    error: e.to_string(),
                });
            }
            Err(e) => {
                drop_if_created(&o, &target).await;
                return Err(e);
            }
        }
    }
    drop_if_created(&o, &target).await;
    Err(Error::AllSourcesFailed(
        attempts
            .iter()
            .map(|a| a.error.clone())
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

async fn drop_if_created(o: &RestoreOptions, t: &Target) {
    if let (true, Some(db)) = (t.created, &t.prepared) {
        if let Ok(mut c) = o.target.connect(&o.maintenance_db).await {
            let _ = postgres::drop_database(&mut c, &o.maintenance_db, db).await;
            postgres::close(c).await;
        }
    }
}

fn pick<'m>(objects: &'m [ObjectEntry], want: Option<&str>) -> Result<&'m ObjectEntry, Error> {
    let dbs: Vec<&ObjectEntry> = objects.iter().filter(|o| o.role == "database").collect();
    match want {
        Some(name) => dbs
            .into_iter()
            .find(|o| o.database.as_deref() == Some(name))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the backup holds no database {name:?} (--database)"
                ))
            }),
        None if dbs.len() == 1 => Ok(dbs[0]),
        None => Err(Error::Usage(format!(
            "the backup holds {} databases ({}); choose one with --database",
            dbs.len(),
            dbs.iter()
                .filter_map(|o| o.database.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn prepare_target(o: &RestoreOptions, db: &str, t: &mut Target) -> Result<(), Error> {
    if t.prepared.as_deref() == Some(db) {
        return Ok(());
    }
    let mut c = o.target.connect(&o.maintenance_db).await?;
    let exists = postgres::database_exists(&mut c, &o.maintenance_db, db).await?;
    if !exists {
        if !o.create {
            postgres::close(c).await;
            return Err(Error::Target(format!(
                "target database {db:?} does not exist on {}; pass --create to create it",
                o.target.host_label()
            )));
        }
        postgres::create_database(&mut c, &o.maintenance_db, db).await?;
        t.created = true;
        tracing::info!(database = %db, "created the target database");
    }
    postgres::close(c).await;
    if exists {
        let mut c = o.target.connect(db).await?;
        let n = postgres::user_objects(&mut c, db).await?;
        postgres::close(c).await;
        if n > 0 && !o.clean {
            return Err(Error::Target(format!(
                "target database {db:?} is not empty ({n} objects); pass --clean to replace its contents"
            )));
        }
    }
    t.prepared = Some(db.to_string());
    Ok(())
}

/// `latest` or a time, resolved to one backup across every destination that
/// can be read: a destination that lags (or lost its newest manifest) must
/// not win over a newer copy elsewhere just by being named first. Only
/// authenticated manifests count. A destination that cannot be read here is
/// tried, and reported, by the restore itself.
async fn resolve_point(o: &RestoreOptions) -> Point {
    if matches!(o.point, Point::Id(_)) || o.from.len() < 2 {
        return o.point.clone();
    }
    let mut newest: Option<(chrono::DateTime<chrono::Utc>, String)> = None;
    for url in &o.from {
        let chosen = match Store::open(url).await {
            Ok(store) => manifests::choose(&store, &o.keys, &o.point).await,
            Err(e) => Err(e.into()),
        };
        match chosen {
            Ok(m) => {
                let key = (m.completed_at, m.backup_id);
                if newest.as_ref().is_none_or(|n| key > *n) {
                    newest = Some(key);
                }
            }
            Err(e) => {
                tracing::warn!(from = %url.label(), error = %e, "cannot read this destination's recovery points")
            }
        }
    }
    match newest {
        Some((_, id)) => {
            tracing::info!(backup = %id, point = ?o.point, "the newest backup across the destinations");
            Point::Id(id)
        }
        None => o.point.clone(),
    }
}

async fn restore_from(
    url: &NamedLocation,
    o: &RestoreOptions,
    point: &Point,
    target: &mut Target,
) -> Result<RestoreReport, Error> {
    let store = Store::open(url).await?;
    let manifest = manifests::choose(&store, &o.keys, point).await?;
    let entry = pick(&manifest.objects, o.database.as_deref())?;
    let source_db = entry.database.clone().unwrap_or_default();
    let target_db = o.target_db.clone().unwrap_or_else(|| source_db.clone());
    prepare_target(o, &target_db, target).await?;
    if o.globals {
        restore_globals(&store, &manifest.objects, o).await?;
    }
    tracing::info!(backup = %manifest.backup_id, from = %url.label(), database = %source_db, target = %target_db, bytes = entry.size, "restoring");

    let passfile = o.target.passfile()?;
    let cmd = o
        .target
        .pg_restore(&target_db, o.clean, o.no_owner, passfile.as_ref());
    let mut stage = Stage::spawn("pg_restore", cmd).map_err(|source| PgError::Spawn {
        tool: "pg_restore".into(),
        source,
    })?;
    // A second handle on pg_restore's stdin keeps end-of-input from reaching
    // it until we have checked everything; on a fault we kill it first.
    let stdin: OwnedFd = stage.child.stdin.take().expect("piped stdin").into();
    let hold = stdin.try_clone().map_err(Error::Pipeline)?;
    let sink = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(stdin));
    let result = decode_object(&store, entry, o.keys.clone(), sink).await;
    let plain = match result {
        Ok((sink, plain)) => {
            drop(sink);
            plain
        }
        Err(e) => {
            drop(hold_or_kill(&mut stage, hold));
            // If pg_restore died on its own (an SQL error), its words matter more.
            return Err(match child::wait(stage).await {
                Err(f) if !f.killed => Error::Tool {
                    tool: f.tool,
                    what: target_db,
                    status: f.status,
                    stderr: f.stderr,
                },
                _ => e,
            });
        }
    };
    drop(hold);
    child::wait(stage).await.map_err(|f| Error::Tool {
        tool: f.tool,
        what: target_db.clone(),
        status: f.status,
        stderr: f.stderr,
    })?;
    drop(passfile);
    Ok(RestoreReport {
        backup_id: manifest.backup_id.clone(),
        destination: url.name.clone(),
        source_database: source_db,
        target_database: target_db,
        backup_completed_at: manifest.completed_at,
        bytes: entry.size,
        plain_bytes: plain,
        seconds: 0.0,
        mib_per_s: 0.0,
        failed_attempts: Vec::new(),
        peak_rss_bytes: 0,
    })
}

/// Kills pg_restore unless it already exited, then lets its stdin close:
/// it must never see end-of-input after a fault.
fn hold_or_kill(stage: &mut Stage, hold: OwnedFd) -> OwnedFd {
    if !matches!(stage.child.try_wait(), Ok(Some(_))) {
        stage.kill_now();
    }
    hold
}

/// Applies the globals part: decoded and authenticated whole in memory first
/// (it is a few KiB of SQL), so nothing of a damaged object reaches psql.
async fn restore_globals(
    store: &Store,
    objects: &[ObjectEntry],
    o: &RestoreOptions,
) -> Result<(), Error> {
    let Some(entry) = objects.iter().find(|e| e.role == "globals") else {
        return Err(Error::Usage(
            "--globals: this backup holds no globals (it was made with --no-globals)".into(),
        ));
    };
    let (sql, _) = decode_object(store, entry, o.keys.clone(), Vec::new()).await?;
    let passfile = o.target.passfile()?;
    let cmd = o.target.psql_globals(&o.maintenance_db, passfile.as_ref());
    let mut stage = Stage::spawn("psql", cmd).map_err(|source| PgError::Spawn {
        tool: "psql".into(),
        source,
    })?;
    let mut stdin = stage.child.stdin.take().expect("piped stdin");
    let fed = tokio::task::spawn_blocking(move || std::io::Write::write_all(&mut stdin, &sql))
        .await
        .map_err(|e| Error::Pipeline(std::io::Error::other(e)))?;
    let done = child::wait(stage).await;
    fed.map_err(Error::Pipeline)?;
    let notes = done.map_err(|f| Error::Tool {
        tool: f.tool,
        what: "globals".into(),
        status: f.status,
        stderr: f.stderr,
    })?;
    // Roles that exist already are expected on a live server; say so quietly.
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
