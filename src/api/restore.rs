//! RestoreRequest: the recovery workflow. It names a policy, a point in time
//! or a backup id (absent = the newest), the destination to read from, and
//! the database to restore into. src/controller/restore.rs runs it (plan →
//! restore → verify); here are the type, its schema and its checks.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::restore_files::{
    BucketTarget, FileOverwrite, FilesTarget, ScratchDataDirectory, ScratchTarget,
};
use super::{check_ref_name, into_result, is_dns_label, ConnectionSecretRef, FieldError, LocalRef};

// Each printcolumn(...) repeats name/type_/json_path; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "RestoreRequest",
    namespaced,
    status = "RestoreRequestStatus",
    shortname = "rr",
    category = "lifeboat",
    doc = "A restore of a BackupPolicy's backup, to a point in time or a backup id",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name"),
    printcolumn(
        name = "Target Point",
        type_ = "string",
        json_path = ".spec.pointInTime"
    ),
    printcolumn(
        name = "Backup",
        type_ = "string",
        json_path = ".spec.backupId",
        priority = 1
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "RTO Seconds",
        type_ = "integer",
        json_path = ".status.recoveryTimeSeconds"
    ),
    printcolumn(
        name = "Files",
        type_ = "integer",
        json_path = ".status.filesRestored",
        priority = 1
    ),
    printcolumn(
        name = "Bytes",
        type_ = "integer",
        json_path = ".status.bytesRestored",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.pointInTime) && has(self.backupId))")
    .message("set pointInTime or backupId, not both"))]
#[x_kube(validation = Rule::new("self == oldSelf").message("a RestoreRequest's spec is immutable; create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequestSpec {
    pub policy_ref: LocalRef,
    /// Restore the state as of this instant (PITR replays WAL up to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<DateTime<Utc>>,
    /// Restore exactly this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub backup_id: Option<String>,
    /// Destination to read from; absent = the first healthy one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub target: RestoreTarget,
    /// SQL run after the restore; each must succeed (and return true when it returns a boolean).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Plan only: which recovery points, how much data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Allow restoring into a database that already exists (it is replaced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
    /// Drop the database after the checks: a drill's scratch database.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_after: bool,
}

/// Where the restore goes: one target kind.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.volume), has(self.files), has(self.bucket), has(self.scratch), has(self.config)].filter(x, x).size() == 1").message("set exactly one of target.postgres, target.volume, target.files, target.bucket, target.scratch, target.config"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// A server to restore a logical backup into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresTarget>,
    /// A volume to restore a physical backup into, as a data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeTarget>,
    /// A claim to restore a volume policy's files into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesTarget>,
    /// A bucket to restore a bucket policy's objects into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketTarget>,
    /// The restore Job's own scratch space (drills: files and objects, or a
    /// physical backup's data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchTarget>,
    /// The cluster (and cloud secret stores) a config backup restores into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<super::restore_config::ConfigTarget>,
}

/// The data directory of the server to be: a physical policy's base backup
/// plus WAL replayed to the point, promoted and stopped; a PostgreSQL pod
/// that mounts the claim starts from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTarget {
    /// PersistentVolumeClaim in the request's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory in the volume that becomes the data directory; it must be
    /// absent or empty.
    #[serde(default = "pgdata")]
    #[schemars(length(min = 1, max = 255))]
    pub sub_path: String,
    /// The uid the server runs as, which must own its data directory (999:
    /// the postgres image). The restore Job runs as this uid.
    #[serde(default = "postgres_uid")]
    #[schemars(range(min = 1))]
    pub run_as_user: i64,
    /// A role of the backed-up cluster, for the checks and to watch
    /// recovery (over the data directory's socket, trusted only while lifeboat runs it).
    #[serde(default = "postgres_role")]
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
}

pub(super) fn postgres_role() -> String {
    "postgres".into()
}

fn pgdata() -> String {
    "pgdata".into()
}

