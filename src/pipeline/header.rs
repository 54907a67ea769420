//! The header at the start of every `.lbk` object (docs/FORMAT.md, "Object header").
//!
//! It names the format version, the compression, the segment size, the key id
//! and the object's own name, and carries the object's data key wrapped by the
//! master key. Everything before the wrapped key is the wrap's AAD, so a header
//! that was edited, or an object copied in under another name, fails to unwrap.

use crate::keys::{valid_key_id, KeyError, Keyring, MasterKey, KEY_LEN, WRAPPED_LEN};

pub const MAGIC: &[u8; 8] = b"LIFEBOAT";
pub const FORMAT_VERSION: u8 = 1;
pub const NONCE_PREFIX_LEN: usize = 7;
pub const DEFAULT_SEGMENT_LOG2: u8 = 16;
/// Segments of 4 KiB to 16 MiB: bounds what a decoder must buffer.
const SEGMENT_LOG2_RANGE: std::ops::RangeInclusive<u8> = 12..=24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

impl Compression {
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Gzip => 2,
        }
    }
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Gzip),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not a lifeboat object (bad magic)")]
    Magic,
    #[error("object format version {0} is not supported by this lifeboat (it reads version {FORMAT_VERSION})")]
    Version(u8),
    #[error("unknown compression id {0}")]
    Compression(u8),
    #[error("segment size 2^{0} out of range")]
    SegmentSize(u8),
    #[error("object header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "object is named {found:?} in its header, expected {expected:?}: it belongs elsewhere"
    )]
    WrongName { expected: String, found: String },
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub compression: Compression,
    pub segment_log2: u8,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    pub key_id: String,
    pub name: String,
    pub wrapped_key: [u8; WRAPPED_LEN],
}

impl Header {
    /// A header for a new object, with a fresh data key wrapped by `master`.
    pub fn seal_new(
        master: &MasterKey,
        name: &str,
        compression: Compression,
    ) -> (Self, zeroize::Zeroizing<[u8; KEY_LEN]>) {
        let data_key = zeroize::Zeroizing::new(crate::keys::random_bytes::<KEY_LEN>());
        let mut h = Header {
            compression,
            segment_log2: DEFAULT_SEGMENT_LOG2,
            nonce_prefix: crate::keys::random_bytes(),
            key_id: master.id.clone(),
            name: name.to_string(),
            wrapped_key: [0; WRAPPED_LEN],
        };
        h.wrapped_key = master.wrap(&data_key, &h.aad());
        (h, data_key)
    }

    pub fn segment_size(&self) -> usize {
        1 << self.segment_log2
    }

