//! A logical backup's archive cut into zstd frames at its data blocks
//! (docs/FORMAT.md, *Frames*): frame 0 ends where the table of contents
//! does, and a new frame starts at a block once the current one holds
//! [`FRAME_MIN`] bytes. The index goes into the manifest, so a parallel
//! restore feeds each loader only its own frames, decompressed by itself,
//! without a decoded local copy of the whole archive.
//!
//! The walk reads pg_dump's own output (`target::archive`); an archive it
//! cannot walk is stored whole with no index, and restores as before.

use std::io::{self, ErrorKind, Read, Write};

use crate::catalog::{Frame, Frames};
use crate::pipeline::codec::ObjectEncoder;
use crate::source::postgres::archive::{ArchiveError, Input, Layout};

/// A frame holds at least this much before a block starts a new one: small
/// tables share frames (each frame costs a zstd header and a cold window),
/// large ones get their own.
pub const FRAME_MIN: u64 = 4 << 20;

/// Copies `input` into `enc`, cutting frames at data blocks. Returns the
/// bytes copied and the index, None when the archive could not be walked.
/// `progress` hears of every read.
pub fn copy_framed<R: Read, W: Write>(
    input: R,
    enc: &mut ObjectEncoder<W>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(u64, Option<Frames>)> {
    copy_framed_at(input, enc, progress, FRAME_MIN)
}

fn copy_framed_at<R: Read, W: Write>(
    input: R,
    enc: &mut ObjectEncoder<W>,
    progress: &mut dyn FnMut(u64),
    frame_min: u64,
) -> io::Result<(u64, Option<Frames>)> {
    let mut tee = Tee {
        input,
        enc,
        buf: vec![0; 256 << 10],
        sent: 0,
        at: 0,
        filled: 0,
        copied: 0,
        silent: false,
        rewrote: false,
        progress,
    };
    let walked = walk(&mut tee, frame_min);
    let frames = match walked {
        Ok(frames) => frames,
        Err(ArchiveError::Io(e)) if e.kind() != ErrorKind::UnexpectedEof => return Err(e),
        // Rows already regrouped cannot be stored as they came: a broken
        // archive fails the backup (pg_dump's own error, when it has one,
        // is the one reported).
        Err(e) if tee.rewrote => {
            return Err(io::Error::other(format!(
                "pg_dump's archive broke off inside its data: {e}"
            )))
        }
        Err(e) => {
            // pg_dump's exit status says whether its output was whole.
            tracing::warn!(error = %e, "the archive is stored in one frame: a parallel restore decodes it to a local copy first");
            None
        }
    };
    tee.rest()?;
    Ok((tee.copied, frames))
}

/// The index, None for an archive without data (nothing to share out).
fn walk<R: Read, W: Write>(
    tee: &mut Tee<'_, R, W>,
    frame_min: u64,
) -> Result<Option<Frames>, ArchiveError> {
    let layout = Layout::read(tee)?;
    let mut frames = vec![Frame {
        at: 0,
        plain_at: 0,
        ids: Vec::new(),
    }];
    while !tee.at_end()? {
        let current = frames.last().expect("the head frame");
        if frames.len() == 1 || tee.copied - current.plain_at >= frame_min {
            frames.push(Frame {
                at: tee.cut()?,
                plain_at: tee.copied,
                ids: Vec::new(),
            });
        }
        let block = layout.block_start(tee)?;
        if block.rows && layout.uncompressed() {
            merge_rows(&layout, tee)?;
        } else {
            layout.block_rest(tee, block)?;
        }
        frames.last_mut().expect("a frame").ids.push(block.id);
    }
    if frames.len() == 1 {
        return Ok(None);
    }
    let end = tee.cut()?;
    Ok(Some(Frames { frames, end }))
}

/// A table's rows, stored in chunks of at least [`ROWS_CHUNK`] bytes rather
/// than pg_dump's one per row: the same bytes, read by pg_restore as one
/// COPY message per chunk. A server loads 64 KiB messages ~25 % faster
/// than one per row (docs/BENCHMARKS.md), and pg_restore reads them with
/// a tenth of the CPU. A row larger than that goes on as it is.
fn merge_rows<R: Read, W: Write>(
    layout: &Layout,
    tee: &mut Tee<'_, R, W>,
) -> Result<(), ArchiveError> {
    let mut rows = Vec::with_capacity(2 * ROWS_CHUNK);
    let emit = |tee: &mut Tee<'_, R, W>, rows: &mut Vec<u8>| -> io::Result<()> {
        if !rows.is_empty() {
            tee.write_own(&layout.encode_int(rows.len() as u64))?;
            tee.write_own(rows)?;
            rows.clear();
        }
        Ok(())
    };
    loop {
        tee.silent = true;
        let len = layout.chunk_len(tee);
        tee.silent = false;
        match len? {
            0 => {
                emit(tee, &mut rows)?;
                tee.write_own(&layout.encode_int(0))?;
                return Ok(());
            }
            len if len >= ROWS_CHUNK as u64 => {
                emit(tee, &mut rows)?;
                tee.write_own(&layout.encode_int(len))?;
                tee.skip(len)?;
            }
            len => {
                rows.extend_from_slice(tee.take_silently(len as usize)?);
                if rows.len() >= ROWS_CHUNK {
                    emit(tee, &mut rows)?;
                }
            }
        }
    }
}

