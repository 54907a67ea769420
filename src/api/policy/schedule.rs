//! When a policy backs up and how long it keeps what it made: the spec side
//! of [`crate::schedule`], and the conversion into its plain inputs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CRON_PATTERN;
use crate::api::{FieldError, Tier};
use crate::schedule::{parse_cron, parse_time_zone, CronSchedule, PolicySchedule, RetentionCounts};

/// Cron strings (5 fields, or `@daily`-style aliases) per tier, in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub weekly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub monthly: Option<String>,
    /// IANA time zone the cron strings are read in, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            daily: None,
            weekly: None,
            monthly: None,
            time_zone: default_time_zone(),
        }
    }
}

impl ScheduleSpec {
    /// The cron string of a tier (manual has none).
    pub fn cron(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Daily => self.daily.as_deref(),
            Tier::Weekly => self.weekly.as_deref(),
            Tier::Monthly => self.monthly.as_deref(),
            Tier::Manual => None,
        }
    }

    /// Parses the tiers' cron strings in the time zone. Every problem names
    /// its field (`spec.schedule.daily`, `spec.schedule.timeZone`).
    pub fn parse(&self) -> Result<PolicySchedule, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = Vec::new();
        let zone = parse_time_zone("spec.schedule.timeZone", &self.time_zone)
            .map_err(|e| errors.push(e.into()))
            .ok();
        let mut tiers = Vec::new();
        for tier in Tier::SCHEDULED {
            if let Some(expr) = self.cron(tier) {
                match parse_cron(&format!("spec.schedule.{tier}"), expr) {
                    Ok(cron) => tiers.push((tier, cron)),
                    Err(e) => errors.push(e.into()),
                }
            }
        }
        match zone {
            Some(zone) if errors.is_empty() => Ok(PolicySchedule::new(
                tiers
                    .into_iter()
                    .map(|(tier, cron)| (tier, CronSchedule::new(cron, zone)))
                    .collect(),
            )),
            _ => Err(errors),
        }
    }
}

/// How many successful runs to keep per tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    #[serde(default = "seven")]
    #[schemars(range(min = 0, max = 1000))]
    pub daily: i32,
    #[serde(default = "four")]
    #[schemars(range(min = 0, max = 1000))]
    pub weekly: i32,
    #[serde(default = "twelve")]
    #[schemars(range(min = 0, max = 1000))]
    pub monthly: i32,
    /// Runs made by hand; absent = keep them until their BackupRun is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub manual: Option<i32>,
}

fn seven() -> i32 {
    7
}
fn four() -> i32 {
    4
}
fn twelve() -> i32 {
    12
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 12,
            manual: None,
        }
    }
}

impl Retention {
    /// The counts retention works with (a negative count, which `validate`
    /// refuses, keeps none).
    pub fn counts(&self) -> RetentionCounts {
        let count = |n: i32| n.max(0) as usize;
        RetentionCounts {
            daily: count(self.daily),
            weekly: count(self.weekly),
            monthly: count(self.monthly),
            manual: self.manual.map(count),
        }
    }

    /// How many successful runs of a tier to keep; `None` = all of them.
    pub fn keep(&self, tier: Tier) -> Option<usize> {
        self.counts().keep(tier)
    }
}
