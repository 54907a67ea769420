//! The framing of pg_dump's custom-format archive, as far as a parallel
//! restore needs it: where the header and table of contents end, and where
//! each data block starts and ends, so that each loader is fed only the
//! blocks of its own tables (a dump written to a pipe has no offsets in its
//! table of contents; a pg_restore reading a stream finds its blocks by
//! reading every other block's bytes).
//!
//! The layout is pg_dump's (`pg_backup_archiver.c` ReadHead/ReadToc,
//! `pg_backup_custom.c`), archive versions 1.12 to 1.16: PostgreSQL 9.0 to
//! 18. Nothing here decides anything from the bytes but where blocks
//! begin and end, and they are read from a copy that authenticated.

use std::io;

/// What the walk reads from: the local copy as it grows.
pub trait Input {
    /// The next `n` bytes (a few: one field).
    fn take(&mut self, n: usize) -> io::Result<&[u8]>;
    /// Passes over the next `n` bytes.
    fn skip(&mut self, n: u64) -> io::Result<()>;
    /// True when the input ended, complete, right here.
    fn at_end(&mut self) -> io::Result<bool>;
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a pg_dump custom-format archive")]
    NotCustom,
    #[error("archive version 1.{0} is not one lifeboat can split (1.12 to 1.16)")]
    Version(u8),
    #[error("malformed archive: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Custom format: `archCustom` in `pg_backup.h`.
const FORMAT_CUSTOM: u8 = 1;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
const OLDEST: u8 = 12;
const NEWEST: u8 = 16;

/// The header's sizes and version, which the rest of the walk depends on.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    minor: u8,
    int_size: usize,
    off_size: usize,
    /// The data is stored uncompressed (`pg_dump -Z0`, as lifeboat dumps).
    uncompressed: bool,
}

