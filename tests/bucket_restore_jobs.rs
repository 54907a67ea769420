//! RestoreRequests of a bucket policy: the plan and restore Jobs the
//! controller builds for `spec.target.bucket` run for real in the stand-in
//! kubelet (support/kubelet.rs) against the test S3 server. A bucket
//! backed up with the CLI (keys with spaces, `+` and non-ASCII, an object
//! larger than one upload part, content type and user metadata) is emptied;
//! a request restores every key with its metadata into the same bucket,
//! another into a bucket of another region under a prefix; overwrite=never
//! keeps what the target has and paths restores one prefix; a drill's
//! restore into scratch space reads every object. The target's keys reach
//! the pod as mounted files only.

mod support;

use k8s_openapi::api::batch::v1::Job;
use lifeboat::api::RestoreRequest;
use lifeboat::controller::restore_jobs::{plan_from_summary, plan_job, restore_job};
use lifeboat::wire::{parse, PlanSummary, RestoreSummary};
use serde_json::{json, Value};
use support::bucket_objects::empty_prefix;
use support::kubelet::*;
use support::*;

const SRC_REGION: &str = "us-west-2";
const OTHER_REGION: &str = "ap-southeast-2";
const TARGET_SECRET: &str = "target-secret-access-key";

fn objects() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a file.txt", b"a file\n".to_vec()),
        ("x+y=z", b"plus and equals".to_vec()),
        ("naïve/ünïcødé 東京", "non-ASCII ✓".as_bytes().to_vec()),
        ("deep/dir/obj", b"deep".to_vec()),
        // More than one upload part: restored as a multipart upload.
        ("big/blob.bin", lifeboat::chunks::noise(12 << 20, 9)),
    ]
}

/// Body, content type and `owner` metadata of `key`.
fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (Vec<u8>, String, String) {
    runtime().block_on(async {
        let o = client.get_object().bucket(bucket).key(key).send().await;
        let o = o.unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let kind = o.content_type().unwrap_or_default().to_string();
        let owner = o.metadata().and_then(|m| m.get("owner").cloned());
        let body = o.body.collect().await.unwrap().into_bytes().to_vec();
        (body, kind, owner.unwrap_or_default())
    })
}

/// The request's plan Job, then its restore Job, as the controller builds
/// them from the plan; returns the restore's summary and Job.
fn restore(w: &World, name: &str, target: Value) -> (RestoreSummary, Job) {
    let target = match target.get("scratch") {
        Some(_) => target,
        None => json!({ "bucket": target }),
    };
    let r: RestoreRequest = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreRequest",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {"policyRef": {"name": "orders"}, "target": target}
    }))
    .unwrap();
    r.spec.validate().expect("a valid request");
    let plan = plan_job(&r, &w.policy, &w.cfg).unwrap();
    let ran = execute(&plan, &w.secrets, w.work.path());
    assert!(ran.output.status.success(), "plan: {}", stderr(&ran.output));
    let summary: PlanSummary = parse(&ran.termination_message).expect("a plan summary");
    let plan = plan_from_summary(&summary, &w.policy).unwrap();
    let job = restore_job(&r, &w.policy, &plan, &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    assert!(
        ran.output.status.success(),
        "restore: {}",
        stderr(&ran.output)
    );
    let s: RestoreSummary = parse(&ran.termination_message).expect("a restore summary");
    assert!(s.ok, "{s:?}");
    (s, job)
}

