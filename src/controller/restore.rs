//! RestoreRequest reconcile: plan → restore → verify, each step a Job's work.
//!
//! [`decide`] maps a request, its policy, its two Jobs and their pods to a
//! [`RestoreDecision`]: create the plan Job ([`restore_jobs::plan_job`]),
//! record its plan (`dryRun` stops there, having written nothing), create the
//! restore Job (restore + checks + for drills the drop of the scratch
//! database), record the result: steps with their seconds, `recoveredTo`,
//! and `recoveryTimeSeconds`, the measured RTO from the request's creation to
//! the verified database. A failure names the step and the cause the Job
//! reported. The spec is immutable (the CRD says so); a finished request is
//! never touched again, and deleting it deletes its Jobs only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::job_status::{
    failure_message, job_state, pod_problem, termination_message, truncate, JobState, ObservedJob,
};
use super::jobs::JobConfig;
use super::restore_jobs::{self, plan_from_summary};
use super::{created_at, Note};
use crate::api::conditions::{from_time, reasons, set_complete};
use crate::api::restore::{RestorePhase, RestoreStep, StepPhase};
use crate::api::{join_errors, BackupPolicy, RestoreRequest, RestoreRequestStatus};
use crate::wire::{parse as parse_summary, PlanSummary, RestoreSummary as RecoverSummary};

/// Label on the RestoreRequests a policy's drills create.
pub const DRILL_LABEL: &str = "lifeboat.dev/drill";
pub use crate::wire::step::{PLAN as STEP_PLAN, RESTORE as STEP_RESTORE, VERIFY as STEP_VERIFY};

/// Condition reasons of a RestoreRequest.
pub mod restore_reasons {
    pub const PLANNING: &str = "Planning";
    pub const RESTORING: &str = "Restoring";
    pub const DRY_RUN: &str = "DryRun";
    pub const RESTORED: &str = "Restored";
    pub const PLAN_FAILED: &str = "PlanFailed";
    pub const RESTORE_FAILED: &str = "RestoreFailed";
    pub const VERIFY_FAILED: &str = "VerifyFailed";
}
use restore_reasons as rr;

/// What the controller saw of one request.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub request: &'a RestoreRequest,
    pub policy: Option<&'a BackupPolicy>,
    /// The plan Job.
    pub plan: &'a ObservedJob,
    /// The restore Job (restore and checks).
    pub restore: &'a ObservedJob,
    pub now: DateTime<Utc>,
    /// A permission the target's service account lacks (config restores,
    /// asked before a Job is created): the request fails naming it.
    pub denied: Option<&'a str>,
}

/// A request that just finished, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreOutcome {
    pub succeeded: bool,
    pub dry_run: bool,
    pub drill: bool,
    pub recovery_time_seconds: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct RestoreDecision {
    pub create_job: Option<Job>,
    /// The new status; `None` when it equals the current one.
    pub status: Option<RestoreRequestStatus>,
    pub events: Vec<Note>,
    pub outcome: Option<RestoreOutcome>,
    pub requeue_after: Option<Duration>,
}

pub fn is_drill(request: &RestoreRequest) -> bool {
    request.labels().contains_key(DRILL_LABEL)
}

fn job_seconds(job: &Job) -> Option<i64> {
    let s = job.status.as_ref()?;
    let start = from_time(s.start_time.as_ref()?);
    let end = from_time(s.completion_time.as_ref()?);
    Some((end - start).num_seconds().max(0))
}

fn set_step(
    status: &mut RestoreRequestStatus,
    name: &str,
    phase: StepPhase,
    now: DateTime<Utc>,
    seconds: Option<i64>,
    message: Option<String>,
) {
    let step = match status.steps.iter_mut().find(|s| s.name == name) {
        Some(s) => s,
        None => {
            status.steps.push(RestoreStep {
                name: name.to_string(),
                phase,
                started_at: None,
                seconds: None,
                message: None,
            });
            status.steps.last_mut().expect("just pushed")
        }
    };
    if phase == StepPhase::Running && step.started_at.is_none() {
        step.started_at = Some(now);
    }
    step.phase = phase;
    if seconds.is_some() {
        step.seconds = seconds;
    }
    step.message = message;
}

