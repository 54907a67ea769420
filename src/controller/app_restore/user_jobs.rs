//! The user's Jobs of an application restore: `maintenance.enterJob` (run
//! to success in the maintenance step, before any workload is scaled),
//! `maintenance.exitJob` (step exitJob, once the smoke tests passed) and
//! the smoke tests of kind `job`. Each is created once, under a name
//! derived from the request and its step, in the request's namespace
//! (owner references cannot cross namespaces), owned by the request: its
//! existence is the record that it was started, so no later reconcile
//! starts it again. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use kube::{Resource, ResourceExt};

use super::{steps, Pass, Progress, APP_LABEL};
use crate::api::app_restore::{ApplicationRestore, JobTemplate};
use crate::api::restore::StepPhase;
use crate::controller::job_status::{failure_message, job_state, JobState};
use crate::controller::jobs::label_value;

/// Label on a user's Job, naming the step that created it.
pub const USER_JOB_LABEL: &str = "lifeboat.dev/user-job";

pub fn enter_name(app: &str) -> String {
    label_value(&format!("{app}-maintenance-enter"))
}

pub fn exit_name(app: &str) -> String {
    label_value(&format!("{app}-maintenance-exit"))
}

/// The enter Job run again when a check fails after the exit Job ran.
pub fn reenter_name(app: &str) -> String {
    label_value(&format!("{app}-maintenance-reenter"))
}

pub fn smoke_name(app: &str, test: &str) -> String {
    label_value(&format!("{app}-smoke-{test}"))
}

/// The Jobs the reconcile looks at while `step` is current.
pub fn to_observe(app: &ApplicationRestore, step: &str) -> Vec<String> {
    let name = app.name_any();
    let m = app.spec.maintenance.as_ref();
    match step {
        steps::MAINTENANCE if m.is_some_and(|m| m.enter_job.is_some()) => vec![enter_name(&name)],
        steps::EXIT_JOB => vec![exit_name(&name)],
        steps::SMOKE_TESTS => app
            .spec
            .smoke_tests
            .iter()
            .filter(|t| t.job.is_some())
            .map(|t| smoke_name(&name, &t.name))
            .collect(),
        _ => Vec::new(),
    }
}

/// The Job `name` of `step`: the template's spec, in the request's
/// namespace, owned by it and labelled. Unless the template says
/// otherwise its pods do not restart (restartPolicy Never, backoffLimit
/// 0: a switch or a check runs once) and it stops at `timeout`.
pub fn build(
    app: &ApplicationRestore,
    name: &str,
    step: &str,
    mut spec: JobSpec,
    timeout: i64,
) -> Option<Job> {
    let owner = app.controller_owner_ref(&())?;
    spec.backoff_limit.get_or_insert(0);
    spec.active_deadline_seconds.get_or_insert(timeout);
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.restart_policy.get_or_insert_with(|| "Never".into());
    }
    let mut job = Job {
        spec: Some(spec),
        ..Job::default()
    };
    let meta = &mut job.metadata;
    meta.name = Some(name.to_string());
    meta.namespace = app.namespace();
    meta.owner_references = Some(vec![owner]);
    meta.labels = Some(BTreeMap::from([
        (APP_LABEL.to_string(), label_value(&app.name_any())),
        (USER_JOB_LABEL.to_string(), step.to_string()),
        ("app.kubernetes.io/managed-by".into(), "lifeboat".into()),
    ]));
    Some(job)
}

/// Runs the Job `name` of the current step `step` from `template`: creates
/// it while it does not exist, then follows it. Done when it succeeded;
/// failed when it failed (its pod's problem, else the Job's reason) or
/// did not finish within `timeout` seconds of the step's start.
pub(super) fn run(
    pass: &mut Pass<'_, '_>,
    step: &str,
    name: &str,
    template: &JobTemplate,
    timeout: i64,
) -> Progress {
    let elapsed = pass.elapsed(step);
    let obs = pass.obs;
    // Not looked at: the step began in this pass.
    let seen = obs.jobs.iter().find(|(n, _)| n == name).map(|(_, j)| j);
    let Some(job) = seen.and_then(|j| j.object.as_ref()) else {
        if seen.is_some() && elapsed >= timeout {
            return Progress::Failed(format!(
                "Job {name} was not created within {timeout} s (see the request's events)"
            ));
        }
        return match create(pass, step, name, template, timeout) {
            Ok(()) => Progress::Wait(Some(format!("creating Job {name}"))),
            Err(e) => Progress::Failed(e),
        };
    };
    let pods = seen.map(|j| j.pods.as_slice()).unwrap_or_default();
    match job_state(job) {
        JobState::Succeeded => Progress::Done(format!("Job {name} succeeded")),
        JobState::Failed => {
            Progress::Failed(format!("Job {name} failed: {}", failure_message(job, pods)))
        }
        _ if elapsed >= timeout => {
            Progress::Failed(format!("Job {name} did not finish within {timeout} s"))
        }
        _ => Progress::Wait(Some(format!("Job {name} running"))),
    }
}

