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
    server.store.expire_continue_every(1);
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
