//! The backup Job of a config policy: the arguments that select its
//! objects, run as the policy's service account with its token mounted
//! (the only pods that talk to the API server); the others mount none.

use super::*;
use crate::api::policy::BackupPolicySpec;
use serde_json::json;

fn policy(config: serde_json::Value, template: serde_json::Value) -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(json!({
        "source": {"config": config},
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

fn run() -> crate::api::BackupRun {
    crate::controller::test_support::daily_run("cluster-1", "run-uid-1")
}

#[test]
fn a_config_job_lists_as_the_policys_account() {
    let p = policy(
        json!({"resources": ["secrets", "deployments.apps"], "excludeResources": ["configmaps"],
               "labelSelector": {"matchLabels": {"app": "web"}}, "includeOwned": true,
               "serviceAccountName": "config-backup"}),
        json!({}),
    );
    let job = backup_job(&p, &run(), &JobConfig::default()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    for want in [
        "--config",
        "--namespace shop",
        "--resource secrets --resource deployments.apps",
        "--exclude-resource configmaps",
        "--selector app=web",
        "--include-owned",
    ] {
        assert!(args.contains(want), "{want} in {args}");
    }
    assert!(!args.contains("--all-namespaces") && !args.contains("--include-status"));
    assert_eq!(pod.service_account_name.as_deref(), Some("config-backup"));
    assert_eq!(pod.automount_service_account_token, Some(true));

    let all = policy(
        json!({"allNamespaces": true, "resources": ["*"], "serviceAccountName": "config-backup"}),
        json!({}),
    );
    let job = backup_job(&all, &run(), &JobConfig::default()).unwrap();
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--all-namespaces".to_string()));
}

#[test]
fn config_fields_are_checked_by_name() {
    let fields = |config: serde_json::Value, template: serde_json::Value| -> Vec<String> {
        policy(config, template)
            .spec
            .validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    assert!(fields(
        json!({"resources": ["secrets"], "serviceAccountName": "sa"}),
        json!({})
    )
    .is_empty());
    assert_eq!(
        fields(
            json!({"resources": ["Secrets"], "serviceAccountName": "sa"}),
            json!({})
        ),
        ["spec.source.config.resources"]
    );
    assert_eq!(
        fields(
            json!({"resources": ["secrets"], "serviceAccountName": "sa",
                   "labelSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]}}),
            json!({})
        ),
        ["spec.source.config.labelSelector"]
    );
    assert_eq!(
        fields(
            json!({"resources": ["secrets"], "serviceAccountName": "sa"}),
            json!({"serviceAccountName": "other"})
        ),
        ["spec.jobTemplate.serviceAccountName"]
    );
    assert_eq!(
        fields(
            json!({"resources": ["secrets"], "serviceAccountName": "sa", "namespaces": ["a"], "allNamespaces": true}),
            json!({})
        ),
        ["spec.source.config.namespaces"]
    );
}

#[test]
fn a_cloud_secrets_job_reads_its_stores_with_mounted_keys() {
    let p = policy(
        json!({"serviceAccountName": "config-backup",
               "cloud": {"region": "eu-west-1", "endpoint": "https://vpce.example",
                         "credentialsSecretRef": {"name": "aws-keys", "accessKeyIdKey": "id"},
                         "secretsManager": {"namePrefix": "prod/shop/"},
                         "ssm": {"path": "/prod/shop"}}}),
        json!({}),
    );
    assert!(p.spec.validate().is_ok());
    let job = backup_job(&p, &run(), &JobConfig::default()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    for want in [
        "--secrets-manager prod/shop/",
        "--ssm-path /prod/shop",
        "--cloud-region eu-west-1",
        "--cloud-endpoint https://vpce.example",
        "--cloud-credentials /var/run/lifeboat/cloud",
    ] {
        assert!(args.contains(want), "{want} in {args}");
    }
    // No resource named: no Kubernetes object is read.
    assert!(!args.contains("--namespace") && !args.contains("--resource"));
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "cloud-credentials")
        .unwrap();
    let secret = vol.secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("aws-keys"));
    assert_eq!(secret.items.unwrap()[0].key, "id");
    assert!(pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap()
        .iter()
        .any(|m| m.mount_path == "/var/run/lifeboat/cloud"));
}

#[test]
fn cloud_fields_are_checked_by_name() {
    let fields = |cloud: serde_json::Value| -> Vec<String> {
        policy(
            json!({"serviceAccountName": "sa", "cloud": cloud}),
            json!({}),
        )
        .spec
        .validate()
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect()
    };
    assert_eq!(
        fields(json!({"region": "eu-west-1"})),
        ["spec.source.config.cloud"]
    );
    assert_eq!(
        fields(json!({"region": "eu-west-1", "ssm": {"path": "prod"}})),
        ["spec.source.config.cloud.ssm.path"]
    );
    assert_eq!(
        fields(
            json!({"region": "eu-west-1", "endpoint": "http://sm.example",
                      "secretsManager": {"namePrefix": "p/"}})
        ),
        ["spec.source.config.cloud.endpoint"]
    );
    assert_eq!(
        policy(json!({"serviceAccountName": "sa"}), json!({}))
            .spec
            .validate()
            .err()
            .unwrap()[0]
            .field,
        "spec.source.config.resources"
    );
}
