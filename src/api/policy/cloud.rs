//! `spec.source.config.cloud`: the AWS secret stores a config backup reads
//! besides (or instead of) Kubernetes objects — Secrets Manager secrets by
//! name prefix, SSM parameters by path — with one account: a region, an
//! optional endpoint and a credentials Secret mounted into the Job as the
//! S3 destinations' are.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{check_ref_name, FieldError, S3CredentialsRef};
use crate::source::config::cloud::{Account, Kind};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudSecrets {
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Another endpoint (a VPC endpoint); https, or http to loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Secret with the access keys (same keys as an S3 destination's);
    /// none: the Job's ambient identity (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<SecretsManagerScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm: Option<SsmScope>,
}

/// The secrets whose names start with `namePrefix`, current values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsManagerScope {
    #[schemars(length(min = 1))]
    pub name_prefix: String,
}

/// The parameters under `path`, recursively, SecureStrings included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsmScope {
    #[schemars(length(min = 1))]
    pub path: String,
}

impl CloudSecrets {
    /// The stores and their scopes, in backup order.
    pub fn scopes(&self) -> Vec<(Kind, &str)> {
        let mut out = Vec::new();
        if let Some(sm) = &self.secrets_manager {
            out.push((Kind::SecretsManager, sm.name_prefix.as_str()));
        }
        if let Some(ssm) = &self.ssm {
            out.push((Kind::Ssm, ssm.path.as_str()));
        }
        out
    }

    pub(super) fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.region.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.region"),
                "name the region",
            ));
        }
        check_account(
            field,
            self.endpoint.as_deref(),
            self.credentials_secret_ref.as_ref(),
            errors,
        );
        if self.scopes().is_empty() {
            errors.push(FieldError::new(
                field,
                "set secretsManager.namePrefix, ssm.path or both",
            ));
        }
        let scopes = self.scopes().into_iter().map(|(kind, scope)| {
            let name = match kind {
                Kind::SecretsManager => "secretsManager.namePrefix",
                Kind::Ssm => "ssm.path",
            };
            (kind, name, scope)
        });
        check_scopes(field, scopes, errors);
    }
}

/// The account of the cloud secret stores, as a config source and a
/// restore target both give it: the endpoint and the credentials Secret.
pub(crate) fn check_account(
    field: &str,
    endpoint: Option<&str>,
    credentials: Option<&S3CredentialsRef>,
    errors: &mut Vec<FieldError>,
) {
    if let Some(e) = endpoint {
        check_endpoint(&format!("{field}.endpoint"), e, errors);
    }
    if let Some(c) = credentials {
        check_ref_name(
            &format!("{field}.credentialsSecretRef.name"),
            &c.name,
            errors,
        );
    }
}

/// Each store's scope — (kind, its field under `field`, the scope) —
/// checked as that kind of store names things.
pub(crate) fn check_scopes<'a>(
    field: &str,
    scopes: impl IntoIterator<Item = (Kind, &'static str, &'a str)>,
    errors: &mut Vec<FieldError>,
) {
    for (kind, name, scope) in scopes {
        if let Err(e) = kind.check_scope(scope) {
            errors.push(FieldError::new(format!("{field}.{name}"), e));
        }
    }
}

/// An endpoint of the cloud secret stores: a URL, https or http to
/// loopback only (a restore target's too).
fn check_endpoint(field: &str, endpoint: &str, errors: &mut Vec<FieldError>) {
    let problem = match endpoint.parse::<url::Url>() {
        Ok(url) => Account {
            endpoint: Some(url),
            ..Default::default()
        }
        .check_endpoint()
        .err(),
        Err(err) => Some(format!("not a URL: {err}")),
    };
    if let Some(p) = problem {
        errors.push(FieldError::new(field, p));
    }
}