    /// The header bytes before the wrapped key: the AAD of the key wrap.
    pub(crate) fn aad(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.key_id.len() + self.name.len());
        b.extend_from_slice(MAGIC);
        b.push(FORMAT_VERSION);
        b.push(self.compression.id());
        b.push(self.segment_log2);
        b.extend_from_slice(&self.nonce_prefix);
        b.push(self.key_id.len() as u8);
        b.extend_from_slice(self.key_id.as_bytes());
        b.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.aad();
        b.extend_from_slice(&self.wrapped_key);
        b
    }

    /// Parses a header from the start of `buf`. `Ok(None)`: more bytes needed.
    pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
        let fixed = MAGIC.len() + 3 + NONCE_PREFIX_LEN + 1;
        if buf.len() < MAGIC.len() {
            return Ok(None);
        }
        if &buf[..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        if buf.len() < fixed {
            return Ok(None);
        }
        if buf[8] != FORMAT_VERSION {
            return Err(HeaderError::Version(buf[8]));
        }
        let compression = Compression::from_id(buf[9]).ok_or(HeaderError::Compression(buf[9]))?;
        let segment_log2 = buf[10];
        if !SEGMENT_LOG2_RANGE.contains(&segment_log2) {
            return Err(HeaderError::SegmentSize(segment_log2));
        }
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = buf[11..18]
            .try_into()
            .map_err(|_| HeaderError::Malformed("short nonce prefix"))?;
        let id_len = buf[18] as usize;
        if !(1..=64).contains(&id_len) {
            return Err(HeaderError::Malformed("key id is not 1 to 64 bytes long"));
        }
        let mut at = fixed;
        if buf.len() < at + id_len + 2 {
            return Ok(None);
        }
        // The id is looked up in the key file, whose ids are 1 to 64 of
        // `A-Z a-z 0-9 . _ -`: any other id is refused here, by every reader.
        let key_id = std::str::from_utf8(&buf[at..at + id_len])
            .ok()
            .filter(|id| valid_key_id(id))
            .ok_or(HeaderError::Malformed(
                "key id is not 1 to 64 characters from A-Z a-z 0-9 . _ -",
            ))?
            .to_string();
        at += id_len;
        let name_len = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        at += 2;
        if buf.len() < at + name_len + WRAPPED_LEN {
            return Ok(None);
        }
        let name = std::str::from_utf8(&buf[at..at + name_len])
            .map_err(|_| HeaderError::Malformed("object name is not UTF-8"))?
            .to_string();
        at += name_len;
        let wrapped_key: [u8; WRAPPED_LEN] = buf[at..at + WRAPPED_LEN]
            .try_into()
            .map_err(|_| HeaderError::Malformed("short wrapped key"))?;
        at += WRAPPED_LEN;
        Ok(Some((
            Header {
                compression,
                segment_log2,
                nonce_prefix,
                key_id,
                name,
                wrapped_key,
            },
            at,
        )))
    }

    /// Checks the binding to `expected_name` and unwraps the data key.
    pub fn open(
        &self,
        keys: &Keyring,
        expected_name: Option<&str>,
    ) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>, HeaderError> {
        if let Some(expected) = expected_name {
            if expected != self.name {
                return Err(HeaderError::WrongName {
                    expected: expected.to_string(),
                    found: self.name.clone(),
                });
            }
        }
        Ok(keys
            .get(&self.key_id)?
            .unwrap(&self.wrapped_key, &self.aad())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ring() -> Keyring {
        Keyring::parse(&crate::keys::new_key_line("k1").unwrap(), Path::new("k")).unwrap()
    }

    #[test]
    fn roundtrip_and_incremental_parse() {
        let keys = ring();
        let (h, dk) = Header::seal_new(keys.primary(), "backups/x/db.lbk", Compression::Zstd);
        let bytes = h.encode();
        for cut in 0..bytes.len() {
            assert!(
                Header::parse(&bytes[..cut]).unwrap().is_none() || cut < 8,
                "cut {cut}"
            );
        }
        let (parsed, used) = Header::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(parsed, h);
        assert_eq!(parsed.open(&keys, Some("backups/x/db.lbk")).unwrap(), dk);
    }

    #[test]
    fn any_header_edit_or_rename_is_refused() {
        let keys = ring();
        let (h, _) = Header::seal_new(keys.primary(), "a.lbk", Compression::Zstd);
        assert!(matches!(
            h.open(&keys, Some("b.lbk")),
            Err(HeaderError::WrongName { .. })
        ));
        let bytes = h.encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let refused = match Header::parse(&b) {
                Err(_) | Ok(None) => true,
                Ok(Some((h2, _))) => h2.open(&keys, None).is_err(),
            };
            assert!(refused, "flip at byte {i} went unnoticed");
        }
    }

    /// A header declaring 2^32-byte (4 GiB) segments, or any size outside
    /// 2^12..=2^24, is refused before anything is sized by it.
    #[test]
    fn a_declared_4_gib_segment_is_refused() {
        let keys = ring();
        let (h, _) = Header::seal_new(keys.primary(), "o", Compression::None);
        for s in [0, 11, 25, 32, 255] {
            let mut b = h.encode();
            b[10] = s;
            assert!(
                matches!(Header::parse(&b), Err(HeaderError::SegmentSize(x)) if x == s),
                "2^{s}"
            );
        }
    }

    /// The spec's key ids are 1 to 64 of `A-Z a-z 0-9 . _ -`; the parser
    /// took any UTF-8 (an empty id too) and left it to the key lookup.
    #[test]
    fn a_key_id_the_key_file_cannot_hold_is_malformed() {
        let keys = ring();
        let (h, _) = Header::seal_new(keys.primary(), "o", Compression::None);
        for id in ["", "a b", "k\u{e9}", &"x".repeat(65)] {
            let h2 = Header {
                key_id: id.to_string(),
                ..h.clone()
            };
            assert!(
                matches!(Header::parse(&h2.encode()), Err(HeaderError::Malformed(_))),
                "{id:?}"
            );
        }
        // A length outside 1..=64 is refused from the fixed fields alone,
        // without waiting for (or buffering) the id.
        let b = h.encode();
        for n in [0, 65, 255] {
            let fixed = [&b[..18], &[n]].concat();
            assert!(
                matches!(Header::parse(&fixed), Err(HeaderError::Malformed(_))),
                "{n}"
            );
        }
    }

    mod props {
        use super::*;
        use crate::hostile::{apply_all, config, edits};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(config())]

            /// Random bytes, alone or after a valid header's first fields:
            /// no panic, and nothing that parses opens.
            #[test]
            fn random_bytes_never_open(
                prefix in 0..=19usize,
                tail in proptest::collection::vec(any::<u8>(), 0..400),
            ) {
                let keys = ring();
                let (h, _) = Header::seal_new(keys.primary(), "o", Compression::Gzip);
                let b = [&h.encode()[..prefix], &tail[..]].concat();
                if let Ok(Some((parsed, used))) = Header::parse(&b) {
                    prop_assert!(used <= b.len());
                    prop_assert_eq!(&parsed.encode()[..], &b[..used]);
                    prop_assert!(parsed.open(&keys, None).is_err());
                }
            }

            /// Bit flips, truncation, extension, inserted, removed and
            /// changed bytes: the header is refused unless it is unchanged
            /// (extension only adds bytes after it).
            #[test]
            fn an_edited_header_is_refused(es in edits(21)) {
                let keys = ring();
                let (h, dk) = Header::seal_new(keys.primary(), "backups/x/db-0.lbk", Compression::Zstd);
                let good = h.encode();
                let b = apply_all(&es, &good);
                match Header::parse(&b) {
                    Err(_) | Ok(None) => {}
                    Ok(Some((parsed, used))) if b[..used] == good[..] => {
                        prop_assert_eq!(used, good.len());
                        prop_assert_eq!(parsed.open(&keys, Some("backups/x/db-0.lbk")).ok(), Some(dk));
                    }
                    Ok(Some((parsed, _))) => {
                        prop_assert!(parsed.open(&keys, Some("backups/x/db-0.lbk")).is_err());
                    }
                }
            }
        }
    }
}
