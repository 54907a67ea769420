//! Notification decisions and the notify Job, with a fixed clock.

use super::*;
use crate::api::conditions::{set_condition, ConditionUpdate};
use crate::api::BackupPolicySpec;
use crate::controller::jobs::{notify_job, JobConfig};
use crate::controller::test_support::{args, at, daily_run};
use serde_json::json;

fn policy(notifications: serde_json::Value) -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
        "encryption": {"keySecretRef": {"name": "keys"}},
        "objectives": {"rpo": "1h"},
        "notifications": notifications
    }))
    .unwrap();
    spec.validate().unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("uid-orders".into());
    p
}

fn slack_and_pager() -> serde_json::Value {
    json!({"targets": [
        {"name": "ops", "slack": {"secretRef": {"name": "ops-slack"}}},
        {"name": "pager", "pagerduty": {"secretRef": {"name": "pd"}}},
        {"name": "deadman", "heartbeat": {"secretRef": {"name": "hb"}}}
    ]})
}

fn run(name: &str, phase: RunPhase, completed: Option<&str>) -> BackupRun {
    let mut r = daily_run(name, &format!("uid-{name}"));
    r.status = Some(BackupRunStatus {
        phase,
        completed_at: completed.map(at),
        message: Some("pg_dump: connection refused".into()),
        ..Default::default()
    });
    r
}

/// A run still running, and its status once failed at `when`.
fn failing(name: &str, when: &str) -> (BackupRun, BackupRunStatus) {
    let r = run(name, RunPhase::Running, None);
    let new = run(name, RunPhase::Failed, Some(when)).status.unwrap();
    (r, new)
}

#[test]
fn a_run_that_just_failed_is_sent_once_named_after_the_run() {
    let p = policy(slack_and_pager());
    let (r, new) = failing("orders-daily-1", "2026-11-21T02:03:00Z");
    let s = for_run(&p, &r, &new, &[]).unwrap();
    assert_eq!(s.notification.event, NotifyEvent::RunFailed);
    assert_eq!(s.notification.dedup_key, "lifeboat/shop/orders/backup");
    assert!(s
        .notification
        .summary
        .contains("pg_dump: connection refused"));
    assert_eq!(s.incident, "run/orders-daily-1/uid-orders-daily-1");
    // Already failed before this reconcile: nothing new.
    let done = run(
        "orders-daily-1",
        RunPhase::Failed,
        Some("2026-11-21T02:03:00Z"),
    );
    assert_eq!(for_run(&p, &done, &new, &[]), None);
    // A policy without notifications sends nothing.
    let mut quiet = p.clone();
    quiet.spec.notifications = None;
    assert_eq!(for_run(&quiet, &r, &new, &[]), None);
}

#[test]
fn repeat_interval_sends_one_failure_per_interval_of_a_streak() {
    let mut n = slack_and_pager();
    n["repeatInterval"] = json!("4h");
    let p = policy(n);
    let ok = run("ok", RunPhase::Succeeded, Some("2026-11-21T00:00:00Z"));
    let f1 = run("f1", RunPhase::Failed, Some("2026-11-21T01:00:00Z"));
    let f2 = run("f2", RunPhase::Failed, Some("2026-11-21T02:00:00Z"));
    let sent = |name: &str, when: &str, others: &[&BackupRun]| {
        let (r, new) = failing(name, when);
        for_run(&p, &r, &new, others).is_some()
    };
    // The first failure after a success is sent; the next ones within 4 h not.
    assert!(sent("f1", "2026-11-21T01:00:00Z", &[&ok]));
    assert!(!sent("f2", "2026-11-21T02:00:00Z", &[&ok, &f1]));
    assert!(!sent("f3", "2026-11-21T04:59:00Z", &[&ok, &f1, &f2]));
    // The first in the next interval is sent, and only it.
    let f3 = run("f3", RunPhase::Failed, Some("2026-11-21T05:00:00Z"));
    assert!(sent("f3", "2026-11-21T05:00:00Z", &[&ok, &f1, &f2]));
    assert!(!sent("f4", "2026-11-21T06:00:00Z", &[&ok, &f1, &f2, &f3]));
    // A success ends the streak: the next failure is news again.
    let ok2 = run("ok2", RunPhase::Succeeded, Some("2026-11-21T06:30:00Z"));
    assert!(sent(
        "f5",
        "2026-11-21T07:00:00Z",
        &[&ok, &f1, &f2, &f3, &ok2]
    ));
}

