//! A destination in an S3-compatible bucket (aws-sdk-s3). Large objects go up
//! as multipart uploads with one part filling while one uploads, so memory per
//! destination is two parts whatever the object's size. Small objects are a
//! single PutObject. Credentials come from the standard AWS chain (environment,
//! profile, web identity), never from the URL.

use super::{ObjectInfo, StoreError};
use crate::error_line::error_chain;
use crate::location::{ObjectLock, S3Location};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

mod lock;
mod range;
pub use range::S3Reader;
mod tls;
use lock::Retention;

/// 5 MiB parts (S3's minimum), doubling every 900 parts so that the
/// 10,000-part limit still reaches S3's 5 TiB object limit while memory stays
/// at two small parts per destination for any realistic backup.
const PART_SIZE: usize = 5 << 20;
const MAX_PART: usize = 5 << 30;

pub fn part_size(part_number: i32) -> usize {
    (PART_SIZE << ((part_number.max(1) - 1) / 900).min(11)).min(MAX_PART)
}

/// Attempts per request, the first included: with back-off from 0.2 s,
/// about 3 s of faults are ridden out before a destination counts as down.
const REQUEST_ATTEMPTS: u32 = 5;
/// Attempts to resume a download whose body broke off, the first read included.
const READ_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest wait for any bytes of a response before the attempt fails.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct S3Store {
    pub label: String,
    client: Client,
    bucket: String,
    prefix: String,
    storage_class: Option<StorageClass>,
    /// Object Lock retention for every write (`object-lock=…&lock-days=…`).
    lock: Option<ObjectLock>,
}

/// A failed request, in one line a person reads: the service's code and
/// message when it answered, else what stopped the request (each cause
/// once) — never the SDK's debug representation of the response.
pub(crate) fn op_err<E>(dest: &str, op: &'static str, key: &str, e: E) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let message = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        (None, _) => error_chain(&e),
    };
    StoreError::Op {
        dest: dest.to_string(),
        op,
        key: key.to_string(),
        message,
    }
}

