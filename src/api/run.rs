//! BackupRun: one backup (or restore drill) of a policy, made by the schedule
//! or by hand. Creating a BackupRun is the manual "back up now"; the
//! controller turns it into a Job and records the result in its status.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{into_result, FieldError, LocalRef};
use crate::schedule::RunRecord;
/// Retention tier of a run (grandfather-father-son) — or `manual`; it lives
/// with the schedule, which is where tiers mean something.
pub use crate::schedule::Tier;

/// A BackupRun's spec; immutable once created, since it describes what
/// happened — except `deletionPolicy`, which says what deleting it will do.
// Each printcolumn(...) repeats name/type_/json_path; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupRun",
    namespaced,
    status = "BackupRunStatus",
    shortname = "br",
    category = "lifeboat",
    doc = "One backup of a BackupPolicy: scheduled, or made by hand to back up now",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(
        name = "Files New",
        type_ = "integer",
        json_path = ".status.source.files.filesNew",
        priority = 1
    ),
    printcolumn(
        name = "Files Changed",
        type_ = "integer",
        json_path = ".status.source.files.filesChanged",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new(IMMUTABLE_SPEC).message("a BackupRun's spec is immutable, except deletionPolicy")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupRunSpec {
    /// The BackupPolicy (same namespace) that says what to back up and where.
    pub policy_ref: LocalRef,
    /// The retention tier this run counts in; runs made by hand are `manual`.
    #[serde(default)]
    pub tier: Tier,
    /// `full` makes a backup; `drill` restores the newest backup into the
    /// policy's drill target and runs its checks.
    #[serde(default)]
    pub kind: RunKind,
    /// The schedule slot this run was made for; set by the controller, absent
    /// on runs made by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// What deleting this BackupRun does to its backup: `Retain` (the
    /// default) leaves it in every destination; `Delete` removes it from
    /// every destination first. Retention by the policy's schedule deletes
    /// the runs it lets go with `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Every field of the spec but `deletionPolicy` keeps its value (`tier` and
/// `kind` have defaults, so they are always there; `scheduledAt` may not be).
const IMMUTABLE_SPEC: &str = "self.policyRef == oldSelf.policyRef && self.tier == oldSelf.tier \
    && self.kind == oldSelf.kind && has(self.scheduledAt) == has(oldSelf.scheduledAt) \
    && (!has(self.scheduledAt) || self.scheduledAt == oldSelf.scheduledAt)";

/// What deleting a BackupRun resource does to the backup it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// The backup stays in every destination; only the resource goes (a
    /// GitOps prune or a `kubectl delete` never destroys a backup).
    #[default]
    Retain,
    /// The controller prunes the backup from every destination, then lets
    /// the resource go.
    Delete,
}

impl BackupRunSpec {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        super::check_ref_name("spec.policyRef.name", &self.policy_ref.name, &mut errors);
        if self.kind == RunKind::Drill && self.tier != Tier::Manual {
            errors.push(FieldError::new(
                "spec.tier",
                "a drill run holds no backup and counts in no retention tier: use tier manual",
            ));
        }
        into_result(errors)
    }
}

impl BackupRun {
    /// What retention needs to know about this run.
    pub fn run_record(&self) -> RunRecord {
        let status = self.status.as_ref();
        let phase = status.map(|s| s.phase).unwrap_or_default();
        RunRecord {
            name: self.name_any(),
            tier: self.spec.tier,
            drill: self.spec.kind == RunKind::Drill,
            finished: phase.is_finished(),
            succeeded: phase == RunPhase::Succeeded,
            completed_at: status.and_then(|s| s.completed_at),
            backup_id: status.and_then(|s| s.backup_id.clone()),
        }
    }
}

/// What a run does. `drill` is from an earlier draft and is refused when a
/// Job would be built: restore drills are RestoreRequests that the policy
/// creates (`verification.restoreDrill`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    #[default]
    Full,
    Drill,
}

/// Lifecycle of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RunPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRunStatus {
    // Not an Option: the schema of an optional enum would list null among its
    // values, which the API server may refuse. No status yet means Pending.
    #[serde(default)]
    pub phase: RunPhase,
    /// Name of the Job doing the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Id of the backup in the bucket (sorts by time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Bytes stored per destination (the compressed, encrypted size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// `bytes` for people, e.g. `1.4 GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Wall time from start to completion for people, e.g. `3m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// What was written, per destination and object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    // Boxed: the controller caches every run, most of them without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<SourceInfo>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Why the run failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One object written to one destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Name of the policy's destination.
    pub destination: String,
    /// Object key in that destination's bucket.
    pub key: String,
    pub bytes: i64,
    /// Hex SHA-256 of the object as stored.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// The object was read back after upload and its SHA-256 matched.
    #[serde(default)]
    pub verified: bool,
}

/// What the source reported while it was backed up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// WAL range of a base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// A file backup's figures (a volume policy's runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileCounts>,
}

/// What a file backup found: files new, changed (read again) and unchanged
/// (taken from the previous backup unread), and bytes read, deduplicated
/// (already stored) and stored (new, summed over destinations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileCounts {
    pub files_new: i64,
    pub files_changed: i64,
    pub files_unchanged: i64,
    /// Bytes of all the files in the backup.
    pub bytes_total: i64,
    pub bytes_read: i64,
    pub bytes_deduplicated: i64,
    pub bytes_stored: i64,
    /// Entries left out (unreadable with skipUnreadable, or sockets,
    /// devices, FIFOs); the run's Job log and report name them.
    pub skipped: i64,
}

