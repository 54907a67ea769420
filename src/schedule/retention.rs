//! Grandfather-father-son retention: which finished runs of a policy go.

use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::fmt;

use super::Tier;

/// Failed runs kept per policy so their messages stay readable.
pub const FAILED_RUNS_KEPT: usize = 3;
/// Finished restore drills kept per policy.
pub const DRILL_RUNS_KEPT: usize = 3;

/// How many successful runs retention keeps per tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionCounts {
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    /// Runs made by hand; `None` keeps them all.
    pub manual: Option<usize>,
}

impl RetentionCounts {
    /// How many successful runs of a tier to keep; `None` = all of them.
    pub fn keep(&self, tier: Tier) -> Option<usize> {
        match tier {
            Tier::Daily => Some(self.daily),
            Tier::Weekly => Some(self.weekly),
            Tier::Monthly => Some(self.monthly),
            Tier::Manual => self.manual,
        }
    }

    /// The longest any of `tiers` keeps a backup, in days, and that tier: its
    /// keep count times its longest period (a day, a week, 31 days). Manual
    /// runs have no period and count for nothing. An Object Lock must last
    /// at least this long, or retention would find backups it may not delete.
    pub fn longest_days(&self, tiers: impl IntoIterator<Item = Tier>) -> Option<(Tier, u64)> {
        tiers
            .into_iter()
            .filter_map(|tier| {
                let period = match tier {
                    Tier::Daily => 1,
                    Tier::Weekly => 7,
                    Tier::Monthly => 31,
                    Tier::Manual => return None,
                };
                Some((tier, self.keep(tier)? as u64 * period))
            })
            .max_by_key(|(_, days)| *days)
    }
}

/// What retention needs to know about one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub name: String,
    pub tier: Tier,
    /// A restore drill; otherwise a backup.
    pub drill: bool,
    /// It succeeded or failed (it is not pending or running).
    pub finished: bool,
    /// It finished and succeeded.
    pub succeeded: bool,
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
pub fn expired_runs(runs: &[RunRecord], retention: &RetentionCounts) -> Vec<Expired> {
    // Newest first; the name breaks ties so the result does not depend on input order.
    let newest_first = |filter: &dyn Fn(&RunRecord) -> bool| -> Vec<&RunRecord> {
        let mut list: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.completed_at.is_some() && filter(r))
            .collect();
        list.sort_by(|a, b| (b.completed_at, &b.name).cmp(&(a.completed_at, &a.name)));
        list
    };
    let is_backup = |r: &RunRecord| !r.drill;
    let succeeded = |r: &RunRecord| r.finished && r.succeeded;

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
    let failed = newest_first(&|r| is_backup(r) && r.finished && !r.succeeded);
    expire(failed, FAILED_RUNS_KEPT, ExpiryReason::OldFailure);
    let drills = newest_first(&|r| r.drill && r.finished);
    expire(drills, DRILL_RUNS_KEPT, ExpiryReason::OldDrill);

    // A run matches one list only, but keep the answer a set by name anyway.
    let mut seen = HashSet::new();
    expired.retain(|e| seen.insert(e.name.clone()));
    expired
}

#[cfg(test)]
mod tests;
