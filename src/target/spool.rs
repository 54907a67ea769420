//! A parallel restore's local copy of the dump: `pg_restore --jobs` needs a
//! seekable file, and is given one only after every byte of it has
//! authenticated. The copy lives in a private directory (0700) removed on
//! drop, and is made only when the disk has room for it.

use std::path::{Path, PathBuf};

/// Room kept free beside the dump, for pg_restore and everything else.
const MARGIN: u64 = 256 << 20;

pub struct Spool {
    dir: PathBuf,
}

/// Why a restore cannot spool here, for the log that says it streams instead.
#[derive(Debug, PartialEq)]
pub struct NoRoom {
    pub dir: PathBuf,
    pub needed: u64,
    pub free: u64,
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} has {} MiB free, a parallel restore's copy of the dump needs {} MiB",
            self.dir.display(),
            self.free >> 20,
            self.needed >> 20
        )
    }
}

/// Whether `free` bytes hold a dump of `plain_size` bytes and the margin.
pub fn fits(plain_size: u64, free: u64) -> bool {
    plain_size.checked_add(MARGIN).is_some_and(|n| n <= free)
}

impl Spool {
    /// A spool in `parent` for a dump of `plain_size` bytes, or why not.
    pub fn new(parent: &Path, plain_size: u64) -> std::io::Result<Result<Spool, NoRoom>> {
        use std::os::unix::fs::DirBuilderExt;
        let st = rustix::fs::statvfs(parent)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if !fits(plain_size, free) {
            return Ok(Err(NoRoom {
                dir: parent.to_path_buf(),
                needed: plain_size.saturating_add(MARGIN),
                free,
            }));
        }
        let r: [u8; 8] = crate::keys::random_bytes();
        let dir = parent.join(format!("lifeboat-spool-{}", hex::encode(r)));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Ok(Spool { dir }))
    }

    /// The spool's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dump's file in the spool.
    pub fn file(&self) -> PathBuf {
        self.dir.join("dump")
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_fits_only_with_the_margin_left_free() {
        assert!(fits(1 << 30, (1 << 30) + MARGIN));
        assert!(!fits(1 << 30, (1 << 30) + MARGIN - 1));
        assert!(!fits(u64::MAX, u64::MAX));
    }

    #[test]
    fn a_spool_is_private_and_removed_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let spool = Spool::new(parent.path(), 1).unwrap().unwrap();
        std::fs::write(spool.file(), b"dump").unwrap();
        let dir = spool.file().parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(spool);
        assert!(!dir.exists());
        let Err(no) = Spool::new(parent.path(), u64::MAX - 1).unwrap() else {
            panic!("a dump bigger than the disk got a spool")
        };
        assert!(no.to_string().contains("needs"), "{no}");
    }
}
