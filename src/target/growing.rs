//! A local copy that several readers follow while it is written: the
//! decoded dump of a parallel restore, fed to one pg_restore per share of
//! its tables as it arrives, each at its own pace (one pipe per reader, so
//! a slow COPY never holds the others back to its position).
//!
//! Only what the writer wrote is read, and the writer writes only bytes
//! that authenticated; a data loader's input ends (EOF) only once the whole
//! copy authenticated and matched its manifest, never on a failure (a
//! reader of the table of contents alone gets its end after it).

use std::collections::HashSet;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use crate::source::postgres::archive::{ArchiveError, Input, Layout};

/// How much a split feed waits to have before it reads on.
pub(super) const BATCH: usize = 256 << 10;

/// How far the copy is written, and how it ended.
#[derive(Default)]
pub struct Growth {
    state: Mutex<State>,
    grew: Condvar,
}

#[derive(Default, Clone, Copy)]
pub(super) struct State {
    pub(super) len: u64,
    /// Some(true): complete and authenticated; Some(false): failed.
    pub(super) end: Option<bool>,
}

/// Why a reader stopped before the copy's end.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the dump failed before its end")]
    Failed,
    #[error("reading the local copy: {0}")]
    Read(std::io::Error),
    #[error("writing to pg_restore: {0}")]
    Write(std::io::Error),
    #[error("splitting the archive: {0}")]
    Archive(ArchiveError),
    #[error("decompressing the archive's frame at {at}: {source}")]
    Frame { at: u64, source: std::io::Error },
}

impl Growth {
    pub fn new() -> Arc<Growth> {
        Arc::new(Growth::default())
    }

    fn grow(&self, n: u64) {
        self.state.lock().expect("growth lock").len += n;
        self.grew.notify_all();
    }

    /// The writer is done: `ok` when every byte authenticated.
    pub fn end(&self, ok: bool) {
        self.state.lock().expect("growth lock").end = Some(ok);
        self.grew.notify_all();
    }

    /// Waits until `len` bytes are written or the copy ended.
    pub(super) fn wait_for(&self, len: u64) -> State {
        let guard = self.state.lock().expect("growth lock");
        let guard = self
            .grew
            .wait_while(guard, |s| s.len < len && s.end.is_none())
            .expect("growth lock");
        *guard
    }

    /// Waits until more than `pos` bytes are written or the copy ended.
    fn wait_past(&self, pos: u64) -> State {
        let guard = self.state.lock().expect("growth lock");
        let guard = self
            .grew
            .wait_while(guard, |s| s.len <= pos && s.end.is_none())
            .expect("growth lock");
        *guard
    }
}

/// The writer's side: a file whose every write is announced to readers.
pub struct GrowingWriter {
    file: File,
    growth: Arc<Growth>,
}

impl GrowingWriter {
    pub fn new(file: File, growth: Arc<Growth>) -> Self {
        GrowingWriter { file, growth }
    }
}

