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
