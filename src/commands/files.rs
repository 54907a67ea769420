//! `lifeboat backup --path DIR` and `lifeboat restore --to-dir DIR`: file
//! backups in the chunk store (format 2). Backup: open every destination's
//! store (its index loaded), stream the previous backup's tree for
//! unchanged files, walk and chunk on a blocking thread while the tree is
//! sealed and streamed to every destination, then commit with the manifest
//! (format 2, MAC'd) written last everywhere. Restore: the chosen backup
//! from the first destination that serves it whole, into a fresh directory.

use super::backup::{BackupReport, DestinationReport};
use super::progress::{mib_per_s, peak_rss_bytes};
use super::{manifests, Error};
use crate::catalog::{self, FilesInfo, Manifest, ObjectEntry, Point, SourceInfo};
use crate::chunks::repo::Repo;
use crate::chunks::sink::UploadSink;
use crate::chunks::tree_io::TreeReader;
use crate::chunks::ChunkKeys;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::pipeline::codec::{Counting, ObjectEncoder};
use crate::pipeline::header::Compression;
use crate::source::files::{Engine, FilesSpec, Previous};
use crate::store::Store;
use crate::target::files::{Restored, Restorer};
use crate::target::files_in_place::{InPlace, InPlaceOptions, InPlaceReport};
use bytes::Bytes;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

/// The role of a file backup's one object.
pub const TREE_ROLE: &str = "tree";

pub struct FilesBackupOptions {
    pub spec: FilesSpec,
    pub to: Vec<NamedLocation>,
    pub keys: Keyring,
    pub policy: String,
    pub tier: String,
    /// Packs close at this size (tests make it small).
    pub pack_target: Option<u64>,
}

/// The newest committed file backup in `store` whose manifest authenticates.
async fn previous_backup(store: &Store, keys: &Keyring) -> Option<Manifest> {
    let ids = manifests::committed_ids(store).await.ok()?;
    let id = ids.last()?;
    match manifests::open(store, id, keys).await {
        Ok(m) if matches!(m.source, SourceInfo::Files(_)) => Some(m),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(dest = %store.label(), backup = %id, error = %e, "the previous backup does not open: every file is read");
            None
        }
    }
}