#[test]
fn a_success_pings_the_heartbeat_only() {
    let p = policy(slack_and_pager());
    let r = run("orders-daily-2", RunPhase::Running, None);
    let mut new = run(
        "orders-daily-2",
        RunPhase::Succeeded,
        Some("2026-11-22T02:03:00Z"),
    )
    .status
    .unwrap();
    new.backup_id = Some("20261122T020010.000Z-ab12cd".into());
    let s = for_run(&p, &r, &new, &[]).unwrap();
    assert_eq!(s.notification.event, NotifyEvent::Succeeded);
    let job = notify_job(&p, &s.notification, &s.incident, &JobConfig::default())
        .unwrap()
        .unwrap();
    let a = args(&job);
    let targets: Vec<&String> = a
        .windows(2)
        .filter(|w| w[0] == "--target")
        .map(|w| &w[1])
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(targets[0].contains("\"deadman\""), "{targets:?}");
}

fn status(conditions: &[(&str, bool, &str, &str)]) -> BackupPolicyStatus {
    let mut s = BackupPolicyStatus::default();
    for (type_, ok, reason, since) in conditions {
        let update = ConditionUpdate {
            type_,
            status: *ok,
            reason,
            message: format!("{type_} {reason}"),
            observed_generation: None,
        };
        set_condition(&mut s.conditions, update, at(since));
    }
    s
}

#[test]
fn a_breach_is_sent_when_it_begins_and_repeated_per_interval() {
    let mut n = slack_and_pager();
    n["repeatInterval"] = json!("2h");
    let p = policy(n);
    let calm = status(&[(
        types::OBJECTIVE_BREACHED,
        false,
        "WithinObjective",
        "2026-11-21T00:00:00Z",
    )]);
    let breached = status(&[(
        types::OBJECTIVE_BREACHED,
        true,
        "RpoExceeded",
        "2026-11-21T03:00:00Z",
    )]);
    let began = at("2026-11-21T03:00:00Z");
    let sends = for_policy(
        &p,
        &calm,
        &breached,
        Some(began),
        at("2026-11-21T03:00:05Z"),
    );
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].notification.event, NotifyEvent::ObjectiveBreached);
    assert_eq!(
        sends[0].notification.dedup_key,
        "lifeboat/shop/orders/objective"
    );
    let first = sends[0].incident.clone();
    // Still breached an hour later: no news.
    assert!(for_policy(
        &p,
        &breached,
        &breached,
        Some(began),
        at("2026-11-21T04:00:00Z")
    )
    .is_empty());
    // Two hours in: the first repeat, the same on every reconcile of that interval.
    let r1 = for_policy(
        &p,
        &breached,
        &breached,
        Some(began),
        at("2026-11-21T05:00:00Z"),
    );
    let r1b = for_policy(
        &p,
        &breached,
        &breached,
        Some(began),
        at("2026-11-21T06:59:00Z"),
    );
    assert_eq!(r1.len(), 1);
    assert_eq!(r1[0].incident, r1b[0].incident);
    assert_ne!(r1[0].incident, first);
    // Without repeatInterval a lasting breach is sent once.
    let once = policy(slack_and_pager());
    assert!(for_policy(
        &once,
        &breached,
        &breached,
        Some(began),
        at("2026-11-22T05:00:00Z")
    )
    .is_empty());
}

#[test]
fn recoveries_resolve_with_the_problem_s_key_named_after_its_start() {
    let p = policy(slack_and_pager());
    let old = status(&[
        (
            types::HEALTHY,
            false,
            reasons::BACKUP_FAILED,
            "2026-11-21T02:03:00Z",
        ),
        (
            types::OBJECTIVE_BREACHED,
            true,
            "RpoExceeded",
            "2026-11-21T03:00:00Z",
        ),
    ]);
    let mut new = old.clone();
    for (type_, ok, reason) in [
        (types::HEALTHY, true, reasons::BACKUP_SUCCEEDED),
        (types::OBJECTIVE_BREACHED, false, "WithinObjective"),
    ] {
        let update = ConditionUpdate {
            type_,
            status: ok,
            reason,
            message: "fine".into(),
            observed_generation: None,
        };
        set_condition(&mut new.conditions, update, at("2026-11-22T02:03:00Z"));
    }
    let sends = for_policy(&p, &old, &new, None, at("2026-11-22T02:03:10Z"));
    let keys: Vec<(&str, &str)> = sends
        .iter()
        .map(|s| (s.notification.dedup_key.as_str(), s.incident.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "lifeboat/shop/orders/objective",
                "recovered/objective/2026-11-21T03:00:00+00:00"
            ),
            (
                "lifeboat/shop/orders/backup",
                "recovered/backup/2026-11-21T02:03:00+00:00"
            ),
        ]
    );
    assert!(sends
        .iter()
        .all(|s| s.notification.event == NotifyEvent::Recovered));
    // A first success (no backup yet → healthy) is no recovery.
    let fresh = status(&[(
        types::HEALTHY,
        false,
        reasons::NO_BACKUP_YET,
        "2026-11-21T00:00:00Z",
    )]);
    assert!(
        for_policy(&p, &fresh, &new, None, at("2026-11-22T02:03:10Z"))
            .iter()
            .all(|s| s.notification.dedup_key.ends_with("/objective"))
    );
}

