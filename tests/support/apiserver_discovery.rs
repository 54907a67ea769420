//! API discovery for the in-memory API server: `/api`, `/apis`, each group
//! version's resource list and `/version`, so kube's `Discovery` finds the
//! built-in kinds below plus every CustomResourceDefinition stored in the
//! server (as a real API server serves a CRD's group once it exists).

use serde_json::{json, Value};

use super::Inner;

pub const CRDS: &str = "apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// One resource type the server serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl Resource {
    fn new(gv: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        let (group, version) = gv.split_once('/').unwrap_or(("", gv));
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        }
    }

    /// The store's key for it: `api/v1/secrets`, `apis/apps/v1/deployments`.
    pub fn path(&self) -> String {
        match self.group.as_str() {
            "" => format!("api/{}/{}", self.version, self.plural),
            g => format!("apis/{g}/{}/{}", self.version, self.plural),
        }
    }

    fn group_version(&self) -> String {
        match self.group.as_str() {
            "" => self.version.clone(),
            g => format!("{g}/{}", self.version),
        }
    }
}

/// The built-in kinds a small cluster has (and lifeboat's own).
fn builtin() -> Vec<Resource> {
    let r = Resource::new;
    vec![
        r("v1", "namespaces", "Namespace", false),
        r("v1", "configmaps", "ConfigMap", true),
        r("v1", "secrets", "Secret", true),
        r("v1", "serviceaccounts", "ServiceAccount", true),
        r("v1", "services", "Service", true),
        r("v1", "pods", "Pod", true),
        r("v1", "events", "Event", true),
        r("v1", "endpoints", "Endpoints", true),
        r(
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
        ),
        r("apps/v1", "deployments", "Deployment", true),
        r("apps/v1", "statefulsets", "StatefulSet", true),
        r("apps/v1", "replicasets", "ReplicaSet", true),
        r("batch/v1", "jobs", "Job", true),
        r("batch/v1", "cronjobs", "CronJob", true),
        r("rbac.authorization.k8s.io/v1", "roles", "Role", true),
        r(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        r(
            "rbac.authorization.k8s.io/v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        r(
            "rbac.authorization.k8s.io/v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        r("coordination.k8s.io/v1", "leases", "Lease", true),
        r("events.k8s.io/v1", "events", "Event", true),
        r(
            "discovery.k8s.io/v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        r(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
        r(
            "lifeboat.dev/v1alpha1",
            "backuppolicies",
            "BackupPolicy",
            true,
        ),
        r("lifeboat.dev/v1alpha1", "backupruns", "BackupRun", true),
        r(
            "lifeboat.dev/v1alpha1",
            "restorerequests",
            "RestoreRequest",
            true,
        ),
        r(
            "lifeboat.dev/v1alpha1",
            "applicationrestores",
            "ApplicationRestore",
            true,
        ),
        r(
            "lifeboat.dev/v1alpha1",
            "applicationdrills",
            "ApplicationDrill",
            true,
        ),
    ]
}

/// Every resource type served now: the built-ins and one per served
/// version of each stored CRD.
pub(super) fn resources(inner: &Inner) -> Vec<Resource> {
    let mut all = builtin();
    let from = (CRDS.to_string(), String::new(), String::new());
    let crds = inner
        .objects
        .range(from..)
        .take_while(|((r, _, _), _)| r == CRDS);
    for (_, crd) in crds {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] == json!(false) {
                continue;
            }
            let res = Resource::new(
                &format!("{group}/{}", v["name"].as_str().unwrap_or_default()),
                spec["names"]["plural"].as_str().unwrap_or_default(),
                spec["names"]["kind"].as_str().unwrap_or_default(),
                spec["scope"] != json!("Cluster"),
            );
            if !all.contains(&res) {
                all.push(res);
            }
        }
    }
    all
}

/// Whether `path` (`api/v1/secrets`) is served.
pub(super) fn serves(inner: &Inner, path: &str) -> Option<Resource> {
    resources(inner).into_iter().find(|r| r.path() == path)
}

/// The discovery document at `path`, if `path` is a discovery path.
pub(super) fn document(inner: &Inner, path: &str) -> Option<Value> {
    let all = resources(inner);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => Some(json!({
            "major": "1", "minor": "30", "gitVersion": "v1.30.0-lifeboat-test",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"
        })),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
        })),
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for r in all.iter().filter(|r| !r.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == r.group) {
                    Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
                    Some(_) => {}
                    None => groups.push((r.group.clone(), vec![r.version.clone()])),
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", v] => Some(resource_list(&all, v)),
        ["apis", g, v] => Some(resource_list(&all, &format!("{g}/{v}"))),
        _ => None,
    }
}

fn resource_list(all: &[Resource], gv: &str) -> Value {
    let resources: Vec<Value> = all
        .iter()
        .filter(|r| r.group_version() == gv)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
