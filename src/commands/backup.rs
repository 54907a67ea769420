//! `lifeboat backup`: the parts of a source (see [`crate::source`]: pg_dump
//! per database and the globals, or pg_basebackup's tar of the data
//! directory) streamed through compress → encrypt → hash to every
//! destination at once, then the manifest written last in each. Nothing is
//! committed anywhere unless every part reached every destination (or, with
//! `allow_partial`, at least one). What happens here is the same for every
//! kind of source.

use super::progress::{mib_per_s, peak_rss_bytes, Progress};
use super::upload::{fan_out, spawn_encoder};
use super::{manifests, Error};
use crate::catalog::{self, Manifest, ObjectEntry};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::pipeline::header::Compression;
use crate::recovery;
use crate::source::{Described, Part, Source, SourceError};
use crate::store::Store;
use crate::wire::{BackupSummary, ObjectSummary};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct BackupOptions {
    pub source: Source,
    pub to: Vec<NamedLocation>,
    pub keys: Keyring,
    pub compression: Compression,
    pub policy: String,
    pub tier: String,
    pub allow_partial: bool,
}

#[derive(Debug, Serialize)]
pub struct DestinationReport {
    /// The destination's name (`--to NAME=URL`), or its URL.
    pub destination: String,
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
    /// Bytes read from the source.
    pub bytes_in: u64,
    /// Bytes stored in each destination.
    pub bytes_out: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub peak_rss_bytes: u64,
    /// A file backup's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::catalog::FileStats>,
    /// Where each destination is; the report names them by name.
    #[serde(skip)]
    pub(crate) to: Vec<NamedLocation>,
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
        tracing::error!(dest = %self.stores[index].label(), error = %e, "destination failed");
        self.live.retain(|&i| i != index);
        self.failed.push((index, e.to_string()));
    }

    /// Err when the backup can no longer succeed.
    fn check(&self) -> Result<(), Error> {
        if self.live.is_empty() || (!self.failed.is_empty() && !self.allow_partial) {
            let failed = self
                .failed
                .iter()
                // Every failure is a store's, and names its destination.
                .map(|(_, e)| e.as_str())
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
                tracing::warn!(dest = %s.label(), backup = %id, error = %e, "could not remove the objects of the failed backup; the next backup removes them");
            }
        }
    }
}

/// A backup's start: its clock, start time and new id; refused without a destination.
pub(crate) fn start(
    to: &[NamedLocation],
) -> Result<(Instant, chrono::DateTime<Utc>, String), Error> {
    if to.is_empty() {
        return Err(Error::Usage(
            "no destination: give --to at least once".into(),
        ));
    }
    let started_at = Utc::now();
    Ok((
        Instant::now(),
        started_at,
        catalog::new_backup_id(started_at),
    ))
}