pub async fn backup(o: FilesBackupOptions) -> Result<BackupReport, Error> {
    let (t0, started_at, id) = super::backup::start(&o.to)?;
    let mut stores = Vec::new();
    for dest in &o.to {
        let store = Store::open(dest).await?;
        store.check_object_lock().await?;
        manifests::clean_leftovers(&store, &id).await?;
        manifests::clean_chunk_leftovers(&store, &id).await?;
        stores.push(store);
    }
    let keys = Arc::new(o.keys);
    let ids = ChunkKeys::new(keys.primary());
    // The previous tree is trusted only when made with the same chunk key.
    let previous = previous_backup(&stores[0], &keys)
        .await
        .filter(|m| matches!(&m.source, SourceInfo::Files(f) if f.chunk_key_id == ids.key_id));
    tracing::info!(backup = %id, path = %o.spec.root.display(), previous = ?previous.as_ref().map(|m| &m.backup_id), full = o.spec.full, "file backup started");
    let tree_key = catalog::object_key(&id, TREE_ROLE);
    let stores = Arc::new(stores);
    let (spec, pack_target) = (o.spec.clone(), o.pack_target);
    let (stores2, keys2, id2, tree_key2) =
        (stores.clone(), keys.clone(), id.clone(), tree_key.clone());
    let chunk_key_id = ids.key_id.clone();
    let rt = Handle::current();
    let ran = tokio::task::spawn_blocking(move || {
        let (stores, keys) = (&*stores2, &*keys2);
        let mut repos = Vec::new();
        for s in stores.iter() {
            let (repo, _) = Repo::open(rt.clone(), s, keys, &id2)?;
            repos.push(match pack_target {
                Some(t) => repo.with_pack_target(t),
                None => repo,
            });
        }
        let prev: Option<Previous> = match &previous {
            Some(m) => Some(Box::new(
                TreeReader::open(rt.clone(), &stores[0], keys, &m.objects[0])
                    .map_err(Error::Usage)?,
            )),
            None => None,
        };
        let mut writers = Vec::new();
        for s in stores.iter() {
            writers.push(rt.block_on(s.writer(&tree_key2))?);
        }
        let sink = UploadSink::new(rt.clone(), writers);
        let enc = ObjectEncoder::new(sink, keys.primary(), &tree_key2, Compression::Zstd)
            .map_err(Error::Pipeline)?;
        let counted = Counting {
            inner: enc,
            count: 0,
        };
        let engine = Engine::new(&spec, &ids, &mut repos, prev);
        let finished = engine.run(counted).map_err(Error::Files);
        let (stats, counted) = match finished {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        let plain_size = counted.count;
        let digest = counted.inner.finish().map_err(Error::Pipeline)?.finish()?;
        Ok::<_, Error>((stats, digest, plain_size))
    })
    .await
    .map_err(|e| Error::Usage(format!("the file walker stopped: {e}")))?;
    let (stats, digest, plain_size) = match ran {
        Ok(r) => r,
        Err(e) => {
            // The tree's upload was never finished; objects of this backup
            // left anywhere are removed now (or by the next run).
            for s in stores.iter() {
                let _ = manifests::delete_backup(s, &id).await;
            }
            return Err(e);
        }
    };
    let objects = vec![ObjectEntry {
        key: tree_key,
        role: TREE_ROLE.into(),
        database: None,
        size: digest.size,
        sha256: digest.sha256,
        plain_size,
    }];
    let manifest = Manifest {
        format: catalog::MANIFEST_FORMAT_FILES,
        backup_id: id.clone(),
        policy: o.policy.clone(),
        namespace: None,
        tier: o.tier.clone(),
        source: SourceInfo::Files(FilesInfo {
            path: o.spec.root.display().to_string(),
            chunk_key_id,
            stats: stats.clone(),
        }),
        started_at,
        completed_at: Utc::now(),
        compression: Compression::Zstd,
        key_id: String::new(),
        objects: objects.clone(),
        mac_key: String::new(),
        physical: None,
    };
    let sealed = Bytes::from(catalog::seal_manifest(manifest, &keys));
    let mkey = catalog::manifest_key(&id);
    let puts = futures::future::join_all(stores.iter().map(|s| s.put(&mkey, sealed.clone()))).await;
    if let Some(e) = puts.into_iter().find_map(Result::err) {
        // A manifest in one place and not in another is not a backup.
        for s in stores.iter() {
            let _ = manifests::delete_backup(s, &id).await;
        }
        return Err(e.into());
    }
    let seconds = t0.elapsed().as_secs_f64();
    tracing::info!(
        backup = %id,
        files_new = stats.files_new,
        files_changed = stats.files_changed,
        files_unchanged = stats.files_unchanged,
        bytes_read = stats.bytes_read,
        bytes_deduplicated = stats.bytes_deduplicated,
        bytes_stored = stats.bytes_stored,
        seconds = format!("{seconds:.1}"),
        "file backup committed"
    );
    Ok(BackupReport {
        backup_id: id,
        policy: o.policy,
        tier: o.tier,
        server_version: String::new(),
        databases: Vec::new(),
        destinations: o
            .to
            .iter()
            .map(|d| DestinationReport {
                destination: d.name.clone(),
                committed: true,
                verified: None,
                error: None,
            })
            .collect(),
        objects,
        bytes_in: stats.bytes_read,
        bytes_out: stats.bytes_stored + digest.size,
        seconds,
        mib_per_s: mib_per_s(stats.bytes_read, seconds),
        peak_rss_bytes: peak_rss_bytes(),
        files: Some(stats),
        to: o.to,
    })
}

#[derive(Debug, serde::Serialize)]
pub struct FilesRestoreReport {
    pub backup_id: String,
    pub destination: String,
    pub target: String,
    pub restored: Restored,
    /// Existing entries kept by `--overwrite` (in-place restores).
    pub kept: u64,
    /// Entries removed by `--delete-extra`.
    pub deleted: u64,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
}

/// Restores `point` into `target` from the first destination that serves
/// it whole; a destination that fails leaves nothing and the next is tried.
pub async fn restore(
    from: &[NamedLocation],
    keys: Keyring,
    point: &Point,
    target: PathBuf,
    in_place: Option<InPlaceOptions>,
) -> Result<FilesRestoreReport, Error> {
    let t0 = Instant::now();
    let keys = Arc::new(keys);
    let mut errors = Vec::new();
    for dest in from {
        match restore_from(dest, keys.clone(), point, target.clone(), in_place.clone()).await {
            Ok((backup_id, done)) => {
                let restored = done.restored;
                tracing::info!(backup = %backup_id, dest = %dest.label(), files = restored.files, bytes = restored.bytes, "files restored");
                return Ok(FilesRestoreReport {
                    backup_id,
                    destination: dest.name.clone(),
                    target: target.display().to_string(),
                    restored,
                    kept: done.kept,
                    deleted: done.deleted,
                    seconds: t0.elapsed().as_secs_f64(),
                    peak_rss_bytes: peak_rss_bytes(),
                });
            }
            Err(e) if matches!(e, Error::Target(crate::target::TargetError::Refused(ref m)) if m.starts_with("--to-dir")) => {
                return Err(e)
            }
            Err(e) => {
                tracing::error!(dest = %dest.label(), error = %e, "restore from this destination failed; nothing was written");
                errors.push(e.to_string());
            }
        }
    }
    Err(Error::AllSourcesFailed(errors.join("; ")))
}

async fn restore_from(
    dest: &NamedLocation,
    keys: Arc<Keyring>,
    point: &Point,
    target: PathBuf,
    in_place: Option<InPlaceOptions>,
) -> Result<(String, InPlaceReport), Error> {
    let store = Arc::new(Store::open(dest).await?);
    let m = manifests::choose(&store, &keys, point).await?;
    let SourceInfo::Files(info) = &m.source else {
        return Err(Error::Usage(format!(
            "backup {} is not a file backup (restore it with --target-db or --data-dir)",
            m.backup_id
        )));
    };
    let ids = ChunkKeys::new(keys.get(&info.chunk_key_id)?);
    let tree = m
        .objects
        .iter()
        .find(|o| o.role == TREE_ROLE)
        .cloned()
        .ok_or_else(|| Error::Usage(format!("backup {} lists no tree", m.backup_id)))?;
    let rt = Handle::current();
    let id = m.backup_id.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let keys = &*keys;
        let (mut repo, _) = Repo::open(rt.clone(), &store, keys, "restore")?;
        let entries = TreeReader::open(rt, &store, keys, &tree).map_err(Error::Usage)?;
        let mut read = |cid: &crate::chunks::ChunkId| {
            repo.read_chunk(&ids, cid)
                .map_err(|e| crate::target::TargetError::Refused(e.to_string()))
        };
        if let Some(opts) = in_place {
            // Into an existing directory: not all or nothing (see files_in_place).
            let mut into = InPlace::new(&target, opts)?;
            for e in entries {
                into.apply(e.map_err(crate::target::TargetError::Refused)?, &mut read)?;
            }
            return Ok(into.finish()?);
        }
        let mut restorer = Restorer::new(&target)?;
        for e in entries {
            let step = match e {
                Ok(e) => restorer.apply(e, &mut read),
                Err(e) => Err(crate::target::TargetError::Refused(e)),
            };
            if let Err(e) = step {
                restorer.discard();
                return Err(Error::Target(e));
            }
        }
        Ok::<_, Error>(InPlaceReport {
            restored: restorer.finish()?,
            ..Default::default()
        })
    })
    .await
    .map_err(|e| Error::Usage(format!("the restore stopped: {e}")))??;
    Ok((id, restored))
}
