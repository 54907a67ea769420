//! The controller's clock. Production reads the system time; tests set and
//! advance it so schedules can be driven without waiting for real slots.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A shared clock: the system time, or a settable instant (tests).
#[derive(Clone, Debug, Default)]
pub struct Clock(Arc<Mutex<Option<DateTime<Utc>>>>);

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `at` until set or advanced.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(Some(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.lock().unwrap_or_else(Utc::now)
    }

    /// Sets a fixed clock (a system clock becomes fixed).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }

    fn lock(&self) -> Option<DateTime<Utc>> {
        // A poisoned lock still holds a valid instant.
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let t: DateTime<Utc> = "2026-11-25T02:00:00Z".parse().unwrap();
        let clock = Clock::fixed(t);
        let copy = clock.clone();
        assert_eq!(clock.now(), t);
        copy.advance(Duration::hours(1));
        assert_eq!(clock.now(), t + Duration::hours(1));
    }

    #[test]
    fn the_system_clock_runs() {
        let before = Utc::now();
        assert!(Clock::system().now() >= before);
    }
}
