//! The IO side of a policy's WAL archiver: keep its Deployment as the policy
//! says, and read the running pod's `/status`. Decisions live in `archiver`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::apply::{create_if_absent, delete_if_present};
use super::archiver::{
    archiver_deployment, archiver_name, wants_archiver, ArchiverStatus, Observed, COMPONENT,
};
use super::jobs::{label_value, LABEL_COMPONENT, LABEL_POLICY};
use super::{Context, Error};
use crate::api::BackupPolicy;

/// How long the controller waits for an archiver's `/status`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates or updates the archiver Deployment of a policy that wants one and
/// reads its status; removes the Deployment of a policy that no longer wants
/// one (`had_archiver`: the status still reports one). None: no archiver.
pub(super) async fn sync(
    policy: &BackupPolicy,
    ns: &str,
    had_archiver: bool,
    ctx: &Context,
) -> Result<Option<Observed>, Error> {
    let name = policy.name_any();
    let api: Api<Deployment> = ctx.api(ns);
    let deployment = archiver_name(&name);
    if !wants_archiver(policy) {
        if had_archiver && delete_if_present(&api, &deployment, &DeleteParams::default()).await? {
            tracing::info!(policy = %name, %deployment, "stopped the WAL archiver");
        }
        return Ok(None);
    }
    let desired = archiver_deployment(policy, &ctx.settings.jobs)
        .map_err(Error::build(format!("Deployment {deployment}")))?;
    if create_if_absent(&api, &desired).await? {
        tracing::info!(policy = %name, %deployment, "started the WAL archiver");
    } else {
        // A merge patch replaces lists whole: the pod template becomes the desired one.
        let patch = json!({"metadata": {"labels": desired.metadata.labels}, "spec": desired.spec});
        api.patch(&deployment, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::apply(format!("updating Deployment {deployment}")))?;
    }
    Ok(Some(observe(ctx, ns, &name).await?))
}

/// Finds the archiver's running pod and asks it for its status.
async fn observe(ctx: &Context, ns: &str, policy: &str) -> Result<Observed, Error> {
    let pods: Api<Pod> = ctx.api(ns);
    let selector = format!(
        "{LABEL_COMPONENT}={COMPONENT},{LABEL_POLICY}={}",
        label_value(policy)
    );
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::dereference(format!(
            "pods of the WAL archiver of policy {policy}"
        )))?;
    let ip = list.items.iter().find_map(|p| {
        let status = p.status.as_ref()?;
        (status.phase.as_deref() == Some("Running") && p.metadata.deletion_timestamp.is_none())
            .then(|| status.pod_ip.clone())
            .flatten()
    });
    let Some(ip) = ip else {
        return Ok(Observed::NoPod);
    };
    let url = format!("http://{ip}:{}/status", ctx.settings.archiver_port);
    Ok(match fetch_status(&url).await {
        Ok(s) => Observed::Status(s),
        Err(e) => Observed::Unreachable(e),
    })
}

async fn fetch_status(url: &str) -> Result<ArchiverStatus, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client: HttpClient<_, Empty<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(STATUS_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer within {} s", STATUS_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = tokio::time::timeout(STATUS_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| {
            format!(
                "{url}: body not complete within {} s",
                STATUS_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not an archiver status: {e}"))
}
