//! Packs (docs/FORMAT.md §7): many sealed chunks in one object, with a
//! sealed list of them at the end. Pure: bytes in, bytes out.
//!
//! ```text
//! header   "LIFEBOAT" 0x02 'P' n key-id(n) m(u16) name(m) wrapped-DK(60)   (aad of the wrap: every byte before it)
//! blobs    nonce(12) ‖ AES-256-GCM(DK, nonce, flag ‖ data, aad = chunk id)  flag 0: as is, 1: zstd
//! trailer  nonce(12) ‖ AES-256-GCM(DK, nonce, count(u32) ‖ entries, aad = "lifeboat pack trailer v2\0" ‖ name)
//!          ‖ len(u32) of the sealed trailer ‖ "LBPKEND2"
//! ```
//!
//! Each pack has its own data key. A blob opens only under its own chunk
//! id, so blobs cannot be swapped; the trailer names the pack, so a pack
//! renamed or copied elsewhere fails; the trailer is what makes the index
//! rebuildable from the packs alone.

use super::{ChunkId, ChunkKeys};
use crate::keys::{valid_key_id, Keyring, MasterKey, KEY_LEN, WRAPPED_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce};

pub const MAGIC: &[u8; 8] = b"LIFEBOAT";
pub const VERSION: u8 = 2;
const KIND_PACK: u8 = b'P';
const END: &[u8; 8] = b"LBPKEND2";
/// The fixed tail: the sealed trailer's length and the end magic.
pub const TAIL_LEN: usize = 4 + END.len();
/// Headers fit in this many bytes (key id ≤ 64, name ≤ 255): a reader
/// reads this much from the start of a pack to open it.
pub const HEADER_MAX: usize = 11 + 64 + 2 + 255 + WRAPPED_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4;
const TRAILER_AAD: &[u8] = b"lifeboat pack trailer v2\0";
/// No chunk decompresses past this (fastcdc's largest maximum, 16 MiB).
pub const PLAIN_MAX: usize = 16 << 20;
/// The zstd level of chunks, as for objects.
const ZSTD_LEVEL: i32 = crate::pipeline::codec::ZSTD_LEVEL;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("not a version 2 pack: {0}")]
    Header(&'static str),
    #[error("its key does not open (altered, or sealed by a key not in the key file): {0}")]
    Key(#[from] crate::keys::KeyError),
    #[error("it is named {found:?} inside, not {expected:?}: it belongs elsewhere")]
    WrongName { expected: String, found: String },
    #[error("its list of chunks is damaged or altered")]
    Trailer,
    #[error("chunk {0} fails authentication (a flipped bit or an edit)")]
    Blob(String),
    #[error("chunk {0} does not decompress: {1}")]
    Decompress(String, String),
}

/// Where a chunk is in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub offset: u64,
    /// Bytes stored (nonce, ciphertext, tag).
    pub stored_len: u32,
    /// Bytes of the chunk's plaintext.
    pub plain_len: u32,
}

impl BlobEntry {
    /// Its 48 bytes in a trailer or an index object: id, offset, stored and plain length.
    pub fn encode_into(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.stored_len.to_be_bytes());
        b.extend_from_slice(&self.plain_len.to_be_bytes());
    }

    /// Reads [`ENTRY_LEN`] bytes written by [`BlobEntry::encode_into`].
    pub fn decode(e: &[u8]) -> Self {
        BlobEntry {
            id: e[..32].try_into().expect("32"),
            offset: u64::from_be_bytes(e[32..40].try_into().expect("8")),
            stored_len: u32::from_be_bytes(e[40..44].try_into().expect("4")),
            plain_len: u32::from_be_bytes(e[44..48].try_into().expect("4")),
        }
    }
}

/// Seals the blobs and trailer of one pack.
pub struct PackSealer {
    key: LessSafeKey,
    name: String,
    /// One compression context for the pack's chunks: a fresh one per
    /// chunk was an allocation of its workspace per (small) file.
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

fn header_aad(key_id: &str, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + key_id.len() + name.len());
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.push(KIND_PACK);
    b.push(key_id.len() as u8);
    b.extend_from_slice(key_id.as_bytes());
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

/// A new pack named `name`: its header bytes and its sealer.
pub fn new_pack(master: &MasterKey, name: &str) -> (Vec<u8>, PackSealer) {
    assert!(name.len() <= 255, "pack names are short");
    let dk: [u8; KEY_LEN] = crate::keys::random_bytes();
    let mut header = header_aad(&master.id, name);
    let wrapped = master.wrap(&dk, &header);
    header.extend_from_slice(&wrapped);
    let sealer = PackSealer {
        key: crate::keys::aead_key(&dk),
        name: name.to_string(),
        zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
    };
    (header, sealer)
}

/// `nonce ‖ ciphertext ‖ tag` of `plain`, which must start with
/// [`NONCE_LEN`] bytes of room (sealed in place: no second copy).
fn seal(key: &LessSafeKey, aad: &[u8], mut buf: Vec<u8>) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = crate::keys::random_bytes();
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf[NONCE_LEN..],
        )
        .expect("sealing cannot fail");
    buf.extend_from_slice(tag.as_ref());
    buf
}