impl From<&crate::catalog::FileStats> for FileCounts {
    fn from(s: &crate::catalog::FileStats) -> Self {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            files_new: n(s.files_new),
            files_changed: n(s.files_changed),
            files_unchanged: n(s.files_unchanged),
            bytes_total: n(s.bytes_total),
            bytes_read: n(s.bytes_read),
            bytes_deduplicated: n(s.bytes_deduplicated),
            bytes_stored: n(s.bytes_stored),
            skipped: n(s.skipped.len() as u64),
        }
    }
}

/// Formats a byte count in binary units for the `Size` column: `512 B`, `1.4 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats a duration for the `Duration` column: `45s`, `3m12s`, `2h5m`.
pub fn format_duration(duration: chrono::Duration) -> String {
    let secs = duration.num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_to_a_manual_full_backup() {
        let spec: BackupRunSpec =
            serde_json::from_value(serde_json::json!({"policyRef": {"name": "orders"}})).unwrap();
        assert_eq!(spec.tier, Tier::Manual);
        assert_eq!(spec.kind, RunKind::Full);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn spec_serialises_in_camel_case_with_lowercase_enums() {
        let spec = BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier: Tier::Weekly,
            kind: RunKind::Full,
            scheduled_at: Some("2026-11-29T03:00:00Z".parse().unwrap()),
            deletion_policy: DeletionPolicy::Delete,
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"policyRef": {"name": "orders"}, "tier": "weekly", "kind": "full",
                               "scheduledAt": "2026-11-29T03:00:00Z", "deletionPolicy": "Delete"})
        );
    }

    #[test]
    fn unknown_tier_is_rejected() {
        let r: Result<BackupRunSpec, _> = serde_json::from_value(
            serde_json::json!({"policyRef": {"name": "o"}, "tier": "hourly"}),
        );
        assert!(r.is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let spec = BackupRunSpec {
            policy_ref: LocalRef::new("Bad_Name"),
            tier: Tier::Daily,
            kind: RunKind::Drill,
            scheduled_at: None,
            deletion_policy: DeletionPolicy::Retain,
        };
        let errors = spec.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.policyRef.name", "spec.tier"]);
    }

    #[test]
    fn phase_enum_is_in_the_schema() {
        let crd = serde_json::to_value(<BackupRun as kube::CustomResourceExt>::crd()).unwrap();
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        let phases = status["properties"]["phase"]["enum"].as_array().unwrap();
        assert_eq!(phases.len(), 4, "{phases:?}");
        assert!(phases.contains(&serde_json::json!("Succeeded")));
    }

    #[test]
    fn deletion_policy_defaults_to_retain_and_alone_may_change() {
        let crd = serde_json::to_value(<BackupRun as kube::CustomResourceExt>::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let policy = &spec["properties"]["deletionPolicy"];
        assert_eq!(policy["default"], "Retain", "{policy}");
        assert_eq!(policy["enum"], serde_json::json!(["Retain", "Delete"]));
        let rule = spec["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        assert!(!rule.contains("deletionPolicy"), "{rule}");
        for field in ["policyRef", "tier", "kind", "scheduledAt"] {
            assert!(
                rule.contains(&format!("self.{field} == oldSelf.{field}")),
                "{rule}"
            );
        }
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(format_duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(format_duration(chrono::Duration::seconds(192)), "3m12s");
        assert_eq!(format_duration(chrono::Duration::seconds(7500)), "2h5m");
    }

    #[test]
    fn a_run_record_says_what_retention_needs() {
        let mut run = BackupRun::new(
            "orders-1",
            BackupRunSpec {
                policy_ref: LocalRef::new("orders"),
                tier: Tier::Weekly,
                kind: RunKind::Full,
                scheduled_at: None,
                deletion_policy: DeletionPolicy::Retain,
            },
        );
        let r = run.run_record();
        assert_eq!((r.name.as_str(), r.tier), ("orders-1", Tier::Weekly));
        assert!(
            !r.drill && !r.finished && !r.succeeded,
            "no status is pending"
        );
        let done = "2026-11-25T02:03:00Z".parse().unwrap();
        for (phase, finished, succeeded) in [
            (RunPhase::Pending, false, false),
            (RunPhase::Running, false, false),
            (RunPhase::Succeeded, true, true),
            (RunPhase::Failed, true, false),
        ] {
            run.status = Some(BackupRunStatus {
                phase,
                completed_at: Some(done),
                backup_id: Some("b1".into()),
                ..BackupRunStatus::default()
            });
            let r = run.run_record();
            assert_eq!(
                (r.finished, r.succeeded),
                (finished, succeeded),
                "{phase:?}"
            );
            assert_eq!(r.completed_at, Some(done));
            assert_eq!(r.backup_id.as_deref(), Some("b1"));
        }
        run.spec.kind = RunKind::Drill;
        assert!(run.run_record().drill);
    }

    #[test]
    fn finished_phases() {
        assert!(RunPhase::Succeeded.is_finished());
        assert!(RunPhase::Failed.is_finished());
        assert!(!RunPhase::Running.is_finished());
        assert!(!RunPhase::Pending.is_finished());
    }
}
