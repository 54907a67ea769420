//! When backups are due and which runs retention lets go. Pure: the clock is
//! passed in as `now`.
//!
//! A policy has up to three tiers (daily, weekly, monthly), each a 5-field cron
//! string read in the policy's IANA time zone (parsed by `croner`). Given the
//! slot of the newest run made per tier, [`PolicySchedule::due_runs`] returns
//! at most one run per tier: the most recent slot that passed, so after
//! downtime a tier catches up once instead of in a burst. Run names are
//! derived from (policy, tier, slot), so a restarted or second controller
//! that decides the same thing creates the same name and the API server
//! rejects the duplicate.
//!
//! Retention is grandfather-father-son: [`expired_runs`] keeps the newest N
//! successful runs per tier and never the newest successful backup overall,
//! keeps a few failed runs and drills for their messages, and never touches a
//! run still in progress.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::collections::HashSet;
use std::fmt;

use crate::api::policy::{Retention, ScheduleSpec, TierTimes};
use crate::api::{FieldError, RunKind, RunPhase, Tier};

/// Failed runs kept per policy so their messages stay readable.
pub const FAILED_RUNS_KEPT: usize = 3;
/// Finished restore drills kept per policy.
pub const DRILL_RUNS_KEPT: usize = 3;
/// Longest Kubernetes name lifeboat gives a run (it also names the run's Job,
/// whose name must fit a label value).
pub const MAX_RUN_NAME: usize = 63;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{field}: invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        field: String,
        expr: String,
        reason: String,
    },
    #[error("{field}: unknown time zone {zone:?}; use an IANA name such as UTC or Europe/Berlin")]
    UnknownTimeZone { field: String, zone: String },
}

impl ScheduleError {
    /// The spec field at fault, e.g. `spec.schedule.daily`.
    pub fn field(&self) -> &str {
        match self {
            ScheduleError::InvalidCron { field, .. }
            | ScheduleError::UnknownTimeZone { field, .. } => field,
        }
    }
}

impl From<ScheduleError> for FieldError {
    fn from(e: ScheduleError) -> Self {
        // Display is "<field>: <problem>"; the FieldError keeps them apart.
        let text = e.to_string();
        let prefix = format!("{}: ", e.field());
        let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
        FieldError::new(e.field(), message)
    }
}

/// Parses an IANA time zone name; the error names `field`.
pub fn parse_time_zone(field: &str, name: &str) -> Result<Tz, ScheduleError> {
    name.parse().map_err(|_| ScheduleError::UnknownTimeZone {
        field: field.to_string(),
        zone: name.to_string(),
    })
}

/// Parses a 5-field cron string (or an alias such as `@daily`); seconds are
/// not accepted because backups are planned in minutes. The error names `field`.
pub fn parse_cron(field: &str, expr: &str) -> Result<Cron, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidCron {
        field: field.to_string(),
        expr: expr.to_string(),
        reason,
    };
    let cron = Cron::new(expr)
        .parse()
        .map_err(|e| invalid(e.to_string()))?;
    // A pattern such as "0 0 31 2 *" parses but never fires; a policy with it
    // would silently never back up. Every real pattern fires within 8 years
    // (29 February included), so look that far from a fixed instant.
    let reference = DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(); // 2024-01-01
    match cron.find_next_occurrence(&reference, false) {
        Ok(next) if next - reference <= Duration::days(8 * 366) => Ok(cron),
        _ => Err(invalid("it never fires".to_string())),
    }
}

