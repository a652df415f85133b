//! Latency histograms: HDR, microsecond resolution, 3 significant digits, up to an hour.
//! Worker processes send theirs to the parent as raw bucket counts, which merge exactly.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The highest value recorded, µs (an hour); larger ones are recorded as this.
const HIGHEST_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

/// The figures reported from a histogram, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; the fallback is never taken.
        let h = Histogram::new_with_bounds(1, HIGHEST_US, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("valid histogram bounds"));
        Self(h)
    }

    /// Records one value (clamped to 0..=an hour).
    pub fn record(&mut self, us: i64) {
        let v = us.clamp(0, HIGHEST_US as i64) as u64;
        self.0.saturating_record(v);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides, so this cannot fail; a failure would only lose counts.
        let _ = self.0.add(&other.0);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// The value at a quantile (0..=1).
    pub fn quantile(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// The reported figures.
    pub fn summary(&self) -> Summary {
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.0.len(),
            min: self.0.min(),
            mean: (self.0.mean() * 10.0).round() / 10.0,
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.0.max(),
        }
    }

    /// The non-empty buckets as `(value, count)`.
    pub fn counts(&self) -> Vec<(u64, u64)> {
        self.0.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
    }

    /// A histogram from bucket counts.
    pub fn from_counts(counts: &[(u64, u64)]) -> Self {
        let mut h = Self::new();
        for &(v, c) in counts {
            let _ = h.0.record_n(v.min(HIGHEST_US), c);
        }
        h
    }
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.counts().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let counts = Vec::<(u64, u64)>::deserialize(d)?;
        Ok(Self::from_counts(&counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_inputs() {
        let mut h = Hist::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!((s.count, s.min, s.max), (1000, 1, 1000));
        assert_eq!((s.p50, s.p90, s.p99, s.p999), (500, 900, 990, 999));
        assert!((s.mean - 500.5).abs() < 0.1, "{}", s.mean);

        // Past 2048 µs values share buckets: within 0.1 %.
        let mut h = Hist::new();
        for v in 1..=100_000 {
            h.record(v * 10);
        }
        let s = h.summary();
        for (got, want) in [(s.p50, 500_000u64), (s.p99, 990_000), (s.max, 1_000_000)] {
            assert!(got.abs_diff(want) * 1000 <= want, "{got} vs {want}");
        }
    }

    #[test]
    fn clamps_and_empty() {
        let mut h = Hist::new();
        assert_eq!(h.summary(), Summary::default());
        h.record(-5);
        h.record(i64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.summary().min, 0);
        assert!(h.summary().max >= HIGHEST_US);
    }

    #[test]
    fn merging_equals_recording_everything() {
        let (mut a, mut b, mut all) = (Hist::new(), Hist::new(), Hist::new());
        for v in 0..5000i64 {
            let x = v * v % 77_777;
            if v % 3 == 0 { &mut a } else { &mut b }.record(x);
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        assert_eq!(a.counts(), all.counts());
    }

    #[test]
    fn counts_round_trip_through_json() {
        let mut h = Hist::new();
        for v in [1, 1, 5, 70_000, 1_234_567] {
            h.record(v);
        }
        let text = serde_json::to_string(&h).unwrap_or_default();
        let back: Hist = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back.counts(), h.counts());
        assert_eq!(back.summary(), h.summary());
    }
}