pub(super) fn postgres_uid() -> i64 {
    999
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresTarget {
    pub connection_secret_ref: ConnectionSecretRef,
    /// Database to create (or replace, with overwrite); absent = the original names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub database: Option<String>,
}

impl RestoreRequestSpec {
    /// Checks what the schema cannot, naming each field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_ref_name("spec.policyRef.name", &self.policy_ref.name, &mut errors);
        if self.point_in_time.is_some() && self.backup_id.is_some() {
            errors.push(FieldError::new(
                "spec.pointInTime",
                "set pointInTime or backupId, not both",
            ));
        }
        if let Some(from) = &self.from {
            if !is_dns_label(from) {
                errors.push(FieldError::new(
                    "spec.from",
                    format!("{from:?} is not a destination name"),
                ));
            }
        }
        let chunked = self.target.chunked_kinds();
        match (&self.target.postgres, &self.target.volume) {
            (None, None) if self.target.config.is_some() && chunked == 0 => {}
            _ if self.target.config.is_some() => errors.push(FieldError::new(
                "spec.target",
                "set one target: target.config restores a config backup alone",
            )),
            (None, None) if chunked == 1 => super::restore_files::validate(self, &mut errors),
            (Some(pg), None) if chunked == 0 => check_ref_name(
                "spec.target.postgres.connectionSecretRef.name",
                &pg.connection_secret_ref.name,
                &mut errors,
            ),
            (None, Some(v)) if chunked == 0 => {
                check_ref_name("spec.target.volume.claimName", &v.claim_name, &mut errors);
                let sub = std::path::Path::new(&v.sub_path);
                if sub.is_absolute()
                    || sub
                        .components()
                        .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    errors.push(FieldError::new(
                        "spec.target.volume.subPath",
                        format!("{:?} must be a relative path without ..", v.sub_path),
                    ));
                }
            }
            _ => errors.push(FieldError::new(
                "spec.target",
                "set exactly one of target.postgres, target.volume, target.files, target.bucket, target.scratch, target.config",
            )),
        }
        if let Some(c) = &self.target.config {
            super::restore_config::validate(self, c, &mut errors);
        }
        into_result(errors)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    #[default]
    Planning,
    Restoring,
    Verifying,
    Succeeded,
    Failed,
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequestStatus {
    /// Not an Option, so the schema's enum holds no null; no status yet means Planning.
    #[serde(default)]
    pub phase: RestorePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RestorePlan>,
    /// The instant the restored data reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Measured RTO: from the request to a verified database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    /// Files (objects, for a bucket) the restore wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_restored: Option<i64>,
    /// Bytes the restore wrote (file data, objects, or the database's dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_restored: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RestoreStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Which recovery points the restore uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    pub backup_id: String,
    /// First and last WAL segment replayed (PITR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_to: Option<String>,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// When the chosen backup completed: what the restore recovers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// The database the restore creates or replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    /// Destinations passed over, and why (a copy that failed verification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStep {
    pub name: String,
    pub phase: StepPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> RestoreRequestSpec {
        serde_json::from_value(value).unwrap()
    }

    fn example() -> serde_json::Value {
        json!({
            "policyRef": {"name": "orders"},
            "pointInTime": "2026-11-25T10:00:00Z",
            "from": "dr-eu",
            "target": {"postgres": {"connectionSecretRef": {"name": "orders-restore"},
                                    "database": "orders_restored"}},
            "checks": ["select count(*) from orders"]
        })
    }

    #[test]
    fn design_example_parses_and_validates() {
        let s = spec(example());
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(
            s.point_in_time,
            Some("2026-11-25T10:00:00Z".parse().unwrap())
        );
        assert!(!s.dry_run && !s.overwrite);
    }

    #[test]
    fn point_in_time_and_backup_id_together_is_an_error() {
        let mut v = example();
        v["backupId"] = json!("20261125T020000.000Z-abcd");
        let errors = spec(v).validate().unwrap_err();
        assert_eq!(errors[0].field, "spec.pointInTime");
    }

    #[test]
    fn missing_target_and_bad_from_name_their_fields() {
        let mut v = example();
        v["target"] = json!({});
        v["from"] = json!("DR EU");
        let fields: Vec<_> = spec(v)
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["spec.from", "spec.target"]);
    }

    #[test]
    fn bad_timestamp_is_rejected() {
        let mut v = example();
        v["pointInTime"] = json!("yesterday");
        assert!(serde_json::from_value::<RestoreRequestSpec>(v).is_err());
    }

    #[test]
    fn schema_has_date_time_format_and_phase_enum() {
        let crd = serde_json::to_value(<RestoreRequest as kube::CustomResourceExt>::crd()).unwrap();
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        assert_eq!(
            props["spec"]["properties"]["pointInTime"]["format"],
            "date-time"
        );
        assert_eq!(
            props["status"]["properties"]["phase"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }
}
