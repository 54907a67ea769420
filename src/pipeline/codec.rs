//! One object's codec: compress → seal on the way out; on the way back
//! hash → open → decompress, pushed a chunk at a time so that a download can
//! feed it directly. Both sides hold about one segment plus the compressor's
//! window in memory.

use super::header::{Compression, Header, HeaderError};
use super::stream::Opener;
use crate::keys::Keyring;
use ring::digest::{Context, SHA256};
use std::io::{self, Write};

pub use super::encoder::ObjectEncoder;
pub use super::zstd_encoder::ZSTD_LEVEL;

/// zstd's own writer, not the crate's `write::Decoder`: only it can say at
/// the end whether the last frame was complete.
type ZstdWriter<O> = zstd::stream::zio::Writer<O, zstd::stream::raw::Decoder<'static>>;

enum Decompressor<O: Write> {
    None(O),
    Zstd(ZstdWriter<O>),
    Gzip(flate2::write::MultiGzDecoder<O>),
}

impl<O: Write> Write for Decompressor<O> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Decompressor::None(w) => w.write(buf),
            Decompressor::Zstd(w) => w.write(buf),
            Decompressor::Gzip(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Decompressor::None(w) => w.flush(),
            Decompressor::Zstd(w) => w.flush(),
            Decompressor::Gzip(w) => w.flush(),
        }
    }
}

impl<O: Write> Decompressor<O> {
    fn finish(self) -> io::Result<O> {
        match self {
            Decompressor::None(w) => Ok(w),
            // Fails with "incomplete frame" unless the last frame ended:
            // a stream cut at a frame's middle is not the whole object.
            Decompressor::Zstd(mut w) => {
                w.finish()?;
                Ok(w.into_inner().0)
            }
            Decompressor::Gzip(w) => w.finish(),
        }
    }
}

