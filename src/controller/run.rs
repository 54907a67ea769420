//! BackupRun reconcile. [`decide`] maps a run, its policy, its Job and the
//! Job's pods to a [`RunPlan`]: create the Job, or record what the Job shows
//! (Pending → Running → Succeeded | Failed, with the backup id and artifacts
//! from the container's termination message, or the pod's reason for a
//! failure). A run with a backup id carries the `lifeboat.dev/prune`
//! finalizer; [`decide_cleanup`] handles its deletion: a prune Job first,
//! the finalizer released only when that Job succeeded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::jobs::{self, JobConfig};
use super::{is_conflict, is_not_found, merge_patch, Context, Error, Note};
use crate::api::conditions::{
    from_time, reasons, set_complete, set_condition, types, ConditionUpdate,
};
use crate::api::run::{format_bytes, format_duration};
use crate::api::{
    join_errors, BackupPolicy, BackupRun, BackupRunStatus, RunPhase, PRUNE_FINALIZER,
};
use crate::wire::BackupSummary;

/// Longest failure message kept in a status (the termination message of a
/// failed pod may be a log tail).
const MAX_MESSAGE: usize = 1024;
/// Wait before retrying a prune whose Job failed.
const PRUNE_RETRY: Duration = Duration::from_secs(60);

/// What the controller saw of one run.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub run: &'a BackupRun,
    pub policy: Option<&'a BackupPolicy>,
    pub job: Option<&'a Job>,
    /// The pods of the run's Job.
    pub pods: &'a [Pod],
    pub now: DateTime<Utc>,
}

/// A run that just finished, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub succeeded: bool,
    pub seconds: Option<f64>,
    pub bytes: Option<i64>,
    pub completed_at: DateTime<Utc>,
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
    /// Release the run: its backup is gone (or there is nothing to prune).
    RemoveFinalizer(Note),
}

fn has_finalizer(run: &BackupRun) -> bool {
    run.finalizers().iter().any(|f| f == PRUNE_FINALIZER)
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The Job state that matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Waiting,
    Running,
    Succeeded,
    Failed,
}

pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let count = |f: fn(&k8s_openapi::api::batch::v1::JobStatus) -> Option<i32>| {
        status.and_then(f).unwrap_or(0)
    };
    if job_condition(job, "Complete") || count(|s| s.succeeded) > 0 {
        JobState::Succeeded
    } else if job_condition(job, "Failed") {
        JobState::Failed
    } else if count(|s| s.active) > 0 || status.and_then(|s| s.start_time.as_ref()).is_some() {
        JobState::Running
    } else {
        JobState::Waiting
    }
}

/// Newest pods first, so the last attempt speaks.
pub(crate) fn newest_first(pods: &[Pod]) -> Vec<&Pod> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(from_time)));
    pods
}

/// The termination message of the newest pod's ended container, whatever its
/// exit code: a restore Job writes its summary on failure too, and a
/// backup Job whose read-back failed leaves its summary.
pub(crate) fn termination_message(pods: &[Pod]) -> Option<String> {
    newest_first(pods).into_iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.message.clone())
    })
}

/// The termination message of a container that exited 0.
fn success_message(pods: &[Pod]) -> Option<String> {
    newest_first(pods).into_iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|cs| {
                let t = cs.state.as_ref()?.terminated.as_ref()?;
                (t.exit_code == 0).then(|| t.message.clone()).flatten()
            })
    })
}

fn join(reason: Option<&str>, message: Option<&str>) -> Option<String> {
    let text = match (reason, message.map(str::trim).filter(|m| !m.is_empty())) {
        (None, None) => return None,
        (Some(r), None) => r.to_string(),
        (None, Some(m)) => m.to_string(),
        (Some(r), Some(m)) => format!("{r}: {m}"),
    };
    Some(truncate(text))
}

pub(crate) fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Why a pod failed or cannot start: a terminated container's reason and
/// message (Error, OOMKilled), a waiting container's (CreateContainerConfigError
/// naming a missing Secret, ImagePullBackOff), or the pod's own (Evicted).
pub fn pod_problem(pods: &[Pod]) -> Option<String> {
    newest_first(pods).into_iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        let containers = status.container_statuses.iter().flatten();
        let from_containers = containers.clone().find_map(|cs| {
            let t = cs.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                join(t.reason.as_deref(), t.message.as_deref())
                    .unwrap_or_else(|| format!("exit code {}", t.exit_code))
            })
        });
        let waiting = || {
            containers.clone().find_map(|cs| {
                let w = cs.state.as_ref()?.waiting.as_ref()?;
                // ContainerCreating and PodInitializing are normal waits.
                let reason = w.reason.as_deref()?;
                if matches!(reason, "ContainerCreating" | "PodInitializing") {
                    return None;
                }
                join(Some(reason), w.message.as_deref())
            })
        };
        from_containers
            .or_else(waiting)
            .or_else(|| join(status.reason.as_deref(), status.message.as_deref()))
    })
}

