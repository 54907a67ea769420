//! The restore Job of a volume or bucket policy's backup: the claim
//! mounted read-write (the backups' Secrets read-only), the target
//! bucket's keys mounted as files, a drill's scratch emptyDir sized from
//! the plan, the identity it writes as, and any other pairing of policy
//! and target refused naming `spec.target`.

use super::*;
use crate::api::restore::RestorePlan;
use crate::api::{BackupPolicy, RestoreRequest, RestoreRequestSpec};
use crate::controller::jobs::{volume, JobConfig};
use crate::controller::restore_jobs::{plan_job, restore_job};
use crate::controller::test_support::{after, args, pod};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

const ID: &str = "20261121T020000.000Z-a1b2c3";

fn policy(source: Value) -> BackupPolicy {
    let spec = serde_json::from_value(json!({
        "source": source,
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk",
            "credentialsSecretRef": {"name": "s3-primary"}}}],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}
    }))
    .unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}

fn volume_policy() -> BackupPolicy {
    policy(json!({"volume": {"claimName": "uploads", "subPath": "app"}}))
}

fn bucket_policy() -> BackupPolicy {
    policy(json!({"bucket": {"bucket": "assets", "region": "us-east-1"}}))
}

fn request(target: Value) -> RestoreRequest {
    let spec: RestoreRequestSpec =
        serde_json::from_value(json!({"policyRef": {"name": "orders"}, "target": target})).unwrap();
    assert_eq!(spec.validate(), Ok(()));
    let mut r = RestoreRequest::new("orders-restore", spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some("rr-uid".into());
    r
}

fn volume_named<'p>(
    pod: &'p k8s_openapi::api::core::v1::PodSpec,
    name: &str,
) -> &'p k8s_openapi::api::core::v1::Volume {
    let volumes = pod.volumes.as_ref().unwrap();
    volumes.iter().find(|v| v.name == name).unwrap()
}

fn plan(bytes: i64) -> RestorePlan {
    RestorePlan {
        backup_id: ID.into(),
        destination: "primary".into(),
        bytes: Some(bytes),
        ..Default::default()
    }
}

#[test]
fn files_restore_in_place_into_the_claim_mounted_read_write() {
    let r = request(
        json!({"files": {"claimName": "uploads-new", "subPath": "app",
        "paths": ["img/"], "overwrite": "always", "deleteExtra": true}}),
    );
    let p = volume_policy();
    let job = restore_job(&r, &p, &plan(1000), &JobConfig::default()).unwrap();
    let a = args(&job);
    assert_eq!(a[0], "restore");
    assert_eq!(after(&a, "--backup"), [ID]);
    assert_eq!(after(&a, "--to-dir"), [format!("{FILES_MOUNT}/app")]);
    assert_eq!(after(&a, "--overwrite"), ["always"]);
    assert_eq!(after(&a, "--path"), ["img"]);
    assert!(a.contains(&"--delete-extra".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--check")), "{a:?}");
    let pod = pod(&job);
    let c = &pod.containers[0];
    // The target claim is the one mount that is writable (besides /tmp);
    // the keys and the destinations' credentials are read-only.
    for m in c.volume_mounts.as_ref().unwrap() {
        let writable = m.read_only != Some(true);
        assert_eq!(
            writable,
            ["target", "tmp"].contains(&m.name.as_str()),
            "{m:?}"
        );
    }
    let claim = volume_named(pod, "target");
    let pvc = claim.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(
        (pvc.claim_name.as_str(), pvc.read_only),
        ("uploads-new", None)
    );
    let sc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_group),
        (Some(65532), Some(65532))
    );
    // fsGroup would re-group the whole volume: only when its root differs.
    assert_eq!(sc.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!(csc.run_as_non_root, Some(true));
    assert_eq!(csc.capabilities.as_ref().unwrap().add, None);
    // The plan Job reads the bucket only: no claim.
    let plan_job = plan_job(&r, &p, &JobConfig::default()).unwrap();
    assert!(volume::claim_of(&plan_job).is_none());
    assert_eq!(volume::claim_of(&job).as_deref(), Some("uploads-new"));
}

#[test]
fn restoring_owners_is_root_with_three_capabilities_and_no_fs_group() {
    let r = request(json!({"files": {"claimName": "uploads", "restoreOwners": true}}));
    let job = restore_job(&r, &volume_policy(), &plan(1), &JobConfig::default()).unwrap();
    assert_eq!(after(&args(&job), "--to-dir"), [FILES_MOUNT]);
    assert_eq!(after(&args(&job), "--overwrite"), ["never"]);
    let pod = pod(&job);
    let sc = pod.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_user, sc.fs_group), (Some(0), None));
    let csc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(csc.run_as_non_root, Some(false));
    let caps = csc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(
        caps.add.clone().unwrap(),
        OWNER_CAPABILITIES.map(String::from)
    );
    let other =
        request(json!({"files": {"claimName": "u", "runAsUser": 1000, "runAsGroup": 2000}}));
    let job = restore_job(&other, &volume_policy(), &plan(1), &JobConfig::default()).unwrap();
    let sc = pod_of(&job);
    assert_eq!((sc.0, sc.1), (Some(1000), Some(2000)));
}

