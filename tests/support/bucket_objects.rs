//! Objects of a source bucket for bucket backups (tests/buckets.rs,
//! tests/bucket_jobs.rs): keys with spaces, `+` and non-ASCII, user
//! metadata and content type, a multipart upload; and reading them back,
//! or emptying a bucket (tests/bucket_restore_jobs.rs, tests/app_restore.rs).

use super::{bucket, bucket_and_region, put_meta, runtime};
use lifeboat::chunks::noise;

/// Keys a bucket backup must carry unchanged.
pub const KEYS: [&str; 4] = ["a file.txt", "x+y=z", "naïve/ünïcødé 東京", "deep/dir/obj"];

pub fn put_multipart(client: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    runtime().block_on(async {
        let up = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("application/x-big")
            .send()
            .await
            .unwrap();
        let id = up.upload_id().unwrap();
        let mut parts = Vec::new();
        for (i, part) in data.chunks(5 << 20).enumerate() {
            let n = i as i32 + 1;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .body(part.to_vec().into())
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().unwrap())
                    .build(),
            );
        }
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
}

pub fn head(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (String, Option<String>) {
    runtime().block_on(async {
        let o = client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        (
            o.content_type().unwrap_or_default().to_string(),
            o.metadata().and_then(|m| m.get("owner").cloned()),
        )
    })
}

pub fn body(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    runtime().block_on(async {
        let o = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    })
}

pub fn source_bucket(region: &str) -> String {
    bucket_and_region(&bucket(region)).0
}

/// The objects [`put_source`] wrote, read back from `bucket` under
/// `prefix/`: bodies, content types and user metadata as they were.
pub fn assert_restored(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    for (i, key) in KEYS.iter().enumerate() {
        let key = format!("{prefix}/{key}");
        assert_eq!(
            body(client, bucket, &key),
            noise(1000 + i * 37, i as u64 + 1),
            "{key}"
        );
        assert_eq!(
            head(client, bucket, &key),
            ("text/x-test".to_string(), Some("team-a".to_string())),
            "{key}"
        );
    }
    let big = format!("{prefix}/big object");
    assert!(
        body(client, bucket, &big) == big_object(),
        "the multipart object"
    );
    assert_eq!(head(client, bucket, &big).0, "application/x-big");
}

/// The multipart object's content.
pub fn big_object() -> Vec<u8> {
    noise(11 << 20, 7)
}

/// [`KEYS`] (with metadata) and a multipart `big object` under `prefix/`.
pub fn put_source(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    for (i, key) in KEYS.iter().enumerate() {
        put_meta(
            client,
            bucket,
            &format!("{prefix}/{key}"),
            noise(1000 + i * 37, i as u64 + 1),
        );
    }
    put_multipart(
        client,
        bucket,
        &format!("{prefix}/big object"),
        &big_object(),
    );
}

/// Deletes every object under `prefix`.
pub fn empty_prefix(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    runtime().block_on(async {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        for o in out.contents() {
            let key = o.key().unwrap();
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        }
    });
}
