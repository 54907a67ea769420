//! The writing side of an object: compress → seal. A long zstd stream can
//! be cut into frames at points its producer picks ([`ObjectEncoder::end_frame`]),
//! so that a reader can later decompress one frame without the others (a
//! parallel restore's loaders, docs/DESIGN.md). Several frames are one
//! valid zstd stream: readers that decode it whole see no difference.

use super::header::{Compression, Header};
use super::stream::Sealer;
use super::zstd_encoder::zstd_encoder;
use crate::keys::MasterKey;
use std::io::{self, Write};

enum Compressor<W: Write> {
    None(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// A zstd frame ended; the next write starts another.
    Ended(W),
    Gzip(flate2::write::GzEncoder<W>),
    /// Only while a frame is being ended.
    Gone,
}

/// Writes plaintext; produces a complete encrypted object in `W`.
pub struct ObjectEncoder<W: Write> {
    inner: Compressor<Sealer<W>>,
    threaded: bool,
}

impl<W: Write> ObjectEncoder<W> {
    pub fn new(
        out: W,
        master: &MasterKey,
        name: &str,
        compression: Compression,
    ) -> io::Result<Self> {
        let (header, data_key) = Header::seal_new(master, name, compression);
        Self::from_header(out, &header, &data_key, false)
    }

    /// As [`ObjectEncoder::new`], compressing on a worker thread of its own:
    /// for a long stream whose producer should not wait for zstd.
    pub fn threaded(
        out: W,
        master: &MasterKey,
        name: &str,
        compression: Compression,
    ) -> io::Result<Self> {
        let (header, data_key) = Header::seal_new(master, name, compression);
        Self::from_header(out, &header, &data_key, true)
    }

    pub(super) fn from_header(
        out: W,
        header: &Header,
        data_key: &[u8; 32],
        threaded: bool,
    ) -> io::Result<Self> {
        let sealer = Sealer::new(out, header, data_key)?;
        let inner = match header.compression {
            Compression::None => Compressor::None(sealer),
            Compression::Zstd => Compressor::Zstd(zstd_encoder(sealer, threaded)?),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                sealer,
                flate2::Compression::new(6),
            )),
        };
        Ok(Self { inner, threaded })
    }

    /// Ends the current zstd frame; what is written next starts a new one.
    /// Returns the compressed stream's length so far: where the next frame
    /// starts in the object's decrypted bytes. Only for zstd objects.
    pub fn end_frame(&mut self) -> io::Result<u64> {
        self.inner = match std::mem::replace(&mut self.inner, Compressor::Gone) {
            Compressor::Zstd(z) => Compressor::Ended(z.finish()?),
            Compressor::Ended(s) => Compressor::Ended(s),
            other => {
                self.inner = other;
                return Err(io::Error::other("only a zstd object has frames"));
            }
        };
        match &self.inner {
            Compressor::Ended(s) => Ok(s.position()),
            _ => unreachable!("set just above"),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        let sealer = match self.inner {
            Compressor::None(s) | Compressor::Ended(s) => s,
            Compressor::Zstd(z) => z.finish()?,
            Compressor::Gzip(g) => g.finish()?,
            Compressor::Gone => return Err(io::Error::other("a frame failed to end")),
        };
        sealer.finish()
    }
}

impl<W: Write> Write for ObjectEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Compressor::Ended(_) = self.inner {
            let Compressor::Ended(s) = std::mem::replace(&mut self.inner, Compressor::Gone) else {
                unreachable!("matched just above")
            };
            self.inner = Compressor::Zstd(zstd_encoder(s, self.threaded)?);
        }
        match &mut self.inner {
            Compressor::None(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Ended(_) | Compressor::Gone => {
                Err(io::Error::other("a frame failed to end"))
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use crate::pipeline::codec::ObjectDecoder;
    use std::path::Path;

    #[test]
    fn frames_decode_whole_and_one_by_one() {
        let keys =
            Keyring::parse(&crate::keys::new_key_line("k").unwrap(), Path::new("k")).unwrap();
        let parts: [&[u8]; 3] = [b"header and contents", &[7u8; 300_000], b"last rows"];
        let mut e =
            ObjectEncoder::threaded(Vec::new(), keys.primary(), "o", Compression::Zstd).unwrap();
        let mut cuts = vec![0];
        for p in parts {
            e.write_all(p).unwrap();
            cuts.push(e.end_frame().unwrap());
        }
        // A second end in a row adds nothing.
        assert_eq!(e.end_frame().unwrap(), *cuts.last().unwrap());
        let stored = e.finish().unwrap();

        let mut whole = ObjectDecoder::new(&keys, Some("o"), Vec::new());
        whole.push(&stored).unwrap();
        assert_eq!(whole.finish().unwrap().0, parts.concat());

        let mut raw = ObjectDecoder::compressed(&keys, Some("o"), Vec::new());
        raw.push(&stored).unwrap();
        let compressed = raw.finish().unwrap().0;
        assert_eq!(compressed.len() as u64, *cuts.last().unwrap());
        for (i, p) in parts.iter().enumerate() {
            let frame = &compressed[cuts[i] as usize..cuts[i + 1] as usize];
            assert_eq!(zstd::decode_all(frame).unwrap(), *p, "frame {i}");
        }

        let mut plain =
            ObjectEncoder::new(Vec::new(), keys.primary(), "p", Compression::Gzip).unwrap();
        assert!(plain.end_frame().is_err());
        plain.write_all(b"still fine").unwrap();
        plain.finish().unwrap();
    }
}
