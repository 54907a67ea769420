//! Where a pg_dump archive's zstd frames start in its object (docs/FORMAT.md,
//! *Frames*): frame 0 holds the archive's header and table of contents,
//! each later frame whole data blocks, so a parallel restore's loaders each
//! decompress only the frames of their own tables. Recorded by the backup
//! in the manifest, which its MAC authenticates.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frames {
    /// In the order they are stored.
    pub frames: Vec<Frame>,
    /// The compressed stream's length (the object's bytes decrypted, not
    /// decompressed): where the last frame ends.
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Where the frame starts in the compressed stream.
    pub at: u64,
    /// Where its bytes start in the archive (the decompressed stream).
    pub plain_at: u64,
    /// The dump ids of the data blocks it holds, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
}

impl Frames {
    /// What is wrong with the index for an archive of `plain_size` bytes:
    /// a restore trusts it only when consistent.
    pub fn problem(&self, plain_size: u64) -> Option<&'static str> {
        let first = self.frames.first()?;
        if first.at != 0 || first.plain_at != 0 || !first.ids.is_empty() {
            return Some("the first frame is not the archive's head");
        }
        let ordered = self
            .frames
            .windows(2)
            .all(|w| w[0].at < w[1].at && w[0].plain_at < w[1].plain_at);
        let last = &self.frames[self.frames.len() - 1];
        if !ordered || last.at >= self.end || last.plain_at >= plain_size {
            return Some("frames out of order or past the end");
        }
        None
    }

    /// Frame `i`'s bytes in the compressed stream.
    pub fn range(&self, i: usize) -> std::ops::Range<u64> {
        let end = self.frames.get(i + 1).map_or(self.end, |f| f.at);
        self.frames[i].at..end
    }

    /// Frame `i`'s archive bytes: what loading it costs.
    pub fn plain_len(&self, i: usize, plain_size: u64) -> u64 {
        let end = self.frames.get(i + 1).map_or(plain_size, |f| f.plain_at);
        end - self.frames[i].plain_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(at: u64, plain_at: u64, ids: &[i64]) -> Frame {
        Frame {
            at,
            plain_at,
            ids: ids.to_vec(),
        }
    }

    #[test]
    fn an_index_is_used_only_when_consistent() {
        let good = Frames {
            frames: vec![frame(0, 0, &[]), frame(10, 100, &[7]), frame(30, 900, &[9])],
            end: 40,
        };
        assert_eq!(good.problem(1000), None);
        assert_eq!(good.range(1), 10..30);
        assert_eq!(good.range(2), 30..40);
        assert_eq!(good.plain_len(1, 1000), 800);
        assert_eq!(good.plain_len(2, 1000), 100);

        let mut bad = good.clone();
        bad.frames.swap(1, 2);
        assert!(bad.problem(1000).is_some());
        assert!(good.problem(900).is_some(), "a frame past the archive");
        let mut bad = good.clone();
        bad.end = 30;
        assert!(bad.problem(1000).is_some());
        let mut bad = good;
        bad.frames[0].ids.push(1);
        assert!(bad.problem(1000).is_some());
        let empty = Frames {
            frames: vec![],
            end: 0,
        };
        assert_eq!(empty.problem(0), None, "no frames: nothing to check");
    }
}
