//! A bucket backup's objects as files in a local directory (`lifeboat
//! restore --to-dir` of a bucket backup; what a bucket policy's drill does
//! in its scratch space): every chunk is read and authenticated, each
//! object's bytes land in one file of a fresh directory, named by its key
//! percent-encoded (so no key, however odd — `..`, `a/b` next to `a`, a
//! trailing `/` — can name a path outside the directory or clash with
//! another). Object metadata is not written: `--to-bucket` restores it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::TargetError;

/// Longest file name most filesystems take (NAME_MAX).
const NAME_MAX: usize = 255;

/// The file name of the object `key`: its bytes percent-encoded but for
/// ASCII letters, digits, `-`, `_` and a `.` that is not first; a name
/// longer than [`NAME_MAX`] is `~` and the key's SHA-256 instead.
pub fn file_name(key: &[u8]) -> String {
    let mut name = String::with_capacity(key.len());
    for (i, b) in key.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(*b as char),
            b'.' if i > 0 => name.push('.'),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    if name.is_empty() || name.len() > NAME_MAX {
        let d = ring::digest::digest(&ring::digest::SHA256, key);
        return format!("~{}", hex::encode(d.as_ref()));
    }
    name
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io { what, source }
}

/// A directory the objects are written into; it must not exist yet.
pub struct ObjectDir {
    dir: PathBuf,
}

impl ObjectDir {
    /// Creates `dir` (0700), or takes an empty one (not a link).
    pub fn create(dir: &Path) -> Result<Self, TargetError> {
        let made = std::fs::DirBuilder::new().mode(0o700).create(dir);
        let empty = || {
            std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
        };
        match made {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists || !empty() => {
                return Err(TargetError::Refused(format!(
                    "--to-dir {}: a bucket backup is written into a new or empty directory ({e})",
                    dir.display()
                )))
            }
            _ => {}
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// A new file for the object `key` (never following or replacing
    /// anything there).
    pub fn file(&self, key: &[u8]) -> Result<File, TargetError> {
        let path = self.dir.join(file_name(key));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(io(String::from_utf8_lossy(key)))
    }

    /// Appends authenticated bytes to the object's file.
    pub fn write(f: &mut File, key: &[u8], bytes: &[u8]) -> Result<(), TargetError> {
        f.write_all(bytes).map_err(io(String::from_utf8_lossy(key)))
    }

    /// Removes what was written (a destination that failed part-way).
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_one_plain_name() {
        assert_eq!(file_name(b"img/2026/a.jpg"), "img%2F2026%2Fa.jpg");
        assert_eq!(file_name(b".."), "%2E.");
        assert_eq!(file_name(b"a file+x=y"), "a%20file%2Bx%3Dy");
        assert_eq!(file_name("東".as_bytes()), "%E6%9D%B1");
        assert_ne!(file_name(b"a/"), file_name(b"a"));
        let long = file_name(&[b'/'; 100]);
        assert!(long.starts_with('~') && long.len() == 65, "{long}");
        for name in [file_name(b"/etc/passwd"), file_name(b"../x")] {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
    }
}
