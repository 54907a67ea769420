//! The STREAM construction over AES-256-GCM (docs/FORMAT.md, "Segments").
//!
//! Plaintext is cut into fixed-size segments; segment i is sealed with nonce
//! `prefix(7) ‖ i as u32 BE ‖ last(1)`. Only the final segment carries last=1,
//! so truncation, reordering, dropping or duplicating segments and bit flips all
//! fail authentication. One segment is buffered on each side: memory is
//! bounded by the segment size, whatever the object's size.

use super::header::{Header, NONCE_PREFIX_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use std::io::{self, Write};

pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("segment {0} failed authentication (altered, reordered or from another object)")]
    Segment(u64),
    #[error("object is truncated: it ends before its final segment")]
    Truncated,
    #[error("object has more than 2^32 segments")]
    TooLong,
}

pub(crate) fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    n[NONCE_LEN - 1] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// Encrypts what is written to it into `inner`, header first.
/// `finish` must be called: without it the object has no final segment and
/// every reader rejects it as truncated.
pub struct Sealer<W: Write> {
    inner: W,
    key: LessSafeKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    seg: usize,
    buf: Vec<u8>,
    counter: u32,
}

impl<W: Write> Sealer<W> {
    pub fn new(mut inner: W, header: &Header, data_key: &[u8; 32]) -> io::Result<Self> {
        inner.write_all(&header.encode())?;
        let seg = header.segment_size();
        Ok(Self {
            inner,
            key: crate::keys::aead_key(data_key),
            prefix: header.nonce_prefix,
            seg,
            buf: Vec::with_capacity(seg + TAG_LEN),
            counter: 0,
        })
    }

    fn seal_buffered(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        self.key
            .seal_in_place_append_tag(n, Aad::empty(), &mut self.buf)
            .map_err(|_| io::Error::other("sealing failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other(StreamError::TooLong))?;
        Ok(())
    }

    /// Plaintext bytes written so far.
    pub fn position(&self) -> u64 {
        u64::from(self.counter) * self.seg as u64 + self.buf.len() as u64
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.seal_buffered(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            // A full buffer is sealed only once more data proves it is not the last.
            if self.buf.len() == self.seg {
                self.seal_buffered(false)?;
            }
            let take = (self.seg - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decrypts pushed ciphertext (after the header) and writes authenticated
/// plaintext to `out`. Nothing of a segment reaches `out` before its tag checks.
pub struct Opener {
    key: LessSafeKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    seg: usize,
    buf: Vec<u8>,
    counter: u32,
}

impl Opener {
    pub fn new(header: &Header, data_key: &[u8; 32]) -> Self {
        let seg = header.segment_size();
        Self {
            key: crate::keys::aead_key(data_key),
            prefix: header.nonce_prefix,
            seg,
            // Grown as ciphertext arrives (see `push`), not sized by the
            // header: a short object declaring 16 MiB segments costs little.
            buf: Vec::new(),
            counter: 0,
        }
    }

    fn open_segment<O: Write>(&mut self, len: usize, last: bool, out: &mut O) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        let plain = self
            .key
            .open_in_place(n, Aad::empty(), &mut self.buf[..len])
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    StreamError::Segment(self.counter as u64),
                )
            })?;
        out.write_all(plain)?;
        self.buf.drain(..len);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, StreamError::TooLong))?;
        Ok(())
    }