fn open<'a>(key: &LessSafeKey, aad: &[u8], stored: &'a mut [u8]) -> Option<&'a mut [u8]> {
    if stored.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = stored.split_at_mut(NONCE_LEN);
    let nonce = Nonce::assume_unique_for_key(nonce.try_into().ok()?);
    key.open_in_place(nonce, Aad::from(aad), rest).ok()
}

impl PackSealer {
    /// The stored bytes of one chunk: compressed when that makes it smaller.
    pub fn seal_blob(&mut self, id: &ChunkId, plain: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(NONCE_LEN + 1 + plain.len() + TAG_LEN);
        body.extend_from_slice(&[0; NONCE_LEN]);
        let compressed = match self.zstd.as_mut() {
            Some(z) => z.compress(plain),
            None => zstd::bulk::compress(plain, ZSTD_LEVEL),
        };
        match compressed {
            Ok(z) if z.len() < plain.len() => {
                body.push(1);
                body.extend_from_slice(&z);
            }
            _ => {
                body.push(0);
                body.extend_from_slice(plain);
            }
        }
        seal(&self.key, id, body)
    }

    /// The pack's end: the sealed list of its blobs, its length, the end magic.
    pub fn trailer(&self, entries: &[BlobEntry]) -> Vec<u8> {
        let mut list =
            Vec::with_capacity(NONCE_LEN + 4 + entries.len() * ENTRY_LEN + TAG_LEN + TAIL_LEN);
        list.extend_from_slice(&[0; NONCE_LEN]);
        list.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for e in entries {
            e.encode_into(&mut list);
        }
        let sealed = seal(
            &self.key,
            &[TRAILER_AAD, self.name.as_bytes()].concat(),
            list,
        );
        let mut out = sealed;
        out.extend_from_slice(&((out.len()) as u32).to_be_bytes());
        out.extend_from_slice(END);
        out
    }
}

/// An opened pack: its data key, unwrapped after checking its name.
pub struct PackOpener {
    key: LessSafeKey,
    name: String,
    /// The header's length: blobs start here.
    pub header_len: usize,
}

impl PackOpener {
    /// Opens a pack from its first bytes (up to [`HEADER_MAX`]), checking it
    /// is named `expected` inside.
    pub fn open(buf: &[u8], keys: &Keyring, expected: &str) -> Result<Self, PackError> {
        if buf.len() < 11 || &buf[..8] != MAGIC {
            return Err(PackError::Header("bad magic"));
        }
        if buf[8] != VERSION || buf[9] != KIND_PACK {
            return Err(PackError::Header("wrong version or kind"));
        }
        let n = buf[10] as usize;
        let at = 11;
        if !(1..=64).contains(&n) || buf.len() < at + n + 2 {
            return Err(PackError::Header("bad key id"));
        }
        let key_id = std::str::from_utf8(&buf[at..at + n])
            .ok()
            .filter(|id| valid_key_id(id))
            .ok_or(PackError::Header("bad key id"))?;
        let at = at + n;
        let m = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        let at = at + 2;
        if m > 255 || buf.len() < at + m + WRAPPED_LEN {
            return Err(PackError::Header("bad name"));
        }
        let name = String::from_utf8_lossy(&buf[at..at + m]).into_owned();
        if name != expected {
            return Err(PackError::WrongName {
                expected: expected.to_string(),
                found: name,
            });
        }
        let at = at + m;
        let wrapped: [u8; WRAPPED_LEN] = buf[at..at + WRAPPED_LEN].try_into().expect("len");
        let dk = keys.get(key_id)?.unwrap(&wrapped, &buf[..at])?;
        Ok(Self {
            key: crate::keys::aead_key(&dk),
            name,
            header_len: at + WRAPPED_LEN,
        })
    }