/// Asks for the Job (the IO creates it unless it exists).
fn create(
    pass: &mut Pass<'_, '_>,
    step: &str,
    name: &str,
    template: &JobTemplate,
    timeout: i64,
) -> Result<(), String> {
    // Validation passed before any step ran; this is the same check.
    let spec = template
        .spec(name)
        .map_err(|e| crate::api::join_errors(&e))?;
    let job = build(pass.obs.app, name, step, spec, timeout)
        .ok_or_else(|| "the request has no uid yet".to_string())?;
    if !pass.d.create_user_jobs.iter().any(|j| j.name_any() == name) {
        pass.d.create_user_jobs.push(job);
    }
    Ok(())
}

/// The maintenance step's enter Job; `None` without one.
pub(super) fn enter(pass: &mut Pass<'_, '_>) -> Option<Progress> {
    let app = pass.obs.app;
    let m = app.spec.maintenance.as_ref()?;
    let (template, timeout) = (m.enter_job.as_ref()?, m.job_timeout());
    let name = enter_name(&app.name_any());
    Some(run(pass, steps::MAINTENANCE, &name, template, timeout))
}

/// The exitJob step.
pub(super) fn exit(pass: &mut Pass<'_, '_>) -> Progress {
    let app = pass.obs.app;
    let m = app.spec.maintenance.as_ref();
    let Some((template, timeout)) = m.and_then(|m| Some((m.exit_job.as_ref()?, m.job_timeout())))
    else {
        return Progress::Done("no exit Job".into());
    };
    let name = exit_name(&app.name_any());
    run(pass, steps::EXIT_JOB, &name, template, timeout)
}

/// Maintenance is entered: no enter Job, or it succeeded (the workloads
/// are scaled only after it, so a maintenance page is up before they stop).
pub(super) fn entered(pass: &Pass<'_, '_>) -> bool {
    let m = pass.obs.app.spec.maintenance.as_ref();
    if m.is_none_or(|m| m.enter_job.is_none()) {
        return true;
    }
    let step = pass.st.steps.iter().find(|s| s.name == steps::MAINTENANCE);
    if step.is_some_and(|s| s.phase == StepPhase::Succeeded) {
        return true;
    }
    let name = enter_name(&pass.obs.app.name_any());
    pass.obs.jobs.iter().any(|(n, j)| {
        *n == name
            && j.object
                .as_ref()
                .is_some_and(|o| job_state(o) == JobState::Succeeded)
    })
}

/// What a failure does with the maintenance Jobs, as a phrase for the
/// status (none without an enter Job, or before maintenance began). With
/// `endOnFailure` the exit Job is started (not waited for: the request
/// has failed); otherwise maintenance stays on: the exit Job is not run,
/// and when it already ran (a failed postCheck) the enter Job runs again.
pub(super) fn on_failure(pass: &mut Pass<'_, '_>) -> Option<String> {
    let request = pass.obs.app;
    let m = request.spec.maintenance.as_ref()?;
    let enter_job = m.enter_job.as_ref()?;
    let app = request.name_any();
    let phase = |n: &str| pass.st.steps.iter().find(|s| s.name == n).map(|s| s.phase);
    let exited = phase(steps::EXIT_JOB) == Some(StepPhase::Succeeded);
    let exit_failed = phase(steps::EXIT_JOB) == Some(StepPhase::Failed);
    let (template, name, step, line) = match (m.end_on_failure, &m.exit_job) {
        (true, Some(exit)) if !exited && !exit_failed => {
            let name = exit_name(&app);
            let line = format!("exit Job {name} started");
            (exit, name, steps::EXIT_JOB, line)
        }
        (false, Some(_)) if exited => {
            let name = reenter_name(&app);
            let line = format!("enter Job run again as {name}");
            (enter_job, name, steps::MAINTENANCE, line)
        }
        (false, Some(_)) if !exit_failed => {
            return Some(format!("exit Job {} not run", exit_name(&app)))
        }
        _ => return None,
    };
    let spec = template.spec(&name).ok()?;
    let job = build(request, &name, step, spec, m.job_timeout())?;
    pass.d.create_user_jobs.push(job);
    Some(line)
}
