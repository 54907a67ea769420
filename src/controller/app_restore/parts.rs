//! The parts: their plan Jobs (the plan step), their RestoreRequests
//! (configuration, databases, files) and what their checks said
//! (verification).

use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};

use super::{part_name, Pass, Progress, APP_LABEL};
use crate::api::app_restore::{ApplicationRestore, PartKind, PartPlan};
use crate::api::restore::RestorePhase;
use crate::api::{BackupPolicy, RestoreRequest};
use crate::controller::job_status::{failure_message, job_state, termination_message, JobState};
use crate::controller::jobs::JobConfig;
use crate::controller::restore_jobs::{plan_from_summary, plan_job};
use crate::wire::{parse as parse_summary, PlanSummary};

impl Pass<'_, '_> {
    /// Plan Jobs for every part; the plan with each part's gap.
    pub(super) fn plan(&mut self) -> Progress {
        let obs = self.obs;
        let app = obs.app;
        let t = app.spec.point_in_time;
        let mut plans = Vec::new();
        let mut waiting = Vec::new();
        for (i, part) in app.spec.parts.iter().enumerate() {
            let policy = obs.policies[i].expect("checked by invalid()");
            let observed = &obs.plans[i];
            let Some(job) = observed.object.as_ref() else {
                match plan_job_for(app, i, policy, self.cfg) {
                    Ok(job) => self.d.create_jobs.push(job),
                    Err(e) => return Progress::Failed(format!("part {}: {e}", part.name)),
                }
                waiting.push(part.name.clone());
                continue;
            };
            match job_state(job) {
                JobState::Succeeded => {}
                JobState::Failed => {
                    let cause = termination_message(&observed.pods)
                        .and_then(|m| parse_summary::<PlanSummary>(&m))
                        .and_then(|s| s.error)
                        .unwrap_or_else(|| failure_message(job, &observed.pods));
                    return Progress::Failed(format!("part {}: {cause}", part.name));
                }
                _ => {
                    waiting.push(part.name.clone());
                    continue;
                }
            }
            let plan = termination_message(&observed.pods)
                .and_then(|m| parse_summary::<PlanSummary>(&m))
                .ok_or_else(|| "the plan Job left no readable report".to_string())
                .and_then(|s| plan_from_summary(&s, policy));
            let plan = match plan {
                Ok(p) => p,
                Err(e) => return Progress::Failed(format!("part {}: {e}", part.name)),
            };
            let wal = replays_wal(policy);
            let point = match (wal, plan.completed_at) {
                (true, _) | (false, None) => t,
                (false, Some(done)) => done.min(t),
            };
            plans.push(PartPlan {
                part: part.name.clone(),
                kind: part.kind(),
                policy: policy.name_any(),
                backup_id: plan.backup_id,
                destination: plan.destination,
                recovery_point: point,
                gap_seconds: (t - point).num_seconds().max(0),
                wal_replay: wal,
                bytes: plan.bytes,
            });
        }
        if !waiting.is_empty() {
            return Progress::Wait(Some(format!("planning {}", waiting.join(", "))));
        }
        let text = plans
            .iter()
            .map(|p| match p.wal_replay {
                true => format!("{}: {} + WAL to the instant", p.part, p.backup_id),
                false => format!("{}: {} ({} s before)", p.part, p.backup_id, p.gap_seconds),
            })
            .collect::<Vec<_>>()
            .join("; ");
        self.st.plan = plans;
        Progress::Done(text)
    }

    /// Creates the RestoreRequests of the parts of `kind`; done when all
    /// succeeded, failed when one failed.
    pub(super) fn restore_parts(&mut self, kind: PartKind) -> Progress {
        let obs = self.obs;
        let app = obs.app;
        let mut waiting = Vec::new();
        let mut done = Vec::new();
        for (i, part) in app.spec.parts.iter().enumerate() {
            if part.kind() != kind {
                continue;
            }
            let Some(request) = obs.parts[i].as_ref() else {
                match part_request(app, i) {
                    Some(r) => self.d.create_parts.push(r),
                    None => return Progress::Failed("the request has no uid yet".into()),
                }
                waiting.push(part.name.clone());
                continue;
            };
            let status = request.status.clone().unwrap_or_default();
            match status.phase {
                RestorePhase::Succeeded => done.push(match status.message {
                    Some(m) => format!("{}: {m}", part.name),
                    None => format!("{}: restored", part.name),
                }),
                RestorePhase::Failed => {
                    return Progress::Failed(format!(
                        "part {} (RestoreRequest {}): {}",
                        part.name,
                        request.name_any(),
                        status.message.unwrap_or_default()
                    ))
                }
                _ => waiting.push(part.name.clone()),
            }
        }
        match waiting.is_empty() {
            true => Progress::Done(done.join("; ")),
            false => Progress::Wait(Some(format!("restoring {}", waiting.join(", ")))),
        }
    }

    /// The checks each part ran (its RestoreRequest's verify step).
    pub(super) fn verification(&mut self) -> Progress {
        let obs = self.obs;
        let lines: Vec<String> = obs
            .app
            .spec
            .parts
            .iter()
            .zip(obs.parts)
            .filter_map(|(part, r)| {
                let st = r.as_ref()?.status.as_ref()?;
                let verify = st
                    .steps
                    .iter()
                    .find(|s| s.name == crate::wire::step::VERIFY)?;
                Some(format!(
                    "{}: {}",
                    part.name,
                    verify
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("{:?}", verify.phase))
                ))
            })
            .collect();
        Progress::Done(match lines.is_empty() {
            true => "every part authenticated as it restored".into(),
            false => lines.join("; "),
        })
    }
}

/// A policy whose restores replay WAL to the instant asked for.
fn replays_wal(policy: &BackupPolicy) -> bool {
    policy.spec.source.is_physical()
        && policy
            .spec
            .point_in_time_recovery
            .as_ref()
            .is_some_and(|p| p.enabled)
}

/// Part `index`'s RestoreRequest, owned by the application restore (none
/// before the request has a uid).
fn part_request(app: &ApplicationRestore, index: usize) -> Option<RestoreRequest> {
    let owner = app.controller_owner_ref(&())?;
    let name = part_name(&app.name_any(), &app.spec.parts[index].name);
    let mut r = RestoreRequest::new(&name, app.spec.part_request(index));
    r.metadata.namespace = app.namespace();
    r.metadata.owner_references = Some(vec![owner]);
    r.metadata.labels = Some(
        [(
            APP_LABEL.to_string(),
            crate::controller::jobs::label_value(&app.name_any()),
        )]
        .into_iter()
        .collect(),
    );
    Some(r)
}

/// The plan Job of part `index`: the one its RestoreRequest would create,
/// owned by the application restore until that request exists.
fn plan_job_for(
    app: &ApplicationRestore,
    index: usize,
    policy: &BackupPolicy,
    cfg: &JobConfig,
) -> Result<Job, String> {
    let mut request = part_request(app, index).ok_or("the request has no uid yet")?;
    // plan_job names its owner from the request: give it the app's uid, then
    // make the app the owner.
    request.metadata.uid = app.uid();
    let mut job = plan_job(&request, policy, cfg).map_err(|e| e.to_string())?;
    job.metadata.owner_references = request.metadata.owner_references.clone();
    Ok(job)
}
