//! A Job as the controller's caches keep it: metadata and status, no spec.
//!
//! `k8s_openapi`'s `Job` holds its pod template inline, so even with the
//! spec emptied every cached Job costs 2.8 KB; this type costs 0.6 KB, and
//! the watch never decodes a pod template into it (serde skips the field).
//! At 10,000 policies that is 22 MB of the controller's memory (issue 16).
//! No decision reads a Job's spec: what a run's Job should be comes from the
//! policy, what it did from its status and its pods.

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedJob {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

impl Resource for CachedJob {
    const API_VERSION: &'static str = Job::API_VERSION;
    const GROUP: &'static str = Job::GROUP;
    const KIND: &'static str = Job::KIND;
    const VERSION: &'static str = Job::VERSION;
    const URL_PATH_SEGMENT: &'static str = Job::URL_PATH_SEGMENT;
    type Scope = NamespaceResourceScope;
}

impl Metadata for CachedJob {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<Job> for CachedJob {
    fn from(job: Job) -> Self {
        // Kept as the Job cache keeps a watched Job (`cache::slim_unlabelled`).
        let mut cached = Self {
            metadata: job.metadata,
            status: job.status,
        };
        super::cache::slim_unlabelled(&mut cached);
        cached
    }
}

impl From<&CachedJob> for Job {
    fn from(job: &CachedJob) -> Self {
        Job {
            metadata: job.metadata.clone(),
            spec: None,
            status: job.status.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    #[test]
    fn a_watched_job_decodes_without_its_pod_template() {
        let json = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "a", "namespace": "ns",
                         "managedFields": [{"manager": "kube-controller-manager"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"active": 1}
        });
        let job: CachedJob = serde_json::from_value(json).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("a"));
        assert_eq!(job.status.and_then(|s| s.active), Some(1));
        assert!(std::mem::size_of::<CachedJob>() * 3 < std::mem::size_of::<Job>());
    }

    #[test]
    fn a_created_job_is_kept_without_spec_managed_fields_or_labels() {
        let mut job = Job::default();
        job.metadata.name = Some("a".into());
        job.metadata.managed_fields = Some(vec![Default::default()]);
        job.metadata.labels = Some([("lifeboat.dev/run".into(), "r".into())].into());
        job.metadata.annotations = Some([("lifeboat.dev/backup-id".into(), "b".into())].into());
        job.metadata.owner_references = Some(vec![Default::default()]);
        job.spec = Some(Default::default());
        let cached = CachedJob::from(job);
        assert!(cached.metadata.managed_fields.is_none());
        assert!(cached.metadata.labels.is_none());
        assert!(cached.metadata.annotations.is_none());
        assert_eq!(cached.owner_references().len(), 1);
        assert!(Job::from(&cached).spec.is_none());
    }
}
