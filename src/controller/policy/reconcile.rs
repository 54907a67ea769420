//! The IO of a BackupPolicy reconcile, as named steps: [`decide`] on the
//! policy and its runs (read from the run controller's cache) → keep the WAL
//! archiver and fold its report into the status → decide and apply the
//! drills → create the due run and delete the expired ones → update the
//! status → record the policy's metrics.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{condition_events, decide, PolicyPlan};
use crate::api::conditions::{is_true, set_condition, types};
use crate::api::policy::RecoveryWindow;
use crate::api::{BackupPolicy, BackupRun, DeletionPolicy, RestoreRequest, Tier, PRUNE_FINALIZER};
use crate::controller::apply::{
    create_if_absent, delete_if_present, measured, namespace, next_action, patch_status,
    send_notifications,
};
use crate::controller::drill::{self, DrillPlan};
use crate::controller::metrics::Exported;
use crate::controller::notify;
use crate::controller::restore::is_drill;
use crate::controller::{access, archiver, archiver_sync, is_not_found, Context, Error};

/// Observe → decide → apply for one policy.
pub async fn reconcile(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The cache may not show this controller's last status write yet.
    let policy = ctx.written_policies.latest(&ctx.policies, policy);
    measured(&ctx, "backuppolicy", reconcile_policy(&policy, &ctx)).await
}

async fn reconcile_policy(policy: &BackupPolicy, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(policy)?;
    let now = ctx.settings.clock.now();
    let mine = ctx.runs_by_policy.runs_of(policy, &ctx.runs);
    let runs: Vec<&BackupRun> = mine.iter().map(|r| r.as_ref()).collect();
    let mut plan = decide(policy, &runs, now, ctx.settings.resync);
    check_access(policy, &ns, &mut plan, now, ctx).await?;
    archive(policy, &ns, &mut plan, now, ctx).await?;
    let drills = decide_drills(policy, &ns, &mut plan, now, ctx);
    apply_drills(policy, &ns, &drills, ctx).await?;
    apply_runs(policy, &ns, &plan, &runs, ctx).await?;
    notify(policy, &ns, &mut plan, now, ctx).await?;
    let policies: Api<BackupPolicy> = ctx.api(&ns);
    let (old, new) = (policy.status.as_ref(), plan.status.as_ref());
    if let Some(written) = patch_status(&policies, &policy.name_any(), old, new).await? {
        ctx.written_policies.wrote(&ctx.policies, policy, written);
    }
    record_metrics(policy, &ns, &plan, ctx);
    ctx.publish(policy, &plan.events).await;
    Ok(next_action(plan.requeue_after))
}

/// A valid config policy whose service account may not list what it names
/// schedules nothing and says what is missing.
async fn check_access(
    policy: &BackupPolicy,
    ns: &str,
    plan: &mut PolicyPlan,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(config) = &policy.spec.source.config else {
        return Ok(());
    };
    if policy.validated().is_err() {
        return Ok(()); // decide() already said why
    }
    if let Some(message) = access::missing(&ctx.client, ns, config)
        .await
        .map_err(|source| Error::Dereference {
            what: format!("the permissions of {ns}/{}", config.service_account_name),
            source,
        })?
    {
        tracing::warn!(policy = %policy.name_any(), namespace = %ns, %message, "missing permission");
        access::refuse(policy, plan, message, now);
    }
    Ok(())
}

