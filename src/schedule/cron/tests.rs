use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn repeated_hour_never_yields_a_slot_in_the_past() {
    // 2026-10-25 in Berlin: 02:00-03:00 local happens twice (00:00-01:00 UTC CEST, 01:00-02:00 UTC CET).
    let s = CronSchedule::parse(
        "f",
        "45 2 * * *",
        parse_time_zone("z", "Europe/Berlin").unwrap(),
    )
    .unwrap();
    let after = at("2026-10-25T01:30:00Z"); // 02:30 CET, the second pass
    let next = s.next_after(after).unwrap();
    assert!(next > after);
    assert_eq!(next, at("2026-10-26T01:45:00Z"));
}

#[test]
fn invalid_cron_and_zone_name_the_field() {
    let e = parse_cron("spec.schedule.daily", "0 25 * * *").unwrap_err();
    assert!(
        matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.daily"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("spec.schedule.daily: invalid cron expression \"0 25 * * *\""),
        "{e}"
    );

    // Six fields: seconds are not accepted.
    let e = parse_cron("spec.schedule.weekly", "0 0 3 * * 0").unwrap_err();
    assert!(
        matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.weekly"),
        "{e}"
    );

    let e = parse_cron("spec.schedule.monthly", "0 0 31 2 *").unwrap_err(); // 31 February
    assert!(e.to_string().contains("never fires"), "{e}");
    assert!(
        matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.monthly")
    );

    let e = parse_time_zone("spec.schedule.timeZone", "Europe/Atlantis").unwrap_err();
    assert_eq!(
        e,
        ScheduleError::UnknownTimeZone {
            field: "spec.schedule.timeZone".into(),
            zone: "Europe/Atlantis".into()
        }
    );
    assert_eq!(e.field(), "spec.schedule.timeZone");
}

#[test]
fn aliases_and_leap_days_parse() {
    assert!(parse_cron("f", "@daily").is_ok());
    assert!(parse_cron("f", "0 0 29 2 *").is_ok());
}

#[test]
fn a_remembered_outcome_is_the_same_and_names_each_callers_field() {
    let a = parse_cron("spec.schedule.daily", "17 3 * * *").unwrap();
    let b = parse_cron("spec.schedule.weekly", "17 3 * * *").unwrap();
    let t = DateTime::from_timestamp(1_704_067_200, 0).unwrap();
    assert_eq!(
        a.find_next_occurrence(&t, false).unwrap(),
        b.find_next_occurrence(&t, false).unwrap()
    );
    for field in ["spec.schedule.daily", "spec.schedule.monthly"] {
        let e = parse_cron(field, "0 0 31 2 *").unwrap_err();
        assert_eq!(e.field(), field);
        assert!(e.to_string().contains("never fires"), "{e}");
    }
}
