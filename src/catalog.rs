//! The bucket is the catalog: backup ids, object keys, manifests and their MAC,
//! and choosing a recovery point. Pure: no IO here.
//!
//! Layout under a destination's root (docs/FORMAT.md):
//! `backups/<id>/manifest.json` — written last, its presence commits the backup;
//! `backups/<id>/<part>.lbk` — the encrypted objects it lists.

use crate::keys::{KeyError, Keyring, KEY_LEN, WRAPPED_LEN};
use crate::owner::{self, Verdict};
use crate::pipeline::header::Compression;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::hmac;
use serde::{Deserialize, Serialize};

mod frames;
mod objects;
pub use frames::{Frame, Frames};
pub use objects::{CloudCount, ConfigInfo, TypeCount};

pub const MANIFEST_FORMAT: u32 = 1;
/// The manifest format of a file backup, stored in the chunk store
/// (docs/FORMAT.md §9).
pub const MANIFEST_FORMAT_FILES: u32 = 2;
pub const BACKUPS: &str = "backups/";
pub const MANIFEST: &str = "manifest.json";
/// The largest manifest a reader reads (docs/FORMAT.md §4): thousands of
/// objects fit in a few hundred KiB; more is an attack on the reader's memory.
pub const MANIFEST_LIMIT: usize = 16 << 20;
const MAC_SUFFIX_START: &[u8] = b",\"mac\":\"";
const MAC_SUFFIX_END: &[u8] = b"\"}\n";
const MAC_AAD: &[u8] = b"lifeboat manifest mac key v1\0";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("manifest of {id} is not valid: {problem}")]
    Malformed { id: String, problem: String },
    #[error("manifest of {id} failed its MAC check: it was altered or is not from this backup")]
    Mac { id: String },
    #[error("manifest at {path} describes backup {found}: it was moved or swapped")]
    WrongId { path: String, found: String },
    #[error("backup {id} belongs to {found}, not {expected}: it was copied from another policy's destination")]
    WrongOwner {
        id: String,
        expected: String,
        found: String,
    },
    #[error(
        "manifest format {0} is not supported by this lifeboat (it reads format {MANIFEST_FORMAT})"
    )]
    Format(u32),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no backup at or before {0}")]
    NothingBefore(DateTime<Utc>),
    #[error("no backup with id {0}")]
    NoSuchId(String),
    #[error("the destination holds no committed backup")]
    Empty,
}

/// The time part of backup ids: UTC to the millisecond, so that ids sort by
/// start time even for backups that follow each other within a second.
const ID_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";
const ID_TIME_LEN: usize = 20;

pub fn id_time(t: DateTime<Utc>) -> String {
    t.format(ID_TIME).to_string()
}

/// A new backup id: its start time, then 6 random hex digits.
/// Sorting ids sorts by start time.
pub fn new_backup_id(now: DateTime<Utc>) -> String {
    let r: [u8; 3] = crate::keys::random_bytes();
    format!("{}-{}", id_time(now), hex::encode(r))
}

pub fn valid_backup_id(id: &str) -> bool {
    id.len() == ID_TIME_LEN + 7
        && id.is_char_boundary(ID_TIME_LEN)
        && chrono::NaiveDateTime::parse_from_str(&id[..ID_TIME_LEN], ID_TIME).is_ok()
        && id.as_bytes()[ID_TIME_LEN] == b'-'
        && id[ID_TIME_LEN + 1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// When the backup `id` started, from the id itself.
pub fn id_started(id: &str) -> Option<DateTime<Utc>> {
    let t = chrono::NaiveDateTime::parse_from_str(id.get(..ID_TIME_LEN)?, ID_TIME).ok()?;
    Some(t.and_utc())
}

pub fn backup_dir(id: &str) -> String {
    format!("{BACKUPS}{id}/")
}

pub fn manifest_key(id: &str) -> String {
    format!("{BACKUPS}{id}/{MANIFEST}")
}

pub fn object_key(id: &str, part: &str) -> String {
    format!("{BACKUPS}{id}/{part}.lbk")
}

/// The backup id an object key belongs to.
pub fn id_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(BACKUPS)?.split('/').next()
}

/// What was backed up, one variant per kind of source; `kind` tags it in the
/// manifest (docs/FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceInfo {
    Postgres(PostgresInfo),
    /// A directory of files, stored in the chunk store (format 2).
    Files(FilesInfo),
    Config(ConfigInfo),
    /// The objects of an S3 bucket, stored in the chunk store (format 2).
    Bucket(BucketInfo),
}