impl Layout {
    /// Reads the header and the table of contents, leaving `input` at the
    /// first data block.
    pub fn read(input: &mut impl Input) -> Result<Layout, ArchiveError> {
        if input.take(5)? != b"PGDMP" {
            return Err(ArchiveError::NotCustom);
        }
        let head = input.take(5)?;
        let (major, minor, int_size, off_size) = (head[0], head[1], head[3], head[4]);
        if major != 1 || !(OLDEST..=NEWEST).contains(&minor) {
            return Err(ArchiveError::Version(minor));
        }
        if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
            return Err(ArchiveError::Malformed("integer sizes"));
        }
        let mut layout = Layout {
            minor,
            int_size: int_size as usize,
            off_size: off_size as usize,
            uncompressed: false,
        };
        if input.take(1)?[0] != FORMAT_CUSTOM {
            return Err(ArchiveError::NotCustom);
        }
        // Compression: an algorithm byte from 1.15, a level before; 0 is none.
        layout.uncompressed = if minor >= 15 {
            input.take(1)?[0] == 0
        } else {
            layout.int(input)? == 0
        };
        for _ in 0..7 {
            layout.int(input)?; // the creation time
        }
        for _ in 0..3 {
            layout.string(input)?; // database name, server and pg_dump versions
        }
        let entries = layout.int(input)?;
        if entries < 0 {
            return Err(ArchiveError::Malformed("entry count"));
        }
        for _ in 0..entries {
            layout.entry(input)?;
        }
        Ok(layout)
    }

    /// One table-of-contents entry (ReadToc, then the custom format's
    /// ReadExtraToc).
    fn entry(&self, input: &mut impl Input) -> Result<(), ArchiveError> {
        self.int(input)?; // dump id
        self.int(input)?; // has a data dumper
        for _ in 0..4 {
            self.string(input)?; // table oid, oid, tag, description
        }
        self.int(input)?; // section
        for _ in 0..5 {
            self.string(input)?; // definition, drop, copy, schema, tablespace
        }
        if self.minor >= 14 {
            self.string(input)?; // table access method
        }
        if self.minor >= 16 {
            self.int(input)?; // relkind
        }
        self.string(input)?; // owner
        self.string(input)?; // "with oids"
                             // Dependencies: strings up to a null one.
        while self.string(input)?.is_some() {}
        // The data's offset: a state byte and off_size bytes.
        input.skip(1 + self.off_size as u64)?;
        Ok(())
    }

    /// The next data block's dump id, leaving `input` at the block's end;
    /// None at the archive's end.
    pub fn next_block(&self, input: &mut impl Input) -> Result<Option<i64>, ArchiveError> {
        if input.at_end()? {
            return Ok(None);
        }
        let block = self.block_start(input)?;
        self.block_rest(input, block)?;
        Ok(Some(block.id))
    }

    /// A block's type and dump id, leaving `input` at its first chunk.
    pub fn block_start(&self, input: &mut impl Input) -> Result<Block, ArchiveError> {
        let kind = input.take(1)?[0];
        let id = self.int(input)?;
        match kind {
            BLK_DATA | BLK_BLOBS => Ok(Block {
                id,
                rows: kind == BLK_DATA,
            }),
            _ => Err(ArchiveError::Malformed("data block type")),
        }
    }

    /// The rest of `block`, leaving `input` at its end.
    pub fn block_rest(&self, input: &mut impl Input, block: Block) -> Result<(), ArchiveError> {
        if block.rows {
            return self.chunks(input);
        }
        while self.int(input)? != 0 {
            self.chunks(input)?; // one large object's
        }
        Ok(())
    }

    /// Whether the data is stored uncompressed: a block's chunks are then
    /// its bytes as they are (a table's rows, one chunk per row as pg_dump
    /// writes them).
    pub fn uncompressed(&self) -> bool {
        self.uncompressed
    }

    /// A chunk's length (or the zero that ends a block's chunks).
    pub fn chunk_len(&self, input: &mut impl Input) -> Result<u64, ArchiveError> {
        u64::try_from(self.int(input)?).map_err(|_| ArchiveError::Malformed("chunk length"))
    }

    /// WriteInt: `value` as the archive writes its integers.
    pub fn encode_int(&self, value: u64) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend((0..self.int_size).map(|i| (value >> (8 * i)) as u8));
        out
    }

    /// Length-prefixed chunks up to a zero length.
    fn chunks(&self, input: &mut impl Input) -> Result<(), ArchiveError> {
        loop {
            match self.int(input)? {
                0 => return Ok(()),
                n if n < 0 => return Err(ArchiveError::Malformed("chunk length")),
                n => input.skip(n as u64)?,
            }
        }
    }

    /// A block's type byte and dump id.
    pub fn block_header_len(&self) -> usize {
        2 + self.int_size
    }

    /// The dump id in a block header (`header` holds at least
    /// [`Layout::block_header_len`] bytes).
    pub fn block_id(&self, header: &[u8]) -> Option<i64> {
        decode_int(&header[1..self.block_header_len()]).ok()
    }

    /// ReadInt: a sign byte, then `int_size` bytes, least significant first.
    fn int(&self, input: &mut impl Input) -> Result<i64, ArchiveError> {
        decode_int(input.take(1 + self.int_size)?)
    }

    /// ReadStr: a length, then that many bytes; a negative length is null.
    /// Returns whether it was not null.
    fn string(&self, input: &mut impl Input) -> Result<Option<()>, ArchiveError> {
        let len = self.int(input)?;
        if len < 0 {
            return Ok(None);
        }
        input.skip(len as u64)?;
        Ok(Some(()))
    }
}

/// A data block's identity: its dump id and whether it holds a table's
/// rows (else large objects).
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub id: i64,
    pub rows: bool,
}

fn decode_int(bytes: &[u8]) -> Result<i64, ArchiveError> {
    // pg_dump writes 4-byte ints, and one precedes each row of a table's
    // data: the common case is worth its own path.
    if let [sign, b0, b1, b2, b3] = *bytes {
        let value = i64::from(u32::from_le_bytes([b0, b1, b2, b3]));
        return Ok(if sign != 0 { -value } else { value });
    }
    let magnitude = bytes[1..]
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let value = i64::try_from(magnitude).map_err(|_| ArchiveError::Malformed("integer"))?;
    Ok(if bytes[0] != 0 { -value } else { value })
}

/// The dump id a `pg_restore --list` line starts with (`3345; 0 16390
/// TABLE DATA public t owner`).
pub fn listed_id(line: &str) -> Option<i64> {
    line.split(';').next()?.trim().parse().ok()
}

/// A small archive for tests.
#[cfg(test)]
pub mod sample {
    use super::{BLK_BLOBS, BLK_DATA, FORMAT_CUSTOM};

    fn int(out: &mut Vec<u8>, v: i64) {
        out.push(u8::from(v < 0));
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }

