//! The controller loop against the in-memory API server: policies produce
//! runs on schedule, runs produce Jobs, Job outcomes reach the run and the
//! policy, deletion prunes first, a restart makes no duplicate, and the
//! Lease lets one replica lead.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::sync::Arc;
use std::time::Duration;

use apiserver::{ApiServer, EVENTS, JOBS, LEASES, POLICIES, RUNS};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::BackupRun;
use lifeboat::controller::metrics::Metrics;
use lifeboat::controller::{leader, Clock, Settings};
use serde::Deserialize;
use serde_json::{json, Value};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(20);

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn policy(name: &str, daily: &str) -> Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-11-20T10:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
            "schedule": {"daily": daily},
            "retention": {"daily": 3},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "objectives": {"rpo": "25h"}
        }
    })
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start(server: &ApiServer, clock: &Clock) -> Running {
    start_with(server, clock, Settings::default().archiver_port)
}

/// An API server holding policy `name` (daily at `daily`), and a controller
/// running against it on a clock fixed at `now`.
async fn with_policy(now: &str, name: &str, daily: &str) -> (ApiServer, Clock, Running) {
    let server = ApiServer::start().await;
    let clock = Clock::fixed(at(now));
    let controller = start(&server, &clock);
    create(&server, policy(name, daily)).await;
    (server, clock, controller)
}

