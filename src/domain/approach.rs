//! How a participant approaches the destination (SPEC §7): distance, speed, ETA, and the arrival
//! state machine with its hysteresis. Plain functions and one small struct, so that the session
//! actor only feeds them fixes and announces what they decide.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use super::geo::{distance_m, Point};
use super::Place;

/// Speed from successive positions is measured over at least this long, so that GPS jitter
/// between two fixes a second apart does not read as walking pace.
pub const SPEED_SPAN: Duration = Duration::seconds(10);
/// A reference position older than this says nothing about the current speed.
pub const SPEED_STALE: Duration = Duration::minutes(5);
/// Under this speed (m/s) nobody is heading anywhere: no ETA.
pub const MIN_SPEED: f64 = 0.5;
/// A departure needs the position this much farther than the radius at least, so that fixes
/// jittering around the edge do not make a participant arrive and depart over and over.
pub const DEPARTURE_MARGIN_M: f64 = 50.0;
/// Fixes kept per participant: 10 s at the highest rate the rate limit allows, and some.
const MAX_FIXES: usize = 128;

/// One position, as the arithmetic needs it.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    /// Where.
    pub point: Point,
    /// Accuracy radius in metres, if the client said.
    pub accuracy: Option<f64>,
    /// Speed in m/s, if the client said.
    pub speed: Option<f64>,
    /// When the fix was taken (the client's time, else the server's receive time).
    pub at: DateTime<Utc>,
}

/// An arrival or a departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Now within the radius.
    Arrived,
    /// Now clearly outside it again.
    Departed,
}

/// Where a participant stands after a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Great-circle distance to the destination, whole metres.
    pub distance_m: u64,
    /// Whole seconds to get there at the current speed; `None` when unknown or too slow.
    pub eta_s: Option<u64>,
    /// What this fix changed, if anything.
    pub transition: Option<Transition>,
}

/// A participant's recent fixes, for the speed between them.
#[derive(Debug, Default, Clone)]
pub struct Motion {
    fixes: VecDeque<(DateTime<Utc>, Point)>,
}

impl Motion {
    /// Records a fix; the speed between it and the newest fix at least [`SPEED_SPAN`] older, in m/s.
    pub fn record(&mut self, point: Point, at: DateTime<Utc>) -> Option<f64> {
        if self.fixes.back().is_some_and(|(last, _)| at < *last) {
            // Out of order (a client clock stepping back): it says nothing about speed.
            return None;
        }
        let reference = self.fixes.iter().rev().find(|(t, _)| *t <= at - SPEED_SPAN).copied();
        self.fixes.push_back((at, point));
        // Keep one fix at least a span old (the next reference) and what came after it.
        while self.fixes.len() > MAX_FIXES || self.fixes.get(1).is_some_and(|(t, _)| *t <= at - SPEED_SPAN) {
            self.fixes.pop_front();
        }
        let (then, from) = reference?;
        let elapsed = at - then;
        if elapsed > SPEED_STALE {
            return None;
        }
        let seconds = elapsed.num_milliseconds() as f64 / 1000.0;
        Some(distance_m(from, point) / seconds)
    }
}

/// What a fix does to the arrival state: SPEC §7's rule and its hysteresis.
pub fn transition(arrived: bool, distance: f64, accuracy: Option<f64>, radius_m: f64) -> Option<Transition> {
    if !arrived {
        let precise = accuracy.is_none_or(|a| a <= radius_m);
        return (precise && distance <= radius_m).then_some(Transition::Arrived);
    }
    let margin = accuracy.unwrap_or(0.0).max(DEPARTURE_MARGIN_M);
    (distance > radius_m + margin).then_some(Transition::Departed)
}

/// Whole seconds to cover `distance` at `speed`; 0 while arrived, `None` when the speed is unknown
/// or under [`MIN_SPEED`].
pub fn eta_s(distance: f64, speed: Option<f64>, arrived: bool) -> Option<u64> {
    if arrived {
        return Some(0);
    }
    let speed = speed.filter(|s| s.is_finite() && *s >= MIN_SPEED)?;
    Some((distance / speed).round().min(u64::MAX as f64) as u64)
}

