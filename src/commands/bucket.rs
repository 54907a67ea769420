//! `lifeboat backup --bucket s3://…` and `lifeboat restore --to-bucket
//! s3://…`: the objects of a bucket in the chunk store (format 2,
//! docs/FORMAT.md §10), and back into a bucket.

use super::backup::BackupReport;
use super::chunked::{self, ChunkedOptions};
use super::progress::peak_rss_bytes;
use super::{manifests, Error};
use crate::catalog::{BucketInfo, Point, SourceInfo};
use crate::chunks::feed::{self, Feed};
use crate::chunks::repo::Repo;
use crate::chunks::tree_io::TreeReader;
use crate::chunks::ChunkKeys;
use crate::keys::Keyring;
use crate::location::{NamedLocation, S3Location};
use crate::source::bucket::object::Source;
use crate::source::bucket::{BucketEngine, BucketSpec};
use crate::store::s3::S3Store;
use crate::store::Store;
use crate::target::bucket::{headers, BucketTarget, PartBuf, PART};
use crate::target::bucket_dir::ObjectDir;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

pub struct BucketBackupOptions {
    pub source: S3Location,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub full: bool,
    pub chunked: ChunkedOptions,
}

/// Opens a bucket that is not lifeboat's (a source or a restore target).
async fn open(loc: &S3Location) -> Result<(Source, String), Error> {
    let label = format!(
        "bucket {}",
        crate::location::Location::S3(loc.clone()).base()
    );
    let s3 = S3Store::open(label.clone(), loc).await?;
    let (client, bucket, prefix) = s3.parts();
    Ok((
        Source {
            client: client.clone(),
            bucket: bucket.to_string(),
            label,
        },
        prefix.to_string(),
    ))
}

pub async fn backup(o: BucketBackupOptions) -> Result<BackupReport, Error> {
    let (source, prefix) = open(&o.source).await?;
    let loc = o.source.clone();
    tracing::info!(bucket = %source.label, full = o.full, "bucket backup");
    let spec = BucketSpec {
        source,
        prefix,
        include: o.include.clone(),
        exclude: o.exclude.clone(),
        full: o.full,
        sizes: crate::chunks::chunker::DEFAULT_SIZES,
    };
    let (bucket, pfx) = (loc.bucket.clone(), loc.prefix.clone());
    chunked::backup(
        o.chunked,
        &move |s| matches!(s, SourceInfo::Bucket(b) if b.bucket == bucket && b.prefix == pfx),
        |chunk_key_id, stats| {
            SourceInfo::Bucket(BucketInfo {
                endpoint: loc
                    .endpoint
                    .as_ref()
                    .map(|e| e.as_str().trim_end_matches('/').to_string()),
                region: loc.region.clone(),
                bucket: loc.bucket.clone(),
                prefix: loc.prefix.clone(),
                include: o.include,
                exclude: o.exclude,
                chunk_key_id,
                stats,
            })
        },
        move |ctx, out| {
            let engine = BucketEngine::new(&spec, ctx.rt, ctx.ids, ctx.repos, ctx.previous);
            engine.run(out).map_err(|e| Error::Usage(e.to_string()))
        },
    )
    .await
}

/// `--overwrite` of a bucket restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overwrite {
    /// Leave an object that exists in the target as it is.
    Never,
    /// Replace it.
    Always,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct BucketRestored {
    pub objects: u64,
    pub bytes: u64,
    /// Objects left as they were (`--overwrite never`).
    pub kept: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct BucketRestoreReport {
    pub backup_id: String,
    pub destination: String,
    pub target: String,
    pub restored: BucketRestored,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
}

impl BucketRestoreReport {
    /// The Job's termination message (a RestoreRequest's restore step).
    pub fn summary(&self) -> crate::wire::RestoreSummary {
        crate::wire::RestoreSummary {
            ok: true,
            backup_id: Some(self.backup_id.clone()),
            restore_seconds: self.seconds,
            bytes: self.restored.bytes,
            files: Some(self.restored.objects),
            ..Default::default()
        }
    }
}

/// Whether `key` is one of `paths` or under one (no paths: every key).
fn selected(paths: &[String], key: &[u8]) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            let p = p.trim_end_matches('/').as_bytes();
            key == p || (key.starts_with(p) && key.get(p.len()) == Some(&b'/')) || p.is_empty()
        })
}

/// Where a bucket backup's objects go.
// One per restore: the size of the bucket variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum RestoreInto {
    /// A bucket (`--to-bucket`), with metadata.
    Bucket(S3Location, Overwrite),
    /// A new local directory, one file per object (`--to-dir`: a drill's
    /// scratch space; see [`crate::target::bucket_dir`]).
    Dir(std::path::PathBuf),
}