fn pod_of(job: &Job) -> (Option<i64>, Option<i64>) {
    let sc = pod(job).security_context.clone().unwrap();
    (sc.run_as_user, sc.run_as_group)
}

#[test]
fn a_bucket_target_gets_its_keys_as_files_never_as_values() {
    let r = request(
        json!({"bucket": {"bucket": "assets-dr", "region": "eu-west-1",
        "prefix": "restored", "endpoint": "https://s3.example",
        "credentialsSecretRef": {"name": "dr-keys", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"},
        "paths": ["img"]}}),
    );
    let cfg = JobConfig {
        mount_root: "/run/lb".into(),
        ..Default::default()
    };
    let job = restore_job(&r, &bucket_policy(), &plan(1), &cfg).unwrap();
    let a = args(&job);
    assert_eq!(
        after(&a, "--to-bucket"),
        ["s3://assets-dr/restored?region=eu-west-1&endpoint=https%3A%2F%2Fs3.example&credentials=%2Frun%2Flb%2Ftarget-bucket"]
    );
    assert_eq!(after(&a, "--overwrite"), ["never"]);
    assert_eq!(after(&a, "--path"), ["img"]);
    let pod = pod(&job);
    let v = volume_named(pod, "target-bucket");
    let secret = v.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("dr-keys"));
    let items: Vec<(String, String)> = secret
        .items
        .clone()
        .unwrap()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    assert_eq!(
        items,
        [
            ("id".to_string(), "AWS_ACCESS_KEY_ID".to_string()),
            ("secret".into(), "AWS_SECRET_ACCESS_KEY".into())
        ]
    );
    let c = &pod.containers[0];
    let m = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "target-bucket")
        .unwrap();
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        ("/run/lb/target-bucket", Some(true))
    );
    // No claim, and no credential in the environment.
    assert!(volume::claim_of(&job).is_none());
    for e in c.env.as_ref().unwrap() {
        assert!(!e.name.starts_with("AWS_"), "{e:?}");
    }
}

#[test]
fn a_scratch_restore_gets_an_empty_dir_sized_from_the_plan() {
    let r = request(json!({"scratch": {}}));
    let job = restore_job(&r, &volume_policy(), &plan(8 << 20), &JobConfig::default()).unwrap();
    assert_eq!(
        after(&args(&job), "--to-dir"),
        [format!("{SCRATCH_MOUNT}/restored")]
    );
    let pod = pod(&job);
    let v = volume_named(pod, "scratch");
    let limit = v.empty_dir.as_ref().unwrap().size_limit.clone().unwrap().0;
    assert_eq!(limit, ((8u64 << 20) + (1 << 20) + (64 << 20)).to_string());
    assert!(volume::claim_of(&job).is_none());
    // A bucket policy's drill goes the same way.
    assert!(restore_job(&r, &bucket_policy(), &plan(1), &JobConfig::default()).is_ok());
}

#[test]
fn a_target_of_the_wrong_kind_is_refused_naming_spec_target() {
    let pg =
        policy(json!({"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["o"]}}));
    let files = json!({"files": {"claimName": "u"}});
    let bucket = json!({"bucket": {"bucket": "abc", "region": "r"}});
    let db = json!({"postgres": {"connectionSecretRef": {"name": "db"}}});
    for (p, target) in [
        (&volume_policy(), bucket.clone()),
        (&volume_policy(), db.clone()),
        (&bucket_policy(), files.clone()),
        (&bucket_policy(), json!({"volume": {"claimName": "v"}})),
        (&pg, files),
        (&pg, bucket),
        (&pg, json!({"scratch": {}})),
    ] {
        let r = request(target.clone());
        let e = plan_job(&r, p, &JobConfig::default()).unwrap_err();
        assert_eq!(e.field(), "spec.target", "{target}");
        let e = restore_job(&r, p, &plan(1), &JobConfig::default()).unwrap_err();
        assert_eq!(e.field(), "spec.target", "{target}: {e}");
    }
}
