//! What a Job and its pods say, read the same way by every controller that
//! runs Jobs: the Job's state, the termination message its container left
//! (the summary a Job reports through), and why a pod failed or cannot
//! start. Pure.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use crate::api::conditions::from_time;

/// Longest failure message kept in a status (the termination message of a
/// failed pod may be a log tail).
const MAX_MESSAGE: usize = 1024;

/// A Job as observed, with its pods (none while there is no Job).
#[derive(Clone, Debug, Default)]
pub struct ObservedJob {
    pub object: Option<Job>,
    pub pods: Vec<Pod>,
}

impl ObservedJob {
    pub fn new(object: Option<Job>, pods: Vec<Pod>) -> Self {
        Self { object, pods }
    }
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The Job state that matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Waiting,
    Running,
    Succeeded,
    Failed,
}

pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let count = |f: fn(&k8s_openapi::api::batch::v1::JobStatus) -> Option<i32>| {
        status.and_then(f).unwrap_or(0)
    };
    if job_condition(job, "Complete") || count(|s| s.succeeded) > 0 {
        JobState::Succeeded
    } else if job_condition(job, "Failed") {
        JobState::Failed
    } else if count(|s| s.active) > 0 || status.and_then(|s| s.start_time.as_ref()).is_some() {
        JobState::Running
    } else {
        JobState::Waiting
    }
}

/// Newest pods first, so the last attempt speaks.
pub(crate) fn newest_first(pods: &[Pod]) -> Vec<&Pod> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(from_time)));
    pods
}

/// The terminated states of the containers, newest pod first.
fn terminated(pods: &[Pod]) -> impl Iterator<Item = &ContainerStateTerminated> {
    newest_first(pods).into_iter().flat_map(|pod| {
        pod.status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref())
    })
}

/// The termination message of the newest pod's ended container, whatever its
/// exit code: a restore Job writes its summary on failure too, and a
/// backup Job whose read-back failed leaves its summary.
pub(crate) fn termination_message(pods: &[Pod]) -> Option<String> {
    terminated(pods).find_map(|t| t.message.clone())
}

/// The termination message of a container that exited 0.
pub(crate) fn success_message(pods: &[Pod]) -> Option<String> {
    terminated(pods).find_map(|t| (t.exit_code == 0).then(|| t.message.clone()).flatten())
}

fn join(reason: Option<&str>, message: Option<&str>) -> Option<String> {
    let text = match (reason, message.map(str::trim).filter(|m| !m.is_empty())) {
        (None, None) => return None,
        (Some(r), None) => r.to_string(),
        (None, Some(m)) => m.to_string(),
        (Some(r), Some(m)) => format!("{r}: {m}"),
    };
    Some(truncate(text))
}

/// Cuts a message for a status to [`MAX_MESSAGE`] bytes.
pub(crate) fn truncate(text: String) -> String {
    crate::wire::truncate(text, MAX_MESSAGE)
}

/// Why a pod failed or cannot start: a terminated container's reason and
/// message (Error, OOMKilled), a waiting container's (CreateContainerConfigError
/// naming a missing Secret, ImagePullBackOff), or the pod's own (Evicted).
pub fn pod_problem(pods: &[Pod]) -> Option<String> {
    newest_first(pods).into_iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        let containers = status.container_statuses.iter().flatten();
        let from_containers = containers.clone().find_map(|cs| {
            let t = cs.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                join(t.reason.as_deref(), t.message.as_deref())
                    .unwrap_or_else(|| format!("exit code {}", t.exit_code))
            })
        });
        let waiting = || {
            containers.clone().find_map(|cs| {
                let w = cs.state.as_ref()?.waiting.as_ref()?;
                // ContainerCreating and PodInitializing are normal waits.
                let reason = w.reason.as_deref()?;
                if matches!(reason, "ContainerCreating" | "PodInitializing") {
                    return None;
                }
                join(Some(reason), w.message.as_deref())
            })
        };
        from_containers
            .or_else(waiting)
            .or_else(|| join(status.reason.as_deref(), status.message.as_deref()))
    })
}

/// Why a failed Job failed, for a status: the pod's problem (OOMKilled, a
/// missing Secret), else the Job's own reason — except past the Job's
/// deadline, where the pod's "Error" (killed by the deadline) is only the
/// consequence.
pub(crate) fn failure_message(job: &Job, pods: &[Pod]) -> String {
    let deadline = job_reason(job) == Some("DeadlineExceeded");
    let (first, second) = if deadline {
        (job_problem(job), pod_problem(pods))
    } else {
        (pod_problem(pods), job_problem(job))
    };
    first
        .or(second)
        .unwrap_or_else(|| "the Job failed".to_string())
}

fn job_reason(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?
        .reason
        .as_deref()
}

/// The Job's own failure reason (BackoffLimitExceeded, DeadlineExceeded).
pub(crate) fn job_problem(job: &Job) -> Option<String> {
    let c = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    join(c.reason.as_deref(), c.message.as_deref())
}
