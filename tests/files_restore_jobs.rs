//! RestoreRequests of a volume policy end to end: the controller runs
//! against the in-memory API server, and every Job it creates runs for real
//! in the stand-in kubelet (support/kubelet.rs) with a host directory
//! standing in for the claim, against the test S3 server in two regions.
//!
//! One world, in order: a backup of the claim; the directory is damaged
//! (files deleted, one changed, one added, a symlink to outside planted
//! where a restored file goes and another where a restored directory goes);
//! overwrite=always + deleteExtra restores it exactly, writes nothing
//! through either link, and the Job runs on the node of the pod that holds
//! the ReadWriteOnce claim; overwrite=never keeps a changed file; paths
//! restores one subtree; a drill restores into scratch space and passes,
//! and once a pack is corrupted in both buckets a drill fails naming it,
//! as does a restore into the claim, which leaves no file half-written.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/job_pods.rs"]
mod job_pods;
mod support;

use std::fs;
use std::path::PathBuf;

use apiserver::ApiServer;
use chrono::Utc;
use job_pods::{create_request, finished, run_job, REQUESTS, WAIT};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::Api;
use lifeboat::api::{BackupPolicy, BackupRun, RestoreRequest};
use lifeboat::controller::jobs::backup_job;
use lifeboat::wire::BackupSummary;
use serde_json::{json, Value};
use support::kubelet::*;
use support::tree::describe;
use support::*;

const NS: &str = "shop";
const POLICIES: &str = "apis/lifeboat.dev/v1alpha1/backuppolicies";

struct Bed {
    w: World,
    claims: Claims,
    app: PathBuf,
    outside: PathBuf,
}

impl Bed {
    async fn run(&self, server: &ApiServer, job: &str) -> bool {
        let path = self.w.work.path();
        run_job(server, NS, job, &self.w.secrets, &self.claims, path)
            .await
            .1
    }

    /// Creates the request, runs its plan and restore Jobs, returns its
    /// final status.
    async fn restore(&self, server: &ApiServer, name: &str, target: Value) -> Value {
        let spec = json!({"policyRef": {"name": "orders"}, "target": {"files": target}});
        create_request(server, NS, name, spec).await;
        assert!(self.run(server, &format!("{name}-plan")).await);
        let ok = self.run(server, &format!("{name}-restore")).await;
        let st = finished(server, NS, name).await;
        assert_eq!(ok, st["phase"] == "Succeeded", "{st}");
        st
    }
}

#[test]
fn restore_requests_of_a_volume_policy_and_its_drills() {
    let mut w = world();
    let claim = w.work.path().join("claim");
    let app = claim.join("app");
    fs::create_dir_all(app.join("img")).unwrap();
    fs::create_dir_all(app.join("docs")).unwrap();
    fs::write(app.join("a.txt"), "alpha\n").unwrap();
    fs::write(app.join("notes.txt"), "notes v1\n".repeat(100)).unwrap();
    fs::write(app.join("img/x.bin"), lifeboat::chunks::noise(300_000, 3)).unwrap();
    fs::write(app.join("img/y.bin"), lifeboat::chunks::noise(40_000, 4)).unwrap();
    fs::write(app.join("docs/readme.md"), "# read me\n").unwrap();
    let outside = w.work.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim.txt"), "victim").unwrap();

    w.policy.spec.source = serde_json::from_value(json!({"volume": {
        "claimName": "uploads", "subPath": "app"}}))
    .unwrap();
    let claims = Claims::from([("uploads".to_string(), claim.clone())]);
    let run: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": "orders-manual-1", "namespace": NS, "uid": "run-uid"},
        "spec": {"policyRef": {"name": "orders"}, "tier": "manual"}
    }))
    .unwrap();
    let job = backup_job(&w.policy, &run, &w.cfg).unwrap();
    let ran = execute_with(&job, &w.secrets, &claims, w.work.path());
    assert!(ran.output.status.success(), "{}", stderr(&ran.output));
    let backup = BackupSummary::parse(&ran.termination_message).unwrap();
    let bed = Bed {
        w,
        claims,
        app,
        outside,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(bed, backup));
}

