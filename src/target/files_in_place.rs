//! Restoring a file backup into a directory that already holds files (a
//! live volume): `--overwrite never | if-newer | always`, `--path` to
//! restore only some paths, `--delete-extra` to remove what the backup does
//! not hold.
//!
//! Nothing planted in the target is followed: every path is walked from
//! the target's directory one component at a time with `openat(O_NOFOLLOW |
//! O_DIRECTORY)`, so a symlink where a directory should be is refused, not
//! descended; an entry is written under a fresh temporary name
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, `symlinkat`, `linkat`) and renamed over
//! the old one (`renameat` replaces a link, never its target). Unlike the
//! fresh-directory restore ([`super::files`]) this one is not all or
//! nothing: a failure stops it with what was restored so far in place.

use super::files::{checked, file_meta, io_err, is_under, timestamps, write_data, Restored};
use super::TargetError;
use crate::chunks::tree::{Entry, Kind};
use crate::chunks::ChunkId;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What to do with a path the target already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Keep it.
    Never,
    /// Replace it when the backup's copy was modified later.
    IfNewer,
    /// Replace it.
    Always,
}

#[derive(Clone, Debug)]
pub struct InPlaceOptions {
    pub overwrite: Overwrite,
    pub delete_extra: bool,
    /// Restore only these paths (relative, `/`-separated) and what is under them.
    pub paths: Vec<Vec<u8>>,
}

/// What an in-place restore did beyond [`Restored`].
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct InPlaceReport {
    pub restored: Restored,
    /// Existing entries kept (by the overwrite mode).
    pub kept: u64,
    /// Entries removed by `--delete-extra`.
    pub deleted: u64,
}

pub struct InPlace {
    root: OwnedFd,
    opts: InPlaceOptions,
    ownership: bool,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<Entry>,
    /// Paths the backup holds (for `--delete-extra`).
    seen: HashSet<Vec<u8>>,
    pub report: InPlaceReport,
}

fn sys(what: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> TargetError {
    move |e| io_err(what, e.into())
}

fn shown(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

fn temp_name() -> Vec<u8> {
    let r: [u8; 6] = crate::keys::random_bytes();
    format!(".lifeboat-{}", hex::encode(r)).into_bytes()
}

/// A subdirectory of `dir`, never through a symlink.
fn open_dir(dir: &OwnedFd, name: &[u8], rel: &[u8]) -> Result<OwnedFd, TargetError> {
    rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => TargetError::Refused(format!(
            "{}: not a directory in the target (a symlink or a file); not followed",
            shown(rel)
        )),
        e => io_err(shown(rel), e.into()),
    })
}

