//! Which notifications a reconcile sends (pure); the notify Jobs
//! ([`super::jobs::notify`]) send them.
//!
//! Every notification has an *incident*: a text naming the one occurrence
//! it is about (a run, a breach that started at an instant and its n-th
//! repeat, the end of a problem that started at an instant). The incident
//! names the notify Job, so a decision taken again — after a restart, on a
//! stale cache — creates nothing new. Decisions are taken on transitions
//! (a run that just finished, a condition that just changed, seen against
//! the status as last written), so a notify Job that Kubernetes removed
//! later is not sent again; a breach's repeats are the one level-triggered
//! case, and their Jobs outlive their repeat interval.
//!
//! The dedup key groups a problem's trigger with the resolve that ends it
//! (PagerDuty): one per policy and kind of problem.

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::api::conditions::{find, from_time, reasons, types};
use crate::api::policy::NotificationEvent;
use crate::api::restore::{RestorePhase, RestoreRequestStatus};
use crate::api::{
    ApplicationRestore, BackupPolicy, BackupPolicyStatus, BackupRun, BackupRunStatus,
    RestoreRequest, RunPhase,
};
use crate::controller::restore::is_drill;
use crate::wire::{Notification, NotifyEvent};

/// A notification and the incident that names its Job.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub notification: Notification,
    pub incident: String,
}

/// The problems a policy can have, as dedup keys name them.
pub mod problem {
    pub const BACKUP: &str = "backup";
    pub const OBJECTIVE: &str = "objective";
    pub const DRILL: &str = "drill";
    pub const RESTORE: &str = "restore";
}

