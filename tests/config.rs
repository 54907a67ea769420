//! Config backups (issue 11): Kubernetes objects listed through discovery
//! and dynamic objects from the in-memory API server, sealed into real S3
//! (moto, two regions) and restored through the API again.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use apiserver::ApiServer;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::discovery::Discovery;
use serde_json::{json, Value};
use support::objects::{comparable, shipped_role};

fn configmap(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns}, "data": {"k": name}})
}

/// What the stand-in API server must do for config backups to be tested
/// against it: discovery (with a CRD added at run time), paged lists whose
/// tokens expire, dry run, immutable fields.
#[tokio::test]
async fn the_api_server_serves_discovery_pages_dry_runs_and_immutability() {
    let server = ApiServer::start().await;
    let client = server.client();
    server
        .store
        .insert(
            apiserver::discovery::CRDS,
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "spec": {"group": "example.com", "scope": "Namespaced",
                            "names": {"plural": "widgets", "kind": "Widget"},
                            "versions": [{"name": "v1", "served": true, "storage": true}]}}),
        )
        .unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let names: Vec<String> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(r, _)| format!("{}.{}", r.plural, r.group))
        .collect();
    for want in ["secrets.", "deployments.apps", "widgets.example.com"] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }

    for i in 0..25 {
        server
            .store
            .insert("api/v1/configmaps", configmap("a", &format!("cm-{i:02}")))
            .unwrap();
    }
    let cms: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "a",
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        seen.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[10], "cm-10");
    server.store.compact_at_continue(1);
    let first = cms.list(&ListParams::default().limit(10)).await.unwrap();
    let err = cms
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 410),
        "{err}"
    );

    // Dry run: answered as if done, nothing stored.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(
        &dry,
        &serde_json::from_value(configmap("a", "dry")).unwrap(),
    )
    .await
    .unwrap();
    assert!(server.store.get("api/v1/configmaps", "a", "dry").is_none());

    // Immutable: an immutable Secret's data, a Service's clusterIP.
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "a",
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let frozen: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "frozen"}, "immutable": true, "stringData": {"a": "1"}}))
        .unwrap();
    secrets
        .create(&PostParams::default(), &frozen)
        .await
        .unwrap();
    let mut changed = secrets.get("frozen").await.unwrap();
    changed.data["data"]["a"] = json!("Mg==");
    let err = secrets
        .replace("frozen", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err}"
    );
    let services: Api<DynamicObject> = Api::namespaced_with(
        client,
        "a",
        &ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
    );
    let svc: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}))
    .unwrap();
    let mut svc = services.create(&PostParams::default(), &svc).await.unwrap();
    assert!(svc.data["spec"]["clusterIP"].is_string());
    svc.data["spec"]["clusterIP"] = json!("10.0.0.9");
    let err = services
        .replace("web", &PostParams::default(), &svc)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err}"
    );
}

/// The real binary against the API server, with `kubeconfig`; its JSON
/// report when it succeeds, or its exit status and stderr.
async fn run(kubeconfig: &std::path::Path, args: &[&str]) -> Result<Value, (i32, String)> {
    let out = tokio::process::Command::new(support::bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

const CANARY: &str = "canary-7e1f0b2c-config-secret-value";

fn secret(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": "shop"}},
           "stringData": {"password": value}})
}

