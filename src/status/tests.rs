use super::*;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-25T12:00:00Z";

fn policy(name: &str, objectives: serde_json::Value, status: serde_json::Value) -> BackupPolicy {
    let mut v = json!({
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": name, "namespace": "shop", "generation": 2,
                     "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "source": {"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["orders"]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "backups"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "objectives": objectives
        }
    });
    if !status.is_null() {
        v["status"] = status;
    }
    serde_json::from_value(v).unwrap()
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-25T02:00:00Z"})
}

fn good_status(completed: &str) -> serde_json::Value {
    json!({
        "observedGeneration": 2,
        "conditions": [cond("Ready", "True", "Reconciled", "the spec is valid"),
                       cond("Healthy", "True", "BackupSucceeded", "run orders-1 succeeded")],
        "lastBackup": {"run": "orders-1", "tier": "daily", "completedAt": completed,
                       "backupId": "20261125T020000.000Z-abcdef", "bytes": 1024},
        "nextBackup": "2026-11-26T02:00:00Z",
        "recoveryWindow": {"from": "2026-11-18T02:00:00Z", "to": completed},
        "lastDrill": {"run": "orders-drill-1", "completedAt": "2026-11-25T06:04:00Z", "succeeded": true,
                      "recoveryTimeSeconds": 252, "restoreRequest": "orders-drill-1"}
    })
}

#[test]
fn a_fresh_backup_within_both_objectives_is_ok() {
    let p = policy(
        "orders",
        json!({"rpo": "25h", "rto": "4h"}),
        good_status("2026-11-25T02:00:00Z"),
    );
    let s = summarize(&[p], at(NOW));
    assert_eq!(s[0].problems, vec![]);
    assert!(s[0].healthy && !s[0].rpo_breached && !s[0].rto_breached);
    assert_eq!(s[0].last_backup.as_ref().unwrap().age_seconds, 10 * 3600);
    let t = table(&s, at(NOW));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2, "{t}");
    assert!(lines[0].starts_with("POLICY"), "{t}");
    for cell in [
        "shop/orders",
        "2026-11-25 02:00Z daily",
        "10h0m/25h",
        "in 14h0m",
        "passed 5h56m ago",
        "4m12s/4h",
        "2026-11-18 02:00Z .. 2026-11-25 02:00Z",
    ] {
        assert!(lines[1].contains(cell), "{cell:?} missing: {t}");
    }
    assert!(lines[1].ends_with("OK"), "{t}");
    assert!(!t.contains("BREACHED"), "{t}");
}

#[test]
fn an_old_backup_breaches_the_rpo_even_when_the_status_says_otherwise() {
    // The controller last wrote "within objective"; the clock says no.
    let p = policy(
        "orders",
        json!({"rpo": "1h"}),
        good_status("2026-11-25T02:00:00Z"),
    );
    let s = summarize(&[p], at(NOW));
    assert!(s[0].rpo_breached && !s[0].healthy);
    assert_eq!(s[0].problems[0].kind, ProblemKind::RpoBreached);
    assert!(
        s[0].problems[0].message.contains("10h0m old") && s[0].problems[0].message.contains("1h"),
        "{:?}",
        s[0].problems
    );
    let t = table(&s, at(NOW));
    assert!(t.contains("10h0m/1h BREACHED"), "{t}");
    assert!(
        t.contains("Problems:\n  shop/orders: RPO BREACHED: the newest backup is 10h0m old"),
        "{t}"
    );
}

#[test]
fn with_wal_archiving_the_rpo_runs_from_the_last_archived_wal() {
    let mut status = good_status("2026-11-25T02:00:00Z");
    status["walArchive"] = json!({"healthy": true, "lastArchivedAt": "2026-11-25T11:50:00Z"});
    let s = summarize(
        &[policy("orders", json!({"rpo": "1h"}), status.clone())],
        at(NOW),
    );
    assert!(!s[0].rpo_breached, "{:?}", s[0].problems);
    // Archiving stopped two hours ago: breached, and the message says from what.
    status["walArchive"]["lastArchivedAt"] = json!("2026-11-25T10:00:00Z");
    let s = summarize(&[policy("orders", json!({"rpo": "1h"}), status)], at(NOW));
    assert!(s[0].rpo_breached);
    assert!(
        s[0].problems[0]
            .message
            .contains("the newest archived WAL is 2h0m old"),
        "{:?}",
        s[0].problems
    );
}

#[test]
fn exactly_at_the_rpo_is_not_a_breach() {
    let p = policy(
        "orders",
        json!({"rpo": "10h"}),
        good_status("2026-11-25T02:00:00Z"),
    );
    assert!(!summarize(&[p], at(NOW))[0].rpo_breached);
}

#[test]
fn no_backup_since_creation_longer_than_the_rpo_is_a_breach() {
    let status = json!({"observedGeneration": 2,
        "conditions": [cond("Healthy", "False", "NoBackupYet", "no backup has finished yet")]});
    let p = policy("orders", json!({"rpo": "1h"}), status);
    let s = summarize(&[p], at(NOW));
    let kinds: Vec<ProblemKind> = s[0].problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::NoBackupYet, ProblemKind::RpoBreached]);
    let t = table(&s, at(NOW));
    assert!(t.contains("never") && t.contains("-/1h BREACHED"), "{t}");
}

