//! A file restore into a new directory, pack by pack (as restic does).
//!
//! Files share chunks (copies, common blocks), so a tree's chunks jump
//! back and forth between packs: read in tree order, a 1 GB tree took
//! thousands of ranged reads. Here the tree is read twice. The first pass
//! creates every entry (files empty, at their size) and notes where each
//! chunk goes; the notes, sorted by where the chunks are stored, make each
//! pack's needed stretch one streamed read ([`Feed`]), and each chunk is
//! opened under its id once and written to every place it goes. The second
//! pass sets metadata, once every byte is written. Memory is 64 bytes a
//! chunk reference, in windows of [`WINDOW`] references: a larger tree
//! reads the packs once per window.

use super::Error;
use crate::catalog::ObjectEntry;
use crate::chunks::feed::{Feed, Plan};
use crate::chunks::repo::Repo;
use crate::chunks::tree::{Entry, Kind};
use crate::chunks::tree_io::TreeReader;
use crate::chunks::{short, ChunkError, ChunkId, ChunkKeys};
use crate::keys::Keyring;
use crate::store::Store;
use crate::target::files::Restorer;
use crate::target::TargetError;
use tokio::runtime::Handle;

/// Chunk references noted before their chunks are fetched (16 MiB).
pub const WINDOW: usize = 1 << 18;

/// Where one chunk reference's bytes are stored and where they go.
#[derive(Clone, Copy)]
struct Want {
    pack: u32,
    offset: u64,
    id: ChunkId,
    len: u32,
    /// Number of the file in the window's list of paths.
    file: u32,
    at: u64,
}

/// Restores `tree` into `r` (then `r.finish()` moves it into place).
pub fn restore(
    rt: &Handle,
    store: &Store,
    keys: &Keyring,
    tree: &ObjectEntry,
    repo: &mut Repo,
    ids: &ChunkKeys,
    r: &mut Restorer,
) -> Result<(), Error> {
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut wants: Vec<Want> = Vec::new();
    for e in TreeReader::open(rt.clone(), store, keys, tree).map_err(Error::Usage)? {
        let e = e.map_err(TargetError::Refused)?;
        r.create(&e)?;
        if e.kind == Kind::File && e.chunk_refs().next().is_some() {
            note(repo, &e, files.len() as u32, &mut wants)?;
            files.push(e.path);
        }
        if wants.len() >= WINDOW {
            fill(rt, store, repo, ids, r, &files, &mut wants)?;
            files.clear();
        }
    }
    fill(rt, store, repo, ids, r, &files, &mut wants)?;
    for e in TreeReader::open(rt.clone(), store, keys, tree).map_err(Error::Usage)? {
        r.settle(e.map_err(TargetError::Refused)?)?;
    }
    Ok(())
}

/// Notes where each chunk of file entry `e` (number `file`) goes.
fn note(repo: &Repo, e: &Entry, file: u32, wants: &mut Vec<Want>) -> Result<(), Error> {
    for x in &e.extents {
        let mut at = x.offset;
        for c in &x.chunks {
            let (_, l) = repo.index.get(&c.id).ok_or(ChunkError::Missing {
                chunk: short(&c.id),
            })?;
            wants.push(Want {
                pack: l.pack,
                offset: l.offset,
                id: c.id,
                len: c.len,
                file,
                at,
            });
            at += u64::from(c.len);
        }
    }
    Ok(())
}

/// Fetches the noted chunks in stored order and writes each wherever it
/// goes; empties `wants`.
fn fill(
    rt: &Handle,
    store: &Store,
    repo: &mut Repo,
    ids: &ChunkKeys,
    r: &mut Restorer,
    files: &[Vec<u8>],
    wants: &mut Vec<Want>,
) -> Result<(), Error> {
    wants.sort_unstable_by_key(|w| (w.pack, w.offset, w.file, w.at));
    let mut plan = Plan::default();
    let mut chunks = 0u64;
    for (i, w) in wants.iter().enumerate() {
        if i == 0 || wants[i - 1].id != w.id {
            plan.add(&repo.index, &w.id);
            chunks += 1;
        }
    }
    tracing::info!(
        files = files.len(),
        chunks,
        reads = plan.requests(),
        "restoring file data"
    );
    let mut feed = Feed::new(rt.clone(), store.clone(), plan);
    for same in wants.chunk_by(|a, b| a.id == b.id) {
        let data = feed.read(repo, ids, &same[0].id)?;
        for w in same {
            let path = &files[w.file as usize];
            if data.len() != w.len as usize {
                return Err(TargetError::Refused(format!(
                    "{}: a chunk is {} bytes, the tree says {}",
                    String::from_utf8_lossy(path),
                    data.len(),
                    w.len
                ))
                .into());
            }
            r.write_at(path, w.at, &data)?;
        }
    }
    wants.clear();
    Ok(())
}
