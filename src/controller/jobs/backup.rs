//! The Jobs of a BackupRun: `lifeboat backup` of the policy's source to
//! every destination ([`backup_job`]), `lifeboat prune` of an expired run's
//! backup ([`prune_job`]), and what the backup Job's summary means for the
//! run's status ([`artifacts`]).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use super::pod::{job, JobMeta, PodNeeds};
use super::{
    base_labels, destinations, label_value, policy_id, source, unsupported, JobConfig, JobError,
    ANNOTATION_BACKUP_ID, LABEL_RUN, LABEL_TIER,
};
use crate::api::policy::{Compression, ValidSource};
use crate::api::run::{Artifact, SourceInfo};
use crate::api::{BackupPolicy, BackupRun, RunKind};
use crate::wire::{BackupSummary, TERMINATION_LOG};

/// The name of the Job that backs up `run`: the same on every reconcile and
/// every replica, so creating it twice is a conflict, not a duplicate backup.
pub fn backup_job_name(run: &str) -> String {
    super::bounded_name(run, "backup")
}

/// The name of the Job that prunes `run`'s backup.
pub fn prune_job_name(run: &str) -> String {
    super::bounded_name(run, "prune")
}

/// True when the backup Job reads its backup back (`verification.readBack`, default on).
pub fn reads_back(policy: &BackupPolicy) -> bool {
    policy
        .spec
        .verification
        .as_ref()
        .is_none_or(|v| v.read_back)
}

/// The `--compression` value of the policy's encryption settings.
pub(crate) fn compression_arg(policy: &BackupPolicy) -> &'static str {
    match policy.spec.encryption.compression {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "none",
    }
}

/// Everything a backup pod of `run` needs: the source's part (see
/// [`source::backup_needs`]), the destinations, the keys, and the
/// arguments every backup shares.
fn backup_needs(
    policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<PodNeeds, JobError> {
    let valid = super::validated(policy)?;
    if run.spec.kind == RunKind::Drill {
        return Err(unsupported(
            "spec.kind",
            "restore drills are RestoreRequests made from verification.restoreDrill, not BackupRuns",
        ));
    }
    let mut needs = PodNeeds {
        args: vec!["backup".to_string()],
        ..Default::default()
    };
    needs.add(source::backup_needs(&valid, cfg)?);
    if let ValidSource::Volume(_) | ValidSource::Bucket(_) = valid.source {
        needs.args.extend(super::volume::tier_args(run.spec.tier));
    }
    needs.args.extend(destinations::args(
        "--to",
        &destinations::for_pod(&valid, cfg),
    ));
    needs.args.extend([
        "--compression".into(),
        compression_arg(policy).into(),
        "--policy".into(),
        valid.name.clone(),
        "--tier".into(),
        run.spec.tier.to_string(),
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]);
    if reads_back(policy) {
        needs.args.push("--verify".into());
    }
    needs.add(PodNeeds::bucket_access(policy, cfg));
    Ok(needs)
}

/// The arguments of `lifeboat backup` for a run of `policy`.
pub fn backup_args(
    policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<Vec<String>, JobError> {
    Ok(backup_needs(policy, run, cfg)?.args)
}

/// The Job that makes `run`'s backup. Owned by the run (deleting the run
/// deletes the Job), named by [`backup_job_name`].
pub fn backup_job(
    policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    let run_name = run.metadata.name.as_deref().ok_or(JobError::Missing {
        field: "metadata.name",
    })?;
    let run_ns = run.metadata.namespace.as_deref().ok_or(JobError::Missing {
        field: "metadata.namespace",
    })?;
    if run_ns != namespace {
        return Err(JobError::WrongNamespace {
            run: run_ns.into(),
            policy: namespace.into(),
        });
    }
    if run.spec.policy_ref.name != policy_name {
        return Err(JobError::WrongPolicy {
            run: run.spec.policy_ref.name.clone(),
            policy: policy_name.into(),
        });
    }
    let owner = run.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    let needs = backup_needs(policy, run, cfg)?;
    let mut labels = base_labels("backup", policy_name);
    labels.insert(LABEL_RUN.into(), label_value(run_name));
    labels.insert(LABEL_TIER.into(), run.spec.tier.to_string());
    let meta = JobMeta {
        name: backup_job_name(run_name),
        namespace,
        labels,
        annotations: BTreeMap::new(),
        owner,
    };
    Ok(job(meta, needs, policy, cfg))
}

/// The Job that deletes backup `backup_id` from every destination of
/// `policy`. `owner` is usually the expired BackupRun, whose finalizer holds
/// it until this Job succeeds. It needs no database; it gets the keys to
/// authenticate the manifests that say which WAL is still needed.
pub fn prune_job(
    policy: &BackupPolicy,
    run_name: &str,
    backup_id: &str,
    owner: OwnerReference,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    if !crate::catalog::valid_backup_id(backup_id) {
        return Err(JobError::BadBackupId(backup_id.into()));
    }
    let mut needs = PodNeeds {
        args: vec!["prune".to_string()],
        ..Default::default()
    };
    needs.args.extend(destinations::args(
        "--from",
        &destinations::for_pod(&super::validated(policy)?, cfg),
    ));
    needs
        .args
        .extend(["--backup".into(), backup_id.into(), "--json".into()]);
    // What Object Lock kept, and until when (the run waits for it).
    needs
        .args
        .extend(["--report-file".into(), TERMINATION_LOG.into()]);
    // The keys: which WAL may go is read only from authenticated manifests.
    needs.add(PodNeeds::bucket_access(policy, cfg));
    let mut labels = base_labels("prune", policy_name);
    labels.insert(LABEL_RUN.into(), label_value(run_name));
    let meta = JobMeta {
        name: prune_job_name(run_name),
        namespace,
        labels,
        annotations: BTreeMap::from([(ANNOTATION_BACKUP_ID.to_string(), backup_id.to_string())]),
        owner,
    };
    Ok(job(meta, needs, policy, cfg))
}

/// The run's artifacts: every object in every destination of `policy` that
/// holds the backup, keyed as in that destination's bucket.
pub fn artifacts(summary: &BackupSummary, policy: &BackupPolicy) -> Vec<Artifact> {
    let Ok((namespace, name)) = policy_id(policy) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dest in &policy.spec.destinations {
        if !summary.committed.contains(&dest.name) {
            continue;
        }
        let verified = summary.is_verified(&dest.name);
        let root = dest.location(namespace, name);
        for o in &summary.objects {
            out.push(Artifact {
                destination: dest.name.clone(),
                key: root.clone().join(&o.key).prefix,
                bytes: i64::try_from(o.size).unwrap_or(i64::MAX),
                sha256: o.sha256.clone(),
                verified,
            });
        }
    }
    out
}

/// Names of the policy's destinations that hold the backup.
pub fn committed_destinations(summary: &BackupSummary, policy: &BackupPolicy) -> Vec<String> {
    policy
        .spec
        .destinations
        .iter()
        .filter(|d| summary.committed.contains(&d.name))
        .map(|d| d.name.clone())
        .collect()
}

/// What the run's status records of the source.
pub fn source_info(summary: &BackupSummary) -> SourceInfo {
    SourceInfo {
        server_version: (!summary.server_version.is_empty())
            .then(|| summary.server_version.clone()),
        files: summary.files.as_ref().map(Into::into),
        ..Default::default()
    }
}
