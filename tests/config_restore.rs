//! RestoreRequests of config backups (issue 11) through the operator: the
//! controller runs against the in-memory API server, and every Job it
//! creates runs for real in the stand-in kubelet (support/kubelet.rs) —
//! the backup Job, then each request's plan and restore Jobs — against the
//! test S3 server. A deleted namespace comes back equal minus what the
//! server sets; one Secret alone; a namespace mapped; existing objects
//! skipped or updated; an account without create permission fails the
//! request naming it, with no Job; a drill is a server-side dry run that
//! writes nothing and fails on an API version the server no longer serves.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apiserver::{ApiServer, Store, JOBS};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use lifeboat::api::{BackupPolicy, BackupRun, BackupRunSpec, LocalRef, RunKind, Tier};
use lifeboat::controller::jobs::{backup_job, JobConfig};
use lifeboat::controller::{metrics::Metrics, Settings};
use lifeboat::wire::BackupSummary;
use serde_json::{json, Value};
use support::kubelet::{execute, execute_api, Secrets};
use support::objects::{cluster_binding, comparable, namespace, shipped_role};

const NS: &str = "ops";
const RESTORES: &str = "apis/lifeboat.dev/v1alpha1/restorerequests";
const WAIT: Duration = Duration::from_secs(60);
const CANARY: &str = "canary-5d0c-config-restore-secret";
const RBAC: &str = "apis/rbac.authorization.k8s.io/v1";

/// The server, the Secrets the Jobs mount, and where they run.
struct Bed {
    server: ApiServer,
    kubeconfig: PathBuf,
    secrets: Secrets,
    cfg: JobConfig,
    policy: Value,
    _dir: tempfile::TempDir,
}

fn ins(s: &Store, resource: &str, v: Value) {
    s.insert(resource, v).unwrap();
}

/// The application: namespace `shop` with a ConfigMap, two Secrets (one
/// holding the canary), a Deployment and a custom resource.
fn fill(s: &Store) {
    for ns in ["ops", "shop"] {
        ins(s, "api/v1/namespaces", namespace(ns));
    }
    ins(
        s,
        "api/v1/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": "shop", "labels": {"app": "shop"}},
        "data": {"mode": "production"}}),
    );
    for (name, value) in [("db", CANARY), ("api-token", "token-value-1")] {
        ins(
            s,
            "api/v1/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "shop"}},
            "stringData": {"password": value}}),
        );
    }
    ins(
        s,
        "apis/apps/v1/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    );
    widgets_served_as(s, "v1");
    ins(
        s,
        "apis/example.com/v1/widgets",
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop"}, "spec": {"size": 3}}),
    );
    // The shipped roles; `restorer` may restore anywhere, `reader` back up,
    // `weak` only read namespaces and create ConfigMaps.
    for role in ["lifeboat-config-reader", "lifeboat-config-restorer"] {
        ins(s, &format!("{RBAC}/clusterroles"), shipped_role(role));
    }
    ins(
        s,
        &format!("{RBAC}/clusterroles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": "configmaps-only"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]}),
    );
    for (account, role) in [
        ("reader", "lifeboat-config-reader"),
        ("restorer", "lifeboat-config-restorer"),
        ("weak", "configmaps-only"),
    ] {
        let binding = cluster_binding(account, role, NS, account);
        ins(s, &format!("{RBAC}/clusterrolebindings"), binding);
    }
}

/// The Widget CRD, serving only `version`.
fn widgets_served_as(s: &Store, version: &str) {
    ins(
        s,
        apiserver::discovery::CRDS,
        json!({"apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": version, "served": true, "storage": true}]}}),
    );
}