/// One cron string read in one time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expr` for `field` to be read in `zone`.
    pub fn parse(field: &str, expr: &str, zone: Tz) -> Result<Self, ScheduleError> {
        Ok(Self {
            cron: parse_cron(field, expr)?,
            zone,
        })
    }

    /// The first slot strictly after `after`.
    ///
    /// Wall-clock times skipped when clocks go forward fire at the first
    /// valid instant after the gap; times repeated when clocks go back fire
    /// once, at their first occurrence.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next = self
            .cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()?;
        // croner resolves an ambiguous local time to its earlier instant, which
        // can lie before `after` while the clock is in the repeated hour. Step
        // on in local time so slots only ever move forward.
        while next.with_timezone(&Utc) <= after {
            next = self.cron.find_next_occurrence(&next, false).ok()?;
        }
        Some(next.with_timezone(&Utc))
    }

    /// The newest slot in `(since, now]`, if any.
    pub fn latest_between(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if now <= since {
            return None;
        }
        // Walking every slot since `since` costs a year of minutes for an
        // every-minute cron after a long outage; look back over a window that
        // doubles until it holds a slot or reaches `since`.
        let mut window = Duration::hours(1);
        loop {
            let start = if now - since <= window {
                since
            } else {
                now - window
            };
            let mut latest = None;
            let mut cursor = start;
            while let Some(slot) = self.next_after(cursor) {
                if slot > now {
                    break;
                }
                latest = Some(slot);
                cursor = slot;
            }
            if latest.is_some() || start == since {
                return latest;
            }
            window = window * 2;
        }
    }
}

/// A run the controller should create now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueRun {
    pub tier: Tier,
    /// The slot it is for (possibly missed, during downtime).
    pub scheduled_at: DateTime<Utc>,
    pub name: String,
}

/// The cron tiers of a policy, parsed.
#[derive(Clone, Debug)]
pub struct PolicySchedule {
    tiers: Vec<(Tier, CronSchedule)>,
}

impl PolicySchedule {
    /// Parses the tiers of a policy's schedule; the error names the field
    /// (`spec.schedule.daily`, `spec.schedule.timeZone`).
    pub fn from_spec(spec: &ScheduleSpec) -> Result<Self, ScheduleError> {
        let zone = parse_time_zone("spec.schedule.timeZone", &spec.time_zone)?;
        let mut tiers = Vec::new();
        for tier in Tier::SCHEDULED {
            if let Some(expr) = spec.cron(tier) {
                let field = format!("spec.schedule.{tier}");
                tiers.push((tier, CronSchedule::parse(&field, expr, zone)?));
            }
        }
        Ok(Self { tiers })
    }

    /// The tiers that have a schedule.
    pub fn tiers(&self) -> impl Iterator<Item = Tier> + '_ {
        self.tiers.iter().map(|(tier, _)| *tier)
    }

    fn cron(&self, tier: Tier) -> Option<&CronSchedule> {
        self.tiers.iter().find(|(t, _)| *t == tier).map(|(_, c)| c)
    }

    /// A tier's first slot strictly after `after`; `None` for an unscheduled tier.
    pub fn next_due(&self, tier: Tier, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron(tier)?.next_after(after)
    }

    /// The next slot per tier after `now`, for the policy's status.
    pub fn next_backups(&self, now: DateTime<Utc>) -> TierTimes {
        let mut times = TierTimes::default();
        for (tier, cron) in &self.tiers {
            times.set(*tier, cron.next_after(now));
        }
        times
    }

    /// The runs to create now: per tier, the newest slot after the tier's last
    /// scheduled slot (or after `since`, the policy's creation, when the tier
    /// never ran) and at or before `now`. At most one per tier, however many
    /// slots were missed. The caller records each run's `scheduled_at` as the
    /// tier's last slot, and skips this while the policy is suspended or a run
    /// is in progress.
    pub fn due_runs(
        &self,
        policy: &str,
        last_scheduled: &TierTimes,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<DueRun> {
        self.tiers
            .iter()
            .filter_map(|(tier, cron)| {
                let after = last_scheduled.get(*tier).unwrap_or(since);
                let slot = cron.latest_between(after, now)?;
                Some(DueRun {
                    tier: *tier,
                    scheduled_at: slot,
                    name: run_name(policy, tier.as_str(), slot),
                })
            })
            .collect()
    }
}

