//! A parallel restore's loader fed from a framed archive (docs/FORMAT.md,
//! *Frames*): the local copy holds the object's authenticated bytes still
//! compressed, and each loader decompresses only its own frames (the
//! archive's head, then the frames of its tables) as the copy grows. No
//! decoded copy of the whole archive is written or read back.
//!
//! As with [`super::growing`]: only bytes the writer wrote (so
//! authenticated) are read; a data loader's input ends only once the whole
//! copy authenticated; a failed copy fails every loader.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::growing::{FeedError, Growth, BATCH};

/// One frame to feed: its place in the compressed copy and the size the
/// index gives it decompressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub stored: Range<u64>,
    pub plain: u64,
}

/// Writes each frame of `spans` (places in the compressed copy at `path`),
/// decompressed, to `out`, reading only what `growth` says is written.
/// With `wait_end`, `out` sees its end only once the whole copy
/// authenticated. Ok too when `out` closed first (its reader's exit status
/// says why); Err when the copy failed or a frame does not decode whole.
pub fn feed_frames(
    path: &Path,
    growth: &Growth,
    spans: &[Span],
    wait_end: bool,
    out: impl Write,
) -> Result<(), FeedError> {
    let file = File::open(path).map_err(FeedError::Read)?;
    let mut out = Out {
        inner: out,
        failed: None,
        count: 0,
    };
    let mut buf = vec![0u8; 1 << 20];
    for span in spans {
        let fed = feed_frame(&file, growth, span, &mut buf, &mut out);
        match (fed, out.failed.take()) {
            (Ok(()), _) => {}
            (Err(_), Some(e)) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            (Err(_), Some(e)) => return Err(FeedError::Write(e)),
            (Err(e), None) => return Err(e),
        }
    }
    if wait_end && growth.wait_for(u64::MAX).end != Some(true) {
        return Err(FeedError::Failed);
    }
    match out.inner.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(FeedError::Write(e)),
        _ => Ok(()),
    }
}

/// One frame: its compressed bytes, as they are written, through a zstd
/// decoder of its own that must end exactly at the range's end, having
/// written the index's number of bytes.
fn feed_frame<W: Write>(
    file: &File,
    growth: &Growth,
    span: &Span,
    buf: &mut [u8],
    out: &mut Out<W>,
) -> Result<(), FeedError> {
    let range = &span.stored;
    let before = out.count;
    let frame_error = |source| FeedError::Frame {
        at: range.start,
        source,
    };
    let decoder = zstd::stream::raw::Decoder::new().map_err(frame_error)?;
    let mut dec = zstd::stream::zio::Writer::new(&mut *out, decoder);
    let mut pos = range.start;
    while pos < range.end {
        let state = growth.wait_for((pos + BATCH as u64).min(range.end));
        if state.end == Some(false) {
            return Err(FeedError::Failed);
        }
        if state.len <= pos {
            return Err(frame_error(ErrorKind::UnexpectedEof.into()));
        }
        let upto = state.len.min(range.end);
        while pos < upto {
            let want = ((upto - pos) as usize).min(buf.len());
            let n = file
                .read_at(&mut buf[..want], pos)
                .map_err(FeedError::Read)?;
            if n == 0 {
                return Err(FeedError::Read(ErrorKind::UnexpectedEof.into()));
            }
            dec.write_all(&buf[..n]).map_err(frame_error)?;
            pos += n as u64;
        }
    }
    // "incomplete frame" unless the frame ended with the range.
    dec.finish().map_err(frame_error)?;
    if out.count - before != span.plain {
        let e = std::io::Error::other(format!(
            "{} bytes decompressed, the index says {}",
            out.count - before,
            span.plain
        ));
        return Err(frame_error(e));
    }
    Ok(())
}

/// The loader's pipe, remembering its own failure apart from the decoder's.
struct Out<W> {
    inner: W,
    failed: Option<std::io::Error>,
    count: u64,
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::growing::GrowingWriter;

    /// Three frames, and where each is.
    fn frames() -> (Vec<u8>, Vec<Span>, Vec<Vec<u8>>) {
        let plain: Vec<Vec<u8>> = vec![b"head".to_vec(), vec![1; 500_000], b"tail".to_vec()];
        let mut compressed = Vec::new();
        let mut spans = Vec::new();
        for p in &plain {
            let start = compressed.len() as u64;
            compressed.extend(zstd::encode_all(p.as_slice(), 3).unwrap());
            spans.push(Span {
                stored: start..compressed.len() as u64,
                plain: p.len() as u64,
            });
        }
        (compressed, spans, plain)
    }

    #[test]
    fn a_loader_gets_its_frames_decompressed_and_its_end_with_the_copy() {
        let (compressed, ranges, plain) = frames();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        let mine = vec![ranges[0].clone(), ranges[2].clone()];
        let (p, g) = (path.clone(), growth.clone());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            feed_frames(&p, &g, &mine, true, &mut got).map(|()| got)
        });
        for piece in compressed.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "ended before the copy authenticated");
        growth.end(true);
        assert_eq!(
            reader.join().unwrap().unwrap(),
            [&plain[0][..], &plain[2]].concat()
        );
    }

    #[test]
    fn a_failed_copy_or_a_frame_that_does_not_end_fails_the_loader() {
        let (compressed, ranges, _) = frames();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames");
        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(&compressed[..ranges[1].stored.start as usize + 10])
            .unwrap();
        let (p, g, r) = (path.clone(), growth.clone(), vec![ranges[1].clone()]);
        let reader = std::thread::spawn(move || feed_frames(&p, &g, &r, true, std::io::sink()));
        growth.end(false);
        assert!(matches!(reader.join().unwrap(), Err(FeedError::Failed)));

        let growth = Growth::new();
        let mut w = GrowingWriter::new(File::create(&path).unwrap(), growth.clone());
        w.write_all(&compressed).unwrap();
        growth.end(true);
        // A range cut short of its frame's end, one past the copy's end,
        // one decompressing to another size than the index says.
        let mut short = ranges[1].clone();
        short.stored.end -= 1;
        let mut past = ranges[2].clone();
        past.stored.end += 5;
        let mut longer = ranges[1].clone();
        longer.plain += 1;
        for span in [short, past, longer] {
            let got = feed_frames(
                &path,
                &growth,
                std::slice::from_ref(&span),
                true,
                std::io::sink(),
            );
            assert!(
                matches!(got, Err(FeedError::Frame { .. })),
                "{span:?}: {got:?}"
            );
        }

        let gone = crate::target::growing::Gone;
        assert!(feed_frames(&path, &growth, &ranges, true, gone).is_ok());
    }
}