/// What a decoder saw of the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// Counts and hashes stored bytes.
pub struct Hasher {
    ctx: Context,
    size: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Self {
            ctx: Context::new(&SHA256),
            size: 0,
        }
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.size += data.len() as u64;
    }
    pub fn finish(self) -> Digest {
        Digest {
            size: self.size,
            sha256: hex::encode(self.ctx.finish().as_ref()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{0}")]
    Data(#[source] io::Error),
    #[error("object ended inside its header")]
    ShortHeader,
    #[error("the object decoder was used after it failed")]
    Failed,
}

#[allow(clippy::large_enum_variant)] // one per object; boxing buys nothing
enum State<O: Write> {
    Header(Vec<u8>),
    Body {
        opener: Opener,
        out: Decompressor<O>,
    },
}

/// Pushed stored bytes; writes authenticated, decompressed plaintext to `O`.
pub struct ObjectDecoder<'k, O: Write> {
    keys: &'k Keyring,
    expected_name: Option<String>,
    /// Authenticated bytes go out still compressed.
    keep_compressed: bool,
    hasher: Hasher,
    state: Option<State<O>>,
    sink: Option<O>,
}

impl<'k, O: Write> ObjectDecoder<'k, O> {
    /// `expected_name`: the object's key relative to the destination root;
    /// its header must carry the same name.
    pub fn new(keys: &'k Keyring, expected_name: Option<&str>, out: O) -> Self {
        Self {
            keys,
            expected_name: expected_name.map(str::to_string),
            keep_compressed: false,
            hasher: Hasher::default(),
            state: Some(State::Header(Vec::new())),
            sink: Some(out),
        }
    }

    /// As [`ObjectDecoder::new`], but writes the authenticated bytes as
    /// they were compressed (a parallel restore's loaders each decompress
    /// their own frames).
    pub fn compressed(keys: &'k Keyring, expected_name: Option<&str>, out: O) -> Self {
        Self {
            keep_compressed: true,
            ..Self::new(keys, expected_name, out)
        }
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        self.hasher.update(data);
        let state = self.state.take().ok_or(DecodeError::Failed)?;
        let state = match state {
            State::Header(mut buf) => {
                buf.extend_from_slice(data);
                match Header::parse(&buf)? {
                    None => State::Header(buf),
                    Some((header, used)) => {
                        let key = header.open(self.keys, self.expected_name.as_deref())?;
                        let mut opener = Opener::new(&header, &key);
                        let sink = self.sink.take().ok_or(DecodeError::Failed)?;
                        let mut out = match header.compression {
                            _ if self.keep_compressed => Decompressor::None(sink),
                            Compression::None => Decompressor::None(sink),
                            Compression::Zstd => Decompressor::Zstd(ZstdWriter::new(
                                sink,
                                zstd::stream::raw::Decoder::new().map_err(DecodeError::Data)?,
                            )),
                            Compression::Gzip => {
                                Decompressor::Gzip(flate2::write::MultiGzDecoder::new(sink))
                            }
                        };
                        opener
                            .push(&buf[used..], &mut out)
                            .map_err(DecodeError::Data)?;
                        State::Body { opener, out }
                    }
                }
            }
            State::Body {
                mut opener,
                mut out,
            } => {
                opener.push(data, &mut out).map_err(DecodeError::Data)?;
                State::Body { opener, out }
            }
        };
        self.state = Some(state);
        Ok(())
    }

    /// Checks the final segment and returns the sink and the stored bytes' digest.
    pub fn finish(mut self) -> Result<(O, Digest), DecodeError> {
        match self.state.take().ok_or(DecodeError::Failed)? {
            State::Header(_) => Err(DecodeError::ShortHeader),
            State::Body { opener, mut out } => {
                opener.finish(&mut out).map_err(DecodeError::Data)?;
                let sink = out.finish().map_err(DecodeError::Data)?;
                Ok((sink, self.hasher.finish()))
            }
        }
    }
}

/// A writer that counts what passes through it.
pub struct Counting<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn keys(id: &str) -> Keyring {
        Keyring::parse(&crate::keys::new_key_line(id).unwrap(), Path::new("k")).unwrap()
    }

    fn encode(keys: &Keyring, name: &str, c: Compression, plain: &[u8]) -> Vec<u8> {
        let mut e = ObjectEncoder::new(Vec::new(), keys.primary(), name, c).unwrap();
        e.write_all(plain).unwrap();
        e.finish().unwrap()
    }

    fn decode(keys: &Keyring, name: &str, stored: &[u8]) -> Result<(Vec<u8>, Digest), DecodeError> {
        let mut d = ObjectDecoder::new(keys, Some(name), Vec::new());
        for c in stored.chunks(7777) {
            d.push(c)?;
        }
        d.finish()
    }

    #[test]
    fn every_compression_roundtrips() {
        let k = keys("k1");
        let plain: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        for c in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let stored = encode(&k, "n", c, &plain);
            let (out, digest) = decode(&k, "n", &stored).unwrap();
            assert_eq!(out, plain, "{c:?}");
            assert_eq!(digest.size, stored.len() as u64);
            if c != Compression::None {
                assert!(stored.len() < plain.len() / 2, "{c:?} did not compress");
            }
        }
    }

    /// Sealed and authenticated, but what it seals stops mid-frame (a
    /// writer bug, or someone holding the key): not a whole object.
    #[test]
    fn a_compressed_stream_cut_short_is_refused_even_when_sealed() {
        let k = keys("k");
        let plain: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 977).to_le_bytes())
            .collect();
        let zstd_bytes = zstd::encode_all(&plain[..], ZSTD_LEVEL).unwrap();
        let gzip_bytes = {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            g.write_all(&plain).unwrap();
            g.finish().unwrap()
        };
        for (c, whole) in [
            (Compression::Zstd, zstd_bytes),
            (Compression::Gzip, gzip_bytes),
        ] {
            let seal = |payload: &[u8]| {
                let (header, data_key) = Header::seal_new(k.primary(), "n", c);
                let mut s =
                    super::super::stream::Sealer::new(Vec::new(), &header, &data_key).unwrap();
                s.write_all(payload).unwrap();
                s.finish().unwrap()
            };
            let (out, _) = decode(&k, "n", &seal(&whole)).unwrap();
            assert_eq!(out, plain, "{c:?}: the whole stream decodes");
            let cut = &whole[..whole.len() * 2 / 3];
            assert!(
                decode(&k, "n", &seal(cut)).is_err(),
                "{c:?}: a cut stream is refused"
            );
        }
    }

    #[test]
    fn wrong_key_names_the_key_id() {
        let stored = encode(&keys("prod-1"), "n", Compression::Zstd, b"data");
        let err = decode(&keys("prod-2"), "n", &stored)
            .unwrap_err()
            .to_string();
        assert!(err.contains("prod-1") && err.contains("prod-2"), "{err}");
        // same id, different material
        let err = decode(&keys("prod-1"), "n", &stored)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prod-1") && err.contains("does not decrypt"),
            "{err}"
        );
    }

    #[test]
    fn object_under_another_name_is_refused() {
        let k = keys("k");
        let stored = encode(&k, "backups/a/db.lbk", Compression::Zstd, b"data");
        assert!(decode(&k, "backups/b/db.lbk", &stored).is_err());
    }

    /// Hostile stored bytes against the whole decoder: header, segments and
    /// decompression, pushed in random chunk sizes.
    mod props {
        use super::*;
        use crate::hostile::{apply_all, config, edits};
        use crate::pipeline::stream::{nonce, TAG_LEN};
        use proptest::prelude::*;
        use ring::aead::Aad;

        const NAME: &str = "backups/x/db-0.lbk";
        /// 4 KiB segments: several per object from a little plaintext.
        const LOG2: u8 = 12;
        const UNIT: usize = (1 << LOG2) + TAG_LEN;

        struct Sealed {
            stored: Vec<u8>,
            header_len: usize,
            header: Header,
            data_key: [u8; 32],
        }

        fn seal(keys: &Keyring, c: Compression, plain: &[u8]) -> Sealed {
            let (mut header, data_key) = Header::seal_new(keys.primary(), NAME, c);
            header.segment_log2 = LOG2;
            header.wrapped_key = keys.primary().wrap(&data_key, &header.aad());
            // Threaded for odd lengths: both encoders' frames must decode alike.
            let threaded = plain.len() % 2 == 1;
            let mut e =
                ObjectEncoder::from_header(Vec::new(), &header, &data_key, threaded).unwrap();
            e.write_all(plain).unwrap();
            let stored = e.finish().unwrap();
            let header_len = header.encode().len();
            Sealed {
                stored,
                header_len,
                header,
                data_key: *data_key,
            }
        }

        impl Sealed {
            /// The segments' plaintexts (the compressed stream, cut).
            fn segments(&self) -> Vec<Vec<u8>> {
                let units: Vec<&[u8]> = self.stored[self.header_len..].chunks(UNIT).collect();
                let key = crate::keys::aead_key(&self.data_key);
                units
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        let n = nonce(&self.header.nonce_prefix, i as u32, i + 1 == units.len());
                        let mut b = u.to_vec();
                        key.open_in_place(n, Aad::empty(), &mut b).unwrap().to_vec()
                    })
                    .collect()
            }

            /// The object with `segments` sealed under `last` flags of our choosing.
            fn reseal(&self, segments: &[Vec<u8>], last: &[bool]) -> Vec<u8> {
                let key = crate::keys::aead_key(&self.data_key);
                let mut out = self.stored[..self.header_len].to_vec();
                for (i, seg) in segments.iter().enumerate() {
                    let mut b = seg.clone();
                    let n = nonce(&self.header.nonce_prefix, i as u32, last[i]);
                    key.seal_in_place_append_tag(n, Aad::empty(), &mut b)
                        .unwrap();
                    out.extend_from_slice(&b);
                }
                out
            }
        }

        fn decode_chunked(
            keys: &Keyring,
            stored: &[u8],
            chunks: &[usize],
        ) -> Result<Vec<u8>, DecodeError> {
            let mut d = ObjectDecoder::new(keys, Some(NAME), Vec::new());
            let mut rest = stored;
            for n in chunks.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*n).clamp(1, rest.len()));
                d.push(now)?;
                rest = later;
            }
            Ok(d.finish()?.0)
        }

        fn compression() -> impl Strategy<Value = Compression> {
            prop_oneof![
                Just(Compression::None),
                Just(Compression::Zstd),
                Just(Compression::Gzip)
            ]
        }

        /// Random bytes (several segments' worth, incompressible) or a run.
        fn plaintext() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..5 * UNIT),
                (any::<u8>(), 0..20 * UNIT).prop_map(|(b, n)| vec![b; n]),
            ]
        }

        fn chunking() -> impl Strategy<Value = Vec<usize>> {
            proptest::collection::vec(1..3 * UNIT, 1..6)
        }

        /// Changes to the sequence of segments.
        #[derive(Debug, Clone)]
        enum Reorder {
            Drop(usize),
            Duplicate(usize),
            Swap(usize, usize),
        }

        fn reorder() -> impl Strategy<Value = Reorder> {
            prop_oneof![
                any::<usize>().prop_map(Reorder::Drop),
                any::<usize>().prop_map(Reorder::Duplicate),
                (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Reorder::Swap(a, b)),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn valid_objects_roundtrip_whatever_the_chunking(
                c in compression(), plain in plaintext(), chunks in chunking(),
            ) {
                let keys = keys("k");
                let o = seal(&keys, c, &plain);
                prop_assert_eq!(decode_chunked(&keys, &o.stored, &chunks).unwrap(), plain);
            }

            /// Random bytes, alone or after a valid header: refused, no panic.
            #[test]
            fn random_bytes_are_refused(
                c in compression(),
                after_header in any::<bool>(),
                junk in proptest::collection::vec(any::<u8>(), 0..3 * UNIT),
                chunks in chunking(),
            ) {
                let keys = keys("k");
                let o = seal(&keys, c, b"");
                let head = if after_header { &o.stored[..o.header_len] } else { &[][..] };
                let b = [head, &junk[..]].concat();
                prop_assert!(decode_chunked(&keys, &b, &chunks).is_err());
            }

            /// Flipped, changed, inserted, removed bytes, truncation, extension.
            #[test]
            fn an_edited_object_is_refused(
                c in compression(), plain in plaintext(), es in edits(21), chunks in chunking(),
            ) {
                let keys = keys("k");
                let o = seal(&keys, c, &plain);
                let b = apply_all(&es, &o.stored);
                prop_assume!(b != o.stored);
                prop_assert!(decode_chunked(&keys, &b, &chunks).is_err());
            }

            /// Dropped, duplicated and swapped segments.
            #[test]
            fn reordered_segments_are_refused(
                c in compression(), plain in plaintext(), r in reorder(), chunks in chunking(),
            ) {
                let keys = keys("k");
                let o = seal(&keys, c, &plain);
                let mut units: Vec<&[u8]> = o.stored[o.header_len..].chunks(UNIT).collect();
                let n = units.len();
                match r {
                    Reorder::Drop(i) => { units.remove(i % n); }
                    Reorder::Duplicate(i) => units.insert(i % n, units[i % n]),
                    // Two different segments (one alone is duplicated instead).
                    Reorder::Swap(i, _) if n == 1 => units.insert(i % n, units[i % n]),
                    Reorder::Swap(i, k) => units.swap(i % n, (i + 1 + k % (n - 1)) % n),
                }
                let b = [&o.stored[..o.header_len], &units.concat()[..]].concat();
                prop_assert!(decode_chunked(&keys, &b, &chunks).is_err());
            }

            /// Segments sealed with the right key but a wrong last-segment
            /// flag (a broken writer, or a holder of the data key), or an
            /// empty final segment after the real one.
            #[test]
            fn a_wrong_last_segment_flag_is_refused(
                c in compression(), plain in plaintext(), flip in any::<usize>(),
                empty_tail in any::<bool>(), chunks in chunking(),
            ) {
                let keys = keys("k");
                let o = seal(&keys, c, &plain);
                let mut segments = o.segments();
                let n = segments.len();
                let mut last: Vec<bool> = (0..n).map(|i| i + 1 == n).collect();
                if empty_tail {
                    last[n - 1] = false;
                    last.push(true);
                    segments.push(Vec::new());
                } else {
                    last[flip % n] ^= true;
                }
                let b = o.reseal(&segments, &last);
                prop_assert!(decode_chunked(&keys, &b, &chunks).is_err());
            }
        }
    }
}
