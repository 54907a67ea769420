//! STAND-IN for the Job builders being written on branch `jobs`; replaced at
//! merge. Only the signatures the controller calls are real here: the Jobs
//! are minimal (no secrets, no mounts) so the controller compiles and its
//! tests can run.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::api::{BackupPolicy, BackupRun};

#[derive(Clone, Debug)]
pub struct JobConfig {
    pub image: String,
    pub mount_root: String,
    pub service_account: Option<String>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            image: "lifeboat:latest".into(),
            mount_root: "/var/run/lifeboat".into(),
            service_account: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the run has no uid or namespace yet")]
    Unowned,
    #[error("unreadable job result: {0}")]
    BadResult(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    pub backup_id: String,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub artifacts: Vec<JobArtifact>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobArtifact {
    pub destination: String,
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default)]
    pub verified: bool,
}

fn job(
    name: String,
    ns: Option<String>,
    owner: OwnerReference,
    cfg: &JobConfig,
    args: Vec<String>,
) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: ns,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: cfg.service_account.clone(),
                    containers: vec![Container {
                        name: "lifeboat".into(),
                        image: Some(cfg.image.clone()),
                        args: Some(args),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

pub fn backup_job(
    _policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let owner = run.controller_owner_ref(&()).ok_or(JobError::Unowned)?;
    Ok(job(
        format!("{}-backup", run.name_any()),
        run.namespace(),
        owner,
        cfg,
        vec![
            "backup".into(),
            "--report-file".into(),
            "/dev/termination-log".into(),
        ],
    ))
}

pub fn prune_job(
    policy: &BackupPolicy,
    run_name: &str,
    backup_id: &str,
    owner: OwnerReference,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    Ok(job(
        format!("{run_name}-prune"),
        policy.namespace(),
        owner,
        cfg,
        vec!["prune".into(), "--backup".into(), backup_id.into()],
    ))
}

pub fn parse_job_result(termination_message: &str) -> Result<JobResult, JobError> {
    serde_json::from_str(termination_message).map_err(|e| JobError::BadResult(e.to_string()))
}
