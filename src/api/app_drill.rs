//! ApplicationDrill: an application restore rehearsed on a schedule. Each
//! slot the controller (src/controller/app_drill.rs) creates an
//! ApplicationRestore of `parts` to that instant — configuration into
//! scratch namespaces (namespaceMapping), databases into scratch databases
//! dropped after their checks, files and buckets into the restore Job's
//! scratch space — measures its RTO, then deletes the scratch namespaces.
//! Production is never touched: targets that would write over it are
//! refused, and there is no maintenance mode.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::app_restore::{ApplicationPart, ApplicationRestoreSpec, SmokeTest};
use super::{check_ref_name, into_result, is_dns_label, FieldError};
use crate::schedule::{parse_time_zone, CronSchedule};

/// Longest drill name: its restores are named `<drill>-<yyyymmddhhmm>`,
/// which must fit an ApplicationRestore name.
pub const MAX_DRILL_NAME: usize = super::app_restore::MAX_NAME - 13;

// Each printcolumn(...) repeats name/type_/json_path; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "ApplicationDrill",
    namespaced,
    status = "ApplicationDrillStatus",
    shortname = "appdrill",
    category = "lifeboat",
    doc = "An application restore rehearsed on a schedule into scratch space, its RTO measured",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last Drill",
        type_ = "date",
        json_path = ".status.lastDrill.completedAt"
    ),
    printcolumn(
        name = "Passed",
        type_ = "boolean",
        json_path = ".status.lastDrill.succeeded"
    ),
    printcolumn(
        name = "RTO Seconds",
        type_ = "integer",
        json_path = ".status.lastDrill.recoveryTimeSeconds"
    ),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextDrillAt")
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDrillSpec {
    /// Cron expression (5 fields) of the drills, in timeZone.
    #[schemars(length(min = 1, max = 100))]
    pub schedule: String,
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Namespaces the configuration parts restore into (every
    /// namespaceMapping `to`). None may exist when a drill starts; each is
    /// deleted when it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub scratch_namespaces: Vec<String>,
    /// As ApplicationRestore's parts, into scratch targets only.
    #[schemars(length(min = 1, max = 16))]
    pub parts: Vec<ApplicationPart>,
    /// Checked after the parts restored: Services in the scratch
    /// namespaces, or Jobs (run in this namespace, not mapped: see
    /// docs/DESIGN.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub smoke_tests: Vec<SmokeTest>,
    /// Must be allowed to delete the scratch namespaces (and to read the
    /// smoke tests' Services, or create their Jobs here); asked before
    /// every drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Stop drilling without deleting the drill.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDrillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<AppDrillResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The newest finished drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppDrillResult {
    /// Its ApplicationRestore.
    pub name: String,
    pub point_in_time: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub succeeded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The scratch namespaces are gone again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleaned_up: bool,
}

impl ApplicationDrillSpec {
    /// The ApplicationRestore of the slot `at`: database parts dropped after
    /// their checks, no maintenance.
    pub fn restore_spec(&self, at: DateTime<Utc>) -> ApplicationRestoreSpec {
        let parts = self
            .parts
            .iter()
            .map(|p| ApplicationPart {
                drop_after: p.target.postgres.is_some(),
                overwrite: p.target.postgres.is_some(),
                ..p.clone()
            })
            .collect();
        ApplicationRestoreSpec {
            point_in_time: at,
            parts,
            maintenance: None,
            smoke_tests: self.smoke_tests.clone(),
            service_account_name: self.service_account_name.clone(),
            dry_run: false,
        }
    }

    pub fn cron(&self) -> Result<CronSchedule, FieldError> {
        let zone = parse_time_zone("spec.timeZone", &self.time_zone)?;
        Ok(CronSchedule::parse("spec.schedule", &self.schedule, zone)?)
    }

    /// Checks what the schema cannot, naming each field: every target is
    /// scratch space (production is never written by a drill).
    pub fn validate(&self, namespace: &str) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(e) = self.cron() {
            errors.push(e);
        }
        for (i, ns) in self.scratch_namespaces.iter().enumerate() {
            let at = format!("spec.scratchNamespaces[{i}]");
            if !is_dns_label(ns) {
                errors.push(FieldError::new(
                    at,
                    format!("{ns:?} is not a namespace name"),
                ));
            } else if ns == namespace || ns.starts_with("kube-") || ns == "default" {
                errors.push(FieldError::new(
                    at,
                    format!("{ns:?} cannot be a scratch namespace: each drill deletes it"),
                ));
            }
        }
        for (i, p) in self.parts.iter().enumerate() {
            let at = format!("spec.parts[{i}].target");
            let t = &p.target;
            if let Some(c) = &t.config {
                if c.namespace_mapping.is_empty() {
                    errors.push(FieldError::new(
                        format!("{at}.config.namespaceMapping"),
                        "a drill restores configuration into its scratch namespaces: map every namespace",
                    ));
                }
                for (j, m) in c.namespace_mapping.iter().enumerate() {
                    if !self.scratch_namespaces.contains(&m.to) {
                        errors.push(FieldError::new(
                            format!("{at}.config.namespaceMapping[{j}].to"),
                            format!("{:?} is not one of spec.scratchNamespaces", m.to),
                        ));
                    }
                }
                if c.cloud.is_some() {
                    errors.push(FieldError::new(
                        format!("{at}.config.cloud"),
                        "a drill does not write cloud secrets; the config policy's own drill looks them up",
                    ));
                }
            }
            match &t.postgres {
                Some(pg) if pg.database.is_none() => errors.push(FieldError::new(
                    format!("{at}.postgres.database"),
                    "name the scratch database the drill creates and drops",
                )),
                _ => {}
            }
            if t.volume.is_some() || t.files.is_some() || t.bucket.is_some() {
                errors.push(FieldError::new(
                    at.clone(),
                    "a drill writes only scratch targets: target.scratch for volume and bucket policies, target.scratch.dataDirectory for physical ones, target.postgres with a scratch database, target.config mapped into scratch namespaces",
                ));
            }
        }
        let needs_account = !self.scratch_namespaces.is_empty() || !self.smoke_tests.is_empty();
        match &self.service_account_name {
            None if needs_account => errors.push(FieldError::new(
                "spec.serviceAccountName",
                "required with scratchNamespaces or smokeTests: the controller deletes and reads only what this account may",
            )),
            Some(sa) => check_ref_name("spec.serviceAccountName", sa, &mut errors),
            None => {}
        }
        if let Err(found) = self.restore_spec(DateTime::<Utc>::UNIX_EPOCH).validate() {
            errors.extend(found);
        }
        // The restore's own checks may name a field again (serviceAccountName).
        let mut seen = std::collections::BTreeSet::new();
        errors.retain(|e| seen.insert(e.field.clone()));
        into_result(errors)
    }
}

#[cfg(test)]
#[path = "app_drill_tests.rs"]
mod tests;
