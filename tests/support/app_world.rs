//! The world of tests/app_restore.rs, one application across four policies:
//! namespace `shop` (a Deployment, a ConfigMap, a Secret, Services), a
//! PostgreSQL cluster archiving WAL (a physical policy with point-in-time
//! recovery), a claim's directory (a volume policy), a bucket (a bucket
//! policy) and the namespace's objects (a config policy). The policies and
//! the restores live in `ops`, which survives. Beside the in-memory API
//! server runs a stand-in cluster: every Job runs once in the stand-in
//! kubelet (support/job_pods.rs), and Deployments become ready as a
//! Deployment controller would make them. Include with
//! `#[path = "support/app_world.rs"] mod app_world;` beside the API server
//! and job_pods.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::Api;
use lifeboat::api::{BackupPolicy, BackupRun};
use lifeboat::controller::jobs::{backup_job, JobConfig};
use lifeboat::wire::BackupSummary;
use serde_json::{json, Value};

use crate::apiserver::{ApiServer, Store, JOBS};
use crate::job_pods::{run_job_on, Node};
use crate::support::kubelet::{execute_api, execute_with, Claims, World};
use crate::support::objects::{cluster_binding, comparable, namespace, shipped_role};
use crate::support::{
    bucket, bucket_and_region, s3_endpoint, s3_get, s3_keys, s3_put, s3_url, stderr,
};

pub const OPS: &str = "ops";
pub const APP: &str = "shop";
pub const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
pub const APPS: &str = "apis/lifeboat.dev/v1alpha1/applicationrestores";
/// The region of the application's bucket.
pub const MEDIA_REGION: &str = "us-west-2";
const RBAC: &str = "apis/rbac.authorization.k8s.io/v1";

/// The tests' runtime: the controllers, the stand-in cluster and the
/// test on two worker threads.
pub fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP server on loopback answering every request with `status` and
/// `body`; its port.
pub async fn http_server(status: u16, body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || async move { (code, body) });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// Puts `body` as `key` into the application's bucket.
pub fn put(bucket: &str, key: &str, body: &str) {
    s3_put(&s3_url(bucket, MEDIA_REGION, ""), key, body.into());
}

/// Key → body of every object in the application's `bucket`.
pub fn objects_of(bucket: &str) -> Vec<(String, String)> {
    let url = s3_url(bucket, MEDIA_REGION, "");
    let keys = s3_keys(&url);
    let body = |k: &str| String::from_utf8(s3_get(&url, k)).unwrap();
    keys.into_iter()
        .map(|k| {
            let b = body(&k);
            (k, b)
        })
        .collect()
}

/// The ConfigMaps and Secrets of namespace `ns`, comparable.
pub fn app_objects(s: &Store, ns: &str) -> Vec<Value> {
    let mut out = s.list("api/v1/configmaps", ns);
    out.extend(s.list("api/v1/secrets", ns));
    out.into_iter().map(comparable).collect()
}