#[test]
fn bucket_restore_requests_into_the_same_and_another_region() {
    let mut w = world();
    let src = bucket_and_region(&bucket(SRC_REGION)).0;
    let client = s3_client(SRC_REGION);
    for (key, data) in objects() {
        put_meta(&client, &src, key, data);
    }
    w.policy.spec.source = serde_json::from_value(json!({"bucket": {
        "bucket": src, "region": SRC_REGION, "endpoint": s3_endpoint()}}))
    .unwrap();
    w.secrets.insert(
        "target-s3".into(),
        [
            ("AWS_ACCESS_KEY_ID", "AKIATARGETBUCKET"),
            ("AWS_SECRET_ACCESS_KEY", TARGET_SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    // Backed up by hand with the CLI, as the policy's owner, into its
    // destinations.
    let key_file = w.work.path().join("keys");
    write_private(&key_file, &w.secrets["backup-keys"]["keys"]);
    let mut args = vec![
        "backup".to_string(),
        "--bucket".into(),
        s3_url(&src, SRC_REGION, ""),
    ];
    for (name, url) in ["primary", "dr-eu"].iter().zip(&w.buckets) {
        let (b, r) = bucket_and_region(url);
        args.extend([
            "--to".into(),
            format!("{name}={}", s3_url(&b, &r, "prod/shop/orders")),
        ]);
    }
    args.extend(
        [
            "--key-file",
            key_file.to_str().unwrap(),
            "--owner",
            "shop/orders",
            "--json",
        ]
        .map(String::from),
    );
    ok(&lifeboat(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    empty_prefix(&client, &src, "");

    // 1. Into the same bucket: every key, its bytes and its metadata.
    let endpoint = s3_endpoint();
    let creds = json!({"name": "target-s3"});
    let (s, job) = restore(
        &w,
        "same",
        json!({"bucket": src, "region": SRC_REGION, "endpoint": endpoint, "credentialsSecretRef": creds}),
    );
    let total: usize = objects().iter().map(|(_, d)| d.len()).sum();
    assert_eq!((s.files, s.bytes), (Some(5), total as u64), "{s:?}");
    for (key, data) in objects() {
        assert_eq!(
            get(&client, &src, key),
            (data, "text/x-test".into(), "team-a".into()),
            "{key}"
        );
    }
    // The target's keys are mounted files: in no argument, no variable.
    let text = serde_json::to_string(&job).unwrap();
    assert!(!text.contains(TARGET_SECRET) && !text.contains("AKIATARGETBUCKET"));
    assert!(
        text.contains("credentials%3D") || text.contains("&credentials="),
        "{text}"
    );

    // A drill's restore: into the Job's scratch space, every chunk read.
    let (s, job) = restore(&w, "drill", json!({"scratch": {}}));
    assert_eq!((s.files, s.bytes), (Some(5), total as u64), "{s:?}");
    let scratch = w.work.path().join("emptydir-scratch/restored");
    for (key, data) in objects() {
        let name = lifeboat::target::bucket_dir::file_name(key.as_bytes());
        assert_eq!(std::fs::read(scratch.join(name)).unwrap(), data, "{key}");
    }
    let text = serde_json::to_string(&job).unwrap();
    assert!(text.contains("\"sizeLimit\""), "{text}");

    // 2. Into another region's bucket, under a prefix.
    let other = bucket_and_region(&bucket(OTHER_REGION)).0;
    let oc = s3_client(OTHER_REGION);
    let target = json!({"bucket": other, "region": OTHER_REGION, "endpoint": endpoint,
        "prefix": "restored", "credentialsSecretRef": creds});
    restore(&w, "other", target.clone());
    for (key, data) in objects() {
        let got = get(&oc, &other, &format!("restored/{key}"));
        assert_eq!(got, (data, "text/x-test".into(), "team-a".into()), "{key}");
    }

    // 3. overwrite=never keeps what the target has; paths picks one prefix.
    put_meta(&oc, &other, "restored/x+y=z", b"changed".to_vec());
    empty_prefix(&oc, &other, "restored/deep/");
    let mut keep = target.clone();
    keep["paths"] = json!(["deep", "x+y=z"]);
    let (s, _) = restore(&w, "keep", keep);
    assert_eq!(s.files, Some(1), "only deep/dir/obj was missing: {s:?}");
    assert_eq!(get(&oc, &other, "restored/x+y=z").0, b"changed");
    assert_eq!(get(&oc, &other, "restored/deep/dir/obj").0, b"deep");
    let mut always = target;
    always["paths"] = json!(["x+y=z"]);
    always["overwrite"] = json!("always");
    let (s, _) = restore(&w, "always", always);
    assert_eq!(s.files, Some(1), "{s:?}");
    assert_eq!(get(&oc, &other, "restored/x+y=z").0, b"plus and equals");
}
