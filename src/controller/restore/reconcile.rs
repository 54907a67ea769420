//! The IO of a RestoreRequest reconcile, as named steps: dereference the
//! policy (from the cache), the plan Job and the restore Job → [`decide`] → create the Job
//! the decision asks for → send the notification of a request that just
//! finished → update the status. A finished request is not
//! looked at again.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{decide, Observed};
use crate::api::restore::RestorePhase;
use crate::api::RestoreRequest;
use crate::controller::apply::{
    create_if_absent, get_job, measured, namespace, next_action, patch_status, send_notifications,
};
use crate::controller::cache;
use crate::controller::notify;
use crate::controller::restore_access;
use crate::controller::restore_jobs::{plan_job_name, restore_job_name};
use crate::controller::{Context, Error};

/// Observe → decide → apply for one request.
pub async fn reconcile(request: Arc<RestoreRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "restorerequest", reconcile_request(&request, &ctx)).await
}

async fn reconcile_request(request: &RestoreRequest, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(request)?;
    let finished = request
        .status
        .as_ref()
        .is_some_and(|s| matches!(s.phase, RestorePhase::Succeeded | RestorePhase::Failed));
    if finished {
        return Ok(Action::await_change());
    }
    let name = request.name_any();
    let policy_name = &request.spec.policy_ref.name;
    let policy = cache::policy(ctx, &ns, policy_name).await?;
    let plan = get_job(ctx, &ns, &plan_job_name(&name)).await?;
    let restore = get_job(ctx, &ns, &restore_job_name(&name)).await?;
    // Asked while a Job may still be created, never after.
    let denied = match (policy.as_deref(), restore.object.is_none()) {
        (Some(p), true) => restore_access::denied(&ctx.client, request, p, &ns)
            .await
            .map_err(|source| Error::Dereference {
                what: format!("the permissions of the restore of {ns}/{name}"),
                source,
            })?,
        _ => None,
    };
    if let Some(message) = &denied {
        tracing::warn!(request = %name, namespace = %ns, %message, "missing permission");
    }
    let obs = Observed {
        request,
        policy: policy.as_deref(),
        plan: &plan,
        restore: &restore,
        now: ctx.settings.clock.now(),
        denied: denied.as_deref(),
    };
    let d = decide(obs, &ctx.settings.jobs, ctx.settings.resync);
    if let Some(job) = &d.create_job {
        let job = &crate::controller::pin::pinned(ctx, &ns, job).await?;
        if create_if_absent(&ctx.api::<Job>(&ns), job).await? {
            tracing::info!(request = %name, job = %job.name_any(), "created job");
        }
    }
    // Sent before the status records the end, so a repeated decision finds its Job.
    if let (Some(p), Some(new)) = (policy.as_deref(), d.status.as_ref()) {
        let sends: Vec<_> = notify::for_restore(p, request, new).into_iter().collect();
        send_notifications(p, &ns, &sends, ctx).await?;
    }
    let requests: Api<RestoreRequest> = ctx.api(&ns);
    patch_status(&requests, &name, request.status.as_ref(), d.status.as_ref()).await?;
    if let Some(o) = &d.outcome {
        ctx.metrics.record_restore(&ns, policy_name, o);
    }
    ctx.publish(request, &d.events).await;
    Ok(next_action(d.requeue_after))
}
