//! The exposition: what is recorded shows up, what is gone is removed.

use super::*;

#[test]
fn outcomes_show_up_in_the_exposition() {
    let m = Metrics::default();
    let at: DateTime<Utc> = "2026-11-25T02:05:00Z".parse().unwrap();
    m.record_outcome(
        "shop",
        "orders",
        Tier::Daily,
        &Outcome {
            succeeded: true,
            seconds: Some(42.0),
            bytes: Some(1234),
            completed_at: at,
            files: None,
        },
    );
    m.record_outcome(
        "shop",
        "orders",
        Tier::Weekly,
        &Outcome {
            succeeded: false,
            seconds: None,
            bytes: None,
            completed_at: at,
            files: None,
        },
    );
    m.reconcile_error("backuprun", &Error::MissingNamespace("x".into()));
    drop(m.reconcile_timer("backuppolicy"));
    let text = m.encode();
    assert!(text.contains(
        r#"lifeboat_last_success_timestamp_seconds{namespace="shop",policy="orders",tier="daily"} 1795572300.0"#
    ), "{text}");
    assert!(text.contains(
        r#"lifeboat_backup_size_bytes{namespace="shop",policy="orders",tier="daily"} 1234"#
    ));
    assert!(text.contains(
        r#"lifeboat_backup_failures_total{namespace="shop",policy="orders",tier="weekly"} 1"#
    ));
    assert!(text.contains(
        r#"lifeboat_reconcile_errors_total{controller="backuprun",error="missing_namespace"} 1"#
    ));
    assert!(
        text.contains(r#"lifeboat_reconcile_duration_seconds_count{controller="backuppolicy"} 1"#)
    );
}

#[test]
fn counters_start_at_zero_and_objectives_are_exported() {
    let m = Metrics::default();
    m.touch_backup_failures("shop", "orders", Tier::Monthly);
    m.record_rto_objective("shop", "orders", 14400.0);
    let text = m.encode();
    assert!(
        text.contains(
            r#"lifeboat_backup_failures_total{namespace="shop",policy="orders",tier="monthly"} 0"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"lifeboat_rto_objective_seconds{namespace="shop",policy="orders"} 14400.0"#
        ),
        "{text}"
    );
}

/// Every metric the chart's README lists — and tests/helm.rs checks that
/// the alerts and the dashboard use only listed ones — is one this
/// controller registers.
#[test]
fn every_metric_the_chart_uses_is_registered() {
    let readme = include_str!("../../../charts/lifeboat/README.md");
    let section = readme
        .split("## Metrics the controller must export")
        .nth(1)
        .expect("the README lists the metrics");
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `lifeboat_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(listed.len() >= 10, "{listed:?}");
    // One event of every kind the controller records.
    let m = Metrics::default();
    everything(&m, "orders");
    let text = m.encode();
    for name in listed {
        assert!(
            text.contains(&format!("\nlifeboat_{name}")),
            "lifeboat_{name} is listed in charts/lifeboat/README.md but not registered:\n{text}"
        );
    }
}

/// Every series a policy can have, for `policy`.
fn everything(m: &Metrics, policy: &str) {
    let at: DateTime<Utc> = "2026-11-25T02:05:00Z".parse().unwrap();
    for tier in Tier::SCHEDULED.into_iter().chain([Tier::Manual]) {
        let outcome = Outcome {
            succeeded: true,
            seconds: Some(42.0),
            bytes: Some(1234),
            completed_at: at,
            files: Some(Default::default()),
        };
        m.record_outcome("shop", policy, tier, &outcome);
        m.touch_backup_failures("shop", policy, tier);
    }
    m.record_rpo_objective("shop", policy, 3600.0);
    m.record_rto_objective("shop", policy, 14400.0);
    m.record_objective("shop", policy, false);
    m.touch_drill_failures("shop", policy);
    m.record_last_drill_success("shop", policy, at);
    m.record_archiver_up("shop", policy, false);
    m.record_wal_archive(
        "shop",
        policy,
        &WalArchive {
            healthy: true,
            last_segment: None,
            last_archived_at: Some(at),
            lag_seconds: Some(1),
            message: None,
        },
    );
    m.record_restore(
        "shop",
        policy,
        &crate::controller::restore::RestoreOutcome {
            succeeded: true,
            dry_run: false,
            drill: false,
            recovery_time_seconds: Some(300),
        },
    );
}

/// The exposition's sample lines that name `policy`.
fn series_of(text: &str, policy: &str) -> Vec<String> {
    let label = format!("policy=\"{policy}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_string)
        .collect()
}

#[test]
fn removed_tiers_and_objectives_lose_their_series() {
    let m = Metrics::default();
    everything(&m, "orders");
    m.retain(
        "shop",
        "orders",
        &Exported {
            tiers: vec![Tier::Daily, Tier::Manual],
            rpo: true,
            rto: false,
            drills: false,
            wal: false,
        },
    );
    let series = series_of(&m.encode(), "orders");
    for gone in [
        "tier=\"weekly\"",
        "tier=\"monthly\"",
        "lifeboat_rto_objective_seconds",
        "lifeboat_drill_failures_total",
        "lifeboat_last_drill_success_timestamp_seconds",
        "lifeboat_wal_archive_lag_seconds",
        "lifeboat_wal_last_archived_timestamp_seconds",
        "lifeboat_wal_archiver_up",
    ] {
        assert!(
            !series.iter().any(|l| l.contains(gone)),
            "{gone} is still exported: {series:#?}"
        );
    }
    for kept in [
        r#"lifeboat_last_success_timestamp_seconds{namespace="shop",policy="orders",tier="daily"}"#,
        r#"lifeboat_backup_failures_total{namespace="shop",policy="orders",tier="manual"}"#,
        r#"lifeboat_rpo_objective_seconds{namespace="shop",policy="orders"}"#,
        r#"lifeboat_objective_breached{namespace="shop",policy="orders"}"#,
    ] {
        assert!(
            series.iter().any(|l| l.starts_with(kept)),
            "{kept} is gone: {series:#?}"
        );
    }
}

#[test]
fn retain_prunes_again_only_after_a_change_or_a_recorded_series() {
    let m = Metrics::default();
    let daily = Exported {
        tiers: vec![Tier::Daily, Tier::Manual],
        ..Default::default()
    };
    let weekly_lag = |m: &Metrics| {
        let series = series_of(&m.encode(), "orders");
        let weekly = series.iter().any(|l| l.contains("tier=\"weekly\""));
        let lag = series.iter().any(|l| l.contains("wal_archive_lag"));
        (weekly, lag)
    };
    everything(&m, "orders");
    assert!(m.retain("shop", "orders", &daily));
    assert_eq!(weekly_lag(&m), (false, false));
    // Nothing recorded since, the same keep: nothing to do.
    assert!(!m.retain("shop", "orders", &daily));
    // A run of a tier the schedule dropped finishes, an archiver reports:
    // the next retain prunes them again.
    everything(&m, "orders");
    assert_eq!(weekly_lag(&m), (true, true));
    assert!(m.retain("shop", "orders", &daily));
    assert_eq!(weekly_lag(&m), (false, false));
    // A changed keep prunes too.
    assert!(m.retain("shop", "orders", &Exported::default()));
}

#[test]
fn a_forgotten_policy_has_no_series_left_and_others_keep_theirs() {
    let m = Metrics::default();
    everything(&m, "orders");
    everything(&m, "ledger");
    assert_eq!(
        m.known_policies(),
        BTreeSet::from([
            ("shop".to_string(), "ledger".to_string()),
            ("shop".to_string(), "orders".to_string())
        ])
    );
    let before = series_of(&m.encode(), "ledger");
    assert!(before.len() > 20, "{before:#?}");
    m.forget_policy("shop", "orders");
    let text = m.encode();
    assert_eq!(series_of(&text, "orders"), Vec::<String>::new());
    assert_eq!(series_of(&text, "ledger"), before);
    assert_eq!(
        m.known_policies(),
        BTreeSet::from([("shop".to_string(), "ledger".to_string())])
    );
}

#[test]
fn the_archivers_health_is_exported() {
    let m = Metrics::default();
    m.record_archiver_up("shop", "ledger", true);
    assert!(m
        .encode()
        .contains(r#"lifeboat_wal_archiver_up{namespace="shop",policy="ledger"} 1"#));
    m.record_archiver_up("shop", "ledger", false);
    assert!(m
        .encode()
        .contains(r#"lifeboat_wal_archiver_up{namespace="shop",policy="ledger"} 0"#));
}

#[test]
fn a_file_or_bucket_backup_exports_its_entries_and_bytes() {
    let m = Metrics::default();
    let at: DateTime<Utc> = "2026-11-25T02:05:00Z".parse().unwrap();
    let files = crate::api::run::FileCounts {
        files_new: 3,
        files_changed: 1,
        files_unchanged: 20000,
        bytes_total: 9000,
        bytes_read: 700,
        bytes_deduplicated: 200,
        bytes_stored: 1000,
        skipped: 0,
    };
    let outcome = Outcome {
        succeeded: true,
        seconds: Some(1.0),
        bytes: Some(10),
        completed_at: at,
        files: Some(files),
    };
    m.record_outcome("shop", "uploads", Tier::Daily, &outcome);
    let text = m.encode();
    for line in [
        r#"lifeboat_backup_entries{namespace="shop",policy="uploads",tier="daily",state="new"} 3"#,
        r#"lifeboat_backup_entries{namespace="shop",policy="uploads",tier="daily",state="changed"} 1"#,
        r#"lifeboat_backup_entries{namespace="shop",policy="uploads",tier="daily",state="unchanged"} 20000"#,
        r#"lifeboat_backup_entry_bytes{namespace="shop",policy="uploads",tier="daily",state="read"} 700"#,
        r#"lifeboat_backup_entry_bytes{namespace="shop",policy="uploads",tier="daily",state="deduplicated"} 200"#,
        r#"lifeboat_backup_entry_bytes{namespace="shop",policy="uploads",tier="daily",state="stored"} 1000"#,
        r#"lifeboat_backup_entry_bytes{namespace="shop",policy="uploads",tier="daily",state="total"} 9000"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // A database backup has none.
    assert!(!series_of(&text, "orders")
        .iter()
        .any(|l| l.contains("entr")));
}