#[test]
fn the_notify_job_mounts_secrets_by_reference_and_never_retries() {
    let p = policy(json!({"targets": [
        {"name": "ops", "slack": {"secretRef": {"name": "ops-slack"}}},
        {"name": "audit", "webhook": {"secretRef": {"name": "hook"}}},
        {"name": "mail", "email": {"host": "smtp.example.org", "from": "lifeboat@example.org",
            "to": ["oncall@example.org"], "secretRef": {"name": "smtp"}, "caKey": "ca.crt"}},
        {"name": "only-ok", "events": ["succeeded"], "slack": {"secretRef": {"name": "other"}}}
    ]}));
    let (r, new) = failing("orders-daily-1", "2026-11-21T02:03:00Z");
    let s = for_run(&p, &r, &new, &[]).unwrap();
    let cfg = JobConfig::default();
    let job = notify_job(&p, &s.notification, &s.incident, &cfg)
        .unwrap()
        .unwrap();
    let name = job.metadata.name.clone().unwrap();
    assert!(name.starts_with("orders-notify-runfailed-"), "{name}");
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].name,
        "orders"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    let a = args(&job);
    assert_eq!(&a[..2], ["notify", "--event"]);
    assert_eq!(a.iter().filter(|x| *x == "--target").count(), 3, "{a:?}");
    assert!(!a.iter().any(|x| x.contains("only-ok")));
    let pod = spec.template.spec.as_ref().unwrap();
    let items: Vec<(String, Vec<(String, String)>)> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| {
            let s = v.secret.as_ref().unwrap();
            let items = s.items.as_ref().unwrap().iter();
            (
                s.secret_name.clone().unwrap(),
                items.map(|i| (i.key.clone(), i.path.clone())).collect(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        items,
        [
            ("ops-slack".to_string(), pairs(&[("url", "url")])),
            (
                "hook".to_string(),
                pairs(&[("url", "url"), ("signingKey", "signingKey")])
            ),
            (
                "smtp".to_string(),
                pairs(&[
                    ("username", "username"),
                    ("password", "password"),
                    ("ca.crt", "ca.pem")
                ])
            ),
        ]
    );
    // The same incident, the same Job; another incident, another.
    let again = notify_job(&p, &s.notification, &s.incident, &cfg)
        .unwrap()
        .unwrap();
    assert_eq!(again.metadata.name, job.metadata.name);
    let other = notify_job(&p, &s.notification, "run/x/y", &cfg)
        .unwrap()
        .unwrap();
    assert_ne!(other.metadata.name, job.metadata.name);
}

#[test]
fn a_failed_drill_is_sent_once_and_its_passing_successor_recovers_it() {
    use crate::api::policy::LastDrill;
    let p = policy(slack_and_pager());
    let drill = |name: &str, ok: bool| LastDrill {
        run: name.into(),
        completed_at: at("2026-11-23T06:20:00Z"),
        succeeded: ok,
        recovery_time_seconds: None,
        restore_request: Some(name.into()),
        message: Some("check 1 returned false".into()),
    };
    let mut old = status(&[(
        types::DRILL_PASSED,
        true,
        reasons::DRILL_SUCCEEDED,
        "2026-11-16T06:20:00Z",
    )]);
    old.last_drill = Some(Box::new(drill("orders-drill-1", true)));
    let mut new = status(&[(
        types::DRILL_PASSED,
        false,
        reasons::DRILL_FAILED,
        "2026-11-23T06:20:00Z",
    )]);
    new.last_drill = Some(Box::new(drill("orders-drill-2", false)));
    let now = at("2026-11-23T06:20:05Z");
    let sends = for_policy(&p, &old, &new, None, now);
    assert_eq!(sends.len(), 1, "{sends:?}");
    let n = &sends[0].notification;
    assert_eq!(n.event, NotifyEvent::DrillFailed);
    assert_eq!(n.dedup_key, "lifeboat/shop/orders/drill");
    assert!(
        n.summary.contains("check 1 returned false"),
        "{}",
        n.summary
    );
    assert_eq!(sends[0].incident, "drill/orders-drill-2");
    // Seen already: nothing.
    assert!(for_policy(&p, &new, &new, None, now).is_empty());
    // The next drill passes: a recovery under the drill's key.
    let mut passed = status(&[(
        types::DRILL_PASSED,
        true,
        reasons::DRILL_SUCCEEDED,
        "2026-11-30T06:20:00Z",
    )]);
    passed.last_drill = Some(Box::new(drill("orders-drill-3", true)));
    let sends = for_policy(&p, &new, &passed, None, now);
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].notification.event, NotifyEvent::Recovered);
    assert_eq!(
        sends[0].notification.dedup_key,
        "lifeboat/shop/orders/drill"
    );
}

