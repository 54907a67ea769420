//! The objects of an S3 bucket (or of a prefix of it), into the chunk store
//! ([`crate::chunks`]), one tree entry per object (docs/FORMAT.md §10).
//!
//! The listing is streamed page by page ([`object::list`]) and merged with
//! the previous backup's tree (streamed too; both in key order): an object
//! whose size and ETag equal the previous record keeps that record's chunks
//! without a GET (a HEAD refreshes its metadata when only its Last-Modified
//! moved). Other objects are read with `If-Match` ([`object::get`]): small
//! ones a few at a time, concurrently, large ones streamed through the
//! chunker. Memory stays at one page of the listing, a bounded window of
//! small bodies and one chunker buffer, whatever the object count.
//! Runs on a blocking thread.

pub mod object;

use crate::catalog::FileStats;
use crate::chunks::chunker::{self, Sizes};
use crate::chunks::repo::Repo;
use crate::chunks::tree::{ChunkRef, Entry, Extent, Kind, TreeWriter};
use crate::chunks::{ChunkError, ChunkKeys};
use crate::source::files::walk::Filter;
use crate::source::files::Previous;
use crate::store::StoreError;
use bytes::Bytes;
use object::{Listed, Meta, Source};
use std::io::{self, Read, Write};
use tokio::runtime::Handle;

/// Objects up to this size are read whole, several at once.
const SMALL: u64 = 1 << 20;
/// At most this many small objects, and this many bytes of them, in flight.
const WINDOW_OBJECTS: usize = 32;
const WINDOW_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{source_label}: object {key:?} changed each time it was read ({tries} tries); nothing of it was stored")]
    Unstable {
        source_label: String,
        key: String,
        tries: u32,
    },
    #[error("{source_label}: reading object {key:?}: {problem}")]
    Read {
        source_label: String,
        key: String,
        problem: String,
    },
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the previous backup's tree: {0}")]
    Previous(String),
    #[error("writing the tree: {0}")]
    Tree(#[source] io::Error),
    #[error("{0}")]
    Filter(String),
}

/// What to back up and how.
#[derive(Clone)]
pub struct BucketSpec {
    pub source: Source,
    /// The key prefix backed up, with its trailing `/` (or empty).
    pub prefix: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// GET every object, trusting nothing from the previous backup.
    pub full: bool,
    pub sizes: Sizes,
}

/// What to do with one listed object.
enum Plan {
    /// The previous record, its chunks reused (metadata refreshed when
    /// `head` says the object was touched).
    Reuse {
        prev: Entry,
        head: bool,
    },
    Fetch {
        changed: bool,
    },
}

pub struct BucketEngine<'a, 'r> {
    spec: &'a BucketSpec,
    rt: Handle,
    ids: &'a ChunkKeys,
    repos: &'a mut [Repo<'r>],
    previous: Option<Previous<'a>>,
    peeked: Option<Entry>,
    pub stats: FileStats,
}

