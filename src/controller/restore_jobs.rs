//! Job specs of a RestoreRequest, and the results they report. Pure.
//!
//! - [`plan_job`] runs `lifeboat plan`: lists the policy's destinations,
//!   reads back the chosen backup, reports the plan. It gets the keys and the
//!   bucket credentials but no database at all, so a dry run cannot write
//!   to the target.
//! - [`restore_job`] runs `lifeboat restore --backup <planned id>` from the
//!   planned destination first, then the others, into the database of
//!   `spec.target.postgres.connectionSecretRef` (mounted as for backups),
//!   runs the checks (`--check`), and for a drill drops the scratch
//!   database (`--drop-after`).
//!
//! Both are owned by the request; deleting it deletes the Jobs, never the
//! restored database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume, VolumeMount};
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use super::jobs::{
    access, base_labels, bounded_name, destination_base, destination_url, job, label_value,
    policy_id, unsupported, Access, JobConfig, JobError, JobParts, TERMINATION_LOG,
};
use crate::api::restore::{RestorePlan, RestoreRequest};
use crate::api::BackupPolicy;

/// Label of a RestoreRequest's Jobs naming it.
pub const LABEL_RESTORE: &str = "lifeboat.dev/restore";

pub fn plan_job_name(request: &str) -> String {
    bounded_name(request, "plan")
}

pub fn restore_job_name(request: &str) -> String {
    bounded_name(request, "restore")
}

/// `--backup` for the request's spec: a backup id, a time, or `latest`.
fn point_arg(request: &RestoreRequest) -> String {
    match (&request.spec.backup_id, &request.spec.point_in_time) {
        (Some(id), _) => id.clone(),
        (None, Some(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (None, None) => "latest".into(),
    }
}

/// The policy's destination URLs, `first` (a destination name) first.
fn from_urls(
    policy: &BackupPolicy,
    first: Option<&str>,
    only: bool,
    cfg: &JobConfig,
) -> Result<Vec<String>, JobError> {
    let (namespace, name) = policy_id(policy)?;
    let dests = &policy.spec.destinations;
    if let Some(f) = first {
        if !dests.iter().any(|d| d.name == f) {
            return Err(unsupported(
                "spec.from",
                &format!("the policy has no destination {f:?}"),
            ));
        }
    }
    let mut ordered: Vec<_> = dests
        .iter()
        .filter(|d| Some(d.name.as_str()) == first)
        .collect();
    if !only || first.is_none() {
        ordered.extend(dests.iter().filter(|d| Some(d.name.as_str()) != first));
    }
    Ok(ordered
        .into_iter()
        .map(|d| destination_url(namespace, name, d, cfg))
        .collect())
}

fn check_same_namespace(request: &RestoreRequest, policy: &BackupPolicy) -> Result<(), JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    let ns = request.namespace().unwrap_or_default();
    if ns != namespace {
        return Err(JobError::WrongNamespace {
            run: ns,
            policy: namespace.into(),
        });
    }
    if request.spec.policy_ref.name != policy_name {
        return Err(JobError::WrongPolicy {
            run: request.spec.policy_ref.name.clone(),
            policy: policy_name.into(),
        });
    }
    Ok(())
}

fn parts<'a>(
    request: &RestoreRequest,
    policy: &'a BackupPolicy,
    cfg: &'a JobConfig,
    component: &str,
    name: String,
    args: Vec<String>,
    database: bool,
) -> Result<JobParts<'a>, JobError> {
    check_same_namespace(request, policy)?;
    let (namespace, policy_name) = policy_id(policy)?;
    let owner = request.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let target = if database {
        let pg = request
            .spec
            .target
            .postgres
            .as_ref()
            .ok_or(JobError::Missing {
                field: "spec.target.postgres",
            })?;
        Some(&pg.connection_secret_ref)
    } else {
        None
    };
    let Access {
        env,
        volumes,
        mounts,
    } = access(policy, cfg, target);
    let mut labels = base_labels(component, policy_name);
    labels.insert(LABEL_RESTORE.into(), label_value(&request.name_any()));
    Ok(JobParts {
        name,
        namespace,
        labels,
        annotations: BTreeMap::new(),
        owner,
        args,
        env,
        volumes,
        mounts,
        policy,
        cfg,
    })
}

/// The Job that plans `request`: `lifeboat plan`, no database access.
pub fn plan_job(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let mut args = vec!["plan".to_string()];
    for url in from_urls(policy, request.spec.from.as_deref(), true, cfg)? {
        args.extend(["--from".into(), url]);
    }
    // One argument: a bare RFC 3339 time reads as a timestamp, not a string,
    // to a YAML reader of the Job.
    args.push(format!("--backup={}", point_arg(request)));
    // A dry run is all the proof there is: read the copy back. A restore
    // authenticates every byte as it streams (and falls back to the next
    // destination), so its plan only checks presence: one read, not two.
    let depth = if request.spec.dry_run {
        "full"
    } else {
        "quick"
    };
    args.push(format!("--verify={depth}"));
    if let Some(db) = request
        .spec
        .target
        .postgres
        .as_ref()
        .and_then(|p| p.database.clone())
    {
        args.extend(["--target-db".into(), db]);
    }
    args.extend([
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]);
    let name = plan_job_name(&request.name_any());
    Ok(job(parts(request, policy, cfg, "plan", name, args, false)?))
}