/// The size [`merge_rows`] gathers rows to.
const ROWS_CHUNK: usize = 64 << 10;

/// The walk's input: pg_dump's output, every byte of which goes on to the
/// encoder once the walk passed it — in batches, not field by field (a
/// table's rows are one length-prefixed chunk each).
struct Tee<'a, R, W: Write> {
    input: R,
    enc: &'a mut ObjectEncoder<W>,
    buf: Vec<u8>,
    /// `buf[sent..at]` is passed but not yet written to the encoder.
    sent: usize,
    at: usize,
    filled: usize,
    /// Bytes written to the encoder: the archive as stored.
    copied: u64,
    /// What the walk takes now is dropped, not passed on.
    silent: bool,
    /// The walk wrote bytes of its own: what follows cannot be stored
    /// unwalked.
    rewrote: bool,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read, W: Write> Tee<'_, R, W> {
    /// Writes what was passed to the encoder.
    fn flush(&mut self) -> io::Result<()> {
        self.enc.write_all(&self.buf[self.sent..self.at])?;
        self.copied += (self.at - self.sent) as u64;
        self.sent = self.at;
        Ok(())
    }

    /// Writes bytes of the walk's own (a rewritten chunk) after what was
    /// passed.
    fn write_own(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.enc.write_all(bytes)?;
        self.copied += bytes.len() as u64;
        self.rewrote = true;
        Ok(())
    }

    /// The next `n` bytes, dropped from the output (the caller writes them
    /// its own way).
    fn take_silently(&mut self, n: usize) -> io::Result<&[u8]> {
        self.silent = true;
        let taken = self.take(n).map(|b| b.len());
        self.silent = false;
        let n = taken?;
        Ok(&self.buf[self.at - n..self.at])
    }

    /// Ends the encoder's frame after what was passed; returns where the
    /// next frame starts.
    fn cut(&mut self) -> io::Result<u64> {
        self.flush()?;
        self.enc.end_frame()
    }

    /// Makes `n` bytes available at `at`; false at the input's end.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.filled - self.at >= n {
            return Ok(true);
        }
        self.flush()?;
        self.buf.copy_within(self.at..self.filled, 0);
        self.filled -= self.at;
        (self.at, self.sent) = (0, 0);
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.filled < n {
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(got) => {
                    (self.progress)(got as u64);
                    self.filled += got;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Passes `n` buffered bytes on, or drops them when silent.
    fn pass(&mut self, n: usize) -> io::Result<()> {
        if self.silent {
            self.flush()?;
            self.sent += n;
        }
        self.at += n;
        Ok(())
    }

    /// Whatever the walk did not pass on: the buffer, then the input.
    fn rest(&mut self) -> io::Result<()> {
        self.silent = false;
        loop {
            self.pass(self.filled - self.at)?;
            if !self.fill(1)? {
                return self.flush();
            }
        }
    }
}

impl<R: Read, W: Write> Input for Tee<'_, R, W> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if !self.fill(n)? {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.pass(n)?;
        Ok(&self.buf[self.at - n..self.at])
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if !self.fill(1)? {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let step = ((self.filled - self.at) as u64).min(n);
            self.pass(step as usize)?;
            n -= step;
        }
        Ok(())
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(!self.fill(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use crate::pipeline::codec::ObjectDecoder;
    use crate::pipeline::header::Compression;
    use crate::source::postgres::archive::sample::archive;
    use std::path::Path;

    /// Reads at most 5 bytes at a time: the walk waits inside fields.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(5).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn framed(input: &[u8]) -> (Vec<u8>, Vec<u8>, u64, Option<Frames>) {
        framed_at(input, FRAME_MIN)
    }

    fn framed_at(input: &[u8], min: u64) -> (Vec<u8>, Vec<u8>, u64, Option<Frames>) {
        try_framed(input, min).unwrap()
    }

    type Framed = (Vec<u8>, Vec<u8>, u64, Option<Frames>);

    fn try_framed(input: &[u8], min: u64) -> io::Result<Framed> {
        let keys =
            Keyring::parse(&crate::keys::new_key_line("k").unwrap(), Path::new("k")).unwrap();
        let mut enc =
            ObjectEncoder::threaded(Vec::new(), keys.primary(), "o", Compression::Zstd).unwrap();
        let mut heard = 0;
        let (n, frames) = copy_framed_at(Trickle(input), &mut enc, &mut |n| heard += n, min)?;
        assert_eq!(heard, input.len() as u64);
        let stored = enc.finish().unwrap();
        let mut whole = ObjectDecoder::new(&keys, Some("o"), Vec::new());
        whole.push(&stored).unwrap();
        let mut raw = ObjectDecoder::compressed(&keys, Some("o"), Vec::new());
        raw.push(&stored).unwrap();
        let plain = whole.finish().unwrap().0;
        assert_eq!(plain.len() as u64, n);
        Ok((plain, raw.finish().unwrap().0, n, frames))
    }

    fn toc_end_of_sample() -> usize {
        crate::source::postgres::archive::sample::archive().1
    }

    /// The sample archive as stored: block 7's two rows in one chunk.
    fn merged(archive: &[u8], toc_end: usize, first_end: usize) -> Vec<u8> {
        let mut out = archive[..toc_end + 6].to_vec(); // up to block 7's id
        out.extend([0, 8, 0, 0, 0]);
        out.extend(b"1\tx\n2\ty\n");
        out.extend([0, 0, 0, 0, 0]);
        out.extend(&archive[first_end..]);
        out
    }

    #[test]
    fn the_head_and_the_blocks_get_frames_of_their_own() {
        let (archive, toc_end, first_end) = archive();
        let (plain, compressed, n, frames) = framed(&archive);
        let stored = merged(&archive, toc_end, first_end);
        assert_eq!(plain, stored);
        let first_end = first_end - 5; // one chunk header fewer
        let frames = frames.expect("walked");
        assert_eq!(frames.problem(n), None);
        assert_eq!(frames.end, compressed.len() as u64);
        // Both blocks are smaller than FRAME_MIN: one frame after the head.
        assert_eq!(frames.frames.len(), 2);
        assert_eq!(frames.frames[1].plain_at, toc_end as u64);
        assert_eq!(frames.frames[1].ids, [7, 9]);
        let head = &compressed[frames.range(0).start as usize..frames.range(0).end as usize];
        assert_eq!(zstd::decode_all(head).unwrap(), archive[..toc_end]);
        let data = &compressed[frames.range(1).start as usize..];
        assert_eq!(zstd::decode_all(data).unwrap(), stored[toc_end..]);

        // With a 1-byte minimum every block starts a frame.
        let (_, compressed, n, frames) = framed_at(&archive, 1);
        let frames = frames.expect("walked");
        assert_eq!(frames.problem(n), None);
        let ids: Vec<_> = frames.frames.iter().map(|f| f.ids.clone()).collect();
        assert_eq!(ids, [vec![], vec![7], vec![9]]);
        assert_eq!(frames.frames[2].plain_at, first_end as u64);
        let second = frames.range(2);
        let second = &compressed[second.start as usize..second.end as usize];
        assert_eq!(zstd::decode_all(second).unwrap(), stored[first_end..]);
    }

    #[test]
    fn what_cannot_be_walked_is_stored_whole_without_an_index() {
        let (mut archive, _, _) = archive();
        archive[6] = 17; // an archive version it does not know
        let (plain, _, _, frames) = framed(&archive);
        assert_eq!((plain, frames), (archive.clone(), None));

        // No data blocks (an empty database): nothing to share out.
        archive[6] = 16;
        let toc_end = toc_end_of_sample();
        let (plain, _, _, frames) = framed(&archive[..toc_end]);
        assert_eq!((plain, frames), (archive[..toc_end].to_vec(), None));

        // Cut short before any rows were regrouped: stored as it came.
        let (plain, _, _, frames) = framed(&archive[..toc_end + 3]);
        assert_eq!((plain, frames), (archive[..toc_end + 3].to_vec(), None));
        // After: the backup fails.
        archive.truncate(archive.len() - 3);
        let err = try_framed(&archive, FRAME_MIN).unwrap_err();
        assert!(
            err.to_string().contains("broke off inside its data"),
            "{err}"
        );

        let (plain, _, _, frames) = framed(b"SET x;\n");
        assert_eq!((plain, frames), (b"SET x;\n".to_vec(), None), "not custom");
    }
}