/// Why a Job failed: the step and cause from its summary, else its pod's or
/// its own reason.
fn job_failure(job: &Job, pods: &[Pod], default_step: &str) -> (String, String) {
    let summary = termination_message(pods);
    if let Some(s) = summary.as_deref().and_then(parse_summary::<RecoverSummary>) {
        if let Some(e) = s.error {
            return (s.failed_step.unwrap_or(default_step.to_string()), e);
        }
    }
    if let Some(s) = summary.as_deref().and_then(parse_summary::<PlanSummary>) {
        if let Some(e) = s.error {
            return (default_step.to_string(), e);
        }
    }
    (default_step.to_string(), failure_message(job, pods))
}

/// Decides what to do for one request. Pure.
pub fn decide(obs: Observed<'_>, cfg: &JobConfig, resync: Duration) -> RestoreDecision {
    let request = obs.request;
    let now = obs.now;
    let name = request.name_any();
    let generation = request.metadata.generation;
    let old = request.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let mut d = RestoreDecision {
        create_job: None,
        status: None,
        events: Vec::new(),
        outcome: None,
        requeue_after: Some(resync),
    };
    if matches!(old.phase, RestorePhase::Succeeded | RestorePhase::Failed) {
        d.requeue_after = None;
        return d;
    }
    st.observed_generation = generation;
    if st.started_at.is_none() {
        st.started_at = Some(now);
    }
    let created = created_at(request).unwrap_or_else(|| st.started_at.unwrap_or(now));

    // Marks the request failed at `step`, the later steps skipped.
    let fail = |st: &mut RestoreRequestStatus, step: &str, cause: String| {
        let cause = truncate(cause);
        let reason = match step {
            STEP_PLAN => rr::PLAN_FAILED,
            STEP_VERIFY => rr::VERIFY_FAILED,
            _ => rr::RESTORE_FAILED,
        };
        set_step(st, step, StepPhase::Failed, now, None, Some(cause.clone()));
        let later = [STEP_PLAN, STEP_RESTORE, STEP_VERIFY]
            .into_iter()
            .skip_while(|s| *s != step)
            .skip(1);
        for s in later {
            set_step(st, s, StepPhase::Skipped, now, None, None);
        }
        let message = format!("step {step} failed: {cause}");
        st.phase = RestorePhase::Failed;
        st.completed_at = Some(now);
        st.message = Some(message.clone());
        set_complete(&mut st.conditions, false, reason, message, generation, now);
    };

    let policy = match (request.spec.validate(), obs.policy) {
        (Err(errors), _) => {
            fail(&mut st, STEP_PLAN, join_errors(&errors));
            None
        }
        (Ok(()), None) => {
            let message = format!("policy {} not found", request.spec.policy_ref.name);
            st.message = Some(message.clone());
            set_complete(
                &mut st.conditions,
                false,
                reasons::POLICY_NOT_FOUND,
                message,
                generation,
                now,
            );
            None
        }
        (Ok(()), Some(p)) => match p.spec.validate() {
            Err(errors) => {
                let message = format!(
                    "policy {} is invalid: {}",
                    p.name_any(),
                    join_errors(&errors)
                );
                st.message = Some(message.clone());
                set_complete(
                    &mut st.conditions,
                    false,
                    reasons::INVALID_SPEC,
                    message,
                    generation,
                    now,
                );
                None
            }
            Ok(()) => Some(p),
        },
    };

    if let (Some(_), Some(denied)) = (policy, obs.denied) {
        let step = if st.plan.is_none() {
            STEP_PLAN
        } else {
            STEP_RESTORE
        };
        fail(&mut st, step, denied.to_string());
    }
    if let Some(policy) = policy.filter(|_| st.phase != RestorePhase::Failed) {
        if st.plan.is_none() {
            decide_plan(&obs, policy, cfg, &mut st, &mut d, &fail);
        }
        if st.plan.is_some() && st.phase != RestorePhase::Failed {
            // A config dry run is a restore sent as the API server's dry run.
            if request.spec.dry_run && request.spec.target.config.is_none() {
                if st.phase != RestorePhase::Succeeded {
                    let plan = st.plan.clone().expect("checked");
                    for s in [STEP_RESTORE, STEP_VERIFY] {
                        set_step(&mut st, s, StepPhase::Skipped, now, None, None);
                    }
                    st.phase = RestorePhase::Succeeded;
                    st.completed_at = Some(now);
                    st.message = None;
                    set_complete(
                        &mut st.conditions,
                        true,
                        rr::DRY_RUN,
                        format!(
                            "dry run: would restore backup {} from {} into {}; nothing was written",
                            plan.backup_id,
                            plan.destination,
                            plan.target_database
                                .clone()
                                .or_else(|| request.spec.target.describe())
                                .unwrap_or_else(|| "the target volume".into())
                        ),
                        generation,
                        now,
                    );
                }
            } else {
                decide_restore(&obs, policy, cfg, &mut st, &mut d, created, &fail);
            }
        }
    }

    let finished = matches!(st.phase, RestorePhase::Succeeded | RestorePhase::Failed);
    if finished {
        d.requeue_after = None;
        d.outcome = Some(RestoreOutcome {
            succeeded: st.phase == RestorePhase::Succeeded,
            dry_run: request.spec.dry_run,
            drill: is_drill(request),
            recovery_time_seconds: st.recovery_time_seconds,
        });
    }
    if st.phase != old.phase {
        let text = match st.phase {
            RestorePhase::Failed => format!(
                "restore {name} failed: {}",
                st.message.clone().unwrap_or_default()
            ),
            RestorePhase::Succeeded => match st.recovery_time_seconds {
                // A config restore: what the restore step counted.
                Some(_) if request.spec.target.config.is_some() => {
                    let step = st.steps.iter().find(|s| s.name == STEP_RESTORE);
                    let what = step.and_then(|s| s.message.clone()).unwrap_or_default();
                    format!("restore {name} succeeded: {what}")
                }
                Some(rto) => match request.spec.target.describe() {
                    Some(t) => format!("restore {name} succeeded: {t} restored after {rto} s"),
                    None => format!("restore {name} succeeded: verified database after {rto} s"),
                },
                None => format!("restore {name} succeeded (dry run: plan only)"),
            },
            p => format!("restore {name}: {p:?}"),
        };
        let note = if st.phase == RestorePhase::Failed {
            Note::warning
        } else {
            Note::normal
        };
        d.events
            .push(note(&format!("{:?}", st.phase), "Reconcile", text));
    }
    d.status = (st != old).then_some(st);
    d
}