#[test]
fn a_finished_restore_is_sent_once_to_who_asked_and_drills_are_not() {
    use crate::api::restore::{RestorePhase, RestoreRequestSpec};
    use crate::api::RestoreRequest;
    let mut n = slack_and_pager();
    n["targets"][0]["events"] = json!(["restoreFinished"]);
    let p = policy(n);
    let spec: RestoreRequestSpec = serde_json::from_value(json!({
        "policyRef": {"name": "orders"},
        "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": "orders_restored"}}
    }))
    .unwrap();
    let mut r = RestoreRequest::new("orders-restore", spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some("rr-uid".into());
    let mut new = r.status.clone().unwrap_or_default();
    new.phase = RestorePhase::Succeeded;
    new.recovery_time_seconds = Some(42);
    let s = for_restore(&p, &r, &new).unwrap();
    assert_eq!(s.notification.event, NotifyEvent::RestoreFinished);
    assert!(
        s.notification.summary.contains("after 42 s"),
        "{}",
        s.notification.summary
    );
    assert_eq!(s.incident, "restore/orders-restore/rr-uid");
    // Already finished: nothing; a drill: nothing (drillFailed reports it).
    let mut done = r.clone();
    done.status = Some(new.clone());
    assert_eq!(for_restore(&p, &done, &new), None);
    let mut drill = r.clone();
    drill.labels_mut().insert(
        crate::controller::restore::DRILL_LABEL.into(),
        "true".into(),
    );
    assert_eq!(for_restore(&p, &drill, &new), None);
    // Not asked for (the default events): nothing.
    assert_eq!(for_restore(&policy(slack_and_pager()), &r, &new), None);
}

#[test]
fn a_bad_notification_spec_makes_the_policy_not_ready_naming_the_field() {
    let mut p = policy(slack_and_pager());
    let targets = &mut p.spec.notifications.as_mut().unwrap().targets;
    targets[0].slack = None;
    targets[1].events = vec![NotificationEvent::Succeeded];
    let plan = crate::controller::policy::decide(
        &p,
        &[],
        at("2026-11-21T02:00:00Z"),
        crate::controller::test_support::RESYNC,
    );
    let status = plan.status.unwrap();
    let ready = find(&status.conditions, types::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::INVALID_SPEC)
    );
    assert!(
        ready
            .message
            .contains("spec.notifications.targets[0]: set exactly one of")
            && ready
                .message
                .contains("spec.notifications.targets[1].events[0]: pagerduty targets take"),
        "{}",
        ready.message
    );
    assert!(plan.create.is_none());
}

#[test]
fn an_application_restore_summary_goes_to_each_restore_target_once() {
    let wanting = |name: &str, secret: &str| json!({"name": name, "events": ["restoreFinished"], "slack": {"secretRef": {"name": secret}}});
    let a = policy(json!({"targets": [wanting("ops", "ops-slack"), wanting("dba", "dba-slack")]}));
    let mut b = policy(json!({"targets": [
        wanting("team", "ops-slack"),
        {"name": "pager", "pagerduty": {"secretRef": {"name": "pd"}}}
    ]}));
    b.metadata.name = Some("uploads".into());
    let app: crate::api::ApplicationRestore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "ApplicationRestore",
        "metadata": {"name": "shop-0959", "namespace": "shop", "uid": "app-uid"},
        "spec": {"pointInTime": "2026-11-25T09:59:00Z",
                 "parts": [{"name": "db", "policyRef": {"name": "orders"},
                            "target": {"postgres": {"connectionSecretRef": {"name": "x"}}}}]}
    }))
    .unwrap();
    let outcome = crate::controller::app_restore::Outcome {
        succeeded: true,
        dry_run: false,
        recovery_time_seconds: Some(120),
        summary: "application restore shop-0959 …\n- plan Succeeded 3 s".into(),
    };
    let sends = for_application(&[&a, &b], &app, &outcome, at("2026-11-25T12:00:00Z"));
    // The same Slack Secret under another name in the second policy is not
    // sent twice; the pager does not want restores.
    assert_eq!(sends.len(), 1);
    let (sender, out) = &sends[0];
    let names: Vec<&str> = sender
        .spec
        .notifications
        .as_ref()
        .unwrap()
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["ops", "dba"]);
    assert_eq!(out.notification.summary, outcome.summary);
    assert_eq!(out.notification.subject.as_deref(), Some("shop-0959"));
    let job = notify_job(
        sender,
        &out.notification,
        &out.incident,
        &JobConfig::default(),
    )
    .unwrap()
    .unwrap();
    assert!(args(&job).iter().any(|a| a.contains("plan Succeeded 3 s")));
}