/// The test bed; `cloud`: the policy's `source.config.cloud` too.
async fn bed(cloud: Option<Value>) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    server.store.strict();
    fill(&server.store);
    let kubeconfig = dir.path().join("kubeconfig");
    server.kubeconfig(&kubeconfig);
    let b = tokio::task::block_in_place(|| support::bucket("us-east-1"));
    let (bucket, region) = support::bucket_and_region(&b);
    let policy = json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
    "metadata": {"name": "shop-config", "namespace": NS, "uid": "policy-uid"},
    "spec": {
        "source": {"config": {"namespaces": ["shop"],
            "resources": ["configmaps", "secrets", "deployments.apps", "widgets.example.com"],
            "serviceAccountName": "reader"}},
        "destinations": [{"name": "primary", "s3": {"region": region, "bucket": bucket, "prefix": "cfg",
            "endpoint": support::s3_endpoint(), "credentialsSecretRef": {"name": "s3-primary"}}}],
        "encryption": {"keySecretRef": {"name": "backup-keys"}},
        "verification": {"restoreDrill": {"schedule": "0 6 * * 0", "serviceAccountName": "restorer"}}
    }});
    let mut policy = policy;
    if let Some(cloud) = cloud {
        policy["spec"]["source"]["config"]["cloud"] = cloud;
    }
    let key_file = support::keyfile(dir.path(), "k1");
    let secret = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let secrets: Secrets = [
        (
            "s3-primary",
            secret(&[
                ("AWS_ACCESS_KEY_ID", "AKIACFGRESTORE".into()),
                ("AWS_SECRET_ACCESS_KEY", "cfg-restore-secret".into()),
            ]),
        ),
        (
            "aws",
            secret(&[
                ("AWS_ACCESS_KEY_ID", "AKIACFGCLOUD".into()),
                ("AWS_SECRET_ACCESS_KEY", "cfg-cloud-secret".into()),
            ]),
        ),
        (
            "backup-keys",
            secret(&[("keys", std::fs::read_to_string(&key_file).unwrap())]),
        ),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    let mounts = dir.path().join("mounts");
    std::fs::create_dir_all(&mounts).unwrap();
    let mut cfg = JobConfig::new("lifeboat:test");
    cfg.mount_root = mounts.to_str().unwrap().to_string();
    Bed {
        server,
        kubeconfig,
        secrets,
        cfg,
        policy,
        _dir: dir,
    }
}

/// Runs one Job as the kubelet would: with the API when it mounts a token.
async fn run_job(bed: &Bed, job: Job) -> (bool, String) {
    let (secrets, kc) = (bed.secrets.clone(), bed.kubeconfig.clone());
    let ran = tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        match pod.automount_service_account_token {
            Some(true) => execute_api(&job, &secrets, &kc, work.path()),
            _ => execute(&job, &secrets, work.path()),
        }
    })
    .await
    .unwrap();
    let log = format!(
        "{}{}",
        support::stdout(&ran.output),
        support::stderr(&ran.output)
    );
    assert!(!log.contains(CANARY), "the canary in a Job's output: {log}");
    (ran.output.status.success(), ran.termination_message)
}

/// Creates the request `name` of the policy's backup into `target`
/// (`spec.target.config`) and runs its Jobs until it ends.
async fn restore(bed: &Bed, name: &str, target: Value) -> Value {
    let spec = json!({"policyRef": {"name": "shop-config"}, "target": {"config": target}});
    let request = json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreRequest",
        "metadata": {"name": name, "namespace": NS}, "spec": spec});
    create(bed, request).await;
    finish(bed, name).await
}

/// The drill of `backup_id` for `slot`, as the policy controller makes it,
/// run until it ends.
async fn drill(bed: &Bed, policy: &BackupPolicy, backup_id: &str, slot: &str) -> Value {
    let drill =
        lifeboat::controller::drill::drill_request(policy, Some(backup_id), slot.parse().unwrap());
    let drill = serde_json::to_value(drill.unwrap()).unwrap();
    create(bed, drill.clone()).await;
    finish(bed, drill["metadata"]["name"].as_str().unwrap()).await
}

async fn create(bed: &Bed, request: Value) {
    let gvk = kube::api::GroupVersionKind::gvk("lifeboat.dev", "v1alpha1", "RestoreRequest");
    let api: Api<DynamicObject> =
        Api::namespaced_with(bed.server.client(), NS, &ApiResource::from_gvk(&gvk));
    api.create(
        &Default::default(),
        &serde_json::from_value(request).unwrap(),
    )
    .await
    .unwrap();
}

