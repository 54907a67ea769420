//! What a directory holds, for comparing a restore with its source.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Path → content digest, mode, link target and mtime, of every entry.
pub fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let what = if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("link->{:?}", fs::read_link(&p).unwrap())
        } else {
            let d = ring::digest::digest(&ring::digest::SHA256, &fs::read(&p).unwrap());
            format!("file {} {}", m.size(), hex::encode(d.as_ref()))
        };
        let mtime = if rel.is_empty() { 0 } else { m.mtime() };
        out.insert(
            rel,
            format!("{what} mode {:o} mtime {mtime}", m.mode() & 0o7777),
        );
    }
    out
}
