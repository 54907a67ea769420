//! The ApplicationRestore acceptance test: one application — a namespace's
//! objects, a PostgreSQL cluster archiving WAL, a claim's directory and a
//! bucket, four policies — brought back to one instant T by ONE
//! ApplicationRestore, end to end. The controller runs against the
//! in-memory API server; every Job it creates (plan Jobs, the parts'
//! restore Jobs) runs for real in the stand-in kubelet against the S3
//! server and PostgreSQL (support/app_world.rs); the smoke test asks an
//! HTTP server on loopback, which the Service's cluster IP (allocated
//! 127.0.0.1 by the API server, also after the config restore brought the
//! Service back) leads to.
//!
//! Backups before T; writes after T (rows, a file written and one changed,
//! an object added and one overwritten); then the disaster: the namespace
//! deleted, the database stopped (restored into a fresh claim directory),
//! the directory and the bucket emptied. The restore to T: every step in
//! order, the Deployment at zero while the database restores and back to
//! two after, everything as of T; the user's maintenance Jobs run around
//! it (enter before the first restore Job, exit after the smoke tests,
//! one of which is a Job). Then a dry run plans and touches nothing (no
//! Job but the plan Jobs), a smoke test answered 500 fails the request
//! naming it with maintenance left on, so does a smoke Job that exits 1
//! (the exit Job never created), a smoke test that is both a Service and
//! a Job is refused naming the field, and a claim smaller than the files
//! fails preCheck.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/app_world.rs"]
mod app_world;
#[path = "support/job_pods.rs"]
mod job_pods;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{ApiServer, JOBS};
use app_world::*;
use chrono::{DateTime, Utc};
use job_pods::{add_policy, Node, REQUESTS};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams};
use lifeboat::api::BackupPolicy;
use lifeboat::controller::app_restore::steps;
use lifeboat::controller::app_restore::user_jobs::USER_JOB_LABEL;
use serde_json::{json, Value};
use support::bucket_objects::empty_prefix;
use support::cluster::{
    archiving_for, give_to_postgres, ids_in, insert, postgres_ids, shared_tempdir,
};
use support::kubelet::{world, Claims, World};
use support::tree::describe;
use support::*;

const DB_CLAIM: &str = "orders-pg-restore";
const CLAIMS: &str = "api/v1/persistentvolumeclaims";

/// What the test checks against after the restore.
struct Before {
    t: DateTime<Utc>,
    /// ConfigMap and Secret of `shop`, comparable.
    objects: Vec<Value>,
    /// The claim's `app` directory as of T.
    files: std::collections::BTreeMap<Vec<u8>, String>,
}

struct Bed {
    w: World,
    server: Arc<ApiServer>,
    node: Node,
    policies: Vec<BackupPolicy>,
    media: String,
    uploads: PathBuf,
    pg_claim: PathBuf,
    web_port: u16,
    broken_port: u16,
}