/// Feeds one fix of a participant who is (or is not) `arrived` at `destination`.
pub fn progress(destination: &Place, fix: &Fix, motion: &mut Motion, arrived: bool) -> Progress {
    let distance = distance_m(fix.point, destination.point());
    let measured = motion.record(fix.point, fix.at);
    let transition = transition(arrived, distance, fix.accuracy, destination.radius_m);
    let arrived_now = match transition {
        Some(Transition::Arrived) => true,
        Some(Transition::Departed) => false,
        None => arrived,
    };
    Progress {
        distance_m: distance.round() as u64,
        eta_s: eta_s(distance, fix.speed.or(measured), arrived_now),
        transition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RADIUS: f64 = 100.0;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T18:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    fn destination() -> Place {
        Place { lat: 48.0, lng: 2.0, radius_m: RADIUS, label: None, set_at: t0() }
    }

    /// A point `metres` north of the destination (one degree of latitude is about 111,195 m here).
    fn north(metres: f64) -> Point {
        Point { lat: 48.0 + metres / 111_195.08, lng: 2.0 }
    }

    fn fix(metres: f64, accuracy: Option<f64>, seconds: i64) -> Fix {
        Fix { point: north(metres), accuracy, speed: None, at: t0() + Duration::seconds(seconds) }
    }

    #[test]
    fn arrives_inside_with_a_precise_fix_only() {
        assert_eq!(transition(false, 99.0, None, RADIUS), Some(Transition::Arrived));
        assert_eq!(transition(false, 100.0, Some(100.0), RADIUS), Some(Transition::Arrived), "the edge counts");
        assert_eq!(transition(false, 50.0, Some(150.0), RADIUS), None, "too vague to tell");
        assert_eq!(transition(false, 101.0, Some(5.0), RADIUS), None);
        assert_eq!(transition(true, 50.0, None, RADIUS), None, "arrived once");
    }

    #[test]
    fn departs_only_clearly_outside() {
        assert_eq!(transition(true, 149.0, None, RADIUS), None, "within the 50 m margin");
        assert_eq!(transition(true, 151.0, None, RADIUS), Some(Transition::Departed));
        assert_eq!(transition(true, 250.0, Some(200.0), RADIUS), None, "a vague fix needs its own margin");
        assert_eq!(transition(true, 301.0, Some(200.0), RADIUS), Some(Transition::Departed));
        assert_eq!(transition(false, 500.0, None, RADIUS), None, "never arrived, never departs");
    }

    #[test]
    fn noisy_fixes_around_the_radius_do_not_flap() {
        // A walk in, a long wait near the edge with GPS noise of ±40 m, then a walk away.
        let mut distances: Vec<f64> = vec![400.0, 300.0, 200.0, 120.0];
        let noise = [37.0, -22.0, 41.0, -39.0, 12.0, 40.0, -5.0, 33.0, -40.0, 28.0];
        distances.extend(noise.iter().map(|n| 100.0 + n));
        distances.extend([180.0, 300.0, 120.0, 90.0]);
        let (mut arrived, mut events) = (false, Vec::new());
        let mut motion = Motion::default();
        for (i, d) in distances.iter().enumerate() {
            let p = progress(&destination(), &fix(*d, Some(15.0), i as i64), &mut motion, arrived);
            if let Some(t) = p.transition {
                events.push((i, t));
                arrived = t == Transition::Arrived;
            }
        }
        let kinds: Vec<Transition> = events.iter().map(|(_, t)| *t).collect();
        assert_eq!(kinds, vec![Transition::Arrived, Transition::Departed, Transition::Arrived], "{events:?}");
        assert_eq!(events[0].0, 5, "the first fix inside the radius (78 m)");
        assert_eq!(events[1].0, 14, "the first fix past radius + 50 m (180 m)");
    }

    #[test]
    fn speed_comes_from_fixes_at_least_ten_seconds_apart() {
        let mut m = Motion::default();
        assert_eq!(m.record(north(1000.0), t0()), None, "one fix: no speed");
        assert_eq!(m.record(north(990.0), t0() + Duration::seconds(5)), None, "not 10 s yet");
        let v = m.record(north(900.0), t0() + Duration::seconds(10)).unwrap_or_default();
        assert!((v - 10.0).abs() < 0.05, "100 m in 10 s: {v}");
        // Later fixes measure against the newest fix that is 10 s older, not the first.
        let v = m.record(north(880.0), t0() + Duration::seconds(15)).unwrap_or_default();
        assert!((v - 11.0).abs() < 0.05, "110 m since the fix at 5 s: {v}");
        assert!(m.fixes.len() <= 3, "old fixes are dropped: {}", m.fixes.len());
        assert_eq!(m.record(north(870.0), t0() + Duration::seconds(14)), None, "out of order");
        assert_eq!(m.record(north(0.0), t0() + Duration::minutes(30)), None, "a stale reference");
    }

    #[test]
    fn fixes_at_the_rate_limit_stay_bounded() {
        let mut m = Motion::default();
        for i in 0..10_000 {
            m.record(north(f64::from(i)), t0() + Duration::milliseconds(i64::from(i) * 20));
        }
        assert!(m.fixes.len() <= MAX_FIXES);
    }

    #[test]
    fn eta_follows_speed_and_arrival() {
        assert_eq!(eta_s(1000.0, Some(2.0), false), Some(500));
        assert_eq!(eta_s(1000.0, Some(0.49), false), None, "standing still");
        assert_eq!(eta_s(1000.0, None, false), None);
        assert_eq!(eta_s(1000.0, Some(f64::INFINITY), false), None);
        assert_eq!(eta_s(80.0, None, true), Some(0), "0 while arrived");
        let mut m = Motion::default();
        let given = Fix { speed: Some(4.0), ..fix(2000.0, None, 0) };
        let p = progress(&destination(), &given, &mut m, false);
        assert_eq!((p.distance_m, p.eta_s, p.transition), (2000, Some(500), None), "the update's own speed first");
        let inside = progress(&destination(), &fix(10.0, None, 20), &mut m, false);
        assert_eq!((inside.eta_s, inside.transition), (Some(0), Some(Transition::Arrived)));
    }
}
