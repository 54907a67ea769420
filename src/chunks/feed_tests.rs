//! The feed against a real chunk store in a directory: chunks come back
//! whatever the order of the asks, spans cost one request each, damage is
//! found chunk by chunk.

use super::*;
use crate::chunks::noise;
use crate::location::NamedLocation;
use std::path::Path;

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Store,
    keys: Keyring,
    ids: ChunkKeys,
    chunks: Vec<(ChunkId, Vec<u8>)>,
}

/// `n` chunks of 20-60 KiB of noise, in packs of about 256 KiB.
fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url: NamedLocation = format!("file://{}", dir.path().display()).parse().unwrap();
    let store = rt.block_on(Store::open(&url)).unwrap();
    let line = crate::keys::new_key_line("k1").unwrap();
    let keys = Keyring::parse(&line, Path::new("k")).unwrap();
    let ids = ChunkKeys::new(keys.primary());
    let chunks: Vec<(ChunkId, Vec<u8>)> = (0..n)
        .map(|i| {
            let data = noise((20 << 10) + (i * 7919) % (40 << 10), i as u64 + 1);
            (ids.id(&data), data)
        })
        .collect();
    let h = rt.handle().clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (repo, _) = Repo::open(h, &store, &keys, "20261201T000000Z-aaaaaaaaaaa").unwrap();
            let mut repo = repo.with_pack_target(256 << 10);
            for (id, data) in &chunks {
                repo.add(id, data).unwrap();
            }
            repo.finish().unwrap();
        })
        .join()
        .unwrap()
    });
    Fixture {
        _dir: dir,
        rt,
        store,
        keys,
        ids,
        chunks,
    }
}

impl Fixture {
    /// Plans `plan`, then asks for `asks` (indexes into the chunks); the
    /// answers, the plan's request count and the chunks read alone.
    fn run(&self, plan: &[usize], asks: &[usize]) -> (Vec<Result<Vec<u8>, String>>, usize, u64) {
        let h = self.rt.handle().clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                let (mut repo, _) = Repo::open(h.clone(), &self.store, &self.keys, "t").unwrap();
                let mut p = Plan::default();
                for &i in plan {
                    p.add(&repo.index, &self.chunks[i].0);
                }
                let requests = p.requests();
                let mut feed = Feed::new(h, self.store.clone(), p);
                let out = asks
                    .iter()
                    .map(|&i| {
                        feed.read(&mut repo, &self.ids, &self.chunks[i].0)
                            .map_err(|e| e.to_string())
                    })
                    .collect();
                (out, requests, feed.alone)
            })
            .join()
            .unwrap()
        })
    }

    fn packs(&self) -> usize {
        let root = self._dir.path().join("chunks/packs");
        std::fs::read_dir(root).unwrap().count()
    }
}

#[test]
fn chunks_in_backup_order_cost_one_request_per_pack() {
    let f = fixture(40);
    let all: Vec<usize> = (0..40).collect();
    let (out, requests, alone) = f.run(&all, &all);
    for (i, got) in out.into_iter().enumerate() {
        assert_eq!(got.unwrap(), f.chunks[i].1, "chunk {i}");
    }
    assert!(f.packs() >= 4, "the fixture spans several packs");
    assert_eq!(requests, f.packs(), "one span per pack");
    assert_eq!(alone, 0);
}

#[test]
fn skipped_repeated_and_unplanned_asks_still_get_their_chunks() {
    let f = fixture(30);
    // Planned: everything, with a run of one chunk and a jump back.
    let plan = [0, 1, 2, 2, 2, 3, 10, 11, 12, 5, 6, 20, 21, 29];
    // Asked: some skipped (an in-place restore kept their files), the
    // repeats, and one the plan never named.
    let asks = [0, 2, 2, 2, 11, 12, 5, 25, 29];
    let (out, _, alone) = f.run(&plan, &asks);
    for (got, &i) in out.into_iter().zip(&asks) {
        assert_eq!(got.unwrap(), f.chunks[i].1, "chunk {i}");
    }
    assert_eq!(alone, 1, "only the unplanned chunk is read alone");
}

#[test]
fn a_flipped_bit_fails_its_chunk_and_not_the_next() {
    let f = fixture(12);
    // Flip a byte inside chunk 1's stored bytes.
    let h = f.rt.handle().clone();
    let (pack, loc) = std::thread::scope(|s| {
        s.spawn(|| {
            let (repo, _) = Repo::open(h, &f.store, &f.keys, "t").unwrap();
            let (p, l) = repo.index.get(&f.chunks[1].0).unwrap();
            (p.to_string(), l)
        })
        .join()
        .unwrap()
    });
    let path = f._dir.path().join(&pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + 40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let all: Vec<usize> = (0..12).collect();
    let (out, _, _) = f.run(&all, &all);
    for (i, got) in out.into_iter().enumerate() {
        match i {
            1 => assert!(got.unwrap_err().contains("fails authentication"), "chunk 1"),
            _ => assert_eq!(got.unwrap(), f.chunks[i].1, "chunk {i}"),
        }
    }
}

#[test]
fn a_missing_pack_fails_its_chunks_with_the_store_error() {
    let f = fixture(20);
    let root = f._dir.path().join("chunks/packs");
    let mut packs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    packs.sort_by_key(|e| e.file_name());
    std::fs::remove_file(packs[0].path()).unwrap();
    let all: Vec<usize> = (0..20).collect();
    let (out, _, _) = f.run(&all, &all);
    assert!(out[0].as_ref().is_err(), "the first pack's chunk");
    assert_eq!(
        out[19].as_ref().unwrap(),
        &f.chunks[19].1,
        "a later pack's chunk"
    );
}
