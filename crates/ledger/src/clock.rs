//! The ledger never reads the wall clock itself: it asks a [`Clock`], so tests can step time
//! (and step it back) and the sequencer can keep `received_at` non-decreasing regardless.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> jiff::Timestamp;

    /// Whether this clock follows real time, so that it can be checked against the monotonic
    /// clock ([`ClockWatch`]); false for clocks that tests move by hand.
    fn follows_real_time(&self) -> bool {
        false
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn follows_real_time(&self) -> bool {
        true
    }
}

/// Watches a wall clock against the monotonic clock: a wall clock that moved away from where
/// the monotonic clock says it should be by more than `bound_ms` since the ledger opened has
/// jumped (a wrong NTP step, a VM restored from a snapshot, libfaketime). Each jump is logged
/// at error level once and counted; [`ClockWatch::drift_ms`] says whether the clock is off
/// now, so that retention refuses to purge by a jumped clock. A restart accepts the clock as
/// it is then.
#[derive(Debug)]
pub struct ClockWatch {
    bound_ms: i64,
    state: Mutex<Option<WatchState>>,
    jumps: AtomicU64,
}

#[derive(Debug)]
struct WatchState {
    base: Instant,
    base_wall: jiff::Timestamp,
    off: Option<i64>,
}

impl ClockWatch {
    /// Watches `clock` if it follows real time (otherwise the watch never reports a jump).
    pub fn new(clock: &dyn Clock, bound_ms: i64) -> ClockWatch {
        let state = clock.follows_real_time().then(|| WatchState {
            base: Instant::now(),
            base_wall: clock.now(),
            off: None,
        });
        ClockWatch {
            bound_ms: bound_ms.max(1),
            state: Mutex::new(state),
            jumps: AtomicU64::new(0),
        }
    }

    /// Checks the time `now` just read from the watched clock: the drift in milliseconds when
    /// beyond the bound (positive: the wall clock is ahead), `None` when the clock is right.
    pub fn check(&self, now: jiff::Timestamp) -> Option<i64> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = g.as_mut()?;
        let expected_ms = i64::try_from(st.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        let wall_ms = i64::try_from(now.duration_since(st.base_wall).as_millis()).unwrap_or(0);
        let drift = wall_ms.saturating_sub(expected_ms);
        if drift.abs() > self.bound_ms {
            if st.off.is_none() {
                self.jumps.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    drift_ms = drift,
                    bound_ms = self.bound_ms,
                    "the wall clock jumped: received_at follows it, retention will not purge until it is back (or the process restarts)"
                );
            }
            st.off = Some(drift);
            Some(drift)
        } else {
            if let Some(was) = st.off.take() {
                tracing::warn!(was_ms = was, "the wall clock is back in step");
            }
            None
        }
    }

    /// The drift found by the latest check, if it was beyond the bound.
    pub fn drift_ms(&self) -> Option<i64> {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().and_then(|s| s.off)
    }

    /// Jumps seen since the ledger opened.
    pub fn jumps(&self) -> u64 {
        self.jumps.load(Ordering::Relaxed)
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
