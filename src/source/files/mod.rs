//! Files from a local directory (what a PVC mount is inside the backup
//! Job), into the chunk store ([`crate::chunks`]).
//!
//! The walk ([`walk`]) streams entries in tree order; each is recorded with
//! its metadata ([`read`]); a regular file whose size, mtime, ctime and
//! inode equal the previous backup's record (met by a merge of the two
//! sorted streams: the previous tree is streamed too, never loaded whole)
//! keeps that record's chunks without being read, unless `full`; otherwise
//! its data extents are chunked, and each chunk is added to every
//! destination's store that lacks it. The tree goes to a `Write` the
//! caller seals and uploads. Runs on a blocking thread.

pub mod read;
pub mod walk;

use crate::catalog::FileStats;
use crate::chunks::chunker::{self, Sizes};
use crate::chunks::repo::Repo;
use crate::chunks::tree::{cmp_paths, ChunkRef, Entry, Extent, Kind, TreeWriter};
use crate::chunks::{ChunkError, ChunkKeys};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    #[error("cannot read {path}: {source} (give --skip-unreadable to leave such files out and list them)")]
    Unreadable {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("the previous backup's tree: {0}")]
    Previous(String),
    #[error("writing the tree: {0}")]
    Tree(#[source] io::Error),
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct FilesSpec {
    pub root: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Read every file, trusting nothing from the previous backup.
    pub full: bool,
    /// Leave out files that cannot be read, listing them, instead of failing.
    pub skip_unreadable: bool,
    pub sizes: Sizes,
}

/// The previous backup's tree, as a stream of entries in tree order.
pub type Previous<'a> = Box<dyn Iterator<Item = Result<Entry, String>> + 'a>;

pub struct Engine<'a, 'r> {
    spec: &'a FilesSpec,
    ids: &'a ChunkKeys,
    repos: &'a mut [Repo<'r>],
    previous: Option<Previous<'a>>,
    peeked: Option<Entry>,
    /// First path of each multiply linked file: (device, inode) → path.
    links: HashMap<(u64, u64), Vec<u8>>,
    pub stats: FileStats,
}

