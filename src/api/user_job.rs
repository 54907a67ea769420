//! A Job the user gives an ApplicationRestore: the maintenance switch
//! (`spec.maintenance.enterJob` / `exitJob`) or a smoke test (`job`). It is
//! a batch/v1 JobSpec, kept in the resource as JSON and checked here, not
//! by the CRD's schema: a whole PodSpec schema per field would make the
//! CRD too large to apply, and kept as JSON a malformed template fails its
//! request with a message instead of the controller's list of requests.

use std::borrow::Cow;

use k8s_openapi::api::batch::v1::JobSpec;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FieldError;

/// A batch/v1 JobSpec (`template`, `backoffLimit`, ...), as in a Job you
/// would apply yourself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobTemplate(pub Value);

impl JsonSchema for JobTemplate {
    fn schema_name() -> Cow<'static, str> {
        "JobTemplate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A batch/v1 JobSpec (template, backoffLimit, ...), run in the request's namespace; checked by the controller",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl JobTemplate {
    /// The template as a JobSpec, or every problem named under `field`.
    pub fn spec(&self, field: &str) -> Result<JobSpec, Vec<FieldError>> {
        let spec: JobSpec = serde_json::from_value(self.0.clone()).map_err(|e| {
            vec![FieldError::new(
                field,
                format!("not a batch/v1 JobSpec: {e}"),
            )]
        })?;
        let mut errors = Vec::new();
        // k8s-openapi skips fields it does not know: a misspelt one would
        // be dropped silently from the Job.
        let known = serde_json::to_value(&spec).unwrap_or_default();
        unknown_fields(&self.0, &known, field, &mut errors);
        let pod = spec.template.spec.as_ref();
        if pod.is_none_or(|p| p.containers.is_empty()) {
            errors.push(FieldError::new(
                format!("{field}.template.spec.containers"),
                "name at least one container",
            ));
        }
        if let Some(policy) = pod.and_then(|p| p.restart_policy.as_deref()) {
            if !matches!(policy, "Never" | "OnFailure") {
                errors.push(FieldError::new(
                    format!("{field}.template.spec.restartPolicy"),
                    format!("a Job's pods restart Never or OnFailure, not {policy:?}"),
                ));
            }
        }
        if spec.ttl_seconds_after_finished.is_some() {
            errors.push(FieldError::new(
                format!("{field}.ttlSecondsAfterFinished"),
                "leave it out: the Job is the record that it ran, kept until the ApplicationRestore is deleted (which deletes it)",
            ));
        }
        if spec.suspend == Some(true) {
            errors.push(FieldError::new(
                format!("{field}.suspend"),
                "a suspended Job never runs",
            ));
        }
        match errors.is_empty() {
            true => Ok(spec),
            false => Err(errors),
        }
    }
}

/// Each key of `given` that `known` (the same value read into the typed
/// JobSpec and written back) lost: a field the Job would not have.
fn unknown_fields(given: &Value, known: &Value, at: &str, out: &mut Vec<FieldError>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                let path = format!("{at}.{key}");
                match k.get(key) {
                    Some(kv) => unknown_fields(value, kv, &path, out),
                    None if value.is_null() => {}
                    None => out.push(FieldError::new(path, "not a field of a Job spec")),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_fields(gv, kv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(t: Value) -> Vec<String> {
        match JobTemplate(t).spec("spec.job") {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_job_spec_is_read_and_its_mistakes_are_named() {
        let ok = json!({"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"],
                            "resources": {"limits": {"memory": "64Mi"}}, "env": [{"name": "A", "value": "1"}]}]}}});
        assert_eq!(fields(ok), Vec::<String>::new());
        let bad = json!({"backofLimit": 1, "ttlSecondsAfterFinished": 60, "suspend": true,
            "template": {"spec": {"restartPolicy": "Always",
                "containers": [{"name": "c", "image": "busybox", "comand": ["true"]}]}}});
        assert_eq!(
            fields(bad),
            [
                "spec.job.backofLimit",
                "spec.job.template.spec.containers[0].comand",
                "spec.job.template.spec.restartPolicy",
                "spec.job.ttlSecondsAfterFinished",
                "spec.job.suspend"
            ]
        );
        assert_eq!(
            fields(json!({"template": {"spec": {"containers": []}}})),
            ["spec.job.template.spec.containers"]
        );
        let e = JobTemplate(json!({"parallelism": "two"}))
            .spec("spec.job")
            .unwrap_err();
        assert!(
            e[0].message.starts_with("not a batch/v1 JobSpec: "),
            "{e:?}"
        );
    }
}
