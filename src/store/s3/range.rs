//! GetObject, whole or a range: one chunk of a pack without downloading the pack.

use super::{error_chain, S3Store};
use crate::store::StoreError;
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

    /// A ranged GET read as a stream: many blobs of a pack in one request.
    /// A body that breaks off resumes where it stopped (same ETag).
    pub async fn range_reader(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<super::S3Reader, StoreError> {
        let end = offset + len.max(1);
        let out = self
            .get(key, Some(format!("bytes={offset}-{}", end - 1)))
            .await?;
        Ok(super::S3Reader {
            dest: self.label.clone(),
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            full_key: self.full(key),
            etag: out.e_tag,
            length: Some(end),
            offset,
            end: Some(end),
            breaks: 0,
            body: out.body,
        })
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
