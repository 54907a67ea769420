//! ApplicationRestore reconcile: the bad day's procedure as ordered steps.
//!
//! [`decide`] maps the request, its parts' policies, plan Jobs and
//! RestoreRequests, the maintenance workloads and the smoke tests' results
//! to a [`Decision`]. Each step is evaluated in order ([`steps::ORDER`]);
//! one that is done hands over to the next in the same pass, one that waits
//! ends the pass, one that fails fails the request (the later steps
//! skipped). A part is a RestoreRequest the step creates (owned by the
//! application restore, labelled [`APP_LABEL`]); its plan Job is created by
//! the plan step under the name the RestoreRequest's controller looks for,
//! so the part restores exactly the planned backup without planning twice.
//! Maintenance records a workload's replicas in one pass and scales it in
//! the next, so the replicas to restore are in the status before anything
//! is scaled; the databases and files steps wait until every maintenance
//! workload is at zero, so a workload a configuration part restored (at
//! its backed-up replicas) is down before any data is restored under it.
//! Pure; the IO is in `app_restore/reconcile.rs`.

mod hold;
#[cfg(test)]
mod job_tests;
mod parts;
pub mod reconcile;
pub mod smoke;
pub mod space;
#[cfg(test)]
mod tests;
pub mod user_jobs;

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use super::job_status::{truncate, ObservedJob};
use super::jobs::JobConfig;
use super::{created_at, Note};
use crate::api::app_restore::{
    ApplicationRestore, ApplicationRestoreStatus, PartKind, WorkloadRef, MAX_NAME,
};
use crate::api::conditions::set_complete;
use crate::api::restore::{RestorePhase, RestoreStep, StepPhase};
use crate::api::{join_errors, BackupPolicy, RestoreRequest};
pub use hold::WorkloadState;
pub use smoke::SmokeResult;
pub use space::ClaimSpace;

/// Label on the RestoreRequests of an application restore, naming it.
pub const APP_LABEL: &str = "lifeboat.dev/application-restore";

/// The steps, in the order they run.
pub mod steps {
    pub const PLAN: &str = "plan";
    pub const PRE_CHECK: &str = "preCheck";
    pub const MAINTENANCE: &str = "maintenance";
    pub const CONFIGURATION: &str = "configuration";
    pub const DATABASES: &str = "databases";
    pub const FILES: &str = "files";
    pub const VERIFICATION: &str = "verification";
    pub const END_MAINTENANCE: &str = "endMaintenance";
    pub const SMOKE_TESTS: &str = "smokeTests";
    pub const EXIT_JOB: &str = "exitJob";
    pub const POST_CHECK: &str = "postCheck";
    pub const ORDER: [&str; 11] = [
        PLAN,
        PRE_CHECK,
        MAINTENANCE,
        CONFIGURATION,
        DATABASES,
        FILES,
        VERIFICATION,
        END_MAINTENANCE,
        SMOKE_TESTS,
        EXIT_JOB,
        POST_CHECK,
    ];
}

/// What the controller saw of one application restore. The slices are per
/// part (`policies`, `plans`, `parts`) and per maintenance workload.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub app: &'a ApplicationRestore,
    pub policies: &'a [Option<&'a BackupPolicy>],
    pub plans: &'a [ObservedJob],
    pub parts: &'a [Option<RestoreRequest>],
    pub workloads: &'a [Option<WorkloadState>],
    /// The smoke tests' results and the step they were taken for (the
    /// current one at the start of the reconcile).
    pub smoke: Option<(&'a str, &'a [SmokeResult])>,
    /// Each part's claim, for a part restored into one (during preCheck).
    pub claims: &'a [Option<ClaimSpace>],
    /// The service account's permissions, when asked (during preCheck):
    /// `Some(None)` all granted, `Some(Some(_))` the first one missing.
    pub access: Option<Option<&'a str>>,
    /// The user's Jobs of the current step (user_jobs::to_observe), by name.
    pub jobs: &'a [(String, ObservedJob)],
    pub now: DateTime<Utc>,
}

/// A request that just finished, for the metrics and the notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub succeeded: bool,
    pub dry_run: bool,
    pub recovery_time_seconds: Option<i64>,
    /// One line per step with its seconds: the notification's body.
    pub summary: String,
}