    /// Authenticates one stored blob as chunk `id`, decompresses it and
    /// checks its plaintext has that id.
    pub fn open_blob(
        &self,
        ids: &ChunkKeys,
        id: &ChunkId,
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>, PackError> {
        let bad = || PackError::Blob(super::short(id));
        let body = open(&self.key, id, &mut stored).ok_or_else(bad)?;
        let plain = match body.split_first() {
            Some((0, data)) => data.to_vec(),
            Some((1, data)) => zstd::bulk::decompress(data, PLAIN_MAX)
                .map_err(|e| PackError::Decompress(super::short(id), e.to_string()))?,
            _ => return Err(bad()),
        };
        // Sealed under its id already; the HMAC also catches a chunk sealed
        // under the wrong id by a writer with the key (a bug, not an attack).
        if ids.id(&plain) != *id {
            return Err(bad());
        }
        Ok(plain)
    }

    /// The length of the sealed trailer, from the pack's last [`TAIL_LEN`] bytes.
    pub fn trailer_len(tail: &[u8]) -> Result<u64, PackError> {
        if tail.len() != TAIL_LEN || &tail[4..] != END {
            return Err(PackError::Trailer);
        }
        Ok(u32::from_be_bytes(tail[..4].try_into().expect("4")) as u64)
    }

    /// The blobs the sealed trailer lists; each must lie between the header
    /// and `trailer_start`.
    pub fn open_trailer(
        &self,
        mut sealed: Vec<u8>,
        trailer_start: u64,
    ) -> Result<Vec<BlobEntry>, PackError> {
        let aad = [TRAILER_AAD, self.name.as_bytes()].concat();
        let list = open(&self.key, &aad, &mut sealed).ok_or(PackError::Trailer)?;
        let (count, rest) = list.split_at_checked(4).ok_or(PackError::Trailer)?;
        let count = u32::from_be_bytes(count.try_into().expect("4")) as usize;
        if rest.len() != count * ENTRY_LEN {
            return Err(PackError::Trailer);
        }
        let entries: Vec<BlobEntry> = rest
            .chunks_exact(ENTRY_LEN)
            .map(BlobEntry::decode)
            .collect();
        let inside = |e: &BlobEntry| {
            e.offset >= self.header_len as u64 && e.offset + e.stored_len as u64 <= trailer_start
        };
        if !entries.iter().all(inside) {
            return Err(PackError::Trailer);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn keys() -> Keyring {
        Keyring::parse(&crate::keys::new_key_line("k1").unwrap(), Path::new("k")).unwrap()
    }

    /// Builds a pack of `chunks` as bytes, with its entries.
    fn build(
        keys: &Keyring,
        ids: &ChunkKeys,
        name: &str,
        chunks: &[&[u8]],
    ) -> (Vec<u8>, Vec<BlobEntry>) {
        let (mut pack, mut sealer) = new_pack(keys.primary(), name);
        let mut entries = Vec::new();
        for c in chunks {
            let id = ids.id(c);
            let blob = sealer.seal_blob(&id, c);
            entries.push(BlobEntry {
                id,
                offset: pack.len() as u64,
                stored_len: blob.len() as u32,
                plain_len: c.len() as u32,
            });
            pack.extend_from_slice(&blob);
        }
        pack.extend_from_slice(&sealer.trailer(&entries));
        (pack, entries)
    }

    fn read_trailer(keys: &Keyring, name: &str, pack: &[u8]) -> Result<Vec<BlobEntry>, PackError> {
        let opener = PackOpener::open(&pack[..HEADER_MAX.min(pack.len())], keys, name)?;
        let len = PackOpener::trailer_len(&pack[pack.len() - TAIL_LEN..])?;
        let start = ((pack.len() - TAIL_LEN) as u64)
            .checked_sub(len)
            .ok_or(PackError::Trailer)?;
        opener.open_trailer(pack[start as usize..pack.len() - TAIL_LEN].to_vec(), start)
    }

    #[test]
    fn blobs_and_trailer_round_trip_and_every_edit_fails() {
        let keys = keys();
        let ids = ChunkKeys::new(keys.primary());
        let text = b"compressible ".repeat(1000);
        let noise = crate::chunks::noise(5000, 1);
        let (pack, entries) = build(&keys, &ids, "chunks/packs/p1.pack", &[&text, &noise, b""]);
        assert!(entries[0].stored_len < 1000, "compressed");
        assert!(entries[1].stored_len as usize > noise.len(), "kept as is");
        assert_eq!(
            read_trailer(&keys, "chunks/packs/p1.pack", &pack).unwrap(),
            entries
        );
        let opener = PackOpener::open(&pack, &keys, "chunks/packs/p1.pack").unwrap();
        for (e, c) in entries.iter().zip([&text[..], &noise, b""]) {
            let stored =
                pack[e.offset as usize..(e.offset + e.stored_len as u64) as usize].to_vec();
            assert_eq!(opener.open_blob(&ids, &e.id, stored).unwrap(), c);
        }
        // A blob read as another chunk fails.
        let e = entries[0];
        let stored = pack[e.offset as usize..(e.offset + e.stored_len as u64) as usize].to_vec();
        assert!(opener.open_blob(&ids, &entries[1].id, stored).is_err());
        // Any flipped bit fails the header, a blob or the trailer.
        for i in (0..pack.len()).step_by(7) {
            let mut p = pack.clone();
            p[i] ^= 0x10;
            let header_ok = PackOpener::open(&p, &keys, "chunks/packs/p1.pack");
            let all_ok = header_ok.is_ok()
                && read_trailer(&keys, "chunks/packs/p1.pack", &p).is_ok_and(|t| t == entries)
                && entries.iter().all(|e| {
                    let s =
                        p[e.offset as usize..(e.offset + e.stored_len as u64) as usize].to_vec();
                    PackOpener::open(&p, &keys, "chunks/packs/p1.pack")
                        .unwrap()
                        .open_blob(&ids, &e.id, s)
                        .is_ok()
                });
            assert!(!all_ok, "flip at {i} went unnoticed");
        }
        // A renamed pack fails.
        assert!(matches!(
            PackOpener::open(&pack, &keys, "chunks/packs/p2.pack"),
            Err(PackError::WrongName { .. })
        ));
    }
}
