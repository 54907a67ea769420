//! The on-call view behind `lifeboat status`: per BackupPolicy, the last
//! backup and its age against the RPO objective, the next backup, the last
//! restore drill and its measured RTO against the RTO objective, the recovery
//! window and what is wrong. Pure: it takes the policies and the clock;
//! `commands::status` reads the cluster.
//!
//! Ages and breaches are computed here from `now`, not copied from the
//! controller's conditions: on the bad day the controller may be the thing
//! that is down, and a status written hours ago would read as fresh.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::conditions::{find, from_time, reasons, types};
use crate::api::policy::RecoveryWindow;
use crate::api::run::format_duration;
use crate::api::{BackupPolicy, Tier};

pub mod page;
mod table;
#[cfg(test)]
mod tests;

pub use page::render as page;
pub use table::{health, table};

/// One policy's line of the on-call table (and its `-o json` object).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub namespace: String,
    pub name: String,
    pub suspended: bool,
    /// What the policy backs up, as its status says (`postgres/logical`,
    /// `config`, `config/objects+secretsmanager+ssm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupView>,
    /// The RPO objective as written in the spec (`1h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    pub rpo_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillView>,
    /// The RTO objective as written in the spec (`4h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<String>,
    pub rto_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<RecoveryWindow>,
    /// True when `problems` is empty.
    pub healthy: bool,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    pub completed_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub tier: Tier,
    pub run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// A file backup's figures (volume policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::api::run::FileCounts>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillView {
    pub completed_at: DateTime<Utc>,
    pub succeeded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Something the person on call has to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// The controller has not written a status (not running, or behind).
    NoStatus,
    /// The status describes an older generation of the spec.
    StatusStale,
    /// The spec is invalid or refers to something missing.
    NotReady,
    NoBackupYet,
    BackupFailed,
    RpoBreached,
    DrillFailed,
    RtoBreached,
}

impl ProblemKind {
    /// The short words of the HEALTH column.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::NoStatus => "NO STATUS",
            ProblemKind::StatusStale => "STALE",
            ProblemKind::NotReady => "NOT READY",
            ProblemKind::NoBackupYet => "NO BACKUP",
            ProblemKind::BackupFailed => "BACKUP FAILED",
            ProblemKind::RpoBreached => "RPO BREACHED",
            ProblemKind::DrillFailed => "DRILL FAILED",
            ProblemKind::RtoBreached => "RTO BREACHED",
        }
    }
}

fn problem(kind: ProblemKind, message: impl Into<String>) -> Problem {
    Problem {
        kind,
        message: message.into(),
    }
}

/// The on-call view of each policy, sorted by namespace and name.
pub fn summarize(policies: &[BackupPolicy], now: DateTime<Utc>) -> Vec<PolicyStatus> {
    let mut out: Vec<PolicyStatus> = policies.iter().map(|p| one(p, now)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn one(policy: &BackupPolicy, now: DateTime<Utc>) -> PolicyStatus {
    let spec = &policy.spec;
    let status = policy.status.clone().unwrap_or_default();
    let objectives = spec.objectives.clone().unwrap_or_default();
    let mut problems = Vec::new();

    if policy.status.is_none() {
        problems.push(problem(
            ProblemKind::NoStatus,
            "the controller has written no status: is `lifeboat controller` running?",
        ));
    } else if let (Some(seen), Some(current)) =
        (status.observed_generation, policy.metadata.generation)
    {
        if seen < current {
            problems.push(problem(
                ProblemKind::StatusStale,
                format!("status is for generation {seen} of the spec, which is at {current}: the controller is behind or down"),
            ));
        }
    }
    if let Some(ready) = find(&status.conditions, types::READY) {
        if ready.status == "False" {
            problems.push(problem(
                ProblemKind::NotReady,
                format!("{}: {}", ready.reason, ready.message),
            ));
        }
    }
    match find(&status.conditions, types::HEALTHY) {
        Some(h) if h.status == "False" && h.reason == reasons::BACKUP_FAILED => {
            problems.push(problem(ProblemKind::BackupFailed, h.message.clone()))
        }
        _ if status.last_backup.is_none() && policy.status.is_some() => problems.push(problem(
            ProblemKind::NoBackupYet,
            "no backup has succeeded yet",
        )),
        _ => {}
    }

    let last_backup = status.last_backup.as_ref().map(|b| BackupView {
        completed_at: b.completed_at,
        age_seconds: (now - b.completed_at).num_seconds(),
        tier: b.tier,
        run: b.run.clone(),
        backup_id: b.backup_id.clone(),
        bytes: b.bytes,
        files: b.files.clone(),
    });

    // As the controller does: the RPO clock starts at the newest recovery
    // point (with WAL archiving, the last WAL archived after the newest
    // backup), or at the policy's creation when there is none (one RPO of grace).
    let point = status.recovery_point();
    let rpo_breached = match spec.rpo() {
        None => false,
        Some(rpo) => {
            let since = point
                .map(|p| p.at)
                .or_else(|| policy.metadata.creation_timestamp.as_ref().map(from_time));
            let breached = since.is_some_and(|since| now - since > rpo);
            if breached {
                let text = objectives.rpo.clone().unwrap_or_default();
                problems.push(problem(
                    ProblemKind::RpoBreached,
                    match point {
                        Some(p) => format!(
                            "{} is {} old; the RPO objective is {text}",
                            if p.by_wal { "the newest archived WAL" } else { "the newest backup" },
                            format_duration(now - p.at)
                        ),
                        None => format!("no backup within the RPO objective of {text} since the policy was created"),
                    },
                ));
            }
            breached
        }
    };

    let last_drill = status.last_drill.as_ref().map(|d| DrillView {
        completed_at: d.completed_at,
        succeeded: d.succeeded,
        recovery_time_seconds: d.recovery_time_seconds,
        restore_request: d.restore_request.clone(),
        message: d.message.clone(),
    });
    if let Some(d) = last_drill.as_ref().filter(|d| !d.succeeded) {
        let request = status
            .last_drill
            .as_ref()
            .map(|l| l.run.clone())
            .unwrap_or_default();
        problems.push(problem(
            ProblemKind::DrillFailed,
            format!(
                "drill {request} failed: {}",
                d.message.as_deref().unwrap_or("no message")
            ),
        ));
    }
    let rto_breached = match (
        spec.rto(),
        last_drill.as_ref().and_then(|d| d.recovery_time_seconds),
    ) {
        (Some(rto), Some(secs)) if secs > rto.num_seconds() => {
            problems.push(problem(
                ProblemKind::RtoBreached,
                format!(
                    "the last drill took {} to a verified database; the RTO objective is {}",
                    format_duration(chrono::Duration::seconds(secs)),
                    objectives.rto.clone().unwrap_or_default()
                ),
            ));
            true
        }
        _ => false,
    };

    PolicyStatus {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        suspended: spec.suspend,
        source: status.source_kind.clone(),
        last_backup,
        rpo: objectives.rpo,
        rpo_breached,
        next_backup: if spec.suspend {
            None
        } else {
            status.next_backup
        },
        last_drill,
        rto: objectives.rto,
        rto_breached,
        recovery_window: status.recovery_window,
        healthy: problems.is_empty(),
        problems,
    }
}
