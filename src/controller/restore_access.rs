//! Who can restore what: before a RestoreRequest of a config backup gets a
//! Job, the controller asks the API server (SubjectAccessReviews) whether
//! the target's service account may write what the restore writes — read
//! each target namespace (the restore looks it up), create each resource
//! type in it, and get and update it when existing objects are updated
//! (`existing: Update` replaces them). The first missing permission fails
//! the request naming verb, type and namespace; no Job is created.

use super::access::{first_missing, group_resources, Need};
use crate::api::restore_config::{ConfigTarget, ExistingObjects};
use crate::api::{BackupPolicy, RestoreRequest};

/// What restoring `target` of a backup of `policy` (in `ns`) needs (pure).
/// Types and namespaces are the target's selection, else the policy's;
/// namespaces as mapped. No namespace (all of them): asked cluster-wide.
pub fn needs(target: &ConfigTarget, policy: &BackupPolicy, ns: &str) -> Vec<Need> {
    let Some(source) = policy.spec.source.config.as_ref() else {
        return Vec::new();
    };
    if !target.kubernetes() {
        return Vec::new();
    }
    let patterns = match target.resources.is_empty() {
        true => &source.resources,
        false => &target.resources,
    };
    let from = match target.namespaces.is_empty() {
        true => source.namespaces_of(ns),
        false => target.namespaces.clone(),
    };
    let namespaces: Vec<Option<String>> = match from.is_empty() {
        true => vec![None],
        false => from
            .iter()
            .map(|n| Some(target.mapped(n).to_string()))
            .collect(),
    };
    let mut verbs = vec!["create"];
    if target.existing == ExistingObjects::Update {
        verbs.extend(["get", "update"]);
    }
    let types = group_resources(patterns);
    let mut out = Vec::new();
    for namespace in namespaces {
        out.push(Need {
            verb: "get",
            namespace: namespace.clone(),
            group: String::new(),
            resource: "namespaces".into(),
        });
        for (group, resource) in &types {
            for verb in &verbs {
                out.push(Need {
                    verb,
                    namespace: namespace.clone(),
                    group: group.clone(),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

/// The first permission the request's service account lacks, if any (IO).
pub async fn denied(
    client: &kube::Client,
    request: &RestoreRequest,
    policy: &BackupPolicy,
    ns: &str,
) -> Result<Option<String>, kube::Error> {
    let Some(target) = request.spec.target.config.as_ref() else {
        return Ok(None);
    };
    let needs = needs(target, policy, ns);
    let account = &target.service_account_name;
    first_missing(client, ns, account, &needs, "lifeboat-config-restorer").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(config: serde_json::Value) -> BackupPolicy {
        let spec = json!({"source": {"config": config},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "b"}}],
            "encryption": {"keySecretRef": {"name": "keys"}}});
        BackupPolicy::new("cluster", serde_json::from_value(spec).unwrap())
    }

    fn target(v: serde_json::Value) -> ConfigTarget {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_type_is_asked_in_each_mapped_namespace_with_update_when_updating() {
        let p = policy(
            json!({"namespaces": ["shop", "web"], "resources": ["secrets", "deployments.apps"],
            "serviceAccountName": "reader"}),
        );
        let t = target(json!({"serviceAccountName": "restorer",
            "namespaceMapping": [{"from": "shop", "to": "shop-copy"}]}));
        let n: Vec<String> = needs(&t, &p, "ops")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            n,
            [
                "get namespaces in namespace shop-copy",
                "create secrets in namespace shop-copy",
                "create deployments.apps in namespace shop-copy",
                "get namespaces in namespace web",
                "create secrets in namespace web",
                "create deployments.apps in namespace web",
            ]
        );
        let t = target(json!({"serviceAccountName": "r", "existing": "Update",
            "namespaces": ["web"], "resources": ["configmaps"]}));
        let n: Vec<String> = needs(&t, &p, "ops")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            n[1..],
            [
                "create configmaps in namespace web",
                "get configmaps in namespace web",
                "update configmaps in namespace web",
            ]
        );
    }

    #[test]
    fn all_namespaces_is_asked_cluster_wide_and_cloud_alone_needs_nothing() {
        let p =
            policy(json!({"allNamespaces": true, "resources": ["*"], "serviceAccountName": "r"}));
        let t = target(json!({"serviceAccountName": "r"}));
        assert_eq!(
            needs(&t, &p, "ops")[1].to_string(),
            "create every resource type in all namespaces"
        );
        let t = target(json!({"serviceAccountName": "r", "cloud": {"ssm": {}}}));
        assert!(needs(&t, &p, "ops").is_empty());
    }
}
