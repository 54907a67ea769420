//! ApplicationRestore: one application — its configuration, databases and
//! files — back to one point in time, as the bad day's procedure: plan,
//! pre-recovery check, maintenance mode, configuration, databases, files,
//! verification, end of maintenance, smoke tests, post-recovery check.
//! Each part is a RestoreRequest the controller creates
//! (src/controller/app_restore.rs); here are the type, its schema and its
//! checks.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::restore::{RestorePhase, RestoreRequestSpec, RestoreStep, RestoreTarget};
use super::{check_ref_name, into_result, is_dns_label, FieldError, LocalRef};

/// Longest application restore name: its parts' RestoreRequests are named
/// `<name>-<part>` and their Jobs add a suffix to that.
pub const MAX_NAME: usize = 40;
/// Longest part name.
pub const MAX_PART: usize = 20;

// Each printcolumn(...) repeats name/type_/json_path; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "ApplicationRestore",
    namespaced,
    status = "ApplicationRestoreStatus",
    shortname = "apprestore",
    category = "lifeboat",
    doc = "An application's configuration, databases and files restored to one point in time",
    printcolumn(
        name = "Target Point",
        type_ = "string",
        json_path = ".spec.pointInTime"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.currentStep"),
    printcolumn(
        name = "RTO Seconds",
        type_ = "integer",
        json_path = ".status.recoveryTimeSeconds"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an ApplicationRestore's spec is immutable; create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRestoreSpec {
    /// Every part is restored as of this instant: a policy that archives
    /// WAL replays to it exactly, any other part uses its newest backup at
    /// or before it.
    pub point_in_time: DateTime<Utc>,
    /// The application's parts, each a policy and where it restores to.
    /// They run by kind: configuration, then databases, then files.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub parts: Vec<ApplicationPart>,
    /// Workloads held at zero replicas while the restore runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
    /// HTTP requests that must answer as expected once maintenance ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub smoke_tests: Vec<SmokeTest>,
    /// The service account (in this namespace) that must be allowed to scale
    /// the maintenance workloads and read the smoke tests' Services: the
    /// controller asks the API server before it touches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Plan only: each part's recovery point and its gap to pointInTime.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One policy of the application and the target its backup restores into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPart {
    /// Names the part in the status and its RestoreRequest (`<restore>-<part>`).
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    pub policy_ref: LocalRef,
    /// Destination to read from; absent = the first healthy one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub target: RestoreTarget,
    /// SQL run after a database part's restore (as RestoreRequest's checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Allow replacing a database that exists (as RestoreRequest's overwrite).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
    /// Drop the database after its checks (as RestoreRequest's dropAfter;
    /// application drills set it on their database parts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_after: bool,
}

/// Which stage a part runs in, by its target.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum PartKind {
    Configuration,
    Database,
    Files,
}

