use super::*;
use serde_json::json;

fn spec(v: serde_json::Value) -> ApplicationRestoreSpec {
    serde_json::from_value(v).unwrap()
}

fn example() -> serde_json::Value {
    json!({
        "pointInTime": "2026-11-25T14:05:00Z",
        "serviceAccountName": "shop-restorer",
        "parts": [
            {"name": "config", "policyRef": {"name": "shop-config"},
             "target": {"config": {"serviceAccountName": "shop-restorer"}}},
            {"name": "orders", "policyRef": {"name": "orders"},
             "target": {"volume": {"claimName": "orders-data"}}},
            {"name": "uploads", "policyRef": {"name": "uploads"},
             "target": {"files": {"claimName": "uploads"}}}
        ],
        "maintenance": {"scaleToZero": [{"kind": "Deployment", "namespace": "shop", "name": "web"}]},
        "smokeTests": [{"name": "home", "service": {"namespace": "shop", "name": "web", "port": 80},
                        "path": "/healthz", "expectBody": "ok"}]
    })
}

#[test]
fn the_example_validates_with_its_defaults() {
    let s = spec(example());
    assert_eq!(s.validate(), Ok(()));
    let kinds: Vec<PartKind> = s.parts.iter().map(ApplicationPart::kind).collect();
    assert_eq!(
        kinds,
        [PartKind::Configuration, PartKind::Database, PartKind::Files]
    );
    assert_eq!(s.smoke_tests[0].expect_status(), 200);
    assert_eq!(s.smoke_tests[0].timeout_seconds, 60);
    assert_eq!(s.maintenance.as_ref().unwrap().ready_timeout_seconds, 300);
    let child = s.part_request(1);
    assert_eq!(child.point_in_time, s.point_in_time.into());
    assert_eq!(child.policy_ref.name, "orders");
}

#[test]
fn bad_parts_are_named_under_their_index() {
    let mut v = example();
    v["parts"][1]["target"] = json!({});
    v["parts"][2]["name"] = json!("config");
    v["parts"][2]["from"] = json!("DR EU");
    let fields = crate::api::error_fields(spec(v).validate());
    assert_eq!(
        fields,
        [
            "spec.parts[1].target",
            "spec.parts[2].name",
            "spec.parts[2].from"
        ]
    );
}

#[test]
fn drop_after_on_files_a_bad_path_and_a_missing_account_are_refused() {
    let mut v = example();
    v["parts"][2]["dropAfter"] = json!(true);
    v["smokeTests"][0]["path"] = json!("healthz");
    v.as_object_mut().unwrap().remove("serviceAccountName");
    let fields = crate::api::error_fields(spec(v).validate());
    assert_eq!(
        fields,
        [
            "spec.parts[2].dropAfter",
            "spec.smokeTests[0].path",
            "spec.serviceAccountName"
        ]
    );
}

fn a_job() -> serde_json::Value {
    json!({"template": {"spec": {"containers": [
        {"name": "check", "image": "busybox", "command": ["sh", "-c", "true"]}]}}})
}

#[test]
fn a_smoke_test_is_a_service_or_a_job_never_both_nor_neither() {
    let mut v = example();
    v["smokeTests"] = json!([
        {"name": "both", "service": {"namespace": "shop", "name": "web", "port": 80}, "job": a_job()},
        {"name": "neither"},
        {"name": "orders", "job": a_job(), "path": "/", "expectBody": "ok"},
        {"name": "typo", "job": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox", "comand": ["true"]}]}}}}
    ]);
    let errors = spec(v).validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.smokeTests[0]",
            "spec.smokeTests[1]",
            "spec.smokeTests[2].path",
            "spec.smokeTests[2].expectBody",
            "spec.smokeTests[3].job.template.spec.containers[0].comand"
        ]
    );
    assert_eq!(
        errors[0].message,
        "give either service (an HTTP request) or job, not both"
    );
    assert!(errors[1].message.starts_with("give service"), "{errors:?}");

    let mut v = example();
    v["smokeTests"] = json!([{"name": "orders", "job": a_job(), "timeoutSeconds": 120}]);
    v["maintenance"] = json!({"enterJob": a_job(), "exitJob": a_job(), "jobTimeoutSeconds": 60});
    assert_eq!(spec(v).validate(), Ok(()));
}

#[test]
fn maintenance_needs_workloads_or_an_enter_job_and_an_exit_job_its_enter_job() {
    let mut v = example();
    v["maintenance"] = json!({"exitJob": a_job(), "jobTimeoutSeconds": 60});
    let fields = crate::api::error_fields(spec(v).validate());
    assert_eq!(
        fields,
        [
            "spec.maintenance",
            "spec.maintenance.exitJob",
            "spec.maintenance.jobTimeoutSeconds"
        ]
    );
    let mut v = example();
    v["maintenance"]["enterJob"] = json!({"template": {"spec": {"restartPolicy": "Always",
        "containers": [{"name": "c", "image": "busybox"}]}}});
    let fields = crate::api::error_fields(spec(v).validate());
    assert_eq!(
        fields,
        ["spec.maintenance.enterJob.template.spec.restartPolicy"]
    );
}

#[test]
fn the_schema_holds_the_immutability_rule_and_the_part_kinds() {
    let crd = serde_json::to_value(<ApplicationRestore as kube::CustomResourceExt>::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let rules = schema["properties"]["spec"]["x-kubernetes-validations"].to_string();
    assert!(rules.contains("self == oldSelf"), "{rules}");
    let part = &schema["properties"]["status"]["properties"]["plan"]["items"]["properties"];
    assert_eq!(part["kind"]["enum"].as_array().unwrap().len(), 3);
    // A Job template is kept as given (its PodSpec schema would outgrow the CRD).
    let spec = &schema["properties"]["spec"]["properties"];
    let test = &spec["smokeTests"]["items"];
    let rules = test["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("has(self.service) != has(self.job)"),
        "{rules}"
    );
    let job = &test["properties"]["job"];
    assert_eq!(job["x-kubernetes-preserve-unknown-fields"], true, "{job}");
    let enter = &spec["maintenance"]["properties"]["enterJob"];
    assert_eq!(enter["type"], "object", "{enter}");
}
