use super::*;
use crate::schedule::tests::{at, gfs, schedule};
use crate::schedule::Slots;
use chrono::Duration;

#[test]
fn next_due_is_strictly_after() {
    let s = gfs();
    assert_eq!(
        s.next_due(Tier::Daily, at("2026-11-25T02:00:00Z")),
        Some(at("2026-11-26T02:00:00Z"))
    );
    assert_eq!(
        s.next_due(Tier::Daily, at("2026-11-25T01:59:59Z")),
        Some(at("2026-11-25T02:00:00Z"))
    );
    // 2026-11-25 is a Wednesday; the next Sunday is the 29th.
    assert_eq!(
        s.next_due(Tier::Weekly, at("2026-11-25T12:00:00Z")),
        Some(at("2026-11-29T03:00:00Z"))
    );
    assert_eq!(
        s.next_due(Tier::Monthly, at("2026-11-25T12:00:00Z")),
        Some(at("2026-12-01T04:00:00Z"))
    );
    assert_eq!(s.next_due(Tier::Manual, at("2026-11-25T12:00:00Z")), None);
}

#[test]
fn next_backups_fills_only_scheduled_tiers() {
    let s = schedule("UTC", &[(Tier::Daily, "0 2 * * *")]);
    let next = s.next_backups(at("2026-11-25T12:00:00Z"));
    assert_eq!(
        next,
        Slots::from([(Tier::Daily, at("2026-11-26T02:00:00Z"))])
    );
    assert_eq!(s.tiers().collect::<Vec<_>>(), [Tier::Daily]);
}

#[test]
fn a_new_policy_waits_for_its_first_slot() {
    let s = gfs();
    let created = at("2026-11-25T10:00:00Z");
    assert!(s
        .due_runs("orders", &Slots::new(), created, at("2026-11-26T01:59:00Z"))
        .is_empty());
    let due = s.due_runs("orders", &Slots::new(), created, at("2026-11-26T02:00:00Z"));
    assert_eq!(
        due,
        [DueRun {
            tier: Tier::Daily,
            scheduled_at: at("2026-11-26T02:00:00Z"),
            name: "orders-daily-20261126t020000z".to_string(),
        }]
    );
}

#[test]
fn ten_days_down_makes_one_catch_up_run_per_tier_not_ten() {
    let s = gfs();
    let last = Slots::from([
        (Tier::Daily, at("2026-03-01T02:00:00Z")),
        (Tier::Weekly, at("2026-03-01T03:00:00Z")), // a Sunday
        (Tier::Monthly, at("2026-03-01T04:00:00Z")),
    ]);
    let now = at("2026-03-11T12:00:00Z");
    let due = s.due_runs("orders", &last, at("2026-01-01T00:00:00Z"), now);
    let got: Vec<_> = due.iter().map(|d| (d.tier, d.scheduled_at)).collect();
    assert_eq!(
        got,
        [
            (Tier::Daily, at("2026-03-11T02:00:00Z")),
            (Tier::Weekly, at("2026-03-08T03:00:00Z"))
        ]
    );

    // Once recorded, nothing more is due until the next slot.
    let mut last = last;
    for d in &due {
        last.insert(d.tier, d.scheduled_at);
    }
    assert!(s
        .due_runs("orders", &last, at("2026-01-01T00:00:00Z"), now)
        .is_empty());
    let next = s.due_runs(
        "orders",
        &last,
        at("2026-01-01T00:00:00Z"),
        at("2026-03-12T02:00:00Z"),
    );
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].name, "orders-daily-20260312t020000z");
}

#[test]
fn a_year_down_with_an_every_minute_cron_still_makes_one_run() {
    let s = schedule("UTC", &[(Tier::Daily, "* * * * *")]);
    let last = Slots::from([(Tier::Daily, at("2025-01-01T00:00:00Z"))]);
    let due = s.due_runs(
        "p",
        &last,
        at("2024-01-01T00:00:00Z"),
        at("2026-01-01T00:00:30Z"),
    );
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].scheduled_at, at("2026-01-01T00:00:00Z"));
}

#[test]
fn berlin_time_zone_follows_daylight_saving() {
    let s = schedule("Europe/Berlin", &[(Tier::Daily, "30 2 * * *")]);
    // Winter: 02:30 CET is 01:30 UTC. Summer: 02:30 CEST is 00:30 UTC.
    assert_eq!(
        s.next_due(Tier::Daily, at("2026-01-10T00:00:00Z")),
        Some(at("2026-01-10T01:30:00Z"))
    );
    assert_eq!(
        s.next_due(Tier::Daily, at("2026-07-10T00:00:00Z")),
        Some(at("2026-07-10T00:30:00Z"))
    );

    // Step through both switch days in 15-minute steps: one run per local day.
    for (from, to, expected) in [
        // 2026-03-29 02:30 does not exist in Berlin; the run moves to 03:00 CEST.
        (
            "2026-03-27T12:00:00Z",
            "2026-03-31T12:00:00Z",
            vec![
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ],
        ),
        // 2026-10-25 02:30 happens twice in Berlin; the run happens once, at the first.
        (
            "2026-10-23T12:00:00Z",
            "2026-10-27T12:00:00Z",
            vec![
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z",
            ],
        ),
    ] {
        let mut last = Slots::new();
        let mut made = Vec::new();
        let mut now = at(from);
        while now <= at(to) {
            for run in s.due_runs("db", &last, at(from), now) {
                last.insert(run.tier, run.scheduled_at);
                made.push(run.scheduled_at);
            }
            now += Duration::minutes(15);
        }
        let expected: Vec<_> = expected.into_iter().map(at).collect();
        assert_eq!(made, expected);
    }
}

#[test]
fn run_names_are_dns_labels_and_deterministic() {
    let t = at("2026-11-25T02:00:00Z");
    assert_eq!(
        run_name("orders", "daily", t),
        "orders-daily-20261125t020000z"
    );
    assert_eq!(
        run_name("orders", "daily", t),
        run_name("orders", "daily", t)
    );

    let long_a = "a".repeat(60);
    let long_b = format!("{}b", "a".repeat(59));
    let (a, b) = (
        run_name(&long_a, "monthly", t),
        run_name(&long_b, "monthly", t),
    );
    assert_ne!(a, b, "names that differ only past the cut must not collide");
    for name in [
        &a,
        &b,
        &run_name("db.prod", "weekly", t),
        &run_name("db-prod", "weekly", t),
    ] {
        assert!(name.len() <= MAX_RUN_NAME, "{name}");
        assert!(name.ends_with("-20261125t020000z"), "{name}");
    }
    assert_ne!(
        run_name("db.prod", "weekly", t),
        run_name("db-prod", "weekly", t)
    );
}

#[test]
fn due_runs_are_the_same_for_two_replicas() {
    // Two controllers deciding from the same observation pick the same names.
    let s = gfs();
    let last = Slots::from([(Tier::Daily, at("2026-03-01T02:00:00Z"))]);
    let a = s.due_runs(
        "orders",
        &last,
        at("2026-01-01T00:00:00Z"),
        at("2026-03-05T09:00:00Z"),
    );
    let b = s.due_runs(
        "orders",
        &last,
        at("2026-01-01T00:00:00Z"),
        at("2026-03-05T09:17:00Z"),
    );
    assert_eq!(
        a.iter().map(|r| &r.name).collect::<Vec<_>>(),
        b.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
}
