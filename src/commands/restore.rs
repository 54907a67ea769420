//! `lifeboat restore`: choose a recovery point, then stream it from the first
//! destination that serves it intact into `pg_restore`, falling back to the
//! next destination when one is unreachable or fails verification.
//!
//! pg_restore runs in one transaction and sees end-of-input only after the
//! whole object authenticated and matched the manifest; on any fault it is
//! killed first, so the transaction rolls back and nothing is loaded. With
//! `--jobs N` into a database it creates, src/commands/restore_parallel.rs
//! loads it over N connections instead (docs/DESIGN.md, *Parallel restore*).

use super::download::decode_object;
use super::progress::{mib_per_s, peak_rss_bytes};
use super::{manifests, Error};
use crate::catalog::{ObjectEntry, Point};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::source::postgres::RestoreInput;
use crate::store::Store;
use crate::target::database::{DatabaseTarget, Head, HeadTee, Prepared};
use crate::target::spool::Spool;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct RestoreOptions {
    pub from: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    pub point: Point,
    /// Which database of the backup, when it holds several.
    pub database: Option<String>,
    pub target: DatabaseTarget,
    /// Target database name; the source database's name when unset.
    pub target_db: Option<String>,
    /// Apply the backup's roles and tablespaces before the database.
    pub globals: bool,
    /// pg_restore connections; above 1, a database this restore creates is
    /// loaded over them from a local copy as it is written (`--jobs`).
    pub jobs: u32,
    /// Where that copy goes (TMPDIR when unset).
    pub spool_dir: Option<PathBuf>,
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
    /// The database's owner, settings, ACL and comment: restored or why not.
    pub database_properties: String,
    /// pg_restore connections that loaded it (1: streamed in one transaction).
    pub jobs: u32,
}

pub async fn restore(o: RestoreOptions) -> Result<RestoreReport, Error> {
    let t0 = Instant::now();
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    let point = resolve_point(&o.from, &o.keys, &o.point).await;
    let mut target = Prepared::default();
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
            Err(e) if e.is_source_fault() => attempts.push(Attempt::failed(url, &e)),
            Err(e) => {
                o.target.discard(&target).await;
                return Err(e);
            }
        }
    }
    o.target.discard(&target).await;
    Err(Attempt::all_failed(&attempts))
}

impl Attempt {
    /// A destination that could not serve the restore: logged, and kept
    /// for the report while the next one is tried.
    pub(super) fn failed(url: &NamedLocation, e: &Error) -> Self {
        tracing::warn!(from = %url.label(), error = %e, "this destination cannot serve the restore; trying the next one");
        Attempt {
            destination: url.name.clone(),
            error: e.to_string(),
        }
    }

    /// The error when every destination failed.
    pub(super) fn all_failed(attempts: &[Attempt]) -> Error {
        Error::AllSourcesFailed(
            attempts
                .iter()
                .map(|a| a.error.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

fn pick<'m>(objects: &'m [ObjectEntry], want: Option<&str>) -> Result<&'m ObjectEntry, Error> {
    let dbs: Vec<&ObjectEntry> = objects.iter().filter(|o| o.role == "database").collect();
    if objects.iter().any(|o| o.role == super::files::TREE_ROLE) {
        return Err(Error::Usage(
            "the backup is a file backup: restore it with --to-dir DIR".into(),
        ));
    }
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

/// `latest` or a time, resolved to one backup across every destination that
/// can be read: a destination that lags (or lost its newest manifest) must
/// not win over a newer copy elsewhere just by being named first. Only
/// authenticated manifests count. A destination that cannot be read here is
/// tried, and reported, by the restore itself.
pub(super) async fn resolve_point(from: &[NamedLocation], keys: &Keyring, point: &Point) -> Point {
    if matches!(point, Point::Id(_)) || from.len() < 2 {
        return point.clone();
    }
    let mut newest: Option<(chrono::DateTime<chrono::Utc>, String)> = None;
    for url in from {
        let chosen = match Store::open(url).await {
            Ok(store) => manifests::choose(&store, keys, point).await,
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
            tracing::info!(backup = %id, point = ?point, "the newest backup across the destinations");
            Point::Id(id)
        }
        None => point.clone(),
    }
}

async fn restore_from(
    url: &NamedLocation,
    o: &RestoreOptions,
    point: &Point,
    target: &mut Prepared,
) -> Result<RestoreReport, Error> {
    let store = Store::open(url).await?;
    let manifest = manifests::choose(&store, &o.keys, point).await?;
    let entry = pick(&manifest.objects, o.database.as_deref())?;
    let source_db = entry.database.clone().unwrap_or_default();
    let target_db = o.target_db.clone().unwrap_or_else(|| source_db.clone());
    let server = o.target.for_backup(&manifest.source).await?;
    server.prepare(&target_db, target).await?;
    if o.globals {
        restore_globals(&store, &manifest.objects, &o.keys, &server).await?;
    }
    tracing::info!(backup = %manifest.backup_id, from = %url.label(), database = %source_db, target = %target_db, bytes = entry.size, "restoring");

    // The database's own properties go by its name: only into the same
    // name, and not when owners and privileges are not wanted.
    let properties = target_db == source_db && !server.no_owner;
    // Each holds the archive (or its head) for the properties until the end.
    let spool = spool_for(o, entry, target)?;
    let head = (spool.is_none() && properties)
        .then(Head::new)
        .transpose()
        .map_err(Error::Pipeline)?;
    let dump = Dump {
        store: &store,
        entry,
        keys: &o.keys,
        server: &server,
        db: &target_db,
    };
    let (plain, jobs, archive) = match &spool {
        Some(spool) => {
            let plain = super::restore_parallel::load(&dump, spool, o.jobs, target).await?;
            (plain, o.jobs, properties.then(|| spool.file()))
        }
        None => {
            let plain = dump.stream(head.as_ref(), target).await?;
            (plain, 1, head.as_ref().map(Head::path))
        }
    };
    // The data is committed: a failure here is reported, not fatal.
    let database_properties = match &archive {
        Some(a) => match server.apply_properties(a).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(database = %target_db, error = %e, "the database's owner, settings, ACL and comment were not restored");
                format!("not restored: {e}")
            }
        },
        None if server.no_owner => "not restored: --no-owner".into(),
        None => format!("not restored: {target_db:?} is not the backup's database {source_db:?}"),
    };
    tracing::info!(database = %target_db, properties = %database_properties, "database properties");
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
        database_properties,
        jobs,
    })
}