/// The dedup key of one kind of problem of a policy: its trigger and the
/// resolve that ends it share it (`lifeboat/<ns>/<policy>/<problem>`).
pub fn dedup_key(policy: &BackupPolicy, problem: &str) -> String {
    format!(
        "lifeboat/{}/{}/{problem}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

fn wants(policy: &BackupPolicy, e: NotificationEvent) -> bool {
    policy
        .spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.wants(e))
}

fn note(
    policy: &BackupPolicy,
    event: NotifyEvent,
    subject: Option<String>,
    summary: String,
    dedup_key: String,
    at: DateTime<Utc>,
) -> Notification {
    Notification {
        event,
        namespace: policy.namespace().unwrap_or_default(),
        policy: policy.name_any(),
        subject,
        summary,
        dedup_key,
        at,
    }
}

fn failed(run: &BackupRun) -> bool {
    run.status
        .as_ref()
        .is_some_and(|s| s.phase == RunPhase::Failed)
}

fn succeeded(run: &BackupRun) -> bool {
    run.status
        .as_ref()
        .is_some_and(|s| s.phase == RunPhase::Succeeded)
}

fn completed(run: &BackupRun) -> Option<DateTime<Utc>> {
    run.status.as_ref()?.completed_at
}

/// True when a failure at `at` is the first of its repeat interval in its
/// streak: the failures since the last success, counted in intervals from
/// the first of them. `others` are the policy's other runs.
fn first_in_interval(at: DateTime<Utc>, others: &[&BackupRun], repeat: chrono::Duration) -> bool {
    let last_success = others
        .iter()
        .filter(|r| succeeded(r))
        .filter_map(|r| completed(r))
        .filter(|t| *t <= at)
        .max();
    let earlier: Vec<DateTime<Utc>> = others
        .iter()
        .filter(|r| failed(r))
        .filter_map(|r| completed(r))
        .filter(|t| *t < at && last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(start) = earlier.iter().min().copied() else {
        return true;
    };
    let bucket = |t: DateTime<Utc>| (t - start).num_seconds() / repeat.num_seconds().max(1);
    earlier.iter().all(|t| bucket(*t) < bucket(at))
}

/// The notification of a run that has just finished (`new` is its status
/// after this reconcile; the run's own status is the one before).
pub fn for_run(
    policy: &BackupPolicy,
    run: &BackupRun,
    new: &BackupRunStatus,
    others: &[&BackupRun],
) -> Option<Outgoing> {
    let was_finished = run.status.as_ref().is_some_and(|s| s.phase.is_finished());
    if was_finished || !new.phase.is_finished() {
        return None;
    }
    let at = new.completed_at?;
    let name = run.name_any();
    let incident = format!("run/{name}/{}", run.uid().unwrap_or_default());
    let n = match new.phase {
        RunPhase::Failed => {
            if !wants(policy, NotificationEvent::RunFailed) {
                return None;
            }
            let repeat = policy.spec.notifications.as_ref()?.repeat();
            if repeat.is_some_and(|r| !first_in_interval(at, others, r)) {
                return None;
            }
            let why = new
                .message
                .clone()
                .unwrap_or_else(|| "the Job failed".into());
            note(
                policy,
                NotifyEvent::RunFailed,
                Some(name.clone()),
                format!("run {name} failed: {why}"),
                dedup_key(policy, problem::BACKUP),
                at,
            )
        }
        _ => {
            if !wants(policy, NotificationEvent::Succeeded) {
                return None;
            }
            let id = new.backup_id.clone().unwrap_or_default();
            note(
                policy,
                NotifyEvent::Succeeded,
                Some(name.clone()),
                format!("run {name} committed backup {id}"),
                dedup_key(policy, problem::BACKUP),
                at,
            )
        }
    };
    Some(Outgoing {
        notification: n,
        incident,
    })
}

/// The notification of a RestoreRequest (not a drill: drills report as
/// `drillFailed`) that has just finished; `new` is its status after this
/// reconcile.
pub fn for_restore(
    policy: &BackupPolicy,
    request: &RestoreRequest,
    new: &RestoreRequestStatus,
) -> Option<Outgoing> {
    let finished = |p: RestorePhase| matches!(p, RestorePhase::Succeeded | RestorePhase::Failed);
    let was = request.status.as_ref().is_some_and(|s| finished(s.phase));
    // A part of an application restore: the application's summary says it.
    let part = request
        .labels()
        .contains_key(crate::controller::app_restore::APP_LABEL);
    if was || !finished(new.phase) || is_drill(request) || part {
        return None;
    }
    if !wants(policy, NotificationEvent::RestoreFinished) {
        return None;
    }
    let name = request.name_any();
    let summary = match (new.phase, new.recovery_time_seconds) {
        (RestorePhase::Failed, _) => format!(
            "restore {name} failed: {}",
            new.message.clone().unwrap_or_default()
        ),
        (_, Some(rto)) => format!("restore {name} succeeded: verified database after {rto} s"),
        (_, None) => format!("restore {name} succeeded (dry run: plan only)"),
    };
    Some(Outgoing {
        notification: note(
            policy,
            NotifyEvent::RestoreFinished,
            Some(name.clone()),
            summary,
            dedup_key(policy, problem::RESTORE),
            new.completed_at.unwrap_or_default(),
        ),
        incident: format!("restore/{name}/{}", request.uid().unwrap_or_default()),
    })
}

/// The summary of an application restore that just finished, sent through
/// its parts' policies: to each target that wants `restoreFinished` once,
/// however many of the policies name it. Returns each policy (its targets
/// cut to those it sends to) with its notification.
pub fn for_application(
    policies: &[&BackupPolicy],
    app: &ApplicationRestore,
    outcome: &crate::controller::app_restore::Outcome,
    at: DateTime<Utc>,
) -> Vec<(BackupPolicy, Outgoing)> {
    let name = app.name_any();
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut out = Vec::new();
    for policy in policies {
        let Some(n) = policy.spec.notifications.as_ref() else {
            continue;
        };
        let mut targets = Vec::new();
        for t in &n.targets {
            if !t.wants(NotificationEvent::RestoreFinished) {
                continue;
            }
            // Where it goes, whatever the policy calls it.
            let mut key = serde_json::to_value(t).unwrap_or_default();
            if let Some(o) = key.as_object_mut() {
                o.remove("name");
                o.remove("events");
            }
            if !seen.contains(&key) {
                seen.push(key);
                targets.push(t.clone());
            }
        }
        if targets.is_empty() {
            continue;
        }
        let mut sender = (*policy).clone();
        if let Some(n) = sender.spec.notifications.as_mut() {
            n.targets = targets;
        }
        let notification = note(
            &sender,
            NotifyEvent::RestoreFinished,
            Some(name.clone()),
            outcome.summary.clone(),
            format!(
                "lifeboat/{}/{name}/application-restore",
                app.namespace().unwrap_or_default()
            ),
            at,
        );
        let incident = format!(
            "application-restore/{name}/{}",
            app.uid().unwrap_or_default()
        );
        out.push((
            sender,
            Outgoing {
                notification,
                incident,
            },
        ));
    }
    out
}

fn condition_true(s: &BackupPolicyStatus, type_: &str) -> bool {
    find(&s.conditions, type_).is_some_and(|c| c.status == "True")
}

/// Healthy False because a backup failed (not merely none yet).
fn failing(
    s: &BackupPolicyStatus,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    find(&s.conditions, types::HEALTHY).filter(|c| {
        c.status == "False"
            && [reasons::BACKUP_FAILED, reasons::VERIFICATION_FAILED].contains(&c.reason.as_str())
    })
}

/// The notifications of a policy whose status goes from `old` to `new`:
/// a breach that began (and its repeats while it lasts), and the recovery
/// from a breach or from failed backups. `breach_at` is when the RPO ran
/// out (from the policy's decision).
pub fn for_policy(
    policy: &BackupPolicy,
    old: &BackupPolicyStatus,
    new: &BackupPolicyStatus,
    breach_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let Some(notifications) = policy.spec.notifications.as_ref() else {
        return out;
    };
    let breached = condition_true(new, types::OBJECTIVE_BREACHED);
    if let (true, Some(at)) = (breached, breach_at) {
        let began = !condition_true(old, types::OBJECTIVE_BREACHED);
        let repeat = notifications
            .repeat()
            .map_or(0, |r| (now - at).num_seconds() / r.num_seconds().max(1));
        if (began || repeat > 0) && wants(policy, NotificationEvent::ObjectiveBreached) {
            let message = find(&new.conditions, types::OBJECTIVE_BREACHED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            out.push(Outgoing {
                notification: note(
                    policy,
                    NotifyEvent::ObjectiveBreached,
                    None,
                    message,
                    dedup_key(policy, problem::OBJECTIVE),
                    now,
                ),
                incident: format!("breach/{}/{repeat}", at.to_rfc3339()),
            });
        }
    }
    out.extend(drill_failed(policy, old, new));
    if !wants(policy, NotificationEvent::Recovered) {
        return out;
    }
    // Each problem that cleared, named after when it began.
    let healthy = find(&new.conditions, types::HEALTHY);
    let recoveries = [
        (
            find(&old.conditions, types::OBJECTIVE_BREACHED)
                .filter(|c| c.status == "True" && !breached),
            problem::OBJECTIVE,
            "the RPO objective is met again".to_string(),
        ),
        (
            failing(old).filter(|_| healthy.is_some_and(|h| h.status == "True")),
            problem::BACKUP,
            format!(
                "backups succeed again: {}",
                healthy.map(|h| h.message.as_str()).unwrap_or_default()
            ),
        ),
        (
            find(&old.conditions, types::DRILL_PASSED)
                .filter(|c| c.status == "False" && condition_true(new, types::DRILL_PASSED)),
            problem::DRILL,
            "restore drills pass again".to_string(),
        ),
    ];
    for (cleared, problem, summary) in recoveries {
        let Some(c) = cleared else { continue };
        let began = from_time(&c.last_transition_time).to_rfc3339();
        out.push(Outgoing {
            notification: note(
                policy,
                NotifyEvent::Recovered,
                None,
                summary,
                dedup_key(policy, problem),
                now,
            ),
            incident: format!("recovered/{problem}/{began}"),
        });
    }
    out
}

/// A drill that has just become the policy's last drill, and failed.
fn drill_failed(
    policy: &BackupPolicy,
    old: &BackupPolicyStatus,
    new: &BackupPolicyStatus,
) -> Option<Outgoing> {
    let last = new.last_drill.as_ref().filter(|d| !d.succeeded)?;
    let seen = old.last_drill.as_ref().is_some_and(|d| d.run == last.run);
    if seen || !wants(policy, NotificationEvent::DrillFailed) {
        return None;
    }
    let why = last
        .message
        .clone()
        .unwrap_or_else(|| "the restore failed".into());
    Some(Outgoing {
        notification: note(
            policy,
            NotifyEvent::DrillFailed,
            Some(last.run.clone()),
            format!("restore drill {} failed: {why}", last.run),
            dedup_key(policy, problem::DRILL),
            last.completed_at,
        ),
        incident: format!("drill/{}", last.run),
    })
}

#[cfg(test)]
mod tests;