    pub fn push<O: Write>(&mut self, mut data: &[u8], out: &mut O) -> io::Result<()> {
        let full = self.seg + TAG_LEN;
        while !data.is_empty() {
            let take = (full + 1 - self.buf.len()).min(data.len());
            let need = self.buf.len() + take;
            if need > self.buf.capacity() {
                // Doubling, but never past one segment: the buffer's bound.
                let to = need.max(2 * self.buf.capacity()).min(full + 1);
                self.buf.reserve_exact(to - self.buf.len());
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            // A full segment followed by at least one more byte is not the last.
            if self.buf.len() > full {
                self.open_segment(full, false, out)?;
            }
        }
        Ok(())
    }

    /// Ends the stream: the remaining bytes must be the final segment.
    pub fn finish<O: Write>(mut self, out: &mut O) -> io::Result<()> {
        let len = self.buf.len();
        // An empty final segment is only valid as the sole segment (empty object).
        if len < TAG_LEN || (len == TAG_LEN && self.counter > 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                StreamError::Truncated,
            ));
        }
        match self.open_segment(len, true, out) {
            // A non-last segment opened as last fails: the tail was cut at a boundary.
            Err(_) if len == self.seg + TAG_LEN => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                StreamError::Truncated,
            )),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use crate::pipeline::header::Compression;
    use std::path::Path;

    fn seal(plain: &[u8], log2: u8) -> (Vec<u8>, Header, [u8; 32]) {
        let keys =
            Keyring::parse(&crate::keys::new_key_line("k").unwrap(), Path::new("k")).unwrap();
        let (mut h, _) = Header::seal_new(keys.primary(), "o", Compression::None);
        h.segment_log2 = log2;
        let dk = [7u8; 32];
        let mut s = Sealer::new(Vec::new(), &h, &dk).unwrap();
        // odd write sizes exercise the buffering
        for c in plain.chunks(1000) {
            s.write_all(c).unwrap();
        }
        let out = s.finish().unwrap();
        let hl = h.encode().len();
        (out[hl..].to_vec(), h, dk)
    }

    fn open(ct: &[u8], h: &Header, dk: &[u8; 32], step: usize) -> io::Result<Vec<u8>> {
        let mut o = Opener::new(h, dk);
        let mut out = Vec::new();
        for c in ct.chunks(step.max(1)) {
            o.push(c, &mut out)?;
        }
        o.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn roundtrip_at_every_boundary() {
        let seg: usize = 4096;
        for len in [0, 1, seg - 1, seg, seg + 1, 2 * seg, 3 * seg + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (ct, h, dk) = seal(&plain, 12);
            let segments = if len == 0 { 1 } else { len.div_ceil(seg) };
            assert_eq!(ct.len(), len + segments * TAG_LEN, "len {len}");
            for step in [1, 333, seg + TAG_LEN, 1 << 20] {
                assert_eq!(
                    open(&ct, &h, &dk, step).unwrap(),
                    plain,
                    "len {len} step {step}"
                );
            }
        }
    }

    #[test]
    fn truncation_reordering_and_flips_fail() {
        let seg = 4096;
        let full = seg + TAG_LEN;
        let plain: Vec<u8> = (0..3 * seg + 5).map(|i| i as u8).collect();
        let (ct, h, dk) = seal(&plain, 12);
        // cut at a segment boundary and anywhere else
        for cut in [full, 2 * full, 3 * full, ct.len() - 1, 10] {
            let e = open(&ct[..cut], &h, &dk, 999).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut {cut}");
        }
        // swap segments 0 and 1
        let mut swapped = ct.clone();
        swapped[..full].copy_from_slice(&ct[full..2 * full]);
        swapped[full..2 * full].copy_from_slice(&ct[..full]);
        assert!(open(&swapped, &h, &dk, 999).is_err());
        // drop a middle segment
        let dropped = [&ct[..full], &ct[2 * full..]].concat();
        assert!(open(&dropped, &h, &dk, 999).is_err());
        // a flip anywhere
        for i in (0..ct.len()).step_by(97) {
            let mut b = ct.clone();
            b[i] ^= 0x80;
            assert!(open(&b, &h, &dk, 999).is_err(), "flip at {i}");
        }
        // wrong data key
        assert!(open(&ct, &h, &[8u8; 32], 999).is_err());
    }

    #[test]
    fn nothing_is_released_before_authentication() {
        let seg = 4096;
        let plain = vec![1u8; 2 * seg];
        let (mut ct, h, dk) = seal(&plain, 12);
        ct[5] ^= 1; // first segment corrupted
        let mut o = Opener::new(&h, &dk);
        let mut out = Vec::new();
        assert!(o.push(&ct, &mut out).is_err());
        assert!(out.is_empty());
    }

    /// The segment size is the one length in a header that sizes an
    /// allocation. The Opener reserved a whole segment up front (16 MiB for
    /// s = 24, whatever the object's size); it now grows with what arrives
    /// and never past one segment plus a byte.
    #[test]
    fn the_buffer_grows_with_the_data_not_the_declared_segment() {
        let plain = vec![3u8; 100];
        let (ct, mut h, dk) = seal(&plain, 12);
        h.segment_log2 = 24;
        let mut o = Opener::new(&h, &dk);
        assert_eq!(o.buf.capacity(), 0);
        o.push(&ct, &mut Vec::new()).unwrap();
        assert!(o.buf.capacity() < 4096, "{}", o.buf.capacity());
        let (ct, h, dk) = seal(&vec![5u8; 3 * 4096 + 1], 12);
        let mut o = Opener::new(&h, &dk);
        let mut out = Vec::new();
        for c in ct.chunks(100) {
            o.push(c, &mut out).unwrap();
            assert!(
                o.buf.capacity() <= 4096 + TAG_LEN + 1,
                "{}",
                o.buf.capacity()
            );
        }
        o.finish(&mut out).unwrap();
        assert_eq!(out.len(), 3 * 4096 + 1);
    }
}