async fn finish(bed: &Bed, name: &str) -> Value {
    let mut ran = BTreeSet::new();
    loop {
        let what = format!("{name}: a Job or the end");
        let next = bed
            .server
            .wait_for(&what, WAIT, |s| {
                let r = s.get(RESTORES, NS, name)?;
                if matches!(
                    r.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                ) {
                    return Some(Err(r));
                }
                ["plan", "restore"]
                    .iter()
                    .map(|suffix| format!("{name}-{suffix}"))
                    .find(|j| !ran.contains(j) && s.get(JOBS, NS, j).is_some())
                    .map(|j| Ok(s.get(JOBS, NS, &j).unwrap()))
            })
            .await;
        match next {
            Err(done) => return done,
            Ok(job) => {
                let job: Job = serde_json::from_value(job).unwrap();
                let job_name = job.metadata.name.clone().unwrap();
                ran.insert(job_name.clone());
                let (ok, message) = run_job(bed, job).await;
                bed.server.finish_job(NS, &job_name, ok, &message).await;
            }
        }
    }
}

fn phase(r: &Value) -> &str {
    r.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn restore_step(r: &Value) -> String {
    r.pointer("/status/steps")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .find(|s| s["name"] == "restore")
        .and_then(|s| s["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The objects of the application in `ns`, comparable, in the backup's namespace.
fn app(s: &Store, ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for r in [
        "api/v1/configmaps",
        "api/v1/secrets",
        "apis/apps/v1/deployments",
        "apis/example.com/v1/widgets",
    ] {
        for mut o in s.list(r, ns) {
            o["metadata"]["namespace"] = json!("shop");
            out.push(comparable(o));
        }
    }
    out
}

async fn delete(bed: &Bed, plural: &str, ns: Option<&str>, name: &str) {
    let (group, version, kind) = match plural {
        "namespaces" => ("", "v1", "Namespace"),
        "secrets" => ("", "v1", "Secret"),
        "configmaps" => ("", "v1", "ConfigMap"),
        "customresourcedefinitions" => ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        p => panic!("{p}"),
    };
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(bed.server.client(), ns, &ar),
        None => Api::all_with(bed.server.client(), &ar),
    };
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

async fn set_mode(bed: &Bed, mode: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        bed.server.client(),
        "shop",
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    api.patch(
        "app-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": mode}})),
    )
    .await
    .unwrap();
}

fn mode(s: &Store) -> Option<String> {
    s.get("api/v1/configmaps", "shop", "app-config")
        .map(|c| c["data"]["mode"].as_str().unwrap().to_string())
}