/// A step whose Job runs (or waits to): its pods say if something is wrong.
fn running(
    st: &mut RestoreRequestStatus,
    phase: RestorePhase,
    step: &str,
    pods: &[Pod],
    now: DateTime<Utc>,
) {
    st.phase = phase;
    st.message = pod_problem(pods);
    let message = st.message.clone();
    set_step(st, step, StepPhase::Running, now, None, message);
}

type Fail<'f> = dyn Fn(&mut RestoreRequestStatus, &str, String) + 'f;

fn decide_plan(
    obs: &Observed<'_>,
    policy: &BackupPolicy,
    cfg: &JobConfig,
    st: &mut RestoreRequestStatus,
    d: &mut RestoreDecision,
    fail: &Fail<'_>,
) {
    let now = obs.now;
    let generation = obs.request.metadata.generation;
    match obs.plan.object.as_ref() {
        None => match restore_jobs::plan_job(obs.request, policy, cfg) {
            Ok(job) => {
                st.phase = RestorePhase::Planning;
                set_step(st, STEP_PLAN, StepPhase::Running, now, None, None);
                let msg = format!("created plan job {}", job.name_any());
                set_complete(
                    &mut st.conditions,
                    false,
                    rr::PLANNING,
                    msg,
                    generation,
                    now,
                );
                d.create_job = Some(job);
            }
            Err(e) => fail(st, STEP_PLAN, format!("cannot build the plan Job: {e}")),
        },
        Some(job) => match job_state(job) {
            JobState::Succeeded => {
                let plan = termination_message(&obs.plan.pods)
                    .ok_or_else(|| "the plan Job left no termination message".to_string())
                    .and_then(|m| {
                        parse_summary::<PlanSummary>(&m)
                            .ok_or_else(|| format!("the plan Job's report is unreadable: {m}"))
                    })
                    .and_then(|s| plan_from_summary(&s, policy));
                match plan {
                    Ok(plan) => {
                        let message = format!(
                            "backup {} from {}{}",
                            plan.backup_id,
                            plan.destination,
                            if plan.skipped.is_empty() {
                                String::new()
                            } else {
                                format!(" (skipped {})", plan.skipped.join("; "))
                            }
                        );
                        set_step(
                            st,
                            STEP_PLAN,
                            StepPhase::Succeeded,
                            now,
                            job_seconds(job),
                            Some(truncate(message)),
                        );
                        st.plan = Some(plan);
                    }
                    Err(e) => fail(st, STEP_PLAN, e),
                }
            }
            JobState::Failed => {
                let (_, cause) = job_failure(job, &obs.plan.pods, STEP_PLAN);
                fail(st, STEP_PLAN, cause);
            }
            _ => running(st, RestorePhase::Planning, STEP_PLAN, &obs.plan.pods, now),
        },
    }
}