async fn scenario(bed: Bed, backup: BackupSummary) {
    let (app, w) = (&bed.app, &bed.w);
    let server = ApiServer::start().await;
    let (task, _metrics) = job_pods::start(&server, NS, &w.policy, &w.cfg).await;
    // The claim is ReadWriteOnce and an application's pod on node-7 holds it.
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "uploads", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"]}}))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
    let app_pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": NS},
        "spec": {"nodeName": "node-7", "containers": [{"name": "web"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "uploads"}}]},
        "status": {"phase": "Running"}}))
    .unwrap();
    Api::<Pod>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &app_pod)
        .await
        .unwrap();

    let before = describe(app);
    // 1. Damage: files gone, one changed, one added, links to outside
    // planted where a restored file and a restored directory go.
    fs::remove_file(app.join("img/x.bin")).unwrap();
    fs::write(app.join("notes.txt"), "changed\n").unwrap();
    fs::write(app.join("extra.txt"), "not in the backup").unwrap();
    fs::remove_file(app.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(bed.outside.join("victim.txt"), app.join("a.txt")).unwrap();
    fs::remove_dir_all(app.join("docs")).unwrap();
    std::os::unix::fs::symlink(&bed.outside, app.join("docs")).unwrap();
    let outside_before = describe(&bed.outside);

    // A link where a directory goes stops the restore, named, not followed.
    let all = json!({"claimName": "uploads", "subPath": "app", "overwrite": "always", "deleteExtra": true});
    let st = bed.restore(&server, "linked", all.clone()).await;
    assert_eq!(st["phase"], "Failed", "{st}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.contains("docs: not a directory in the target (a symlink or a file); not followed"),
        "{m}"
    );
    assert_eq!(
        describe(&bed.outside),
        outside_before,
        "nothing written through a link"
    );
    fs::remove_file(app.join("docs")).unwrap();

    let st = bed
        .restore(
            &server,
            "exact",
            json!({"claimName": "uploads", "subPath": "app",
            "overwrite": "always", "deleteExtra": true}),
        )
        .await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    assert_eq!(describe(app), before, "restored exactly");
    assert_eq!(
        describe(&bed.outside),
        outside_before,
        "nothing written through a link"
    );
    assert_eq!(st["filesRestored"], 5, "{st}");
    assert_eq!(st["bytesRestored"], 6 + 900 + 300_000 + 40_000 + 10, "{st}");
    assert_eq!(st["plan"]["bytes"], st["bytesRestored"], "{st}");
    assert_eq!(st["plan"]["backupId"], json!(backup.backup_id));
    assert!(st["recoveryTimeSeconds"].as_i64().is_some(), "{st}");
    let step = &st["steps"][1]["message"];
    assert!(
        step.as_str()
            .unwrap()
            .contains("into claim uploads (subPath app)"),
        "{st}"
    );
    // Pinned beside the pod that holds the ReadWriteOnce claim.
    let job: Value = server
        .store
        .get(apiserver::JOBS, NS, "exact-restore")
        .unwrap();
    let term = &job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["values"], json!(["node-7"]), "{job}");

    // 2. overwrite=never keeps a changed file, brings back a deleted one.
    fs::write(app.join("notes.txt"), "changed again\n").unwrap();
    fs::remove_file(app.join("a.txt")).unwrap();
    let st = bed
        .restore(
            &server,
            "keep",
            json!({"claimName": "uploads", "subPath": "app"}),
        )
        .await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    assert_eq!(
        fs::read_to_string(app.join("notes.txt")).unwrap(),
        "changed again\n"
    );
    assert_eq!(fs::read_to_string(app.join("a.txt")).unwrap(), "alpha\n");

    // 3. paths restores one subtree only.
    fs::remove_file(app.join("img/x.bin")).unwrap();
    let st = bed
        .restore(
            &server,
            "img",
            json!({"claimName": "uploads", "subPath": "app",
            "paths": ["img"], "overwrite": "always"}),
        )
        .await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    let x = b"img/x.bin".to_vec();
    assert_eq!(before[&x], describe(app)[&x]);
    assert_eq!(
        fs::read_to_string(app.join("notes.txt")).unwrap(),
        "changed again\n"
    );

    let packs = drills(&bed, &server, &backup).await;

    // 4. In place over the damaged packs: fails naming one; every file is
    // as it was or as backed up, none half-written, no temporary left.
    fs::remove_file(app.join("img/x.bin")).unwrap();
    let was = describe(app);
    let all = json!({"claimName": "uploads", "subPath": "app", "overwrite": "always"});
    let st = bed.restore(&server, "damaged", all).await;
    assert_eq!(st["phase"], "Failed", "{st}");
    let m = st["message"].as_str().unwrap();
    assert!(
        packs
            .iter()
            .any(|p| m.contains(p.rsplit('/').next().unwrap())),
        "{m}"
    );
    for (path, now) in describe(app) {
        let (path, dir) = (
            String::from_utf8_lossy(&path).into_owned(),
            now.starts_with("dir"),
        );
        let known =
            was.get(path.as_bytes()) == Some(&now) || before.get(path.as_bytes()) == Some(&now);
        assert!(dir || known, "{path}: {now}");
    }
    task.abort();
}

