//! Cron strings and time zones: parsing (the error names the spec field the
//! caller says it came from) and the slots of one cron read in one zone.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;

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
    let parsed = {
        let mut cache = PARSED.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= PARSED_MAX && !cache.contains_key(expr) {
            cache.clear();
        }
        cache
            .entry(expr.to_string())
            .or_insert_with(|| parse_uncached(expr))
            .clone()
    };
    parsed.map_err(|reason| ScheduleError::InvalidCron {
        field: field.to_string(),
        expr: expr.to_string(),
        reason,
    })
}

/// [`parse_cron`]'s outcomes by expression. Every reconcile validates its
/// policy's schedule, and parsing (with the search below) was ~9 % of the
/// controller's CPU at 10,000 policies, which share few expressions.
/// Emptied when it reaches [`PARSED_MAX`] entries, so it stays small.
static PARSED: LazyLock<Mutex<HashMap<String, Result<Cron, String>>>> =
    LazyLock::new(Mutex::default);
const PARSED_MAX: usize = 4096;

fn parse_uncached(expr: &str) -> Result<Cron, String> {
    let cron = Cron::new(expr).parse().map_err(|e| e.to_string())?;
    // A pattern such as "0 0 31 2 *" parses but never fires; a policy with it
    // would silently never back up. Every real pattern fires within 8 years
    // (29 February included), so look that far from a fixed instant.
    let reference = DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(); // 2024-01-01
    match cron.find_next_occurrence(&reference, false) {
        Ok(next) if next - reference <= Duration::days(8 * 366) => Ok(cron),
        _ => Err("it never fires".to_string()),
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
        Ok(Self::new(parse_cron(field, expr)?, zone))
    }

    /// A cron parsed with [`parse_cron`], read in `zone`.
    pub fn new(cron: Cron, zone: Tz) -> Self {
        Self { cron, zone }
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

#[cfg(test)]
mod tests;
