//! The index: which pack holds each chunk (pure). In memory it is the one
//! structure that grows with the store — about 60 bytes per chunk (the
//! 32-byte id, where it is, the hash map's overhead): 100,000 chunks take
//! ~6 MiB. Stored, it is one sealed index object per run listing the
//! blobs of the packs that run wrote (docs/FORMAT.md §8); packs that no
//! index object covers (a killed run's) are read from their trailers, so
//! the index can always be rebuilt from the packs.

use super::pack::{BlobEntry, ENTRY_LEN};
use super::ChunkId;
use std::collections::HashMap;

const MAGIC: &[u8; 8] = b"LBINDEX2";

/// Where a chunk is: a pack (by number into [`Index::packs`]) and its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
    pub stored_len: u32,
    pub plain_len: u32,
}

#[derive(Default)]
pub struct Index {
    packs: Vec<String>,
    by_id: HashMap<ChunkId, Location>,
}

impl Index {
    /// Adds a pack's blobs; a chunk already indexed in another pack keeps
    /// its first place.
    pub fn add_pack(&mut self, pack: &str, entries: &[BlobEntry]) {
        self.add_entries(pack, entries.iter().copied());
    }

    fn add_entries(&mut self, pack: &str, entries: impl Iterator<Item = BlobEntry>) {
        // A pack being written is added to blob by blob: its name once.
        if self.packs.last().is_none_or(|p| p != pack) {
            self.packs.push(pack.to_string());
        }
        let n = (self.packs.len() - 1) as u32;
        for e in entries {
            self.by_id.entry(e.id).or_insert(Location {
                pack: n,
                offset: e.offset,
                stored_len: e.stored_len,
                plain_len: e.plain_len,
            });
        }
    }

    /// Adds the packs an index object's plaintext (authenticated) lists
    /// for which `keep` holds, straight from its bytes; returns them, or
    /// `None`, adding nothing, when it is malformed. The map is sized once:
    /// no list of entries is built and no rehash holds two tables.
    pub fn add_object(
        &mut self,
        b: &[u8],
        mut keep: impl FnMut(&str) -> bool,
    ) -> Option<Vec<String>> {
        let mut count = 0;
        walk(b, |_, entries| count += entries.len() / ENTRY_LEN)?;
        self.by_id.reserve(count);
        let mut kept = Vec::new();
        walk(b, |name, entries| {
            if keep(name) {
                self.add_entries(name, entries.chunks_exact(ENTRY_LEN).map(BlobEntry::decode));
                kept.push(name.to_string());
            }
        })?;
        Some(kept)
    }

    pub fn get(&self, id: &ChunkId) -> Option<(&str, Location)> {
        self.by_id
            .get(id)
            .map(|l| (self.packs[l.pack as usize].as_str(), *l))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn chunks(&self) -> usize {
        self.by_id.len()
    }

    pub fn pack_names(&self) -> &[String] {
        &self.packs
    }
}

/// The start of an index object's plaintext.
pub const HEADER: &[u8] = MAGIC;

/// One pack's part of an index object's plaintext (after [`HEADER`]).
pub fn encode_pack(name: &str, entries: &[BlobEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(6 + name.len() + entries.len() * ENTRY_LEN);
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        e.encode_into(&mut b);
    }
    b
}

/// The plaintext of an index object listing `packs`.
pub fn encode(packs: &[(String, Vec<BlobEntry>)]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    for (name, entries) in packs {
        b.extend_from_slice(&encode_pack(name, entries));
    }
    b
}

/// Calls `f` with each pack's name and entry bytes of an index object's
/// plaintext (already authenticated); `None` when it is malformed (after
/// the packs before the damage were passed).
fn walk(mut b: &[u8], mut f: impl FnMut(&str, &[u8])) -> Option<()> {
    b = b.strip_prefix(MAGIC)?;
    while !b.is_empty() {
        let (n, rest) = b.split_at_checked(2)?;
        let n = u16::from_be_bytes(n.try_into().ok()?) as usize;
        let (name, rest) = rest.split_at_checked(n)?;
        let (count, rest) = rest.split_at_checked(4)?;
        let count = u32::from_be_bytes(count.try_into().ok()?) as usize;
        let (entries, rest) = rest.split_at_checked(count.checked_mul(ENTRY_LEN)?)?;
        f(std::str::from_utf8(name).ok()?, entries);
        b = rest;
    }
    Some(())
}

/// Reads an index object's plaintext (already authenticated).
pub fn decode(b: &[u8]) -> Option<Vec<(String, Vec<BlobEntry>)>> {
    let mut out = Vec::new();
    walk(b, |name, entries| {
        let list = entries.chunks_exact(ENTRY_LEN).map(BlobEntry::decode);
        out.push((name.to_string(), list.collect()));
    })?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_objects_round_trip_and_first_place_wins() {
        let e = |i: u8, off: u64| BlobEntry {
            id: [i; 32],
            offset: off,
            stored_len: 10,
            plain_len: 20,
        };
        let packs = vec![
            (
                "chunks/packs/a.pack".to_string(),
                vec![e(1, 100), e(2, 200)],
            ),
            ("chunks/packs/b.pack".to_string(), vec![e(2, 300)]),
        ];
        let bytes = encode(&packs);
        assert_eq!(decode(&bytes).unwrap(), packs);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        let mut idx = Index::default();
        for (n, es) in &packs {
            idx.add_pack(n, es);
        }
        assert_eq!(idx.get(&[2; 32]).unwrap().0, "chunks/packs/a.pack");
        assert_eq!(idx.chunks(), 2);
        assert!(!idx.contains(&[3; 32]));
        // Straight from the bytes: the same index; a malformed object adds nothing.
        let mut direct = Index::default();
        assert!(direct
            .add_object(&bytes[..bytes.len() - 1], |_| true)
            .is_none());
        assert_eq!(direct.chunks(), 0);
        let kept = direct
            .add_object(&bytes, |p| p.ends_with("a.pack"))
            .unwrap();
        assert_eq!(kept, ["chunks/packs/a.pack"]);
        assert_eq!(direct.get(&[2; 32]), idx.get(&[2; 32]));
        assert_eq!(direct.chunks(), 2);
    }
}
