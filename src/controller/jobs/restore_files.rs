//! The target's part of a restore Job for file and bucket backups (format
//! 2), pure: `lifeboat restore --to-dir` into a claim mounted read-write
//! (`spec.target.files`), `--to-bucket` into a bucket whose credentials
//! Secret is mounted as files (`spec.target.bucket`), or `--to-dir` into
//! the Job's own emptyDir (`spec.target.scratch`, a drill: every chunk is
//! read and authenticated, nothing is kept). The backups are only read,
//! through the destinations' credentials (read-only Secret mounts).
//!
//! A volume policy restores into files or scratch, a bucket policy into a
//! bucket or scratch, a physical one into a claim or a scratch data
//! directory (restore_jobs builds those); any other pairing is refused
//! naming `spec.target`.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod::{s3_credentials, PodNeeds};
use super::volume::{claim_needs, path_in};
use super::{JobConfig, JobError};
use crate::api::policy::SourceKind;
use crate::api::restore::{BucketTarget, FilesTarget, RestorePlan, RestoreTarget};
use crate::api::{BackupPolicy, RestoreRequest};
use crate::location::Location;

/// Where a file restore's claim is mounted (read-write).
pub const FILES_MOUNT: &str = "/var/lib/lifeboat/target";
/// Where a drill's scratch emptyDir is mounted.
pub const SCRATCH_MOUNT: &str = "/var/lib/lifeboat/scratch";
/// What a restore that writes others' files as root may do beyond
/// writing as itself: give files their owners (CHOWN), set modes and times
/// of files it does not own (FOWNER), and write into directories whatever
/// their modes (DAC_OVERRIDE). Nothing else root can do.
pub const OWNER_CAPABILITIES: [&str; 3] = ["CHOWN", "FOWNER", "DAC_OVERRIDE"];
/// Room in the scratch space beyond the backup's file data: directories,
/// the staging directory's metadata, filesystem overhead.
const SCRATCH_SLACK: u64 = 64 << 20;

/// The target kinds that `kind`'s backups restore into, for messages.
fn accepted(kind: Option<SourceKind>, physical: bool) -> &'static str {
    match kind {
        Some(SourceKind::Volume) => "target.files (a claim) or target.scratch",
        Some(SourceKind::Bucket) => "target.bucket or target.scratch",
        _ if physical => "target.volume (a claim) or target.scratch.dataDirectory",
        _ => "target.postgres or target.volume",
    }
}

/// Refuses a target of the wrong kind for the policy's backups, naming
/// `spec.target`.
pub fn check_kind(request: &RestoreRequest, policy: &BackupPolicy) -> Result<(), JobError> {
    let t = &request.spec.target;
    let kind = policy.spec.source.kind();
    let physical = policy.spec.source.is_physical();
    let data_dir = t.scratch_data_directory().is_some();
    if data_dir && !physical {
        return Err(JobError::Unsupported {
            field: "spec.target.scratch.dataDirectory".into(),
            message: format!(
                "policy {} takes no physical base backups: a data directory is only for those",
                request.spec.policy_ref.name
            ),
        });
    }
    let fits = match kind {
        Some(SourceKind::Volume) => t.files.is_some() || t.scratch.is_some(),
        Some(SourceKind::Bucket) => t.bucket.is_some() || t.scratch.is_some(),
        _ if physical => t.volume.is_some() || data_dir,
        _ => t.chunked_kinds() == 0,
    };
    if fits {
        return Ok(());
    }
    let what = kind.map_or("invalid".to_string(), |k| k.to_string());
    Err(JobError::Unsupported {
        field: "spec.target".into(),
        message: format!(
            "policy {} backs up a {what} source: restore it into {}",
            request.spec.policy_ref.name,
            accepted(kind, physical)
        ),
    })
}