/// The application's data beside the cluster, in `dir`: a bucket in
/// [`MEDIA_REGION`] holding a.txt and b.txt, the claim `uploads` whose
/// directory `app` holds a.txt and notes.txt, and the Secret `target-s3`
/// the bucket is read and written with. Returns the bucket and the claim's
/// directory.
pub fn app_data(w: &mut World, dir: &Path) -> (String, PathBuf) {
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIAAPPRESTORE"),
        ("AWS_SECRET_ACCESS_KEY", "app-restore-target-secret"),
    ];
    w.secrets.insert(
        "target-s3".into(),
        creds
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let media = bucket_and_region(&bucket(MEDIA_REGION)).0;
    put(&media, "a.txt", "alpha");
    put(&media, "b.txt", "beta v1");
    let uploads = dir.join("uploads");
    let app_dir = uploads.join("app");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::write(app_dir.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(app_dir.join("notes.txt"), "notes v1\n").unwrap();
    (media, uploads)
}

/// The in-memory API server holding the application ([`fill`]; strict,
/// Services on loopback) with `web` answering on `ports.0` and `broken`
/// on `ports.1`; and the node that runs its Jobs with `w`'s Secrets,
/// `claims` and a kubeconfig (written into `dir`) for the pods that ask
/// for a token.
pub async fn api_and_node(
    w: &World,
    dir: &Path,
    claims: Claims,
    ports: (u16, u16),
) -> (Arc<ApiServer>, Node) {
    let server = Arc::new(ApiServer::start().await);
    server.store.strict();
    server.store.services_on_loopback();
    fill(&server.store, ports.0, ports.1);
    let kubeconfig = dir.join("kubeconfig");
    server.kubeconfig(&kubeconfig);
    let node = Node {
        secrets: w.secrets.clone(),
        claims,
        kubeconfig: Some(kubeconfig),
        work: w.work.path().to_path_buf(),
    };
    (server, node)
}

fn ins(s: &Store, resource: &str, v: Value) {
    s.insert(resource, v).unwrap();
}

/// The namespaces, the application in `shop` (Service `web` on `web_port`,
/// `broken` on `broken_port`, both created without a cluster IP) and the
/// accounts, bound to the shipped ClusterRoles: `reader` backs up the
/// namespace, `restorer` restores it, scales its Deployments, reads its
/// Services and creates Jobs in `ops`.
pub fn fill(s: &Store, web_port: u16, broken_port: u16) {
    for ns in [OPS, APP] {
        ins(s, "api/v1/namespaces", namespace(ns));
    }
    ins(
        s,
        "api/v1/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": APP, "labels": {"app": "web"}},
        "data": {"mode": "production"}}),
    );
    ins(
        s,
        "api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "app-secret", "namespace": APP},
        "stringData": {"password": "app-password-3c1d"}}),
    );
    ins(
        s,
        DEPLOYMENTS,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": APP},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
        "status": {"replicas": 2, "readyReplicas": 2}}),
    );
    for (name, port) in [("web", web_port), ("broken", broken_port)] {
        ins(
            s,
            "api/v1/services",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": APP},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": port, "targetPort": 8080}]}}),
        );
    }
    for role in [
        "lifeboat-config-reader",
        "lifeboat-config-restorer",
        "lifeboat-application-restorer",
        "lifeboat-application-jobs",
    ] {
        ins(s, &format!("{RBAC}/clusterroles"), shipped_role(role));
    }
    // The restores' Jobs run in `ops`: `restorer` may create them there only.
    let mut jobs = cluster_binding(
        "restorer-jobs",
        "lifeboat-application-jobs",
        OPS,
        "restorer",
    );
    jobs["kind"] = json!("RoleBinding");
    jobs["metadata"]["namespace"] = json!(OPS);
    ins(s, &format!("{RBAC}/rolebindings"), jobs);
    for (binding, account, role) in [
        ("reader", "reader", "lifeboat-config-reader"),
        ("restorer", "restorer", "lifeboat-config-restorer"),
        ("restorer-app", "restorer", "lifeboat-application-restorer"),
    ] {
        let binding = cluster_binding(binding, role, OPS, account);
        ins(s, &format!("{RBAC}/clusterrolebindings"), binding);
    }
}

/// The world's policy as `name` in `ops` with `source` (and `extra` spec fields).
fn policy(w: &World, name: &str, source: Value, extra: Value) -> BackupPolicy {
    let mut p = serde_json::to_value(&w.policy).unwrap();
    p["metadata"] = json!({"name": name, "namespace": OPS, "uid": format!("uid-{name}")});
    p["spec"]["source"] = source;
    for (k, v) in extra.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    let p: BackupPolicy = serde_json::from_value(p).unwrap();
    p.spec.validate().expect("a valid policy");
    p
}

/// The application's four policies: `orders` (the database, physical, WAL
/// archived), `uploads` (subPath `app` of claim `uploads`), `media` (the
/// bucket `bucket` in `region`, read with Secret `target-s3`) and `shop-config` (namespace `shop`).
pub fn policies(w: &World, bucket: &str, region: &str) -> Vec<BackupPolicy> {
    let pg =
        json!({"postgres": {"connectionSecretRef": {"name": "orders-db"}, "method": "physical"}});
    let pitr = json!({"pointInTimeRecovery": {"enabled": true}});
    let volume = json!({"volume": {"claimName": "uploads", "subPath": "app"}});
    let media = json!({"bucket": {"bucket": bucket, "region": region, "endpoint": s3_endpoint(),
        "credentialsSecretRef": {"name": "target-s3"}}});
    let config = json!({"config": {"namespaces": [APP],
        "resources": ["configmaps", "secrets", "deployments.apps", "services"],
        "serviceAccountName": "reader"}});
    vec![
        policy(w, "orders", pg, pitr),
        policy(w, "uploads", volume, json!({})),
        policy(w, "media", media, json!({})),
        policy(w, "shop-config", config, json!({})),
    ]
}