    fn string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => int(out, -1),
            Some(s) => {
                int(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// A version-1.16 archive: two TABLE DATA entries, then the rows of
    /// the first and the large objects of the second.
    pub fn archive() -> (Vec<u8>, usize, usize) {
        let mut a = b"PGDMP".to_vec();
        a.extend_from_slice(&[1, 16, 0, 4, 8, FORMAT_CUSTOM, 0]);
        (0..7).for_each(|_| int(&mut a, 1));
        for s in ["db", "17.2", "17.2"] {
            string(&mut a, Some(s));
        }
        int(&mut a, 2);
        for id in [7, 9] {
            int(&mut a, id);
            int(&mut a, 1);
            for s in ["0", "0", "t", "TABLE DATA"] {
                string(&mut a, Some(s));
            }
            int(&mut a, 2); // section
            for s in ["", "", "COPY t FROM stdin;", "public", ""] {
                string(&mut a, Some(s));
            }
            string(&mut a, Some("heap"));
            int(&mut a, 114); // relkind
            string(&mut a, Some("owner"));
            string(&mut a, Some("false"));
            string(&mut a, Some("3"));
            string(&mut a, None);
            a.extend_from_slice(&[1; 9]);
        }
        let toc_end = a.len();
        a.push(BLK_DATA);
        int(&mut a, 7);
        for row in ["1\tx\n", "2\ty\n"] {
            string(&mut a, Some(row));
        }
        int(&mut a, 0);
        let first_end = a.len();
        a.push(BLK_BLOBS);
        int(&mut a, 9);
        int(&mut a, 16400);
        string(&mut a, Some("large"));
        int(&mut a, 0);
        int(&mut a, 0);
        (a, toc_end, first_end)
    }
}

#[cfg(test)]
mod tests {
    use super::sample::archive;
    use super::*;

    /// An in-memory archive.
    struct Bytes {
        data: Vec<u8>,
        at: usize,
    }

    impl Input for Bytes {
        fn take(&mut self, n: usize) -> io::Result<&[u8]> {
            if self.at + n > self.data.len() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.at += n;
            Ok(&self.data[self.at - n..self.at])
        }
        fn skip(&mut self, n: u64) -> io::Result<()> {
            self.take(n as usize).map(|_| ())
        }
        fn at_end(&mut self) -> io::Result<bool> {
            Ok(self.at == self.data.len())
        }
    }

    #[test]
    fn finds_the_table_of_contents_end_and_each_block() {
        let (data, toc_end, first_end) = archive();
        let len = data.len();
        let mut input = Bytes { data, at: 0 };
        let layout = Layout::read(&mut input).unwrap();
        assert_eq!(input.at, toc_end);
        assert_eq!(layout.next_block(&mut input).unwrap(), Some(7));
        assert_eq!(input.at, first_end);
        assert_eq!(layout.next_block(&mut input).unwrap(), Some(9));
        assert_eq!(input.at, len);
        assert_eq!(layout.next_block(&mut input).unwrap(), None);
    }

    #[test]
    fn refuses_what_it_cannot_walk() {
        let (mut data, _, _) = archive();
        data[6] = 17;
        let err = Layout::read(&mut Bytes { data, at: 0 }).unwrap_err();
        assert!(matches!(err, ArchiveError::Version(17)), "{err}");

        let (mut data, toc_end, _) = archive();
        data[toc_end] = 2;
        let mut input = Bytes { data, at: 0 };
        let layout = Layout::read(&mut input).unwrap();
        let err = layout.next_block(&mut input).unwrap_err();
        assert!(matches!(err, ArchiveError::Malformed(_)), "{err}");

        let (mut data, _, _) = archive();
        data.truncate(data.len() - 3);
        let mut input = Bytes { data, at: 0 };
        let layout = Layout::read(&mut input).unwrap();
        layout.next_block(&mut input).unwrap();
        assert!(layout.next_block(&mut input).is_err());

        let err = Layout::read(&mut Bytes {
            data: b"PK\x03\x04xxxxxxxx".to_vec(),
            at: 0,
        })
        .unwrap_err();
        assert!(matches!(err, ArchiveError::NotCustom), "{err}");
    }

    #[test]
    fn integers_encode_as_the_archive_reads_them() {
        let (data, _, _) = archive();
        let mut input = Bytes { data, at: 0 };
        let layout = Layout::read(&mut input).unwrap();
        assert!(layout.uncompressed());
        for v in [0u64, 1, 91, 65_536, u32::MAX as u64] {
            let bytes = layout.encode_int(v);
            assert_eq!(decode_int(&bytes).unwrap(), v as i64);
            let mut input = Bytes { data: bytes, at: 0 };
            assert_eq!(layout.chunk_len(&mut input).unwrap(), v);
        }
    }

    #[test]
    fn the_list_line_names_its_dump_id() {
        assert_eq!(
            listed_id("3345; 0 16390 TABLE DATA public t owner"),
            Some(3345)
        );
        assert_eq!(listed_id("; comment"), None);
    }
}
