use super::*;
use crate::api::conditions::types;
use crate::api::restore::RestoreRequestSpec;
use crate::controller::jobs::LABEL_COMPONENT;
use crate::controller::test_support::{args, at, RESYNC};
use serde_json::{json, Value};

const ID: &str = "20261121T020000.000Z-a1b2c3";

fn policy() -> BackupPolicy {
    let spec = json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [
            {"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk-primary", "prefix": "prod",
                "credentialsSecretRef": {"name": "s3-primary"}}},
            {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "bk-dr",
                "credentialsSecretRef": {"name": "s3-dr"}}}
        ],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}
    });
    let mut p = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("policy-uid".into());
    p
}

fn request(extra: Value) -> RestoreRequest {
    let mut spec = json!({
        "policyRef": {"name": "orders"},
        "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": "orders_restored"}},
        "checks": ["select count(*) = 500 from orders"]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: RestoreRequestSpec = serde_json::from_value(spec).unwrap();
    let mut r = RestoreRequest::new("orders-restore", spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some("rr-uid".into());
    r.metadata.creation_timestamp =
        Some(crate::api::conditions::to_time(at("2026-11-22T10:00:00Z")));
    r
}

fn finished_job(name: &str, ok: bool) -> Job {
    let status = if ok {
        json!({"startTime": "2026-11-22T10:00:10Z", "completionTime": "2026-11-22T10:03:10Z", "succeeded": 1,
               "conditions": [{"type": "Complete", "status": "True"}]})
    } else {
        json!({"startTime": "2026-11-22T10:00:10Z", "failed": 3,
               "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
    };
    serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap()
}

fn pod(message: &str, exit: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "creationTimestamp": "2026-11-22T10:00:05Z"},
        "status": {"containerStatuses": [{"name": "lifeboat", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit, "message": message}}}]}
    }))
    .unwrap()
}

fn plan_summary() -> String {
    json!({"backup_id": ID, "destination": "dr-eu", "completed_at": "2026-11-21T02:05:00Z",
           "bytes": 4096, "plain_bytes": 9000, "databases": ["orders"], "target_database": "orders_restored",
           "skipped": [{"destination": "primary",
                        "reason": "backup x failed verification: object prod/shop/orders/backups/x/db-0.lbk: tag mismatch"}],
           "seconds": 1.0})
    .to_string()
}

struct World {
    policy: BackupPolicy,
    request: RestoreRequest,
    plan: ObservedJob,
    restore: ObservedJob,
}

impl World {
    fn new(extra: Value) -> Self {
        World {
            policy: policy(),
            request: request(extra),
            plan: ObservedJob::default(),
            restore: ObservedJob::default(),
        }
    }
    fn decide(&mut self, now: &str) -> RestoreDecision {
        let d = decide(
            Observed {
                request: &self.request,
                policy: Some(&self.policy),
                plan: &self.plan,
                restore: &self.restore,
                now: at(now),
                denied: None,
            },
            &JobConfig::default(),
            RESYNC,
        );
        if let Some(s) = &d.status {
            self.request.status = Some(s.clone());
        }
        d
    }
    fn status(&self) -> &RestoreRequestStatus {
        self.request.status.as_ref().unwrap()
    }
    fn step(&self, name: &str) -> &RestoreStep {
        self.status().steps.iter().find(|s| s.name == name).unwrap()
    }
}

