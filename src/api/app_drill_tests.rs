use super::*;
use serde_json::json;

fn spec(v: serde_json::Value) -> ApplicationDrillSpec {
    serde_json::from_value(v).unwrap()
}

fn example() -> serde_json::Value {
    json!({
        "schedule": "0 4 * * 0",
        "scratchNamespaces": ["shop-drill"],
        "serviceAccountName": "drill-runner",
        "parts": [
            {"name": "config", "policyRef": {"name": "shop-config"},
             "target": {"config": {"serviceAccountName": "drill-runner",
                                   "namespaceMapping": [{"from": "shop", "to": "shop-drill"}]}}},
            {"name": "orders", "policyRef": {"name": "orders"},
             "target": {"postgres": {"connectionSecretRef": {"name": "scratch-db"},
                                     "database": "shop_drill_orders"}}},
            {"name": "uploads", "policyRef": {"name": "uploads"}, "target": {"scratch": {}}}
        ],
        "smokeTests": [{"name": "home", "service": {"namespace": "shop-drill", "name": "web", "port": 80}}]
    })
}

#[test]
fn the_example_validates_and_its_restore_drops_the_scratch_database() {
    let s = spec(example());
    assert_eq!(s.validate("ops"), Ok(()));
    let at: DateTime<Utc> = "2026-11-29T04:00:00Z".parse().unwrap();
    let r = s.restore_spec(at);
    assert_eq!(r.point_in_time, at);
    assert!(r.maintenance.is_none());
    let db = r.part_request(1);
    assert!(db.drop_after && db.overwrite);
    assert!(!r.part_request(2).drop_after);
    assert_eq!(r.validate(), Ok(()));
}

#[test]
fn production_targets_and_unsafe_namespaces_are_refused_by_name() {
    let mut v = example();
    v["scratchNamespaces"] = json!(["ops", "kube-system"]);
    v["parts"][0]["target"]["config"]["namespaceMapping"][0]["to"] = json!("shop");
    v["parts"][1]["target"]["postgres"]
        .as_object_mut()
        .unwrap()
        .remove("database");
    v["parts"][2]["target"] = json!({"files": {"claimName": "uploads"}});
    v["schedule"] = json!("every sunday");
    let fields = crate::api::error_fields(spec(v).validate("ops"));
    assert_eq!(
        fields,
        [
            "spec.schedule",
            "spec.scratchNamespaces[0]",
            "spec.scratchNamespaces[1]",
            "spec.parts[0].target.config.namespaceMapping[0].to",
            "spec.parts[1].target.postgres.database",
            "spec.parts[2].target",
        ]
    );
}

#[test]
fn a_missing_account_is_named_once() {
    let mut v = example();
    v.as_object_mut().unwrap().remove("serviceAccountName");
    let fields = crate::api::error_fields(spec(v).validate("ops"));
    assert_eq!(fields, ["spec.serviceAccountName"]);
}

#[test]
fn a_smoke_test_may_be_a_job_which_the_drills_restore_carries() {
    let mut v = example();
    v["smokeTests"] = json!([{"name": "orders", "job": {"template": {"spec": {"containers": [
        {"name": "check", "image": "busybox", "command": ["sh", "-c", "true"]}]}}}}]);
    let d = spec(v);
    assert_eq!(d.validate("ops"), Ok(()));
    let restore = d.restore_spec(DateTime::<Utc>::UNIX_EPOCH);
    assert!(restore.smoke_tests[0].job.is_some());
    assert!(
        restore.maintenance.is_none(),
        "a drill has no maintenance mode"
    );
}
