//! Who can read what (issue 11): before a config policy's backups are
//! scheduled, the controller asks the API server with SubjectAccessReviews
//! whether the policy's service account may list every resource type it
//! names, in every namespace it reads. What is missing is reported on the
//! policy (`Ready` false, reason `MissingPermission`, naming the verb, type
//! and namespace) instead of failing later in the Job. The controller
//! itself still reads no Secret: it only asks the question.

use chrono::{DateTime, Utc};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;

use super::policy::{condition_events, PolicyPlan};
use crate::api::conditions::{reasons, set_condition, types, ConditionUpdate};
use crate::api::policy::ConfigSource;
use crate::api::BackupPolicy;

/// One permission a config backup or restore needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// `list` for a backup; `create`, `get`, `update` for a restore.
    pub verb: &'static str,
    /// `None`: cluster-wide.
    pub namespace: Option<String>,
    pub group: String,
    pub resource: String,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.group.as_str(), self.resource.as_str()) {
            ("*", "*") => "every resource type".to_string(),
            (g, "*") => format!("every resource type of {g}"),
            ("", r) => r.to_string(),
            (g, r) => format!("{r}.{g}"),
        };
        let verb = self.verb;
        match &self.namespace {
            Some(ns) => write!(f, "{verb} {what} in namespace {ns}"),
            None => write!(f, "{verb} {what} in all namespaces"),
        }
    }
}

/// What `config` needs to list (pure): each named type in each namespace.
/// A plural without a group is asked for in the core group.
pub fn needs(config: &ConfigSource, policy_ns: &str) -> Vec<Need> {
    let namespaces: Vec<Option<String>> = match config.namespaces_of(policy_ns) {
        all if all.is_empty() => vec![None],
        some => some.into_iter().map(Some).collect(),
    };
    let types = group_resources(&config.resources);
    namespaces
        .iter()
        .flat_map(|ns| {
            types.iter().map(move |(group, resource)| Need {
                verb: "list",
                namespace: ns.clone(),
                group: group.clone(),
                resource: resource.clone(),
            })
        })
        .collect()
}

/// (group, resource) of each resource type pattern, as a review asks.
pub fn group_resources(patterns: &[String]) -> Vec<(String, String)> {
    patterns
        .iter()
        .map(|p| match p.as_str() {
            "*" => ("*".to_string(), "*".to_string()),
            p => match p.split_once('.') {
                Some(("*", g)) => (g.to_string(), "*".to_string()),
                Some((r, g)) => (g.to_string(), r.to_string()),
                None => (String::new(), p.to_string()),
            },
        })
        .collect()
}

/// The first permission the account lacks, if any (IO: one review each).
pub async fn missing(
    client: &kube::Client,
    policy_ns: &str,
    config: &ConfigSource,
) -> Result<Option<String>, kube::Error> {
    let account = &config.service_account_name;
    let needs = needs(config, policy_ns);
    first_missing(client, policy_ns, account, &needs, "lifeboat-config-reader").await
}

/// The first of `needs` the service account `policy_ns/account` lacks, as
/// a message that says which ClusterRole (`role`) grants it.
pub async fn first_missing(
    client: &kube::Client,
    policy_ns: &str,
    account: &str,
    needs: &[Need],
    role: &str,
) -> Result<Option<String>, kube::Error> {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let user = format!("system:serviceaccount:{policy_ns}:{account}");
    for need in needs {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.clone()),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{policy_ns}"),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: need.namespace.clone(),
                    verb: Some(need.verb.into()),
                    group: Some(need.group.clone()),
                    resource: Some(need.resource.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            return Ok(Some(format!(
                "service account {policy_ns}/{account} cannot {need}: bind the {role} ClusterRole (or a role allowing it) to it"
            )));
        }
    }
    Ok(None)
}

/// The plan with nothing scheduled and `Ready` false naming what is
/// missing (pure).
pub fn refuse(policy: &BackupPolicy, plan: &mut PolicyPlan, message: String, now: DateTime<Utc>) {
    let old = policy.status.clone().unwrap_or_default();
    let mut status = plan.status.clone().unwrap_or_else(|| old.clone());
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: types::READY,
            status: false,
            reason: reasons::MISSING_PERMISSION,
            message,
            observed_generation: policy.metadata.generation,
        },
        now,
    );
    plan.create = None;
    plan.events = condition_events(&old.conditions, &status.conditions);
    plan.status = (status != old).then_some(status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_is_asked_in_each_namespace() {
        let config: ConfigSource = serde_json::from_value(serde_json::json!({
            "namespaces": ["a", "b"], "resources": ["secrets", "deployments.apps", "*.lifeboat.dev"],
            "serviceAccountName": "backup"}))
        .unwrap();
        let n = needs(&config, "shop");
        assert_eq!(n.len(), 6);
        assert_eq!(n[1].to_string(), "list deployments.apps in namespace a");
        assert_eq!(
            n[5].to_string(),
            "list every resource type of lifeboat.dev in namespace b"
        );
        let all: ConfigSource = serde_json::from_value(serde_json::json!({
            "allNamespaces": true, "resources": ["*"], "serviceAccountName": "backup"}))
        .unwrap();
        assert_eq!(
            needs(&all, "shop")[0].to_string(),
            "list every resource type in all namespaces"
        );
        let own: ConfigSource = serde_json::from_value(serde_json::json!({
            "resources": ["secrets"], "serviceAccountName": "backup"}))
        .unwrap();
        assert_eq!(needs(&own, "shop")[0].namespace.as_deref(), Some("shop"));
    }
}