/// A drill into scratch space passes; once a pack is corrupted in both
/// buckets one fails naming it, and the policy says so.
/// Returns the keys of the packs it damaged.
async fn drills(bed: &Bed, server: &ApiServer, backup: &BackupSummary) -> Vec<String> {
    server
        .patch_policy(
            NS,
            "orders",
            json!({"spec": {"verification": {"restoreDrill": {
            "schedule": "* * * * *"}}}}),
        )
        .await;
    let drill = job_pods::first_drill(server, NS, &backup.backup_id).await;
    let dr: Value = server.store.get(REQUESTS, NS, &drill).unwrap();
    assert_eq!(dr["spec"]["target"], json!({"scratch": {}}), "{dr}");
    assert!(bed.run(server, &format!("{drill}-plan")).await);
    assert!(bed.run(server, &format!("{drill}-restore")).await);
    let st = finished(server, NS, &drill).await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    let status = last_drill(server, &drill).await;
    assert_eq!(status["lastDrill"]["succeeded"], true, "{status}");
    let m = status["lastDrill"]["message"].as_str().unwrap();
    assert!(m.contains("into scratch space: 5 files"), "{m}");

    // A pack with a flipped bit in both buckets.
    // (The fixtures' S3 client runs its own runtime: on a thread of its own.)
    let packs = std::thread::scope(|t| {
        t.spawn(|| {
            let packs: Vec<String> = s3_keys(&bed.w.buckets[0])
                .into_iter()
                .filter(|k| k.contains("/chunks/packs/"))
                .collect();
            for url in &bed.w.buckets {
                for key in &packs {
                    let mut body = s3_get(url, key);
                    let mid = body.len() / 2;
                    body[mid] ^= 0x40;
                    s3_put(url, key, body);
                }
            }
            packs
        })
        .join()
        .unwrap()
    });
    assert!(!packs.is_empty());
    // The next drill, as the policy's schedule would make it (a slot ahead,
    // so the schedule makes no other one meanwhile).
    let p: BackupPolicy =
        serde_json::from_value(server.store.get(POLICIES, NS, "orders").unwrap()).unwrap();
    let slot = Utc::now() + chrono::Duration::days(1);
    let r = lifeboat::controller::drill::drill_request(&p, Some(&backup.backup_id), slot).unwrap();
    let name = r.metadata.name.clone().unwrap();
    Api::<RestoreRequest>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    assert!(bed.run(server, &format!("{name}-plan")).await);
    assert!(!bed.run(server, &format!("{name}-restore")).await);
    let st = finished(server, NS, &name).await;
    assert_eq!(st["phase"], "Failed", "{st}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step restore failed: ")
            && packs
                .iter()
                .any(|p| m.contains(p.rsplit('/').next().unwrap())),
        "{m} names none of {packs:?}"
    );
    let status = last_drill(server, &name).await;
    assert_eq!(status["lastDrill"]["succeeded"], false, "{status}");
    let cond = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DrillPassed")
        .unwrap()
        .clone();
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("DrillFailed"))
    );
    packs
}

async fn last_drill(server: &ApiServer, drill: &str) -> Value {
    server
        .wait_for("the policy's lastDrill", WAIT, |s| {
            let st = s.get(POLICIES, NS, "orders")?.get("status")?.clone();
            (st.pointer("/lastDrill/restoreRequest") == Some(&json!(drill))).then_some(st)
        })
        .await
}
