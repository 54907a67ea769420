//! Restore drills of config policies (pure): the drill is a RestoreRequest
//! with `target.config` and `dryRun`, run as the drill's service account.
//! Every object of the backup is decrypted and sent to the API server as a
//! server-side dry run (`dryRun=All`: admission and validation run, nothing
//! is stored), so an API version the server no longer serves, or an object
//! it would refuse, fails the drill; the policy's cloud secret stores are
//! decrypted and looked up in their account, never written.

use crate::api::policy::RestoreDrill;
use crate::api::restore::{RestoreRequest, RestoreTarget};
use crate::api::restore_config::{
    CloudRestoreTarget, ConfigTarget, SecretsManagerTarget, SsmTarget,
};
use crate::api::{BackupPolicy, LocalRef, RestoreRequestSpec};
use crate::wire::step;

/// The spec of a config policy's drill of `backup_id`; `None` for a policy
/// of another kind, or a drill without its service account.
pub fn spec(
    policy: &BackupPolicy,
    drill: &RestoreDrill,
    name: &str,
    backup_id: &str,
) -> Option<RestoreRequestSpec> {
    let source = policy.spec.source.config.as_ref()?;
    let cloud = source.cloud.as_ref().map(|c| CloudRestoreTarget {
        region: Some(c.region.clone()),
        endpoint: c.endpoint.clone(),
        credentials_secret_ref: c.credentials_secret_ref.clone(),
        secrets_manager: c
            .secrets_manager
            .as_ref()
            .map(|_| SecretsManagerTarget::default()),
        ssm: c.ssm.as_ref().map(|_| SsmTarget::default()),
    });
    Some(RestoreRequestSpec {
        policy_ref: LocalRef::new(name),
        point_in_time: None,
        backup_id: Some(backup_id.to_string()),
        from: None,
        target: RestoreTarget {
            config: Some(ConfigTarget {
                // Every type backed up (named, so that with cloud stores the
                // objects are taken too).
                resources: source.resources.clone(),
                service_account_name: drill.service_account_name.clone()?,
                cloud,
                ..Default::default()
            }),
            ..Default::default()
        },
        checks: Vec::new(),
        dry_run: true,
        overwrite: false,
        drop_after: false,
    })
}

/// What a passed config drill says on the policy: the restore step's line.
pub fn passed_message(r: &RestoreRequest) -> Option<String> {
    r.spec.target.config.as_ref()?;
    let steps = &r.status.as_ref()?.steps;
    steps
        .iter()
        .find(|s| s.name == step::RESTORE)
        .and_then(|s| s.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::drill::drill_request;
    use serde_json::json;

    fn policy(drill: serde_json::Value, cloud: bool) -> BackupPolicy {
        let mut config = json!({"namespaces": ["shop"], "resources": ["secrets", "configmaps"],
            "serviceAccountName": "reader"});
        if cloud {
            config["cloud"] = json!({"region": "eu-west-1", "credentialsSecretRef": {"name": "aws"},
                "secretsManager": {"namePrefix": "prod/"}});
        }
        let spec = json!({"source": {"config": config},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "b"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "verification": {"restoreDrill": drill}});
        let mut p = BackupPolicy::new("cluster", serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some("ops".into());
        p.metadata.uid = Some("policy-uid".into());
        p
    }

    #[test]
    fn a_config_drill_is_a_dry_run_of_every_type_and_cloud_store_as_its_account() {
        let p = policy(
            json!({"schedule": "0 6 * * 0", "serviceAccountName": "restorer"}),
            true,
        );
        assert_eq!(p.spec.validate(), Ok(()));
        let id = "20261121T010000.000Z-abcdef";
        let r = drill_request(&p, Some(id), "2026-11-22T05:00:00Z".parse().unwrap()).unwrap();
        assert!(r.spec.dry_run && !r.spec.overwrite && !r.spec.drop_after);
        assert_eq!(r.spec.validate(), Ok(()));
        let c = r.spec.target.config.as_ref().unwrap();
        assert!(r.spec.target.postgres.is_none());
        assert_eq!(c.service_account_name, "restorer");
        assert_eq!(c.resources, ["secrets", "configmaps"]);
        assert!(c.kubernetes(), "objects too, not the cloud store alone");
        let cloud = c.cloud.as_ref().unwrap();
        assert_eq!(cloud.region.as_deref(), Some("eu-west-1"));
        assert_eq!(cloud.credentials_secret_ref.as_ref().unwrap().name, "aws");
        assert!(cloud.secrets_manager.is_some() && cloud.ssm.is_none());
    }

    #[test]
    fn drill_fields_are_checked_by_kind() {
        let fields = |p: &BackupPolicy| -> Vec<String> {
            p.spec
                .validate()
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let p = policy(
            json!({"schedule": "0 6 * * 0", "targetSecretRef": {"name": "db"},
            "checks": ["select 1"]}),
            false,
        );
        assert_eq!(
            fields(&p),
            [
                "spec.verification.restoreDrill.targetSecretRef",
                "spec.verification.restoreDrill.checks",
                "spec.verification.restoreDrill.serviceAccountName",
            ]
        );
        let mut pg = policy(
            json!({"schedule": "0 6 * * 0", "serviceAccountName": "r"}),
            false,
        );
        pg.spec.source = serde_json::from_value(json!({"postgres": {
            "connectionSecretRef": {"name": "db"}, "databases": ["orders"]}}))
        .unwrap();
        assert_eq!(
            fields(&pg),
            [
                "spec.verification.restoreDrill.serviceAccountName",
                "spec.verification.restoreDrill.targetSecretRef"
            ]
        );
        let drill = pg
            .spec
            .verification
            .as_mut()
            .unwrap()
            .restore_drill
            .as_mut()
            .unwrap();
        drill.target_secret_ref = Some(crate::api::ConnectionSecretRef::named("scratch"));
        assert_eq!(
            fields(&pg),
            ["spec.verification.restoreDrill.serviceAccountName"]
        );
    }
}
