//! Restore drills, pure: on `verification.restoreDrill.schedule` (cron, in
//! the schedule's time zone) a policy gets a drill RestoreRequest — owned by
//! the policy, labelled [`DRILL_LABEL`], named after its slot — that restores
//! the newest backup into a scratch database on the drill's target, runs the
//! drill's checks and drops the scratch database. The newest finished drill
//! becomes the policy's `status.lastDrill` and its `DrillPassed` condition;
//! drills beyond the last [`KEEP_DRILLS`] finished ones are deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::restore::DRILL_LABEL;
use super::{created_at, Note, POLICY_LABEL};
use crate::api::conditions::{reasons, set_condition, types, ConditionUpdate};
use crate::api::policy::{LastDrill, RestoreDrill, SourceKind};
use crate::api::restore::{PostgresTarget, RestorePhase, RestoreTarget, ScratchTarget};
use crate::api::{BackupPolicy, BackupPolicyStatus, LocalRef, RestoreRequest, RestoreRequestSpec};
use crate::schedule::{parse_time_zone, run_name, CronSchedule};

/// Finished drills kept per policy; older ones are deleted.
pub const KEEP_DRILLS: usize = 3;
/// Annotation on a drill: the schedule slot it was made for.
pub const ANNOTATION_SLOT: &str = "lifeboat.dev/scheduled-at";
const DRILL_FIELD: &str = "spec.verification.restoreDrill.schedule";

#[derive(Clone, Debug, Default)]
pub struct DrillPlan {
    pub create: Option<RestoreRequest>,
    /// Names of old drills to delete.
    pub delete: Vec<String>,
    pub events: Vec<Note>,
    /// The next drill slot, to wake up for.
    pub next: Option<DateTime<Utc>>,
}

fn finished(r: &RestoreRequest) -> Option<(DateTime<Utc>, bool)> {
    let s = r.status.as_ref()?;
    match s.phase {
        RestorePhase::Succeeded => Some((s.completed_at?, true)),
        RestorePhase::Failed => Some((s.completed_at?, false)),
        _ => None,
    }
}

fn slot_of(r: &RestoreRequest) -> Option<DateTime<Utc>> {
    r.annotations().get(ANNOTATION_SLOT)?.parse().ok()
}

/// The scratch database of a policy's drills: `lifeboat_drill_<policy>`,
/// at most 63 bytes, never a name a real database would carry.
pub fn scratch_database(policy: &str) -> String {
    let mut name: String = format!("lifeboat_drill_{}", policy.replace(['-', '.'], "_"));
    name.truncate(63);
    name
}

