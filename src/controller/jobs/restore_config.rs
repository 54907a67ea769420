//! The restore Job of a RestoreRequest with `spec.target.config` (pure):
//! `lifeboat restore --config` with the target's selection, namespace
//! mapping and `--existing`, as the target's service account (its token
//! mounted: the Job talks to the API server), the cloud stores' credentials
//! Secret mounted as files. `spec.dryRun` runs the same restore with
//! `--dry-run`: every object goes through the API server's server-side dry
//! run (`dryRun=All`) and cloud secrets are only looked up, so a dry run
//! (and a drill) proves the backup decrypts and the server still accepts
//! it, writing nothing.

use super::pod::PodNeeds;
use super::source::cloud_credentials;
use super::{unsupported, JobConfig, JobError};
use crate::api::restore::{RestorePlan, RestoreRequest};
use crate::api::restore_config::ConfigTarget;
use crate::api::BackupPolicy;
use crate::source::config::cloud::Kind;

/// A config policy restores into `target.config` only, and only a config
/// policy does: anything else is refused naming `spec.target`.
pub fn check_kind(request: &RestoreRequest, policy: &BackupPolicy) -> Result<(), JobError> {
    let t = &request.spec.target;
    match (policy.spec.source.config.is_some(), t.config.is_some()) {
        (true, false) => Err(unsupported(
            "spec.target",
            "the policy backs up Kubernetes objects: restore them with target.config",
        )),
        (false, true) => Err(unsupported(
            "spec.target",
            "target.config restores config backups; this policy's backups are not",
        )),
        _ => Ok(()),
    }
}

/// The target's part of the restore pod: `--config` and its flags.
pub fn needs(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<PodNeeds, JobError> {
    check_kind(request, policy)?;
    let c = request
        .spec
        .target
        .config
        .as_ref()
        .ok_or(JobError::Missing {
            field: "spec.target.config",
        })?;
    let mut args = vec![
        "--backup".to_string(),
        plan.backup_id.clone(),
        "--config".into(),
    ];
    args.extend(selection_args(c));
    args.extend(["--existing".into(), c.existing.arg().into()]);
    if request.spec.dry_run {
        args.push("--dry-run".into());
    }
    let mut needs = PodNeeds {
        args,
        // The Job runs as the account the target names, whatever the
        // policy's jobTemplate says, with its token (as a config backup).
        service_account: Some(c.service_account_name.clone()),
        api_access: true,
        ..Default::default()
    };
    if let Some(cloud) = &c.cloud {
        for (kind, to) in cloud.stores() {
            let (flag, to_flag) = match kind {
                Kind::SecretsManager => ("--secrets-manager", "--to-prefix"),
                Kind::Ssm => ("--ssm", "--to-path"),
            };
            needs.args.push(flag.into());
            if let Some(to) = to {
                needs.args.push(format!("{to_flag}={to}"));
            }
        }
        if let Some(region) = &cloud.region {
            needs.args.extend(["--cloud-region".into(), region.clone()]);
        }
        if let Some(e) = &cloud.endpoint {
            needs.args.extend(["--cloud-endpoint".into(), e.clone()]);
        }
        if let Some(creds) = &cloud.credentials_secret_ref {
            needs.add(cloud_credentials(creds, cfg));
        }
    }
    Ok(needs)
}

/// `--resource`, `--namespace`, `--name`, `--selector`, `--namespace-map`.
/// Values that may start with `-` or `/` are joined to their flag.
fn selection_args(c: &ConfigTarget) -> Vec<String> {
    let mut args = Vec::new();
    for r in &c.resources {
        args.push(format!("--resource={r}"));
    }
    for ns in &c.namespaces {
        args.extend(["--namespace".into(), ns.clone()]);
    }
    for n in &c.names {
        args.extend(["--name".into(), n.clone()]);
    }
    if let Some(sel) = c.selector() {
        args.push(format!("--selector={sel}"));
    }
    for m in &c.namespace_mapping {
        args.extend(["--namespace-map".into(), format!("{}={}", m.from, m.to)]);
    }
    args
}
