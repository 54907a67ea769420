//! The IO of an ApplicationRestore reconcile, as named steps: dereference
//! (the parts' policies from the cache, their plan Jobs and RestoreRequests,
//! the maintenance workloads; the service account's permissions and the
//! claims parts restore into when preCheck is current, the smoke tests when
//! theirs is, the user's Jobs of the current step) → [`decide`] → create
//! the plan Jobs, the user's Jobs and RestoreRequests → scale the
//! workloads → notify when it just finished → update the status. A
//! finished request is not looked at again.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{
    current_step, decide, part_name, smoke, space, steps, user_jobs, ClaimSpace, Observed,
    WorkloadState,
};
use crate::api::app_restore::{ApplicationRestore, WorkloadKind, WorkloadRef};
use crate::api::{BackupPolicy, RestoreRequest};
use crate::controller::access::{first_missing, Need};
use crate::controller::apply::{
    create_if_absent, get_job, measured, namespace, next_action, patch_status, send_notifications,
};
use crate::controller::job_status::ObservedJob;
use crate::controller::restore_jobs::plan_job_name;
use crate::controller::{cache, notify, Context, Error, Note};

/// Observe → decide → apply for one application restore.
pub async fn reconcile(app: Arc<ApplicationRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "applicationrestore", reconcile_app(&app, &ctx)).await
}

async fn reconcile_app(app: &ApplicationRestore, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(app)?;
    let Some(current) = current_step(app.status.as_ref()) else {
        return Ok(Action::await_change());
    };
    let name = app.name_any();
    let mut policies = Vec::new();
    let mut plans = Vec::new();
    let mut parts = Vec::new();
    let requests: Api<RestoreRequest> = ctx.api(&ns);
    let planning = current == steps::PLAN;
    for part in &app.spec.parts {
        policies.push(cache::policy(ctx, &ns, &part.policy_ref.name).await?);
        let child = part_name(&name, &part.name);
        plans.push(match planning {
            true => get_job(ctx, &ns, &plan_job_name(&child)).await?,
            false => ObservedJob::new(None, Vec::new()),
        });
        parts.push(match planning || current == steps::PRE_CHECK {
            true => None,
            false => requests
                .get_opt(&child)
                .await
                .map_err(Error::dereference(format!("restore request {child}")))?,
        });
    }
    let workloads = observe_workloads(ctx, app).await?;
    let access = match matches!(current, steps::PLAN | steps::PRE_CHECK) {
        true => Some(denied(ctx, app, &ns).await?),
        false => None,
    };
    let claims = match matches!(current, steps::PLAN | steps::PRE_CHECK) {
        true => observe_claims(ctx, app, &ns).await?,
        false => Vec::new(),
    };
    let smoke_results = match matches!(current, steps::SMOKE_TESTS | steps::POST_CHECK) {
        true => Some(smoke::run_all(&ctx.client, &app.spec.smoke_tests).await),
        false => None,
    };
    let mut jobs = Vec::new();
    for job in user_jobs::to_observe(app, current) {
        let seen = get_job(ctx, &ns, &job).await?;
        jobs.push((job, seen));
    }
    let policy_refs: Vec<Option<&BackupPolicy>> = policies.iter().map(|p| p.as_deref()).collect();
    let obs = Observed {
        app,
        policies: &policy_refs,
        plans: &plans,
        parts: &parts,
        workloads: &workloads,
        claims: &claims,
        smoke: smoke_results.as_deref().map(|r| (current, r)),
        access: access.as_ref().map(|a| a.as_deref()),
        jobs: &jobs,
        now: ctx.settings.clock.now(),
    };
    let mut d = decide(obs, &ctx.settings.jobs, ctx.settings.resync);

    for job in &d.create_jobs {
        if create_if_absent(&ctx.api::<Job>(&ns), job).await? {
            tracing::info!(restore = %name, job = %job.name_any(), "created plan job");
        }
    }
    // A Job the API server refuses (a template it finds invalid) is an
    // event, not a reconcile error: the status (the step's start) is still
    // written, so the step's timeout fails it.
    for job in &d.create_user_jobs {
        match create_if_absent(&ctx.api::<Job>(&ns), job).await {
            Ok(true) => tracing::info!(restore = %name, job = %job.name_any(), "created job"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(restore = %name, job = %job.name_any(), error = %e, "job refused");
                let text = format!("creating Job {}: {e}", job.name_any());
                d.events
                    .push(Note::warning("JobRefused", "Reconcile", text));
            }
        }
    }
    for part in &d.create_parts {
        if create_if_absent(&requests, part).await? {
            tracing::info!(restore = %name, request = %part.name_any(), "created restore request");
        }
    }
    for (w, replicas) in &d.scale {
        scale(ctx, w, *replicas).await?;
        tracing::info!(restore = %name, workload = %w, replicas, "scaled");
    }
    if let (Some(o), Some(st)) = (&d.outcome, &d.status) {
        let at = st.completed_at.unwrap_or_else(|| ctx.settings.clock.now());
        let senders: Vec<&BackupPolicy> = policy_refs.iter().flatten().copied().collect();
        for (policy, send) in notify::for_application(&senders, app, o, at) {
            send_notifications(&policy, &ns, &[send], ctx).await?;
        }
    }
    let apps: Api<ApplicationRestore> = ctx.api(&ns);
    patch_status(&apps, &name, app.status.as_ref(), d.status.as_ref()).await?;
    if let Some(o) = &d.outcome {
        for part in &app.spec.parts {
            ctx.metrics
                .record_application_restore(&ns, &part.policy_ref.name, o);
        }
    }
    ctx.publish(app, &d.events).await;
    Ok(next_action(d.requeue_after))
}

