//! When backups are due and which runs retention lets go. Pure: the clock is
//! passed in as `now`, and nothing here knows the custom resources: the
//! caller (src/api) turns a spec into these plain inputs.
//!
//! A policy has up to three tiers (daily, weekly, monthly), each a 5-field cron
//! string read in the policy's IANA time zone ([`cron`], parsed by `croner`).
//! Given the slot of the newest run made per tier, [`PolicySchedule::due_runs`]
//! ([`due`]) returns at most one run per tier: the most recent slot that
//! passed, so after downtime a tier catches up once instead of in a burst. Run
//! names are derived from (policy, tier, slot), so a restarted or second
//! controller that decides the same thing creates the same name and the API
//! server rejects the duplicate.
//!
//! Retention is grandfather-father-son: [`expired_runs`] ([`retention`]) keeps
//! the newest N successful runs per tier and never the newest successful
//! backup overall, keeps a few failed runs and drills for their messages, and
//! never touches a run still in progress.

pub mod cron;
pub mod due;
pub mod retention;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cron::{parse_cron, parse_time_zone, CronSchedule, ScheduleError};
pub use due::{run_name, DueRun, PolicySchedule, MAX_RUN_NAME};
pub use retention::{
    expired_runs, Expired, ExpiryReason, RetentionCounts, RunRecord, DRILL_RUNS_KEPT,
    FAILED_RUNS_KEPT,
};

/// Retention tier of a run (grandfather-father-son) — or `manual`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Daily,
    Weekly,
    Monthly,
    #[default]
    Manual,
}

impl Tier {
    /// The tiers that have a cron schedule, in display order.
    pub const SCHEDULED: [Tier; 3] = [Tier::Daily, Tier::Weekly, Tier::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
            Tier::Monthly => "monthly",
            Tier::Manual => "manual",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instant per tier: the slot of the newest run made, or the next one due.
pub type Slots = BTreeMap<Tier, DateTime<Utc>>;
