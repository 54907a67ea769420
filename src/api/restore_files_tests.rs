use super::*;
use crate::api::RestoreRequestSpec;
use serde_json::{json, Value};

fn spec(target: Value, extra: Value) -> RestoreRequestSpec {
    let mut v = json!({"policyRef": {"name": "uploads"}, "target": target});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn fields(target: Value, extra: Value) -> Vec<String> {
    crate::api::error_fields(spec(target, extra).validate())
}

#[test]
fn a_files_target_parses_with_its_defaults() {
    let s = spec(json!({"files": {"claimName": "uploads"}}), json!({}));
    assert_eq!(s.validate(), Ok(()));
    let f = s.target.files.unwrap();
    assert_eq!(f.overwrite, FileOverwrite::Never);
    assert!(!f.delete_extra && !f.restore_owners);
    assert_eq!(f.uid_gid(), (65532, 65532));
    assert_eq!(f.sub_dir(), "");
    let f: FilesTarget = serde_json::from_value(json!({"claimName": "u", "overwrite": "ifNewer",
        "runAsUser": 1000, "subPath": "/app/"}))
    .unwrap();
    assert_eq!(
        (f.overwrite.arg(), f.uid_gid(), f.sub_dir()),
        ("if-newer", (1000, 1000), "app")
    );
    let root: FilesTarget =
        serde_json::from_value(json!({"claimName": "u", "restoreOwners": true})).unwrap();
    assert_eq!(root.uid_gid(), (0, 0));
}

#[test]
fn bad_files_fields_are_named() {
    assert_eq!(
        fields(
            json!({"files": {"claimName": "Uploads", "subPath": "../etc",
                "paths": ["img", "/abs", "a/../../b"], "runAsGroup": 0}}),
            json!({})
        ),
        [
            "spec.target.files.claimName",
            "spec.target.files.subPath",
            "spec.target.files.paths[1]",
            "spec.target.files.paths[2]",
            "spec.target.files.runAsGroup",
        ]
    );
    assert_eq!(
        fields(
            json!({"files": {"claimName": "u", "restoreOwners": true, "runAsUser": 1000}}),
            json!({})
        ),
        ["spec.target.files.runAsUser"]
    );
    // What only a database restore takes is refused, not ignored.
    assert_eq!(
        fields(
            json!({"files": {"claimName": "u"}}),
            json!({"checks": ["select 1"], "overwrite": true, "dropAfter": true})
        ),
        ["spec.checks", "spec.overwrite", "spec.dropAfter"]
    );
}

#[test]
fn a_bucket_target_builds_its_location_and_refuses_if_newer() {
    let s = spec(
        json!({"bucket": {"bucket": "assets-restored", "region": "eu-west-1", "prefix": "/up/",
            "endpoint": "http://127.0.0.1:9000", "credentialsSecretRef": {"name": "target-s3"},
            "paths": ["img/"], "overwrite": "always"}}),
        json!({}),
    );
    assert_eq!(s.validate(), Ok(()));
    let b = s.target.bucket.as_ref().unwrap();
    let loc = crate::location::Location::S3(b.location(Some("/run/creds")));
    assert_eq!(
        loc.to_string(),
        "s3://assets-restored/up?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000&credentials=%2Frun%2Fcreds"
    );
    assert_eq!(s.target.describe().unwrap(), "s3://assets-restored/up");
    assert_eq!(
        fields(
            json!({"bucket": {"bucket": "ab", "overwrite": "ifNewer",
                "endpoint": "http://minio.example:9000", "credentialsSecretRef": {"name": "Bad"}}}),
            json!({})
        ),
        [
            "spec.target.bucket.bucket",
            "spec.target.bucket.region",
            "spec.target.bucket.endpoint",
            "spec.target.bucket.credentialsSecretRef.name",
            "spec.target.bucket.overwrite",
        ]
    );
}

#[test]
fn exactly_one_target_kind() {
    assert!(fields(json!({"scratch": {}}), json!({})).is_empty());
    let insecure = json!({"bucket": {"bucket": "abc", "region": "r", "allowInsecureHttp": true,
        "endpoint": "http://minio.example:9000"}});
    assert!(fields(insecure, json!({})).is_empty());
    for two in [
        json!({"files": {"claimName": "u"}, "scratch": {}}),
        json!({"files": {"claimName": "u"}, "postgres": {"connectionSecretRef": {"name": "db"}}}),
        json!({"bucket": {"bucket": "abc", "region": "r"}, "volume": {"claimName": "v"}}),
        json!({}),
    ] {
        assert_eq!(fields(two.clone(), json!({})), ["spec.target"], "{two}");
    }
    // The CRD's rule says the same.
    let crd = serde_json::to_value(<crate::api::RestoreRequest as kube::CustomResourceExt>::crd())
        .unwrap();
    let target = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["target"];
    let rule = target["x-kubernetes-validations"][0]["rule"]
        .as_str()
        .unwrap();
    for kind in ["postgres", "volume", "files", "bucket", "scratch", "config"] {
        assert!(rule.contains(&format!("has(self.{kind})")), "{rule}");
    }
    assert_eq!(
        target["properties"]["files"]["properties"]["overwrite"]["enum"],
        json!(["never", "ifNewer", "always"])
    );
}

/// The RestoreRequests of docs/RUNBOOK.md parse and validate.
#[test]
fn the_runbook_examples_are_valid_requests() {
    let runbook = include_str!("../../docs/RUNBOOK.md");
    let mut found = Vec::new();
    for block in runbook.split("```yaml\n").skip(1) {
        let text = block.split("```").next().unwrap();
        if !text.contains("kind: RestoreRequest") {
            continue;
        }
        let r: crate::api::RestoreRequest = serde_yaml::from_str(text).unwrap();
        assert_eq!(r.spec.validate(), Ok(()), "{text}");
        // A config restore's target is the cluster: no words for it.
        found.push(r.spec.target.describe().unwrap_or_else(|| "config".into()));
    }
    assert_eq!(
        found,
        [
            "claim uploads (subPath app)",
            "s3://assets-restored/from-backup",
            "config"
        ]
    );
}