/// Keeps the WAL archiver as the policy says and folds what it reports into
/// the plan's status: `walArchive`, the `WalArchiving` condition and the
/// recovery window's end. An archived policy is looked at again every
/// [`archiver::STATUS_REFRESH`], so lag shows in metrics without a change.
async fn archive(
    policy: &BackupPolicy,
    ns: &str,
    plan: &mut PolicyPlan,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<(), Error> {
    let old = policy.status.clone().unwrap_or_default();
    let had = old.wal_archive.is_some();
    let observed = archiver_sync::sync(policy, ns, had, ctx).await?;
    if let Some(o) = &observed {
        let up = matches!(o, archiver::Observed::Status(_));
        ctx.metrics.record_archiver_up(ns, &policy.name_any(), up);
    }
    let mut status = plan.status.clone().unwrap_or_else(|| old.clone());
    let name = policy.name_any();
    match observed.and_then(|o| archiver::archive_status(policy, &old, &o)) {
        Some((archive, condition)) => {
            ctx.metrics.record_wal_archive(ns, &name, &archive);
            if let Some(window) = status.recovery_window.as_ref() {
                let bases = [window.from, window.to];
                if let Some(w) =
                    crate::walarchive::recovery_window(&bases, archive.last_archived_at)
                {
                    status.recovery_window = Some(RecoveryWindow {
                        from: w.from,
                        to: w.to,
                    });
                }
            }
            status.wal_archive = Some(Box::new(archive));
            set_condition(&mut status.conditions, condition, now);
            let refresh = archiver::STATUS_REFRESH.to_std().expect("positive");
            plan.requeue_after = plan.requeue_after.map(|d| d.min(refresh));
        }
        None if had => {
            status.wal_archive = None;
            status
                .conditions
                .retain(|c| c.type_ != types::WAL_ARCHIVING);
        }
        None => return Ok(()),
    }
    plan.status = (Some(&status) != policy.status.as_ref()).then_some(status);
    Ok(())
}

/// The notifications of the policy's transitions, sent before its status
/// records them; while a breach lasts, the policy wakes for its next repeat.
async fn notify(
    policy: &BackupPolicy,
    ns: &str,
    plan: &mut PolicyPlan,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<(), Error> {
    let old = policy.status.clone().unwrap_or_default();
    let new = plan.status.as_ref().unwrap_or(&old);
    let sends = notify::for_policy(policy, &old, new, plan.rpo_deadline, now);
    if let (Some(repeat), Some(at), true) = (
        policy.spec.notifications.as_ref().and_then(|n| n.repeat()),
        plan.rpo_deadline,
        is_true(&new.conditions, types::OBJECTIVE_BREACHED),
    ) {
        let n = (now - at).num_seconds() / repeat.num_seconds().max(1);
        if let Ok(wait) = (at + repeat * (n as i32 + 1) - now).to_std() {
            plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
        }
    }
    send_notifications(policy, ns, &sends, ctx).await
}

/// Creates the due run and deletes the runs retention let go, each with
/// `deletionPolicy: Delete` so that its backup is pruned first.
async fn apply_runs(
    policy: &BackupPolicy,
    ns: &str,
    plan: &PolicyPlan,
    observed: &[&BackupRun],
    ctx: &Context,
) -> Result<(), Error> {
    let name = policy.name_any();
    let runs: Api<BackupRun> = ctx.api(ns);
    if let Some(run) = &plan.create {
        let run_name = run.name_any();
        if create_if_absent(&runs, run).await? {
            tracing::info!(policy = %name, run = %run_name, "created run");
        } else {
            tracing::debug!(policy = %name, run = %run_name, "run already exists");
        }
    }
    for expired in &plan.delete {
        if let Some(run) = observed.iter().find(|r| r.name_any() == expired.name) {
            mark_for_pruning(run, &runs).await?;
        }
        if delete_if_present(&runs, &expired.name, &DeleteParams::default()).await? {
            tracing::info!(policy = %name, run = %expired.name, reason = %expired.reason, "deleting expired run");
        }
    }
    Ok(())
}

/// Sets `deletionPolicy: Delete` on a run retention lets go and, when it
/// holds a backup, the finalizer that keeps the run until the backup is
/// pruned — in one patch, before the delete, so the run is never deleted
/// without it. The resourceVersion makes the patch fail rather than drop a
/// finalizer someone else changed meanwhile (the next reconcile retries).
async fn mark_for_pruning(run: &BackupRun, runs: &Api<BackupRun>) -> Result<(), Error> {
    let holds_backup = run.status.as_ref().is_some_and(|s| s.backup_id.is_some());
    let mut finalizers = run.finalizers().to_vec();
    if holds_backup && !finalizers.iter().any(|f| f == PRUNE_FINALIZER) {
        finalizers.push(PRUNE_FINALIZER.to_string());
    }
    if run.spec.deletion_policy == DeletionPolicy::Delete && finalizers == run.finalizers() {
        return Ok(());
    }
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()},
        "spec": {"deletionPolicy": DeletionPolicy::Delete},
    });
    match runs
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::apply(format!(
            "setting deletionPolicy Delete on expired run {}",
            run.name_any()
        ))(e)),
    }
}

