//! Status conditions in the Kubernetes convention: the type and reason names
//! lifeboat uses, and [`set_condition`], which keeps `lastTransitionTime` when a
//! condition's status did not change and reports whether anything changed, so
//! the controller can skip a status write that would only wake itself up.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// The spec is valid and everything it refers to was found.
    pub const READY: &str = "Ready";
    /// The newest backup succeeded and its verification passed.
    pub const HEALTHY: &str = "Healthy";
    /// The newest successful backup is older than the policy's RPO objective.
    pub const OBJECTIVE_BREACHED: &str = "ObjectiveBreached";
    /// Every artifact of a run was read back and matched its SHA-256.
    pub const VERIFIED: &str = "Verified";
    /// The newest restore drill restored and passed its checks.
    pub const DRILL_PASSED: &str = "DrillPassed";
    /// Continuous WAL archiving works (policies with point-in-time recovery).
    pub const WAL_ARCHIVING: &str = "WalArchiving";
    /// A run or restore finished (successfully or not).
    pub const COMPLETE: &str = "Complete";
}

/// Condition reasons (CamelCase, as the API convention asks).
pub mod reasons {
    pub const RECONCILED: &str = "Reconciled";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// A config policy's service account may not list what it names.
    pub const MISSING_PERMISSION: &str = "MissingPermission";
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    pub const UNKNOWN_DESTINATION: &str = "UnknownDestination";
    pub const SUSPENDED: &str = "Suspended";
    pub const NO_BACKUP_YET: &str = "NoBackupYet";
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    pub const BACKUP_FAILED: &str = "BackupFailed";
    pub const WITHIN_OBJECTIVE: &str = "WithinObjective";
    pub const RPO_EXCEEDED: &str = "RpoExceeded";
    pub const NO_OBJECTIVE: &str = "NoObjective";
    pub const JOB_CREATED: &str = "JobCreated";
    pub const JOB_RUNNING: &str = "JobRunning";
    pub const JOB_SUCCEEDED: &str = "JobSucceeded";
    pub const JOB_FAILED: &str = "JobFailed";
    pub const CHECKSUM_MATCHED: &str = "ChecksumMatched";
    pub const CHECKSUM_MISMATCH: &str = "ChecksumMismatch";
    /// A backup committed but its read-back (`verification.readBack`) failed.
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    pub const DRILL_SUCCEEDED: &str = "DrillSucceeded";
    pub const DRILL_FAILED: &str = "DrillFailed";
    pub const ARCHIVING: &str = "Archiving";
    pub const ARCHIVER_STARTING: &str = "ArchiverStarting";
    pub const ARCHIVER_UNREACHABLE: &str = "ArchiverUnreachable";
    pub const ARCHIVE_LAGGING: &str = "ArchiveLagging";
}

/// The new state of one condition; [`set_condition`] supplies the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
    pub observed_generation: Option<i64>,
}

/// Converts a chrono instant to the API's `Time`.
pub fn to_time(at: DateTime<Utc>) -> Time {
    // Every DateTime<Utc> chrono can hold after year 0 is within jiff's range;
    // the fallback only guards the extremes.
    let ts = k8s_openapi::jiff::Timestamp::new(at.timestamp(), at.timestamp_subsec_nanos() as i32)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// Converts the API's `Time` to a chrono instant.
pub fn from_time(time: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond() as u32)
        .unwrap_or_default()
}

fn status_str(status: bool) -> &'static str {
    if status {
        "True"
    } else {
        "False"
    }
}

/// Sets one condition, adding it when absent. `lastTransitionTime` moves to
/// `now` only when the status changes. Returns whether the list changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    now: DateTime<Utc>,
) -> bool {
    let status = status_str(update.status);
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let unchanged = existing.status == status
                && existing.reason == update.reason
                && existing.message == update.message
                && existing.observed_generation == update.observed_generation;
            if unchanged {
                return false;
            }
            if existing.status != status {
                existing.last_transition_time = to_time(now);
            }
            existing.status = status.to_string();
            existing.reason = update.reason.to_string();
            existing.message = update.message;
            existing.observed_generation = update.observed_generation;
            true
        }
        None => {
            conditions.push(Condition {
                type_: update.type_.to_string(),
                status: status.to_string(),
                reason: update.reason.to_string(),
                message: update.message,
                observed_generation: update.observed_generation,
                last_transition_time: to_time(now),
            });
            true
        }
    }
}

/// The condition of a type, if present.
/// Sets the `Complete` condition of a run or a restore.
pub fn set_complete(
    conditions: &mut Vec<Condition>,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    set_condition(
        conditions,
        ConditionUpdate {
            type_: types::COMPLETE,
            status: ok,
            reason,
            message,
            observed_generation: generation,
        },
        now,
    )
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn update(status: bool, reason: &str, message: &str) -> ConditionUpdate<'static> {
        ConditionUpdate {
            type_: types::READY,
            status,
            reason: if reason == "a" {
                reasons::RECONCILED
            } else {
                reasons::INVALID_SPEC
            },
            message: message.to_string(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn adds_a_missing_condition_stamped_now() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            update(true, "a", "ok"),
            at("2026-01-01T00:00:00Z")
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_eq!(
            from_time(&conds[0].last_transition_time),
            at("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn same_state_is_no_change_and_keeps_the_time() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            update(true, "a", "ok"),
            at("2026-01-01T00:00:00Z"),
        );
        let before = conds.clone();
        assert!(!set_condition(
            &mut conds,
            update(true, "a", "ok"),
            at("2026-01-02T00:00:00Z")
        ));
        assert_eq!(conds, before);
    }

    #[test]
    fn new_message_with_same_status_keeps_transition_time() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            update(false, "b", "spec.schedule.daily: bad"),
            at("2026-01-01T00:00:00Z"),
        );
        assert!(set_condition(
            &mut conds,
            update(false, "b", "spec.schedule.weekly: bad"),
            at("2026-01-02T00:00:00Z")
        ));
        assert_eq!(conds[0].message, "spec.schedule.weekly: bad");
        assert_eq!(
            from_time(&conds[0].last_transition_time),
            at("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            update(false, "b", "bad"),
            at("2026-01-01T00:00:00Z"),
        );
        assert!(set_condition(
            &mut conds,
            update(true, "a", "ok"),
            at("2026-01-03T00:00:00Z")
        ));
        assert_eq!(conds.len(), 1);
        assert!(is_true(&conds, types::READY));
        assert_eq!(
            from_time(&conds[0].last_transition_time),
            at("2026-01-03T00:00:00Z")
        );
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            update(true, "a", "ok"),
            at("2026-01-01T00:00:00Z"),
        );
        let healthy = ConditionUpdate {
            type_: types::HEALTHY,
            ..update(false, "b", "failed")
        };
        set_condition(&mut conds, healthy, at("2026-01-02T00:00:00Z"));
        assert_eq!(conds.len(), 2);
        assert!(is_true(&conds, types::READY));
        assert!(!is_true(&conds, types::HEALTHY));
        assert!(find(&conds, types::OBJECTIVE_BREACHED).is_none());
    }

    #[test]
    fn time_conversion_round_trips() {
        let t = at("2026-11-25T02:00:00.123456789Z");
        assert_eq!(from_time(&to_time(t)), t);
    }
}
