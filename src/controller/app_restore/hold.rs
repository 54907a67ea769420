//! Maintenance mode: the workloads named in `spec.maintenance` held at zero
//! replicas while the parts restore, then scaled back and waited for.
//! A workload's replicas are recorded in the status before it is scaled:
//! only a workload whose replicas the status already held (as last
//! written) is scaled down, so a crash between the two loses nothing.

use super::{steps, Pass, Progress};
use crate::api::app_restore::{HeldWorkload, WorkloadRef};
use crate::api::restore::StepPhase;

/// A workload as the API server has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

fn workloads<'a>(pass: &Pass<'a, '_>) -> &'a [WorkloadRef] {
    pass.obs
        .app
        .spec
        .maintenance
        .as_ref()
        .map(|m| m.scale_to_zero.as_slice())
        .unwrap_or_default()
}

/// Replicas the status held before this reconcile.
fn recorded_before(pass: &Pass<'_, '_>, w: &WorkloadRef) -> Option<i32> {
    let st = pass.obs.app.status.as_ref()?;
    st.workloads.iter().find(|h| h.is(w))?.replicas
}

fn recorded(pass: &Pass<'_, '_>, w: &WorkloadRef) -> Option<i32> {
    pass.st.workloads.iter().find(|h| h.is(w))?.replicas
}

/// Asks for `w` at `replicas`; a later step of the same pass wins (the
/// hold of the files step, then the end of maintenance).
fn scale(pass: &mut Pass<'_, '_>, w: &WorkloadRef, replicas: i32) {
    pass.d.scale.retain(|(x, _)| x != w);
    pass.d.scale.push((w.clone(), replicas));
}

/// Records the replicas of workloads seen for the first time and scales
/// those recorded earlier to zero. True when every workload there is at zero.
pub(super) fn hold(pass: &mut Pass<'_, '_>) -> bool {
    let mut all_zero = true;
    for (w, seen) in workloads(pass).iter().zip(pass.obs.workloads) {
        if !pass.st.workloads.iter().any(|h| h.is(w)) {
            pass.st.workloads.push(HeldWorkload {
                kind: w.kind,
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                replicas: None,
            });
        }
        let Some(seen) = seen else { continue };
        if seen.replicas == 0 && recorded(pass, w).is_some() {
            continue;
        }
        all_zero = all_zero && seen.replicas == 0;
        match recorded_before(pass, w) {
            Some(_) => scale(pass, w, 0),
            // First seen (a configuration part may just have restored it):
            // remember its replicas now, scale it once that is written.
            None => {
                let held = pass.st.workloads.iter_mut().find(|h| h.is(w));
                held.expect("pushed above").replicas = Some(seen.replicas);
            }
        }
    }
    all_zero
}

/// The maintenance step: done when every workload that exists is at zero.
pub(super) fn maintenance(pass: &mut Pass<'_, '_>) -> Progress {
    if !hold(pass) {
        return Progress::Wait(Some("scaling the workloads to zero".into()));
    }
    let held: Vec<String> = pass
        .st
        .workloads
        .iter()
        .map(|h| match h.replicas {
            Some(r) => format!("{} held at 0 ({r} to restore)", describe(h)),
            None => format!("{} absent (held at 0 if a part restores it)", describe(h)),
        })
        .collect();
    Progress::Done(held.join("; "))
}

fn describe(h: &HeldWorkload) -> String {
    WorkloadRef {
        kind: h.kind,
        namespace: h.namespace.clone(),
        name: h.name.clone(),
    }
    .to_string()
}

/// Scales every workload back to its replicas; done when all are ready.
pub(super) fn end_maintenance(pass: &mut Pass<'_, '_>) -> Progress {
    let timeout = pass
        .obs
        .app
        .spec
        .maintenance
        .as_ref()
        .map_or(0, |m| m.ready_timeout_seconds);
    let elapsed = pass.elapsed(steps::END_MAINTENANCE);
    // Maintenance ends: whatever holding asked for earlier in this pass is moot.
    pass.d.scale.clear();
    let mut waiting = Vec::new();
    let mut done = Vec::new();
    for (w, seen) in workloads(pass).iter().zip(pass.obs.workloads) {
        let Some(want) = recorded(pass, w) else {
            done.push(format!("{w} never existed"));
            continue;
        };
        let Some(seen) = seen else {
            return Progress::Failed(format!("{w} is gone; it had {want} replicas"));
        };
        if seen.replicas != want {
            scale(pass, w, want);
            waiting.push(format!("{w}: scaling to {want}"));
        } else if seen.ready < want {
            waiting.push(format!("{w}: {} of {want} ready", seen.ready));
        } else {
            done.push(format!("{w} back to {want}"));
        }
    }
    match waiting.first() {
        None => Progress::Done(done.join("; ")),
        Some(first) if elapsed >= timeout => Progress::Failed(format!(
            "{first} after {elapsed} s (readyTimeoutSeconds {timeout})"
        )),
        Some(_) => Progress::Wait(Some(waiting.join("; "))),
    }
}

/// The post-recovery check: every workload still at its replicas and
/// ready, and the HTTP smoke tests passing once more.
pub(super) fn post_check(pass: &mut Pass<'_, '_>) -> Progress {
    for (w, seen) in workloads(pass).iter().zip(pass.obs.workloads) {
        let Some(want) = recorded(pass, w) else {
            continue;
        };
        match seen {
            Some(s) if s.replicas == want && s.ready >= want => {}
            Some(s) => {
                return Progress::Failed(format!(
                    "{w} has {} replicas, {} ready; {want} expected",
                    s.replicas, s.ready
                ))
            }
            None => return Progress::Failed(format!("{w} is gone")),
        }
    }
    // A Job smoke test is run once (a user's Job may not be repeatable).
    if !pass
        .obs
        .app
        .spec
        .smoke_tests
        .iter()
        .any(|t| t.service.is_some())
    {
        return Progress::Done("the workloads hold their replicas, all ready".into());
    }
    super::smoke::evaluate(pass, steps::POST_CHECK)
}

/// What a failure does to maintenance: with `endOnFailure` the workloads
/// go back to their replicas (and the exit Job is started), otherwise they
/// stay (or go back) to zero (and the exit Job is not run). Returns the
/// sentence for the status, none when maintenance never began.
pub(super) fn on_failure(pass: &mut Pass<'_, '_>) -> Option<String> {
    let m = pass.obs.app.spec.maintenance.as_ref()?;
    let began = pass.st.steps.iter().any(|s| {
        s.name == steps::MAINTENANCE && !matches!(s.phase, StepPhase::Skipped | StepPhase::Pending)
    });
    if !began {
        return None;
    }
    let mut lines = Vec::new();
    for (w, seen) in m.scale_to_zero.iter().zip(pass.obs.workloads) {
        let (Some(want), Some(seen)) = (recorded_before(pass, w), seen) else {
            continue;
        };
        let to = if m.end_on_failure { want } else { 0 };
        if seen.replicas != to {
            scale(pass, w, to);
        }
        lines.push(match m.end_on_failure {
            true => format!("{w} back to {want}"),
            false => format!("{w} at 0 ({want} to restore)"),
        });
    }
    lines.extend(super::user_jobs::on_failure(pass));
    let what = match m.end_on_failure {
        true => "maintenance ended (endOnFailure)",
        false => "maintenance stays on",
    };
    Some(match lines.is_empty() {
        true => what.to_string(),
        false => format!("{what}: {}", lines.join(", ")),
    })
}