fn values_after(args: &[String], flag: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

/// The plan of `latest` names the newest backup the policy recorded, so a
/// bucket that lost it fails the plan; a named backup or a time does not
/// (issue 13, item 2).
#[test]
fn the_plan_of_latest_names_the_newest_backup_the_policy_recorded() {
    let plan_args = |w: &mut World| args(&w.decide("2026-11-22T10:00:01Z").create_job.unwrap());
    let mut w = World::new(json!({}));
    assert!(values_after(&plan_args(&mut w), "--newest-known").is_empty());
    let recorded: crate::api::policy::BackupPolicyStatus = serde_json::from_value(json!({
        "lastBackup": {"run": "orders-1", "tier": "daily", "completedAt": "2026-11-22T02:05:00Z",
                       "backupId": "20261122T020000.000Z-cccccc"}
    }))
    .unwrap();
    w.policy.status = Some(recorded.clone());
    assert!(plan_args(&mut w).contains(&"--newest-known=20261122T020000.000Z-cccccc".to_string()));
    let mut named = World::new(json!({"backupId": "20261121T020000.000Z-bbbbbb"}));
    named.policy.status = Some(recorded);
    assert!(!plan_args(&mut named)
        .iter()
        .any(|a| a.starts_with("--newest-known")));
}

/// Plans: creates the plan Job, then reads its summary.
fn planned(w: &mut World) {
    let d = w.decide("2026-11-22T10:00:01Z");
    let job = d.create_job.expect("a plan job");
    w.plan.object = Some(finished_job(&job.name_any(), true));
    w.plan.pods = vec![pod(&plan_summary(), 0)];
}

#[test]
fn request_plans_then_restores_then_reports_the_measured_rto() {
    let mut w = World::new(json!({"overwrite": true}));
    let d = w.decide("2026-11-22T10:00:01Z");
    let job = d.create_job.clone().expect("a plan job");
    assert_eq!(job.name_any(), "orders-restore-plan");
    let a = args(&job);
    assert_eq!(a[0], "plan");
    assert!(a.contains(&"--backup=latest".to_string()), "{a:?}");
    assert!(a.contains(&"--verify=quick".to_string()), "{a:?}");
    assert_eq!(values_after(&a, "--from").len(), 2);
    assert_eq!(w.status().phase, RestorePhase::Planning);
    assert_eq!(w.step(STEP_PLAN).phase, StepPhase::Running);
    assert_eq!(
        w.step(STEP_PLAN).started_at,
        Some(at("2026-11-22T10:00:01Z"))
    );

    // The plan Job finished: the plan is recorded, the restore Job created.
    w.plan.object = Some(finished_job(&job.name_any(), true));
    w.plan.pods = vec![pod(&plan_summary(), 0)];
    let d = w.decide("2026-11-22T10:01:00Z");
    let plan = w.status().plan.clone().unwrap();
    assert_eq!(plan.backup_id, ID);
    assert_eq!(plan.destination, "dr-eu");
    assert_eq!(plan.bytes, Some(4096));
    assert_eq!(plan.target_database.as_deref(), Some("orders_restored"));
    assert!(
        plan.skipped[0].starts_with("primary: "),
        "{:?}",
        plan.skipped
    );
    assert_eq!(w.step(STEP_PLAN).phase, StepPhase::Succeeded);
    assert_eq!(w.step(STEP_PLAN).seconds, Some(180));
    let job = d.create_job.expect("a restore job");
    let a = args(&job);
    assert_eq!(a[0], "restore");
    assert_eq!(values_after(&a, "--backup"), [ID]);
    let from = values_after(&a, "--from");
    assert!(
        from[0].starts_with("dr-eu=s3://bk-dr/shop/orders?"),
        "planned first: {from:?}"
    );
    assert!(from[1].starts_with("primary=s3://bk-primary/prod/shop/orders?"));
    assert_eq!(values_after(&a, "--target-db"), ["orders_restored"]);
    assert_eq!(
        values_after(&a, "--check"),
        ["select count(*) = 500 from orders"]
    );
    assert!(a.contains(&"--clean".to_string()), "overwrite: true");
    assert!(!a.contains(&"--drop-after".to_string()));
    assert_eq!(w.status().phase, RestorePhase::Restoring);
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].uid,
        "rr-uid"
    );

    // Nothing changes while it runs.
    let running: Job = serde_json::from_value(json!({"metadata": {"name": job.name_any()},
        "status": {"active": 1, "startTime": "2026-11-22T10:01:05Z"}}))
    .unwrap();
    w.restore.object = Some(running);
    let d = w.decide("2026-11-22T10:02:00Z");
    assert!(d.create_job.is_none() && d.outcome.is_none());

    let summary = json!({"ok": true, "backup_id": ID, "backup_completed_at": "2026-11-21T02:05:00Z",
        "target_database": "orders_restored", "restore_seconds": 150.4, "check_seconds": 0.2, "checks": 1, "bytes": 4096});
    w.restore.object = Some(finished_job(&job.name_any(), true));
    w.restore.pods = vec![pod(&summary.to_string(), 0)];
    let d = w.decide("2026-11-22T10:05:00Z");
    let s = w.status();
    assert_eq!(s.phase, RestorePhase::Succeeded);
    assert_eq!(s.recovered_to, Some(at("2026-11-21T02:05:00Z")));
    assert_eq!(
        s.completed_at,
        Some(at("2026-11-22T10:03:10Z")),
        "the Job's completion"
    );
    assert_eq!(s.recovery_time_seconds, Some(190), "completion − creation");
    assert_eq!(w.step(STEP_RESTORE).seconds, Some(150));
    assert_eq!(w.step(STEP_VERIFY).phase, StepPhase::Succeeded);
    assert_eq!(
        w.step(STEP_VERIFY).message.as_deref(),
        Some("1 check(s) passed")
    );
    let c = crate::api::conditions::find(&s.conditions, types::COMPLETE).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", rr::RESTORED)
    );
    let o = d.outcome.unwrap();
    assert!(o.succeeded && !o.drill && !o.dry_run);
    assert_eq!(o.recovery_time_seconds, Some(190));
    assert!(d.events.iter().any(|e| e.message.contains("190 s")));

    // Finished: never touched again.
    let d = w.decide("2026-11-22T11:00:00Z");
    assert!(d.status.is_none() && d.create_job.is_none() && d.requeue_after.is_none());
}

