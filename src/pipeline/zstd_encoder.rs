//! The zstd encoder of an object, on the caller's thread or on a worker
//! thread of its own (issue 16: overlapping compression with the rest).

use std::io::{self, Write};

/// zstd level 3: the level `zstd` picks by default; far cheaper than gzip -9
/// at a similar ratio, so compression never becomes the bottleneck.
pub const ZSTD_LEVEL: i32 = 3;

/// The zstd encoder's job: what its worker thread compresses at a time.
/// libzstd's default at level 3 (8 MiB, several in flight) costs ~40 MiB of
/// buffers; 1 MiB costs ~3 MiB and compresses as fast (docs/BENCHMARKS.md).
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// A level-3 zstd encoder. `threaded`: its compression runs on one worker
/// thread, so the caller's thread reads, seals and hashes meanwhile, as the
/// stages of a shell pipe overlap — for the large streams (dumps, base
/// backups); small objects (a tree, a manifest) stay on the caller's thread
/// and spare the worker's buffers. Same format either way: one standard
/// zstd frame.
pub(super) fn zstd_encoder<W: Write>(
    out: W,
    threaded: bool,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    if threaded {
        encoder.multithread(1)?;
        encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    }
    Ok(encoder)
}
