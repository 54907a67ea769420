//! The index: which pack holds each chunk (pure). In memory it is the one
//! structure that grows with the store, so it is kept compact: one sorted
//! array of 52-byte records (the 32-byte id and where it is), searched by
//! bisection, plus a small hash map of the chunks added since the array was
//! last merged (at most an eighth of it): 100,000 chunks take ~5.3 MiB
//! (a hash map of them took 7.5 MiB, and 11 MiB while it grew). Stored,
//! it is one sealed index object per run listing the blobs of the packs
//! that run wrote (docs/FORMAT.md §8); packs that no index object covers (a
//! killed run's) are read from their trailers, so the index can always be
//! rebuilt from the packs.

use super::pack::{BlobEntry, ENTRY_LEN};
use super::ChunkId;
use std::collections::HashMap;

const MAGIC: &[u8; 8] = b"LBINDEX2";
/// The recent chunks are merged into the array when they are this many,
/// or an eighth of the array (so each record moves a bounded number of
/// times, whatever the store's size).
const MERGE_MIN: usize = 4096;

/// Where a chunk is: a pack (by number into [`Index::packs`]) and its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
    pub stored_len: u32,
    pub plain_len: u32,
}

/// A chunk and its location, as stored in the array: 4-byte aligned, so 52
/// bytes (a `u64` field would pad it to 56).
#[derive(Clone, Copy)]
struct Record {
    id: ChunkId,
    pack: u32,
    offset: [u32; 2],
    stored_len: u32,
    plain_len: u32,
}

impl Record {
    fn new(id: ChunkId, l: Location) -> Self {
        Self {
            id,
            pack: l.pack,
            offset: [(l.offset >> 32) as u32, l.offset as u32],
            stored_len: l.stored_len,
            plain_len: l.plain_len,
        }
    }

    fn location(&self) -> Location {
        Location {
            pack: self.pack,
            offset: (u64::from(self.offset[0]) << 32) | u64::from(self.offset[1]),
            stored_len: self.stored_len,
            plain_len: self.plain_len,
        }
    }
}

#[derive(Default)]
pub struct Index {
    packs: Vec<String>,
    /// Sorted by id, each id once.
    sorted: Vec<Record>,
    /// Added since the last merge; none of them is in `sorted`.
    recent: HashMap<ChunkId, Location>,
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
            if self.find(&e.id).is_some() {
                continue;
            }
            self.recent.insert(
                e.id,
                Location {
                    pack: n,
                    offset: e.offset,
                    stored_len: e.stored_len,
                    plain_len: e.plain_len,
                },
            );
            if self.recent.len() >= MERGE_MIN.max(self.sorted.len() / 8) {
                self.merge();
            }
        }
    }

    /// Moves the recent chunks into the sorted array, merging from its end
    /// (no second array of the whole index is ever allocated).
    fn merge(&mut self) {
        let mut new: Vec<Record> = self
            .recent
            .drain()
            .map(|(id, l)| Record::new(id, l))
            .collect();
        self.recent.shrink_to(MERGE_MIN);
        new.sort_unstable_by_key(|r| r.id);
        let (mut i, mut j) = (self.sorted.len(), new.len());
        self.sorted.reserve_exact(j);
        self.sorted.extend_from_slice(&new);
        let mut k = self.sorted.len();
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1].id > new[j - 1].id {
                i -= 1;
                self.sorted[k] = self.sorted[i];
            } else {
                j -= 1;
                self.sorted[k] = new[j];
            }
        }
    }

    /// Adds the packs an index object's plaintext (authenticated) lists
    /// for which `keep` holds, straight from its bytes; returns them, or
    /// `None`, adding nothing, when it is malformed. No list of entries is
    /// built.
    pub fn add_object(
        &mut self,
        b: &[u8],
        mut keep: impl FnMut(&str) -> bool,
    ) -> Option<Vec<String>> {
        walk(b, |_, _| {})?;
        let mut kept = Vec::new();
        walk(b, |name, entries| {
            if keep(name) {
                self.add_entries(name, entries.chunks_exact(ENTRY_LEN).map(BlobEntry::decode));
                kept.push(name.to_string());
            }
        })?;
        Some(kept)
    }

    fn find(&self, id: &ChunkId) -> Option<Location> {
        if let Some(l) = self.recent.get(id) {
            return Some(*l);
        }
        self.sorted
            .binary_search_by(|r| r.id.cmp(id))
            .ok()
            .map(|i| self.sorted[i].location())
    }

    pub fn get(&self, id: &ChunkId) -> Option<(&str, Location)> {
        self.find(id)
            .map(|l| (self.packs[l.pack as usize].as_str(), l))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.find(id).is_some()
    }

    pub fn chunks(&self) -> usize {
        self.sorted.len() + self.recent.len()
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

    #[test]
    fn many_chunks_are_merged_into_the_array_and_first_place_still_wins() {
        let id = |i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            id[4..8].copy_from_slice(&i.to_be_bytes());
            id
        };
        let e = |i: u32| BlobEntry {
            id: id(i),
            offset: (u64::from(i) << 20) + 7,
            stored_len: i,
            plain_len: i + 1,
        };
        let mut idx = Index::default();
        let n = 3 * MERGE_MIN as u32 + 123;
        for i in 0..n {
            idx.add_pack(&format!("p{}", i / 1000), &[e(i)]);
        }
        // Again, in other packs: already indexed, they keep their place.
        let again: Vec<BlobEntry> = (0..n).step_by(7).map(e).collect();
        idx.add_pack("later", &again);
        assert_eq!(idx.chunks(), n as usize);
        assert!(idx.sorted.windows(2).all(|w| w[0].id < w[1].id));
        for i in (0..n).step_by(13) {
            let (pack, l) = idx.get(&id(i)).unwrap();
            assert_eq!(pack, format!("p{}", i / 1000));
            assert_eq!(
                (l.offset, l.stored_len, l.plain_len),
                (e(i).offset, i, i + 1)
            );
        }
        assert!(!idx.contains(&id(n)));
    }
}