/// Fills the server: namespaces `shop` and `web`, 10,000 objects that a
/// config backup takes, and objects it must leave out.
fn fill(store: &apiserver::Store) -> usize {
    let ins = |r: &str, v: Value| {
        store.insert(r, v).unwrap();
    };
    for ns in ["shop", "web"] {
        ins(
            "api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    let mut n = 2;
    for i in 0..6000 {
        let ns = if i % 3 == 0 { "web" } else { "shop" };
        ins("api/v1/configmaps", configmap(ns, &format!("cm-{i:05}")));
        n += 1;
    }
    for i in 0..3962 {
        let ns = if i % 2 == 0 { "web" } else { "shop" };
        let value = if i == 41 {
            CANARY.to_string()
        } else {
            format!("pw-{i}")
        };
        ins(
            "api/v1/secrets",
            secret(ns, &format!("secret-{i:04}"), &value),
        );
        n += 1;
    }
    ins("api/v1/secrets", {
        let mut s = secret("shop", "frozen", "f");
        s["immutable"] = json!(true);
        s
    });
    ins(
        "api/v1/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "shop"}}),
    );
    ins(
        "api/v1/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    ins(
        "apis/rbac.authorization.k8s.io/v1/rolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "app-reads", "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}]}),
    );
    for i in 0..30 {
        ins(
            "apis/apps/v1/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("d-{i:02}"), "namespace": "shop"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx",
                                           "envFrom": [{"configMapRef": {"name": "cm-00001"}}]}]}}},
            "status": {"readyReplicas": 2}}),
        );
    }
    n += 4 + 30;
    ins(
        apiserver::discovery::CRDS,
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}}),
    );
    ins(
        "apis/example.com/v1/widgets",
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop"}, "spec": {"size": 3}}),
    );
    n += 2;
    // Left out: a token, the CA bundle, an owned ReplicaSet, a pod, an event.
    ins(
        "api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "app-token", "namespace": "shop"}, "data": {"token": "dG9r"}}),
    );
    ins("api/v1/configmaps", configmap("shop", "kube-root-ca.crt"));
    ins(
        "apis/apps/v1/replicasets",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "d-00-abc", "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d-00", "uid": "uid-1", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
    );
    ins(
        "api/v1/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}, "spec": {"containers": []}}),
    );
    ins(
        "api/v1/events",
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "shop"}}),
    );
    n
}

/// The support helpers that run their own runtime, from inside this one.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn s3_all_bytes(url: &str) -> Vec<u8> {
    sync(|| {
        let mut all = Vec::new();
        for key in support::s3_keys(url) {
            all.extend(support::s3_get(url, &key));
        }
        all
    })
}

