//! A blocking `Write` that uploads to one or more store objects at once, in
//! ~1 MiB batches, hashing what passes (the tree and index objects of a
//! run). For a blocking thread: each batch is written with `block_on`.

use crate::pipeline::codec::{Digest, Hasher};
use crate::store::{ObjectWriter, StoreError};
use bytes::Bytes;
use std::io::{self, Write};
use tokio::runtime::Handle;

const BATCH: usize = 1 << 20;

pub struct UploadSink {
    rt: Handle,
    writers: Vec<ObjectWriter>,
    buf: Vec<u8>,
    hasher: Hasher,
}

impl UploadSink {
    pub fn new(rt: Handle, writers: Vec<ObjectWriter>) -> Self {
        Self {
            rt,
            writers,
            buf: Vec::new(),
            hasher: Hasher::default(),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let writers = &mut self.writers;
        self.rt
            .block_on(futures::future::try_join_all(
                writers.iter_mut().map(|w| w.write(data.clone())),
            ))
            .map_err(io::Error::other)?;
        Ok(())
    }

    /// Uploads the rest and makes the objects visible; their size and SHA-256.
    pub fn finish(mut self) -> Result<Digest, StoreError> {
        if let Err(e) = self.send() {
            self.abort();
            return Err(StoreError::Setup {
                dest: "upload".into(),
                problem: e.to_string(),
            });
        }
        for w in self.writers {
            self.rt.block_on(w.finish())?;
        }
        Ok(self.hasher.finish())
    }

    /// Discards the uploads.
    pub fn abort(self) {
        for w in self.writers {
            self.rt.block_on(w.abort());
        }
    }
}

impl Write for UploadSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.hasher.update(b);
        self.buf.extend_from_slice(b);
        if self.buf.len() >= BATCH {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
