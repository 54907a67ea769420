//! A RestoreRequest of a physical policy into a volume, end to end: the
//! controller runs against the in-memory API server, and its plan and
//! restore Jobs run for real in the stand-in kubelet (support/kubelet.rs),
//! the restore Job as the postgres user its `runAsUser` names, with a
//! directory owned by postgres standing in for the claim.
//!
//! A private PostgreSQL cluster archives its WAL to both destinations of the
//! policy; the policy's backup Job takes a base backup; rows are committed
//! before and after a time T. A request for T restores the base backup and
//! replays WAL up to T into the claim's subPath: the restored server holds
//! exactly the rows committed before T. A request for a time before the
//! base backup fails its plan, saying so.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/job_pods.rs"]
mod job_pods;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use apiserver::{ApiServer, JOBS};
use chrono::{DateTime, Utc};
use job_pods::{create_request, finished, run_job};
use lifeboat::api::Tier;
use serde_json::{json, Value};
use support::cluster::{
    archiving_for, give_to_postgres, ids_in, insert, postgres_ids, shared_tempdir, Cluster,
    COMMIT_TS,
};
use support::kubelet::*;

const NS: &str = "shop";
const CLAIM: &str = "orders-pg-restore";

struct Bed {
    w: World,
    claims: Claims,
    /// The claim's host directory.
    claim: PathBuf,
    /// A time before the base backup began.
    before_base: DateTime<Utc>,
    /// The point to restore to, and the commit time of the last row before it.
    t: DateTime<Utc>,
    last_before_t: DateTime<Utc>,
    _cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl Bed {
    async fn run(&self, server: &ApiServer, job: &str) -> bool {
        let work = self.w.work.path();
        run_job(server, NS, job, &self.w.secrets, &self.claims, work)
            .await
            .1
    }

    /// A request to restore the state as of `at` into the claim's `sub_path`.
    async fn request(&self, server: &ApiServer, name: &str, at: DateTime<Utc>, sub_path: &str) {
        let (uid, _) = postgres_ids();
        let spec = json!({"policyRef": {"name": "orders"}, "pointInTime": at,
            "target": {"volume": {"claimName": CLAIM, "subPath": sub_path,
                                  "runAsUser": uid, "user": "postgres"}}});
        create_request(server, NS, name, spec).await;
    }
}

fn utc(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{v} is not a time: {e}"))
        .with_timezone(&Utc)
}

#[test]
fn a_physical_restore_request_replays_wal_to_its_point_in_time_into_a_claim() {
    let mut w = world();
    let dir = shared_tempdir();
    // The cluster archives with the key of the policy's Secret to the
    // prefix the controller gives the policy in each destination.
    let c = archiving_for(&mut w, dir.path(), "prod/shop/orders");
    w.policy.spec.source = serde_json::from_value(json!({"postgres": {
        "connectionSecretRef": {"name": "orders-db"}, "method": "physical"}}))
    .unwrap();

    c.psql("create table t (id bigint primary key)");
    insert(&c, 1..=3);
    let before_base = Utc::now();
    let base = back_up(&w, &Claims::new(), "orders-manual-1", Tier::Manual);
    assert!(!base.backup_id.is_empty());
    insert(&c, 4..=6);
    let last_before_t = utc(&c.psql(&format!("{COMMIT_TS}6")).into());
    std::thread::sleep(Duration::from_secs(1));
    let t = Utc::now();
    std::thread::sleep(Duration::from_secs(1));
    insert(&c, 7..=9);
    // Rows 7..9, past T, are archived: recovery sees T passed and stops.
    c.switch_wal();

    let claim = dir.path().join("claim");
    give_to_postgres(&claim);
    let bed = Bed {
        w,
        claims: Claims::from([(CLAIM.to_string(), claim.clone())]),
        claim,
        before_base,
        t,
        last_before_t,
        _cluster: c,
        _dir: dir,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&bed));
}

async fn scenario(bed: &Bed) {
    let server = ApiServer::start().await;
    let (task, _metrics) = job_pods::start(&server, NS, &bed.w.policy, &bed.w.cfg).await;

    // To T: the base backup, WAL replayed to T, promoted, stopped.
    bed.request(&server, "orders-pitr", bed.t, "pgdata").await;
    assert!(bed.run(&server, "orders-pitr-plan").await);
    let ok = bed.run(&server, "orders-pitr-restore").await;
    let st = finished(&server, NS, "orders-pitr").await;
    assert_eq!(st["phase"], "Succeeded", "{st}");
    assert!(ok);
    // The point reached is the last commit replayed: the last before T.
    assert_eq!(utc(&st["recoveredTo"]), bed.last_before_t, "{st}");
    assert!(utc(&st["recoveredTo"]) <= bed.t);
    let rto = st["recoveryTimeSeconds"].as_i64().expect("a measured RTO");
    assert!((0..120).contains(&rto), "{rto}");
    let data = bed.claim.join("pgdata");
    let (uid, _) = postgres_ids();
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        uid,
        "the server's own"
    );
    assert_eq!(ids_in(&data), vec![1, 2, 3, 4, 5, 6]);

    // Before the base backup: nothing to replay from, and the plan says so.
    bed.request(&server, "orders-early", bed.before_base, "early")
        .await;
    assert!(!bed.run(&server, "orders-early-plan").await);
    let st = finished(&server, NS, "orders-early").await;
    assert_eq!(st["phase"], "Failed", "{st}");
    let m = st["message"].as_str().unwrap();
    assert!(
        m.starts_with("step plan failed: ") && m.contains("no backup at or before"),
        "{m}"
    );
    assert!(server.store.get(JOBS, NS, "orders-early-restore").is_none());
    assert!(!bed.claim.join("early").exists());
    task.abort();
}
