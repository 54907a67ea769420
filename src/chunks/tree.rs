//! The tree of a file backup (docs/FORMAT.md §9): every entry in walk
//! order — directories depth first, names sorted by their bytes — with its
//! metadata and, for files, the chunks of each data extent. Names are
//! bytes: newlines and invalid UTF-8 are kept as they are. Pure: records
//! to bytes and back; the tree is streamed, never held whole.

use super::ChunkId;
use std::cmp::Ordering;
use std::io::{self, Write};

const MAGIC: &[u8; 8] = b"LBTREE02";
/// The largest record a reader accepts: a file of ~1.8 million chunks.
pub const RECORD_MAX: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Another name of a file recorded earlier in the tree (`target`).
    Hardlink,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Hardlink => 4,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Hardlink,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// A run of data at `offset`; what lies between extents is a hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the backed-up directory, components joined by `/`;
    /// empty for the directory itself.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub ino: u64,
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A symlink's target, or the path a hardlink shares its file with.
    pub target: Vec<u8>,
    pub extents: Vec<Extent>,
}

impl Entry {
    pub fn chunk_refs(&self) -> impl Iterator<Item = &ChunkRef> {
        self.extents.iter().flat_map(|e| e.chunks.iter())
    }

    /// For messages: the path, lossily as text.
    pub fn display(&self) -> String {
        if self.path.is_empty() {
            ".".into()
        } else {
            String::from_utf8_lossy(&self.path).into_owned()
        }
    }
}

/// Walk order: component by component, each compared as bytes (so `a/b`
/// comes before `a.b`, as a depth-first walk visits them).
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    if a.is_empty() || b.is_empty() {
        // The directory itself comes first.
        return (!a.is_empty()).cmp(&!b.is_empty());
    }
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_be_bytes());
    b.extend_from_slice(v);
}

/// One record: its length, then its body.
pub fn encode(e: &Entry) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    b.push(e.kind.code());
    put_bytes(&mut b, &e.path);
    for v in [e.mode, e.uid, e.gid] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    for (s, ns) in [e.mtime, e.ctime] {
        b.extend_from_slice(&s.to_be_bytes());
        b.extend_from_slice(&ns.to_be_bytes());
    }
    b.extend_from_slice(&e.ino.to_be_bytes());
    b.extend_from_slice(&e.size.to_be_bytes());
    b.extend_from_slice(&(e.xattrs.len() as u32).to_be_bytes());
    for (k, v) in &e.xattrs {
        put_bytes(&mut b, k);
        put_bytes(&mut b, v);
    }
    put_bytes(&mut b, &e.target);
    b.extend_from_slice(&(e.extents.len() as u32).to_be_bytes());
    for x in &e.extents {
        b.extend_from_slice(&x.offset.to_be_bytes());
        b.extend_from_slice(&(x.chunks.len() as u32).to_be_bytes());
        for c in &x.chunks {
            b.extend_from_slice(&c.id);
            b.extend_from_slice(&c.len.to_be_bytes());
        }
    }
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn time(&mut self) -> Option<(i64, u32)> {
        Some((self.u64()? as i64, self.u32()?))
    }
}

/// Parses one record's body.
pub fn decode(body: &[u8]) -> Option<Entry> {
    let mut c = Cursor(body);
    let kind = Kind::from_code(c.take(1)?[0])?;
    let path = c.bytes()?;
    let (mode, uid, gid) = (c.u32()?, c.u32()?, c.u32()?);
    let (mtime, ctime) = (c.time()?, c.time()?);
    let (ino, size) = (c.u64()?, c.u64()?);
    let nx = c.u32()? as usize;
    let mut xattrs = Vec::with_capacity(nx.min(64));
    for _ in 0..nx {
        xattrs.push((c.bytes()?, c.bytes()?));
    }
    let target = c.bytes()?;
    let nextents = c.u32()? as usize;
    let mut extents = Vec::with_capacity(nextents.min(1024));
    for _ in 0..nextents {
        let offset = c.u64()?;
        let n = c.u32()? as usize;
        let mut chunks = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let id = c.take(32)?.try_into().ok()?;
            chunks.push(ChunkRef { id, len: c.u32()? });
        }
        extents.push(Extent { offset, chunks });
    }
    if !c.0.is_empty() {
        return None;
    }
    Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        ctime,
        ino,
        size,
        xattrs,
        target,
        extents,
    })
}