#[test]
fn dry_run_stops_after_the_plan_and_the_plan_job_has_no_database() {
    let mut w = World::new(json!({"dryRun": true}));
    let d = w.decide("2026-11-22T10:00:01Z");
    let job = d.create_job.clone().unwrap();
    let pod_spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let env = pod_spec.containers[0].env.clone().unwrap();
    assert!(
        !env.iter().any(|e| e.name.starts_with("PG")),
        "no database for a plan"
    );
    assert!(!pod_spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .any(|v| v.name == "db"));
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[LABEL_COMPONENT],
        "plan"
    );
    planned(&mut w);
    let d = w.decide("2026-11-22T10:01:00Z");
    assert!(d.create_job.is_none(), "no restore job on a dry run");
    let s = w.status();
    assert_eq!(s.phase, RestorePhase::Succeeded);
    assert_eq!(s.recovery_time_seconds, None);
    let c = crate::api::conditions::find(&s.conditions, types::COMPLETE).unwrap();
    assert_eq!(c.reason, rr::DRY_RUN);
    assert!(
        c.message.contains("dry run") && c.message.contains(ID),
        "{}",
        c.message
    );
    assert_eq!(w.step(STEP_RESTORE).phase, StepPhase::Skipped);
    assert!(d.outcome.unwrap().dry_run);
}

#[test]
fn a_failed_check_fails_the_verify_step_naming_the_check() {
    let mut w = World::new(json!({}));
    planned(&mut w);
    let d = w.decide("2026-11-22T10:01:00Z");
    let job = d.create_job.unwrap();
    let a = args(&job);
    assert!(
        !a.contains(&"--clean".to_string()),
        "no overwrite: a non-empty target is refused"
    );
    let summary = json!({"ok": false, "failed_step": "verify",
        "error": "check 1 (\"select count(*) = 500 from orders\") returned false"});
    w.restore.object = Some(finished_job(&job.name_any(), false));
    w.restore.pods = vec![pod(&summary.to_string(), 1)];
    let d = w.decide("2026-11-22T10:05:00Z");
    let s = w.status();
    assert_eq!(s.phase, RestorePhase::Failed);
    let m = s.message.clone().unwrap();
    assert!(m.starts_with("step verify failed: check 1"), "{m}");
    assert_eq!(w.step(STEP_VERIFY).phase, StepPhase::Failed);
    assert_eq!(
        w.step(STEP_RESTORE).phase,
        StepPhase::Running,
        "the restore itself went through"
    );
    let c = crate::api::conditions::find(&s.conditions, types::COMPLETE).unwrap();
    assert_eq!(c.reason, rr::VERIFY_FAILED);
    assert!(!d.outcome.unwrap().succeeded);
    assert!(d.events.iter().any(|e| e.warning));
}