impl SourceInfo {
    /// For a backup in the chunk store (format 2): the master key its chunk
    /// ids are derived from.
    pub fn chunk_key_id(&self) -> Option<&str> {
        match self {
            SourceInfo::Files(f) => Some(&f.chunk_key_id),
            SourceInfo::Bucket(b) => Some(&b.chunk_key_id),
            SourceInfo::Postgres(_) | SourceInfo::Config(_) => None,
        }
    }
}

/// A bucket backup (docs/FORMAT.md §10): its one object is the tree, one
/// entry per object. `stats` counts objects where it says files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// The endpoint, when not AWS (as given, without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub bucket: String,
    /// Key prefix backed up (without a trailing `/`); entries are named
    /// relative to it.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    pub chunk_key_id: String,
    pub stats: FileStats,
}

/// A file backup (docs/FORMAT.md §9): its one object is the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesInfo {
    /// The directory backed up, as given (lossily as text).
    pub path: String,
    /// The master key the chunk id key is derived from.
    pub chunk_key_id: String,
    pub stats: FileStats,
}

/// What one file backup found and stored (docs/FORMAT.md §9; the same in the
/// manifest, the Job's summary and `lifeboat backup`'s report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStats {
    /// Regular files not in the previous backup.
    pub files_new: u64,
    /// Files whose size, times or inode changed: read again.
    pub files_changed: u64,
    /// Files taken from the previous backup without reading them.
    pub files_unchanged: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Entries left out: unreadable (with `--skip-unreadable`) or of a kind
    /// not backed up (sockets, devices, FIFOs).
    pub skipped: Vec<String>,
    /// Bytes of the files read.
    pub bytes_read: u64,
    /// Bytes of all the files in the backup (their data, holes not counted).
    pub bytes_total: u64,
    /// Bytes read that the store already held.
    pub bytes_deduplicated: u64,
    /// Bytes uploaded in packs, summed over destinations.
    pub bytes_stored: u64,
    /// Chunks uploaded, summed over destinations.
    pub chunks_new: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresInfo {
    pub method: PgMethod,
    pub host: String,
    pub server_version: String,
    /// The version of the program that made the backup (pg_dump,
    /// pg_basebackup): its major decides which pg_restore can read a dump.
    /// Absent in backups made before lifeboat recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// Logical: the databases dumped; physical: empty (the whole cluster).
    pub databases: Vec<String>,
}

/// `logical` (pg_dump per database) or `physical` (pg_basebackup of the cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgMethod {
    Logical,
    Physical,
}

impl std::fmt::Display for PgMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PgMethod::Logical => "logical",
            PgMethod::Physical => "physical",
        })
    }
}

impl SourceInfo {
    /// The databases a restore can choose from (none for a whole cluster).
    pub fn databases(&self) -> &[String] {
        match self {
            SourceInfo::Postgres(pg) => &pg.databases,
            SourceInfo::Files(_) | SourceInfo::Bucket(_) => &[],
            SourceInfo::Config(_) => &[],
        }
    }

    /// The version of the server or service backed up.
    pub fn version(&self) -> &str {
        match self {
            SourceInfo::Postgres(pg) => &pg.server_version,
            SourceInfo::Files(_) | SourceInfo::Bucket(_) => "",
            SourceInfo::Config(c) => &c.server_version,
        }
    }

