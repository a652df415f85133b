//! When each message is due: `n` senders at `rate` Hz, phases evenly staggered over one period.
//!
//! Every due time is computed from its index (`t0 + offset(i) + k / rate`), never by adding a
//! period to the previous one, so there is no drift however long the run; a sender that falls
//! behind still stamps each message with the time it was due, so latency includes the delay
//! (no coordinated omission).

/// The schedule of `n` senders, in nanoseconds of the process clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    t0_ns: u64,
    period_ns: f64,
    n: usize,
}

impl Schedule {
    /// `n` senders at `rate` Hz each, from `t0_ns`.
    pub fn new(t0_ns: u64, rate: f64, n: usize) -> Self {
        Self { t0_ns, period_ns: 1e9 / rate, n: n.max(1) }
    }

    /// Sender `i`'s phase: `i/n` of a period.
    pub fn offset_ns(&self, i: usize) -> u64 {
        (self.period_ns * (i % self.n) as f64 / self.n as f64) as u64
    }

    /// When sender `i`'s `k`-th message is due.
    pub fn due_ns(&self, i: usize, k: u64) -> u64 {
        self.t0_ns + self.offset_ns(i) + (k as f64 * self.period_ns) as u64
    }

    /// The first `k` of sender `i` due at or after `t_ns`.
    #[cfg(test)]
    pub fn first_at_or_after(&self, i: usize, t_ns: u64) -> u64 {
        let base = self.t0_ns + self.offset_ns(i);
        if t_ns <= base {
            return 0;
        }
        let mut k = ((t_ns - base) as f64 / self.period_ns).floor() as u64;
        while self.due_ns(i, k) < t_ns {
            k += 1;
        }
        while k > 0 && self.due_ns(i, k - 1) >= t_ns {
            k -= 1;
        }
        k
    }

    /// How many of sender `i`'s messages fall in `[from, to)`.
    #[cfg(test)]
    pub fn count_in(&self, i: usize, from_ns: u64, to_ns: u64) -> u64 {
        self.first_at_or_after(i, to_ns).saturating_sub(self.first_at_or_after(i, from_ns))
    }
}

/// Cycles at a fixed total rate (churn): cycle `c` is due at `t0 + c / rate`.
pub fn cycle_due_ns(t0_ns: u64, rate: f64, c: u64) -> u64 {
    t0_ns + (c as f64 * 1e9 / rate) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_evenly_staggered() {
        let s = Schedule::new(1_000, 1.0, 4);
        let offsets: Vec<u64> = (0..4).map(|i| s.offset_ns(i)).collect();
        assert_eq!(offsets, vec![0, 250_000_000, 500_000_000, 750_000_000]);
        let s = Schedule::new(0, 2.0, 1000);
        let gaps: Vec<u64> = (1..1000).map(|i| s.offset_ns(i) - s.offset_ns(i - 1)).collect();
        assert!(gaps.iter().all(|g| (499_999..=500_001).contains(g)), "{:?}", &gaps[..5]);
        assert!(s.offset_ns(999) < 500_000_000);
    }

    #[test]
    fn no_drift() {
        // 3 Hz has no exact nanosecond period: due times must not accumulate rounding.
        let s = Schedule::new(5, 3.0, 1);
        let k = 3 * 86_400 * 7; // a week of messages
        let expected = 5 + 7 * 86_400 * 1_000_000_000u64;
        assert!(s.due_ns(0, k).abs_diff(expected) <= 1, "{} vs {expected}", s.due_ns(0, k));
        for k in 0..10_000u64 {
            let gap = s.due_ns(0, k + 1) - s.due_ns(0, k);
            assert!((333_333_332..=333_333_334).contains(&gap), "{gap}");
        }
    }

    #[test]
    fn windows_count_whole_periods() {
        let s = Schedule::new(0, 10.0, 5);
        for i in 0..5 {
            assert_eq!(s.count_in(i, 1_000_000_000, 3_000_000_000), 20, "sender {i}");
            let k = s.first_at_or_after(i, 1_000_000_000);
            assert!(s.due_ns(i, k) >= 1_000_000_000);
            assert!(k == 0 || s.due_ns(i, k - 1) < 1_000_000_000);
        }
        assert_eq!(s.first_at_or_after(3, 0), 0);
        assert_eq!(s.due_ns(2, 0), 40_000_000);
    }

    #[test]
    fn cycles_at_a_fixed_rate() {
        assert_eq!(cycle_due_ns(7, 1000.0, 0), 7);
        assert_eq!(cycle_due_ns(0, 1000.0, 30_000), 30_000_000_000);
        assert_eq!(cycle_due_ns(0, 3.0, 3), 1_000_000_000);
    }
}