impl Write for GrowingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.growth.grow(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Copies `path` into `out` from offset `pos` as it grows (the fallback of
/// [`feed_blocks`], for an archive it cannot walk). Returns Ok when
/// the copy is complete and all of it went out, or when the reader closed
/// its end first (a pg_restore that needed only the table of contents);
/// Err when the copy failed, so the caller kills the reader.
fn feed(path: &Path, growth: &Growth, mut out: impl Write, mut pos: u64) -> Result<(), FeedError> {
    let file = File::open(path).map_err(FeedError::Read)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let state = growth.wait_past(pos);
        if state.end == Some(false) {
            return Err(FeedError::Failed);
        }
        if state.len <= pos {
            // Ended complete and all of it is out.
            return out.flush().or_else(closed).map_err(FeedError::Write);
        }
        while pos < state.len {
            let want = (state.len - pos).min(buf.len() as u64) as usize;
            let n = file
                .read_at(&mut buf[..want], pos)
                .map_err(FeedError::Read)?;
            if n == 0 {
                return Err(FeedError::Read(ErrorKind::UnexpectedEof.into()));
            }
            match out.write_all(&buf[..n]) {
                Ok(()) => pos += n as u64,
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(FeedError::Write(e)),
            }
        }
    }
}

/// Like [`feed`], but of the archive's data blocks only those of `keep`
/// (dump ids) go out: the header and table of contents, then the kept
/// blocks in order; the others are passed over unread. With blocks to
/// keep, `out` sees its end only once the whole copy authenticated; with
/// none (a reader of the table of contents), right after the table of
/// contents. An archive version lifeboat cannot walk is fed whole
/// (pg_restore then skips the rest).
pub fn feed_blocks(
    path: &Path,
    growth: &Growth,
    keep: &HashSet<i64>,
    out: impl Write,
) -> Result<(), FeedError> {
    let mut f = Follower::new(File::open(path).map_err(FeedError::Read)?, growth, out);
    let walked = (|| {
        f.tee = Some(0);
        let layout = Layout::read(&mut f)?;
        f.flush_tee()?;
        if keep.is_empty() {
            // A reader of the table of contents only (`--list`, the
            // pre-data section) reads nothing after it: its input ends
            // here, so the data loaders need not wait for the whole copy.
            return Ok(());
        }
        loop {
            f.tee = None;
            // A kept block is teed from its first byte; the walk reads it
            // through the buffer rather than jumping over it.
            let wanted = f
                .peek_block_id(&layout)?
                .is_some_and(|id| keep.contains(&id));
            if wanted {
                f.tee = Some(f.at);
            }
            match layout.next_block(&mut f)? {
                None => return Ok::<_, ArchiveError>(()),
                Some(_) if wanted => f.flush_tee()?,
                Some(_) => {}
            }
        }
    })();
    match walked {
        Ok(()) => f.out.flush().or_else(closed).map_err(FeedError::Write),
        Err(_) if f.gone => Ok(()),
        Err(e) => Err(f.why.take().unwrap_or(FeedError::Archive(e))),
    }
    .or_else(|e| match e {
        FeedError::Archive(ArchiveError::Version(minor)) => {
            tracing::warn!(
                minor,
                "archive version 1.{minor}: every loader reads the whole copy"
            );
            feed(path, growth, f.out, f.sent)
        }
        e => Err(e),
    })
}

/// A buffered reader of the copy that waits for it to grow, passes over
/// bytes without reading them, and copies out ("tees") what it reads from
/// `tee` on.
struct Follower<'a, W> {
    file: File,
    growth: &'a Growth,
    out: W,
    buf: Vec<u8>,
    /// The copy's offset of `buf[0]`.
    start: u64,
    filled: usize,
    at: usize,
    tee: Option<usize>,
    /// Why the walk stopped, when it was not the archive's bytes.
    why: Option<FeedError>,
    /// The reader closed its end: not a failure.
    gone: bool,
    /// Bytes written out.
    sent: u64,
}

impl<'a, W: Write> Follower<'a, W> {
    fn new(file: File, growth: &'a Growth, out: W) -> Self {
        Follower {
            file,
            growth,
            out,
            buf: vec![0; 1 << 20],
            start: 0,
            filled: 0,
            at: 0,
            tee: None,
            why: None,
            gone: false,
            sent: 0,
        }
    }

    fn fail(&mut self, e: FeedError) -> std::io::Error {
        let io = std::io::Error::other(e.to_string());
        self.why = Some(e);
        io
    }

    /// Writes out what was teed so far.
    fn flush_tee(&mut self) -> std::io::Result<()> {
        let Some(from) = self.tee else { return Ok(()) };
        match self.out.write_all(&self.buf[from..self.at]) {
            Ok(()) => {
                self.sent += (self.at - from) as u64;
                self.tee = Some(self.at);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.gone = true;
                Err(e)
            }
            Err(e) => Err(self.fail(FeedError::Write(e))),
        }
    }

    /// Makes `n` bytes available at `at`; false when the copy ended,
    /// complete, before them.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.filled - self.at < n {
            self.flush_tee()?;
            self.buf.copy_within(self.at..self.filled, 0);
            self.start += self.at as u64;
            self.filled -= self.at;
            self.at = 0;
            self.tee = self.tee.map(|_| 0);
            let end = self.start + self.filled as u64;
            // Woken once per batch rather than once per write of the copy.
            let state = self.growth.wait_for(end + n.max(BATCH) as u64);
            if state.end == Some(false) {
                return Err(self.fail(FeedError::Failed));
            }
            if state.len < end {
                return Err(ErrorKind::UnexpectedEof.into()); // skipped past the end
            }
            if state.len == end {
                return Ok(false);
            }
            let want = ((state.len - end) as usize).min(self.buf.len() - self.filled);
            match self
                .file
                .read_at(&mut self.buf[self.filled..self.filled + want], end)
            {
                Ok(0) => return Err(self.fail(FeedError::Read(ErrorKind::UnexpectedEof.into()))),
                Ok(got) => self.filled += got,
                Err(e) => return Err(self.fail(FeedError::Read(e))),
            }
        }
        Ok(true)
    }

    /// The id of the block at `at`, without moving.
    fn peek_block_id(&mut self, layout: &Layout) -> std::io::Result<Option<i64>> {
        if !self.fill(layout.block_header_len())? {
            return Ok(None);
        }
        Ok(layout.block_id(&self.buf[self.at..]))
    }
}