impl ApplicationPart {
    pub fn kind(&self) -> PartKind {
        let t = &self.target;
        if t.config.is_some() {
            PartKind::Configuration
        } else if t.postgres.is_some() || t.volume.is_some() {
            PartKind::Database
        } else {
            PartKind::Files
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// Scaled to zero before the first part is restored (their replicas
    /// remembered in the status), held there while parts restore (a
    /// configuration part that brings one back is scaled down again), and
    /// scaled back once every part is verified.
    #[schemars(length(min = 1, max = 32))]
    pub scale_to_zero: Vec<WorkloadRef>,
    /// Scale the workloads back even when a step fails. Default: a failed
    /// restore leaves maintenance on, for a person to look first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_on_failure: bool,
    /// How long ending maintenance waits for every workload's ready replicas.
    #[serde(default = "ready_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub ready_timeout_seconds: i64,
}

fn ready_timeout() -> i64 {
    300
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// An HTTP GET to an in-cluster Service, expecting a status and optionally
/// text in the body. Retried until it passes or its timeout runs out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTest {
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    pub service: ServiceRef,
    /// Path and query, starting with `/`.
    #[serde(default = "root_path")]
    #[schemars(length(min = 1, max = 2048))]
    pub path: String,
    #[serde(default = "ok_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: u16,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub expect_body: Option<String>,
    /// How long the test keeps retrying before it fails.
    #[serde(default = "smoke_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i64,
}

fn root_path() -> String {
    "/".into()
}

fn ok_status() -> u16 {
    200
}

fn smoke_timeout() -> i64 {
    60
}

/// A port of a Service, reached at the Service's cluster IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

impl ApplicationRestoreSpec {
    /// The RestoreRequest spec of part `index`.
    pub fn part_request(&self, index: usize) -> RestoreRequestSpec {
        let p = &self.parts[index];
        RestoreRequestSpec {
            policy_ref: p.policy_ref.clone(),
            point_in_time: Some(self.point_in_time),
            backup_id: None,
            from: p.from.clone(),
            target: p.target.clone(),
            checks: p.checks.clone(),
            dry_run: self.dry_run,
            overwrite: p.overwrite,
            drop_after: p.drop_after,
        }
    }

    /// Checks what the schema cannot, naming each field. A part is checked
    /// as the RestoreRequest it becomes, its fields named under the part.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.parts.is_empty() {
            errors.push(FieldError::new("spec.parts", "name at least one part"));
        }
        for (i, part) in self.parts.iter().enumerate() {
            let at = format!("spec.parts[{i}]");
            if part.name.len() > MAX_PART || !is_dns_label(&part.name) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!(
                        "{:?} must be a DNS label of at most {MAX_PART} characters",
                        part.name
                    ),
                ));
            }
            if self.parts[..i].iter().any(|p| p.name == part.name) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{:?} names two parts", part.name),
                ));
            }
            if let Err(found) = self.part_request(i).validate() {
                errors.extend(found.into_iter().map(|e| FieldError {
                    field: e.field.replacen("spec.", &format!("{at}."), 1),
                    message: e.message,
                }));
            }
        }
        if let Some(m) = &self.maintenance {
            for (i, w) in m.scale_to_zero.iter().enumerate() {
                let at = format!("spec.maintenance.scaleToZero[{i}]");
                check_ref_name(&format!("{at}.name"), &w.name, &mut errors);
                if !is_dns_label(&w.namespace) {
                    errors.push(FieldError::new(
                        format!("{at}.namespace"),
                        format!("{:?} is not a namespace name", w.namespace),
                    ));
                }
                if m.scale_to_zero[..i].contains(w) {
                    errors.push(FieldError::new(at, format!("{w} is named twice")));
                }
            }
        }
        for (i, t) in self.smoke_tests.iter().enumerate() {
            let at = format!("spec.smokeTests[{i}]");
            if !is_dns_label(&t.service.namespace) {
                errors.push(FieldError::new(
                    format!("{at}.service.namespace"),
                    format!("{:?} is not a namespace name", t.service.namespace),
                ));
            }
            if !is_dns_label(&t.service.name) {
                errors.push(FieldError::new(
                    format!("{at}.service.name"),
                    format!("{:?} is not a Service name", t.service.name),
                ));
            }
            if !t.path.starts_with('/')
                || t.path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                errors.push(FieldError::new(
                    format!("{at}.path"),
                    format!("{:?} must start with / and hold no spaces", t.path),
                ));
            }
            if self.smoke_tests[..i].iter().any(|o| o.name == t.name) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{:?} names two smoke tests", t.name),
                ));
            }
        }
        let touches_cluster = self.maintenance.is_some() || !self.smoke_tests.is_empty();
        match &self.service_account_name {
            None if touches_cluster => errors.push(FieldError::new(
                "spec.serviceAccountName",
                "required with maintenance or smokeTests: the controller scales workloads and reads Services only as far as this account may",
            )),
            Some(sa) => check_ref_name("spec.serviceAccountName", sa, &mut errors),
            None => {}
        }
        into_result(errors)
    }
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRestoreStatus {
    /// No status yet means Planning.
    #[serde(default)]
    pub phase: RestorePhase,
    /// The step running now (or the one that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// Each part's recovery point and its gap to the requested instant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PartPlan>,
    /// Every step in order, with its start, seconds and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RestoreStep>,
    /// The maintenance workloads and the replicas they are scaled back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<HeldWorkload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Measured RTO: from the request to the passed post-recovery check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One part's plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartPlan {
    pub part: String,
    pub kind: PartKind,
    pub policy: String,
    pub backup_id: String,
    pub destination: String,
    /// The instant the part's restored data reflects.
    pub recovery_point: DateTime<Utc>,
    /// pointInTime minus recoveryPoint: the writes this part will not have.
    pub gap_seconds: i64,
    /// WAL is replayed up to pointInTime (gap 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wal_replay: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
}

/// A maintenance workload: its replicas before maintenance (absent while
/// the workload did not exist: a configuration part may restore it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldWorkload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

impl HeldWorkload {
    pub fn is(&self, w: &WorkloadRef) -> bool {
        self.kind == w.kind && self.namespace == w.namespace && self.name == w.name
    }
}

#[cfg(test)]
#[path = "app_restore_tests.rs"]
mod tests;
