//! `lifeboat restore --config` and `lifeboat export`: the objects of a
//! config backup back into a cluster, or into YAML files `kubectl apply`
//! accepts.
//!
//! Every part a restore takes is decoded and authenticated whole before
//! the first object is sent (the parts are small: 10,000 objects are a
//! few MB), so a damaged or altered backup restores nothing; a destination
//! that cannot serve it is reported and the next one tried. Objects are
//! then created in dependency order (`target::objects::rank`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::download::decode_object;
use super::restore::{resolve_point, Attempt};
use super::{manifests, Error};
use crate::catalog::{self, CloudCount, Point, SourceInfo, TypeCount};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::source::config::cloud::Kind;
use crate::store::Store;
use crate::target::cloud::{CloudApplied, CloudRestore, CloudTarget, Entries};
use crate::target::cluster::{Applied, Cluster, Existing};
use crate::target::objects::{self, Filter, Mapping};

pub struct ObjectsOptions {
    pub from: Vec<NamedLocation>,
    pub keys: Arc<Keyring>,
    pub point: Point,
    pub filter: Filter,
    /// Whether Kubernetes objects are taken (not when only cloud secrets are).
    pub kubernetes: bool,
    /// Cloud secret stores to restore.
    pub cloud: Vec<CloudTarget>,
}

/// A backup's objects, decoded and authenticated, per type; and the
/// entries of each cloud store asked for.
pub struct Decoded {
    pub backup_id: String,
    pub destination: String,
    pub types: Vec<(TypeCount, Vec<Value>)>,
    pub cloud: Vec<(CloudCount, Entries)>,
    pub failed_attempts: Vec<Attempt>,
}

impl Decoded {
    /// The objects taken, prepared for the cluster, in creation order.
    fn ordered(self, mapping: &Mapping) -> Vec<(TypeCount, Value)> {
        let mut types = self.types;
        types.sort_by_key(|(t, _)| objects::rank(&t.group, &t.plural));
        types
            .into_iter()
            .flat_map(|(t, objs)| {
                objs.into_iter().map(move |mut o| {
                    objects::prepare(&mut o, mapping);
                    (t.clone(), o)
                })
            })
            .collect()
    }
}

/// Reads the objects `o.filter` takes from the first destination that
/// serves every part intact.
pub async fn read(o: &ObjectsOptions) -> Result<Decoded, Error> {
    if o.from.is_empty() {
        return Err(Error::Usage("no source: give --from at least once".into()));
    }
    // `latest` is the newest across destinations: one that lags or lost its
    // newest manifests does not win by being named first.
    let point = resolve_point(&o.from, &o.keys, &o.point).await;
    let mut attempts = Vec::new();
    for url in &o.from {
        match read_from(url, o, &point).await {
            Ok(mut d) => {
                d.failed_attempts = attempts;
                return Ok(d);
            }
            Err(e) if e.is_source_fault() => attempts.push(Attempt::failed(url, &e)),
            Err(e) => return Err(e),
        }
    }
    Err(Attempt::all_failed(&attempts))
}

async fn read_from(
    url: &NamedLocation,
    o: &ObjectsOptions,
    point: &Point,
) -> Result<Decoded, Error> {
    let store = Store::open(url).await?;
    let manifest = manifests::choose(&store, &o.keys, point).await?;
    let SourceInfo::Config(info) = &manifest.source else {
        return Err(Error::Usage(format!(
            "backup {} is not a config backup ({}); restore it without --config",
            manifest.backup_id,
            manifest.source.summary()
        )));
    };
    let part = |name: String| {
        let key = catalog::object_key(&manifest.backup_id, &name);
        manifest
            .objects
            .iter()
            .find(|e| e.key == key)
            .ok_or_else(|| catalog::CatalogError::Malformed {
                id: manifest.backup_id.clone(),
                problem: format!("no object {key} for {name}"),
            })
    };
    let mut cloud = Vec::new();
    for target in &o.cloud {
        let store_name = target.kind.as_str();
        let Some(c) = info.cloud.iter().find(|c| c.store == store_name) else {
            return Err(Error::Usage(format!(
                "backup {} holds no {store_name} secrets",
                manifest.backup_id
            )));
        };
        let (plain, _) = decode_object(&store, part(c.part())?, o.keys.clone(), Vec::new()).await?;
        cloud.push((c.clone(), cloud_entries(target.kind, &plain, &c.part())?));
    }
    let mut types = Vec::new();
    let wanted = info
        .types
        .iter()
        .filter(|t| o.kubernetes && o.filter.takes_type(t));
    for t in wanted {
        let key = catalog::object_key(&manifest.backup_id, &t.part());
        let entry = part(t.part())?;
        let (plain, _) = decode_object(&store, entry, o.keys.clone(), Vec::new()).await?;
        let mut objs = Vec::new();
        for line in plain.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // Authenticated bytes lifeboat wrote: a line that is not an
            // object means a bug, not an attack; refuse the backup anyway.
            let obj: Value = serde_json::from_slice(line)
                .map_err(|e| Error::Usage(format!("{key}: a stored object is not JSON ({e})")))?;
            if o.filter.takes(&obj) {
                objs.push(obj);
            }
        }
        types.push((t.clone(), objs));
    }
    if o.kubernetes && types.is_empty() {
        return Err(Error::Usage(format!(
            "backup {} holds none of the resource types asked for (--resource)",
            manifest.backup_id
        )));
    }
    Ok(Decoded {
        backup_id: manifest.backup_id.clone(),
        destination: url.name.clone(),
        types,
        cloud,
        failed_attempts: Vec::new(),
    })
}

