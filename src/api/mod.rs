//! The custom resources in API group `lifeboat.dev/v1alpha1`:
//! [`BackupPolicy`] (what, when, where, how long), [`BackupRun`] (one backup),
//! [`RestoreRequest`] (one recovery), [`ApplicationRestore`] (several
//! policies of one application recovered to one instant) and
//! [`ApplicationDrill`] (that rehearsed on a schedule).
//!
//! Only types and pure checks live here, no IO. The schema that the API server
//! enforces comes from these types (enums, minimums, patterns, CEL rules);
//! checks the schema cannot express (cron syntax, time zones, durations) are
//! in each spec's `validate`, whose [`FieldError`]s the controller puts into
//! status conditions. [`crds_yaml`] prints the CustomResourceDefinitions for
//! `lifeboat crds` and crds/.

pub mod app_drill;
pub mod app_restore;
pub mod conditions;
pub mod policy;
pub mod restore;
pub mod restore_config;
pub mod restore_files;
pub mod run;
pub mod user_job;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleError;

pub use app_drill::{ApplicationDrill, ApplicationDrillSpec, ApplicationDrillStatus};
pub use app_restore::{ApplicationRestore, ApplicationRestoreSpec, ApplicationRestoreStatus};
pub use policy::{BackupPolicy, BackupPolicySpec, BackupPolicyStatus};
pub use restore::{RestoreRequest, RestoreRequestSpec, RestoreRequestStatus};
pub use run::{BackupRun, BackupRunSpec, BackupRunStatus, DeletionPolicy, RunKind, RunPhase, Tier};

/// API group of every lifeboat resource.
pub const GROUP: &str = "lifeboat.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that holds a BackupRun until its backup is pruned from every destination.
pub const PRUNE_FINALIZER: &str = "lifeboat.dev/prune";

/// A problem with one field of a spec, named by its path (`spec.schedule.daily`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ScheduleError> for FieldError {
    fn from(e: ScheduleError) -> Self {
        // Display is "<field>: <problem>"; the FieldError keeps them apart.
        let text = e.to_string();
        let prefix = format!("{}: ", e.field());
        let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
        FieldError::new(e.field(), message)
    }
}

/// The end of every `validate`: `Ok` when nothing was found.
pub(crate) fn into_result(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The fields `validate` named, in order (none when it passed); for tests.
#[cfg(test)]
pub(crate) fn error_fields(checked: Result<(), Vec<FieldError>>) -> Vec<String> {
    checked
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

/// Joins errors into one line for a condition message.
pub fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A reference to another object in the same namespace (a policy, a Secret).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl LocalRef {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A Secret holding database connection settings. Key names default to
/// `host`, `port`, `user`, `password`, `sslmode` (optional key) and `database`
/// (optional key).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_key: Option<String>,
}

impl ConnectionSecretRef {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
    pub fn host_key(&self) -> &str {
        self.host_key.as_deref().unwrap_or("host")
    }
    pub fn port_key(&self) -> &str {
        self.port_key.as_deref().unwrap_or("port")
    }
    pub fn user_key(&self) -> &str {
        self.user_key.as_deref().unwrap_or("user")
    }
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or("password")
    }
    pub fn sslmode_key(&self) -> &str {
        self.sslmode_key.as_deref().unwrap_or("sslmode")
    }
    pub fn database_key(&self) -> &str {
        self.database_key.as_deref().unwrap_or("database")
    }
}

/// A Secret with S3 credentials. Absent on a destination = the pod's ambient
/// identity (IRSA, workload identity, instance role).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the access key id; default `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// Key holding the secret access key; default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
}

impl S3CredentialsRef {
    pub fn access_key_id_key(&self) -> &str {
        self.access_key_id_key
            .as_deref()
            .unwrap_or("AWS_ACCESS_KEY_ID")
    }
    pub fn secret_access_key_key(&self) -> &str {
        self.secret_access_key_key
            .as_deref()
            .unwrap_or("AWS_SECRET_ACCESS_KEY")
    }
}