pub async fn backup(o: BackupOptions) -> Result<BackupReport, Error> {
    let (t0, started_at, id) = start(&o.to)?;
    let mut stores = Vec::new();
    for dest in &o.to {
        stores.push(Store::open(dest).await?);
    }
    let mut fleet = Fleet {
        live: (0..stores.len()).collect(),
        stores,
        failed: Vec::new(),
        allow_partial: o.allow_partial,
    };
    tracing::info!(backup = %id, destinations = fleet.stores.len(), "backup started");
    for i in fleet.live.clone() {
        // A bucket without the Object Lock the policy asks for fails here,
        // before anything is written to it.
        let store = &fleet.stores[i];
        let ready = match store.check_object_lock().await {
            Ok(()) => manifests::clean_leftovers(store, &id).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = ready {
            fleet.fail(i, e);
        }
    }
    fleet.check()?;

    let mut source = o.source;
    let stored = store_parts(&mut source, &id, &o.keys, o.compression, &mut fleet).await;
    let described = match stored {
        Ok(objects) => source
            .describe()
            .await
            .map(|d| (objects, d))
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    let (objects, Described { info, physical }) = match described {
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
        namespace: None,
        tier: o.tier.clone(),
        source: info.clone(),
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
    let destinations =
        o.to.iter()
            .enumerate()
            .map(|(i, dest)| DestinationReport {
                destination: dest.name.clone(),
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
        server_version: info.version().to_string(),
        databases: info.databases().to_vec(),
        destinations,
        objects,
        bytes_in,
        bytes_out,
        seconds,
        mib_per_s: mib_per_s(bytes_in, seconds),
        peak_rss_bytes: peak_rss_bytes(),
        files: None,
        to: o.to,
    })
}

/// Every part of the source, one after the other, into every live destination.
async fn store_parts(
    source: &mut Source,
    id: &str,
    keys: &Keyring,
    compression: Compression,
    fleet: &mut Fleet,
) -> Result<Vec<ObjectEntry>, Error> {
    let mut objects = Vec::new();
    for part in source.parts(id).await? {
        objects.push(store_part(part, id, keys, compression, fleet).await?);
    }
    Ok(objects)
}

async fn store_part(
    mut part: Part,
    id: &str,
    keys: &Keyring,
    compression: Compression,
    fleet: &mut Fleet,
) -> Result<ObjectEntry, Error> {
    let key = catalog::object_key(id, &part.name);
    tracing::info!(part = %part.name, what = %part.what(), "dumping");
    let (running, stdout) = part.start()?;
    let stdout = HeadTap {
        inner: stdout,
        head: part.head.take(),
    };
    let progress = Progress::start(format!("{} {}", part.tool(), part.what()));
    let archive = part.role == "database";
    let (rx, encoder) = spawn_encoder(
        stdout,
        keys.primary(),
        &key,
        compression,
        archive,
        progress.clone(),
    )
    .map_err(Error::Pipeline)?;
    let (writers, failed) =
        fan_out(&fleet.stores, &fleet.live, &key, rx, !fleet.allow_partial).await;
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
        running.kill();
        abort_all(writers).await;
        return Err(e);
    }
    let encoded = match encoded.and_then(|r| r.map_err(Error::Pipeline)) {
        Ok(enc) => enc,
        Err(e) => {
            // The encoder stops when it cannot read the dump or write on; if
            // the producer failed, its message is the one that matters.
            let producer_err = running.wait().await.err();
            abort_all(writers).await;
            return Err(producer_err.map_or(e, Error::from));
        }
    };
    if let Err(e) = running.wait().await {
        abort_all(writers).await;
        return Err(e.into());
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
        frames: encoded.frames,
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
    for (d, to) in report.destinations.iter_mut().zip(&report.to) {
        if !d.committed {
            continue;
        }
        let checked = verify::verify(std::slice::from_ref(to), keys.clone(), &point).await?;
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
            tracing::error!(dest = %to.label(), backup = %report.backup_id, error = %why, "read-back verification failed");
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

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Pg(e) => Error::Pg(e),
            SourceError::Recovery(e) => Error::Recovery(e),
            other => Error::Source(other),
        }
    }
}

impl BackupReport {
    /// What the Job leaves in its termination message: destinations by name.
    pub fn summary(&self) -> BackupSummary {
        let names = |pick: &dyn Fn(&DestinationReport) -> bool| -> Vec<String> {
            self.destinations
                .iter()
                .filter(|d| pick(d))
                .map(|d| d.destination.clone())
                .collect()
        };
        BackupSummary {
            backup_id: self.backup_id.clone(),
            server_version: self.server_version.clone(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            seconds: self.seconds,
            committed: names(&|d| d.committed),
            failed: names(&|d| !d.committed),
            verified: self
                .destinations
                .iter()
                .any(|d| d.verified.is_some())
                .then(|| names(&|d| d.verified == Some(true))),
            objects: self
                .objects
                .iter()
                .map(|o| ObjectSummary {
                    key: o.key.clone(),
                    size: o.size,
                    sha256: o.sha256.clone(),
                })
                .collect(),
            files: self.files.clone(),
        }
    }
}
