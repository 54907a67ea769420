//! What a config backup takes and how each object is stored (pure): which
//! resource types a selection names, which objects are left out (service
//! account tokens, `kube-root-ca.crt`, objects a controller owns), the
//! server-set fields stripped before storing, and the label selector as
//! the API's query text.

use serde_json::Value;

/// Types left out of a wildcard unless named exactly: they are made by the
/// cluster itself, change every second, or only mean something while the
/// objects that made them run.
pub const EXCLUDED_BY_DEFAULT: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "pods",
    "leases.coordination.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
];

/// Metadata the API server sets, which a restore must not send back.
const SERVER_SET: &[&str] = &[
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// `plural` for the core group, `plural.group` otherwise: how the
/// selection, the manifest and messages name a type.
pub fn type_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Whether the pattern `p` names the type: `*` (all), `*.group`, `plural`
/// (in any group) or `plural.group`.
fn matches(p: &str, group: &str, plural: &str) -> bool {
    if p == "*" {
        return true;
    }
    if let Some(g) = p.strip_prefix("*.") {
        return g == group;
    }
    match p.split_once('.') {
        Some((pl, g)) => pl == plural && g == group,
        None => p == plural,
    }
}

/// Which resource types a backup takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Types {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Types {
    /// Named in `include`, not in `exclude`, and not excluded by default
    /// unless included by its exact name.
    pub fn chosen(&self, group: &str, plural: &str) -> bool {
        let name = type_name(group, plural);
        let exact = self.include.iter().any(|p| *p == name || *p == plural);
        let wild = self.include.iter().any(|p| matches(p, group, plural));
        let excluded = self.exclude.iter().any(|p| matches(p, group, plural));
        let by_default = EXCLUDED_BY_DEFAULT.contains(&name.as_str());
        !excluded && (exact || (wild && !by_default))
    }

    /// A problem with a pattern, naming it; `field` is where it came from.
    pub fn check(patterns: &[String]) -> Result<(), String> {
        for p in patterns {
            let valid = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.*".contains(c))
                && (p == "*" || !p[1..].contains('*'))
                && (!p.starts_with('*') || p == "*" || p.starts_with("*."));
            if !valid {
                return Err(format!(
                    "{p:?} is not a resource type: use plural or plural.group (secrets, deployments.apps), *.group or *"
                ));
            }
        }
        Ok(())
    }
}

/// Why an object listed is not stored, if it is not.
pub fn left_out(obj: &Value, include_owned: bool) -> Option<&'static str> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    if kind == "Secret" && obj["type"] == "kubernetes.io/service-account-token" {
        return Some("service account token");
    }
    if kind == "ConfigMap" && name == Some("kube-root-ca.crt") {
        return Some("cluster CA bundle");
    }
    let owned = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
    if owned && !include_owned {
        return Some("owned by a controller");
    }
    None
}

/// The object as stored: without what the server sets, and without its
/// status unless asked.
pub fn strip(obj: &mut Value, include_status: bool) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_SET {
            meta.remove(*f);
        }
    }
    if !include_status {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
}

/// A label selector's `matchLabels` and `matchExpressions` as the query
/// text of a list (`app=web,tier in (a,b),!debug`).
pub fn selector_text(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<String, String> {
    let mut terms: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let values = e.values.clone().unwrap_or_default();
        terms.push(match e.operator.as_str() {
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            "In" if values.len() == 1 => format!("{}={}", e.key, values[0]),
            "NotIn" if values.len() == 1 => format!("{}!={}", e.key, values[0]),
            op => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {op:?} with {} values is not supported yet (use Exists, DoesNotExist, or In/NotIn with one value)",
                    values.len()
                ))
            }
        });
    }
    Ok(terms.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(include: &[&str], exclude: &[&str]) -> Types {
        Types {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn types_are_chosen_by_name_group_and_wildcard() {
        let t = types(&["secrets", "deployments.apps", "*.lifeboat.dev"], &[]);
        assert!(t.chosen("", "secrets"));
        assert!(t.chosen("apps", "deployments"));
        assert!(!t.chosen("apps", "statefulsets"));
        assert!(t.chosen("lifeboat.dev", "backuppolicies"));
        assert!(!t.chosen("", "configmaps"));
        let all = types(&["*"], &["secrets"]);
        assert!(all.chosen("", "configmaps"));
        assert!(!all.chosen("", "secrets"), "excluded by name");
        // Wildcards leave out what is excluded by default; a name does not.
        assert!(!all.chosen("", "events"));
        assert!(!all.chosen("", "pods"));
        assert!(!all.chosen("coordination.k8s.io", "leases"));
        assert!(!all.chosen("discovery.k8s.io", "endpointslices"));
        assert!(types(&["pods"], &[]).chosen("", "pods"));
        assert!(Types::check(&["*".into(), "*.apps".into(), "secrets".into()]).is_ok());
        assert!(Types::check(&["Secrets".into()]).is_err());
        assert!(Types::check(&["se*ets".into()]).is_err());
    }

    #[test]
    fn tokens_the_ca_bundle_and_owned_objects_are_left_out() {
        let token = json!({"kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "t"}});
        assert!(left_out(&token, true).is_some());
        let ca = json!({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}});
        assert!(left_out(&ca, true).is_some());
        let owned = json!({"kind": "ReplicaSet", "metadata": {"name": "r",
            "ownerReferences": [{"kind": "Deployment", "name": "d", "uid": "u", "controller": true}]}});
        assert!(left_out(&owned, false).is_some());
        assert!(left_out(&owned, true).is_none());
        let plain = json!({"kind": "Secret", "type": "Opaque", "metadata": {"name": "db"}});
        assert!(left_out(&plain, false).is_none());
    }

    #[test]
    fn server_set_fields_and_status_are_stripped() {
        let mut o = json!({"kind": "Deployment", "metadata": {"name": "d", "uid": "u", "resourceVersion": "7",
            "managedFields": [], "creationTimestamp": "t", "generation": 3, "labels": {"a": "b"}},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 2}});
        strip(&mut o, false);
        assert_eq!(
            o,
            json!({"kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 2}})
        );
        let mut s = json!({"status": {"x": 1}, "metadata": {}});
        strip(&mut s, true);
        assert_eq!(s["status"]["x"], 1);
    }

    #[test]
    fn selectors_become_query_text() {
        let sel = serde_json::from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "debug", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert_eq!(selector_text(&sel).unwrap(), "app=web,!debug");
        let multi = serde_json::from_value(
            json!({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]}),
        )
        .unwrap();
        assert!(selector_text(&multi)
            .unwrap_err()
            .contains("matchExpressions[0]"));
    }
}
