//! `lifeboat prune`: deletes named backups from every destination (manifest
//! first, so a half-deleted backup is never a recovery point) and cleans what
//! interrupted backups left. Already gone counts as done: the operator's prune
//! Job may run twice. Then WAL that no kept base backup needs goes too
//! ([`crate::walarchive::expired_wal`]) — decided only from manifests whose
//! MAC checks out with the key: someone who can write to the bucket must not
//! be able to make prune delete the archive with one edited manifest.
//! Without a key, no WAL is deleted.

use super::{manifests, Error};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::store::Store;
use crate::walarchive::{expired_wal, segment_position};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub objects_removed: usize,
    /// WAL files older than the oldest kept base backup.
    pub wal_removed: usize,
}

/// The first WAL segment the oldest kept base backup needs, or None when no
/// physical backup is kept. A manifest that cannot be read or does not
/// authenticate is an error: WAL is deleted only on a complete, authentic
/// picture of what is kept.
async fn oldest_base_start(store: &Store, keys: &Keyring) -> Result<Option<String>, Error> {
    let mut oldest: Option<String> = None;
    for id in manifests::committed_ids(store).await? {
        // An error here stops the prune before any WAL is deleted.
        let m = manifests::open(store, &id, keys).await?;
        let Some(start) = m.physical.map(|p| p.start_wal) else {
            continue;
        };
        let position = |s: &str| segment_position(s).map(|(_, p)| p);
        if oldest
            .as_deref()
            .is_none_or(|o| position(&start) < position(o))
        {
            oldest = Some(start);
        }
    }
    Ok(oldest)
}

/// Deletes the WAL before the oldest kept base backup; returns how many files.
async fn expire_wal(store: &Store, keys: &Keyring) -> Result<usize, Error> {
    let Some(start) = oldest_base_start(store, keys).await? else {
        return Ok(0);
    };
    let listed = store.list("wal/").await?;
    let expired: Vec<String> = expired_wal(listed.iter().map(|o| o.key.as_str()), Some(&start))
        .into_iter()
        .map(str::to_string)
        .collect();
    if !expired.is_empty() {
        store.delete(&expired).await?;
        tracing::info!(dest = %store.label(), files = expired.len(), before = %start, "deleted WAL no kept base backup needs");
    }
    Ok(expired.len())
}

pub async fn prune(
    from: &[NamedLocation],
    ids: &[String],
    incomplete: bool,
    keys: Option<&Keyring>,
) -> Result<PruneReport, Error> {
    let mut objects_removed = 0;
    let mut wal_removed = 0;
    for url in from {
        let store = Store::open(url).await?;
        for id in ids {
            if !crate::catalog::valid_backup_id(id) {
                return Err(Error::Usage(format!(
                    "{id:?} is not a backup id (--backup)"
                )));
            }
            let n = manifests::delete_backup(&store, id).await?;
            tracing::info!(dest = %url.label(), backup = %id, "deleted");
            objects_removed += n;
        }
        if incomplete {
            manifests::clean_leftovers(&store, "").await?;
        }
        match keys {
            Some(keys) => wal_removed += expire_wal(&store, keys).await?,
            None => tracing::warn!(dest = %url.label(),
                "no --key-file: WAL is kept, since which WAL the kept backups need is read only from authenticated manifests"),
        }
    }
    Ok(PruneReport {
        deleted: ids.to_vec(),
        objects_removed,
        wal_removed,
    })
}
