//! BackupPolicy reconcile: [`decide`] turns a policy, its runs and the clock
//! into a [`PolicyPlan`] (the run to create, the runs retention deletes, the
//! new status, the events); [`reconcile`] observes and applies it.
//!
//! Runs are created one at a time: a run in progress (Pending or Running)
//! blocks the next, and when several tiers are due the oldest slot goes
//! first. Names are derived from (policy, tier, slot), so a repeated decision
//! (a restart, a stale cache, a second replica) meets "already exists".
//! Retention deletes an expired run with `deletionPolicy: Delete` (set,
//! with the `lifeboat.dev/prune` finalizer, just before the delete): the run
//! controller prunes its backup before the finalizer lets it go. Runs are
//! created with `Retain`, so a run deleted by anyone else keeps its backup.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::ResourceExt;

use super::{Note, POLICY_LABEL, TIER_LABEL};
use crate::api::conditions::{reasons, set_condition, types, ConditionUpdate};
use crate::api::policy::{LastBackup, RecoveryWindow, TierTimes};
use crate::api::{
    join_errors, BackupPolicy, BackupPolicyStatus, BackupRun, BackupRunSpec, DeletionPolicy,
    LocalRef, RunKind, RunPhase, Tier,
};
use crate::schedule::{expired_runs, Expired, RunRecord};

/// What a reconcile of one policy should do.
#[derive(Clone, Debug)]
pub struct PolicyPlan {
    /// At most one run to create.
    pub create: Option<BackupRun>,
    /// Runs retention lets go (deleted with `deletionPolicy: Delete`, so
    /// their deletion starts the prune).
    pub delete: Vec<Expired>,
    /// The new status; `None` when it equals the current one.
    pub status: Option<BackupPolicyStatus>,
    pub events: Vec<Note>,
    /// `None`: wait for a change (a bad spec).
    pub requeue_after: Option<Duration>,
    /// When the RPO runs (or ran) out, with an objective set.
    pub rpo_deadline: Option<DateTime<Utc>>,
}

fn is_deleting(run: &BackupRun) -> bool {
    run.metadata.deletion_timestamp.is_some()
}

fn phase(run: &BackupRun) -> RunPhase {
    run.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn completed_at(run: &BackupRun) -> Option<DateTime<Utc>> {
    run.status.as_ref()?.completed_at
}

/// Whether a change of one of a policy's runs can change what [`decide`]
/// makes of them. A run in progress (neither finished nor being deleted)
/// counts for its name, spec and retention record alone: the status a run
/// writes while its Job works (the Job's name, its start, its pod's
/// trouble) is read only once it finishes, and waking the policy on each
/// such write cost a policy reconcile per run update (docs/BENCHMARKS.md,
/// "Fewer reconciles").
pub fn run_change_matters(before: &BackupRun, after: &BackupRun) -> bool {
    let in_progress = |r: &BackupRun| !is_deleting(r) && !phase(r).is_finished();
    !(in_progress(before)
        && in_progress(after)
        && before.spec == after.spec
        && before.run_record() == after.run_record())
}

/// Per tier, the later of the status's record and what `at` says of each
/// run: a status write may have been lost, and runs are deleted (retention,
/// a person) while the record stays.
fn newest_per_tier(
    recorded: &TierTimes,
    runs: &[&BackupRun],
    at: impl Fn(&BackupRun) -> Option<DateTime<Utc>>,
) -> TierTimes {
    let mut times = recorded.clone();
    for run in runs {
        if let Some(at) = at(run) {
            let tier = run.spec.tier;
            if times.get(tier).is_none_or(|t| t < at) {
                times.set(tier, Some(at));
            }
        }
    }
    times
}

/// When a run completed a backup, if it did.
fn succeeded_at(run: &BackupRun) -> Option<DateTime<Utc>> {
    (run.spec.kind == RunKind::Full && phase(run) == RunPhase::Succeeded)
        .then(|| completed_at(run))
        .flatten()
}

/// The BackupRun object for a due slot. Scheduled runs keep their backup
/// when deleted by anyone but retention (`deletionPolicy: Retain`).
pub fn scheduled_run(
    policy: &BackupPolicy,
    name: &str,
    tier: Tier,
    at: DateTime<Utc>,
) -> BackupRun {
    let labels = BTreeMap::from([
        (POLICY_LABEL.to_string(), policy.name_any()),
        (TIER_LABEL.to_string(), tier.to_string()),
    ]);
    BackupRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: policy.namespace(),
            labels: Some(labels),
            ..Default::default()
        },
        spec: BackupRunSpec {
            policy_ref: LocalRef::new(policy.name_any()),
            tier,
            kind: RunKind::Full,
            scheduled_at: Some(at),
            deletion_policy: DeletionPolicy::Retain,
        },
        status: None,
    }
}

