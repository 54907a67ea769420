//! Master keys: the key file, key ids, and wrapping of per-object data keys.
//!
//! A key file holds one or more lines `LIFEBOAT-KEY-1 <id> <base64 of 32 bytes>`.
//! The first key encrypts; every key decrypts, so rotation is "put the new key
//! first" and history stays readable. Key material never leaves this module
//! except as ring keys; `Debug` prints ids only.

use crate::owner::Owner;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::path::{Path, PathBuf};

pub const KEY_LEN: usize = 32;
pub const WRAP_NONCE_LEN: usize = 12;
/// nonce ‖ encrypted 32-byte key ‖ 16-byte tag
pub const WRAPPED_LEN: usize = WRAP_NONCE_LEN + KEY_LEN + 16;
const LINE_TAG: &str = "LIFEBOAT-KEY-1";
/// The HKDF salt of [`MasterKey::derive`] (docs/FORMAT.md §7).
const DERIVE_SALT: &[u8] = b"lifeboat derive v2";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}, line {line}: {problem}")]
    Parse {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("key file {0} holds no key")]
    Empty(PathBuf),
    #[error("key file {path} can be read by every user of this machine (mode {mode:04o}); restrict it: chmod 600 {path} (or 440 for a group)")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("key file {path} has key id {id:?} twice")]
    DuplicateId { path: PathBuf, id: String },
    #[error("this data was encrypted with key id {needed:?}, which the key file does not hold (it holds: {have})")]
    UnknownKeyId { needed: String, have: String },
    #[error("key {id:?} from the key file does not decrypt this data: the key file holds different key material under that id, or the data was altered")]
    Unwrap { id: String },
    #[error("invalid key id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    BadId(String),
    #[error("{path} already exists; refusing to overwrite a key file (use --add to put a new key first)")]
    Exists { path: PathBuf },
    #[error("writing key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One master key. Debug and Display show the id only.
pub struct MasterKey {
    pub id: String,
    key: LessSafeKey,
    /// HKDF-SHA-256 pseudorandom key extracted from the material, for
    /// keys that must be the same wherever this master key is (chunk ids).
    prk: ring::hkdf::Prk,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source failed");
    b
}

impl MasterKey {
    pub fn new(id: &str, material: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        if !valid_key_id(id) {
            return Err(KeyError::BadId(id.to_string()));
        }
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).expect("32-byte key"));
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, DERIVE_SALT).extract(material);
        Ok(Self {
            id: id.to_string(),
            key,
            prk,
        })
    }

    /// A 32-byte key derived from this master key for the purpose `info`
    /// (HKDF-SHA-256, RFC 5869; salt `lifeboat derive v2`): the same on
    /// every machine and destination that holds the master key, and
    /// unrelated to it for anyone who does not.
    pub fn derive(&self, info: &[u8]) -> [u8; KEY_LEN] {
        struct Len;
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                KEY_LEN
            }
        }
        let mut out = [0u8; KEY_LEN];
        self.prk
            .expand(&[info], Len)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA-256 gives 32 bytes");
        out
    }

    /// Encrypts `data_key` with this master key; `aad` binds it to its context.
    pub fn wrap(&self, data_key: &[u8; KEY_LEN], aad: &[u8]) -> [u8; WRAPPED_LEN] {
        let nonce: [u8; WRAP_NONCE_LEN] = random_bytes();
        let mut buf = zeroize::Zeroizing::new(data_key.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *buf,
            )
            .expect("sealing 32 bytes cannot fail");
        let mut out = [0u8; WRAPPED_LEN];
        out[..WRAP_NONCE_LEN].copy_from_slice(&nonce);
        out[WRAP_NONCE_LEN..].copy_from_slice(&buf);
        out
    }

    pub fn unwrap(
        &self,
        wrapped: &[u8; WRAPPED_LEN],
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>, KeyError> {
        let nonce: [u8; WRAP_NONCE_LEN] = wrapped[..WRAP_NONCE_LEN].try_into().expect("len");
        // Cleared on drop, as the unwrapped key is: data and MAC keys do not
        // outlive the object they open.
        let mut buf = zeroize::Zeroizing::new(wrapped[WRAP_NONCE_LEN..].to_vec());
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| KeyError::Unwrap {
                id: self.id.clone(),
            })?;
        Ok(zeroize::Zeroizing::new(
            <[u8; KEY_LEN]>::try_from(&*plain).expect("32-byte key"),
        ))
    }
}

/// The keys from one key file, first one encrypts.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<MasterKey>,
    /// Whose backups these keys vouch for here (src/owner.rs); `None`: any.
    owner: Option<Owner>,
}