#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub create_jobs: Vec<Job>,
    /// The user's Jobs (maintenance, smoke tests) to create.
    pub create_user_jobs: Vec<Job>,
    pub create_parts: Vec<RestoreRequest>,
    /// Workloads to scale, and to how many replicas.
    pub scale: Vec<(WorkloadRef, i32)>,
    /// The new status; `None` when it equals the current one.
    pub status: Option<ApplicationRestoreStatus>,
    pub events: Vec<Note>,
    pub outcome: Option<Outcome>,
    pub requeue_after: Option<Duration>,
}

/// The step to run now: the first not yet done (none once finished).
pub fn current_step(status: Option<&ApplicationRestoreStatus>) -> Option<&'static str> {
    let Some(st) = status else {
        return Some(steps::PLAN);
    };
    if matches!(st.phase, RestorePhase::Succeeded | RestorePhase::Failed) {
        return None;
    }
    steps::ORDER.into_iter().find(|name| {
        st.steps
            .iter()
            .find(|s| s.name == *name)
            .is_none_or(|s| matches!(s.phase, StepPhase::Pending | StepPhase::Running))
    })
}

/// The name of part `part`'s RestoreRequest.
pub fn part_name(app: &str, part: &str) -> String {
    format!("{app}-{part}")
}

/// How a step's evaluation ended in this pass.
enum Progress {
    Wait(Option<String>),
    Done(String),
    Failed(String),
}

/// Decides what to do for one application restore. Pure.
pub fn decide(obs: Observed<'_>, cfg: &JobConfig, resync: Duration) -> Decision {
    let app = obs.app;
    let old = app.status.clone().unwrap_or_default();
    // Steps wait on Jobs, RestoreRequests and workloads it does not watch.
    let mut d = Decision {
        requeue_after: Some(resync.min(Duration::from_secs(1))),
        ..Decision::default()
    };
    if matches!(old.phase, RestorePhase::Succeeded | RestorePhase::Failed) {
        d.requeue_after = None;
        return d;
    }
    let mut st = old.clone();
    st.observed_generation = app.metadata.generation;
    st.started_at.get_or_insert(obs.now);
    if st.steps.is_empty() {
        st.steps = initial_steps(app);
    }
    let mut pass = Pass {
        obs: &obs,
        cfg,
        st,
        d: &mut d,
    };
    pass.run();
    let st = pass.st;
    if st.phase != old.phase {
        let name = app.name_any();
        let text = match st.phase {
            RestorePhase::Failed => format!(
                "application restore {name} failed: {}",
                st.message.clone().unwrap_or_default()
            ),
            RestorePhase::Succeeded => format!(
                "application restore {name} succeeded: {}",
                st.message.clone().unwrap_or_default()
            ),
            p => format!("application restore {name}: {p:?}"),
        };
        let note = match st.phase {
            RestorePhase::Failed => Note::warning,
            _ => Note::normal,
        };
        d.events
            .push(note(&format!("{:?}", st.phase), "Reconcile", text));
    }
    if matches!(st.phase, RestorePhase::Succeeded | RestorePhase::Failed) {
        d.requeue_after = None;
        d.outcome = Some(Outcome {
            succeeded: st.phase == RestorePhase::Succeeded,
            dry_run: app.spec.dry_run,
            recovery_time_seconds: st.recovery_time_seconds,
            summary: summary(app, &st),
        });
    }
    d.status = (st != old).then_some(st);
    d
}

/// Every step Pending, except those with nothing to do (Skipped).
fn initial_steps(app: &ApplicationRestore) -> Vec<RestoreStep> {
    let s = &app.spec;
    let has = |k: PartKind| s.parts.iter().any(|p| p.kind() == k);
    steps::ORDER
        .into_iter()
        .map(|name| {
            let skip = match name {
                steps::PLAN => false,
                _ if s.dry_run => true,
                steps::MAINTENANCE => s.maintenance.is_none(),
                steps::END_MAINTENANCE => s
                    .maintenance
                    .as_ref()
                    .is_none_or(|m| m.scale_to_zero.is_empty()),
                steps::EXIT_JOB => s.maintenance.as_ref().is_none_or(|m| m.exit_job.is_none()),
                steps::CONFIGURATION => !has(PartKind::Configuration),
                steps::DATABASES => !has(PartKind::Database),
                steps::FILES => !has(PartKind::Files),
                steps::SMOKE_TESTS => s.smoke_tests.is_empty(),
                _ => false,
            };
            RestoreStep {
                name: name.into(),
                phase: if skip {
                    StepPhase::Skipped
                } else {
                    StepPhase::Pending
                },
                started_at: None,
                seconds: None,
                message: None,
            }
        })
        .collect()
}