/// The claim of each part restored into one, for the free-space check.
async fn observe_claims(
    ctx: &Context,
    app: &ApplicationRestore,
    ns: &str,
) -> Result<Vec<Option<ClaimSpace>>, Error> {
    let claims: Api<PersistentVolumeClaim> = ctx.api(ns);
    let mut out = Vec::new();
    for part in &app.spec.parts {
        out.push(match space::claim_of(part) {
            None => None,
            Some(name) => {
                let found = claims
                    .get_opt(name)
                    .await
                    .map_err(Error::dereference(format!("claim {name}")))?;
                Some(ClaimSpace::of(found.as_ref()))
            }
        });
    }
    Ok(out)
}

/// `spec.replicas` and `status.readyReplicas` of each maintenance workload.
async fn observe_workloads(
    ctx: &Context,
    app: &ApplicationRestore,
) -> Result<Vec<Option<WorkloadState>>, Error> {
    let Some(m) = &app.spec.maintenance else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for w in &m.scale_to_zero {
        let what = Error::dereference(w.to_string());
        let state = match w.kind {
            WorkloadKind::Deployment => ctx
                .api::<Deployment>(&w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(what)?
                .map(|d| WorkloadState {
                    replicas: d.spec.replicas.unwrap_or(1),
                    ready: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
                }),
            WorkloadKind::StatefulSet => ctx
                .api::<StatefulSet>(&w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(what)?
                .map(|s| WorkloadState {
                    replicas: s.spec.replicas.unwrap_or(1),
                    ready: s.status.and_then(|s| s.ready_replicas).unwrap_or(0),
                }),
        };
        out.push(state);
    }
    Ok(out)
}

async fn scale(ctx: &Context, w: &WorkloadRef, replicas: i32) -> Result<(), Error> {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    let done = match w.kind {
        WorkloadKind::Deployment => ctx
            .api::<Deployment>(&w.namespace)
            .patch(&w.name, &params, &patch)
            .await
            .map(drop),
        WorkloadKind::StatefulSet => ctx
            .api::<StatefulSet>(&w.namespace)
            .patch(&w.name, &params, &patch)
            .await
            .map(drop),
    };
    done.map_err(|source| Error::Apply {
        what: format!("scaling {w} to {replicas}"),
        source,
    })
}

/// What the service account must be allowed: get and patch each workload's
/// type in its namespace, get Services where the smoke tests point, create
/// Jobs in the request's namespace when it runs any. Pure.
pub fn needs(app: &ApplicationRestore) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut add = |verb: &'static str, ns: &str, group: &str, resource: &str| {
        let need = Need {
            verb,
            namespace: Some(ns.to_string()),
            group: group.into(),
            resource: resource.into(),
        };
        if !out.contains(&need) {
            out.push(need);
        }
    };
    for w in app.spec.maintenance.iter().flat_map(|m| &m.scale_to_zero) {
        let resource = match w.kind {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
        };
        add("get", &w.namespace, "apps", resource);
        add("patch", &w.namespace, "apps", resource);
    }
    for s in app
        .spec
        .smoke_tests
        .iter()
        .filter_map(|t| t.service.as_ref())
    {
        add("get", &s.namespace, "", "services");
    }
    let m = app.spec.maintenance.as_ref();
    let runs_jobs = m.is_some_and(|m| m.enter_job.is_some() || m.exit_job.is_some())
        || app.spec.smoke_tests.iter().any(|t| t.job.is_some());
    if let (true, Some(ns)) = (runs_jobs, app.namespace()) {
        add("create", &ns, "batch", "jobs");
    }
    out
}

/// The first permission the request's service account lacks (IO).
async fn denied(
    ctx: &Context,
    app: &ApplicationRestore,
    ns: &str,
) -> Result<Option<String>, Error> {
    let (Some(account), needs) = (&app.spec.service_account_name, needs(app)) else {
        return Ok(None);
    };
    first_missing(
        &ctx.client,
        ns,
        account,
        &needs,
        "lifeboat-application-restorer",
    )
    .await
    .map_err(|source| Error::Dereference {
        what: format!("the permissions of {ns}/{account}"),
        source,
    })
}
