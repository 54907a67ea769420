//! When to try a delivery again. Pure: a 429 or a 5xx (or a timeout, a
//! refused connection) is worth another attempt after a back-off that
//! doubles from `base`, or after the server's `Retry-After` when it asks
//! for longer; anything else is final.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How a delivery is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each next one.
    pub base: Duration,
    /// Longest wait between two attempts; a `Retry-After` beyond it ends
    /// the delivery rather than holding the Job for hours.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_secs(1),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// True for the answers worth another attempt: 429 Too Many Requests and
/// any 5xx.
pub fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// A `Retry-After` value: seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Why a delivery stops retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// Every attempt was made.
    Exhausted,
    /// The server asked to wait longer than [`RetryPolicy::max_wait`].
    TooLong(Duration),
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1`, after `failed` attempts failed
    /// retryably, the last with `retry_after`.
    pub fn next_wait(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
    ) -> Result<Duration, GiveUp> {
        if failed >= self.attempts {
            return Err(GiveUp::Exhausted);
        }
        let backoff = self
            .base
            .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)))
            .min(self.max_wait);
        match retry_after {
            Some(asked) if asked > self.max_wait => Err(GiveUp::TooLong(asked)),
            Some(asked) => Ok(asked.max(backoff)),
            None => Ok(backoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_retry_after_is_honoured() {
        let p = RetryPolicy {
            attempts: 4,
            base: Duration::from_secs(1),
            max_wait: Duration::from_secs(10),
        };
        let s = Duration::from_secs;
        assert_eq!(p.next_wait(1, None), Ok(s(1)));
        assert_eq!(p.next_wait(2, None), Ok(s(2)));
        assert_eq!(p.next_wait(3, None), Ok(s(4)));
        assert_eq!(p.next_wait(4, None), Err(GiveUp::Exhausted));
        // The server's wait when longer than ours, ours when longer.
        assert_eq!(p.next_wait(1, Some(s(7))), Ok(s(7)));
        assert_eq!(p.next_wait(3, Some(s(1))), Ok(s(4)));
        assert_eq!(p.next_wait(1, Some(s(11))), Err(GiveUp::TooLong(s(11))));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now: DateTime<Utc> = "2026-11-21T02:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 02:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 01:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        assert!(retryable(429) && retryable(500) && retryable(503));
        assert!(!retryable(400) && !retryable(404) && !retryable(200));
    }
}
