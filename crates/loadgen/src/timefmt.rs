//! The clock shared with the server, and the timestamps that carry an update's due time.
//!
//! An update's `timestamp` is its due time as RFC 3339 UTC with microseconds; the server echoes
//! it normalised to UTC (with as many fraction digits as are non-zero), so a receiver reads it
//! back and subtracts it from its own wall clock. Encoding and decoding are hand-rolled: they run
//! once per update sent and once per delivery received.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), after H. Hinnant.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_digits(out: &mut String, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut n = v;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[..width].iter().map(|b| *b as char));
}

/// `2026-11-27T10:00:00.123456Z` for microseconds since the epoch (years 0..=9999).
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(27);
    push_digits(&mut s, y.clamp(0, 9999) as u64, 4);
    s.push('-');
    push_digits(&mut s, m.into(), 2);
    s.push('-');
    push_digits(&mut s, d.into(), 2);
    s.push('T');
    push_digits(&mut s, sod / 3600, 2);
    s.push(':');
    push_digits(&mut s, sod / 60 % 60, 2);
    s.push(':');
    push_digits(&mut s, sod % 60, 2);
    s.push('.');
    push_digits(&mut s, frac, 6);
    s.push('Z');
    s
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0i64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
}

/// Microseconds since the epoch of an RFC 3339 time (`Z` or `±HH:MM`, 0 to 9 fraction digits;
/// digits past the microsecond are truncated). `None` when it is not one.
pub fn parse_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                frac_us = frac_us * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            frac_us *= 10;
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = digits(b, i + 1, 2)? * 3600 + digits(b, i + 4, 2)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + frac_us)
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
    use chrono::{DateTime, SecondsFormat, Utc};

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
    fn round_trips_and_agrees_with_chrono() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let us = (x % 4_000_000_000_000_000) as i64; // up to ~2096
            let s = format_micros(us);
            assert_eq!(parse_micros(&s), Some(us), "{s}");
            let c = DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
            assert_eq!(s, c.to_rfc3339_opts(SecondsFormat::Micros, true));
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