/// Writes a tree: the magic, records, the end record.
pub struct TreeWriter<W: Write> {
    out: W,
}

impl<W: Write> TreeWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self { out })
    }
    pub fn push(&mut self, e: &Entry) -> io::Result<()> {
        self.out.write_all(&encode(e))
    }
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&0u32.to_be_bytes())?;
        Ok(self.out)
    }
}

/// Parses a tree from authenticated bytes fed in pieces.
#[derive(Default)]
pub struct TreeParser {
    buf: Vec<u8>,
    pos: usize,
    started: bool,
    ended: bool,
}

impl TreeParser {
    /// Parsed records are dropped first: what is kept is at most the
    /// part of a record not yet complete and `data` (each byte is moved at
    /// most once, as a record completes only once).
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next entry; `Ok(None)` when more bytes are needed or the end
    /// record was read (see [`TreeParser::ended`]).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, &'static str> {
        let rest = &self.buf[self.pos..];
        if !self.started {
            if rest.len() < MAGIC.len() {
                return Ok(None);
            }
            if &rest[..MAGIC.len()] != MAGIC {
                return Err("not a version 2 tree");
            }
            self.started = true;
            self.pos += MAGIC.len();
            return self.next_entry();
        }
        if self.ended {
            return if rest.is_empty() {
                Ok(None)
            } else {
                Err("bytes after the end record")
            };
        }
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
        if len == 0 {
            self.ended = true;
            self.pos += 4;
            return self.next_entry();
        }
        if len > RECORD_MAX {
            return Err("a record is larger than any tree holds");
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let e = decode(&rest[4..4 + len]).ok_or("a record is malformed")?;
        self.pos += 4 + len;
        Ok(Some(e))
    }

    pub fn ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(path: &[u8], kind: Kind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode: 0o640,
            uid: 1000,
            gid: 1001,
            mtime: (1_700_000_000, 5),
            ctime: (-3, 999_999_999),
            ino: 77,
            size: 12,
            xattrs: vec![(b"user.a".to_vec(), vec![0, 1, 2])],
            target: vec![],
            extents: vec![Extent {
                offset: 4096,
                chunks: vec![ChunkRef {
                    id: [9; 32],
                    len: 12,
                }],
            }],
        }
    }

    #[test]
    fn records_round_trip_fed_byte_by_byte() {
        let es = vec![
            entry(b"", Kind::Dir),
            entry(b"a\nb\xff", Kind::File),
            Entry {
                target: b"../loop".to_vec(),
                ..entry(b"l", Kind::Symlink)
            },
        ];
        let mut w = TreeWriter::new(Vec::new()).unwrap();
        for e in &es {
            w.push(e).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut p = TreeParser::default();
        let mut got = Vec::new();
        for b in &bytes {
            p.feed(&[*b]);
            while let Some(e) = p.next_entry().unwrap() {
                got.push(e);
            }
        }
        assert!(p.ended());
        assert_eq!(got, es);
        // Cut before the end record: never ended.
        let mut p = TreeParser::default();
        p.feed(&bytes[..bytes.len() - 4]);
        while p.next_entry().unwrap().is_some() {}
        assert!(!p.ended());
    }

    #[test]
    fn walk_order_is_by_component() {
        let mut v: Vec<&[u8]> = vec![b"a.b", b"a/b", b"", b"a", b"b", b"a/b/c"];
        v.sort_by(|a, b| cmp_paths(a, b));
        assert_eq!(v, vec![&b""[..], b"a", b"a/b", b"a/b/c", b"a.b", b"b"]);
    }
}
