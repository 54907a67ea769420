use super::*;
use crate::schedule::tests::{at, DEFAULT_RETENTION};

/// A finished backup run of `tier`, completed at `done`; `ok`: it succeeded
/// (and then holds a backup).
fn backup(name: &str, tier: Tier, ok: bool, done: &str) -> RunRecord {
    RunRecord {
        name: name.to_string(),
        tier,
        drill: false,
        finished: true,
        succeeded: ok,
        completed_at: Some(at(done)),
        backup_id: ok.then(|| format!("id-{name}")),
    }
}

/// `n` finished runs of `tier` named `{prefix}1`, `{prefix}2`, …, completed
/// one a day from `first` on.
fn daily_runs(prefix: &str, tier: Tier, ok: bool, n: i64, first: &str) -> Vec<RunRecord> {
    (1..=n)
        .map(|d| {
            let mut run = backup(&format!("{prefix}{d}"), tier, ok, first);
            run.completed_at = Some(at(first) + chrono::Duration::days(d - 1));
            run
        })
        .collect()
}

fn names(expired: &[Expired]) -> Vec<&str> {
    expired.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn retention_keeps_newest_n_per_tier_and_reports_backup_ids() {
    let mut runs = daily_runs("d", Tier::Daily, true, 9, "2026-01-01T02:10:00Z");
    runs.push(backup("w1", Tier::Weekly, true, "2026-01-04T03:10:00Z"));
    let expired = expired_runs(&runs, &DEFAULT_RETENTION);
    assert_eq!(names(&expired), ["d2", "d1"]);
    assert_eq!(expired[0].backup_id.as_deref(), Some("id-d2"));
    assert_eq!(
        expired[0].reason,
        ExpiryReason::Retention {
            tier: Tier::Daily,
            keep: 7
        }
    );
}

#[test]
fn the_newest_success_survives_retention_zero() {
    let mut runs = daily_runs("d", Tier::Daily, true, 2, "2026-01-01T02:10:00Z");
    runs.push(backup("d3", Tier::Daily, false, "2026-01-03T02:10:00Z"));
    let none = RetentionCounts {
        daily: 0,
        weekly: 0,
        monthly: 0,
        manual: Some(0),
    };
    assert_eq!(names(&expired_runs(&runs, &none)), ["d1"]);
}

#[test]
fn runs_in_progress_and_undated_runs_are_never_deleted() {
    let running = RunRecord {
        finished: false,
        succeeded: false,
        completed_at: None,
        backup_id: None,
        ..backup("d9", Tier::Daily, true, "2026-01-09T02:10:00Z")
    };
    let mut undated = backup("d0", Tier::Daily, true, "2026-01-01T00:00:00Z");
    undated.completed_at = None;
    let pending = RunRecord {
        name: "d10".into(),
        ..running.clone()
    };
    let mut runs = vec![running, pending, undated];
    runs.extend(daily_runs(
        "d",
        Tier::Daily,
        true,
        2,
        "2026-01-01T02:10:00Z",
    ));
    let one = RetentionCounts {
        daily: 1,
        ..DEFAULT_RETENTION
    };
    assert_eq!(names(&expired_runs(&runs, &one)), ["d1"]);
}

#[test]
fn failures_and_drills_keep_the_newest_three_and_manual_runs_stay() {
    let mut runs = daily_runs("f", Tier::Daily, false, 5, "2026-01-01T02:10:00Z");
    for mut drill in daily_runs("x", Tier::Manual, true, 4, "2026-01-01T06:00:00Z") {
        drill.drill = true;
        drill.backup_id = None;
        runs.push(drill);
    }
    runs.extend(daily_runs(
        "m",
        Tier::Manual,
        true,
        9,
        "2026-02-01T12:00:00Z",
    ));
    let expired = expired_runs(&runs, &DEFAULT_RETENTION);
    assert_eq!(names(&expired), ["f2", "f1", "x1"]);
    assert_eq!(expired[0].reason, ExpiryReason::OldFailure);
    assert_eq!(expired[2].reason, ExpiryReason::OldDrill);
}

#[test]
fn the_longest_retention_is_the_scheduled_tier_that_keeps_longest() {
    // 7 daily, 4 weekly (28 days), 12 monthly (372 days).
    let r = DEFAULT_RETENTION;
    assert_eq!(
        r.longest_days(Tier::SCHEDULED),
        Some((Tier::Monthly, 12 * 31))
    );
    assert_eq!(
        r.longest_days([Tier::Daily, Tier::Weekly]),
        Some((Tier::Weekly, 28))
    );
    assert_eq!(r.longest_days([Tier::Daily]), Some((Tier::Daily, 7)));
    // Manual runs have no period; no scheduled tier, no minimum.
    assert_eq!(r.longest_days([Tier::Manual]), None);
    assert_eq!(r.longest_days([]), None);
}
