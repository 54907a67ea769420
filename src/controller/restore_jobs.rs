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

use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};

use super::jobs::pod::{job, JobMeta, PodNeeds};
use super::jobs::{
    base_labels, bounded_name, destinations, label_value, policy_id, restore_files, unsupported,
    JobConfig, JobError, TERMINATION_LOG,
};
use crate::api::restore::{RestorePlan, RestoreRequest};
use crate::api::BackupPolicy;
use crate::location::NamedLocation;
use crate::wire::PlanSummary;

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

/// `--from` for the policy's destinations, `first` (a destination name)
/// first; with `only`, `first` alone.
fn from_args(
    policy: &BackupPolicy,
    first: Option<&str>,
    only: bool,
    cfg: &JobConfig,
) -> Result<Vec<String>, JobError> {
    let dests = destinations::for_pod(&super::jobs::validated(policy)?, cfg);
    if let Some(f) = first {
        if !dests.iter().any(|d| d.name == f) {
            return Err(unsupported(
                "spec.from",
                &format!("the policy has no destination {f:?}"),
            ));
        }
    }
    let (mut ordered, rest): (Vec<NamedLocation>, Vec<NamedLocation>) = dests
        .into_iter()
        .partition(|d| Some(d.name.as_str()) == first);
    if !only || first.is_none() {
        ordered.extend(rest);
    }
    Ok(destinations::args("--from", &ordered))
}

/// The Job's identity: named for the request, owned by it, labelled with
/// the policy and the request.
fn meta<'a>(
    request: &RestoreRequest,
    policy: &'a BackupPolicy,
    component: &str,
    name: String,
) -> Result<JobMeta<'a>, JobError> {
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
    let owner = request.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let mut labels = base_labels(component, policy_name);
    labels.insert(LABEL_RESTORE.into(), label_value(&request.name_any()));
    Ok(JobMeta {
        name,
        namespace,
        labels,
        annotations: BTreeMap::new(),
        owner,
    })
}

/// The arguments every restore-side Job ends with.
fn report_args() -> [String; 3] {
    [
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]
}

/// The Job that plans `request`: `lifeboat plan`, no database access.
pub fn plan_job(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    super::jobs::restore_config::check_kind(request, policy)?;
    restore_files::check_kind(request, policy)?;
    let mut args = vec!["plan".to_string()];
    args.extend(from_args(policy, request.spec.from.as_deref(), true, cfg)?);
    // One argument: a bare RFC 3339 time reads as a timestamp, not a string,
    // to a YAML reader of the Job.
    args.push(format!("--backup={}", point_arg(request)));
    // `latest` must not quietly become an older backup because the newest
    // ones vanished from the bucket: say which one the policy recorded.
    if let (true, Some(known)) = (
        request.spec.backup_id.is_none() && request.spec.point_in_time.is_none(),
        policy
            .status
            .as_ref()
            .and_then(|s| s.last_backup.as_ref())
            .and_then(|b| b.backup_id.clone()),
    ) {
        args.push(format!("--newest-known={known}"));
    }
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
    args.extend(report_args());
    let meta = meta(request, policy, "plan", plan_job_name(&request.name_any()))?;
    let mut needs = PodNeeds {
        args,
        ..Default::default()
    };
    needs.add(PodNeeds::bucket_access(policy, cfg));
    Ok(job(meta, needs, policy, cfg))
}

/// The Job that restores the planned backup into the target and runs the
/// checks. What it needs depends on the kind of backup (see [`target_needs`]).
pub fn restore_job(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    if !crate::catalog::valid_backup_id(&plan.backup_id) {
        return Err(JobError::BadBackupId(plan.backup_id.clone()));
    }
    let meta = meta(
        request,
        policy,
        "restore",
        restore_job_name(&request.name_any()),
    )?;
    let mut needs = PodNeeds {
        args: vec!["restore".to_string()],
        ..Default::default()
    };
    needs
        .args
        .extend(from_args(policy, Some(&plan.destination), false, cfg)?);
    needs.add(target_needs(request, policy, plan, cfg)?);
    for check in &request.spec.checks {
        needs.args.extend(["--check".into(), check.clone()]);
    }
    needs.args.extend(report_args());
    needs.add(PodNeeds::bucket_access(policy, cfg));
    Ok(job(meta, needs, policy, cfg))
}

