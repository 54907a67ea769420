//! Restoring a file backup into a local directory (a PVC mount inside the
//! restore Job, or any directory by hand).
//!
//! Everything is written into a fresh staging directory beside the target
//! (`.<name>.lifeboat-<random>`, mode 0700, created by this process), each
//! entry created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdir`, `symlink`,
//! `link`), so no link planted in the target is ever followed; the staging
//! directory is renamed onto the target only when every entry and every
//! chunk authenticated. A failure removes it: a tampered backup restores
//! nothing. Directory metadata is applied after their contents (post
//! order), file metadata after the data, ownership before the mode (chown
//! clears set-id bits).

use super::TargetError;
use crate::chunks::tree::{Entry, Kind};
use crate::chunks::ChunkId;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a restore wrote.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Restored {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes: u64,
}

pub struct Restorer {
    target: PathBuf,
    staging: PathBuf,
    /// Directories whose metadata waits for their contents.
    open_dirs: Vec<Entry>,
    /// Restore owners (only root can).
    ownership: bool,
    /// The file written last (writes come in runs per file).
    open: Option<(Vec<u8>, File)>,
    pub restored: Restored,
}

pub(super) fn io_err(what: impl std::fmt::Display, source: io::Error) -> TargetError {
    TargetError::Io {
        what: what.to_string(),
        source,
    }
}

/// A tree path must be relative names joined by `/`: no `..`, `.` or empty
/// component can take a write outside the staging directory.
pub(super) fn checked(rel: &[u8]) -> Result<&Path, TargetError> {
    let ok = rel.is_empty()
        || rel
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0));
    if !ok {
        return Err(TargetError::Refused(format!(
            "the backup holds the path {:?}, which is not a plain relative path",
            String::from_utf8_lossy(rel)
        )));
    }
    Ok(Path::new(OsStr::from_bytes(rel)))
}

pub(super) fn is_under(dir: &[u8], path: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

impl Restorer {
    /// Prepares a restore into `target`, which must not exist or be an
    /// empty directory; its parent must exist.
    pub fn new(target: &Path) -> Result<Self, TargetError> {
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Ok(m) if m.is_dir() => {
                let mut entries =
                    std::fs::read_dir(target).map_err(|e| io_err(target.display(), e))?;
                if entries.next().is_some() {
                    return Err(TargetError::Refused(format!(
                        "--to-dir {}: not empty (give an empty or new directory)",
                        target.display()
                    )));
                }
            }
            Ok(_) => {
                return Err(TargetError::Refused(format!(
                    "--to-dir {}: exists and is not a directory",
                    target.display()
                )))
            }
            Err(e) => return Err(io_err(target.display(), e)),
        }
        let name = target.file_name().ok_or_else(|| {
            TargetError::Refused(format!("--to-dir {}: names no directory", target.display()))
        })?;
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let r: [u8; 6] = crate::keys::random_bytes();
        let mut staging_name = std::ffi::OsString::from(".");
        staging_name.push(name);
        staging_name.push(format!(".lifeboat-{}", hex::encode(r)));
        let staging = parent.join(staging_name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| io_err(staging.display(), e))?;
        let me = std::fs::symlink_metadata(&staging).map_err(|e| io_err(staging.display(), e))?;
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            open_dirs: Vec::new(),
            ownership: me.uid() == 0,
            open: None,
            restored: Restored::default(),
        })
    }

    /// First pass: creates one entry. Files are created empty at their
    /// size (their data comes by [`Restorer::write_at`], pack by pack);
    /// directories stay 0700 until [`Restorer::settle`].
    pub fn create(&mut self, e: &Entry) -> Result<(), TargetError> {
        let path = self.staging.join(checked(&e.path)?);
        let shown = e.display();
        match e.kind {
            Kind::Dir => {
                if !e.path.is_empty() {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(|err| io_err(&shown, err))?;
                }
                self.restored.dirs += 1;
            }
            Kind::File => {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(|err| io_err(&shown, err))?;
                // Holes, trailing ones too, stay holes: only data is written.
                f.set_len(e.size).map_err(|err| io_err(&shown, err))?;
                self.restored.files += 1;
            }
            Kind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), &path)
                    .map_err(|err| io_err(&shown, err))?;
                if self.ownership {
                    std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid))
                        .map_err(|err| io_err(&shown, err))?;
                }
                self.xattrs_at(&path, e)?;
                self.times_at(&path, e)?;
                self.restored.symlinks += 1;
            }
            Kind::Hardlink => {
                let first = self.staging.join(checked(&e.target)?);
                // link(2) does not follow a symlink at `first`.
                std::fs::hard_link(&first, &path).map_err(|err| io_err(&shown, err))?;
                self.restored.hardlinks += 1;
            }
        }
        Ok(())
    }

    /// Second pass: `data` at `at` in the file created at `rel`.
    pub fn write_at(&mut self, rel: &[u8], at: u64, data: &[u8]) -> Result<(), TargetError> {
        if self.open.as_ref().is_none_or(|(p, _)| p.as_slice() != rel) {
            let path = self.staging.join(checked(rel)?);
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
                .map_err(|err| io_err(String::from_utf8_lossy(rel), err))?;
            self.open = Some((rel.to_vec(), f));
        }
        let (_, f) = self.open.as_ref().expect("opened");
        f.write_all_at(data, at)
            .map_err(|err| io_err(String::from_utf8_lossy(rel), err))?;
        self.restored.bytes += data.len() as u64;
        Ok(())
    }

    /// Third pass: an entry's metadata, once every byte is written: files
    /// now, directories after their contents (post order).
    pub fn settle(&mut self, e: Entry) -> Result<(), TargetError> {
        self.open = None;
        while let Some(d) = self.open_dirs.last() {
            if is_under(&d.path, &e.path) {
                break;
            }
            let d = self.open_dirs.pop().expect("last");
            self.finish_dir(&d)?;
        }
        match e.kind {
            Kind::Dir => self.open_dirs.push(e),
            Kind::File => {
                let path = self.staging.join(checked(&e.path)?);
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(|err| io_err(e.display(), err))?;
                file_meta(&f, &e, self.ownership)?;
            }
            Kind::Symlink | Kind::Hardlink => {}
        }
        Ok(())
    }

    fn xattrs_at(&self, path: &Path, e: &Entry) -> Result<(), TargetError> {
        for (k, v) in &e.xattrs {
            rustix::fs::lsetxattr(
                path,
                OsStr::from_bytes(k),
                v,
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|err| {
                io_err(
                    format!("{}: xattr {}", e.display(), String::from_utf8_lossy(k)),
                    err.into(),
                )
            })?;
        }
        Ok(())
    }

    fn times_at(&self, path: &Path, e: &Entry) -> Result<(), TargetError> {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &timestamps(e),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|err| io_err(e.display(), err.into()))
    }

    fn finish_dir(&self, e: &Entry) -> Result<(), TargetError> {
        let path = self.staging.join(checked(&e.path)?);
        let shown = e.display();
        if self.ownership {
            std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid))
                .map_err(|err| io_err(&shown, err))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
            .map_err(|err| io_err(&shown, err))?;
        self.xattrs_at(&path, e)?;
        self.times_at(&path, e)
    }

    /// Applies the remaining directories' metadata and moves the staging
    /// directory onto the target.
    pub fn finish(mut self) -> Result<Restored, TargetError> {
        self.open = None;
        while let Some(d) = self.open_dirs.pop() {
            if let Err(e) = self.finish_dir(&d) {
                self.discard();
                return Err(e);
            }
        }
        // rename(2) replaces an empty directory.
        if let Err(e) = std::fs::rename(&self.staging, &self.target) {
            self.discard();
            return Err(io_err(self.target.display(), e));
        }
        Ok(self.restored)
    }

    /// Removes everything written.
    pub fn discard(&self) {
        // Directories restored read-only must be writable to be emptied.
        fn writable(p: &Path) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::set_permissions(
                            e.path(),
                            std::fs::Permissions::from_mode(0o700),
                        );
                        writable(&e.path());
                    }
                }
            }
        }
        let _ = std::fs::set_permissions(&self.staging, std::fs::Permissions::from_mode(0o700));
        writable(&self.staging);
        if let Err(e) = std::fs::remove_dir_all(&self.staging) {
            tracing::warn!(dir = %self.staging.display(), error = %e, "could not remove the partial restore");
        }
    }
}

