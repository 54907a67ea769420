//! Job specs for the data plane, and the results they report back. Pure: no
//! IO, no clock, no Secret contents.
//!
//! A BackupRun becomes a batch/v1 Job ([`backup_job`]) whose one container
//! runs `lifeboat backup` against the policy's source and every destination;
//! an expired run's backup is deleted by a Job running `lifeboat prune`
//! ([`prune_job`]). Everything secret reaches the pod by reference only:
//!
//! | what | how | where in the pod |
//! |---|---|---|
//! | DB host, port, user, sslmode | env `valueFrom.secretKeyRef` | `PGHOST`, `PGPORT`, `PGUSER`, `PGSSLMODE` |
//! | DB password | Secret volume, one item | `<mount_root>/db/password` → `--password-file` |
//! | master keys | Secret volume, key [`KEY_SECRET_KEY`] | `<mount_root>/keys/keys` → `LIFEBOAT_KEY_FILE` |
//! | S3 credentials, per destination | Secret volume | `<mount_root>/s3/<destination>/` → `credentials=` in the URL |
//! | a bucket source's S3 credentials | Secret volume | `<mount_root>/source-s3/` → `credentials=` in `--bucket` |
//!
//! so the controller needs no `get secrets`, and a missing Secret shows up as
//! the pod's `CreateContainerConfigError` rather than as a controller error.
//! The container writes a compact JSON summary to its termination message
//! ([`crate::wire`]); [`artifacts`] turns it into the run's artifacts.
//!
//! - [`pod`]: the pod every data-plane workload shares, and [`PodNeeds`],
//!   what one is given;
//! - [`source`]: what each kind of source needs in a backup pod (the one
//!   match on the kind);
//! - [`destinations`]: the policy's destinations as the pod names them;
//! - [`backup`]: the backup and prune Jobs and the run's artifacts;
//! - [`notify`]: the Jobs that send a policy's notifications;
//! - [`restore_config`]: the restore Job of a config backup (`target.config`);
//! - [`volume`]: a claim in a file backup's or restore's pod, and the node
//!   a ReadWriteOnce claim pins the Job to.

pub mod backup;
#[cfg(test)]
mod bucket_tests;
#[cfg(test)]
mod config_tests;
pub mod destinations;
pub mod notify;
pub mod pod;
pub mod restore_config;
#[cfg(test)]
mod restore_config_tests;
pub mod restore_files;
pub mod source;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
pub mod volume;
#[cfg(test)]
mod volume_tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::api::policy::ValidPolicy;
use crate::api::BackupPolicy;
pub use crate::wire::TERMINATION_LOG;
pub use backup::{
    artifacts, backup_args, backup_job, backup_job_name, committed_destinations, prune_job,
    prune_job_name, reads_back, source_info,
};
pub use notify::{notify_job, notify_job_name};
pub use pod::PodNeeds;

/// Where Secrets are mounted in the pod unless [`JobConfig::mount_root`] says otherwise.
pub const DEFAULT_MOUNT_ROOT: &str = "/var/run/lifeboat";
/// Key in the encryption Secret that holds the key file (`lifeboat keygen`):
/// `kubectl create secret generic backup-keys --from-file=keys=./lifeboat.keys`.
pub const KEY_SECRET_KEY: &str = "keys";
/// The distroless "nonroot" uid/gid; the image's user (see Dockerfile).
pub const RUN_AS: i64 = 65532;
/// Name of the single container in every Job.
pub const CONTAINER: &str = "lifeboat";
/// The container's command: the image's init (tini, see Dockerfile) as PID 1,
/// then lifeboat. A pod's `command` replaces the image's entrypoint, so the
/// init is named here too: lifeboat spawns PostgreSQL's programs and servers,
/// and something must reap what they leave and forward signals.
pub const COMMAND: [&str; 3] = ["/usr/bin/tini", "--", "lifeboat"];

pub const LABEL_POLICY: &str = "lifeboat.dev/policy";
pub const LABEL_RUN: &str = "lifeboat.dev/run";
pub const LABEL_TIER: &str = "lifeboat.dev/tier";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const ANNOTATION_BACKUP_ID: &str = "lifeboat.dev/backup-id";

/// How long a Job may run when its policy does not say: long enough for a
/// large dump, short enough that a hung one does not hold the policy for days.
pub const DEFAULT_DEADLINE_SECONDS: i64 = 12 * 3600;

/// Settings of the controller that every Job shares.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Agent image; a policy's `jobTemplate.image` overrides it.
    pub image: String,
    /// Directory under which Secrets are mounted in the pod.
    pub mount_root: String,
    /// Service account when the policy names none.
    pub service_account: Option<String>,
    pub image_pull_policy: Option<String>,
    /// Pod retries; each retry is a fresh backup with a new id.
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    /// How long a finished Job stays when the policy does not say; long
    /// enough for a controller that was down to read its result.
    pub ttl_seconds_after_finished: i32,
}

