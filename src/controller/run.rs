//! BackupRun reconcile. [`decide`] maps a run, its policy, its Job and the
//! Job's pods to a [`RunPlan`]: create the Job, or record what the Job shows
//! (Pending → Running → Succeeded | Failed, with the backup id and artifacts
//! from the container's termination message, or the pod's reason for a
//! failure). A run with a backup id and `deletionPolicy: Delete` carries the
//! `lifeboat.dev/prune` finalizer; [`decide_cleanup`] handles its deletion:
//! a prune Job first, the finalizer released only when that Job succeeded.
//! With `Retain` (the default) deleting the run leaves its backup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};

use super::job_status::{
    failure_message, job_problem, job_state, pod_problem, success_message, termination_message,
    JobState, ObservedJob,
};
use super::jobs::{self, JobConfig};
use super::Note;
use crate::api::conditions::{
    from_time, reasons, set_complete, set_condition, types, ConditionUpdate,
};
use crate::api::run::{format_bytes, format_duration};
use crate::api::{
    join_errors, BackupPolicy, BackupRun, BackupRunStatus, DeletionPolicy, RunPhase,
    PRUNE_FINALIZER,
};
use crate::wire::{BackupSummary, PruneSummary};

/// What the controller saw of one run.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub run: &'a BackupRun,
    pub policy: Option<&'a BackupPolicy>,
    /// The run's backup Job.
    pub job: &'a ObservedJob,
    pub now: DateTime<Utc>,
}

/// A run that just finished, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub succeeded: bool,
    pub seconds: Option<f64>,
    pub bytes: Option<i64>,
    pub completed_at: DateTime<Utc>,
    /// A file or bucket backup's figures.
    pub files: Option<crate::api::run::FileCounts>,
}

/// What a reconcile of one (live) run should do.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPlan {
    pub create_job: Option<Job>,
    pub add_finalizer: bool,
    /// The new status; `None` when it equals the current one.
    pub status: Option<BackupRunStatus>,
    pub events: Vec<Note>,
    pub outcome: Option<Outcome>,
    /// `None`: wait for a change.
    pub requeue_after: Option<Duration>,
}

/// What a reconcile of a run being deleted should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Cleanup {
    /// Not ours to hold (no finalizer of ours).
    Nothing,
    /// Create the prune Job for the run's backup.
    CreatePruneJob(Box<Job>),
    /// The prune Job is still running.
    Wait,
    /// The prune Job failed: delete it so the next attempt starts afresh.
    RetryPrune { job: String, message: String },
    /// The prune Job succeeded but S3 Object Lock kept the backup until
    /// `until`: hold the run; after that date, delete the Job (`wait` is
    /// `None`) so the next attempt prunes again.
    Locked {
        job: String,
        until: DateTime<Utc>,
        wait: Option<Duration>,
    },
    /// Release the run: its backup is gone (or there is nothing to prune).
    RemoveFinalizer(Note),
}

fn has_finalizer(run: &BackupRun) -> bool {
    run.finalizers().iter().any(|f| f == PRUNE_FINALIZER)
}

/// A run whose backup must be pruned before it goes, and that does not
/// hold it yet.
fn needs_finalizer(run: &BackupRun, status: &BackupRunStatus) -> bool {
    status.backup_id.is_some()
        && run.spec.deletion_policy == DeletionPolicy::Delete
        && !has_finalizer(run)
}

/// The name of the run's backup Job: from the status once recorded, else
/// the name the builder gives it (none without a policy to build it from).
/// Only the name: building the whole Job on every reconcile to read it cost
/// the controller ~5 % of its CPU.
pub fn job_name(run: &BackupRun, policy: Option<&BackupPolicy>) -> Option<String> {
    if let Some(name) = run.status.as_ref().and_then(|s| s.job.clone()) {
        return Some(name);
    }
    policy?;
    Some(jobs::backup_job_name(run.metadata.name.as_deref()?))
}

