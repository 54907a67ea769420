use super::*;
use crate::api::Tier;
use serde_json::json;

fn example() -> serde_json::Value {
    json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": ["orders"]}},
        "schedule": {"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"},
        "destinations": [
            {"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}},
            {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "backups-eu"}}
        ],
        "encryption": {"keySecretRef": {"name": "backup-keys"}},
        "objectives": {"rpo": "1h", "rto": "4h"}
    })
}

fn spec(value: serde_json::Value) -> BackupPolicySpec {
    serde_json::from_value(value).unwrap()
}

fn fields(spec: &BackupPolicySpec) -> Vec<String> {
    crate::api::error_fields(spec.validate())
}

#[test]
fn design_example_is_valid_with_defaults_filled_in() {
    let s = spec(example());
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.schedule.time_zone, "UTC");
    assert_eq!(s.retention, Retention::default());
    assert_eq!(s.encryption.compression, Compression::Zstd);
    assert_eq!(s.source.kind(), Some(SourceKind::Postgres));
    assert_eq!(s.source.summary(), "postgres/logical");
    assert_eq!(s.rpo(), Some(chrono::Duration::hours(1)));
    assert!(!s.suspend);
}

#[test]
fn serialises_back_in_camel_case() {
    let value = serde_json::to_value(spec(example())).unwrap();
    assert_eq!(
        value["source"]["postgres"]["connectionSecretRef"]["name"],
        "orders-db"
    );
    assert_eq!(value["schedule"]["timeZone"], "UTC");
    assert_eq!(value["encryption"]["keySecretRef"]["name"], "backup-keys");
}

#[test]
fn two_sources_or_none_is_an_error_on_spec_source() {
    let mut v = example();
    v["source"]["volume"] = json!({"claimName": "uploads"});
    // Two kinds.
    assert_eq!(fields(&spec(v)), ["spec.source"]);
    let mut v = example();
    v["source"] = json!({});
    assert_eq!(fields(&spec(v)), ["spec.source"]);
}

#[test]
fn invalid_cron_and_zone_name_their_fields() {
    let mut v = example();
    v["schedule"]["daily"] = json!("0 25 * * *");
    v["schedule"]["timeZone"] = json!("Mars/Olympus");
    let errors = spec(v).validate().unwrap_err();
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.schedule.timeZone", "spec.schedule.daily"]);
    assert!(errors[0].message.contains("Mars/Olympus"), "{}", errors[0]);
    assert!(
        errors[1].to_string().starts_with("spec.schedule.daily: "),
        "{}",
        errors[1]
    );
}

#[test]
fn destinations_must_exist_and_be_unique() {
    let mut v = example();
    v["destinations"] = json!([]);
    assert_eq!(fields(&spec(v)), ["spec.destinations"]);
    let mut v = example();
    v["destinations"][1]["name"] = json!("primary");
    let errors = spec(v).validate().unwrap_err();
    assert_eq!(errors[0].field, "spec.destinations[1].name");
    assert!(errors[0].message.contains("duplicate"));
}

#[test]
fn logical_needs_databases_xor_all_databases() {
    let mut v = example();
    v["source"]["postgres"]["allDatabases"] = json!(true);
    assert_eq!(fields(&spec(v.clone())), ["spec.source.postgres.databases"]);
    v["source"]["postgres"]["databases"] = json!([]);
    assert_eq!(spec(v).validate(), Ok(()));
}

#[test]
fn pitr_needs_physical() {
    let mut v = example();
    v["pointInTimeRecovery"] = json!({"enabled": true});
    assert_eq!(
        fields(&spec(v.clone())),
        ["spec.pointInTimeRecovery.enabled"]
    );
    v["source"]["postgres"] = json!({"connectionSecretRef": {"name": "db"}, "method": "physical"});
    let s = spec(v);
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.point_in_time_recovery.unwrap().max_wal_delay, "60s");
}

