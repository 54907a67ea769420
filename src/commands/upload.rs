//! Fan-out: one encrypted object streamed to every destination at once.
//!
//! The encoder runs on a blocking thread (pg_dump's stdout → compress → seal
//! → hash) and hands ~1 MiB chunks through a small bounded channel; this side
//! writes each chunk to every live destination concurrently. A slow
//! destination slows the channel, the channel slows the encoder, the encoder
//! slows pg_dump: memory stays bounded by the channel and the part buffers.

use crate::catalog::Frames;
use crate::keys::MasterKey;
use crate::pipeline::codec::{Digest, Hasher, ObjectEncoder};
use crate::pipeline::header::Compression;
use crate::source::postgres::frames::copy_framed;
use crate::store::{ObjectWriter, Store, StoreError};
use bytes::{Bytes, BytesMut};
use std::io::{self, Read, Write};
use tokio::sync::mpsc;

pub const CHUNK: usize = 1 << 20;
const CHANNEL_DEPTH: usize = 4;

/// The encoder's output: hashes, counts and batches stored bytes.
struct ChunkSink {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    hasher: Hasher,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "every destination stopped"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the encoder produced: stored digest and plaintext size.
pub struct Encoded {
    pub digest: Digest,
    pub plain_size: u64,
    /// A framed archive's index.
    pub frames: Option<Frames>,
}

/// Starts encoding `input` on a blocking thread. Returns the receiving end of
/// the chunk channel and the thread's result. `archive`: `input` is a
/// pg_dump custom-format archive, cut into frames at its data blocks when
/// compressed with zstd (`source::postgres::frames`).
pub fn spawn_encoder<R: Read + Send + 'static>(
    mut input: R,
    master: &MasterKey,
    name: &str,
    compression: Compression,
    archive: bool,
    progress: super::progress::Progress,
) -> io::Result<(
    mpsc::Receiver<Bytes>,
    tokio::task::JoinHandle<io::Result<Encoded>>,
)> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let sink = ChunkSink {
        tx,
        buf: BytesMut::with_capacity(CHUNK + 64 * 1024),
        hasher: Hasher::default(),
    };
    let mut enc = ObjectEncoder::threaded(sink, master, name, compression)?;
    let handle = tokio::task::spawn_blocking(move || {
        if archive && compression == Compression::Zstd {
            let (plain, frames) = copy_framed(input, &mut enc, &mut |n| progress.add(n))?;
            let mut sink = enc.finish()?;
            sink.send()?;
            return Ok(Encoded {
                digest: sink.hasher.finish(),
                plain_size: plain,
                frames,
            });
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut plain = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            plain += n as u64;
            progress.add(n as u64);
            enc.write_all(&buf[..n])?;
        }
        let mut sink = enc.finish()?;
        sink.send()?;
        Ok(Encoded {
            digest: sink.hasher.finish(),
            plain_size: plain,
            frames: None,
        })
    });
    Ok((rx, handle))
}

/// One destination's writer for the object being uploaded.
struct Slot {
    index: usize,
    writer: ObjectWriter,
}

/// Streams chunks from `rx` to a writer per destination in `live` (indexes
/// into `stores`). Returns the writers still healthy and the failures. With
/// `fail_fast`, the first failure stops the upload (dropping `rx` stops the
/// encoder). The caller finishes or aborts the returned writers once it knows
/// whether the producer succeeded.
pub async fn fan_out(
    stores: &[Store],
    live: &[usize],
    key: &str,
    mut rx: mpsc::Receiver<Bytes>,
    fail_fast: bool,
) -> (Vec<(usize, ObjectWriter)>, Vec<(usize, StoreError)>) {
    let mut failed = Vec::new();
    let mut slots = Vec::new();
    for &i in live {
        match stores[i].writer(key).await {
            Ok(writer) => slots.push(Slot { index: i, writer }),
            Err(e) => failed.push((i, e)),
        }
    }
    while !slots.is_empty() && (!fail_fast || failed.is_empty()) {
        let Some(chunk) = rx.recv().await else { break };
        let results =
            futures::future::join_all(slots.iter_mut().map(|s| s.writer.write(chunk.clone())))
                .await;
        let mut next = Vec::with_capacity(slots.len());
        for (slot, r) in slots.into_iter().zip(results) {
            match r {
                Ok(()) => next.push(slot),
                Err(e) => {
                    slot.writer.abort().await;
                    failed.push((slot.index, e));
                }
            }
        }
        slots = next;
    }
    (
        slots.into_iter().map(|s| (s.index, s.writer)).collect(),
        failed,
    )
}