/// Decides what to do for a run that is not being deleted. Pure.
pub fn decide(obs: Observed<'_>, cfg: &JobConfig, resync: Duration) -> RunPlan {
    let run = obs.run;
    let now = obs.now;
    let old = run.status.clone().unwrap_or_default();
    let generation = run.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    let mut plan = RunPlan {
        create_job: None,
        add_finalizer: false,
        status: None,
        events: Vec::new(),
        outcome: None,
        requeue_after: Some(resync),
    };

    if old.phase.is_finished() {
        // Finished runs never get a new Job; only the finalizer may be due.
        plan.add_finalizer = needs_finalizer(run, &old);
        plan.requeue_after = None;
        return plan;
    }

    // The Complete condition while the run is not (or not successfully) complete.
    let incomplete = |status: &mut BackupRunStatus, reason: &str, message: String| {
        set_complete(
            &mut status.conditions,
            false,
            reason,
            message,
            generation,
            now,
        );
    };
    let fail = |status: &mut BackupRunStatus, reason: &str, message: String| {
        status.phase = RunPhase::Failed;
        status.completed_at = Some(now);
        status.message = Some(message.clone());
        incomplete(status, reason, message);
    };

    if let Err(errors) = run.spec.validate() {
        // The spec is immutable: this run can never start.
        fail(&mut status, reasons::INVALID_SPEC, join_errors(&errors));
    } else if let Some(job) = obs.job.object.as_ref() {
        status.job = job.metadata.name.clone();
        if status.started_at.is_none() {
            status.started_at = job
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(from_time);
        }
        match job_state(job) {
            JobState::Succeeded => {
                let finished = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(from_time)
                    .unwrap_or(now);
                let result = success_message(&obs.job.pods)
                    .ok_or_else(|| {
                        "the Job succeeded but left no result in its termination message"
                            .to_string()
                    })
                    .and_then(|m| {
                        BackupSummary::parse(&m)
                            .map_err(|e| format!("the Job's result is unreadable: {e}"))
                    });
                match result {
                    Ok(result) => {
                        status.phase = RunPhase::Succeeded;
                        status.completed_at = Some(finished);
                        status.backup_id = Some(result.backup_id.clone());
                        status.bytes = Some(i64::try_from(result.bytes_out).unwrap_or(i64::MAX));
                        status.size = Some(format_bytes(result.bytes_out));
                        status.artifacts = obs
                            .policy
                            .map(|p| jobs::artifacts(&result, p))
                            .unwrap_or_default();
                        status.source = Some(Box::new(jobs::source_info(&result)));
                        status.message = None;
                        set_complete(
                            &mut status.conditions,
                            true,
                            reasons::JOB_SUCCEEDED,
                            format!("backup {} committed", result.backup_id),
                            generation,
                            now,
                        );
                        if !status.artifacts.is_empty() {
                            let all = status.artifacts.iter().all(|a| a.verified);
                            set_condition(
                                &mut status.conditions,
                                ConditionUpdate {
                                    type_: types::VERIFIED,
                                    status: all,
                                    reason: if all {
                                        reasons::CHECKSUM_MATCHED
                                    } else {
                                        reasons::CHECKSUM_MISMATCH
                                    },
                                    message: if all {
                                        "every artifact was read back and matched its SHA-256"
                                            .into()
                                    } else {
                                        "some artifacts were not verified".into()
                                    },
                                    observed_generation: generation,
                                },
                                now,
                            );
                        }
                    }
                    Err(message) => fail(&mut status, reasons::JOB_FAILED, message),
                }
            }
            JobState::Failed => {
                // A backup that committed but failed its read-back says so
                // in its summary: name the destinations and mark it unverified.
                let unverified = termination_message(&obs.job.pods)
                    .and_then(|m| BackupSummary::parse(&m).ok())
                    .filter(|r| r.verified.is_some() && !r.fully_verified());
                match unverified {
                    Some(r) => {
                        let verified = r.verified.clone().unwrap_or_default();
                        let bad: Vec<&str> = r
                            .committed
                            .iter()
                            .filter(|c| !verified.contains(c))
                            .map(String::as_str)
                            .collect();
                        let message = format!(
                            "backup {} failed read-back verification in {}",
                            r.backup_id,
                            bad.join(", ")
                        );
                        set_condition(
                            &mut status.conditions,
                            ConditionUpdate {
                                type_: types::VERIFIED,
                                status: false,
                                reason: reasons::CHECKSUM_MISMATCH,
                                message: message.clone(),
                                observed_generation: generation,
                            },
                            now,
                        );
                        fail(&mut status, reasons::VERIFICATION_FAILED, message);
                    }
                    None => {
                        let message = failure_message(job, &obs.job.pods);
                        fail(&mut status, reasons::JOB_FAILED, message);
                    }
                }
            }
            state => {
                if state == JobState::Running {
                    status.phase = RunPhase::Running;
                }
                // A pod that cannot start (a missing Secret) says why here.
                status.message = pod_problem(&obs.job.pods);
                let message = status.message.clone().unwrap_or_else(|| {
                    format!(
                        "job {} is {}",
                        status.job.clone().unwrap_or_default(),
                        if state == JobState::Running {
                            "running"
                        } else {
                            "waiting to start"
                        }
                    )
                });
                // Waiting keeps the JobCreated reason: no event until it runs.
                let reason = if state == JobState::Running {
                    reasons::JOB_RUNNING
                } else {
                    reasons::JOB_CREATED
                };
                // A Job still waiting as it was created: "created job …"
                // says it already, and rewording it costs a status write
                // per run.
                let as_created = state == JobState::Waiting
                    && status.message.is_none()
                    && old.message.is_none()
                    && crate::api::conditions::find(&old.conditions, types::COMPLETE)
                        .is_some_and(|c| c.reason == reasons::JOB_CREATED);
                if !as_created {
                    incomplete(&mut status, reason, message);
                }
            }
        }
    } else {
        match obs.policy {
            None => {
                let message = format!("policy {} not found", run.spec.policy_ref.name);
                incomplete(&mut status, reasons::POLICY_NOT_FOUND, message);
            }
            Some(policy) => match policy.spec.validate() {
                Err(errors) => {
                    let message = format!(
                        "policy {} is invalid: {}",
                        policy.name_any(),
                        join_errors(&errors)
                    );
                    incomplete(&mut status, reasons::INVALID_SPEC, message);
                }
                Ok(()) => match jobs::backup_job(policy, run, cfg) {
                    Ok(job) => {
                        let job_name = job.metadata.name.clone().unwrap_or_default();
                        status.job = Some(job_name.clone());
                        incomplete(
                            &mut status,
                            reasons::JOB_CREATED,
                            format!("created job {job_name}"),
                        );
                        plan.create_job = Some(job);
                    }
                    // The policy is what it is: this run cannot be built.
                    Err(e) => fail(
                        &mut status,
                        reasons::JOB_FAILED,
                        format!("cannot build the Job: {e}"),
                    ),
                },
            },
        }
    }

    if status.phase.is_finished() {
        let seconds = match (status.started_at, status.completed_at) {
            (Some(a), Some(b)) => {
                status.duration = Some(format_duration(b - a));
                Some((b - a).num_milliseconds() as f64 / 1000.0)
            }
            _ => None,
        };
        plan.outcome = Some(Outcome {
            succeeded: status.phase == RunPhase::Succeeded,
            seconds,
            bytes: status.bytes,
            completed_at: status.completed_at.unwrap_or(now),
            files: status.source.as_ref().and_then(|s| s.files.clone()),
        });
        plan.add_finalizer = needs_finalizer(run, &status);
        plan.requeue_after = None;
    }

    plan.events = transition_events(run, &old, &status);
    plan.status = (status != old).then_some(status);
    plan
}