#[test]
fn one_application_restore_brings_an_application_back_to_one_instant() {
    let started = Instant::now();
    let rt = two_threads();
    let mut w = world();
    let dir = shared_tempdir();
    // The cluster archives WAL to the prefix the controller gives `ops/orders`.
    let c = archiving_for(&mut w, dir.path(), "prod/ops/orders");
    let (media, uploads) = app_data(&mut w, dir.path());
    let app_dir = uploads.join("app");
    let pg_claim = dir.path().join("pg-claim");
    give_to_postgres(&pg_claim);
    c.psql("create table t (id bigint primary key)");
    insert(&c, 1..=3);

    let web_port = rt.block_on(http_server(200, "ok"));
    let broken_port = rt.block_on(http_server(500, "down"));
    let claims = Claims::from([
        ("uploads".to_string(), uploads.clone()),
        (DB_CLAIM.to_string(), pg_claim.clone()),
    ]);
    let ports = (web_port, broken_port);
    let (server, node) = rt.block_on(api_and_node(&w, dir.path(), claims, ports));
    let policies = app_world::policies(&w, &media, MEDIA_REGION);
    for p in &policies {
        rt.block_on(back_up(p, &w.cfg, &node));
    }
    insert(&c, 4..=6);
    let before = Before {
        objects: app_objects(&server.store, APP),
        files: describe(&app_dir),
        t: {
            std::thread::sleep(Duration::from_secs(1));
            let t = Utc::now();
            std::thread::sleep(Duration::from_secs(1));
            t
        },
    };
    // Writes go on after T.
    insert(&c, 7..=9);
    fs::write(app_dir.join("new.txt"), "written after T\n").unwrap();
    fs::write(app_dir.join("notes.txt"), "notes v2, after T\n").unwrap();
    put(&media, "c.txt", "added after T");
    put(&media, "b.txt", "beta v2, after T");
    c.switch_wal();
    eprintln!(
        "set up and backed up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The disaster.
    rt.block_on(async {
        let namespaces: Api<Namespace> = Api::all(server.client());
        namespaces
            .delete(APP, &DeleteParams::default())
            .await
            .unwrap();
    });
    assert!(server.store.get(DEPLOYMENTS, APP, "web").is_none());
    c.stop();
    fs::remove_dir_all(&app_dir).unwrap();
    fs::create_dir(&app_dir).unwrap();
    empty_prefix(&s3_client(MEDIA_REGION), &media, "");

    let bed = Bed {
        w,
        server,
        node,
        policies,
        media,
        uploads,
        pg_claim,
        web_port,
        broken_port,
    };
    rt.block_on(scenario(&bed, &before));
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
    drop(c);
}

fn parts(bed: &Bed, names: &[&str]) -> Value {
    let (uid, _) = postgres_ids();
    let all = [
        json!({"name": "config", "policyRef": {"name": "shop-config"},
               "target": {"config": {"serviceAccountName": "restorer"}}}),
        json!({"name": "db", "policyRef": {"name": "orders"},
               "target": {"volume": {"claimName": DB_CLAIM, "subPath": "pgdata",
                                     "runAsUser": uid, "user": "postgres"}}}),
        json!({"name": "files", "policyRef": {"name": "uploads"},
               "target": {"files": {"claimName": "uploads", "subPath": "app"}}}),
        json!({"name": "bucket", "policyRef": {"name": "media"},
               "target": {"bucket": {"bucket": bed.media, "region": MEDIA_REGION,
                   "endpoint": s3_endpoint(), "credentialsSecretRef": {"name": "target-s3"}}}}),
    ];
    let chosen: Vec<Value> = all
        .into_iter()
        .filter(|p| names.contains(&p["name"].as_str().unwrap()))
        .collect();
    json!(chosen)
}

fn spec(bed: &Bed, t: DateTime<Utc>, names: &[&str], smoke: Value) -> Value {
    json!({"pointInTime": t, "serviceAccountName": "restorer",
           "parts": parts(bed, names),
           "maintenance": {"scaleToZero": [{"kind": "Deployment", "namespace": APP, "name": "web"}]},
           "smokeTests": [smoke]})
}

/// A user's Job running `script` with `sh -c` (its stderr is its
/// termination message when it fails).
fn user_job(script: &str) -> Value {
    json!({"template": {"spec": {"containers": [{"name": "step", "image": "busybox",
        "command": ["sh", "-c", script], "terminationMessagePolicy": "FallbackToLogsOnError"}]}}})
}

/// A Job that appends `word` to the file `log`.
fn logs(log: &Path, word: &str) -> Value {
    user_job(&format!("echo {word} >> '{}'", log.display()))
}

/// The names of the Jobs the stand-in cluster ran, in order.
fn ran_jobs(ran: &Ran) -> Vec<String> {
    ran.lock().unwrap().iter().map(|(j, _)| j.clone()).collect()
}

/// A claim in `ops` of `size` (as its request: no volume is bound here).
fn claim(name: &str, size: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": OPS},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}})
}

fn step<'a>(st: &'a Value, name: &str) -> &'a Value {
    let steps = st["steps"].as_array().unwrap();
    steps.iter().find(|s| s["name"] == name).unwrap()
}