/// A cloud store's part as entries; authenticated bytes lifeboat wrote, so
/// a line that does not parse means a bug: the backup is refused whole.
fn cloud_entries(kind: Kind, plain: &[u8], part: &str) -> Result<Entries, Error> {
    let lines = plain.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let bad =
        |e: serde_json::Error| Error::Usage(format!("{part}: a stored entry is not valid ({e})"));
    Ok(match kind {
        Kind::SecretsManager => Entries::Secrets(
            lines
                .map(serde_json::from_slice)
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
        Kind::Ssm => Entries::Parameters(
            lines
                .map(serde_json::from_slice)
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
    })
}

#[derive(Debug, Serialize)]
pub struct ObjectsReport {
    pub backup_id: String,
    pub destination: String,
    pub dry_run: bool,
    /// Objects the restore took from the backup.
    pub objects: u64,
    #[serde(flatten)]
    pub applied: Applied,
    /// Per cloud secret store restored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloud: Vec<CloudApplied>,
    pub failed_attempts: Vec<Attempt>,
    pub seconds: f64,
}

impl ObjectsReport {
    /// Objects and cloud entries that were not restored.
    pub fn failures(&self) -> usize {
        self.applied.failed.len()
            + self
                .cloud
                .iter()
                .map(|c| c.applied.failed.len())
                .sum::<usize>()
    }
}

/// Restores the objects into the cluster `client` reaches (None: no
/// object is taken), then the cloud secrets into their stores.
pub async fn restore(
    o: ObjectsOptions,
    client: Option<kube::Client>,
    mapping: Mapping,
    existing: Existing,
    dry_run: bool,
) -> Result<ObjectsReport, Error> {
    let t0 = Instant::now();
    let mut decoded = read(&o).await?;
    let (backup_id, destination) = (decoded.backup_id.clone(), decoded.destination.clone());
    let failed_attempts = std::mem::take(&mut decoded.failed_attempts);
    let cloud_entries = std::mem::take(&mut decoded.cloud);
    let ordered = decoded.ordered(&mapping);
    let namespace_of = |o: &Value| {
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let wanted: BTreeSet<String> = ordered
        .iter()
        .filter_map(|(_, o)| namespace_of(o))
        .collect();
    let restored: BTreeSet<String> = ordered
        .iter()
        .filter(|(_, o)| o["kind"] == "Namespace")
        .filter_map(|(_, o)| o.pointer("/metadata/name")?.as_str().map(str::to_string))
        .collect();
    let mut applied = Applied::default();
    let total = ordered.len() as u64;
    if let Some(client) = client.filter(|_| o.kubernetes) {
        let mut cluster = Cluster::new(client, dry_run, existing);
        cluster.namespaces(&wanted, &restored).await?;
        for (t, obj) in ordered {
            cluster.apply(&t, obj, &mut applied).await?;
        }
    }
    let mut cloud = Vec::new();
    for (target, (count, entries)) in o.cloud.iter().zip(cloud_entries) {
        let run = CloudRestore {
            target,
            from_region: &count.region,
            from_scope: &count.scope,
            existing,
            dry_run,
        };
        cloud.push(run.run(entries).await?);
    }
    let seconds = t0.elapsed().as_secs_f64();
    tracing::info!(backup = %backup_id, objects = total, created = applied.created, updated = applied.updated,
        skipped = applied.skipped, failed = applied.failed.len(), dry_run, seconds = format!("{seconds:.1}"), "objects restored");
    Ok(ObjectsReport {
        backup_id,
        destination,
        dry_run,
        objects: total,
        applied,
        cloud,
        failed_attempts,
        seconds,
    })
}

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub backup_id: String,
    pub destination: String,
    pub directory: PathBuf,
    pub files: Vec<String>,
    pub objects: u64,
}

/// Writes the objects as YAML, one file of documents per type, named so
/// that `kubectl apply -f DIR` (which reads files in name order) creates
/// them in dependency order. Files are 0600 in a 0700 directory: they hold
/// Secrets in the clear.
pub async fn export(o: ObjectsOptions, dir: &Path) -> Result<ExportReport, Error> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |what: String| move |e: std::io::Error| Error::Usage(format!("{what}: {e}"));
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(io(dir.display().to_string()))?
            .next()
            .is_some()
    {
        return Err(Error::Usage(format!(
            "--out {}: not empty; export into a new directory",
            dir.display()
        )));
    }
    let decoded = read(&o).await?;
    let (backup_id, destination) = (decoded.backup_id.clone(), decoded.destination.clone());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir.display().to_string()))?;
    let mut files = Vec::new();
    let mut count = 0u64;
    let mut types = decoded.types;
    types.sort_by_key(|(t, _)| objects::rank(&t.group, &t.plural));
    for (i, (t, objs)) in types.into_iter().enumerate() {
        if objs.is_empty() {
            continue;
        }
        let name = format!("{i:03}-{}.yaml", t.name());
        let path = dir.join(&name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(path.display().to_string()))?;
        for mut obj in objs {
            objects::prepare(&mut obj, &Mapping::default());
            let doc =
                serde_yaml::to_string(&obj).map_err(|e| Error::Usage(format!("{name}: {e}")))?;
            write!(f, "---\n{doc}").map_err(io(path.display().to_string()))?;
            count += 1;
        }
        files.push(name);
    }
    Ok(ExportReport {
        backup_id,
        destination,
        directory: dir.to_path_buf(),
        files,
        objects: count,
    })
}
