//! The restore Job of a config backup: `lifeboat restore --config` with
//! the target's selection, as the target's account with its token, cloud
//! credentials as mounted files only; a RestoreRequest whose target does
//! not fit the policy's kind gets no Job; a config dry run is a restore
//! sent as the server's dry run, not a plan alone; a missing permission
//! fails the request before any Job.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

use super::JobConfig;
use crate::api::restore::{RestorePhase, RestorePlan, RestoreRequest, RestoreRequestSpec};
use crate::api::BackupPolicy;
use crate::controller::job_status::ObservedJob;
use crate::controller::restore::{decide, Observed};
use crate::controller::restore_jobs::{plan_job, restore_job};
use crate::controller::test_support::{args, at, RESYNC};

const ID: &str = "20261121T020000.000Z-a1b2c3";

fn policy(source: Value) -> BackupPolicy {
    let spec = json!({"source": source, "schedule": {"daily": "0 2 * * *"},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk",
            "credentialsSecretRef": {"name": "s3-primary"}}}],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}});
    let mut p = BackupPolicy::new("cluster", serde_json::from_value(spec).unwrap());
    p.metadata.namespace = Some("ops".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}

fn config_policy() -> BackupPolicy {
    policy(
        json!({"config": {"namespaces": ["shop"], "resources": ["secrets", "configmaps"],
        "serviceAccountName": "reader"}}),
    )
}

fn request(target: Value, dry_run: bool) -> RestoreRequest {
    let spec: RestoreRequestSpec = serde_json::from_value(
        json!({"policyRef": {"name": "cluster"}, "target": target, "dryRun": dry_run}),
    )
    .unwrap();
    let mut r = RestoreRequest::new("shop-back", spec);
    r.metadata.namespace = Some("ops".into());
    r.metadata.uid = Some("rr-uid".into());
    r
}

fn plan() -> RestorePlan {
    RestorePlan {
        backup_id: ID.into(),
        destination: "primary".into(),
        ..Default::default()
    }
}

fn full_target() -> Value {
    json!({"config": {"resources": ["secrets"], "namespaces": ["shop"], "names": ["shop/db"],
        "labelSelector": {"matchLabels": {"app": "web"}},
        "namespaceMapping": [{"from": "shop", "to": "shop-copy"}], "existing": "Update",
        "serviceAccountName": "restorer",
        "cloud": {"region": "eu-west-1", "credentialsSecretRef": {"name": "aws-dr"},
                  "secretsManager": {"toPrefix": "dr/"}, "ssm": {}}}})
}

#[test]
fn a_config_restore_runs_restore_config_as_the_targets_account() {
    let cfg = JobConfig::default();
    let job = restore_job(
        &request(full_target(), true),
        &config_policy(),
        &plan(),
        &cfg,
    )
    .unwrap();
    let a = args(&job).join(" ");
    for want in [
        "restore --from primary=",
        &format!("--backup {ID} --config"),
        "--resource=secrets --namespace shop --name shop/db --selector=app=web --namespace-map shop=shop-copy",
        "--existing update --dry-run",
        "--secrets-manager --to-prefix=dr/ --ssm --cloud-region eu-west-1",
        &format!("--cloud-credentials {}", cfg.cloud_credentials_dir()),
        "--report-file /dev/termination-log --json",
    ] {
        assert!(a.contains(want), "{want:?} in {a}");
    }
    assert!(!a.contains("--check") && !a.contains("--target-db"), "{a}");
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("restorer"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    // Secrets by reference only: the cloud keys are files of a Secret volume.
    let c = &pod.containers[0];
    assert!(c
        .env
        .iter()
        .flatten()
        .all(|e| e.name != "AWS_SECRET_ACCESS_KEY"));
    let cloud = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "cloud-credentials")
        .unwrap();
    let secret = cloud.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("aws-dr"));
    let files: Vec<&str> = secret
        .items
        .iter()
        .flatten()
        .map(|i| i.path.as_str())
        .collect();
    assert_eq!(files, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);

    // The defaults: skip existing objects, a real restore, no cloud.
    let plain = json!({"config": {"serviceAccountName": "restorer"}});
    let job = restore_job(&request(plain, false), &config_policy(), &plan(), &cfg).unwrap();
    let a = args(&job).join(" ");
    assert!(a.contains("--config --existing skip --report-file"), "{a}");
    assert!(!a.contains("--dry-run") && !a.contains("--cloud"), "{a}");
}

#[test]
fn a_target_of_the_wrong_kind_gets_no_job_and_names_spec_target() {
    let cfg = JobConfig::default();
    let pg = json!({"postgres": {"connectionSecretRef": {"name": "db"}}});
    let e = plan_job(&request(pg.clone(), false), &config_policy(), &cfg).unwrap_err();
    assert_eq!(e.field(), "spec.target");
    let e = restore_job(&request(pg, false), &config_policy(), &plan(), &cfg).unwrap_err();
    assert_eq!(e.field(), "spec.target");
    let postgres = policy(
        json!({"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["orders"]}}),
    );
    let config = json!({"config": {"serviceAccountName": "restorer"}});
    let e = plan_job(&request(config, false), &postgres, &cfg).unwrap_err();
    assert_eq!(e.field(), "spec.target");
    assert!(
        e.to_string()
            .contains("target.config restores config backups"),
        "{e}"
    );
}

fn plan_done() -> (Job, ObservedJob) {
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "shop-back-plan"},
        "status": {"startTime": "2026-11-22T10:00:10Z", "completionTime": "2026-11-22T10:00:20Z",
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}))
    .unwrap();
    let summary = json!({"backup_id": ID, "destination": "primary", "bytes": 10}).to_string();
    let pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "status": {"containerStatuses": [{"name": "lifeboat", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": summary}}}]}}))
    .unwrap();
    (job.clone(), ObservedJob::new(Some(job), vec![pod]))
}

#[test]
fn a_config_dry_run_restores_with_the_servers_dry_run_and_a_denial_creates_no_job() {
    let p = config_policy();
    let r = request(json!({"config": {"serviceAccountName": "restorer"}}), true);
    let (_, planned) = plan_done();
    let none = ObservedJob::default();
    let obs = |denied| Observed {
        request: &r,
        policy: Some(&p),
        plan: &planned,
        restore: &none,
        now: at("2026-11-22T10:01:00Z"),
        denied,
    };
    let d = decide(obs(None), &JobConfig::default(), RESYNC);
    let job = d
        .create_job
        .expect("the restore Job, not the end of a plan-only dry run");
    assert!(args(&job).contains(&"--dry-run".to_string()));

    let missing = "service account ops/restorer cannot create secrets in namespace shop: bind the lifeboat-config-restorer ClusterRole (or a role allowing it) to it";
    let d = decide(obs(Some(missing)), &JobConfig::default(), RESYNC);
    assert!(d.create_job.is_none());
    let st = d.status.unwrap();
    assert_eq!(st.phase, RestorePhase::Failed);
    assert!(st
        .message
        .unwrap()
        .contains("cannot create secrets in namespace shop"));
}
