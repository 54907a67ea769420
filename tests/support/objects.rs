//! Kubernetes objects in tests of config backups and restores: what a
//! restored copy is compared on, and the ClusterRoles lifeboat ships.

use serde_json::{json, Value};

/// What the server sets, removed so an object can be compared with its
/// restored copy.
pub fn comparable(mut o: Value) -> Value {
    let m = o["metadata"].as_object_mut().unwrap();
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
    ] {
        m.remove(f);
    }
    if let Some(spec) = o["spec"].as_object_mut() {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    o
}

/// The ClusterRoles the chart and manifests ship, as stored objects.
pub fn shipped_role(name: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/03-rbac.yaml"
    ))
    .unwrap();
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name);
    found.unwrap_or_else(|| panic!("{name} in manifests/03-rbac.yaml"))
}

/// A Namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A ClusterRoleBinding `name` of the ClusterRole `role` to the service
/// account `ns/account`.
pub fn cluster_binding(name: &str, role: &str, ns: &str, account: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding", "metadata": {"name": name},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
    "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]})
}