fn decide_restore(
    obs: &Observed<'_>,
    policy: &BackupPolicy,
    cfg: &JobConfig,
    st: &mut RestoreRequestStatus,
    d: &mut RestoreDecision,
    created: DateTime<Utc>,
    fail: &Fail<'_>,
) {
    let now = obs.now;
    let generation = obs.request.metadata.generation;
    let plan = st.plan.clone().expect("planned");
    match obs.restore.object.as_ref() {
        None => match restore_jobs::restore_job(obs.request, policy, &plan, cfg) {
            Ok(job) => {
                st.phase = RestorePhase::Restoring;
                set_step(st, STEP_RESTORE, StepPhase::Running, now, None, None);
                set_step(st, STEP_VERIFY, StepPhase::Pending, now, None, None);
                let msg = format!("created restore job {}", job.name_any());
                set_complete(
                    &mut st.conditions,
                    false,
                    rr::RESTORING,
                    msg,
                    generation,
                    now,
                );
                d.create_job = Some(job);
            }
            Err(e) => fail(
                st,
                STEP_RESTORE,
                format!("cannot build the restore Job: {e}"),
            ),
        },
        Some(job) => match job_state(job) {
            JobState::Succeeded => {
                let summary = termination_message(&obs.restore.pods)
                    .and_then(|m| parse_summary::<RecoverSummary>(&m))
                    .filter(|s| s.ok);
                let Some(s) = summary else {
                    fail(
                        st,
                        STEP_RESTORE,
                        "the restore Job succeeded but left no readable report".into(),
                    );
                    return;
                };
                let done = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(from_time)
                    .unwrap_or(now);
                let restored = s.restored.clone().unwrap_or_else(|| {
                    format!(
                        "restored backup {} into {}",
                        s.backup_id.clone().unwrap_or_default(),
                        s.target_database
                            .clone()
                            .or_else(|| obs.request.spec.target.describe())
                            .unwrap_or_else(|| "the target volume".into())
                    )
                });
                set_step(
                    st,
                    STEP_RESTORE,
                    StepPhase::Succeeded,
                    now,
                    Some(s.restore_seconds.round() as i64),
                    Some(truncate(restored)),
                );
                // A config restore has no SQL checks: the server's answers are its verification.
                match s.restored {
                    Some(_) => set_step(st, STEP_VERIFY, StepPhase::Skipped, now, None, None),
                    None => set_step(
                        st,
                        STEP_VERIFY,
                        StepPhase::Succeeded,
                        now,
                        Some(s.check_seconds.round() as i64),
                        Some(format!("{} check(s) passed", s.checks)),
                    ),
                }
                st.phase = RestorePhase::Succeeded;
                st.files_restored = s.files.map(|n| n as i64);
                st.bytes_restored = (s.bytes > 0).then_some(s.bytes as i64);
                st.recovered_to = s.backup_completed_at.or(plan.completed_at);
                st.completed_at = Some(done);
                st.recovery_time_seconds = Some((done - created).num_seconds().max(0));
                st.message = None;
                let (reason, msg) = if obs.request.spec.dry_run {
                    let what = format!("dry run of backup {}: nothing was written", plan.backup_id);
                    (rr::DRY_RUN, what)
                } else if obs.request.spec.target.config.is_some() {
                    let what = format!(
                        "backup {} restored in {} s",
                        plan.backup_id,
                        st.recovery_time_seconds.unwrap_or_default()
                    );
                    (rr::RESTORED, what)
                } else {
                    let what = format!(
                        "backup {} restored and verified in {} s",
                        plan.backup_id,
                        st.recovery_time_seconds.unwrap_or_default()
                    );
                    (rr::RESTORED, what)
                };
                set_complete(&mut st.conditions, true, reason, msg, generation, now);
            }
            JobState::Failed => {
                let (step, cause) = job_failure(job, &obs.restore.pods, STEP_RESTORE);
                fail(st, &step, cause);
            }
            _ => running(
                st,
                RestorePhase::Restoring,
                STEP_RESTORE,
                &obs.restore.pods,
                now,
            ),
        },
    }
}

mod reconcile;
pub use reconcile::reconcile;

#[cfg(test)]
mod tests;