#[test]
fn a_failed_plan_names_the_corrupted_object() {
    let mut w = World::new(json!({}));
    let job = w.decide("2026-11-22T10:00:01Z").create_job.unwrap();
    let summary = json!({"ok": false, "error": "no usable recovery point: s3://bk-dr/shop/orders: backup x failed verification: s3://bk-dr/shop/orders: object backups/x/db-0.lbk: segment 0 failed authentication"});
    w.plan.object = Some(finished_job(&job.name_any(), false));
    w.plan.pods = vec![pod(&summary.to_string(), 1)];
    let d = w.decide("2026-11-22T10:01:00Z");
    assert!(d.create_job.is_none());
    let m = w.status().message.clone().unwrap();
    assert!(
        m.starts_with("step plan failed: ") && m.contains("backups/x/db-0.lbk"),
        "{m}"
    );
    assert_eq!(w.step(STEP_RESTORE).phase, StepPhase::Skipped);
}

#[test]
fn a_crash_without_summary_falls_back_to_the_pod_and_a_bad_spec_fails_the_plan() {
    let mut w = World::new(json!({}));
    planned(&mut w);
    let job = w.decide("2026-11-22T10:01:00Z").create_job.unwrap();
    w.restore.object = Some(finished_job(&job.name_any(), false));
    w.restore.pods = vec![pod("thread 'main' panicked", 101)];
    w.decide("2026-11-22T10:05:00Z");
    let m = w.status().message.clone().unwrap();
    assert!(
        m.starts_with("step restore failed: ") && m.contains("panicked"),
        "{m}"
    );

    let mut w = World::new(json!({"from": "nowhere"}));
    w.decide("2026-11-22T10:00:01Z");
    let m = w.status().message.clone().unwrap();
    assert!(m.contains("spec.from") && m.contains("nowhere"), "{m}");
    assert_eq!(w.status().phase, RestorePhase::Failed);
}

#[test]
fn a_named_from_is_the_only_destination_the_plan_reads() {
    let mut w = World::new(json!({"from": "primary", "backupId": ID}));
    let job = w.decide("2026-11-22T10:00:01Z").create_job.unwrap();
    let a = args(&job);
    let from = values_after(&a, "--from");
    assert_eq!(from.len(), 1);
    assert!(from[0].starts_with("primary=s3://bk-primary/"));
    assert!(a.contains(&format!("--backup={ID}")), "{a:?}");
    let mut w = World::new(json!({"pointInTime": "2026-11-21T12:00:00Z"}));
    let a = args(&w.decide("2026-11-22T10:00:01Z").create_job.unwrap());
    assert!(
        a.contains(&"--backup=2026-11-21T12:00:00.000Z".to_string()),
        "{a:?}"
    );
}

#[test]
fn a_physical_policy_restores_into_a_volume_as_the_servers_uid() {
    let mut p = policy();
    let pg = p.spec.source.postgres.as_mut().unwrap();
    pg.method = crate::api::policy::PostgresMethod::Physical;
    pg.databases.clear();
    let plan = crate::api::restore::RestorePlan {
        backup_id: ID.into(),
        destination: "dr-eu".into(),
        ..Default::default()
    };
    // A physical backup does not go into a database through its Secret,
    // nor as files into scratch space.
    for target in [json!(null), json!({"scratch": {}})] {
        let mut r = request(json!({"pointInTime": "2026-11-22T09:00:00Z"}));
        if !target.is_null() {
            r.spec.target = serde_json::from_value(target).unwrap();
        }
        let e = restore_jobs::restore_job(&r, &p, &plan, &JobConfig::default()).unwrap_err();
        assert_eq!(e.field(), "spec.target");
        let text = e.to_string();
        assert!(
            text.contains("target.volume (a claim) or target.scratch.dataDirectory"),
            "{text}"
        );
    }

    let r = request(json!({"pointInTime": "2026-11-22T09:00:00Z",
        "target": {"volume": {"claimName": "ledger-data", "subPath": "pg15"}}}));
    assert_eq!(r.spec.validate(), Ok(()));
    let job = restore_jobs::restore_job(&r, &p, &plan, &JobConfig::default()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    let text = args.join(" ");
    assert!(
        text.contains("--data-dir /var/lib/lifeboat/target/pg15"),
        "{text}"
    );
    assert!(
        text.contains("--target-time=2026-11-22T09:00:00.000Z"),
        "{text}"
    );
    assert!(
        text.contains("--check select count(*) = 500 from orders"),
        "{text}"
    );
    assert!(
        !text.contains("--password-file"),
        "no database Secret: {text}"
    );
    let first = &args[args.iter().position(|a| a == "--from").unwrap() + 1];
    assert!(
        first.starts_with("dr-eu=s3://bk-dr/shop/orders?"),
        "the planned destination first: {first}"
    );
    let claim = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "target")
        .unwrap();
    assert_eq!(
        claim.persistent_volume_claim.unwrap().claim_name,
        "ledger-data"
    );
    assert_eq!(pod.security_context.unwrap().run_as_user, Some(999));
    assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(999));

    // Neither or both targets: named.
    let both = request(json!({"target": {"volume": {"claimName": "x"},
        "postgres": {"connectionSecretRef": {"name": "y"}}}}));
    assert_eq!(both.spec.validate().unwrap_err()[0].field, "spec.target");
    let escape = request(json!({"target": {"volume": {"claimName": "x", "subPath": "../etc"}}}));
    assert_eq!(
        escape.spec.validate().unwrap_err()[0].field,
        "spec.target.volume.subPath"
    );
}

