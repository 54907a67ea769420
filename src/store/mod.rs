//! Where backups live: one interface, two implementations — S3 (any endpoint,
//! any region) and a local directory (`file://`, the embedded default).
//!
//! Keys are relative to the destination's root (`s3://bucket/prefix` or the
//! directory). An object becomes visible only when its writer finishes: a
//! renamed `.partial` file or a completed multipart upload. `abort` or a
//! killed process leaves nothing that listing reports.

pub mod fs;
pub mod s3;

use crate::location::{Location, NamedLocation};
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{dest}: {problem}")]
    Setup { dest: String, problem: String },
    #[error("{dest}: {op} {key}: {message}")]
    Op {
        dest: String,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{dest}: {key} does not exist")]
    NotFound { dest: String, key: String },
}

/// An object's S3 Object Lock retention: no one deletes it before
/// `retain_until` (in `compliance` mode not even the account's root user).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockState {
    /// `governance` or `compliance`.
    pub mode: String,
    pub retain_until: chrono::DateTime<chrono::Utc>,
}

impl LockState {
    /// The retention has not ended at `now`.
    pub fn holds_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.retain_until > now
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// An open destination: its name (as reports give it) and its backend.
/// Cloning shares the S3 client.
#[derive(Clone)]
pub struct Store {
    name: String,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Fs(fs::FsStore),
    S3(s3::S3Store),
}

impl Store {
    /// Opens the destination (for S3: region, endpoint and credentials
    /// resolved; nothing is sent yet).
    pub async fn open(dest: &NamedLocation) -> Result<Store, StoreError> {
        let label = dest.label();
        let backend = match &dest.location {
            Location::S3(loc) => Backend::S3(s3::S3Store::open(label, loc).await?),
            Location::Local(path) => Backend::Fs(fs::FsStore::open(label, path.clone())),
        };
        Ok(Store {
            name: dest.name.clone(),
            backend,
        })
    }

    /// The destination's name, as reports give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How logs and errors name the destination: its name and where it is
    /// (never credentials).
    pub fn label(&self) -> &str {
        match &self.backend {
            Backend::Fs(s) => &s.label,
            Backend::S3(s) => &s.label,
        }
    }

    pub async fn writer(&self, key: &str) -> Result<ObjectWriter, StoreError> {
        Ok(match &self.backend {
            Backend::Fs(s) => ObjectWriter::Fs(s.writer(key).await?),
            Backend::S3(s) => ObjectWriter::S3(s.writer(key)),
        })
    }

