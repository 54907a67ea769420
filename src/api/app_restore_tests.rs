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
    assert_eq!(s.smoke_tests[0].expect_status, 200);
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

#[test]
fn the_schema_holds_the_immutability_rule_and_the_part_kinds() {
    let crd = serde_json::to_value(<ApplicationRestore as kube::CustomResourceExt>::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let rules = schema["properties"]["spec"]["x-kubernetes-validations"].to_string();
    assert!(rules.contains("self == oldSelf"), "{rules}");
    let part = &schema["properties"]["status"]["properties"]["plan"]["items"]["properties"];
    assert_eq!(part["kind"]["enum"].as_array().unwrap().len(), 3);
}
