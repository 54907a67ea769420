//! Restoring a bucket backup into a bucket: each object put back with its
//! content type and metadata (docs/FORMAT.md §10), small ones in one PUT,
//! large ones as multipart uploads streamed part by part (memory: one
//! part). Keys are passed to the SDK as values, never built into URLs.

use crate::chunks::tree::Entry;
use crate::store::s3::op_err;
use crate::store::StoreError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};

/// Objects larger than this go up in parts of this size.
pub const PART: usize = 8 << 20;

/// The headers and user metadata an entry recorded.
pub struct Headers {
    pub fields: Vec<(String, String)>,
    pub user: Vec<(String, String)>,
}

pub fn headers(e: &Entry) -> Headers {
    let mut h = Headers {
        fields: Vec::new(),
        user: Vec::new(),
    };
    for (k, v) in &e.xattrs {
        let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) else {
            continue;
        };
        if let Some(name) = k.strip_prefix("s3.meta.") {
            h.user.push((name.to_string(), v.to_string()));
        } else if let Some(name) = k.strip_prefix("s3.") {
            h.fields.push((name.to_string(), v.to_string()));
        }
    }
    h
}

macro_rules! with_headers {
    ($req:expr, $h:expr) => {{
        let mut r = $req;
        for (name, v) in &$h.fields {
            r = match name.as_str() {
                "content-type" => r.content_type(v),
                "cache-control" => r.cache_control(v),
                "content-encoding" => r.content_encoding(v),
                "content-disposition" => r.content_disposition(v),
                "content-language" => r.content_language(v),
                "website-redirect-location" => r.website_redirect_location(v),
                _ => r,
            };
        }
        for (k, v) in &$h.user {
            r = r.metadata(k, v);
        }
        r
    }};
}

pub struct BucketTarget {
    pub client: Client,
    pub bucket: String,
    pub label: String,
}

impl BucketTarget {
    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(aws_sdk_s3::error::SdkError::ServiceError(e)) if e.err().is_not_found() => {
                Ok(false)
            }
            Err(e) => Err(op_err(&self.label, "head", key, e)),
        }
    }

    pub async fn put(&self, key: &str, h: &Headers, data: Bytes) -> Result<(), StoreError> {
        let req = self.client.put_object().bucket(&self.bucket).key(key);
        with_headers!(req, h)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| op_err(&self.label, "put", key, e))?;
        Ok(())
    }

    pub async fn start(&self, key: &str, h: &Headers) -> Result<Upload, StoreError> {
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        let out = with_headers!(req, h)
            .send()
            .await
            .map_err(|e| op_err(&self.label, "start upload", key, e))?;
        Ok(Upload {
            key: key.to_string(),
            id: out.upload_id().unwrap_or_default().to_string(),
            parts: Vec::new(),
        })
    }

    pub async fn part(&self, u: &mut Upload, data: Bytes) -> Result<(), StoreError> {
        let n = u.parts.len() as i32 + 1;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&u.key)
            .upload_id(&u.id)
            .part_number(n)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| op_err(&self.label, "upload part", &u.key, e))?;
        u.parts.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    pub async fn complete(&self, u: Upload) -> Result<(), StoreError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&u.key)
            .upload_id(&u.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(u.parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| op_err(&self.label, "complete upload", &u.key, e))?;
        Ok(())
    }

    /// Drops an unfinished upload (nothing of it becomes visible).
    pub async fn abort(&self, u: Upload) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&u.key)
            .upload_id(&u.id)
            .send()
            .await;
    }
}

pub struct Upload {
    key: String,
    id: String,
    parts: Vec<CompletedPart>,
}

/// Collects chunk bytes into parts of [`PART`].
#[derive(Default)]
pub struct PartBuf(pub BytesMut);

impl PartBuf {
    pub fn push(&mut self, data: &[u8]) -> Option<Bytes> {
        self.0.extend_from_slice(data);
        (self.0.len() >= PART).then(|| self.0.split_to(PART).freeze())
    }
}
