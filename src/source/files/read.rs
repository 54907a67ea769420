//! Reading one entry: its metadata, extended attributes, symlink target,
//! and a file's data extents (holes are found with SEEK_DATA/SEEK_HOLE and
//! not read).

use crate::chunks::tree::{Entry, Kind};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// An entry's record without its data: kind, permissions, owner, times, inode.
pub fn entry(rel: &[u8], meta: &Metadata, kind: Kind) -> Entry {
    Entry {
        path: rel.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec() as u32),
        ctime: (meta.ctime(), meta.ctime_nsec() as u32),
        ino: meta.ino(),
        size: if kind == Kind::File { meta.size() } else { 0 },
        xattrs: Vec::new(),
        target: Vec::new(),
        extents: Vec::new(),
    }
}

/// The extended attributes of `path` (not following a symlink), sorted by name.
pub fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let unsupported =
        |e: rustix::io::Errno| e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP;
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(e) if unsupported(e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::OsStr::from_bytes(name);
        let len = match rustix::fs::lgetxattr_query(path, cname) {
            Ok(n) => n,
            // Removed since the listing.
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; len];
        let n = rustix::fs::lgetxattr(path, cname, &mut value[..])?;
        value.truncate(n);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Opens a regular file for reading without following a symlink planted
/// since it was listed.
pub fn open_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// The data extents `(offset, length)` of a file of `size` bytes; holes
/// between them are not read. One extent when the file system cannot say.
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // No data after pos: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                return Ok(vec![(0, size)])
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = seek(file, SeekFrom::Hole(data)).map_or(size, |h| h.min(size));
        out.push((data, hole - data));
        pos = hole;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn holes_are_not_extents() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 64 << 20).unwrap();
        f.set_len(128 << 20).unwrap();
        let ext = data_extents(&File::open(&p).unwrap(), 128 << 20).unwrap();
        let data: u64 = ext.iter().map(|e| e.1).sum();
        assert!(data < 1 << 20, "{ext:?}");
        assert_eq!(ext[0].0, 0);
        assert!(
            ext.iter()
                .any(|&(o, l)| o <= 64 << 20 && o + l >= (64 << 20) + 4),
            "{ext:?}"
        );
    }
}