fn start_with(server: &ApiServer, clock: &Clock, archiver_port: u16) -> Running {
    let settings = Settings {
        archiver_port,
        namespace: Some(NS.into()),
        // Short, so a moved test clock is noticed quickly.
        resync: Duration::from_millis(200),
        retry: Duration::from_millis(200),
        clock: clock.clone(),
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let task = server.run_controllers(settings, metrics.clone());
    Running { task, metrics }
}

async fn create(server: &ApiServer, obj: Value) {
    server.create_policy(obj).await;
}

fn phase(run: &Value) -> &str {
    run.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The Job owned by a run.
fn job_of(server: &ApiServer, run: &str) -> Option<Value> {
    server.store.list(JOBS, NS).into_iter().find(|j| {
        j.pointer("/metadata/ownerReferences/0/name")
            .and_then(Value::as_str)
            == Some(run)
    })
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap().to_string()
}

const RESULT: &str = r#"{"backup_id":"20261121T020010.000Z-ab12cd","server_version":"15.18","bytes_in":4096,"bytes_out":2048,"seconds":1.5,"committed":["primary"],"failed":[],"verified":["primary"],"objects":[{"key":"backups/20261121T020010.000Z-ab12cd/db-0.lbk","size":2048,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#;

/// Polls a condition that the store cannot signal (metrics, elapsed
/// reconciles) at a short interval, with a deadline.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reconciles(metrics: &Metrics, controller: &str) -> u64 {
    let text = metrics.encode();
    let prefix =
        format!("lifeboat_reconcile_duration_seconds_count{{controller=\"{controller}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_job_success_failure_and_restart() {
    let (server, clock, controller) =
        with_policy("2026-11-21T01:59:00Z", "orders", "0 2 * * *").await;

    // Before the slot: status written, no run.
    let next = server
        .wait_for("the policy's nextBackup", WAIT, |s| {
            s.get(POLICIES, NS, "orders")?
                .pointer("/status/nextBackup")
                .cloned()
        })
        .await;
    assert_eq!(next, json!("2026-11-21T02:00:00Z"));
    assert_eq!(server.store.count(RUNS), 0);

    // The slot passes: one run, named after it, and its Job.
    clock.set(at("2026-11-21T02:00:30Z"));
    let run = "orders-daily-20261121t020000z";
    let job = server
        .wait_for("the run's job", WAIT, |_| job_of(&server, run))
        .await;
    let job = name(&job);
    server
        .wait_for("the run to record its job", WAIT, |s| {
            let r = s.get(RUNS, NS, run)?;
            (r.pointer("/status/job") == Some(&json!(job))).then_some(())
        })
        .await;

    // Restart in the middle: the new controller sees the same slot and the
    // same run, and makes no second one.
    drop(controller);
    clock.set(at("2026-11-21T02:01:00Z"));
    let controller = start(&server, &clock);
    until("the new controller to reconcile the policy and run", || {
        reconciles(&controller.metrics, "backuppolicy") >= 1
            && reconciles(&controller.metrics, "backuprun") >= 1
    })
    .await;
    // A quiet controller writes nothing more, so nothing wakes it: a label
    // change makes it decide again on what its caches hold.
    server
        .patch_policy(
            NS,
            "orders",
            json!({"metadata": {"labels": {"touched": "1"}}}),
        )
        .await;
    until("the new controller to reconcile the policy again", || {
        reconciles(&controller.metrics, "backuppolicy") >= 2
    })
    .await;
    assert_eq!(server.store.count(RUNS), 1);
    assert_eq!(server.store.count(JOBS), 1);

    // The Job succeeds: the run records the result, the policy its last backup.
    server.finish_job(NS, &job, true, RESULT).await;
    let r = server
        .wait_for("the run to succeed", WAIT, |s| {
            s.get(RUNS, NS, run).filter(|r| phase(r) == "Succeeded")
        })
        .await;
    assert_eq!(
        r.pointer("/status/backupId"),
        Some(&json!("20261121T020010.000Z-ab12cd"))
    );
    assert_eq!(
        r.pointer("/status/artifacts/0/destination"),
        Some(&json!("primary"))
    );
    // deletionPolicy Retain (the default): nothing holds the run.
    assert_eq!(r.pointer("/spec/deletionPolicy"), Some(&json!("Retain")));
    assert_eq!(r.pointer("/metadata/finalizers"), None);
    let p = server
        .wait_for("the policy's last backup", WAIT, |s| {
            s.get(POLICIES, NS, "orders")
                .filter(|p| p.pointer("/status/lastBackup/run") == Some(&json!(run)))
        })
        .await;
    let healthy = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Healthy")
        .unwrap();
    assert_eq!(healthy["status"], "True");
    assert_eq!(
        p.pointer("/status/recoveryWindow/to"),
        Some(&json!("2026-11-21T02:03:05Z"))
    );
    until("the success metric", || {
        controller.metrics.encode().contains(r#"lifeboat_last_success_timestamp_seconds{namespace="shop",policy="orders",tier="daily"}"#)
    })
    .await;

    // Next day: a new run whose Job fails; the run says why.
    clock.set(at("2026-11-22T02:00:30Z"));
    let run2 = "orders-daily-20261122t020000z";
    let job2 = name(
        &server
            .wait_for("the second run's job", WAIT, |_| job_of(&server, run2))
            .await,
    );
    server
        .finish_job(
            NS,
            &job2,
            false,
            "pg_dump: connection to server failed: Connection refused",
        )
        .await;
    let r2 = server
        .wait_for("the second run to fail", WAIT, |s| {
            s.get(RUNS, NS, run2).filter(|r| phase(r) == "Failed")
        })
        .await;
    let message = r2
        .pointer("/status/message")
        .and_then(Value::as_str)
        .unwrap();
    assert!(
        message.starts_with("Error: pg_dump: connection to server failed"),
        "{message}"
    );
    server
        .wait_for("the policy to turn unhealthy", WAIT, |s| {
            let p = s.get(POLICIES, NS, "orders")?;
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Healthy")?
                .clone();
            (c["status"] == "False" && c["reason"] == "BackupFailed").then_some(())
        })
        .await;
    assert_eq!(server.store.count(RUNS), 2);

    // Every transition left an event (published just after its status write);
    // a scheduled run's Job creation is announced by its policy's Scheduled.
    for want in [
        "Scheduled",
        "JobSucceeded",
        "JobFailed",
        "BackupSucceeded",
        "BackupFailed",
    ] {
        server
            .wait_for(&format!("a {want} event"), WAIT, |s| {
                s.list(EVENTS, NS).into_iter().find(|e| e["reason"] == want)
            })
            .await;
    }
    // Everything the controller asked of the API server is granted by its
    // trimmed role. The test itself wrote policies, and played the Job
    // controller (Job status, pods).
    assert_granted(
        &server.store,
        &[
            ("create", "backuppolicies"),
            ("patch", "backuppolicies"),
            ("patch", "jobs/status"),
            ("create", "pods"),
        ],
    );
}

/// Fails naming every (verb, resource) the API server served that the
/// controller's ClusterRole and Role in manifests/03-rbac.yaml do not grant
/// (issue 13, item 8: the RBAC is trimmed to what it uses, so a new request
/// must come with its rule).
fn assert_granted(store: &apiserver::Store, by_test: &[(&str, &str)]) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/03-rbac.yaml"
    ))
    .unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap();
        if !matches!(v["kind"].as_str(), Some("ClusterRole" | "Role"))
            || !v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("lifeboat-")
            || v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("lifeboat-config-")
        {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    let mut missing = Vec::new();
    for ((verb, path), _) in store.requests_by() {
        // api/v1/[namespaces/NS/]pods, apis/GROUP/VERSION/[namespaces/NS/]plural[/status]
        let parts: Vec<&str> = path.split('/').collect();
        let (group, rest) = match parts.first() {
            Some(&"api") => ("", &parts[2..]),
            Some(&"apis") if parts.len() > 3 => (parts[1], &parts[3..]),
            _ => continue, // discovery, version
        };
        let rest = match rest {
            ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
            other => other,
        };
        let resource = rest.join("/");
        if by_test.contains(&(verb.as_str(), resource.as_str())) {
            continue;
        }
        if !granted.contains(&(group.to_string(), resource.clone(), verb.clone())) {
            missing.push(format!("{verb} {group}/{resource}"));
        }
    }
    assert!(
        missing.is_empty(),
        "requests the controller's role does not grant: {missing:?}"
    );
}

/// The prune Job of backup `backup_id`, once there is one.
fn prune_job_of(store: &apiserver::Store, backup_id: &str) -> Option<Value> {
    store.list(JOBS, NS).into_iter().find(|j| {
        let args = j
            .pointer("/spec/template/spec/containers/0/args")
            .map(|a| a.to_string())
            .unwrap_or_default();
        args.contains("\"prune\"") && args.contains(backup_id)
    })
}

/// What the Job controller would write when a prune Job succeeds.
async fn prune_succeeded(server: &ApiServer, job: &Value) {
    let jobs: Api<Job> = Api::namespaced(server.client(), NS);
    jobs.patch_status(
        &name(job),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})),
    )
    .await
    .unwrap();
}

