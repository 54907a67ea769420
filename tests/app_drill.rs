//! The ApplicationDrill acceptance test: the application of
//! support/app_world.rs (its configuration, a PostgreSQL cluster archiving
//! WAL, a claim's directory, a bucket)
//! rehearsed by ONE ApplicationDrill through the controller, against the
//! in-memory API server; the parts' Jobs run for real in the stand-in
//! kubelet against the S3 server.
//!
//! The drill's slot falls due: it creates one ApplicationRestore of the
//! slot into scratch only — the configuration into namespace `shop-drill`
//! (one smoke test asks its Service there, another is a Job run in `ops`),
//! the database into a data directory in its restore Job's scratch space,
//! recovered to the slot (rows committed after it absent, checked there),
//! the directory and the bucket into the restore Jobs' scratch space —
//! while `shop`, the claim and the bucket stay as they were. It succeeds; the drill reports it (lastDrill
//! with the RTO, DrillPassed, the metric, each part policy's lastDrill) and
//! deletes `shop-drill`. A drill
//! whose scratch namespace already exists waits and deletes nothing; a
//! drill whose account may not delete its scratch namespace does not start.
//!
//! Backups must come before the slot, and slots are whole minutes: the
//! test waits for the first minute after its backups (30 s on average).

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/app_world.rs"]
mod app_world;
#[path = "support/job_pods.rs"]
mod job_pods;
mod support;

use std::time::{Duration, Instant};

use apiserver::{ApiServer, EVENTS};
use app_world::*;
use chrono::{DateTime, Timelike, Utc};
use job_pods::{add_policy, metric_reaches, start_controllers};
use kube::api::{Api, DeleteParams, PostParams};
use lifeboat::api::ApplicationDrill;
use lifeboat::controller::app_restore::steps;
use serde_json::{json, Value};
use support::cluster::{archiving_for, insert, postgres_ids, shared_tempdir};
use support::kubelet::{world, Claims};
use support::objects::{cluster_binding, namespace};
use support::tree::describe;

const DRILLS: &str = "apis/lifeboat.dev/v1alpha1/applicationdrills";
const POLICIES: &str = "apis/lifeboat.dev/v1alpha1/backuppolicies";
const NAMESPACES: &str = "api/v1/namespaces";
const RBAC: &str = "apis/rbac.authorization.k8s.io/v1";
const SCRATCH: &str = "shop-drill";
const LABEL: &str = "lifeboat.dev/application-drill";

/// May delete the namespace `shop-drill` only: what a drill's account needs.
fn scratch_role() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "shop-drill-scratch"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                   "resourceNames": [SCRATCH], "verbs": ["delete"]}]})
}

/// The drill's spec: the configuration into `scratch`, the database into
/// a data directory in scratch space (checked: the rows of before the slot,
/// none of after), the directory and the bucket into scratch space, on
/// `schedule`.
fn spec(schedule: &str, scratch: &str, web_port: u16) -> Value {
    let into_scratch = |name: &str, policy: &str| json!({"name": name, "policyRef": {"name": policy}, "target": {"scratch": {}}});
    let (uid, _) = postgres_ids();
    json!({"schedule": schedule, "scratchNamespaces": [scratch],
        "serviceAccountName": "restorer",
        "parts": [
            {"name": "config", "policyRef": {"name": "shop-config"},
             "target": {"config": {"serviceAccountName": "restorer",
                                   "namespaceMapping": [{"from": APP, "to": scratch}]}}},
            {"name": "db", "policyRef": {"name": "orders"},
             "target": {"scratch": {"dataDirectory": {"runAsUser": uid, "user": "postgres"}}},
             "checks": ["select count(*) = 6 and max(id) = 6 from t"]},
            into_scratch("files", "uploads"),
            into_scratch("bucket", "media"),
        ],
        "smokeTests": [{"name": "home", "service": {"namespace": scratch, "name": "web", "port": web_port},
                        "path": "/healthz", "expectBody": "ok", "timeoutSeconds": 30}]})
}

/// Creates the drill `name` in `ops`, created `age` ago.
async fn create_drill(server: &ApiServer, name: &str, spec: Value, age: chrono::Duration) {
    let drill: ApplicationDrill = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "ApplicationDrill",
        "metadata": {"name": name, "namespace": OPS,
                     "creationTimestamp": (Utc::now() - age).to_rfc3339()},
        "spec": spec
    }))
    .unwrap();
    Api::<ApplicationDrill>::namespaced(server.client(), OPS)
        .create(&PostParams::default(), &drill)
        .await
        .unwrap();
}

