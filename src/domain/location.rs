use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ParticipantId, HIDDEN};

/// Messages per field for a refused location, as `{"errors": {"lat": ["…"]}}`.
pub type LocationErrors = BTreeMap<&'static str, Vec<&'static str>>;

/// How far in the future a client's timestamp may be.
const MAX_CLOCK_AHEAD_SECONDS: i64 = 60;

/// A position reported by a participant, checked on the way in; `Debug` hides the coordinates.
#[derive(Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude, -90..=90.
    pub lat: f64,
    /// Longitude, -180..=180.
    pub lng: f64,
    /// Accuracy radius in metres, 0..=100000.
    pub accuracy: Option<f64>,
    /// Heading in degrees, 0..<360.
    pub heading: Option<f64>,
    /// Speed in m/s, ≥ 0.
    pub speed: Option<f64>,
    /// The client's time of the fix, or the server's receive time.
    pub timestamp: DateTime<Utc>,
}

impl Location {
    /// Checks a `location_update` payload; `now` is the receive time, used when the client gives none.
    pub fn parse(payload: &Map<String, Value>, now: DateTime<Utc>) -> Result<Self, LocationErrors> {
        let mut errors = LocationErrors::new();
        let lat = required(payload, "lat", -90.0..=90.0, &mut errors);
        let lng = required(payload, "lng", -180.0..=180.0, &mut errors);
        let accuracy = optional(payload, "accuracy", |v| (0.0..=100_000.0).contains(&v), &mut errors);
        let heading = optional(payload, "heading", |v| (0.0..360.0).contains(&v), &mut errors);
        let speed = optional(payload, "speed", |v| v >= 0.0, &mut errors);
        let timestamp = timestamp(payload, now, &mut errors);
        match (lat, lng, timestamp) {
            (Some(lat), Some(lng), Some(timestamp)) if errors.is_empty() => {
                Ok(Self { lat, lng, accuracy, heading, speed, timestamp })
            }
            _ => Err(errors),
        }
    }

    /// The wire form of this location as `participant`'s.
    pub fn view(&self, participant: ParticipantId) -> LocationView {
        LocationView {
            user_id: participant.to_string(),
            lat: self.lat,
            lng: self.lng,
            accuracy: self.accuracy,
            heading: self.heading,
            speed: self.speed,
            timestamp: self.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            distance_m: None,
            eta_s: None,
        }
    }
}

/// The client's time of the fix; `now` when it gives none.
fn timestamp(payload: &Map<String, Value>, now: DateTime<Utc>, errors: &mut LocationErrors) -> Option<DateTime<Utc>> {
    let message = match payload.get("timestamp") {
        None | Some(Value::Null) => return Some(now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)) {
            // A time is broadcast in UTC, and RFC 3339 has years 0000 to 9999 only: an offset
            // can move a time of year 0000 before it, where it could not be written back.
            Ok(t) if !(0..=9999).contains(&t.year()) => "is out of range",
            Ok(t) if t > now + Duration::seconds(MAX_CLOCK_AHEAD_SECONDS) => {
                "must not be more than 60 seconds in the future"
            }
            Ok(t) => return Some(t),
            Err(_) => "must be an RFC 3339 time",
        },
        Some(_) => "must be an RFC 3339 time",
    };
    errors.entry("timestamp").or_default().push(message);
    None
}

pub(super) fn number(
    payload: &Map<String, Value>,
    field: &'static str,
    errors: &mut LocationErrors,
) -> Option<Option<f64>> {
    match payload.get(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => match n.as_f64().filter(|v| v.is_finite()) {
            Some(v) => Some(Some(v)),
            None => {
                errors.entry(field).or_default().push("must be a finite number");
                None
            }
        },
        Some(_) => {
            errors.entry(field).or_default().push("must be a number");
            None
        }
    }
}

pub(super) fn required(
    payload: &Map<String, Value>,
    field: &'static str,
    range: std::ops::RangeInclusive<f64>,
    errors: &mut LocationErrors,
) -> Option<f64> {
    match number(payload, field, errors)? {
        None => {
            errors.entry(field).or_default().push("can't be blank");
            None
        }
        Some(v) if range.contains(&v) => Some(v),
        Some(_) => {
            errors.entry(field).or_default().push("is out of range");
            None
        }
    }
}

pub(super) fn optional(
    payload: &Map<String, Value>,
    field: &'static str,
    valid: impl Fn(f64) -> bool,
    errors: &mut LocationErrors,
) -> Option<f64> {
    match number(payload, field, errors)? {
        Some(v) if !valid(v) => {
            errors.entry(field).or_default().push("is out of range");
            None
        }
        other => other,
    }
}

/// A location as broadcast and listed: `{"user_id","lat","lng","accuracy","heading","speed","timestamp"}`;
/// `Debug` hides the coordinates.
#[derive(Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LocationView {
    /// Whose location.
    pub user_id: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Accuracy in metres.
    pub accuracy: Option<f64>,
    /// Heading in degrees.
    pub heading: Option<f64>,
    /// Speed in m/s.
    pub speed: Option<f64>,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Whole metres to the destination, while the session has one (SPEC §7); absent otherwise.
    // Two plain fields rather than a flattened struct: `#[serde(flatten)]` would buffer every
    // field of every location a replica receives before reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<u64>,
    /// Whole seconds to get there (`null`: unknown or under 0.5 m/s; 0 while arrived), while
    /// the session has a destination; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub eta_s: Option<Option<u64>>,
}

/// A key that is there, `null` or not: `Some`, so that `eta_s: null` and no `eta_s` stay apart.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