async fn wait_gone(server: &ApiServer, run: &str) {
    server
        .wait_for(&format!("run {run} to be gone"), WAIT, |s| {
            s.get(RUNS, NS, run).is_none().then_some(())
        })
        .await;
}

const BACKUP_1: &str = "20261121T020010.000Z-ab12cd";
const BACKUP_2: &str = "20261122T020010.000Z-ef34ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_run_keeps_its_backup_unless_its_deletion_policy_is_delete() {
    let (server, _clock, _controller) =
        with_policy("2026-11-21T02:00:30Z", "orders", "0 2 * * *").await;
    let run = "orders-daily-20261121t020000z";
    let job = name(
        &server
            .wait_for("the run's job", WAIT, |_| job_of(&server, run))
            .await,
    );
    server.finish_job(NS, &job, true, RESULT).await;
    let succeeded = server
        .wait_for("the run to succeed", WAIT, |s| {
            s.get(RUNS, NS, run).filter(|r| phase(r) == "Succeeded")
        })
        .await;

    // Retain, the default: nothing holds the run, it goes at once and no
    // prune Job is made.
    assert_eq!(succeeded.pointer("/metadata/finalizers"), None);
    let runs: Api<BackupRun> = Api::namespaced(server.client(), NS);
    runs.delete(run, &DeleteParams::default()).await.unwrap();
    wait_gone(&server, run).await;
    assert!(prune_job_of(&server.store, BACKUP_1).is_none());

    // Delete: held until the prune Job of its backup succeeds.
    let manual = "orders-now";
    let r: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": manual, "namespace": NS},
        "spec": {"policyRef": {"name": "orders"}, "deletionPolicy": "Delete"}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &r).await.unwrap();
    let job = name(
        &server
            .wait_for("the manual run's job", WAIT, |_| job_of(&server, manual))
            .await,
    );
    server
        .finish_job(NS, &job, true, &RESULT.replace(BACKUP_1, BACKUP_2))
        .await;
    server
        .wait_for("the finalizer", WAIT, |s| {
            s.get(RUNS, NS, manual)?
                .pointer("/metadata/finalizers")
                .cloned()
        })
        .await;
    runs.delete(manual, &DeleteParams::default()).await.unwrap();
    let prune = server
        .wait_for("the prune job", WAIT, |s| prune_job_of(s, BACKUP_2))
        .await;
    assert!(
        server.store.get(RUNS, NS, manual).is_some(),
        "the run is held while the prune runs"
    );
    prune_succeeded(&server, &prune).await;
    wait_gone(&server, manual).await;
    assert!(prune_job_of(&server.store, BACKUP_1).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_the_runs_it_lets_go() {
    let server = ApiServer::start().await;
    let clock = Clock::fixed(at("2026-11-21T02:00:30Z"));
    let _controller = start(&server, &clock);
    let mut p = policy("orders", "0 2 * * *");
    p["spec"]["retention"] = json!({"daily": 1});
    create(&server, p).await;

    let mut runs_made = Vec::new();
    for (day, backup_id) in [("21", BACKUP_1), ("22", BACKUP_2)] {
        clock.set(at(&format!("2026-11-{day}T02:00:30Z")));
        let run = format!("orders-daily-202611{day}t020000z");
        let job = name(
            &server
                .wait_for("the run's job", WAIT, |_| job_of(&server, &run))
                .await,
        );
        server
            .finish_job(NS, &job, true, &RESULT.replace(BACKUP_1, backup_id))
            .await;
        runs_made.push(run);
    }
    let [first, second] = [&runs_made[0], &runs_made[1]];

    // The second success lets the first go: deleted with deletionPolicy
    // Delete and held by the finalizer until its backup is pruned.
    let prune = server
        .wait_for("the prune job of the first backup", WAIT, |s| {
            prune_job_of(s, BACKUP_1)
        })
        .await;
    let held = server.store.get(RUNS, NS, first).expect("held");
    assert_eq!(held.pointer("/spec/deletionPolicy"), Some(&json!("Delete")));
    assert_eq!(
        held.pointer("/metadata/finalizers"),
        Some(&json!(["lifeboat.dev/prune"]))
    );
    assert!(held.pointer("/metadata/deletionTimestamp").is_some());
    prune_succeeded(&server, &prune).await;
    wait_gone(&server, first).await;

    // The kept run is untouched: still Retain, not deleting, no prune.
    let kept = server.store.get(RUNS, NS, second).expect("kept");
    assert_eq!(kept.pointer("/spec/deletionPolicy"), Some(&json!("Retain")));
    assert!(kept.pointer("/metadata/deletionTimestamp").is_none());
    assert!(prune_job_of(&server.store, BACKUP_2).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_becomes_a_condition_without_a_loop() {
    let (server, _clock, controller) =
        with_policy("2026-11-21T02:00:30Z", "broken", "0 25 * * *").await;
    let ready = server
        .wait_for("the Ready condition", WAIT, |s| {
            let p = s.get(POLICIES, NS, "broken")?;
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .cloned()
        })
        .await;
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.schedule.daily"),
        "{ready}"
    );
    assert_eq!(server.store.count(RUNS), 0);
    server
        .wait_for("a warning event", WAIT, |s| {
            s.list(EVENTS, NS)
                .into_iter()
                .find(|e| e["reason"] == "InvalidSpec" && e["type"] == "Warning")
        })
        .await;

    // One reconcile, the create's: the echo of its own status write wakes
    // none (a second when the echo beat the write's answer). Then it waits
    // for a change: many resync periods later, no more.
    until("the reconcile of the new policy", || {
        reconciles(&controller.metrics, "backuppolicy") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = reconciles(&controller.metrics, "backuppolicy");
    assert!(before <= 2, "{}", controller.metrics.encode());
    let rv =
        server.store.get(POLICIES, NS, "broken").unwrap()["metadata"]["resourceVersion"].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await; // a quiet period is what is measured here
    assert!(
        reconciles(&controller.metrics, "backuppolicy") == before,
        "{}",
        controller.metrics.encode()
    );
    assert_eq!(
        server.store.get(POLICIES, NS, "broken").unwrap()["metadata"]["resourceVersion"],
        rv,
        "no status rewrite"
    );

    // Fixing the spec lets it schedule.
    server
        .patch_policy(
            NS,
            "broken",
            json!({"spec": {"schedule": {"daily": "0 2 * * *"}}}),
        )
        .await;
    server
        .wait_for("a run after the fix", WAIT, |s| {
            s.get(RUNS, NS, "broken-daily-20261121t020000z")
        })
        .await;
}

/// A candidate for the controller's Lease that renews every 100 ms.
fn elector(server: &ApiServer, id: &str, duration: Duration) -> leader::Elector {
    let mut e = leader::Elector::new(
        server.client(),
        "lifeboat-system",
        "lifeboat-controller",
        id,
    );
    e.duration = duration;
    e.renew_every = Duration::from_millis(100);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let server = ApiServer::start().await;
    let elector = |id: &str| elector(&server, id, Duration::from_secs(1));
    let (tx_a, mut a) = tokio::sync::watch::channel(false);
    let (tx_b, mut b) = tokio::sync::watch::channel(false);
    let task_a = tokio::spawn(elector("a").run(tx_a));
    a.wait_for(|l| *l).await.unwrap();
    let task_b = tokio::spawn(elector("b").run(tx_b));
    // b tries several rounds and stays standby while a renews.
    until("b to have tried", || server.store.requests() > 20).await;
    assert!(!*b.borrow());
    assert!(*a.borrow());
    let lease = leader_lease(&server);
    assert_eq!(lease["spec"]["holderIdentity"], "a");

    task_a.abort();
    until_leading(&mut b).await;
    let lease = leader_lease(&server);
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    task_b.abort();
    // Leader election within the Role's get, create and patch of Leases.
    assert_granted(&server.store, &[]);
}

/// The controller's Lease, as the API server holds it.
fn leader_lease(server: &ApiServer) -> Value {
    server
        .store
        .get(LEASES, "lifeboat-system", "lifeboat-controller")
        .unwrap()
}

/// Waits (at most WAIT) until the elector behind `rx` leads.
async fn until_leading(rx: &mut tokio::sync::watch::Receiver<bool>) {
    tokio::time::timeout(WAIT, rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_before_it_expires() {
    let server = ApiServer::start().await;
    // Far longer than the wait below: only a release explains a takeover.
    let elector = |id: &str| elector(&server, id, Duration::from_secs(600));
    assert!(elector("a").try_hold().await.unwrap());
    assert!(!elector("b").try_hold().await.unwrap());
    // Only the holder can release; b's attempt changes nothing.
    assert!(!elector("b").release().await.unwrap());
    assert!(elector("a").release().await.unwrap());
    let (tx_b, mut b) = tokio::sync::watch::channel(false);
    let task_b = tokio::spawn(elector("b").run(tx_b));
    until_leading(&mut b).await;
    let lease = leader_lease(&server);
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    task_b.abort();
}

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";

/// The archiver's state as the policy's status shows it.
fn wal_archive(server: &ApiServer, policy: &str) -> Value {
    server
        .store
        .get(POLICIES, NS, policy)
        .and_then(|p| p.pointer("/status/walArchive").cloned())
        .unwrap_or(Value::Null)
}

fn condition_reason(server: &ApiServer, policy: &str, type_: &str) -> String {
    let p = server
        .store
        .get(POLICIES, NS, policy)
        .unwrap_or(Value::Null);
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pitr_policy_runs_an_archiver_whose_status_reaches_the_policy() {
    use lifeboat::commands::archiver_http;
    use lifeboat::controller::archiver::ArchiverStatus;

    let server = ApiServer::start().await;
    // wal-stream's own /status server, fed the figures a shipper would publish.
    let shipped = Utc::now() - chrono::Duration::seconds(2);
    let (tx, rx) = tokio::sync::watch::channel(ArchiverStatus {
        last_segment: Some("000000010000000000000009".into()),
        last_shipped_at: Some(shipped),
        lag_seconds: 0.4,
        partial_bytes: 8192,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, archiver_http::router(rx)).await });

    let clock = Clock::fixed(at("2026-11-21T01:00:00Z"));
    let running = start_with(&server, &clock, port);
    let mut p = policy("ledger", "0 2 * * *");
    p["spec"]["source"]["postgres"]["method"] = json!("physical");
    p["spec"]["source"]["postgres"]["databases"] = json!([]);
    p["spec"]["pointInTimeRecovery"] = json!({"enabled": true, "maxWalDelay": "5s"});
    create(&server, p).await;

    until("the archiver Deployment", || {
        server
            .store
            .get(DEPLOYMENTS, NS, "ledger-wal-stream")
            .is_some()
    })
    .await;
    let d = server
        .store
        .get(DEPLOYMENTS, NS, "ledger-wal-stream")
        .unwrap();
    let args = d
        .pointer("/spec/template/spec/containers/0/args")
        .unwrap()
        .to_string();
    assert!(args.starts_with("[\"wal-stream\""), "{args}");
    assert!(args.contains("lifeboat_shop_ledger"), "{args}");
    until("the archiver to be reported as starting", || {
        condition_reason(&server, "ledger", "WalArchiving") == "ArchiverStarting"
    })
    .await;

    // The Deployment's pod runs (what the kubelet would report).
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ledger-wal-stream-abc12", "labels": {
            "app.kubernetes.io/component": "wal-stream", "lifeboat.dev/policy": "ledger"}},
        "spec": {"containers": [{"name": "lifeboat", "image": "lifeboat"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    until("the archiver's status in the policy", || {
        wal_archive(&server, "ledger")["lastSegment"] == "000000010000000000000009"
    })
    .await;
    let archive = wal_archive(&server, "ledger");
    assert_eq!(archive["healthy"], true);
    assert_eq!(
        condition_reason(&server, "ledger", "WalArchiving"),
        "Archiving"
    );
    let metrics = running.metrics.encode();
    assert!(
        metrics.contains(r#"lifeboat_wal_archive_lag_seconds{namespace="shop",policy="ledger"} 0"#),
        "{metrics}"
    );

    // Twice maxWalDelay without shipping: the policy says the archive lags.
    tx.send_modify(|s| s.lag_seconds = 31.0);
    until("the lag to be reported", || {
        condition_reason(&server, "ledger", "WalArchiving") == "ArchiveLagging"
    })
    .await;
    assert_eq!(wal_archive(&server, "ledger")["healthy"], false);

    // Point-in-time recovery turned off: the archiver goes, and its status.
    server
        .patch_policy(
            NS,
            "ledger",
            json!({"spec": {"pointInTimeRecovery": {"enabled": false}}}),
        )
        .await;
    until("the archiver to be removed", || {
        server
            .store
            .get(DEPLOYMENTS, NS, "ledger-wal-stream")
            .is_none()
            && wal_archive(&server, "ledger").is_null()
    })
    .await;
    // The archiver's Deployment and pod and the policy's status: all within
    // the trimmed role (the test played the Deployment's pod).
    assert_granted(
        &server.store,
        &[
            ("create", "backuppolicies"),
            ("patch", "backuppolicies"),
            ("create", "pods"),
        ],
    );
}

/// The condition `type_` of the object `name` in `resource`, once it has one.
fn condition_of(
    store: &apiserver::Store,
    resource: &str,
    name: &str,
    type_: &str,
) -> Option<Value> {
    store
        .get(resource, NS, name)?
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// A BackupRun made by hand ("back up now") for `policy`.
async fn create_manual_run(server: &ApiServer, name: &str, policy: &str) {
    let runs: Api<BackupRun> = Api::namespaced(server.client(), NS);
    let run: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"policyRef": {"name": policy}, "tier": "manual"}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_fields_make_a_policy_not_ready_and_no_job() {
    let server = ApiServer::start().await;
    // Just after a daily slot: a valid policy makes its run and Job at once.
    let clock = Clock::fixed(at("2026-11-21T02:00:30Z"));
    let _controller = start(&server, &clock);

    // An Object Lock shorter than the 3 daily backups kept.
    let mut locked = policy("locked", "0 2 * * *");
    locked["spec"]["destinations"][0]["s3"]["objectLock"] =
        json!({"mode": "Compliance", "days": 2});
    let mut files = policy("files", "0 2 * * *");
    files["spec"]["source"] = json!({"volume": {"claimName": "uploads", "subPath": "../other"}});
    // Bucket sources: a bad bucket name, an endpoint that is not a URL, a
    // credentials Secret without a name.
    let bucket_policy = |name: &str, bucket: Value| {
        let mut p = policy(name, "0 2 * * *");
        p["spec"]["source"] = json!({"bucket": bucket});
        p
    };
    let buckets = [
        bucket_policy(
            "media",
            json!({"bucket": "Media_Uploads", "region": "eu-west-1"}),
        ),
        bucket_policy(
            "media-minio",
            json!({"bucket": "media", "region": "eu-west-1", "endpoint": "minio:9000"}),
        ),
        bucket_policy(
            "media-creds",
            json!({"bucket": "media", "region": "eu-west-1", "credentialsSecretRef": {"name": ""}}),
        ),
    ];
    let refused = [
        (
            "locked",
            "spec.destinations[0].s3.objectLock.days",
            "set at least 3",
        ),
        (
            "files",
            "spec.source.volume.subPath",
            "must be a relative path inside the volume",
        ),
        ("media", "spec.source.bucket.bucket", "is not a bucket name"),
        (
            "media-minio",
            "spec.source.bucket.endpoint",
            "is not a URL like https://",
        ),
        (
            "media-creds",
            "spec.source.bucket.credentialsSecretRef.name",
            "is not a valid object name",
        ),
    ];
    create(&server, locked).await;
    create(&server, files).await;
    for p in buckets {
        create(&server, p).await;
    }
    for (name, _, _) in refused {
        create_manual_run(&server, &format!("{name}-now"), name).await;
    }
    // The control, created last: a valid policy due at the same slot. (No
    // manual run for it: one in progress would hold its scheduled run back.)
    create(&server, policy("orders", "0 2 * * *")).await;

    for (name, field, why) in refused {
        let ready = server
            .wait_for(&format!("{name}'s Ready condition"), WAIT, |s| {
                condition_of(s, POLICIES, name, "Ready")
            })
            .await;
        assert_eq!(ready["status"], "False", "{ready}");
        assert_eq!(ready["reason"], "InvalidSpec", "{ready}");
        let message = ready["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{field}: ")) && message.contains(why),
            "{message}"
        );
        // The manual run is held, naming the same field.
        let complete = server
            .wait_for(&format!("{name}-now to be refused"), WAIT, |s| {
                condition_of(s, RUNS, &format!("{name}-now"), "Complete")
                    .filter(|c| c["reason"] == "InvalidSpec")
            })
            .await;
        assert!(
            complete["message"].as_str().unwrap().contains(field),
            "{complete}"
        );
    }

    // By the time the valid policy's scheduled run has its Job, the refused
    // policies have made neither a run nor a Job.
    let run = "orders-daily-20261121t020000z";
    server
        .wait_for("the valid policy's job", WAIT, |_| job_of(&server, run))
        .await;
    for (name, _, _) in refused {
        assert!(
            server
                .store
                .get(RUNS, NS, &format!("{name}-daily-20261121t020000z"))
                .is_none(),
            "{name} scheduled a run"
        );
        assert!(
            job_of(&server, &format!("{name}-now")).is_none(),
            "{name}'s manual run got a Job"
        );
    }
    assert_eq!(
        server.store.count(JOBS),
        1,
        "{:?}",
        server.store.list(JOBS, NS)
    );
}

/// The exposition's sample lines about policy `policy`.
fn series_of(metrics: &Metrics, policy: &str) -> Vec<String> {
    let label = format!("policy=\"{policy}\"");
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_removed_tiers_objectives_and_deleted_policies_are_removed() {
    let server = ApiServer::start().await;
    let clock = Clock::fixed(at("2026-11-21T01:00:00Z"));
    let controller = start(&server, &clock);
    // As an earlier controller left it: every tier's last success in the status.
    let mut orders = policy("orders", "0 2 * * *");
    orders["spec"]["schedule"] =
        json!({"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"});
    orders["spec"]["objectives"] = json!({"rpo": "25h", "rto": "4h"});
    orders["status"] = json!({"lastBackups": {
        "daily": "2026-11-20T02:05:00Z", "weekly": "2026-11-15T03:05:00Z", "monthly": "2026-11-01T04:05:00Z"}});
    create(&server, orders).await;
    create(&server, policy("ledger", "0 2 * * *")).await;

    // A restarted controller exports every tier's last success.
    let metrics = &controller.metrics;
    let has =
        |policy: &str, what: &str| series_of(metrics, policy).iter().any(|l| l.contains(what));
    until("every tier's last success and the objectives", || {
        ["daily", "weekly", "monthly"].iter().all(|t| {
            has(
                "orders",
                &format!("lifeboat_last_success_timestamp_seconds{{namespace=\"shop\",policy=\"orders\",tier=\"{t}\"}}"),
            )
        }) && has("orders", "lifeboat_rto_objective_seconds")
            && has("ledger", "lifeboat_backup_failures_total")
    })
    .await;

    // The weekly tier and the RTO leave the spec: their series go.
    server
        .patch_policy(
            NS,
            "orders",
            json!({"spec": {"schedule": {"weekly": null}, "objectives": {"rto": null}}}),
        )
        .await;
    until("the weekly tier's and the RTO's series to go", || {
        !has("orders", "tier=\"weekly\"") && !has("orders", "lifeboat_rto_objective_seconds")
    })
    .await;
    assert!(
        has("orders", "tier=\"monthly\""),
        "{:#?}",
        series_of(metrics, "orders")
    );
    assert!(has("orders", "lifeboat_rpo_objective_seconds"));

    // The policy is deleted: all its series go; the other policy keeps its own.
    let ledger = series_of(metrics, "ledger");
    let policies: Api<lifeboat::api::BackupPolicy> = Api::namespaced(server.client(), NS);
    policies
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    until("every series of the deleted policy to go", || {
        series_of(metrics, "orders").is_empty()
    })
    .await;
    assert_eq!(series_of(metrics, "ledger"), ledger);
}

/// A volume policy whose ReadWriteOnce claim a running pod mounts: the
/// backup Job the controller creates must run on that pod's node (required
/// node affinity on the node's name); the claim's access mode is read with
/// the `get persistentvolumeclaims` the role grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_write_once_claim_pins_the_backup_job_to_its_pods_node() {
    let server = ApiServer::start().await;
    let clock = Clock::fixed(at("2026-11-21T02:00:30Z"));
    let _controller = start(&server, &clock);
    for (claim, modes) in [("uploads", "ReadWriteOnce"), ("shared", "ReadWriteMany")] {
        server
            .store
            .insert(
                "api/v1/persistentvolumeclaims",
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": {"name": claim, "namespace": NS},
                       "spec": {"accessModes": [modes]}}),
            )
            .unwrap();
        server
            .store
            .insert(
                "api/v1/pods",
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": format!("app-{claim}"), "namespace": NS},
                       "spec": {"nodeName": "node-7", "containers": [{"name": "app"}],
                                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
                       "status": {"phase": "Running"}}),
            )
            .unwrap();
    }
    for claim in ["uploads", "shared"] {
        let mut p = policy(claim, "0 2 * * *");
        p["spec"]["source"] = json!({"volume": {"claimName": claim, "subPath": "app"}});
        create(&server, p).await;
        create_manual_run(&server, &format!("{claim}-now"), claim).await;
    }
    let node_of = |job: &Value| {
        job.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0")
            .cloned()
    };
    let pinned = server
        .wait_for("the uploads backup job", WAIT, |_| {
            job_of(&server, "uploads-now")
        })
        .await;
    assert_eq!(
        node_of(&pinned),
        Some(json!({"key": "metadata.name", "operator": "In", "values": ["node-7"]})),
        "{pinned}"
    );
    let args = pinned["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("\"--path\",\"/var/lib/lifeboat/source/app\""),
        "{args}"
    );
    // ReadWriteMany: any node can mount it, the scheduler chooses.
    let free = server
        .wait_for("the shared backup job", WAIT, |_| {
            job_of(&server, "shared-now")
        })
        .await;
    assert_eq!(node_of(&free), None, "{free}");
    assert_granted(
        &server.store,
        &[("create", "backuppolicies"), ("create", "backupruns")],
    );
}
