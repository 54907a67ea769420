//! A policy's jobTemplate in the pods it makes (issue 13, item 8): the
//! deadline, default requests, pod labels and annotations, pull secrets,
//! extra environment and affinity — and the names it may not set.

use super::*;
use crate::api::policy::BackupPolicySpec;
use crate::api::BackupRun;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

fn policy(template: serde_json::Value) -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk"}}],
        "encryption": {"keySecretRef": {"name": "backup-keys"}},
        "jobTemplate": template
    }))
    .unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}

fn run() -> BackupRun {
    crate::controller::test_support::daily_run("orders-1", "run-uid-1")
}

fn job(template: serde_json::Value) -> Job {
    backup_job(&policy(template), &run(), &JobConfig::default()).unwrap()
}

#[test]
fn the_template_reaches_the_job_and_its_pod() {
    let j = job(json!({
        "activeDeadlineSeconds": 3600,
        "podLabels": {"team": "payments", LABEL_POLICY: "someone-else"},
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "imagePullSecrets": [{"name": "registry"}],
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    }));
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    let meta = spec.template.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "payments");
    assert_eq!(labels[LABEL_POLICY], "orders", "lifeboat's own labels win");
    assert_eq!(
        meta.annotations.as_ref().unwrap()["sidecar.istio.io/inject"],
        "false"
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
    assert!(pod.affinity.as_ref().unwrap().node_affinity.is_some());
    let env = pod.containers[0].env.as_ref().unwrap();
    assert_eq!(env.last().unwrap().name, "HTTPS_PROXY");
    assert!(
        env.iter().any(|e| e.name == "PGHOST"),
        "lifeboat's own stay"
    );
}

#[test]
fn without_a_template_a_job_has_a_deadline_and_requests() {
    let j = job(json!({}));
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(DEFAULT_DEADLINE_SECONDS));
    let resources = spec.template.spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert_eq!(resources.limits, None);
    // The template's own resources replace the defaults.
    let j = job(json!({"resources": {"limits": {"memory": "1Gi"}}}));
    let resources = j.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.requests, None);
}

#[test]
fn a_template_may_not_set_what_lifeboat_sets_nor_a_deadline_too_short() {
    let p = policy(json!({
        "activeDeadlineSeconds": 10,
        "env": [{"name": "HTTPS_PROXY", "value": "x"}, {"name": "PGHOST", "value": "evil"},
                {"name": "LIFEBOAT_KEY_FILE", "value": "/tmp/k"}],
        "imagePullSecrets": [{"name": "Not_A_Name"}]
    }));
    let errors = p.spec.validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.jobTemplate.activeDeadlineSeconds",
            "spec.jobTemplate.env[1].name",
            "spec.jobTemplate.env[2].name",
            "spec.jobTemplate.imagePullSecrets[0].name",
        ],
        "{errors:?}"
    );
}
