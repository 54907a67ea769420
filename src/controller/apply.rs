//! The reads and writes every reconcile makes, each shape once. Object names
//! are deterministic, so a create that meets "already exists" found what an
//! earlier reconcile (or another replica) made, and a delete that meets "not
//! found" finds its work done. A status is written as a JSON merge patch of
//! what changed since the status the decision saw.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::cached_job::CachedJob;
use super::job_status::ObservedJob;
use super::{is_conflict, is_not_found, merge_patch, Context, Error};
use crate::api::BackupPolicy;

/// The namespace of a namespaced object (a reconcile needs one).
pub(crate) fn namespace<K: Resource>(obj: &K) -> Result<String, Error> {
    obj.namespace()
        .ok_or_else(|| Error::MissingNamespace(obj.name_any()))
}

/// Creates `obj`; false when it already exists.
pub(crate) async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    create(api, obj).await.map(|created| created.is_some())
}

/// Creates `obj` and returns it as the API server stored it; `None` when it
/// already exists.
pub(crate) async fn create<K>(api: &Api<K>, obj: &K) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(created) => Ok(Some(created)),
        Err(e) if is_conflict(&e) => Ok(None),
        Err(e) => Err(Error::apply(format!(
            "creating {} {}",
            K::kind(&()),
            obj.name_any()
        ))(e)),
    }
}

/// Creates `job` and returns the API server's answer as the Job cache keeps
/// Jobs (metadata and status); `None` when it already exists. Decoding the
/// answer's pod template, which nothing reads, was ~3 % of the controller's
/// CPU at 10,000 due policies.
pub(crate) async fn create_job(
    ctx: &Context,
    ns: &str,
    job: &Job,
) -> Result<Option<CachedJob>, Error> {
    let what = || format!("creating Job {}", job.name_any());
    let request = serde_json::to_vec(job)
        .map_err(kube::Error::SerdeError)
        .and_then(|body| {
            kube::core::Request::new(Job::url_path(&(), Some(ns)))
                .create(&PostParams::default(), body)
                .map_err(kube::Error::BuildRequest)
        })
        .map_err(Error::apply(what()))
        .map(|mut request| {
            // As `Api::create` marks it, for the client's traces.
            request.extensions_mut().insert("create");
            request
        })?;
    match ctx.client.request::<CachedJob>(request).await {
        Ok(created) => Ok(Some(created)),
        Err(e) if is_conflict(&e) => Ok(None),
        Err(e) => Err(Error::apply(what())(e)),
    }
}

/// Deletes `name`; false when it was already gone.
pub(crate) async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::apply(format!("deleting {} {name}", K::kind(&())))(e)),
    }
}

/// Writes `new` as the status of `name`, as a merge patch from `old`, the
/// status the decision started from (`None`: the object had none yet), and
/// returns the object as written. Nothing to write when `new` is `None` (the
/// status did not change).
pub(crate) async fn patch_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    new: Option<&S>,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + Default,
{
    let Some(new) = new else {
        return Ok(None);
    };
    let old = match old {
        Some(old) => serde_json::to_value(old),
        None => serde_json::to_value(S::default()),
    };
    let old = old.unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let patch = json!({ "status": merge_patch(&old, &new) });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(Some)
        .map_err(Error::update_status(format!("{} {name}", K::kind(&()))))
}

/// The Job `name` and its pods.
pub(crate) async fn get_job(ctx: &Context, ns: &str, name: &str) -> Result<ObservedJob, Error> {
    let job = ctx
        .api::<Job>(ns)
        .get_opt(name)
        .await
        .map_err(Error::dereference(format!("job {name}")))?;
    let pods = match &job {
        None => Vec::new(),
        Some(_) => {
            ctx.api::<Pod>(ns)
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .map_err(Error::dereference(format!("pods of job {name}")))?
                .items
        }
    };
    Ok(ObservedJob::new(job, pods))
}

/// Look again after `after`, or only when something changes.
pub(crate) fn next_action(after: Option<Duration>) -> Action {
    match after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    }
}

/// Runs one reconcile of `controller` with its duration measured and its
/// failure counted by step.
pub(crate) async fn measured(
    ctx: &Context,
    controller: &'static str,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer(controller);
    let result = reconcile.await;
    if let Err(e) = &result {
        ctx.metrics.reconcile_error(controller, e);
    }
    result
}

/// Creates the notify Job of each notification (create-if-absent: the Job's
/// name is the incident's, so a repeated decision sends nothing twice).
/// Called before the status write that records the transition, so a crash
/// in between decides the same again. A Job that cannot be built is
/// logged: sending never changes what a reconcile does.
pub(crate) async fn send_notifications(
    policy: &BackupPolicy,
    ns: &str,
    sends: &[super::notify::Outgoing],
    ctx: &Context,
) -> Result<(), Error> {
    let jobs: Api<Job> = ctx.api(ns);
    for s in sends {
        let event = s.notification.event.as_str();
        match super::jobs::notify_job(policy, &s.notification, &s.incident, &ctx.settings.jobs) {
            Ok(Some(job)) => {
                if create_if_absent(&jobs, &job).await? {
                    tracing::info!(policy = %policy.name_any(), job = %job.name_any(), event, "created notify job");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(policy = %policy.name_any(), event, error = %e, "cannot build the notify job")
            }
        }
    }
    Ok(())
}