/// 10,000 objects in two namespaces backed up to two regions; the
/// namespace deleted and restored equal to the original minus what the
/// server sets; one Secret alone; a namespace mapped; existing objects
/// skipped, updated or failing the restore; a dry run that stores nothing;
/// an export; and a tampered backup that restores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_back_up_to_two_regions_and_restore_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    server.store.strict();
    let expected = fill(&server.store);
    assert_eq!(expected, 10_000);
    // The history is compacted mid-backup: the list in progress gets 410
    // Expired, lists again and resumes after the last object it stored.
    server.store.compact_at_continue(5);
    let kc = dir.path().join("kubeconfig");
    server.kubeconfig(&kc);
    let keys = sync(|| support::keyfile(dir.path(), "k1"));
    let keys = keys.to_str().unwrap();
    let (west, east) = sync(|| (support::bucket("eu-west-1"), support::bucket("us-east-2")));
    let to = [format!("west={west}"), format!("east={east}")];
    let before: Vec<Value> = [
        "api/v1/configmaps",
        "api/v1/secrets",
        "api/v1/services",
        "api/v1/serviceaccounts",
        "apis/apps/v1/deployments",
        "apis/rbac.authorization.k8s.io/v1/rolebindings",
        "apis/example.com/v1/widgets",
    ]
    .iter()
    .flat_map(|r| server.store.list(r, "shop"))
    .filter(|o| o["metadata"]["name"] != "kube-root-ca.crt" && o["metadata"]["name"] != "app-token")
    .collect();

    let t0 = std::time::Instant::now();
    let report = run(
        &kc,
        &[
            "backup",
            "--config",
            "--all-namespaces",
            "--resource",
            "*",
            "--key-file",
            keys,
            "--to",
            &to[0],
            "--to",
            &to[1],
            "--policy",
            "cluster",
            "--json",
        ],
    )
    .await
    .unwrap();
    let backup_secs = t0.elapsed().as_secs_f64();
    let id = report["backup_id"].as_str().unwrap().to_string();
    assert!(
        server.store.paging_and_dry_runs().0 > 0,
        "a continue token expired during the backup"
    );

    // The plaintext manifest: counts per type, no names, no values.
    let manifest_bytes =
        sync(|| support::s3_get(&west, &format!("prod/orders/backups/{id}/manifest.json")));
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["source"]["kind"], "config");
    let count = |name: &str| -> u64 {
        manifest["source"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                let full = if t["group"] == "" {
                    t["plural"].as_str().unwrap().to_string()
                } else {
                    format!(
                        "{}.{}",
                        t["plural"].as_str().unwrap(),
                        t["group"].as_str().unwrap()
                    )
                };
                full == name
            })
            .map(|t| t["count"].as_u64().unwrap())
            .sum()
    };
    let total: u64 = manifest["source"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, expected, "{manifest}");
    assert_eq!(count("configmaps"), 6000, "kube-root-ca.crt left out");
    assert_eq!(count("secrets"), 3963, "the service account token left out");
    assert_eq!(count("replicasets.apps"), 0, "owned objects left out");
    assert_eq!(count("pods") + count("events"), 0, "excluded by default");
    assert_eq!(
        count("widgets.example.com"),
        1,
        "a CRD's objects found by discovery"
    );
    let text = String::from_utf8_lossy(&manifest_bytes);
    assert!(
        !text.contains("secret-0041") && !text.contains("cm-00001"),
        "no names in the manifest"
    );
    // The canary secret appears in no stored byte, in either region, in
    // the clear or as the API's base64.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, CANARY);
    for url in [&west, &east] {
        let stored = s3_all_bytes(url);
        for needle in [CANARY.as_bytes(), b64.as_bytes()] {
            assert!(
                !stored.windows(needle.len()).any(|w| w == needle),
                "canary stored in the clear in {url}"
            );
        }
    }

    // The namespace is lost; everything of it comes back.
    let ns_api: Api<DynamicObject> = Api::all_with(
        server.client(),
        &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
    );
    ns_api.delete("shop", &Default::default()).await.unwrap();
    assert_eq!(server.store.list("api/v1/configmaps", "shop").len(), 0);
    let from = ["--from", &to[1], "--from", &to[0]];
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--config", "--key-file", keys, "--json"];
        args.extend(from);
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let go = |args: Vec<String>| {
        let kc = kc.clone();
        async move { run(&kc, &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let t0 = std::time::Instant::now();
    let r = go(restore(&["--namespace", "shop"])).await.unwrap();
    let restore_secs = t0.elapsed().as_secs_f64();
    assert_eq!(r["failed"], json!([]), "{r}");
    assert!(server.store.get("api/v1/namespaces", "", "shop").is_some());
    let after: Vec<Value> = before
        .iter()
        .map(|o| {
            let path = match o["apiVersion"].as_str().unwrap() {
                "v1" => format!("api/v1/{}", plural_of(o)),
                gv => format!("apis/{gv}/{}", plural_of(o)),
            };
            server
                .store
                .get(&path, "shop", o["metadata"]["name"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{path} {} restored", o["metadata"]["name"]))
        })
        .collect();
    for (b, a) in before.iter().zip(&after) {
        let mut b = comparable(b.clone());
        if b["kind"] == "Deployment" {
            b.as_object_mut().unwrap().remove("status"); // status is not restored
        }
        assert_eq!(b, comparable(a.clone()));
    }

    // One Secret alone.
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        "shop",
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    secrets
        .delete("secret-0041", &Default::default())
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let r = go(restore(&[
        "--resource",
        "secrets",
        "--name",
        "shop/secret-0041",
    ]))
    .await
    .unwrap();
    let one_secs = t0.elapsed().as_secs_f64();
    assert_eq!(
        (r["objects"].as_u64(), r["created"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        comparable(
            server
                .store
                .get("api/v1/secrets", "shop", "secret-0041")
                .unwrap()
        ),
        comparable(
            before
                .iter()
                .find(|o| o["metadata"]["name"] == "secret-0041")
                .unwrap()
                .clone()
        )
    );

    // Namespace mapping: the namespace is created, objects land in it.
    let r = go(restore(&[
        "--namespace",
        "shop",
        "--resource",
        "configmaps",
        "--resource",
        "rolebindings.rbac.authorization.k8s.io",
        "--namespace-map",
        "shop=shop-copy",
    ]))
    .await
    .unwrap();
    assert_eq!(r["created"].as_u64(), Some(4001), "{r}");
    assert_eq!(
        server.store.list("api/v1/configmaps", "shop-copy").len(),
        4000
    );
    assert_eq!(server.store.list("api/v1/configmaps", "shop").len(), 4000);
    let rb = server
        .store
        .get(
            "apis/rbac.authorization.k8s.io/v1/rolebindings",
            "shop-copy",
            "app-reads",
        )
        .unwrap();
    assert_eq!(rb["subjects"][0]["namespace"], "shop-copy");

    // Existing objects: skipped by default, updated when asked, or the restore fails.
    let cms: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        "shop",
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let edit = json!({"data": {"k": "edited"}});
    cms.patch(
        "cm-00001",
        &Default::default(),
        &kube::api::Patch::Merge(&edit),
    )
    .await
    .unwrap();
    let one_cm = ["--resource", "configmaps", "--name", "shop/cm-00001"];
    let live_k = || {
        server
            .store
            .get("api/v1/configmaps", "shop", "cm-00001")
            .unwrap()["data"]["k"]
            .clone()
    };
    let r = go(restore(&one_cm)).await.unwrap();
    assert_eq!(
        (r["skipped"].as_u64(), r["created"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(live_k(), "edited");
    // A dry run of the update changes nothing and is the server's own.
    let dry_before = server.store.paging_and_dry_runs().1;
    let r = go(restore(
        &[&one_cm[..], &["--existing", "update", "--dry-run"]].concat(),
    ))
    .await
    .unwrap();
    assert_eq!(r["updated"].as_u64(), Some(1), "{r}");
    assert_eq!(live_k(), "edited");
    assert!(server.store.paging_and_dry_runs().1 > dry_before);
    let r = go(restore(&[&one_cm[..], &["--existing", "update"]].concat()))
        .await
        .unwrap();
    assert_eq!(r["updated"].as_u64(), Some(1), "{r}");
    assert_eq!(live_k(), "cm-00001");
    let (_, err) = go(restore(&[&one_cm[..], &["--existing", "fail"]].concat()))
        .await
        .unwrap_err();
    assert!(
        err.contains("ConfigMap shop/cm-00001 already exists"),
        "{err}"
    );
    // An immutable Secret that differs cannot be updated: the restore says which.
    let frozen = json!({"data": {"password": "Y2hhbmdlZA=="}});
    secrets.delete("frozen", &Default::default()).await.unwrap();
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "frozen", "namespace": "shop"}, "immutable": true, "data": frozen["data"]})).unwrap()).await.unwrap();
    let (code, err) = go(restore(&[
        "--resource",
        "secrets",
        "--name",
        "shop/frozen",
        "--existing",
        "update",
    ]))
    .await
    .unwrap_err();
    assert_eq!(code, 1, "{err}");

    // Export: YAML documents without server-set fields, Secrets first-class.
    let out = dir.path().join("export");
    let mut args = vec![
        "export",
        "--key-file",
        keys,
        "--json",
        "--namespace",
        "web",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(from);
    let r = run(&kc, &args).await.unwrap();
    assert_eq!(r["objects"].as_u64(), Some(1 + 2000 + 1981), "{r}");
    let mut docs = 0;
    for f in r["files"].as_array().unwrap() {
        let text = std::fs::read_to_string(out.join(f.as_str().unwrap())).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            assert!(
                v["apiVersion"].is_string()
                    && v["kind"].is_string()
                    && v["metadata"]["name"].is_string()
            );
            assert!(
                v["metadata"].get("uid").is_none()
                    && v["metadata"].get("resourceVersion").is_none()
            );
            docs += 1;
        }
    }
    assert_eq!(docs, 3982);

    // A tampered backup restores nothing: one flipped byte in the secrets
    // part, in both regions.
    let key = format!("prod/orders/backups/{id}/objects-secrets.lbk");
    for url in [&west, &east] {
        sync(|| {
            let mut bytes = support::s3_get(url, &key);
            let i = bytes.len() / 2;
            bytes[i] ^= 1;
            support::s3_put(url, &key, bytes);
        });
    }
    let requests = server.store.requests();
    let (_, err) = go(restore(&[
        "--namespace",
        "shop",
        "--namespace-map",
        "shop=tampered",
    ]))
    .await
    .unwrap_err();
    assert!(err.contains("objects-secrets"), "{err}");
    assert!(server
        .store
        .get("api/v1/namespaces", "", "tampered")
        .is_none());
    assert_eq!(server.store.list("api/v1/configmaps", "tampered").len(), 0);
    assert_eq!(
        server.store.requests(),
        requests,
        "nothing was sent to the API"
    );

    eprintln!("10,000 objects: backup {backup_secs:.1} s, full restore of shop {restore_secs:.1} s, one Secret {one_secs:.1} s");
}

fn plural_of(o: &Value) -> String {
    match o["kind"].as_str().unwrap() {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Service" => "services",
        "ServiceAccount" => "serviceaccounts",
        "Deployment" => "deployments",
        "RoleBinding" => "rolebindings",
        "Widget" => "widgets",
        k => panic!("{k}"),
    }
    .into()
}

fn binding(ns: &str, name: &str, role_kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": "config-backup", "namespace": "shop"}]})
}

/// A config policy whose service account may list ConfigMaps but not
/// Secrets is not Ready and says which permission is missing; bound to the
/// shipped lifeboat-config-reader role, it is Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_account_lacks_a_permission_says_which() {
    use lifeboat::controller::{metrics::Metrics, Settings};
    let server = ApiServer::start().await;
    let rbac = "apis/rbac.authorization.k8s.io/v1";
    let s = &server.store;
    s.insert(
        &format!("{rbac}/clusterroles"),
        shipped_role("lifeboat-config-reader"),
    )
    .unwrap();
    s.insert(
        &format!("{rbac}/roles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "configmaps-only", "namespace": "shop"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
    )
    .unwrap();
    s.insert(
        &format!("{rbac}/rolebindings"),
        binding("shop", "partial", "Role", "configmaps-only"),
    )
    .unwrap();
    let settings = Settings {
        namespace: Some("shop".into()),
        resync: std::time::Duration::from_millis(200),
        retry: std::time::Duration::from_millis(200),
        ..Settings::default()
    };
    let _controller = server.run_controllers(settings, std::sync::Arc::new(Metrics::default()));
    server.create_policy(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "cluster", "namespace": "shop"},
        "spec": {
            "source": {"config": {"resources": ["configmaps", "secrets"], "serviceAccountName": "config-backup"}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}}
        }
    })).await;
    let ready = |want: &'static str| {
        move |s: &apiserver::Store| {
            let p = s.get(apiserver::POLICIES, "shop", "cluster")?;
            let c = p
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (c["status"] == want).then_some(c)
        }
    };
    let wait = std::time::Duration::from_secs(20);
    let c = server.wait_for("Ready False", wait, ready("False")).await;
    assert_eq!(c["reason"], "MissingPermission", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("shop/config-backup cannot list secrets in namespace shop"),
        "{message}"
    );
    assert!(message.contains("lifeboat-config-reader"), "{message}");
    assert!(
        server.store.list(apiserver::RUNS, "shop").is_empty(),
        "nothing scheduled"
    );

    s.insert(
        &format!("{rbac}/rolebindings"),
        binding("shop", "reader", "ClusterRole", "lifeboat-config-reader"),
    )
    .unwrap();
    server
        .patch_policy(
            "shop",
            "cluster",
            json!({"metadata": {"labels": {"touched": "yes"}}}),
        )
        .await;
    let c = server.wait_for("Ready True", wait, ready("True")).await;
    assert_ne!(c["reason"], "MissingPermission", "{c}");
}
