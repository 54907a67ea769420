//! `spec.target.config` of a RestoreRequest: a config backup's Kubernetes
//! objects (and cloud secrets) back into the cluster, as `lifeboat restore
//! --config` takes them — the same selection, namespace mapping and
//! handling of existing objects — run by a Job as `serviceAccountName`
//! (bind the chart's `lifeboat-config-restorer` ClusterRole to it; the
//! controller checks it may create what the restore writes before any Job).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy::cloud::{check_account, check_scopes};
use super::policy::RestoreDrill;
use super::restore::RestoreRequestSpec;
use super::{is_dns_label, is_dns_subdomain, FieldError, S3CredentialsRef};
use crate::source::config::cloud::Kind;
use crate::source::config::select::{selector_text, Types};

const FIELD: &str = "spec.target.config";

/// Which objects of a config backup, where, and what to do with existing
/// ones. Empty selection fields take everything the backup holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigTarget {
    /// Only these resource types (`secrets`, `deployments.apps`,
    /// `*.lifeboat.dev`, `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Only objects of these namespaces of the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only these objects: `NAME` or `NAMESPACE/NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Only objects with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Restore a namespace of the backup under another name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_mapping: Vec<NamespaceMapping>,
    /// An object that already exists: leave it (Skip), replace it with the
    /// backup's (Update), or stop the restore (Fail).
    #[serde(default)]
    pub existing: ExistingObjects,
    /// The account the restore Job runs as, in the request's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: String,
    /// Restore the backup's cloud secrets too. With it, Kubernetes objects
    /// are restored only when a selection field (resources, namespaces,
    /// names, labelSelector, namespaceMapping) is set, as with the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudRestoreTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapping {
    #[schemars(length(min = 1, max = 63))]
    pub from: String,
    #[schemars(length(min = 1, max = 63))]
    pub to: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExistingObjects {
    #[default]
    Skip,
    Update,
    Fail,
}

impl ExistingObjects {
    /// The CLI's `--existing` value.
    pub fn arg(self) -> &'static str {
        match self {
            ExistingObjects::Skip => "skip",
            ExistingObjects::Update => "update",
            ExistingObjects::Fail => "fail",
        }
    }
}

/// The cloud secret stores of the backup, restored into the same account
/// or another: a region (absent = the backup's), an endpoint, credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudRestoreTarget {
    /// Region to restore into; absent = the region backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Another endpoint (a VPC endpoint); https, or http to loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Secret with the access keys (same keys as an S3 destination's),
    /// mounted as files; none: the Job's ambient identity (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    /// Restore the backup's Secrets Manager secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<SecretsManagerTarget>,
    /// Restore the backup's SSM parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm: Option<SsmTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsManagerTarget {
    /// Under this prefix instead of the backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsmTarget {
    /// Under this path instead of the backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
}

impl CloudRestoreTarget {
    /// The stores restored, with the new scope when one is given.
    pub fn stores(&self) -> Vec<(Kind, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(sm) = &self.secrets_manager {
            out.push((Kind::SecretsManager, sm.to_prefix.as_deref()));
        }
        if let Some(ssm) = &self.ssm {
            out.push((Kind::Ssm, ssm.to_path.as_deref()));
        }
        out
    }

    fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.region.as_deref() == Some("") {
            errors.push(FieldError::new(
                format!("{field}.region"),
                "empty; name the region or leave it out for the backup's",
            ));
        }
        check_account(
            field,
            self.endpoint.as_deref(),
            self.credentials_secret_ref.as_ref(),
            errors,
        );
        if self.stores().is_empty() {
            errors.push(FieldError::new(
                field,
                "set secretsManager, ssm or both (the stores to restore)",
            ));
        }
        let scopes = self.stores().into_iter().filter_map(|(kind, to)| {
            let name = match kind {
                Kind::SecretsManager => "secretsManager.toPrefix",
                Kind::Ssm => "ssm.toPath",
            };
            Some((kind, name, to?))
        });
        check_scopes(field, scopes, errors);
    }
}

