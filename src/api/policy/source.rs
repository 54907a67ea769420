//! What a policy backs up: exactly one kind of source. PostgreSQL (logical
//! or physical), Kubernetes objects (`config`), the files on a volume
//! ([`super::volume`]) and the objects of a bucket ([`super::bucket`]).
//! A kind added to the schema before it works is refused by `validate`
//! ([`SourceKind::is_supported`]) until then.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::bucket::BucketSource;
pub use super::volume::VolumeSource;
use crate::api::{check_ref_name, ConnectionSecretRef, FieldError};

/// What is backed up: exactly one of the source kinds.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "[has(self.postgres), has(self.volume), has(self.bucket), has(self.config)].filter(x, x).size() == 1"
).message("set exactly one of postgres, volume, bucket, config"))]
#[serde(rename_all = "camelCase")]
// Boxed: the controller caches every policy, and an inline Option of each
// kind would make every cached policy as large as all four kinds together.
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Box<PostgresSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Box<VolumeSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Box<BucketSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Box<ConfigSource>>,
}

/// The kind of a [`SourceSpec`], for display and dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Postgres,
    Volume,
    Bucket,
    Config,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Volume => "volume",
            SourceKind::Bucket => "bucket",
            SourceKind::Config => "config",
        })
    }
}

impl SourceKind {
    /// Whether this version backs the kind up; the others are refused by
    /// `validate` rather than accepted and ignored.
    pub fn is_supported(self) -> bool {
        // Bucket: restored by RestoreRequests; its backup Job refuses it
        // naming spec.source.bucket until that Job is built.
        matches!(
            self,
            SourceKind::Postgres | SourceKind::Config | SourceKind::Volume | SourceKind::Bucket
        )
    }
}

impl SourceSpec {
    /// The kinds that are set (exactly one in a valid spec).
    fn kinds(&self) -> Vec<SourceKind> {
        [
            self.postgres.as_ref().map(|_| SourceKind::Postgres),
            self.volume.as_ref().map(|_| SourceKind::Volume),
            self.bucket.as_ref().map(|_| SourceKind::Bucket),
            self.config.as_ref().map(|_| SourceKind::Config),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The one kind that is set; `None` when zero or several are.
    pub fn kind(&self) -> Option<SourceKind> {
        match self.kinds()[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// A PostgreSQL source backed up with base backups (and WAL).
    pub fn is_physical(&self) -> bool {
        self.postgres
            .as_ref()
            .is_some_and(|pg| pg.method == PostgresMethod::Physical)
    }

    /// Short text for the `Source` printer column: `postgres/physical`, `volume`.
    pub fn summary(&self) -> String {
        match (self.kind(), &self.postgres) {
            (Some(SourceKind::Postgres), Some(pg)) => format!("postgres/{}", pg.method),
            // `config/objects+secretsmanager+ssm` when it reads cloud stores.
            (Some(SourceKind::Config), _) => match &self.config {
                Some(c) if c.cloud.is_some() => {
                    let mut parts: Vec<&str> = Vec::new();
                    if !c.resources.is_empty() {
                        parts.push("objects");
                    }
                    let cloud = c.cloud.as_ref().map(|c| c.scopes()).unwrap_or_default();
                    parts.extend(cloud.iter().map(|(k, _)| k.as_str()));
                    format!("config/{}", parts.join("+"))
                }
                _ => "config".to_string(),
            },
            (Some(kind), _) => kind.to_string(),
            (None, _) => "invalid".to_string(),
        }
    }

    pub(super) fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.kind().is_none() {
            errors.push(FieldError::new(
                "spec.source",
                "set exactly one of postgres, volume, bucket, config",
            ));
        }
        for kind in self.kinds() {
            if !kind.is_supported() {
                errors.push(FieldError::new(
                    format!("spec.source.{kind}"),
                    format!("{kind} sources are not supported yet"),
                ));
            }
        }
        if let Some(pg) = &self.postgres {
            check_ref_name(
                "spec.source.postgres.connectionSecretRef.name",
                &pg.connection_secret_ref.name,
                errors,
            );
            let named = !pg.databases.is_empty();
            match pg.method {
                PostgresMethod::Logical if named == pg.all_databases => errors
                    .push(FieldError::new(
                    "spec.source.postgres.databases",
                    "a logical backup names its databases or sets allDatabases: true (one of them)",
                )),
                PostgresMethod::Physical if named => errors.push(FieldError::new(
                    "spec.source.postgres.databases",
                    "a physical backup copies the whole server; remove databases",
                )),
                _ => {}
            }
            if pg.include_role_passwords {
                // Saying "backed up" while leaving out what was asked for is worse than failing.
                errors.push(FieldError::new(
                    "spec.source.postgres.includeRolePasswords",
                    "role passwords are not saved with the globals yet",
                ));
            }
        }
        if let Some(volume) = &self.volume {
            volume.validate(errors);
        }
        if let Some(bucket) = &self.bucket {
            bucket.validate(errors);
        }
        if let Some(config) = &self.config {
            config.validate(errors);
        }
    }
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "self.method != 'logical' || ((has(self.databases) && size(self.databases) > 0) != (has(self.allDatabases) && self.allDatabases))"
).message("a logical backup names its databases or sets allDatabases: true (one of them)"))]
#[x_kube(validation = Rule::new(
    "self.method != 'physical' || !has(self.databases) || size(self.databases) == 0"
).message("a physical backup copies the whole server; remove databases"))]
#[serde(rename_all = "camelCase")]
pub struct PostgresSource {
    /// Secret with host, port, user, password[, sslmode].
    pub connection_secret_ref: ConnectionSecretRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// Back up every database of the server (logical method).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_databases: bool,
    #[serde(default)]
    pub method: PostgresMethod,
    /// Include role passwords in the globals saved with a logical backup
    /// (not supported yet: a policy that sets it is not Ready).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_role_passwords: bool,
}

