//! `lifeboat verify`: re-reads backups in every destination without restoring:
//! the manifest's MAC, each object's size and SHA-256, every segment's tag and
//! the compressed stream's integrity. Reports each fault by destination and
//! object; the command exits non-zero when there is any. In S3 it also
//! reports each object's Object Lock retention (mode and retain-until).

use super::download::decode_object;
use super::{manifests, Error};
use crate::catalog::Point;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::store::{LockState, Store};
use serde::Serialize;
use std::sync::Arc;

/// Which backups to check.
#[derive(Debug, Clone)]
pub enum Which {
    All,
    Point(Point),
}

#[derive(Debug, Serialize)]
pub struct ObjectCheck {
    pub key: String,
    pub bytes: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its S3 Object Lock retention; absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockState>,
}

#[derive(Debug, Serialize)]
pub struct BackupCheck {
    pub destination: String,
    pub backup_id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The manifest's S3 Object Lock retention; absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_lock: Option<LockState>,
    pub objects: Vec<ObjectCheck>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub checks: Vec<BackupCheck>,
    pub problems: usize,
}

pub async fn verify(
    from: &[NamedLocation],
    keys: Arc<Keyring>,
    which: &Which,
) -> Result<VerifyReport, Error> {
    if from.is_empty() {
        return Err(Error::Usage(
            "nothing to verify: give --from at least once".into(),
        ));
    }
    let mut checks = Vec::new();
    for url in from {
        let fail = |id: &str, e: &Error| BackupCheck {
            destination: url.name.clone(),
            backup_id: id.to_string(),
            ok: false,
            error: Some(e.to_string()),
            manifest_lock: None,
            objects: Vec::new(),
        };
        let ids = match ids_to_check(url, &keys, which).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(dest = %url.label(), error = %e, "cannot read the destination");
                checks.push(fail("-", &e));
                continue;
            }
        };
        let store = Store::open(url).await?;
        for id in ids {
            let check = match check_backup(&store, &keys, &id).await {
                Ok(c) => c,
                Err(e) => fail(&id, &e),
            };
            if check.ok {
                tracing::info!(dest = %url.label(), backup = %id, "verified");
            } else {
                tracing::error!(dest = %url.label(), backup = %id, error = ?check.error, "verification failed");
            }
            checks.push(check);
        }
    }
    let problems = checks
        .iter()
        .map(|c| (c.error.is_some() as usize) + c.objects.iter().filter(|o| !o.ok).count())
        .sum();
    Ok(VerifyReport { checks, problems })
}

async fn ids_to_check(
    url: &NamedLocation,
    keys: &Keyring,
    which: &Which,
) -> Result<Vec<String>, Error> {
    let store = Store::open(url).await?;
    Ok(match which {
        Which::All => manifests::committed_ids(&store).await?,
        Which::Point(Point::Id(id)) => vec![id.clone()],
        Which::Point(p) => vec![manifests::choose(&store, keys, p).await?.backup_id],
    })
}

pub(crate) async fn check_backup(
    store: &Store,
    keys: &Arc<Keyring>,
    id: &str,
) -> Result<BackupCheck, Error> {
    let manifest = manifests::open(store, id, keys).await?;
    let mut objects = Vec::new();
    for entry in &manifest.objects {
        let r = match decode_object(store, entry, keys.clone(), std::io::sink()).await {
            Ok(_) => store.lock_state(&entry.key).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = &r {
            tracing::error!(dest = %store.label(), key = %entry.key, error = %e, "object failed verification");
        }
        let (lock, error) = match r {
            Ok(lock) => (lock, None),
            Err(e) => (None, Some(e.to_string())),
        };
        objects.push(ObjectCheck {
            key: entry.key.clone(),
            bytes: entry.size,
            ok: error.is_none(),
            error,
            lock,
        });
    }
    if manifest.source.chunk_key_id().is_some() {
        // A file backup is its tree and the chunks it references.
        let (store2, keys2) = (store.clone(), keys.clone());
        let rt = tokio::runtime::Handle::current();
        let chunks = tokio::task::spawn_blocking(move || {
            super::files_check::check_chunks(rt, &store2, &keys2, &manifest)
        })
        .await
        .map_err(|e| Error::Usage(format!("verify stopped: {e}")))??;
        objects.extend(chunks);
    }
    Ok(BackupCheck {
        destination: store.name().to_string(),
        backup_id: id.to_string(),
        ok: objects.iter().all(|o| o.ok),
        error: None,
        manifest_lock: store.lock_state(&crate::catalog::manifest_key(id)).await?,
        objects,
    })
}
