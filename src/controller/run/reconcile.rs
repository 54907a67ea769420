//! The IO of a BackupRun reconcile, as named steps. A live run:
//! dereference its policy and Job (from the controller's caches, see
//! [`crate::controller::cache`]) → [`decide`] → apply the Job and the
//! finalizer → update its status. A run being deleted: dereference the prune
//! Job → [`decide_cleanup`] → apply the cleanup.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{decide, decide_cleanup, job_name, prune_job_for, Cleanup, Observed, RunPlan};
use crate::api::{BackupPolicy, BackupRun, PRUNE_FINALIZER};
use crate::controller::apply::{
    create_if_absent, create_job, delete_if_present, measured, namespace, next_action,
    patch_status, send_notifications,
};
use crate::controller::cache;
use crate::controller::job_status::ObservedJob;
use crate::controller::notify;
use crate::controller::{is_not_found, Context, Error, Note};

/// Wait before retrying a prune whose Job failed.
const PRUNE_RETRY: Duration = Duration::from_secs(60);

/// Observe → decide → apply for one run.
pub async fn reconcile(run: Arc<BackupRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The cache may not show this controller's last status write yet.
    let run = ctx.written_runs.latest(&ctx.runs, run);
    measured(&ctx, "backuprun", reconcile_run(&run, &ctx)).await
}

async fn reconcile_run(run: &BackupRun, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(run)?;
    let policy_name = &run.spec.policy_ref.name;
    let policy = cache::policy(ctx, &ns, policy_name).await?;
    let policy = policy.as_deref();
    if run.metadata.deletion_timestamp.is_some() {
        return cleanup(run, &ns, policy, ctx).await;
    }
    let job = get_run_job(run, &ns, policy, ctx).await?;
    let obs = Observed {
        run,
        policy,
        job: &job,
        now: ctx.settings.clock.now(),
    };
    let plan = decide(obs, &ctx.settings.jobs, ctx.settings.resync);
    apply_job(run, &ns, &plan, ctx).await?;
    notify(run, &ns, policy, &plan, ctx).await?;
    apply_finalizer(run, &ns, &plan, ctx).await?;
    let runs: Api<BackupRun> = ctx.api(&ns);
    let (old, new) = (run.status.as_ref(), plan.status.as_ref());
    if let Some(written) = patch_status(&runs, &run.name_any(), old, new).await? {
        ctx.written_runs.wrote(&ctx.runs, run, written);
    }
    // No series for a policy that is gone: nothing would remove them.
    if let (Some(outcome), Some(_)) = (&plan.outcome, policy) {
        ctx.metrics
            .record_outcome(&ns, policy_name, run.spec.tier, outcome);
    }
    ctx.publish(run, &plan.events).await;
    Ok(next_action(plan.requeue_after))
}

/// The run's backup Job and its pods; none while the Job has no name (no
/// policy to build it from).
async fn get_run_job(
    run: &BackupRun,
    ns: &str,
    policy: Option<&BackupPolicy>,
    ctx: &Context,
) -> Result<ObservedJob, Error> {
    match job_name(run, policy) {
        Some(name) => cache::job(ctx, ns, &name).await,
        None => Ok(ObservedJob::default()),
    }
}

/// The notification of a run that just finished, sent before its status
/// records it (see [`crate::controller::notify`]).
async fn notify(
    run: &BackupRun,
    ns: &str,
    policy: Option<&BackupPolicy>,
    plan: &RunPlan,
    ctx: &Context,
) -> Result<(), Error> {
    let (Some(policy), Some(new)) = (policy, plan.status.as_ref()) else {
        return Ok(());
    };
    if policy.spec.notifications.is_none() || !new.phase.is_finished() {
        return Ok(());
    }
    let mine = ctx.runs_by_policy.runs_of(policy, &ctx.runs);
    let others: Vec<&BackupRun> = mine
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.name_any() != run.name_any())
        .collect();
    let sends: Vec<_> = notify::for_run(policy, run, new, &others)
        .into_iter()
        .collect();
    send_notifications(policy, ns, &sends, ctx).await
}

async fn apply_job(run: &BackupRun, ns: &str, plan: &RunPlan, ctx: &Context) -> Result<(), Error> {
    if let Some(job) = &plan.create_job {
        let job = &crate::controller::pin::pinned(ctx, ns, job).await?;
        if let Some(created) = create_job(ctx, ns, job).await? {
            tracing::info!(run = %run.name_any(), job = %job.name_any(), "created job");
            // The next reconcile may come before the Job cache has it.
            ctx.created_jobs.insert(&ctx.jobs, created);
        }
    }
    Ok(())
}

