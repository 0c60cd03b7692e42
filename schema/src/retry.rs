//! The one retry policy of docsort: capped exponential backoff with full
//! jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
//!
//! The worker's model calls, its queue receive loop and the producer's sends
//! all wait [`Backoff::delay`] between attempts; what is worth retrying is
//! decided by each caller's typed error ([`Retryable`]). This module has no
//! clock and no runtime: callers sleep with their own.

use std::time::Duration;

/// An error that says whether another attempt may succeed (throttling,
/// timeouts, 5xx, connection trouble) or never will (a bad request, access
/// denied, a missing resource).
pub trait Retryable {
    /// Whether retrying later may help.
    fn is_retryable(&self) -> bool;
}

/// Attempts and the delays between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the delay after the first failed attempt.
    pub base: Duration,
    /// The largest delay, whatever the attempt.
    pub max: Duration,
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
}

impl Default for Backoff {
    /// [`Backoff::STANDARD`].
    fn default() -> Self {
        Backoff::STANDARD
    }
}

impl Backoff {
    /// 5 attempts, delays capped at 0.4 s, 0.8 s, 1.6 s, 3.2 s (at most 20 s).
    pub const STANDARD: Backoff = Backoff {
        base: Duration::from_millis(400),
        max: Duration::from_secs(20),
        attempts: 5,
    };

    /// The same delays with `attempts` attempts in all.
    pub fn with_attempts(self, attempts: u32) -> Self {
        Backoff {
            attempts: attempts.max(1),
            ..self
        }
    }

    /// Whether another attempt follows failed attempt number `attempt` (1-based).
    pub fn retries_after(&self, attempt: u32) -> bool {
        attempt < self.attempts.max(1)
    }

    /// The upper bound of the delay after failed attempt number `attempt`
    /// (1-based): `base * 2^(attempt-1)`, at most `max`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let doubling = 1u32 << attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(doubling).min(self.max)
    }

    /// The delay after failed attempt number `attempt`: uniform in
    /// `0..=cap(attempt)` (full jitter), so that many clients failing
    /// together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.cap(attempt).mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_up_to_the_maximum() {
        let b = Backoff::default();
        let caps: Vec<u64> = (1..=8).map(|a| b.cap(a).as_millis() as u64).collect();
        assert_eq!(caps, [400, 800, 1600, 3200, 6400, 12800, 20000, 20000]);
        assert_eq!(b.cap(u32::MAX), b.max, "no overflow however many attempts");
    }

    #[test]
    fn delays_stay_within_their_cap() {
        let b = Backoff::default();
        for attempt in 1..=10 {
            for _ in 0..200 {
                assert!(b.delay(attempt) <= b.cap(attempt));
            }
        }
        // Full jitter: delays spread over the whole range, not one value.
        let delays: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn attempts_bound_the_retries() {
        let b = Backoff::default().with_attempts(3);
        assert!(b.retries_after(1) && b.retries_after(2));
        assert!(!b.retries_after(3) && !b.retries_after(4));
        let once = Backoff::default().with_attempts(0);
        assert_eq!(once.attempts, 1);
        assert!(!once.retries_after(1));
    }
}