impl<'a, 'r> Engine<'a, 'r> {
    pub fn new(
        spec: &'a FilesSpec,
        ids: &'a ChunkKeys,
        repos: &'a mut [Repo<'r>],
        previous: Option<Previous<'a>>,
    ) -> Self {
        Self {
            spec,
            ids,
            repos,
            previous,
            peeked: None,
            links: HashMap::new(),
            stats: FileStats::default(),
        }
    }

    /// Walks, stores new chunks, writes the tree to `out`; the repos are
    /// finished (every pack and index object written) when it returns Ok.
    pub fn run<W: Write>(mut self, out: W) -> Result<(FileStats, W), FilesError> {
        let filter = walk::Filter::new(&self.spec.include, &self.spec.exclude)
            .map_err(|e| FilesError::Tree(io::Error::other(e)))?;
        let mut walker = walk::Walker::new(self.spec.root.clone(), filter);
        let mut tree = TreeWriter::new(out).map_err(FilesError::Tree)?;
        let result = (|| {
            while let Some(found) = walker.next_entry() {
                if let Some(entry) = self.record(found?)? {
                    tree.push(&entry).map_err(FilesError::Tree)?;
                }
            }
            for r in self.repos.iter_mut() {
                r.finish()?;
            }
            Ok::<_, FilesError>(())
        })();
        if let Err(e) = result {
            for r in self.repos.iter_mut() {
                r.abandon();
            }
            return Err(e);
        }
        self.stats.bytes_stored = self.repos.iter().map(|r| r.stored).sum();
        self.stats.chunks_new = self.repos.iter().map(|r| r.new_chunks).sum();
        let out = tree.finish().map_err(FilesError::Tree)?;
        Ok((self.stats, out))
    }

    /// The previous backup's entry at `rel`, if it had one.
    fn previous(&mut self, rel: &[u8]) -> Result<Option<Entry>, FilesError> {
        loop {
            if self.peeked.is_none() {
                match self.previous.as_mut().and_then(|p| p.next()) {
                    None => return Ok(None),
                    Some(e) => self.peeked = Some(e.map_err(FilesError::Previous)?),
                }
            }
            let p = self.peeked.as_ref().expect("peeked");
            match cmp_paths(&p.path, rel) {
                Ordering::Less => self.peeked = None,
                Ordering::Equal => return Ok(self.peeked.take()),
                Ordering::Greater => return Ok(None),
            }
        }
    }

    fn record(&mut self, found: walk::Found) -> Result<Option<Entry>, FilesError> {
        let walk::Found { rel, path, meta } = found;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else {
            let what = if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            };
            tracing::info!(path = %path.display(), "a {what} is not backed up");
            self.stats
                .skipped
                .push(format!("{} ({what})", path.display()));
            return Ok(None);
        };
        let mut entry = read::entry(&rel, &meta, kind);
        let unreadable = |source| FilesError::Unreadable {
            path: path.display().to_string(),
            source,
        };
        match read::xattrs(&path) {
            Ok(x) => entry.xattrs = x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return self.skip_or(unreadable(e)),
        }
        match kind {
            Kind::Dir => self.stats.dirs += 1,
            Kind::Symlink => {
                self.stats.symlinks += 1;
                entry.target = std::fs::read_link(&path)
                    .map_err(unreadable)?
                    .into_os_string()
                    .into_vec();
            }
            Kind::File => return self.file(entry, &path, &meta),
            Kind::Hardlink => unreachable!("the walk meets files, not links"),
        }
        Ok(Some(entry))
    }

    fn skip_or(&mut self, e: FilesError) -> Result<Option<Entry>, FilesError> {
        match e {
            FilesError::Unreadable { path, source } if self.spec.skip_unreadable => {
                tracing::warn!(%path, error = %source, "unreadable: left out of the backup");
                self.stats.skipped.push(format!("{path} ({source})"));
                Ok(None)
            }
            e => Err(e),
        }
    }

    fn file(
        &mut self,
        mut entry: Entry,
        path: &std::path::Path,
        meta: &std::fs::Metadata,
    ) -> Result<Option<Entry>, FilesError> {
        let link_key = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        if let Some(first) = link_key.and_then(|k| self.links.get(&k)) {
            self.stats.hardlinks += 1;
            entry.kind = Kind::Hardlink;
            entry.target = first.clone();
            entry.size = 0;
            return Ok(Some(entry));
        }
        let prev = self.previous(&entry.path)?;
        let unchanged = prev.as_ref().filter(|p| {
            !self.spec.full
                && p.kind == Kind::File
                && (p.size, p.mtime, p.ctime, p.ino) == (entry.size, entry.mtime, entry.ctime, entry.ino)
                // A destination that lost a chunk (or was added) gets the file read again.
                && p.chunk_refs().all(|c| self.repos.iter().all(|r| r.index.contains(&c.id)))
        });
        if let Some(p) = unchanged {
            entry.extents = p.extents.clone();
            self.stats.files_unchanged += 1;
            self.stats.bytes_total += entry.chunk_refs().map(|c| c.len as u64).sum::<u64>();
        } else {
            match self.read_file(&mut entry, path) {
                Ok(()) => {}
                Err(e) => return self.skip_or(e),
            }
            if prev.is_some() {
                self.stats.files_changed += 1;
            } else {
                self.stats.files_new += 1;
            }
        }
        if let Some(k) = link_key {
            self.links.insert(k, entry.path.clone());
        }
        Ok(Some(entry))
    }

    fn read_file(&mut self, entry: &mut Entry, path: &std::path::Path) -> Result<(), FilesError> {
        let unreadable = |source| FilesError::Unreadable {
            path: path.display().to_string(),
            source,
        };
        let mut file = read::open_file(path).map_err(unreadable)?;
        // What was opened may differ from what was listed (replaced or
        // written since): record what is read.
        let now = file.metadata().map_err(unreadable)?;
        if !now.is_file() {
            return Err(unreadable(io::Error::other("no longer a regular file")));
        }
        (entry.size, entry.ino) = (now.size(), now.ino());
        entry.mtime = (now.mtime(), now.mtime_nsec() as u32);
        entry.ctime = (now.ctime(), now.ctime_nsec() as u32);
        for (offset, len) in read::data_extents(&file, entry.size).map_err(unreadable)? {
            file.seek(io::SeekFrom::Start(offset)).map_err(unreadable)?;
            let mut extent = Extent {
                offset,
                chunks: Vec::new(),
            };
            let cut =
                chunker::chunks_of((&mut file).take(len), len, self.spec.sizes, self.ids.seed);
            for chunk in cut {
                let chunk = chunk.map_err(unreadable)?;
                let id = self.ids.id(&chunk);
                let mut new = false;
                for r in self.repos.iter_mut() {
                    new |= r.add(&id, &chunk)?;
                }
                let n = chunk.len() as u64;
                self.stats.bytes_read += n;
                self.stats.bytes_total += n;
                if !new {
                    self.stats.bytes_deduplicated += n;
                }
                extent.chunks.push(ChunkRef {
                    id,
                    len: chunk.len() as u32,
                });
            }
            entry.extents.push(extent);
        }
        Ok(())
    }
}
