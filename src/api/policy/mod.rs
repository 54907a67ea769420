//! BackupPolicy: what to back up ([`source`]), when ([`schedule`]: cron per
//! retention tier), where ([`destination`]: one or more S3 destinations), how
//! long (grandfather-father-son retention), and how it is verified. The
//! controller schedules BackupRuns from it and reports the protection state in
//! its status ([`status`]). [`BackupPolicySpec::validate`] ([`validate`])
//! checks what the schema cannot.

pub mod bucket;
pub mod cloud;
pub mod destination;
mod drill_checks;
pub mod notifications;
pub mod schedule;
pub mod source;
pub mod status;
#[cfg(test)]
mod tests;
pub mod valid;
mod validate;
pub mod volume;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{parse_duration, ConnectionSecretRef, LocalRef, DURATION_PATTERN};

pub use destination::{Destination, ObjectLock, ObjectLockMode, S3Destination};
pub use notifications::{
    EmailTarget, NotificationEvent, NotificationTarget, Notifications, PagerDutyTarget,
    SecretTarget, TargetKind,
};
pub use schedule::{Retention, ScheduleSpec};
pub use source::{
    BucketSource, ConfigSource, PostgresMethod, PostgresSource, SourceKind, SourceSpec,
    VolumeSource,
};
pub use status::{
    BackupPolicyStatus, LastBackup, LastDrill, RecoveryWindow, TierTimes, WalArchive,
};
pub use valid::{ValidDestination, ValidPolicy, ValidSource};

/// Cheap shape check for a 5-field cron string or an `@daily`-style alias;
/// `validate` parses it properly.
pub(crate) const CRON_PATTERN: &str =
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+(\s+\S+){4})$";

// Each printcolumn(...) repeats name/type_/json_path; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupPolicy",
    plural = "backuppolicies",
    namespaced,
    status = "BackupPolicyStatus",
    shortname = "bp",
    category = "lifeboat",
    doc = "What to back up, when, where to, and for how long",
    printcolumn(name = "Source", type_ = "string", json_path = ".status.sourceKind"),
    printcolumn(
        name = "Last Backup",
        type_ = "string",
        json_path = ".status.lastBackup.completedAt"
    ),
    printcolumn(
        name = "Backup Age",
        type_ = "date",
        json_path = ".status.lastBackup.completedAt"
    ),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextBackup"),
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Healthy")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.pointInTimeRecovery) || !self.pointInTimeRecovery.enabled || (has(self.source.postgres) && self.source.postgres.method == 'physical')"
).message("pointInTimeRecovery needs source.postgres.method: physical"))]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    pub source: SourceSpec,
    /// Cron per tier; any subset. No tier at all = backups only by hand.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time_recovery: Option<PointInTimeRecovery>,
    /// Every backup is written to all of them (one per region, say).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub destinations: Vec<Destination>,
    pub encryption: Encryption,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed (as the source kinds are) to keep cached policies small.
    pub verification: Option<Box<Verification>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Box<Notifications>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<Box<JobTemplate>>,
    /// Stops scheduling new runs; runs in progress finish.
    #[serde(default)]
    pub suspend: bool,
}

impl BackupPolicySpec {
    /// The RPO objective, when one is set and valid.
    pub fn rpo(&self) -> Option<chrono::Duration> {
        parse_duration(self.objectives.as_ref()?.rpo.as_deref()?)
    }

    /// The RTO objective, when one is set and valid.
    pub fn rto(&self) -> Option<chrono::Duration> {
        parse_duration(self.objectives.as_ref()?.rto.as_deref()?)
    }

    /// The destination of that name.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

/// WAL archiving for restores to any point in time (physical method only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointInTimeRecovery {
    #[serde(default)]
    pub enabled: bool,
    /// Longest time a finished WAL segment may wait before it is archived
    /// (the RPO while the database lives), e.g. `60s`.
    #[serde(default = "sixty_seconds")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_wal_delay: String,
}

fn sixty_seconds() -> String {
    "60s".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// Secret holding the master key(s), mounted into the Job as files.
    pub key_secret_ref: LocalRef,
    #[serde(default)]
    pub compression: Compression,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Re-read every object after upload and check its SHA-256.
    #[serde(default = "yes")]
    pub read_back: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_drill: Option<RestoreDrill>,
}

fn yes() -> bool {
    true
}

impl Default for Verification {
    fn default() -> Self {
        Self {
            read_back: true,
            restore_drill: None,
        }
    }
}

/// A rehearsed restore on a schedule into a scratch database, or scratch space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrill {
    /// Cron string, read in the schedule's time zone.
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// Connection Secret of the scratch server the drill restores into
    /// (postgres policies; volume and bucket policies restore into the
    /// restore Job's scratch space, config policies' drills are server-side
    /// dry runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_secret_ref: Option<ConnectionSecretRef>,
    /// The account a config policy's drills run as (bind
    /// `lifeboat-config-restorer`: a dry run needs create permission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// SQL that must return true (or rows) after the restore (postgres policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

/// Recovery objectives; status and alerts report breaches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    /// Most data one may lose, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub rpo: Option<String>,
    /// Longest a restore may take, e.g. `4h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub rto: Option<String>,
}

/// Settings copied into every Job the policy makes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Agent image; absent = the controller's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Seconds a finished Job stays before Kubernetes removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Seconds a backup, prune, plan, restore or notify Job may run before
    /// Kubernetes stops it and its run fails (`DeadlineExceeded`), so a hung
    /// dump does not hold every later run of the policy. Absent: 12 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub active_deadline_seconds: Option<i64>,
    /// Labels on the pods (lifeboat's own labels win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Annotations on the pods, e.g. `sidecar.istio.io/inject: "false"`: a
    /// sidecar that never exits keeps a Job from completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Extra environment (a proxy, AWS_STS_REGIONAL_ENDPOINTS, …). The
    /// names lifeboat sets itself are refused (RESERVED_ENV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// Environment variables lifeboat's pods set themselves: a jobTemplate may
/// not set them too (which would win would depend on order), nor any
/// `LIFEBOAT_` name.
pub const RESERVED_ENV: &[&str] = &[
    "TMPDIR",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGSSLMODE",
    "PGPASSWORD",
    "PGPASSFILE",
];
