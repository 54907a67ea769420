//! BackupPolicy: what to back up, when (cron per retention tier), where (one
//! or more S3 destinations), how long (grandfather-father-son retention), and
//! how it is verified. The controller schedules BackupRuns from it and reports
//! the protection state in its status.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    check_ref_name, is_dns_label, parse_duration, ConnectionSecretRef, FieldError, LocalRef,
    S3CredentialsRef, Tier, DURATION_PATTERN,
};
use crate::schedule;

/// Cheap shape check for a 5-field cron string or an `@daily`-style alias;
/// `validate` parses it properly.
const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+(\s+\S+){4})$";

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
#[x_kube(validation = Rule::new(
    "!has(self.verification) || !has(self.verification.restoreDrill) || has(self.source.postgres)"
).message("verification.restoreDrill needs a postgres source"))]
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
    pub verification: Option<Verification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
    /// Stops scheduling new runs; runs in progress finish.
    #[serde(default)]
    pub suspend: bool,
}

/// What is backed up: exactly one of the source kinds.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "[has(self.postgres), has(self.volume), has(self.bucket), has(self.config)].filter(x, x).size() == 1"
).message("set exactly one of postgres, volume, bucket, config"))]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSource>,
}

/// The kind of a [`SourceSpec`], for display and dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Postgres,
    Volume,
    Bucket,
    Config,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Volume => "volume",
            SourceKind::Bucket => "bucket",
            SourceKind::Config => "config",
        })
    }
}

impl SourceSpec {
    /// The one kind that is set; `None` when zero or several are.
    pub fn kind(&self) -> Option<SourceKind> {
        let set: Vec<SourceKind> = [
            self.postgres.as_ref().map(|_| SourceKind::Postgres),
            self.volume.as_ref().map(|_| SourceKind::Volume),
            self.bucket.as_ref().map(|_| SourceKind::Bucket),
            self.config.as_ref().map(|_| SourceKind::Config),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// A PostgreSQL source backed up with base backups (and WAL).
    pub fn is_physical(&self) -> bool {
        self.postgres
            .as_ref()
            .is_some_and(|pg| pg.method == PostgresMethod::Physical)
    }

    /// Short text for the `Source` printer column: `postgres/physical`, `volume`.
    pub fn summary(&self) -> String {
        match (self.kind(), &self.postgres) {
            (Some(SourceKind::Postgres), Some(pg)) => format!("postgres/{}", pg.method),
            (Some(kind), _) => kind.to_string(),
            (None, _) => "invalid".to_string(),
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.kind().is_none() {
            errors.push(FieldError::new(
                "spec.source",
                "set exactly one of postgres, volume, bucket, config",
            ));
        }
        if let Some(pg) = &self.postgres {
            check_ref_name(
                "spec.source.postgres.connectionSecretRef.name",
                &pg.connection_secret_ref.name,
                errors,
            );
            let named = !pg.databases.is_empty();
            match pg.method {
                PostgresMethod::Logical if named == pg.all_databases => errors
                    .push(FieldError::new(
                    "spec.source.postgres.databases",
                    "a logical backup names its databases or sets allDatabases: true (one of them)",
                )),
                PostgresMethod::Physical if named => errors.push(FieldError::new(
                    "spec.source.postgres.databases",
                    "a physical backup copies the whole server; remove databases",
                )),
                _ => {}
            }
        }
        if let Some(volume) = &self.volume {
            check_ref_name("spec.source.volume.claimName", &volume.claim_name, errors);
        }
        if let Some(creds) = self
            .bucket
            .as_ref()
            .and_then(|b| b.credentials_secret_ref.as_ref())
        {
            check_ref_name(
                "spec.source.bucket.credentialsSecretRef.name",
                &creds.name,
                errors,
            );
        }
        if let Some(config) = &self.config {
            if config.resources.is_empty() {
                errors.push(FieldError::new(
                    "spec.source.config.resources",
                    "name at least one resource type, e.g. secrets or configmaps",
                ));
            }
        }
    }
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "self.method != 'logical' || ((has(self.databases) && size(self.databases) > 0) != (has(self.allDatabases) && self.allDatabases))"
).message("a logical backup names its databases or sets allDatabases: true (one of them)"))]
#[x_kube(validation = Rule::new(
    "self.method != 'physical' || !has(self.databases) || size(self.databases) == 0"
).message("a physical backup copies the whole server; remove databases"))]
#[serde(rename_all = "camelCase")]
pub struct PostgresSource {
    /// Secret with host, port, user, password[, sslmode].
    pub connection_secret_ref: ConnectionSecretRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// Back up every database of the server (logical method).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_databases: bool,
    #[serde(default)]
    pub method: PostgresMethod,
    /// Include role passwords in the globals saved with a logical backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_role_passwords: bool,
}

