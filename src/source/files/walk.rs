//! Walks a directory depth first, each directory's names sorted by their
//! bytes (the tree's order, [`crate::chunks::tree::cmp_paths`]), never
//! following symlinks. Streams: it holds the names of one directory per
//! level, never the whole tree.

use globset::{Glob, GlobSet, GlobSetBuilder};
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Include and exclude globs, matched against the path relative to the
/// backed-up directory (`a/b.txt`). Excluded paths are left out with
/// everything under them; with includes, only files and links matching one
/// are kept (directories are always walked and recorded).
pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

fn set(globs: &[String], flag: &str) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| format!("{flag} {g:?}: {e}"))?);
    }
    b.build().map_err(|e| format!("{flag}: {e}"))
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Self {
            include: if include.is_empty() {
                None
            } else {
                Some(set(include, "--include")?)
            },
            exclude: set(exclude, "--exclude")?,
        })
    }

    pub fn keeps(&self, rel: &[u8], is_dir: bool) -> bool {
        let p = Path::new(std::ffi::OsStr::from_bytes(rel));
        if self.exclude.is_match(p) {
            return false;
        }
        is_dir || self.include.as_ref().is_none_or(|i| i.is_match(p))
    }

    /// [`Filter::keeps`] for an object key, whose "directories" are never
    /// walked: an exclude matching one of them (`tmp` for `tmp/a/b`)
    /// leaves out every key under it, as it does for a tree of files.
    pub fn keeps_key(&self, key: &[u8]) -> bool {
        let under_excluded = key.iter().enumerate().any(|(i, &b)| {
            b == b'/'
                && self
                    .exclude
                    .is_match(Path::new(std::ffi::OsStr::from_bytes(&key[..i])))
        });
        !under_excluded && self.keeps(key, false)
    }
}

/// One entry met by the walk.
pub struct Found {
    /// Relative path, components joined by `/`; empty for the root.
    pub rel: Vec<u8>,
    pub path: PathBuf,
    pub meta: Metadata,
}

struct Level {
    rel: Vec<u8>,
    path: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

pub struct Walker {
    root: Option<PathBuf>,
    stack: Vec<Level>,
    filter: Filter,
}

/// An error the walk met, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WalkError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn walk_err(path: &Path, source: io::Error) -> WalkError {
    WalkError {
        path: path.display().to_string(),
        source,
    }
}

impl Walker {
    pub fn new(root: PathBuf, filter: Filter) -> Self {
        Self {
            root: Some(root),
            stack: Vec::new(),
            filter,
        }
    }

    fn descend(&mut self, rel: Vec<u8>, path: PathBuf) -> Result<(), WalkError> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&path).map_err(|e| walk_err(&path, e))? {
            names.push(e.map_err(|e| walk_err(&path, e))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.stack.push(Level {
            rel,
            path,
            names: names.into_iter(),
        });
        Ok(())
    }

    /// The next entry, in tree order.
    pub fn next_entry(&mut self) -> Option<Result<Found, WalkError>> {
        if let Some(root) = self.root.take() {
            let meta = match std::fs::symlink_metadata(&root) {
                Ok(m) if m.is_dir() => m,
                Ok(_) => return Some(Err(walk_err(&root, io::Error::other("not a directory")))),
                Err(e) => return Some(Err(walk_err(&root, e))),
            };
            if let Err(e) = self.descend(Vec::new(), root.clone()) {
                return Some(Err(e));
            }
            return Some(Ok(Found {
                rel: Vec::new(),
                path: root,
                meta,
            }));
        }
        loop {
            let level = self.stack.last_mut()?;
            let Some(name) = level.names.next() else {
                self.stack.pop();
                continue;
            };
            let mut rel = level.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let path = level.path.join(&name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Gone since the listing: nothing to back up.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Err(walk_err(&path, e))),
            };
            if !self.filter.keeps(&rel, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() {
                if let Err(e) = self.descend(rel.clone(), path.clone()) {
                    return Some(Err(e));
                }
            }
            return Some(Ok(Found { rel, path, meta }));
        }
    }
}

/// A relative path from the tree as an OS path.
pub fn rel_path(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(rel.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excluded_prefix_leaves_out_every_key_under_it() {
        let f = Filter::new(&["**/*.jpg".into()], &["tmp".into(), "a/*/c".into()]).unwrap();
        assert!(f.keeps_key(b"img/x.jpg"));
        assert!(!f.keeps_key(b"img/x.png"));
        for k in ["tmp/x.jpg", "tmp/d/x.jpg", "a/b/c/x.jpg", "tmp"] {
            assert!(!f.keeps_key(k.as_bytes()), "{k}");
        }
        assert!(f.keeps_key(b"tmpfile/x.jpg"));
    }

    #[test]
    fn walks_in_tree_order_with_globs() {
        let d = tempfile::tempdir().unwrap();
        for p in ["a/b", "a.b", "a/c/d", "skip/x"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        std::fs::write(d.path().join("a/b/f.txt"), b"x").unwrap();
        std::fs::write(d.path().join("a/b/g.log"), b"x").unwrap();
        std::os::unix::fs::symlink("..", d.path().join("a/loop")).unwrap();
        let f = Filter::new(&["**/*.txt".into(), "**/loop".into()], &["skip".into()]).unwrap();
        let mut w = Walker::new(d.path().to_path_buf(), f);
        let mut seen = Vec::new();
        while let Some(e) = w.next_entry() {
            seen.push(String::from_utf8(e.unwrap().rel).unwrap());
        }
        assert_eq!(
            seen,
            ["", "a", "a/b", "a/b/f.txt", "a/c", "a/c/d", "a/loop", "a.b"]
        );
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| crate::chunks::tree::cmp_paths(a.as_bytes(), b.as_bytes()));
        assert_eq!(sorted, seen);
    }
}
