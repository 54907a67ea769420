//! Where a policy writes its backups: named S3 destinations, and their checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{check_ref_name, is_dns_label, FieldError, S3CredentialsRef};

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
    /// Path-style addressing, which most S3-compatible servers need.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock retention set on every object written.
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
        if let Some(creds) = &s3.credentials_secret_ref {
            check_ref_name(
                &format!("{field}.s3.credentialsSecretRef.name"),
                &creds.name,
                errors,
            );
        }
        if s3.object_lock.is_some() {
            errors.push(FieldError::new(
                format!("{field}.s3.objectLock"),
                "S3 Object Lock is not supported yet",
            ));
        }
    }
}
