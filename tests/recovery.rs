//! The recovery workflow end to end: the controller runs against the
//! in-memory API server, and every Job it creates is run for real by the
//! stand-in kubelet (support/kubelet.rs) against the test PostgreSQL and S3
//! server; the pod's termination message and the Job's status go back to the
//! API server as the kubelet and Job controller would write them.
//!
//! One world, in order: a dry run writes nothing; a RestoreRequest restores
//! into a fresh database, passes its checks and reports the measured RTO; a
//! failing check fails the verify step naming the check; once an object is
//! corrupted in both buckets, a dry run fails its plan naming the object, and
//! a drill fails its restore naming the object, and the policy reports it
//! (lastDrill, DrillPassed, drill failure metric).

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/job_pods.rs"]
mod job_pods;
mod support;

use apiserver::{ApiServer, JOBS};
use kube::Api;
use lifeboat::api::{BackupRun, RestoreRequest};
use lifeboat::controller::jobs::backup_job;
use lifeboat::wire::BackupSummary;
use serde_json::{json, Value};
use support::kubelet::*;
use support::*;

const NS: &str = "shop";
use job_pods::{create_request, finished, metric_reaches, REQUESTS, WAIT};
const POLICIES: &str = "apis/lifeboat.dev/v1alpha1/backuppolicies";

/// Runs the Job named `name` for real once it exists, then writes its pod
/// and status as the cluster would. Returns whether the container succeeded.
async fn run_job(server: &ApiServer, w: &World, name: &str) -> bool {
    let claims = Claims::new();
    job_pods::run_job(server, NS, name, &w.secrets, &claims, w.work.path())
        .await
        .1
}

fn database_exists(db: &str) -> bool {
    psql(
        "postgres",
        &format!("select count(*) from pg_database where datname = '{db}'"),
    ) == "1"
}

#[test]
fn dry_run_restore_failing_check_and_a_corrupted_drill() {
    // The fixtures run their own S3 client runtime: set up outside ours.
    let mut w = world();
    // The restore target: a role that may create databases (trusted locally;
    // the password file is mounted all the same).
    w.secrets.insert(
        "restore-db".into(),
        [
            ("host", "127.0.0.1".to_string()),
            ("port", pg_port()),
            ("user", "postgres".to_string()),
            ("password", "unused-under-trust".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    // A backup made by the backup Job, for real.
    let run = serde_json::from_value::<BackupRun>(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": "orders-manual-1", "namespace": NS, "uid": "run-uid"},
        "spec": {"policyRef": {"name": "orders"}, "tier": "manual"}
    }))
    .unwrap();
    let job = backup_job(&w.policy, &run, &w.cfg).unwrap();
    let ran = execute(&job, &w.secrets, w.work.path());
    assert!(ran.output.status.success(), "{}", stderr(&ran.output));
    let backup = BackupSummary::parse(&ran.termination_message).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(w, backup));
}