/// `logical`: pg_dump per database plus globals. `physical`: base backup plus
/// WAL, which point-in-time recovery needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostgresMethod {
    #[default]
    Logical,
    Physical,
}

impl fmt::Display for PostgresMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostgresMethod::Logical => "logical",
            PostgresMethod::Physical => "physical",
        })
    }
}

/// Cluster configuration: the Kubernetes objects of the chosen resource
/// types, listed by a Job that runs as `serviceAccountName` (bind the
/// chart's `lifeboat-config-reader` ClusterRole to it; the controller
/// checks it can list what is asked before it schedules a backup).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSource {
    /// Namespaces to back up; empty (and allNamespaces unset) = the policy's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Every namespace, and the cluster-scoped objects of the chosen types.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// Resource types: `secrets`, `configmaps`, `deployments.apps`,
    /// `*.lifeboat.dev`, `*`. Events, pods, leases and endpoints(lices) are
    /// left out of wildcards unless named. Empty only with `cloud`: then
    /// no Kubernetes object is read.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Resource types to leave out (same forms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_resources: Vec<String>,
    /// Only objects with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Also objects a controller owns (ReplicaSets of Deployments, …).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_owned: bool,
    /// Keep each object's status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_status: bool,
    /// The service account the backup Job runs as, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: String,
    /// AWS Secrets Manager and SSM Parameter Store, in the same backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<super::cloud::CloudSecrets>,
}

impl ConfigSource {
    /// The namespaces the backup reads: none for all, else the named ones
    /// or the policy's own.
    pub fn namespaces_of(&self, policy_ns: &str) -> Vec<String> {
        match (self.all_namespaces, self.namespaces.is_empty()) {
            (true, _) => Vec::new(),
            (false, true) => vec![policy_ns.to_string()],
            (false, false) => self.namespaces.clone(),
        }
    }

    pub(super) fn validate(&self, errors: &mut Vec<FieldError>) {
        use crate::source::config::select::{selector_text, Types};
        let field = "spec.source.config";
        for (name, patterns) in [
            ("resources", &self.resources),
            ("excludeResources", &self.exclude_resources),
        ] {
            if let Err(e) = Types::check(patterns) {
                errors.push(FieldError::new(format!("{field}.{name}"), e));
            }
        }
        if self.resources.is_empty() && self.cloud.is_none() {
            errors.push(FieldError::new(
                format!("{field}.resources"),
                "name at least one resource type, e.g. secrets or configmaps (or set cloud)",
            ));
        }
        if let Some(cloud) = &self.cloud {
            cloud.validate(&format!("{field}.cloud"), errors);
        }
        if self.all_namespaces && !self.namespaces.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.namespaces"),
                "set namespaces or allNamespaces, not both",
            ));
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            check_ref_name(&format!("{field}.namespaces[{i}]"), ns, errors);
        }
        if let Some(sel) = &self.label_selector {
            if let Err(e) = selector_text(sel) {
                errors.push(FieldError::new(format!("{field}.labelSelector"), e));
            }
        }
        check_ref_name(
            &format!("{field}.serviceAccountName"),
            &self.service_account_name,
            errors,
        );
    }
}
