//! Policy decisions with a fixed clock.

use super::*;
use crate::api::conditions::{find, is_true, to_time};
use crate::api::run::BackupRunStatus;
use crate::api::BackupPolicySpec;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const RESYNC: Duration = Duration::from_secs(300);

fn policy_with(spec: serde_json::Value) -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(spec).unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.generation = Some(3);
    p.metadata.uid = Some("uid-orders".into());
    p.metadata.creation_timestamp = Some(to_time(at("2026-11-20T10:00:00Z")));
    p
}

fn policy() -> BackupPolicy {
    policy_with(json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "schedule": {"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"},
        "retention": {"daily": 2, "weekly": 1, "monthly": 1},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
        "encryption": {"keySecretRef": {"name": "keys"}},
        "objectives": {"rpo": "25h"}
    }))
}

fn run(name: &str, tier: Tier, phase: RunPhase, completed: Option<&str>) -> BackupRun {
    let mut r = BackupRun::new(
        name,
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier,
            kind: RunKind::Full,
            scheduled_at: None,
            deletion_policy: crate::api::DeletionPolicy::Retain,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.status = Some(BackupRunStatus {
        phase,
        completed_at: completed.map(at),
        backup_id: completed.map(|c| format!("id-{c}")),
        ..Default::default()
    });
    r
}

/// A run that succeeded at `at`.
fn succeeded(name: &str, tier: Tier, at: &str) -> BackupRun {
    run(name, tier, RunPhase::Succeeded, Some(at))
}

/// Applies a plan's status to the policy, as the API server would.
fn applied(mut p: BackupPolicy, plan: &PolicyPlan) -> BackupPolicy {
    if let Some(s) = &plan.status {
        p.status = Some(s.clone());
    }
    p
}

#[test]
fn nothing_is_created_before_the_first_slot() {
    let p = policy();
    let plan = decide(&p, &[], at("2026-11-21T01:59:00Z"), RESYNC);
    assert!(plan.create.is_none());
    // It looks again at the slot, not later.
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(60)));
}

#[test]
fn a_due_slot_creates_one_run_with_a_deterministic_name() {
    let p = policy();
    let now = at("2026-11-21T02:00:30Z");
    let plan = decide(&p, &[], now, RESYNC);
    let created = plan.create.clone().expect("a run is due");
    assert_eq!(created.name_any(), "orders-daily-20261121t020000z");
    assert_eq!(created.namespace().as_deref(), Some("shop"));
    assert_eq!(created.spec.tier, Tier::Daily);
    assert_eq!(created.spec.policy_ref.name, "orders");
    assert_eq!(created.spec.scheduled_at, Some(at("2026-11-21T02:00:00Z")));
    assert_eq!(
        created.labels().get(POLICY_LABEL).map(String::as_str),
        Some("orders")
    );
    let status = plan.status.clone().expect("status changes");
    assert_eq!(
        status.last_scheduled.daily,
        Some(at("2026-11-21T02:00:00Z"))
    );
    assert!(plan
        .events
        .iter()
        .any(|e| e.reason == "Scheduled" && e.message.contains("orders-daily-20261121t020000z")));

    // The same decision again (the status write was lost, or a second
    // replica) names the same run, so the API server refuses a duplicate.
    let again = decide(&p, &[], now, RESYNC);
    assert_eq!(again.create.map(|r| r.name_any()), Some(created.name_any()));
}

#[test]
fn a_run_in_progress_blocks_the_next_one() {
    let p = policy();
    let mut pending = run("orders-manual", Tier::Manual, RunPhase::Running, None);
    pending.status.as_mut().unwrap().completed_at = None;
    let plan = decide(&p, &[&pending], at("2026-11-21T02:00:30Z"), RESYNC);
    assert!(plan.create.is_none());
    // Once it finished, the slot that passed meanwhile is caught up.
    let done = succeeded("orders-manual", Tier::Manual, "2026-11-21T02:10:00Z");
    let plan = decide(&p, &[&done], at("2026-11-21T02:10:05Z"), RESYNC);
    assert_eq!(
        plan.create.map(|r| r.name_any()).as_deref(),
        Some("orders-daily-20261121t020000z")
    );
}

