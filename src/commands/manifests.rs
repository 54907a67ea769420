//! Reading the catalog from a destination: which backups are committed, their
//! manifests (MAC checked), and cleaning what interrupted backups left behind.

use super::Error;
use crate::catalog::{self, Manifest, Point};
use crate::keys::Keyring;
use crate::store::{ObjectInfo, Store};
use std::collections::BTreeMap;

/// Objects under `backups/`, grouped by backup id, in id (= time) order.
pub async fn backups(store: &Store) -> Result<BTreeMap<String, Vec<ObjectInfo>>, Error> {
    let mut by_id: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
    for o in store.list(catalog::BACKUPS).await? {
        if let Some(id) = catalog::id_of_key(&o.key) {
            by_id.entry(id.to_string()).or_default().push(o);
        }
    }
    Ok(by_id)
}

/// Ids of committed backups (those whose manifest exists), oldest first.
pub async fn committed_ids(store: &Store) -> Result<Vec<String>, Error> {
    Ok(backups(store)
        .await?
        .into_iter()
        .filter(|(id, objs)| objs.iter().any(|o| o.key == catalog::manifest_key(id)))
        .map(|(id, _)| id)
        .collect())
}

pub async fn open(store: &Store, id: &str, keys: &Keyring) -> Result<Manifest, Error> {
    let bytes = store
        .get(&catalog::manifest_key(id), catalog::MANIFEST_LIMIT)
        .await?;
    catalog::open_manifest(&bytes, id, keys).map_err(|e| match e {
        // Say where: a restore falls back to the next destination on this.
        catalog::CatalogError::Key(k) => Error::Key(k),
        other => Error::Store(crate::store::StoreError::Op {
            dest: store.label().to_string(),
            op: "verify manifest",
            key: catalog::manifest_key(id),
            message: other.to_string(),
        }),
    })
}

/// The manifest a restore of `point` wants from this destination. A manifest
/// that fails its check and could have been the answer is an error, never
/// silently skipped for an older backup.
pub async fn choose(store: &Store, keys: &Keyring, point: &Point) -> Result<Manifest, Error> {
    if let Point::Id(id) = point {
        return open(store, id, keys).await;
    }
    let ids = committed_ids(store).await?;
    // Ids start with their start time; a backup completed by T started by T.
    let cutoff = match point {
        // '~' sorts after '-': ids that started exactly at t are kept.
        Point::AtOrBefore(t) => Some(format!("{}~", catalog::id_time(*t))),
        _ => None,
    };
    for id in ids.iter().rev() {
        if cutoff.as_ref().is_some_and(|c| id.as_str() > c.as_str()) {
            continue;
        }
        let m = open(store, id, keys).await?;
        if let Ok(chosen) = catalog::select(std::slice::from_ref(&m), point) {
            return Ok(chosen.clone());
        }
    }
    Err(match point {
        Point::AtOrBefore(t) => catalog::CatalogError::NothingBefore(*t),
        _ => catalog::CatalogError::Empty,
    }
    .into())
}

/// Removes what killed backups left: incomplete multipart uploads, `.partial`
/// files, and objects of backups that never got a manifest. Assumes one
/// writer per destination prefix (the operator runs one backup per policy at
/// a time); `current` is this run's id and is left alone.
pub async fn clean_leftovers(store: &Store, current: &str) -> Result<(), Error> {
    let by_id = backups(store).await?;
    let committed = |id: &str| {
        by_id
            .get(id)
            .is_some_and(|objs| objs.iter().any(|o| o.key == catalog::manifest_key(id)))
    };
    let stale =
        |key: &str| catalog::id_of_key(key).is_some_and(|id| id != current && !committed(id));
    let aborted = store.clean_incomplete(catalog::BACKUPS, &stale).await?;
    if !aborted.is_empty() {
        tracing::info!(dest = %store.label(), count = aborted.len(), keys = ?aborted, "removed incomplete uploads of interrupted backups");
    }
    for (id, objs) in &by_id {
        if id != current && !committed(id) {
            let keys: Vec<String> = objs.iter().map(|o| o.key.clone()).collect();
            tracing::info!(dest = %store.label(), backup = %id, objects = keys.len(), "removing objects of an interrupted backup that has no manifest");
            store.delete(&keys).await?;
        }
    }
    Ok(())
}

/// Aborts the uploads of packs and index objects that killed runs left
/// (incomplete multipart uploads, `.partial` files) under `chunks/`; those
/// of the run `current` stay. Finished packs of killed runs are prune's.
pub async fn clean_chunk_leftovers(store: &Store, current: &str) -> Result<(), Error> {
    let stale = |key: &str| crate::chunks::repo::written_by(key) != Some(current);
    let aborted = store.clean_incomplete("chunks/", &stale).await?;
    if !aborted.is_empty() {
        tracing::info!(dest = %store.label(), count = aborted.len(), "removed incomplete pack uploads of interrupted runs");
    }
    Ok(())
}

/// Deletes a backup: the manifest first (it stops being a recovery point at
/// once), then its objects. Already gone counts as done.
pub async fn delete_backup(store: &Store, id: &str) -> Result<usize, Error> {
    let manifest = catalog::manifest_key(id);
    store.delete(std::slice::from_ref(&manifest)).await?;
    let keys: Vec<String> = store
        .list(&catalog::backup_dir(id))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    store.delete(&keys).await?;
    Ok(keys.len() + 1)
}
