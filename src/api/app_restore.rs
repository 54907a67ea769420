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
pub use super::user_job::JobTemplate;
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
    /// Maintenance mode while the restore runs: workloads held at zero
    /// replicas, and/or a Job to enter it and one to exit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
    /// Checks that must pass once maintenance ends: HTTP requests to
    /// Services, or Jobs.
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
        } else if t.postgres.is_some() || t.volume.is_some() || t.scratch_data_directory().is_some()
        {
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scale_to_zero: Vec<WorkloadRef>,
    /// A Job that switches maintenance on (a maintenance page, a flag),
    /// run to success in this namespace before any workload is scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enter_job: Option<JobTemplate>,
    /// A Job that switches maintenance off, run once the smoke tests
    /// passed (step exitJob): users come back only to a tested application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_job: Option<JobTemplate>,
    /// How long the enter or the exit Job may take (default 600); also
    /// its activeDeadlineSeconds unless the template sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub job_timeout_seconds: Option<i64>,
    /// End maintenance even when a step fails (workloads scaled back, the
    /// exit Job run). Default: a failed restore leaves maintenance on,
    /// for a person to look first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_on_failure: bool,
    /// How long ending maintenance waits for every workload's ready replicas.
    #[serde(default = "ready_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub ready_timeout_seconds: i64,
}

/// How long a maintenance Job may take when `jobTimeoutSeconds` is unset.
pub const JOB_TIMEOUT: i64 = 600;

impl Maintenance {
    pub fn job_timeout(&self) -> i64 {
        self.job_timeout_seconds.unwrap_or(JOB_TIMEOUT)
    }
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

/// A check that must pass once maintenance ends: an HTTP GET to an
/// in-cluster Service (`service`), expecting a status and optionally text
/// in the body, retried until it passes or its timeout runs out; or a Job
/// (`job`) that must succeed within the timeout. Exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.service) != has(self.job)",
    "message": "give exactly one of service (an HTTP request) or job (a Job that must succeed)"
}]))]
pub struct SmokeTest {
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// A Job run once in the request's namespace; it passes when it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobTemplate>,
    /// Path and query, starting with `/` (default `/`; HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub path: Option<String>,
    /// Default 200 (HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: Option<u16>,
    /// Text the body must contain (HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub expect_body: Option<String>,
    /// How long the test keeps retrying before it fails; for a Job, how
    /// long it may take (and its activeDeadlineSeconds unless it sets one).
    #[serde(default = "smoke_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i64,
}

impl SmokeTest {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    pub fn expect_status(&self) -> u16 {
        self.expect_status.unwrap_or(200)
    }
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
            check_maintenance(m, &mut errors);
        }
        for (i, t) in self.smoke_tests.iter().enumerate() {
            let at = format!("spec.smokeTests[{i}]");
            check_smoke_test(t, &at, &mut errors);
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
                "required with maintenance or smokeTests: the controller scales workloads, reads Services and creates Jobs only as far as this account may",
            )),
            Some(sa) => check_ref_name("spec.serviceAccountName", sa, &mut errors),
            None => {}
        }
        into_result(errors)
    }
}

fn check_maintenance(m: &Maintenance, errors: &mut Vec<FieldError>) {
    for (i, w) in m.scale_to_zero.iter().enumerate() {
        let at = format!("spec.maintenance.scaleToZero[{i}]");
        check_ref_name(&format!("{at}.name"), &w.name, errors);
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
    if m.scale_to_zero.is_empty() && m.enter_job.is_none() {
        errors.push(FieldError::new(
            "spec.maintenance",
            "name workloads in scaleToZero, an enterJob, or both",
        ));
    }
    if m.exit_job.is_some() && m.enter_job.is_none() {
        errors.push(FieldError::new(
            "spec.maintenance.exitJob",
            "an exitJob ends what an enterJob began: give the enterJob too",
        ));
    }
    if m.job_timeout_seconds.is_some() && m.enter_job.is_none() {
        errors.push(FieldError::new(
            "spec.maintenance.jobTimeoutSeconds",
            "times the enterJob and exitJob: give them, or leave it out",
        ));
    }
    for (field, job) in [("enterJob", &m.enter_job), ("exitJob", &m.exit_job)] {
        if let Some(Err(found)) = job
            .as_ref()
            .map(|j| j.spec(&format!("spec.maintenance.{field}")))
        {
            errors.extend(found);
        }
    }
}

/// A smoke test is an HTTP request or a Job, with only its own fields.
fn check_smoke_test(t: &SmokeTest, at: &str, errors: &mut Vec<FieldError>) {
    match (&t.service, &t.job) {
        (Some(_), Some(_)) => errors.push(FieldError::new(
            at,
            "give either service (an HTTP request) or job, not both",
        )),
        (None, None) => errors.push(FieldError::new(
            at,
            "give service (an HTTP request to a Service) or job (a Job that must succeed)",
        )),
        _ => {}
    }
    if let Some(s) = &t.service {
        if !is_dns_label(&s.namespace) {
            errors.push(FieldError::new(
                format!("{at}.service.namespace"),
                format!("{:?} is not a namespace name", s.namespace),
            ));
        }
        if !is_dns_label(&s.name) {
            errors.push(FieldError::new(
                format!("{at}.service.name"),
                format!("{:?} is not a Service name", s.name),
            ));
        }
        let path = t.path();
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(FieldError::new(
                format!("{at}.path"),
                format!("{path:?} must start with / and hold no spaces"),
            ));
        }
    }
    if let Some(job) = &t.job {
        let http = [
            ("path", t.path.is_some()),
            ("expectStatus", t.expect_status.is_some()),
            ("expectBody", t.expect_body.is_some()),
        ];
        for (field, _) in http.iter().filter(|(_, set)| *set) {
            errors.push(FieldError::new(
                format!("{at}.{field}"),
                "only for an HTTP test (service); a Job test passes when its Job succeeds",
            ));
        }
        if let Err(found) = job.spec(&format!("{at}.job")) {
            errors.extend(found);
        }
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