/// The Job's own failure reason (BackoffLimitExceeded, DeadlineExceeded).
pub(crate) fn job_problem(job: &Job) -> Option<String> {
    let c = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    join(c.reason.as_deref(), c.message.as_deref())
}

fn complete(
    status: &mut BackupRunStatus,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    set_complete(&mut status.conditions, ok, reason, message, generation, now);
}

/// The name of the run's backup Job (from the status, else from the builder).
pub fn job_name(run: &BackupRun, policy: Option<&BackupPolicy>, cfg: &JobConfig) -> Option<String> {
    if let Some(name) = run.status.as_ref().and_then(|s| s.job.clone()) {
        return Some(name);
    }
    jobs::backup_job(policy?, run, cfg).ok()?.metadata.name
}

/// Decides what to do for a run that is not being deleted. Pure.
pub fn decide(obs: Observed<'_>, cfg: &JobConfig, resync: Duration) -> RunPlan {
    let run = obs.run;
    let now = obs.now;
    let name = run.name_any();
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
        plan.add_finalizer = old.backup_id.is_some() && !has_finalizer(run);
        plan.requeue_after = None;
        return plan;
    }

    let fail = |status: &mut BackupRunStatus, reason: &str, message: String| {
        status.phase = RunPhase::Failed;
        status.completed_at = Some(now);
        status.message = Some(message.clone());
        complete(status, false, reason, message, generation, now);
    };

    if let Err(errors) = run.spec.validate() {
        // The spec is immutable: this run can never start.
        fail(&mut status, reasons::INVALID_SPEC, join_errors(&errors));
    } else if let Some(job) = obs.job {
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
                let result = success_message(obs.pods)
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
                        status.source = Some(jobs::source_info(&result));
                        status.message = None;
                        complete(
                            &mut status,
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
                let unverified = termination_message(obs.pods)
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
                        let message = pod_problem(obs.pods)
                            .or_else(|| job_problem(job))
                            .unwrap_or_else(|| "the Job failed".to_string());
                        fail(&mut status, reasons::JOB_FAILED, message);
                    }
                }
            }
            state => {
                if state == JobState::Running {
                    status.phase = RunPhase::Running;
                }
                // A pod that cannot start (a missing Secret) says why here.
                status.message = pod_problem(obs.pods);
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
                complete(&mut status, false, reason, message, generation, now);
            }
        }
    } else {
        match obs.policy {
            None => {
                let message = format!("policy {} not found", run.spec.policy_ref.name);
                complete(
                    &mut status,
                    false,
                    reasons::POLICY_NOT_FOUND,
                    message,
                    generation,
                    now,
                );
            }
            Some(policy) => match policy.spec.validate() {
                Err(errors) => {
                    let message = format!(
                        "policy {} is invalid: {}",
                        policy.name_any(),
                        join_errors(&errors)
                    );
                    complete(
                        &mut status,
                        false,
                        reasons::INVALID_SPEC,
                        message,
                        generation,
                        now,
                    );
                }
                Ok(()) => match jobs::backup_job(policy, run, cfg) {
                    Ok(job) => {
                        let job_name = job.metadata.name.clone().unwrap_or_default();
                        status.job = Some(job_name.clone());
                        complete(
                            &mut status,
                            false,
                            reasons::JOB_CREATED,
                            format!("created job {job_name}"),
                            generation,
                            now,
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
        });
        plan.add_finalizer = status.backup_id.is_some() && !has_finalizer(run);
        plan.requeue_after = None;
    }

    plan.events = transition_events(&name, &old, &status);
    plan.status = (status != old).then_some(status);
    plan
}

/// Events for a change of phase or of the reason a pod gives.
fn transition_events(name: &str, old: &BackupRunStatus, new: &BackupRunStatus) -> Vec<Note> {
    let mut events = Vec::new();
    let reason_of = |s: &BackupRunStatus| {
        crate::api::conditions::find(&s.conditions, types::COMPLETE)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (old_reason, new_reason) = (reason_of(old), reason_of(new));
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

/// Decides what to do for a run being deleted. Pure. `prune_job` is the Job
/// named by [`prune_job_for`], if it exists.
pub fn decide_cleanup(
    run: &BackupRun,
    policy: Option<&BackupPolicy>,
    prune_job: Option<&Job>,
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
    match prune_job {
        None => match prune_job_for(run, policy, cfg) {
            Some(job) => Ok(Cleanup::CreatePruneJob(Box::new(job?))),
            None => Ok(Cleanup::Wait),
        },
        Some(job) => Ok(match job_state(job) {
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

/// Observe → decide → apply for one run.
pub async fn reconcile(run: Arc<BackupRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer("backuprun");
    let result = apply(&run, &ctx).await;
    if let Err(e) = &result {
        ctx.metrics.reconcile_error("backuprun", e);
    }
    result
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(obj) => Ok(Some(obj)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn apply(run: &BackupRun, ctx: &Context) -> Result<Action, Error> {
    let name = run.name_any();
    let ns = run
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let policy_name = &run.spec.policy_ref.name;
    let policies: Api<BackupPolicy> = ctx.api(&ns);
    let policy = get_opt(&policies, policy_name)
        .await
        .map_err(|e| Error::GetPolicy(policy_name.clone(), e))?;
    let job_api: Api<Job> = ctx.api(&ns);
    let cfg = &ctx.settings.jobs;

    if run.metadata.deletion_timestamp.is_some() {
        return cleanup(run, policy.as_ref(), ctx, &job_api).await;
    }

    let (job, pods) = match job_name(run, policy.as_ref(), cfg) {
        None => (None, Vec::new()),
        Some(job_name) => {
            let job = get_opt(&job_api, &job_name)
                .await
                .map_err(|e| Error::GetJob(job_name.clone(), e))?;
            let pods = match &job {
                None => Vec::new(),
                Some(_) => {
                    let pod_api: Api<Pod> = ctx.api(&ns);
                    pod_api
                        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                        .await
                        .map_err(|e| Error::ListPods(job_name.clone(), e))?
                        .items
                }
            };
            (job, pods)
        }
    };
    let obs = Observed {
        run,
        policy: policy.as_ref(),
        job: job.as_ref(),
        pods: &pods,
        now: ctx.settings.clock.now(),
    };
    let plan = decide(obs, cfg, ctx.settings.resync);

    if let Some(job) = &plan.create_job {
        let job_name = job.name_any();
        match job_api.create(&PostParams::default(), job).await {
            Ok(_) => tracing::info!(run = %name, job = %job_name, "created job"),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(Error::CreateJob(job_name, e)),
        }
    }
    let run_api: Api<BackupRun> = ctx.api(&ns);
    if plan.add_finalizer {
        let mut finalizers = run.finalizers().to_vec();
        finalizers.push(PRUNE_FINALIZER.to_string());
        // The resourceVersion makes this fail rather than drop a finalizer
        // someone else added meanwhile.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
        run_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| Error::PatchFinalizer(name.clone(), e))?;
    }
    if let Some(status) = &plan.status {
        let old = serde_json::to_value(run.status.clone().unwrap_or_default()).unwrap_or_default();
        let new = serde_json::to_value(status).unwrap_or_default();
        run_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": merge_patch(&old, &new) })),
            )
            .await
            .map_err(|e| Error::PatchRunStatus(name.clone(), e))?;
    }
    if let Some(outcome) = &plan.outcome {
        ctx.metrics
            .record_outcome(&ns, policy_name, run.spec.tier, outcome);
    }
    ctx.publish(run, &plan.events).await;
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

async fn cleanup(
    run: &BackupRun,
    policy: Option<&BackupPolicy>,
    ctx: &Context,
    job_api: &Api<Job>,
) -> Result<Action, Error> {
    let name = run.name_any();
    let cfg = &ctx.settings.jobs;
    let prune_name = match policy.and_then(|p| prune_job_for(run, p, cfg)) {
        Some(Ok(job)) => Some(job.name_any()),
        Some(Err(e)) => return Err(Error::BuildJob(name, e)),
        None => None,
    };
    let prune_job = match &prune_name {
        Some(job_name) => get_opt(job_api, job_name)
            .await
            .map_err(|e| Error::GetJob(job_name.clone(), e))?,
        None => None,
    };
    let decision = decide_cleanup(run, policy, prune_job.as_ref(), cfg)
        .map_err(|e| Error::BuildJob(name.clone(), e))?;
    match decision {
        Cleanup::Nothing | Cleanup::Wait => Ok(Action::await_change()),
        Cleanup::CreatePruneJob(job) => {
            let job_name = job.name_any();
            match job_api.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    tracing::info!(run = %name, job = %job_name, "created prune job");
                    ctx.publish(
                        run,
                        &[Note::normal(
                            "Pruning",
                            "Prune",
                            format!("created prune job {job_name}"),
                        )],
                    )
                    .await;
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(Error::CreateJob(job_name, e)),
            }
            Ok(Action::await_change())
        }
        Cleanup::RetryPrune { job, message } => {
            ctx.publish(
                run,
                &[Note::warning(
                    "PruneFailed",
                    "Prune",
                    format!("prune job {job} failed: {message}; retrying"),
                )],
            )
            .await;
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match job_api.delete(&job, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::DeleteJob(job, e)),
            }
            Ok(Action::requeue(PRUNE_RETRY))
        }
        Cleanup::RemoveFinalizer(note) => {
            let finalizers: Vec<&String> = run
                .finalizers()
                .iter()
                .filter(|f| *f != PRUNE_FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
            let run_api: Api<BackupRun> = ctx.api(run.namespace().as_deref().unwrap_or_default());
            match run_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::PatchFinalizer(name, e)),
            }
            ctx.publish(run, &[note]).await;
            Ok(Action::await_change())
        }
    }
}

#[cfg(test)]
mod tests;