/// One decision's working state.
struct Pass<'o, 'd> {
    obs: &'o Observed<'o>,
    cfg: &'o JobConfig,
    st: ApplicationRestoreStatus,
    d: &'d mut Decision,
}

impl Pass<'_, '_> {
    fn step(&mut self, name: &str) -> &mut RestoreStep {
        self.st
            .steps
            .iter_mut()
            .find(|s| s.name == name)
            .expect("every step is in the status")
    }

    fn elapsed(&mut self, name: &str) -> i64 {
        let now = self.obs.now;
        let started = self.step(name).started_at.unwrap_or(now);
        (now - started).num_seconds().max(0)
    }

    fn run(&mut self) {
        let now = self.obs.now;
        let generation = self.obs.app.metadata.generation;
        if let Some(cause) = self.invalid() {
            return self.fail(steps::PLAN, cause);
        }
        loop {
            let Some(name) = current_step(Some(&self.st)) else {
                return self.succeed();
            };
            self.st.current_step = Some(name.to_string());
            self.st.phase = match name {
                steps::PLAN | steps::PRE_CHECK => RestorePhase::Planning,
                steps::VERIFICATION
                | steps::END_MAINTENANCE
                | steps::SMOKE_TESTS
                | steps::EXIT_JOB
                | steps::POST_CHECK => RestorePhase::Verifying,
                _ => RestorePhase::Restoring,
            };
            let step = self.step(name);
            if step.phase == StepPhase::Pending {
                step.phase = StepPhase::Running;
                step.started_at = Some(now);
            }
            // Data parts restore only once every workload is at zero (one a
            // configuration part just brought back is recorded, then scaled).
            let held = !self.holding() || hold::hold(self);
            let data = matches!(name, steps::DATABASES | steps::FILES);
            let progress = match held || !data {
                true => self.evaluate(name),
                false => Progress::Wait(Some(
                    "waiting for the maintenance workloads to be at zero".into(),
                )),
            };
            match progress {
                Progress::Wait(message) => {
                    let message = message.map(truncate);
                    self.step(name).message = message.clone();
                    let text = message.unwrap_or_else(|| format!("step {name} running"));
                    let reason = format!("{:?}", self.st.phase);
                    set_complete(
                        &mut self.st.conditions,
                        false,
                        &reason,
                        text,
                        generation,
                        now,
                    );
                    return;
                }
                Progress::Done(message) => {
                    let seconds = self.elapsed(name);
                    let step = self.step(name);
                    step.phase = StepPhase::Succeeded;
                    step.seconds = Some(seconds);
                    step.message = Some(truncate(message));
                }
                Progress::Failed(cause) => return self.fail(name, cause),
            }
        }
    }

    /// Holding maintenance: after it began (and its enter Job succeeded),
    /// until it is ended.
    fn holding(&self) -> bool {
        let phase = |n: &str| self.st.steps.iter().find(|s| s.name == n).map(|s| s.phase);
        phase(steps::MAINTENANCE)
            .is_some_and(|p| p != StepPhase::Pending && p != StepPhase::Skipped)
            && phase(steps::END_MAINTENANCE) == Some(StepPhase::Pending)
            && user_jobs::entered(self)
    }