    /// One line for listings: `postgres logical db:5432 15.18 (pg_dump 17.2)`.
    pub fn summary(&self) -> String {
        match self {
            SourceInfo::Postgres(pg) => {
                let line = format!("postgres {} {} {}", pg.method, pg.host, pg.server_version);
                match (&pg.client_version, pg.method) {
                    (Some(v), PgMethod::Logical) => format!("{line} (pg_dump {v})"),
                    (Some(v), PgMethod::Physical) => format!("{line} (pg_basebackup {v})"),
                    (None, _) => line,
                }
            }
            SourceInfo::Files(f) => format!(
                "files {} ({} files, {} bytes)",
                f.path,
                f.stats.files_new + f.stats.files_changed + f.stats.files_unchanged,
                f.stats.bytes_total
            ),
            SourceInfo::Bucket(b) => format!(
                "bucket s3://{}/{} ({} objects, {} bytes)",
                b.bucket,
                b.prefix,
                b.stats.files_new + b.stats.files_changed + b.stats.files_unchanged,
                b.stats.bytes_total
            ),
            SourceInfo::Config(c) if c.types.is_empty() => format!(
                "config {} cloud secrets ({})",
                c.cloud_entries(),
                c.cloud
                    .iter()
                    .map(|s| s.store.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SourceInfo::Config(c) => format!(
                "config {} objects in {} types, kubernetes {}{}",
                c.objects(),
                c.types.len(),
                c.server_version,
                if c.cloud.is_empty() {
                    String::new()
                } else {
                    format!(", {} cloud secrets", c.cloud_entries())
                }
            ),
        }
    }

    /// The PostgreSQL source, for what only PostgreSQL has (majors, methods).
    pub fn postgres(&self) -> Option<&PostgresInfo> {
        match self {
            SourceInfo::Postgres(pg) => Some(pg),
            SourceInfo::Files(_) | SourceInfo::Bucket(_) => None,
            SourceInfo::Config(_) => None,
        }
    }

    /// A PostgreSQL source for unit tests' manifests.
    #[cfg(test)]
    pub(crate) fn sample(method: PgMethod, databases: &[&str]) -> Self {
        SourceInfo::Postgres(PostgresInfo {
            method,
            host: "db".into(),
            server_version: "15".into(),
            client_version: None,
            databases: databases.iter().map(|d| d.to_string()).collect(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Key relative to the destination root, as in the object's header.
    pub key: String,
    /// `database` (a pg_dump custom-format archive), `globals` (SQL) or
    /// `base` (pg_basebackup's tar of the data directory).
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// Bytes before compression and encryption.
    pub plain_size: u64,
    /// A zstd-compressed pg_dump archive's frames (`database` objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Frames>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub policy: String,
    /// The policy's namespace, when the writer was told it (`--owner`);
    /// with `policy`, whose backup this is (src/owner.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub tier: String,
    pub source: SourceInfo,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub compression: Compression,
    pub key_id: String,
    pub objects: Vec<ObjectEntry>,
    /// The MAC key, wrapped by the master key `key_id` (base64).
    pub mac_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalInfo>,
}

/// Facts of a physical base backup (pg_basebackup), from its backup_label and stop position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalInfo {
    pub timeline: u32,
    pub start_lsn: String, // "0/2000028"
    pub stop_lsn: String,
    pub start_wal: String, // segment file name holding start_lsn, e.g. "000000010000000000000002"
    pub started_at: DateTime<Utc>,
    pub stopped_at: DateTime<Utc>,
}

impl Manifest {
    /// A logical backup of database `orders` in one object, for unit tests.
    #[cfg(test)]
    pub(crate) fn sample(id: &str, done: DateTime<Utc>, size: u64, plain_size: u64) -> Self {
        Manifest {
            format: 1,
            backup_id: id.into(),
            policy: "orders".into(),
            namespace: None,
            tier: "daily".into(),
            source: SourceInfo::sample(PgMethod::Logical, &["orders"]),
            started_at: done,
            completed_at: done,
            compression: Compression::Zstd,
            key_id: String::new(),
            objects: vec![ObjectEntry {
                key: object_key(id, "db-0"),
                role: "database".into(),
                database: Some("orders".into()),
                size,
                sha256: "00".repeat(32),
                plain_size,
                frames: None,
            }],
            mac_key: String::new(),
            physical: None,
        }
    }

    pub fn stored_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
    pub fn plain_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.plain_size).sum()
    }
}

fn mac_aad(id: &str) -> Vec<u8> {
    [MAC_AAD, id.as_bytes()].concat()
}

/// Serialises the manifest and appends its MAC as the last member:
/// the file is `body-without-closing-brace ,"mac":"<hex>"}\n` and the MAC covers
/// every byte before `,"mac":"`.
pub fn seal_manifest(mut m: Manifest, keys: &Keyring) -> Vec<u8> {
    let master = keys.primary();
    let mac_key = zeroize::Zeroizing::new(crate::keys::random_bytes::<KEY_LEN>());
    m.key_id = master.id.clone();
    if let Some(o) = keys.owner() {
        m.namespace = Some(o.namespace.clone());
    }
    m.mac_key = B64.encode(master.wrap(&mac_key, &mac_aad(&m.backup_id)));
    let mut body = serde_json::to_vec(&m).expect("manifest serialises");
    body.pop(); // the closing brace
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key[..]), &body);
    body.extend_from_slice(MAC_SUFFIX_START);
    body.extend_from_slice(hex::encode(tag.as_ref()).as_bytes());
    body.extend_from_slice(MAC_SUFFIX_END);
    body
}

#[derive(Deserialize)]
struct Sealed {
    #[serde(flatten)]
    manifest: Manifest,
    #[allow(dead_code)]
    mac: String,
}

/// Parses a manifest without checking its MAC (listing without the key).
pub fn parse_manifest(bytes: &[u8], id: &str) -> Result<Manifest, CatalogError> {
    let sealed: Sealed = serde_json::from_slice(bytes).map_err(|e| CatalogError::Malformed {
        id: id.to_string(),
        problem: e.to_string(),
    })?;
    let m = sealed.manifest;
    // Format 0 never existed: anything but 1 is refused, as the object
    // header's version is (docs/FORMAT.md §5); format 2 is a backup in the
    // chunk store, and only file and bucket backups are.
    let expected = if m.source.chunk_key_id().is_some() {
        MANIFEST_FORMAT_FILES
    } else {
        MANIFEST_FORMAT
    };
    if m.format != expected {
        return Err(CatalogError::Format(m.format));
    }
    if m.backup_id != id {
        return Err(CatalogError::WrongId {
            path: manifest_key(id),
            found: m.backup_id,
        });
    }
    Ok(m)
}

/// Parses a manifest stored at `backups/<id>/manifest.json` and checks its MAC.
pub fn open_manifest(bytes: &[u8], id: &str, keys: &Keyring) -> Result<Manifest, CatalogError> {
    let m = parse_manifest(bytes, id)?;
    let bad = |problem: &str| CatalogError::Malformed {
        id: id.to_string(),
        problem: problem.to_string(),
    };
    let suffix_len = MAC_SUFFIX_START.len() + 64 + MAC_SUFFIX_END.len();
    if bytes.len() < suffix_len || !bytes.ends_with(MAC_SUFFIX_END) {
        return Err(bad("the MAC is not the last member"));
    }
    let (body, suffix) = bytes.split_at(bytes.len() - suffix_len);
    if !suffix.starts_with(MAC_SUFFIX_START) {
        return Err(bad("the MAC is not the last member"));
    }
    // Lower-case only: `hex` also reads upper case, which made 2^k spellings
    // of one MAC verify, so bytes of a sealed manifest could change unnoticed.
    let mac_hex = &suffix[MAC_SUFFIX_START.len()..MAC_SUFFIX_START.len() + 64];
    if !mac_hex
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad("the MAC is not 64 lower-case hex digits"));
    }
    let tag = hex::decode(mac_hex).map_err(|_| bad("the MAC is not hex"))?;
    let wrapped: [u8; WRAPPED_LEN] = B64
        .decode(&m.mac_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("mac_key is not a wrapped key"))?;
    let mac_key = keys
        .get(&m.key_id)?
        .unwrap(&wrapped, &mac_aad(id))
        .map_err(|e| match e {
            // The key is known but does not open this MAC key: altered or foreign.
            KeyError::Unwrap { .. } => CatalogError::Mac { id: id.to_string() },
            other => other.into(),
        })?;
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key[..]), body, &tag)
        .map_err(|_| CatalogError::Mac { id: id.to_string() })?;
    // Only now is `policy`/`namespace` known to be what the writer said.
    if let Some(expected) = keys.owner() {
        match owner::judge(expected, &m.policy, m.namespace.as_deref()) {
            Verdict::Same => {}
            Verdict::NoNamespace => tracing::warn!(backup = %id, policy = %m.policy,
                "manifest predates recorded namespaces: only its policy name could be checked"),
            Verdict::Other(found) => {
                return Err(CatalogError::WrongOwner {
                    id: id.to_string(),
                    expected: expected.to_string(),
                    found,
                })
            }
        }
    }
    Ok(m)
}

