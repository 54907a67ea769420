//! The S3 requests of the bucket source: the listing, page by page, and an
//! object's GET with `If-Match` on the ETag the listing gave. When the
//! object changed since (412), the key is looked up again and the GET
//! retried with its new ETag, a bounded number of times: what is stored is
//! always one whole version of the object. Names stay names: every key goes
//! to the SDK as a value, never into a URL built here.

use super::BucketError;
use crate::store::s3::op_err;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::Client;
use tokio::sync::mpsc;

/// GETs of one object refused because it changed, before the run fails.
pub const ATTEMPTS: u32 = 4;

/// One object as the listing (or a HEAD) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The whole key, as S3 has it.
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// Last-Modified: seconds and nanoseconds since the epoch.
    pub modified: (i64, u32),
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> (i64, u32) {
    t.map_or((0, 0), |t| (t.secs(), t.subsec_nanos()))
}

/// Where the requests go, and how errors name it.
#[derive(Clone)]
pub struct Source {
    pub client: Client,
    pub bucket: String,
    pub label: String,
}

/// Streams the listing under `prefix` into a channel of pages (at most two
/// pages wait): the next page is fetched while this one is processed, and
/// the listing is never held whole.
pub fn list(src: Source, prefix: String) -> mpsc::Receiver<Result<Vec<Listed>, BucketError>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut pages = src
            .client
            .list_objects_v2()
            .bucket(&src.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map(|p| {
                    p.contents()
                        .iter()
                        .filter_map(|o| {
                            Some(Listed {
                                key: o.key()?.to_string(),
                                size: o.size().unwrap_or(0).max(0) as u64,
                                etag: o.e_tag().unwrap_or_default().to_string(),
                                modified: time(o.last_modified()),
                            })
                        })
                        .collect()
                })
                .map_err(|e| op_err(&src.label, "list", &prefix, e).into());
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// What an object carries besides its bytes, as the tree records it
/// (docs/FORMAT.md §10): `s3.etag`, `s3.content-type`, … and `s3.meta.NAME`
/// for user metadata, sorted by name.
pub type Meta = Vec<(Vec<u8>, Vec<u8>)>;

macro_rules! meta_of {
    ($out:expr, $etag:expr) => {{
        let o = $out;
        let mut m: Meta = vec![(b"s3.etag".to_vec(), $etag.as_bytes().to_vec())];
        for (name, v) in [
            ("content-type", o.content_type()),
            ("cache-control", o.cache_control()),
            ("content-encoding", o.content_encoding()),
            ("content-disposition", o.content_disposition()),
            ("content-language", o.content_language()),
            ("expires", o.expires_string()),
            ("website-redirect-location", o.website_redirect_location()),
        ] {
            if let Some(v) = v {
                m.push((format!("s3.{name}").into_bytes(), v.as_bytes().to_vec()));
            }
        }
        for (k, v) in o.metadata().into_iter().flatten() {
            m.push((format!("s3.meta.{k}").into_bytes(), v.as_bytes().to_vec()));
        }
        m.sort();
        m
    }};
}

pub fn meta_of_get(o: &GetObjectOutput, etag: &str) -> Meta {
    meta_of!(o, etag)
}

fn meta_of_head(o: &HeadObjectOutput, etag: &str) -> Meta {
    meta_of!(o, etag)
}

/// The object at `key` now, with its metadata; `None` when it is gone.
pub async fn head(src: &Source, key: &str) -> Result<Option<(Listed, Meta)>, BucketError> {
    match src
        .client
        .head_object()
        .bucket(&src.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(o) => {
            let etag = o.e_tag().unwrap_or_default().to_string();
            let meta = meta_of_head(&o, &etag);
            let listed = Listed {
                key: key.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag,
                modified: time(o.last_modified()),
            };
            Ok(Some((listed, meta)))
        }
        Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
        Err(e) => Err(op_err(&src.label, "head", key, e).into()),
    }
}

/// GETs the version of the object `listed` describes (If-Match its ETag).
/// When it changed, `listed` is updated from a HEAD and the GET retried;
/// `None` when the object was deleted meanwhile.
pub async fn get(
    src: &Source,
    listed: &mut Listed,
) -> Result<Option<GetObjectOutput>, BucketError> {
    for _ in 0..ATTEMPTS {
        let sent = src
            .client
            .get_object()
            .bucket(&src.bucket)
            .key(&listed.key)
            .if_match(&listed.etag)
            .send()
            .await;
        match sent {
            Ok(o) => return Ok(Some(o)),
            Err(e) if status(&e) == Some(412) => {
                tracing::info!(bucket = %src.label, key = %listed.key, "the object changed since it was listed: looked up again");
                match head(src, &listed.key).await? {
                    Some((now, _)) => *listed = now,
                    None => return Ok(None),
                }
            }
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(op_err(&src.label, "get", &listed.key, e).into()),
        }
    }
    Err(BucketError::Unstable {
        source_label: src.label.clone(),
        key: listed.key.clone(),
        tries: ATTEMPTS,
    })
}

fn status<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status)
}

trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}