/// A manual backup of `policy`, its Job run on `node`.
pub async fn back_up(policy: &BackupPolicy, cfg: &JobConfig, node: &Node) -> BackupSummary {
    let name = policy.metadata.name.clone().unwrap();
    let run: BackupRun = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": format!("{name}-manual-1"), "namespace": OPS, "uid": format!("run-{name}")},
        "spec": {"policyRef": {"name": name}, "tier": "manual"}
    }))
    .unwrap();
    let job = backup_job(policy, &run, cfg).unwrap();
    let node = node.clone();
    let ran = tokio::task::spawn_blocking(move || match &node.kubeconfig {
        Some(kc) if job_wants_token(&job) => execute_api(&job, &node.secrets, kc, &node.work),
        _ => execute_with(&job, &node.secrets, &node.claims, &node.work),
    })
    .await
    .unwrap();
    assert!(
        ran.output.status.success(),
        "the backup of {name} failed: {}",
        stderr(&ran.output)
    );
    BackupSummary::parse(&ran.termination_message).expect("a summary")
}

fn job_wants_token(job: &k8s_openapi::api::batch::v1::Job) -> bool {
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    pod.and_then(|p| p.automount_service_account_token) == Some(true)
}

/// Each Job the stand-in cluster ran, with the `shop/web` Deployment's
/// `spec.replicas` when its container started.
pub type Ran = Arc<Mutex<Vec<(String, Option<i64>)>>>;

/// The stand-in cluster: every Job in `ops` runs once on `node`, and every
/// Deployment's readyReplicas follows its spec.replicas.
pub fn cluster(server: Arc<ApiServer>, node: Node) -> (tokio::task::JoinHandle<()>, Ran) {
    let ran: Ran = Arc::default();
    let log = ran.clone();
    let task = tokio::spawn(async move {
        let mut done = BTreeSet::new();
        loop {
            become_ready(&server).await;
            let jobs = server.store.list(JOBS, OPS);
            let next = jobs
                .iter()
                .filter_map(|j| j["metadata"]["name"].as_str())
                .find(|n| !done.contains(*n))
                .map(str::to_string);
            match next {
                Some(name) => {
                    done.insert(name.clone());
                    let web = server.store.get(DEPLOYMENTS, APP, "web");
                    let replicas = web.and_then(|w| w["spec"]["replicas"].as_i64());
                    log.lock().unwrap().push((name.clone(), replicas));
                    run_job_on(&server, OPS, &name, &node).await;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (task, ran)
}

/// The Deployment controller's part: readyReplicas = spec.replicas.
async fn become_ready(server: &ApiServer) {
    for d in server.store.list(DEPLOYMENTS, "") {
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
        if d["status"]["readyReplicas"].as_i64().unwrap_or(0) == want {
            continue;
        }
        let (ns, name) = (
            d["metadata"]["namespace"].as_str().unwrap(),
            d["metadata"]["name"].as_str().unwrap(),
        );
        let status = json!({"status": {"replicas": want, "readyReplicas": want}});
        Api::<Deployment>::namespaced(server.client(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }
}

/// Creates the ApplicationRestore `name` in `ops` with `spec`.
pub async fn create_app(server: &ApiServer, name: &str, spec: Value) {
    let app: lifeboat::api::ApplicationRestore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "ApplicationRestore",
        "metadata": {"name": name, "namespace": OPS}, "spec": spec
    }))
    .unwrap();
    Api::<lifeboat::api::ApplicationRestore>::namespaced(server.client(), OPS)
        .create(&Default::default(), &app)
        .await
        .unwrap();
}

/// Waits until the application restore `name` succeeds or fails; its status.
pub async fn app_finished(server: &ApiServer, name: &str) -> Value {
    server
        .wait_for(
            &format!("application restore {name} to finish"),
            Duration::from_secs(120),
            |s| {
                let st = s.get(APPS, OPS, name)?.get("status")?.clone();
                matches!(st["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(st)
            },
        )
        .await
}

/// `spec.replicas` of `shop/web`.
pub fn web_replicas(s: &Store) -> Option<i64> {
    s.get(DEPLOYMENTS, APP, "web")?["spec"]["replicas"].as_i64()
}