impl ConfigTarget {
    /// Whether Kubernetes objects are restored: always without cloud; with
    /// it, only when objects are selected too (the CLI's rule).
    pub fn kubernetes(&self) -> bool {
        let selects = !(self.resources.is_empty()
            && self.namespaces.is_empty()
            && self.names.is_empty()
            && self.label_selector.is_none()
            && self.namespace_mapping.is_empty());
        self.cloud.is_none() || selects
    }

    /// The label selector as the CLI takes it (validate checked it converts).
    pub fn selector(&self) -> Option<String> {
        let text = selector_text(self.label_selector.as_ref()?).ok()?;
        (!text.is_empty()).then_some(text)
    }

    /// Where a namespace of the backup is restored.
    pub fn mapped<'a>(&'a self, ns: &'a str) -> &'a str {
        self.namespace_mapping
            .iter()
            .find(|m| m.from == ns)
            .map_or(ns, |m| m.to.as_str())
    }
}

/// Checks `spec.target.config` and what of the rest of the spec does not
/// apply to a config restore, naming each field.
pub fn validate(spec: &RestoreRequestSpec, c: &ConfigTarget, errors: &mut Vec<FieldError>) {
    let mut push = |field: String, message: String| errors.push(FieldError::new(field, message));
    if let Err(e) = Types::check(&c.resources) {
        push(format!("{FIELD}.resources"), e);
    }
    for (i, ns) in c.namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            push(
                format!("{FIELD}.namespaces[{i}]"),
                format!("{ns:?} is not a namespace name"),
            );
        }
    }
    for (i, n) in c.names.iter().enumerate() {
        let ok = match n.split_once('/') {
            Some((ns, name)) => is_dns_label(ns) && is_dns_subdomain(name),
            None => is_dns_subdomain(n),
        };
        if !ok {
            push(
                format!("{FIELD}.names[{i}]"),
                format!("{n:?} is not NAME or NAMESPACE/NAME"),
            );
        }
    }
    if let Some(Err(e)) = c.label_selector.as_ref().map(selector_text) {
        push(format!("{FIELD}.labelSelector"), e);
    }
    for (i, m) in c.namespace_mapping.iter().enumerate() {
        for (side, ns) in [("from", &m.from), ("to", &m.to)] {
            if !is_dns_label(ns) {
                push(
                    format!("{FIELD}.namespaceMapping[{i}].{side}"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        if c.namespace_mapping[..i].iter().any(|o| o.from == m.from) {
            push(
                format!("{FIELD}.namespaceMapping[{i}].from"),
                format!("{:?} is mapped twice", m.from),
            );
        }
    }
    if !is_dns_subdomain(&c.service_account_name) {
        push(
            format!("{FIELD}.serviceAccountName"),
            format!("{:?} is not a service account name", c.service_account_name),
        );
    }
    if let Some(cloud) = &c.cloud {
        cloud.validate(&format!("{FIELD}.cloud"), errors);
    }
    // What a database restore takes and a config restore would ignore.
    let not_config = [
        (
            "spec.checks",
            !spec.checks.is_empty(),
            "checks are SQL run after a database restore; a config restore has none",
        ),
        (
            "spec.overwrite",
            spec.overwrite,
            "a config restore says what to do with existing objects in target.config.existing",
        ),
        (
            "spec.dropAfter",
            spec.drop_after,
            "a config restore has no scratch database to drop",
        ),
    ];
    for (field, set, message) in not_config {
        if set {
            errors.push(FieldError::new(field, message));
        }
    }
}

/// A config policy's `verification.restoreDrill`: a server-side dry run
/// as `serviceAccountName`, so no scratch server and no SQL checks.
pub fn validate_drill(drill: &RestoreDrill, errors: &mut Vec<FieldError>) {
    let field = "spec.verification.restoreDrill";
    let mut push = |name: &str, message: &str| {
        errors.push(FieldError::new(format!("{field}.{name}"), message))
    };
    if drill.target_secret_ref.is_some() {
        push(
            "targetSecretRef",
            "a config drill restores into no database: remove it",
        );
    }
    if !drill.checks.is_empty() {
        push(
            "checks",
            "a config drill is checked by the API server's dry run: remove the SQL checks",
        );
    }
    match &drill.service_account_name {
        None => push(
            "serviceAccountName",
            "name the account the drill runs as (bound to lifeboat-config-restorer)",
        ),
        Some(sa) if !is_dns_subdomain(sa) => push(
            "serviceAccountName",
            &format!("{sa:?} is not a service account name"),
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(target: serde_json::Value) -> RestoreRequestSpec {
        serde_json::from_value(
            json!({"policyRef": {"name": "cluster"}, "target": {"config": target}}),
        )
        .unwrap()
    }

    fn fields(s: &RestoreRequestSpec) -> Vec<String> {
        crate::api::error_fields(s.validate())
    }

    #[test]
    fn a_full_config_target_parses_and_validates() {
        let s = spec(json!({
            "resources": ["secrets", "deployments.apps"], "namespaces": ["shop"],
            "names": ["shop/db", "web"], "labelSelector": {"matchLabels": {"app": "shop"}},
            "namespaceMapping": [{"from": "shop", "to": "shop-copy"}],
            "existing": "Update", "serviceAccountName": "restorer",
            "cloud": {"region": "eu-west-1", "credentialsSecretRef": {"name": "aws"},
                      "secretsManager": {"toPrefix": "dr/"}, "ssm": {}}}));
        assert_eq!(s.validate(), Ok(()));
        let c = s.target.config.as_ref().unwrap();
        assert_eq!(c.existing, ExistingObjects::Update);
        assert_eq!(c.selector().as_deref(), Some("app=shop"));
        assert_eq!(c.mapped("shop"), "shop-copy");
        assert!(c.kubernetes());
        assert_eq!(
            c.cloud.as_ref().unwrap().stores(),
            [(Kind::SecretsManager, Some("dr/")), (Kind::Ssm, None)]
        );
    }

    #[test]
    fn existing_defaults_to_skip_and_cloud_alone_restores_no_object() {
        let s = spec(json!({"serviceAccountName": "r", "cloud": {"ssm": {"toPath": "/dr"}}}));
        assert_eq!(s.validate(), Ok(()));
        let c = s.target.config.unwrap();
        assert_eq!(c.existing, ExistingObjects::Skip);
        assert!(!c.kubernetes());
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut s = spec(json!({
            "resources": ["Secrets!"], "namespaces": ["Shop"], "names": ["a/b/c"],
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]},
            "namespaceMapping": [{"from": "shop", "to": "Bad_NS"}, {"from": "shop", "to": "x"}],
            "serviceAccountName": "",
            "cloud": {"region": "", "endpoint": "http://example.com",
                      "credentialsSecretRef": {"name": "A B"}, "ssm": {"toPath": "no-slash"}}}));
        s.checks = vec!["select 1".into()];
        s.overwrite = true;
        s.drop_after = true;
        assert_eq!(
            fields(&s),
            [
                "spec.target.config.resources",
                "spec.target.config.namespaces[0]",
                "spec.target.config.names[0]",
                "spec.target.config.labelSelector",
                "spec.target.config.namespaceMapping[0].to",
                "spec.target.config.namespaceMapping[1].from",
                "spec.target.config.serviceAccountName",
                "spec.target.config.cloud.region",
                "spec.target.config.cloud.endpoint",
                "spec.target.config.cloud.credentialsSecretRef.name",
                "spec.target.config.cloud.ssm.toPath",
                "spec.checks",
                "spec.overwrite",
                "spec.dropAfter",
            ]
        );
        let empty_cloud = spec(json!({"serviceAccountName": "r", "cloud": {}}));
        assert_eq!(fields(&empty_cloud), ["spec.target.config.cloud"]);
    }

    #[test]
    fn config_with_another_target_is_refused_naming_the_target() {
        let mut s = spec(json!({"serviceAccountName": "r"}));
        s.target.postgres = Some(Default::default());
        assert_eq!(fields(&s), ["spec.target"]);
    }

    #[test]
    fn the_schema_lists_the_ways_of_existing_objects() {
        // The one-target rule is checked with the other kinds' (restore_files_tests).
        let crd =
            serde_json::to_value(<super::super::RestoreRequest as kube::CustomResourceExt>::crd())
                .unwrap();
        let target = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["target"];
        assert_eq!(
            target["properties"]["config"]["properties"]["existing"]["enum"],
            json!(["Skip", "Update", "Fail"])
        );
    }
}