#[test]
fn bad_durations_and_drill_cron_name_their_fields() {
    let mut v = example();
    v["objectives"]["rpo"] = json!("an hour");
    v["verification"] = json!({"restoreDrill": {"schedule": "every monday",
                               "targetSecretRef": {"name": "scratch-db"}}});
    assert_eq!(
        fields(&spec(v)),
        [
            "spec.verification.restoreDrill.schedule",
            "spec.objectives.rpo"
        ]
    );
}

#[test]
fn verification_reads_back_by_default() {
    let mut v = example();
    v["verification"] = json!({});
    assert!(spec(v).verification.unwrap().read_back);
}

#[test]
fn unknown_enum_values_are_rejected() {
    let mut v = example();
    v["encryption"]["compression"] = json!("brotli");
    assert!(serde_json::from_value::<BackupPolicySpec>(v).is_err());
}

#[test]
fn retention_keeps_per_tier_and_manual_by_default_forever() {
    let r = Retention::default();
    assert_eq!(r.keep(Tier::Daily), Some(7));
    assert_eq!(r.keep(Tier::Monthly), Some(12));
    assert_eq!(r.keep(Tier::Manual), None);
}

#[test]
fn tier_times_pick_the_earliest() {
    let mut t = TierTimes::default();
    assert!(t.is_empty());
    t.set(Tier::Weekly, Some("2026-11-29T03:00:00Z".parse().unwrap()));
    t.set(Tier::Daily, Some("2026-11-26T02:00:00Z".parse().unwrap()));
    t.set(Tier::Manual, Some("2020-01-01T00:00:00Z".parse().unwrap()));
    assert_eq!(t.earliest(), Some("2026-11-26T02:00:00Z".parse().unwrap()));
    assert_eq!(t.get(Tier::Manual), None);
}

#[test]
fn schema_carries_enums_minimums_and_patterns() {
    let crd = serde_json::to_value(<BackupPolicy as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let p = &spec["properties"];
    assert_eq!(
        p["retention"]["properties"]["daily"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        p["encryption"]["properties"]["compression"]["enum"],
        json!(["zstd", "gzip", "none"])
    );
    assert_eq!(
        p["source"]["properties"]["postgres"]["properties"]["method"]["enum"],
        json!(["logical", "physical"])
    );
    assert!(p["schedule"]["properties"]["daily"]["pattern"].is_string());
    let required = spec["required"].as_array().unwrap();
    for field in ["source", "destinations", "encryption"] {
        assert!(required.contains(&json!(field)), "{field} not required");
    }
}

#[test]
fn fields_not_supported_yet_are_refused_naming_each() {
    // Every kind in the schema is backed up now: a bucket source passes.
    let mut v = example();
    v["source"] = json!({"bucket": {"bucket": "assets", "region": "us-east-1"}});
    assert_eq!(spec(v).validate().map_err(|e| e.len()), Ok(()));

    let mut v = example();
    v["destinations"][1]["s3"]["objectLock"] = json!({"mode": "Compliance", "days": 30});
    v["notifications"] = json!({"targets": [{"name": "ops", "events": ["runFailed", "drillFailed", "restoreFinished"],
        "slack": {"secretRef": {"name": "ops-slack"}}}]});
    v["source"]["postgres"]["includeRolePasswords"] = json!(true);
    let errors = spec(v).validate().unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "spec.source.postgres.includeRolePasswords: role passwords are not saved with the globals yet",
            "spec.destinations[1].s3.objectLock.days: 30 days is shorter than the monthly tier's retention (12 kept, 372 days): set at least 372",
        ]
    );
}

