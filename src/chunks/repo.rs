//! One chunk store in one destination (docs/FORMAT.md §6): its index
//! loaded, new chunks packed and uploaded, chunks read back. A synchronous
//! face over the async [`Store`], for the file walker's blocking thread
//! (`Handle::block_on` from a `spawn_blocking` thread).

use super::index::{self, Index};
use super::pack::{self, BlobEntry, PackError, PackOpener, PackSealer};
use super::sink::UploadSink;
use super::{ChunkError, ChunkId, ChunkKeys, INDEXES, PACKS};
use crate::keys::Keyring;
use crate::pipeline::codec::{ObjectDecoder, ObjectEncoder};
use crate::pipeline::header::Compression;
use crate::store::{ObjectWriter, Store};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use tokio::runtime::Handle;

/// Packs close once they hold this much (tens of MiB: few objects, and a
/// range read fetches any one chunk).
pub const PACK_TARGET: u64 = 32 << 20;
/// The upload granularity inside a pack.
const WRITE_BATCH: usize = 1 << 20;
/// The largest index object a reader reads (48 bytes a chunk).
const INDEX_LIMIT: usize = 1 << 30;
pub fn pack_key(name: &str) -> String {
    format!("{PACKS}{name}.pack")
}

pub fn index_key(backup_id: &str) -> String {
    format!("{INDEXES}{backup_id}.idx")
}

/// The backup id a pack or index object was written by (its name's start).
pub fn written_by(key: &str) -> Option<&str> {
    let name = key
        .strip_prefix(PACKS)
        .or_else(|| key.strip_prefix(INDEXES))?;
    name.get(..27)
}

struct OpenPack {
    key: String,
    writer: ObjectWriter,
    sealer: PackSealer,
    len: u64,
    entries: Vec<BlobEntry>,
    buf: Vec<u8>,
}

/// What loading the index met that was wrong (verify reports it).
#[derive(Debug, Default)]
pub struct LoadProblems {
    pub problems: Vec<String>,
}

pub struct Repo<'a> {
    pub store: &'a Store,
    rt: Handle,
    keys: &'a Keyring,
    pub index: Index,
    sizes: HashMap<String, u64>,
    openers: HashMap<String, PackOpener>,
    open: Option<OpenPack>,
    /// This run's index object, written pack by pack as they close.
    index_out: Option<ObjectEncoder<UploadSink>>,
    run: String,
    seq: u32,
    pack_target: u64,
    /// Bytes uploaded in packs by this run.
    pub stored: u64,
    /// Chunks uploaded by this run.
    pub new_chunks: u64,
}

impl<'a> Repo<'a> {
    /// Loads the index of the store in `store`: every index object that
    /// authenticates, and the trailers of packs no index object covers.
    /// Called from a blocking thread.
    pub fn open(
        rt: Handle,
        store: &'a Store,
        keys: &'a Keyring,
        run: &str,
    ) -> Result<(Self, LoadProblems), ChunkError> {
        let packs = rt.block_on(store.list(PACKS))?;
        let sizes: HashMap<String, u64> = packs
            .into_iter()
            .filter(|o| o.key.ends_with(".pack"))
            .map(|o| (o.key, o.size))
            .collect();
        let mut index = Index::default();
        let mut problems = LoadProblems::default();
        let mut covered = HashSet::new();
        for obj in rt.block_on(store.list(INDEXES))? {
            let added = read_sealed(&rt, store, keys, &obj.key, INDEX_LIMIT).and_then(|b| {
                index
                    .add_object(&b, |key| sizes.contains_key(key) && !covered.contains(key))
                    .ok_or_else(|| "malformed".to_string())
            });
            match added {
                Ok(packs) => covered.extend(packs),
                Err(e) => {
                    tracing::warn!(dest = %store.label(), index = %obj.key, error = %e, "index object ignored; its packs are read instead");
                    problems.problems.push(format!("index {}: {e}", obj.key));
                }
            }
        }
        let mut repo = Repo {
            store,
            rt,
            keys,
            index,
            sizes,
            openers: HashMap::new(),
            open: None,
            index_out: None,
            run: run.to_string(),
            seq: 0,
            pack_target: PACK_TARGET,
            stored: 0,
            new_chunks: 0,
        };
        let mut uncovered: Vec<String> = repo
            .sizes
            .keys()
            .filter(|k| !covered.contains(*k))
            .cloned()
            .collect();
        uncovered.sort();
        for key in uncovered {
            match repo.read_trailer(&key) {
                Ok(entries) => repo.index.add_pack(&key, &entries),
                Err(e) => {
                    tracing::warn!(dest = %store.label(), pack = %key, error = %e, "pack ignored");
                    problems.problems.push(e.to_string());
                }
            }
        }
        tracing::debug!(dest = %store.label(), chunks = repo.index.chunks(), packs = repo.sizes.len(), "chunk index loaded");
        Ok((repo, problems))
    }

