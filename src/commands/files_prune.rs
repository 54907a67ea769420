//! Garbage collection of the chunk store, run by `lifeboat prune
//! --key-file` after it deleted backups: a pack goes when no kept backup
//! references any chunk in it and the run that wrote it started longer ago
//! than the grace period (so a run in progress, or one killed an hour ago
//! whose chunks the next run may still pick up, keeps its packs). Decided
//! only from authenticated bytes: every committed manifest must pass its
//! MAC and every tree must authenticate whole, or nothing is deleted; a
//! pack that neither an index object nor its own trailer authenticates is
//! never deleted (its content is unknown). No locks: the controller runs
//! one backup or prune per policy at a time.

use super::files_check::walk_tree;
use super::{manifests, Error};
use crate::catalog;
use crate::chunks::repo::{index_key, written_by, Repo};
use crate::chunks::{ChunkId, INDEXES, PACKS};
use crate::keys::Keyring;
use crate::store::Store;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ChunkGc {
    pub packs_removed: usize,
    pub pack_bytes_removed: u64,
    /// Unreferenced packs kept because their run is within the grace period.
    pub packs_in_grace: usize,
}

/// Whether a pack or index object's run started before `cutoff`.
fn older(key: &str, cutoff: DateTime<Utc>) -> bool {
    written_by(key)
        .and_then(catalog::id_started)
        .is_some_and(|t| t < cutoff)
}

pub async fn collect_garbage(
    store: &Store,
    keys: Arc<Keyring>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<ChunkGc, Error> {
    if store.list(PACKS).await?.is_empty() {
        return Ok(ChunkGc::default());
    }
    let mut kept = Vec::new();
    for id in manifests::committed_ids(store).await? {
        // An error here stops the prune before any pack is deleted.
        let m = manifests::open(store, &id, &keys).await?;
        if m.source.chunk_key_id().is_some() {
            kept.push(m);
        }
    }
    let cutoff = now - grace;
    let (store2, rt) = (store.clone(), tokio::runtime::Handle::current());
    let (doomed, gc) = tokio::task::spawn_blocking(move || {
        let (repo, _) = Repo::open(rt.clone(), &store2, &keys, "prune")?;
        // Every chunk id the kept backups reference (32 bytes each).
        let mut referenced: HashSet<ChunkId> = HashSet::new();
        for m in &kept {
            walk_tree(&rt, &store2, &keys, m, |e| {
                referenced.extend(e.chunk_refs().map(|c| c.id));
            })?;
        }
        let needed: HashSet<String> = referenced
            .iter()
            .filter_map(|id| repo.pack_of(id))
            .collect();
        let mut gc = ChunkGc::default();
        let mut doomed = Vec::new();
        // Only packs the index authenticated are candidates.
        for pack in repo.index.pack_names() {
            if needed.contains(pack) || doomed.contains(pack) {
                continue;
            }
            if older(pack, cutoff) {
                gc.pack_bytes_removed += repo.packs().get(pack).copied().unwrap_or(0);
                doomed.push(pack.clone());
            } else {
                gc.packs_in_grace += 1;
            }
        }
        Ok::<_, Error>((doomed, gc))
    })
    .await
    .map_err(|e| Error::Usage(format!("prune stopped: {e}")))??;
    let mut gc = gc;
    if !doomed.is_empty() {
        store.delete(&doomed).await?;
        gc.packs_removed = doomed.len();
        tracing::info!(dest = %store.label(), packs = doomed.len(), bytes = gc.pack_bytes_removed, "deleted packs no kept backup references");
    }
    // An index object whose run has no pack left lists nothing.
    let packs: Vec<String> = store
        .list(PACKS)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let stale: Vec<String> = store
        .list(INDEXES)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| {
            written_by(k).is_some_and(|run| {
                older(k, cutoff)
                    && index_key(run) == *k
                    && !packs.iter().any(|p| written_by(p) == Some(run))
            })
        })
        .collect();
    store.delete(&stale).await?;
    Ok(gc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_reads_the_run_from_the_name() {
        let cutoff: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        assert!(older(
            "chunks/packs/20261130T115959.000Z-abcdef-00001.pack",
            cutoff
        ));
        assert!(!older(
            "chunks/packs/20261130T120000.001Z-abcdef-00001.pack",
            cutoff
        ));
        assert!(older(
            "chunks/index/20261129T000000.000Z-abcdef.idx",
            cutoff
        ));
        // A name that is no run's is never old enough.
        assert!(!older("chunks/packs/planted.pack", cutoff));
    }
}
