//! The Job runs for real: the Job specs that `controller::jobs` builds are
//! executed locally as a kubelet would run their one container — Secret
//! volumes materialised from fixture Secrets at their mount paths, env
//! `valueFrom.secretKeyRef` resolved from the same fixtures, the container's
//! command and args run with exactly that environment — against the test
//! PostgreSQL and S3 server. The only translations: the image's `lifeboat` is
//! the binary under test, and the termination message path is a temp file.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use std::collections::BTreeSet;

use kube::ResourceExt;
use lifeboat::api::conditions::{find, types};
use lifeboat::api::policy::destination::{ObjectLock, ObjectLockMode};
use lifeboat::api::{
    BackupRun, BackupRunSpec, BackupRunStatus, LocalRef, RunKind, RunPhase, Tier, PRUNE_FINALIZER,
};
use lifeboat::controller::job_status::ObservedJob;
use lifeboat::controller::jobs::{
    artifacts, backup_job, committed_destinations, owner_of, prune_job,
};
use lifeboat::controller::run::{decide, decide_cleanup, Cleanup, Observed};
use lifeboat::wire::{BackupSummary, PruneSummary};
use support::kubelet::*;
use support::*;

const DB_PASSWORD: &str = PW_ROLE_PASSWORD;

fn run(name: &str) -> BackupRun {
    let mut r = BackupRun::new(
        name,
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier: Tier::Manual,
            kind: RunKind::Full,
            scheduled_at: None,
            deletion_policy: lifeboat::api::DeletionPolicy::Retain,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(format!("uid-{name}"));
    r
}

#[track_caller]
fn succeeded(ran: &Ran) {
    assert!(
        ran.output.status.success(),
        "the Job's container failed: {}\n{}",
        stderr(&ran.output),
        stdout(&ran.output)
    );
}

fn backup_now(w: &World, run_name: &str) -> BackupSummary {
    let job = backup_job(&w.policy, &run(run_name), &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    succeeded(&ran);
    BackupSummary::parse(&ran.termination_message).expect("the termination message is a summary")
}

fn keys_of(url: &str, backup_id: &str) -> BTreeSet<String> {
    s3_keys(url)
        .into_iter()
        .filter(|k| k.contains(backup_id))
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[test]
fn backup_job_writes_both_regions_and_prune_job_removes_exactly_that_backup() {
    let w = world();

    let job = backup_job(&w.policy, &run("orders-manual-1"), &w.cfg).unwrap();
    // Secrets are references in the Job, never values.
    let serialized = serde_json::to_string(&job).unwrap();
    for data in w.secrets.values() {
        for (key, value) in data {
            if key != "host" && key != "port" && key != "user" {
                assert!(
                    !serialized.contains(value.trim()),
                    "{key} leaked into the Job"
                );
            }
        }
    }

    let ran = execute(&job, &w.secrets, w.work.path());
    succeeded(&ran);
    let first = BackupSummary::parse(&ran.termination_message).expect("a summary");
    // The report on stdout names no secret either.
    assert!(!stdout(&ran.output).contains(DB_PASSWORD));
    assert!(!stderr(&ran.output).contains(DB_PASSWORD));

    assert_eq!(first.committed.len(), 2, "{first:?}");
    assert!(first.failed.is_empty());
    assert!(
        first.fully_verified(),
        "readBack is on by default: {first:?}"
    );
    assert_eq!(
        committed_destinations(&first, &w.policy),
        ["primary", "dr-eu"]
    );
    let artifacts = artifacts(&first, &w.policy);
    assert_eq!(artifacts.len(), 2 * first.objects.len());
    for (i, url) in w.buckets.iter().enumerate() {
        let keys = s3_keys(url);
        let manifest = format!("prod/shop/orders/backups/{}/manifest.json", first.backup_id);
        assert!(keys.contains(&manifest), "no {manifest} in {keys:?}");
        let dest = ["primary", "dr-eu"][i];
        for a in artifacts.iter().filter(|a| a.destination == dest) {
            assert!(a.verified);
            let body = s3_get(url, &a.key);
            assert_eq!(body.len() as i64, a.bytes, "{}", a.key);
            assert_eq!(sha256_hex(&body), a.sha256, "{}", a.key);
        }
    }

    // What the Job wrote restores: the backup is real, not just objects.
    let (b1, r1) = bucket_and_region(&w.buckets[1]);
    let from = s3_url(&b1, &r1, "prod/shop/orders");
    let key_file = w.work.path().join("restore-keys");
    write_private(&key_file, &w.secrets["backup-keys"]["keys"]);
    let target = unique("jobrun_restored");
    restore(&[&from], key_file.to_str().unwrap())
        .id(&first.backup_id)
        .create(&target)
        .arg("--no-owner")
        .ok();
    assert_eq!(psql(&target, "select count(*) from orders"), "500");
    assert_eq!(psql(&w.db, "select count(*) from orders"), "500");

    let second = backup_now(&w, "orders-manual-2");
    assert_ne!(second.backup_id, first.backup_id);
    let second_keys: Vec<_> = w
        .buckets
        .iter()
        .map(|u| keys_of(u, &second.backup_id))
        .collect();
    assert!(second_keys.iter().all(|k| !k.is_empty()));

    let prune = prune_job(
        &w.policy,
        "orders-manual-1",
        &first.backup_id,
        owner_of(&run("orders-manual-1")).unwrap(),
        &w.cfg,
    )
    .unwrap();
    let ran = execute(&prune, &w.secrets, w.work.path());
    succeeded(&ran);
    for (i, url) in w.buckets.iter().enumerate() {
        assert!(
            keys_of(url, &first.backup_id).is_empty(),
            "{url} still holds {}",
            first.backup_id
        );
        assert_eq!(keys_of(url, &second.backup_id), second_keys[i], "{url}");
    }
    // A prune Job that runs twice (a retry) finds nothing left and succeeds.
    succeeded(&execute(&prune, &w.secrets, w.work.path()));
}

#[test]
fn the_password_really_comes_from_the_mounted_secret() {
    let mut w = world();
    w.secrets
        .get_mut("orders-db")
        .unwrap()
        .insert("password".into(), "wrong-password".into());
    let job = backup_job(&w.policy, &run("orders-manual-wrong"), &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    assert!(!ran.output.status.success(), "{}", stdout(&ran.output));
    let err = stderr(&ran.output);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password"), "{err}");
    // A failed Job leaves no summary; the controller falls back to the log.
    assert!(BackupSummary::parse(&ran.termination_message).is_err());
    for url in &w.buckets {
        assert!(
            s3_keys(url).iter().all(|k| !k.ends_with("manifest.json")),
            "a failed backup committed nothing"
        );
    }
}

/// Deleting a BackupRun through the controller loop, with the Jobs it
/// makes run for real against both S3 regions: with the default deletion
/// policy (Retain) every object of the backup stays in every region and no
/// prune Job is made; with Delete the prune Job removes that backup, and
/// only it, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_run_keeps_its_backup_in_every_region_unless_it_says_delete() {
    use apiserver::{ApiServer, JOBS, RUNS};
    use kube::api::{DeleteParams, PostParams};
    use lifeboat::api::BackupPolicy;
    use lifeboat::controller::{metrics::Metrics, Clock, Settings};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::Duration;

    const NS: &str = "shop";
    const WAIT: Duration = Duration::from_secs(120);
    let w = Arc::new(tokio::task::spawn_blocking(world).await.unwrap());
    let server = ApiServer::start().await;
    let settings = Settings {
        jobs: w.cfg.clone(),
        namespace: Some(NS.into()),
        resync: Duration::from_millis(200),
        retry: Duration::from_millis(200),
        // Before the policy exists: nothing is scheduled during the test.
        clock: Clock::fixed(chrono::Utc::now()),
        ..Settings::default()
    };
    let _controller = server.run_controllers(settings, Arc::new(Metrics::default()));
    let policies: kube::Api<BackupPolicy> = kube::Api::namespaced(server.client(), NS);
    let mut policy = w.policy.clone();
    policy.metadata.uid = None;
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let runs: kube::Api<BackupRun> = kube::Api::namespaced(server.client(), NS);

    // The Job named by `pick` among the store's Jobs, run as a kubelet
    // would, its outcome reported as the Job controller would.
    let run_job = |pick: Box<dyn Fn(&Value) -> bool + Send>| {
        let (server, w) = (&server, w.clone());
        async move {
            let job = server
                .wait_for("the job", WAIT, |s| {
                    s.list(JOBS, NS).into_iter().find(&pick)
                })
                .await;
            let name = job["metadata"]["name"].as_str().unwrap().to_string();
            let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job).unwrap();
            let ran = tokio::task::spawn_blocking(move || execute(&job, &w.secrets, w.work.path()))
                .await
                .unwrap();
            succeeded(&ran);
            server
                .finish_job(NS, &name, true, &ran.termination_message)
                .await;
        }
    };
    let owned_by = |run: &'static str| -> Box<dyn Fn(&Value) -> bool + Send> {
        Box::new(move |j: &Value| {
            j.pointer("/metadata/ownerReferences/0/name") == Some(&json!(run))
                && !j.to_string().contains("\"prune\"")
        })
    };
    // Makes a run by hand, runs its backup Job; its backup id.
    let back_up = |run: &'static str, deletion: &'static str| {
        let (server, runs) = (&server, &runs);
        let run_job = &run_job;
        async move {
            let r: BackupRun = serde_json::from_value(json!({
                "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
                "metadata": {"name": run, "namespace": NS},
                "spec": {"policyRef": {"name": "orders"}, "deletionPolicy": deletion}
            }))
            .unwrap();
            runs.create(&PostParams::default(), &r).await.unwrap();
            run_job(owned_by(run)).await;
            server
                .wait_for("the run to succeed", WAIT, |s| {
                    let r = s.get(RUNS, NS, run)?;
                    (r.pointer("/status/phase") == Some(&json!("Succeeded")))
                        .then(|| r["status"]["backupId"].as_str().unwrap().to_string())
                })
                .await
        }
    };
    let objects = |backup_id: &str| -> Vec<BTreeSet<String>> {
        w.buckets.iter().map(|u| keys_of(u, backup_id)).collect()
    };

    // Retain (the default): the resource goes, the backup stays everywhere.
    let kept = back_up("orders-kept", "Retain").await;
    let kept_objects = tokio::task::block_in_place(|| objects(&kept));
    for (url, keys) in w.buckets.iter().zip(&kept_objects) {
        assert!(
            keys.iter().any(|k| k.ends_with("manifest.json")) && keys.len() > 1,
            "{url}: {keys:?}"
        );
    }
    runs.delete("orders-kept", &DeleteParams::default())
        .await
        .unwrap();
    server
        .wait_for("orders-kept to be gone", WAIT, |s| {
            s.get(RUNS, NS, "orders-kept").is_none().then_some(())
        })
        .await;

    // Delete: the prune Job runs before the resource goes.
    let pruned = back_up("orders-pruned", "Delete").await;
    let pruned_objects = tokio::task::block_in_place(|| objects(&pruned));
    assert!(pruned_objects.iter().all(|k| !k.is_empty()));
    server
        .wait_for("the finalizer", WAIT, |s| {
            s.get(RUNS, NS, "orders-pruned")?
                .pointer("/metadata/finalizers")
                .cloned()
        })
        .await;
    runs.delete("orders-pruned", &DeleteParams::default())
        .await
        .unwrap();
    let pruned_id = pruned.clone();
    run_job(Box::new(move |j: &Value| {
        let s = j.to_string();
        s.contains("\"prune\"") && s.contains(&pruned_id)
    }))
    .await;
    server
        .wait_for("orders-pruned to be gone", WAIT, |s| {
            s.get(RUNS, NS, "orders-pruned").is_none().then_some(())
        })
        .await;

    tokio::task::block_in_place(|| {
        assert!(
            objects(&pruned).iter().all(BTreeSet::is_empty),
            "Delete pruned its backup everywhere"
        );
        assert_eq!(
            objects(&kept),
            kept_objects,
            "Retain left every object of its backup in every region"
        );
    });
    let prune_jobs: Vec<String> = server
        .store
        .list(JOBS, NS)
        .iter()
        .filter(|j| j.to_string().contains("\"prune\""))
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        prune_jobs.len(),
        1,
        "one prune Job, for Delete only: {prune_jobs:?}"
    );
}