/// Writes a file entry's data at its offsets (holes stay holes) and sets
/// its size; each chunk's length is checked against the tree.
pub(super) fn write_data(
    f: &File,
    e: &Entry,
    chunk: &mut dyn FnMut(&ChunkId) -> Result<Vec<u8>, TargetError>,
    restored: &mut Restored,
) -> Result<(), TargetError> {
    let shown = e.display();
    for x in &e.extents {
        let mut at = x.offset;
        for c in &x.chunks {
            let data = chunk(&c.id)?;
            if data.len() != c.len as usize {
                return Err(TargetError::Refused(format!(
                    "{shown}: a chunk is {} bytes, the tree says {}",
                    data.len(),
                    c.len
                )));
            }
            f.write_all_at(&data, at)
                .map_err(|err| io_err(&shown, err))?;
            at += data.len() as u64;
            restored.bytes += data.len() as u64;
        }
    }
    // Trailing holes: the size, not the data, ends the file.
    f.set_len(e.size).map_err(|err| io_err(&shown, err))
}

/// Owner (when `ownership`), mode, xattrs and times of an open file or
/// directory.
pub(super) fn file_meta(
    f: &impl std::os::fd::AsFd,
    e: &Entry,
    ownership: bool,
) -> Result<(), TargetError> {
    let shown = e.display();
    if ownership {
        rustix::fs::fchown(
            f,
            Some(rustix::fs::Uid::from_raw(e.uid)),
            Some(rustix::fs::Gid::from_raw(e.gid)),
        )
        .map_err(|err| io_err(&shown, err.into()))?;
    }
    rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(e.mode))
        .map_err(|err| io_err(&shown, err.into()))?;
    for (k, v) in &e.xattrs {
        rustix::fs::fsetxattr(f, OsStr::from_bytes(k), v, rustix::fs::XattrFlags::empty())
            .map_err(|err| {
                io_err(
                    format!("{shown}: xattr {}", String::from_utf8_lossy(k)),
                    err.into(),
                )
            })?;
    }
    rustix::fs::futimens(f, &timestamps(e)).map_err(|err| io_err(&shown, err.into()))
}

pub(super) fn timestamps(e: &Entry) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: e.mtime.0,
        tv_nsec: e.mtime.1 as _,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_target_are_refused() {
        for bad in [&b"../x"[..], b"a/../../x", b"/abs", b"a//b", b"./a", b"a/"] {
            assert!(checked(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(checked(b"a/b\nc\xff").is_ok());
        assert!(is_under(b"a", b"a/b") && !is_under(b"a", b"ab") && is_under(b"", b"x"));
    }
}
