//! The ledger never reads the wall clock itself: it asks a [`Clock`], so tests can step time
//! (and step it back) and the sequencer can keep `received_at` non-decreasing regardless.

use std::fmt;
use std::sync::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> jiff::Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that only moves when told to (tests, deterministic workloads).
#[derive(Debug)]
pub struct ManualClock(Mutex<jiff::Timestamp>);

impl ManualClock {
    /// A clock showing `rfc3339`.
    ///
    /// # Panics
    /// If `rfc3339` is not a timestamp: this is for fixed values in tests.
    pub fn at(rfc3339: &str) -> ManualClock {
        #[allow(clippy::expect_used)]
        let ts = rfc3339
            .parse()
            .expect("ManualClock::at needs an RFC 3339 timestamp");
        ManualClock(Mutex::new(ts))
    }

    pub fn set(&self, ts: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = ts;
    }

    /// Moves the clock by `ms` milliseconds (negative steps it back).
    pub fn advance_ms(&self, ms: i64) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(next) = t.checked_add(jiff::SignedDuration::from_millis(ms)) {
            *t = next;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// RFC 3339 in UTC with exactly nine fractional digits, so that stored timestamps compare
/// correctly as strings too.
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    format!("{ts:.9}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nine_fraction_digits() {
        let c = ManualClock::at("2026-11-25T10:00:00Z");
        assert_eq!(format_timestamp(c.now()), "2026-11-25T10:00:00.000000000Z");
        c.advance_ms(-1);
        assert_eq!(format_timestamp(c.now()), "2026-11-25T09:59:59.999000000Z");
    }
}