#[test]
fn an_existing_run_for_the_slot_is_not_created_again() {
    let p = policy();
    let mut existing = succeeded(
        "orders-daily-20261121t020000z",
        Tier::Daily,
        "2026-11-21T02:05:00Z",
    );
    existing.spec.scheduled_at = Some(at("2026-11-21T02:00:00Z"));
    let plan = decide(&p, &[&existing], at("2026-11-21T02:30:00Z"), RESYNC);
    assert!(plan.create.is_none());
    // The run's slot counts as scheduled even though the status never said so.
    assert_eq!(
        plan.status.unwrap().last_scheduled.daily,
        Some(at("2026-11-21T02:00:00Z"))
    );
}

#[test]
fn after_downtime_one_catch_up_run_per_tier_oldest_slot_first() {
    let mut p = policy();
    p.status = Some(BackupPolicyStatus {
        last_scheduled: TierTimes {
            daily: Some(at("2026-11-21T02:00:00Z")),
            weekly: Some(at("2026-11-15T03:00:00Z")),
            monthly: Some(at("2026-11-01T04:00:00Z")),
        },
        ..Default::default()
    });
    // Down from the 21st to the 25th: 4 daily slots and Sunday's weekly slot missed.
    let now = at("2026-11-25T12:00:00Z");
    let plan = decide(&p, &[], now, RESYNC);
    let first = plan.create.clone().unwrap();
    assert_eq!(first.name_any(), "orders-weekly-20261122t030000z");
    let p = applied(p, &plan);
    // The weekly run is pending now: nothing else until it finishes.
    let mut weekly = first.clone();
    weekly.status = Some(BackupRunStatus::default());
    assert!(decide(&p, &[&weekly], now, RESYNC).create.is_none());
    weekly.status = Some(BackupRunStatus {
        phase: RunPhase::Succeeded,
        completed_at: Some(now),
        ..Default::default()
    });
    let plan = decide(&p, &[&weekly], now, RESYNC);
    assert_eq!(
        plan.create.map(|r| r.name_any()).as_deref(),
        Some("orders-daily-20261125t020000z")
    );
}

#[test]
fn suspend_is_honoured() {
    let mut p = policy();
    p.spec.suspend = true;
    let plan = decide(&p, &[], at("2026-11-21T02:00:30Z"), RESYNC);
    assert!(plan.create.is_none());
    let status = plan.status.unwrap();
    assert!(status.next_backups.is_empty());
    let ready = find(&status.conditions, types::READY).unwrap();
    assert_eq!(ready.reason, reasons::SUSPENDED);
}

#[test]
fn retention_deletes_expired_runs_but_never_the_newest_success() {
    let p = policy();
    let d1 = succeeded("d1", Tier::Daily, "2026-11-21T02:05:00Z");
    let d2 = succeeded("d2", Tier::Daily, "2026-11-22T02:05:00Z");
    let d3 = succeeded("d3", Tier::Daily, "2026-11-23T02:05:00Z");
    let w1 = succeeded("w1", Tier::Weekly, "2026-11-15T03:05:00Z");
    let w2 = succeeded("w2", Tier::Weekly, "2026-11-22T03:05:00Z");
    let mut gone = succeeded("d0", Tier::Daily, "2026-11-20T02:05:00Z");
    gone.metadata.deletion_timestamp = Some(to_time(at("2026-11-23T00:00:00Z")));
    let runs = [&d1, &d2, &d3, &w1, &w2, &gone];
    let plan = decide(&p, &runs, at("2026-11-23T12:00:00Z"), RESYNC);
    let names: Vec<&str> = plan.delete.iter().map(|e| e.name.as_str()).collect();
    // daily keeps 2 (d2, d3), weekly keeps 1 (w2); d0 is already going.
    assert_eq!(names, ["d1", "w1"]);
    assert_eq!(
        plan.delete[0].backup_id.as_deref(),
        Some("id-2026-11-21T02:05:00Z")
    );
    let status = plan.status.unwrap();
    assert_eq!(status.last_backup.as_ref().unwrap().run, "d3");
    let window = status.recovery_window.unwrap();
    assert_eq!(window.from, at("2026-11-22T02:05:00Z"));
    assert_eq!(window.to, at("2026-11-23T02:05:00Z"));

    // Retention 0 for dailies still keeps the newest success.
    let mut p0 = policy();
    p0.spec.retention.daily = 0;
    let plan = decide(&p0, &[&d3], at("2026-11-23T12:00:00Z"), RESYNC);
    assert!(plan.delete.is_empty());
}