/// Which recovery point a restore wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    Latest,
    Id(String),
    AtOrBefore(DateTime<Utc>),
}

impl std::str::FromStr for Point {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            Ok(Point::Latest)
        } else if valid_backup_id(s) {
            Ok(Point::Id(s.to_string()))
        } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            Ok(Point::AtOrBefore(t.with_timezone(&Utc)))
        } else {
            Err(format!(
                "{s:?} is not `latest`, a backup id (like 20261125T020000.000Z-a1b2c3) or an RFC 3339 time"
            ))
        }
    }
}

/// Picks a recovery point among committed backups (by completion time).
pub fn select<'m>(manifests: &'m [Manifest], point: &Point) -> Result<&'m Manifest, CatalogError> {
    let newest = |pred: &dyn Fn(&Manifest) -> bool| {
        manifests
            .iter()
            .filter(|m| pred(m))
            .max_by(|a, b| (a.completed_at, &a.backup_id).cmp(&(b.completed_at, &b.backup_id)))
    };
    match point {
        Point::Latest => newest(&|_| true).ok_or(CatalogError::Empty),
        Point::Id(id) => manifests
            .iter()
            .find(|m| &m.backup_id == id)
            .ok_or_else(|| CatalogError::NoSuchId(id.clone())),
        Point::AtOrBefore(t) => {
            newest(&|m| m.completed_at <= *t).ok_or(CatalogError::NothingBefore(*t))
        }
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests;
