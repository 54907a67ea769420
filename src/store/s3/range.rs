//! GetObject, whole or a range: one chunk of a pack without downloading the pack.

use super::{error_chain, op_err, S3Store, READ_ATTEMPTS};
use crate::store::StoreError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

impl S3Store {
    /// A ranged GET, read whole (a blob of a pack: at most a few MiB).
    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let out = self
            .get(key, Some(format!("bytes={offset}-{}", offset + len - 1)))
            .await?;
        let body = out.body.collect().await.map_err(|e| StoreError::Op {
            dest: self.label.clone(),
            op: "read",
            key: key.to_string(),
            message: error_chain(&e),
        })?;
        Ok(body.into_bytes())
    }

    /// The whole object, as a stream.
    pub async fn reader(&self, key: &str) -> Result<S3Reader, StoreError> {
        let out = self.get(key, None).await?;
        let length = out.content_length.and_then(|n| u64::try_from(n).ok());
        Ok(self.stream(key, out, 0, None, length))
    }

    /// A ranged GET read as a stream: many blobs of a pack in one request.
    /// A body that breaks off resumes where it stopped (same ETag).
    pub async fn range_reader(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<S3Reader, StoreError> {
        let end = offset + len.max(1);
        let out = self
            .get(key, Some(format!("bytes={offset}-{}", end - 1)))
            .await?;
        Ok(self.stream(key, out, offset, Some(end), Some(end)))
    }

    /// A response's body from `offset`, up to `end` when a range.
    fn stream(
        &self,
        key: &str,
        out: aws_sdk_s3::operation::get_object::GetObjectOutput,
        offset: u64,
        end: Option<u64>,
        length: Option<u64>,
    ) -> S3Reader {
        S3Reader {
            dest: self.label.clone(),
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            full_key: self.full(key),
            etag: out.e_tag,
            length,
            offset,
            end,
            breaks: 0,
            body: out.body,
        }
    }

    /// A GetObject of `key`, of its `range` when given.
    pub(super) async fn get(
        &self,
        key: &str,
        range: Option<String>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_range(range)
            .send()
            .await
            .map_err(|e| {
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                self.missing_or(missing, "get", key, e)
            })
    }
}

/// A download that resumes where its body broke off (a reset connection, a
/// stalled response): a ranged GET of the same version (If-Match on the
/// ETag, so a replaced object is never spliced onto the old one's bytes).
/// The decoder downstream authenticates every byte whatever happens here.
pub struct S3Reader {
    dest: String,
    client: Client,
    bucket: String,
    key: String,
    full_key: String,
    etag: Option<String>,
    /// The object's size, as the first response gave it.
    length: Option<u64>,
    /// Where the next byte handed out is in the object.
    offset: u64,
    /// Where a ranged read ends (exclusive); `None` reads to the object's end.
    end: Option<u64>,
    /// Times the body broke off.
    breaks: u32,
    body: ByteStream,
}

impl S3Reader {
    pub async fn next(&mut self) -> Result<Option<Bytes>, StoreError> {
        loop {
            match self.body.next().await {
                None => return Ok(None),
                Some(Ok(b)) => {
                    self.offset += b.len() as u64;
                    return Ok(Some(b));
                }
                Some(Err(e)) => {
                    let broke = StoreError::Op {
                        dest: self.dest.clone(),
                        op: "read",
                        key: self.key.clone(),
                        message: error_chain(&e),
                    };
                    if self.length == Some(self.offset) {
                        // Broke off after the last byte: nothing is missing.
                        return Ok(None);
                    }
                    self.breaks += 1;
                    if self.breaks >= READ_ATTEMPTS || self.etag.is_none() {
                        return Err(broke);
                    }
                    tracing::warn!(dest = %self.dest, key = %self.key, offset = self.offset, error = %broke, "the download broke off; resuming");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << self.breaks)).await;
                    self.resume().await?;
                }
            }
        }
    }

    async fn resume(&mut self) -> Result<(), StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .range(match self.end {
                Some(end) => format!("bytes={}-{}", self.offset, end - 1),
                None => format!("bytes={}-", self.offset),
            })
            .set_if_match(self.etag.clone())
            .send()
            .await
            .map_err(|e| op_err(&self.dest, "resume get", &self.key, e))?;
        self.body = out.body;
        Ok(())
    }
}