impl LocationView {
    /// Adds the distance and ETA to the destination (SPEC §7).
    pub fn set_progress(&mut self, distance_m: u64, eta_s: Option<u64>) {
        self.distance_m = Some(distance_m);
        self.eta_s = Some(eta_s);
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("lat", &HIDDEN)
            .field("lng", &HIDDEN)
            .field("accuracy", &self.accuracy)
            .field("heading", &self.heading)
            .field("speed", &self.speed)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

impl std::fmt::Debug for LocationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationView")
            .field("user_id", &self.user_id)
            .field("lat", &HIDDEN)
            .field("lng", &HIDDEN)
            .field("accuracy", &self.accuracy)
            .field("heading", &self.heading)
            .field("speed", &self.speed)
            .field("timestamp", &self.timestamp)
            .field("distance_m", &self.distance_m)
            .field("eta_s", &self.eta_s)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_hides_the_coordinates() {
        let location = parse(json!({"lat": 48.8566123, "lng": 2.3522456, "accuracy": 5.0}));
        let location = location.unwrap_or_else(|e| panic!("{e:?}"));
        let view = location.view(ParticipantId::new());
        for printed in [format!("{location:?}"), format!("{view:?}"), format!("{:?}", Some(view.clone()))] {
            assert!(!printed.contains("48.85") && !printed.contains("2.35"), "{printed}");
            assert!(printed.contains("accuracy: Some(5.0)"), "{printed}");
        }
    }

    fn parse(v: Value) -> Result<Location, LocationErrors> {
        let map = v.as_object().cloned().unwrap_or_default();
        Location::parse(&map, Utc::now())
    }

    #[test]
    fn accepts_full_and_minimal() {
        let full = parse(json!({"lat": 37.7749, "lng": -122.4194, "accuracy": 5.0, "heading": 359.9, "speed": 0,
            "timestamp": "2026-01-01T00:00:00Z"}));
        assert!(full.is_ok(), "{full:?}");
        let min = parse(json!({"lat": -90, "lng": 180}));
        assert!(min.is_ok_and(|l| l.accuracy.is_none()));
    }

    #[test]
    fn refuses_out_of_range_and_wrong_types() {
        for (bad, field) in [
            (json!({"lat": 91, "lng": 0}), "lat"),
            (json!({"lat": 0, "lng": -180.5}), "lng"),
            (json!({"lng": 0}), "lat"),
            (json!({"lat": "1", "lng": 0}), "lat"),
            (json!({"lat": 0, "lng": 0, "accuracy": -1}), "accuracy"),
            (json!({"lat": 0, "lng": 0, "accuracy": 100001}), "accuracy"),
            (json!({"lat": 0, "lng": 0, "heading": 360}), "heading"),
            (json!({"lat": 0, "lng": 0, "speed": -0.1}), "speed"),
            (json!({"lat": 0, "lng": 0, "timestamp": "yesterday"}), "timestamp"),
            (json!({"lat": 0, "lng": 0, "timestamp": 5}), "timestamp"),
        ] {
            let errors = parse(bad.clone()).err().unwrap_or_default();
            assert!(errors.contains_key(field), "{bad} should fail on {field}: {errors:?}");
        }
    }

    #[test]
    fn refuses_future_timestamps() {
        let soon = (Utc::now() + Duration::seconds(30)).to_rfc3339();
        let late = (Utc::now() + Duration::seconds(90)).to_rfc3339();
        assert!(parse(json!({"lat": 0, "lng": 0, "timestamp": soon})).is_ok());
        assert!(parse(json!({"lat": 0, "lng": 0, "timestamp": late})).is_err());
    }

    #[test]
    fn approach_figures_are_there_only_with_a_destination() {
        let mut view =
            parse(json!({"lat": 1.5, "lng": 2.5})).unwrap_or_else(|e| panic!("{e:?}")).view(ParticipantId::new());
        let plain = serde_json::to_value(&view).unwrap_or_default();
        assert!(plain.get("distance_m").is_none() && plain.get("eta_s").is_none(), "{plain}");
        let back: LocationView = serde_json::from_value(plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((back.distance_m, back.eta_s), (None, None));
        view.set_progress(4200, None);
        let wire = serde_json::to_value(&view).unwrap_or_default();
        assert_eq!((wire["distance_m"].clone(), wire["eta_s"].clone()), (json!(4200), Value::Null));
        let back: LocationView = serde_json::from_value(wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, view, "a replica reads back what another sent");
    }

    #[test]
    fn view_keeps_client_time() {
        let loc = parse(json!({"lat": 1.5, "lng": 2.5, "timestamp": "2026-01-27T10:00:00.250+01:00"}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let view = loc.view(ParticipantId::new());
        assert_eq!(view.timestamp, "2026-01-27T09:00:00.250Z");
        assert_eq!(view.accuracy, None);
    }

    /// Found by fuzzing: an offset moved a time of year 0000 into year -1 in UTC, and its
    /// broadcast `"-0001-12-31T23:00:00Z"` was no RFC 3339 time.
    #[test]
    fn refuses_times_that_are_before_year_0000_in_utc() {
        let errors = parse(json!({"lat": 0, "lng": 0, "timestamp": "0000-01-01T00:00:00+01:00"})).err();
        assert_eq!(errors.and_then(|e| e.get("timestamp").cloned()), Some(vec!["is out of range"]));
        for (sent, broadcast) in
            [("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"), ("0000-01-01T00:00:00-01:00", "0000-01-01T01:00:00Z")]
        {
            let loc = parse(json!({"lat": 0, "lng": 0, "timestamp": sent})).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(loc.view(ParticipantId::new()).timestamp, broadcast);
        }
    }
}