async fn scenario(w: World, backup: BackupSummary) {
    let server = ApiServer::start().await;
    let (task, metrics) = job_pods::start(&server, NS, &w.policy, &w.cfg).await;

    // 1. A dry run plans and writes nothing: the target does not exist after.
    let dry_db = unique("rr_dry");
    create_request(&server, NS,
        "orders-dry",
        json!({"policyRef": {"name": "orders"}, "dryRun": true,
               "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": dry_db}}}),
    )
    .await;
    assert!(run_job(&server, &w, "orders-dry-plan").await);
    let st = finished(&server, NS, "orders-dry").await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    assert_eq!(st["plan"]["backupId"], json!(backup.backup_id));
    assert_eq!(st["plan"]["destination"], "primary");
    assert_eq!(st["plan"]["targetDatabase"], json!(dry_db));
    assert!(st["plan"]["bytes"].as_i64().unwrap() > 0);
    let c = &st["conditions"][0];
    assert_eq!(c["reason"], "DryRun", "{st}");
    assert!(server.store.get(JOBS, NS, "orders-dry-restore").is_none());
    assert!(
        !database_exists(&dry_db),
        "a dry run never writes to the target"
    );

    // 2. A restore into a fresh database: checks pass, RTO measured.
    let target = unique("rr_restored");
    create_request(&server, NS,
        "orders-restore",
        json!({"policyRef": {"name": "orders"}, "backupId": backup.backup_id,
               "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": target}},
               "checks": ["select count(*) = 500 from orders", "select max(id) from orders"]}),
    )
    .await;
    assert!(run_job(&server, &w, "orders-restore-plan").await);
    assert!(run_job(&server, &w, "orders-restore-restore").await);
    let st = finished(&server, NS, "orders-restore").await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    let rto = st["recoveryTimeSeconds"].as_i64().expect("a measured RTO");
    assert!((0..60).contains(&rto), "{rto}");
    assert!(st["recoveredTo"].is_string());
    let steps: Vec<(&str, &str)> = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("plan", "Succeeded"),
            ("restore", "Succeeded"),
            ("verify", "Succeeded")
        ]
    );
    assert_eq!(psql(&target, "select count(*) from orders"), "500");
    // Deleting the request deletes its Jobs (owned), never the database.
    Api::<RestoreRequest>::namespaced(server.client(), NS)
        .delete("orders-restore", &Default::default())
        .await
        .unwrap();
    server
        .wait_for("the request to go", WAIT, |s| {
            s.get(REQUESTS, NS, "orders-restore")
                .is_none()
                .then_some(())
        })
        .await;
    assert_eq!(psql(&target, "select count(*) from orders"), "500");
    let duration = format!(
        "lifeboat_restore_duration_seconds_count{{namespace=\"{NS}\",policy=\"orders\",kind=\"request\"}}"
    );
    metric_reaches(&metrics, &duration, "1").await;

    // A second request into the same, now non-empty, database without
    // overwrite is refused by the restore step.
    create_request(&server, NS,
        "orders-again",
        json!({"policyRef": {"name": "orders"},
               "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": target}},
               "checks": ["select count(*) = 499 from orders"]}),
    )
    .await;
    assert!(run_job(&server, &w, "orders-again-plan").await);
    assert!(!run_job(&server, &w, "orders-again-restore").await);
    let st = finished(&server, NS, "orders-again").await;
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step restore failed: ") && m.contains("not empty"),
        "{m}"
    );

    // 3. A failing check fails the verify step and names the check.
    create_request(&server, NS,
        "orders-badcheck",
        json!({"policyRef": {"name": "orders"}, "overwrite": true,
               "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": target}},
               "checks": ["select count(*) = 499 from orders"]}),
    )
    .await;
    assert!(run_job(&server, &w, "orders-badcheck-plan").await);
    assert!(!run_job(&server, &w, "orders-badcheck-restore").await);
    let st = finished(&server, NS, "orders-badcheck").await;
    assert_eq!(st["phase"], "Failed");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with(
            "step verify failed: check 1 (\"select count(*) = 499 from orders\") returned false"
        ),
        "{m}"
    );

    // 4. A drill of a backup whose object was corrupted in both buckets.
    let object = backup
        .objects
        .iter()
        .find(|o| o.key.contains("/db-"))
        .unwrap()
        .key
        .clone();
    std::thread::scope(|t| {
        t.spawn(|| {
            for url in &w.buckets {
                let key = format!("prod/shop/orders/{object}");
                let mut body = s3_get(url, &key);
                let mid = body.len() / 2;
                body[mid] ^= 0x40;
                s3_put(url, &key, body);
            }
        });
    });
    // A dry run reads the copy back: it fails at the plan, naming the object.
    create_request(&server, NS,
        "orders-dry-2",
        json!({"policyRef": {"name": "orders"}, "dryRun": true,
               "target": {"postgres": {"connectionSecretRef": {"name": "restore-db"}, "database": dry_db}}}),
    )
    .await;
    assert!(!run_job(&server, &w, "orders-dry-2-plan").await);
    let st = finished(&server, NS, "orders-dry-2").await;
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step plan failed: ") && m.contains(&object),
        "{m}"
    );

    server
        .patch_policy(
            NS,
            "orders",
            json!({"spec": {"verification": {"restoreDrill": {
                "schedule": "* * * * *", "targetSecretRef": {"name": "restore-db"},
                "checks": ["select count(*) = 500 from orders"]}}}}),
        )
        .await;
    // The policy learns of the backup from its run, and drills it.
    let drill = job_pods::first_drill(&server, NS, &backup.backup_id).await;
    let dr: Value = server.store.get(REQUESTS, NS, &drill).unwrap();
    assert_eq!(dr["spec"]["backupId"], json!(backup.backup_id));
    assert_eq!(dr["spec"]["dropAfter"], true);
    assert_eq!(
        dr["spec"]["target"]["postgres"]["database"],
        "lifeboat_drill_orders"
    );
    assert_eq!(dr["metadata"]["ownerReferences"][0]["kind"], "BackupPolicy");
    // The drill's plan checks presence only (the restore authenticates every
    // byte, in one read): the restore step finds the damage in both copies.
    assert!(run_job(&server, &w, &format!("{drill}-plan")).await);
    assert!(!run_job(&server, &w, &format!("{drill}-restore")).await);
    let st = finished(&server, NS, &drill).await;
    assert_eq!(st["phase"], "Failed");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step restore failed: ") && m.contains(&object),
        "{m}"
    );

    let status = server
        .wait_for("the policy's lastDrill", WAIT, |s| {
            let st = s.get(POLICIES, NS, "orders")?.get("status")?.clone();
            (st.pointer("/lastDrill/restoreRequest") == Some(&json!(drill))).then_some(st)
        })
        .await;
    assert_eq!(status["lastDrill"]["succeeded"], false);
    assert!(
        status["lastDrill"]["message"]
            .as_str()
            .unwrap()
            .contains(&object),
        "{status}"
    );
    let cond = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DrillPassed")
        .expect("a DrillPassed condition")
        .clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "DrillFailed");
    let failures = format!("lifeboat_drill_failures_total{{namespace=\"{NS}\",policy=\"orders\"}}");
    metric_reaches(&metrics, &failures, "1").await;
    assert!(!database_exists("lifeboat_drill_orders"));
    task.abort();
}
