//! Run decisions: Job states → run status, and the prune finalizer.

use super::*;
use crate::api::conditions::{find, to_time};
use crate::api::{BackupPolicySpec, BackupRunSpec, LocalRef, Tier};
use crate::controller::test_support::{args, at, RESYNC};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodStatus,
};
use serde_json::json;

const NOW: &str = "2026-11-21T02:10:00Z";

fn policy() -> BackupPolicy {
    let spec: BackupPolicySpec = serde_json::from_value(json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
        "encryption": {"keySecretRef": {"name": "keys"}}
    }))
    .unwrap();
    let mut p = BackupPolicy::new("orders", spec);
    p.metadata.namespace = Some("shop".into());
    p
}

fn run() -> BackupRun {
    let mut r = BackupRun::new(
        "orders-daily-20261121t020000z",
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier: Tier::Daily,
            kind: crate::api::RunKind::Full,
            scheduled_at: Some(at("2026-11-21T02:00:00Z")),
            deletion_policy: crate::api::DeletionPolicy::Retain,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some("uid-run".into());
    r.metadata.generation = Some(1);
    r
}

fn job(status: JobStatus) -> Job {
    let mut j = jobs::backup_job(&policy(), &run(), &JobConfig::default()).unwrap();
    j.status = Some(status);
    j
}

fn started() -> JobStatus {
    JobStatus {
        active: Some(1),
        start_time: Some(to_time(at("2026-11-21T02:00:05Z"))),
        ..Default::default()
    }
}

fn condition(type_: &str, reason: &str, message: &str) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

fn pod(state: ContainerState) -> Pod {
    Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "lifeboat".into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn terminated(exit_code: i32, reason: &str, message: &str) -> Pod {
    pod(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

const RESULT: &str = r#"{"backup_id":"20261121T020010.000Z-ab12cd","server_version":"15.18","bytes_in":4096,"bytes_out":2048,"seconds":1.5,"committed":["primary"],"failed":[],"verified":["primary"],"objects":[{"key":"backups/20261121T020010.000Z-ab12cd/db-0.lbk","size":2048,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#;

fn decide_with(run: &BackupRun, job: Option<&Job>, pods: &[Pod]) -> RunPlan {
    let p = policy();
    decide(
        Observed {
            run,
            policy: Some(&p),
            job: &ObservedJob::new(job.cloned(), pods.to_vec()),
            now: at(NOW),
        },
        &JobConfig::default(),
        RESYNC,
    )
}

fn with_status(mut r: BackupRun, plan: &RunPlan) -> BackupRun {
    if let Some(s) = &plan.status {
        r.status = Some(s.clone());
    }
    r
}

#[test]
fn a_new_run_creates_its_job() {
    let r = run();
    let plan = decide_with(&r, None, &[]);
    let job = plan.create_job.clone().expect("a job");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "uid-run");
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Pending);
    assert_eq!(s.job, job.metadata.name);
    // The name a reconcile looks the Job up by, before the status has it,
    // is the one the builder gives it; none without a policy.
    assert_eq!(job_name(&r, Some(&policy())), job.metadata.name);
    assert_eq!(job_name(&r, None), None);
    assert_eq!(
        find(&s.conditions, types::COMPLETE).unwrap().reason,
        reasons::JOB_CREATED
    );
    // Its policy's Scheduled event announced this scheduled run already.
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert!(!plan.add_finalizer);

    // A hand-made run has no such announcement: its Job's creation is news.
    let mut manual = run();
    manual.spec.scheduled_at = None;
    let plan = decide_with(&manual, None, &[]);
    assert!(plan.events.iter().any(|e| e.reason == reasons::JOB_CREATED));
}

#[test]
fn a_job_waiting_as_created_changes_nothing() {
    let r = with_status(run(), &decide_with(&run(), None, &[]));
    let plan = decide_with(&r, Some(&job(JobStatus::default())), &[]);
    assert_eq!(
        plan.status, None,
        "no status write for a Job not yet started"
    );
    assert!(plan.events.is_empty());
    assert!(plan.create_job.is_none());
}

#[test]
fn a_started_job_makes_the_run_running() {
    let r = with_status(run(), &decide_with(&run(), None, &[]));
    let j = job(started());
    let plan = decide_with(&r, Some(&j), &[]);
    assert!(plan.create_job.is_none());
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Running);
    assert_eq!(s.started_at, Some(at("2026-11-21T02:00:05Z")));
    // Seen again unchanged: no write.
    let r = with_status(r, &plan);
    let again = decide_with(&r, Some(&j), &[]);
    assert_eq!(again.status, None);
    assert!(again.events.is_empty());
}

#[test]
fn a_succeeded_job_records_the_result() {
    let r = with_status(run(), &decide_with(&run(), None, &[]));
    let j = job(JobStatus {
        succeeded: Some(1),
        completion_time: Some(to_time(at("2026-11-21T02:03:05Z"))),
        conditions: Some(vec![condition("Complete", "", "")]),
        ..started()
    });
    let plan = decide_with(&r, Some(&j), &[terminated(0, "Completed", RESULT)]);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Succeeded);
    assert_eq!(s.backup_id.as_deref(), Some("20261121T020010.000Z-ab12cd"));
    assert_eq!(s.bytes, Some(2048));
    assert_eq!(s.completed_at, Some(at("2026-11-21T02:03:05Z")));
    assert_eq!(s.duration.as_deref(), Some("3m0s"));
    assert_eq!(s.artifacts.len(), 1);
    assert_eq!(s.artifacts[0].destination, "primary");
    assert!(find(&s.conditions, types::VERIFIED).is_some_and(|c| c.status == "True"));
    assert!(
        !plan.add_finalizer,
        "deletionPolicy Retain: nothing holds the run when it is deleted"
    );
    let mut delete = r.clone();
    delete.spec.deletion_policy = DeletionPolicy::Delete;
    let plan_delete = decide_with(&delete, Some(&j), &[terminated(0, "Completed", RESULT)]);
    assert!(
        plan_delete.add_finalizer,
        "deletionPolicy Delete: a run holding a backup gets the prune finalizer"
    );
    // Switched to Delete after it finished: the finalizer comes then.
    let finished = with_status(r.clone(), &plan);
    assert!(!decide_with(&finished, Some(&j), &[]).add_finalizer);
    let mut switched = finished;
    switched.spec.deletion_policy = DeletionPolicy::Delete;
    assert!(decide_with(&switched, Some(&j), &[]).add_finalizer);
    assert_eq!(plan.outcome.as_ref().map(|o| o.succeeded), Some(true));
    assert_eq!(plan.outcome.as_ref().and_then(|o| o.seconds), Some(180.0));
    assert!(plan
        .events
        .iter()
        .any(|e| !e.warning && e.message.contains("succeeded")));
}

