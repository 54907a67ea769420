//! Where a policy writes its backups: named S3 destinations, and their checks.

use crate::location::{self, S3Location};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{check_ref_name, is_dns_label, CaSecretRef, FieldError, S3CredentialsRef};

/// One place every backup is written to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Unique within the policy; RestoreRequests name it in `from`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    pub s3: S3Destination,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Endpoint URL for S3-compatible stores; absent = AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[schemars(length(min = 1))]
    pub region: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Absent = the pod's ambient identity (IRSA, workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
    /// e.g. `STANDARD_IA`, `GLACIER_IR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Path-style addressing (the bucket in the path) even on AWS; with a
    /// custom `endpoint` it is always used, as most S3-compatible servers need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,
    /// Allow an `http://` endpoint on another host (refused otherwise:
    /// anyone on the network could drop writes or serve older copies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    /// Trust only these certificate authorities for the https `endpoint`
    /// (a private S3 such as MinIO), instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock retention set on every object written (data parts,
/// manifests, WAL): `days` from the write, at least the longest retention of
/// the policy's tiers. The bucket must have been created with Object Lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    #[schemars(range(min = 1))]
    pub days: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObjectLockMode {
    Governance,
    Compliance,
}

impl ObjectLock {
    /// The retention as the location carries it (call on a validated spec:
    /// days below 1 are refused there).
    pub fn retention(&self) -> location::ObjectLock {
        location::ObjectLock {
            mode: match self.mode {
                ObjectLockMode::Governance => location::LockMode::Governance,
                ObjectLockMode::Compliance => location::LockMode::Compliance,
            },
            days: self.days.max(1) as u32,
        }
    }
}

impl Destination {
    /// Checks what the schema cannot; `field` is the destination's path,
    /// `spec.destinations[0]`.
    pub(super) fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if !is_dns_label(&self.name) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!(
                    "{:?} is not a valid name (lowercase letters, digits, '-')",
                    self.name
                ),
            ));
        }
        let s3 = &self.s3;
        if s3.bucket.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.s3.bucket"),
                "bucket is required",
            ));
        }
        if s3.region.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.s3.region"),
                "region is required",
            ));
        }
        if let Some(e) = &s3.endpoint {
            match url::Url::parse(e) {
                Err(_) => errors.push(FieldError::new(
                    format!("{field}.s3.endpoint"),
                    format!("{e:?} is not a URL like https://minio.example:9000"),
                )),
                Ok(endpoint) => {
                    let loc = S3Location {
                        endpoint: Some(endpoint),
                        insecure_http: s3.allow_insecure_http,
                        ..Default::default()
                    };
                    if let Err(problem) = loc.check_transport() {
                        errors.push(FieldError::new(
                            format!("{field}.s3.endpoint"),
                            format!(
                                "{problem}, or set allowInsecureHttp: true on a network you trust"
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(creds) = &s3.credentials_secret_ref {
            check_ref_name(
                &format!("{field}.s3.credentialsSecretRef.name"),
                &creds.name,
                errors,
            );
        }
        if let Some(ca) = &s3.ca_secret_ref {
            check_ref_name(&format!("{field}.s3.caSecretRef.name"), &ca.name, errors);
            if ca.key().is_empty() {
                errors.push(FieldError::new(
                    format!("{field}.s3.caSecretRef.key"),
                    "must not be empty (default ca.crt)",
                ));
            }
            let https = s3
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("https://"));
            if !https {
                errors.push(FieldError::new(
                    format!("{field}.s3.caSecretRef"),
                    "needs an https:// endpoint: the certificates are trusted for that endpoint only",
                ));
            }
        }
        // How long, against the policy's retention: BackupPolicySpec::validate.
        if let Some(lock) = &s3.object_lock {
            if lock.days < 1 {
                errors.push(FieldError::new(
                    format!("{field}.s3.objectLock.days"),
                    format!("must be 1 or more, not {}", lock.days),
                ));
            }
        }
    }
}

impl Destination {
    /// Where this destination keeps the backups of `namespace/policy`:
    /// `<prefix>/<namespace>/<policy>` in its bucket. No credentials: where a
    /// pod finds them is the Job builder's business. Call on a validated spec
    /// (an endpoint that is not a URL is refused by validation).
    pub fn location(&self, namespace: &str, policy: &str) -> S3Location {
        S3Location {
            bucket: self.s3.bucket.clone(),
            prefix: String::new(),
            region: Some(self.s3.region.clone()),
            endpoint: self.s3.endpoint.as_deref().and_then(|e| e.parse().ok()),
            storage_class: self.s3.storage_class.clone(),
            credentials: None,
            // false: the default (path style with a custom endpoint, virtual
            // hosts on AWS); true forces it.
            path_style: self.s3.force_path_style.then_some(true),
            insecure_http: self.s3.allow_insecure_http,
            ca_file: None,
            lock: self.s3.object_lock.as_ref().map(ObjectLock::retention),
        }
        .join(self.s3.prefix.as_deref().unwrap_or(""))
        .join(&format!("{namespace}/{policy}"))
    }
}
