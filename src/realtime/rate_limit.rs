//! A token bucket: `capacity` tokens, refilled at `capacity` per second.

use std::time::Instant;

/// One participant's budget of location updates.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: u32, now: Instant) -> Self {
        Self { tokens: f64::from(capacity), refilled_at: now }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, capacity: u32, now: Instant) -> bool {
        let capacity = f64::from(capacity);
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(10, t0);
        assert_eq!((0..15).filter(|_| b.take(10, t0)).count(), 10);
        assert!(!b.take(10, t0 + Duration::from_millis(50)));
        assert!(b.take(10, t0 + Duration::from_millis(160)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!((0..15).filter(|_| b.take(10, later)).count(), 10);
    }
}