/// The name of the run `policy` makes for `label` (a tier, or `drill`) at
/// slot `at`: `orders-daily-20261125t020000z`. A DNS-1123 label of at most 63
/// characters; a long or unusual policy name is cut and a hash of the whole
/// name added, so different policies never share run names.
pub fn run_name(policy: &str, label: &str, at: DateTime<Utc>) -> String {
    let suffix = format!("-{label}-{}", at.format("%Y%m%dt%H%M%Sz"));
    let clean: String = policy
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean == policy && clean.len() + suffix.len() <= MAX_RUN_NAME {
        return format!("{policy}{suffix}");
    }
    let hash = format!("{:08x}", fnv1a(policy.as_bytes()));
    let room = MAX_RUN_NAME.saturating_sub(suffix.len() + hash.len() + 1);
    let head = clean[..clean.len().min(room)].trim_matches('-');
    if head.is_empty() {
        format!("{hash}{suffix}")
    } else {
        format!("{head}-{hash}{suffix}")
    }
}

/// 32-bit FNV-1a: tiny and stable across Rust releases, unlike `DefaultHasher`;
/// it only has to tell policy names apart, not resist an attacker.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// What retention needs to know about one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub name: String,
    pub tier: Tier,
    pub kind: RunKind,
    pub phase: RunPhase,
    pub completed_at: Option<DateTime<Utc>>,
    pub backup_id: Option<String>,
}

/// Why a run is to be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    /// More successful runs than the tier keeps.
    Retention { tier: Tier, keep: usize },
    /// An older failure; newer ones are kept.
    OldFailure,
    /// An older restore drill; newer ones are kept.
    OldDrill,
}

impl fmt::Display for ExpiryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpiryReason::Retention { tier, keep } => {
                write!(
                    f,
                    "retention keeps the newest {keep} successful {tier} runs"
                )
            }
            ExpiryReason::OldFailure => {
                write!(f, "only the newest {FAILED_RUNS_KEPT} failed runs are kept")
            }
            ExpiryReason::OldDrill => {
                write!(f, "only the newest {DRILL_RUNS_KEPT} drills are kept")
            }
        }
    }
}

/// A run to delete. When it has a backup id, its backup must be pruned from
/// every destination before the run goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub name: String,
    pub backup_id: Option<String>,
    pub reason: ExpiryReason,
}