impl S3Store {
    /// `label` names the destination in errors and logs.
    pub async fn open(label: String, loc: &S3Location) -> Result<Self, StoreError> {
        let bad = |problem: String| StoreError::Setup {
            dest: label.clone(),
            problem,
        };
        loc.check_transport().map_err(|p| {
            bad(format!(
                "{p}, or add insecure-http=true on a network you trust"
            ))
        })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &loc.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(dir) = &loc.credentials {
            loader = loader.credentials_provider(read_credentials(dir).map_err(bad)?);
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(bad("no region: add ?region=… or set AWS_REGION".into()));
        }
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(loc.uses_path_style())
            // A burst of throttling (503 SlowDown) or 500s outlasts the
            // default three attempts; the SDK backs off between them.
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(REQUEST_ATTEMPTS)
                    .with_initial_backoff(std::time::Duration::from_millis(200)),
            )
            // A stalled connection or response fails the attempt (and is
            // retried) instead of hanging the Job until its deadline.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            );
        if let Some(ca) = &loc.ca_file {
            conf = conf.http_client(tls::client_trusting(ca).map_err(bad)?);
        }
        if let Some(e) = &loc.endpoint {
            // Custom endpoints (MinIO, Ceph, moto, …) often reject the SDK's
            // default extra checksums; the stream format authenticates every
            // byte anyway.
            conf = conf
                .endpoint_url(e.as_str().trim_end_matches('/'))
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                );
        }
        Ok(Self {
            label,
            client: Client::from_conf(conf.build()),
            bucket: loc.bucket.clone(),
            prefix: if loc.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", loc.prefix)
            },
            storage_class: loc.storage_class.as_deref().map(StorageClass::from),
            lock: loc.lock,
        })
    }

    /// The client, the bucket and the key prefix (with its trailing `/`,
    /// or empty): for a bucket read as a source or written as a restore
    /// target, whose objects are not lifeboat's.
    pub fn parts(&self) -> (&Client, &str, &str) {
        (&self.client, &self.bucket, &self.prefix)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// [`StoreError::NotFound`] when the service said the key is `missing`,
    /// else the request's error.
    fn missing_or<E>(&self, missing: bool, op: &'static str, key: &str, e: E) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        if missing {
            StoreError::NotFound {
                dest: self.label.clone(),
                key: key.to_string(),
            }
        } else {
            op_err(&self.label, op, key, e)
        }
    }

    pub fn writer(&self, key: &str) -> S3Writer {
        S3Writer {
            dest: self.label.clone(),
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            full_key: self.full(key),
            storage_class: self.storage_class.clone(),
            retention: self.retention(),
            buf: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            in_flight: None,
        }
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let retention = self.retention();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_storage_class(self.storage_class.clone())
            .set_object_lock_mode(retention.as_ref().map(|r| r.mode.clone()))
            .set_object_lock_retain_until_date(retention.as_ref().map(|r| r.until))
            .set_checksum_algorithm(lock::checksum(retention.as_ref()))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| op_err(&self.label, "put", key, e))?;
        Ok(())
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| op_err(&self.label, "list", prefix, e))?;
            for o in page.contents() {
                let Some(k) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: k.strip_prefix(&self.prefix).unwrap_or(k).to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// With Object Lock the bucket is versioned: every version goes (see
    /// [`lock`]), as a plain delete would only hide the object.
    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            if self.lock.is_some() {
                self.delete_versions(key).await?;
                continue;
            }
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .send()
                .await
                .map_err(|e| op_err(&self.label, "delete", key, e))?;
        }
        Ok(())
    }

    pub async fn clean_incomplete(
        &self,
        prefix: &str,
        stale: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<String>, StoreError> {
        let mut cleaned = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| op_err(&self.label, "list uploads", prefix, e))?;
            for u in page.uploads() {
                let (Some(full), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let key = full.strip_prefix(&self.prefix).unwrap_or(full);
                if !stale(key) {
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| op_err(&self.label, "abort upload", key, e))?;
                cleaned.push(key.to_string());
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
        Ok(cleaned)
    }
}

/// Static credentials from a directory of files named like the environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
/// `AWS_SESSION_TOKEN`): a mounted Kubernetes Secret, one per destination, so
/// that each region can have its own keys without putting them in argv.
pub(crate) fn read_credentials(
    dir: &std::path::Path,
) -> Result<aws_sdk_s3::config::Credentials, String> {
    let read = |name: &str| -> Result<Option<String>, String> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("credentials: {}: {e}", dir.join(name).display())),
        }
    };
    let need = |name: &str| {
        read(name)?.ok_or_else(|| format!("credentials: {} has no file {name}", dir.display()))
    };
    Ok(aws_sdk_s3::config::Credentials::new(
        need("AWS_ACCESS_KEY_ID")?,
        need("AWS_SECRET_ACCESS_KEY")?,
        read("AWS_SESSION_TOKEN")?,
        None,
        "lifeboat-credentials-dir",
    ))
}

pub struct S3Writer {
    dest: String,
    client: Client,
    bucket: String,
    key: String,
    full_key: String,
    storage_class: Option<StorageClass>,
    /// Fixed when the writer starts: every part of the object has one date.
    retention: Option<Retention>,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: Option<JoinHandle<Result<CompletedPart, StoreError>>>,
}

