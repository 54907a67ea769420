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