/// `logical`: pg_dump per database plus globals. `physical`: base backup plus
/// WAL, which point-in-time recovery needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostgresMethod {
    #[default]
    Logical,
    Physical,
}

impl fmt::Display for PostgresMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostgresMethod::Logical => "logical",
            PostgresMethod::Physical => "physical",
        })
    }
}

/// Files on a PersistentVolumeClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// Objects in another bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
}

/// Cluster configuration: objects of the named resource types.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSource {
    /// Namespaces to read; empty = the policy's own namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Resource types, e.g. `secrets`, `configmaps`, `backuppolicies.lifeboat.dev`.
    #[schemars(length(min = 1))]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Cron strings (5 fields, or `@daily`-style aliases) per tier, in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub weekly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub monthly: Option<String>,
    /// IANA time zone the cron strings are read in, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            daily: None,
            weekly: None,
            monthly: None,
            time_zone: default_time_zone(),
        }
    }
}

impl ScheduleSpec {
    /// The cron string of a tier (manual has none).
    pub fn cron(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Daily => self.daily.as_deref(),
            Tier::Weekly => self.weekly.as_deref(),
            Tier::Monthly => self.monthly.as_deref(),
            Tier::Manual => None,
        }
    }
}

/// How many successful runs to keep per tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    #[serde(default = "seven")]
    #[schemars(range(min = 0, max = 1000))]
    pub daily: i32,
    #[serde(default = "four")]
    #[schemars(range(min = 0, max = 1000))]
    pub weekly: i32,
    #[serde(default = "twelve")]
    #[schemars(range(min = 0, max = 1000))]
    pub monthly: i32,
    /// Runs made by hand; absent = keep them until their BackupRun is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub manual: Option<i32>,
}

fn seven() -> i32 {
    7
}
fn four() -> i32 {
    4
}
fn twelve() -> i32 {
    12
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 12,
            manual: None,
        }
    }
}