#[test]
fn status_reports_health_and_the_objective() {
    let p = policy();
    let ok = succeeded("d1", Tier::Daily, "2026-11-21T02:05:00Z");
    let now = at("2026-11-21T12:00:00Z");
    let plan = decide(&p, &[&ok], now, RESYNC);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.source_kind.as_deref(), Some("postgres/logical"));
    assert!(is_true(&s.conditions, types::READY));
    assert!(is_true(&s.conditions, types::HEALTHY));
    assert!(!is_true(&s.conditions, types::OBJECTIVE_BREACHED));
    assert_eq!(s.next_backup, Some(at("2026-11-22T02:00:00Z")));
    let p = applied(p, &plan);

    // 25 h after the success, with no newer one: breached, with a warning.
    let late = at("2026-11-22T03:05:01Z");
    let mut failed = run(
        "d2",
        Tier::Daily,
        RunPhase::Failed,
        Some("2026-11-22T02:06:00Z"),
    );
    failed.status.as_mut().unwrap().backup_id = None;
    failed.status.as_mut().unwrap().message = Some("OOMKilled".into());
    let plan = decide(&p, &[&ok, &failed], late, RESYNC);
    let s = plan.status.clone().unwrap();
    assert!(is_true(&s.conditions, types::OBJECTIVE_BREACHED));
    let healthy = find(&s.conditions, types::HEALTHY).unwrap();
    assert_eq!(healthy.status, "False");
    assert!(healthy.message.contains("OOMKilled"));
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.reason == reasons::RPO_EXCEEDED));
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.reason == reasons::BACKUP_FAILED));
}

#[test]
fn with_wal_archiving_the_rpo_runs_from_the_last_archived_wal() {
    let p = policy();
    let ok = succeeded("d1", Tier::Daily, "2026-11-21T02:05:00Z");
    let plan = decide(&p, &[&ok], at("2026-11-21T12:00:00Z"), RESYNC);
    let mut p = applied(p, &plan);
    // A day and more after the base backup, WAL archived a minute ago: the
    // newest recovery point is a minute old, not 25 hours.
    p.status.as_mut().unwrap().wal_archive = Some(Box::new(crate::api::policy::WalArchive {
        healthy: true,
        last_segment: Some("00000001000000000000002A".into()),
        last_archived_at: Some(at("2026-11-22T03:04:01Z")),
        lag_seconds: Some(1),
        message: None,
    }));
    let late = at("2026-11-22T03:05:01Z");
    let s = decide(&p, &[&ok], late, RESYNC).status.unwrap();
    let c = find(&s.conditions, types::OBJECTIVE_BREACHED).unwrap();
    assert_eq!(c.status, "False", "{c:?}");
    assert!(c.message.contains("archived WAL"), "{}", c.message);
    // When archiving stops, the clock runs from the last WAL it archived.
    let later = at("2026-11-23T04:05:01Z");
    let s = decide(&p, &[&ok], later, RESYNC).status.unwrap();
    let c = find(&s.conditions, types::OBJECTIVE_BREACHED).unwrap();
    assert_eq!(c.status, "True", "{c:?}");
    assert!(c.message.contains("2026-11-22T03:04:01"), "{}", c.message);
}

#[test]
fn an_unchanged_status_is_not_written() {
    let p = policy();
    let ok = succeeded("d1", Tier::Daily, "2026-11-21T02:05:00Z");
    let now = at("2026-11-21T12:00:00Z");
    let plan = decide(&p, &[&ok], now, RESYNC);
    let p = applied(p, &plan);
    let later = now + chrono::Duration::minutes(10);
    let again = decide(&p, &[&ok], later, RESYNC);
    assert_eq!(again.status, None);
    assert!(again.events.is_empty());
    assert!(again.create.is_none());
}

#[test]
fn a_bad_spec_names_the_field_and_waits_for_a_change() {
    let mut p = policy();
    p.spec.schedule.daily = Some("0 25 * * *".into());
    p.spec.destinations.clear();
    let plan = decide(&p, &[], at("2026-11-21T02:00:30Z"), RESYNC);
    assert!(plan.create.is_none());
    assert_eq!(plan.requeue_after, None);
    let s = plan.status.clone().unwrap();
    let ready = find(&s.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reasons::INVALID_SPEC);
    assert!(
        ready.message.contains("spec.schedule.daily"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("spec.destinations"),
        "{}",
        ready.message
    );
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.reason == reasons::INVALID_SPEC));
    // Seen again: no write, no event (no loop).
    let p = applied(p, &plan);
    let again = decide(&p, &[], at("2026-11-21T02:01:00Z"), RESYNC);
    assert_eq!(again.status, None);
    assert!(again.events.is_empty());
}