async fn apply_finalizer(
    run: &BackupRun,
    ns: &str,
    plan: &RunPlan,
    ctx: &Context,
) -> Result<(), Error> {
    if !plan.add_finalizer {
        return Ok(());
    }
    let mut finalizers = run.finalizers().to_vec();
    finalizers.push(PRUNE_FINALIZER.to_string());
    set_finalizers(run, ns, finalizers, ctx)
        .await
        .map_err(Error::apply(format!(
            "adding the finalizer of run {}",
            run.name_any()
        )))
}

/// Writes the run's finalizers. The resourceVersion makes this fail rather
/// than drop a finalizer someone else changed meanwhile.
async fn set_finalizers(
    run: &BackupRun,
    ns: &str,
    finalizers: Vec<String>,
    ctx: &Context,
) -> Result<(), kube::Error> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
    let runs: Api<BackupRun> = ctx.api(ns);
    runs.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}

/// A run being deleted: dereference its prune Job → decide → apply.
async fn cleanup(
    run: &BackupRun,
    ns: &str,
    policy: Option<&BackupPolicy>,
    ctx: &Context,
) -> Result<Action, Error> {
    let prune_job = get_prune_job(run, ns, policy, ctx).await?;
    let now = ctx.settings.clock.now();
    let decision = decide_cleanup(run, policy, &prune_job, now, &ctx.settings.jobs).map_err(
        Error::build(format!("the prune job of run {}", run.name_any())),
    )?;
    apply_cleanup(run, ns, decision, ctx).await
}

/// The prune Job of the run's backup and its pods, if the run has one and
/// it exists.
async fn get_prune_job(
    run: &BackupRun,
    ns: &str,
    policy: Option<&BackupPolicy>,
    ctx: &Context,
) -> Result<ObservedJob, Error> {
    let Some(job) = policy.and_then(|p| prune_job_for(run, p, &ctx.settings.jobs)) else {
        return Ok(ObservedJob::default());
    };
    let name = job
        .map_err(Error::build(format!(
            "the prune job of run {}",
            run.name_any()
        )))?
        .name_any();
    cache::job(ctx, ns, &name).await
}

async fn apply_cleanup(
    run: &BackupRun,
    ns: &str,
    decision: Cleanup,
    ctx: &Context,
) -> Result<Action, Error> {
    match decision {
        Cleanup::Nothing | Cleanup::Wait => Ok(Action::await_change()),
        Cleanup::CreatePruneJob(job) => {
            if create_if_absent(&ctx.api::<Job>(ns), &job).await? {
                let job_name = job.name_any();
                tracing::info!(run = %run.name_any(), job = %job_name, "created prune job");
                let message = format!("created prune job {job_name}");
                ctx.publish(run, &[Note::normal("Pruning", "Prune", message)])
                    .await;
            }
            Ok(Action::await_change())
        }
        Cleanup::RetryPrune { job, message } => {
            let message = format!("prune job {job} failed: {message}; retrying");
            ctx.publish(run, &[Note::warning("PruneFailed", "Prune", message)])
                .await;
            delete_if_present(&ctx.api::<Job>(ns), &job, &DeleteParams::background()).await?;
            Ok(Action::requeue(PRUNE_RETRY))
        }
        Cleanup::Locked { job, until, wait } => {
            let backup = run.status.as_ref().and_then(|s| s.backup_id.clone());
            let backup = backup.unwrap_or_default();
            let Some(wait) = wait else {
                let message = format!(
                    "S3 Object Lock retention of backup {backup} ended ({until}); pruning again"
                );
                ctx.publish(run, &[Note::normal("PruningAgain", "Prune", message)])
                    .await;
                delete_if_present(&ctx.api::<Job>(ns), &job, &DeleteParams::background()).await?;
                return Ok(Action::requeue(PRUNE_RETRY));
            };
            let message = format!("backup {backup} is under S3 Object Lock retention until {until}; the run is kept and pruned again then");
            ctx.publish(run, &[Note::normal("KeptByObjectLock", "Prune", message)])
                .await;
            Ok(Action::requeue(wait))
        }
        Cleanup::RemoveFinalizer(note) => {
            let finalizers = run
                .finalizers()
                .iter()
                .filter(|f| *f != PRUNE_FINALIZER)
                .cloned()
                .collect();
            match set_finalizers(run, ns, finalizers, ctx).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let what = format!("removing the finalizer of run {}", run.name_any());
                    return Err(Error::apply(what)(e));
                }
            }
            ctx.publish(run, &[note]).await;
            Ok(Action::await_change())
        }
    }
}