/// Picks the runs of one policy that retention deletes.
///
/// Finished runs without a completion time cannot be ordered and are kept,
/// as are runs in progress.
pub fn expired_runs(runs: &[RunRecord], retention: &Retention) -> Vec<Expired> {
    // Newest first; the name breaks ties so the result does not depend on input order.
    let newest_first = |filter: &dyn Fn(&RunRecord) -> bool| -> Vec<&RunRecord> {
        let mut list: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.completed_at.is_some() && filter(r))
            .collect();
        list.sort_by(|a, b| (b.completed_at, &b.name).cmp(&(a.completed_at, &a.name)));
        list
    };
    let is_backup = |r: &RunRecord| r.kind == RunKind::Full;
    let succeeded = |r: &RunRecord| r.phase == RunPhase::Succeeded;

    let newest_success = newest_first(&|r| is_backup(r) && succeeded(r))
        .first()
        .map(|r| r.name.clone());

    let mut expired = Vec::new();
    let mut expire = |list: Vec<&RunRecord>, keep: usize, reason: ExpiryReason| {
        for run in list.into_iter().skip(keep) {
            if Some(&run.name) != newest_success.as_ref() {
                expired.push(Expired {
                    name: run.name.clone(),
                    backup_id: run.backup_id.clone(),
                    reason,
                });
            }
        }
    };

    for tier in [Tier::Daily, Tier::Weekly, Tier::Monthly, Tier::Manual] {
        if let Some(keep) = retention.keep(tier) {
            let list = newest_first(&|r| is_backup(r) && succeeded(r) && r.tier == tier);
            expire(list, keep, ExpiryReason::Retention { tier, keep });
        }
    }
    let failed = newest_first(&|r| is_backup(r) && r.phase == RunPhase::Failed);
    expire(failed, FAILED_RUNS_KEPT, ExpiryReason::OldFailure);
    let drills = newest_first(&|r| r.kind == RunKind::Drill && r.phase.is_finished());
    expire(drills, DRILL_RUNS_KEPT, ExpiryReason::OldDrill);

    // A run matches one list only, but keep the answer a set by name anyway.
    let mut seen = HashSet::new();
    expired.retain(|e| seen.insert(e.name.clone()));
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn spec(daily: &str, weekly: &str, monthly: &str, zone: &str) -> ScheduleSpec {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ScheduleSpec {
            daily: opt(daily),
            weekly: opt(weekly),
            monthly: opt(monthly),
            time_zone: zone.to_string(),
        }
    }

    fn gfs() -> PolicySchedule {
        PolicySchedule::from_spec(&spec("0 2 * * *", "0 3 * * 0", "0 4 1 * *", "UTC")).unwrap()
    }

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
        let s = PolicySchedule::from_spec(&spec("0 2 * * *", "", "", "UTC")).unwrap();
        let next = s.next_backups(at("2026-11-25T12:00:00Z"));
        assert_eq!(next.daily, Some(at("2026-11-26T02:00:00Z")));
        assert_eq!(next.weekly, None);
        assert_eq!(s.tiers().collect::<Vec<_>>(), [Tier::Daily]);
    }

    #[test]
    fn a_new_policy_waits_for_its_first_slot() {
        let s = gfs();
        let created = at("2026-11-25T10:00:00Z");
        assert!(s
            .due_runs(
                "orders",
                &TierTimes::default(),
                created,
                at("2026-11-26T01:59:00Z")
            )
            .is_empty());
        let due = s.due_runs(
            "orders",
            &TierTimes::default(),
            created,
            at("2026-11-26T02:00:00Z"),
        );
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
        let last = TierTimes {
            daily: Some(at("2026-03-01T02:00:00Z")),
            weekly: Some(at("2026-03-01T03:00:00Z")), // a Sunday
            monthly: Some(at("2026-03-01T04:00:00Z")),
        };
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
            last.set(d.tier, Some(d.scheduled_at));
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
        let s = PolicySchedule::from_spec(&spec("* * * * *", "", "", "UTC")).unwrap();
        let last = TierTimes {
            daily: Some(at("2025-01-01T00:00:00Z")),
            ..TierTimes::default()
        };
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
        let s = PolicySchedule::from_spec(&spec("30 2 * * *", "", "", "Europe/Berlin")).unwrap();
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
            let mut last = TierTimes::default();
            let mut made = Vec::new();
            let mut now = at(from);
            while now <= at(to) {
                for run in s.due_runs("db", &last, at(from), now) {
                    last.set(run.tier, Some(run.scheduled_at));
                    made.push(run.scheduled_at);
                }
                now += Duration::minutes(15);
            }
            let expected: Vec<_> = expected.into_iter().map(at).collect();
            assert_eq!(made, expected);
        }
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
        let mut bad = spec("0 25 * * *", "", "", "UTC");
        let e = PolicySchedule::from_spec(&bad).unwrap_err();
        assert!(
            matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.daily"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("spec.schedule.daily: invalid cron expression \"0 25 * * *\""),
            "{e}"
        );

        bad = spec("0 2 * * *", "0 0 3 * * 0", "", "UTC"); // six fields: seconds are not accepted
        let e = PolicySchedule::from_spec(&bad).unwrap_err();
        assert!(
            matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.weekly"),
            "{e}"
        );

        bad = spec("0 2 * * *", "", "0 0 31 2 *", "UTC"); // 31 February
        let e = PolicySchedule::from_spec(&bad).unwrap_err();
        assert!(e.to_string().contains("never fires"), "{e}");
        assert!(
            matches!(&e, ScheduleError::InvalidCron { field, .. } if field == "spec.schedule.monthly")
        );

        bad = spec("0 2 * * *", "", "", "Europe/Atlantis");
        let e = PolicySchedule::from_spec(&bad).unwrap_err();
        assert_eq!(
            e,
            ScheduleError::UnknownTimeZone {
                field: "spec.schedule.timeZone".into(),
                zone: "Europe/Atlantis".into()
            }
        );
        let fe: FieldError = e.into();
        assert_eq!(fe.field, "spec.schedule.timeZone");
        assert!(
            fe.message
                .starts_with("unknown time zone \"Europe/Atlantis\""),
            "{}",
            fe.message
        );
    }

    #[test]
    fn aliases_and_leap_days_parse() {
        assert!(parse_cron("f", "@daily").is_ok());
        assert!(parse_cron("f", "0 0 29 2 *").is_ok());
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
            assert!(crate::api::is_dns_label(name), "{name}");
            assert!(name.len() <= MAX_RUN_NAME, "{name}");
            assert!(name.ends_with("-20261125t020000z"), "{name}");
        }
        assert_ne!(
            run_name("db.prod", "weekly", t),
            run_name("db-prod", "weekly", t)
        );
    }

    fn record(name: &str, tier: Tier, phase: RunPhase, done: &str) -> RunRecord {
        RunRecord {
            name: name.to_string(),
            tier,
            kind: RunKind::Full,
            phase,
            completed_at: Some(at(done)),
            backup_id: (phase == RunPhase::Succeeded).then(|| format!("id-{name}")),
        }
    }

    fn names(expired: &[Expired]) -> Vec<&str> {
        expired.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn retention_keeps_newest_n_per_tier_and_reports_backup_ids() {
        let runs: Vec<_> = (1..=9)
            .map(|d| {
                record(
                    &format!("d{d}"),
                    Tier::Daily,
                    RunPhase::Succeeded,
                    &format!("2026-01-0{d}T02:10:00Z"),
                )
            })
            .chain([record(
                "w1",
                Tier::Weekly,
                RunPhase::Succeeded,
                "2026-01-04T03:10:00Z",
            )])
            .collect();
        let expired = expired_runs(&runs, &Retention::default());
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
        let runs = [
            record(
                "d1",
                Tier::Daily,
                RunPhase::Succeeded,
                "2026-01-01T02:10:00Z",
            ),
            record(
                "d2",
                Tier::Daily,
                RunPhase::Succeeded,
                "2026-01-02T02:10:00Z",
            ),
            record("d3", Tier::Daily, RunPhase::Failed, "2026-01-03T02:10:00Z"),
        ];
        let none = Retention {
            daily: 0,
            weekly: 0,
            monthly: 0,
            manual: Some(0),
        };
        assert_eq!(names(&expired_runs(&runs, &none)), ["d1"]);
    }

    #[test]
    fn runs_in_progress_and_undated_runs_are_never_deleted() {
        let mut running = record("d9", Tier::Daily, RunPhase::Running, "2026-01-09T02:10:00Z");
        running.completed_at = None;
        let mut undated = record(
            "d0",
            Tier::Daily,
            RunPhase::Succeeded,
            "2026-01-01T00:00:00Z",
        );
        undated.completed_at = None;
        let pending = RunRecord {
            phase: RunPhase::Pending,
            ..running.clone()
        };
        let runs = [
            running,
            pending,
            undated,
            record(
                "d1",
                Tier::Daily,
                RunPhase::Succeeded,
                "2026-01-01T02:10:00Z",
            ),
            record(
                "d2",
                Tier::Daily,
                RunPhase::Succeeded,
                "2026-01-02T02:10:00Z",
            ),
        ];
        let one = Retention {
            daily: 1,
            ..Retention::default()
        };
        assert_eq!(names(&expired_runs(&runs, &one)), ["d1"]);
    }

    #[test]
    fn failures_and_drills_keep_the_newest_three_and_manual_runs_stay() {
        let mut runs: Vec<_> = (1..=5)
            .map(|d| {
                record(
                    &format!("f{d}"),
                    Tier::Daily,
                    RunPhase::Failed,
                    &format!("2026-01-0{d}T02:10:00Z"),
                )
            })
            .collect();
        for d in 1..=4 {
            let mut drill = record(
                &format!("x{d}"),
                Tier::Manual,
                RunPhase::Succeeded,
                &format!("2026-01-0{d}T06:00:00Z"),
            );
            drill.kind = RunKind::Drill;
            drill.backup_id = None;
            runs.push(drill);
        }
        for d in 1..=9 {
            runs.push(record(
                &format!("m{d}"),
                Tier::Manual,
                RunPhase::Succeeded,
                &format!("2026-02-0{d}T12:00:00Z"),
            ));
        }
        let expired = expired_runs(&runs, &Retention::default());
        assert_eq!(names(&expired), ["f2", "f1", "x1"]);
        assert_eq!(expired[0].reason, ExpiryReason::OldFailure);
        assert_eq!(expired[2].reason, ExpiryReason::OldDrill);
    }

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
    fn simulate(retention: &Retention) -> (BTreeMap<Tier, usize>, Vec<String>, String) {
        let schedule = gfs();
        let created = at("2026-01-01T00:00:00Z");
        let mut last = TierTimes::default();
        let mut live: Vec<SimRun> = Vec::new();
        let mut history: Vec<(String, Tier, RunPhase)> = Vec::new(); // every finished run, in order
        let mut every_name = HashSet::new();
        let mut made: BTreeMap<Tier, usize> = BTreeMap::new();
        let mut seq = 0;

        for hour in 1..=400 * 24 {
            let now = created + Duration::hours(hour);

            // Runs started in the previous step finish now.
            for run in live
                .iter_mut()
                .filter(|r| r.record.phase == RunPhase::Running)
            {
                let fails = match run.record.tier {
                    Tier::Daily => run.seq % 10 == 9,
                    Tier::Weekly => run.record.name.ends_with("20260201t030000z"),
                    _ => false,
                };
                let phase = if fails {
                    RunPhase::Failed
                } else {
                    RunPhase::Succeeded
                };
                run.record.phase = phase;
                run.record.completed_at = Some(now - Duration::minutes(20));
                run.record.backup_id =
                    (phase == RunPhase::Succeeded).then(|| format!("b{}", run.seq));
                history.push((run.record.name.clone(), run.record.tier, phase));
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
                last.set(due.tier, Some(due.scheduled_at));
                *made.entry(due.tier).or_default() += 1;
                seq += 1;
                live.push(SimRun {
                    record: RunRecord {
                        name: due.name,
                        tier: due.tier,
                        kind: RunKind::Full,
                        phase: RunPhase::Running,
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
                .find(|(_, _, p)| *p == RunPhase::Succeeded)
                .map(|(n, _, _)| n);
            for e in &expired {
                assert_ne!(
                    Some(&e.name),
                    newest_success,
                    "newest success deleted at {now}"
                );
                let run = live.iter().find(|r| r.record.name == e.name).unwrap();
                assert!(run.record.phase.is_finished(), "deleted a run in progress");
                assert_eq!(e.backup_id, run.record.backup_id);
            }
            live.retain(|r| !expired.iter().any(|e| e.name == r.record.name));

            // The model: per tier the newest N successes, the newest success
            // overall, the newest three failures, and everything in progress.
            let mut expected: HashSet<&str> = HashSet::new();
            for tier in Tier::SCHEDULED {
                let keep = retention.keep(tier).unwrap();
                let successes = history
                    .iter()
                    .filter(|(_, t, p)| *t == tier && *p == RunPhase::Succeeded);
                expected.extend(successes.rev().take(keep).map(|(n, _, _)| n.as_str()));
            }
            expected.extend(newest_success.map(String::as_str));
            let failures = history
                .iter()
                .rev()
                .filter(|(_, _, p)| *p == RunPhase::Failed);
            expected.extend(failures.take(FAILED_RUNS_KEPT).map(|(n, _, _)| n.as_str()));
            expected.extend(
                live.iter()
                    .filter(|r| r.record.phase == RunPhase::Running)
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
            .find(|(_, _, p)| *p == RunPhase::Succeeded)
            .map(|(n, _, _)| n.clone())
            .unwrap();
        (made, kept, newest_success)
    }

    #[test]
    fn four_hundred_days_keep_exactly_the_right_runs() {
        let (made, kept, _) = simulate(&Retention::default());
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
        let none = Retention {
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

    #[test]
    fn due_runs_are_the_same_for_two_replicas() {
        // Two controllers deciding from the same observation pick the same names.
        let s = gfs();
        let last = TierTimes {
            daily: Some(at("2026-03-01T02:00:00Z")),
            ..TierTimes::default()
        };
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
}
