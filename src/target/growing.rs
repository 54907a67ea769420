//! A local copy that several readers follow while it is written: the
//! decoded dump of a parallel restore, fed to one pg_restore per share of
//! its tables as it arrives, each at its own pace (one pipe per reader, so
//! a slow COPY never holds the others back to its position).
//!
//! Only what the writer wrote is read, and the writer writes only bytes
//! that authenticated; a reader's input ends (EOF) only once the whole
//! copy authenticated and matched its manifest, never on a failure.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

/// How far the copy is written, and how it ended.
#[derive(Default)]
pub struct Growth {
    state: Mutex<State>,
    grew: Condvar,
}

#[derive(Default, Clone, Copy)]
struct State {
    len: u64,
    /// Some(true): complete and authenticated; Some(false): failed.
    end: Option<bool>,
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

/// Copies `path` into `out` from its start as it grows. Returns Ok when
/// the copy is complete and all of it went out, or when the reader closed
/// its end first (a pg_restore that needed only the table of contents);
/// Err when the copy failed, so the caller kills the reader.
pub fn feed(path: &Path, growth: &Growth, mut out: impl Write) -> Result<(), FeedError> {
    let file = File::open(path).map_err(FeedError::Read)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
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

/// A reader that has gone is not a failure of the feed.
fn closed(e: std::io::Error) -> std::io::Result<()> {
    match e.kind() {
        ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e),
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
                    feed(&path, &growth, &mut got).map(|()| got)
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
        let reader = std::thread::spawn(move || feed(&p, &g, std::io::sink()));
        growth.end(false);
        assert!(matches!(reader.join().unwrap(), Err(FeedError::Failed)));

        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(b"table of contents").unwrap();
        assert!(feed(&path, &growth, Gone).is_ok());
    }
}
