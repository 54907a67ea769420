//! `lifeboat backup --path DIR` and `lifeboat restore --to-dir DIR`: file
//! backups in the chunk store (format 2). Backup: open every destination's
//! store (its index loaded), stream the previous backup's tree for
//! unchanged files, walk and chunk on a blocking thread while the tree is
//! sealed and streamed to every destination, then commit with the manifest
//! (format 2, MAC'd) written last everywhere. Restore: the chosen backup
//! from the first destination that serves it whole, into a fresh directory.

use super::backup::BackupReport;
use super::chunked::{self, ChunkedOptions};
use super::files_by_pack;
use super::progress::peak_rss_bytes;
use super::{manifests, Error};
use crate::catalog::{FilesInfo, Point, SourceInfo};
use crate::chunks::feed::{self, Feed};
use crate::chunks::repo::Repo;
use crate::chunks::tree_io::TreeReader;
use crate::chunks::ChunkKeys;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::source::files::{Engine, FilesSpec};
use crate::store::Store;
use crate::target::files::{Restored, Restorer};
use crate::target::files_in_place::{InPlace, InPlaceOptions, InPlaceReport, Overwrite};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

pub use super::chunked::TREE_ROLE;

pub struct FilesBackupOptions {
    pub spec: FilesSpec,
    pub to: Vec<NamedLocation>,
    pub keys: Keyring,
    pub policy: String,
    pub tier: String,
    /// Packs close at this size (tests make it small).
    pub pack_target: Option<u64>,
}

pub async fn backup(o: FilesBackupOptions) -> Result<BackupReport, Error> {
    tracing::info!(path = %o.spec.root.display(), full = o.spec.full, "file backup");
    let spec = o.spec.clone();
    let path = o.spec.root.display().to_string();
    let options = ChunkedOptions {
        to: o.to,
        keys: o.keys,
        policy: o.policy,
        tier: o.tier,
        pack_target: o.pack_target,
    };
    chunked::backup(
        options,
        &|s| matches!(s, SourceInfo::Files(_)),
        |chunk_key_id, stats| {
            SourceInfo::Files(FilesInfo {
                path,
                chunk_key_id,
                stats,
            })
        },
        move |ctx, out| {
            let engine = Engine::new(&spec, ctx.ids, ctx.repos, ctx.previous);
            engine.run(out).map_err(Error::Files)
        },
    )
    .await
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

impl FilesRestoreReport {
    /// The Job's termination message (a RestoreRequest's restore step).
    pub fn summary(&self) -> crate::wire::RestoreSummary {
        let r = &self.restored;
        crate::wire::RestoreSummary {
            ok: true,
            backup_id: Some(self.backup_id.clone()),
            restore_seconds: self.seconds,
            bytes: r.bytes,
            files: Some(r.files),
            ..Default::default()
        }
    }
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
            Ok(None) => return objects_into_dir(from, keys, point, target, in_place).await,
            Ok(Some((backup_id, done))) => {
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
) -> Result<Option<(String, InPlaceReport)>, Error> {
    let store = Arc::new(Store::open(dest).await?);
    let m = manifests::choose(&store, &keys, point).await?;
    if let SourceInfo::Bucket(_) = &m.source {
        return Ok(None);
    }
    let SourceInfo::Files(info) = &m.source else {
        return Err(Error::Usage(format!(
            "backup {} is not a file backup (restore it with --target-db or --data-dir)",
            m.backup_id
        )));
    };
    let ids = ChunkKeys::new(keys.get(&info.chunk_key_id)?);
    let tree = super::chunked::tree_of(&m)?.clone();
    let rt = Handle::current();
    let id = m.backup_id.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let keys = &*keys;
        let (mut repo, _) = Repo::open(rt.clone(), &store, keys, "restore")?;
        let Some(opts) = in_place else {
            let mut restorer = Restorer::new(&target)?;
            let done =
                files_by_pack::restore(&rt, &store, keys, &tree, &mut repo, &ids, &mut restorer);
            if let Err(e) = done {
                restorer.discard();
                return Err(e);
            }
            return Ok(InPlaceReport {
                restored: restorer.finish()?,
                ..Default::default()
            });
        };
        // Into an existing directory, file by file in tree order (not all
        // or nothing: see files_in_place).
        let plan = feed::plan_tree(rt.clone(), &store, keys, &tree, &repo.index, |_| true)
            .map_err(Error::Usage)?;
        let mut feed = Feed::new(rt.clone(), (*store).clone(), plan);
        let mut read = |cid: &crate::chunks::ChunkId| {
            feed.read(&mut repo, &ids, cid)
                .map_err(|e| crate::target::TargetError::Refused(e.to_string()))
        };
        let mut into = InPlace::new(&target, opts)?;
        for e in TreeReader::open(rt, &store, keys, &tree).map_err(Error::Usage)? {
            into.apply(e.map_err(crate::target::TargetError::Refused)?, &mut read)?;
        }
        Ok::<_, Error>(into.finish()?)
    })
    .await
    .map_err(|e| Error::Usage(format!("the restore stopped: {e}")))??;
    Ok(Some((id, restored)))
}

/// `--to-dir` of a bucket backup: its objects as files in a new directory
/// (a bucket policy's drill; `--to-bucket` restores them with metadata).
async fn objects_into_dir(
    from: &[NamedLocation],
    keys: Arc<Keyring>,
    point: &Point,
    target: PathBuf,
    in_place: Option<InPlaceOptions>,
) -> Result<FilesRestoreReport, Error> {
    let (into, paths) = match in_place {
        Some(o) if o.delete_extra || o.overwrite != Overwrite::Never => {
            return Err(Error::Usage(
                "--overwrite and --delete-extra: a bucket backup goes into a new --to-dir, one file per object (or use --to-bucket)".into(),
            ))
        }
        Some(o) => (target.clone(), o.paths),
        None => (target.clone(), Vec::new()),
    };
    let paths = paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let into = super::bucket::RestoreInto::Dir(into);
    let r = super::bucket::restore(from, keys, point, into, paths).await?;
    Ok(FilesRestoreReport {
        backup_id: r.backup_id,
        destination: r.destination,
        target: r.target,
        restored: Restored {
            files: r.restored.objects,
            bytes: r.restored.bytes,
            ..Default::default()
        },
        kept: 0,
        deleted: 0,
        seconds: r.seconds,
        peak_rss_bytes: r.peak_rss_bytes,
    })
}