#[test]
fn failed_backup_drill_and_slow_drill_are_named() {
    let mut status = good_status("2026-11-25T02:00:00Z");
    status["conditions"][1] = cond(
        "Healthy",
        "False",
        "BackupFailed",
        "run orders-2 failed: primary: access denied",
    );
    status["lastDrill"] = json!({"run": "orders-drill-2", "completedAt": "2026-11-25T11:00:00Z",
        "succeeded": false, "recoveryTimeSeconds": 18000,
        "message": "verify: object backups/x/orders.lbk: authentication failed"});
    let p = policy("orders", json!({"rpo": "25h", "rto": "4h"}), status);
    let s = summarize(&[p], at(NOW));
    let kinds: Vec<ProblemKind> = s[0].problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            ProblemKind::BackupFailed,
            ProblemKind::DrillFailed,
            ProblemKind::RtoBreached
        ]
    );
    let t = table(&s, at(NOW));
    assert!(t.contains("FAILED 1h0m ago"), "{t}");
    assert!(t.contains("5h0m/4h BREACHED"), "{t}");
    assert!(
        t.contains("BACKUP FAILED, DRILL FAILED, RTO BREACHED"),
        "{t}"
    );
    assert!(
        t.contains("access denied") && t.contains("orders.lbk"),
        "{t}"
    );
}

#[test]
fn missing_or_stale_status_says_the_controller_is_behind() {
    let none = policy("a", json!({}), serde_json::Value::Null);
    let mut old = good_status("2026-11-25T11:30:00Z");
    old["observedGeneration"] = json!(1);
    let stale = policy("b", json!({}), old);
    let s = summarize(&[stale, none], at(NOW));
    assert_eq!(s[0].name, "a", "sorted by name");
    assert_eq!(s[0].problems[0].kind, ProblemKind::NoStatus);
    assert_eq!(s[1].problems[0].kind, ProblemKind::StatusStale);
    assert!(s[1].problems[0].message.contains("generation 1"));
}

#[test]
fn not_ready_and_suspended_show_in_health_and_next() {
    let mut status = good_status("2026-11-25T11:30:00Z");
    status["conditions"][0] = cond(
        "Ready",
        "False",
        "InvalidSpec",
        "spec.schedule.daily: bad cron",
    );
    let mut p = policy("orders", json!({}), status);
    p.spec.suspend = true;
    let s = summarize(&[p], at(NOW));
    assert_eq!(s[0].next_backup, None);
    let t = table(&s, at(NOW));
    assert!(t.contains("suspended") && t.contains("NOT READY"), "{t}");
    assert!(
        t.contains("InvalidSpec: spec.schedule.daily: bad cron"),
        "{t}"
    );
}

#[test]
fn an_overdue_slot_says_so() {
    let mut status = good_status("2026-11-25T11:30:00Z");
    status["nextBackup"] = json!("2026-11-25T11:45:00Z");
    let s = summarize(&[policy("orders", json!({}), status)], at(NOW));
    assert!(table(&s, at(NOW)).contains("overdue 15m0s"));
}

#[test]
fn json_is_camel_case_with_the_measurements() {
    let p = policy(
        "orders",
        json!({"rpo": "1h", "rto": "4h"}),
        good_status("2026-11-25T02:00:00Z"),
    );
    let v = serde_json::to_value(summarize(&[p], at(NOW))).unwrap();
    assert_eq!(v[0]["lastBackup"]["ageSeconds"], 36000);
    assert_eq!(v[0]["rpoBreached"], true);
    assert_eq!(v[0]["lastDrill"]["recoveryTimeSeconds"], 252);
    assert_eq!(v[0]["rto"], "4h");
    assert_eq!(v[0]["problems"][0]["kind"], "RpoBreached");
    assert_eq!(v[0]["recoveryWindow"]["from"], "2026-11-18T02:00:00Z");
}

#[test]
fn no_policies_says_so() {
    assert_eq!(table(&[], at(NOW)), "no BackupPolicies found\n");
}

#[test]
fn a_file_backup_says_what_it_read_and_stored() {
    let mut status = good_status("2026-11-25T02:00:00Z");
    status["lastBackup"]["files"] = json!({"filesNew": 2, "filesChanged": 1, "filesUnchanged": 40,
        "bytesTotal": 1 << 20, "bytesRead": 4096, "bytesDeduplicated": 1024, "bytesStored": 3072,
        "skipped": 0});
    let p = policy("uploads", json!({"rpo": "25h"}), status);
    let s = summarize(&[p], at(NOW));
    assert_eq!(
        s[0].last_backup
            .as_ref()
            .unwrap()
            .files
            .as_ref()
            .unwrap()
            .files_changed,
        1
    );
    let t = table(&s, at(NOW));
    assert!(
        t.contains("shop/uploads: files 2 new, 1 changed, 40 unchanged; 4.0 KiB read, 1.0 KiB deduplicated, 3.0 KiB stored"),
        "{t}"
    );
    let json = serde_json::to_value(&s[0]).unwrap();
    assert_eq!(json["lastBackup"]["files"]["filesNew"], 2);
    // A bucket policy's figures are objects.
    let mut status = status_with_files();
    status["sourceKind"] = json!("bucket");
    let s = summarize(&[policy("media", json!({"rpo": "25h"}), status)], at(NOW));
    let t = table(&s, at(NOW));
    assert!(
        t.contains("shop/media: objects 2 new, 1 changed, 40 unchanged"),
        "{t}"
    );
}

fn status_with_files() -> serde_json::Value {
    let mut status = good_status("2026-11-25T02:00:00Z");
    status["lastBackup"]["files"] = json!({"filesNew": 2, "filesChanged": 1, "filesUnchanged": 40,
        "bytesTotal": 1 << 20, "bytesRead": 4096, "bytesDeduplicated": 1024, "bytesStored": 3072,
        "skipped": 0});
    status
}