impl<W: Write> Input for Follower<'_, W> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if !self.fill(n)? {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.at += n;
        Ok(&self.buf[self.at - n..self.at])
    }

    fn skip(&mut self, mut n: u64) -> std::io::Result<()> {
        let ready = (self.filled - self.at) as u64;
        if n <= ready {
            self.at += n as usize;
            return Ok(());
        }
        if self.tee.is_none() {
            // Jump: the next fill waits for the copy to reach the new place.
            self.start += (self.at as u64) + n;
            (self.filled, self.at) = (0, 0);
            return Ok(());
        }
        while n > 0 {
            if !self.fill(1)? {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let step = ((self.filled - self.at) as u64).min(n);
            self.at += step as usize;
            n -= step;
        }
        Ok(())
    }

    fn at_end(&mut self) -> std::io::Result<bool> {
        Ok(!self.fill(1)?)
    }
}

/// A reader that has gone is not a failure of the feed.
fn closed(e: std::io::Error) -> std::io::Result<()> {
    match e.kind() {
        ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e),
    }
}

/// A reader that closed its end: every write is a broken pipe.
#[cfg(test)]
pub(super) struct Gone;

#[cfg(test)]
impl Write for Gone {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_follow_the_writer_and_end_only_with_a_complete_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (path, growth) = (path.clone(), growth.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    feed(&path, &growth, &mut got, 0).map(|()| got)
                })
            })
            .collect();
        for i in 0..100u8 {
            w.write_all(&[i; 1000]).unwrap();
        }
        growth.end(true);
        let expected: Vec<u8> = (0..100u8).flat_map(|i| [i; 1000]).collect();
        for r in readers {
            assert_eq!(r.join().unwrap().unwrap(), expected);
        }
    }

    #[test]
    fn a_failed_copy_fails_its_readers_and_a_closed_reader_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(b"partial").unwrap();
        let (p, g) = (path.clone(), growth.clone());
        let reader = std::thread::spawn(move || feed(&p, &g, std::io::sink(), 0));
        growth.end(false);
        assert!(matches!(reader.join().unwrap(), Err(FeedError::Failed)));

        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(b"table of contents").unwrap();
        assert!(feed(&path, &growth, Gone, 0).is_ok());
    }

    #[test]
    fn a_split_feed_sends_the_table_of_contents_and_only_the_kept_blocks() {
        let (archive, toc_end, first_end) = crate::source::postgres::archive::sample::archive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        let readers: Vec<_> = [vec![], vec![7], vec![9], vec![7, 9]]
            .into_iter()
            .map(|keep| {
                let (path, growth) = (path.clone(), growth.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let keep = keep.into_iter().collect();
                    feed_blocks(&path, &growth, &keep, &mut got).map(|()| got)
                })
            })
            .collect();
        // In small pieces, so the readers wait inside fields and blocks.
        for piece in archive.chunks(3) {
            w.write_all(piece).unwrap();
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        growth.end(true);
        let got: Vec<Vec<u8>> = readers
            .into_iter()
            .map(|r| r.join().unwrap().unwrap())
            .collect();
        let toc = &archive[..toc_end];
        assert_eq!(got[0], toc);
        assert_eq!(got[1], archive[..first_end]);
        assert_eq!(got[2], [toc, &archive[first_end..]].concat());
        assert_eq!(got[3], archive);
    }

    #[test]
    fn a_split_feed_fails_with_its_copy_and_on_a_malformed_archive() {
        let (archive, toc_end, _) = crate::source::postgres::archive::sample::archive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(&archive[..toc_end + 3]).unwrap();
        let (p, g) = (path.clone(), growth.clone());
        let keep = HashSet::from([7]);
        let reader = std::thread::spawn(move || feed_blocks(&p, &g, &keep, std::io::sink()));
        growth.end(false);
        assert!(matches!(reader.join().unwrap(), Err(FeedError::Failed)));

        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(&archive[..archive.len() - 2]).unwrap();
        growth.end(true);
        let got = feed_blocks(&path, &growth, &HashSet::from([9]), std::io::sink());
        assert!(matches!(got, Err(FeedError::Archive(_))), "{got:?}");
    }
}
