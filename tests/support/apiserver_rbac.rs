//! SubjectAccessReviews answered by a simple RBAC evaluation of the Roles,
//! ClusterRoles and bindings stored in the in-memory API server: a subject
//! (a user, a group, or a service account as `system:serviceaccount:ns:name`)
//! may do a verb on a resource when a ClusterRoleBinding, or a RoleBinding
//! in the request's namespace, gives it a role with a rule matching verb,
//! API group, resource and name (`*` matching anything). No aggregation,
//! no non-resource URLs.

use serde_json::{json, Value};

use super::Inner;

pub const REVIEWS: &str = "apis/authorization.k8s.io/v1/subjectaccessreviews";
const RBAC: &str = "apis/rbac.authorization.k8s.io/v1";

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn holds(list: &Value, want: &str) -> bool {
    let l = strings(list);
    l.contains(&"*") || l.contains(&want)
}

fn rule_allows(rule: &Value, attrs: &Value) -> bool {
    let get = |k: &str| attrs[k].as_str().unwrap_or_default();
    holds(&rule["verbs"], get("verb"))
        && holds(&rule["apiGroups"], get("group"))
        && holds(&rule["resources"], get("resource"))
        && (strings(&rule["resourceNames"]).is_empty()
            || strings(&rule["resourceNames"]).contains(&get("name")))
}

fn subject_is(subject: &Value, user: &str, groups: &[&str]) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or_default();
            user == format!("system:serviceaccount:{ns}:{name}")
        }
        Some("User") => user == name,
        Some("Group") => groups.contains(&name),
        _ => false,
    }
}

/// The review with its `status` filled in.
pub(super) fn review(inner: &Inner, mut review: Value) -> Value {
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default().to_string();
    let groups: Vec<String> = strings(&spec["groups"])
        .into_iter()
        .map(String::from)
        .collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let attrs = spec["resourceAttributes"].clone();
    let ns = attrs["namespace"].as_str().unwrap_or_default();
    let get = |res: &str, ns: &str, name: &str| {
        inner
            .objects
            .get(&(format!("{RBAC}/{res}"), ns.to_string(), name.to_string()))
    };
    let bindings = inner.objects.iter().filter(|((r, bns, _), _)| {
        *r == format!("{RBAC}/clusterrolebindings")
            || (*r == format!("{RBAC}/rolebindings") && !ns.is_empty() && bns == ns)
    });
    let mut allowed = None;
    for ((_, bns, bname), binding) in bindings {
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_is(s, &user, &groups));
        if !bound {
            continue;
        }
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let role = match binding["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => get("clusterroles", "", role_name),
            _ => get("roles", bns, role_name),
        };
        let rules = role.map(|r| r["rules"].clone()).unwrap_or(Value::Null);
        if rules
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule_allows(rule, &attrs))
        {
            allowed = Some(format!("allowed by binding {bns}/{bname}"));
            break;
        }
    }
    review["status"] = json!({"allowed": allowed.is_some(), "reason": allowed.unwrap_or_default()});
    review
}
