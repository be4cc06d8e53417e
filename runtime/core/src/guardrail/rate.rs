//! Token-bucket rate limits.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A rate limit as configured: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rate {
    /// Commands per second, sustained.
    pub per_second: f64,
    /// Commands that may pass at once after a quiet period (the bucket's capacity).
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained with bursts of `burst`.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Rate { per_second, burst }
    }

    /// A full bucket for this rate.
    pub fn bucket(self) -> TokenBucket {
        TokenBucket::new(f64::from(self.burst), self.per_second)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} commands/s (burst {})", self.per_second, self.burst)
    }
}

/// A token bucket: holds up to `capacity` tokens, refills `refill_per_sec` per second,
/// each command takes one.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    /// Most tokens the bucket holds.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_sec: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: f64, refill_per_sec: f64) -> Self {
        TokenBucket {
            capacity,
            refill_per_sec,
            tokens: capacity,
            last: None,
        }
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.check(now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    /// Whether a token is available at `now`, without taking it.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        let wait = missing / self.refill_per_sec;
        if wait.is_finite() && wait >= 0.0 {
            Err(Duration::from_secs_f64(wait.min(1e9)))
        } else {
            // A bucket that never refills.
            Err(Duration::MAX)
        }
    }

    /// Tokens available now (after refilling to `now`).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            if self.refill_per_sec > 0.0 {
                self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
            }
        }
        // Time given out of order does not move the clock back.
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = Rate::new(10.0, 3).bucket();
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        let wait = bucket.try_take(t0).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(100));
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_capacity() {
        let t0 = Instant::now();
        let mut bucket = Rate::new(10.0, 3).bucket();
        for _ in 0..3 {
            assert!(bucket.try_take(t0).is_ok());
        }
        // 50 ms: half a token.
        let wait = bucket
            .try_take(t0 + Duration::from_millis(50))
            .expect_err("half a token");
        assert!(wait.abs_diff(Duration::from_millis(50)) < Duration::from_micros(1));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)).is_ok());
        // A long pause refills only up to capacity.
        let later = t0 + Duration::from_secs(60);
        assert!((bucket.available(later) - 3.0).abs() < f64::EPSILON);
    }

    #[test]
    fn check_does_not_take() {
        let t0 = Instant::now();
        let mut bucket = Rate::new(1.0, 1).bucket();
        assert!(bucket.check(t0).is_ok());
        assert!(bucket.check(t0).is_ok());
        assert!(bucket.try_take(t0).is_ok());
        assert!(bucket.check(t0).is_err());
    }
}