/// Restores the bucket backup at `point` from the first destination that
/// has it into `into`; into a directory, a destination that fails part-way
/// leaves nothing and the next is tried.
pub async fn restore(
    from: &[NamedLocation],
    keys: Arc<Keyring>,
    point: &Point,
    into: RestoreInto,
    paths: Vec<String>,
) -> Result<BucketRestoreReport, Error> {
    let t0 = Instant::now();
    let (tgt, prefix, label) = match &into {
        RestoreInto::Bucket(target, _) => {
            let (src, prefix) = open(target).await?;
            let label = src.label.clone();
            let tgt = BucketTarget {
                client: src.client,
                bucket: src.bucket,
                label: src.label,
            };
            (Some(Arc::new(tgt)), prefix, label)
        }
        RestoreInto::Dir(dir) => (None, String::new(), dir.display().to_string()),
    };
    let overwrite = match &into {
        RestoreInto::Bucket(_, o) => *o,
        RestoreInto::Dir(_) => Overwrite::Always,
    };
    let dir = match &into {
        RestoreInto::Dir(d) => Some(d.clone()),
        RestoreInto::Bucket(..) => None,
    };
    let mut errors = Vec::new();
    for dest in from {
        let store = Arc::new(Store::open(dest).await?);
        let m = match manifests::choose(&store, &keys, point).await {
            Ok(m) => m,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let SourceInfo::Bucket(info) = &m.source else {
            return Err(Error::Usage(format!(
                "backup {} is not a bucket backup",
                m.backup_id
            )));
        };
        let ids = ChunkKeys::new(keys.get(&info.chunk_key_id)?);
        let tree = chunked::tree_of(&m)?.clone();
        let (rt, keys2, tgt2, prefix2, paths2, dir2) = (
            Handle::current(),
            keys.clone(),
            tgt.clone(),
            prefix.clone(),
            paths.clone(),
            dir.clone(),
        );
        let restored = tokio::task::spawn_blocking(move || {
            let keys = &*keys2;
            let (mut repo, _) = Repo::open(rt.clone(), &store, keys, "restore")?;
            let plan = feed::plan_tree(rt.clone(), &store, keys, &tree, &repo.index, |e| {
                selected(&paths2, &e.path)
            })
            .map_err(Error::Usage)?;
            let mut feed = Feed::new(rt.clone(), (*store).clone(), plan);
            let files = dir2.as_deref().map(ObjectDir::create).transpose()?;
            let mut done = BucketRestored::default();
            let entries =
                TreeReader::open(rt.clone(), &store, keys, &tree).map_err(Error::Usage)?;
            let copied = (|| {
                for e in entries {
                    let e = e.map_err(Error::Usage)?;
                    if !selected(&paths2, &e.path) {
                        continue;
                    }
                    let mut read = |c: &crate::chunks::ChunkId| feed.read(&mut repo, &ids, c);
                    match (&files, &tgt2) {
                        (Some(files), _) => {
                            let mut f = files.file(&e.path)?;
                            for c in e.chunk_refs() {
                                ObjectDir::write(&mut f, &e.path, &read(&c.id)?)?;
                            }
                        }
                        (None, Some(tgt2)) => {
                            let key = format!("{prefix2}{}", String::from_utf8_lossy(&e.path));
                            if overwrite == Overwrite::Never && rt.block_on(tgt2.exists(&key))? {
                                done.kept += 1;
                                continue;
                            }
                            upload(&rt, tgt2, &key, &e, &mut read)?;
                        }
                        (None, None) => unreachable!("a bucket or a directory"),
                    }
                    done.objects += 1;
                    done.bytes += e.size;
                }
                Ok::<_, Error>(())
            })();
            if let Err(err) = copied {
                if let Some(files) = files {
                    files.discard();
                }
                return Err(err);
            }
            Ok::<_, Error>(done)
        })
        .await
        .map_err(|e| Error::Usage(format!("the restore stopped: {e}")));
        let restored = match (restored, &dir) {
            (Ok(Ok(r)), _) => r,
            // Nothing was left in the directory: the next destination may serve it.
            (Ok(Err(e)), Some(_)) => {
                tracing::error!(dest = %dest.label(), error = %e, "restore from this destination failed; nothing was written");
                errors.push(e.to_string());
                continue;
            }
            (Ok(Err(e)), None) | (Err(e), _) => return Err(e),
        };
        tracing::info!(backup = %m.backup_id, objects = restored.objects, "bucket restored");
        return Ok(BucketRestoreReport {
            backup_id: m.backup_id.clone(),
            destination: dest.name.clone(),
            target: label,
            restored,
            seconds: t0.elapsed().as_secs_f64(),
            peak_rss_bytes: peak_rss_bytes(),
        });
    }
    Err(Error::AllSourcesFailed(errors.join("; ")))
}

/// One object into the target bucket: one PUT, or a multipart upload
/// (aborted on failure) above [`PART`].
fn upload(
    rt: &Handle,
    tgt: &BucketTarget,
    key: &str,
    e: &crate::chunks::tree::Entry,
    read: &mut dyn FnMut(&crate::chunks::ChunkId) -> Result<Vec<u8>, crate::chunks::ChunkError>,
) -> Result<(), Error> {
    let h = headers(e);
    if e.size as usize <= PART {
        let mut buf = Vec::with_capacity(e.size as usize);
        for c in e.chunk_refs() {
            buf.extend_from_slice(&read(&c.id)?);
        }
        return Ok(rt.block_on(tgt.put(key, &h, buf.into()))?);
    }
    let mut up = rt.block_on(tgt.start(key, &h))?;
    let mut parts = PartBuf::default();
    let sent = (|| {
        for c in e.chunk_refs() {
            if let Some(p) = parts.push(&read(&c.id)?) {
                rt.block_on(tgt.part(&mut up, p))?;
            }
        }
        if !parts.0.is_empty() {
            rt.block_on(tgt.part(&mut up, parts.0.split().freeze()))?;
        }
        Ok::<_, Error>(())
    })();
    if let Err(err) = sent {
        rt.block_on(tgt.abort(up));
        return Err(err);
    }
    Ok(rt.block_on(tgt.complete(up))?)
}
