//! Test helpers for the schedule's modules, and the 400-day simulation of
//! schedule and retention together.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::*;

pub(super) fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A schedule of `tiers` (cron strings) read in `zone`.
pub(super) fn schedule(zone: &str, tiers: &[(Tier, &str)]) -> PolicySchedule {
    let zone = parse_time_zone("zone", zone).unwrap();
    let parse = |expr| CronSchedule::parse("cron", expr, zone).unwrap();
    PolicySchedule::new(tiers.iter().map(|(t, expr)| (*t, parse(expr))).collect())
}

/// Daily at 02:00, Sundays at 03:00, the first of the month at 04:00, UTC.
pub(super) fn gfs() -> PolicySchedule {
    schedule(
        "UTC",
        &[
            (Tier::Daily, "0 2 * * *"),
            (Tier::Weekly, "0 3 * * 0"),
            (Tier::Monthly, "0 4 1 * *"),
        ],
    )
}

/// The policy default: 7 daily, 4 weekly, 12 monthly, every manual run.
pub(super) const DEFAULT_RETENTION: RetentionCounts = RetentionCounts {
    daily: 7,
    weekly: 4,
    monthly: 12,
    manual: None,
};

/// One simulated run in the 400-day simulation.
struct SimRun {
    record: RunRecord,
    /// Creation order, which here is also completion order.
    seq: usize,
}

/// Steps the clock hourly through 400 days of a policy with daily, weekly
/// and monthly tiers. Every run takes under an hour; every tenth run (when
/// it is a daily one) and the weekly run of 2026-02-01 fail. Checks the
/// kept set against a simple model at every step.
fn simulate(retention: &RetentionCounts) -> (BTreeMap<Tier, usize>, Vec<String>, String) {
    let schedule = gfs();
    let created = at("2026-01-01T00:00:00Z");
    let mut last = Slots::new();
    let mut live: Vec<SimRun> = Vec::new();
    // Every finished run, in order: name, tier, succeeded.
    let mut history: Vec<(String, Tier, bool)> = Vec::new();
    let mut every_name = HashSet::new();
    let mut made: BTreeMap<Tier, usize> = BTreeMap::new();
    let mut seq = 0;

    for hour in 1..=400 * 24 {
        let now = created + Duration::hours(hour);

        // Runs started in the previous step finish now.
        for run in live.iter_mut().filter(|r| !r.record.finished) {
            let fails = match run.record.tier {
                Tier::Daily => run.seq % 10 == 9,
                Tier::Weekly => run.record.name.ends_with("20260201t030000z"),
                _ => false,
            };
            run.record.finished = true;
            run.record.succeeded = !fails;
            run.record.completed_at = Some(now - Duration::minutes(20));
            run.record.backup_id = (!fails).then(|| format!("b{}", run.seq));
            history.push((run.record.name.clone(), run.record.tier, !fails));
        }

        for due in schedule.due_runs("orders", &last, created, now) {
            assert!(
                every_name.insert(due.name.clone()),
                "duplicate run name {}",
                due.name
            );
            assert!(
                due.scheduled_at <= now && due.scheduled_at > now - Duration::hours(1),
                "late slot {due:?} at {now}"
            );
            last.insert(due.tier, due.scheduled_at);
            *made.entry(due.tier).or_default() += 1;
            seq += 1;
            live.push(SimRun {
                record: RunRecord {
                    name: due.name,
                    tier: due.tier,
                    drill: false,
                    finished: false,
                    succeeded: false,
                    completed_at: None,
                    backup_id: None,
                },
                seq,
            });
        }

        let records: Vec<RunRecord> = live.iter().map(|r| r.record.clone()).collect();
        let expired = expired_runs(&records, retention);
        let newest_success = history
            .iter()
            .rev()
            .find(|(_, _, ok)| *ok)
            .map(|(n, _, _)| n);
        for e in &expired {
            assert_ne!(
                Some(&e.name),
                newest_success,
                "newest success deleted at {now}"
            );
            let run = live.iter().find(|r| r.record.name == e.name).unwrap();
            assert!(run.record.finished, "deleted a run in progress");
            assert_eq!(e.backup_id, run.record.backup_id);
        }
        live.retain(|r| !expired.iter().any(|e| e.name == r.record.name));

        // The model: per tier the newest N successes, the newest success
        // overall, the newest three failures, and everything in progress.
        let mut expected: HashSet<&str> = HashSet::new();
        for tier in Tier::SCHEDULED {
            let keep = retention.keep(tier).unwrap();
            let successes = history.iter().filter(|(_, t, ok)| *t == tier && *ok);
            expected.extend(successes.rev().take(keep).map(|(n, _, _)| n.as_str()));
        }
        expected.extend(newest_success.map(String::as_str));
        let failures = history.iter().rev().filter(|(_, _, ok)| !*ok);
        expected.extend(failures.take(FAILED_RUNS_KEPT).map(|(n, _, _)| n.as_str()));
        expected.extend(
            live.iter()
                .filter(|r| !r.record.finished)
                .map(|r| r.record.name.as_str()),
        );
        let kept: HashSet<&str> = live.iter().map(|r| r.record.name.as_str()).collect();
        assert_eq!(kept, expected, "kept runs differ from the model at {now}");
    }

    let mut kept: Vec<String> = live.into_iter().map(|r| r.record.name).collect();
    kept.sort();
    let newest_success = history
        .iter()
        .rev()
        .find(|(_, _, ok)| *ok)
        .map(|(n, _, _)| n.clone())
        .unwrap();
    (made, kept, newest_success)
}

#[test]
fn four_hundred_days_keep_exactly_the_right_runs() {
    let (made, kept, _) = simulate(&DEFAULT_RETENTION);
    // 2026-01-01 .. 2027-02-05: one run per slot, never a burst or a gap.
    assert_eq!(
        made,
        BTreeMap::from([(Tier::Daily, 400), (Tier::Weekly, 57), (Tier::Monthly, 14)])
    );

    let weekly: Vec<_> = kept
        .iter()
        .filter(|n| n.contains("-weekly-"))
        .cloned()
        .collect();
    assert_eq!(
        weekly,
        [
            "orders-weekly-20270110t030000z",
            "orders-weekly-20270117t030000z",
            "orders-weekly-20270124t030000z",
            "orders-weekly-20270131t030000z"
        ]
    );
    let monthly: Vec<_> = kept.iter().filter(|n| n.contains("-monthly-")).collect();
    assert_eq!(monthly.len(), 12);
    assert_eq!(monthly[0], "orders-monthly-20260301t040000z");
    let daily = kept.iter().filter(|n| n.contains("-daily-")).count();
    assert_eq!(
        daily,
        7 + FAILED_RUNS_KEPT,
        "7 successes and the newest failures"
    );
}

#[test]
fn four_hundred_days_with_retention_zero_keep_only_the_newest_success() {
    let none = RetentionCounts {
        daily: 0,
        weekly: 0,
        monthly: 0,
        manual: None,
    };
    let (_, kept, newest_success) = simulate(&none);
    // The last daily slot before the end, 2027-02-04 02:00.
    assert_eq!(newest_success, "orders-daily-20270204t020000z");
    assert!(kept.contains(&newest_success), "{kept:?}");
    assert_eq!(kept.len(), 1 + FAILED_RUNS_KEPT, "{kept:?}");
}