impl Default for JobConfig {
    /// For tests and local runs; `lifeboat controller` always sets the image.
    fn default() -> Self {
        Self::new("lifeboat:dev")
    }
}

/// File name of a destination's mounted CA certificates.
pub const CA_FILE: &str = "ca.crt";

impl JobConfig {
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            mount_root: DEFAULT_MOUNT_ROOT.to_string(),
            service_account: None,
            image_pull_policy: None,
            backoff_limit: 2,
            active_deadline_seconds: Some(DEFAULT_DEADLINE_SECONDS),
            ttl_seconds_after_finished: 86_400,
        }
    }

    pub(crate) fn root(&self) -> &str {
        self.mount_root.trim_end_matches('/')
    }

    /// Directory holding a destination's S3 credentials in the pod.
    pub fn credentials_dir(&self, destination: &str) -> String {
        format!("{}/s3/{destination}", self.root())
    }

    /// Where a bucket source's credentials Secret is mounted.
    pub fn source_credentials_dir(&self) -> String {
        format!("{}/source-s3", self.root())
    }

    /// Where a config backup's cloud credentials Secret is mounted.
    pub fn cloud_credentials_dir(&self) -> String {
        format!("{}/cloud", self.root())
    }

    /// Where a destination's CA certificates (`caSecretRef`) are mounted,
    /// as the file [`CA_FILE`].
    pub fn ca_dir(&self, destination: &str) -> String {
        format!("{}/s3-ca/{destination}", self.root())
    }

    /// The database password file in the pod.
    pub fn password_file(&self) -> String {
        format!("{}/db/password", self.root())
    }

    /// The master key file in the pod.
    pub fn key_file(&self) -> String {
        format!("{}/keys/{KEY_SECRET_KEY}", self.root())
    }
}

/// Why no Job could be built. Each names the field to fix, for the run's
/// condition; none is worth a retry until the spec changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("{field} is not set")]
    Missing { field: &'static str },
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    /// The policy's spec does not validate.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("spec.policyRef.name: the run names policy {run:?}, not {policy:?}")]
    WrongPolicy { run: String, policy: String },
    #[error("metadata.namespace: the run is in {run:?}, its policy in {policy:?}")]
    WrongNamespace { run: String, policy: String },
    #[error("{0:?} is not a backup id")]
    BadBackupId(String),
}

impl JobError {
    /// The field a status condition should name.
    pub fn field(&self) -> &str {
        match self {
            JobError::Missing { field } => field,
            JobError::Unsupported { field, .. } | JobError::Invalid { field, .. } => field,
            JobError::WrongPolicy { .. } => "spec.policyRef.name",
            JobError::WrongNamespace { .. } => "metadata.namespace",
            JobError::BadBackupId(_) => "status.backupId",
        }
    }
}

/// `<base>-<suffix>` within 63 characters (a Job's name becomes a pod label).
/// A longer base is cut and a hash of the whole keeps names distinct.
pub(crate) fn bounded_name(base: &str, suffix: &str) -> String {
    let name = format!("{base}-{suffix}");
    if name.len() <= 63 {
        return name;
    }
    let hash = short_hash(base);
    let room = 63 - suffix.len() - hash.len() - 2;
    let cut = base[..room].trim_end_matches(['-', '.']);
    format!("{cut}-{hash}-{suffix}")
}

pub(super) fn short_hash(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hex::encode(&d.as_ref()[..4])
}

/// A label value (≤ 63 characters) for a name that may be longer.
pub(crate) fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        name.to_string()
    } else {
        let hash = short_hash(name);
        let cut = name[..63 - hash.len() - 1].trim_end_matches(['-', '.']);
        format!("{cut}-{hash}")
    }
}

/// The policy read into its typed form, for building its Jobs; an invalid
/// spec is refused naming the first field at fault.
pub(crate) fn validated(policy: &BackupPolicy) -> Result<ValidPolicy<'_>, JobError> {
    policy.validated().map_err(|errors| {
        let e = errors
            .into_iter()
            .next()
            .expect("validation errors are not empty");
        JobError::Invalid {
            field: e.field,
            message: e.message,
        }
    })
}

pub(crate) fn policy_id(policy: &BackupPolicy) -> Result<(&str, &str), JobError> {
    let namespace = policy
        .metadata
        .namespace
        .as_deref()
        .ok_or(JobError::Missing {
            field: "metadata.namespace",
        })?;
    let name = policy.metadata.name.as_deref().ok_or(JobError::Missing {
        field: "metadata.name",
    })?;
    Ok((namespace, name))
}

pub(crate) fn unsupported(field: impl Into<String>, message: &str) -> JobError {
    JobError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) fn base_labels(component: &str, policy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "lifeboat".into()),
        (LABEL_COMPONENT.into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), "lifeboat".into()),
        (LABEL_POLICY.into(), label_value(policy)),
    ])
}

/// An owner reference to `obj` with `controller: true`, for [`prune_job`].
pub fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<OwnerReference> {
    obj.controller_owner_ref(&())
}