/// A Secret key holding the PEM certificate authorities of a private S3
/// endpoint (cert-manager writes one as `ca.crt`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the PEM certificates; default `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl CaSecretRef {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("ca.crt")
    }
}

/// Schema pattern for durations such as `60s`, `1h30m`, `7d` (see [`parse_duration`]).
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// Parses a duration made of `<number><unit>` parts, units `ms`, `s`, `m`,
/// `h`, `d`: `60s`, `1h30m`, `7d`. Go-style, as the rest of Kubernetes writes
/// them, plus days because RPOs are often stated in days.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = chrono::Duration::zero();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => chrono::Duration::try_milliseconds(number)?,
            "s" => chrono::Duration::try_seconds(number)?,
            "m" => chrono::Duration::try_minutes(number)?,
            "h" => chrono::Duration::try_hours(number)?,
            "d" => chrono::Duration::try_days(number)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// True for an RFC 1123 label: what Kubernetes accepts as a name of most things.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// True for an RFC 1123 subdomain: what Kubernetes accepts as a Secret's name.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Checks a referenced object's name; pushes an error naming `field` when it is not one.
pub(crate) fn check_ref_name(field: &str, name: &str, errors: &mut Vec<FieldError>) {
    if !is_dns_subdomain(name) {
        errors.push(FieldError::new(
            field,
            format!("{name:?} is not a valid object name (lowercase letters, digits, '-', '.')"),
        ));
    }
}

/// The three CustomResourceDefinitions.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackupPolicy::crd(),
        BackupRun::crd(),
        RestoreRequest::crd(),
        ApplicationRestore::crd(),
        ApplicationDrill::crd(),
    ]
}

