//! A destination in a local directory. Objects are written as `<key>.partial`
//! and renamed when complete, so a crash never leaves a half object under its
//! real name.

use super::{ObjectInfo, StoreError};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PARTIAL: &str = ".partial";
const READ_CHUNK: usize = 1 << 20;

#[derive(Clone)]
pub struct FsStore {
    pub label: String,
    root: PathBuf,
}

fn op_err(dest: &str, op: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Op {
        dest: dest.to_string(),
        op,
        key: key.to_string(),
        message: e.to_string(),
    }
}

impl FsStore {
    /// `label` names the destination in errors; `root` is absolute (see [`crate::location`]).
    pub fn open(label: String, root: PathBuf) -> Self {
        Self { label, root }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub async fn writer(&self, key: &str) -> Result<FsWriter, StoreError> {
        let path = self.path(key);
        let partial = PathBuf::from(format!("{}{PARTIAL}", path.display()));
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| op_err(&self.label, "create directory for", key, e))?;
        }
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| op_err(&self.label, "create", key, e))?;
        Ok(FsWriter {
            dest: self.label.clone(),
            key: key.to_string(),
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            partial,
            path,
        })
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let mut w = self.writer(key).await?;
        w.write(data).await?;
        w.finish().await
    }

    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        use tokio::io::AsyncSeekExt;
        let mut r = self.reader(key).await?;
        r.file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| op_err(&self.label, "read", key, e))?;
        let mut buf = Vec::with_capacity(len as usize);
        (&mut r.file)
            .take(len)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| op_err(&self.label, "read", key, e))?;
        Ok(buf.into())
    }

    /// `len` bytes at `offset`, as a stream.
    pub async fn range_reader(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<FsReader, StoreError> {
        use tokio::io::AsyncSeekExt;
        let mut r = self.reader(key).await?;
        r.file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| op_err(&self.label, "read", key, e))?;
        r.left = len;
        Ok(r)
    }

    pub async fn reader(&self, key: &str) -> Result<FsReader, StoreError> {
        match tokio::fs::File::open(self.path(key)).await {
            Ok(file) => Ok(FsReader {
                dest: self.label.clone(),
                key: key.to_string(),
                file,
                left: u64::MAX,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                dest: self.label.clone(),
                key: key.to_string(),
            }),
            Err(e) => Err(op_err(&self.label, "open", key, e)),
        }
    }

    /// Every file under the root whose key starts with `prefix`, including
    /// `.partial` ones when `partial` is set.
    fn walk(&self, prefix: &str, partial: bool) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        // Start from the deepest directory the prefix names, then filter.
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(op_err(&self.label, "list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| op_err(&self.label, "list", prefix, e))?;
                let meta = entry
                    .metadata()
                    .map_err(|e| op_err(&self.label, "list", prefix, e))?;
                if meta.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let rel = rel_key(&self.root, &entry.path());
                if rel.ends_with(PARTIAL) != partial || !rel.starts_with(prefix) {
                    continue;
                }
                out.push(ObjectInfo {
                    key: rel,
                    size: meta.len(),
                });
            }
        }
        Ok(out)
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.walk(prefix, false)
    }

    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            match tokio::fs::remove_file(self.path(key)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(op_err(&self.label, "delete", key, e)),
            }
            // Leave no empty backup directories behind.
            if let Some(dir) = self.path(key).parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    /// Removes the partial files under `prefix` whose key is `stale`. No
    /// await in between, so the predicate need not be `Sync`.
    pub async fn clean_incomplete(
        &self,
        prefix: &str,
        stale: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let partial = self.walk(prefix, true)?;
        let stale = partial.into_iter().filter_map(|obj| {
            let key = obj.key.trim_end_matches(PARTIAL).to_string();
            stale(&key).then(|| {
                let _ = std::fs::remove_file(self.root.join(&obj.key));
                key
            })
        });
        Ok(stale.collect())
    }
}

fn rel_key(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

pub struct FsWriter {
    dest: String,
    key: String,
    file: tokio::io::BufWriter<tokio::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

impl FsWriter {
    pub async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.file
            .write_all(&data)
            .await
            .map_err(|e| op_err(&self.dest, "write", &self.key, e))
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let err = |e| op_err(&self.dest, "finish", &self.key, e);
        self.file.flush().await.map_err(err)?;
        self.file.get_mut().sync_all().await.map_err(err)?;
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .map_err(err)?;
        // The rename is durable only once the directory is synced.
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }

    pub async fn abort(self) {
        drop(self.file);
        if let Err(e) = tokio::fs::remove_file(&self.partial).await {
            tracing::warn!(dest = %self.dest, key = %self.key, error = %e, "could not remove partial object");
        }
    }
}

pub struct FsReader {
    dest: String,
    key: String,
    file: tokio::fs::File,
    /// Bytes left to hand out (a range).
    left: u64,
}

impl FsReader {
    pub async fn next(&mut self) -> Result<Option<Bytes>, StoreError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; READ_CHUNK.min(usize::try_from(self.left).unwrap_or(usize::MAX))];
        let n = self
            .file
            .read(&mut buf)
            .await
            .map_err(|e| op_err(&self.dest, "read", &self.key, e))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        self.left -= n as u64;
        Ok(Some(buf.into()))
    }
}