#[test]
fn object_lock_must_outlast_the_longest_retention_of_a_scheduled_tier() {
    let lock = |days: i32| json!({"mode": "Governance", "days": days});
    let mut v = example();
    v["destinations"][0]["s3"]["objectLock"] = lock(372);
    assert_eq!(spec(v.clone()).validate(), Ok(()));

    // Without the monthly tier, the weekly one (4 × 7 days) decides.
    v["schedule"] = json!({"daily": "0 2 * * *", "weekly": "0 3 * * 0"});
    v["destinations"][0]["s3"]["objectLock"] = lock(28);
    assert_eq!(spec(v.clone()).validate(), Ok(()));
    v["destinations"][0]["s3"]["objectLock"] = lock(27);
    let errors = spec(v.clone()).validate().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "spec.destinations[0].s3.objectLock.days");
    assert!(errors[0].message.contains("at least 28"), "{}", errors[0]);

    v["destinations"][0]["s3"]["objectLock"] = lock(0);
    assert!(fields(&spec(v)).contains(&"spec.destinations[0].s3.objectLock.days".to_string()));
}

/// Plain HTTP to another host is refused unless allowed; loopback and
/// https are fine (issue 13, item 4).
#[test]
fn a_plain_http_endpoint_on_another_host_must_be_allowed() {
    let mut v = example();
    v["destinations"][0]["s3"]["endpoint"] = json!("http://minio.storage:9000");
    let errors = spec(v.clone()).validate().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "spec.destinations[0].s3.endpoint");
    assert!(
        errors[0].message.contains("allowInsecureHttp"),
        "{}",
        errors[0]
    );
    v["destinations"][0]["s3"]["allowInsecureHttp"] = json!(true);
    assert_eq!(spec(v.clone()).validate(), Ok(()));
    let s = spec(v.clone());
    assert!(s.destinations[0].location("ns", "p").insecure_http);
    for fine in ["https://minio.storage:9000", "http://127.0.0.1:9000"] {
        v["destinations"][0]["s3"]["endpoint"] = json!(fine);
        v["destinations"][0]["s3"]["allowInsecureHttp"] = json!(false);
        assert_eq!(spec(v.clone()).validate(), Ok(()), "{fine}");
    }
}

#[test]
fn the_schedule_parses_into_its_tiers_naming_each_bad_field() {
    let s = spec(example());
    let schedule = s.schedule.parse().unwrap();
    assert_eq!(
        schedule.tiers().collect::<Vec<_>>(),
        [Tier::Daily, Tier::Weekly, Tier::Monthly]
    );

    let mut v = example();
    v["schedule"] = json!({
        "daily": "0 25 * * *",
        "weekly": "0 0 3 * * 0",      // six fields: seconds are not accepted
        "monthly": "0 0 31 2 *",      // 31 February
        "timeZone": "Europe/Atlantis"
    });
    let errors = spec(v).schedule.parse().unwrap_err();
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.schedule.timeZone",
            "spec.schedule.daily",
            "spec.schedule.weekly",
            "spec.schedule.monthly"
        ]
    );
    assert!(
        errors[1]
            .message
            .starts_with("invalid cron expression \"0 25 * * *\""),
        "{}",
        errors[1]
    );
    assert!(errors[3].message.contains("never fires"), "{}", errors[3]);
}

#[test]
fn retention_and_tier_times_convert_for_the_schedule() {
    let r = Retention {
        daily: -1,
        manual: Some(2),
        ..Retention::default()
    };
    let counts = r.counts();
    assert_eq!(
        (counts.daily, counts.weekly, counts.monthly, counts.manual),
        (0, 4, 12, Some(2))
    );

    let mut t = TierTimes::default();
    t.set(Tier::Weekly, Some("2026-11-29T03:00:00Z".parse().unwrap()));
    let slots = t.slots();
    assert_eq!(slots.keys().collect::<Vec<_>>(), [&Tier::Weekly]);
    assert_eq!(TierTimes::from(slots), t);
}

fn with_notifications(n: serde_json::Value) -> BackupPolicySpec {
    let mut v = example();
    v["notifications"] = n;
    spec(v)
}

