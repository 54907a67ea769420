//! A bucket policy's backup Jobs run for real: the Job the controller
//! builds for `spec.source.bucket` runs in the stand-in kubelet
//! (support/kubelet.rs) with the source's credentials Secret mounted as
//! files, reading a bucket of the test S3 server (through a counting
//! proxy) in one region into the policy's destinations in two others.
//! Keys with spaces, `+` and non-ASCII, a multipart object, content type
//! and user metadata come back from the other region; a second daily run
//! GETs no unchanged object; a weekly run GETs each once; excluded keys
//! stay out; the Job names no secret value.

mod support;

use lifeboat::api::Tier;
use lifeboat::controller::jobs::source_info;
use serde_json::json;
use support::bucket_objects::*;
use support::faulty::{Fault, FaultyS3};
use support::kubelet::*;
use support::*;

#[test]
fn a_bucket_policy_copies_its_bucket_into_both_regions_and_reads_no_unchanged_object() {
    let mut w = world();
    let region = "us-west-2";
    let src = source_bucket(region);
    let client = s3_client(region);
    put_source(&client, &src, "data");
    put_meta(&client, &src, "data/tmp/scratch", b"excluded".to_vec());
    put_meta(
        &client,
        &src,
        "other/outside",
        b"not under the prefix".to_vec(),
    );

    let proxy = FaultyS3::start();
    w.policy.spec.source = serde_json::from_value(json!({"bucket": {
        "bucket": src, "region": region, "prefix": "data/", "endpoint": proxy.endpoint,
        "credentialsSecretRef": {"name": "uploads-reader", "accessKeyIdKey": "key-id",
                                 "secretAccessKeyKey": "key-secret"},
        "exclude": ["tmp"]}}))
    .unwrap();
    w.policy.spec.validate().expect("a valid bucket policy");
    w.secrets.insert(
        "uploads-reader".into(),
        [
            ("key-id", "AKIABUCKETSOURCE"),
            ("key-secret", "bucket-source-secret-value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );

    let back_up = |name: &str, tier: Tier| back_up(&w, &Claims::new(), name, tier);

    let first = back_up("uploads-1", Tier::Daily);
    assert_eq!(first.committed, ["primary", "dr-eu"]);
    assert!(first.fully_verified(), "{first:?}");
    let files = source_info(&first)
        .files
        .expect("object figures in the run's status");
    assert_eq!(
        (files.files_new, files.files_changed, files.files_unchanged),
        (5, 0, 0),
        "{files:?}"
    );
    let total: i64 = (0..4).map(|i| 1000 + i * 37).sum::<i64>() + (11 << 20);
    assert_eq!((files.bytes_read, files.bytes_total), (total, total));

    // Nothing changed: the second daily run GETs no object (the proxy
    // counts the GETs of keys under the prefix, failing none).
    proxy.inject(
        "GET",
        &format!("/{src}/data/"),
        Fault::Stall(std::time::Duration::ZERO),
        1_000_000,
    );
    let second = back_up("uploads-2", Tier::Daily);
    assert_eq!(proxy.fired(), 0, "an unchanged run GETs no object");
    let files = source_info(&second).files.unwrap();
    assert_eq!(
        (files.files_new, files.files_changed, files.files_unchanged),
        (0, 0, 5),
        "{files:?}"
    );
    assert_eq!(files.bytes_read, 0);

    // One object changes: only it is read. Then the weekly run reads all.
    put_meta(&client, &src, "data/x+y=z", b"changed".to_vec());
    let third = back_up("uploads-3", Tier::Daily);
    let files = source_info(&third).files.unwrap();
    assert_eq!(
        (files.files_changed, files.files_unchanged, files.bytes_read),
        (1, 4, 7),
        "{files:?}"
    );
    assert_eq!(proxy.fired(), 1);
    let weekly = back_up("uploads-4", Tier::Weekly);
    assert_eq!(proxy.fired(), 1 + 5, "the weekly run GETs each object once");
    let files = source_info(&weekly).files.unwrap();
    assert_eq!(files.files_unchanged, 0, "{files:?}");
    assert_eq!(files.bytes_stored, 0, "nothing new to store: {files:?}");

    // The first backup restores from the other region, as it was.
    let (b1, r1) = bucket_and_region(&w.buckets[1]);
    let from = s3_url(&b1, &r1, "prod/shop/orders");
    let key_file = w.work.path().join("restore-keys");
    write_private(&key_file, &w.secrets["backup-keys"]["keys"]);
    let target_region = "ap-southeast-2";
    let tgt = source_bucket(target_region);
    let tclient = s3_client(target_region);
    let r = ok(&lifeboat(&[
        "restore",
        "--from",
        &from,
        "--key-file",
        key_file.to_str().unwrap(),
        "--backup",
        &first.backup_id,
        "--to-bucket",
        &s3_url(&tgt, target_region, "restored"),
        "--json",
    ]));
    assert_eq!(r["restored"]["objects"], 5, "{r}");
    assert_restored(&tclient, &tgt, "restored");
    let keys = s3_keys(&s3_url(&tgt, target_region, ""));
    assert!(
        keys.iter()
            .all(|k| !k.contains("tmp") && !k.contains("outside")),
        "{keys:?}"
    );
}