/// Events for a change of phase or of the reason a pod gives. A scheduled
/// run's first state (its Job created) is no news: its policy's `Scheduled`
/// event named it, and its status says so (as a new policy's first good
/// conditions make no event); a hand-made run gets the event.
fn transition_events(run: &BackupRun, old: &BackupRunStatus, new: &BackupRunStatus) -> Vec<Note> {
    let name = run.name_any();
    let mut events = Vec::new();
    let reason_of = |s: &BackupRunStatus| {
        crate::api::conditions::find(&s.conditions, types::COMPLETE)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (old_reason, new_reason) = (reason_of(old), reason_of(new));
    let announced = run.spec.scheduled_at.is_some()
        && old_reason.is_none()
        && new.message.is_none()
        && new_reason
            .as_ref()
            .is_some_and(|r| r.0 == reasons::JOB_CREATED);
    if announced {
        return events;
    }
    if new.phase != old.phase
        || new_reason.as_ref().map(|r| &r.0) != old_reason.as_ref().map(|r| &r.0)
    {
        let (reason, message) = new_reason.clone().unwrap_or_default();
        let text = match new.phase {
            RunPhase::Succeeded => format!("run {name} succeeded: {message}"),
            RunPhase::Failed => format!("run {name} failed: {message}"),
            _ => message,
        };
        // A failure, a spec problem, or a pod that cannot start.
        let warn = new.phase == RunPhase::Failed
            || [reasons::POLICY_NOT_FOUND, reasons::INVALID_SPEC].contains(&reason.as_str())
            || (!new.phase.is_finished() && new.message.is_some());
        let note = if warn { Note::warning } else { Note::normal };
        events.push(note(&reason, "Reconcile", text));
    } else if !new.phase.is_finished() && new.message.is_some() && new.message != old.message {
        events.push(Note::warning(
            "PodProblem",
            "Reconcile",
            new.message.clone().unwrap_or_default(),
        ));
    }
    events
}

/// The prune Job for a run's backup, owned by the run so it goes with it.
pub fn prune_job_for(
    run: &BackupRun,
    policy: &BackupPolicy,
    cfg: &JobConfig,
) -> Option<Result<Job, jobs::JobError>> {
    let backup_id = run.status.as_ref()?.backup_id.as_deref()?;
    let owner = run.controller_owner_ref(&())?;
    Some(jobs::prune_job(
        policy,
        &run.name_any(),
        backup_id,
        owner,
        cfg,
    ))
}

/// Longest wait before looking again at a run held by Object Lock.
const LOCK_RECHECK: Duration = Duration::from_secs(6 * 3600);

/// Decides what to do for a run being deleted. Pure. `prune` is the Job
/// named by [`prune_job_for`] and its pods.
pub fn decide_cleanup(
    run: &BackupRun,
    policy: Option<&BackupPolicy>,
    prune: &ObservedJob,
    now: DateTime<Utc>,
    cfg: &JobConfig,
) -> Result<Cleanup, jobs::JobError> {
    if !has_finalizer(run) {
        return Ok(Cleanup::Nothing);
    }
    let name = run.name_any();
    let Some(backup_id) = run.status.as_ref().and_then(|s| s.backup_id.clone()) else {
        return Ok(Cleanup::RemoveFinalizer(Note::normal(
            "Released",
            "Prune",
            format!("run {name} holds no backup"),
        )));
    };
    if run.spec.deletion_policy == DeletionPolicy::Retain {
        // A finalizer from when the run said Delete, or from an older controller.
        return Ok(Cleanup::RemoveFinalizer(Note::normal(
            "Retained",
            "Prune",
            format!("deletionPolicy is Retain: backup {backup_id} stays in every destination"),
        )));
    }
    let Some(policy) = policy else {
        // Without the policy there are no destinations to prune; keeping
        // the backup is safer than holding the run forever.
        return Ok(Cleanup::RemoveFinalizer(Note::warning(
            "PruneSkipped",
            "Prune",
            format!(
                "policy {} is gone: backup {backup_id} stays in its destinations",
                run.spec.policy_ref.name
            ),
        )));
    };
    let locked_until = || {
        success_message(&prune.pods)
            .and_then(|m| crate::wire::parse::<PruneSummary>(&m))
            .and_then(|s| s.locked_until)
    };
    match &prune.object {
        None => match prune_job_for(run, policy, cfg) {
            Some(job) => Ok(Cleanup::CreatePruneJob(Box::new(job?))),
            None => Ok(Cleanup::Wait),
        },
        Some(job) => Ok(match job_state(job) {
            JobState::Succeeded if locked_until().is_some() => {
                let until = locked_until().unwrap_or(now);
                Cleanup::Locked {
                    job: job.name_any(),
                    until,
                    wait: (until - now)
                        .to_std()
                        .ok()
                        .filter(|w| !w.is_zero())
                        .map(|w| w.min(LOCK_RECHECK)),
                }
            }
            JobState::Succeeded => Cleanup::RemoveFinalizer(Note::normal(
                "Pruned",
                "Prune",
                format!("backup {backup_id} deleted from every destination"),
            )),
            JobState::Failed => Cleanup::RetryPrune {
                job: job.name_any(),
                message: job_problem(job).unwrap_or_else(|| "the prune Job failed".into()),
            },
            _ => Cleanup::Wait,
        }),
    }
}

mod reconcile;
pub use reconcile::reconcile;

#[cfg(test)]
mod tests;
