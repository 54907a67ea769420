//! The runs a policy's schedule makes due, and their names.

use chrono::{DateTime, Utc};

use super::{CronSchedule, Slots, Tier};

/// Longest Kubernetes name lifeboat gives a run (it also names the run's Job,
/// whose name must fit a label value).
pub const MAX_RUN_NAME: usize = 63;

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
    /// A schedule of the given tiers (each at most once; manual has no cron).
    pub fn new(tiers: Vec<(Tier, CronSchedule)>) -> Self {
        Self { tiers }
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
    pub fn next_backups(&self, now: DateTime<Utc>) -> Slots {
        self.tiers
            .iter()
            .filter_map(|(tier, cron)| Some((*tier, cron.next_after(now)?)))
            .collect()
    }

    /// The runs to create now: per tier, the newest slot after the tier's last
    /// scheduled slot in `last_scheduled` (or after `since`, the policy's
    /// creation, when the tier never ran) and at or before `now`. At most one
    /// per tier, however many slots were missed. The caller records each run's
    /// `scheduled_at` as the tier's last slot, and skips this while the policy
    /// is suspended or a run is in progress.
    pub fn due_runs(
        &self,
        policy: &str,
        last_scheduled: &Slots,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<DueRun> {
        self.tiers
            .iter()
            .filter_map(|(tier, cron)| {
                let after = last_scheduled.get(tier).copied().unwrap_or(since);
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

#[cfg(test)]
mod tests;