impl Keyring {
    /// Reads the key file, refusing one that users other than its owner
    /// and group can read or write: a master key is not for everyone on
    /// the machine (Jobs mount it 0440).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(read)?);
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        // docs/FORMAT.md §2: lines end with `\n` (or `\r\n`); fields are
        // separated, and lines padded, by spaces and tabs only.
        const BLANK: [char; 2] = [' ', '\t'];
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim_matches(BLANK);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: &str| KeyError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                problem: problem.to_string(),
            };
            let mut it = line.split(BLANK).filter(|field| !field.is_empty());
            let (Some(tag), Some(id), Some(b64), None) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad("expected `LIFEBOAT-KEY-1 <id> <base64 key>`"));
            };
            if tag != LINE_TAG {
                return Err(bad("line does not start with LIFEBOAT-KEY-1"));
            }
            if !valid_key_id(id) {
                return Err(bad(
                    "key id must be 1 to 64 characters from A-Z a-z 0-9 . _ -",
                ));
            }
            // Cleared on drop: ring keeps its own key schedule, and the
            // decoded bytes need not outlive it.
            let decoded = zeroize::Zeroizing::new(B64.decode(b64).unwrap_or_default());
            let material = zeroize::Zeroizing::new(
                <[u8; KEY_LEN]>::try_from(decoded.as_slice())
                    .map_err(|_| bad("key is not base64 of exactly 32 bytes"))?,
            );
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId {
                    path: path.to_path_buf(),
                    id: id.to_string(),
                });
            }
            keys.push(MasterKey::new(id, &material)?);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(path.to_path_buf()));
        }
        Ok(Self { keys, owner: None })
    }

    /// Restricts what these keys authenticate to one policy's backups:
    /// manifests are sealed as its and opened only if they are its.
    pub fn for_owner(mut self, owner: Option<Owner>) -> Self {
        self.owner = owner;
        self
    }

    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    /// The key new data is encrypted with.
    pub fn primary(&self) -> &MasterKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Result<&MasterKey, KeyError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKeyId {
                needed: id.to_string(),
                have: self.ids().join(", "),
            })
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }
}

/// A new key line for a key file.
pub fn new_key_line(id: &str) -> Result<String, KeyError> {
    if !valid_key_id(id) {
        return Err(KeyError::BadId(id.to_string()));
    }
    let material: [u8; KEY_LEN] = random_bytes();
    Ok(format!("{LINE_TAG} {id} {}\n", B64.encode(material)))
}

