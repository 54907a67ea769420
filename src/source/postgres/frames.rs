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
use crate::target::archive::{ArchiveError, Input, Layout};

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
        at: 0,
        filled: 0,
        copied: 0,
        progress,
    };
    let walked = walk(&mut tee, frame_min);
    let frames = match walked {
        Ok(frames) => Some(frames),
        Err(ArchiveError::Io(e)) if e.kind() != ErrorKind::UnexpectedEof => return Err(e),
        Err(e) => {
            // pg_dump's exit status says whether its output was whole.
            tracing::warn!(error = %e, "the archive is stored in one frame: a parallel restore decodes it to a local copy first");
            None
        }
    };
    tee.rest()?;
    Ok((tee.copied, frames))
}

fn walk<R: Read, W: Write>(
    tee: &mut Tee<'_, R, W>,
    frame_min: u64,
) -> Result<Frames, ArchiveError> {
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
                at: tee.enc.end_frame()?,
                plain_at: tee.copied,
                ids: Vec::new(),
            });
        }
        let id = layout.next_block(tee)?.expect("not at the end");
        frames.last_mut().expect("a frame").ids.push(id);
    }
    if frames.len() == 1 {
        // No data: the head frame alone, nothing to share out.
        return Err(ArchiveError::Malformed("no data blocks"));
    }
    let end = tee.enc.end_frame()?;
    Ok(Frames { frames, end })
}

/// The walk's input: pg_dump's output, every byte of which goes on to the
/// encoder as the walk passes it.
struct Tee<'a, R, W: Write> {
    input: R,
    enc: &'a mut ObjectEncoder<W>,
    buf: Vec<u8>,
    at: usize,
    filled: usize,
    /// Bytes passed on to the encoder.
    copied: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read, W: Write> Tee<'_, R, W> {
    /// Makes `n` bytes available at `at`; false at the input's end.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.filled - self.at >= n {
            return Ok(true);
        }
        self.buf.copy_within(self.at..self.filled, 0);
        self.filled -= self.at;
        self.at = 0;
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

    /// Passes `n` buffered bytes on to the encoder.
    fn pass(&mut self, n: usize) -> io::Result<()> {
        self.enc.write_all(&self.buf[self.at..self.at + n])?;
        self.at += n;
        self.copied += n as u64;
        Ok(())
    }

    /// Whatever the walk did not pass on: the buffer, then the input.
    fn rest(&mut self) -> io::Result<()> {
        loop {
            let n = self.filled - self.at;
            self.pass(n)?;
            if !self.fill(1)? {
                return Ok(());
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
    use crate::target::archive::sample::archive;
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
        let keys =
            Keyring::parse(&crate::keys::new_key_line("k").unwrap(), Path::new("k")).unwrap();
        let mut enc =
            ObjectEncoder::threaded(Vec::new(), keys.primary(), "o", Compression::Zstd).unwrap();
        let mut heard = 0;
        let (n, frames) =
            copy_framed_at(Trickle(input), &mut enc, &mut |n| heard += n, min).unwrap();
        assert_eq!(heard, n);
        let stored = enc.finish().unwrap();
        let mut whole = ObjectDecoder::new(&keys, Some("o"), Vec::new());
        whole.push(&stored).unwrap();
        let mut raw = ObjectDecoder::compressed(&keys, Some("o"), Vec::new());
        raw.push(&stored).unwrap();
        (
            whole.finish().unwrap().0,
            raw.finish().unwrap().0,
            n,
            frames,
        )
    }

    #[test]
    fn the_head_and_the_blocks_get_frames_of_their_own() {
        let (archive, toc_end, first_end) = archive();
        let (plain, compressed, n, frames) = framed(&archive);
        assert_eq!(
            (plain.as_slice(), n),
            (archive.as_slice(), archive.len() as u64)
        );
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
        assert_eq!(zstd::decode_all(data).unwrap(), archive[toc_end..]);

        // With a 1-byte minimum every block starts a frame.
        let (_, compressed, n, frames) = framed_at(&archive, 1);
        let frames = frames.expect("walked");
        assert_eq!(frames.problem(n), None);
        let ids: Vec<_> = frames.frames.iter().map(|f| f.ids.clone()).collect();
        assert_eq!(ids, [vec![], vec![7], vec![9]]);
        assert_eq!(frames.frames[2].plain_at, first_end as u64);
        let second = frames.range(2);
        let second = &compressed[second.start as usize..second.end as usize];
        assert_eq!(zstd::decode_all(second).unwrap(), archive[first_end..]);
    }

    #[test]
    fn what_cannot_be_walked_is_stored_whole_without_an_index() {
        let (mut archive, _, _) = archive();
        archive[6] = 17; // an archive version it does not know
        let (plain, _, _, frames) = framed(&archive);
        assert_eq!((plain, frames), (archive.clone(), None));

        archive.truncate(archive.len() - 3);
        archive[6] = 16;
        let (plain, _, _, frames) = framed(&archive);
        assert_eq!((plain, frames), (archive, None), "cut short");

        let (plain, _, _, frames) = framed(b"SET x;\n");
        assert_eq!((plain, frames), (b"SET x;\n".to_vec(), None), "not custom");
    }
}