#[test]
fn every_kind_of_notification_target_validates() {
    let s = with_notifications(json!({"repeatInterval": "4h", "targets": [
        {"name": "ops", "slack": {"secretRef": {"name": "ops-slack"}}},
        {"name": "audit", "events": ["runFailed", "succeeded"], "webhook": {"secretRef": {"name": "hook"}}},
        {"name": "pager", "pagerduty": {"secretRef": {"name": "pd"}, "eventsUrl": "http://pd.test/v2/enqueue"}},
        {"name": "mail", "email": {"host": "smtp.example.org", "from": "Lifeboat <lifeboat@example.org>",
            "to": ["oncall@example.org"], "secretRef": {"name": "smtp"}, "caKey": "ca.crt"}},
        {"name": "deadman", "heartbeat": {"secretRef": {"name": "hb"}}}
    ]}));
    assert_eq!(s.validate(), Ok(()));
    let n = s.notifications.as_ref().unwrap();
    assert_eq!(n.repeat(), Some(chrono::Duration::hours(4)));
    assert_eq!(n.targets[3].email.as_ref().unwrap().port, 587);
    let ops = &n.targets[0];
    assert!(ops.wants(NotificationEvent::RunFailed) && ops.wants(NotificationEvent::Recovered));
    assert!(!ops.wants(NotificationEvent::Succeeded));
    assert!(n.targets[1].wants(NotificationEvent::Succeeded));
    let deadman = &n.targets[4];
    assert!(
        deadman.wants(NotificationEvent::Succeeded) && !deadman.wants(NotificationEvent::RunFailed)
    );
}

#[test]
fn bad_notification_targets_name_their_fields() {
    let s = with_notifications(json!({"repeatInterval": "30s", "targets": [
        {"name": "ops", "slack": {"secretRef": {"name": "a"}}, "webhook": {"secretRef": {"name": "b"}}},
        {"name": "ops", "events": ["drillFailed", "restoreFinished"], "pagerduty": {"secretRef": {"name": "pd"}, "eventsUrl": "ftp://x"}},
        {"name": "Mail_1", "email": {"host": "smtp:25", "port": 0, "from": "nobody", "to": ["x@y.org", "bad"], "caKey": "ca"}},
        {"name": "hb", "events": ["runFailed"], "heartbeat": {"secretRef": {"name": "Bad_Name"}}},
        {"name": "pd2", "events": ["succeeded"], "pagerduty": {"secretRef": {"name": "pd"}}}
    ]}));
    let got: Vec<String> = s
        .validate()
        .unwrap_err()
        .iter()
        .map(|e| e.field.clone())
        .collect();
    assert_eq!(
        got,
        [
            "spec.notifications.repeatInterval",
            "spec.notifications.targets[0]",
            "spec.notifications.targets[1].name",
            "spec.notifications.targets[1].events[1]",
            "spec.notifications.targets[1].pagerduty.eventsUrl",
            "spec.notifications.targets[2].name",
            "spec.notifications.targets[2].email.host",
            "spec.notifications.targets[2].email.port",
            "spec.notifications.targets[2].email.from",
            "spec.notifications.targets[2].email.to[1]",
            "spec.notifications.targets[2].email.caKey",
            "spec.notifications.targets[3].events[0]",
            "spec.notifications.targets[3].heartbeat.secretRef.name",
            "spec.notifications.targets[4].events[0]",
        ]
    );
    let empty = with_notifications(json!({"targets": []}));
    assert_eq!(fields(&empty), ["spec.notifications.targets"]);
    // The shape before targets (pruned by the API server to {}) still reads.
    let old = with_notifications(json!({}));
    assert_eq!(fields(&old), ["spec.notifications.targets"]);
    let old_events = with_notifications(json!({"targets": [
        {"name": "ops", "events": ["Failed"], "slack": {"secretRef": {"name": "s"}}}]}));
    assert_eq!(
        fields(&old_events),
        ["spec.notifications.targets[0].events[0]"]
    );
}