/// Writes a key file readable by its owner only. `add` puts the new key first
/// in an existing file (rotation); otherwise an existing file is refused.
pub fn write_new_key(path: &Path, id: &str, add: bool) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let line = new_key_line(id)?;
    let content = if add {
        let old = Keyring::load(path)?;
        if old.get(id).is_ok() {
            return Err(KeyError::DuplicateId {
                path: path.to_path_buf(),
                id: id.to_string(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(werr)?;
        format!("{line}{text}")
    } else {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        format!("# lifeboat master keys: the first encrypts, all decrypt. Keep a copy outside the cluster.\n{line}")
    };
    // Write beside, then rename: a crash never leaves half a key file.
    let tmp = path.with_extension("tmp-keygen");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(content.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// The AEAD key for a data key (used by the stream and the manifest MAC).
pub fn aead_key(material: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, material).expect("32-byte key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(text: &str) -> Result<Keyring, KeyError> {
        Keyring::parse(text, Path::new("keys"))
    }

    #[test]
    fn first_key_encrypts_all_decrypt() {
        let text = format!(
            "{}{}",
            new_key_line("new").unwrap(),
            new_key_line("old").unwrap()
        );
        let ring = ring_of(&text).unwrap();
        assert_eq!(ring.primary().id, "new");
        let dk = random_bytes::<32>();
        let w = ring.get("old").unwrap().wrap(&dk, b"ctx");
        assert_eq!(*ring.get("old").unwrap().unwrap(&w, b"ctx").unwrap(), dk);
        assert!(matches!(
            ring.get("old").unwrap().unwrap(&w, b"other"),
            Err(KeyError::Unwrap { .. })
        ));
    }

    #[test]
    fn errors_name_the_line_and_never_the_key() {
        let err = ring_of("# c\nLIFEBOAT-KEY-1 k1 c2VjcmV0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("32 bytes"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        assert!(matches!(
            ring_of("\n# only comments\n"),
            Err(KeyError::Empty(_))
        ));
        let dup = format!(
            "{}{}",
            new_key_line("a").unwrap(),
            new_key_line("a").unwrap()
        );
        assert!(matches!(ring_of(&dup), Err(KeyError::DuplicateId { .. })));
    }

    #[test]
    fn unknown_id_names_needed_and_held() {
        let ring = ring_of(&new_key_line("k2").unwrap()).unwrap();
        let err = ring.get("k1").unwrap_err().to_string();
        assert!(err.contains("\"k1\"") && err.contains("k2"), "{err}");
        assert!(!format!("{ring:?}").contains('='));
    }

    /// Found by `props::an_edited_key_file_is_read_as_the_spec_says`: a
    /// vertical tab (byte 0x0b) inserted after `LIFEBOAT-KEY-1` was read as a
    /// separator; the parser split on any Unicode white space (NBSP, U+3000,
    /// form feed, a lone CR too) where the spec says spaces and tabs.
    #[test]
    fn only_spaces_and_tabs_separate_fields() {
        let key = B64.encode([7u8; KEY_LEN]);
        for sep in ["\u{b}", "\u{c}", "\u{a0}", "\u{3000}", "\u{85}", "\r"] {
            let text = format!("LIFEBOAT-KEY-1{sep}k1 {key}\n");
            assert!(ring_of(&text).is_err(), "{sep:?} separated fields");
        }
        let text = format!("\t LIFEBOAT-KEY-1 \t k1\t\t{key}  \r\n# done\r\n \r\n");
        assert_eq!(ring_of(&text).unwrap().ids(), ["k1"]);
    }

    #[test]
    fn key_ids_are_checked() {
        assert!(valid_key_id("prod-2026.11_a"));
        assert!(!valid_key_id(""));
        assert!(!valid_key_id("a b"));
        assert!(!valid_key_id(&"x".repeat(65)));
    }

    /// Key files against docs/FORMAT.md §2, read by a second, literal
    /// reading of it: the parser accepts exactly the files the spec allows.
    mod props {
        use super::*;
        use crate::hostile::{apply_all, config, edits};
        use proptest::prelude::*;

        /// The key ids of `text` if it is a key file by the spec, else None.
        fn spec_ids(text: &str) -> Option<Vec<String>> {
            const B64_CHARS: &str =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut ids: Vec<String> = Vec::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                let line = line.trim_matches([' ', '\t']);
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
                let [tag, id, key] = fields[..] else {
                    return None;
                };
                let id_ok = (1..=64).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
                // 32 bytes: 43 digits, the last with its 2 low bits zero, then `=`.
                let key_ok = key.len() == 44
                    && key[..43].chars().all(|c| B64_CHARS.contains(c))
                    && "AEIMQUYcgkosw048".contains(&key[42..43])
                    && key.ends_with('=');
                if tag != "LIFEBOAT-KEY-1" || !id_ok || !key_ok || ids.iter().any(|i| i == id) {
                    return None;
                }
                ids.push(id.to_string());
            }
            (!ids.is_empty()).then_some(ids)
        }

        fn parsed_ids(text: &str) -> Option<Vec<String>> {
            Keyring::parse(text, Path::new("keys"))
                .ok()
                .map(|r| r.ids())
        }

        /// Pieces key files are made of, and what hand editing adds.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(LINE_TAG.to_string()),
                Just(B64.encode([7u8; KEY_LEN])),
                Just(B64.encode([1u8; 31])),
                Just("#".to_string()),
                proptest::sample::select(
                    &[" ", "\t", "  ", "\r", "\u{a0}", "\u{b}", "\u{c}", "\u{3000}", "\u{85}"][..]
                )
                .prop_map(String::from),
                "[A-Za-z0-9._-]{0,66}",
                ".{0,4}",
            ]
        }

        /// A key line whose blanks are drawn from `piece`'s separators.
        fn key_line() -> impl Strategy<Value = String> {
            let blank =
                || proptest::sample::select(&["", " ", "\t", " \t ", "\u{b}", "\u{a0}", "\r"][..]);
            let key = proptest::sample::select(vec![
                B64.encode([7u8; KEY_LEN]),
                B64.encode([9u8; KEY_LEN]),
            ]);
            (
                blank(),
                blank(),
                "[A-Za-z0-9._-]{0,3}|k[0-9]",
                blank(),
                key,
                blank(),
            )
                .prop_map(|(a, b, id, c, key, d)| format!("{a}{LINE_TAG}{b}{id}{c}{key}{d}"))
        }

        fn key_file() -> impl Strategy<Value = String> {
            let line = prop_oneof![
                key_line(),
                proptest::collection::vec(piece(), 0..8).prop_map(|p| p.concat()),
            ];
            (proptest::collection::vec(line, 0..4), any::<bool>())
                .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }))
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn random_text_is_read_as_the_spec_says(text in key_file()) {
                prop_assert_eq!(parsed_ids(&text), spec_ids(&text), "{:?}", text);
            }

            /// Any edit of a valid key file: accepted only if still valid.
            #[test]
            fn an_edited_key_file_is_read_as_the_spec_says(es in edits(16)) {
                let good = format!(
                    "# keys\n{}{}",
                    new_key_line("new-2").unwrap(),
                    new_key_line("old.1").unwrap()
                );
                let bytes = apply_all(&es, good.as_bytes());
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    prop_assert_eq!(parsed_ids(text), spec_ids(text), "{:?}", text);
                }
            }
        }
    }

    #[test]
    fn a_key_file_every_user_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, new_key_line("k").unwrap()).unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o440, true),
            (0o640, true),
            (0o644, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = Keyring::load(&path);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if !ok {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("chmod 600") && e.contains(&format!("{mode:04o}")),
                    "{e}"
                );
            }
        }
    }
}
