//! A bucket policy's backup Job: `--bucket` built from the typed location
//! with the credentials directory where the source's Secret is mounted
//! (files only: no env, no value in the spec), the globs, and `--full` on
//! the weekly and monthly tiers.

use super::*;
use crate::api::Tier;
use crate::controller::test_support::{after, args, daily_run, policy_of_source};
use crate::location::Location;
use serde_json::json;

fn job(
    bucket: serde_json::Value,
    tier: Tier,
) -> Result<k8s_openapi::api::batch::v1::Job, JobError> {
    let p = policy_of_source(json!({ "bucket": bucket }));
    let mut r = daily_run("orders-1", "run-uid-1");
    r.spec.tier = tier;
    backup_job(&p, &r, &JobConfig::default())
}

#[test]
fn the_source_bucket_is_one_typed_location_with_its_credentials_as_files() {
    let j = job(
        json!({"bucket": "app-uploads", "region": "eu-west-1", "prefix": "img/",
               "endpoint": "https://s3.internal:9000",
               "credentialsSecretRef": {"name": "uploads-reader", "accessKeyIdKey": "id"},
               "include": ["**/*.jpg"], "exclude": ["tmp/**"]}),
        Tier::Daily,
    )
    .unwrap();
    let a = args(&j);
    let [url] = after(&a, "--bucket")[..] else {
        panic!("one --bucket: {a:?}")
    };
    let Ok(Location::S3(loc)) = url.parse::<Location>() else {
        panic!("{url}")
    };
    let dir = JobConfig::default().source_credentials_dir();
    assert_eq!(
        (
            loc.bucket.as_str(),
            loc.prefix.as_str(),
            loc.region.as_deref()
        ),
        ("app-uploads", "img", Some("eu-west-1"))
    );
    assert_eq!(loc.endpoint.unwrap().as_str(), "https://s3.internal:9000/");
    assert_eq!(loc.credentials, Some(dir.clone().into()));
    assert_eq!(after(&a, "--include"), ["**/*.jpg"]);
    assert_eq!(after(&a, "--exclude"), ["tmp/**"]);
    assert!(!a.contains(&"--full".to_string()), "daily: {a:?}");

    let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let v = serde_json::to_value(pod).unwrap();
    let vol = v["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "uploads-reader")
        .expect("the source's Secret as a volume");
    assert_eq!(
        vol["secret"]["items"],
        json!([{"key": "id", "path": "AWS_ACCESS_KEY_ID"},
               {"key": "AWS_SECRET_ACCESS_KEY", "path": "AWS_SECRET_ACCESS_KEY"}])
    );
    let mounts = &v["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == vol["name"]
                && m["mountPath"] == dir.as_str()
                && m["readOnly"] == true),
        "{mounts}"
    );
    // Nothing of the Secret reaches the environment.
    let env = v["containers"][0]["env"].to_string();
    assert!(
        !env.contains("uploads-reader") && !env.contains("AWS_"),
        "{env}"
    );
}

#[test]
fn weekly_runs_read_every_object_and_ambient_identity_mounts_nothing() {
    let j = job(
        json!({"bucket": "app-uploads", "region": "eu-west-1"}),
        Tier::Weekly,
    )
    .unwrap();
    let a = args(&j);
    assert!(a.contains(&"--full".to_string()), "{a:?}");
    assert_eq!(after(&a, "--bucket"), ["s3://app-uploads?region=eu-west-1"]);
    let v = serde_json::to_value(&j).unwrap().to_string();
    assert!(!v.contains("source-s3"), "{v}");
}

#[test]
fn a_bad_field_is_named_and_no_job_is_built() {
    for (bucket, field) in [
        (
            json!({"bucket": "Bad_Name", "region": "r"}),
            "spec.source.bucket.bucket",
        ),
        (json!({"bucket": "ok-name"}), "spec.source.bucket.region"),
        (
            json!({"bucket": "ok-name", "region": "r", "endpoint": "http://minio:9000"}),
            "spec.source.bucket.endpoint",
        ),
        (
            json!({"bucket": "ok-name", "region": "r", "credentialsSecretRef": {"name": ""}}),
            "spec.source.bucket.credentialsSecretRef.name",
        ),
    ] {
        let e = job(bucket, Tier::Daily).unwrap_err();
        assert_eq!(e.field(), field, "{e}");
    }
}
