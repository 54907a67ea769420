//! The cluster's half of a Job the controller created in the in-memory API
//! server: the stand-in kubelet runs it for real (support/kubelet.rs), and
//! its pod (with the termination message) and its status go back to the
//! API server as the kubelet and the Job controller would write them.
//! Include with `#[path = "support/job_pods.rs"] mod job_pods;` beside the
//! API server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::{BackupPolicy, BackupRun, RestoreRequest};
use lifeboat::controller::app_restore::user_jobs::USER_JOB_LABEL;
use lifeboat::controller::jobs::JobConfig;
use lifeboat::controller::metrics::Metrics;
use lifeboat::controller::Settings;
use serde_json::{json, Value};

use crate::apiserver::{ApiServer, JOBS};
use crate::support::kubelet::{execute_api, execute_with, Claims, Secrets};
use crate::support::stderr;

pub const WAIT: Duration = Duration::from_secs(60);
pub const REQUESTS: &str = "apis/lifeboat.dev/v1alpha1/restorerequests";

/// The controllers against `server`, watching `ns` with quick resyncs, and
/// `policy` (named `orders`) created there ten minutes ago (so a drill slot
/// is due) with a daily schedule that does not fall due during a test.
pub async fn start(
    server: &ApiServer,
    ns: &str,
    policy: &BackupPolicy,
    jobs: &JobConfig,
) -> (tokio::task::JoinHandle<()>, Arc<Metrics>) {
    let (task, metrics) = start_controllers(server, ns, jobs);
    add_policy(server, ns, "orders", policy).await;
    (task, metrics)
}

/// The controllers against `server`, watching `ns` with quick resyncs.
pub fn start_controllers(
    server: &ApiServer,
    ns: &str,
    jobs: &JobConfig,
) -> (tokio::task::JoinHandle<()>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        jobs: jobs.clone(),
        namespace: Some(ns.into()),
        resync: Duration::from_millis(300),
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let task = server.run_controllers(settings, metrics.clone());
    (task, metrics)
}

/// Waits until the metric line `line_prefix` reads `value` (the controller
/// records metrics just after it writes the status the test waited for).
pub async fn metric_reaches(metrics: &Metrics, line_prefix: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics.encode();
        let now = text
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix).map(|v| v.trim().to_string()));
        if now.as_deref() == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{line_prefix} is {now:?}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `policy` as `name` in `ns`, ten minutes old, with a daily
/// schedule that does not fall due during a test.
pub async fn add_policy(server: &ApiServer, ns: &str, name: &str, policy: &BackupPolicy) {
    let mut policy = serde_json::to_value(policy).unwrap();
    policy["metadata"] = json!({"name": name, "namespace": ns,
        "creationTimestamp": (Utc::now() - chrono::Duration::minutes(10)).to_rfc3339()});
    policy["spec"]["schedule"] = json!({"daily": "0 2 1 1 *"});
    let policy: BackupPolicy = serde_json::from_value(policy).unwrap();
    Api::<BackupPolicy>::namespaced(server.client(), ns)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

/// What a node gives the pods it runs: the cluster's Secrets, the claims'
/// directories, a token (a kubeconfig for the API server) for the pods
/// that ask for one, and a work directory.
#[derive(Clone)]
pub struct Node {
    pub secrets: Secrets,
    pub claims: Claims,
    pub kubeconfig: Option<PathBuf>,
    pub work: PathBuf,
}

/// Runs the Job `name` in `ns` once it exists, with `claims` mounted; then
/// writes its pod and status. Returns the Job as created and whether its
/// container succeeded.
pub async fn run_job(
    server: &ApiServer,
    ns: &str,
    name: &str,
    secrets: &Secrets,
    claims: &Claims,
    work: &Path,
) -> (Job, bool) {
    let node = Node {
        secrets: secrets.clone(),
        claims: claims.clone(),
        kubeconfig: None,
        work: work.to_path_buf(),
    };
    run_job_on(server, ns, name, &node).await
}

/// [`run_job`] on `node`: a pod that mounts its service account's token
/// talks to the API server with the node's kubeconfig.
pub async fn run_job_on(server: &ApiServer, ns: &str, name: &str, node: &Node) -> (Job, bool) {
    let job: Job = serde_json::from_value(
        server
            .wait_for(&format!("job {name}"), WAIT, |s| s.get(JOBS, ns, name))
            .await,
    )
    .unwrap();
    let started = Utc::now();
    let ran = {
        let (job, node) = (job.clone(), node.clone());
        tokio::task::spawn_blocking(move || {
            let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            let token = pod.and_then(|p| p.automount_service_account_token) == Some(true);
            match (&node.kubeconfig, token) {
                (Some(kc), true) => execute_api(&job, &node.secrets, kc, &node.work),
                _ => execute_with(&job, &node.secrets, &node.claims, &node.work),
            }
        })
        .await
        .unwrap()
    };
    let ok = ran.output.status.success();
    let labels = job.metadata.labels.as_ref();
    let users = labels.is_some_and(|l| l.contains_key(USER_JOB_LABEL));
    let message = if ran.termination_message.is_empty() && !users {
        // lifeboat's Jobs are FallbackToLogsOnError: the log's tail.
        stderr(&ran.output)
    } else {
        ran.termination_message.clone()
    };
    let client = server.client();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-x1"), "labels": {"job-name": name}},
        "spec": {"containers": [{"name": "lifeboat", "image": "lifeboat"}]},
        "status": {"containerStatuses": [{"name": "lifeboat", "image": "lifeboat", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": ran.output.status.code().unwrap_or(1),
            "message": message}}}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let done = Utc::now();
    let status = if ok {
        json!({"status": {"startTime": started, "completionTime": done, "succeeded": 1,
                          "conditions": [{"type": "Complete", "status": "True"}]}})
    } else {
        json!({"status": {"startTime": started, "failed": 1,
                          "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}})
    };
    Api::<Job>::namespaced(client, ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    (job, ok)
}

/// Creates the RestoreRequest `name` in `ns` with `spec`.
pub async fn create_request(server: &ApiServer, ns: &str, name: &str, spec: Value) {
    let r: RestoreRequest = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreRequest",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .unwrap();
    Api::<RestoreRequest>::namespaced(server.client(), ns)
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
}

/// Waits until the request `name` in `ns` succeeds or fails; its status.
pub async fn finished(server: &ApiServer, ns: &str, name: &str) -> Value {
    server
        .wait_for(&format!("request {name} to finish"), WAIT, |s| {
            let st = s.get(REQUESTS, ns, name)?.get("status")?.clone();
            matches!(st["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(st)
        })
        .await
}

/// A manual run `orders-manual-1` that succeeded with `backup_id`, as the
/// policy `orders` learns of its newest backup; then the drill request
/// the policy's schedule makes of it. Returns the drill's name.
pub async fn first_drill(server: &ApiServer, ns: &str, backup_id: &str) -> String {
    let runs: Api<BackupRun> = Api::namespaced(server.client(), ns);
    let run: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": "orders-manual-1", "namespace": ns},
        "spec": {"policyRef": {"name": "orders"}, "tier": "manual"}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let status = json!({"status": {"phase": "Succeeded", "completedAt": Utc::now(),
                                   "backupId": backup_id}});
    runs.patch_status(
        "orders-manual-1",
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .unwrap();
    server
        .wait_for("a drill request", WAIT, |s| {
            s.list(REQUESTS, ns).into_iter().find_map(|r| {
                r.pointer("/metadata/labels/lifeboat.dev~1drill")?;
                Some(r["metadata"]["name"].as_str()?.to_string())
            })
        })
        .await
}