impl<'a, 'r> BucketEngine<'a, 'r> {
    pub fn new(
        spec: &'a BucketSpec,
        rt: Handle,
        ids: &'a ChunkKeys,
        repos: &'a mut [Repo<'r>],
        previous: Option<Previous<'a>>,
    ) -> Self {
        Self {
            spec,
            rt,
            ids,
            repos,
            previous,
            peeked: None,
            stats: FileStats::default(),
        }
    }

    /// Lists, stores new chunks, writes the tree to `out`; the repos are
    /// finished (every pack and index object written) when it returns Ok.
    pub fn run<W: Write>(mut self, out: W) -> Result<(FileStats, W), BucketError> {
        let filter =
            Filter::new(&self.spec.include, &self.spec.exclude).map_err(BucketError::Filter)?;
        let mut tree = TreeWriter::new(out).map_err(BucketError::Tree)?;
        let mut pages = {
            let _guard = self.rt.enter();
            object::list(self.spec.source.clone(), self.spec.prefix.clone())
        };
        let result = (|| {
            while let Some(page) = pages.blocking_recv() {
                let page: Vec<Listed> = page?
                    .into_iter()
                    .filter(|l| filter.keeps_key(self.rel(&l.key).as_bytes()))
                    .collect();
                self.page(page, &mut tree)?;
            }
            for r in self.repos.iter_mut() {
                r.finish()?;
            }
            Ok::<_, BucketError>(())
        })();
        if let Err(e) = result {
            for r in self.repos.iter_mut() {
                r.abandon();
            }
            return Err(e);
        }
        self.stats.bytes_stored = self.repos.iter().map(|r| r.stored).sum();
        self.stats.chunks_new = self.repos.iter().map(|r| r.new_chunks).sum();
        let out = tree.finish().map_err(BucketError::Tree)?;
        Ok((self.stats, out))
    }

    fn rel<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(&self.spec.prefix).unwrap_or(key)
    }

    /// The previous backup's entry at `rel`, if it had one (both streams
    /// are in key order).
    fn previous(&mut self, rel: &[u8]) -> Result<Option<Entry>, BucketError> {
        loop {
            if self.peeked.is_none() {
                match self.previous.as_mut().and_then(|p| p.next()) {
                    None => return Ok(None),
                    Some(e) => self.peeked = Some(e.map_err(BucketError::Previous)?),
                }
            }
            let p = self.peeked.as_ref().expect("peeked");
            match p.path.as_slice().cmp(rel) {
                std::cmp::Ordering::Less => self.peeked = None,
                std::cmp::Ordering::Equal => return Ok(self.peeked.take()),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
    }

    fn plan(&mut self, l: &Listed) -> Result<Plan, BucketError> {
        let prev = self.previous(self.rel(&l.key).as_bytes())?;
        let Some(prev) = prev else {
            return Ok(Plan::Fetch { changed: false });
        };
        let same = !self.spec.full
            && prev.kind == Kind::File
            && prev.size == l.size
            && etag(&prev) == Some(l.etag.as_bytes())
            // A destination that lost a chunk (or was added) gets the object read again.
            && prev.chunk_refs().all(|c| self.repos.iter().all(|r| r.index.contains(&c.id)));
        Ok(if same {
            let head = prev.mtime != l.modified;
            Plan::Reuse { prev, head }
        } else {
            Plan::Fetch { changed: true }
        })
    }

    /// One page of the listing, in order.
    fn page<W: Write>(
        &mut self,
        page: Vec<Listed>,
        tree: &mut TreeWriter<W>,
    ) -> Result<(), BucketError> {
        let mut plans = Vec::with_capacity(page.len());
        for l in &page {
            plans.push(self.plan(l)?);
        }
        let mut items: Vec<(Listed, Plan)> = page.into_iter().zip(plans).collect();
        while !items.is_empty() {
            // A window: reused objects and small fetches, read concurrently;
            // or one large object alone, streamed.
            let (mut n, mut bytes, mut fetches) = (0, 0, 0);
            while n < items.len() {
                match items[n].1 {
                    Plan::Reuse { head: false, .. } => {}
                    Plan::Reuse { head: true, .. } => {
                        if fetches == WINDOW_OBJECTS {
                            break;
                        }
                        fetches += 1;
                    }
                    Plan::Fetch { .. } => {
                        let size = items[n].0.size;
                        if size > SMALL {
                            n = n.max(1);
                            break;
                        }
                        if fetches == WINDOW_OBJECTS || (fetches > 0 && bytes + size > WINDOW_BYTES)
                        {
                            break;
                        }
                        fetches += 1;
                        bytes += size;
                    }
                }
                n += 1;
            }
            let window: Vec<(Listed, Plan)> = items.drain(..n).collect();
            self.window(window, tree)?;
        }
        Ok(())
    }

    fn window<W: Write>(
        &mut self,
        window: Vec<(Listed, Plan)>,
        tree: &mut TreeWriter<W>,
    ) -> Result<(), BucketError> {
        let src = &self.spec.source;
        let big = matches!(window[..], [(ref l, Plan::Fetch { .. })] if l.size > SMALL);
        // Small objects' bodies (and HEADs of touched ones), concurrently:
        // a request's future only for the objects that need one (each is
        // kilobytes, and a window may hold a whole page of unchanged ones).
        let mut fetched: Vec<Option<Fetched>> = window.iter().map(|_| None).collect();
        let asks: Vec<usize> = (0..window.len())
            .filter(|&i| !big && !matches!(window[i].1, Plan::Reuse { head: false, .. }))
            .collect();
        if !asks.is_empty() {
            let got = self
                .rt
                .block_on(futures::future::try_join_all(asks.iter().map(|&i| {
                    let (l, plan) = &window[i];
                    let mut l = l.clone();
                    async move {
                        Ok::<_, BucketError>(match plan {
                            Plan::Reuse { head: false, .. } => None,
                            Plan::Reuse { head: true, .. } => {
                                Some(Fetched::Head(object::head(src, &l.key).await?))
                            }
                            Plan::Fetch { .. } => Some(match object::get(src, &mut l).await? {
                                None => Fetched::Gone,
                                Some(o) => {
                                    let meta = object::meta_of_get(&o, &l.etag);
                                    let body = o
                                        .body
                                        .collect()
                                        .await
                                        .map_err(|e| read_err(src, &l.key, e))?;
                                    Fetched::Body(l, meta, body.into_bytes())
                                }
                            }),
                        })
                    }
                })))?;
            for (i, f) in asks.into_iter().zip(got) {
                fetched[i] = f;
            }
        }
        for ((listed, plan), fetched) in window.into_iter().zip(fetched) {
            let entry = match (plan, fetched) {
                (Plan::Reuse { prev, .. }, None) => Some(self.reuse(&listed, prev, None)),
                (Plan::Reuse { prev, .. }, Some(Fetched::Head(Some((now, meta)))))
                    if now.etag == listed.etag && now.size == listed.size =>
                {
                    Some(self.reuse(&now, prev, Some(meta)))
                }
                // Changed or gone between the listing and the HEAD: read it now.
                (Plan::Reuse { .. }, Some(_)) => self.stream(listed, true)?,
                (Plan::Fetch { changed }, None) => self.stream(listed, changed)?,
                (Plan::Fetch { changed }, Some(Fetched::Body(now, meta, body))) => {
                    Some(self.store(&now, meta, &body[..], changed)?)
                }
                (Plan::Fetch { .. }, Some(_)) => self.gone(&listed),
            };
            if let Some(e) = entry {
                tree.push(&e).map_err(BucketError::Tree)?;
            }
        }
        Ok(())
    }

    fn reuse(&mut self, now: &Listed, prev: Entry, meta: Option<Meta>) -> Entry {
        self.stats.files_unchanged += 1;
        self.stats.bytes_total += now.size;
        let mut e = entry(
            self.rel(&now.key),
            now,
            meta.unwrap_or_else(|| prev.xattrs.clone()),
        );
        e.extents = prev.extents;
        e
    }

    fn gone(&mut self, l: &Listed) -> Option<Entry> {
        tracing::info!(bucket = %self.spec.source.label, key = %l.key, "deleted while the backup ran: left out");
        self.stats
            .skipped
            .push(format!("{} (deleted during the backup)", l.key));
        None
    }

    /// GETs one object and streams it through the chunker.
    fn stream(&mut self, mut listed: Listed, changed: bool) -> Result<Option<Entry>, BucketError> {
        let src = self.spec.source.clone();
        let Some(o) = self.rt.block_on(object::get(&src, &mut listed))? else {
            return Ok(self.gone(&listed));
        };
        let meta = object::meta_of_get(&o, &listed.etag);
        let body = BodyRead {
            rt: self.rt.clone(),
            body: o.body,
            buf: Bytes::new(),
        };
        self.store(&listed, meta, body, changed).map(Some)
    }

    fn store(
        &mut self,
        l: &Listed,
        meta: Meta,
        data: impl Read,
        changed: bool,
    ) -> Result<Entry, BucketError> {
        let mut e = entry(self.rel(&l.key), l, meta);
        let mut extent = Extent {
            offset: 0,
            chunks: Vec::new(),
        };
        let mut read = 0u64;
        // An object no longer than the minimum chunk is one chunk, read
        // straight into its buffer (not through the chunker's 8 MiB one,
        // which each of many small objects would allocate and touch). One
        // byte more than listed is asked for, so that a longer body is
        // caught by the size check below rather than cut to fit.
        let limit = l.size + 1;
        let chunks = chunker::chunks_of(data.take(limit), limit, self.spec.sizes, self.ids.seed);
        for chunk in chunks {
            let chunk = chunk.map_err(|e| read_err(&self.spec.source, &l.key, e))?;
            let id = self.ids.id(&chunk);
            let mut new = false;
            for r in self.repos.iter_mut() {
                new |= r.add(&id, &chunk)?;
            }
            let n = chunk.len() as u64;
            read += n;
            if !new {
                self.stats.bytes_deduplicated += n;
            }
            extent.chunks.push(ChunkRef {
                id,
                len: chunk.len() as u32,
            });
        }
        if read != l.size {
            return Err(read_err(
                &self.spec.source,
                &l.key,
                format!("{read} bytes read, {} listed", l.size),
            ));
        }
        self.stats.bytes_read += read;
        self.stats.bytes_total += read;
        if changed {
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        e.extents.push(extent);
        Ok(e)
    }
}

enum Fetched {
    Head(Option<(Listed, Meta)>),
    Body(Listed, Meta, Bytes),
    Gone,
}

fn read_err(src: &Source, key: &str, e: impl std::fmt::Display) -> BucketError {
    BucketError::Read {
        source_label: src.label.clone(),
        key: key.to_string(),
        problem: e.to_string(),
    }
}

/// The recorded ETag of a tree entry.
pub fn etag(e: &Entry) -> Option<&[u8]> {
    e.xattrs
        .iter()
        .find(|(k, _)| k == b"s3.etag")
        .map(|(_, v)| v.as_slice())
}

/// An object's tree entry, without its chunks.
fn entry(rel: &str, l: &Listed, meta: Meta) -> Entry {
    Entry {
        path: rel.as_bytes().to_vec(),
        kind: Kind::File,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: l.modified,
        ctime: l.modified,
        ino: 0,
        size: l.size,
        xattrs: meta,
        target: Vec::new(),
        extents: Vec::new(),
    }
}

/// A GET's body as a blocking `Read`, for the chunker.
struct BodyRead {
    rt: Handle,
    body: aws_sdk_s3::primitives::ByteStream,
    buf: Bytes,
}

impl Read for BodyRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rt.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(io::Error::other(crate::error_line::error_chain(&e))),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}
