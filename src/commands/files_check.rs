//! The chunk side of a file backup, for `verify` and `prune`: which chunks
//! a backup's tree references, and whether every one of them is in an
//! authenticated pack and opens. Read only from authenticated bytes: the
//! manifest's MAC, the tree's segments, the packs' sealed trailers and
//! index objects. For a blocking thread.

use super::verify::ObjectCheck;
use super::Error;
use crate::catalog::Manifest;
use crate::chunks::feed::{Feed, Plan};
use crate::chunks::repo::Repo;
use crate::chunks::tree::Entry;
use crate::chunks::tree_io::TreeReader;
use crate::chunks::{short, ChunkId, ChunkKeys};
use crate::keys::Keyring;
use crate::store::Store;
use std::collections::{BTreeMap, HashSet};
use tokio::runtime::Handle;

/// Calls `each` for every entry of a file backup's tree; Err when the tree
/// does not authenticate whole.
pub fn walk_tree(
    rt: &Handle,
    store: &Store,
    keys: &Keyring,
    m: &Manifest,
    mut each: impl FnMut(&Entry),
) -> Result<(), Error> {
    let tree = super::chunked::tree_of(m)?;
    for e in TreeReader::open(rt.clone(), store, keys, tree).map_err(Error::Usage)? {
        each(&e.map_err(Error::Usage)?);
    }
    Ok(())
}

/// At most this many file names are listed per damaged pack.
const NAMES_SHOWN: usize = 20;

/// Checks every chunk a file backup needs: each pack it uses (its header
/// and trailer) and every needed blob (authenticated, decompressed, HMAC
/// checked). One check per pack used, plus one per problem of the index
/// and one for chunks in no pack; a failing check names the files affected.
pub fn check_chunks(
    rt: Handle,
    store: &Store,
    keys: &Keyring,
    m: &Manifest,
) -> Result<Vec<ObjectCheck>, Error> {
    let Some(chunk_key_id) = m.source.chunk_key_id() else {
        return Ok(Vec::new());
    };
    let ids = ChunkKeys::new(keys.get(chunk_key_id)?);
    let (mut repo, problems) = Repo::open(rt.clone(), store, keys, "verify")?;
    let mut checks: Vec<ObjectCheck> = problems
        .problems
        .into_iter()
        .map(|p| ObjectCheck {
            key: p
                .split(':')
                .next()
                .unwrap_or("index")
                .trim_start_matches("index ")
                .to_string(),
            bytes: 0,
            ok: false,
            error: Some(p),
            lock: None,
        })
        .collect();
    // The chunk ids the backup needs (32 bytes each), by pack.
    let mut by_pack: BTreeMap<String, HashSet<ChunkId>> = BTreeMap::new();
    let mut missing: HashSet<ChunkId> = HashSet::new();
    walk_tree(&rt, store, keys, m, |e| {
        for c in e.chunk_refs() {
            match repo.pack_of(&c.id) {
                Some(p) => {
                    by_pack.entry(p).or_default().insert(c.id);
                }
                None => {
                    missing.insert(c.id);
                }
            }
        }
    })?;
    // Each pack's chunks in the order they are stored, so that the feed
    // streams each pack in a few requests instead of one per chunk.
    let by_pack: Vec<(String, Vec<ChunkId>)> = by_pack
        .into_iter()
        .map(|(pack, needed)| {
            let mut v: Vec<ChunkId> = needed.into_iter().collect();
            v.sort_by_key(|id| repo.index.get(id).map(|(_, l)| l.offset));
            (pack, v)
        })
        .collect();
    let mut plan = Plan::default();
    for id in by_pack.iter().flat_map(|(_, v)| v) {
        plan.add(&repo.index, id);
    }
    let mut feed = Feed::new(rt.clone(), store.clone(), plan);
    let mut bad: HashSet<ChunkId> = missing.clone();
    let mut failures: Vec<(String, String, HashSet<ChunkId>)> = Vec::new();
    for (pack, needed) in &by_pack {
        let mut first_error = repo.read_trailer(pack).err().map(|e| e.to_string());
        let mut bad_here = HashSet::new();
        for id in needed {
            if let Err(e) = feed.read(&mut repo, &ids, id) {
                first_error.get_or_insert_with(|| e.to_string());
                bad_here.insert(*id);
            }
        }
        if first_error.is_some() && bad_here.is_empty() {
            // A bad trailer: every chunk listed in it is suspect.
            bad_here.extend(needed.iter().copied());
        }
        match first_error {
            None => checks.push(ObjectCheck {
                key: pack.clone(),
                bytes: repo.packs().get(pack).copied().unwrap_or(0),
                ok: true,
                error: None,
                lock: None,
            }),
            Some(e) => {
                bad.extend(bad_here.iter().copied());
                failures.push((pack.clone(), e, bad_here));
            }
        }
    }
    if bad.is_empty() {
        return Ok(checks);
    }
    // Second pass: the files each damage touches.
    let mut affected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let pack_of_bad = |id: &ChunkId| {
        failures
            .iter()
            .find(|(_, _, ids)| ids.contains(id))
            .map(|(p, _, _)| p.clone())
            .unwrap_or_else(|| "(in no pack)".into())
    };
    walk_tree(&rt, store, keys, m, |e| {
        let mut packs: Vec<String> = e
            .chunk_refs()
            .filter(|c| bad.contains(&c.id))
            .map(|c| pack_of_bad(&c.id))
            .collect();
        packs.dedup();
        for p in packs {
            affected.entry(p).or_default().push(e.display());
        }
    })?;
    let names = |p: &str| {
        let v = affected.get(p).cloned().unwrap_or_default();
        let more = v.len().saturating_sub(NAMES_SHOWN);
        let mut s = v
            .into_iter()
            .take(NAMES_SHOWN)
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    for (pack, e, _) in &failures {
        checks.push(ObjectCheck {
            key: pack.clone(),
            bytes: repo.packs().get(pack).copied().unwrap_or(0),
            ok: false,
            error: Some(format!("{e}; files affected: {}", names(pack))),
            lock: None,
        });
    }
    if !missing.is_empty() {
        let first = short(missing.iter().next().expect("not empty"));
        checks.push(ObjectCheck {
            key: "(missing chunks)".into(),
            bytes: 0,
            ok: false,
            error: Some(format!(
                "{} chunk(s) (first {first}) are in no pack of this destination (a pack was deleted or an index edited); files affected: {}",
                missing.len(),
                names("(in no pack)")
            )),
            lock: None,
        });
    }
    Ok(checks)
}