/// A spool for a parallel load, when one is asked for and can be had: the
/// database must be one this restore created (a failure drops it: a
/// parallel load is not one transaction) and the disk must hold the dump.
fn spool_for(
    o: &RestoreOptions,
    entry: &ObjectEntry,
    target: &Prepared,
) -> Result<Option<Spool>, Error> {
    if o.jobs <= 1 {
        return Ok(None);
    }
    if !target.created() {
        tracing::info!("loading in one transaction: a parallel restore needs a database it creates (--create, a new name), so that a failure can drop it");
        return Ok(None);
    }
    let parent = o.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let need = super::restore_parallel::spool_need(entry);
    match Spool::new(&parent, need).map_err(Error::Pipeline)? {
        Ok(spool) => Ok(Some(spool)),
        Err(no_room) => {
            tracing::warn!(reason = %no_room, "loading in one transaction instead of in parallel");
            Ok(None)
        }
    }
}

/// One database's dump and where it goes.
pub(super) struct Dump<'a> {
    pub store: &'a Store,
    pub entry: &'a ObjectEntry,
    pub keys: &'a Arc<Keyring>,
    pub server: &'a DatabaseTarget,
    pub db: &'a str,
}

impl Dump<'_> {
    /// Streams the dump into pg_restore's single transaction, which sees
    /// the end of its input only once every byte authenticated; its head
    /// also goes to `head` (the database's properties are read from it).
    async fn stream(&self, head: Option<&Head>, target: &mut Prepared) -> Result<u64, Error> {
        let mut pg_restore = self.server.loader(self.db, &RestoreInput::Stream)?;
        let tee = match HeadTee::new(pg_restore.input(), head) {
            Ok(tee) => tee,
            Err(e) => {
                return Err(pg_restore
                    .abort()
                    .await
                    .map_or(Error::Pipeline(e), Error::from))
            }
        };
        let plain = match decode_object(self.store, self.entry, self.keys.clone(), tee).await {
            Ok((tee, plain)) => {
                drop(tee);
                plain
            }
            Err(e) => return Err(pg_restore.abort().await.map_or(e, Error::from)),
        };
        target.hand_over(pg_restore).await?;
        Ok(plain)
    }
}

/// Applies the globals part: decoded and authenticated whole in memory first
/// (it is a few KiB of SQL), so nothing of a damaged object reaches psql.
pub(super) async fn restore_globals(
    store: &Store,
    objects: &[ObjectEntry],
    keys: &Arc<Keyring>,
    server: &DatabaseTarget,
) -> Result<(), Error> {
    let Some(entry) = objects.iter().find(|e| e.role == "globals") else {
        return Err(Error::Usage(
            "--globals: this backup holds no globals (it was made with --no-globals)".into(),
        ));
    };
    let (sql, _) = decode_object(store, entry, keys.clone(), Vec::new()).await?;
    Ok(server.apply_globals(sql).await?)
}