/// The Job that restores the planned backup into the target and runs the checks.
pub fn restore_job(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    if !crate::catalog::valid_backup_id(&plan.backup_id) {
        return Err(JobError::BadBackupId(plan.backup_id.clone()));
    }
    if policy.spec.source.is_physical() {
        return data_dir_job(request, policy, plan, cfg);
    }
    let target = plan.target_database.clone().ok_or(JobError::Missing {
        field: "spec.target.postgres.database",
    })?;
    let mut args = vec!["restore".to_string()];
    for url in from_urls(policy, Some(&plan.destination), false, cfg)? {
        args.extend(["--from".into(), url]);
    }
    args.extend([
        "--backup".into(),
        plan.backup_id.clone(),
        "--target-db".into(),
        target,
        "--create".into(),
        // The target Secret's user owns what it restores: the target server
        // need not have the source's roles.
        "--no-owner".into(),
        "--password-file".into(),
        cfg.password_file(),
    ]);
    if request.spec.overwrite {
        args.push("--clean".into());
    }
    for check in &request.spec.checks {
        args.extend(["--check".into(), check.clone()]);
    }
    if request.spec.drop_after {
        args.push("--drop-after".into());
    }
    args.extend([
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]);
    let name = restore_job_name(&request.name_any());
    Ok(job(parts(
        request, policy, cfg, "restore", name, args, true,
    )?))
}

/// Where the target volume is mounted in a physical restore Job.
pub const TARGET_MOUNT: &str = "/var/lib/lifeboat/target";

/// A physical policy's restore: `lifeboat restore --data-dir` into the
/// target volume — the newest base backup before the point, WAL replayed to
/// it, promoted, checked, stopped — as the uid the server will run as.
fn data_dir_job(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let volume = request.spec.target.volume.as_ref().ok_or_else(|| {
        unsupported(
            "spec.target.volume",
            "the policy takes physical base backups: restore into target.volume (a data directory), not target.postgres",
        )
    })?;
    let mut args = vec!["restore".to_string()];
    for url in from_urls(policy, Some(&plan.destination), false, cfg)? {
        args.extend(["--from".into(), url]);
    }
    args.extend([
        "--data-dir".into(),
        format!("{TARGET_MOUNT}/{}", volume.sub_path.trim_matches('/')),
        "--user".into(),
        volume.user.clone(),
    ]);
    match (&request.spec.point_in_time, &request.spec.backup_id) {
        (Some(t), _) => args.push(format!(
            "--target-time={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )),
        // A named base backup: its own end, nothing replayed past it.
        (None, Some(_)) => args.push(format!(
            "--target-time={}",
            plan.completed_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .ok_or(JobError::Missing {
                    field: "status.plan.completedAt",
                })?
        )),
        (None, None) => {}
    }
    for check in &request.spec.checks {
        args.extend(["--check".into(), check.clone()]);
    }
    args.extend([
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]);
    let name = restore_job_name(&request.name_any());
    let mut parts = parts(request, policy, cfg, "restore", name, args, false)?;
    parts.volumes.push(Volume {
        name: "target".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: volume.claim_name.clone(),
            read_only: None,
        }),
        ..Default::default()
    });
    parts.mounts.push(VolumeMount {
        name: "target".into(),
        mount_path: TARGET_MOUNT.into(),
        ..Default::default()
    });
    let mut job = job(parts);
    // PostgreSQL runs only as the owner of its data directory: the uid the
    // server will run as, not the image's.
    let uid = volume.run_as_user;
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        if let Some(sc) = pod.security_context.as_mut() {
            sc.run_as_user = Some(uid);
            sc.run_as_group = Some(uid);
            sc.fs_group = Some(uid);
        }
        for c in &mut pod.containers {
            if let Some(sc) = c.security_context.as_mut() {
                sc.run_as_user = Some(uid);
                sc.run_as_group = Some(uid);
            }
        }
    }
    Ok(job)
}

/// What the plan Job reported (`lifeboat plan --report-file`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PlanSummary {
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub backup_id: Option<String>,
    /// URL of the destination, without query.
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub target_database: Option<String>,
    #[serde(default)]
    pub skipped: Vec<crate::plan::Skip>,
}

/// Reads a termination message as JSON of type `T`; `None` when it is not
/// (a crash left a log tail).
pub fn parse_summary<T: for<'de> Deserialize<'de>>(message: &str) -> Option<T> {
    serde_json::from_str(message.trim()).ok()
}

/// Turns the plan Job's report into the request's plan: the destination's
/// URL mapped back to its name in the policy.
pub fn plan_from_summary(s: &PlanSummary, policy: &BackupPolicy) -> Result<RestorePlan, String> {
    if let Some(e) = &s.error {
        return Err(e.clone());
    }
    let backup_id = s
        .backup_id
        .clone()
        .filter(|id| crate::catalog::valid_backup_id(id))
        .ok_or("the plan names no valid backup id")?;
    let url = s.destination.clone().unwrap_or_default();
    let (namespace, name) = (policy.namespace().unwrap_or_default(), policy.name_any());
    let name_of = |url: &str| {
        policy
            .spec
            .destinations
            .iter()
            .find(|d| destination_base(&namespace, &name, d) == url)
            .map(|d| d.name.clone())
    };
    let destination = name_of(&url).ok_or_else(|| {
        format!("the plan names {url:?}, which is not a destination of the policy")
    })?;
    Ok(RestorePlan {
        backup_id,
        wal_from: None,
        wal_to: None,
        destination,
        bytes: Some(i64::try_from(s.bytes).unwrap_or(i64::MAX)),
        completed_at: s.completed_at,
        target_database: s.target_database.clone(),
        skipped: s
            .skipped
            .iter()
            .map(|k| {
                format!(
                    "{}: {}",
                    name_of(&k.destination).unwrap_or(k.destination.clone()),
                    k.reason
                )
            })
            .collect(),
    })
}

/// What the restore Job reported (`lifeboat restore --check … --report-file`).
pub type RecoverSummary = crate::commands::recover::Summary;
