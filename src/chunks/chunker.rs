//! Content-defined chunking (FastCDC 2020, the `fastcdc` crate pinned
//! exactly): boundaries follow the content, so an insertion early in a file
//! changes the chunks around it and not every chunk after it. The golden
//! test below fixes the boundaries: a crate upgrade that moved them would
//! silently stop deduplication against every existing backup.

use std::io::{self, Read};

/// Chunk sizes: min, average, max (restic's 512 KiB / 1 MiB / 8 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

pub const DEFAULT_SIZES: Sizes = Sizes {
    min: 512 << 10,
    avg: 1 << 20,
    max: 8 << 20,
};

/// Cuts `input` into chunks, each returned as its bytes. Holds at most
/// `max` bytes of buffer plus the chunk handed out.
pub fn chunks<R: Read>(
    input: R,
    sizes: Sizes,
    seed: u64,
) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::with_level_and_seed(
        input,
        sizes.min,
        sizes.avg,
        sizes.max,
        fastcdc::v2020::Normalization::Level1,
        seed,
    )
    .map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => e,
            other => io::Error::other(other.to_string()),
        })
    })
}

/// Cuts the `len` bytes of `input` (a file's extent): as [`chunks`], but an
/// extent no longer than the minimum chunk is one chunk — what FastCDC cuts
/// too — read straight into its buffer, without the chunker's `max`-byte
/// buffer (most files of a tree of small files).
pub fn chunks_of<'a, R: Read + 'a>(
    input: R,
    len: u64,
    sizes: Sizes,
    seed: u64,
) -> Box<dyn Iterator<Item = io::Result<Vec<u8>>> + 'a> {
    if len > sizes.min as u64 {
        return Box::new(chunks(input, sizes, seed));
    }
    let mut data = Vec::with_capacity(len as usize);
    // The file may have shrunk since it was listed: what is there is read.
    let read = input.take(len).read_to_end(&mut data);
    Box::new(
        match read {
            Err(e) => Some(Err(e)),
            Ok(_) if data.is_empty() => None,
            Ok(_) => Some(Ok(data)),
        }
        .into_iter(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::chunks::noise;

    const SMALL: Sizes = Sizes {
        min: 2048,
        avg: 8192,
        max: 32768,
    };

    fn lengths(data: &[u8], sizes: Sizes, seed: u64) -> Vec<usize> {
        chunks(data, sizes, seed)
            .map(|c| c.unwrap().len())
            .collect()
    }

    /// The golden boundaries: if this fails after a dependency update, the
    /// new chunker cuts differently and must not ship as format 2.
    #[test]
    fn golden_boundaries() {
        let data = noise(256 << 10, 0x11feb0a7);
        assert_eq!(lengths(&data, SMALL, 0), GOLDEN_SEED_0);
        assert_eq!(lengths(&data, SMALL, 0x5eed), GOLDEN_SEED_5EED);
        let big = noise(24 << 20, 42);
        assert_eq!(lengths(&big, DEFAULT_SIZES, 7), GOLDEN_DEFAULT);
    }

    const GOLDEN_SEED_0: &[usize] = &[
        4311, 16192, 14038, 4011, 8595, 2571, 11282, 2368, 8933, 16012, 10317, 9388, 3277, 8386,
        4384, 8358, 12767, 6994, 12902, 12960, 6656, 3333, 8819, 9885, 9520, 9844, 19514, 3401,
        11356, 1770,
    ];
    const GOLDEN_SEED_5EED: &[usize] = &[
        10047, 4226, 8431, 9563, 2129, 4881, 12913, 6429, 11854, 19240, 2251, 5044, 10983, 10980,
        2460, 16741, 9520, 18147, 16595, 14810, 7495, 16784, 9066, 9248, 7086, 15221,
    ];
    const GOLDEN_DEFAULT: &[usize] = &[
        1846844, 545365, 2067939, 1493664, 564974, 1035329, 596092, 1207849, 1049356, 1471587,
        612311, 1801084, 1318353, 1158444, 611228, 2147300, 1157884, 2107680, 1265089, 1107452,
    ];

    /// Short extents are one chunk, exactly as the chunker cuts them.
    #[test]
    fn short_extents_cut_as_the_chunker_does() {
        for len in [0, 1, 2047, 2048, 2049, 5000] {
            let data = noise(len, 3);
            let slow: Vec<Vec<u8>> = chunks(&data[..], SMALL, 5).map(Result::unwrap).collect();
            let fast: Vec<Vec<u8>> =
                chunks_of(std::io::Cursor::new(data.clone()), len as u64, SMALL, 5)
                    .map(Result::unwrap)
                    .collect();
            assert_eq!(fast, slow, "{len} bytes");
        }
    }

    /// An insertion shifts content; chunks after it are found again.
    #[test]
    fn an_insertion_keeps_later_chunks() {
        let data = noise(512 << 10, 9);
        let mut edited = data[..100_000].to_vec();
        edited.extend_from_slice(b"inserted bytes");
        edited.extend_from_slice(&data[100_000..]);
        let a: Vec<Vec<u8>> = chunks(&data[..], SMALL, 3).map(Result::unwrap).collect();
        let b: Vec<Vec<u8>> = chunks(&edited[..], SMALL, 3).map(Result::unwrap).collect();
        let same = b.iter().filter(|c| a.contains(c)).count();
        assert!(
            same + 3 >= a.len(),
            "{same} of {} chunks found again",
            a.len()
        );
        assert_eq!(a.concat(), data);
    }
}