impl Retention {
    /// How many successful runs of a tier to keep; `None` = all of them.
    pub fn keep(&self, tier: Tier) -> Option<usize> {
        let n = match tier {
            Tier::Daily => self.daily,
            Tier::Weekly => self.weekly,
            Tier::Monthly => self.monthly,
            Tier::Manual => self.manual?,
        };
        Some(n.max(0) as usize)
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

/// One place every backup is written to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Unique within the policy; RestoreRequests name it in `from`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    pub s3: S3Destination,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Endpoint URL for S3-compatible stores; absent = AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[schemars(length(min = 1))]
    pub region: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Absent = the pod's ambient identity (IRSA, workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    /// e.g. `STANDARD_IA`, `GLACIER_IR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Path-style addressing, which most S3-compatible servers need.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock retention set on every object written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    #[schemars(range(min = 1))]
    pub days: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObjectLockMode {
    Governance,
    Compliance,
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

/// A rehearsed restore on a schedule into a scratch database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrill {
    /// Cron string, read in the schedule's time zone.
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// Connection Secret of the scratch server the drill restores into.
    pub target_secret_ref: ConnectionSecretRef,
    /// SQL that must return true (or rows) after the restore.
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Secret whose `url` key is a Slack-compatible webhook.
    pub webhook_secret_ref: LocalRef,
    /// Which events to send; empty = Failed and ObjectiveBreached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotificationEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotificationEvent {
    Succeeded,
    Failed,
    ObjectiveBreached,
    DrillFailed,
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
}

impl BackupPolicySpec {
    /// Checks what the schema cannot: cron strings, the time zone, durations,
    /// names. Every problem names its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        self.source.validate(&mut errors);

        if let Err(e) =
            schedule::parse_time_zone("spec.schedule.timeZone", &self.schedule.time_zone)
        {
            errors.push(e.into());
        }
        for tier in Tier::SCHEDULED {
            if let Some(expr) = self.schedule.cron(tier) {
                let field = format!("spec.schedule.{tier}");
                if let Err(e) = schedule::parse_cron(&field, expr) {
                    errors.push(e.into());
                }
            }
        }

        for (tier, n) in [
            (Tier::Daily, self.retention.daily),
            (Tier::Weekly, self.retention.weekly),
            (Tier::Monthly, self.retention.monthly),
            (Tier::Manual, self.retention.manual.unwrap_or(0)),
        ] {
            if n < 0 {
                errors.push(FieldError::new(
                    format!("spec.retention.{tier}"),
                    format!("must be 0 or more, not {n}"),
                ));
            }
        }

        if let Some(pitr) = &self.point_in_time_recovery {
            if pitr.enabled && !self.source.is_physical() {
                errors.push(FieldError::new(
                    "spec.pointInTimeRecovery.enabled",
                    "point-in-time recovery needs source.postgres.method: physical",
                ));
            }
            check_duration(
                "spec.pointInTimeRecovery.maxWalDelay",
                &pitr.max_wal_delay,
                &mut errors,
            );
        }

        if self.destinations.is_empty() {
            errors.push(FieldError::new(
                "spec.destinations",
                "at least one destination is required",
            ));
        }
        let mut seen = HashSet::new();
        for (i, dest) in self.destinations.iter().enumerate() {
            let field = format!("spec.destinations[{i}]");
            if !is_dns_label(&dest.name) {
                errors.push(FieldError::new(
                    format!("{field}.name"),
                    format!(
                        "{:?} is not a valid name (lowercase letters, digits, '-')",
                        dest.name
                    ),
                ));
            }
            if !seen.insert(dest.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{field}.name"),
                    format!("duplicate destination name {:?}", dest.name),
                ));
            }
            if dest.s3.bucket.is_empty() {
                errors.push(FieldError::new(
                    format!("{field}.s3.bucket"),
                    "bucket is required",
                ));
            }
            if dest.s3.region.is_empty() {
                errors.push(FieldError::new(
                    format!("{field}.s3.region"),
                    "region is required",
                ));
            }
            if let Some(creds) = &dest.s3.credentials_secret_ref {
                check_ref_name(
                    &format!("{field}.s3.credentialsSecretRef.name"),
                    &creds.name,
                    &mut errors,
                );
            }
        }

        check_ref_name(
            "spec.encryption.keySecretRef.name",
            &self.encryption.key_secret_ref.name,
            &mut errors,
        );

        if let Some(drill) = self
            .verification
            .as_ref()
            .and_then(|v| v.restore_drill.as_ref())
        {
            if let Err(e) =
                schedule::parse_cron("spec.verification.restoreDrill.schedule", &drill.schedule)
            {
                errors.push(e.into());
            }
            check_ref_name(
                "spec.verification.restoreDrill.targetSecretRef.name",
                &drill.target_secret_ref.name,
                &mut errors,
            );
            if self.source.postgres.is_none() {
                errors.push(FieldError::new(
                    "spec.verification.restoreDrill",
                    "restore drills are supported for postgres sources only",
                ));
            }
        }

        if let Some(objectives) = &self.objectives {
            if let Some(rpo) = &objectives.rpo {
                check_duration("spec.objectives.rpo", rpo, &mut errors);
            }
            if let Some(rto) = &objectives.rto {
                check_duration("spec.objectives.rto", rto, &mut errors);
            }
        }