/// All three CRDs as one multi-document YAML stream, as `lifeboat crds` prints
/// it and crds/ stores it.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            // A CRD is plain data with string keys; serialising it cannot fail.
            let doc = serde_yaml::to_string(crd).expect("a CRD serialises to YAML");
            format!("---\n{doc}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn crd_json(kind: &str) -> Value {
        let crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"));
        serde_json::to_value(crd).unwrap()
    }

    fn rules(v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect_rules(v, &mut out);
        out
    }

    fn collect_rules(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(list)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        list.iter()
                            .filter_map(|r| r["rule"].as_str().map(String::from)),
                    );
                }
                map.values().for_each(|v| collect_rules(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| collect_rules(v, out)),
            _ => {}
        }
    }

    #[test]
    fn crds_yaml_holds_every_crd_and_they_parse_back() {
        let yaml = crds_yaml();
        let docs: Vec<CustomResourceDefinition> = yaml
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        let names: Vec<_> = docs
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "backuppolicies.lifeboat.dev",
                "backupruns.lifeboat.dev",
                "restorerequests.lifeboat.dev",
                "applicationrestores.lifeboat.dev",
                "applicationdrills.lifeboat.dev"
            ]
        );
    }

    #[test]
    fn every_crd_is_namespaced_with_status_short_name_and_category() {
        for (kind, short) in [
            ("BackupPolicy", "bp"),
            ("BackupRun", "br"),
            ("RestoreRequest", "rr"),
            ("ApplicationRestore", "apprestore"),
            ("ApplicationDrill", "appdrill"),
        ] {
            let crd = crd_json(kind);
            assert_eq!(crd["spec"]["group"], GROUP);
            assert_eq!(crd["spec"]["scope"], "Namespaced");
            assert_eq!(crd["spec"]["names"]["shortNames"][0], short, "{kind}");
            assert_eq!(crd["spec"]["names"]["categories"][0], "lifeboat", "{kind}");
            let version = &crd["spec"]["versions"][0];
            assert_eq!(version["name"], VERSION);
            assert!(version["subresources"]["status"].is_object(), "{kind}");
        }
    }

    #[test]
    fn printer_columns_answer_the_on_call_question() {
        let columns = |kind: &str| -> Vec<(String, String)> {
            crd_json(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["jsonPath"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let bp = columns("BackupPolicy");
        for path in [
            ".status.sourceKind",
            ".status.lastBackup.completedAt",
            ".status.nextBackup",
            r#".status.conditions[?(@.type=="Healthy")].status"#,
        ] {
            assert!(bp.iter().any(|(_, p)| p == path), "bp lacks {path}: {bp:?}");
        }
        let br = columns("BackupRun");
        for path in [
            ".spec.policyRef.name",
            ".spec.tier",
            ".status.phase",
            ".status.size",
            ".status.duration",
        ] {
            assert!(br.iter().any(|(_, p)| p == path), "br lacks {path}: {br:?}");
        }
        let rr = columns("RestoreRequest");
        for path in [
            ".spec.policyRef.name",
            ".spec.pointInTime",
            ".status.phase",
            ".status.recoveryTimeSeconds",
        ] {
            assert!(rr.iter().any(|(_, p)| p == path), "rr lacks {path}: {rr:?}");
        }
    }

    #[test]
    fn cross_field_rules_are_in_the_schema() {
        let bp = rules(&crd_json("BackupPolicy"));
        assert!(
            bp.iter()
                .any(|r| r.contains("has(self.postgres)") && r.contains("has(self.config)")),
            "{bp:?}"
        );
        assert!(
            bp.iter().any(|r| r.contains("pointInTimeRecovery")),
            "{bp:?}"
        );
        let rr = rules(&crd_json("RestoreRequest"));
        assert!(
            rr.iter()
                .any(|r| r.contains("pointInTime") && r.contains("backupId")),
            "{rr:?}"
        );
        let br = rules(&crd_json("BackupRun"));
        // Immutable but for deletionPolicy (src/api/run.rs checks the rule).
        assert!(
            br.iter()
                .any(|r| r.contains("self.policyRef == oldSelf.policyRef")),
            "{br:?}"
        );
    }

    #[test]
    fn lists_keyed_by_name_or_type_are_list_maps() {
        let bp = crd_json("BackupPolicy");
        let props = &bp["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let destinations = &props["spec"]["properties"]["destinations"];
        assert_eq!(destinations["x-kubernetes-list-type"], "map");
        assert_eq!(destinations["x-kubernetes-list-map-keys"][0], "name");
        assert_eq!(destinations["minItems"], 1);
        let conditions = &props["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
    }

    #[test]
    fn durations_parse_go_style_plus_days() {
        assert_eq!(parse_duration("60s"), Some(chrono::Duration::seconds(60)));
        assert_eq!(parse_duration("1h30m"), Some(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("7d"), Some(chrono::Duration::days(7)));
        assert_eq!(
            parse_duration("250ms"),
            Some(chrono::Duration::milliseconds(250))
        );
        for bad in ["", "1", "h", "1x", "1.5h", "-1h", "1h 30m"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_follow_rfc_1123() {
        assert!(is_dns_label("orders-db"));
        assert!(!is_dns_label("Orders"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("orders.db-1"));
        assert!(!is_dns_subdomain("orders..db"));
    }

    #[test]
    fn run_names_are_dns_labels() {
        let t = "2026-11-25T02:00:00Z".parse().unwrap();
        for (policy, label) in [
            ("a".repeat(60), "monthly"),
            (format!("{}b", "a".repeat(59)), "monthly"),
            ("db.prod".into(), "weekly"),
            ("db-prod".into(), "weekly"),
        ] {
            let name = crate::schedule::run_name(&policy, label, t);
            assert!(is_dns_label(&name), "{name}");
        }
    }

    #[test]
    fn a_schedule_error_becomes_a_field_error_naming_its_field() {
        let e = crate::schedule::parse_time_zone("spec.schedule.timeZone", "Europe/Atlantis")
            .unwrap_err();
        let fe: FieldError = e.into();
        assert_eq!(fe.field, "spec.schedule.timeZone");
        assert!(
            fe.message
                .starts_with("unknown time zone \"Europe/Atlantis\""),
            "{}",
            fe.message
        );
    }
}
