//! The IO half of [`jobs::volume::node_for`]: before a Job that mounts a
//! claim is created, read the claim and, when it is ReadWriteOnce, the
//! namespace's pods; a running pod that mounts it names the node the Job
//! must run on (elsewhere the claim could not be attached).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::ResourceExt;

use super::jobs::volume;
use super::{Context, Error};

/// `job`, pinned to the node of the running pod that mounts its
/// ReadWriteOnce claim, if there is one.
pub(crate) async fn pinned(ctx: &Context, ns: &str, job: &Job) -> Result<Job, Error> {
    let mut job = job.clone();
    let Some(claim) = volume::claim_of(&job) else {
        return Ok(job);
    };
    let pvc = ctx
        .api::<PersistentVolumeClaim>(ns)
        .get_opt(&claim)
        .await
        .map_err(Error::dereference(format!("claim {claim}")))?;
    if !pvc.as_ref().is_some_and(volume::is_single_node) {
        return Ok(job);
    }
    let pods = ctx
        .api::<Pod>(ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::dereference(format!("pods that mount claim {claim}")))?;
    if let Some(node) = volume::node_for(&claim, pvc.as_ref(), &pods.items) {
        tracing::info!(job = %job.name_any(), claim = %claim, node = %node, "the claim is ReadWriteOnce and mounted: the job runs on that node");
        volume::pin_to_node(&mut job, &node);
    }
    Ok(job)
}