        if let Some(notifications) = &self.notifications {
            check_ref_name(
                "spec.notifications.webhookSecretRef.name",
                &notifications.webhook_secret_ref.name,
                &mut errors,
            );
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

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

fn check_duration(field: &str, text: &str, errors: &mut Vec<FieldError>) {
    if parse_duration(text).is_none() {
        errors.push(FieldError::new(
            field,
            format!("{text:?} is not a duration like 60s, 15m, 1h30m or 7d"),
        ));
    }
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// [`SourceSpec::summary`], for the `Source` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
    /// The earliest of `nextBackups`, for the `Next` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "TierTimes::is_empty")]
    pub next_backups: TierTimes,
    /// The schedule slot of the newest run made per tier. Kept here so that
    /// deleting runs (retention) never makes a slot look missed again.
    #[serde(default, skip_serializing_if = "TierTimes::is_empty")]
    pub last_scheduled: TierTimes,
    /// Restorable range, point-in-time recovery included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<RecoveryWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<LastDrill>,
    /// Continuous WAL archiving (point-in-time recovery), as its archiver reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<WalArchive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The WAL archiver's state, read from its `/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalArchive {
    /// True while the archiver answers and ships within maxWalDelay.
    pub healthy: bool,
    /// The newest segment every destination holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<String>,
    /// When WAL last reached every destination: the newest restorable instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_at: Option<DateTime<Utc>>,
    /// Age of the oldest WAL received but not yet in every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The newest successful backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Name of its BackupRun.
    pub run: String,
    pub tier: Tier,
    pub completed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
}

/// An instant per scheduled tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierTimes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<DateTime<Utc>>,
}

impl TierTimes {
    pub fn get(&self, tier: Tier) -> Option<DateTime<Utc>> {
        match tier {
            Tier::Daily => self.daily,
            Tier::Weekly => self.weekly,
            Tier::Monthly => self.monthly,
            Tier::Manual => None,
        }
    }

    /// Sets a tier's instant; manual has none, so setting it does nothing.
    pub fn set(&mut self, tier: Tier, at: Option<DateTime<Utc>>) {
        match tier {
            Tier::Daily => self.daily = at,
            Tier::Weekly => self.weekly = at,
            Tier::Monthly => self.monthly = at,
            Tier::Manual => {}
        }
    }

    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        [self.daily, self.weekly, self.monthly]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.weekly.is_none() && self.monthly.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The newest restore drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDrill {
    pub run: String,
    pub completed_at: DateTime<Utc>,
    pub succeeded: bool,
    /// Measured RTO of the drill: request to verified database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    /// The drill's RestoreRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> serde_json::Value {
        json!({
            "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
            "schedule": {"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"},
            "destinations": [
                {"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}},
                {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "backups-eu"}}
            ],
            "encryption": {"keySecretRef": {"name": "backup-keys"}},
            "objectives": {"rpo": "1h", "rto": "4h"}
        })
    }

    fn spec(value: serde_json::Value) -> BackupPolicySpec {
        serde_json::from_value(value).unwrap()
    }

    fn fields(spec: &BackupPolicySpec) -> Vec<String> {
        spec.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn design_example_is_valid_with_defaults_filled_in() {
        let s = spec(example());
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.schedule.time_zone, "UTC");
        assert_eq!(s.retention, Retention::default());
        assert_eq!(s.encryption.compression, Compression::Zstd);
        assert_eq!(s.source.kind(), Some(SourceKind::Postgres));
        assert_eq!(s.source.summary(), "postgres/logical");
        assert_eq!(s.rpo(), Some(chrono::Duration::hours(1)));
        assert!(!s.suspend);
    }

    #[test]
    fn serialises_back_in_camel_case() {
        let value = serde_json::to_value(spec(example())).unwrap();
        assert_eq!(
            value["source"]["postgres"]["connectionSecretRef"]["name"],
            "orders-db"
        );
        assert_eq!(value["schedule"]["timeZone"], "UTC");
        assert_eq!(value["encryption"]["keySecretRef"]["name"], "backup-keys");
    }

    #[test]
    fn two_sources_or_none_is_an_error_on_spec_source() {
        let mut v = example();
        v["source"]["volume"] = json!({"claimName": "uploads"});
        assert_eq!(fields(&spec(v)), ["spec.source"]);
        let mut v = example();
        v["source"] = json!({});
        assert_eq!(fields(&spec(v)), ["spec.source"]);
    }