#[test]
fn a_run_whose_read_back_failed_makes_the_policy_unhealthy_for_that_reason() {
    let p = policy();
    let mut failed = run(
        "d2",
        Tier::Daily,
        RunPhase::Failed,
        Some("2026-11-22T02:06:00Z"),
    );
    let st = failed.status.as_mut().unwrap();
    st.message = Some("backup x failed read-back verification in s3://b/shop/orders".into());
    crate::api::conditions::set_condition(
        &mut st.conditions,
        crate::api::conditions::ConditionUpdate {
            type_: types::VERIFIED,
            status: false,
            reason: reasons::CHECKSUM_MISMATCH,
            message: "read-back failed".into(),
            observed_generation: None,
        },
        at("2026-11-22T02:06:00Z"),
    );
    let plan = decide(&p, &[&failed], at("2026-11-22T02:10:00Z"), RESYNC);
    let s = plan.status.clone().unwrap();
    let healthy = find(&s.conditions, types::HEALTHY).unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("False", reasons::VERIFICATION_FAILED)
    );
    assert!(
        healthy.message.contains("read-back verification"),
        "{}",
        healthy.message
    );
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.reason == reasons::VERIFICATION_FAILED));
}

#[test]
fn the_newest_success_of_every_tier_is_kept_in_the_status() {
    let p = policy();
    let runs = [
        succeeded("orders-d1", Tier::Daily, "2026-11-23T02:03:00Z"),
        succeeded("orders-d2", Tier::Daily, "2026-11-24T02:03:00Z"),
        succeeded("orders-w1", Tier::Weekly, "2026-11-22T03:04:00Z"),
        run(
            "orders-m-failed",
            Tier::Monthly,
            RunPhase::Failed,
            Some("2026-11-24T04:00:00Z"),
        ),
    ];
    let refs: Vec<&BackupRun> = runs.iter().collect();
    let now = at("2026-11-24T12:00:00Z");
    let p = applied(p.clone(), &decide(&p, &refs, now, RESYNC));
    let last = p.status.as_ref().unwrap().last_backups.clone();
    assert_eq!(last.daily, Some(at("2026-11-24T02:03:00Z")));
    assert_eq!(last.weekly, Some(at("2026-11-22T03:04:00Z")));
    assert_eq!(last.monthly, None, "a failure is no success");

    // The runs are deleted (retention, a person): the record stays, and
    // a month-old monthly success recorded earlier is not forgotten either.
    let mut p = p;
    p.status.as_mut().unwrap().last_backups.monthly = Some(at("2026-11-01T04:05:00Z"));
    let plan = decide(&p, &[], now, RESYNC);
    let last = applied(p, &plan).status.unwrap().last_backups;
    assert_eq!(last.daily, Some(at("2026-11-24T02:03:00Z")));
    assert_eq!(last.weekly, Some(at("2026-11-22T03:04:00Z")));
    assert_eq!(last.monthly, Some(at("2026-11-01T04:05:00Z")));
}

#[test]
fn only_a_run_change_its_policy_decides_on_wakes_the_policy() {
    let pending = run("orders-1", Tier::Daily, RunPhase::Pending, None);
    let mut running = run("orders-1", Tier::Daily, RunPhase::Running, None);
    running.status.as_mut().unwrap().job = Some("orders-1-backup".into());
    assert!(
        !run_change_matters(&pending, &running),
        "a run in progress writing its progress"
    );
    let done = succeeded("orders-1", Tier::Daily, "2026-11-21T02:10:00Z");
    assert!(run_change_matters(&running, &done), "it finished");
    let mut failed_again = done.clone();
    failed_again.status.as_mut().unwrap().message = Some("gone".into());
    assert!(
        run_change_matters(&done, &failed_again),
        "a finished run's status is read"
    );
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp = Some(to_time(at("2026-11-21T03:00:00Z")));
    assert!(run_change_matters(&running, &deleting), "on its way out");
    let mut other_tier = running.clone();
    other_tier.spec.tier = Tier::Weekly;
    assert!(
        run_change_matters(&running, &other_tier),
        "its spec changed"
    );
    // What decide makes of the change is indeed the same.
    let now = at("2026-11-21T02:05:00Z");
    let p = policy();
    let a = decide(&p, &[&pending], now, RESYNC);
    let b = decide(&p, &[&running], now, RESYNC);
    assert_eq!(a.status, b.status);
    assert_eq!(a.create.is_some(), b.create.is_some());
    assert_eq!(a.delete.len(), b.delete.len());
}