async fn scenario(bed: &Bed, before: &Before) {
    let server = &bed.server;
    let (controllers, _metrics) = job_pods::start(server, OPS, &bed.policies[0], &bed.w.cfg).await;
    for p in &bed.policies[1..] {
        add_policy(server, OPS, p.metadata.name.as_deref().unwrap(), p).await;
    }
    let (kubelet, ran) = app_world::cluster(server.clone(), bed.node.clone());

    // 1. Everything back to T, with one request. The files' claim is
    // large enough; the database's claim is not an object here.
    server
        .store
        .insert(CLAIMS, claim("uploads", "1Gi"))
        .unwrap();
    let t0 = Instant::now();
    let home = json!({"name": "home", "service": {"namespace": APP, "name": "web", "port": bed.web_port},
                      "path": "/healthz", "expectBody": "ok", "timeoutSeconds": 30});
    let all = ["config", "db", "files", "bucket"];
    let log = bed.w.work.path().join("maintenance.log");
    let mut shop = spec(bed, before.t, &all, home);
    shop["maintenance"]["enterJob"] = logs(&log, "enter");
    shop["maintenance"]["exitJob"] = logs(&log, "exit");
    let orders = json!({"name": "orders", "job": logs(&log, "smoke")});
    shop["smokeTests"].as_array_mut().unwrap().push(orders);
    create_app(server, "shop", shop).await;
    let st = app_finished(server, "shop").await;
    eprintln!(
        "application restored in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(st["phase"], "Succeeded", "{st:#}");
    let names: Vec<&str> = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, steps::ORDER);
    for s in st["steps"].as_array().unwrap() {
        assert_eq!(s["phase"], "Succeeded", "{s}");
        assert!(s["seconds"].as_i64().is_some(), "{s}");
    }
    let plan = st["plan"].as_array().unwrap();
    let planned: Vec<&str> = plan.iter().map(|p| p["part"].as_str().unwrap()).collect();
    assert_eq!(planned, all);
    for p in plan {
        let gap = p["gapSeconds"].as_i64().unwrap();
        match p["part"].as_str().unwrap() {
            "db" => assert_eq!((gap, &p["walReplay"]), (0, &json!(true)), "{p}"),
            _ => assert!(gap >= 1, "a backup before T: {p}"),
        }
    }
    assert!(st["recoveryTimeSeconds"].as_i64().is_some(), "{st}");
    let pre = step(&st, steps::PRE_CHECK)["message"].as_str().unwrap();
    assert!(
        pre.contains(
            "part files: claim uploads holds 1073741824 bytes, the backup's file bytes are "
        ),
        "{pre}"
    );
    assert!(
        pre.contains(&format!("part db: claim {DB_CLAIM} does not exist yet")),
        "{pre}"
    );
    assert!(
        step(&st, steps::SMOKE_TESTS)["message"]
            .as_str()
            .unwrap()
            .contains("home"),
        "{st}"
    );
    // The Deployment came back with the namespace, was held at zero while
    // the database restored, and is back at two.
    let at_db_restore = ran
        .lock()
        .unwrap()
        .iter()
        .find(|(job, _)| job == "shop-db-restore")
        .map(|(_, web)| *web);
    assert_eq!(at_db_restore, Some(Some(0)), "{:?}", ran.lock().unwrap());
    assert_eq!(web_replicas(&server.store), Some(2));
    // The maintenance Jobs: enter before the first restore Job, then the
    // smoke Job, exit last (after the Deployment was back at two).
    assert_eq!(fs::read_to_string(&log).unwrap(), "enter\nsmoke\nexit\n");
    let jobs = ran_jobs(&ran);
    let at = |name: &str| jobs.iter().position(|j| j == name).unwrap();
    let restores: Vec<usize> = (0..jobs.len())
        .filter(|i| jobs[*i].ends_with("-restore"))
        .collect();
    assert!(at("shop-maintenance-enter") < restores[0], "{jobs:?}");
    assert!(
        at("shop-smoke-orders") > *restores.last().unwrap(),
        "{jobs:?}"
    );
    assert_eq!(jobs.last().unwrap(), "shop-maintenance-exit", "{jobs:?}");
    let exit_at = ran.lock().unwrap().last().unwrap().1;
    assert_eq!(exit_at, Some(2), "maintenance ended after the workloads");
    assert_eq!(app_objects(&server.store, APP), before.objects);
    let ip = server.store.get("api/v1/services", APP, "web").unwrap()["spec"]["clusterIP"].clone();
    assert_eq!(ip, "127.0.0.1", "allocated anew");
    // The data as of T: rows 1..6 (7..9 came after), the files and
    // objects of the backups before T.
    let data = bed.pg_claim.join("pgdata");
    let ids = tokio::task::block_in_place(|| ids_in(&data));
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
    assert_files(&bed.uploads.join("app"), before);
    let objects = tokio::task::block_in_place(|| objects_of(&bed.media));
    let want = [("a.txt", "alpha"), ("b.txt", "beta v1")].map(|(k, v)| (k.into(), v.into()));
    assert_eq!(objects, want);

    // 2. A dry run plans every part and changes nothing.
    let home =
        json!({"name": "home", "service": {"namespace": APP, "name": "web", "port": bed.web_port}});
    let mut dry = spec(bed, before.t, &all, home);
    dry["dryRun"] = json!(true);
    dry["maintenance"]["enterJob"] = logs(&log, "dry-enter");
    dry["maintenance"]["exitJob"] = logs(&log, "dry-exit");
    let orders = json!({"name": "orders", "job": logs(&log, "dry-smoke")});
    dry["smokeTests"].as_array_mut().unwrap().push(orders);
    create_app(server, "dry", dry).await;
    let st = app_finished(server, "dry").await;
    assert_eq!(st["phase"], "Succeeded", "{st:#}");
    assert_eq!(st["plan"].as_array().unwrap().len(), 4, "{st}");
    for s in st["steps"].as_array().unwrap() {
        let want = if s["name"] == steps::PLAN {
            "Succeeded"
        } else {
            "Skipped"
        };
        assert_eq!(s["phase"], want, "{s}");
    }
    let requests = server.store.list(REQUESTS, OPS);
    assert!(
        !requests
            .iter()
            .any(|r| r["metadata"]["name"].as_str().unwrap().starts_with("dry-")),
        "a dry run creates no RestoreRequest"
    );
    assert!(st.get("workloads").is_none(), "{st}");
    assert_eq!(web_replicas(&server.store), Some(2), "scaled nothing");
    let users: Vec<Value> = server
        .store
        .list(JOBS, OPS)
        .into_iter()
        .filter(|j| j["metadata"]["labels"].get(USER_JOB_LABEL).is_some())
        .filter(|j| j["metadata"]["name"].as_str().unwrap().starts_with("dry-"))
        .collect();
    assert!(users.is_empty(), "a dry run creates no user Job: {users:?}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "enter\nsmoke\nexit\n");

    // 3. A smoke test answered 500 fails the request, maintenance left on.
    let health = json!({"name": "health", "service": {"namespace": APP, "name": "broken", "port": bed.broken_port},
                        "timeoutSeconds": 1});
    create_app(server, "broken", spec(bed, before.t, &["files"], health)).await;
    let st = app_finished(server, "broken").await;
    assert_eq!(st["phase"], "Failed", "{st:#}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.contains("smoke test health: ") && m.contains("answered 500, expected 200"),
        "{m}"
    );
    assert!(m.contains("maintenance stays on"), "{m}");
    assert_eq!(step(&st, steps::SMOKE_TESTS)["phase"], "Failed", "{st}");
    assert_eq!(step(&st, steps::POST_CHECK)["phase"], "Skipped", "{st}");
    assert_eq!(web_replicas(&server.store), Some(0), "left at zero");

    // 3b. A smoke Job that exits 1 fails the request naming the check and
    // its Job; maintenance (by Jobs here) stays on: no exit Job.
    let log = bed.w.work.path().join("badjob.log");
    let check = user_job("echo 'no orders since T' >&2; exit 1");
    let mut bad = spec(
        bed,
        before.t,
        &["files"],
        json!({"name": "orders", "job": check}),
    );
    bad["maintenance"] = json!({"enterJob": logs(&log, "enter"), "exitJob": logs(&log, "exit")});
    create_app(server, "badjob", bad).await;
    let st = app_finished(server, "badjob").await;
    assert_eq!(st["phase"], "Failed", "{st:#}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step smokeTests failed: smoke test orders: Job badjob-smoke-orders failed: no orders since T"),
        "{m}"
    );
    assert!(
        m.ends_with("maintenance stays on: exit Job badjob-maintenance-exit not run"),
        "{m}"
    );
    assert_eq!(
        step(&st, steps::END_MAINTENANCE)["phase"],
        "Skipped",
        "{st}"
    );
    assert_eq!(step(&st, steps::EXIT_JOB)["phase"], "Skipped", "{st}");
    assert!(server
        .store
        .get(JOBS, OPS, "badjob-maintenance-exit")
        .is_none());
    assert_eq!(fs::read_to_string(&log).unwrap(), "enter\n");

    // 3c. A smoke test that is both a request and a Job is refused, named.
    let both = json!({"name": "both", "job": user_job("true"),
                      "service": {"namespace": APP, "name": "web", "port": bed.web_port}});
    create_app(server, "both", spec(bed, before.t, &["files"], both)).await;
    let st = app_finished(server, "both").await;
    assert_eq!(st["phase"], "Failed", "{st:#}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.contains("spec.smokeTests[0]: give either service (an HTTP request) or job, not both"),
        "{m}"
    );
    assert_eq!(step(&st, steps::PLAN)["phase"], "Failed", "{st}");

    // 4. A claim smaller than the files fails preCheck, naming it, before
    // anything is touched.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(server.client(), OPS);
    claims
        .delete("uploads", &DeleteParams::default())
        .await
        .unwrap();
    server.store.insert(CLAIMS, claim("uploads", "10")).unwrap();
    let home =
        json!({"name": "home", "service": {"namespace": APP, "name": "web", "port": bed.web_port}});
    create_app(server, "tight", spec(bed, before.t, &["files"], home)).await;
    let st = app_finished(server, "tight").await;
    assert_eq!(st["phase"], "Failed", "{st:#}");
    assert_eq!(step(&st, steps::PRE_CHECK)["phase"], "Failed", "{st}");
    let m = step(&st, steps::PRE_CHECK)["message"].as_str().unwrap();
    assert!(
        m.starts_with(
            "part files: claim uploads holds 10 bytes; the restore needs the backup's file bytes, "
        ),
        "{m}"
    );
    assert_eq!(step(&st, steps::MAINTENANCE)["phase"], "Skipped", "{st}");
    assert!(st.get("workloads").is_none(), "{st}");
    kubelet.abort();
    controllers.abort();
}

/// The directory holds what it held at T: the file written after T absent,
/// the one changed after T in its old content (mtimes and modes too).
fn assert_files(app: &Path, before: &Before) {
    assert!(!app.join("new.txt").exists());
    assert_eq!(
        fs::read_to_string(app.join("notes.txt")).unwrap(),
        "notes v1\n"
    );
    let mut now = describe(app);
    let mut then = before.files.clone();
    // The directory itself was made anew by the disaster.
    now.remove(&Vec::new());
    then.remove(&Vec::new());
    assert_eq!(now, then);
}
