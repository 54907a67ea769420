//! `lifeboat prune`: deletes named backups from every destination (manifest
//! first, so a half-deleted backup is never a recovery point) and cleans what
//! interrupted backups left. Already gone counts as done: the operator's prune
//! Job may run twice. Then WAL that no kept base backup needs goes too
//! ([`crate::walarchive::expired_wal`]) — decided only from manifests whose
//! MAC checks out with the key: someone who can write to the bucket must not
//! be able to make prune delete the archive with one edited manifest.
//! Without a key, no WAL is deleted.
//!
//! S3 Object Lock: an object whose retention has not ended cannot be
//! deleted, so prune does not try. A backup with any object still locked is
//! kept whole in that destination (it stays a recovery point rather than
//! losing its manifest or a part), locked WAL files stay, and the report
//! lists what was kept and until when; a lock never fails the prune.

use super::{manifests, Error};
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::store::{LockState, Store};
use crate::walarchive::{expired_wal, segment_position};
use crate::wire::PruneSummary;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PruneReport {
    /// Backups deleted from every destination.
    pub deleted: Vec<String>,
    pub objects_removed: usize,
    /// WAL files older than the oldest kept base backup.
    pub wal_removed: usize,
    /// What Object Lock retention kept; prune again after `retain_until`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_locked: Vec<KeptLocked>,
    /// Packs of the chunk store (file backups) no kept backup needs.
    pub packs_removed: usize,
    pub pack_bytes_removed: u64,
}

/// Objects prune left because their Object Lock retention has not ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptLocked {
    pub destination: String,
    /// The backup kept whole; `None` for WAL files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The objects still locked.
    pub objects: Vec<String>,
    pub mode: String,
    /// When the last of them may go.
    pub retain_until: DateTime<Utc>,
}

/// Of `objects` and their locks, those still locked at `now`, with the
/// latest retention among them; `None` when nothing is locked.
pub fn still_locked(
    objects: &[(String, Option<LockState>)],
    now: DateTime<Utc>,
) -> Option<(Vec<String>, LockState)> {
    let locked: Vec<(&String, &LockState)> = objects
        .iter()
        .filter_map(|(k, l)| l.as_ref().filter(|l| l.holds_at(now)).map(|l| (k, l)))
        .collect();
    let latest = locked
        .iter()
        .map(|(_, l)| *l)
        .max_by_key(|l| l.retain_until)?;
    Some((
        locked.iter().map(|(k, _)| (*k).clone()).collect(),
        latest.clone(),
    ))
}

/// Each key with its Object Lock retention (none outside S3).
async fn locks(store: &Store, keys: &[String]) -> Result<Vec<(String, Option<LockState>)>, Error> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push((key.clone(), store.lock_state(key).await?));
    }
    Ok(out)
}

/// What of `keys` is still locked in `store`, as the report says it.
async fn kept(
    store: &Store,
    backup: Option<&str>,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<Option<KeptLocked>, Error> {
    let Some((objects, latest)) = still_locked(&locks(store, keys).await?, now) else {
        return Ok(None);
    };
    tracing::warn!(dest = %store.label(), backup = backup.unwrap_or("-"), objects = objects.len(), mode = %latest.mode, until = %latest.retain_until,
        "kept: still under S3 Object Lock retention; prune again after this date");
    Ok(Some(KeptLocked {
        destination: store.name().to_string(),
        backup: backup.map(str::to_string),
        objects,
        mode: latest.mode,
        retain_until: latest.retain_until,
    }))
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

/// Deletes the WAL before the oldest kept base backup, but what Object Lock
/// still holds; returns how many files went.
async fn expire_wal(
    store: &Store,
    keys: &Keyring,
    kept_locked: &mut Vec<KeptLocked>,
) -> Result<usize, Error> {
    let Some(start) = oldest_base_start(store, keys).await? else {
        return Ok(0);
    };
    let listed = store.list("wal/").await?;
    let mut expired: Vec<String> = expired_wal(listed.iter().map(|o| o.key.as_str()), Some(&start))
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(k) = kept(store, None, &expired, Utc::now()).await? {
        expired.retain(|key| !k.objects.contains(key));
        kept_locked.push(k);
    }
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
    keys: Option<std::sync::Arc<Keyring>>,
    grace: chrono::Duration,
) -> Result<PruneReport, Error> {
    let (mut packs_removed, mut pack_bytes_removed) = (0, 0);
    let mut objects_removed = 0;
    let mut wal_removed = 0;
    let mut kept_locked = Vec::new();
    for url in from {
        let store = Store::open(url).await?;
        for id in ids {
            if !crate::catalog::valid_backup_id(id) {
                return Err(Error::Usage(format!(
                    "{id:?} is not a backup id (--backup)"
                )));
            }
            let objects: Vec<String> = store
                .list(&crate::catalog::backup_dir(id))
                .await?
                .into_iter()
                .map(|o| o.key)
                .collect();
            if let Some(k) = kept(&store, Some(id), &objects, Utc::now()).await? {
                kept_locked.push(k);
                continue;
            }
            let n = manifests::delete_backup(&store, id).await?;
            tracing::info!(dest = %url.label(), backup = %id, "deleted");
            objects_removed += n;
        }
        if incomplete {
            manifests::clean_leftovers(&store, "").await?;
            manifests::clean_chunk_leftovers(&store, "").await?;
        }
        match &keys {
            Some(keys) => {
                wal_removed += expire_wal(&store, keys, &mut kept_locked).await?;
                let gc =
                    super::files_prune::collect_garbage(&store, keys.clone(), grace, Utc::now())
                        .await?;
                packs_removed += gc.packs_removed;
                pack_bytes_removed += gc.pack_bytes_removed;
            }
            None => tracing::warn!(dest = %url.label(),
                "no --key-file: WAL is kept, since which WAL the kept backups need is read only from authenticated manifests"),
        }
    }
    let deleted = ids
        .iter()
        .filter(|id| !kept_locked.iter().any(|k| k.backup.as_ref() == Some(id)))
        .cloned()
        .collect();
    Ok(PruneReport {
        deleted,
        objects_removed,
        wal_removed,
        kept_locked,
        packs_removed,
        pack_bytes_removed,
    })
}

impl PruneReport {
    /// What the Job leaves in its termination message.
    pub fn summary(&self) -> PruneSummary {
        PruneSummary {
            deleted: self.deleted.clone(),
            locked_until: self
                .kept_locked
                .iter()
                .filter(|k| k.backup.is_some())
                .map(|k| k.retain_until)
                .max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn lock(until: &str) -> Option<LockState> {
        Some(LockState {
            mode: "governance".into(),
            retain_until: at(until),
        })
    }

    #[test]
    fn only_locks_that_have_not_ended_keep_objects_and_the_latest_date_is_reported() {
        let now = at("2026-06-01T00:00:00Z");
        let objects = vec![
            ("a".to_string(), lock("2026-06-03T00:00:00Z")),
            ("b".to_string(), None),
            ("c".to_string(), lock("2026-05-31T00:00:00Z")),
            ("d".to_string(), lock("2026-06-09T00:00:00Z")),
        ];
        let (keys, latest) = still_locked(&objects, now).unwrap();
        assert_eq!(keys, ["a", "d"]);
        assert_eq!(latest.retain_until, at("2026-06-09T00:00:00Z"));
        // Ended (or ending exactly now) and absent locks keep nothing.
        assert_eq!(still_locked(&objects[1..3], now), None);
        assert_eq!(
            still_locked(&[("x".into(), lock("2026-06-01T00:00:00Z"))], now),
            None
        );
    }
}
