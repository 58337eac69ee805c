//! Failed authentications, counted per source address: beyond `max_auth_failures_per_minute`
//! in a minute's window, every request from that address is answered 429 with `Retry-After`
//! until the window has passed, valid key or not (otherwise the answer to a right guess would
//! differ from the throttled wrong ones, and guessing would not be slowed at all).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked before windows that have passed are dropped.
const TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    sources: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl AuthThrottle {
    /// `limit` failures per `window` (0: no limit).
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        AuthThrottle {
            limit,
            window,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` while `source` is over its limit.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let sources = agentrail_ledger::sync::lock(&self.sources);
        match sources.get(&source) {
            Some(w) if w.failures >= self.limit => {
                let left = self.window.saturating_sub(now.duration_since(w.start));
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs_f64().ceil().max(1.0) as u64)
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `source`; returns its failures in the current window.
    pub fn failed(&self, source: IpAddr, now: Instant) -> u32 {
        let mut sources = agentrail_ledger::sync::lock(&self.sources);
        if sources.len() >= TRACKED {
            let window = self.window;
            sources.retain(|_, w| now.duration_since(w.start) < window);
        }
        let w = sources.entry(source).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_limit_waits_for_the_window() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 1..=3 {
            assert_eq!(t.check(a, t0), Ok(()));
            assert_eq!(t.failed(a, t0), i);
        }
        assert_eq!(t.check(a, t0 + Duration::from_secs(1)), Err(59));
        assert_eq!(t.check(b, t0), Ok(()), "another source is not affected");
        assert_eq!(t.check(a, t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(t.failed(a, t0 + Duration::from_secs(60)), 1, "a new window");
        assert_eq!(
            AuthThrottle::new(0, Duration::from_secs(60)).check(a, t0),
            Ok(())
        );
    }
}