/// Metrics from the status, so a restarted controller reports them too
/// (every scheduled tier's last success from `lastBackups`); the series of
/// tiers and objectives the spec no longer has are removed.
fn record_metrics(policy: &BackupPolicy, ns: &str, plan: &PolicyPlan, ctx: &Context) {
    let name = policy.name_any();
    let spec = &policy.spec;
    let status = plan.status.as_ref().or(policy.status.as_ref());
    let keep = Exported {
        tiers: Tier::SCHEDULED
            .into_iter()
            .filter(|t| spec.schedule.cron(*t).is_some())
            .chain([Tier::Manual])
            .collect(),
        rpo: spec.rpo().is_some(),
        rto: spec.rto().is_some(),
        // Or an application drill of it, which records its lastDrill.
        drills: spec
            .verification
            .as_ref()
            .is_some_and(|v| v.restore_drill.is_some())
            || status.is_some_and(|s| s.last_drill.is_some()),
        wal: archiver::wants_archiver(policy),
    };
    let pruned = ctx.metrics.retain(ns, &name, &keep);
    if let Some(status) = status {
        for tier in &keep.tiers {
            if let Some(at) = status.last_backups.get(*tier) {
                ctx.metrics.record_last_success(ns, &name, *tier, at);
            }
        }
        // The newest backup of any tier: manual runs have no `lastBackups`.
        if let Some(last) = status.last_backup.as_ref() {
            if keep.tiers.contains(&last.tier) {
                ctx.metrics
                    .record_last_success(ns, &name, last.tier, last.completed_at);
            }
        }
        let breached = is_true(&status.conditions, types::OBJECTIVE_BREACHED);
        ctx.metrics.record_objective(ns, &name, breached);
    }
    if keep.drills {
        ctx.metrics.touch_drill_failures(ns, &name);
        if let Some(last) = status.and_then(|s| s.last_drill.as_ref()) {
            if last.succeeded {
                ctx.metrics
                    .record_last_drill_success(ns, &name, last.completed_at);
            }
        }
    }
    if let Some(rpo) = spec.rpo() {
        ctx.metrics
            .record_rpo_objective(ns, &name, rpo.num_milliseconds() as f64 / 1000.0);
    }
    if let Some(rto) = spec.rto() {
        ctx.metrics
            .record_rto_objective(ns, &name, rto.num_milliseconds() as f64 / 1000.0);
    }
    // Failure counters exist at 0 for every tier the policy can run (only
    // `retain` removes them: unchanged since the last time they were made).
    if pruned {
        for tier in &keep.tiers {
            ctx.metrics.touch_backup_failures(ns, &name, *tier);
        }
    }
}

/// Drills ([`drill`]): folds their result into the plan's status and says
/// which drill to create and which old ones to delete.
fn decide_drills(
    policy: &BackupPolicy,
    ns: &str,
    plan: &mut PolicyPlan,
    now: DateTime<Utc>,
    ctx: &Context,
) -> DrillPlan {
    let all = ctx.restores.state();
    let drills: Vec<&RestoreRequest> = all
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| {
            is_drill(r)
                && r.namespace().as_deref() == Some(ns)
                && r.spec.policy_ref.name == policy.name_any()
        })
        .collect();
    let old = policy.status.clone().unwrap_or_default();
    let mut status = plan.status.clone().unwrap_or_else(|| old.clone());
    let before = status.conditions.clone();
    let mut d = drill::decide(policy, &drills, &mut status, now);
    plan.events
        .extend(condition_events(&before, &status.conditions));
    plan.status = (status != old).then_some(status);
    plan.events.append(&mut d.events);
    if let Some(next) = d.next.and_then(|n| (n - now).to_std().ok()) {
        plan.requeue_after = Some(plan.requeue_after.map_or(next, |r| r.min(next)));
    }
    d
}

/// Creates the due drill and deletes the old ones.
async fn apply_drills(
    policy: &BackupPolicy,
    ns: &str,
    d: &DrillPlan,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<RestoreRequest> = ctx.api(ns);
    if let Some(r) = &d.create {
        if create_if_absent(&api, r).await? {
            tracing::info!(policy = %policy.name_any(), drill = %r.name_any(), "created drill");
        }
    }
    for old_drill in &d.delete {
        delete_if_present(&api, old_drill, &DeleteParams::background()).await?;
    }
    Ok(())
}