/// The names of the drill `drill`'s ApplicationRestores.
fn restores_of(server: &ApiServer, drill: &str) -> Vec<String> {
    let restores = server.store.list(APPS, OPS);
    restores
        .iter()
        .filter(|r| r["metadata"]["labels"][LABEL] == drill)
        .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a warning event `reason` about the drill `drill`; its note.
async fn warning(server: &ApiServer, drill: &str, reason: &str) -> String {
    let what = format!("event {reason} of drill {drill}");
    server
        .wait_for(&what, Duration::from_secs(30), |s| {
            s.list(EVENTS, OPS).into_iter().find_map(|e| {
                let ours = e["reason"] == reason && e["regarding"]["name"] == drill;
                (ours && e["type"] == "Warning").then(|| e["note"].as_str().unwrap().to_string())
            })
        })
        .await
}

/// A daily cron expression of the first minute after now (UTC).
fn next_minute() -> (String, DateTime<Utc>) {
    let at = (Utc::now() + chrono::Duration::minutes(1))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    (format!("{} {} * * *", at.minute(), at.hour()), at)
}

#[test]
fn an_application_drill_restores_into_scratch_reports_and_cleans_up() {
    let started = Instant::now();
    let rt = two_threads();
    let mut w = world();
    let dir = shared_tempdir();
    // The cluster archives WAL to the prefix the controller gives `ops/orders`.
    let c = archiving_for(&mut w, dir.path(), "prod/ops/orders");
    c.psql("create table t (id bigint primary key)");
    insert(&c, 1..=3);
    let (media, uploads) = app_data(&mut w, dir.path());
    let web_port = rt.block_on(http_server(200, "ok"));
    let claims = Claims::from([("uploads".to_string(), uploads.clone())]);
    let (server, node) = rt.block_on(api_and_node(&w, dir.path(), claims, (web_port, web_port)));
    let policies = app_world::policies(&w, &media, MEDIA_REGION);
    for p in &policies {
        rt.block_on(back_up(p, &w.cfg, &node));
    }
    // Rows after the base backup: the drill replays them from the archive.
    insert(&c, 4..=6);
    c.switch_wal();
    // The drill's slot: the first minute after the backups.
    let (schedule, slot) = next_minute();
    let s = &server.store;
    s.insert(&format!("{RBAC}/clusterroles"), scratch_role())
        .unwrap();
    let binding = cluster_binding("restorer-drill", "shop-drill-scratch", OPS, "restorer");
    s.insert(&format!("{RBAC}/clusterrolebindings"), binding)
        .unwrap();
    let app_before = app_objects(s, APP);
    let files_before = describe(&uploads.join("app"));
    let objects_before = objects_of(&media);
    eprintln!(
        "set up and backed up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    rt.block_on(async {
        let (controllers, metrics) = start_controllers(&server, OPS, &w.cfg);
        for p in &policies {
            add_policy(&server, OPS, p.metadata.name.as_deref().unwrap(), p).await;
        }
        let (kubelet, ran) = app_world::cluster(server.clone(), node.clone());
        let every_minute = "* * * * *";
        let age = chrono::Duration::minutes(5);

        // A drill whose account may not delete its scratch namespace: due
        // at once, it does not start and says which namespace.
        create_drill(&server, "denied", spec(every_minute, "other-drill", web_port), age).await;
        let note = warning(&server, "denied", "PermissionMissing").await;
        assert!(note.contains("cannot delete namespace other-drill"), "{note}");

        // A drill whose scratch namespace exists (not its own): it waits,
        // and deletes nothing.
        s.insert(NAMESPACES, namespace(SCRATCH)).unwrap();
        create_drill(&server, "busy", spec(every_minute, SCRATCH, web_port), age).await;
        let note = warning(&server, "busy", "ScratchNamespaceExists").await;
        assert!(note.contains(SCRATCH), "{note}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let drills: Api<ApplicationDrill> = Api::namespaced(server.client(), OPS);
        drills.delete("busy", &DeleteParams::default()).await.unwrap();
        drills.delete("denied", &DeleteParams::default()).await.unwrap();
        assert!(s.get(NAMESPACES, "", SCRATCH).is_some(), "not deleted");
        assert_eq!(restores_of(&server, "busy"), Vec::<String>::new());
        assert_eq!(restores_of(&server, "denied"), Vec::<String>::new());
        Api::<k8s_openapi::api::core::v1::Namespace>::all(server.client())
            .delete(SCRATCH, &DeleteParams::default())
            .await
            .unwrap();

        // Rows after the slot, archived before the drill starts: its
        // database part must stop short of them.
        let wait = (slot - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(500)).await;
        insert(&c, 7..=9);
        c.switch_wal();
        // The drill, created before its slot (it is due at once).
        // Its smoke tests: the Service in scratch, and a Job (in `ops`).
        let log = w.work.path().join("drill-smoke.log");
        let mut shop = spec(&schedule, SCRATCH, web_port);
        let script = format!("echo checked >> '{}'", log.display());
        let job = json!({"template": {"spec": {"containers": [
            {"name": "check", "image": "busybox", "command": ["sh", "-c", script]}]}}});
        shop["smokeTests"].as_array_mut().unwrap().push(json!({"name": "scratch", "job": job}));
        create_drill(&server, "shop", shop, age).await;
        let t0 = Instant::now();
        // Its configuration comes back into the scratch namespace only.
        let restored = server
            .wait_for("the ConfigMap in shop-drill", Duration::from_secs(120), |s| {
                s.get("api/v1/configmaps", SCRATCH, "app-config")
            })
            .await;
        assert_eq!(restored["data"], json!({"mode": "production"}));
        let name = format!("shop-{}", slot.format("%Y%m%d%H%M"));
        let st = app_finished(&server, &name).await;
        let after = (Utc::now() - slot).num_milliseconds() as f64 / 1000.0;
        let took = t0.elapsed().as_secs_f64();
        eprintln!("drill finished {after:.1} s after its slot, {took:.1} s after it was created");
        assert_eq!(st["phase"], "Succeeded", "{st:#}");
        assert_eq!(restores_of(&server, "shop"), vec![name.clone()]);
        let restore = s.get(APPS, OPS, &name).unwrap();
        assert_eq!(restore["spec"]["pointInTime"], json!(slot));
        let planned: Vec<&str> = st["plan"].as_array().unwrap().iter()
            .map(|p| p["part"].as_str().unwrap()).collect();
        assert_eq!(planned, ["config", "db", "files", "bucket"], "{st}");
        let db = st["plan"].as_array().unwrap().iter().find(|p| p["part"] == "db").unwrap();
        assert_eq!(db["walReplay"], true, "{db}");
        let step = |name: &str| st["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned();
        let verified = step(steps::VERIFICATION).unwrap();
        let verified = verified["message"].as_str().unwrap();
        assert!(verified.contains("db: 1 check(s) passed"), "{verified}");
        let smoke = step(steps::SMOKE_TESTS).unwrap();
        assert_eq!(smoke["phase"], "Succeeded", "{smoke}");
        assert_eq!(smoke["message"], "passed: home, scratch", "{smoke}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "checked\n");
        let smoke_job = format!("{name}-smoke-scratch");
        assert!(ran.lock().unwrap().iter().any(|(j, _)| *j == smoke_job), "{smoke_job}");

        // The drill reports it, then the scratch namespace is gone.
        let last = server
            .wait_for("the drill cleaned up", Duration::from_secs(30), |s| {
                let last = s.get(DRILLS, OPS, "shop")?["status"]["lastDrill"].clone();
                (last["cleanedUp"] == true).then_some(last)
            })
            .await;
        assert_eq!(last["name"], name.as_str(), "{last}");
        assert_eq!(last["succeeded"], true, "{last}");
        assert!(last["recoveryTimeSeconds"].as_i64().is_some(), "{last}");
        assert!(s.get(NAMESPACES, "", SCRATCH).is_none());
        assert!(s.list("api/v1/configmaps", SCRATCH).is_empty());
        let drill = s.get(DRILLS, OPS, "shop").unwrap();
        let conditions = drill["status"]["conditions"].as_array().unwrap();
        let passed = conditions.iter().find(|c| c["type"] == "DrillPassed").unwrap();
        assert_eq!(passed["status"], "True", "{passed}");
        // Each part's policy shows it as its last drill, as its own drills.
        for policy in ["shop-config", "orders", "uploads", "media"] {
            let last = server
                .wait_for(&format!("lastDrill of {policy}"), Duration::from_secs(30), |s| {
                    let last = s.get(POLICIES, OPS, policy)?["status"]["lastDrill"].clone();
                    (last["run"] == name.as_str()).then_some(last)
                })
                .await;
            assert_eq!(last["succeeded"], true, "{policy}: {last}");
            assert!(last["recoveryTimeSeconds"].as_i64().is_some(), "{policy}: {last}");
            let message = last["message"].as_str().unwrap();
            assert!(message.starts_with(&format!("application drill {name}")), "{message}");
            // The policy's controller exports it as a drill success.
            let line = format!("lifeboat_last_drill_success_timestamp_seconds{{namespace=\"ops\",policy=\"{policy}\"}}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !metrics.encode().lines().any(|l| l.starts_with(&line)) {
                assert!(Instant::now() < deadline, "no {line}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for policy in ["shop-config", "orders", "uploads", "media"] {
            let line = format!("lifeboat_restore_duration_seconds_count{{namespace=\"ops\",policy=\"{policy}\",kind=\"application-drill\"}}");
            metric_reaches(&metrics, &line, "1").await;
        }
        // Production as it was; exactly one drill.
        assert_eq!(app_objects(s, APP), app_before);
        assert_eq!(restores_of(&server, "shop"), vec![name]);
        kubelet.abort();
        controllers.abort();
    });
    assert_eq!(describe(&uploads.join("app")), files_before);
    assert_eq!(objects_of(&media), objects_before);
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
    drop(c);
}