#[test]
fn a_physical_drill_recovers_into_a_data_directory_in_scratch_space_and_checks_it() {
    let mut p = policy();
    let pg = p.spec.source.postgres.as_mut().unwrap();
    pg.method = crate::api::policy::PostgresMethod::Physical;
    pg.databases.clear();
    let completed = "2026-11-22T08:00:00Z".parse().unwrap();
    let plan = crate::api::restore::RestorePlan {
        backup_id: ID.into(),
        destination: "dr-eu".into(),
        completed_at: Some(completed),
        ..Default::default()
    };
    let r = request(json!({"backupId": ID,
        "target": {"scratch": {"dataDirectory": {"runAsUser": 70, "user": "app_owner"}}}}));
    assert_eq!(
        r.spec.validate(),
        Ok(()),
        "checks are allowed: a server runs there"
    );
    let job = restore_jobs::restore_job(&r, &p, &plan, &JobConfig::default()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    for expected in [
        "--data-dir /var/lib/lifeboat/scratch/pgdata",
        "--user app_owner",
        // A named base backup: recovered to its own end.
        "--target-time=2026-11-22T08:00:00.000Z",
        "--check select count(*) = 500 from orders",
    ] {
        assert!(args.contains(expected), "{expected}: {args}");
    }
    assert!(!args.contains("--to-dir"), "not a file restore: {args}");
    let volumes = pod.volumes.unwrap();
    let scratch = volumes.iter().find(|v| v.name == "scratch").unwrap();
    assert!(scratch.empty_dir.is_some(), "{scratch:?}");
    assert!(volumes.iter().all(|v| v.persistent_volume_claim.is_none()));
    assert_eq!(pod.security_context.unwrap().run_as_user, Some(70));

    // The data directory's fields, named.
    let bad =
        request(json!({"target": {"scratch": {"dataDirectory": {"runAsUser": 0, "user": ""}}}}));
    let fields: Vec<String> = bad
        .spec
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.target.scratch.dataDirectory.user",
            "spec.target.scratch.dataDirectory.runAsUser"
        ]
    );
}

#[test]
fn a_volume_policy_into_a_database_or_a_data_directory_is_refused_naming_the_target() {
    let mut p = policy();
    p.spec.source = serde_json::from_value(json!({"volume": {"claimName": "uploads"}})).unwrap();
    let plan = crate::api::restore::RestorePlan {
        backup_id: ID.into(),
        destination: "dr-eu".into(),
        ..Default::default()
    };
    for r in [
        request(json!({})),
        request(json!({"target": {"volume": {"claimName": "uploads"}}})),
    ] {
        let e = restore_jobs::plan_job(&r, &p, &JobConfig::default()).unwrap_err();
        assert_eq!(e.field(), "spec.target");
        assert!(e.to_string().contains("target.files"), "{e}");
        let e = restore_jobs::restore_job(&r, &p, &plan, &JobConfig::default()).unwrap_err();
        assert_eq!(e.field(), "spec.target");
    }
    // A data directory is for physical backups only.
    let r = request(json!({"checks": [], "target": {"scratch": {"dataDirectory": {}}}}));
    let e = restore_jobs::plan_job(&r, &p, &JobConfig::default()).unwrap_err();
    assert_eq!(e.field(), "spec.target.scratch.dataDirectory");
}