impl S3Writer {
    pub async fn write(&mut self, mut data: Bytes) -> Result<(), StoreError> {
        while !data.is_empty() {
            let size = part_size(self.next_part_number());
            if self.buf.capacity() == 0 {
                // Exactly a part, once; what does not fit starts the next.
                self.buf.reserve(size);
            }
            let fits = size.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(fits));
            if self.buf.len() >= size {
                let part = std::mem::take(&mut self.buf).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    fn next_part_number(&self) -> i32 {
        (self.parts.len() + 1 + self.in_flight.is_some() as usize) as i32
    }

    async fn wait_in_flight(&mut self) -> Result<(), StoreError> {
        if let Some(h) = self.in_flight.take() {
            let part = h.await.map_err(|e| StoreError::Op {
                dest: self.dest.clone(),
                op: "upload part",
                key: self.key.clone(),
                message: e.to_string(),
            })??;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn send_part(&mut self, body: Bytes) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.full_key)
                .set_storage_class(self.storage_class.clone())
                .set_object_lock_mode(self.retention.as_ref().map(|r| r.mode.clone()))
                .set_object_lock_retain_until_date(self.retention.as_ref().map(|r| r.until))
                .send()
                .await
                .map_err(|e| op_err(&self.dest, "start upload", &self.key, e))?;
            self.upload_id = out.upload_id().map(str::to_string);
        }
        let number = self.next_part_number();
        // Backpressure: at most one part uploading while the next one fills.
        self.wait_in_flight().await?;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .part_number(number)
            .set_checksum_algorithm(lock::checksum(self.retention.as_ref()))
            .body(ByteStream::from(body));
        let (dest, key) = (self.dest.clone(), self.key.clone());
        self.in_flight = Some(tokio::spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| op_err(&dest, "upload part", &key, e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        }));
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let rest = std::mem::take(&mut self.buf).freeze();
        if self.upload_id.is_none() {
            // Never reached a part's size: one request.
            return self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.full_key)
                .set_storage_class(self.storage_class.clone())
                .set_object_lock_mode(self.retention.as_ref().map(|r| r.mode.clone()))
                .set_object_lock_retain_until_date(self.retention.as_ref().map(|r| r.until))
                .set_checksum_algorithm(lock::checksum(self.retention.as_ref()))
                .body(ByteStream::from(rest))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| op_err(&self.dest, "put", &self.key, e));
        }
        let result = async {
            if !rest.is_empty() {
                self.send_part(rest).await?;
            }
            self.wait_in_flight().await?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.full_key)
                .upload_id(self.upload_id.clone().unwrap_or_default())
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(self.parts.clone()))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| op_err(&self.dest, "complete upload", &self.key, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    pub async fn abort(mut self) {
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
        let Some(id) = self.upload_id.take() else {
            return;
        };
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(id)
            .send()
            .await
        {
            tracing::warn!(dest = %self.dest, key = %self.key, error = %op_err(&self.dest, "abort upload", &self.key, e), "could not abort the multipart upload; the next backup cleans it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_to_stay_under_the_part_limit() {
        assert_eq!(part_size(1), 5 << 20);
        assert_eq!(part_size(900), 5 << 20);
        assert_eq!(part_size(901), 10 << 20);
        assert!(part_size(10_000) <= MAX_PART);
        let total: u64 = (1..=10_000).map(|n| part_size(n) as u64).sum();
        // S3 objects end at 5 TiB; the part schedule must reach that.
        assert!(total >= 5u64 << 40, "10,000 parts hold {total} bytes");
    }

    #[tokio::test]
    async fn the_location_becomes_bucket_and_prefix() {
        let loc = S3Location {
            bucket: "bkt".into(),
            prefix: "a/b".into(),
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:9".parse().unwrap()),
            ..Default::default()
        };
        let s = S3Store::open("primary".into(), &loc).await.unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bkt", "a/b/"));
        assert_eq!(
            s.full("backups/x"),
            "bkt/a/b/backups/x".trim_start_matches("bkt/")
        );
    }

    #[test]
    fn credentials_come_from_a_directory_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_credentials(dir.path()).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        std::fs::write(dir.path().join("AWS_ACCESS_KEY_ID"), "AKIDEXAMPLE\n").unwrap();
        std::fs::write(dir.path().join("AWS_SECRET_ACCESS_KEY"), "very-secret").unwrap();
        let c = read_credentials(dir.path()).unwrap();
        assert_eq!(c.access_key_id(), "AKIDEXAMPLE");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