    /// Packs close at `bytes` instead of [`PACK_TARGET`] (tests).
    pub fn with_pack_target(mut self, bytes: u64) -> Self {
        self.pack_target = bytes.max(1);
        self
    }

    fn pack_err(key: &str, e: impl std::fmt::Display) -> ChunkError {
        ChunkError::Pack {
            pack: key.to_string(),
            problem: e.to_string(),
        }
    }

    fn opener(&mut self, key: &str) -> Result<&PackOpener, ChunkError> {
        if !self.openers.contains_key(key) {
            let size = *self
                .sizes
                .get(key)
                .ok_or_else(|| Self::pack_err(key, "missing"))?;
            let head = self.rt.block_on(self.store.read_range(
                key,
                0,
                size.min(pack::HEADER_MAX as u64),
            ))?;
            let opener =
                PackOpener::open(&head, self.keys, key).map_err(|e| Self::pack_err(key, e))?;
            self.openers.insert(key.to_string(), opener);
        }
        Ok(&self.openers[key])
    }

    /// The blobs a pack's trailer lists, authenticated.
    pub fn read_trailer(&mut self, key: &str) -> Result<Vec<BlobEntry>, ChunkError> {
        let size = *self
            .sizes
            .get(key)
            .ok_or_else(|| Self::pack_err(key, "missing"))?;
        if size < pack::TAIL_LEN as u64 {
            return Err(Self::pack_err(key, PackError::Trailer));
        }
        let tail = self.rt.block_on(self.store.read_range(
            key,
            size - pack::TAIL_LEN as u64,
            pack::TAIL_LEN as u64,
        ))?;
        let len = PackOpener::trailer_len(&tail).map_err(|e| Self::pack_err(key, e))?;
        let start = (size - pack::TAIL_LEN as u64)
            .checked_sub(len)
            .ok_or_else(|| Self::pack_err(key, PackError::Trailer))?;
        let sealed = self.rt.block_on(self.store.read_range(key, start, len))?;
        self.opener(key)?
            .open_trailer(sealed.to_vec(), start)
            .map_err(|e| Self::pack_err(key, e))
    }

    /// A chunk's plaintext, authenticated: one ranged read of its blob
    /// (a restore reads through [`super::feed::Feed`], span by span).
    pub fn read_chunk(&mut self, ids: &ChunkKeys, id: &ChunkId) -> Result<Vec<u8>, ChunkError> {
        let (pack, loc) = self.index.get(id).ok_or(ChunkError::Missing {
            chunk: super::short(id),
        })?;
        let pack = pack.to_string();
        let stored = self.rt.block_on(self.store.read_range(
            &pack,
            loc.offset,
            u64::from(loc.stored_len),
        ))?;
        self.open_blob(ids, id, &pack, stored.to_vec())
    }

