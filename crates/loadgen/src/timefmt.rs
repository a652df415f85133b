//! The clock shared with the server, and the timestamps that carry an update's due time.
//!
//! An update's `timestamp` is its due time as RFC 3339 UTC with microseconds; the server echoes
//! it normalised to UTC (with as many fraction digits as are non-zero), so a receiver reads it
//! back and subtracts it from its own wall clock.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, now.
pub fn wall_now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// A monotonic clock in nanoseconds since this process's start, tied to the wall clock once, so
/// due times are computed without drift and still map to wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_wall_us: i64,
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

impl Clock {
    /// The process's clock.
    pub fn get() -> Clock {
        *CLOCK.get_or_init(|| Clock { base: Instant::now(), base_wall_us: wall_now_us() })
    }

    /// Nanoseconds since the base.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The instant of a clock reading.
    pub fn instant(&self, ns: u64) -> Instant {
        self.base + std::time::Duration::from_nanos(ns)
    }

    /// Wall-clock microseconds of a clock reading.
    pub fn wall_us(&self, ns: u64) -> i64 {
        self.base_wall_us + (ns / 1000) as i64
    }

    /// The clock reading of a wall-clock time (0 if it is before the base).
    pub fn ns_of_wall_us(&self, wall_us: i64) -> u64 {
        (wall_us - self.base_wall_us).max(0) as u64 * 1000
    }
}

/// `2026-11-27T10:00:00.123456Z` for microseconds since the epoch.
// chrono, though this runs once per update sent and once per delivery received: the hand-rolled
// codec it replaced was only ~30 ns faster each way (release, this 2-core VM: format 72–107 vs
// 95–144 ns, parse 26–42 vs 52–76 ns): ~3 % of loadgen's 1.2 µs of CPU per delivery at 300 × 50.
pub fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Microseconds since the epoch of an RFC 3339 time (`Z` or `±HH:MM`, any fraction digits;
/// digits past the microsecond are truncated). `None` when it is not one.
pub fn parse_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

/// The `timestamp` string of a frame, found by scanning rather than parsing the JSON.
pub fn find_timestamp(frame: &str) -> Option<&str> {
    const KEY: &str = "\"timestamp\":\"";
    let start = frame.find(KEY)? + KEY.len();
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_times() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_micros(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(format_micros(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_the_server_echoes() {
        // chrono's AutoSi: only the non-zero fraction digits, grouped by three.
        assert_eq!(parse_micros("2023-11-14T22:13:20.123456Z"), Some(1_700_000_000_123_456));
        assert_eq!(parse_micros("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123_000));
        assert_eq!(parse_micros("2023-11-14T22:13:20Z"), Some(1_700_000_000_000_000));
        assert_eq!(parse_micros("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000_123_456));
        assert_eq!(parse_micros("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000_500_000));
        assert_eq!(parse_micros("2023-11-14T21:13:20-01:00"), Some(1_700_000_000_000_000));
        for bad in ["", "yesterday", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z", "2023-13-14T22:13:20Z"] {
            assert_eq!(parse_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_and_reads_the_echoed_form() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let us = (x % 4_000_000_000_000_000) as i64; // up to ~2096
            let s = format_micros(us);
            assert_eq!(parse_micros(&s), Some(us), "{s}");
            assert_eq!(s.len(), 27, "{s}");
            let c = DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
            // What the server echoes: the same instant, fraction trimmed.
            let echoed = c.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(parse_micros(&echoed), Some(us), "{echoed}");
        }
    }

    #[test]
    fn finds_the_timestamp_in_a_broadcast() {
        let frame = r#"[null,null,"location:s","location_update",{"user_id":"u","lat":1.0,"lng":2.0,"accuracy":5.0,"heading":null,"speed":null,"timestamp":"2023-11-14T22:13:20.123456Z"}]"#;
        assert_eq!(find_timestamp(frame), Some("2023-11-14T22:13:20.123456Z"));
        assert_eq!(find_timestamp(r#"[null,null,"t","e",{}]"#), None);
    }

    #[test]
    fn clock_maps_to_wall_time() {
        let c = Clock::get();
        let now = c.now_ns();
        let wall = c.wall_us(now);
        assert!((wall - wall_now_us()).abs() < 1_000_000);
        let back = c.ns_of_wall_us(wall);
        assert!(back.abs_diff(now) < 1000 + 1, "{back} {now}");
    }
}