    /// Writes a small object in one request (manifests).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Fs(s) => s.put(key, data).await,
            Backend::S3(s) => s.put(key, data).await,
        }
    }

    /// Copies the object `from` in `source` to `to` in this store, as it is
    /// stored (never decoded), streaming: its size does not matter.
    pub async fn copy_from(&self, source: &Store, from: &str, to: &str) -> Result<u64, StoreError> {
        let mut r = source.reader(from).await?;
        let mut w = self.writer(to).await?;
        let mut n = 0u64;
        loop {
            match r.next().await {
                Ok(Some(chunk)) => {
                    n += chunk.len() as u64;
                    if let Err(e) = w.write(chunk).await {
                        w.abort().await;
                        return Err(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    w.abort().await;
                    return Err(e);
                }
            }
        }
        w.finish().await?;
        Ok(n)
    }

    /// Reads a small object whole (manifests), refusing one over `limit`
    /// bytes before holding more than that: whoever can write to the bucket
    /// chooses its size.
    pub async fn get(&self, key: &str, limit: usize) -> Result<Bytes, StoreError> {
        let mut r = self.reader(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = r.next().await? {
            if out.len() + chunk.len() > limit {
                return Err(StoreError::Op {
                    dest: self.label().to_string(),
                    op: "read",
                    key: key.to_string(),
                    message: format!("larger than {limit} bytes, the most it may be"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.into())
    }

    /// Reads `len` bytes at `offset` of an object (a blob of a pack); fails
    /// when the object is shorter.
    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let data = match &self.backend {
            Backend::Fs(s) => s.read_range(key, offset, len).await?,
            Backend::S3(s) => s.read_range(key, offset, len).await?,
        };
        if data.len() as u64 != len {
            return Err(StoreError::Op {
                dest: self.label().to_string(),
                op: "read",
                key: key.to_string(),
                message: format!("{len} bytes at offset {offset} asked, {} there", data.len()),
            });
        }
        Ok(data)
    }

    /// `len` bytes at `offset` of an object, as a stream (may end early
    /// when the object is shorter: the caller counts).
    pub async fn range_reader(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<ObjectReader, StoreError> {
        Ok(match &self.backend {
            Backend::Fs(s) => ObjectReader::Fs(s.range_reader(key, offset, len).await?),
            Backend::S3(s) => ObjectReader::S3(s.range_reader(key, offset, len).await?),
        })
    }

    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        Ok(match &self.backend {
            Backend::Fs(s) => ObjectReader::Fs(s.reader(key).await?),
            Backend::S3(s) => ObjectReader::S3(s.reader(key).await?),
        })
    }

    /// Committed objects under `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut v = match &self.backend {
            Backend::Fs(s) => s.list(prefix).await?,
            Backend::S3(s) => s.list(prefix).await?,
        };
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    /// Deletes objects; an already missing object is not an error.
    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Fs(s) => s.delete(keys).await,
            Backend::S3(s) => s.delete(keys).await,
        }
    }

    /// With Object Lock asked for (`object-lock=…`), fails unless the bucket
    /// has Object Lock enabled; otherwise nothing to check.
    pub async fn check_object_lock(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Fs(_) => Ok(()),
            Backend::S3(s) => s.check_lock().await,
        }
    }

    /// The Object Lock retention of `key` (S3; a directory has none).
    pub async fn lock_state(&self, key: &str) -> Result<Option<LockState>, StoreError> {
        match &self.backend {
            Backend::Fs(_) => Ok(None),
            Backend::S3(s) => s.lock_state(key, None).await,
        }
    }

    /// Aborts uploads left by killed writers under `prefix` whose key
    /// `stale(key)` says may go. Returns the keys cleaned.
    pub async fn clean_incomplete(
        &self,
        prefix: &str,
        stale: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Fs(s) => s.clean_incomplete(prefix, stale).await,
            Backend::S3(s) => s.clean_incomplete(prefix, stale).await,
        }
    }
}

/// A streaming upload of one object.
pub enum ObjectWriter {
    Fs(fs::FsWriter),
    S3(s3::S3Writer),
}

impl ObjectWriter {
    pub async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.write(data).await,
            ObjectWriter::S3(w) => w.write(data).await,
        }
    }

    /// Makes the object visible.
    pub async fn finish(self) -> Result<(), StoreError> {
        match self {
            ObjectWriter::Fs(w) => w.finish().await,
            ObjectWriter::S3(w) => w.finish().await,
        }
    }

    /// Discards what was written; best effort, errors are logged.
    pub async fn abort(self) {
        match self {
            ObjectWriter::Fs(w) => w.abort().await,
            ObjectWriter::S3(w) => w.abort().await,
        }
    }
}

pub enum ObjectReader {
    Fs(fs::FsReader),
    S3(s3::S3Reader),
}

impl ObjectReader {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, StoreError> {
        match self {
            ObjectReader::Fs(r) => r.next().await,
            ObjectReader::S3(r) => r.next().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest-sized read of a huge object fails at the limit instead of
    /// reading it all into memory.
    #[tokio::test]
    async fn get_refuses_an_object_over_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let url: NamedLocation = format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url).await.unwrap();
        store.put("small", vec![1u8; 100].into()).await.unwrap();
        store.put("big", vec![1u8; 3 << 20].into()).await.unwrap();
        assert_eq!(store.get("small", 100).await.unwrap().len(), 100);
        let err = store.get("big", 1 << 20).await.unwrap_err().to_string();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
    }
}