    fn invalid(&self) -> Option<String> {
        let app = self.obs.app;
        if app.name_any().len() > MAX_NAME {
            return Some(format!(
                "metadata.name: at most {MAX_NAME} characters (the parts' RestoreRequests add -<part>)"
            ));
        }
        if let Err(errors) = app.spec.validate() {
            return Some(join_errors(&errors));
        }
        let missing: Vec<String> = app
            .spec
            .parts
            .iter()
            .zip(self.obs.policies)
            .enumerate()
            .filter(|(_, (_, p))| p.is_none())
            .map(|(i, (part, _))| {
                format!(
                    "spec.parts[{i}].policyRef: policy {} not found",
                    part.policy_ref.name
                )
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    fn evaluate(&mut self, name: &str) -> Progress {
        match name {
            steps::PLAN => self.plan(),
            steps::PRE_CHECK => match self.obs.access {
                None => Progress::Wait(Some("checking permissions".into())),
                Some(Some(denied)) => Progress::Failed(denied.to_string()),
                Some(None) => match space::check(self) {
                    Err(short) => Progress::Failed(short),
                    Ok(space) => {
                        let app = self.obs.app;
                        let asked = reconcile::needs(app);
                        let asked: Vec<String> = asked.iter().map(ToString::to_string).collect();
                        let found = "every destination answered with its recovery point";
                        let head = match &app.spec.service_account_name {
                            Some(sa) if !asked.is_empty() => {
                                format!("{found}; service account {sa} may {}", asked.join(", "))
                            }
                            _ => found.to_string(),
                        };
                        let lines: Vec<String> = [head].into_iter().chain(space).collect();
                        Progress::Done(lines.join("; "))
                    }
                },
            },
            steps::MAINTENANCE => match user_jobs::enter(self) {
                Some(Progress::Done(entered)) => match hold::maintenance(self) {
                    Progress::Done(held) if held.is_empty() => Progress::Done(entered),
                    Progress::Done(held) => Progress::Done(format!("{entered}; {held}")),
                    other => other,
                },
                Some(other) => other,
                None => hold::maintenance(self),
            },
            steps::CONFIGURATION => self.restore_parts(PartKind::Configuration),
            steps::DATABASES => self.restore_parts(PartKind::Database),
            steps::FILES => self.restore_parts(PartKind::Files),
            steps::VERIFICATION => self.verification(),
            steps::END_MAINTENANCE => hold::end_maintenance(self),
            steps::SMOKE_TESTS => smoke::evaluate(self, name),
            steps::EXIT_JOB => user_jobs::exit(self),
            _ => hold::post_check(self),
        }
    }

    fn succeed(&mut self) {
        let now = self.obs.now;
        let app = self.obs.app;
        let created = created_at(app).unwrap_or(self.st.started_at.unwrap_or(now));
        self.st.phase = RestorePhase::Succeeded;
        self.st.current_step = None;
        self.st.completed_at = Some(now);
        let message = if app.spec.dry_run {
            format!(
                "dry run: planned {} parts to {}; nothing was written",
                self.st.plan.len(),
                app.spec.point_in_time.to_rfc3339()
            )
        } else {
            let rto = (now - created).num_seconds().max(0);
            self.st.recovery_time_seconds = Some(rto);
            format!(
                "every part restored to {} in {rto} s",
                app.spec.point_in_time.to_rfc3339()
            )
        };
        self.st.message = Some(message.clone());
        let reason = if app.spec.dry_run {
            "DryRun"
        } else {
            "Restored"
        };
        let generation = app.metadata.generation;
        set_complete(
            &mut self.st.conditions,
            true,
            reason,
            message,
            generation,
            now,
        );
    }

    /// Fails the request at `name`; later steps are skipped. Maintenance
    /// stays on (its workloads at zero) unless `endOnFailure`.
    fn fail(&mut self, name: &str, cause: String) {
        let now = self.obs.now;
        let cause = truncate(cause);
        let seconds = self.elapsed(name);
        let step = self.step(name);
        step.phase = StepPhase::Failed;
        step.started_at.get_or_insert(now);
        step.seconds = Some(seconds);
        step.message = Some(cause.clone());
        let later = steps::ORDER.into_iter().skip_while(|s| *s != name).skip(1);
        for s in later {
            let step = self.step(s);
            if step.phase == StepPhase::Pending {
                step.phase = StepPhase::Skipped;
            }
        }
        let mut message = format!("step {name} failed: {cause}");
        if let Some(m) = hold::on_failure(self) {
            message = format!("{message}; {m}");
        }
        self.st.phase = RestorePhase::Failed;
        self.st.current_step = Some(name.to_string());
        self.st.completed_at = Some(now);
        self.st.message = Some(message.clone());
        let generation = self.obs.app.metadata.generation;
        set_complete(
            &mut self.st.conditions,
            false,
            "Failed",
            message,
            generation,
            now,
        );
    }
}

/// Every step with its seconds, for the notification.
fn summary(app: &ApplicationRestore, st: &ApplicationRestoreStatus) -> String {
    let mut lines = vec![format!(
        "application restore {} to {}: {}",
        app.name_any(),
        app.spec.point_in_time.to_rfc3339(),
        st.message.clone().unwrap_or_default()
    )];
    for s in &st.steps {
        let seconds = s.seconds.map(|x| format!(" {x} s")).unwrap_or_default();
        lines.push(format!("- {} {:?}{seconds}", s.name, s.phase));
    }
    lines.join("\n")
}