/// Decides what to do for one policy. Pure: `runs` are the policy's runs as
/// observed, `now` the clock, `resync` the longest wait before looking again.
pub fn decide(
    policy: &BackupPolicy,
    runs: &[&BackupRun],
    now: DateTime<Utc>,
    resync: Duration,
) -> PolicyPlan {
    let old = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    status.source_kind = Some(policy.spec.source.summary());

    // The spec is read once, here; everything below acts on its typed form.
    let valid = match policy.validated() {
        Ok(v) => v,
        Err(errors) => {
            // Nothing is scheduled or deleted on a spec we cannot read.
            let message = join_errors(&errors);
            let ready = ConditionUpdate {
                type_: types::READY,
                status: false,
                reason: reasons::INVALID_SPEC,
                message,
                observed_generation: generation,
            };
            set_condition(&mut status.conditions, ready, now);
            return PolicyPlan {
                create: None,
                delete: Vec::new(),
                events: condition_events(&old.conditions, &status.conditions),
                status: (status != old).then_some(status),
                requeue_after: None,
                rpo_deadline: None,
            };
        }
    };

    let name = &valid.name;
    let schedule = &valid.schedule;
    let mut events = Vec::new();
    // The slot of the newest run made per tier.
    let mut last = newest_per_tier(&old.last_scheduled, runs, |r| r.spec.scheduled_at);
    let in_progress = runs
        .iter()
        .find(|r| !is_deleting(r) && !phase(r).is_finished());

    let mut create = None;
    if !policy.spec.suspend && in_progress.is_none() {
        let since = policy
            .metadata
            .creation_timestamp
            .as_ref()
            .map(crate::api::conditions::from_time)
            .unwrap_or(now);
        let mut due = schedule.due_runs(name, &last.slots(), since, now);
        // Oldest slot first; the others stay due until this run finishes.
        due.sort_by_key(|d| (d.scheduled_at, d.tier));
        if let Some(first) = due.into_iter().next() {
            let exists = runs.iter().any(|r| r.name_any() == first.name);
            last.set(first.tier, Some(first.scheduled_at));
            if !exists {
                events.push(Note::normal(
                    "Scheduled",
                    "CreateRun",
                    format!(
                        "created run {} for the {} slot {}",
                        first.name,
                        first.tier,
                        first.scheduled_at.to_rfc3339()
                    ),
                ));
                create = Some(scheduled_run(
                    policy,
                    &first.name,
                    first.tier,
                    first.scheduled_at,
                ));
            }
        }
    }
    status.last_scheduled = last;

    // Retention looks at runs not already on their way out.
    let live: Vec<&BackupRun> = runs.iter().copied().filter(|r| !is_deleting(r)).collect();
    let records: Vec<RunRecord> = live.iter().map(|r| r.run_record()).collect();
    let delete = expired_runs(&records, &policy.spec.retention.counts());
    for expired in &delete {
        events.push(Note::normal(
            "Expired",
            "DeleteRun",
            format!("deleting run {}: {}", expired.name, expired.reason),
        ));
    }
    let kept: Vec<&BackupRun> = live
        .into_iter()
        .filter(|r| !delete.iter().any(|e| e.name == r.name_any()))
        .collect();

    status.next_backups = if policy.spec.suspend {
        TierTimes::default()
    } else {
        schedule.next_backups(now).into()
    };
    status.next_backup = status.next_backups.earliest();

    let successes: Vec<&&BackupRun> = kept
        .iter()
        .filter(|r| r.spec.kind == RunKind::Full && phase(r) == RunPhase::Succeeded)
        .filter(|r| completed_at(r).is_some())
        .collect();
    let newest_success = successes
        .iter()
        .max_by_key(|r| (completed_at(r), r.name_any()))
        .copied();
    status.last_backup = newest_success.map(|r| {
        let s = r.status.as_ref().expect("a succeeded run has a status");
        Box::new(LastBackup {
            run: r.name_any(),
            tier: r.spec.tier,
            completed_at: s.completed_at.expect("filtered above"),
            bytes: s.bytes,
            backup_id: s.backup_id.clone(),
            files: s.source.as_ref().and_then(|src| src.files.clone()),
        })
    });
    status.last_backups = newest_per_tier(&old.last_backups, runs, succeeded_at);
    status.recovery_window = newest_success.map(|newest| RecoveryWindow {
        from: successes
            .iter()
            .filter_map(|r| completed_at(r))
            .min()
            .expect("at least the newest"),
        to: completed_at(newest).expect("filtered above"),
    });

    let (ready_reason, ready_message) = if policy.spec.suspend {
        (
            reasons::SUSPENDED,
            "suspended: no runs are scheduled".to_string(),
        )
    } else {
        (reasons::RECONCILED, "the spec is valid".to_string())
    };
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: types::READY,
            status: true,
            reason: ready_reason,
            message: ready_message,
            observed_generation: generation,
        },
        now,
    );

    let newest_finished = kept
        .iter()
        .filter(|r| r.spec.kind == RunKind::Full && phase(r).is_finished())
        .max_by_key(|r| (completed_at(r), r.name_any()));
    let healthy = match newest_finished {
        None => (
            false,
            reasons::NO_BACKUP_YET,
            "no backup has finished yet".to_string(),
        ),
        Some(r) if phase(r) == RunPhase::Succeeded => (
            true,
            reasons::BACKUP_SUCCEEDED,
            format!("run {} succeeded", r.name_any()),
        ),
        Some(r) => (
            false,
            // A failed read-back is its own reason: the data may be damaged.
            if r.status.as_ref().is_some_and(|s| {
                crate::api::conditions::find(&s.conditions, types::VERIFIED)
                    .is_some_and(|c| c.status == "False")
            }) {
                reasons::VERIFICATION_FAILED
            } else {
                reasons::BACKUP_FAILED
            },
            format!(
                "run {} failed: {}",
                r.name_any(),
                r.status
                    .as_ref()
                    .and_then(|s| s.message.clone())
                    .unwrap_or_default()
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: types::HEALTHY,
            status: healthy.0,
            reason: healthy.1,
            message: healthy.2,
            observed_generation: generation,
        },
        now,
    );

    // The RPO clock starts at the newest recovery point (the newest success,
    // or the last WAL archived after it), or at the policy's creation when
    // there is none yet (a new policy has one RPO of grace).
    let mut breach_at = None;
    let mut rpo_deadline = None;
    let point = status.recovery_point();
    let what = if point.is_some_and(|p| p.by_wal) {
        "the newest archived WAL"
    } else {
        "the newest successful backup"
    };
    let objective = match valid.rpo {
        None => (
            false,
            reasons::NO_OBJECTIVE,
            "no RPO objective is set".to_string(),
        ),
        Some(rpo) => {
            let since = point
                .map(|p| p.at)
                .or_else(|| {
                    policy
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(crate::api::conditions::from_time)
                })
                .unwrap_or(now);
            rpo_deadline = Some(since + rpo);
            let rpo_text = policy
                .spec
                .objectives
                .as_ref()
                .and_then(|o| o.rpo.clone())
                .unwrap_or_default();
            if now - since > rpo {
                (
                    true,
                    reasons::RPO_EXCEEDED,
                    format!(
                        "{what} is older than the RPO of {rpo_text} (since {})",
                        since.to_rfc3339()
                    ),
                )
            } else {
                breach_at = Some(since + rpo);
                (
                    false,
                    reasons::WITHIN_OBJECTIVE,
                    format!("{what} is within the RPO of {rpo_text}"),
                )
            }
        }
    };
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: types::OBJECTIVE_BREACHED,
            status: objective.0,
            reason: objective.1,
            message: objective.2,
            observed_generation: generation,
        },
        now,
    );

    events.extend(condition_events(&old.conditions, &status.conditions));

    // Look again at the next slot or RPO deadline, and at least every resync.
    let wake = [status.next_backup, breach_at]
        .into_iter()
        .flatten()
        .filter_map(|at| (at - now).to_std().ok())
        .min()
        .unwrap_or(resync)
        .clamp(resync.min(Duration::from_secs(1)), resync);

    PolicyPlan {
        create,
        delete,
        status: (status != old).then_some(status),
        events,
        requeue_after: Some(wake),
        rpo_deadline,
    }
}

/// An event for each condition that changed status or reason: a transition.
/// A bad state (Ready false, Healthy false after a failure, ObjectiveBreached
/// true) is a warning. A condition's first, good state is no news: a new
/// policy does not announce three times that all is well.
pub(crate) fn condition_events(old: &[Condition], new: &[Condition]) -> Vec<Note> {
    new.iter()
        .filter_map(|c| {
            let before = old.iter().find(|o| o.type_ == c.type_);
            if before.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
                return None;
            }
            let bad = match c.type_.as_str() {
                types::OBJECTIVE_BREACHED => c.status == "True",
                types::HEALTHY => c.status == "False" && c.reason != reasons::NO_BACKUP_YET,
                _ => c.status == "False",
            };
            if before.is_none() && !bad {
                return None;
            }
            let note = if bad { Note::warning } else { Note::normal };
            Some(note(
                &c.reason,
                "UpdateStatus",
                format!("{}: {}", c.type_, c.message),
            ))
        })
        .collect()
}

mod reconcile;
pub use reconcile::reconcile;

#[cfg(test)]
mod tests;