/// The drill RestoreRequest of `backup_id` for `slot`; `None` while there is
/// no backup.
pub fn drill_request(
    policy: &BackupPolicy,
    backup_id: Option<&str>,
    slot: DateTime<Utc>,
) -> Option<RestoreRequest> {
    let drill = policy.spec.verification.as_ref()?.restore_drill.as_ref()?;
    let backup_id = backup_id?.to_string();
    let owner = policy.controller_owner_ref(&())?;
    let name = policy.name_any();
    let labels = BTreeMap::from([
        (DRILL_LABEL.to_string(), "true".to_string()),
        (POLICY_LABEL.to_string(), name.clone()),
    ]);
    let annotations = BTreeMap::from([(ANNOTATION_SLOT.to_string(), slot.to_rfc3339())]);
    let spec = match super::drill_config::spec(policy, drill, &name, &backup_id) {
        Some(spec) => spec,
        None => chunked_or_postgres_spec(policy, drill, &name, backup_id)?,
    };
    Some(RestoreRequest {
        metadata: ObjectMeta {
            name: Some(run_name(&name, "drill", slot)),
            namespace: policy.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec,
        status: None,
    })
}

/// A drill of the other kinds: files and objects restore into the restore
/// Job's scratch space, a physical backup into a data directory there
/// (recovered to the backup's end and checked); a logical one into the
/// drill's scratch server (which validation requires), checked and dropped.
fn chunked_or_postgres_spec(
    policy: &BackupPolicy,
    drill: &RestoreDrill,
    name: &str,
    backup_id: String,
) -> Option<RestoreRequestSpec> {
    let physical = policy.spec.source.is_physical();
    let scratch = physical
        || matches!(
            policy.spec.source.kind(),
            Some(SourceKind::Volume | SourceKind::Bucket)
        );
    let target = if scratch {
        RestoreTarget {
            scratch: Some(ScratchTarget {
                // The image's server uid and role (the defaults of
                // target.volume); an ApplicationDrill part can name others.
                data_directory: physical.then(Default::default),
            }),
            ..Default::default()
        }
    } else {
        RestoreTarget {
            postgres: Some(PostgresTarget {
                connection_secret_ref: drill.target_secret_ref.clone()?,
                database: Some(scratch_database(name)),
            }),
            ..Default::default()
        }
    };
    Some(RestoreRequestSpec {
        policy_ref: LocalRef::new(name),
        point_in_time: None,
        backup_id: Some(backup_id),
        from: None,
        target,
        checks: drill.checks.clone(),
        dry_run: false,
        overwrite: !scratch,
        drop_after: !scratch,
    })
}

/// True unless the policy's `lastDrill` is another drill that finished
/// later: drills of the policy and application drills of it
/// (`ApplicationDrill`) both write it, and the newest one wins (the name
/// breaks a tie, so the two never take turns).
pub fn is_newest(run: &str, at: DateTime<Utc>, current: Option<&LastDrill>) -> bool {
    current.is_none_or(|c| (c.completed_at, c.run.as_str()) <= (at, run))
}

/// Decides the drills of one policy and writes their result into `status`.
/// Pure. `drills` are the policy's drill RestoreRequests as observed.
pub fn decide(
    policy: &BackupPolicy,
    drills: &[&RestoreRequest],
    status: &mut BackupPolicyStatus,
    now: DateTime<Utc>,
) -> DrillPlan {
    let mut plan = DrillPlan::default();
    let generation = policy.metadata.generation;

    // The newest finished drill is the policy's lastDrill.
    let mut done: Vec<(&RestoreRequest, DateTime<Utc>, bool)> = drills
        .iter()
        .filter_map(|r| finished(r).map(|(at, ok)| (*r, at, ok)))
        .collect();
    done.sort_by_key(|(r, at, _)| std::cmp::Reverse((*at, r.name_any())));
    // An application drill of the policy may have finished after it.
    let newest = done
        .first()
        .filter(|(r, at, _)| is_newest(&r.name_any(), *at, status.last_drill.as_deref()));
    if let Some((r, at, ok)) = newest {
        let s = r.status.as_ref().expect("finished has a status");
        let id = s.plan.as_ref().map(|p| p.backup_id.as_str()).unwrap_or("?");
        let files =
            r.spec.target.scratch.is_some() && r.spec.target.scratch_data_directory().is_none();
        let message = if *ok && files {
            Some(format!(
                "restored backup {id} into scratch space: {} files, {} bytes, every chunk authenticated",
                s.files_restored.unwrap_or(0),
                s.bytes_restored.unwrap_or(0)
            ))
        } else if *ok {
            super::drill_config::passed_message(r).or(Some(format!(
                "restored backup {id} and passed {} check(s)",
                r.spec.checks.len()
            )))
        } else {
            s.message.clone()
        };
        status.last_drill = Some(Box::new(LastDrill {
            run: r.name_any(),
            completed_at: *at,
            succeeded: *ok,
            recovery_time_seconds: s.recovery_time_seconds,
            restore_request: Some(r.name_any()),
            message: message.clone(),
        }));
        set_condition(
            &mut status.conditions,
            ConditionUpdate {
                type_: types::DRILL_PASSED,
                status: *ok,
                reason: if *ok {
                    reasons::DRILL_SUCCEEDED
                } else {
                    reasons::DRILL_FAILED
                },
                message: format!("drill {}: {}", r.name_any(), message.unwrap_or_default()),
                observed_generation: generation,
            },
            now,
        );
    }
    plan.delete = done
        .iter()
        .skip(KEEP_DRILLS)
        .filter(|(r, ..)| r.metadata.deletion_timestamp.is_none())
        .map(|(r, ..)| r.name_any())
        .collect();

    let Some(drill) = policy
        .spec
        .verification
        .as_ref()
        .and_then(|v| v.restore_drill.as_ref())
    else {
        return plan;
    };
    if policy.spec.suspend {
        return plan;
    }
    let Ok(zone) = parse_time_zone("spec.schedule.timeZone", &policy.spec.schedule.time_zone)
    else {
        return plan;
    };
    let Ok(cron) = CronSchedule::parse(DRILL_FIELD, &drill.schedule, zone) else {
        return plan;
    };
    plan.next = cron.next_after(now);
    let in_progress = drills.iter().any(|r| finished(r).is_none());
    let since = drills
        .iter()
        .filter_map(|r| slot_of(r))
        .max()
        .or_else(|| created_at(policy))
        .unwrap_or(now);
    if in_progress {
        return plan;
    }
    if let Some(slot) = cron.latest_between(since, now) {
        let newest = status
            .last_backup
            .as_ref()
            .and_then(|b| b.backup_id.as_deref());
        match drill_request(policy, newest, slot) {
            Some(r) => {
                plan.events.push(Note::normal(
                    "DrillScheduled",
                    "CreateDrill",
                    format!(
                        "created restore drill {} of backup {}",
                        r.name_any(),
                        r.spec.backup_id.clone().unwrap_or_default()
                    ),
                ));
                plan.create = Some(r);
            }
            // No backup yet: the slot stays due until there is one.
            None => {
                let soon = now + chrono::Duration::minutes(1);
                plan.next = Some(plan.next.map_or(soon, |n| n.min(soon)));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::policy::LastBackup;
    use crate::api::restore::RestoreRequestStatus;
    use crate::api::Tier;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn policy(with_backup: bool) -> BackupPolicy {
        let spec = json!({
            "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
            "schedule": {"daily": "0 2 * * *", "timeZone": "Europe/Berlin"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "b"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "verification": {"restoreDrill": {"schedule": "0 6 * * 0",
                "targetSecretRef": {"name": "scratch-db"}, "checks": ["select count(*) > 0 from orders"]}}
        });
        let mut p = BackupPolicy::new("orders-prod", serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("policy-uid".into());
        p.metadata.creation_timestamp =
            Some(crate::api::conditions::to_time(at("2026-11-01T00:00:00Z")));
        if with_backup {
            p.status = Some(BackupPolicyStatus {
                last_backup: Some(Box::new(LastBackup {
                    run: "orders-prod-daily-x".into(),
                    tier: Tier::Daily,
                    completed_at: at("2026-11-21T01:05:00Z"),
                    bytes: None,
                    backup_id: Some("20261121T010000.000Z-abcdef".into()),
                    files: None,
                })),
                ..Default::default()
            });
        }
        p
    }

    fn finished_drill(p: &BackupPolicy, slot: &str, ok: bool, done: &str) -> RestoreRequest {
        let id = p
            .status
            .as_ref()
            .unwrap()
            .last_backup
            .as_ref()
            .unwrap()
            .backup_id
            .as_deref();
        let mut r = drill_request(p, id, at(slot)).unwrap();
        r.status = Some(RestoreRequestStatus {
            phase: if ok {
                RestorePhase::Succeeded
            } else {
                RestorePhase::Failed
            },
            completed_at: Some(at(done)),
            recovery_time_seconds: ok.then_some(42),
            message: (!ok)
                .then(|| "step plan failed: object backups/x/db-0.lbk: tag mismatch".into()),
            ..Default::default()
        });
        r
    }

    #[test]
    fn a_due_slot_creates_an_owned_labelled_drill_of_the_newest_backup() {
        let p = policy(true);
        let mut status = p.status.clone().unwrap();
        // Sunday 2026-11-22 06:00 Berlin = 05:00 UTC.
        let plan = decide(&p, &[], &mut status, at("2026-11-22T05:30:00Z"));
        let r = plan.create.expect("a drill");
        assert_eq!(r.name_any(), "orders-prod-drill-20261122t050000z");
        assert_eq!(r.labels()[DRILL_LABEL], "true");
        assert_eq!(r.owner_references()[0].uid, "policy-uid");
        assert_eq!(
            r.spec.backup_id.as_deref(),
            Some("20261121T010000.000Z-abcdef")
        );
        let t = r.spec.target.postgres.as_ref().unwrap();
        assert_eq!(t.connection_secret_ref.name, "scratch-db");
        assert_eq!(t.database.as_deref(), Some("lifeboat_drill_orders_prod"));
        assert!(r.spec.overwrite && r.spec.drop_after && !r.spec.dry_run);
        assert_eq!(r.spec.checks, ["select count(*) > 0 from orders"]);
        assert_eq!(r.spec.validate(), Ok(()));
        assert_eq!(plan.next, Some(at("2026-11-29T05:00:00Z")));

        // The same slot again (the drill exists and is running): nothing new.
        let again = decide(&p, &[&r], &mut status, at("2026-11-22T05:31:00Z"));
        assert!(again.create.is_none());
    }

    #[test]
    fn no_drill_without_a_backup_or_before_the_slot() {
        let p = policy(false);
        let mut status = BackupPolicyStatus::default();
        assert!(decide(&p, &[], &mut status, at("2026-11-22T05:30:00Z"))
            .create
            .is_none());
        let p = policy(true);
        let mut status = p.status.clone().unwrap();
        let done = finished_drill(&p, "2026-11-22T05:00:00Z", true, "2026-11-22T05:02:00Z");
        let plan = decide(&p, &[&done], &mut status, at("2026-11-25T00:00:00Z"));
        assert!(plan.create.is_none(), "next slot is on the 29th");
    }

    #[test]
    fn the_newest_finished_drill_is_last_drill_and_a_failure_sets_the_condition() {
        let p = policy(true);
        let mut status = p.status.clone().unwrap();
        let ok = finished_drill(&p, "2026-11-15T05:00:00Z", true, "2026-11-15T05:02:00Z");
        let bad = finished_drill(&p, "2026-11-22T05:00:00Z", false, "2026-11-22T05:01:00Z");
        decide(&p, &[&ok, &bad], &mut status, at("2026-11-22T06:00:00Z"));
        let last = status.last_drill.clone().unwrap();
        assert_eq!(
            last.restore_request.as_deref(),
            Some(bad.name_any().as_str())
        );
        assert!(!last.succeeded);
        assert!(last.message.unwrap().contains("db-0.lbk"));
        let c = crate::api::conditions::find(&status.conditions, types::DRILL_PASSED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reasons::DRILL_FAILED)
        );
        assert!(c.message.contains("tag mismatch"), "{}", c.message);

        let mut status = p.status.clone().unwrap();
        decide(&p, &[&ok], &mut status, at("2026-11-22T06:00:00Z"));
        let last = status.last_drill.clone().unwrap();
        assert!(last.succeeded);
        assert_eq!(last.recovery_time_seconds, Some(42));
    }

    #[test]
    fn an_application_drill_that_finished_later_stays_the_last_drill() {
        let p = policy(true);
        let mut status = p.status.clone().unwrap();
        let ok = finished_drill(&p, "2026-11-15T05:00:00Z", true, "2026-11-15T05:02:00Z");
        let app = LastDrill {
            run: "shop-202611200400".into(),
            completed_at: at("2026-11-20T04:03:00Z"),
            succeeded: false,
            recovery_time_seconds: None,
            restore_request: None,
            message: Some("application drill shop-202611200400: smoke test home failed".into()),
        };
        status.last_drill = Some(Box::new(app.clone()));
        decide(&p, &[&ok], &mut status, at("2026-11-22T04:00:00Z"));
        assert_eq!(status.last_drill.as_deref(), Some(&app));
        // A drill of the policy's own after it takes over.
        let later = finished_drill(&p, "2026-11-22T05:00:00Z", true, "2026-11-22T05:02:00Z");
        decide(&p, &[&ok, &later], &mut status, at("2026-11-22T06:00:00Z"));
        assert_eq!(status.last_drill.unwrap().run, later.name_any());
    }

    #[test]
    fn a_volume_policy_drills_into_scratch_space_and_reports_what_it_restored() {
        let mut p = policy(true);
        p.spec.source =
            serde_json::from_value(json!({"volume": {"claimName": "uploads"}})).unwrap();
        let d = p.spec.verification.as_mut().unwrap();
        let d = d.restore_drill.as_mut().unwrap();
        d.target_secret_ref = None;
        d.checks.clear();
        assert_eq!(p.spec.validate(), Ok(()));
        let mut r = finished_drill(&p, "2026-11-22T05:00:00Z", true, "2026-11-22T05:02:00Z");
        assert!(r.spec.target.scratch.is_some() && r.spec.target.postgres.is_none());
        assert!(!r.spec.overwrite && !r.spec.drop_after);
        assert_eq!(r.spec.validate(), Ok(()));
        let st = r.status.as_mut().unwrap();
        (st.files_restored, st.bytes_restored) = (Some(12), Some(3456));
        st.plan = Some(crate::api::restore::RestorePlan {
            backup_id: "20261121T010000.000Z-abcdef".into(),
            ..Default::default()
        });
        let mut status = p.status.clone().unwrap();
        decide(&p, &[&r], &mut status, at("2026-11-22T06:00:00Z"));
        assert_eq!(
            status.last_drill.unwrap().message.unwrap(),
            "restored backup 20261121T010000.000Z-abcdef into scratch space: 12 files, 3456 bytes, every chunk authenticated"
        );
    }

    #[test]
    fn a_physical_policy_drills_into_a_scratch_data_directory_with_its_checks() {
        let mut p = policy(true);
        let pg = p.spec.source.postgres.as_mut().unwrap();
        pg.method = crate::api::policy::PostgresMethod::Physical;
        pg.databases.clear();
        let d = p.spec.verification.as_mut().unwrap();
        d.restore_drill.as_mut().unwrap().target_secret_ref = None;
        assert_eq!(p.spec.validate(), Ok(()));
        let mut r = finished_drill(&p, "2026-11-22T05:00:00Z", true, "2026-11-22T05:02:00Z");
        let dir = r
            .spec
            .target
            .scratch_data_directory()
            .expect("a data directory");
        assert_eq!((dir.run_as_user, dir.user.as_str()), (999, "postgres"));
        assert!(!r.spec.checks.is_empty() && !r.spec.drop_after && !r.spec.overwrite);
        assert_eq!(r.spec.validate(), Ok(()));
        r.status.as_mut().unwrap().plan = Some(crate::api::restore::RestorePlan {
            backup_id: "20261121T010000.000Z-abcdef".into(),
            ..Default::default()
        });
        let mut status = p.status.clone().unwrap();
        decide(&p, &[&r], &mut status, at("2026-11-22T06:00:00Z"));
        let message = status.last_drill.unwrap().message.unwrap();
        assert_eq!(
            message,
            "restored backup 20261121T010000.000Z-abcdef and passed 1 check(s)"
        );
    }

    #[test]
    fn only_the_last_few_finished_drills_are_kept() {
        let p = policy(true);
        let mut status = p.status.clone().unwrap();
        let drills: Vec<RestoreRequest> = (1..=5)
            .map(|d| {
                let slot = format!("2026-10-0{d}T05:00:00Z");
                let done = format!("2026-10-0{d}T05:01:00Z");
                finished_drill(&p, &slot, true, &done)
            })
            .collect();
        let refs: Vec<&RestoreRequest> = drills.iter().collect();
        let plan = decide(&p, &refs, &mut status, at("2026-10-06T00:00:00Z"));
        assert_eq!(
            plan.delete,
            [drills[1].name_any(), drills[0].name_any()],
            "the two oldest go"
        );
    }
}
