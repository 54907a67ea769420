//! Restoring Kubernetes objects of a config backup (pure): which objects a
//! restore takes (types, namespaces, names, labels), how each is changed on
//! the way back (namespace mapping; owner references and assigned cluster
//! IPs dropped, since they name things of the old cluster), and the order
//! they are created in, so nothing arrives before what it needs.

use serde_json::Value;

use crate::catalog::TypeCount;
use crate::source::config::select::Types;

/// Creation order: namespaces and CRDs, then what workloads read
/// (ConfigMaps, Secrets, ServiceAccounts, RBAC, claims, Services), then
/// workloads, then the rest (custom resources, ingresses, …).
pub fn rank(group: &str, plural: &str) -> u8 {
    match (group, plural) {
        ("", "namespaces") | ("apiextensions.k8s.io", "customresourcedefinitions") => 0,
        ("", "configmaps" | "secrets" | "serviceaccounts" | "persistentvolumeclaims")
        | ("", "limitranges" | "resourcequotas" | "services")
        | ("rbac.authorization.k8s.io", _)
        | ("storage.k8s.io", "storageclasses") => 1,
        ("apps", _) | ("batch", _) | ("", "pods" | "replicationcontrollers") => 2,
        _ => 3,
    }
}

/// Which objects of a backup a restore takes; empty fields take all.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Resource type patterns (as a backup's `--resource`).
    pub types: Vec<String>,
    /// Namespaces of the backup to take.
    pub namespaces: Vec<String>,
    /// `NAME` or `NAMESPACE/NAME`.
    pub names: Vec<String>,
    /// Label selector (`k=v`, `k!=v`, `k`, `!k`, comma-separated).
    pub selector: Option<String>,
}

impl Filter {
    pub fn takes_type(&self, t: &TypeCount) -> bool {
        self.types.is_empty()
            || Types {
                include: self.types.clone(),
                exclude: Vec::new(),
            }
            .chosen(&t.group, &t.plural)
    }

    pub fn takes(&self, obj: &Value) -> bool {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A Namespace object goes with the namespace it is.
        let ns = match obj["kind"].as_str() {
            Some("Namespace") => name,
            _ => obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        };
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == ns))
            && (self.names.is_empty()
                || self.names.iter().any(|n| match n.split_once('/') {
                    Some((nns, nn)) => nns == ns && nn == name,
                    None => n == name,
                }))
            && self
                .selector
                .as_deref()
                .is_none_or(|s| labels_match(s, obj.pointer("/metadata/labels")))
    }
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated; all must hold.
pub fn labels_match(selector: &str, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once('=') {
                get(k.trim()) == Some(v.trim_start_matches('=').trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(term).is_some()
            }
        })
}

/// Namespace renames: `FROM=TO` pairs.
#[derive(Clone, Debug, Default)]
pub struct Mapping(pub Vec<(String, String)>);

impl Mapping {
    pub fn parse(pairs: &[String]) -> Result<Self, String> {
        pairs
            .iter()
            .map(|p| match p.split_once('=') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.into(), b.into())),
                _ => Err(format!("{p:?} is not FROM=TO")),
            })
            .collect::<Result<_, _>>()
            .map(Mapping)
    }

    pub fn map<'a>(&'a self, ns: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(from, _)| from == ns)
            .map_or(ns, |(_, to)| to.as_str())
    }
}

/// The object as it is sent back: into its mapped namespace (a Namespace
/// object is renamed, a RoleBinding's subjects follow), without owner
/// references (their uids are the old cluster's) and without a Service's
/// assigned cluster IPs (the new cluster assigns its own; headless stays).
pub fn prepare(obj: &mut Value, mapping: &Mapping) {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let meta = &mut obj["metadata"];
    if let Some(ns) = meta["namespace"].as_str().map(str::to_string) {
        meta["namespace"] = Value::String(mapping.map(&ns).to_string());
    }
    if kind == "Namespace" {
        if let Some(name) = meta["name"].as_str().map(str::to_string) {
            meta["name"] = Value::String(mapping.map(&name).to_string());
        }
    }
    if let Some(m) = meta.as_object_mut() {
        m.remove("ownerReferences");
    }
    if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
        for s in obj["subjects"].as_array_mut().into_iter().flatten() {
            if let Some(ns) = s["namespace"].as_str().map(str::to_string) {
                s["namespace"] = Value::String(mapping.map(&ns).to_string());
            }
        }
    }
    if kind == "Service" && obj.pointer("/spec/clusterIP") != Some(&Value::from("None")) {
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_and_crds_come_first_workloads_after_their_config() {
        let mut types = [
            ("apps", "deployments"),
            ("example.com", "widgets"),
            ("", "secrets"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("", "namespaces"),
        ];
        types.sort_by_key(|(g, p)| rank(g, p));
        assert_eq!(
            types.iter().map(|t| t.1).collect::<Vec<_>>(),
            [
                "customresourcedefinitions",
                "namespaces",
                "secrets",
                "rolebindings",
                "deployments",
                "widgets"
            ]
        );
    }

    #[test]
    fn filters_take_by_namespace_name_and_labels() {
        let obj =
            json!({"metadata": {"namespace": "shop", "name": "db", "labels": {"app": "web"}}});
        let f = |names: &[&str], sel: Option<&str>| Filter {
            names: names.iter().map(|s| s.to_string()).collect(),
            selector: sel.map(str::to_string),
            ..Default::default()
        };
        assert!(f(&[], None).takes(&obj));
        assert!(f(&["db"], None).takes(&obj));
        assert!(f(&["shop/db"], None).takes(&obj));
        assert!(!f(&["other/db"], None).takes(&obj));
        assert!(f(&[], Some("app=web")).takes(&obj));
        assert!(!f(&[], Some("app!=web")).takes(&obj));
        assert!(!f(&[], Some("tier")).takes(&obj));
    }

    #[test]
    fn objects_are_mapped_and_lose_what_names_the_old_cluster() {
        let m = Mapping::parse(&["shop=shop-copy".into()]).unwrap();
        let mut svc = json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop",
            "ownerReferences": [{"uid": "x"}]}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": []},
            "status": {}});
        prepare(&mut svc, &m);
        assert_eq!(
            svc,
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop-copy"}, "spec": {"ports": []}})
        );
        let mut headless =
            json!({"kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        prepare(&mut headless, &m);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut ns = json!({"kind": "Namespace", "metadata": {"name": "shop"}});
        prepare(&mut ns, &m);
        assert_eq!(ns["metadata"]["name"], "shop-copy");
        let mut rb = json!({"kind": "RoleBinding", "metadata": {"name": "r", "namespace": "shop"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}]});
        prepare(&mut rb, &m);
        assert_eq!(rb["subjects"][0]["namespace"], "shop-copy");
        assert!(Mapping::parse(&["nope".into()]).is_err());
    }
}