/// The target's part of a restore pod; the one place the restore side
/// matches on the kind of backup: a logical backup restores into the
/// database of the target Secret, a physical one into a data directory on
/// the target volume.
fn target_needs(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<PodNeeds, JobError> {
    if let Some(needs) = restore_files::target_needs(request, policy, plan, cfg)? {
        return Ok(needs);
    }
    if policy.spec.source.is_physical() {
        return data_dir_needs(request, plan);
    }
    if policy.spec.source.config.is_some() || request.spec.target.config.is_some() {
        return super::jobs::restore_config::needs(request, policy, plan, cfg);
    }
    let target = request
        .spec
        .target
        .postgres
        .as_ref()
        .ok_or(JobError::Missing {
            field: "spec.target.postgres",
        })?;
    let database = plan.target_database.clone().ok_or(JobError::Missing {
        field: "spec.target.postgres.database",
    })?;
    let mut needs = PodNeeds {
        args: vec![
            "--backup".into(),
            plan.backup_id.clone(),
            "--target-db".into(),
            database,
            "--create".into(),
            // The target Secret's user owns what it restores: the target
            // server need not have the source's roles.
            "--no-owner".into(),
            // As many pg_restore connections as the Job has CPUs: a database
            // it creates loads in parallel (docs/DESIGN.md).
            "--jobs".into(),
            "auto".into(),
        ],
        ..Default::default()
    };
    if request.spec.overwrite {
        needs.args.push("--clean".into());
    }
    if request.spec.drop_after {
        needs.args.push("--drop-after".into());
    }
    needs.add(PodNeeds::database(&target.connection_secret_ref, cfg));
    Ok(needs)
}

/// Where the target volume is mounted in a physical restore Job.
pub const TARGET_MOUNT: &str = "/var/lib/lifeboat/target";

/// A physical policy's restore: `lifeboat restore --data-dir` into the
/// target volume, or for a drill into the Job's scratch space — the newest
/// base backup before the point, WAL replayed to it, promoted, checked,
/// stopped — as the uid the server will run as.
fn data_dir_needs(request: &RestoreRequest, plan: &RestorePlan) -> Result<PodNeeds, JobError> {
    let t = &request.spec.target;
    let (mut needs, data_dir, uid, user) = match (&t.volume, t.scratch_data_directory()) {
        (Some(v), _) => (
            super::jobs::volume::claim_needs("target", &v.claim_name, TARGET_MOUNT, false),
            format!("{TARGET_MOUNT}/{}", v.sub_path.trim_matches('/')),
            v.run_as_user,
            &v.user,
        ),
        // No size limit: besides the base backup, recovery keeps up to the
        // backed-up server's max_wal_size of WAL, which the controller
        // cannot see; the directory goes with the pod.
        (None, Some(d)) => (
            restore_files::scratch_space(None),
            format!("{}/pgdata", restore_files::SCRATCH_MOUNT),
            d.run_as_user,
            &d.user,
        ),
        (None, None) => {
            return Err(unsupported(
                "spec.target.volume",
                "the policy takes physical base backups: restore into target.volume (a data directory), not target.postgres",
            ))
        }
    };
    needs.args = vec!["--data-dir".into(), data_dir, "--user".into(), user.clone()];
    match (&request.spec.point_in_time, &request.spec.backup_id) {
        (Some(t), _) => needs.args.push(format!(
            "--target-time={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )),
        // A named base backup: its own end, nothing replayed past it.
        (None, Some(_)) => needs.args.push(format!(
            "--target-time={}",
            plan.completed_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .ok_or(JobError::Missing {
                    field: "status.plan.completedAt",
                })?
        )),
        (None, None) => {}
    }
    // PostgreSQL runs only as the owner of its data directory: the uid
    // the server will run as, not the image's.
    needs.run_as = Some(uid);
    Ok(needs)
}

/// Turns the plan Job's report into the request's plan. The Job names the
/// destination as the controller named it; a name the policy does not have
/// is refused.
pub fn plan_from_summary(s: &PlanSummary, policy: &BackupPolicy) -> Result<RestorePlan, String> {
    if let Some(e) = &s.error {
        return Err(e.clone());
    }
    let backup_id = s
        .backup_id
        .clone()
        .filter(|id| crate::catalog::valid_backup_id(id))
        .ok_or("the plan names no valid backup id")?;
    let destination = s.destination.clone().unwrap_or_default();
    if policy.spec.destination(&destination).is_none() {
        return Err(format!(
            "the plan names {destination:?}, which is not a destination of the policy"
        ));
    }
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
            .map(|k| format!("{}: {}", k.destination, k.reason))
            .collect(),
    })
}