#[test]
fn a_failed_job_fails_the_run_with_the_pods_reason() {
    let r = run();
    let j = job(JobStatus {
        failed: Some(1),
        conditions: Some(vec![condition(
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )]),
        ..started()
    });
    let plan = decide_with(&r, Some(&j), &[terminated(137, "OOMKilled", "")]);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Failed);
    assert_eq!(s.message.as_deref(), Some("OOMKilled"));
    assert!(s.backup_id.is_none());
    assert!(!plan.add_finalizer);
    assert_eq!(plan.outcome.as_ref().map(|o| o.succeeded), Some(false));
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.message.contains("OOMKilled")));

    // Without a pod, the Job's own reason.
    let plan = decide_with(&r, Some(&j), &[]);
    assert_eq!(
        plan.status.unwrap().message.as_deref(),
        Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
    );
}

/// A hung backup outlives its Job's activeDeadlineSeconds: Kubernetes
/// stops the pod (SIGTERM, exit 143) and the run fails saying it was the
/// deadline, not an anonymous "Error" (issue 13, item 8).
#[test]
fn a_job_past_its_deadline_fails_the_run_naming_the_deadline() {
    let r = run();
    let j = job(JobStatus {
        failed: Some(1),
        conditions: Some(vec![condition(
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        )]),
        ..started()
    });
    let plan = decide_with(&r, Some(&j), &[terminated(143, "Error", "")]);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Failed);
    assert_eq!(
        s.message.as_deref(),
        Some("DeadlineExceeded: Job was active longer than specified deadline")
    );
    assert_eq!(plan.outcome.as_ref().map(|o| o.succeeded), Some(false));
}

