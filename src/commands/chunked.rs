//! What every backup into the chunk store (format 2) does around its
//! source: open every destination's store (its index loaded), find the
//! previous backup of the same source (its tree streamed, for what is
//! unchanged), run the source on a blocking thread while the tree is sealed
//! and streamed to every destination, then commit with the manifest (MAC'd)
//! written last everywhere. A failure removes what the run wrote.

use super::backup::{BackupReport, DestinationReport};
use super::progress::{mib_per_s, peak_rss_bytes};
use super::{manifests, Error};
use crate::catalog::{self, FileStats, Manifest, ObjectEntry, SourceInfo};
use crate::chunks::repo::Repo;
use crate::chunks::sink::UploadSink;
use crate::chunks::tree_io::TreeReader;
use crate::chunks::ChunkKeys;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::pipeline::codec::{Counting, ObjectEncoder};
use crate::pipeline::header::Compression;
use crate::source::files::Previous;
use crate::store::Store;
use bytes::Bytes;
use chrono::Utc;
use std::sync::Arc;
use tokio::runtime::Handle;

/// The role of a chunk-store backup's one object.
pub const TREE_ROLE: &str = "tree";

/// The tree object a chunk-store backup's manifest lists.
pub fn tree_of(m: &Manifest) -> Result<&ObjectEntry, Error> {
    m.objects
        .iter()
        .find(|o| o.role == TREE_ROLE)
        .ok_or_else(|| Error::Usage(format!("backup {} lists no tree", m.backup_id)))
}

/// Where a source writes its tree: sealed, counted, uploaded everywhere.
pub type TreeOut = Counting<ObjectEncoder<UploadSink>>;

/// What a source gets on its blocking thread.
pub struct RunCtx<'a, 'r> {
    pub rt: Handle,
    pub ids: &'a ChunkKeys,
    pub repos: &'a mut [Repo<'r>],
    pub previous: Option<Previous<'a>>,
}

pub struct ChunkedOptions {
    pub to: Vec<NamedLocation>,
    pub keys: Keyring,
    pub policy: String,
    pub tier: String,
    /// Packs close at this size (tests make it small).
    pub pack_target: Option<u64>,
}

/// The newest committed backup in `store` whose manifest authenticates,
/// when `same` says it is of this source.
async fn previous_backup(
    store: &Store,
    keys: &Keyring,
    same: &dyn Fn(&SourceInfo) -> bool,
) -> Option<Manifest> {
    let ids = manifests::committed_ids(store).await.ok()?;
    let id = ids.last()?;
    match manifests::open(store, id, keys).await {
        Ok(m) if same(&m.source) => Some(m),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(dest = %store.label(), backup = %id, error = %e, "the previous backup does not open: everything is read");
            None
        }
    }
}

/// Runs `run` and commits its tree. `same` picks the previous backup whose
/// tree `run` may trust; `info` describes the source for the manifest.
pub async fn backup<F>(
    o: ChunkedOptions,
    same: &dyn Fn(&SourceInfo) -> bool,
    info: impl FnOnce(String, FileStats) -> SourceInfo,
    run: F,
) -> Result<BackupReport, Error>
where
    F: for<'a, 'r> FnOnce(RunCtx<'a, 'r>, TreeOut) -> Result<(FileStats, TreeOut), Error>
        + Send
        + 'static,
{
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
    let chunk_key_id = ids.key_id.clone();
    let previous = previous_backup(&stores[0], &keys, &|s| {
        same(s) && s.chunk_key_id() == Some(chunk_key_id.as_str())
    })
    .await;
    tracing::info!(backup = %id, previous = ?previous.as_ref().map(|m| &m.backup_id), "backup into the chunk store started");
    let tree_key = catalog::object_key(&id, TREE_ROLE);
    let stores = Arc::new(stores);
    let pack_target = o.pack_target;
    let (stores2, keys2, id2, tree_key2) =
        (stores.clone(), keys.clone(), id.clone(), tree_key.clone());
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
        let ctx = RunCtx {
            rt: rt.clone(),
            ids: &ids,
            repos: &mut repos,
            previous: prev,
        };
        let (stats, counted) = run(ctx, counted)?;
        let plain_size = counted.count;
        let digest = counted.inner.finish().map_err(Error::Pipeline)?.finish()?;
        Ok::<_, Error>((stats, digest, plain_size))
    })
    .await
    .map_err(|e| Error::Usage(format!("the backup stopped: {e}")))?;
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
        frames: None,
    }];
    let manifest = Manifest {
        format: catalog::MANIFEST_FORMAT_FILES,
        backup_id: id.clone(),
        policy: o.policy.clone(),
        namespace: None,
        tier: o.tier.clone(),
        source: info(chunk_key_id, stats.clone()),
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
        new = stats.files_new,
        changed = stats.files_changed,
        unchanged = stats.files_unchanged,
        bytes_read = stats.bytes_read,
        bytes_deduplicated = stats.bytes_deduplicated,
        bytes_stored = stats.bytes_stored,
        seconds = format!("{seconds:.1}"),
        "backup committed"
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