    /// Opens a chunk's stored bytes, read from `pack`, under its id.
    pub fn open_blob(
        &mut self,
        ids: &ChunkKeys,
        id: &ChunkId,
        pack: &str,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, ChunkError> {
        self.opener(pack)?
            .open_blob(ids, id, stored)
            .map_err(|e| Self::pack_err(pack, e))
    }

    /// Whether the key of `pack` is open.
    pub fn opened(&self, pack: &str) -> bool {
        self.openers.contains_key(pack)
    }

    /// Opens the key of `pack` from its first bytes, read by the caller
    /// (as much of [`pack::HEADER_MAX`] as the pack has).
    pub fn open_header(&mut self, pack: &str, head: &[u8]) -> Result<(), ChunkError> {
        let opener =
            PackOpener::open(head, self.keys, pack).map_err(|e| Self::pack_err(pack, e))?;
        self.openers.insert(pack.to_string(), opener);
        Ok(())
    }

    /// Packs the pack holding `id` is in (for messages).
    pub fn pack_of(&self, id: &ChunkId) -> Option<String> {
        self.index.get(id).map(|(p, _)| p.to_string())
    }

    /// Stores a chunk unless the store has it. Returns whether it was new.
    pub fn add(&mut self, id: &ChunkId, plain: &[u8]) -> Result<bool, ChunkError> {
        if self.index.contains(id) {
            return Ok(false);
        }
        if self.open.is_none() {
            let key = pack_key(&format!("{}-{:05}", self.run, self.seq));
            self.seq += 1;
            let (header, sealer) = pack::new_pack(self.keys.primary(), &key);
            let writer = self.rt.block_on(self.store.writer(&key))?;
            self.open = Some(OpenPack {
                key,
                writer,
                sealer,
                len: header.len() as u64,
                entries: Vec::new(),
                buf: header,
            });
        }
        let p = self.open.as_mut().expect("opened above");
        let blob = p.sealer.seal_blob(id, plain);
        let entry = BlobEntry {
            id: *id,
            offset: p.len,
            stored_len: blob.len() as u32,
            plain_len: plain.len() as u32,
        };
        p.len += blob.len() as u64;
        p.buf.extend_from_slice(&blob);
        p.entries.push(entry);
        self.stored += blob.len() as u64;
        self.new_chunks += 1;
        // In the index at once: a second copy in this run is not stored.
        let key = p.key.clone();
        self.index.add_pack(&key, &[entry]);
        if p.buf.len() >= WRITE_BATCH {
            let data = Bytes::from(std::mem::take(&mut p.buf));
            if let Err(e) = self.rt.block_on(p.writer.write(data)) {
                self.abandon();
                return Err(e.into());
            }
        }
        if p.len >= self.pack_target {
            self.close_pack()?;
        }
        Ok(true)
    }

    fn close_pack(&mut self) -> Result<(), ChunkError> {
        let Some(mut p) = self.open.take() else {
            return Ok(());
        };
        p.buf.extend_from_slice(&p.sealer.trailer(&p.entries));
        let size = p.len + (p.buf.len() as u64).saturating_sub(0);
        let data = Bytes::from(std::mem::take(&mut p.buf));
        let written = self.rt.block_on(async {
            p.writer.write(data).await?;
            p.writer.finish().await
        });
        written?;
        self.stored += pack::TAIL_LEN as u64;
        tracing::debug!(dest = %self.store.label(), pack = %p.key, chunks = p.entries.len(), "pack written");
        self.sizes.insert(p.key.clone(), size);
        if self.index_out.is_none() {
            let key = index_key(&self.run);
            let writer = self.rt.block_on(self.store.writer(&key))?;
            let sink = UploadSink::new(self.rt.clone(), vec![writer]);
            // Chunk ids are random: not worth a compressor's few MiB.
            let mut enc = ObjectEncoder::new(sink, self.keys.primary(), &key, Compression::None)?;
            enc.write_all(index::HEADER)?;
            self.index_out = Some(enc);
        }
        let enc = self.index_out.as_mut().expect("opened above");
        enc.write_all(&index::encode_pack(&p.key, &p.entries))?;
        Ok(())
    }

    /// Drops an unfinished pack and index object (their uploads are aborted).
    pub fn abandon(&mut self) {
        if let Some(p) = self.open.take() {
            self.rt.block_on(p.writer.abort());
        }
        if let Some(enc) = self.index_out.take() {
            if let Ok(sink) = enc.finish() {
                sink.abort();
            }
        }
    }

    /// Closes the open pack and finishes this run's index object. After
    /// this, every chunk the run added is stored; the manifest may follow.
    pub fn finish(&mut self) -> Result<(), ChunkError> {
        self.close_pack()?;
        if let Some(enc) = self.index_out.take() {
            enc.finish()?.finish()?;
        }
        Ok(())
    }

    /// The keys of every pack in the store, with its size.
    pub fn packs(&self) -> &HashMap<String, u64> {
        &self.sizes
    }
}

/// Reads and authenticates a sealed object (§3) whole.
pub fn read_sealed(
    rt: &Handle,
    store: &Store,
    keys: &Keyring,
    key: &str,
    limit: usize,
) -> Result<Vec<u8>, String> {
    rt.block_on(async {
        let mut r = store.reader(key).await.map_err(|e| e.to_string())?;
        let mut dec = ObjectDecoder::new(keys, Some(key), LimitedVec(Vec::new(), limit));
        while let Some(chunk) = r.next().await.map_err(|e| e.to_string())? {
            dec.push(&chunk).map_err(|e| e.to_string())?;
        }
        let (out, _) = dec.finish().map_err(|e| e.to_string())?;
        Ok(out.0)
    })
}

/// A Vec that refuses to grow past its limit.
struct LimitedVec(Vec<u8>, usize);

impl std::io::Write for LimitedVec {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + b.len() > self.1 {
            return Err(std::io::Error::other("larger than any such object may be"));
        }
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