/// The controllers, watching `ops` with quick resyncs, and the policy.
async fn start(bed: &Bed) -> tokio::task::JoinHandle<()> {
    let settings = Settings {
        namespace: Some(NS.into()),
        jobs: bed.cfg.clone(),
        resync: Duration::from_millis(300),
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let task = bed
        .server
        .run_controllers(settings, Arc::new(Metrics::default()));
    bed.server.create_policy(bed.policy.clone()).await;
    task
}

/// The backup Job of the policy, run as the kubelet would.
async fn back_up(bed: &Bed) -> String {
    let policy: BackupPolicy = serde_json::from_value(bed.policy.clone()).unwrap();
    let mut run = BackupRun::new(
        "shop-config-1",
        BackupRunSpec {
            policy_ref: LocalRef::new("shop-config"),
            tier: Tier::Manual,
            kind: RunKind::Full,
            scheduled_at: None,
            deletion_policy: lifeboat::api::DeletionPolicy::Retain,
        },
    );
    run.metadata.namespace = Some(NS.into());
    run.metadata.uid = Some("run-uid".into());
    let (ok, message) = run_job(bed, backup_job(&policy, &run, &bed.cfg).unwrap()).await;
    assert!(ok, "the backup Job failed: {message}");
    BackupSummary::parse(&message).unwrap().backup_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_backups_restore_through_restore_requests() {
    let bed = bed(None).await;
    let s = &bed.server.store;
    let original = app(s, "shop");
    assert_eq!(original.len(), 5);
    let backup_id = back_up(&bed).await;

    let _controller = start(&bed).await;

    // The namespace is lost, and comes back whole, equal minus what the server sets.
    delete(&bed, "namespaces", None, "shop").await;
    assert!(app(s, "shop").is_empty());
    let t0 = std::time::Instant::now();
    let r = restore(&bed, "shop-back", json!({"serviceAccountName": "restorer"})).await;
    assert_eq!(phase(&r), "Succeeded", "{r}");
    eprintln!(
        "namespace restored through a RestoreRequest (plan and restore Jobs): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(app(s, "shop"), original);
    assert!(restore_step(&r).contains("restored 5 objects"), "{r}");
    assert_eq!(r["status"]["plan"]["backupId"], json!(backup_id));

    // One Secret alone, by name: the others stay as they are.
    delete(&bed, "secrets", Some("shop"), "db").await;
    set_mode(&bed, "changed").await;
    let r = restore(
        &bed,
        "one-secret",
        json!({"resources": ["secrets"], "names": ["shop/db"], "serviceAccountName": "restorer"}),
    )
    .await;
    assert_eq!(phase(&r), "Succeeded", "{r}");
    assert!(restore_step(&r).contains("restored 1 objects"), "{r}");
    assert_eq!(app(s, "shop"), {
        let mut want = original.clone();
        want[0]["data"]["mode"] = json!("changed");
        want
    });

    // Existing objects: skipped by default, replaced with Update.
    let r = restore(&bed, "skip", json!({"serviceAccountName": "restorer"})).await;
    assert!(
        restore_step(&r).contains("0 created, 0 updated, 5 skipped"),
        "{r}"
    );
    assert_eq!(mode(s).as_deref(), Some("changed"));
    let r = restore(
        &bed,
        "update",
        json!({"existing": "Update", "serviceAccountName": "restorer"}),
    )
    .await;
    assert!(restore_step(&r).contains("0 created, 5 updated"), "{r}");
    assert_eq!(mode(s).as_deref(), Some("production"));

    // A namespace mapped: a copy of shop in shop-copy, created by the restore.
    let r = restore(
        &bed,
        "copy",
        json!({"namespaceMapping": [{"from": "shop", "to": "shop-copy"}],
                              "serviceAccountName": "restorer"}),
    )
    .await;
    assert_eq!(phase(&r), "Succeeded", "{r}");
    assert_eq!(app(s, "shop-copy"), original);

    // An account that may not create Secrets: the request says so, no Job.
    let r = restore(&bed, "weak", json!({"serviceAccountName": "weak"})).await;
    assert_eq!(phase(&r), "Failed");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("service account ops/weak cannot create secrets in namespace shop"),
        "{message}"
    );
    assert!(message.contains("lifeboat-config-restorer"), "{message}");
    assert!(s.get(JOBS, NS, "weak-plan").is_none() && s.get(JOBS, NS, "weak-restore").is_none());

    // A drill: the server's dry run of every object, nothing written.
    delete(&bed, "configmaps", Some("shop"), "app-config").await;
    // As the policy controller makes them: owned by the stored policy.
    let stored = s.get(apiserver::POLICIES, NS, "shop-config").unwrap();
    let policy: BackupPolicy = serde_json::from_value(stored).unwrap();
    let dry_runs = s.paging_and_dry_runs().1;
    let r = drill(&bed, &policy, &backup_id, "2026-11-22T05:00:00Z").await;
    assert_eq!(phase(&r), "Succeeded", "{r}");
    assert!(
        restore_step(&r).contains("dry run: the API server accepted 5 objects"),
        "{r}"
    );
    assert!(s.paging_and_dry_runs().1 > dry_runs, "sent as dry runs");
    assert!(mode(s).is_none(), "the drill wrote nothing");

    // The server stops serving example.com/v1: the drill fails naming it.
    delete(
        &bed,
        "customresourcedefinitions",
        None,
        "widgets.example.com",
    )
    .await;
    widgets_served_as(s, "v2");
    let r = drill(&bed, &policy, &backup_id, "2026-11-29T05:00:00Z").await;
    assert_eq!(phase(&r), "Failed", "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("Widget shop/w") && message.contains("example.com/v1"),
        "{message}"
    );
    // … and lands on the policy.
    let bad_name = r["metadata"]["name"].clone();
    let last = bed
        .server
        .wait_for("the drill on the policy", WAIT, |s| {
            let p = s.get(apiserver::POLICIES, NS, "shop-config")?;
            let last = p.pointer("/status/lastDrill")?.clone();
            (last["restoreRequest"] == bad_name).then_some(last)
        })
        .await;
    assert_eq!(last["succeeded"], json!(false), "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("Widget shop/w"),
        "{last}"
    );

    // The canary is in no status, event or Job.
    for resource in [RESTORES, JOBS, apiserver::EVENTS, apiserver::POLICIES] {
        let all = serde_json::to_string(&s.list(resource, "")).unwrap();
        assert!(!all.contains(CANARY), "the canary in {resource}");
    }
}

/// moto's Secrets Manager and SSM, as the Jobs reach them.
async fn aws() -> (aws_sdk_secretsmanager::Client, aws_sdk_ssm::Client) {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_ssm::config::Credentials::for_tests())
        .endpoint_url(support::s3_endpoint())
        .load()
        .await;
    (
        aws_sdk_secretsmanager::Client::new(&shared),
        aws_sdk_ssm::Client::new(&shared),
    )
}

/// A config policy that also reads Secrets Manager and SSM: a
/// RestoreRequest puts its secrets back under another prefix and path
/// (cloud only: no object), and its drill decrypts every part and looks
/// each secret up without writing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_secrets_restore_through_a_request_and_drills_look_them_up() {
    let p = support::unique("cfgr");
    let (sm, ssm) = aws().await;
    let cloud = json!({"region": "eu-west-1", "endpoint": support::s3_endpoint(),
        "credentialsSecretRef": {"name": "aws"},
        "secretsManager": {"namePrefix": format!("{p}/")}, "ssm": {"path": format!("/{p}")}});
    let bed = bed(Some(cloud)).await;
    let s = &bed.server.store;
    sm.create_secret()
        .name(format!("{p}/db"))
        .secret_string(CANARY)
        .send()
        .await
        .unwrap();
    ssm.put_parameter()
        .name(format!("/{p}/api-key"))
        .value(CANARY)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let backup_id = back_up(&bed).await;
    let _controller = start(&bed).await;

    let t0 = std::time::Instant::now();
    let r = restore(&bed, "to-dr", json!({"serviceAccountName": "restorer",
        "cloud": {"endpoint": support::s3_endpoint(), "credentialsSecretRef": {"name": "aws"},
                  "secretsManager": {"toPrefix": format!("dr-{p}/")}, "ssm": {"toPath": format!("/dr-{p}")}}})).await;
    eprintln!(
        "cloud restore through a RestoreRequest: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(phase(&r), "Succeeded", "{r}");
    let restored = sm
        .get_secret_value()
        .secret_id(format!("dr-{p}/db"))
        .send()
        .await
        .unwrap();
    assert_eq!(restored.secret_string(), Some(CANARY));
    let param = ssm
        .get_parameter()
        .name(format!("/dr-{p}/api-key"))
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(param.parameter().unwrap().value(), Some(CANARY));
    assert!(
        restore_step(&r).contains("restored 0 objects"),
        "cloud only: {r}"
    );

    // The drill: the objects as dry runs, every cloud secret decrypted and
    // looked up in the policy's account; the one deleted stays deleted.
    sm.delete_secret()
        .secret_id(format!("{p}/db"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let stored = s.get(apiserver::POLICIES, NS, "shop-config").unwrap();
    let policy: BackupPolicy = serde_json::from_value(stored).unwrap();
    let r = drill(&bed, &policy, &backup_id, "2026-11-22T05:00:00Z").await;
    assert_eq!(phase(&r), "Succeeded", "{r}");
    let step = restore_step(&r);
    assert!(
        step.contains("dry run: the API server accepted 5 objects"),
        "{step}"
    );
    assert!(
        step.contains("secretsmanager eu-west-1") && step.contains("ssm eu-west-1"),
        "{step}"
    );
    assert!(
        sm.get_secret_value()
            .secret_id(format!("{p}/db"))
            .send()
            .await
            .is_err(),
        "the drill wrote nothing"
    );
    for resource in [RESTORES, JOBS, apiserver::EVENTS, apiserver::POLICIES] {
        let all = serde_json::to_string(&s.list(resource, "")).unwrap();
        assert!(!all.contains(CANARY), "the canary in {resource}");
    }
}