/// What the kubelet makes the termination message of a container that failed
/// without writing one (FallbackToLogsOnError): the tail of its log, at most
/// 2048 bytes and 80 lines.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let mut cut = tail.len().saturating_sub(2048);
    while !tail.is_char_boundary(cut) {
        cut += 1;
    }
    tail[cut..].to_string()
}

#[test]
fn object_lock_on_a_bucket_without_it_fails_the_backup_job_and_the_run_says_why() {
    let mut w = world();
    // The world's buckets were created without Object Lock.
    w.policy.spec.destinations[0].s3.object_lock = Some(ObjectLock {
        mode: ObjectLockMode::Governance,
        days: 7,
    });
    w.policy
        .spec
        .validate()
        .expect("7 days covers 7 daily backups");
    let r = run("orders-manual-nolock");
    let job = backup_job(&w.policy, &r, &w.cfg).unwrap();
    let args = serde_json::to_string(&job).unwrap();
    assert!(
        args.contains("object-lock=governance&lock-days=7"),
        "the lock reaches the Job in its destination: {args}"
    );

    let ran = execute(&job, &w.secrets, w.work.path());
    assert!(!ran.output.status.success(), "{}", stdout(&ran.output));
    let (bucket, _) = bucket_and_region(&w.buckets[0]);
    let expected = format!("bucket {bucket} has no Object Lock configuration");
    let err = stderr(&ran.output);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("primary (s3://") && last.contains(&expected),
        "the last line names the destination and the problem: {err}"
    );
    for url in &w.buckets {
        assert!(
            s3_keys(url).iter().all(|k| !k.ends_with("manifest.json")),
            "nothing committed"
        );
    }

    // The run controller reads it from the pod as the kubelet reports it.
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "labels": {"job-name": job.metadata.name}},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "lifeboat", "image": "lifeboat",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": log_tail(&err)}}}]}
    }))
    .unwrap();
    let mut failed = job.clone();
    failed.status = Some(
        serde_json::from_value(serde_json::json!({"failed": 1, "startTime": "2026-11-21T02:00:05Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}))
        .unwrap(),
    );
    let plan = decide(
        Observed {
            run: &r,
            policy: Some(&w.policy),
            job: &ObservedJob::new(Some(failed), vec![pod]),
            now: chrono::Utc::now(),
        },
        &w.cfg,
        std::time::Duration::from_secs(60),
    );
    let status = plan.status.expect("the run's status changes");
    assert_eq!(status.phase, RunPhase::Failed);
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains(&expected), "{message}");

    // …and the policy's Healthy condition from the run.
    let mut failed_run = r.clone();
    failed_run.status = Some(status);
    let policy_plan = lifeboat::controller::policy::decide(
        &w.policy,
        &[&failed_run],
        chrono::Utc::now(),
        std::time::Duration::from_secs(60),
    );
    let policy_status = policy_plan.status.expect("the policy's status changes");
    let healthy = find(&policy_status.conditions, types::HEALTHY).expect("a Healthy condition");
    assert_eq!(healthy.status, "False");
    assert!(healthy.message.contains(&expected), "{}", healthy.message);
}

#[test]
fn a_prune_job_in_a_locked_bucket_keeps_the_backup_and_holds_the_run_until_the_lock_ends() {
    let mut w = world();
    let locked = locked_bucket("us-east-1");
    let (bucket, _) = bucket_and_region(&locked);
    w.policy.spec.destinations[0].s3.bucket = bucket;
    w.policy.spec.destinations[0].s3.object_lock = Some(ObjectLock {
        mode: ObjectLockMode::Compliance,
        days: 7,
    });
    w.buckets[0] = locked;
    let summary = backup_now(&w, "orders-manual-locked");
    let id = summary.backup_id.clone();
    assert_eq!(summary.committed, ["primary", "dr-eu"]);

    let mut r = run("orders-manual-locked");
    let prune = prune_job(&w.policy, &r.name_any(), &id, owner_of(&r).unwrap(), &w.cfg).unwrap();
    let ran = execute(&prune, &w.secrets, w.work.path());
    succeeded(&ran);
    let kept: PruneSummary =
        lifeboat::wire::parse(&ran.termination_message).expect("a prune summary");
    let until = kept.locked_until.expect("the lock's date");
    let expected = chrono::Utc::now() + chrono::Duration::days(7);
    assert!((until - expected).num_minutes().abs() < 10, "{until}");
    assert!(kept.deleted.is_empty(), "{kept:?}");
    assert!(!keys_of(&w.buckets[0], &id).is_empty(), "kept where locked");
    assert!(keys_of(&w.buckets[1], &id).is_empty(), "deleted where not");

    // The run keeps its finalizer while the lock holds, then prunes again.
    r.status = Some(BackupRunStatus {
        backup_id: Some(id),
        ..Default::default()
    });
    r.metadata.finalizers = Some(vec![PRUNE_FINALIZER.to_string()]);
    // Retention let it go (a run deleted by hand keeps its backup).
    r.spec.deletion_policy = lifeboat::api::run::DeletionPolicy::Delete;
    let mut done = prune.clone();
    done.status = Some(
        serde_json::from_value(serde_json::json!({"succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]}))
        .unwrap(),
    );
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "labels": {"job-name": prune.metadata.name}},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "lifeboat", "image": "lifeboat",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": ran.termination_message}}}]}
    }))
    .unwrap();
    let observed = ObservedJob::new(Some(done), vec![pod]);
    let decide_at = |now| decide_cleanup(&r, Some(&w.policy), &observed, now, &w.cfg).unwrap();
    assert!(
        matches!(
            decide_at(chrono::Utc::now()),
            Cleanup::Locked { wait: Some(_), .. }
        ),
        "held while locked"
    );
    assert!(
        matches!(decide_at(until), Cleanup::Locked { wait: None, .. }),
        "pruned again once the lock ended"
    );
}