/// The target's part of the restore pod for a volume or bucket policy;
/// `None` for the other kinds (restore_jobs builds theirs).
pub fn target_needs(
    request: &RestoreRequest,
    policy: &BackupPolicy,
    plan: &RestorePlan,
    cfg: &JobConfig,
) -> Result<Option<PodNeeds>, JobError> {
    check_kind(request, policy)?;
    if policy.spec.source.is_physical() {
        return Ok(None);
    }
    let RestoreTarget {
        files,
        bucket,
        scratch,
        ..
    } = &request.spec.target;
    let mut needs = match (files, bucket, scratch) {
        (Some(f), _, _) => files_needs(f),
        (_, Some(b), _) => bucket_needs(b, cfg),
        (_, _, Some(_)) => scratch_needs(plan),
        _ => return Ok(None),
    };
    needs
        .args
        .splice(0..0, ["--backup".into(), plan.backup_id.clone()]);
    Ok(Some(needs))
}

/// In place into the claim: read-write mount, the overwrite mode always
/// given (an in-place restore, which creates the subPath when missing).
pub fn files_needs(t: &FilesTarget) -> PodNeeds {
    let mut needs = claim_needs("target", &t.claim_name, FILES_MOUNT, false);
    needs.args.extend([
        "--to-dir".into(),
        path_in(FILES_MOUNT, t.sub_dir()),
        "--overwrite".into(),
        t.overwrite.arg().into(),
    ]);
    if t.delete_extra {
        needs.args.push("--delete-extra".into());
    }
    for p in &t.paths {
        needs
            .args
            .extend(["--path".into(), p.trim_matches('/').into()]);
    }
    let (uid, gid) = t.uid_gid();
    needs.run_as = Some(uid);
    needs.run_as_group = Some(gid);
    if t.restore_owners {
        needs.add_capabilities = OWNER_CAPABILITIES.map(String::from).to_vec();
    }
    needs.writes_claim = true;
    needs
}

/// Into a bucket: its location through the typed [`Location`], its keys
/// mounted as a directory of files (`credentials=`), never in argv or env.
pub fn bucket_needs(t: &BucketTarget, cfg: &JobConfig) -> PodNeeds {
    let mut needs = PodNeeds::default();
    let dir = format!("{}/target-bucket", cfg.root());
    if let Some(creds) = &t.credentials_secret_ref {
        needs.add(s3_credentials("target-bucket", creds, &dir));
    }
    let has_creds = t.credentials_secret_ref.is_some();
    let location = Location::S3(t.location(has_creds.then_some(dir.as_str())));
    needs.args.extend([
        "--to-bucket".into(),
        location.to_string(),
        "--overwrite".into(),
        t.overwrite.arg().into(),
    ]);
    for p in &t.paths {
        needs
            .args
            .extend(["--path".into(), p.trim_matches('/').into()]);
    }
    needs
}

/// The scratch emptyDir's size limit: the backup's file data (the plan's
/// bytes) and [`SCRATCH_SLACK`], an eighth more for what blocks round up.
pub fn scratch_limit(plan: &RestorePlan) -> u64 {
    let bytes = plan.bytes.unwrap_or(0).max(0) as u64;
    bytes + bytes / 8 + SCRATCH_SLACK
}

/// A fresh restore into the Job's emptyDir: all or nothing, every chunk
/// authenticated; the files go with the pod.
pub fn scratch_needs(plan: &RestorePlan) -> PodNeeds {
    let mut needs = scratch_space(Some(scratch_limit(plan)));
    needs.args = vec!["--to-dir".into(), format!("{SCRATCH_MOUNT}/restored")];
    needs
}

/// The Job's emptyDir at [`SCRATCH_MOUNT`], at most `limit` bytes.
pub fn scratch_space(limit: Option<u64>) -> PodNeeds {
    PodNeeds {
        volumes: vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: limit.map(|l| Quantity(l.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        }],
        mounts: vec![VolumeMount {
            name: "scratch".into(),
            mount_path: SCRATCH_MOUNT.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "restore_files_tests.rs"]
mod tests;