    #[test]
    fn invalid_cron_and_zone_name_their_fields() {
        let mut v = example();
        v["schedule"]["daily"] = json!("0 25 * * *");
        v["schedule"]["timeZone"] = json!("Mars/Olympus");
        let errors = spec(v).validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.schedule.timeZone", "spec.schedule.daily"]);
        assert!(errors[0].message.contains("Mars/Olympus"), "{}", errors[0]);
        assert!(
            errors[1].to_string().starts_with("spec.schedule.daily: "),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn destinations_must_exist_and_be_unique() {
        let mut v = example();
        v["destinations"] = json!([]);
        assert_eq!(fields(&spec(v)), ["spec.destinations"]);
        let mut v = example();
        v["destinations"][1]["name"] = json!("primary");
        let errors = spec(v).validate().unwrap_err();
        assert_eq!(errors[0].field, "spec.destinations[1].name");
        assert!(errors[0].message.contains("duplicate"));
    }

    #[test]
    fn logical_needs_databases_xor_all_databases() {
        let mut v = example();
        v["source"]["postgres"]["allDatabases"] = json!(true);
        assert_eq!(fields(&spec(v.clone())), ["spec.source.postgres.databases"]);
        v["source"]["postgres"]["databases"] = json!([]);
        assert_eq!(spec(v).validate(), Ok(()));
    }

    #[test]
    fn pitr_needs_physical() {
        let mut v = example();
        v["pointInTimeRecovery"] = json!({"enabled": true});
        assert_eq!(
            fields(&spec(v.clone())),
            ["spec.pointInTimeRecovery.enabled"]
        );
        v["source"]["postgres"] =
            json!({"connectionSecretRef": {"name": "db"}, "method": "physical"});
        let s = spec(v);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.point_in_time_recovery.unwrap().max_wal_delay, "60s");
    }

    #[test]
    fn bad_durations_and_drill_cron_name_their_fields() {
        let mut v = example();
        v["objectives"]["rpo"] = json!("an hour");
        v["verification"] = json!({"restoreDrill": {"schedule": "every monday",
                                   "targetSecretRef": {"name": "scratch-db"}}});
        assert_eq!(
            fields(&spec(v)),
            [
                "spec.verification.restoreDrill.schedule",
                "spec.objectives.rpo"
            ]
        );
    }

    #[test]
    fn verification_reads_back_by_default() {
        let mut v = example();
        v["verification"] = json!({});
        assert!(spec(v).verification.unwrap().read_back);
    }

    #[test]
    fn unknown_enum_values_are_rejected() {
        let mut v = example();
        v["encryption"]["compression"] = json!("brotli");
        assert!(serde_json::from_value::<BackupPolicySpec>(v).is_err());
    }

    #[test]
    fn retention_keeps_per_tier_and_manual_by_default_forever() {
        let r = Retention::default();
        assert_eq!(r.keep(Tier::Daily), Some(7));
        assert_eq!(r.keep(Tier::Monthly), Some(12));
        assert_eq!(r.keep(Tier::Manual), None);
    }

    #[test]
    fn tier_times_pick_the_earliest() {
        let mut t = TierTimes::default();
        assert!(t.is_empty());
        t.set(Tier::Weekly, Some("2026-11-29T03:00:00Z".parse().unwrap()));
        t.set(Tier::Daily, Some("2026-11-26T02:00:00Z".parse().unwrap()));
        t.set(Tier::Manual, Some("2020-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(t.earliest(), Some("2026-11-26T02:00:00Z".parse().unwrap()));
        assert_eq!(t.get(Tier::Manual), None);
    }

    #[test]
    fn schema_carries_enums_minimums_and_patterns() {
        let crd = serde_json::to_value(<BackupPolicy as kube::CustomResourceExt>::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let p = &spec["properties"];
        assert_eq!(
            p["retention"]["properties"]["daily"]["minimum"].as_f64(),
            Some(0.0)
        );
        assert_eq!(
            p["encryption"]["properties"]["compression"]["enum"],
            json!(["zstd", "gzip", "none"])
        );
        assert_eq!(
            p["source"]["properties"]["postgres"]["properties"]["method"]["enum"],
            json!(["logical", "physical"])
        );
        assert!(p["schedule"]["properties"]["daily"]["pattern"].is_string());
        let required = spec["required"].as_array().unwrap();
        for field in ["source", "destinations", "encryption"] {
            assert!(required.contains(&json!(field)), "{field} not required");
        }
    }
}