#[test]
fn a_pod_that_cannot_start_says_why() {
    let r = with_status(run(), &decide_with(&run(), None, &[]));
    let j = job(JobStatus::default());
    let waiting = pod(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CreateContainerConfigError".into()),
            message: Some("secret \"orders-db\" not found".into()),
        }),
        ..Default::default()
    });
    let plan = decide_with(&r, Some(&j), &[waiting]);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Pending);
    assert_eq!(
        s.message.as_deref(),
        Some("CreateContainerConfigError: secret \"orders-db\" not found")
    );
    assert!(plan
        .events
        .iter()
        .any(|e| e.warning && e.message.contains("orders-db")));
}

#[test]
fn a_succeeded_job_without_a_readable_result_fails_the_run() {
    let j = job(JobStatus {
        succeeded: Some(1),
        ..started()
    });
    let plan = decide_with(&run(), Some(&j), &[terminated(0, "Completed", "not json")]);
    let s = plan.status.unwrap();
    assert_eq!(s.phase, RunPhase::Failed);
    assert!(s.message.unwrap().contains("unreadable"));
}

#[test]
fn a_finished_run_never_gets_a_new_job() {
    let mut r = run();
    r.status = Some(BackupRunStatus {
        phase: RunPhase::Failed,
        ..Default::default()
    });
    let plan = decide_with(&r, None, &[]);
    assert!(plan.create_job.is_none());
    assert_eq!(plan.status, None);
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn a_missing_policy_is_reported_not_crashed_on() {
    let r = run();
    let plan = decide(
        Observed {
            run: &r,
            policy: None,
            job: &ObservedJob::default(),
            now: at(NOW),
        },
        &JobConfig::default(),
        RESYNC,
    );
    assert!(plan.create_job.is_none());
    let s = plan.status.unwrap();
    assert_eq!(s.phase, RunPhase::Pending);
    assert_eq!(
        find(&s.conditions, types::COMPLETE).unwrap().reason,
        reasons::POLICY_NOT_FOUND
    );
    assert!(plan.events.iter().any(|e| e.warning));
}

fn succeeded_run() -> BackupRun {
    let mut r = run();
    r.status = Some(BackupRunStatus {
        phase: RunPhase::Succeeded,
        backup_id: Some("20261121T020010.000Z-ab12cd".into()),
        ..Default::default()
    });
    r.spec.deletion_policy = DeletionPolicy::Delete;
    r.metadata.finalizers = Some(vec![PRUNE_FINALIZER.into()]);
    r.metadata.deletion_timestamp = Some(to_time(at(NOW)));
    r
}

/// What a reconcile of the deleted run `r` decides, its prune Job and pods as given.
fn cleanup_with(
    r: &BackupRun,
    p: Option<&BackupPolicy>,
    job: Option<&Job>,
    pods: &[Pod],
    now: &str,
) -> Cleanup {
    let prune = ObservedJob::new(job.cloned(), pods.to_vec());
    decide_cleanup(r, p, &prune, at(now), &JobConfig::default()).unwrap()
}

#[test]
fn deleting_a_retained_run_releases_it_and_prunes_nothing() {
    // Held by a finalizer from when it said Delete: Retain now lets it go
    // without a prune Job.
    let mut r = succeeded_run();
    r.spec.deletion_policy = DeletionPolicy::Retain;
    let decision = cleanup_with(&r, Some(&policy()), None, &[], NOW);
    let Cleanup::RemoveFinalizer(note) = decision else {
        panic!("expected the run to be released, got {decision:?}");
    };
    assert_eq!(note.reason, "Retained");
    assert!(
        note.message.contains("20261121T020010.000Z-ab12cd"),
        "{}",
        note.message
    );
}

#[test]
fn deleting_a_run_prunes_before_releasing_it() {
    let r = succeeded_run();
    let p = policy();
    let Cleanup::CreatePruneJob(prune) = cleanup_with(&r, Some(&p), None, &[], NOW) else {
        panic!("expected a prune job");
    };
    let args = args(&prune);
    assert!(
        args.contains(&"20261121T020010.000Z-ab12cd".to_string()),
        "{args:?}"
    );

    let mut running = prune.clone();
    running.status = Some(started());
    assert_eq!(
        cleanup_with(&r, Some(&p), Some(&running), &[], NOW),
        Cleanup::Wait
    );

    let mut failed = prune.clone();
    failed.status = Some(JobStatus {
        conditions: Some(vec![condition("Failed", "BackoffLimitExceeded", "")]),
        ..started()
    });
    assert!(matches!(
        cleanup_with(&r, Some(&p), Some(&failed), &[], NOW),
        Cleanup::RetryPrune { .. }
    ));

    let mut done = prune;
    done.status = Some(JobStatus {
        succeeded: Some(1),
        ..started()
    });
    let deleted = terminated(
        0,
        "Completed",
        r#"{"deleted":["20261121T020010.000Z-ab12cd"]}"#,
    );
    for pods in [vec![], vec![deleted]] {
        assert!(
            matches!(cleanup_with(&r, Some(&p), Some(&done), &pods, NOW), Cleanup::RemoveFinalizer(n) if n.reason == "Pruned")
        );
    }
}

#[test]
fn a_backup_kept_by_object_lock_holds_its_run_until_the_lock_ends_then_prunes_again() {
    let r = succeeded_run();
    let p = policy();
    let Cleanup::CreatePruneJob(mut done) = cleanup_with(&r, Some(&p), None, &[], NOW) else {
        panic!("expected a prune job");
    };
    done.status = Some(JobStatus {
        succeeded: Some(1),
        ..started()
    });
    let name = done.metadata.name.clone().unwrap();
    let kept = terminated(
        0,
        "Completed",
        r#"{"deleted":[],"locked_until":"2026-11-21T05:10:00Z"}"#,
    );
    assert_eq!(
        cleanup_with(&r, Some(&p), Some(&done), std::slice::from_ref(&kept), NOW),
        Cleanup::Locked {
            job: name.clone(),
            until: at("2026-11-21T05:10:00Z"),
            wait: Some(std::time::Duration::from_secs(3 * 3600)),
        },
        "the finalizer stays: the backup is still there"
    );
    // A lock of a year is looked at again within hours, not in a year.
    let far = terminated(
        0,
        "Completed",
        r#"{"deleted":[],"locked_until":"2027-11-21T00:00:00Z"}"#,
    );
    let Cleanup::Locked { wait, .. } = cleanup_with(&r, Some(&p), Some(&done), &[far], NOW) else {
        panic!("expected Locked");
    };
    assert!(wait.unwrap() <= std::time::Duration::from_secs(6 * 3600));
    // Once the date has passed, the Job goes so that a new one prunes again.
    assert_eq!(
        cleanup_with(&r, Some(&p), Some(&done), &[kept], "2026-11-21T05:10:00Z"),
        Cleanup::Locked {
            job: name,
            until: at("2026-11-21T05:10:00Z"),
            wait: None,
        }
    );
}

#[test]
fn a_run_without_a_backup_or_policy_is_released_at_once() {
    let mut no_backup = succeeded_run();
    no_backup.status.as_mut().unwrap().backup_id = None;
    assert!(matches!(
        cleanup_with(&no_backup, Some(&policy()), None, &[], NOW),
        Cleanup::RemoveFinalizer(_)
    ));
    let orphan = succeeded_run();
    assert!(
        matches!(cleanup_with(&orphan, None, None, &[], NOW), Cleanup::RemoveFinalizer(n) if n.warning)
    );
    let mut not_ours = succeeded_run();
    not_ours.metadata.finalizers = None;
    assert_eq!(
        cleanup_with(&not_ours, Some(&policy()), None, &[], NOW),
        Cleanup::Nothing
    );
}

#[test]
fn a_failed_read_back_fails_the_run_naming_the_destination() {
    // `backup --verify` committed, re-read, found a fault, exited 1 with its summary.
    let summary = RESULT.replace(r#""verified":["primary"]"#, r#""verified":[]"#);
    assert_ne!(summary, RESULT);
    let j = job(JobStatus {
        failed: Some(1),
        conditions: Some(vec![condition("Failed", "BackoffLimitExceeded", "")]),
        ..started()
    });
    let plan = decide_with(&run(), Some(&j), &[terminated(1, "Error", &summary)]);
    let s = plan.status.clone().unwrap();
    assert_eq!(s.phase, RunPhase::Failed);
    assert_eq!(
        s.message.as_deref(),
        Some("backup 20261121T020010.000Z-ab12cd failed read-back verification in primary")
    );
    let v = find(&s.conditions, types::VERIFIED).unwrap();
    assert_eq!(
        (v.status.as_str(), v.reason.as_str()),
        ("False", reasons::CHECKSUM_MISMATCH)
    );
    let c = find(&s.conditions, types::COMPLETE).unwrap();
    assert_eq!(c.reason, reasons::VERIFICATION_FAILED);
    assert_eq!(plan.outcome.as_ref().map(|o| o.succeeded), Some(false));
}