impl InPlace {
    /// Restores into the existing directory `target`.
    pub fn new(target: &Path, opts: InPlaceOptions) -> Result<Self, TargetError> {
        let root = rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            TargetError::Refused(format!(
                "--to-dir {}: not an existing directory ({e})",
                target.display()
            ))
        })?;
        for p in &opts.paths {
            checked(p)?;
        }
        Ok(Self {
            root,
            opts,
            ownership: super::data_dir::running_as_root(),
            dirs: Vec::new(),
            seen: HashSet::new(),
            report: InPlaceReport::default(),
        })
    }

    /// Whether `path` is restored: under a chosen path, or a directory
    /// leading to one (created, so the chosen path has a place).
    fn chosen(&self, path: &[u8], is_dir: bool) -> bool {
        self.opts.paths.is_empty()
            || self
                .opts
                .paths
                .iter()
                .any(|p| p == path || is_under(p, path) || (is_dir && is_under(path, p)))
    }

    /// The directory holding `rel`, walked from the root, and `rel`'s name.
    fn parent<'p>(&self, rel: &'p [u8]) -> Result<(OwnedFd, &'p [u8]), TargetError> {
        let mut dir = rustix::io::dup(&self.root).map_err(sys("--to-dir"))?;
        let mut parts = rel.split(|&b| b == b'/').peekable();
        let mut walked = 0;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                return Ok((dir, part));
            }
            walked += part.len() + 1;
            dir = open_dir(&dir, part, &rel[..walked - 1])?;
        }
        Ok((dir, rel))
    }

    /// Whether to write `e` where the target may already have something.
    fn replaces(&mut self, dir: &OwnedFd, name: &[u8], e: &Entry) -> Result<bool, TargetError> {
        match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(true),
            Err(err) => Err(io_err(shown(&e.path), err.into())),
            Ok(st) => {
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory
                {
                    return Err(TargetError::Refused(format!(
                        "{}: a directory in the target, a {} in the backup; not replaced",
                        e.display(),
                        if e.kind == Kind::Symlink {
                            "symlink"
                        } else {
                            "file"
                        }
                    )));
                }
                let write = match self.opts.overwrite {
                    Overwrite::Never => false,
                    Overwrite::Always => true,
                    Overwrite::IfNewer => {
                        (e.mtime.0, e.mtime.1 as i64) > (st.st_mtime, st.st_mtime_nsec as i64)
                    }
                };
                if !write {
                    self.report.kept += 1;
                }
                Ok(write)
            }
        }
    }

    /// Writes one entry; `chunk` fetches a chunk's authenticated plaintext.
    pub fn apply(
        &mut self,
        e: Entry,
        chunk: &mut dyn FnMut(&ChunkId) -> Result<Vec<u8>, TargetError>,
    ) -> Result<(), TargetError> {
        checked(&e.path)?;
        if !self.chosen(&e.path, e.kind == Kind::Dir) {
            return Ok(());
        }
        if self.opts.delete_extra {
            self.seen.insert(e.path.clone());
        }
        if e.path.is_empty() {
            self.dirs.push(e);
            return Ok(());
        }
        let (dir, name) = self.parent(&e.path)?;
        let name_os = OsStr::from_bytes(name);
        if e.kind == Kind::Dir {
            match rustix::fs::mkdirat(&dir, name_os, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    // Refuses a symlink or a file where the directory goes.
                    drop(open_dir(&dir, name, &e.path)?);
                }
                Err(err) => return Err(io_err(e.display(), err.into())),
            }
            self.report.restored.dirs += 1;
            self.dirs.push(e);
            return Ok(());
        }
        if !self.replaces(&dir, name, &e)? {
            return Ok(());
        }
        let tmp = temp_name();
        let tmp_os = OsStr::from_bytes(&tmp);
        let written = self.write_temp(&dir, tmp_os, &e, chunk);
        let placed = written.and_then(|()| {
            rustix::fs::renameat(&dir, tmp_os, &dir, name_os).map_err(sys(e.display()))
        });
        if placed.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp_os, AtFlags::empty());
        }
        placed
    }

    fn write_temp(
        &mut self,
        dir: &OwnedFd,
        tmp: &OsStr,
        e: &Entry,
        chunk: &mut dyn FnMut(&ChunkId) -> Result<Vec<u8>, TargetError>,
    ) -> Result<(), TargetError> {
        let what = e.display();
        match e.kind {
            Kind::File => {
                let fd = rustix::fs::openat(
                    dir,
                    tmp,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(sys(&what))?;
                let f = File::from(fd);
                write_data(&f, e, chunk, &mut self.report.restored)?;
                file_meta(&f, e, self.ownership)?;
                self.report.restored.files += 1;
            }
            Kind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&e.target), dir, tmp)
                    .map_err(sys(&what))?;
                if self.ownership {
                    rustix::fs::chownat(
                        dir,
                        tmp,
                        Some(rustix::fs::Uid::from_raw(e.uid)),
                        Some(rustix::fs::Gid::from_raw(e.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(sys(&what))?;
                }
                rustix::fs::utimensat(dir, tmp, &timestamps(e), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(sys(&what))?;
                self.report.restored.symlinks += 1;
            }
            Kind::Hardlink => {
                let (first_dir, first) = self.parent(checked(&e.target).map(|_| &e.target[..])?)?;
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself.
                rustix::fs::linkat(
                    &first_dir,
                    OsStr::from_bytes(first),
                    dir,
                    tmp,
                    AtFlags::empty(),
                )
                .map_err(sys(&what))?;
                self.report.restored.hardlinks += 1;
            }
            Kind::Dir => unreachable!("directories are made in apply"),
        }
        Ok(())
    }

    /// Applies the directories' metadata (deepest first) and, with
    /// `--delete-extra`, removes what the backup does not hold.
    pub fn finish(mut self) -> Result<InPlaceReport, TargetError> {
        if self.opts.delete_extra {
            let root = rustix::io::dup(&self.root).map_err(sys("--to-dir"))?;
            self.delete_extra(root, Vec::new())?;
        }
        while let Some(d) = self.dirs.pop() {
            let fd = if d.path.is_empty() {
                rustix::io::dup(&self.root).map_err(sys("--to-dir"))?
            } else {
                let (dir, name) = self.parent(&d.path)?;
                open_dir(&dir, name, &d.path)?
            };
            file_meta(&fd, &d, self.ownership)?;
        }
        Ok(self.report)
    }

    fn delete_extra(&mut self, dir: OwnedFd, rel: Vec<u8>) -> Result<(), TargetError> {
        let mut names = Vec::new();
        for ent in rustix::fs::Dir::read_from(&dir).map_err(sys(shown(&rel)))? {
            let ent = ent.map_err(sys(shown(&rel)))?;
            let name = ent.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        for name in names {
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let st = rustix::fs::statat(&dir, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(sys(shown(&path)))?;
            let is_dir =
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
            if self.seen.contains(&path) {
                if is_dir {
                    let sub = open_dir(&dir, &name, &path)?;
                    self.delete_extra(sub, path)?;
                }
            } else if self.chosen(&path, false) {
                remove(&dir, &name, &path, is_dir)?;
                self.report.deleted += 1;
            } else if is_dir && self.chosen(&path, true) {
                let sub = open_dir(&dir, &name, &path)?;
                self.delete_extra(sub, path)?;
            }
        }
        Ok(())
    }
}

/// Removes `name` from `dir`, a directory with everything under it; a
/// symlink is removed, never followed.
fn remove(dir: &OwnedFd, name: &[u8], rel: &[u8], is_dir: bool) -> Result<(), TargetError> {
    if is_dir {
        let sub = open_dir(dir, name, rel)?;
        let mut names = Vec::new();
        for ent in rustix::fs::Dir::read_from(&sub).map_err(sys(shown(rel)))? {
            let ent = ent.map_err(sys(shown(rel)))?;
            let n = ent.file_name().to_bytes().to_vec();
            if n != b"." && n != b".." {
                let d = ent.file_type() == rustix::fs::FileType::Directory;
                names.push((n, d));
            }
        }
        for (n, d) in names {
            let mut p = rel.to_vec();
            p.push(b'/');
            p.extend_from_slice(&n);
            remove(&sub, &n, &p, d)?;
        }
    }
    let flags = if is_dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    rustix::fs::unlinkat(dir, OsStr::from_bytes(name), flags).map_err(sys(shown(rel)))
}
